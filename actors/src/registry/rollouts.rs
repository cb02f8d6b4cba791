//! The registry's rollout transitions: split, undo, automatic rollback, and the history each
//! routing change joins.

use super::commands::republish_one;
use super::error::invalid;
use super::{Conflict, Effects, Registry, RegistryError};
use crate::command::{Reply, SplitRequest};
use crate::model::{DomainName, DomainRecord, Tag};
use crate::rollout::{
    baseline, check_weights, rfc3339, Change, ChangeKind, ChangedBy, LastRollback, Routing,
    Weights, HISTORY_LIMIT,
};

type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl Registry {
    /// Adds a change to a domain's history (bounded), remembering how to revert it.
    pub(super) fn record_change(
        &mut self,
        record: &DomainRecord,
        from: Routing,
        kind: ChangeKind,
        by: ChangedBy,
        reason: Option<String>,
    ) {
        let change = Change {
            at: rfc3339(self.now_ms),
            kind,
            from,
            to: record.routing(),
            by,
            reason,
        };
        let before = self.history.get(&record.domain).cloned();
        self.undo.history.push((record.domain.clone(), before));
        let h = self.history.entry(record.domain.clone()).or_default();
        h.push_back(change.clone());
        while h.len() > HISTORY_LIMIT {
            h.pop_front();
        }
        self.undo.appended.push((record.domain.clone(), change));
    }

    pub(super) fn split(&mut self, name: &str, req: SplitRequest) -> Result<(Reply, Effects)> {
        let mut record = self.domain(name)?.clone();
        let mut weights = Weights::new();
        for (raw, w) in &req.weights {
            let tag = Tag::parse(raw).map_err(invalid)?;
            self.require_tag(&tag)?;
            weights.insert(tag, *w);
        }
        check_weights(&weights).map_err(invalid)?;
        if let Some(policy) = &req.rollback {
            policy.check().map_err(invalid)?;
        }
        for (tag, _) in weights.iter().filter(|(_, w)| **w > 0) {
            if !req.force && !self.tag_has_routable(tag) {
                return Err(Conflict::NoRoutableBackend(tag.clone()).into());
            }
        }
        let before = record.routing();
        let base = baseline(&weights, &record.enabled_backends_tag);
        if record.enabled_backends_tag != base {
            record.previous_tag = Some(std::mem::replace(&mut record.enabled_backends_tag, base));
        }
        // One tag with all the weight is no split: it is served alone.
        let serving = weights.values().filter(|w| **w > 0).count();
        record.weights = (serving > 1).then_some(weights);
        record.sticky = req.sticky.unwrap_or(false);
        record.rollback = req.rollback;
        self.record_change(&record, before, ChangeKind::Split, ChangedBy::Api, None);
        let mut effects = republish_one(record.domain.clone());
        effects.switched = Some(record.domain.clone());
        self.put_domain(record.clone());
        Ok((Reply::Domain(record), effects))
    }

    /// Restores the routing before the last change.
    pub(super) fn undo_last(&mut self, name: &str) -> Result<(Reply, Effects)> {
        let mut record = self.domain(name)?.clone();
        let Some(last) = self.history.get(&record.domain).and_then(|h| h.back()) else {
            return Err(Conflict::NothingToUndo(record.domain.clone()).into());
        };
        let target = last.from.clone();
        let before = record.routing();
        if record.enabled_backends_tag != target.tag {
            record.previous_tag = Some(std::mem::replace(
                &mut record.enabled_backends_tag,
                target.tag,
            ));
        }
        record.weights = target.weights;
        if record.weights.is_none() {
            record.sticky = false;
            record.rollback = None;
        }
        self.record_change(&record, before, ChangeKind::Undo, ChangedBy::Api, None);
        let mut effects = republish_one(record.domain.clone());
        effects.switched = Some(record.domain.clone());
        self.put_domain(record.clone());
        Ok((Reply::Domain(record), effects))
    }

    /// Ends a split because `from_tag` failed: everything to the baseline.
    pub(super) fn roll_back(
        &mut self,
        domain: &DomainName,
        from_tag: &Tag,
        reason: String,
    ) -> Result<(Reply, Effects)> {
        let mut record = self.domain(domain.as_str())?.clone();
        let Some(weights) = record.weights.clone() else {
            return Err(Conflict::NoSplit(record.domain.clone()).into());
        };
        let base = baseline(&weights, &record.enabled_backends_tag);
        if *from_tag == base || weights.get(from_tag).is_none_or(|w| *w == 0) {
            return Err(Conflict::NoSplit(record.domain.clone()).into());
        }
        let before = record.routing();
        if record.enabled_backends_tag != base {
            record.previous_tag = Some(std::mem::replace(
                &mut record.enabled_backends_tag,
                base.clone(),
            ));
        }
        record.weights = None;
        record.last_rollback = Some(LastRollback {
            at: rfc3339(self.now_ms),
            from_tag: from_tag.clone(),
            to_tag: base,
            reason: reason.clone(),
        });
        self.record_change(
            &record,
            before,
            ChangeKind::Rollback,
            ChangedBy::Rollback,
            Some(reason),
        );
        let mut effects = republish_one(record.domain.clone());
        effects.rolled_back = Some(record.domain.clone());
        self.put_domain(record.clone());
        Ok((Reply::Domain(record), effects))
    }

    /// Non-baseline tags of split domains with a rollback rule, with the rule: what the
    /// rollback tick checks.
    pub fn watched_canaries(
        &self,
    ) -> impl Iterator<Item = (&DomainName, &Tag, &crate::rollout::RollbackPolicy)> + '_ {
        self.domains.values().flat_map(|d| {
            let (Some(weights), Some(policy)) = (&d.weights, &d.rollback) else {
                return Vec::new();
            };
            let base = baseline(weights, &d.enabled_backends_tag);
            weights
                .iter()
                .filter(|(t, w)| **w > 0 && **t != base)
                .map(|(t, _)| (&d.domain, t, policy))
                .collect()
        })
    }
}
