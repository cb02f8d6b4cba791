//! ACME shared through etcd: the account, certificates and HTTP-01 tokens under
//! `<prefix>acme/`, and etcd locks (held by a lease, so a dead instance's lock runs out) for
//! one order at a time.

use super::watch::{follow, Ended};
use super::{EtcdStore, OP_TIMEOUT};
use crate::cert::{AcmeChallenges, AcmeShare, SharedItem};
use etcd_client::{Client, EventType, GetOptions, LockOptions};
use std::collections::HashSet;
use std::time::Duration;

/// A lock's lease: it outlives a stuck holder by at most this long.
const LOCK_TTL_SECS: i64 = 30;

impl EtcdStore {
    fn acme_key(&self, item: SharedItem<'_>) -> String {
        match item {
            SharedItem::Account(stem) => self.keys.acme(&format!("account/{stem}")),
            SharedItem::Cert(domain) => self.keys.acme(&format!("certs/{domain}")),
            SharedItem::Token(token) => self.keys.acme(&format!("challenges/{token}")),
        }
    }
}

impl AcmeShare for EtcdStore {
    fn load(&self, item: SharedItem<'_>) -> Result<Option<Vec<u8>>, String> {
        let key = self.acme_key(item);
        let resp = self
            .run(move |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .map_err(|e| e.to_string())?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    fn save(&self, item: SharedItem<'_>, bytes: &[u8]) -> Result<(), String> {
        let (key, value) = (self.acme_key(item), bytes.to_vec());
        self.run(move |mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move { c.put(key, value, None).await }
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    fn remove(&self, item: SharedItem<'_>) -> Result<(), String> {
        let key = self.acme_key(item);
        self.run(move |mut c| {
            let key = key.clone();
            async move { c.delete(key, None).await }
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    fn lock(&self, name: &str, patience: Duration) -> Result<Box<dyn Send>, String> {
        let lease = self
            .run(|mut c| async move { c.lease_grant(LOCK_TTL_SECS, None).await })
            .map_err(|e| e.to_string())?
            .id();
        // The lease lives while this instance holds the lock.
        let keeper = self.runtime().spawn(keep_alive(self.client.clone(), lease));
        let key = self.keys.acme(&format!("locks/{name}"));
        let locked = self.run_for(patience, move |mut c| {
            let key = key.clone();
            async move {
                c.lock(key, Some(LockOptions::new().with_lease(lease)))
                    .await
            }
        });
        let guard = LockGuard {
            client: self.client.clone(),
            rt: self.runtime().handle().clone(),
            lease,
            keeper,
        };
        match locked {
            Ok(_) => Ok(Box::new(guard)),
            Err(e) => Err(format!("cannot take the lock '{name}': {e}")), // the guard revokes
        }
    }

    fn mirror_tokens(&self, challenges: AcmeChallenges) {
        let prefix = self.keys.acme("challenges/");
        self.runtime()
            .spawn(mirror(self.client.clone(), prefix, challenges));
    }
}

/// Releases the lock by revoking its lease.
struct LockGuard {
    client: Client,
    rt: tokio::runtime::Handle,
    lease: i64,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.keeper.abort();
        let (mut client, lease) = (self.client.clone(), self.lease);
        self.rt.spawn(async move {
            let _ = tokio::time::timeout(OP_TIMEOUT, client.lease_revoke(lease)).await;
        });
    }
}

async fn keep_alive(mut client: Client, lease: i64) {
    let Ok((mut keeper, mut stream)) = client.lease_keep_alive(lease).await else {
        return;
    };
    loop {
        tokio::time::sleep(Duration::from_secs((LOCK_TTL_SECS / 3) as u64)).await;
        if keeper.keep_alive().await.is_err() || stream.message().await.is_err() {
            return;
        }
    }
}

/// Keeps `challenges` equal to the tokens under `prefix`: loads them, then follows the
/// prefix; a broken watch resumes where it was, a compacted one loads again (withdrawing the
/// tokens that went away meanwhile).
async fn mirror(client: Client, prefix: String, challenges: AcmeChallenges) {
    let mut mirrored = HashSet::<Vec<u8>>::new();
    loop {
        let Some(mut from) = load(&client, &prefix, &challenges, &mut mirrored).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        loop {
            let followed = follow(&client, &prefix, from, |events| {
                for ev in events {
                    let Some(kv) = ev.kv() else { continue };
                    let value = (ev.event_type() == EventType::Put).then(|| kv.value());
                    publish(&challenges, &prefix, kv.key(), value);
                    match value {
                        Some(_) => mirrored.insert(kv.key().to_vec()),
                        None => mirrored.remove(kv.key()),
                    };
                }
            })
            .await;
            match followed {
                Ok(Ended::Broken(next)) => from = next,
                Ok(Ended::Compacted) => break,
                // No member answers: try again from the same revision.
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Publishes every token under `prefix` and withdraws the mirrored ones that are gone; the
/// revision to follow from, or none when etcd does not answer.
async fn load(
    client: &Client,
    prefix: &str,
    challenges: &AcmeChallenges,
    mirrored: &mut HashSet<Vec<u8>>,
) -> Option<i64> {
    let mut client = client.clone();
    let loaded = tokio::time::timeout(
        OP_TIMEOUT,
        client.get(prefix, Some(GetOptions::new().with_prefix())),
    )
    .await;
    let Ok(Ok(resp)) = loaded else { return None };
    let present: HashSet<Vec<u8>> = resp.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    for gone in mirrored.difference(&present) {
        publish(challenges, prefix, gone, None);
    }
    for kv in resp.kvs() {
        publish(challenges, prefix, kv.key(), Some(kv.value()));
    }
    *mirrored = present;
    Some(resp.header().map_or(0, |h| h.revision()) + 1)
}

fn publish(challenges: &AcmeChallenges, prefix: &str, key: &[u8], value: Option<&[u8]>) {
    let key = String::from_utf8_lossy(key);
    let Some(token) = key.strip_prefix(prefix) else {
        return;
    };
    match value {
        Some(v) => challenges.publish(token, String::from_utf8_lossy(v).into_owned()),
        None => challenges.withdraw(token),
    }
}
