//! The registry's transitions: one function per command, each validating first and recording
//! what it replaced so that a failed persist can revert it.

use super::error::invalid;
use super::{Conflict, Effects, Invalid, Registry, RegistryError, Undo};
use crate::command::{
    BackendPatch, Command, DomainPatch, NewBackend, NewDomain, Reply, SwitchRequest,
};
use crate::model::{
    check_tags, check_weight, AccessPatch, AccessSettings, BackendId, BackendRecord, DomainName,
    DomainRecord, LbPolicy, Tag, TransportSettings,
};
use crate::resolve::Resolutions;
use crate::rollout::{ChangeKind, ChangedBy};
use crate::store::StateChange;
use crate::upstream::{load_ca_file, Roots, UpstreamBackend};
use std::collections::BTreeSet;
use std::sync::Arc;

mod backends;

use backends::backends_changed;

type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl Registry {
    /// Applies one command whose backend addresses need no DNS (IP literals), now.
    pub fn apply(&mut self, cmd: Command) -> Result<(Reply, Effects)> {
        self.apply_at(cmd, &Resolutions::default(), crate::health::now_ms())
    }

    /// Applies one command at Unix time `now_ms` (history timestamps), with its host names
    /// already resolved: no I/O and no clock here, so the same inputs give the same result. On
    /// error nothing has changed; after success, [`Registry::revert`] undoes it (when it could
    /// not be persisted).
    pub fn apply_at(
        &mut self,
        cmd: Command,
        resolved: &Resolutions,
        now_ms: i64,
    ) -> Result<(Reply, Effects)> {
        self.undo = Undo::default();
        self.now_ms = now_ms;
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
            Command::AddBackend(new) => self.add_backend(new, resolved).map(backends_changed),
            Command::UpdateBackend(id, patch) => self
                .update_backend(&id, patch, resolved)
                .map(backends_changed),
            Command::DeleteBackend { id, force } => {
                self.delete_backend(&id, force).map(backends_changed)
            }
            Command::Split(name, req) => self.split(&name, req),
            Command::Undo(name) => self.undo_last(&name),
            Command::Rollback {
                domain,
                from_tag,
                reason,
            } => self.roll_back(&domain, &from_tag, reason),
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
        for (domain, change) in &self.undo.appended {
            out.push(StateChange::AppendHistory {
                domain: domain.clone(),
                change: change.clone(),
            });
        }
        out
    }

    /// Puts back what the last successful [`Registry::apply`] changed.
    pub fn revert(&mut self) {
        let undo = std::mem::take(&mut self.undo);
        for (name, before) in undo.history.into_iter().rev() {
            match before {
                Some(h) => self.history.insert(name, h),
                None => self.history.remove(&name),
            };
        }
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

    pub(super) fn put_domain(&mut self, record: DomainRecord) {
        let before = self.domains.insert(record.domain.clone(), record.clone());
        self.undo.domains.push((record.domain, before));
    }

    fn remove_domain(&mut self, name: &DomainName) {
        let before = self.domains.remove(name);
        self.undo.domains.push((name.clone(), before));
        let history = self.history.remove(name);
        self.undo.history.push((name.clone(), history));
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
        let access = AccessSettings::from_input(
            new.allow,
            new.deny,
            new.rate_limit_rps,
            new.rate_limit_burst,
        )
        .map_err(|e| invalid(e.join("; ")))?;
        if self.domains.contains_key(&domain) {
            return Err(Conflict::DomainExists(domain).into());
        }
        self.require_tag(&tag)?;
        let record = DomainRecord {
            http_to_https: new.http_to_https,
            lb_policy,
            lb_hash_header: new.lb_hash_header,
            access,
            ..DomainRecord::new(domain.clone(), tag)
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
        record.access = record
            .access
            .patched(AccessPatch {
                allow: patch.allow,
                deny: patch.deny,
                rate_limit_rps: patch.rate_limit_rps,
                rate_limit_burst: patch.rate_limit_burst,
            })
            .map_err(|e| invalid(e.join("; ")))?;
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

    /// Moves `record` to `target` after the safety checks, ending any split; false when it
    /// already serves only that tag.
    fn switch_record(
        &mut self,
        record: &mut DomainRecord,
        target: Tag,
        force: bool,
    ) -> Result<bool> {
        self.require_tag(&target)?;
        if record.enabled_backends_tag == target && record.weights.is_none() {
            return Ok(false);
        }
        if !force && !self.tag_has_routable(&target) {
            return Err(Conflict::NoRoutableBackend(target).into());
        }
        let before = record.routing();
        if record.enabled_backends_tag != target {
            record.previous_tag = Some(std::mem::replace(&mut record.enabled_backends_tag, target));
        }
        record.weights = None;
        self.record_change(record, before, ChangeKind::Switch, ChangedBy::Api, None);
        Ok(true)
    }

    pub(super) fn require_tag(&self, tag: &Tag) -> Result<()> {
        if self.tag_exists(tag) {
            Ok(())
        } else {
            Err(Invalid::UnknownTag(tag.clone()).into())
        }
    }

    pub(super) fn republish_tags(&self, tags: &[&Tag]) -> Effects {
        Effects {
            republish: self.domains_on(tags).cloned().collect(),
            ..Effects::default()
        }
    }
}

pub(super) fn republish_one(domain: DomainName) -> Effects {
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
        _ => {
            return Err(Conflict::NoPreviousTag {
                domain: record.domain.clone(),
                current: record.enabled_backends_tag.clone(),
            }
            .into())
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

/// Checks a domain's policy settings: `header_hash` needs `lb_hash_header`, and a header name
/// given must be a valid HTTP header name (whatever the policy, so that a later switch to
/// `header_hash` cannot fail on it).
pub fn check_policy(policy: LbPolicy, hash_header: Option<&str>) -> Result<(), String> {
    if let Some(h) = hash_header {
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            return Err(format!("lb_hash_header '{h}' is not a valid header name"));
        }
    }
    if policy == LbPolicy::HeaderHash && hash_header.is_none() {
        return Err(format!(
            "lb_policy '{}' needs lb_hash_header (the header whose value picks the backend)",
            policy.as_str()
        ));
    }
    Ok(())
}
