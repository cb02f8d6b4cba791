//! What a change means beyond the registry: routes published, probes and certificate actors
//! started or stopped, events logged; for the API's changes and for the records other
//! instances committed to a shared store alike.

use super::{RegistryMsg, RegistryState};
use crate::registry::Effects;
use crate::resolve::Resolutions;
use crate::store::{Record, RemoteChanges};
use ractor::ActorRef;

impl RegistryState {
    /// Publishes `effects` and starts or stops what they name.
    pub(super) async fn realize(&mut self, myself: &ActorRef<RegistryMsg>, effects: Effects) {
        self.registry
            .publish(&effects, &self.table, &mut self.handles);
        self.send_metric_updates();
        if let Some(d) = &effects.switched {
            let record = &self.registry.domains[d];
            match &record.weights {
                Some(w) => tracing::info!(domain = %d, weights = ?w, "traffic split"),
                None => {
                    tracing::info!(domain = %d, tag = %record.enabled_backends_tag, "tag switched")
                }
            }
        }
        if let Some(d) = &effects.rolled_back {
            self.handles.metrics().record_rollback(d.as_str());
            if let Some(r) = &self.registry.domains[d].last_rollback {
                tracing::warn!(domain = %d, from_tag = %r.from_tag, to_tag = %r.to_tag,
                    reason = %r.reason, "canary rolled back: all traffic to the baseline");
            }
        }
        for id in &effects.unprobe {
            self.stop_probe(id);
        }
        for d in &effects.withdraw {
            self.release_cert(d);
        }
        if let Some(d) = &effects.added {
            self.provision_cert(myself, d).await;
        }
        for id in &effects.probe {
            self.stop_probe(id);
            self.start_probe(myself, id).await;
        }
    }

    /// Applies the records other instances committed, those newer than what is held.
    pub(super) async fn apply_remote(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        changes: RemoteChanges,
    ) {
        let records = self.store.accept(changes);
        if records.is_empty() {
            return;
        }
        let backends: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                Record::Backend(_, Some(b)) => Some(b.clone()),
                _ => None,
            })
            .collect();
        let resolved = Resolutions::of_records(&backends).await;
        let count = records.len();
        for record in records {
            let effects = self.registry.apply_record(record, &resolved);
            self.realize(myself, effects).await;
        }
        tracing::debug!(records = count, "applied changes from the shared store");
    }
}
