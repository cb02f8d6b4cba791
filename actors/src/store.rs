//! Where API changes are persisted: the records, the change vocabulary, and the small trait a
//! store implements. [`file`] is the embedded store.

mod file;

pub use file::JsonFileStore;

use crate::model::{BackendId, BackendRecord, DomainName, DomainRecord};
use crate::rollout::{Change, HISTORY_LIMIT};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The persisted registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedState {
    /// Format version.
    pub version: u32,
    /// Virtual hosts.
    pub domains: Vec<DomainRecord>,
    /// Backends.
    pub backends: Vec<BackendRecord>,
    /// Routing changes per domain, oldest first, at most [`HISTORY_LIMIT`] each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub history: BTreeMap<DomainName, Vec<Change>>,
}

impl PersistedState {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;

    /// Applies journaled changes in order.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = StateChange>) {
        let mut domains: BTreeMap<DomainName, DomainRecord> = std::mem::take(&mut self.domains)
            .into_iter()
            .map(|d| (d.domain.clone(), d))
            .collect();
        let mut backends: BTreeMap<BackendId, BackendRecord> = std::mem::take(&mut self.backends)
            .into_iter()
            .map(|b| (b.id.clone(), b))
            .collect();
        for c in changes {
            match c {
                StateChange::PutDomain(d) => {
                    domains.insert(d.domain.clone(), d);
                }
                StateChange::DeleteDomain(name) => {
                    domains.remove(&name);
                    self.history.remove(&name);
                }
                StateChange::AppendHistory { domain, change } => {
                    let h = self.history.entry(domain).or_default();
                    if h.contains(&change) {
                        continue; // replayed twice
                    }
                    h.push(change);
                    if h.len() > HISTORY_LIMIT {
                        h.drain(..h.len() - HISTORY_LIMIT);
                    }
                }
                StateChange::PutBackend(b) => {
                    backends.insert(b.id.clone(), b);
                }
                StateChange::DeleteBackend(id) => {
                    backends.remove(&id);
                }
            }
        }
        self.domains = domains.into_values().collect();
        self.backends = backends.into_values().collect();
    }
}

/// One record-level change: idempotent, so replaying a journal twice is harmless.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op", content = "value")]
pub enum StateChange {
    /// A domain as it is now.
    PutDomain(DomainRecord),
    /// A domain is gone.
    DeleteDomain(DomainName),
    /// A backend as it is now.
    PutBackend(BackendRecord),
    /// A backend is gone.
    DeleteBackend(BackendId),
    /// A routing change joins a domain's history.
    AppendHistory {
        /// The domain.
        domain: DomainName,
        /// The change.
        change: Change,
    },
}

/// A state store failure, with the path and its cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot write", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state file does not parse.
    #[error(
        "state file {} is corrupt ({source}); fix or move it, or start with --reset-state",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A complete journal line does not parse.
    #[error(
        "state journal {} is corrupt at line {line} ({source}); fix or move it, or start with --reset-state",
        path.display()
    )]
    CorruptJournal {
        /// The journal.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The state file was written by another format version.
    #[error(
        "state file {} has version {found}, this build reads version {}",
        path.display(),
        PersistedState::VERSION
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
}

/// Loads and saves the registry. The file is the embedded default; other stores (etcd) fit here.
pub trait StateStore: Send + Sync + 'static {
    /// The stored state, or `None` when nothing was stored yet.
    fn load(&self) -> Result<Option<PersistedState>, StoreError>;
    /// Whether the next commit of `changes` records the whole state (a rewrite or compaction)
    /// and so needs it passed in.
    fn needs_full_state(&self, changes: usize) -> bool;
    /// Durably records `changes`; `full` is the whole state after them, given when
    /// [`StateStore::needs_full_state`] asked for it.
    fn commit(
        &self,
        changes: &[StateChange],
        full: Option<&PersistedState>,
    ) -> Result<(), StoreError>;
    /// Forgets the stored state.
    fn discard(&self) -> Result<(), StoreError>;
}
