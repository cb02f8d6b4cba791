//! The backends of one tag and the smooth weighted round-robin order they are picked in.

use crate::upstream::UpstreamBackend;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The backends of one tag, with a precomputed smooth weighted round-robin order.
#[derive(Debug)]
pub struct BackendPool {
    members: Vec<Arc<UpstreamBackend>>,
    /// Indices into `members`, interleaved by weight (nginx's smooth WRR, unrolled).
    order: Vec<u32>,
    cursor: AtomicUsize,
    /// Where the last pick that found its slot unusable ended. Such picks go on from here, so
    /// that the traffic of a run of unusable backends goes round the usable ones instead of all
    /// landing on the first one after the run.
    spill: AtomicUsize,
}

impl BackendPool {
    /// Builds a pool from `(backend, weight)` pairs.
    pub fn new(members: Vec<(Arc<UpstreamBackend>, u32)>) -> Self {
        let order = smooth_order(&members.iter().map(|(_, w)| *w).collect::<Vec<_>>());
        Self {
            members: members.into_iter().map(|(b, _)| b).collect(),
            order,
            cursor: AtomicUsize::new(0),
            spill: AtomicUsize::new(0),
        }
    }

    /// The pool's backends.
    pub fn members(&self) -> &[Arc<UpstreamBackend>] {
        &self.members
    }

    /// Whether the pool has a backend that is not marked unhealthy and that `skip` accepts.
    pub fn has_routable(&self, skip: impl Fn(&UpstreamBackend) -> bool) -> bool {
        self.members
            .iter()
            .any(|b| b.health.is_routable() && !skip(b))
    }

    /// Next backend by weighted round robin, skipping unhealthy ones and those `skip` rejects.
    #[inline]
    pub fn pick(&self, skip: impl Fn(&UpstreamBackend) -> bool) -> Option<&Arc<UpstreamBackend>> {
        let len = self.order.len();
        if len == 0 {
            return None;
        }
        let usable = |slot: usize| {
            let b = &self.members[self.order[slot] as usize];
            (b.health.is_routable() && !skip(b)).then_some(b)
        };
        if let Some(b) = usable(self.cursor.fetch_add(1, Ordering::Relaxed) % len) {
            return Some(b);
        }
        let mut slot = self.spill.load(Ordering::Relaxed) % len;
        for _ in 0..len {
            if let Some(b) = usable(slot) {
                self.spill.store(slot + 1, Ordering::Relaxed);
                return Some(b);
            }
            slot = if slot + 1 == len { 0 } else { slot + 1 };
        }
        None
    }
}

/// Unrolls nginx's smooth weighted round robin into one cycle of member indices.
pub fn smooth_order(weights: &[u32]) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let w: Vec<i64> = weights.iter().map(|&x| i64::from(x.max(1) / g)).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best as u32);
    }
    order
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
