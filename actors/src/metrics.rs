//! Metrics: the Prometheus families, per-route handles the request path bumps without locks or
//! label formatting ([`route`]), the `stats` shapes ([`stats`]) and the MetricsActor that owns
//! what is rendered ([`actor`]).

pub mod actor;
mod exposition;
mod histogram;
mod recent;
mod route;
mod stats;
mod window;

pub use actor::{MetricsActor, MetricsArgs, MetricsMsg, MetricsUpdate};
pub use exposition::{TextFormat, PROMETHEUS_CONTENT_TYPE};
pub use histogram::LatencyHistogram;
pub use recent::LastMinute;
pub use route::RouteMetrics;
pub use stats::{DomainStats, Stats, TrafficStats};
pub use window::OutcomeWindow;

use crate::upstream::UpstreamBackend;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;

/// Label value for requests whose host matched no domain.
pub const UNKNOWN: &str = "_unknown";

/// Content type of the rendered (OpenMetrics) text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    domain: String,
    tag: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    domain: String,
    tag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainLabels {
    domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
    tag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthCheckLabels {
    backend: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

const CODES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// A backend as `pingora_vhost_backend_up` shows it.
#[derive(Clone, Debug)]
pub struct BackendGauge {
    /// Backend id.
    pub id: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its health word.
    pub upstream: Arc<UpstreamBackend>,
}

// === impl Metrics ===

/// Every metric family. Counting into them is lock-free once a series exists; which series
/// exist for domains and backends is decided by their owners (the registry resolves route
/// handles, the MetricsActor drops what is gone).
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, LatencyHistogram>,
    active: Gauge,
    retries: Family<DomainLabels, Counter>,
    backend_up: Family<BackendLabels, Gauge>,
    health_checks: Family<HealthCheckLabels, Counter>,
    tag_switches: Family<DomainLabels, Counter>,
    cert_not_after: Family<DomainLabels, Gauge>,
    acme_orders: Family<ResultLabels, Counter>,
    rollbacks: Family<DomainLabels, Counter>,
    store_up: Gauge,
    unknown: Arc<RouteMetrics>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn domain_labels(domain: &str) -> DomainLabels {
    DomainLabels {
        domain: domain.to_string(),
    }
}

impl Metrics {
    /// Empty families; the unknown-host series exist from the start.
    pub fn new() -> Arc<Self> {
        let mut m = Self {
            requests: Family::default(),
            duration: Family::default(),
            active: Gauge::default(),
            retries: Family::default(),
            backend_up: Family::default(),
            health_checks: Family::default(),
            tag_switches: Family::default(),
            cert_not_after: Family::default(),
            acme_orders: Family::default(),
            rollbacks: Family::default(),
            store_up: Gauge::default(),
            unknown: Arc::new(RouteMetrics::new(
                Default::default(),
                LatencyHistogram::default(),
                Counter::default(),
            )),
        };
        m.unknown = Arc::new(m.resolve(UNKNOWN, UNKNOWN));
        // At zero from the start, so a dashboard shows "none yet" rather than "no data".
        for result in ["success", "failure"] {
            m.acme_orders.get_or_create_owned(&ResultLabels { result });
        }
        Arc::new(m)
    }

    /// The handles for requests to hosts no domain matches.
    pub fn unknown_host(&self) -> Arc<RouteMetrics> {
        Arc::clone(&self.unknown)
    }

    /// Fresh handles over the (domain, tag) series, creating them.
    fn resolve(&self, domain: &str, tag: &str) -> RouteMetrics {
        let codes = CODES.map(|code| {
            self.requests.get_or_create_owned(&RequestLabels {
                domain: domain.to_string(),
                tag: tag.to_string(),
                code,
            })
        });
        let route = RouteLabels {
            domain: domain.to_string(),
            tag: tag.to_string(),
        };
        RouteMetrics::new(
            codes,
            self.duration.get_or_create_owned(&route),
            self.retries.get_or_create_owned(&domain_labels(domain)),
        )
    }

    /// Drops every series of a deleted domain, given the tags it was served on.
    fn forget_domain<'a>(&self, domain: &str, tags: impl IntoIterator<Item = &'a str>) {
        for tag in tags {
            for code in CODES {
                self.requests.remove(&RequestLabels {
                    domain: domain.to_string(),
                    tag: tag.to_string(),
                    code,
                });
            }
            self.duration.remove(&RouteLabels {
                domain: domain.to_string(),
                tag: tag.to_string(),
            });
        }
        let d = domain_labels(domain);
        self.retries.remove(&d);
        self.tag_switches.remove(&d);
        self.rollbacks.remove(&d);
    }

    /// Counts a tag switch.
    pub fn record_switch(&self, domain: &str) {
        self.tag_switches
            .get_or_create(&domain_labels(domain))
            .inc();
    }

    /// Counts a health probe.
    pub fn record_health_check(&self, backend: &str, ok: bool) {
        self.health_checks
            .get_or_create(&HealthCheckLabels {
                backend: backend.to_string(),
                result: if ok { "success" } else { "failure" },
            })
            .inc();
    }

    /// Counts an automatic rollback.
    pub fn record_rollback(&self, domain: &str) {
        self.rollbacks.get_or_create(&domain_labels(domain)).inc();
    }

    /// Whether the state store is reachable (etcd with quorum; the file's last write).
    pub fn set_store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "pingora_vhost_requests",
            "Requests answered, by domain, tag and status class",
            self.requests.clone(),
        );
        r.register(
            "pingora_vhost_request_duration_seconds",
            "Request duration from arrival to the last byte",
            self.duration.clone(),
        );
        r.register(
            "pingora_vhost_active_requests",
            "Requests in flight",
            self.active.clone(),
        );
        r.register(
            "pingora_vhost_upstream_retries",
            "Requests retried on another backend after a failed connection",
            self.retries.clone(),
        );
        r.register(
            "pingora_vhost_backend_up",
            "1 when the backend may receive traffic, 0 when it is unhealthy",
            self.backend_up.clone(),
        );
        r.register(
            "pingora_vhost_health_checks",
            "Active health probes by result",
            self.health_checks.clone(),
        );
        r.register(
            "pingora_vhost_tag_switches",
            "Tag switches per domain",
            self.tag_switches.clone(),
        );
        r.register(
            "pingora_vhost_certificate_not_after_seconds",
            "Expiry of the served certificate (unix time)",
            self.cert_not_after.clone(),
        );
        r.register(
            "pingora_vhost_acme_orders",
            "ACME certificate orders by result",
            self.acme_orders.clone(),
        );
        r.register(
            "pingora_vhost_rollbacks",
            "Automatic rollbacks of a canary split",
            self.rollbacks.clone(),
        );
        r.register(
            "pingora_vhost_store_up",
            "Whether the state store is reachable: etcd with quorum, or the file's last write",
            self.store_up.clone(),
        );
    }
}

// === impl RouteHandles ===

/// The registry's cache of route handles: one [`RouteMetrics`] per (domain, tag) a domain was
/// ever served on, kept until the domain is deleted so counters survive republishing. What
/// changed is queued as [`MetricsUpdate`]s for the MetricsActor.
#[derive(Debug)]
pub struct RouteHandles {
    metrics: Arc<Metrics>,
    cache: HashMap<(String, String), Arc<RouteMetrics>>,
    pending: Vec<MetricsUpdate>,
}

impl RouteHandles {
    /// An empty cache over `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            cache: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// The families.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The handles for (domain, tag), created on first use. Publish-time only.
    pub fn route(&mut self, domain: &str, tag: &str) -> Arc<RouteMetrics> {
        let key = (domain.to_string(), tag.to_string());
        if let Some(r) = self.cache.get(&key) {
            return Arc::clone(r);
        }
        let r = Arc::new(self.metrics.resolve(domain, tag));
        self.cache.insert(key, Arc::clone(&r));
        // A domain's event counters exist at zero from its first route on.
        let d = domain_labels(domain);
        self.metrics.tag_switches.get_or_create_owned(&d);
        self.metrics.rollbacks.get_or_create_owned(&d);
        self.pending.push(MetricsUpdate::Route {
            domain: domain.to_string(),
            tag: tag.to_string(),
            handles: Arc::clone(&r),
        });
        r
    }

    /// The handles for (domain, tag), if they were resolved.
    pub fn get(&self, domain: &str, tag: &str) -> Option<&Arc<RouteMetrics>> {
        self.cache.get(&(domain.to_string(), tag.to_string()))
    }

    /// Forgets a deleted domain's handles.
    pub fn forget_domain(&mut self, domain: &str) {
        self.cache.retain(|(d, _), _| d != domain);
        self.pending
            .push(MetricsUpdate::ForgetDomain(domain.to_string()));
    }

    /// Replaces the backends `backend_up` reports on.
    pub fn set_backends(&mut self, backends: Vec<BackendGauge>) {
        self.pending.push(MetricsUpdate::Backends(backends));
    }

    /// What changed since the last call, in order.
    pub fn take_updates(&mut self) -> Vec<MetricsUpdate> {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests;
