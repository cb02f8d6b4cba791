//! The client's address: the TCP peer's, unless the peer is one of `[proxy] trusted_proxies`;
//! then the rightmost `X-Forwarded-For` entry outside them. Access control, rate limits,
//! `ip_hash`, the access log and the `X-Forwarded-For` sent upstream all use it.

use http::header::{HeaderMap, HeaderValue};
use std::net::{IpAddr, SocketAddr};
use vhost_actors::model::IpNet;

/// The client a request is from, as far as this proxy can tell.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientAddress {
    /// The client's IP address (none for a Unix-socket peer).
    pub ip: Option<IpAddr>,
    /// When the address came from `X-Forwarded-For`: the entries up to and including it, the
    /// `X-Forwarded-For` to send upstream (the trusted hops after the client are this side's
    /// own network). None: the client's `X-Forwarded-For` gets the address appended.
    pub forwarded_for: Option<HeaderValue>,
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Decides the client's address from the TCP `peer` and the request's headers.
///
/// Walks `X-Forwarded-For` from the right while the hop is trusted: the first entry outside
/// `trusted` is the client. An entry that is not an address ends the walk at the last trusted
/// hop (whatever is left of it could be anything), and so does the list's end.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> ClientAddress {
    let peer = peer.map(|ip| ip.to_canonical());
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let untouched = ClientAddress {
        ip: peer,
        forwarded_for: None,
    };
    if trusted.is_empty() || !peer.as_ref().is_some_and(is_trusted) {
        return untouched;
    }
    let mut values = headers.get_all(X_FORWARDED_FOR).iter();
    let joined;
    let list: &[u8] = match (values.next(), values.next()) {
        (None, _) => return untouched,
        (Some(one), None) => one.as_bytes(),
        (Some(first), Some(second)) => {
            joined = [first, second]
                .into_iter()
                .chain(values)
                .map(HeaderValue::as_bytes)
                .collect::<Vec<_>>()
                .join(&b", "[..]);
            &joined
        }
    };
    // (address, end of its entry in `list`) of the last hop accepted.
    let mut found: Option<(IpAddr, usize)> = None;
    let mut end = list.len();
    loop {
        let start = memchr::memrchr(b',', &list[..end]).map_or(0, |comma| comma + 1);
        let Some(ip) = parse_entry(&list[start..end]) else {
            break;
        };
        found = Some((ip, end));
        if !is_trusted(&ip) || start == 0 {
            break;
        }
        end = start - 1;
    }
    match found {
        Some((ip, end)) => ClientAddress {
            ip: Some(ip),
            forwarded_for: HeaderValue::from_bytes(list[..end].trim_ascii()).ok(),
        },
        None => untouched,
    }
}

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address, optionally with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`) as some proxies write it.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry.trim_ascii()).ok()?;
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn decide(peer: &str, xff: &[&str], trusted: &[&str]) -> (String, Option<String>) {
        let c = client_address(Some(peer.parse().unwrap()), &headers(xff), &nets(trusted));
        (
            c.ip.map_or("-".into(), |ip| ip.to_string()),
            c.forwarded_for.map(|v| v.to_str().unwrap().to_string()),
        )
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        assert_eq!(
            decide("192.0.2.9", &["203.0.113.7"], &[]),
            ("192.0.2.9".into(), None)
        );
        assert_eq!(
            decide("192.0.2.9", &["203.0.113.7"], &["10.0.0.0/8"]),
            ("192.0.2.9".into(), None)
        );
    }

    #[test]
    fn a_trusted_peer_names_the_rightmost_untrusted_entry() {
        let t = ["10.0.0.0/8", "127.0.0.1/32"];
        assert_eq!(
            decide("127.0.0.1", &["203.0.113.7"], &t),
            ("203.0.113.7".into(), Some("203.0.113.7".into()))
        );
        // A client that forges entries to the left cannot choose its address.
        assert_eq!(
            decide("127.0.0.1", &["1.1.1.1, 203.0.113.7, 10.0.0.2"], &t),
            ("203.0.113.7".into(), Some("1.1.1.1, 203.0.113.7".into()))
        );
        // Several headers are one list, in order.
        assert_eq!(
            decide("10.1.1.1", &["198.51.100.1", "10.0.0.3"], &t),
            ("198.51.100.1".into(), Some("198.51.100.1".into()))
        );
        // Every entry trusted: the leftmost.
        assert_eq!(
            decide("10.1.1.1", &["10.0.0.5, 10.0.0.3"], &t),
            ("10.0.0.5".into(), Some("10.0.0.5".into()))
        );
        // Garbage ends the walk at the last trusted hop.
        assert_eq!(
            decide("10.1.1.1", &["unknown, 10.0.0.3"], &t),
            ("10.0.0.3".into(), Some("unknown, 10.0.0.3".into()))
        );
        assert_eq!(
            decide("10.1.1.1", &["10.0.0.3, junk"], &t),
            ("10.1.1.1".into(), None)
        );
        assert_eq!(decide("10.1.1.1", &[], &t), ("10.1.1.1".into(), None));
        // Ports and brackets, and IPv4-mapped IPv6 peers.
        assert_eq!(
            decide("::ffff:10.1.1.1", &["[2001:db8::7]:4711"], &t),
            ("2001:db8::7".into(), Some("[2001:db8::7]:4711".into()))
        );
    }
}
