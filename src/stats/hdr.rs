//! A sparse HDR histogram: the bucketing of HdrHistogram with 3 significant digits
//! (CONDITIONS.md `quantile`), storing only the buckets that hold values.
//!
//! The `hdrhistogram` crate allocates every bucket up to the largest value (≈ 100 KB for
//! latencies up to an hour), which for 1,000 deployments × 3 series × windowed copies is far over
//! the memory budget. Latencies cluster, so a sorted map of occupied buckets is a few KB. Bucket
//! boundaries and `value_at_quantile` follow the crate exactly (tests compare with it).

use std::collections::BTreeMap;

/// log2 of half the sub-bucket count for 3 significant digits (2 × 10^3 → 2048 sub-buckets).
const SUB_BUCKET_HALF_COUNT_MAGNITUDE: u32 = 10;
const SUB_BUCKET_MASK: u64 = (1 << (SUB_BUCKET_HALF_COUNT_MAGNITUDE + 1)) - 1;
const LEADING_ZERO_COUNT_BASE: u32 = 64 - (SUB_BUCKET_HALF_COUNT_MAGNITUDE + 1);

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SparseHdr {
    /// lowest equivalent value of a bucket → count
    counts: BTreeMap<u64, u64>,
    total: u64,
}

fn bucket_index(v: u64) -> u32 {
    LEADING_ZERO_COUNT_BASE - (v | SUB_BUCKET_MASK).leading_zeros()
}

/// Smallest value counted together with `v`.
pub fn lowest_equivalent(v: u64) -> u64 {
    let b = bucket_index(v);
    (v >> b) << b
}

/// Largest value counted together with `v`.
pub fn highest_equivalent(v: u64) -> u64 {
    lowest_equivalent(v).saturating_add((1u64 << bucket_index(v)) - 1)
}

impl SparseHdr {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, v: u64) {
        *self.counts.entry(lowest_equivalent(v)).or_default() += 1;
        self.total += 1;
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn add(&mut self, other: &SparseHdr) {
        for (k, c) in &other.counts {
            *self.counts.entry(*k).or_default() += c;
        }
        self.total += other.total;
    }

    /// As `hdrhistogram::Histogram::value_at_quantile`: the highest equivalent value of the
    /// bucket where the cumulative count first reaches ⌈q·n⌉ (at least 1); 0 when empty.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let q = q.min(1.0);
        let target = ((q * self.total as f64).ceil() as u64).max(1);
        // From the top (the quantiles asked for are high ones: a few buckets instead of all):
        // the bucket whose cumulative count reaches `target` while the one below it does not.
        let mut above = 0;
        for (&k, &c) in self.counts.iter().rev() {
            let through = self.total.saturating_sub(above);
            if through.saturating_sub(c) < target {
                return if q == 0.0 { k } else { highest_equivalent(k) };
            }
            above += c;
        }
        0
    }

    /// Count of recorded values ≤ `bound` counting whole buckets: a bucket is included when its
    /// highest equivalent value is ≤ bound (Prometheus `le` buckets).
    pub fn count_le(&self, bound: u64) -> u64 {
        // The total less the buckets above `bound`: those from the one holding `bound` on (the
        // bounds asked for are high ones: a few buckets instead of all).
        let above: u64 = self
            .counts
            .range(lowest_equivalent(bound)..)
            .filter(|(k, _)| highest_equivalent(**k) > bound)
            .map(|(_, c)| c)
            .sum();
        self.total.saturating_sub(above)
    }

    /// [`SparseHdr::count_le`] of each of `bounds` (ascending), in one pass over the buckets:
    /// a scrape asks for 15 bounds of every latency series of every deployment.
    pub fn counts_le(&self, bounds: &[u64]) -> Vec<u64> {
        let mut out = Vec::with_capacity(bounds.len());
        let mut buckets = self.counts.iter().peekable();
        let mut below = 0;
        for &bound in bounds {
            while let Some((_, c)) = buckets.next_if(|(k, _)| highest_equivalent(**k) <= bound) {
                below += c;
            }
            out.push(below);
        }
        out
    }

    /// Sum of values, each bucket counted at its lowest equivalent value (an HDR approximation).
    pub fn sum(&self) -> u64 {
        self.counts.iter().map(|(k, c)| k.saturating_mul(*c)).fold(0, u64::saturating_add)
    }

    /// Occupied buckets (lowest equivalent value, count), ascending.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts.iter().map(|(k, c)| (*k, *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// One pass gives what a pass per bound gives.
        #[test]
        fn counts_le_equals_count_le_per_bound(
            values in proptest::collection::vec(0u64..10_000_000, 0..500),
            mut bounds in proptest::collection::vec(0u64..12_000_000, 0..20),
        ) {
            let mut h = SparseHdr::default();
            for v in &values {
                h.record(*v);
            }
            bounds.sort_unstable();
            let each: Vec<u64> = bounds.iter().map(|b| h.count_le(*b)).collect();
            prop_assert_eq!(h.counts_le(&bounds), each);
        }
    }

    proptest! {
        /// Same quantiles as the hdrhistogram crate with 3 significant digits.
        #[test]
        fn quantiles_equal_the_hdrhistogram_crate(
            values in proptest::collection::vec(prop_oneof![0u64..3000, 0u64..10_000_000, 0u64..u32::MAX as u64], 1..400),
            q in prop_oneof![Just(0.0), Just(0.5), Just(0.95), Just(0.99), Just(1.0), 0.0f64..=1.0],
        ) {
            let mut reference = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            let mut sparse = SparseHdr::new();
            for &v in &values {
                reference.record(v).unwrap();
                sparse.record(v);
            }
            prop_assert_eq!(sparse.value_at_quantile(q), reference.value_at_quantile(q));
            prop_assert_eq!(sparse.len(), reference.len());
        }

        /// Within HDR precision of the exact (brute-force, sorted) quantile: the value returned
        /// is in the same bucket as the exact ⌈q·n⌉-th smallest value, so within 0.1%.
        #[test]
        fn quantile_is_within_precision_of_the_exact_one(
            mut values in proptest::collection::vec(1u64..100_000_000, 1..400),
            q in 0.01f64..=1.0,
        ) {
            let mut h = SparseHdr::new();
            values.iter().for_each(|&v| h.record(v));
            values.sort();
            let rank = ((q * values.len() as f64).ceil() as usize).max(1);
            let exact = values[rank - 1];
            let got = h.value_at_quantile(q);
            prop_assert_eq!(got, highest_equivalent(exact));
            prop_assert!((got - exact) as f64 <= exact as f64 * 1e-3, "{} vs {}", got, exact);
        }

        #[test]
        fn merging_equals_recording_everything(a in proptest::collection::vec(0u64..1_000_000, 0..100), b in proptest::collection::vec(0u64..1_000_000, 0..100)) {
            let (mut ha, mut hb, mut all) = (SparseHdr::new(), SparseHdr::new(), SparseHdr::new());
            a.iter().for_each(|&v| { ha.record(v); all.record(v) });
            b.iter().for_each(|&v| { hb.record(v); all.record(v) });
            ha.add(&hb);
            prop_assert_eq!(ha, all);
        }

        #[test]
        fn count_le_counts_whole_buckets(values in proptest::collection::vec(0u64..100_000, 0..200), bound in 0u64..120_000) {
            let mut h = SparseHdr::new();
            values.iter().for_each(|&v| h.record(v));
            let brute = |bound: u64| values.iter().filter(|&&v| highest_equivalent(v) <= bound).count() as u64;
            prop_assert_eq!(h.count_le(bound), brute(bound));
            // At and around every bucket's edges.
            for &v in values.iter().take(20) {
                for b in [lowest_equivalent(v).saturating_sub(1), lowest_equivalent(v), highest_equivalent(v), highest_equivalent(v) + 1] {
                    prop_assert_eq!(h.count_le(b), brute(b), "bound {}", b);
                }
            }
        }
    }
}
