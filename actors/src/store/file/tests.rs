//! Tests of the file store: snapshots, the journal, torn tails, leftovers and a full disk.

use super::*;
use crate::model::{DomainName, DomainRecord};
use crate::model::{LbPolicy, Tag};

fn domain(i: usize) -> DomainRecord {
    DomainRecord::new(
        DomainName::parse(&format!("d{i}.example.com")).unwrap(),
        Tag::parse("a").unwrap(),
    )
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
