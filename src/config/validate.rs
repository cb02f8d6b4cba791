//! Validation of the file's values into a [`Config`], one function per section; every problem
//! is collected, not just the first.

mod access;
mod certificates;
mod state;

use super::listeners::{self, Listener};
use super::problem::{KeyPath, Problem, Problems};
use super::schema::{
    BackendSection, ConfigFile, HealthCheckSection, LimitsSection, MetricsSection, ProxySection,
    VirtualHostSection,
};
use super::{Config, Env, Limits, LogOutput, LoggingConfig, ADMIN_TOKEN_VAR};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;
use vhost_actors::health::HealthSettings;
use vhost_actors::model::{
    check_address_shape, check_tags, check_weight, BackendId, BackendRecord, DomainName,
    DomainRecord, Tag, TransportSettings,
};
use vhost_actors::registry::check_policy;
use vhost_actors::store::PersistedState;
use vhost_actors::upstream::load_ca_file;

/// The longest drain on SIGTERM or upgrade: longer waits only hide a stuck process.
const MAX_GRACE_SECS: u64 = 3600;

/// Checks every section of `f`; the error lists every problem found.
pub(super) fn validate(f: ConfigFile, env: &Env) -> Result<Config, Vec<Problem>> {
    let mut errs = Problems::default();
    let mut warnings = Vec::new();
    let proxy = proxy(&f.proxy, env, &mut errs);
    let mut refused_at_start = Vec::new();
    let etcd = state::state(
        &f.state,
        env,
        &mut errs,
        &mut warnings,
        &mut refused_at_start,
    );
    let acme = f
        .lets_encrypt
        .as_ref()
        .map(|le| certificates::lets_encrypt(le, &f.proxy, &mut errs, &mut warnings));
    let certificates =
        certificates::certificates(&f.certificates, &f.proxy, &mut errs, &mut warnings);
    logging(&f.logging, &mut errs);
    let metrics_addr = metrics(f.metrics.as_ref(), &mut errs);
    let listeners = own_listeners(&proxy, metrics_addr);
    listeners::check_distinct(&listeners, &mut errs);
    let health_check = health_check(&f.health_check, &mut errs);
    let limits = limits(&f.limits, &mut errs);
    let backends = backends(&f.backends, &listeners, &mut errs);
    let domains = virtual_hosts(&f.virtual_hosts, &backends, &mut errs);
    let default_sni = default_sni(f.proxy.default_sni.as_deref(), &domains, &mut errs);
    let trusted_proxies = access::trusted_proxies(f.proxy.trusted_proxies.as_deref(), &mut errs);

    let admin_addr = match proxy.admin_addr {
        Some(a) if errs.is_empty() => a,
        _ => return Err(errs.into_vec()),
    };
    Ok(Config {
        listen_http: proxy.listen_http,
        listen_https: proxy.listen_https,
        acme,
        certificates,
        admin_addr,
        metrics_addr,
        threads: f.proxy.threads,
        admin_token: proxy.admin_token,
        grace_period: Duration::from_secs(f.proxy.grace_period_secs),
        default_sni,
        h2c: f.proxy.h2c,
        trusted_proxies,
        state_path: f.state.path,
        etcd,
        logging: f.logging,
        limits,
        health_check,
        unhealthy_threshold: f.health_check.unhealthy_threshold,
        seed: PersistedState {
            version: PersistedState::VERSION,
            domains,
            backends,
            history: Default::default(),
        },
        warnings,
        refused_at_start,
    })
}

/// Parses an `ip:port` listener address.
fn socket_addr(key: KeyPath, v: &str, errs: &mut Problems) -> Option<SocketAddr> {
    match v.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(key, format!("'{v}' is not an ip:port address"));
            None
        }
    }
}

// === [proxy] ===

/// What `[proxy]` yields beyond the values copied as they are.
struct ProxyParts {
    listen_https: Option<SocketAddr>,
    listen_http: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    admin_token: Option<String>,
}

fn proxy(p: &ProxySection, env: &Env, errs: &mut Problems) -> ProxyParts {
    let at = KeyPath::section("proxy");
    let listen_https = p
        .listen_addr
        .as_deref()
        .and_then(|v| socket_addr(at.key("listen_addr"), v, errs));
    let listen_http = p
        .listen_addr_http
        .as_deref()
        .and_then(|v| socket_addr(at.key("listen_addr_http"), v, errs));
    if p.listen_addr.is_none() && p.listen_addr_http.is_none() {
        errs.push(
            at.clone(),
            "set listen_addr_http or listen_addr (at least one listener)",
        );
    }
    let admin_addr = socket_addr(at.key("management_api_addr"), &p.management_api_addr, errs);
    if p.threads == 0 || p.threads > 1024 {
        errs.push(
            at.key("threads"),
            format!("{} is out of range 1..=1024", p.threads),
        );
    }
    if p.grace_period_secs == 0 {
        errs.push(at.key("grace_period_secs"), "must be > 0");
    } else if p.grace_period_secs > MAX_GRACE_SECS {
        errs.push(
            at.key("grace_period_secs"),
            format!("{} is over {MAX_GRACE_SECS} (an hour)", p.grace_period_secs),
        );
    }
    let admin_token = env
        .admin_token()
        .map(str::to_string)
        .or_else(|| p.admin_token.clone());
    if matches!(&admin_token, Some(t) if t.trim().is_empty()) {
        errs.push(at.key("admin_token"), "must not be empty");
    }
    if let Some(a) = admin_addr {
        if !a.ip().is_loopback() && admin_token.is_none() {
            errs.push(
                at.key("management_api_addr"),
                format!(
                    "{a} is not a loopback address; set admin_token \
                     (or {ADMIN_TOKEN_VAR}) to expose the admin API"
                ),
            );
        }
    }
    ProxyParts {
        listen_https,
        listen_http,
        admin_addr,
        admin_token,
    }
}

/// `[proxy] default_sni`: one of the configured domains.
fn default_sni(
    name: Option<&str>,
    domains: &[DomainRecord],
    errs: &mut Problems,
) -> Option<DomainName> {
    let key = KeyPath::section("proxy").key("default_sni");
    let domain = DomainName::parse(name?)
        .map_err(|e| errs.push(key.clone(), e))
        .ok()?;
    if domains.iter().any(|d| d.domain == domain) {
        Some(domain)
    } else {
        errs.push(
            key,
            format!("'{domain}' is not a configured domain (no [[virtual_hosts]] entry has it)"),
        );
        None
    }
}

/// Every address this process will listen on, with the key that sets it.
fn own_listeners(proxy: &ProxyParts, metrics_addr: Option<SocketAddr>) -> Vec<Listener> {
    let at = KeyPath::section("proxy");
    [
        (at.key("listen_addr"), proxy.listen_https),
        (at.key("listen_addr_http"), proxy.listen_http),
        (at.key("management_api_addr"), proxy.admin_addr),
        (KeyPath::section("metrics").key("listen_addr"), metrics_addr),
    ]
    .into_iter()
    .filter_map(|(key, addr)| Some(Listener { key, addr: addr? }))
    .collect()
}

// === [logging], [metrics], [health_check], [limits] ===

fn logging(l: &LoggingConfig, errs: &mut Problems) {
    let at = KeyPath::section("logging");
    if !["trace", "debug", "info", "warn", "error"].contains(&l.level.as_str()) {
        errs.push(
            at.key("level"),
            format!("'{}' is not one of trace|debug|info|warn|error", l.level),
        );
    }
    if l.output == LogOutput::File && l.file_path.is_none() {
        errs.push(at.key("file_path"), "required when output = \"file\"");
    }
}

fn metrics(m: Option<&MetricsSection>, errs: &mut Problems) -> Option<SocketAddr> {
    let m = m?;
    let key = KeyPath::section("metrics").key("listen_addr");
    socket_addr(key, &m.listen_addr, errs).filter(|_| m.enabled)
}

fn health_check(h: &HealthCheckSection, errs: &mut Problems) -> Option<HealthSettings> {
    let at = KeyPath::section("health_check");
    for (key, v) in [
        ("interval_secs", h.interval_secs),
        ("timeout_secs", h.timeout_secs),
        ("unhealthy_threshold", u64::from(h.unhealthy_threshold)),
        ("healthy_threshold", u64::from(h.healthy_threshold)),
    ] {
        if v == 0 {
            errs.push(at.key(key), "must be > 0");
        }
    }
    if !h.path.starts_with('/') {
        errs.push(at.key("path"), format!("'{}' must start with '/'", h.path));
    } else if !is_uri_path(&h.path) {
        errs.push(
            at.key("path"),
            format!(
                "'{}' is not an absolute URI path (no spaces, control characters or '#'; \
                 percent-encode them)",
                h.path.escape_debug()
            ),
        );
    }
    h.enabled.then(|| HealthSettings {
        interval: Duration::from_secs(h.interval_secs),
        timeout: Duration::from_secs(h.timeout_secs),
        unhealthy_threshold: h.unhealthy_threshold,
        healthy_threshold: h.healthy_threshold,
        path: h.path.clone(),
    })
}

/// Whether `path` goes into a request line as written: a path, maybe a query, nothing that
/// `http` would refuse or cut off (a fragment).
fn is_uri_path(path: &str) -> bool {
    path.parse::<http::uri::PathAndQuery>()
        .is_ok_and(|p| p.as_str() == path)
}

fn limits(l: &LimitsSection, errs: &mut Problems) -> Limits {
    let at = KeyPath::section("limits");
    for (key, v) in [
        ("max_request_body_bytes", l.max_request_body_bytes),
        ("max_admin_body_bytes", l.max_admin_body_bytes),
        ("upstream_connect_timeout_ms", l.upstream_connect_timeout_ms),
        ("upstream_read_timeout_secs", l.upstream_read_timeout_secs),
        ("client_idle_timeout_secs", l.client_idle_timeout_secs),
        ("client_header_timeout_secs", l.client_header_timeout_secs),
        ("client_send_timeout_secs", l.client_send_timeout_secs),
        ("max_request_header_bytes", l.max_request_header_bytes),
    ] {
        if v == 0 {
            errs.push(at.key(key), "must be > 0");
        }
    }
    Limits {
        max_request_body_bytes: l.max_request_body_bytes,
        max_admin_body_bytes: usize::try_from(l.max_admin_body_bytes).unwrap_or(usize::MAX),
        upstream_connect_timeout: Duration::from_millis(l.upstream_connect_timeout_ms),
        upstream_read_timeout: Duration::from_secs(l.upstream_read_timeout_secs),
        client_idle_timeout: Duration::from_secs(l.client_idle_timeout_secs),
        client_header_timeout: Duration::from_secs(l.client_header_timeout_secs),
        client_send_timeout: Duration::from_secs(l.client_send_timeout_secs),
        max_request_header_bytes: usize::try_from(l.max_request_header_bytes).unwrap_or(usize::MAX),
    }
}

// === [[backends]], [[virtual_hosts]] ===

fn backends(
    list: &[BackendSection],
    listeners: &[Listener],
    errs: &mut Problems,
) -> Vec<BackendRecord> {
    let mut backends = Vec::new();
    let mut seen_ids = HashSet::new();
    for (i, b) in list.iter().enumerate() {
        let at = KeyPath::section("backends").index(i);
        let id = BackendId::parse(&b.id)
            .map_err(|e| errs.push(at.key("id"), e))
            .ok();
        if let Some(id) = &id {
            if !seen_ids.insert(id.clone()) {
                errs.push(at.key("id"), format!("'{id}' is used by another backend"));
            }
        }
        if let Err(e) = check_address_shape(&b.address) {
            errs.push(at.key("address"), e);
        } else if let Some(own) = listeners::own_listener(&b.address, listeners) {
            errs.push(
                at.key("address"),
                format!(
                    "'{}' is this proxy's own {} = {}: its requests would come back into \
                     this process",
                    b.address, own.key, own.addr
                ),
            );
        }
        let mut tags = Vec::new();
        for t in &b.tags {
            match Tag::parse(t) {
                Ok(t) => tags.push(t),
                Err(e) => errs.push(at.key("tags"), e),
            }
        }
        if tags.len() == b.tags.len() {
            if let Err(e) = check_tags(&tags) {
                errs.push(at.key("tags"), e);
            }
        }
        if let Err(e) = check_weight(b.weight) {
            errs.push(at.key("weight"), e);
        }
        let transport = transport(b, &at, errs);
        if let Some(id) = id {
            backends.push(BackendRecord {
                id,
                address: b.address.clone(),
                tags,
                weight: b.weight,
                max_connections: b.max_connections,
                transport,
            });
        }
    }
    backends
}

/// A backend's protocol settings, checked together; its CA file read and parsed.
fn transport(b: &BackendSection, at: &KeyPath, errs: &mut Problems) -> TransportSettings {
    let t = TransportSettings {
        protocol: b.protocol,
        tls_server_name: b.tls_server_name.clone(),
        tls_verify: b.tls_verify,
        tls_ca_file: b.tls_ca_file.clone(),
        health_check: b.health_check,
    }
    .normalized();
    match t.check() {
        Err(e) => errs.push(at.clone(), e),
        Ok(()) => {
            if let Some(path) = &t.tls_ca_file {
                if let Err(e) = load_ca_file(path) {
                    errs.push(at.key("tls_ca_file"), e);
                }
            }
        }
    }
    t
}

fn virtual_hosts(
    list: &[VirtualHostSection],
    backends: &[BackendRecord],
    errs: &mut Problems,
) -> Vec<DomainRecord> {
    let mut domains = Vec::new();
    let mut seen_domains = HashSet::new();
    for (i, v) in list.iter().enumerate() {
        let at = KeyPath::section("virtual_hosts").index(i);
        let domain = DomainName::parse(&v.domain)
            .map_err(|e| errs.push(at.key("domain"), e))
            .ok();
        if let Some(d) = &domain {
            if !seen_domains.insert(d.clone()) {
                errs.push(at.key("domain"), format!("'{d}' is listed twice"));
            }
        }
        let tag = Tag::parse(&v.enabled_backends_tag)
            .map_err(|e| errs.push(at.key("enabled_backends_tag"), e))
            .ok();
        if let Some(t) = &tag {
            if !backends.iter().any(|b| b.has_tag(t)) {
                errs.push(
                    at.key("enabled_backends_tag"),
                    format!("no backend carries tag '{t}'"),
                );
            }
        }
        if let Err(e) = check_policy(v.lb_policy, v.lb_hash_header.as_deref()) {
            errs.push(at.clone(), e);
        }
        let access = access::access(v, &at, errs);
        if let (Some(domain), Some(tag)) = (domain, tag) {
            domains.push(DomainRecord {
                http_to_https: v.http_to_https,
                lb_policy: v.lb_policy,
                lb_hash_header: v.lb_hash_header.clone(),
                access,
                ..DomainRecord::new(domain, tag)
            });
        }
    }
    domains
}
