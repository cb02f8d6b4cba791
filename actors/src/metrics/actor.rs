//! The MetricsActor: owns which domain and backend series exist (told by the registry through
//! [`MetricsUpdate`] messages), renders the Prometheus text and answers `stats`.

use super::recent::{delta, last_minute_of, RecentTraffic, Sample, SAMPLE_EVERY};
use super::{
    domain_labels, BackendGauge, BackendLabels, HealthCheckLabels, Metrics, ResultLabels,
    RouteMetrics, Stats, UNKNOWN,
};
use crate::cert::{AcmeCounters, CertInfo, CertStore};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A change in which series exist, sent by the registry when it publishes.
#[derive(Debug)]
pub enum MetricsUpdate {
    /// New handles for (domain, tag).
    Route {
        /// Domain label.
        domain: String,
        /// Tag label.
        tag: String,
        /// The handles the request path records into.
        handles: Arc<RouteMetrics>,
    },
    /// A domain was deleted: its series go.
    ForgetDomain(String),
    /// The backends now configured.
    Backends(Vec<BackendGauge>),
}

/// Messages the MetricsActor handles.
pub enum MetricsMsg {
    /// The Prometheus text.
    Render(RpcReplyPort<String>),
    /// The `stats` object.
    Stats(RpcReplyPort<Stats>),
    /// Series appeared or went.
    Update(MetricsUpdate),
    /// Time to sample the counters for the last-minute figures.
    Sample,
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

// === impl MetricsBook ===

/// What the MetricsActor owns: the routes and backends shown, the certificates whose expiry
/// is exported, and how many ACME orders were counted so far.
#[derive(Debug)]
pub struct MetricsBook {
    metrics: Arc<Metrics>,
    registry: Registry,
    routes: HashMap<(String, String), Arc<RouteMetrics>>,
    backends: Vec<BackendGauge>,
    certificates: HashSet<String>,
    acme_seen: (u64, u64),
    recent: RecentTraffic,
}

impl MetricsBook {
    /// A book over `metrics`, with the unknown-host series shown.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        Self {
            metrics,
            registry,
            routes: HashMap::new(),
            backends: Vec::new(),
            certificates: HashSet::new(),
            acme_seen: (0, 0),
            recent: RecentTraffic::new(Instant::now()),
        }
    }

    /// Applies one registry update.
    pub fn apply(&mut self, update: MetricsUpdate) {
        match update {
            MetricsUpdate::Route {
                domain,
                tag,
                handles,
            } => {
                self.routes.insert((domain, tag), handles);
            }
            MetricsUpdate::ForgetDomain(domain) => {
                let tags: Vec<String> = self
                    .routes
                    .keys()
                    .filter(|(d, _)| *d == domain)
                    .map(|(_, t)| t.clone())
                    .collect();
                for t in &tags {
                    self.routes.remove(&(domain.clone(), t.clone()));
                }
                self.metrics
                    .forget_domain(&domain, tags.iter().map(String::as_str));
            }
            MetricsUpdate::Backends(backends) => self.set_backends(backends),
        }
    }

    fn set_backends(&mut self, backends: Vec<BackendGauge>) {
        let keep: HashSet<(&str, &str)> = backends
            .iter()
            .flat_map(|b| b.tags.iter().map(|t| (b.id.as_str(), t.as_str())))
            .collect();
        for b in &self.backends {
            if !backends.iter().any(|n| n.id == b.id) {
                for result in ["success", "failure"] {
                    self.metrics.health_checks.remove(&HealthCheckLabels {
                        backend: b.id.clone(),
                        result,
                    });
                }
            }
            for t in &b.tags {
                if !keep.contains(&(b.id.as_str(), t.as_str())) {
                    self.metrics.backend_up.remove(&BackendLabels {
                        backend: b.id.clone(),
                        tag: t.clone(),
                    });
                }
            }
        }
        for b in &backends {
            for result in ["success", "failure"] {
                self.metrics
                    .health_checks
                    .get_or_create_owned(&HealthCheckLabels {
                        backend: b.id.clone(),
                        result,
                    });
            }
        }
        self.backends = backends;
    }

    /// Per-domain and per-tag traffic counters, from the same handles as the metrics, with
    /// their last minute.
    pub fn stats(&self) -> Stats {
        let now = Instant::now();
        let mut out = Stats::default();
        let mut totals: HashMap<&str, (Sample, Sample, Instant)> = HashMap::new();
        for (key, r) in &self.routes {
            if key.0 == UNKNOWN {
                continue;
            }
            let mut s = r.stats();
            let current = r.sample();
            let (at, old) = self.recent.baseline_of(key, now);
            s.last_minute = last_minute_of(&delta(&current, &old), now.duration_since(at));
            let t =
                totals
                    .entry(key.0.as_str())
                    .or_insert((Sample::default(), Sample::default(), at));
            t.0.add(&current);
            t.1.add(&old);
            let d = out.domains.entry(key.0.clone()).or_default();
            d.totals.add(&s);
            d.tags.insert(key.1.clone(), s);
        }
        for (domain, (current, old, at)) in totals {
            if let Some(d) = out.domains.get_mut(domain) {
                d.totals.last_minute =
                    last_minute_of(&delta(&current, &old), now.duration_since(at));
            }
        }
        out
    }

    /// Samples every route's counters for the last-minute figures.
    pub fn sample(&mut self, now: Instant) {
        let samples = self
            .routes
            .iter()
            .filter(|(k, _)| k.0 != UNKNOWN)
            .map(|(k, r)| (k.clone(), r.sample()))
            .collect();
        self.recent.record(now, samples);
    }

    /// The text, after bringing gauges and synced counters up to date.
    pub fn render(
        &mut self,
        in_flight: i64,
        certs: Option<&[CertInfo]>,
        acme: Option<(u64, u64)>,
    ) -> Result<String, std::fmt::Error> {
        self.refresh_gauges(in_flight);
        if let Some(certs) = certs {
            self.sync_certificates(certs);
        }
        if let Some(acme) = acme {
            self.sync_acme_orders(acme);
        }
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }

    fn refresh_gauges(&self, in_flight: i64) {
        self.metrics.active.set(in_flight);
        for b in &self.backends {
            let up = i64::from(b.upstream.health.is_routable());
            for t in &b.tags {
                self.metrics
                    .backend_up
                    .get_or_create(&BackendLabels {
                        backend: b.id.clone(),
                        tag: t.clone(),
                    })
                    .set(up);
            }
        }
    }

    /// Brings `acme_orders_total` up to the issuer's counters.
    fn sync_acme_orders(&mut self, (success, failure): (u64, u64)) {
        let seen = &mut self.acme_seen;
        for (result, now, before) in [
            ("success", success, &mut seen.0),
            ("failure", failure, &mut seen.1),
        ] {
            let counter = self
                .metrics
                .acme_orders
                .get_or_create(&ResultLabels { result });
            counter.inc_by(now.saturating_sub(*before));
            *before = now;
        }
    }

    /// Sets `certificate_not_after_seconds` for every served certificate, dropping the rest.
    fn sync_certificates(&mut self, certs: &[CertInfo]) {
        let now: HashSet<String> = certs
            .iter()
            .filter(|c| c.not_after.is_some())
            .map(|c| c.domain.clone())
            .collect();
        for gone in self.certificates.difference(&now) {
            self.metrics.cert_not_after.remove(&domain_labels(gone));
        }
        for c in certs {
            if let Some(t) = c.not_after {
                self.metrics
                    .cert_not_after
                    .get_or_create(&domain_labels(&c.domain))
                    .set(t);
            }
        }
        self.certificates = now;
    }
}

// === MetricsActor ===

/// The MetricsActor's state.
pub struct MetricsState {
    book: MetricsBook,
    args: MetricsArgs,
}

/// Owns the series shown and renders them.
pub struct MetricsActor;

impl Actor for MetricsActor {
    type Msg = MetricsMsg;
    type State = MetricsState;
    type Arguments = MetricsArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<MetricsMsg>,
        args: MetricsArgs,
    ) -> Result<MetricsState, ActorProcessingErr> {
        myself.send_interval(SAMPLE_EVERY, || MetricsMsg::Sample);
        Ok(MetricsState {
            book: MetricsBook::new(Arc::clone(&args.metrics)),
            args,
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
                let certs = a.certs.as_ref().map(CertStore::list);
                let text = state.book.render(
                    a.in_flight.load(Ordering::Relaxed),
                    certs.as_deref(),
                    a.acme.as_ref().map(|c| c.read()),
                )?;
                let _ = reply.send(text);
            }
            MetricsMsg::Stats(reply) => {
                let _ = reply.send(state.book.stats());
            }
            MetricsMsg::Update(u) => state.book.apply(u),
            MetricsMsg::Sample => state.book.sample(Instant::now()),
        }
        Ok(())
    }
}
