//! Records another instance committed to a shared store, applied as they are: they were
//! validated by the instance that wrote them. Each record gives the effects a command would.

use super::address_port;
use super::{Effects, Registry, Undo};
use crate::model::{BackendId, BackendRecord, DomainName, DomainRecord, Tag};
use crate::resolve::Resolutions;
use crate::rollout::Change;
use crate::store::Record;
use crate::upstream::UpstreamBackend;
use std::collections::VecDeque;
use std::sync::Arc;

impl Registry {
    /// Applies one record from the shared store; returns what to publish and which probes
    /// and certificates to start or stop. Host names and CA files of backend records were
    /// looked up beforehand into `resolved` ([`Resolutions::of_records`]).
    pub fn apply_record(&mut self, record: Record, resolved: &Resolutions) -> Effects {
        self.undo = Undo::default();
        match record {
            Record::Domain(_, Some(d)) => self.remote_domain(d),
            Record::Domain(name, None) => {
                let mut effects = Effects::default();
                if self.domains.remove(&name).is_some() {
                    self.history.remove(&name);
                    effects.withdraw.push(name);
                }
                effects
            }
            Record::Backend(id, Some(b)) => self.remote_backend(id, b, resolved),
            Record::Backend(id, None) => {
                let mut effects = Effects::default();
                if let Some(old) = self.backends.remove(&id) {
                    self.upstreams.remove(&id);
                    effects = self.republish_tags(&old.tags.iter().collect::<Vec<_>>());
                    effects.unprobe.push(id);
                    effects.backends_changed = true;
                }
                effects
            }
            Record::History(name, changes) => {
                self.remote_history(name, changes);
                Effects::default()
            }
        }
    }

    fn remote_domain(&mut self, d: DomainRecord) -> Effects {
        let name = d.domain.clone();
        let before = self.domains.insert(name.clone(), d.clone());
        let mut effects = Effects::default();
        effects.republish.insert(name.clone());
        match before {
            None => effects.added = Some(name),
            Some(old) if old.routing() != d.routing() => effects.switched = Some(name),
            Some(_) => {}
        }
        effects
    }

    fn remote_backend(
        &mut self,
        id: BackendId,
        b: BackendRecord,
        resolved: &Resolutions,
    ) -> Effects {
        let old = self.backends.get(&id).cloned();
        if old.as_ref() == Some(&b) {
            return Effects::default();
        }
        let current = self.upstreams.get(&id).cloned();
        let rebuild = match &old {
            None => true,
            Some(o) => o.address != b.address || o.transport != b.transport,
        };
        let mut tags: Vec<Tag> = b.tags.clone();
        if let Some(o) = &old {
            tags.extend(o.tags.iter().cloned());
        }
        let mut effects = self.republish_tags(&tags.iter().collect::<Vec<_>>());
        effects.backends_changed = true;
        if rebuild || current.is_none() {
            super::live::warn_if_unverified(old.as_ref(), &b);
            let live = self.remote_live(&b, resolved);
            self.upstreams.insert(id.clone(), live);
            effects.probe.push(id.clone());
        }
        self.backends.insert(id, b);
        effects
    }

    /// The request-path view of a backend another instance wrote: unresolved (tried again
    /// later, taking no traffic) when its host name does not resolve here.
    fn remote_live(&self, b: &BackendRecord, resolved: &Resolutions) -> Arc<UpstreamBackend> {
        let unresolved = || {
            Arc::new(UpstreamBackend::unresolved(
                b.id.as_str(),
                address_port(&b.address),
            ))
        };
        let addr = match resolved.get(&b.address) {
            Ok(addr) => addr,
            Err(e) => {
                tracing::warn!(backend = %b.id, error = %e, "backend from the shared store does not resolve here");
                return unresolved();
            }
        };
        let ca = match &b.transport.tls_ca_file {
            Some(path) => match resolved.ca_file(path) {
                Ok(ca) => Some(ca),
                Err(e) => {
                    tracing::warn!(backend = %b.id, error = %e, "backend from the shared store cannot be used here");
                    return unresolved();
                }
            },
            None => None,
        };
        self.live_backend(b, addr, ca.as_ref()).unwrap_or_else(|e| {
            tracing::warn!(backend = %b.id, error = %e, "backend from the shared store cannot be used here");
            unresolved()
        })
    }

    fn remote_history(&mut self, name: DomainName, changes: Vec<Change>) {
        if changes.is_empty() {
            self.history.remove(&name);
        } else if self.domains.contains_key(&name) {
            let skip = changes.len().saturating_sub(crate::rollout::HISTORY_LIMIT);
            self.history.insert(
                name,
                changes.into_iter().skip(skip).collect::<VecDeque<_>>(),
            );
        }
    }
}
