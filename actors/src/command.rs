//! The typed change vocabulary: what the API asks of the registry, replayed the same way by
//! persistence and tests. Inputs carry raw values; the registry validates them.

use crate::model::{BackendProtocol, BackendRecord, DomainRecord, HealthCheck, LbPolicy};
use crate::upstream::HealthReading;
use serde::{Deserialize, Serialize};

/// A new virtual host (`POST /api/v1/domains`).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// Host name.
    #[schema(
        example = "app.example.com",
        max_length = 253,
        pattern = "^(\\*\\.)?[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\\.?$"
    )]
    pub domain: String,
    /// Tag to serve.
    #[schema(example = "a", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub enabled_backends_tag: String,
    /// Redirect plain HTTP to HTTPS.
    #[serde(default)]
    pub http_to_https: bool,
    /// Backend choice policy.
    #[serde(default)]
    pub lb_policy: Option<LbPolicy>,
    /// Header hashed by `header_hash`.
    #[serde(default)]
    pub lb_hash_header: Option<String>,
    /// CIDRs (or addresses) whose clients may use the domain; others get `403`.
    #[serde(default)]
    #[schema(example = json!(["10.0.0.0/8"]))]
    pub allow: Option<Vec<String>>,
    /// CIDRs (or addresses) whose clients get `403`; deny wins over allow.
    #[serde(default)]
    #[schema(example = json!(["10.0.0.66/32"]))]
    pub deny: Option<Vec<String>>,
    /// Requests per second per client IP; above: `429` with `Retry-After`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000000)]
    pub rate_limit_rps: Option<u32>,
    /// Burst per client IP; defaults to `rate_limit_rps`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000000)]
    pub rate_limit_burst: Option<u32>,
}

/// A partial domain update (`PUT /api/v1/domains/{domain}`).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainPatch {
    /// Switches to this tag (same checks as `switch`).
    #[serde(default)]
    #[schema(example = "b", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub enabled_backends_tag: Option<String>,
    /// Redirect plain HTTP to HTTPS.
    #[serde(default)]
    pub http_to_https: Option<bool>,
    /// Backend choice policy.
    #[serde(default)]
    pub lb_policy: Option<LbPolicy>,
    /// Header hashed by `header_hash`; `null` clears it.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub lb_hash_header: Option<Option<String>>,
    /// Allowed CIDRs; `null` removes the list.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allow: Option<Option<Vec<String>>>,
    /// Denied CIDRs; `null` removes the list.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub deny: Option<Option<Vec<String>>>,
    /// Requests per second per client IP; `null` removes the rate limit (and its burst).
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000000)]
    pub rate_limit_rps: Option<Option<u32>>,
    /// Burst per client IP; `null` makes it `rate_limit_rps`.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000000)]
    pub rate_limit_burst: Option<Option<u32>>,
    /// Switch even when the target tag has no routable backend.
    #[serde(default)]
    pub force: bool,
}

/// A tag switch (`POST /api/v1/domains/{domain}/switch`).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    /// Target tag; none switches back to `previous_tag` (or between `a` and `b`).
    #[serde(default)]
    #[schema(example = "b", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub new_tag: Option<String>,
    /// Switch even when the target tag has no routable backend.
    #[serde(default)]
    pub force: bool,
}

/// A new backend (`POST /api/v1/backends`).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBackend {
    /// Unique id.
    #[schema(example = "web-v1", pattern = "^[A-Za-z0-9._-]{1,128}$")]
    pub id: String,
    /// `host:port`.
    #[schema(
        example = "127.0.0.1:3001",
        pattern = "^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9_.-]+):([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
    )]
    pub address: String,
    /// Tags, at least one.
    #[schema(
        value_type = std::collections::BTreeSet<crate::model::Tag>,
        example = json!(["a"]),
        min_items = 1
    )]
    pub tags: Vec<String>,
    /// Weight 1..=1000, default 1.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub weight: Option<u32>,
    /// In-flight cap, 0 = none.
    #[serde(default)]
    #[schema(maximum = 4294967295_u64)]
    pub max_connections: Option<u32>,
    /// `http1` (default), `h2c` or `https`.
    #[serde(default)]
    pub protocol: Option<BackendProtocol>,
    /// SNI and verified name, used when the protocol is `https` (kept on any protocol); any
    /// case, stored lower-cased; default: the host of `address`.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Verify the backend's certificate (default true).
    #[serde(default)]
    pub tls_verify: Option<bool>,
    /// Extra trust roots (PEM file), used when the protocol is `https` (kept on any protocol).
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// `http` (default), `grpc` or `tcp`.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
}

/// A partial backend update (`PUT /api/v1/backends/{id}`).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendPatch {
    /// New `host:port`.
    #[serde(default)]
    #[schema(
        example = "127.0.0.1:3002",
        pattern = "^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9_.-]+):([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
    )]
    pub address: Option<String>,
    /// New tag list.
    #[serde(default)]
    #[schema(
        value_type = Option<std::collections::BTreeSet<crate::model::Tag>>,
        min_items = 1
    )]
    pub tags: Option<Vec<String>>,
    /// New weight.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub weight: Option<u32>,
    /// New in-flight cap.
    #[serde(default)]
    #[schema(maximum = 4294967295_u64)]
    pub max_connections: Option<u32>,
    /// New protocol.
    #[serde(default)]
    pub protocol: Option<BackendProtocol>,
    /// New TLS server name; `null` goes back to the host of the address.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub tls_server_name: Option<Option<String>>,
    /// Verify the certificate or not.
    #[serde(default)]
    pub tls_verify: Option<bool>,
    /// New extra trust roots; `null` removes them.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub tls_ca_file: Option<Option<String>>,
    /// New probe kind.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
}

/// A traffic split (`POST /api/v1/domains/{domain}/split`).
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitRequest {
    /// Weight per tag, each a non-negative integer; at least one above zero.
    #[schema(
        value_type = std::collections::BTreeMap<crate::model::Tag, u32>,
        example = json!({"a": 90, "b": 10})
    )]
    pub weights: std::collections::BTreeMap<String, u32>,
    /// Keep each client on the tag it first got.
    #[serde(default)]
    pub sticky: Option<bool>,
    /// Roll a failing canary back automatically.
    #[serde(default)]
    pub rollback: Option<crate::rollout::RollbackPolicy>,
    /// Split even onto a tag with no backend that may take traffic.
    #[serde(default)]
    pub force: bool,
}

/// One change to the registry.
#[derive(Clone, Debug)]
pub enum Command {
    /// Add a virtual host.
    AddDomain(NewDomain),
    /// Change fields of a virtual host.
    UpdateDomain(String, DomainPatch),
    /// Remove a virtual host.
    DeleteDomain(String),
    /// Move a virtual host to another tag.
    SwitchTag(String, SwitchRequest),
    /// Add a backend.
    AddBackend(NewBackend),
    /// Change fields of a backend.
    UpdateBackend(String, BackendPatch),
    /// Split a virtual host's traffic between tags.
    Split(String, SplitRequest),
    /// Restore a virtual host's routing before its last change.
    Undo(String),
    /// End a split whose canary `from_tag` fails (issued by the rollback rule).
    Rollback {
        /// The domain.
        domain: crate::model::DomainName,
        /// The failing tag.
        from_tag: crate::model::Tag,
        /// The measured error share and the rule.
        reason: String,
    },
    /// Remove a backend; `force` allows emptying a tag a domain uses.
    DeleteBackend {
        /// Backend id.
        id: String,
        /// Skip the last-backend check.
        force: bool,
    },
}

/// What a successful command answers with.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The domain after the change.
    Domain(DomainRecord),
    /// The backend after the change.
    Backend(BackendView),
    /// The object is gone.
    Deleted,
}

/// A backend with its live health, as `GET /api/v1/backends` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = Backend)]
pub struct BackendView {
    /// The stored backend.
    #[serde(flatten)]
    pub backend: BackendRecord,
    /// Live health.
    pub health: HealthView,
    /// Requests in flight to the backend right now (what `max_connections` caps).
    pub in_flight: u32,
}

/// The `health` object of a Backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Health)]
pub struct HealthView {
    /// `healthy`, `unhealthy` or `unknown`.
    #[schema(value_type = String, pattern = "^(healthy|unhealthy|unknown)$")]
    pub status: &'static str,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Successes in a row.
    pub consecutive_successes: u32,
    /// RFC 3339 time of the last probe, or null.
    #[schema(format = DateTime, required = true)]
    pub last_check: Option<String>,
}

impl From<HealthReading> for HealthView {
    fn from(r: HealthReading) -> Self {
        let last_check = r.last_check_ms.map(|ms| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
            humantime::format_rfc3339_millis(t).to_string()
        });
        Self {
            status: r.status.as_str(),
            consecutive_failures: r.consecutive_failures,
            consecutive_successes: r.consecutive_successes,
            last_check,
        }
    }
}

/// Serde helper telling a missing field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}
