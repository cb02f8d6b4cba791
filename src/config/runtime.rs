//! The validated configuration: what the running system uses, converted once from the file.

use super::LoggingConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use vhost_actors::cert::AcmeSettings;
use vhost_actors::health::HealthSettings;
use vhost_actors::model::DomainName;
use vhost_actors::store::{EtcdSettings, PersistedState};

/// The validated configuration the daemon runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Plain-HTTP listener.
    pub listen_http: Option<SocketAddr>,
    /// HTTPS listener.
    pub listen_https: Option<SocketAddr>,
    /// ACME settings, when `[lets_encrypt]` is set.
    pub acme: Option<AcmeSettings>,
    /// `[[certificates]]`, checked readable and matching.
    pub certificates: Vec<ManualCertificate>,
    /// Admin API listener.
    pub admin_addr: SocketAddr,
    /// Prometheus listener (`/metrics`), when `[metrics]` is present and enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Proxy worker threads.
    pub threads: usize,
    /// Bearer token for the admin API.
    pub admin_token: Option<String>,
    /// Drain time on SIGTERM.
    pub grace_period: Duration,
    /// The domain whose certificate a TLS client without SNI gets.
    pub default_sni: Option<DomainName>,
    /// HTTP/2 by prior knowledge on the plain listener.
    pub h2c: bool,
    /// Peers whose `X-Forwarded-For` is believed (empty: none).
    pub trusted_proxies: Vec<vhost_actors::model::IpNet>,
    /// State file.
    pub state_path: PathBuf,
    /// `[state] backend = "etcd"`: the shared store instead of the file.
    pub etcd: Option<EtcdSettings>,
    /// Logging.
    pub logging: LoggingConfig,
    /// Request-path limits and timeouts.
    pub limits: Limits,
    /// Active health probes; `None` when `[health_check] enabled = false`.
    pub health_check: Option<HealthSettings>,
    /// Failures in a row (probes or real traffic) that make a backend unhealthy.
    pub unhealthy_threshold: u32,
    /// Domains and backends to seed the registry with when there is no state file.
    pub seed: PersistedState,
    /// Settings accepted but without effect here (e.g. ACME without an HTTPS listener), one line each.
    pub warnings: Vec<String>,
    /// Problems of the environment rather than the file (e.g. `[state.etcd] username` without
    /// its password variable): `check` warns of them, `run` refuses to start on them.
    pub refused_at_start: Vec<String>,
}

/// A `[[certificates]]` entry.
#[derive(Clone, Debug)]
pub struct ManualCertificate {
    /// The domain it serves (exact or wildcard).
    pub domain: DomainName,
    /// PEM chain.
    pub cert_path: PathBuf,
    /// PEM private key.
    pub key_path: PathBuf,
}

/// Request-path limits and timeouts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest proxied request body.
    pub max_request_body_bytes: u64,
    /// Largest admin API body.
    pub max_admin_body_bytes: usize,
    /// Upstream connect timeout.
    pub upstream_connect_timeout: Duration,
    /// Upstream read timeout.
    pub upstream_read_timeout: Duration,
    /// Downstream keep-alive idle timeout.
    pub client_idle_timeout: Duration,
    /// Time a client has for a whole request head.
    pub client_header_timeout: Duration,
    /// Time a client may take nothing of a response before it is dropped.
    pub client_send_timeout: Duration,
    /// Largest request head (request line and headers).
    pub max_request_header_bytes: usize,
}
