//! Where API changes are persisted: the records, the change vocabulary, and the small trait a
//! store implements. [`file`] is the embedded store; [`etcd`] shares one registry between
//! several instances.

#[cfg(feature = "etcd")]
pub mod etcd;
mod file;

#[cfg(feature = "etcd")]
pub use etcd::EtcdStore;
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
                    // Appended as it comes, equal entries too (three switches within one
                    // millisecond can give two): a journal is replayed once, over the snapshot
                    // it continues.
                    let h = self.history.entry(domain).or_default();
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

/// One record-level change, applied in order: a journal of them is replayed once, over the
/// snapshot it continues (a history entry appended twice would be there twice).
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
    /// The shared store cannot be reached, or has no quorum.
    #[error("the state store ({store}) is unavailable: {reason}")]
    Unavailable {
        /// Which store.
        store: String,
        /// Why.
        reason: String,
    },
    /// Another instance changed the same record first.
    #[error("{what} was changed meanwhile by another instance; read it again and retry")]
    Conflict {
        /// The record ("domain 'app.example.com'").
        what: String,
    },
    /// A record in the shared store does not parse.
    #[error("the state store has a corrupt record at {key} ({reason}); fix or delete it, or start with --reset-state")]
    CorruptRecord {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
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

/// `[state.etcd]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Members of one cluster (`http://host:2379`).
    pub endpoints: Vec<String>,
    /// Every key of this deployment under it; ends with `/`.
    pub prefix: String,
    /// User and password, when the cluster has authentication on.
    pub user: Option<(String, String)>,
    /// TLS to etcd.
    pub tls: Option<EtcdTls>,
}

/// TLS files for etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA that signed the members' certificates; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, when the cluster asks for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// A record as another instance left it in a shared store: `None` when it was deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A domain.
    Domain(DomainName, Option<DomainRecord>),
    /// A backend.
    Backend(BackendId, Option<BackendRecord>),
    /// A domain's whole history, oldest first.
    History(DomainName, Vec<Change>),
}

/// Records changed in a shared store, with the store's bookkeeping (revisions) that the
/// registry hands back through [`StateStore::accept`] when it applies them.
#[derive(Debug)]
pub struct RemoteChanges {
    /// Each key with its revision and its record.
    pub records: Vec<(String, i64, Record)>,
}

/// Where changes of other instances are sent (the RegistryActor's mailbox).
pub type RemoteSink = Box<dyn Fn(RemoteChanges) + Send + Sync>;

/// What `GET /api/v1/health` and `pingora_vhost_store_up` say of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StoreStatus {
    /// `file` or `etcd`.
    pub backend: &'static str,
    /// Whether the last write (file) or the last check (etcd) succeeded.
    pub up: bool,
}

/// Loads and saves the registry. The file is the embedded default; etcd is the shared one.
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
    /// Where the state lives, for messages ("state file data/state.json").
    fn describe(&self) -> String;
    /// Whether the store is reachable.
    fn status(&self) -> StoreStatus;
    /// Stores a registry seeded from the config when the store was empty. False when another
    /// instance seeded it first (load again). The file store writes on the first change.
    fn seed(&self, _state: &PersistedState) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Starts sending other instances' changes to `sink` (shared stores only).
    fn subscribe(&self, _sink: RemoteSink) {}
    /// The records of `changes` that are newer than what the registry holds, marking them
    /// held: called by the registry as it applies them, so that a commit made meanwhile on
    /// older records is refused as a conflict instead of overwriting them.
    fn accept(&self, changes: RemoteChanges) -> Vec<Record> {
        changes.records.into_iter().map(|(_, _, r)| r).collect()
    }
}
