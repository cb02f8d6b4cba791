//! Where API changes are persisted: a small trait and the embedded JSON file store.

use crate::model::{BackendRecord, DomainRecord};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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
}

impl PersistedState {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;
}

/// A state store failure, with the path and cause.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Loads and saves the registry. The file is the embedded default; other stores (etcd) fit here.
pub trait StateStore: Send + Sync + 'static {
    /// The stored state, or `None` when nothing was stored yet.
    fn load(&self) -> Result<Option<PersistedState>, StoreError>;
    /// Durably replaces the stored state.
    fn save(&self, state: &PersistedState) -> Result<(), StoreError>;
    /// Forgets the stored state.
    fn discard(&self) -> Result<(), StoreError>;
}

/// A JSON file written atomically: temp file, fsync, rename, fsync of the directory.
#[derive(Clone, Debug)]
pub struct JsonFileStore {
    path: PathBuf,
}

impl JsonFileStore {
    /// A store at `path` (created on first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The state file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl StateStore for JsonFileStore {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError(format!(
                    "cannot read state file {}: {e}",
                    self.path.display()
                )))
            }
        };
        let state: PersistedState = serde_json::from_str(&text).map_err(|e| {
            StoreError(format!(
                "state file {} is corrupt ({e}); fix or move it, or start with --reset-state",
                self.path.display()
            ))
        })?;
        if state.version != PersistedState::VERSION {
            return Err(StoreError(format!(
                "state file {} has version {}, this build reads version {}",
                self.path.display(),
                state.version,
                PersistedState::VERSION
            )));
        }
        Ok(Some(state))
    }

    fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        let err = |what: &str, e: std::io::Error| {
            StoreError(format!("{what} {}: {e}", self.path.display()))
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| err("cannot create the directory of", e))?;
        let mut json = serde_json::to_vec(state).expect("state serialises");
        json.push(b'\n');
        let mut tmp =
            tempfile_in(&dir, &self.path).map_err(|e| err("cannot create a temp file for", e))?;
        tmp.1
            .write_all(&json)
            .and_then(|_| tmp.1.sync_all())
            .map_err(|e| err("cannot write", e))?;
        fs::rename(&tmp.0, &self.path).map_err(|e| err("cannot replace", e))?;
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn discard(&self) -> Result<(), StoreError> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError(format!(
                "cannot remove state file {}: {e}",
                self.path.display()
            ))),
        }
    }
}

fn tempfile_in(dir: &Path, target: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let path = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let file = fs::File::create(&path)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonFileStore::new(dir.path().join("sub/state.json"));
        assert_eq!(store.load().unwrap(), None);
        let state = PersistedState {
            version: 1,
            ..Default::default()
        };
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), Some(state));
        fs::write(store.path(), "{not json").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(fs::read_to_string(store.path()).unwrap(), "{not json");
        store.discard().unwrap();
        assert_eq!(store.load().unwrap(), None);
    }
}
