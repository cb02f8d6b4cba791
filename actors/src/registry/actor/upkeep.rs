//! The RegistryActor's upkeep: writing changes off its runtime, telling the MetricsActor what
//! changed, checking canaries against their rollback rules, and retrying host names.

use super::{RegistryMsg, RegistryState};
use crate::command::Command;
use crate::metrics::MetricsMsg;
use crate::store::StoreError;
use ractor::ActorRef;
use std::sync::Arc;

impl RegistryState {
    /// Writes the last command's changes on the blocking pool, so that the fsync never stalls
    /// this runtime.
    pub(super) async fn persist(&self) -> Result<(), StoreError> {
        let changes = self.registry.last_changes();
        let full = self
            .store
            .needs_full_state(changes.len())
            .then(|| self.registry.state());
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.commit(&changes, full.as_ref()))
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Io {
                    what: "the state writer failed for",
                    path: "the state store".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }

    /// Rolls back every split whose canary's recent error share breaks its rule, or whose
    /// canary has no backend left that may take traffic (the split passes such a tag over, so
    /// its error share would never grow). One rollback per domain and tick: the first ends the
    /// split.
    pub(super) async fn check_canaries(&mut self, myself: &ActorRef<RegistryMsg>) {
        let mut failing: Vec<Command> = Vec::new();
        for (domain, tag, rule) in self.registry.watched_canaries() {
            if failing
                .iter()
                .any(|c| matches!(c, Command::Rollback { domain: d, .. } if d == domain))
            {
                continue;
            }
            let reason = if !self.registry.tag_has_routable(tag) {
                format!("no backend of tag '{tag}' is healthy")
            } else {
                let Some(handles) = self.handles.get(domain.as_str(), tag.as_str()) else {
                    continue;
                };
                let (requests, errors) = handles.recent_outcomes(rule.window_secs);
                if !rule.trips(requests, errors) {
                    continue;
                }
                format!(
                    "{errors} of {requests} requests to tag '{tag}' failed in the last {}s \
                     ({:.1} %, over the limit of {:.1} %)",
                    rule.window_secs,
                    errors as f64 * 100.0 / requests as f64,
                    rule.max_error_rate * 100.0
                )
            };
            failing.push(Command::Rollback {
                domain: domain.clone(),
                from_tag: tag.clone(),
                reason,
            });
        }
        for cmd in failing {
            if let Err(e) = self.apply(myself, cmd).await {
                tracing::error!(error = %e, "a canary failed but its rollback could not be applied");
            }
        }
    }

    /// Sweeps the rate limiters' idle clients on the blocking pool (a walk over every client
    /// remembered), so that this runtime never does it.
    pub(super) fn sweep_limiters(&self) {
        let limiters = self.table.limiters();
        if !limiters.is_empty() {
            tokio::task::spawn_blocking(move || limiters.iter().for_each(|l| l.sweep()));
        }
    }

    /// Looks up every unresolved host name on the blocking pool; answers come back as
    /// [`RegistryMsg::Resolved`], so the registry never waits for DNS.
    pub(super) fn resolve_again(&self, myself: &ActorRef<RegistryMsg>) {
        for (id, address) in self.registry.unresolved() {
            let (id, address, me) = (id.clone(), address.to_string(), myself.clone());
            tokio::spawn(async move {
                let lookup = address.clone();
                let found =
                    tokio::task::spawn_blocking(move || crate::model::resolve_address(&lookup))
                        .await;
                match found {
                    Ok(Ok(addr)) => {
                        let _ = me.send_message(RegistryMsg::Resolved { id, address, addr });
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(backend = %id, error = %e, "backend host name still does not resolve")
                    }
                    Err(_) => {}
                }
            });
        }
    }

    pub(super) fn send_metric_updates(&mut self) {
        for u in self.handles.take_updates() {
            let _ = self.metrics.send_message(MetricsMsg::Update(u));
        }
    }
}
