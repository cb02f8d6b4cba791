//! The shared store: the registry as one etcd key per record under a prefix, so that several
//! instances serve one registry. A commit is one transaction guarded by the revision of every
//! key it touches (another instance's newer write makes it a conflict, never a lost update);
//! a watch on the prefix brings the other instances' commits to the registry.

mod acme;
mod keys;
mod watch;

use super::{
    EtcdSettings, EtcdTls, PersistedState, Record, RemoteChanges, RemoteSink, StateChange,
    StateStore, StoreError, StoreStatus,
};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn};
use keys::Keys;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one operation may take before the store counts as unavailable (the API answers
/// `503` within 5 s).
const OP_TIMEOUT: Duration = Duration::from_secs(4);

/// The registry in etcd.
pub struct EtcdStore {
    keys: Keys,
    client: Client,
    describe: String,
    /// The store's own runtime: the gRPC channel and the watch live here, whatever thread
    /// calls the store.
    rt: Option<tokio::runtime::Runtime>,
    held: Arc<Mutex<Held>>,
    reach: Arc<Reach>,
}

/// Whether etcd answers, and why not when it does not. While it is down and the periodic
/// check is probing it, operations fail at once with the last error instead of each waiting
/// for its own timeout; the check brings `up` back.
#[derive(Debug)]
pub(super) struct Reach {
    up: AtomicBool,
    probing: AtomicBool,
    last_error: Mutex<String>,
}

impl Reach {
    fn new() -> Self {
        Self {
            up: AtomicBool::new(true),
            probing: AtomicBool::new(false),
            last_error: Mutex::new(String::new()),
        }
    }

    pub(super) fn record(&self, result: Result<(), &str>) {
        if let Err(reason) = result {
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = reason.to_string();
        }
        self.up.store(result.is_ok(), Ordering::Relaxed);
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(super) fn probing(&self) {
        self.probing.store(true, Ordering::Relaxed);
    }

    /// The last error, when etcd is known to be down and the check keeps probing it.
    fn down_reason(&self) -> Option<String> {
        (!self.is_up() && self.probing.load(Ordering::Relaxed)).then(|| {
            self.last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }
}

/// Whether etcd refused the request's authentication token (expired, or lost when the members
/// restarted): logging in again fixes it.
pub(super) fn is_auth_error(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let m = s.message();
            m.contains("auth token")
                || m.contains("auth store is old")
                || m.contains("user name is empty")
        }
        _ => false,
    }
}

/// Runs `op`; when etcd refused the authentication token, logs in again and runs it once more.
pub(super) async fn with_login<T, F>(
    client: &Client,
    op: impl Fn(Client) -> F,
) -> Result<T, etcd_client::Error>
where
    F: Future<Output = Result<T, etcd_client::Error>>,
{
    match op(client.clone()).await {
        Err(e) if is_auth_error(&e) => {
            tracing::info!(error = %e, "etcd refused the authentication token; logging in again");
            client.refresh_token().await?;
            op(client.clone()).await
        }
        other => other,
    }
}

/// What the registry holds of each key: the revision it last applied or wrote, and whether
/// the key exists at that revision.
#[derive(Debug, Default)]
pub(super) struct Held {
    keys: HashMap<String, (i64, bool)>,
    /// The store's revision the last full load saw.
    loaded_at: i64,
}

impl Held {
    fn guard(&self, key: &str) -> Compare {
        let rev = match self.keys.get(key) {
            Some((rev, true)) => *rev,
            _ => 0, // An absent key's mod revision is 0.
        };
        Compare::mod_revision(key, CompareOp::Equal, rev)
    }
}

/// What an etcd error says to an operator: for a gRPC status (which every unreachable or
/// leaderless cluster answers with), its message and code (`etcdserver: no leader`, `tcp connect
/// error`) without tonic's debug dump of the error chain.
pub(super) fn reason(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{} ({:?})", status.message(), status.code())
        }
        other => other.to_string(),
    }
}

impl EtcdStore {
    /// A client for `settings` (etcd is reached lazily: the first load says whether it is up).
    pub fn connect(settings: &EtcdSettings) -> Result<Self, StoreError> {
        let describe = format!(
            "etcd {} prefix {}",
            settings.endpoints.join(","),
            settings.prefix
        );
        let unavailable = |reason: String| StoreError::Unavailable {
            store: describe.clone(),
            reason,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vhost-etcd")
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("cannot start its runtime: {e}")))?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(OP_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_require_leader(true);
        if let Some((user, password)) = &settings.user {
            options = options.with_user(user, password);
        }
        if let Some(tls) = &settings.tls {
            options = options.with_tls(tls_options(tls).map_err(&unavailable)?);
        }
        let endpoints = settings.endpoints.clone();
        let client = rt
            .block_on(async {
                tokio::time::timeout(OP_TIMEOUT, Client::connect(endpoints, Some(options))).await
            })
            .map_err(|_| unavailable("no answer".into()))?
            .map_err(|e| unavailable(reason(&e)))?;
        Ok(Self {
            keys: Keys::new(&settings.prefix),
            client,
            describe,
            rt: Some(rt),
            held: Arc::default(),
            reach: Arc::new(Reach::new()),
        })
    }

    fn unavailable(&self, reason: impl ToString) -> StoreError {
        StoreError::Unavailable {
            store: self.describe.clone(),
            reason: reason.to_string(),
        }
    }

    /// Runs `op` on the store's runtime and waits at most [`OP_TIMEOUT`] for it, from any
    /// thread that may block (the registry calls the store on the blocking pool).
    fn run<T, F>(&self, op: impl Fn(Client) -> F + Send + 'static) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        if let Some(reason) = self.reach.down_reason() {
            return Err(self.unavailable(reason));
        }
        let result = self.attempt(OP_TIMEOUT, op);
        self.reach
            .record(result.as_ref().map(|_| ()).map_err(String::as_str));
        result.map_err(|reason| self.unavailable(reason))
    }

    /// Like [`EtcdStore::run`] with a patience of its own (waiting for a lock), and without
    /// counting a timeout as etcd being down.
    fn run_for<T, F>(
        &self,
        patience: Duration,
        op: impl Fn(Client) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        if let Some(reason) = self.reach.down_reason() {
            return Err(self.unavailable(reason));
        }
        self.attempt(patience, op)
            .map_err(|reason| self.unavailable(reason))
    }

    /// One operation (logging in again if etcd refused the token), waited for at most
    /// `patience`.
    fn attempt<T, F>(
        &self,
        patience: Duration,
        op: impl Fn(Client) -> F + Send + 'static,
    ) -> Result<T, String>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let client = self.client.clone();
        self.runtime().spawn(async move {
            let _ = tx.send(tokio::time::timeout(patience, with_login(&client, op)).await);
        });
        match rx.recv_timeout(patience + Duration::from_millis(500)) {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(reason(&e)),
            Ok(Err(_)) | Err(_) => Err(format!("no answer within {} s", patience.as_secs())),
        }
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.rt
            .as_ref()
            .expect("the runtime lives as long as the store")
    }

    /// Writes every record of `state` where no key exists yet (seeding an empty prefix);
    /// [`StoreError::Conflict`] when another instance seeded it first.
    fn create_all(&self, state: &PersistedState) -> Result<(), StoreError> {
        let mut changes: Vec<StateChange> = state
            .domains
            .iter()
            .cloned()
            .map(StateChange::PutDomain)
            .collect();
        changes.extend(state.backends.iter().cloned().map(StateChange::PutBackend));
        self.commit(&changes, Some(state))
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // The store may be dropped on an async thread, where a runtime cannot block to stop.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl StateStore for EtcdStore {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let prefix = self.keys.registry();
        let resp = self.run(move |mut c| {
            let prefix = prefix.clone();
            async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
        })?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut held = Held {
            loaded_at: revision,
            ..Held::default()
        };
        let mut records = Vec::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            records.push(self.keys.decode(&key, Some(kv.value()))?);
            held.keys.insert(key, (kv.mod_revision(), true));
        }
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
        if records.is_empty() {
            return Ok(None);
        }
        let mut state = PersistedState {
            version: PersistedState::VERSION,
            ..PersistedState::default()
        };
        for r in records {
            match r {
                Record::Domain(_, Some(d)) => state.domains.push(d),
                Record::Backend(_, Some(b)) => state.backends.push(b),
                Record::History(name, changes) if !changes.is_empty() => {
                    state.history.insert(name, changes);
                }
                _ => {}
            }
        }
        Ok(Some(state))
    }

    fn needs_full_state(&self, _changes: usize) -> bool {
        true // A history record is the whole of a domain's history.
    }

    fn commit(
        &self,
        changes: &[StateChange],
        full: Option<&PersistedState>,
    ) -> Result<(), StoreError> {
        let (guards, ops, touched) = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            self.keys.transaction(changes, full, &held)
        };
        if ops.is_empty() {
            return Ok(());
        }
        let txn = Txn::new().when(guards).and_then(ops);
        let resp = self.run(move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })?;
        if !resp.succeeded() {
            let what = touched
                .iter()
                .map(|(k, _)| self.keys.describe(k))
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(StoreError::Conflict { what });
        }
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for (key, exists) in touched {
            held.keys.insert(key, (revision, exists));
        }
        Ok(())
    }

    fn discard(&self) -> Result<(), StoreError> {
        let prefix = self.keys.registry();
        self.run(move |mut c| {
            let prefix = prefix.clone();
            async move {
                c.delete(
                    prefix,
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )
                .await
            }
        })?;
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Held::default();
        Ok(())
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn status(&self) -> StoreStatus {
        StoreStatus {
            backend: "etcd",
            up: self.reach.is_up(),
        }
    }

    fn seed(&self, state: &PersistedState) -> Result<bool, StoreError> {
        match self.create_all(state) {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn subscribe(&self, sink: RemoteSink) {
        let from = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .loaded_at
            + 1;
        let watcher = watch::Watcher {
            client: self.client.clone(),
            keys: self.keys.clone(),
            held: Arc::clone(&self.held),
            reach: Arc::clone(&self.reach),
            sink,
        };
        self.runtime().spawn(watcher.run(from));
    }

    fn accept(&self, changes: RemoteChanges) -> Vec<Record> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (key, revision, record) in changes.records {
            let newer = held.keys.get(&key).is_none_or(|(r, _)| revision > *r);
            if newer {
                let exists = !matches!(&record, Record::Domain(_, None) | Record::Backend(_, None))
                    && !matches!(&record, Record::History(_, h) if h.is_empty());
                held.keys.insert(key, (revision, exists));
                out.push(record);
            }
        }
        out
    }
}

fn tls_options(tls: &EtcdTls) -> Result<etcd_client::TlsOptions, String> {
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let mut options = match &tls.ca_file {
        Some(ca) => etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(ca)?)),
        None => etcd_client::TlsOptions::new().with_native_roots(),
    };
    if let Some((cert, key)) = &tls.client {
        options = options.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(options)
}
