//! Outcomes per second over the last few minutes, counted on the request path with a few
//! relaxed atomics and read by the rollback rule: a ring of one-second buckets.

use crate::rollout::MAX_WINDOW_SECS;
use std::sync::atomic::{AtomicU64, Ordering};

const SLOTS: usize = MAX_WINDOW_SECS as usize + 2;

#[derive(Debug, Default)]
struct Slot {
    /// The second this slot counts (Unix seconds), or 0.
    second: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
}

/// Requests and errors per second of one (domain, tag).
#[derive(Debug)]
pub struct OutcomeWindow {
    slots: Box<[Slot]>,
}

impl Default for OutcomeWindow {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }
}

impl OutcomeWindow {
    /// Counts one outcome in second `now`.
    #[inline]
    pub fn record(&self, now: u64, error: bool) {
        let slot = &self.slots[(now % SLOTS as u64) as usize];
        let seen = slot.second.load(Ordering::Acquire);
        if seen != now {
            // The first request of a new second claims the slot and clears the old counts. A
            // request of the old second racing with it may be lost: a count, not a ledger.
            if slot
                .second
                .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.requests.store(0, Ordering::Relaxed);
                slot.errors.store(0, Ordering::Relaxed);
            }
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (requests, errors) over the `secs` seconds up to and including `now`.
    pub fn sum(&self, now: u64, secs: u64) -> (u64, u64) {
        let secs = secs.min(MAX_WINDOW_SECS);
        let oldest = now.saturating_sub(secs.saturating_sub(1));
        self.slots.iter().fold((0, 0), |(r, e), s| {
            let at = s.second.load(Ordering::Acquire);
            if at >= oldest && at <= now && at != 0 {
                (
                    r + s.requests.load(Ordering::Relaxed),
                    e + s.errors.load(Ordering::Relaxed),
                )
            } else {
                (r, e)
            }
        })
    }

    /// Forgets everything (a new split starts with a clean record).
    pub fn clear(&self) {
        for s in self.slots.iter() {
            s.second.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_the_window_only() {
        let w = OutcomeWindow::default();
        for s in 1000..1010 {
            w.record(s, s % 2 == 0);
        }
        assert_eq!(w.sum(1009, 10), (10, 5));
        assert_eq!(w.sum(1009, 3), (3, 1));
        assert_eq!(w.sum(1100, 60), (0, 0), "all too old");
        // A slot reused a lap later starts from zero.
        w.record(1000 + SLOTS as u64, true);
        assert_eq!(w.sum(1000 + SLOTS as u64, 1), (1, 1));
        w.clear();
        assert_eq!(w.sum(1009, 10), (0, 0));
    }
}
