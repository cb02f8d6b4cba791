//! The registry: domains, backends and tags, the rules that keep them consistent, and the
//! routes built from them. Plain code; [`actor`] wraps it in the RegistryActor.

pub mod actor;
#[cfg(test)]
mod tests;

use crate::command::{
    BackendPatch, BackendView, Command, DomainPatch, NewBackend, NewDomain, Reply, SwitchRequest,
};
use crate::metrics::{BackendGauge, Metrics};
use crate::model::{
    check_tags, check_weight, resolve_address, BackendId, BackendRecord, DomainName, DomainRecord,
    LbPolicy, Tag,
};
use crate::snapshot::{BackendPool, Route, RouteTable, UpstreamBackend};
use crate::store::{PersistedState, StateChange};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Why a command was refused; each maps to one API status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Invalid input or unknown tag (400).
    #[error("{0}")]
    Invalid(String),
    /// No such domain or backend (404).
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The change could not be written to the state store (500).
    #[error("could not persist the change: {0}")]
    Persist(String),
}

type Result<T, E = RegistryError> = std::result::Result<T, E>;

fn invalid(msg: impl Into<String>) -> RegistryError {
    RegistryError::Invalid(msg.into())
}

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
}

/// Domains, backends and tags, always mutually consistent.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    domains: BTreeMap<DomainName, DomainRecord>,
    backends: BTreeMap<BackendId, BackendRecord>,
    /// Request-path view of each backend (resolved address, health atomics).
    upstreams: HashMap<BackendId, Arc<UpstreamBackend>>,
    /// What the last command replaced, so that [`Registry::revert`] can put it back.
    undo: Undo,
}

/// Entries as they were before the last command changed them.
#[derive(Clone, Debug, Default)]
struct Undo {
    domains: Vec<(DomainName, Option<DomainRecord>)>,
    backends: Vec<(
        BackendId,
        Option<BackendRecord>,
        Option<Arc<UpstreamBackend>>,
    )>,
}

// === impl Registry: building ===

impl Registry {
    /// Builds a registry from stored records, listing every problem found.
    pub fn from_state(state: PersistedState) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut reg = Registry::default();
        for b in state.backends {
            if let Err(e) = check_tags(&b.tags).and_then(|_| check_weight(b.weight)) {
                errors.push(format!("backend '{}': {e}", b.id));
            }
            match resolve_address(&b.address) {
                Ok(addr) => {
                    reg.upstreams.insert(
                        b.id.clone(),
                        Arc::new(UpstreamBackend::new(b.id.as_str(), addr)),
                    );
                }
                Err(e) => errors.push(format!("backend '{}': {e}", b.id)),
            }
            if reg.backends.insert(b.id.clone(), b.clone()).is_some() {
                errors.push(format!("backend id '{}' is used twice", b.id));
            }
        }
        for d in state.domains {
            if !reg.tag_exists(&d.enabled_backends_tag) {
                errors.push(format!(
                    "domain '{}': no backend carries tag '{}'",
                    d.domain, d.enabled_backends_tag
                ));
            }
            if let Err(e) = check_policy(d.lb_policy, d.lb_hash_header.as_deref()) {
                errors.push(format!("domain '{}': {e}", d.domain));
            }
            if reg.domains.insert(d.domain.clone(), d.clone()).is_some() {
                errors.push(format!("domain '{}' is listed twice", d.domain));
            }
        }
        if errors.is_empty() {
            Ok(reg)
        } else {
            Err(errors)
        }
    }

    /// The records to persist.
    pub fn state(&self) -> PersistedState {
        PersistedState {
            version: PersistedState::VERSION,
            domains: self.domains.values().cloned().collect(),
            backends: self.backends.values().cloned().collect(),
        }
    }

    /// Publishes every domain's route into an empty or stale table.
    pub fn publish_all(&self, table: &RouteTable, metrics: &Metrics) {
        let mut pools = HashMap::new();
        for d in self.domains.values() {
            table.publish(self.build_route(d, &mut pools, metrics));
        }
        metrics.set_backends(self.backend_gauges());
    }

    /// Publishes what a command changed.
    pub fn publish(&self, effects: &Effects, table: &RouteTable, metrics: &Metrics) {
        for d in &effects.withdraw {
            table.withdraw(d);
            metrics.forget_domain(d.as_str());
        }
        let mut pools = HashMap::new();
        for name in &effects.republish {
            if let Some(d) = self.domains.get(name) {
                table.publish(self.build_route(d, &mut pools, metrics));
            }
        }
        if let Some(d) = &effects.switched {
            metrics.record_switch(d.as_str());
        }
        if effects.backends_changed {
            metrics.set_backends(self.backend_gauges());
        }
    }

    fn backend_gauges(&self) -> Vec<BackendGauge> {
        self.backends
            .values()
            .map(|b| BackendGauge {
                id: b.id.to_string(),
                tags: b.tags.iter().map(|t| t.to_string()).collect(),
                upstream: Arc::clone(&self.upstreams[&b.id]),
            })
            .collect()
    }

    fn build_route(
        &self,
        d: &DomainRecord,
        pools: &mut HashMap<Tag, Arc<BackendPool>>,
        metrics: &Metrics,
    ) -> Arc<Route> {
        let pool = pools
            .entry(d.enabled_backends_tag.clone())
            .or_insert_with(|| Arc::new(self.pool_for(&d.enabled_backends_tag)))
            .clone();
        Arc::new(Route {
            domain: d.domain.clone(),
            tag: d.enabled_backends_tag.clone(),
            pool,
            http_to_https: d.http_to_https,
            lb_policy: d.lb_policy,
            metrics: metrics.route(d.domain.as_str(), d.enabled_backends_tag.as_str()),
        })
    }

    fn pool_for(&self, tag: &Tag) -> BackendPool {
        BackendPool::new(
            self.backends
                .values()
                .filter(|b| b.has_tag(tag))
                .map(|b| (Arc::clone(&self.upstreams[&b.id]), b.weight))
                .collect(),
        )
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
            .ok_or_else(|| RegistryError::NotFound(format!("domain '{name}' not found")))
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
            .ok_or_else(|| RegistryError::NotFound(format!("backend '{id}' not found")))
    }

    fn view(&self, b: &BackendRecord) -> BackendView {
        BackendView {
            backend: b.clone(),
            health: self.upstreams[&b.id].health.read().into(),
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
            .filter(move |d| tags.contains(&d.enabled_backends_tag))
            .map(|d| &d.domain)
    }
}

// === impl Registry: commands ===

impl Registry {
    /// Applies one command. On error nothing has changed; after success, [`Registry::revert`]
    /// undoes it (when it could not be persisted).
    pub fn apply(&mut self, cmd: Command) -> Result<(Reply, Effects)> {
        self.undo = Undo::default();
        match cmd {
            Command::AddDomain(new) => self.add_domain(new),
            Command::UpdateDomain(name, patch) => self.update_domain(&name, patch),
            Command::DeleteDomain(name) => {
                let name = self.domain(&name)?.domain.clone();
                self.remove_domain(&name);
                let effects = Effects {
                    withdraw: vec![name],
                    ..Effects::default()
                };
                Ok((Reply::Deleted, effects))
            }
            Command::SwitchTag(name, req) => self.switch(&name, req),
            Command::AddBackend(new) => self.add_backend(new).map(backends_changed),
            Command::UpdateBackend(id, patch) => {
                self.update_backend(&id, patch).map(backends_changed)
            }
            Command::DeleteBackend { id, force } => {
                self.delete_backend(&id, force).map(backends_changed)
            }
        }
    }

    /// What the last successful [`Registry::apply`] changed, as records to persist.
    pub fn last_changes(&self) -> Vec<StateChange> {
        let mut out = Vec::new();
        for (name, _) in &self.undo.domains {
            out.push(match self.domains.get(name) {
                Some(d) => StateChange::PutDomain(d.clone()),
                None => StateChange::DeleteDomain(name.clone()),
            });
        }
        for (id, _, _) in &self.undo.backends {
            out.push(match self.backends.get(id) {
                Some(b) => StateChange::PutBackend(b.clone()),
                None => StateChange::DeleteBackend(id.clone()),
            });
        }
        out
    }

    /// Puts back what the last successful [`Registry::apply`] changed.
    pub fn revert(&mut self) {
        let undo = std::mem::take(&mut self.undo);
        for (name, before) in undo.domains.into_iter().rev() {
            match before {
                Some(d) => self.domains.insert(name, d),
                None => self.domains.remove(&name),
            };
        }
        for (id, record, upstream) in undo.backends.into_iter().rev() {
            match record {
                Some(b) => self.backends.insert(id.clone(), b),
                None => self.backends.remove(&id),
            };
            match upstream {
                Some(u) => self.upstreams.insert(id, u),
                None => self.upstreams.remove(&id),
            };
        }
    }

    fn put_domain(&mut self, record: DomainRecord) {
        let before = self.domains.insert(record.domain.clone(), record.clone());
        self.undo.domains.push((record.domain, before));
    }

    fn remove_domain(&mut self, name: &DomainName) {
        let before = self.domains.remove(name);
        self.undo.domains.push((name.clone(), before));
    }

    /// Stores a backend; `upstream` replaces its request-path view (new backend or address).
    fn put_backend(&mut self, record: BackendRecord, upstream: Option<Arc<UpstreamBackend>>) {
        let id = record.id.clone();
        let before = self.backends.insert(id.clone(), record);
        let before_up = match upstream {
            Some(u) => self.upstreams.insert(id.clone(), u),
            None => self.upstreams.get(&id).cloned(),
        };
        self.undo.backends.push((id, before, before_up));
    }

    fn remove_backend(&mut self, id: &BackendId) {
        let before = self.backends.remove(id);
        let before_up = self.upstreams.remove(id);
        self.undo.backends.push((id.clone(), before, before_up));
    }

    fn add_domain(&mut self, new: NewDomain) -> Result<(Reply, Effects)> {
        let domain = DomainName::parse(&new.domain).map_err(invalid)?;
        let tag = Tag::parse(&new.enabled_backends_tag).map_err(invalid)?;
        let lb_policy = new.lb_policy.unwrap_or_default();
        check_policy(lb_policy, new.lb_hash_header.as_deref()).map_err(invalid)?;
        if self.domains.contains_key(&domain) {
            return Err(RegistryError::Conflict(format!(
                "domain '{domain}' already exists"
            )));
        }
        self.require_tag(&tag)?;
        let record = DomainRecord {
            domain: domain.clone(),
            enabled_backends_tag: tag,
            previous_tag: None,
            http_to_https: new.http_to_https,
            lb_policy,
            lb_hash_header: new.lb_hash_header,
        };
        self.put_domain(record.clone());
        let mut effects = republish_one(domain.clone());
        effects.added = Some(domain);
        Ok((Reply::Domain(record), effects))
    }

    fn update_domain(&mut self, name: &str, patch: DomainPatch) -> Result<(Reply, Effects)> {
        let mut record = self.domain(name)?.clone();
        let mut effects = republish_one(record.domain.clone());
        if let Some(policy) = patch.lb_policy {
            record.lb_policy = policy;
        }
        if let Some(header) = patch.lb_hash_header {
            record.lb_hash_header = header;
        }
        check_policy(record.lb_policy, record.lb_hash_header.as_deref()).map_err(invalid)?;
        if let Some(https) = patch.http_to_https {
            record.http_to_https = https;
        }
        if let Some(tag) = patch.enabled_backends_tag {
            let tag = Tag::parse(&tag).map_err(invalid)?;
            if self.switch_record(&mut record, tag, patch.force)? {
                effects.switched = Some(record.domain.clone());
            }
        }
        self.put_domain(record.clone());
        Ok((Reply::Domain(record), effects))
    }

    fn switch(&mut self, name: &str, req: SwitchRequest) -> Result<(Reply, Effects)> {
        let mut record = self.domain(name)?.clone();
        let target = match req.new_tag {
            Some(t) => Tag::parse(&t).map_err(invalid)?,
            None => toggle_target(&record)?,
        };
        let mut effects = republish_one(record.domain.clone());
        if self.switch_record(&mut record, target, req.force)? {
            effects.switched = Some(record.domain.clone());
        }
        self.put_domain(record.clone());
        Ok((Reply::Domain(record), effects))
    }

    /// Moves `record` to `target` after the safety checks; false when it already serves it.
    fn switch_record(&self, record: &mut DomainRecord, target: Tag, force: bool) -> Result<bool> {
        self.require_tag(&target)?;
        if record.enabled_backends_tag == target {
            return Ok(false);
        }
        if !force && !self.tag_has_routable(&target) {
            return Err(RegistryError::Conflict(format!(
                "tag '{target}' has no healthy backend; switch with \"force\": true to do it anyway"
            )));
        }
        record.previous_tag = Some(std::mem::replace(&mut record.enabled_backends_tag, target));
        Ok(true)
    }

    fn add_backend(&mut self, new: NewBackend) -> Result<(Reply, Effects)> {
        let id = BackendId::parse(&new.id).map_err(invalid)?;
        let tags = parse_tags(&new.tags)?;
        let weight = new.weight.unwrap_or(1);
        check_weight(weight).map_err(invalid)?;
        let addr = resolve_address(&new.address).map_err(invalid)?;
        if self.backends.contains_key(&id) {
            return Err(RegistryError::Conflict(format!(
                "backend '{id}' already exists"
            )));
        }
        let record = BackendRecord {
            id: id.clone(),
            address: new.address,
            tags,
            weight,
            max_connections: new.max_connections.unwrap_or(0),
        };
        let mut effects = self.republish_tags(&record.tags.iter().collect::<Vec<_>>());
        effects.probe.push(id.clone());
        self.put_backend(
            record.clone(),
            Some(Arc::new(UpstreamBackend::new(id.as_str(), addr))),
        );
        Ok((Reply::Backend(self.view(&record)), effects))
    }

    fn update_backend(&mut self, id: &str, patch: BackendPatch) -> Result<(Reply, Effects)> {
        let old = self.backend_record(id)?.clone();
        let mut record = old.clone();
        let mut new_addr = None;
        if let Some(address) = patch.address {
            if address != old.address {
                new_addr = Some(resolve_address(&address).map_err(invalid)?);
            }
            record.address = address;
        }
        if let Some(tags) = patch.tags {
            record.tags = parse_tags(&tags)?;
        }
        if let Some(w) = patch.weight {
            check_weight(w).map_err(invalid)?;
            record.weight = w;
        }
        if let Some(m) = patch.max_connections {
            record.max_connections = m;
        }
        let dropped: Vec<&Tag> = old.tags.iter().filter(|t| !record.has_tag(t)).collect();
        self.check_not_last(&old, &dropped)?;
        let touched: Vec<&Tag> = old.tags.iter().chain(record.tags.iter()).collect();
        let mut effects = self.republish_tags(&touched);
        let upstream = new_addr.map(|addr| {
            effects.probe.push(record.id.clone());
            Arc::new(UpstreamBackend::new(record.id.as_str(), addr))
        });
        self.put_backend(record.clone(), upstream);
        Ok((Reply::Backend(self.view(&record)), effects))
    }

    fn delete_backend(&mut self, id: &str, force: bool) -> Result<(Reply, Effects)> {
        let old = self.backend_record(id)?.clone();
        if !force {
            self.check_not_last(&old, &old.tags.iter().collect::<Vec<_>>())?;
        }
        let mut effects = self.republish_tags(&old.tags.iter().collect::<Vec<_>>());
        effects.unprobe.push(old.id.clone());
        self.remove_backend(&old.id);
        Ok((Reply::Deleted, effects))
    }

    /// Refuses to take `tags` away from `backend` when it is the last one of a tag in use.
    fn check_not_last(&self, backend: &BackendRecord, tags: &[&Tag]) -> Result<()> {
        for tag in tags {
            let others = self
                .backends
                .values()
                .any(|b| b.id != backend.id && b.has_tag(tag));
            if others {
                continue;
            }
            if let Some(d) = self.domains_on(&[tag]).next() {
                return Err(RegistryError::Conflict(format!(
                    "backend '{}' is the last backend of tag '{tag}', which domain '{d}' uses \
                     (add ?force=true to remove it anyway)",
                    backend.id
                )));
            }
        }
        Ok(())
    }

    fn require_tag(&self, tag: &Tag) -> Result<()> {
        if self.tag_exists(tag) {
            Ok(())
        } else {
            Err(invalid(format!(
                "unknown tag '{tag}': no backend carries it"
            )))
        }
    }

    fn republish_tags(&self, tags: &[&Tag]) -> Effects {
        Effects {
            republish: self.domains_on(tags).cloned().collect(),
            ..Effects::default()
        }
    }
}

fn backends_changed((reply, mut effects): (Reply, Effects)) -> (Reply, Effects) {
    effects.backends_changed = true;
    (reply, effects)
}

fn republish_one(domain: DomainName) -> Effects {
    Effects {
        republish: BTreeSet::from([domain]),
        ..Effects::default()
    }
}

/// The empty-body switch target: the previous tag, else the other of `a`/`b`.
fn toggle_target(record: &DomainRecord) -> Result<Tag> {
    if let Some(prev) = &record.previous_tag {
        return Ok(prev.clone());
    }
    let other = match record.enabled_backends_tag.as_str() {
        "a" => "b",
        "b" => "a",
        current => {
            return Err(RegistryError::Conflict(format!(
                "domain '{}' serves tag '{current}' and has no previous tag; give \"new_tag\"",
                record.domain
            )))
        }
    };
    Ok(Tag::parse(other).expect("literal tag is valid"))
}

fn parse_tags(raw: &[String]) -> Result<Vec<Tag>> {
    let tags = raw
        .iter()
        .map(|t| Tag::parse(t))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(invalid)?;
    check_tags(&tags).map_err(invalid)?;
    Ok(tags)
}

/// Checks a domain's policy settings against what this build supports.
pub fn check_policy(policy: LbPolicy, hash_header: Option<&str>) -> Result<(), String> {
    if !policy.is_supported() {
        return Err(format!(
            "lb_policy '{}' is not supported yet (use round_robin)",
            policy.as_str()
        ));
    }
    if let Some(h) = hash_header {
        if http_header_name_invalid(h) {
            return Err(format!("lb_hash_header '{h}' is not a valid header name"));
        }
    }
    Ok(())
}

fn http_header_name_invalid(h: &str) -> bool {
    h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
