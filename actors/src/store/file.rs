//! The embedded store: a JSON snapshot at the state path (temp file, fsync, rename) plus, once
//! the registry is large, an append-only journal of changes beside it.
//!
//! A journal begins with a header naming the snapshot it continues (a fingerprint of its
//! bytes). A compaction writes a new snapshot and then removes the journal; a crash between the
//! two leaves a journal whose header names the old snapshot, and that journal is not replayed
//! (it would revert what the new snapshot holds).

use super::{PersistedState, StateChange, StateStore, StoreError, StoreStatus};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Below this snapshot size every change rewrites the snapshot, so the state file alone is
/// always complete; above it changes are appended to the journal until it outgrows the snapshot.
const SMALL_SNAPSHOT: u64 = 256 * 1024;

/// The snapshot (temp file, fsync, rename, fsync of the directory) and the journal
/// (`<path>.journal`, one JSON change per line, fsync per commit).
#[derive(Debug)]
pub struct JsonFileStore {
    path: PathBuf,
    journal_path: PathBuf,
    sizes: Mutex<Sizes>,
    /// False after a failed write, until one succeeds.
    up: AtomicBool,
}

#[derive(Debug, Default)]
struct Sizes {
    snapshot: u64,
    journal: u64,
    /// The fingerprint of the snapshot on disk (what a new journal's header names); read with
    /// the snapshot by `load`, else when a journal is first appended to.
    fingerprint: Option<u64>,
}

/// A journal's first line: the snapshot the journal continues.
#[derive(PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalHeader {
    /// [`fingerprint`] of the snapshot file's bytes, as 16 hex digits.
    snapshot: String,
}

impl JournalHeader {
    /// The header of a journal continuing the snapshot with fingerprint `print`.
    fn naming(print: u64) -> Self {
        Self {
            snapshot: format!("{print:016x}"),
        }
    }
}

/// A stable 64-bit fingerprint (FNV-1a) of a snapshot's bytes: the same on every run and
/// build, unlike the std and foldhash hashers.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl JsonFileStore {
    /// A store at `path` (created on first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut journal = path.clone().into_os_string();
        journal.push(".journal");
        let sizes = Sizes {
            snapshot: fs::metadata(&path).map_or(0, |m| m.len()),
            journal: fs::metadata(&journal).map_or(0, |m| m.len()),
            fingerprint: None,
        };
        Self {
            path,
            journal_path: journal.into(),
            sizes: Mutex::new(sizes),
            up: AtomicBool::new(true),
        }
    }

    /// The state file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal path.
    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    fn err(&self, what: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether committing `changes` more changes rewrites the snapshot instead of appending.
    fn rewrites(&self, sizes: &Sizes, changes: usize) -> bool {
        let journal_would_be = sizes.journal + 256 * changes as u64;
        sizes.snapshot < SMALL_SNAPSHOT || journal_would_be > sizes.snapshot
    }

    /// Writes the snapshot; returns its size and fingerprint.
    fn write_snapshot(&self, state: &PersistedState) -> Result<(u64, u64), StoreError> {
        let dir = self.dir();
        fs::create_dir_all(&dir)
            .map_err(|e| self.err("cannot create the directory of", &self.path, e))?;
        let mut json = serde_json::to_vec(state).expect("state serialises");
        json.push(b'\n');
        let tmp = dir.join(format!("{}{}.tmp", self.tmp_prefix(), std::process::id()));
        let mut f = fs::File::create(&tmp).map_err(|e| self.err("cannot create", &tmp, e))?;
        f.write_all(&json).and_then(|_| f.sync_all()).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.err("cannot write", &tmp, e)
        })?;
        fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.err("cannot replace", &self.path, e)
        })?;
        sync_dir(&dir);
        Ok((json.len() as u64, fingerprint(&json)))
    }

    /// Temp files of snapshot writes are `.<file name>.<pid>.tmp` beside the state file.
    fn tmp_prefix(&self) -> String {
        let name = self
            .path
            .file_name()
            .map_or("state".into(), |n| n.to_string_lossy());
        format!(".{name}.")
    }

    /// Removes temp files that writers killed mid-write left behind (a live process's own,
    /// during an upgrade, is kept). Returns what was removed.
    pub fn remove_leftovers(&self) -> Vec<PathBuf> {
        let prefix = self.tmp_prefix();
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix.as_str()))
                .and_then(|n| n.strip_suffix(".tmp"))
            else {
                continue;
            };
            let live = pid.parse::<u32>().is_ok_and(|p| {
                p != std::process::id() && Path::new(&format!("/proc/{p}")).exists()
            });
            if !live && fs::remove_file(entry.path()).is_ok() {
                removed.push(entry.path());
            }
        }
        removed
    }

    /// Appends whole lines. A torn last line (a crash or a full disk mid-append, never
    /// acknowledged) is cut off first, so a new change is never written onto a fragment; a
    /// failed append is cut back off the same way.
    fn append_journal(&self, changes: &[StateChange], snapshot: u64) -> Result<u64, StoreError> {
        let mut lines = Vec::new();
        for c in changes {
            serde_json::to_writer(&mut lines, c).expect("change serialises");
            lines.push(b'\n');
        }
        let new = !self.journal_path.exists();
        let mut f = fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.journal_path)
            .map_err(|e| self.err("cannot open", &self.journal_path, e))?;
        let len = self
            .complete_length(&mut f)
            .map_err(|e| self.err("cannot repair the end of", &self.journal_path, e))?;
        if len == 0 {
            let mut first =
                serde_json::to_vec(&JournalHeader::naming(snapshot)).expect("header serialises");
            first.push(b'\n');
            lines.splice(0..0, first);
        }
        f.write_all(&lines)
            .and_then(|_| f.sync_data())
            .map_err(|e| {
                let _ = f.set_len(len).and_then(|_| f.sync_data());
                self.err("cannot append to", &self.journal_path, e)
            })?;
        if new {
            sync_dir(&self.dir());
        }
        Ok(lines.len() as u64)
    }

    /// The journal's length up to its last newline, truncating a torn tail after it.
    fn complete_length(&self, f: &mut fs::File) -> std::io::Result<u64> {
        use std::io::{Read, Seek, SeekFrom};
        let len = f.metadata()?.len();
        if len == 0 {
            return Ok(0);
        }
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
        if last[0] == b'\n' {
            return Ok(len);
        }
        let mut all = Vec::with_capacity(len as usize);
        f.seek(SeekFrom::Start(0))?;
        f.read_to_end(&mut all)?;
        let keep = all.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) as u64;
        f.set_len(keep)?;
        f.sync_data()?;
        tracing::warn!(
            journal = %self.journal_path.display(),
            dropped_bytes = len - keep,
            "state journal ended in an unfinished line (never acknowledged); cut it off"
        );
        Ok(keep)
    }

    /// The journal's changes, when it continues the snapshot whose fingerprint is `snapshot`
    /// (a journal without a header, as older versions wrote, is taken as it is).
    fn read_journal(&self, snapshot: u64) -> Result<Vec<StateChange>, StoreError> {
        let text = match fs::read_to_string(&self.journal_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("cannot read", &self.journal_path, e)),
        };
        // A last line without its newline is a write the process did not finish: it was never
        // acknowledged, so it is skipped.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        let mut lines = complete.lines().enumerate().peekable();
        if let Some((_, first)) = lines.peek() {
            if let Ok(header) = serde_json::from_str::<JournalHeader>(first) {
                if header != JournalHeader::naming(snapshot) {
                    tracing::warn!(
                        journal = %self.journal_path.display(),
                        "state journal belongs to an earlier snapshot (a compaction was \
                         interrupted before removing it); not replayed"
                    );
                    return Ok(Vec::new());
                }
                lines.next();
            }
        }
        lines
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|source| StoreError::CorruptJournal {
                    path: self.journal_path.clone(),
                    line: i + 1,
                    source,
                })
            })
            .collect()
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl StateStore for JsonFileStore {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        for leftover in self.remove_leftovers() {
            tracing::info!(file = %leftover.display(), "removed the temp file of an interrupted state write");
        }
        let mut snapshot_print = fingerprint(b"");
        let snapshot = match fs::read_to_string(&self.path) {
            Ok(text) => {
                snapshot_print = fingerprint(text.as_bytes());
                let state: PersistedState =
                    serde_json::from_str(&text).map_err(|source| StoreError::Corrupt {
                        path: self.path.clone(),
                        source,
                    })?;
                if state.version != PersistedState::VERSION {
                    return Err(StoreError::Version {
                        path: self.path.clone(),
                        found: state.version,
                    });
                }
                Some(state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.err("cannot read state file", &self.path, e)),
        };
        self.sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fingerprint = Some(snapshot_print);
        let journal = self.read_journal(snapshot_print)?;
        if snapshot.is_none() && journal.is_empty() {
            return Ok(None);
        }
        let mut state = snapshot.unwrap_or(PersistedState {
            version: PersistedState::VERSION,
            ..PersistedState::default()
        });
        state.apply(journal);
        Ok(Some(state))
    }

    fn needs_full_state(&self, changes: usize) -> bool {
        self.rewrites(
            &self.sizes.lock().unwrap_or_else(|e| e.into_inner()),
            changes,
        )
    }

    fn commit(
        &self,
        changes: &[StateChange],
        full: Option<&PersistedState>,
    ) -> Result<(), StoreError> {
        let written = self.write(changes, full);
        self.up.store(written.is_ok(), Ordering::Relaxed);
        written
    }

    fn discard(&self) -> Result<(), StoreError> {
        for path in [&self.path, &self.journal_path] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err("cannot remove", path, e)),
            }
        }
        *self.sizes.lock().unwrap_or_else(|e| e.into_inner()) = Sizes {
            fingerprint: Some(fingerprint(b"")),
            ..Sizes::default()
        };
        Ok(())
    }

    fn describe(&self) -> String {
        format!("state file {}", self.path.display())
    }

    fn status(&self) -> StoreStatus {
        StoreStatus {
            backend: "file",
            up: self.up.load(Ordering::Relaxed),
        }
    }
}

impl JsonFileStore {
    fn write(
        &self,
        changes: &[StateChange],
        full: Option<&PersistedState>,
    ) -> Result<(), StoreError> {
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        if let (true, Some(full)) = (self.rewrites(&sizes, changes.len()), full) {
            let (size, print) = self.write_snapshot(full)?;
            (sizes.snapshot, sizes.fingerprint) = (size, Some(print));
            // The snapshot holds everything. Should a crash keep this removal from happening,
            // the journal's header names the old snapshot and it is not replayed.
            match fs::remove_file(&self.journal_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err("cannot remove", &self.journal_path, e)),
            }
            sizes.journal = 0;
        } else {
            // Written without a load first (a store used straight away): read the snapshot now.
            let print = match sizes.fingerprint {
                Some(print) => print,
                None => {
                    let bytes = match fs::read(&self.path) {
                        Ok(bytes) => bytes,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                        Err(e) => return Err(self.err("cannot read state file", &self.path, e)),
                    };
                    *sizes.fingerprint.insert(fingerprint(&bytes))
                }
            };
            sizes.journal += self.append_journal(changes, print)?;
        }
        Ok(())
    }
}
