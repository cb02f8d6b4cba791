//! One request at a time takes a stream or a connection from Pingora's pool for an HTTP/2
//! backend. Pingora's pool lends a connection out while it opens a stream on it, and a request
//! that finds the pool empty meanwhile opens a connection of its own: bursts of 100 streams
//! opened 20 to 50 connections. Through the gate they open one and share it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Held from choosing the peer until the connection is there (or failed).
pub type Opening = OwnedMutexGuard<()>;

/// The gate of one backend.
#[derive(Debug, Default)]
pub(super) struct ConnectionGate {
    /// The backend answered in HTTP/1.1 (an `https` backend without h2): every request needs a
    /// connection of its own, and they must not open them one at a time.
    speaks_h1: AtomicBool,
    lock: Arc<Mutex<()>>,
}

impl ConnectionGate {
    /// The right to take a connection now; `None` for an HTTP/1.1 backend, or when the wait
    /// ran out (then go ahead as Pingora would).
    pub(super) async fn enter(&self, patience: Duration) -> Option<Opening> {
        if self.speaks_h1.load(Ordering::Relaxed) {
            return None;
        }
        tokio::time::timeout(patience, Arc::clone(&self.lock).lock_owned())
            .await
            .ok()
    }

    /// Records the HTTP version the backend answered in.
    pub(super) fn answered(&self, http2: bool) {
        if self.speaks_h1.load(Ordering::Relaxed) == http2 {
            self.speaks_h1.store(!http2, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_take_connections_one_at_a_time() {
        let gate = Arc::new(ConnectionGate::default());
        let first = gate.enter(Duration::from_secs(1)).await.expect("enters");
        let second = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move { gate.enter(Duration::from_secs(5)).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !second.is_finished(),
            "waits while the first takes its connection"
        );
        drop(first);
        assert!(second.await.unwrap());
    }

    #[tokio::test]
    async fn an_http1_backend_is_not_gated_and_a_long_wait_gives_up() {
        let gate = ConnectionGate::default();
        let held = gate.enter(Duration::from_secs(1)).await.unwrap();
        assert!(gate.enter(Duration::from_millis(20)).await.is_none());
        drop(held);
        gate.answered(false);
        let a = gate.enter(Duration::from_secs(1)).await;
        assert!(a.is_none() && gate.enter(Duration::from_secs(1)).await.is_none());
        gate.answered(true);
        assert!(gate.enter(Duration::from_secs(1)).await.is_some());
    }
}
