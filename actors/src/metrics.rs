//! Metrics: the contract's Prometheus families, per-route handles the request path bumps without
//! locks or label formatting, and the MetricsActor that renders them and answers `stats`.

mod exposition;
mod histogram;

pub use exposition::{TextFormat, PROMETHEUS_CONTENT_TYPE};
pub use histogram::LatencyHistogram;

use crate::cert::{AcmeCounters, CertInfo, CertStore};
use crate::snapshot::UpstreamBackend;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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

// === impl RouteMetrics ===

/// Pre-resolved handles for one (domain, tag): what the request path records into.
#[derive(Debug)]
pub struct RouteMetrics {
    codes: [Counter; 5],
    duration: LatencyHistogram,
    retries: Counter,
    /// Answers below 500 that came from a backend.
    backend_success: AtomicU64,
}

impl RouteMetrics {
    /// Records one finished request.
    #[inline]
    pub fn record(&self, status: u16, from_backend: bool, elapsed: Duration) {
        let class = usize::from(status / 100);
        if !(1..=5).contains(&class) {
            return;
        }
        self.codes[class - 1].inc();
        self.duration.observe(elapsed);
        if from_backend && status < 500 {
            self.backend_success.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records one retry on another backend.
    #[inline]
    pub fn record_retry(&self) {
        self.retries.inc();
    }

    fn stats(&self) -> TrafficStats {
        let total: u64 = self.codes.iter().map(Counter::get).sum();
        let success = self.backend_success.load(Ordering::Relaxed).min(total);
        let (sum, count) = self.duration.sum_and_count();
        TrafficStats {
            total_requests: total,
            success_requests: success,
            error_requests: total - success,
            avg_latency_ms: if count == 0 {
                0.0
            } else {
                sum * 1000.0 / count as f64
            },
            latency_count: count,
            latency_sum: sum,
        }
    }
}

// === stats ===

/// Counters of one domain or tag in `GET /api/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrafficStats {
    /// Requests answered.
    pub total_requests: u64,
    /// Answers below 500 from a backend.
    pub success_requests: u64,
    /// The rest.
    pub error_requests: u64,
    /// Mean request duration in milliseconds.
    pub avg_latency_ms: f64,
    #[serde(skip)]
    latency_count: u64,
    #[serde(skip)]
    latency_sum: f64,
}

impl TrafficStats {
    fn add(&mut self, o: &TrafficStats) {
        self.total_requests += o.total_requests;
        self.success_requests += o.success_requests;
        self.error_requests += o.error_requests;
        self.latency_count += o.latency_count;
        self.latency_sum += o.latency_sum;
        self.avg_latency_ms = if self.latency_count == 0 {
            0.0
        } else {
            self.latency_sum * 1000.0 / self.latency_count as f64
        };
    }
}

/// One domain in `GET /api/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DomainStats {
    /// Totals over all tags.
    #[serde(flatten)]
    pub totals: TrafficStats,
    /// Per tag.
    pub tags: BTreeMap<String, TrafficStats>,
}

/// `GET /api/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Per domain.
    pub domains: BTreeMap<String, DomainStats>,
}

// === impl Metrics ===

/// A backend as `pingora_vhost_backend_up` shows it.
#[derive(Clone, Debug)]
pub struct BackendGauge {
    /// Backend id.
    pub id: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its health atomics.
    pub upstream: Arc<UpstreamBackend>,
}

/// Every metric family of the contract, plus the per-route handle cache.
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
    /// (domain, tag) -> handles; touched at publish time only.
    routes: Mutex<HashMap<(String, String), Arc<RouteMetrics>>>,
    backends: Mutex<Vec<BackendGauge>>,
    certificates: Mutex<HashSet<String>>,
    unknown: Arc<RouteMetrics>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
            routes: Mutex::new(HashMap::new()),
            backends: Mutex::new(Vec::new()),
            certificates: Mutex::new(HashSet::new()),
            unknown: Arc::new(RouteMetrics {
                codes: Default::default(),
                duration: LatencyHistogram::default(),
                retries: Counter::default(),
                backend_success: AtomicU64::new(0),
            }),
        };
        m.unknown = m.resolve(UNKNOWN, UNKNOWN);
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

    /// The handles for (domain, tag), created on first use. Publish-time only.
    pub fn route(&self, domain: &str, tag: &str) -> Arc<RouteMetrics> {
        let key = (domain.to_string(), tag.to_string());
        if let Some(r) = lock(&self.routes).get(&key) {
            return Arc::clone(r);
        }
        let r = self.resolve(domain, tag);
        lock(&self.routes).insert(key, Arc::clone(&r));
        // A domain's event counters exist at zero from its first route on.
        let d = DomainLabels {
            domain: domain.to_string(),
        };
        self.tag_switches.get_or_create_owned(&d);
        self.rollbacks.get_or_create_owned(&d);
        r
    }

    fn resolve(&self, domain: &str, tag: &str) -> Arc<RouteMetrics> {
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
        Arc::new(RouteMetrics {
            codes,
            duration: self.duration.get_or_create_owned(&route),
            retries: self.retries.get_or_create_owned(&DomainLabels {
                domain: domain.to_string(),
            }),
            backend_success: AtomicU64::new(0),
        })
    }

    /// Drops every series of a deleted domain.
    pub fn forget_domain(&self, domain: &str) {
        let tags: Vec<String> = {
            let mut routes = lock(&self.routes);
            let tags: Vec<String> = routes
                .keys()
                .filter(|(d, _)| d == domain)
                .map(|(_, t)| t.clone())
                .collect();
            for t in &tags {
                routes.remove(&(domain.to_string(), t.clone()));
            }
            tags
        };
        for tag in tags {
            for code in CODES {
                self.requests.remove(&RequestLabels {
                    domain: domain.to_string(),
                    tag: tag.clone(),
                    code,
                });
            }
            self.duration.remove(&RouteLabels {
                domain: domain.to_string(),
                tag,
            });
        }
        let d = DomainLabels {
            domain: domain.to_string(),
        };
        self.retries.remove(&d);
        self.tag_switches.remove(&d);
        self.rollbacks.remove(&d);
    }

    /// Counts a tag switch.
    pub fn record_switch(&self, domain: &str) {
        self.tag_switches
            .get_or_create(&DomainLabels {
                domain: domain.to_string(),
            })
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

    /// Brings `acme_orders_total` up to the issuer's counters; `seen` is what was counted so far.
    fn sync_acme_orders(&self, (success, failure): (u64, u64), seen: &mut (u64, u64)) {
        for (result, now, before) in [
            ("success", success, &mut seen.0),
            ("failure", failure, &mut seen.1),
        ] {
            let counter = self.acme_orders.get_or_create(&ResultLabels { result });
            counter.inc_by(now.saturating_sub(*before));
            *before = now;
        }
    }

    /// Sets `certificate_not_after_seconds` for every served certificate, dropping the rest.
    fn sync_certificates(&self, certs: &[CertInfo]) {
        let mut shown = lock(&self.certificates);
        let now: HashSet<String> = certs
            .iter()
            .filter(|c| c.not_after.is_some())
            .map(|c| c.domain.clone())
            .collect();
        for gone in shown.difference(&now) {
            self.cert_not_after.remove(&DomainLabels {
                domain: gone.clone(),
            });
        }
        for c in certs {
            if let Some(t) = c.not_after {
                self.cert_not_after
                    .get_or_create(&DomainLabels {
                        domain: c.domain.clone(),
                    })
                    .set(t);
            }
        }
        *shown = now;
    }

    /// Counts an automatic rollback.
    pub fn record_rollback(&self, domain: &str) {
        self.rollbacks
            .get_or_create(&DomainLabels {
                domain: domain.to_string(),
            })
            .inc();
    }

    /// Replaces the backends `backend_up` reports on (after every backend change).
    pub fn set_backends(&self, backends: Vec<BackendGauge>) {
        let keep: HashSet<(String, String)> = backends
            .iter()
            .flat_map(|b| b.tags.iter().map(|t| (b.id.clone(), t.clone())))
            .collect();
        let mut current = lock(&self.backends);
        for b in current.iter() {
            if !backends.iter().any(|n| n.id == b.id) {
                for result in ["success", "failure"] {
                    self.health_checks.remove(&HealthCheckLabels {
                        backend: b.id.clone(),
                        result,
                    });
                }
            }
            for t in &b.tags {
                if !keep.contains(&(b.id.clone(), t.clone())) {
                    self.backend_up.remove(&BackendLabels {
                        backend: b.id.clone(),
                        tag: t.clone(),
                    });
                }
            }
        }
        for b in &backends {
            for result in ["success", "failure"] {
                self.health_checks.get_or_create_owned(&HealthCheckLabels {
                    backend: b.id.clone(),
                    result,
                });
            }
        }
        *current = backends;
    }

    /// Per-domain and per-tag traffic counters, from the same handles as the metrics.
    pub fn stats(&self) -> Stats {
        let mut out = Stats::default();
        for ((domain, tag), r) in lock(&self.routes).iter() {
            if domain == UNKNOWN {
                continue;
            }
            let s = r.stats();
            let d = out.domains.entry(domain.clone()).or_default();
            d.totals.add(&s);
            d.tags.insert(tag.clone(), s);
        }
        out
    }

    fn refresh_gauges(&self, in_flight: i64) {
        self.active.set(in_flight);
        for b in lock(&self.backends).iter() {
            let up = i64::from(b.upstream.health.is_routable());
            for t in &b.tags {
                self.backend_up
                    .get_or_create(&BackendLabels {
                        backend: b.id.clone(),
                        tag: t.clone(),
                    })
                    .set(up);
            }
        }
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
    }
}

// === MetricsActor ===

/// Messages the MetricsActor handles.
pub enum MetricsMsg {
    /// The Prometheus text.
    Render(RpcReplyPort<String>),
    /// The `stats` object.
    Stats(RpcReplyPort<Stats>),
}

/// What the MetricsActor needs.
pub struct MetricsArgs {
    /// The families.
    pub metrics: Arc<Metrics>,
    /// Requests in flight (the proxy's count).
    pub in_flight: Arc<AtomicI64>,
    /// Served certificates, when there is an HTTPS listener.
    pub certs: Option<CertStore>,
    /// ACME order counters, when `[lets_encrypt]` is set.
    pub acme: Option<Arc<AcmeCounters>>,
}

/// The MetricsActor's state: the registry it owns.
pub struct MetricsState {
    registry: Registry,
    args: MetricsArgs,
    acme_seen: (u64, u64),
}

/// Owns the prometheus-client registry and renders it.
pub struct MetricsActor;

impl Actor for MetricsActor {
    type Msg = MetricsMsg;
    type State = MetricsState;
    type Arguments = MetricsArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<MetricsMsg>,
        args: MetricsArgs,
    ) -> Result<MetricsState, ActorProcessingErr> {
        let mut registry = Registry::default();
        args.metrics.register(&mut registry);
        Ok(MetricsState {
            registry,
            args,
            acme_seen: (0, 0),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<MetricsMsg>,
        msg: MetricsMsg,
        state: &mut MetricsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MetricsMsg::Render(reply) => {
                let a = &state.args;
                a.metrics
                    .refresh_gauges(a.in_flight.load(Ordering::Relaxed));
                if let Some(store) = &a.certs {
                    a.metrics.sync_certificates(&store.list());
                }
                if let Some(acme) = &a.acme {
                    a.metrics
                        .sync_acme_orders(acme.read(), &mut state.acme_seen);
                }
                let mut text = String::new();
                encode(&mut text, &state.registry)?;
                let _ = reply.send(text);
            }
            MetricsMsg::Stats(reply) => {
                let _ = reply.send(state.args.metrics.stats());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(m: &Metrics) -> String {
        let mut r = Registry::default();
        m.register(&mut r);
        m.refresh_gauges(0);
        let mut text = String::new();
        encode(&mut text, &r).unwrap();
        text
    }

    #[test]
    fn records_and_renders_with_contract_names() {
        let m = Metrics::new();
        let r = m.route("app.test", "a");
        r.record(200, true, Duration::from_millis(3));
        r.record(503, false, Duration::from_millis(1));
        r.record(404, true, Duration::from_millis(1));
        r.record_retry();
        m.unknown_host()
            .record(404, false, Duration::from_micros(10));
        m.record_switch("app.test");
        let text = render(&m);
        for line in [
            r#"pingora_vhost_requests_total{domain="app.test",tag="a",code="2xx"} 1"#,
            r#"pingora_vhost_requests_total{domain="app.test",tag="a",code="5xx"} 1"#,
            r#"pingora_vhost_requests_total{domain="_unknown",tag="_unknown",code="4xx"} 1"#,
            r#"pingora_vhost_upstream_retries_total{domain="app.test"} 1"#,
            r#"pingora_vhost_tag_switches_total{domain="app.test"} 1"#,
            r#"pingora_vhost_rollbacks_total{domain="app.test"} 0"#,
            r#"pingora_vhost_acme_orders_total{result="success"} 0"#,
            r#"pingora_vhost_acme_orders_total{result="failure"} 0"#,
            r#"pingora_vhost_request_duration_seconds_count{domain="app.test",tag="a"} 3"#,
            r#"pingora_vhost_request_duration_seconds_bucket{le="0.005",domain="app.test",tag="a"} 3"#,
            "pingora_vhost_active_requests 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        let s = m.stats();
        let d = &s.domains["app.test"];
        assert_eq!(
            (
                d.totals.total_requests,
                d.totals.success_requests,
                d.totals.error_requests
            ),
            (3, 2, 1)
        );
        assert!((d.tags["a"].avg_latency_ms - 5.0 / 3.0).abs() < 0.01);
        assert!(!s.domains.contains_key(UNKNOWN));

        m.forget_domain("app.test");
        let text = render(&m);
        assert!(!text.contains(r#"domain="app.test""#), "{text}");
        assert!(m.stats().domains.is_empty());
    }
}
