//! The addresses this process listens on. Two of them cannot share one (the second bind fails,
//! or with port reuse one silently takes the other's connections), and a backend pointed at one
//! sends proxied requests back into this process: a loop, or the admin API opened to clients.

use super::problem::{KeyPath, Problems};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A listener and the key that configures it.
#[derive(Clone, Debug)]
pub(super) struct Listener {
    pub(super) key: KeyPath,
    pub(super) addr: SocketAddr,
}

/// Whether a wildcard address also takes connections made to `other`: `0.0.0.0` every IPv4
/// address, `[::]` both families (Linux's dual-stack default).
fn covers(wildcard: IpAddr, other: IpAddr) -> bool {
    wildcard.is_unspecified() && (wildcard.is_ipv6() || other.is_ipv4())
}

/// Whether both could not be bound at once.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip()))
}

/// Reports every listener whose address an earlier one already takes.
pub(super) fn check_distinct(listeners: &[Listener], errs: &mut Problems) {
    for (i, l) in listeners.iter().enumerate() {
        if let Some(first) = listeners[..i].iter().find(|o| overlap(o.addr, l.addr)) {
            errs.push(
                l.key.clone(),
                format!(
                    "{} clashes with {} = {}: two listeners cannot share an address",
                    l.addr, first.key, first.addr
                ),
            );
        }
    }
}

/// The addresses a backend `address` (`host:port`) connects to, as far as they are known
/// without DNS: an IP address, or `localhost`, which is loopback by definition. Connecting to
/// a wildcard address reaches loopback.
fn local_targets(address: &str) -> Vec<SocketAddr> {
    let loopback = |port| {
        vec![
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
        ]
    };
    if let Ok(a) = address.parse::<SocketAddr>() {
        return match a.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), a.port())]
            }
            IpAddr::V6(ip) if ip.is_unspecified() => loopback(a.port()),
            _ => vec![a],
        };
    }
    match address.rsplit_once(':') {
        Some((host, port)) => {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            let is_localhost = host == "localhost" || host.ends_with(".localhost");
            match port.parse::<u16>() {
                Ok(port) if is_localhost => loopback(port),
                _ => Vec::new(),
            }
        }
        None => Vec::new(),
    }
}

/// The listener a backend at `address` would connect to, if it is one of ours.
pub(super) fn own_listener<'a>(address: &str, listeners: &'a [Listener]) -> Option<&'a Listener> {
    let targets = local_targets(address);
    listeners.iter().find(|l| {
        targets.iter().any(|t| {
            t.port() == l.addr.port()
                && (t.ip() == l.addr.ip() || (t.ip().is_loopback() && covers(l.addr.ip(), t.ip())))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners(addrs: &[&str]) -> Vec<Listener> {
        addrs
            .iter()
            .enumerate()
            .map(|(i, a)| Listener {
                key: KeyPath::section(&format!("l{i}")),
                addr: a.parse().unwrap(),
            })
            .collect()
    }

    #[test]
    fn wildcards_take_their_port_on_every_address_of_their_family() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlap(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(overlap(a("127.0.0.1:80"), a("0.0.0.0:80")));
        assert!(overlap(a("[::]:80"), a("127.0.0.1:80")));
        assert!(overlap(a("[::]:80"), a("0.0.0.0:80")));
        assert!(!overlap(a("0.0.0.0:80"), a("[::1]:80")));
        assert!(!overlap(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(!overlap(a("0.0.0.0:80"), a("0.0.0.0:81")));
    }

    #[test]
    fn a_backend_on_a_listener_is_found_by_address_or_as_localhost() {
        let ls = listeners(&["0.0.0.0:8000", "127.0.0.1:8081", "[::1]:9464"]);
        let own = |b: &str| own_listener(b, &ls).map(|l| l.addr.to_string());
        assert_eq!(own("127.0.0.1:8000").as_deref(), Some("0.0.0.0:8000"));
        assert_eq!(own("localhost:8000").as_deref(), Some("0.0.0.0:8000"));
        assert_eq!(own("0.0.0.0:8081").as_deref(), Some("127.0.0.1:8081"));
        assert_eq!(own("LOCALHOST.:9464").as_deref(), Some("[::1]:9464"));
        assert_eq!(own("127.0.0.1:3001"), None);
        assert_eq!(
            own("10.0.0.5:8000"),
            None,
            "without DNS or interfaces: maybe another host"
        );
        assert_eq!(own("example.com:8081"), None);
        assert_eq!(own("[::1]:8000"), None, "0.0.0.0 takes no IPv6 connections");
    }
}
