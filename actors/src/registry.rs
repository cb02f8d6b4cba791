//! The registry: domains, backends and tags, the rules that keep them consistent, and the
//! routes built from them. Plain code; [`actor`] wraps it in the RegistryActor.

pub mod actor;
mod commands;
mod error;
mod live;
mod publish;
mod remote;
mod rollouts;
#[cfg(test)]
mod tests;

pub use error::{Conflict, Invalid, NotFound, RegistryError};

use crate::command::BackendView;
use crate::model::{
    check_address_shape, check_tags, check_weight, is_own_address, resolve_address, BackendId,
    BackendRecord, DomainName, DomainRecord, Tag,
};
use crate::rollout::{Change, HISTORY_LIMIT};
use crate::store::PersistedState;
use crate::upstream::{load_ca_file, PeerPreparer, UpstreamBackend};
pub use commands::check_policy;
use error::invalid;
use live::Preparer;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

/// The port of a `host:port` address whose shape was checked.
fn address_port(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0)
}

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Which routes a command changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Domains whose route must be rebuilt and published.
    pub republish: BTreeSet<DomainName>,
    /// Domains whose route must be withdrawn.
    pub withdraw: Vec<DomainName>,
    /// Domain whose enabled tag changed, if any.
    pub switched: Option<DomainName>,
    /// Backends whose probe must (re)start: added, or given a new address.
    pub probe: Vec<BackendId>,
    /// Backends whose probe must stop: deleted.
    pub unprobe: Vec<BackendId>,
    /// A backend was added, changed or removed.
    pub backends_changed: bool,
    /// A domain that did not exist before (it needs a certificate).
    pub added: Option<DomainName>,
    /// A domain whose split was rolled back automatically.
    pub rolled_back: Option<DomainName>,
}

/// Domains, backends and tags, always mutually consistent.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    domains: BTreeMap<DomainName, DomainRecord>,
    backends: BTreeMap<BackendId, BackendRecord>,
    /// Request-path view of each backend (resolved address, health atomics).
    upstreams: HashMap<BackendId, Arc<UpstreamBackend>>,
    /// Routing changes per domain, oldest first, bounded.
    history: BTreeMap<DomainName, VecDeque<Change>>,
    /// What the last command replaced, so that [`Registry::revert`] can put it back.
    undo: Undo,
    /// The time the command being applied happens at (Unix milliseconds).
    now_ms: i64,
    /// The proxy's own listeners and admin API: never a backend (a request would loop back).
    own_addresses: Vec<SocketAddr>,
    /// Builds the proxy's peer template of each live backend.
    preparer: Preparer,
    /// Consistent-hash tables shared by the pools of the same members across publishes.
    hash_tables: crate::routing::HashTables,
}

/// Entries as they were before the last command changed them.
#[derive(Clone, Debug, Default)]
struct Undo {
    domains: Vec<(DomainName, Option<DomainRecord>)>,
    /// Histories as they were, and the changes the command appended.
    history: Vec<(DomainName, Option<VecDeque<Change>>)>,
    appended: Vec<(DomainName, Change)>,
    backends: Vec<(
        BackendId,
        Option<BackendRecord>,
        Option<Arc<UpstreamBackend>>,
    )>,
}

// === impl Registry: building ===

impl Registry {
    /// Builds a registry from stored records, listing every problem found. It accepts what the
    /// API can leave behind: a domain whose tag lost its last backend (forced delete) starts and
    /// answers 503, and a backend whose host name does not resolve now starts unhealthy and is
    /// resolved again later ([`Registry::unresolved`]).
    pub fn from_state(state: PersistedState) -> Result<Self, Vec<String>> {
        Self::from_state_with(state, Arc::new(crate::upstream::NoPeer))
    }

    /// [`Registry::from_state`], with the proxy's builder of peer templates.
    pub fn from_state_with(
        state: PersistedState,
        preparer: Arc<dyn PeerPreparer>,
    ) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut reg = Registry {
            preparer: Preparer(preparer),
            ..Registry::default()
        };
        for mut b in state.backends {
            b.transport = b.transport.normalized();
            if let Err(e) = check_tags(&b.tags).and_then(|_| check_weight(b.weight)) {
                errors.push(format!("backend '{}': {e}", b.id));
            }
            let transport_ok = b
                .transport
                .check()
                .map_err(|e| errors.push(format!("backend '{}': {e}", b.id)))
                .is_ok();
            // Read here, at start: nothing else runs yet.
            let ca = match b.transport.tls_ca_file.as_deref().map(load_ca_file) {
                Some(Err(e)) => {
                    errors.push(format!("backend '{}': {e}", b.id));
                    None
                }
                Some(Ok(ca)) => Some(ca),
                None => None,
            };
            let upstream = match (check_address_shape(&b.address), resolve_address(&b.address)) {
                (Err(e), _) => {
                    errors.push(format!("backend '{}': {e}", b.id));
                    None
                }
                (Ok(()), Ok(_)) if !transport_ok => None,
                (Ok(()), Ok(addr)) => reg
                    .live_backend(&b, addr, ca.as_ref())
                    .map_err(|e| errors.push(format!("backend '{}': {e}", b.id)))
                    .ok(),
                (Ok(()), Err(_)) => Some(Arc::new(UpstreamBackend::unresolved(
                    b.id.as_str(),
                    address_port(&b.address),
                ))),
            };
            if let Some(u) = upstream {
                reg.upstreams.insert(b.id.clone(), u);
            }
            if reg.backends.insert(b.id.clone(), b.clone()).is_some() {
                errors.push(format!("backend id '{}' is used twice", b.id));
            }
        }
        for d in state.domains {
            if let Err(e) = check_policy(d.lb_policy, d.lb_hash_header.as_deref()) {
                errors.push(format!("domain '{}': {e}", d.domain));
            }
            if let Err(problems) = d.access.check() {
                for e in problems {
                    errors.push(format!("domain '{}': {e}", d.domain));
                }
            }
            if reg.domains.insert(d.domain.clone(), d.clone()).is_some() {
                errors.push(format!("domain '{}' is listed twice", d.domain));
            }
        }
        for (domain, changes) in state.history {
            if reg.domains.contains_key(&domain) {
                let skip = changes.len().saturating_sub(HISTORY_LIMIT);
                reg.history
                    .insert(domain, changes.into_iter().skip(skip).collect());
            }
        }
        if errors.is_empty() {
            Ok(reg)
        } else {
            Err(errors)
        }
    }

    /// Backends started without an address because their host name did not resolve, with
    /// the configured address.
    pub fn unresolved(&self) -> impl Iterator<Item = (&BackendId, &str)> + '_ {
        self.upstreams
            .iter()
            .filter(|(_, u)| !u.is_resolved())
            .filter_map(|(id, _)| Some((id, self.backend_address(id)?)))
    }

    /// Gives an unresolved backend the address its host name now resolves to (nothing is
    /// persisted: the record is unchanged). `None` when the backend is gone, was re-addressed
    /// meanwhile, or is resolved already.
    pub fn resolve_later(
        &mut self,
        id: &BackendId,
        address: &str,
        addr: SocketAddr,
    ) -> Option<Effects> {
        let record = self.backends.get(id)?;
        if record.address != address || self.upstreams.get(id)?.is_resolved() {
            return None;
        }
        let tags: Vec<Tag> = record.tags.clone();
        // A rare event (a host name that did not resolve at start): the CA file is read here.
        let live = record
            .transport
            .tls_ca_file
            .as_deref()
            .map(load_ca_file)
            .transpose()
            .and_then(|ca| self.live_backend(record, addr, ca.as_ref()));
        let live = match live {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(backend = %id, error = %e, "backend resolves now but cannot be used");
                return None;
            }
        };
        self.upstreams.insert(id.clone(), live);
        let mut effects = Effects {
            republish: self
                .domains_on(&tags.iter().collect::<Vec<_>>())
                .cloned()
                .collect(),
            ..Effects::default()
        };
        effects.probe.push(id.clone());
        effects.backends_changed = true;
        Some(effects)
    }

    /// Refuses from now on backends at `own` (the proxy's listeners and admin API); returns the
    /// ids of the backends already there.
    pub fn refuse_own_addresses(&mut self, own: Vec<SocketAddr>) -> Vec<BackendId> {
        self.own_addresses = own;
        let mut found: Vec<BackendId> = self
            .upstreams
            .iter()
            .filter(|(_, u)| u.is_resolved() && is_own_address(u.addr, &self.own_addresses))
            .map(|(id, _)| id.clone())
            .collect();
        found.sort();
        found
    }

    fn check_not_own(&self, address: &str, addr: SocketAddr) -> Result<()> {
        if is_own_address(addr, &self.own_addresses) {
            return Err(invalid(format!(
                "address '{address}' is this proxy's own listener or admin API"
            )));
        }
        Ok(())
    }

    /// The records to persist.
    pub fn state(&self) -> PersistedState {
        PersistedState {
            version: PersistedState::VERSION,
            domains: self.domains.values().cloned().collect(),
            backends: self.backends.values().cloned().collect(),
            history: self
                .history
                .iter()
                .filter(|(_, h)| !h.is_empty())
                .map(|(d, h)| (d.clone(), h.iter().cloned().collect()))
                .collect(),
        }
    }

    /// A domain's routing changes, newest first.
    pub fn history(&self, name: &str) -> Result<Vec<Change>> {
        let d = self.domain(name)?;
        Ok(self
            .history
            .get(&d.domain)
            .map(|h| h.iter().rev().cloned().collect())
            .unwrap_or_default())
    }
}

// === impl Registry: queries ===

impl Registry {
    /// All domains, sorted by name.
    pub fn domains(&self) -> impl Iterator<Item = &DomainRecord> {
        self.domains.values()
    }

    /// One domain by (un-normalised) name.
    pub fn domain(&self, name: &str) -> Result<&DomainRecord> {
        DomainName::parse(name)
            .ok()
            .and_then(|n| self.domains.get(&n))
            .ok_or_else(|| NotFound::Domain(name.to_string()).into())
    }

    /// All backends with live health, sorted by id.
    pub fn backends(&self) -> impl Iterator<Item = BackendView> + '_ {
        self.backends.values().map(|b| self.view(b))
    }

    /// One backend with live health.
    pub fn backend(&self, id: &str) -> Result<BackendView> {
        self.backend_record(id).map(|b| self.view(b))
    }

    /// Ids of every backend, sorted.
    pub fn backend_ids(&self) -> impl Iterator<Item = &BackendId> + '_ {
        self.backends.keys()
    }

    /// A backend's configured `host:port`.
    pub fn backend_address(&self, id: &BackendId) -> Option<&str> {
        self.backends.get(id).map(|b| b.address.as_str())
    }

    /// The request-path view of a backend.
    pub fn upstream(&self, id: &BackendId) -> Option<&Arc<UpstreamBackend>> {
        self.upstreams.get(id)
    }

    fn backend_record(&self, id: &str) -> Result<&BackendRecord> {
        BackendId::parse(id)
            .ok()
            .and_then(|i| self.backends.get(&i))
            .ok_or_else(|| NotFound::Backend(id.to_string()).into())
    }

    fn view(&self, b: &BackendRecord) -> BackendView {
        let upstream = &self.upstreams[&b.id];
        BackendView {
            backend: b.with_defaults_shown(),
            health: upstream.health.read().into(),
            in_flight: upstream.in_flight(),
        }
    }

    fn tag_exists(&self, tag: &Tag) -> bool {
        self.backends.values().any(|b| b.has_tag(tag))
    }

    fn tag_has_routable(&self, tag: &Tag) -> bool {
        self.backends
            .values()
            .any(|b| b.has_tag(tag) && self.upstreams[&b.id].health.is_routable())
    }

    fn domains_on(&self, tags: &[&Tag]) -> impl Iterator<Item = &DomainName> + '_ {
        let tags: Vec<Tag> = tags.iter().map(|t| (*t).clone()).collect();
        self.domains
            .values()
            .filter(move |d| d.serving_tags().iter().any(|t| tags.contains(t)))
            .map(|d| &d.domain)
    }
}
