//! Distribution drift (CONDITIONS.md, kind `drift`): PSI, binned two-sample KS, Page-Hinkley.
//!
//! Values are binned on arrival, so memory depends on the number of bins and the configured
//! window, never on how many values a deployment has seen.

use std::sync::Arc;

use serde::Serialize;

/// Proportions replaced by this when zero (CONDITIONS.md, `psi`).
pub const PSI_EPSILON: f64 = 1e-4;

/// Bin counts over fixed edges on [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Histogram {
    /// Left edges, ascending; `edges[0]` should be 0. Shared by every copy (a deployment keeps
    /// several histograms per drift condition, over the same edges).
    pub edges: Arc<[f64]>,
    pub counts: Vec<u64>,
}

impl Histogram {
    /// `bins` equal bins on [0, 1]: `edges[i] = i / bins`.
    pub fn equal(bins: usize) -> Self {
        let edges = (0..bins).map(|i| i as f64 / bins as f64).collect();
        Histogram { edges, counts: vec![0; bins] }
    }

    pub fn with_edges(edges: impl Into<Arc<[f64]>>) -> Self {
        let edges = edges.into();
        let n = edges.len();
        Histogram { edges, counts: vec![0; n] }
    }

    /// Bin of x: the largest i with `x ≥ edges[i]` (1.0 lands in the last bin).
    pub fn bin(&self, x: f64) -> usize {
        let n = self.edges.len();
        if n <= 32 {
            // Few edges (PSI's, often unequal, where the guess below can be many bins off): the
            // count of edges after the first at or below x, without a branch to mispredict.
            return self.edges[1..].iter().map(|&e| usize::from(x >= e)).sum();
        }
        // Guess as if the edges were equal on [0, 1] (they usually are), then step to the exact
        // bin: same answer as a binary search, in O(1) for equal edges.
        let mut b = if x.is_nan() { 0 } else { ((x * n as f64) as usize).min(n - 1) };
        while b + 1 < n && x >= self.edges[b + 1] {
            b += 1;
        }
        while b > 0 && x < self.edges[b] {
            b -= 1;
        }
        b
    }

    pub fn add(&mut self, x: f64) {
        let b = self.bin(x);
        self.counts[b] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
    }
}

/// PSI = Σ (p_i − q_i)·ln(p_i/q_i) with p current and q baseline proportions, zeros → 1e-4.
pub fn psi(current: &[u64], baseline: &[u64]) -> f64 {
    let (nc, nb) = (current.iter().sum::<u64>() as f64, baseline.iter().sum::<u64>() as f64);
    if nc == 0.0 || nb == 0.0 {
        return 0.0;
    }
    current
        .iter()
        .zip(baseline)
        .map(|(&c, &b)| {
            let p = nonzero(c as f64 / nc);
            let q = nonzero(b as f64 / nb);
            (p - q) * (p / q).ln()
        })
        .sum()
}

fn nonzero(p: f64) -> f64 {
    if p == 0.0 { PSI_EPSILON } else { p }
}

/// D = max over bin edges of |F_cur − F_base| (empirical CDFs at the bins' right edges).
pub fn ks_binned(current: &[u64], baseline: &[u64]) -> f64 {
    let (nc, nb) = (current.iter().sum::<u64>() as f64, baseline.iter().sum::<u64>() as f64);
    if nc == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let (mut fc, mut fb, mut d) = (0u64, 0u64, 0.0f64);
    for (&c, &b) in current.iter().zip(baseline) {
        fc += c;
        fb += b;
        d = d.max((fc as f64 / nc - fb as f64 / nb).abs());
    }
    d
}

/// Critical value c·√((n+m)/(n·m)), c = √(−ln(alpha/2)/2).
pub fn ks_critical(n: u64, m: u64, alpha: f64) -> f64 {
    let c = (-(alpha / 2.0).ln() / 2.0).sqrt();
    let (n, m) = (n as f64, m as f64);
    c * ((n + m) / (n * m)).sqrt()
}

/// Which way a Page-Hinkley detection went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shift {
    Up,
    Down,
}

/// Page-Hinkley mean-shift test in both directions, reset after each detection
/// (same as `river.drift.PageHinkley(alpha=1.0, mode="both")`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PageHinkley {
    pub delta: f64,
    pub lambda: f64,
    pub min_values: u64,
    n: u64,
    mean: f64,
    up: f64,
    up_min: f64,
    down: f64,
    down_min: f64,
    pub detections: u64,
}

impl PageHinkley {
    pub fn new(delta: f64, lambda: f64, min_values: u64) -> Self {
        PageHinkley {
            delta,
            lambda,
            min_values,
            n: 0,
            mean: 0.0,
            up: 0.0,
            up_min: 0.0,
            down: 0.0,
            down_min: 0.0,
            detections: 0,
        }
    }

    fn reset(&mut self) {
        *self =
            PageHinkley { detections: self.detections, ..PageHinkley::new(self.delta, self.lambda, self.min_values) };
    }

    /// Current test statistic (the larger of the two directions).
    pub fn statistic(&self) -> f64 {
        (self.up - self.up_min).max(self.down - self.down_min)
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// Adds one value; returns the direction of a detection, after which the test restarts.
    pub fn update(&mut self, x: f64) -> Option<Shift> {
        self.n += 1;
        self.mean += (x - self.mean) / self.n as f64;
        self.up += x - self.mean - self.delta;
        self.down += self.mean - x - self.delta;
        if self.n == 1 {
            self.up_min = self.up;
            self.down_min = self.down;
        } else {
            self.up_min = self.up_min.min(self.up);
            self.down_min = self.down_min.min(self.down);
        }
        if self.n < self.min_values {
            return None;
        }
        let shift = if self.up - self.up_min > self.lambda {
            Some(Shift::Up)
        } else if self.down - self.down_min > self.lambda {
            Some(Shift::Down)
        } else {
            None
        };
        if shift.is_some() {
            self.detections += 1;
            self.reset();
        }
        shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bins_follow_the_spec() {
        let h = Histogram::equal(10);
        assert_eq!(h.bin(0.0), 0);
        assert_eq!(h.bin(0.1), 1);
        assert_eq!(h.bin(0.0999), 0);
        assert_eq!(h.bin(1.0), 9);
        assert_eq!(h.bin(0.3), 3, "0.3 >= 3/10 as f64");
    }

    #[test]
    fn psi_by_hand() {
        // p = [0.5, 0.5], q = [0.25, 0.75]: 0.25 ln 2 + (-0.25) ln(2/3)
        let want = 0.25 * 2f64.ln() - 0.25 * (0.5f64 / 0.75).ln();
        assert!((psi(&[5, 5], &[1, 3]) - want).abs() < 1e-12);
        // zero proportions replaced by 1e-4
        let want = (1.0 - 1e-4) * (1.0 / 1e-4f64).ln() + (1e-4 - 1.0) * (1e-4f64 / 1.0).ln();
        assert!((psi(&[4, 0], &[0, 4]) - want).abs() < 1e-12);
    }

    #[test]
    fn ks_critical_value() {
        // c(0.001) = sqrt(-ln(0.0005)/2) = 1.9495..; n = m = 10000
        let want = (-(0.0005f64).ln() / 2.0).sqrt() * (2.0f64 / 10000.0).sqrt();
        assert!((ks_critical(10_000, 10_000, 0.001) - want).abs() < 1e-15);
        assert!((want - 0.027570).abs() < 1e-5);
    }

    #[test]
    fn page_hinkley_detects_a_shift_and_not_noise() {
        let mut ph = PageHinkley::new(0.005, 50.0, 30);
        let mut seed = 1u64;
        let mut noise = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for _ in 0..100_000 {
            assert_eq!(ph.update(0.3 + 0.2 * noise()), None);
        }
        let mut at = None;
        for i in 0..10_000 {
            if let Some(s) = ph.update(0.5 + 0.2 * noise()) {
                at = Some((i, s));
                break;
            }
        }
        let (i, s) = at.expect("shift detected");
        assert_eq!(s, Shift::Up);
        assert!(i < 400, "detected after {i} values");
        assert_eq!(ph.count(), 0, "reset after detection");
    }

    #[test]
    fn page_hinkley_matches_river() {
        // python3 -c "from river.drift import PageHinkley
        // ph=PageHinkley(min_instances=30,delta=0.005,threshold=50,alpha=1.0,mode='both')
        // xs=[0.2]*100+[2.0]*100+[0.2]*200+[3.0]*100+[0.0]*300
        // print([i for i,x in enumerate(xs) if (ph.update(x) or True) and ph.drift_detected])"
        let xs: Vec<f64> = [vec![0.2; 100], vec![2.0; 100], vec![0.2; 200], vec![3.0; 100], vec![0.0; 300]].concat();
        let mut ph = PageHinkley::new(0.005, 50.0, 30);
        let got: Vec<usize> = xs.iter().enumerate().filter_map(|(i, &x)| ph.update(x).map(|_| i)).collect();
        assert_eq!(got, RIVER_DETECTIONS.to_vec());
    }

    const RIVER_DETECTIONS: &[usize] = &[132, 234, 418, 518];

    proptest! {
        #[test]
        fn ks_equals_brute_force(a in proptest::collection::vec(0.0f64..=1.0, 1..300), b in proptest::collection::vec(0.0f64..=1.0, 1..300)) {
            let mut ha = Histogram::equal(100);
            let mut hb = Histogram::equal(100);
            a.iter().for_each(|&x| ha.add(x));
            b.iter().for_each(|&x| hb.add(x));
            // brute force: evaluate both ECDFs of the binned values at every bin's right edge
            let bin = |x: f64| ha.bin(x);
            let mut d = 0.0f64;
            for k in 0..100 {
                let fa = a.iter().filter(|&&x| bin(x) <= k).count() as f64 / a.len() as f64;
                let fb = b.iter().filter(|&&x| bin(x) <= k).count() as f64 / b.len() as f64;
                d = d.max((fa - fb).abs());
            }
            prop_assert!((ks_binned(&ha.counts, &hb.counts) - d).abs() < 1e-12);
        }

        #[test]
        fn bin_equals_binary_search(
            mut inner in proptest::collection::vec(0.0f64..1.0, 0..20),
            equal in 1usize..200,
            use_equal: bool,
            x in prop_oneof![-0.5f64..1.5, (0u32..=400).prop_map(|k| k as f64 / 400.0)],
        ) {
            let h = if use_equal {
                Histogram::equal(equal)
            } else {
                inner.push(0.0);
                inner.sort_by(f64::total_cmp);
                inner.dedup();
                Histogram::with_edges(inner)
            };
            let expected = match h.edges.partition_point(|e| *e <= x) {
                0 => 0,
                i => i - 1,
            };
            prop_assert_eq!(h.bin(x), expected);
        }

        #[test]
        fn psi_is_nonnegative_and_zero_on_identity(c in proptest::collection::vec(0u64..1000, 10)) {
            prop_assume!(c.iter().sum::<u64>() > 0);
            prop_assert!(psi(&c, &c).abs() < 1e-12);
            let mut d = c.clone();
            d.reverse();
            prop_assert!(psi(&c, &d) >= -1e-12);
        }
    }
}
