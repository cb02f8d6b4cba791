//! A backend's live state as the request path and the probes share it: its address, one packed
//! health word and the count of requests in flight. Every health transition (probe result,
//! passive ejection, recovery) is a single compare-and-swap on that word, so no writer can
//! overwrite another's change.

#[cfg(test)]
mod tests;
mod transport;

pub use transport::{
    load_ca_file, system_roots, NoPeer, PeerPreparer, PeerTemplate, Roots, TlsTarget, Transport,
};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

// === impl HealthStatus ===

/// Health of a backend, shared by every route that includes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    /// Not probed yet: routable.
    Unknown,
    /// Passing its checks.
    Healthy,
    /// Failing: skipped by every policy.
    Unhealthy,
}

impl HealthStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    fn from_bits(v: u64) -> Self {
        match v & STATUS_MASK {
            1 => HealthStatus::Healthy,
            2 => HealthStatus::Unhealthy,
            _ => HealthStatus::Unknown,
        }
    }

    fn bits(self) -> u64 {
        match self {
            HealthStatus::Unknown => 0,
            HealthStatus::Healthy => 1,
            HealthStatus::Unhealthy => 2,
        }
    }
}

// === the health word ===

/// Bits 0-1: status; then three 20-bit counters (probe failures in a row, probe successes in a
/// row, failed attempts on real traffic since the last answer), each saturating.
const STATUS_MASK: u64 = 0b11;
const COUNTER_BITS: u32 = 20;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;
const FAILURES_SHIFT: u32 = 2;
const SUCCESSES_SHIFT: u32 = FAILURES_SHIFT + COUNTER_BITS;
const PASSIVE_SHIFT: u32 = SUCCESSES_SHIFT + COUNTER_BITS;

/// The decoded health word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Word {
    status: u64,
    failures: u64,
    successes: u64,
    passive: u64,
}

impl Word {
    fn unpack(w: u64) -> Self {
        Self {
            status: w & STATUS_MASK,
            failures: (w >> FAILURES_SHIFT) & COUNTER_MAX,
            successes: (w >> SUCCESSES_SHIFT) & COUNTER_MAX,
            passive: (w >> PASSIVE_SHIFT) & COUNTER_MAX,
        }
    }

    fn pack(self) -> u64 {
        self.status
            | self.failures.min(COUNTER_MAX) << FAILURES_SHIFT
            | self.successes.min(COUNTER_MAX) << SUCCESSES_SHIFT
            | self.passive.min(COUNTER_MAX) << PASSIVE_SHIFT
    }
}

/// A counter reaches `threshold` (counters saturate, so a huge threshold still can be met).
fn reached(count: u64, threshold: u32) -> bool {
    count >= u64::from(threshold).min(COUNTER_MAX)
}

/// How many probe results in a row change a backend's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive failures that make a backend unhealthy.
    pub unhealthy: u32,
    /// Consecutive successes that make it healthy again.
    pub healthy: u32,
}

// === impl BackendHealth ===

/// One backend's health, written by its probe and by the request path, read per request.
#[derive(Debug, Default)]
pub struct BackendHealth {
    word: AtomicU64,
    /// Unix milliseconds of the last probe; 0 when never probed. Informational only: no
    /// transition depends on it, so it lives outside the word.
    last_check_ms: AtomicI64,
}

/// A point-in-time copy of [`BackendHealth`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthReading {
    /// Current status.
    pub status: HealthStatus,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Successes in a row.
    pub consecutive_successes: u32,
    /// Unix milliseconds of the last probe, if any.
    pub last_check_ms: Option<i64>,
}

/// A status change: (before, after).
pub type Transition = (HealthStatus, HealthStatus);

impl BackendHealth {
    /// The current status.
    pub fn status(&self) -> HealthStatus {
        HealthStatus::from_bits(self.word.load(Ordering::Relaxed))
    }

    /// Whether the request path may send traffic here.
    #[inline]
    pub fn is_routable(&self) -> bool {
        self.word.load(Ordering::Relaxed) & STATUS_MASK != HealthStatus::Unhealthy.bits()
    }

    /// Applies `f` to the word in one compare-and-swap loop; returns (before, after).
    #[inline]
    fn transition(&self, f: impl Fn(Word) -> Word) -> (Word, Word) {
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            let before = Word::unpack(current);
            let after = f(before);
            if after == before {
                return (before, after);
            }
            match self.word.compare_exchange_weak(
                current,
                after.pack(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return (before, after),
                Err(now) => current = now,
            }
        }
    }

    /// Applies one probe outcome; returns the status change, if any. A healthy verdict also
    /// forgives failures seen on real traffic.
    pub fn record_probe(&self, ok: bool, t: Thresholds, now_ms: i64) -> Option<Transition> {
        self.last_check_ms.store(now_ms, Ordering::Relaxed);
        let (before, after) = self.transition(|mut w| {
            if ok {
                w.successes += 1;
                w.failures = 0;
                if reached(w.successes, t.healthy) {
                    w.status = HealthStatus::Healthy.bits();
                    w.passive = 0;
                }
            } else {
                w.failures += 1;
                w.successes = 0;
                if reached(w.failures, t.unhealthy) {
                    w.status = HealthStatus::Unhealthy.bits();
                }
            }
            w
        });
        status_change(before, after)
    }

    /// Counts a failed attempt on real traffic; true when this failure ejected the backend.
    #[inline]
    pub fn record_passive_failure(&self, threshold: u32) -> bool {
        let (before, after) = self.transition(|mut w| {
            w.passive += 1;
            if reached(w.passive, threshold) && w.status != HealthStatus::Unhealthy.bits() {
                w.status = HealthStatus::Unhealthy.bits();
                w.successes = 0;
            }
            w
        });
        before.status != after.status
    }

    /// Clears the passive failure count after an answer from the backend.
    #[inline]
    pub fn record_passive_success(&self) {
        if Word::unpack(self.word.load(Ordering::Relaxed)).passive != 0 {
            self.transition(|w| Word { passive: 0, ..w });
        }
    }

    /// Reads every field.
    pub fn read(&self) -> HealthReading {
        let w = Word::unpack(self.word.load(Ordering::Relaxed));
        let last = self.last_check_ms.load(Ordering::Relaxed);
        HealthReading {
            status: HealthStatus::from_bits(w.status),
            consecutive_failures: w.failures as u32,
            consecutive_successes: w.successes as u32,
            last_check_ms: (last != 0).then_some(last),
        }
    }
}

fn status_change(before: Word, after: Word) -> Option<Transition> {
    (before.status != after.status).then(|| {
        (
            HealthStatus::from_bits(before.status),
            HealthStatus::from_bits(after.status),
        )
    })
}

// === impl UpstreamBackend ===

/// A backend as the request path sees it; one per backend, shared by all routes.
#[derive(Debug)]
pub struct UpstreamBackend {
    /// The backend id (metrics and log label).
    pub id: Arc<str>,
    /// Resolved socket address.
    pub addr: SocketAddr,
    /// Health word.
    pub health: BackendHealth,
    /// Requests holding a slot here (see [`crate::routing::Lease`]). Next to the health word:
    /// a pick reads both, and one cache line per backend keeps a least-connections scan short.
    in_flight: AtomicU32,
    /// Protocol and TLS settings, loaded and checked.
    pub transport: Arc<Transport>,
    /// The proxy's connection template, built when this value was.
    pub peer: PeerTemplate,
    /// False for a backend whose host name did not resolve: it takes no traffic and is not
    /// probed until a later resolution replaces it.
    resolved: bool,
}

impl UpstreamBackend {
    /// A backend with unknown health.
    pub fn new(id: &str, addr: SocketAddr) -> Self {
        Self {
            id: Arc::from(id),
            addr,
            health: BackendHealth::default(),
            in_flight: AtomicU32::new(0),
            transport: Transport::http1(),
            peer: Arc::new(()),
            resolved: true,
        }
    }

    /// The backend reached with `transport`, through the proxy's `peer` template.
    pub fn with_transport(mut self, transport: Arc<Transport>, peer: PeerTemplate) -> Self {
        self.transport = transport;
        self.peer = peer;
        self
    }

    /// A backend whose host name does not resolve (yet): unhealthy, with no address to use.
    pub fn unresolved(id: &str, port: u16) -> Self {
        let health = BackendHealth::default();
        health
            .word
            .store(HealthStatus::Unhealthy.bits(), Ordering::Relaxed);
        Self {
            id: Arc::from(id),
            addr: SocketAddr::from(([0, 0, 0, 0], port)),
            health,
            in_flight: AtomicU32::new(0),
            transport: Transport::http1(),
            peer: Arc::new(()),
            resolved: false,
        }
    }

    /// Whether the address is a resolved one.
    pub fn is_resolved(&self) -> bool {
        self.resolved
    }

    /// Requests in flight to this backend right now.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether a request could take a slot under `cap` (0: no cap) right now.
    #[inline]
    pub fn has_room(&self, cap: u32) -> bool {
        cap == 0 || self.in_flight() < cap
    }

    /// Takes an in-flight slot unless `cap` (0: no cap) is reached; never waits. The capped case
    /// is one compare-and-swap, so concurrent requests can never take more than `cap` slots.
    #[inline]
    pub(crate) fn try_acquire(&self, cap: u32) -> bool {
        if cap == 0 {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back a slot taken by [`UpstreamBackend::try_acquire`].
    #[inline]
    pub(crate) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
