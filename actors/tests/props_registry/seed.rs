//! The files a case starts from: a snapshot over the file store's 256 KiB threshold (a dozen
//! domains with full histories, on a tag of their own that the commands never name), a
//! journal nearly as large, and a CA file for `https` backends.

use std::path::Path;
use tempfile::TempDir;
use vhost_actors::model::{BackendId, BackendRecord, DomainName, DomainRecord, Tag};
use vhost_actors::rollout::{rfc3339, Change, ChangeKind, ChangedBy, Routing, HISTORY_LIMIT};
use vhost_actors::store::{JsonFileStore, PersistedState, StateChange, StateStore};

/// The store's threshold between the two ways of writing (store/file.rs, `SMALL_SNAPSHOT`).
const SMALL_SNAPSHOT: usize = 256 * 1024;

/// Made once per test, copied into every case's directory.
pub struct Seed {
    /// Holds the CA file.
    _dir: TempDir,
    snapshot: Vec<u8>,
    journal: Vec<u8>,
    ca: String,
}

fn tag(t: &str) -> Tag {
    Tag::parse(t).unwrap()
}

fn filler_domain(i: usize) -> DomainRecord {
    DomainRecord::new(
        DomainName::parse(&format!("filler-{i}.seed.test")).unwrap(),
        tag("filler"),
    )
}

/// A full history of distinct changes (each at its own millisecond).
fn filler_history(i: usize) -> Vec<Change> {
    (0..HISTORY_LIMIT)
        .map(|n| Change {
            at: rfc3339(1_700_000_000_000 + (i * HISTORY_LIMIT + n) as i64),
            kind: ChangeKind::Rollback,
            from: Routing {
                tag: tag("filler"),
                weights: Some([(tag("filler"), 90), (tag("canary"), 10)].into()),
            },
            to: Routing {
                tag: tag("filler"),
                weights: None,
            },
            by: ChangedBy::Rollback,
            reason: Some(format!("{n} of 100 requests to tag 'canary' failed in the last 60s ({n}.0 %, over the limit of 0.5 %)")),
        })
        .collect()
}

impl Seed {
    pub fn new() -> Seed {
        let dir = tempfile::tempdir().unwrap();
        let domains: Vec<DomainRecord> = (0..12).map(filler_domain).collect();
        let state = PersistedState {
            version: PersistedState::VERSION,
            history: domains
                .iter()
                .enumerate()
                .map(|(i, d)| (d.domain.clone(), filler_history(i)))
                .collect(),
            domains,
            backends: vec![BackendRecord {
                id: BackendId::parse("filler").unwrap(),
                address: "127.0.0.1:7999".into(),
                tags: vec![tag("filler")],
                weight: 1,
                max_connections: 0,
                transport: Default::default(),
            }],
        };
        let path = dir.path().join("seed.json");
        JsonFileStore::new(&path).commit(&[], Some(&state)).unwrap();
        let snapshot = std::fs::read(&path).unwrap();
        assert!(
            snapshot.len() > SMALL_SNAPSHOT + 16 * 1024,
            "the seed must be a large registry: {} bytes",
            snapshot.len()
        );
        // Harmless lines (filler 0 as it is) until the journal is within 200 bytes of the
        // snapshot: the next change of any size compacts.
        let mut line = serde_json::to_vec(&StateChange::PutDomain(filler_domain(0))).unwrap();
        line.push(b'\n');
        let mut journal = Vec::new();
        while journal.len() + 200 < snapshot.len() {
            journal.extend_from_slice(&line);
        }
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert.pem()).unwrap();
        Seed {
            ca: ca_path.to_str().unwrap().to_string(),
            _dir: dir,
            snapshot,
            journal,
        }
    }

    pub fn snapshot(&self) -> &[u8] {
        &self.snapshot
    }

    pub fn copy_snapshot(&self, to: &Path) {
        std::fs::write(to, &self.snapshot).unwrap();
    }

    /// Harmless journal lines nearly as long as the snapshot.
    pub fn journal(&self) -> &[u8] {
        &self.journal
    }

    pub fn copy_journal(&self, to: &Path) {
        std::fs::write(to, &self.journal).unwrap();
    }

    /// A PEM file `https` backends can name as `tls_ca_file`.
    pub fn ca_file(&self) -> &str {
        &self.ca
    }
}
