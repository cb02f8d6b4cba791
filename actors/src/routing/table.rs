//! The published routing view: domain -> `Arc<Route>`, replaced whole on every change.

use super::{Access, Affinity, BackendPool, ClientLimiter, Lease, Policy, Split};
use crate::metrics::RouteMetrics;
use crate::model::{DomainName, Tag};
use crate::upstream::UpstreamBackend;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Everything the request path needs for one domain, replaced whole on every change.
#[derive(Debug)]
pub struct Route {
    /// The domain this route serves (the configured name, possibly a wildcard).
    pub domain: DomainName,
    /// The enabled tag.
    pub tag: Tag,
    /// Backends carrying the tag (shared by every route on the tag with the same need for a
    /// hash table).
    pub pool: Arc<BackendPool>,
    /// How a backend of the pool is picked.
    pub policy: Policy,
    /// Redirect plain HTTP to HTTPS.
    pub http_to_https: bool,
    /// Pre-resolved metric handles for (domain, tag).
    pub metrics: Arc<RouteMetrics>,
    /// The traffic split between tags, when there is one; `tag`, `pool` and `metrics` are then
    /// the baseline's, and each request takes the route of the lane [`Split::choose`] picks.
    pub split: Option<Split>,
    /// Who may use the domain, and how fast (on the domain's main route only: it is applied
    /// before the split picks a lane). None: no control, nothing to check.
    pub access: Option<Access>,
}

impl Route {
    /// Picks a backend for a request by the route's policy, skipping what `skip` rejects (the
    /// backends this request already tried), and takes an in-flight slot on it. None when every
    /// backend is unhealthy, at its cap or skipped: the request gets a 503, it never waits.
    #[inline]
    pub fn pick(
        &self,
        request: &Affinity<'_, impl Fn() -> Option<IpAddr>>,
        skip: impl Fn(&UpstreamBackend) -> bool,
    ) -> Option<Lease> {
        self.policy.pick(&self.pool, request, skip)
    }
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

    /// The map a configured domain's route lives in, and its key there (a wildcard's suffix).
    fn slot<'d>(
        &self,
        domain: &'d DomainName,
    ) -> (&DashMap<String, Arc<Route>, HostHasher>, &'d str) {
        match domain.wildcard_suffix() {
            Some(suffix) => (&self.wildcard, suffix),
            None => (&self.exact, domain.as_str()),
        }
    }

    /// The published route of a configured domain (exact or wildcard).
    pub fn get(&self, domain: &DomainName) -> Option<Arc<Route>> {
        let (map, key) = self.slot(domain);
        map.get(key).map(|r| Arc::clone(r.value()))
    }

    /// The rate limiters of the published routes (for sweeping their idle clients).
    pub fn limiters(&self) -> Vec<Arc<ClientLimiter>> {
        self.exact
            .iter()
            .chain(self.wildcard.iter())
            .filter_map(|r| r.value().access.as_ref()?.limiter().cloned())
            .collect()
    }

    /// Publishes (or replaces) a route in one insert.
    pub fn publish(&self, route: Arc<Route>) {
        let (map, key) = self.slot(&route.domain);
        let key = key.to_string();
        map.insert(key, route);
    }

    /// Removes a domain's route.
    pub fn withdraw(&self, domain: &DomainName) {
        let (map, key) = self.slot(domain);
        map.remove(key);
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
