//! What the request path reads: a lock-free map of domain -> `Arc<Route>`, published by the
//! RegistryActor, plus per-backend atomics the request path and probes update in place.

use crate::metrics::RouteMetrics;
use crate::model::{DomainName, LbPolicy, Tag};
use dashmap::DashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

// === impl BackendHealth ===

/// Health of a backend, shared by every route that includes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    /// Not probed yet: routable.
    Unknown,
    /// Passing its checks.
    Healthy,
    /// Failing: skipped by every policy.
    Unhealthy,
}

impl HealthStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => HealthStatus::Healthy,
            2 => HealthStatus::Unhealthy,
            _ => HealthStatus::Unknown,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            HealthStatus::Unknown => 0,
            HealthStatus::Healthy => 1,
            HealthStatus::Unhealthy => 2,
        }
    }
}

/// Atomics describing one backend's health, written by probes and read per request.
#[derive(Debug, Default)]
pub struct BackendHealth {
    status: AtomicU8,
    consecutive_failures: AtomicU32,
    consecutive_successes: AtomicU32,
    /// Unix milliseconds of the last probe; 0 when never probed.
    last_check_ms: AtomicI64,
    /// Failed attempts on real traffic since the last success.
    passive_failures: AtomicU32,
}

/// A point-in-time copy of [`BackendHealth`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthReading {
    /// Current status.
    pub status: HealthStatus,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Successes in a row.
    pub consecutive_successes: u32,
    /// Unix milliseconds of the last probe, if any.
    pub last_check_ms: Option<i64>,
}

impl BackendHealth {
    /// The current status.
    pub fn status(&self) -> HealthStatus {
        HealthStatus::from_u8(self.status.load(Ordering::Relaxed))
    }

    /// Whether the request path may send traffic here.
    #[inline]
    pub fn is_routable(&self) -> bool {
        self.status.load(Ordering::Relaxed) != 2
    }

    /// Overwrites the whole reading (probe results); a healthy reading forgives passive failures.
    pub fn store(&self, r: HealthReading) {
        if r.status == HealthStatus::Healthy {
            self.passive_failures.store(0, Ordering::Relaxed);
        }
        self.consecutive_failures
            .store(r.consecutive_failures, Ordering::Relaxed);
        self.consecutive_successes
            .store(r.consecutive_successes, Ordering::Relaxed);
        self.last_check_ms
            .store(r.last_check_ms.unwrap_or(0), Ordering::Relaxed);
        self.status.store(r.status.to_u8(), Ordering::Relaxed);
    }

    /// Counts a failed attempt on real traffic; true when this failure ejected the backend.
    #[inline]
    pub fn record_passive_failure(&self, threshold: u32) -> bool {
        let n = self.passive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= threshold && self.is_routable() {
            self.consecutive_successes.store(0, Ordering::Relaxed);
            self.status
                .store(HealthStatus::Unhealthy.to_u8(), Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Clears the passive failure count after an answer from the backend.
    #[inline]
    pub fn record_passive_success(&self) {
        if self.passive_failures.load(Ordering::Relaxed) != 0 {
            self.passive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Reads every field.
    pub fn read(&self) -> HealthReading {
        let last = self.last_check_ms.load(Ordering::Relaxed);
        HealthReading {
            status: self.status(),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            consecutive_successes: self.consecutive_successes.load(Ordering::Relaxed),
            last_check_ms: (last != 0).then_some(last),
        }
    }
}

// === impl UpstreamBackend ===

/// A backend as the request path sees it; one per backend, shared by all routes.
#[derive(Debug)]
pub struct UpstreamBackend {
    /// The backend id (metrics and log label).
    pub id: Arc<str>,
    /// Resolved socket address.
    pub addr: SocketAddr,
    /// Health atomics.
    pub health: BackendHealth,
    /// Requests in flight to this backend.
    pub in_flight: AtomicU32,
}

impl UpstreamBackend {
    /// A backend with unknown health.
    pub fn new(id: &str, addr: SocketAddr) -> Self {
        Self {
            id: Arc::from(id),
            addr,
            health: BackendHealth::default(),
            in_flight: AtomicU32::new(0),
        }
    }
}

// === impl BackendPool ===

/// The backends of one tag, with a precomputed smooth weighted round-robin order.
#[derive(Debug)]
pub struct BackendPool {
    members: Vec<Arc<UpstreamBackend>>,
    /// Indices into `members`, interleaved by weight (nginx's smooth WRR, unrolled).
    order: Vec<u32>,
    cursor: AtomicUsize,
    /// Where the last pick that found its slot unusable ended. Such picks go on from here, so
    /// that the traffic of a run of unusable backends goes round the usable ones instead of all
    /// landing on the first one after the run.
    spill: AtomicUsize,
}

impl BackendPool {
    /// Builds a pool from `(backend, weight)` pairs.
    pub fn new(members: Vec<(Arc<UpstreamBackend>, u32)>) -> Self {
        let order = smooth_order(&members.iter().map(|(_, w)| *w).collect::<Vec<_>>());
        Self {
            members: members.into_iter().map(|(b, _)| b).collect(),
            order,
            cursor: AtomicUsize::new(0),
            spill: AtomicUsize::new(0),
        }
    }

    /// The pool's backends.
    pub fn members(&self) -> &[Arc<UpstreamBackend>] {
        &self.members
    }

    /// Whether the pool has a backend that is not marked unhealthy and that `skip` accepts.
    pub fn has_routable(&self, skip: impl Fn(&UpstreamBackend) -> bool) -> bool {
        self.members
            .iter()
            .any(|b| b.health.is_routable() && !skip(b))
    }

    /// Next backend by weighted round robin, skipping unhealthy ones and those `skip` rejects.
    #[inline]
    pub fn pick(&self, skip: impl Fn(&UpstreamBackend) -> bool) -> Option<&Arc<UpstreamBackend>> {
        let len = self.order.len();
        if len == 0 {
            return None;
        }
        let usable = |slot: usize| {
            let b = &self.members[self.order[slot] as usize];
            (b.health.is_routable() && !skip(b)).then_some(b)
        };
        if let Some(b) = usable(self.cursor.fetch_add(1, Ordering::Relaxed) % len) {
            return Some(b);
        }
        let mut slot = self.spill.load(Ordering::Relaxed) % len;
        for _ in 0..len {
            if let Some(b) = usable(slot) {
                self.spill.store(slot + 1, Ordering::Relaxed);
                return Some(b);
            }
            slot = if slot + 1 == len { 0 } else { slot + 1 };
        }
        None
    }
}

/// Unrolls nginx's smooth weighted round robin into one cycle of member indices.
pub fn smooth_order(weights: &[u32]) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let w: Vec<i64> = weights.iter().map(|&x| i64::from(x.max(1) / g)).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best as u32);
    }
    order
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

// === impl Route ===

/// Everything the request path needs for one domain, replaced whole on every change.
#[derive(Debug)]
pub struct Route {
    /// The domain this route serves (the configured name, possibly a wildcard).
    pub domain: DomainName,
    /// The enabled tag.
    pub tag: Tag,
    /// Backends carrying the tag (shared by every route on the tag).
    pub pool: Arc<BackendPool>,
    /// Redirect plain HTTP to HTTPS.
    pub http_to_https: bool,
    /// Backend choice policy.
    pub lb_policy: LbPolicy,
    /// Pre-resolved metric handles for (domain, tag).
    pub metrics: Arc<RouteMetrics>,
}

// === impl RouteTable ===

/// The published routing view: exact names and `*.` wildcards, read without locks held across
/// awaits. Only the RegistryActor writes it.
///
/// Keys hash with foldhash (seeded at random per table, like std's SipHash but several times
/// faster on short host names).
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: DashMap<String, Arc<Route>, HostHasher>,
    /// Keyed by the suffix after `*.`.
    wildcard: DashMap<String, Arc<Route>, HostHasher>,
}

type HostHasher = foldhash::quality::RandomState;

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Finds the route for a normalised host: exact match first, then the one-label wildcard.
    #[inline]
    pub fn lookup(&self, host: &str) -> Option<Arc<Route>> {
        if let Some(r) = self.exact.get(host) {
            return Some(Arc::clone(r.value()));
        }
        let (_, parent) = host.split_once('.')?;
        self.wildcard.get(parent).map(|r| Arc::clone(r.value()))
    }

    /// Publishes (or replaces) a route in one insert.
    pub fn publish(&self, route: Arc<Route>) {
        match route.domain.wildcard_suffix() {
            Some(suffix) => self.wildcard.insert(suffix.to_string(), route),
            None => self.exact.insert(route.domain.as_str().to_string(), route),
        };
    }

    /// Removes a domain's route.
    pub fn withdraw(&self, domain: &DomainName) {
        match domain.wildcard_suffix() {
            Some(suffix) => self.wildcard.remove(suffix),
            None => self.exact.remove(domain.as_str()),
        };
    }

    /// Number of published routes.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether nothing is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(id: &str, port: u16) -> Arc<UpstreamBackend> {
        Arc::new(UpstreamBackend::new(
            id,
            SocketAddr::from(([127, 0, 0, 1], port)),
        ))
    }

    #[test]
    fn a_run_of_unusable_backends_spreads_its_traffic() {
        let backends: Vec<_> = (0..100)
            .map(|i| backend(&format!("b{i}"), 9000 + i))
            .collect();
        let pool = BackendPool::new(backends.iter().map(|b| (Arc::clone(b), 1)).collect());
        for b in &backends[..90] {
            assert!(b.health.record_passive_failure(1), "ejected");
        }
        let mut hits = std::collections::HashMap::<Arc<str>, usize>::new();
        for _ in 0..10_000 {
            let b = pool.pick(|_| false).expect("ten are up");
            *hits.entry(Arc::clone(&b.id)).or_default() += 1;
        }
        assert_eq!(hits.len(), 10, "{hits:?}");
        // Even is 1 000 each; skipping ahead from the unusable slot sent 9 100 to b90.
        assert!(
            hits.values().all(|&n| (900..=1_100).contains(&n)),
            "{hits:?}"
        );
    }

    #[test]
    fn smooth_order_interleaves_by_weight() {
        assert_eq!(smooth_order(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(smooth_order(&[1, 1, 1]), vec![0, 1, 2]);
        assert_eq!(smooth_order(&[5, 5]), vec![0, 1]);
        let o = smooth_order(&[5, 1, 1]);
        assert_eq!(o.len(), 7);
        assert_eq!(o.iter().filter(|&&i| i == 0).count(), 5);
    }

    #[test]
    fn pick_rotates_and_skips_unhealthy() {
        let (a, b) = (backend("a", 1), backend("b", 2));
        let pool = BackendPool::new(vec![(a.clone(), 1), (b.clone(), 1)]);
        let ids: Vec<_> = (0..4)
            .map(|_| pool.pick(|_| false).unwrap().id.to_string())
            .collect();
        assert_eq!(ids, ["a", "b", "a", "b"]);
        a.health.store(HealthReading {
            status: HealthStatus::Unhealthy,
            consecutive_failures: 3,
            consecutive_successes: 0,
            last_check_ms: Some(1),
        });
        for _ in 0..4 {
            assert_eq!(&*pool.pick(|_| false).unwrap().id, "b");
        }
        assert!(pool.pick(|x| &*x.id == "b").is_none());
    }

    #[test]
    fn passive_failures_eject_at_the_threshold() {
        let b = backend("a", 1);
        assert!(!b.health.record_passive_failure(3));
        b.health.record_passive_success();
        assert!(!b.health.record_passive_failure(3));
        assert!(!b.health.record_passive_failure(3));
        assert!(b.health.record_passive_failure(3));
        assert_eq!(b.health.status(), HealthStatus::Unhealthy);
        assert!(!b.health.record_passive_failure(3), "ejected once");
    }

    #[test]
    fn lookup_exact_then_wildcard() {
        let table = RouteTable::new();
        let pool = || Arc::new(BackendPool::new(vec![(backend("x", 1), 1)]));
        for d in ["example.com", "*.example.com"] {
            table.publish(Arc::new(Route {
                domain: DomainName::parse(d).unwrap(),
                tag: Tag::parse("a").unwrap(),
                pool: pool(),
                http_to_https: false,
                lb_policy: LbPolicy::RoundRobin,
                metrics: crate::metrics::Metrics::new().route(d, "a"),
            }));
        }
        assert_eq!(
            table.lookup("example.com").unwrap().domain.as_str(),
            "example.com"
        );
        assert_eq!(
            table.lookup("www.example.com").unwrap().domain.as_str(),
            "*.example.com"
        );
        assert!(table.lookup("a.b.example.com").is_none());
        assert!(table.lookup("other.org").is_none());
    }
}
