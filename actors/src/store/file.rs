//! The embedded store: a JSON snapshot at the state path (temp file, fsync, rename) plus, once
//! the registry is large, an append-only journal of changes beside it.

use super::{PersistedState, StateChange, StateStore, StoreError};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
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
}

#[derive(Debug, Default)]
struct Sizes {
    snapshot: u64,
    journal: u64,
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
        };
        Self {
            path,
            journal_path: journal.into(),
            sizes: Mutex::new(sizes),
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

    fn write_snapshot(&self, state: &PersistedState) -> Result<u64, StoreError> {
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
        Ok(json.len() as u64)
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
    fn append_journal(&self, changes: &[StateChange]) -> Result<u64, StoreError> {
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

    fn read_journal(&self) -> Result<Vec<StateChange>, StoreError> {
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
        complete
            .lines()
            .enumerate()
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
        let snapshot = match fs::read_to_string(&self.path) {
            Ok(text) => {
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
        let journal = self.read_journal()?;
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
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        if let (true, Some(full)) = (self.rewrites(&sizes, changes.len()), full) {
            sizes.snapshot = self.write_snapshot(full)?;
            // The snapshot holds everything; an old journal replayed over it changes nothing,
            // so losing this removal to a crash is harmless.
            match fs::remove_file(&self.journal_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err("cannot remove", &self.journal_path, e)),
            }
            sizes.journal = 0;
        } else {
            sizes.journal += self.append_journal(changes)?;
        }
        Ok(())
    }

    fn discard(&self) -> Result<(), StoreError> {
        for path in [&self.path, &self.journal_path] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err("cannot remove", path, e)),
            }
        }
        *self.sizes.lock().unwrap_or_else(|e| e.into_inner()) = Sizes::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DomainName, DomainRecord};
    use crate::model::{LbPolicy, Tag};

    fn domain(i: usize) -> DomainRecord {
        DomainRecord {
            domain: DomainName::parse(&format!("d{i}.example.com")).unwrap(),
            enabled_backends_tag: Tag::parse("a").unwrap(),
            previous_tag: None,
            http_to_https: false,
            lb_policy: LbPolicy::RoundRobin,
            lb_hash_header: None,
            weights: None,
            sticky: false,
            rollback: None,
            last_rollback: None,
        }
    }

    fn sorted(mut s: PersistedState) -> PersistedState {
        s.domains.sort_by(|a, b| a.domain.cmp(&b.domain));
        s
    }

    fn state(n: usize) -> PersistedState {
        PersistedState {
            version: 1,
            domains: (0..n).map(domain).collect(),
            backends: Vec::new(),
            history: Default::default(),
        }
    }

    #[test]
    fn save_load_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonFileStore::new(dir.path().join("sub/state.json"));
        assert_eq!(store.load().unwrap(), None);
        let s = state(1);
        store
            .commit(&[StateChange::PutDomain(domain(0))], Some(&s))
            .unwrap();
        assert_eq!(store.load().unwrap(), Some(s));
        fs::write(store.path(), "{not json").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(fs::read_to_string(store.path()).unwrap(), "{not json");
        store.discard().unwrap();
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn small_states_rewrite_the_snapshot_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = JsonFileStore::new(dir.path().join("state.json"));
        for n in 1..20 {
            let s = state(n);
            store
                .commit(&[StateChange::PutDomain(domain(n - 1))], Some(&s))
                .unwrap();
            let on_disk: PersistedState =
                serde_json::from_str(&fs::read_to_string(store.path()).unwrap()).unwrap();
            assert_eq!(on_disk, s, "the state file alone is complete");
        }
        assert!(!store.journal_path().exists());
    }

    #[test]
    fn large_states_journal_then_compact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = JsonFileStore::new(&path);
        let mut s = state(3000);
        store.commit(&[], Some(&s)).unwrap();
        let snapshot_len = fs::metadata(&path).unwrap().len();
        assert!(snapshot_len > SMALL_SNAPSHOT);
        for i in 3000..3100 {
            s.domains.push(domain(i));
            store
                .commit(&[StateChange::PutDomain(domain(i))], None)
                .unwrap();
        }
        let gone = s.domains.remove(0);
        store
            .commit(&[StateChange::DeleteDomain(gone.domain)], None)
            .unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            snapshot_len,
            "snapshot untouched"
        );
        let s = sorted(s);
        assert_eq!(
            JsonFileStore::new(&path).load().unwrap().unwrap(),
            s,
            "snapshot + journal"
        );

        // A torn last line (a crash mid-append) is skipped; a corrupt complete line is an error.
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(store.journal_path())
            .unwrap();
        f.write_all(br#"{"op":"put_domain","value":{"dom"#).unwrap();
        assert_eq!(JsonFileStore::new(&path).load().unwrap().unwrap(), s);
        f.write_all(b"\n").unwrap();
        assert!(JsonFileStore::new(&path)
            .load()
            .unwrap_err()
            .to_string()
            .contains("line 102"));

        // Growing the journal past the snapshot compacts it.
        let fresh = JsonFileStore::new(&path);
        fs::write(fresh.journal_path(), "").unwrap();
        let mut s = s;
        let mut compacted = false;
        for i in 0..20_000 {
            s.domains.push(domain(10_000 + i));
            fresh
                .commit(&[StateChange::PutDomain(domain(10_000 + i))], Some(&s))
                .unwrap();
            if !fresh.journal_path().exists() {
                compacted = true;
                break;
            }
        }
        assert!(compacted);
        assert_eq!(
            JsonFileStore::new(&path).load().unwrap().unwrap(),
            sorted(s)
        );
    }

    #[test]
    fn a_torn_tail_is_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = JsonFileStore::new(&path);
        let mut s = state(3000);
        store.commit(&[], Some(&s)).unwrap();
        s.domains.push(domain(3000));
        store
            .commit(&[StateChange::PutDomain(domain(3000))], None)
            .unwrap();
        // A crash mid-append, then one more acknowledged change.
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(store.journal_path())
            .unwrap();
        f.write_all(br#"{"op":"put_domain","value":{"dom"#).unwrap();
        let store = JsonFileStore::new(&path);
        s.domains.push(domain(3001));
        store
            .commit(&[StateChange::PutDomain(domain(3001))], None)
            .unwrap();
        assert_eq!(
            JsonFileStore::new(&path).load().unwrap().unwrap(),
            sorted(s),
            "the fragment is gone and both changes load"
        );
    }

    #[test]
    fn leftover_temp_files_are_removed_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = JsonFileStore::new(&path);
        store.commit(&[], Some(&state(1))).unwrap();
        let dead = dir.path().join(".state.json.4000000.tmp");
        let other = dir.path().join("unrelated.tmp");
        for f in [&dead, &other] {
            fs::write(f, "partial").unwrap();
        }
        store.load().unwrap();
        assert!(!dead.exists(), "a dead writer's temp file is removed");
        assert!(other.exists(), "files of others are left alone");
    }

    /// A real full disk (a tiny tmpfs; needs root to mount, skipped otherwise): the failed
    /// commit reports the error and leaves nothing that breaks the next commit or load.
    #[test]
    fn a_full_disk_fails_the_commit_and_damages_nothing() {
        let mnt = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
            .arg(mnt.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return;
        }
        let result = std::panic::catch_unwind(|| {
            let path = mnt.path().join("state.json");
            let store = JsonFileStore::new(&path);
            let mut s = state(2000); // over SMALL_SNAPSHOT: journal mode
            store.commit(&[], Some(&s)).unwrap();
            // A journal whose last page has room left, so that the failing append below
            // writes part of its lines before the disk is full: a torn tail.
            s.domains.push(domain(4000));
            store
                .commit(&[StateChange::PutDomain(domain(4000))], None)
                .unwrap();
            let filler = mnt.path().join("filler");
            let mut f = fs::File::create(&filler).unwrap();
            let chunk = vec![0u8; 4096];
            while f.write_all(&chunk).and_then(|_| f.sync_all()).is_ok() {}
            let many: Vec<_> = (5000..5100)
                .map(|i| StateChange::PutDomain(domain(i)))
                .collect();
            let err = store.commit(&many, None).unwrap_err();
            assert!(err.to_string().contains("journal"), "{err}");
            drop(f);
            fs::remove_file(&filler).unwrap();
            s.domains.push(domain(5001));
            store
                .commit(&[StateChange::PutDomain(domain(5001))], None)
                .unwrap();
            assert_eq!(
                JsonFileStore::new(&path).load().unwrap().unwrap(),
                sorted(s),
                "the failed change is absent, the next one is there, the journal loads"
            );
        });
        let _ = std::process::Command::new("umount")
            .arg(mnt.path())
            .status();
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }
}
