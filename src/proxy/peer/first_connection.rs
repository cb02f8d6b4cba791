//! One request at a time opens a backend's HTTP/2 connection while it has none; the others
//! wait for it and then share it. Once it is up, a request pays one atomic load here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Held by the request that opens the connection; others wait while it is held.
pub type Opening = OwnedMutexGuard<()>;

/// The state of a backend's first connection.
#[derive(Debug)]
pub(super) struct FirstConnection {
    up: AtomicBool,
    /// Milliseconds (on this module's clock) of the last request that got a connection.
    last_used_ms: AtomicU64,
    /// Idle connections are closed after this: a connection unused this long is gone.
    idle: Duration,
    opening: Arc<Mutex<()>>,
}

impl FirstConnection {
    pub(super) fn new(idle: Duration) -> Self {
        Self {
            up: AtomicBool::new(false),
            last_used_ms: AtomicU64::new(0),
            idle,
            opening: Arc::new(Mutex::new(())),
        }
    }

    /// `None` when the connection is up (or the wait ran out: then go ahead as Pingora would);
    /// else the right to open it.
    pub(super) async fn wait(&self, patience: Duration) -> Option<Opening> {
        if self.is_up() {
            return None;
        }
        let guard = tokio::time::timeout(patience, Arc::clone(&self.opening).lock_owned())
            .await
            .ok()?;
        if self.is_up() {
            None
        } else {
            Some(guard)
        }
    }

    fn is_up(&self) -> bool {
        if !self.up.load(Ordering::Acquire) {
            return false;
        }
        let last = self.last_used_ms.load(Ordering::Relaxed);
        now_ms().saturating_sub(last) < self.idle.as_millis() as u64
    }

    pub(super) fn connected(&self) {
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
        if !self.up.load(Ordering::Relaxed) {
            self.up.store(true, Ordering::Release);
        }
    }

    pub(super) fn lost(&self) {
        if self.up.load(Ordering::Relaxed) {
            self.up.store(false, Ordering::Release);
        }
    }
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_opens_the_others_wait_then_share() {
        let first = Arc::new(FirstConnection::new(Duration::from_secs(60)));
        let opener = first
            .wait(Duration::from_secs(1))
            .await
            .expect("the first opens");
        let waiter = {
            let first = Arc::clone(&first);
            tokio::spawn(async move { first.wait(Duration::from_secs(5)).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "waits while the connection is being opened"
        );
        first.connected();
        drop(opener);
        assert!(
            !waiter.await.unwrap(),
            "shares the connection instead of opening one"
        );
        assert!(first.wait(Duration::from_secs(1)).await.is_none());
        first.lost();
        assert!(
            first.wait(Duration::from_secs(1)).await.is_some(),
            "opens again"
        );
    }

    #[tokio::test]
    async fn a_failed_opener_lets_the_next_one_try() {
        let first = FirstConnection::new(Duration::from_secs(60));
        let opener = first.wait(Duration::from_secs(1)).await;
        drop(opener);
        assert!(first.wait(Duration::from_secs(1)).await.is_some());
    }
}
