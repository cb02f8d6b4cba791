//! The watch on the registry prefix: other instances' commits, sent to the registry as they
//! come; a broken watch resumes from the next revision, and one that fell behind a compaction
//! reloads the whole prefix. A linearizable read every second says whether etcd is up.

use super::keys::Keys;
use super::{is_auth_error, with_login, Held, Reach, OP_TIMEOUT};
use crate::store::{Record, RemoteChanges, RemoteSink};
use etcd_client::{Client, Event, EventType, GetOptions, WatchOptions};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often etcd's reachability (with quorum) is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Watcher {
    pub(super) client: Client,
    pub(super) keys: Keys,
    pub(super) held: Arc<Mutex<Held>>,
    pub(super) reach: Arc<Reach>,
    pub(super) sink: RemoteSink,
}

/// How a watch ended.
pub(super) enum Ended {
    /// The stream broke (a member went away, no leader): resume from this revision.
    Broken(i64),
    /// The revision to resume from was compacted away: reload everything.
    Compacted,
}

impl Watcher {
    pub(super) async fn run(self, mut from: i64) {
        tokio::spawn(check_up(
            self.client.clone(),
            self.keys.registry(),
            Arc::clone(&self.reach),
        ));
        let mut reported = false;
        loop {
            match self.watch(from).await {
                Ok(Ended::Broken(next)) => from = next,
                Ok(Ended::Compacted) => match self.reload().await {
                    Ok(next) => from = next,
                    Err(e) => tracing::warn!(error = %e, "cannot reload the registry from etcd"),
                },
                Err(e) => {
                    if !reported {
                        tracing::warn!(error = %e, "watch on etcd failed; retrying every second");
                        reported = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            if reported {
                tracing::info!("watch on etcd resumed");
                reported = false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Watches from revision `from` until the stream ends, sending what changed.
    async fn watch(&self, from: i64) -> Result<Ended, etcd_client::Error> {
        follow(&self.client, &self.keys.registry(), from, |events| {
            let mut records = Vec::new();
            for ev in events {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let value = (ev.event_type() == EventType::Put).then(|| kv.value());
                match self.keys.decode(&key, value) {
                    Ok(r) => records.push((key, kv.mod_revision(), r)),
                    Err(e) => tracing::warn!(error = %e, "ignoring a record from etcd"),
                }
            }
            if !records.is_empty() {
                (self.sink)(RemoteChanges { records });
            }
        })
        .await
    }

    /// Reads the whole prefix and sends it, with deletions for the keys the registry holds
    /// that are gone; returns the revision to watch from.
    async fn reload(&self) -> Result<i64, etcd_client::Error> {
        let prefix = self.keys.registry();
        let resp = tokio::time::timeout(
            OP_TIMEOUT,
            with_login(&self.client, |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            }),
        )
        .await
        .map_err(|_| etcd_client::Error::WatchError("no answer".into()))??;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut records = Vec::new();
        let mut present = HashSet::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            match self.keys.decode(&key, Some(kv.value())) {
                Ok(r) => records.push((key.clone(), kv.mod_revision(), r)),
                Err(e) => tracing::warn!(error = %e, "ignoring a record from etcd"),
            }
            present.insert(key);
        }
        let gone: Vec<String> = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.keys
                .iter()
                .filter(|(k, (_, exists))| *exists && !present.contains(*k))
                .map(|(k, _)| k.clone())
                .collect()
        };
        for key in gone {
            if let Ok(r) = self.keys.decode(&key, None) {
                records.push((key, revision, r));
            }
        }
        // Deletions of backends go after the domains that may have moved off them.
        records.sort_by_key(|(_, _, r)| match r {
            Record::Domain(_, Some(_)) => 1,
            Record::Backend(_, Some(_)) => 0,
            Record::History(..) => 2,
            Record::Domain(_, None) => 3,
            Record::Backend(_, None) => 4,
        });
        if !records.is_empty() {
            (self.sink)(RemoteChanges { records });
        }
        Ok(revision + 1)
    }
}

/// Watches `prefix` from revision `from`, handing each answer's events to `apply`, until the
/// stream ends: broken (resume from the revision returned) or past a compaction (reload).
pub(super) async fn follow(
    client: &Client,
    prefix: &str,
    mut from: i64,
    mut apply: impl FnMut(&[Event]),
) -> Result<Ended, etcd_client::Error> {
    let mut client = client.clone();
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut stream = match client.watch(prefix, Some(options)).await {
        Ok(stream) => stream,
        Err(e) => {
            if is_auth_error(&e) {
                let _ = tokio::time::timeout(OP_TIMEOUT, client.refresh_token()).await;
            }
            return Err(e);
        }
    };
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) | Err(_) => return Ok(Ended::Broken(from)),
        };
        if resp.compact_revision() > 0 {
            return Ok(Ended::Compacted);
        }
        if resp.canceled() {
            // etcd checks the token when a watch is created and cancels it when the token is
            // no longer valid (expired, or the members restarted): log in again first.
            tracing::debug!(reason = resp.cancel_reason(), "etcd canceled the watch");
            let _ = tokio::time::timeout(OP_TIMEOUT, client.refresh_token()).await;
            return Ok(Ended::Broken(from));
        }
        for kv in resp.events().iter().filter_map(Event::kv) {
            from = from.max(kv.mod_revision() + 1);
        }
        apply(resp.events());
    }
}

/// Sets `up` from a linearizable read (which needs a leader and quorum) every second, logging
/// in again when etcd refused the token. While `up` is false, writes fail at once with the
/// error seen here.
async fn check_up(client: Client, key: String, reach: Arc<Reach>) {
    reach.probing();
    let mut was = true;
    loop {
        let probe = tokio::time::timeout(
            OP_TIMEOUT,
            with_login(&client, |mut c| {
                let key = key.clone();
                async move { c.get(key, Some(GetOptions::new().with_count_only())).await }
            }),
        )
        .await;
        let result = match probe {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(super::reason(&e)),
            Err(_) => Err(format!("no answer within {} s", OP_TIMEOUT.as_secs())),
        };
        reach.record(result.as_ref().map(|_| ()).map_err(String::as_str));
        let ok = result.is_ok();
        if ok != was {
            if ok {
                tracing::info!("etcd is reachable again");
            } else {
                tracing::warn!(error = %result.unwrap_err(), "etcd is unreachable or has no quorum: serving the last registry; API changes answer 503");
            }
            was = ok;
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
