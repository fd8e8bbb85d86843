//! Remembered event ids of one deployment, for duplicate detection (CONDITIONS.md Duplicates:
//! an id is remembered for ≥ 1h of engine clock **and** at least the last 1,000,000 ids of the
//! deployment).
//!
//! The spec's "at least the last 1,000,000 per deployment" means that with many deployments
//! nearly every id of a long stream must be held, so the cost per id is what matters. An id is
//! held as a 64-bit fingerprint in *generations*: each generation is one sorted `Vec<u64>`
//! (exactly 8 bytes an id), fed from a small hash set of the newest ids that is merged into it
//! when it reaches 1/16 of the generation (so the set adds ≈ 1 byte an id and a merge moves
//! ≈ 16 keys per id). Whole generations are dropped, oldest first, once every id in them is
//! older than the horizon and the rest still holds `min_ids`. A generation is closed once it
//! holds `min_ids / 4` ids and spans a quarter of the horizon, so at most about six are ever
//! searched and at most about a quarter more ids than required are held.
//!
//! A fingerprint collision would make a new event look like a duplicate: with N ids held the
//! chance for one new id is N / 2^64 (≈ 5·10^-14 at the spec's 1,000,000).

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::event::Millis;

/// Identity hasher for fingerprints that are already uniformly distributed.
#[derive(Default)]
pub struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ *b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The 64-bit fingerprint of an event id (SipHash-1-3 with fixed keys: stable across runs and
/// processes, so a replay is deterministic).
pub(crate) fn fingerprint(id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// Smallest and largest merge batch of the newest ids.
const MIN_PENDING: usize = 64;
const MAX_PENDING: usize = 8192;

#[derive(Debug, Clone)]
struct Generation {
    /// Sorted fingerprints (merged batches).
    sorted: Vec<u64>,
    /// Engine clock of the first and the latest insertion.
    first: Millis,
    last: Millis,
}

impl Generation {
    fn contains(&self, k: u64) -> bool {
        sorted_contains(&self.sorted, k)
    }
}

/// Whether `k` is in `s` (strictly increasing). Fingerprints are uniform on u64, so `k` sits near
/// index k/2^64·n (off by O(√n)): the search starts there and widens until the run brackets `k`,
/// a few cache lines instead of a binary search's ≈ log2(n) misses over a multi-megabyte array.
/// Correct for any sorted input; only the speed relies on uniformity.
fn sorted_contains(s: &[u64], k: u64) -> bool {
    let n = s.len();
    if n == 0 {
        return false;
    }
    let guess = ((k as u128 * n as u128) >> 64) as usize;
    let mut step = 32;
    let mut lo = guess.saturating_sub(step);
    // Values are distinct: s[lo] <= k puts every index of k at lo or above.
    while lo > 0 && s[lo] > k {
        step *= 2;
        lo = lo.saturating_sub(step);
    }
    step = 32;
    let mut hi = (guess + step).min(n);
    // s[hi - 1] >= k puts every index of k below hi.
    while hi < n && s[hi - 1] < k {
        step *= 2;
        hi = (hi + step).min(n);
    }
    s[lo..hi].binary_search(&k).is_ok()
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Dedup {
    /// Oldest first; the newest ids are in `pending` and belong to the last generation.
    generations: VecDeque<Generation>,
    pending: HashSet<u64, BuildHasherDefault<Identity>>,
    len: usize,
}

impl Dedup {
    /// How many ids are remembered.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn contains(&self, k: u64) -> bool {
        self.pending.contains(&k) || self.generations.iter().rev().any(|g| g.contains(k))
    }

    /// Remembers `k` (seen at engine clock `now`); false if it was already remembered.
    /// `horizon` in ms and `min_ids` are CONDITIONS.md's ≥ 1h and ≥ 1,000,000.
    pub(crate) fn insert(&mut self, k: u64, now: Millis, horizon: i64, min_ids: usize) -> bool {
        if self.contains(k) {
            return false;
        }
        let close_at = (min_ids / 4).max(1);
        let open_new = match self.generations.back() {
            None => true,
            Some(g) => g.sorted.len() + self.pending.len() >= close_at && now - g.first >= horizon / 4,
        };
        if open_new {
            self.merge_pending();
            self.generations.push_back(Generation { sorted: Vec::new(), first: now, last: now });
        }
        let g = self.generations.back_mut().expect("a generation is open");
        g.last = g.last.max(now);
        self.pending.insert(k);
        self.len += 1;
        if self.pending.len() >= (g.sorted.len() / 16).clamp(MIN_PENDING, MAX_PENDING) {
            self.merge_pending();
        }
        self.expire(now, horizon, min_ids);
        true
    }

    /// Drops whole generations whose every id is older than the horizon, while the rest still
    /// holds at least `min_ids`.
    fn expire(&mut self, now: Millis, horizon: i64, min_ids: usize) {
        while self.generations.len() > 1 {
            let g = &self.generations[0];
            if now - g.last <= horizon || self.len - g.sorted.len() < min_ids {
                break;
            }
            self.len -= g.sorted.len();
            self.generations.pop_front();
        }
    }

    /// Merges the pending ids into the newest generation's sorted keys.
    fn merge_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let Some(g) = self.generations.back_mut() else { return };
        let mut fresh: Vec<u64> = self.pending.drain().collect();
        fresh.sort_unstable();
        // In place, from the back: the array grows by exactly the batch (realloc, often without a
        // copy) instead of a fresh allocation each merge, which fragmented the heap.
        let sorted = &mut g.sorted;
        let old_len = sorted.len();
        sorted.reserve_exact(fresh.len());
        sorted.resize(old_len + fresh.len(), 0);
        let (mut i, mut j) = (old_len, fresh.len());
        for k in (0..sorted.len()).rev() {
            if j == 0 {
                break;
            }
            if i > 0 && sorted[i - 1] > fresh[j - 1] {
                sorted[k] = sorted[i - 1];
                i -= 1;
            } else {
                sorted[k] = fresh[j - 1];
                j -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_second_insert_is_a_duplicate() {
        let mut d = Dedup::default();
        assert!(d.insert(fingerprint("a"), 0, 3_600_000, 1_000_000));
        assert!(!d.insert(fingerprint("a"), 1, 3_600_000, 1_000_000));
        assert!(d.insert(fingerprint("b"), 2, 3_600_000, 1_000_000));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn ids_are_kept_for_the_horizon_then_dropped_in_generations() {
        // min_ids 0: only the horizon (10 s) applies.
        let mut d = Dedup::default();
        for i in 0..20_000u64 {
            d.insert(fingerprint(&i.to_string()), i as i64, 10_000, 0);
        }
        // The last 10 s (ids 10,000..20,000) must be remembered; old generations were dropped.
        for i in 9_999..20_000u64 {
            assert!(d.contains(fingerprint(&i.to_string())), "id {i} inside the horizon");
        }
        assert!(d.len() < 20_000, "expired generations are dropped ({} held)", d.len());
        assert!(!d.contains(fingerprint("0")));
    }

    #[test]
    fn the_last_min_ids_are_kept_however_old() {
        let mut d = Dedup::default();
        for i in 0..10_000u64 {
            d.insert(fingerprint(&i.to_string()), i as i64 * 1000, 1000, 4000);
        }
        for i in 6_000..10_000u64 {
            assert!(d.contains(fingerprint(&i.to_string())), "id {i} among the last 4000");
        }
        assert!(d.len() >= 4000 && d.len() <= 6000, "{} held", d.len());
    }

    /// Memory stays near 8 bytes an id: the sorted generations hold every id once.
    #[test]
    fn sorted_generations_hold_each_id_once() {
        let mut d = Dedup::default();
        for i in 0..100_000u64 {
            d.insert(fingerprint(&i.to_string()), 0, 3_600_000, 1_000_000);
        }
        let sorted: usize = d.generations.iter().map(|g| g.sorted.len()).sum();
        assert_eq!(sorted + d.pending.len(), 100_000);
        assert!(d.pending.len() <= 100_000 / 16 + 1);
        for g in &d.generations {
            assert!(g.sorted.windows(2).all(|w| w[0] < w[1]));
        }
    }

    proptest! {
        /// The guided search answers as a plain binary search, for uniform and skewed keys.
        #[test]
        fn guided_search_equals_binary_search(
            mut keys in proptest::collection::vec(prop_oneof![any::<u64>(), 0u64..1000, (u64::MAX - 1000)..=u64::MAX], 0..3000),
            probes in proptest::collection::vec(prop_oneof![any::<u64>(), 0u64..1000, (u64::MAX - 1000)..=u64::MAX], 1..200),
        ) {
            keys.sort_unstable();
            keys.dedup();
            for p in probes.iter().chain(keys.iter().step_by(7)) {
                prop_assert_eq!(sorted_contains(&keys, *p), keys.binary_search(p).is_ok());
            }
        }

        /// Against a brute-force model that keeps every (id, time): everything the spec says must
        /// be remembered is (≥ horizon and ≥ the last min_ids), nothing never inserted is, and
        /// at most a quarter more than required plus one generation's worth is held.
        #[test]
        fn remembers_what_the_spec_requires(
            steps in proptest::collection::vec((0u32..400, 0i64..50), 1..3000),
            horizon in 1i64..500,
            min_ids in 0usize..300,
        ) {
            let mut d = Dedup::default();
            let mut seen: Vec<(u32, i64)> = Vec::new();
            let mut now = 0i64;
            for (id, dt) in steps {
                now += dt;
                let k = fingerprint(&id.to_string());
                let fresh = d.insert(k, now, horizon, min_ids);
                // Required to be remembered: inserted within the horizon or among the last min_ids.
                let required = seen.iter().rev().enumerate().any(|(i, (s, t))| {
                    *s == id && (now - t <= horizon || i < min_ids)
                });
                let ever = seen.iter().any(|(s, _)| *s == id);
                if required {
                    prop_assert!(!fresh, "id {id} had to be remembered");
                }
                if !ever {
                    prop_assert!(fresh, "id {id} was never inserted");
                }
                if fresh {
                    seen.push((id, now));
                }
                prop_assert_eq!(d.len(), d.generations.iter().map(|g| g.sorted.len()).sum::<usize>() + d.pending.len());
            }
        }
    }
}
