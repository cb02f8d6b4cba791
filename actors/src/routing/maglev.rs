//! Consistent hashing by a Maglev lookup table (Eisenbud et al., NSDI 2016): built once when a
//! pool is published, after which a key's backend is one multiplication and one load.
//!
//! Every backend walks its own permutation of the table's slots, derived from its id alone, and
//! the backends take turns claiming their next free slot. Removing a backend therefore only
//! frees its own slots (the others keep nearly all of theirs), and the slots of one backend are
//! scattered over the table, so the keys that fall back to "the next slot" when it is down spread
//! over all the others. That holds only while the table keeps its size, so the size does not
//! follow the pool: every pool of up to 655 backends has the same 65 537 slots (at least 100 per
//! backend, which keeps every backend's share within about 1 % of its weight), and only a pool
//! that grows past a tier (655, 6 553 backends) gets a larger table and reshuffles once.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Weak};

/// Slots per backend (the paper's bound for an even spread).
const SLOTS_PER_BACKEND: usize = 100;
/// Table sizes (primes), smallest first: a pool takes the first with at least
/// [`SLOTS_PER_BACKEND`] slots per member, so that adding or removing a backend leaves the size,
/// and with it every other backend's permutation, unchanged.
const TIERS: [usize; 3] = [65_537, 655_373, 6_553_577];

/// Seeds of the two hashes that place a backend's permutation; fixed, so that every instance
/// and every restart of one build maps a key to the same backend.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66;
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b;

/// A Maglev table: each slot holds the index of the pool member that owns it.
#[derive(Debug)]
pub struct MaglevTable {
    slots: Box<[u32]>,
}

impl MaglevTable {
    /// Builds the table for pool members given as `(id, weight)`, in the pool's order. A weight
    /// w backend owns about w/Σw of the slots.
    pub fn new(members: &[(&str, u32)]) -> Self {
        if members.is_empty() {
            return Self {
                slots: Box::new([]),
            };
        }
        let size = table_size(members.len());
        let m = size as u64;
        let top = u64::from(members.iter().map(|&(_, w)| w.max(1)).max().unwrap_or(1));
        // Per member: next slot of its permutation, its step, slots owned so far.
        let mut walk: Vec<(u64, u64, u64)> = members
            .iter()
            .map(|&(id, _)| {
                let offset = foldhash::fast::FixedState::with_seed(OFFSET_SEED).hash_one(id) % m;
                let skip = foldhash::fast::FixedState::with_seed(SKIP_SEED).hash_one(id) % (m - 1);
                (offset, skip + 1, 0)
            })
            .collect();
        const FREE: u32 = u32::MAX;
        let mut slots = vec![FREE; size];
        let mut filled = 0;
        // In round r a weight-w member may own up to w*r/top slots: the heaviest claim one per
        // round and the others in proportion.
        'rounds: for round in 1u64.. {
            for (i, &(_, weight)) in members.iter().enumerate() {
                let (next, skip, owned) = &mut walk[i];
                while *owned * top < u64::from(weight.max(1)) * round {
                    // The step is below the prime size, so the walk visits every slot.
                    while slots[*next as usize] != FREE {
                        *next = (*next + *skip) % m;
                    }
                    slots[*next as usize] = i as u32;
                    *owned += 1;
                    filled += 1;
                    if filled == size {
                        break 'rounds;
                    }
                }
            }
        }
        Self {
            slots: slots.into_boxed_slice(),
        }
    }

    /// Number of slots (0 for an empty pool).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the table has no slot (an empty pool).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot a 64-bit key hash falls in: a multiply-shift instead of a division.
    #[inline]
    pub fn slot_of(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize
    }

    /// The pool member that owns `slot` (which must be below [`MaglevTable::len`]).
    #[inline]
    pub fn owner(&self, slot: usize) -> usize {
        self.slots[slot] as usize
    }
}

/// The tables built so far, by the members (ids and weights, in order) they were built from, so
/// that every pool of the same members shares one table: a pool is built again whenever a domain
/// on its tag is published, and each would otherwise hold a table of its own (256 KiB each) for
/// as long as one of its routes lives.
#[derive(Clone, Debug, Default)]
pub struct HashTables {
    built: HashMap<Members, Weak<MaglevTable>>,
}

/// A pool's members as its table was built from them: ids and weights, in pool order.
type Members = Box<[(Box<str>, u32)]>;

impl HashTables {
    /// The table of `members`: the one built before while any pool still holds it, else a new
    /// one (forgetting the tables no pool holds any more).
    pub fn table_for(&mut self, members: &[(&str, u32)]) -> Arc<MaglevTable> {
        let key: Members = members.iter().map(|&(id, w)| (id.into(), w)).collect();
        if let Some(table) = self.built.get(&key).and_then(Weak::upgrade) {
            return table;
        }
        self.built.retain(|_, t| t.strong_count() > 0);
        let table = Arc::new(MaglevTable::new(members));
        self.built.insert(key, Arc::downgrade(&table));
        table
    }

    /// Tables some pool still holds.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.built.values().filter(|t| t.strong_count() > 0).count()
    }
}

/// The table size for a pool of `n` members: its tier, or beyond the last tier (more than 65 000
/// backends in one tag) the next prime above 100 slots each.
fn table_size(n: usize) -> usize {
    let wanted = n.saturating_mul(SLOTS_PER_BACKEND);
    TIERS
        .into_iter()
        .find(|&t| t >= wanted)
        .unwrap_or_else(|| next_prime(wanted))
}

/// The smallest prime at least `n` (n is at most a few million: trial division is enough).
fn next_prime(n: usize) -> usize {
    let is_prime = |k: usize| {
        k == 2
            || (k > 2
                && !k.is_multiple_of(2)
                && (3..)
                    .step_by(2)
                    .take_while(|d| d * d <= k)
                    .all(|d| !k.is_multiple_of(d)))
    };
    (n..).find(|&k| is_prime(k)).expect("primes are unbounded")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("backend-{i}")).collect()
    }

    fn table(ids: &[String], weights: &[u32]) -> MaglevTable {
        let members: Vec<(&str, u32)> = ids
            .iter()
            .map(String::as_str)
            .zip(weights.iter().copied())
            .collect();
        MaglevTable::new(&members)
    }

    fn shares(t: &MaglevTable, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for s in 0..t.len() {
            counts[t.owner(s)] += 1;
        }
        counts
    }

    #[test]
    fn sizes_are_prime_large_enough_and_kept_as_a_pool_grows() {
        assert_eq!(next_prime(1009), 1009);
        assert_eq!(next_prime(1010), 1013);
        for t in TIERS {
            assert_eq!(next_prime(t), t, "{t} is prime");
        }
        assert!(MaglevTable::new(&[]).is_empty());
        for n in [1, 2, 10, 11, 256, 655] {
            assert_eq!(table_size(n), 65_537, "{n}");
        }
        assert_eq!(table_size(656), 655_373);
        assert!(table_size(70_000) >= 7_000_000);
    }

    /// The share of `keys` whose backend differs between two pools (member ids per table).
    fn moved(a: (&[String], &MaglevTable), b: (&[String], &MaglevTable), keys: u64) -> f64 {
        let moved = (0..keys)
            .filter(|k| {
                let h = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                a.0[a.1.owner(a.1.slot_of(h))] != b.0[b.1.owner(b.1.slot_of(h))]
            })
            .count();
        moved as f64 / keys as f64
    }

    #[test]
    fn adding_a_backend_moves_about_its_share_at_every_pool_size() {
        // 10 -> 11 crossed the smallest table size when the size followed the pool.
        for n in [2, 4, 10, 16, 50] {
            let (small, large) = (ids(n), ids(n + 1));
            let before = table(&small, &vec![1; n]);
            let after = table(&large, &vec![1; n + 1]);
            let share = moved((&small, &before), (&large, &after), 100_000);
            let ideal = 1.0 / (n + 1) as f64;
            eprintln!("{n} -> {}: {:.1} % of keys moved", n + 1, share * 100.0);
            assert!(
                share < ideal * 1.35 + 0.01,
                "{n} -> {}: {:.1} % moved, ideal {:.1} %",
                n + 1,
                share * 100.0,
                ideal * 100.0
            );
        }
    }

    #[test]
    fn slots_are_shared_by_weight() {
        let t = table(&ids(5), &[1; 5]);
        for c in shares(&t, 5) {
            assert!(
                c.abs_diff(t.len() / 5) <= t.len() / 100,
                "{c} of {}",
                t.len()
            );
        }
        let t = table(&ids(2), &[3, 1]);
        let s = shares(&t, 2);
        assert!(s[0].abs_diff(t.len() * 3 / 4) <= t.len() / 100, "{s:?}");
    }

    #[test]
    fn removing_one_of_five_moves_only_its_own_slots_and_few_others() {
        let all = ids(5);
        let before = table(&all, &[1; 5]);
        let rest: Vec<String> = all
            .iter()
            .filter(|id| *id != "backend-2")
            .cloned()
            .collect();
        let after = table(&rest, &[1; 4]);
        let (mut moved, mut others_moved, keys) = (0, 0, 100_000u64);
        for k in 0..keys {
            let h = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let was = &all[before.owner(before.slot_of(h))];
            let now = &rest[after.owner(after.slot_of(h))];
            if was != now {
                moved += 1;
                others_moved += usize::from(was != "backend-2");
            }
        }
        // The removed backend's fifth moves; the others keep nearly every key (Maglev trades a
        // little disruption for an even spread: a remaining backend can lose a contested slot).
        let share = moved as f64 / keys as f64;
        assert!((0.18..0.24).contains(&share), "{share}");
        assert!(others_moved < keys as usize / 50, "{others_moved}");
    }
}
