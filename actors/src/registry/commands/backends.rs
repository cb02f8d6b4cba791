//! The backend commands: add, update (address, tags, weight, cap, protocol) and delete, each
//! validating first and recording what it replaced.

use super::*;
use crate::registry::live::warn_if_unverified;

impl Registry {
    pub(super) fn add_backend(
        &mut self,
        new: NewBackend,
        resolved: &Resolutions,
    ) -> Result<(Reply, Effects)> {
        let id = BackendId::parse(&new.id).map_err(invalid)?;
        let tags = parse_tags(&new.tags)?;
        let weight = new.weight.unwrap_or(1);
        check_weight(weight).map_err(invalid)?;
        let addr = resolved.get(&new.address).map_err(invalid)?;
        self.check_not_own(&new.address, addr)?;
        if self.backends.contains_key(&id) {
            return Err(Conflict::BackendExists(id).into());
        }
        let defaults = TransportSettings::default();
        let transport = TransportSettings {
            protocol: new.protocol.unwrap_or(defaults.protocol),
            tls_server_name: new.tls_server_name,
            tls_verify: new.tls_verify.unwrap_or(defaults.tls_verify),
            tls_ca_file: new.tls_ca_file,
            health_check: new.health_check.unwrap_or(defaults.health_check),
        }
        .normalized();
        transport.check().map_err(invalid)?;
        let ca = match &transport.tls_ca_file {
            Some(path) => Some(resolved.ca_file(path).map_err(invalid)?),
            None => None,
        };
        let record = BackendRecord {
            id: id.clone(),
            address: new.address,
            tags,
            weight,
            max_connections: new.max_connections.unwrap_or(0),
            transport,
        };
        let live = self
            .live_backend(&record, addr, ca.as_ref())
            .map_err(invalid)?;
        let mut effects = self.republish_tags(&record.tags.iter().collect::<Vec<_>>());
        effects.probe.push(id.clone());
        warn_if_unverified(None, &record);
        self.put_backend(record.clone(), Some(live));
        Ok((Reply::Backend(self.view(&record)), effects))
    }

    pub(super) fn update_backend(
        &mut self,
        id: &str,
        patch: BackendPatch,
        resolved: &Resolutions,
    ) -> Result<(Reply, Effects)> {
        let old = self.backend_record(id)?.clone();
        let mut record = old.clone();
        let mut new_addr = None;
        let new_ca = patch_transport(&mut record.transport, &patch);
        if let Some(address) = patch.address {
            if address != old.address {
                let addr = resolved.get(&address).map_err(invalid)?;
                self.check_not_own(&address, addr)?;
                new_addr = Some(addr);
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
        record.transport = record.transport.normalized();
        keep_default_server_name(&old, &mut record);
        record.transport.check().map_err(invalid)?;
        let dropped: Vec<&Tag> = old.tags.iter().filter(|t| !record.has_tag(t)).collect();
        self.check_not_last(&old, &dropped)?;
        let current = self.upstreams.get(&old.id).cloned();
        let rebuild = new_addr.is_some() || record.transport != old.transport;
        // A backend whose host name has not resolved yet gets its live state when it does.
        let addr = match (new_addr, &current) {
            (Some(addr), _) => Some(addr),
            (None, Some(u)) if rebuild && u.is_resolved() => Some(u.addr),
            _ => None,
        };
        let live = match addr {
            Some(addr) => {
                let ca = match (new_ca, &record.transport.tls_ca_file) {
                    (Some(path), _) => Some(resolved.ca_file(&path).map_err(invalid)?),
                    (None, Some(path)) => Some(self.current_ca(current.as_deref(), path)?),
                    (None, None) => None,
                };
                Some(
                    self.live_backend(&record, addr, ca.as_ref())
                        .map_err(invalid)?,
                )
            }
            None => None,
        };
        let touched: Vec<&Tag> = old.tags.iter().chain(record.tags.iter()).collect();
        let mut effects = self.republish_tags(&touched);
        if live.is_some() {
            effects.probe.push(record.id.clone());
        }
        warn_if_unverified(Some(&old), &record);
        self.put_backend(record.clone(), live);
        Ok((Reply::Backend(self.view(&record)), effects))
    }

    pub(super) fn delete_backend(&mut self, id: &str, force: bool) -> Result<(Reply, Effects)> {
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
                return Err(Conflict::LastBackend {
                    backend: backend.id.clone(),
                    tag: (*tag).clone(),
                    domain: d.clone(),
                }
                .into());
            }
        }
        Ok(())
    }
}

/// A server name sent back as GET shows it by default (the host of the unchanged address)
/// keeps the default, so that a GET then PUT of the same body changes nothing.
fn keep_default_server_name(old: &BackendRecord, new: &mut BackendRecord) {
    let shown = old.transport.tls_server_name.is_none()
        && new.address == old.address
        && new.transport.tls_server_name.as_deref()
            == Some(old.transport.server_name(&old.address).as_str());
    if shown {
        new.transport.tls_server_name = None;
    }
}

/// Applies the protocol fields of `patch`; returns the CA file it names anew, if any.
fn patch_transport(t: &mut TransportSettings, patch: &BackendPatch) -> Option<String> {
    if let Some(p) = patch.protocol {
        t.protocol = p;
    }
    if let Some(name) = &patch.tls_server_name {
        t.tls_server_name = name.clone();
    }
    if let Some(v) = patch.tls_verify {
        t.tls_verify = v;
    }
    if let Some(h) = patch.health_check {
        t.health_check = h;
    }
    match &patch.tls_ca_file {
        Some(file) => {
            t.tls_ca_file = file.clone();
            file.clone()
        }
        None => None,
    }
}

impl Registry {
    /// The certificates of the CA file a backend keeps: those its live state was built with.
    fn current_ca(&self, current: Option<&UpstreamBackend>, path: &str) -> Result<Roots> {
        let kept = current.and_then(|u| u.transport.tls.as_ref()?.ca.clone());
        match kept {
            Some(ca) => Ok(ca),
            // It was not https before: read the file now (a small local file, rarely).
            None => load_ca_file(path).map_err(invalid),
        }
    }
}

pub(super) fn backends_changed((reply, mut effects): (Reply, Effects)) -> (Reply, Effects) {
    effects.backends_changed = true;
    (reply, effects)
}
