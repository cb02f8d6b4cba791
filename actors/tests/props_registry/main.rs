//! Restarts reproduce the registry: a random sequence of API commands (valid and invalid, with
//! restarts between them) applied through the real RegistryActor to a real state file, then
//! the actors started again from that file as the binary starts them (`JsonFileStore::load`,
//! `Registry::from_state`), must show exactly the same domains, backends and histories. Both
//! ways the file store writes are covered: a small registry rewrites the snapshot on every
//! change; a large one (over 256 KiB) appends to the journal, and compacts it into a new
//! snapshot once it outgrows the old one.

#[path = "../props_gen/mod.rs"]
mod props_gen;

mod commands;
mod regressions;
mod seed;

use commands::{ops, Op};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio::task::JoinHandle;
use vhost_actors::command::{Command, Reply};
use vhost_actors::metrics::{Metrics, MetricsActor, MetricsArgs, MetricsMsg, RouteHandles};
use vhost_actors::ractor::{call_t, Actor, ActorRef};
use vhost_actors::registry::actor::{RegistryActor, RegistryArgs, RegistryMsg};
use vhost_actors::registry::{Registry, RegistryError};
use vhost_actors::routing::RouteTable;
use vhost_actors::store::{JsonFileStore, StateStore};

/// The control plane's actors over one state file.
struct Plane {
    registry: ActorRef<RegistryMsg>,
    metrics: ActorRef<MetricsMsg>,
    joins: [JoinHandle<()>; 2],
}

impl Plane {
    /// Starts from the state file at `path` (an empty registry when there is none yet), the
    /// way `pingora-vhost` does: load, build, publish, spawn. No health probes.
    async fn start(path: &Path) -> Plane {
        let store = Arc::new(JsonFileStore::new(path));
        let mut registry = match store.load().expect("the state file loads") {
            Some(state) => Registry::from_state(state)
                .expect("a state the API left behind is a state the registry starts from"),
            None => Registry::default(),
        };
        let table = Arc::new(RouteTable::new());
        let metrics = Metrics::new();
        let mut handles = RouteHandles::new(Arc::clone(&metrics));
        registry.publish_all(&table, &mut handles);
        let args = MetricsArgs {
            metrics,
            in_flight: Arc::default(),
            certs: None,
            acme: None,
        };
        let (metrics, metrics_join) = Actor::spawn(None, MetricsActor, args).await.unwrap();
        let args = RegistryArgs {
            registry,
            table,
            store,
            health: None,
            handles,
            metrics: metrics.clone(),
            certs: None,
        };
        let (registry, registry_join) = Actor::spawn(None, RegistryActor, args).await.unwrap();
        Plane {
            registry,
            metrics,
            joins: [registry_join, metrics_join],
        }
    }

    async fn apply(&self, cmd: Command) -> Result<Reply, RegistryError> {
        call_t!(self.registry, RegistryMsg::Apply, 10_000, cmd).expect("the registry answers")
    }

    /// Domains, backends and every domain's history, as the API shows them.
    async fn view(&self) -> Value {
        let domains = call_t!(self.registry, RegistryMsg::ListDomains, 10_000).unwrap();
        let backends = call_t!(self.registry, RegistryMsg::ListBackends, 10_000).unwrap();
        let mut history = BTreeMap::new();
        for d in &domains {
            let name = d.domain.to_string();
            let h = call_t!(self.registry, RegistryMsg::History, 10_000, name.clone()).unwrap();
            history.insert(name, h.expect("a listed domain has a history"));
        }
        json!({ "domains": domains, "backends": backends, "history": history })
    }

    /// Stops both actors and waits until they are gone.
    async fn stop(self) {
        self.registry.stop(None);
        self.metrics.stop(None);
        for join in self.joins {
            join.await.unwrap();
        }
    }
}

/// What differs between two views, entry by entry (the views are large in journal mode).
fn difference(before: &Value, after: &Value) -> Option<String> {
    let mut out = Vec::new();
    for part in ["domains", "backends", "history"] {
        let keyed = |v: &Value| -> BTreeMap<String, Value> {
            match &v[part] {
                Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        (
                            i.get("domain").or(i.get("id")).unwrap().to_string(),
                            i.clone(),
                        )
                    })
                    .collect(),
                Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                _ => BTreeMap::new(),
            }
        };
        let (b, a) = (keyed(before), keyed(after));
        for key in b.keys().chain(a.keys().filter(|k| !b.contains_key(*k))) {
            if b.get(key) != a.get(key) {
                out.push(format!(
                    "{part} {key}:\n  before restart {}\n  after restart  {}",
                    b.get(key).map_or("absent".into(), Value::to_string),
                    a.get(key).map_or("absent".into(), Value::to_string),
                ));
            }
        }
    }
    (!out.is_empty()).then(|| out.join("\n"))
}

/// How the case's state file starts.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// No file: a small registry, every change rewrites the snapshot.
    Snapshot,
    /// The large seed snapshot: changes go to the journal.
    Journal,
    /// The large seed snapshot and a journal nearly as large: the first accepted change
    /// compacts them into a new snapshot, the next ones journal again.
    Compaction,
}

/// Runs `ops` on a fresh copy of the mode's files; checks every restart and a final one.
async fn run_case(seed: &seed::Seed, mode: Mode, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let journal = JsonFileStore::new(&path).journal_path().to_path_buf();
    match mode {
        Mode::Snapshot => {}
        Mode::Journal => seed.copy_snapshot(&path),
        Mode::Compaction => {
            seed.copy_snapshot(&path);
            seed.copy_journal(&journal);
        }
    }
    let ca = seed.ca_file();
    let mut plane = Plane::start(&path).await;
    let mut accepted = 0;
    let restart = Op::Restart;
    for (step, op) in ops.into_iter().chain([restart]).enumerate() {
        match op.with_ca(ca) {
            Op::Apply(cmd) => accepted += usize::from(plane.apply(cmd).await.is_ok()),
            Op::Restart => {
                let before = plane.view().await;
                plane.stop().await;
                plane = Plane::start(&path).await;
                let after = plane.view().await;
                if let Some(diff) = difference(&before, &after) {
                    return Err(TestCaseError::fail(format!(
                        "restart at step {step}:\n{diff}"
                    )));
                }
            }
        }
    }
    plane.stop().await;
    // The case ran in the mode it was meant for.
    let snapshot_is_seed = std::fs::read(&path).ok() == Some(seed.snapshot().to_vec());
    match mode {
        Mode::Snapshot => prop_assert!(!journal.exists(), "a small registry journaled"),
        Mode::Journal if accepted > 0 => {
            prop_assert!(
                journal.exists() && snapshot_is_seed,
                "a large registry rewrote"
            )
        }
        Mode::Compaction if accepted > 0 => prop_assert!(!snapshot_is_seed, "never compacted"),
        _ => {}
    }
    Ok(())
}

/// Runs `cases` cases of `strategy` on one runtime.
fn check(cases: u32, strategy: impl Strategy<Value = (Mode, Vec<Op>)>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seed = seed::Seed::new();
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let result = runner.run(&strategy, |(mode, ops)| {
        rt.block_on(run_case(&seed, mode, ops))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// 128 cases of 5 or 6 setup steps and up to 40 random ones: about 100 ms a case (12 s alone).
#[test]
fn a_small_registry_restarts_as_it_was() {
    check(128, ops(40).prop_map(|ops| (Mode::Snapshot, ops)));
}

// 64 cases like those above, half of them compacting: about 210 ms a case (14 s alone; each start
// reads the 300 KiB seed, each view serialises its histories).
#[test]
fn a_journaled_registry_restarts_as_it_was() {
    let mode = prop_oneof![Just(Mode::Journal), Just(Mode::Compaction)];
    check(64, (mode, ops(40)));
}
