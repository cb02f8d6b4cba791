//! The domain model: validated names, virtual hosts and backends as the registry keeps them.

mod access;
mod transport;

/// A CIDR network (`10.0.0.0/8`), as the access lists and `trusted_proxies` hold them.
pub use ipnet::IpNet;

pub use access::{
    parse_cidr, parse_cidrs, AccessPatch, AccessProblem, AccessSettings, MAX_ACCESS_ENTRIES,
    MAX_RATE,
};

pub use transport::{
    address_host, check_server_name, BackendProtocol, HealthCheck, TransportSettings,
};

pub mod names;

pub use names::{BackendId, DomainName, Tag};

/// Highest weight a backend may carry within its pool.
pub const MAX_WEIGHT: u32 = 1000;

use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, ToSocketAddrs};

// === address ===

/// Checks the `host:port` shape of a backend address without resolving it.
pub fn check_address_shape(address: &str) -> Result<(), String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("address '{address}' has an invalid port '0'"));
        }
        return Ok(());
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!(
            "address '{address}' must be host:port (a port is required)"
        ));
    };
    if port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
        return Err(format!("address '{address}' has an invalid port '{port}'"));
    }
    if host.is_empty() || host.contains(':') || DomainName::parse(host).is_err() {
        return Err(format!("address '{address}' has an invalid host '{host}'"));
    }
    Ok(())
}

/// Whether connecting to `addr` reaches one of `own` (a listener of this proxy): the same port
/// on the same IP, or on a loopback or unspecified IP when the listener is on all interfaces or
/// on loopback.
pub fn is_own_address(addr: SocketAddr, own: &[SocketAddr]) -> bool {
    let local = |ip: std::net::IpAddr| ip.is_loopback() || ip.is_unspecified();
    own.iter().any(|o| {
        o.port() == addr.port()
            && (o.ip() == addr.ip()
                || (o.ip().is_unspecified() && local(addr.ip()))
                || (o.ip().is_loopback() && addr.ip().is_unspecified()))
    })
}

/// Resolves a `host:port` backend address (host names through DNS) to its first socket address.
pub fn resolve_address(address: &str) -> Result<SocketAddr, String> {
    check_address_shape(address)?;
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut addrs = address
        .to_socket_addrs()
        .map_err(|e| format!("address '{address}' does not resolve: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("address '{address}' resolves to no IP address"))
}

// === records ===

/// Load-balancing policy within a tag's pool (see [`crate::routing::Policy`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Fewest in-flight requests.
    LeastConn,
    /// Consistent hash of the client IP.
    IpHash,
    /// Consistent hash of a request header.
    HeaderHash,
}

impl LbPolicy {
    /// The policy's name as written in config and API.
    pub fn as_str(self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "round_robin",
            LbPolicy::LeastConn => "least_conn",
            LbPolicy::IpHash => "ip_hash",
            LbPolicy::HeaderHash => "header_hash",
        }
    }
}

/// A virtual host as the registry keeps and persists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Domain)]
pub struct DomainRecord {
    /// The host name (exact or `*.` wildcard).
    pub domain: DomainName,
    /// The tag whose backends serve the domain.
    pub enabled_backends_tag: Tag,
    /// The tag served before the last switch.
    #[serde(default)]
    #[schema(required = true)]
    pub previous_tag: Option<Tag>,
    /// Redirect plain HTTP to HTTPS.
    #[serde(default)]
    #[schema(required = true)]
    pub http_to_https: bool,
    /// Backend choice within the pool.
    #[serde(default)]
    #[schema(required = true)]
    pub lb_policy: LbPolicy,
    /// Header hashed by `header_hash`.
    #[serde(default)]
    #[schema(required = true)]
    pub lb_hash_header: Option<String>,
    /// The traffic split between tags; null when all traffic goes to `enabled_backends_tag`.
    #[serde(default)]
    #[schema(required = true, value_type = Option<std::collections::BTreeMap<Tag, u32>>)]
    pub weights: Option<crate::rollout::Weights>,
    /// Keep each client on the tag it first got (a cookie), while the split lasts.
    #[serde(default)]
    #[schema(required = true)]
    pub sticky: bool,
    /// When a failing canary of the split is rolled back.
    #[serde(default)]
    #[schema(required = true)]
    pub rollback: Option<crate::rollout::RollbackPolicy>,
    /// The last automatic rollback.
    #[serde(default)]
    #[schema(required = true)]
    pub last_rollback: Option<crate::rollout::LastRollback>,
    /// Who may use the domain, and how fast.
    #[serde(flatten)]
    pub access: AccessSettings,
}

impl DomainRecord {
    /// A domain served by `tag`, every other field at its default (no redirect, round robin,
    /// no split, no access control).
    pub fn new(domain: DomainName, tag: Tag) -> Self {
        Self {
            domain,
            enabled_backends_tag: tag,
            previous_tag: None,
            http_to_https: false,
            lb_policy: LbPolicy::default(),
            lb_hash_header: None,
            weights: None,
            sticky: false,
            rollback: None,
            last_rollback: None,
            access: AccessSettings::default(),
        }
    }

    /// The routing as history records it.
    pub fn routing(&self) -> crate::rollout::Routing {
        crate::rollout::Routing {
            tag: self.enabled_backends_tag.clone(),
            weights: self.weights.clone(),
        }
    }

    /// The tags that get traffic: those of the split with a weight above zero, else the
    /// enabled tag.
    pub fn serving_tags(&self) -> Vec<&Tag> {
        match &self.weights {
            Some(w) => w.iter().filter(|(_, w)| **w > 0).map(|(t, _)| t).collect(),
            None => vec![&self.enabled_backends_tag],
        }
    }
}

/// A backend as the registry keeps and persists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackendRecord {
    /// Unique id.
    pub id: BackendId,
    /// `host:port` as given.
    pub address: String,
    /// Tags whose pools include this backend.
    #[schema(value_type = std::collections::BTreeSet<Tag>)]
    pub tags: Vec<Tag>,
    /// Share of its pool under round robin, 1..=1000.
    #[serde(default = "default_weight")]
    #[schema(required = true, minimum = 1, maximum = 1000)]
    pub weight: u32,
    /// In-flight cap; 0 = none.
    #[serde(default)]
    #[schema(required = true, maximum = 4294967295_u64)]
    pub max_connections: u32,
    /// Protocol, TLS settings and probe kind.
    #[serde(flatten)]
    pub transport: TransportSettings,
}

/// The default backend weight.
pub fn default_weight() -> u32 {
    1
}

impl BackendRecord {
    /// Whether the backend carries `tag`.
    pub fn has_tag(&self, tag: &Tag) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// The record as the API shows it: the server name filled in when it is the default.
    pub fn with_defaults_shown(&self) -> Self {
        let mut shown = self.clone();
        shown.transport.tls_server_name = Some(self.transport.server_name(&self.address));
        shown
    }
}

/// Checks a backend weight.
pub fn check_weight(weight: u32) -> Result<(), String> {
    if (1..=MAX_WEIGHT).contains(&weight) {
        Ok(())
    } else {
        Err(format!("weight {weight} is out of range 1..={MAX_WEIGHT}"))
    }
}

/// Checks a tag list: non-empty, no duplicates.
pub fn check_tags(tags: &[Tag]) -> Result<(), String> {
    if tags.is_empty() {
        return Err("a backend needs at least one tag".into());
    }
    for (i, t) in tags.iter().enumerate() {
        if tags[..i].contains(t) {
            return Err(format!("tag '{t}' is listed twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_addresses_are_recognised() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let own = [a("127.0.0.1:8080"), a("0.0.0.0:80")];
        assert!(is_own_address(a("127.0.0.1:8080"), &own));
        assert!(is_own_address(a("0.0.0.0:8080"), &own));
        assert!(is_own_address(a("127.0.0.1:80"), &own));
        assert!(is_own_address(a("[::1]:80"), &own));
        assert!(!is_own_address(a("127.0.0.1:8081"), &own));
        assert!(!is_own_address(a("10.0.0.5:8080"), &own));
    }

    #[test]
    fn domain_names_are_normalised() {
        assert_eq!(
            DomainName::parse("App.Example.COM.").unwrap().as_str(),
            "app.example.com"
        );
        assert_eq!(
            DomainName::parse("*.example.com")
                .unwrap()
                .wildcard_suffix(),
            Some("example.com")
        );
        for bad in [
            "", "a..b", "-a.com", "a b.com", "*.", "a.*.com", "exa mple", "x:80",
        ] {
            assert!(DomainName::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn addresses_need_a_port() {
        assert!(check_address_shape("127.0.0.1:80").is_ok());
        assert!(check_address_shape("[::1]:80").is_ok());
        assert!(check_address_shape("localhost:3000").is_ok());
        for bad in [
            "127.0.0.1",
            "localhost",
            ":80",
            "host:0",
            "host:x",
            "a b:80",
        ] {
            assert!(check_address_shape(bad).is_err(), "{bad} accepted");
        }
        assert!(resolve_address("localhost:3000").is_ok());
    }
}
