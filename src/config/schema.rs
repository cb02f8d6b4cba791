//! The file schema: the sections and keys users write, with the defaults of what they leave out.

use serde::Deserialize;
use std::path::PathBuf;
use vhost_actors::model::{BackendProtocol, HealthCheck, LbPolicy};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    #[serde(default)]
    pub(super) proxy: ProxySection,
    #[serde(default)]
    pub(super) state: StateSection,
    #[serde(default)]
    pub(super) lets_encrypt: Option<LetsEncryptSection>,
    #[serde(default)]
    pub(super) certificates: Vec<CertificateSection>,
    #[serde(default)]
    pub(super) logging: LoggingConfig,
    #[serde(default)]
    pub(super) metrics: Option<MetricsSection>,
    #[serde(default)]
    pub(super) health_check: HealthCheckSection,
    #[serde(default)]
    pub(super) limits: LimitsSection,
    #[serde(default)]
    pub(super) virtual_hosts: Vec<VirtualHostSection>,
    #[serde(default)]
    pub(super) backends: Vec<BackendSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProxySection {
    pub(super) listen_addr: Option<String>,
    pub(super) listen_addr_http: Option<String>,
    #[serde(default = "default_admin_addr")]
    pub(super) management_api_addr: String,
    #[serde(default = "default_threads")]
    pub(super) threads: usize,
    pub(super) admin_token: Option<String>,
    #[serde(default = "default_grace")]
    pub(super) grace_period_secs: u64,
    pub(super) default_sni: Option<String>,
    #[serde(default)]
    pub(super) h2c: bool,
    pub(super) trusted_proxies: Option<Vec<String>>,
}

impl Default for ProxySection {
    fn default() -> Self {
        Self {
            listen_addr: None,
            listen_addr_http: None,
            management_api_addr: default_admin_addr(),
            threads: default_threads(),
            admin_token: None,
            grace_period_secs: default_grace(),
            default_sni: None,
            h2c: false,
            trusted_proxies: None,
        }
    }
}

fn default_admin_addr() -> String {
    "127.0.0.1:8080".into()
}
fn default_threads() -> usize {
    2
}
fn default_grace() -> u64 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateSection {
    #[serde(default = "default_state_path")]
    pub(super) path: PathBuf,
    #[serde(default)]
    pub(super) backend: StateBackend,
    #[serde(default)]
    pub(super) etcd: Option<EtcdSection>,
}

impl Default for StateSection {
    fn default() -> Self {
        Self {
            path: default_state_path(),
            backend: StateBackend::default(),
            etcd: None,
        }
    }
}

/// `[state] backend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum StateBackend {
    #[default]
    File,
    Etcd,
}

/// `[state.etcd]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EtcdSection {
    #[serde(default)]
    pub(super) endpoints: Vec<String>,
    #[serde(default = "default_etcd_prefix")]
    pub(super) prefix: String,
    pub(super) username: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
}

fn default_etcd_prefix() -> String {
    "/pingora-vhost/".into()
}

fn default_state_path() -> PathBuf {
    PathBuf::from("data/state.json")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LetsEncryptSection {
    pub(super) email: String,
    #[serde(default)]
    pub(super) staging: bool,
    pub(super) cache_dir: PathBuf,
    pub(super) directory_url: Option<String>,
    pub(super) ca_root: Option<PathBuf>,
    #[serde(default = "default_renew_before")]
    pub(super) renew_before_days: u64,
}

fn default_renew_before() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CertificateSection {
    pub(super) domain: String,
    pub(super) cert_path: PathBuf,
    pub(super) key_path: PathBuf,
}

/// `[logging]`: level, format and destination of logs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// trace|debug|info|warn|error.
    #[serde(default = "default_level")]
    pub level: String,
    /// Line format.
    #[serde(default)]
    pub format: LogFormat,
    /// Destination.
    #[serde(default)]
    pub output: LogOutput,
    /// Directory of rolling files when `output = "file"`.
    #[serde(default)]
    pub file_path: Option<PathBuf>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: default_level(),
            format: LogFormat::Text,
            output: LogOutput::Console,
            file_path: None,
        }
    }
}

fn default_level() -> String {
    "info".into()
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Log destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogOutput {
    /// Standard output.
    #[default]
    Console,
    /// Daily rolling files in `file_path`.
    File,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsSection {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    #[serde(default = "default_metrics_addr")]
    pub(super) listen_addr: String,
}

fn yes() -> bool {
    true
}
/// Loopback: metrics name every domain and backend, so exposing them is the operator's choice;
/// 9464 is the port OpenTelemetry's Prometheus exporters use (9090 is Prometheus's own).
fn default_metrics_addr() -> String {
    "127.0.0.1:9464".into()
}

/// `[health_check]`: active probe settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthCheckSection {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    #[serde(default = "default_interval")]
    pub(super) interval_secs: u64,
    #[serde(default = "default_timeout")]
    pub(super) timeout_secs: u64,
    #[serde(default = "default_unhealthy")]
    pub(super) unhealthy_threshold: u32,
    #[serde(default = "default_healthy")]
    pub(super) healthy_threshold: u32,
    #[serde(default = "default_health_path")]
    pub(super) path: String,
}

impl Default for HealthCheckSection {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: default_interval(),
            timeout_secs: default_timeout(),
            unhealthy_threshold: default_unhealthy(),
            healthy_threshold: default_healthy(),
            path: default_health_path(),
        }
    }
}

fn default_interval() -> u64 {
    10
}
fn default_timeout() -> u64 {
    5
}
fn default_unhealthy() -> u32 {
    3
}
fn default_healthy() -> u32 {
    2
}
fn default_health_path() -> String {
    "/health".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsSection {
    #[serde(default = "default_max_body")]
    pub(super) max_request_body_bytes: u64,
    #[serde(default = "default_max_admin_body")]
    pub(super) max_admin_body_bytes: u64,
    #[serde(default = "default_connect_timeout")]
    pub(super) upstream_connect_timeout_ms: u64,
    #[serde(default = "default_read_timeout")]
    pub(super) upstream_read_timeout_secs: u64,
    #[serde(default = "default_idle_timeout")]
    pub(super) client_idle_timeout_secs: u64,
    #[serde(default = "default_header_timeout")]
    pub(super) client_header_timeout_secs: u64,
    #[serde(default = "default_send_timeout")]
    pub(super) client_send_timeout_secs: u64,
    #[serde(default = "default_max_header")]
    pub(super) max_request_header_bytes: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_request_body_bytes: default_max_body(),
            max_admin_body_bytes: default_max_admin_body(),
            upstream_connect_timeout_ms: default_connect_timeout(),
            upstream_read_timeout_secs: default_read_timeout(),
            client_idle_timeout_secs: default_idle_timeout(),
            client_header_timeout_secs: default_header_timeout(),
            client_send_timeout_secs: default_send_timeout(),
            max_request_header_bytes: default_max_header(),
        }
    }
}

fn default_max_body() -> u64 {
    10 * 1024 * 1024
}
fn default_max_admin_body() -> u64 {
    1024 * 1024
}
fn default_connect_timeout() -> u64 {
    2000
}
fn default_read_timeout() -> u64 {
    60
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_header_timeout() -> u64 {
    10
}
fn default_send_timeout() -> u64 {
    60
}
fn default_max_header() -> u64 {
    32 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VirtualHostSection {
    pub(super) domain: String,
    pub(super) enabled_backends_tag: String,
    #[serde(default)]
    pub(super) http_to_https: bool,
    #[serde(default)]
    pub(super) lb_policy: LbPolicy,
    pub(super) lb_hash_header: Option<String>,
    pub(super) allow: Option<Vec<String>>,
    pub(super) deny: Option<Vec<String>>,
    pub(super) rate_limit_rps: Option<u32>,
    pub(super) rate_limit_burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendSection {
    pub(super) id: String,
    pub(super) address: String,
    #[serde(default)]
    pub(super) tags: Vec<String>,
    #[serde(default = "vhost_actors::model::default_weight")]
    pub(super) weight: u32,
    #[serde(default)]
    pub(super) max_connections: u32,
    #[serde(default)]
    pub(super) protocol: BackendProtocol,
    pub(super) tls_server_name: Option<String>,
    #[serde(default = "yes")]
    pub(super) tls_verify: bool,
    pub(super) tls_ca_file: Option<String>,
    #[serde(default)]
    pub(super) health_check: HealthCheck,
}
