//! The configuration file: its TOML schema (what users write), defaults, and validation into
//! [`Config`] (what the running system uses). Validation reports every problem, one a line.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vhost_actors::cert::{
    AcmeSettings, CertMaterial, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING,
};
use vhost_actors::health::HealthSettings;
use vhost_actors::model::{
    check_address_shape, check_tags, check_weight, BackendId, BackendRecord, DomainName,
    DomainRecord, LbPolicy, Tag,
};
use vhost_actors::registry::check_policy;
use vhost_actors::store::PersistedState;

// === file schema ===

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    proxy: ProxySection,
    #[serde(default)]
    state: StateSection,
    #[serde(default)]
    lets_encrypt: Option<LetsEncryptSection>,
    #[serde(default)]
    certificates: Vec<CertificateSection>,
    #[serde(default)]
    logging: LoggingConfig,
    #[serde(default)]
    metrics: Option<MetricsSection>,
    #[serde(default)]
    health_check: HealthCheckSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    virtual_hosts: Vec<VirtualHostSection>,
    #[serde(default)]
    backends: Vec<BackendSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxySection {
    listen_addr: Option<String>,
    listen_addr_http: Option<String>,
    #[serde(default = "default_admin_addr")]
    management_api_addr: String,
    #[serde(default = "default_threads")]
    threads: usize,
    admin_token: Option<String>,
    #[serde(default = "default_grace")]
    grace_period_secs: u64,
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
struct StateSection {
    #[serde(default = "default_state_path")]
    path: PathBuf,
}

impl Default for StateSection {
    fn default() -> Self {
        Self {
            path: default_state_path(),
        }
    }
}

fn default_state_path() -> PathBuf {
    PathBuf::from("data/state.json")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LetsEncryptSection {
    email: String,
    #[serde(default)]
    staging: bool,
    cache_dir: PathBuf,
    directory_url: Option<String>,
    ca_root: Option<PathBuf>,
    #[serde(default = "default_renew_before")]
    renew_before_days: u64,
}

fn default_renew_before() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateSection {
    domain: String,
    cert_path: PathBuf,
    key_path: PathBuf,
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
struct MetricsSection {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "default_metrics_addr")]
    listen_addr: String,
}

fn yes() -> bool {
    true
}
fn default_metrics_addr() -> String {
    "0.0.0.0:9090".into()
}

/// `[health_check]`: active probe settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthCheckSection {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "default_interval")]
    interval_secs: u64,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    #[serde(default = "default_unhealthy")]
    unhealthy_threshold: u32,
    #[serde(default = "default_healthy")]
    healthy_threshold: u32,
    #[serde(default = "default_health_path")]
    path: String,
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
struct LimitsSection {
    #[serde(default = "default_max_body")]
    max_request_body_bytes: u64,
    #[serde(default = "default_max_admin_body")]
    max_admin_body_bytes: u64,
    #[serde(default = "default_connect_timeout")]
    upstream_connect_timeout_ms: u64,
    #[serde(default = "default_read_timeout")]
    upstream_read_timeout_secs: u64,
    #[serde(default = "default_idle_timeout")]
    client_idle_timeout_secs: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_request_body_bytes: default_max_body(),
            max_admin_body_bytes: default_max_admin_body(),
            upstream_connect_timeout_ms: default_connect_timeout(),
            upstream_read_timeout_secs: default_read_timeout(),
            client_idle_timeout_secs: default_idle_timeout(),
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VirtualHostSection {
    domain: String,
    enabled_backends_tag: String,
    #[serde(default)]
    http_to_https: bool,
    #[serde(default)]
    lb_policy: LbPolicy,
    lb_hash_header: Option<String>,
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
    rate_limit_rps: Option<u32>,
    rate_limit_burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendSection {
    id: String,
    address: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default = "vhost_actors::model::default_weight")]
    weight: u32,
    #[serde(default)]
    max_connections: u32,
}

// === validated config ===

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
    /// State file.
    pub state_path: PathBuf,
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
}

/// Reads and validates a config file; the error lists every problem, one a line.
pub fn load(path: &Path) -> Result<Config, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read config file {}: {e}", path.display())])?;
    parse(&text).map_err(|errs| {
        errs.into_iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect()
    })
}

/// Parses and validates config text.
pub fn parse(text: &str) -> Result<Config, Vec<String>> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| {
        vec![e
            .to_string()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ")]
    })?;
    validate(file)
}

fn validate(f: ConfigFile) -> Result<Config, Vec<String>> {
    let mut errs = Vec::new();
    let mut warnings = Vec::new();
    let addr = |key: &str, v: &str, errs: &mut Vec<String>| match v.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(format!("{key}: '{v}' is not an ip:port address"));
            None
        }
    };

    // [proxy]
    let p = &f.proxy;
    let listen_https = p
        .listen_addr
        .as_deref()
        .and_then(|v| addr("proxy.listen_addr", v, &mut errs));
    let listen_http = p
        .listen_addr_http
        .as_deref()
        .and_then(|v| addr("proxy.listen_addr_http", v, &mut errs));
    if p.listen_addr.is_none() && p.listen_addr_http.is_none() {
        errs.push("proxy: set listen_addr_http or listen_addr (at least one listener)".into());
    }
    let admin_addr = addr(
        "proxy.management_api_addr",
        &p.management_api_addr,
        &mut errs,
    );
    if p.threads == 0 || p.threads > 1024 {
        errs.push(format!(
            "proxy.threads: {} is out of range 1..=1024",
            p.threads
        ));
    }
    if p.grace_period_secs == 0 {
        errs.push("proxy.grace_period_secs: must be > 0".into());
    }
    let admin_token = std::env::var("PINGORA_VHOST_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| p.admin_token.clone());
    if matches!(&admin_token, Some(t) if t.trim().is_empty()) {
        errs.push("proxy.admin_token: must not be empty".into());
    }
    if let Some(a) = admin_addr {
        if !a.ip().is_loopback() && admin_token.is_none() {
            errs.push(format!(
                "proxy.management_api_addr: {a} is not a loopback address; set admin_token \
                 (or PINGORA_VHOST_ADMIN_TOKEN) to expose the admin API"
            ));
        }
    }

    // [state]
    if f.state.path.as_os_str().is_empty() {
        errs.push("state.path: must not be empty".into());
    }

    // [lets_encrypt], [[certificates]]
    let mut acme = None;
    if let Some(le) = &f.lets_encrypt {
        if !le.email.contains('@') {
            errs.push(format!(
                "lets_encrypt.email: '{}' is not an e-mail address",
                le.email
            ));
        }
        if le.cache_dir.as_os_str().is_empty() {
            errs.push("lets_encrypt.cache_dir: must not be empty".into());
        }
        if let Some(u) = &le.directory_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                errs.push(format!(
                    "lets_encrypt.directory_url: '{u}' is not an http(s) URL"
                ));
            }
        }
        if le.renew_before_days == 0 {
            errs.push("lets_encrypt.renew_before_days: must be > 0".into());
        }
        let ca_root_pem = match &le.ca_root {
            Some(path) => std::fs::read(path)
                .map_err(|e| {
                    errs.push(format!(
                        "lets_encrypt.ca_root: cannot read {}: {e}",
                        path.display()
                    ))
                })
                .ok(),
            None => None,
        };
        if p.listen_addr.is_none() {
            warnings.push("lets_encrypt: no HTTPS listener (proxy.listen_addr), so no certificates are ordered".into());
        } else if p.listen_addr_http.is_none() {
            errs.push("lets_encrypt: HTTP-01 challenges are answered on the plain-HTTP listener: set proxy.listen_addr_http (port 80 for Let's Encrypt)".into());
        }
        let directory_url = le.directory_url.clone().unwrap_or_else(|| {
            if le.staging {
                LETS_ENCRYPT_STAGING.to_string()
            } else {
                LETS_ENCRYPT_PRODUCTION.to_string()
            }
        });
        let mut settings = AcmeSettings::new(le.email.clone(), directory_url, le.cache_dir.clone());
        settings.ca_root_pem = ca_root_pem;
        settings.renew_before = Duration::from_secs(le.renew_before_days.saturating_mul(86_400));
        acme = Some(settings);
    }
    let mut certificates = Vec::new();
    for (i, c) in f.certificates.iter().enumerate() {
        let domain = DomainName::parse(&c.domain)
            .map_err(|e| errs.push(format!("certificates[{i}].domain: {e}")))
            .ok();
        match CertMaterial::from_files(&c.cert_path, &c.key_path) {
            Ok(m) => {
                if let Some(d) = &domain {
                    if !m.covers(d.as_str()) {
                        errs.push(format!(
                            "certificates[{i}]: {} does not cover domain '{d}'",
                            c.cert_path.display()
                        ));
                    }
                }
            }
            Err(e) => errs.push(format!("certificates[{i}]: {e}")),
        }
        if let Some(domain) = domain {
            certificates.push(ManualCertificate {
                domain,
                cert_path: c.cert_path.clone(),
                key_path: c.key_path.clone(),
            });
        }
    }
    if (!f.certificates.is_empty()) && p.listen_addr.is_none() {
        warnings.push(
            "certificates: no HTTPS listener (proxy.listen_addr), so they are not served".into(),
        );
    }

    // [logging]
    if !["trace", "debug", "info", "warn", "error"].contains(&f.logging.level.as_str()) {
        errs.push(format!(
            "logging.level: '{}' is not one of trace|debug|info|warn|error",
            f.logging.level
        ));
    }
    if f.logging.output == LogOutput::File && f.logging.file_path.is_none() {
        errs.push("logging.file_path: required when output = \"file\"".into());
    }

    // [metrics]
    let metrics_addr = match &f.metrics {
        Some(m) => addr("metrics.listen_addr", &m.listen_addr, &mut errs).filter(|_| m.enabled),
        None => None,
    };

    // [health_check]
    let h = &f.health_check;
    for (key, v) in [
        ("interval_secs", h.interval_secs),
        ("timeout_secs", h.timeout_secs),
        ("unhealthy_threshold", u64::from(h.unhealthy_threshold)),
        ("healthy_threshold", u64::from(h.healthy_threshold)),
    ] {
        if v == 0 {
            errs.push(format!("health_check.{key}: must be > 0"));
        }
    }
    if !h.path.starts_with('/') {
        errs.push(format!(
            "health_check.path: '{}' must start with '/'",
            h.path
        ));
    }

    // [limits]
    let l = &f.limits;
    for (key, v) in [
        ("max_request_body_bytes", l.max_request_body_bytes),
        ("max_admin_body_bytes", l.max_admin_body_bytes),
        ("upstream_connect_timeout_ms", l.upstream_connect_timeout_ms),
        ("upstream_read_timeout_secs", l.upstream_read_timeout_secs),
        ("client_idle_timeout_secs", l.client_idle_timeout_secs),
    ] {
        if v == 0 {
            errs.push(format!("limits.{key}: must be > 0"));
        }
    }

    // [[backends]]
    let mut backends = Vec::new();
    let mut seen_ids = std::collections::HashSet::new();
    for (i, b) in f.backends.iter().enumerate() {
        let at = format!("backends[{i}]");
        let id = BackendId::parse(&b.id)
            .map_err(|e| errs.push(format!("{at}.id: {e}")))
            .ok();
        if let Some(id) = &id {
            if !seen_ids.insert(id.clone()) {
                errs.push(format!("{at}.id: '{id}' is used by another backend"));
            }
        }
        if let Err(e) = check_address_shape(&b.address) {
            errs.push(format!("{at}.address: {e}"));
        }
        let mut tags = Vec::new();
        for t in &b.tags {
            match Tag::parse(t) {
                Ok(t) => tags.push(t),
                Err(e) => errs.push(format!("{at}.tags: {e}")),
            }
        }
        if tags.len() == b.tags.len() {
            if let Err(e) = check_tags(&tags) {
                errs.push(format!("{at}.tags: {e}"));
            }
        }
        if let Err(e) = check_weight(b.weight) {
            errs.push(format!("{at}.weight: {e}"));
        }
        if let Some(id) = id {
            backends.push(BackendRecord {
                id,
                address: b.address.clone(),
                tags,
                weight: b.weight,
                max_connections: b.max_connections,
            });
        }
    }

    // [[virtual_hosts]]
    let mut domains = Vec::new();
    let mut seen_domains = std::collections::HashSet::new();
    for (i, v) in f.virtual_hosts.iter().enumerate() {
        let at = format!("virtual_hosts[{i}]");
        let domain = DomainName::parse(&v.domain)
            .map_err(|e| errs.push(format!("{at}.domain: {e}")))
            .ok();
        if let Some(d) = &domain {
            if !seen_domains.insert(d.clone()) {
                errs.push(format!("{at}.domain: '{d}' is listed twice"));
            }
        }
        let tag = Tag::parse(&v.enabled_backends_tag)
            .map_err(|e| errs.push(format!("{at}.enabled_backends_tag: {e}")))
            .ok();
        if let Some(t) = &tag {
            if !backends.iter().any(|b| b.has_tag(t)) {
                errs.push(format!(
                    "{at}.enabled_backends_tag: no backend carries tag '{t}'"
                ));
            }
        }
        if let Err(e) = check_policy(v.lb_policy, v.lb_hash_header.as_deref()) {
            errs.push(format!("{at}: {e}"));
        }
        if v.allow.is_some() || v.deny.is_some() {
            errs.push(format!(
                "{at}: allow/deny access lists are not supported yet"
            ));
        }
        if v.rate_limit_rps.is_some() || v.rate_limit_burst.is_some() {
            errs.push(format!("{at}: rate limits are not supported yet"));
        }
        if let (Some(domain), Some(tag)) = (domain, tag) {
            domains.push(DomainRecord {
                domain,
                enabled_backends_tag: tag,
                previous_tag: None,
                http_to_https: v.http_to_https,
                lb_policy: v.lb_policy,
                lb_hash_header: v.lb_hash_header.clone(),
            });
        }
    }

    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Config {
        listen_http,
        listen_https,
        acme,
        certificates,
        admin_addr: admin_addr.expect("validated"),
        metrics_addr,
        threads: p.threads,
        admin_token,
        grace_period: Duration::from_secs(p.grace_period_secs),
        state_path: f.state.path,
        logging: f.logging,
        limits: Limits {
            max_request_body_bytes: l.max_request_body_bytes,
            max_admin_body_bytes: usize::try_from(l.max_admin_body_bytes).unwrap_or(usize::MAX),
            upstream_connect_timeout: Duration::from_millis(l.upstream_connect_timeout_ms),
            upstream_read_timeout: Duration::from_secs(l.upstream_read_timeout_secs),
            client_idle_timeout: Duration::from_secs(l.client_idle_timeout_secs),
        },
        health_check: h.enabled.then(|| HealthSettings {
            interval: Duration::from_secs(h.interval_secs),
            timeout: Duration::from_secs(h.timeout_secs),
            unhealthy_threshold: h.unhealthy_threshold,
            healthy_threshold: h.healthy_threshold,
            path: h.path.clone(),
        }),
        unhealthy_threshold: h.unhealthy_threshold,
        seed: PersistedState {
            version: PersistedState::VERSION,
            domains,
            backends,
        },
        warnings,
    })
}

#[cfg(test)]
mod tests;
