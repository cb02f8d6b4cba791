//! The backends of one tag and the ways a request picks one of them: smooth weighted round
//! robin, fewest in flight, or a consistent-hash table. Every pick takes an in-flight slot
//! ([`Lease`]) and skips backends that are unhealthy, at their `max_connections`, or rejected by
//! the caller (those a request already tried).

use super::lease::Lease;
use super::maglev::{HashTables, MaglevTable};
use crate::upstream::UpstreamBackend;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A pool member as the registry publishes it.
#[derive(Clone, Debug)]
pub struct PoolMember {
    /// The backend's live state.
    pub backend: Arc<UpstreamBackend>,
    /// Share of the pool, 1..=1000.
    pub weight: u32,
    /// Requests in flight allowed at once; 0 = no limit.
    pub max_connections: u32,
}

impl From<(Arc<UpstreamBackend>, u32)> for PoolMember {
    fn from((backend, weight): (Arc<UpstreamBackend>, u32)) -> Self {
        Self {
            backend,
            weight,
            max_connections: 0,
        }
    }
}

/// Table slots a hashed pick looks at past its own before it scans the members instead; with
/// most of a pool down the walk would otherwise grow with the table, not the pool.
const MAX_WALK: usize = 64;

/// Members a least-connections pick compares: every member of a pool up to this size; in a
/// larger pool, this many in a row from where weighted round robin starts, so that a pick costs
/// the same at 256 backends as at 16. The start moves with every pick, so every member is
/// compared within one round and the load evens out as with a scan of all (the least loaded of
/// several choices spreads load nearly as well as the least loaded of all).
pub const LEAST_CONN_WINDOW: usize = 16;

/// The backends of one tag, with a precomputed smooth weighted round-robin order and, when a
/// domain on the tag hashes its requests, a consistent-hash table.
#[derive(Debug)]
pub struct BackendPool {
    members: Vec<Arc<UpstreamBackend>>,
    /// `max_connections` of each member (0: none), in member order.
    caps: Vec<u32>,
    /// Weight of each member, in member order.
    weights: Vec<u32>,
    /// Indices into `members`, interleaved by weight (nginx's smooth WRR, unrolled).
    order: Vec<u32>,
    cursor: AtomicUsize,
    /// Where the last pick that found its slot unusable ended. Such picks go on from here, so
    /// that the traffic of a run of unusable backends goes round the usable ones instead of all
    /// landing on the first one after the run.
    spill: AtomicUsize,
    /// Built at publish time for hashing policies only; shared by the pools of the same members.
    table: Option<Arc<MaglevTable>>,
}

impl BackendPool {
    /// Builds a pool from its members (`(backend, weight)` pairs convert, without a cap).
    pub fn new<M: Into<PoolMember>>(members: impl IntoIterator<Item = M>) -> Self {
        let members: Vec<PoolMember> = members.into_iter().map(Into::into).collect();
        let order = smooth_order(&members.iter().map(|m| m.weight).collect::<Vec<_>>());
        Self {
            caps: members.iter().map(|m| m.max_connections).collect(),
            weights: members.iter().map(|m| m.weight).collect(),
            members: members.into_iter().map(|m| m.backend).collect(),
            order,
            cursor: AtomicUsize::new(0),
            spill: AtomicUsize::new(0),
            table: None,
        }
    }

    /// Adds the consistent-hash table that [`BackendPool::pick_hashed`] uses, built from the
    /// members' ids and weights.
    pub fn with_hash_table(self) -> Self {
        self.with_table_from(&mut HashTables::default())
    }

    /// Adds the consistent-hash table of these members from `tables`: the one another pool of
    /// the same members already holds, or a new one.
    pub fn with_table_from(mut self, tables: &mut HashTables) -> Self {
        let ids: Vec<(&str, u32)> = self
            .members
            .iter()
            .zip(&self.weights)
            .map(|(b, &w)| (&*b.id, w))
            .collect();
        self.table = Some(tables.table_for(&ids));
        self
    }

    /// Whether this pool and `other` look keys up in the same table.
    #[cfg(test)]
    pub(crate) fn shares_table_with(&self, other: &BackendPool) -> bool {
        matches!((&self.table, &other.table), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    /// The pool's backends.
    pub fn members(&self) -> &[Arc<UpstreamBackend>] {
        &self.members
    }

    /// Whether the pool has a backend that is not marked unhealthy, has room under its cap and
    /// that `skip` accepts.
    pub fn has_routable(&self, skip: impl Fn(&UpstreamBackend) -> bool) -> bool {
        (0..self.members.len()).any(|i| self.usable(i, &skip))
    }

    #[inline]
    fn usable(&self, i: usize, skip: &impl Fn(&UpstreamBackend) -> bool) -> bool {
        let b = &self.members[i];
        b.health.is_routable() && b.has_room(self.caps[i]) && !skip(b)
    }

    /// A slot on member `i` if it is usable and its cap lets one more request in.
    #[inline]
    fn lease(&self, i: usize, skip: &impl Fn(&UpstreamBackend) -> bool) -> Option<Lease> {
        let b = &self.members[i];
        if b.health.is_routable() && !skip(b) {
            Lease::acquire(b, self.caps[i])
        } else {
            None
        }
    }

    // === round robin ===

    /// Next backend by weighted round robin, skipping unhealthy ones, those at their cap and
    /// those `skip` rejects.
    #[inline]
    pub fn pick(&self, skip: impl Fn(&UpstreamBackend) -> bool) -> Option<Lease> {
        let len = self.order.len();
        if len == 0 {
            return None;
        }
        let at = |slot: usize| self.lease(self.order[slot] as usize, &skip);
        if let Some(lease) = at(self.cursor.fetch_add(1, Ordering::Relaxed) % len) {
            return Some(lease);
        }
        let mut slot = self.spill.load(Ordering::Relaxed) % len;
        for _ in 0..len {
            if let Some(lease) = at(slot) {
                self.spill.store(slot + 1, Ordering::Relaxed);
                return Some(lease);
            }
            slot = if slot + 1 == len { 0 } else { slot + 1 };
        }
        None
    }

    // === least connections ===

    /// The usable backend with the fewest requests in flight. The scan starts at the member
    /// weighted round robin would pick and keeps the first of equals, so ties go round the pool
    /// by weight (an idle pool is plain weighted round robin). A pool of more than
    /// [`LEAST_CONN_WINDOW`] members compares that many from the start (the start moves with
    /// every pick), unless none of them is usable.
    #[inline]
    pub fn pick_least_loaded(&self, skip: impl Fn(&UpstreamBackend) -> bool) -> Option<Lease> {
        let (len, n) = (self.order.len(), self.members.len());
        if len == 0 {
            return None;
        }
        let start = self.order[self.cursor.fetch_add(1, Ordering::Relaxed) % len] as usize;
        // Another request can take the last slot of a capped backend between the scan and the
        // lease; then scan again (each failure means that backend is now full).
        for _ in 0..n {
            let mut best: Option<(usize, u32)> = None;
            let mut i = start;
            for seen in 0..n {
                if seen == LEAST_CONN_WINDOW && best.is_some() {
                    break;
                }
                let load = self.members[i].in_flight();
                if best.is_none_or(|(_, least)| load < least) && self.usable(i, &skip) {
                    best = Some((i, load));
                    if load == 0 {
                        break;
                    }
                }
                i = if i + 1 == n { 0 } else { i + 1 };
            }
            let (i, _) = best?;
            if let Some(lease) = Lease::acquire(&self.members[i], self.caps[i]) {
                return Some(lease);
            }
        }
        None
    }

    // === consistent hashing ===

    /// The backend that owns `hash` in the consistent-hash table; when it is unusable, the owner
    /// of the next slot that is usable, so its keys spread over the rest and come back when it
    /// does. Without a table (the pool was built for another policy), weighted round robin.
    #[inline]
    pub fn pick_hashed(&self, hash: u64, skip: impl Fn(&UpstreamBackend) -> bool) -> Option<Lease> {
        let Some(table) = &self.table else {
            return self.pick(skip);
        };
        if table.is_empty() {
            return None;
        }
        let len = table.len();
        let mut slot = table.slot_of(hash);
        for _ in 0..MAX_WALK.min(len) {
            if let Some(lease) = self.lease(table.owner(slot), &skip) {
                return Some(lease);
            }
            slot = if slot + 1 == len { 0 } else { slot + 1 };
        }
        // Most of the pool is unusable: go round the members from a place the key decides.
        let n = self.members.len();
        let mut i = table.owner(slot);
        for _ in 0..n {
            if let Some(lease) = self.lease(i, &skip) {
                return Some(lease);
            }
            i = if i + 1 == n { 0 } else { i + 1 };
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
