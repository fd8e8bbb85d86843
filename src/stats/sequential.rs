//! Anytime-valid decision rules: the *decision to fire* of the statistical conditions under a
//! false-breach budget per deployment-day (CONDITIONS.md "Calibration under continuous
//! evaluation"; the rules, their references and assumptions are in docs/STATISTICS.md, which is
//! the authority for them). The reported statistics (Wilson interval, Fisher p, KS D, PSI) are
//! unchanged and live in the sibling modules.
//!
//! Every rule here is an e-process or a time-uniform boundary, so looking every second (or at
//! any other times) does not inflate the false-breach probability (Ville's inequality).

use serde::{Deserialize, Serialize};

/// Number of odds ratios in the Bernoulli mixture: θ_j = 1 + 2^(−12 + j/2), j = 0..32
/// (1.00024 … 17), CALIBRATION.md §2(a).
pub const MIXTURE_K: usize = 33;

/// Evaluation ticks a Shiryaev–Roberts detector may take in one budget period (one a second,
/// one day): its threshold is `ln(TICKS_PER_DAY / alpha)`.
pub const TICKS_PER_DAY: f64 = 86_400.0;

/// One day of engine time in milliseconds (the budget period).
pub const DAY_MS: i64 = 86_400_000;

fn theta(j: usize) -> f64 {
    1.0 + (-12.0 + j as f64 / 2.0).exp2()
}

/// Which way a one-sided Bernoulli test looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// H0: p ≤ p0 (a `max` limit).
    Upper,
    /// H0: p ≥ p0 (a `min` limit).
    Lower,
}

/// ln θ_j and ln(1 + p0(θ_j − 1)) for one side and null: the per-success and per-trial terms of
/// ln L_j(x, n) = x·ln θ_j − n·ln(1 + p0(θ_j − 1)).
#[derive(Debug, Clone, PartialEq)]
pub struct BernoulliMixture {
    ln_theta: [f64; MIXTURE_K],
    ln_norm: [f64; MIXTURE_K],
}

impl BernoulliMixture {
    pub fn new(p0: f64, side: Side) -> Self {
        let mut ln_theta = [0.0; MIXTURE_K];
        let mut ln_norm = [0.0; MIXTURE_K];
        for j in 0..MIXTURE_K {
            let t = match side {
                Side::Upper => theta(j),
                Side::Lower => 1.0 / theta(j),
            };
            ln_theta[j] = t.ln();
            ln_norm[j] = (p0 * (t - 1.0)).ln_1p();
        }
        BernoulliMixture { ln_theta, ln_norm }
    }

    /// [`BernoulliMixture::new`], shared: the mixtures of recent nulls are kept per thread (a
    /// condition's null is fixed, and every evaluation of every deployment's rate and quantile
    /// conditions needs one; building one takes 99 logarithms). The same value `new` gives.
    pub fn shared(p0: f64, side: Side) -> std::rc::Rc<BernoulliMixture> {
        type Cache = Vec<((u64, Side), std::rc::Rc<BernoulliMixture>)>;
        thread_local! {
            static CACHE: std::cell::RefCell<Cache> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let key = (p0.to_bits(), side);
        CACHE.with_borrow_mut(|cache| {
            if let Some((_, m)) = cache.iter().find(|(k, _)| *k == key) {
                return m.clone();
            }
            // A bounded cache: profiles hold a handful of nulls.
            if cache.len() >= 64 {
                cache.clear();
            }
            let m = std::rc::Rc::new(BernoulliMixture::new(p0, side));
            cache.push((key, m.clone()));
            m
        })
    }

    /// ln L_j for a batch of x successes in n trials (either may be negative when a count was
    /// corrected downwards: the likelihood ratio then divides out).
    fn ln_lr(&self, j: usize, x: f64, n: f64) -> f64 {
        x * self.ln_theta[j] - n * self.ln_norm[j]
    }

    /// ln E of the cumulative mixture e-process after x successes in n trials:
    /// ln((1/K)·Σ_j L_j(x, n)).
    pub fn ln_e(&self, x: u64, n: u64) -> f64 {
        let (x, n) = (x as f64, n as f64);
        log_mean_exp((0..MIXTURE_K).map(|j| self.ln_lr(j, x, n)))
    }
}

/// ln((1/k)·Σ exp(v_i)) without overflow.
fn log_mean_exp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let (mut max, mut k) = (f64::NEG_INFINITY, 0usize);
    for x in v.clone() {
        max = max.max(x);
        k += 1;
    }
    if k == 0 || max <= EMPTY {
        return EMPTY;
    }
    let s: f64 = v.map(|x| (x - max).exp()).sum();
    max + s.ln() - (k as f64).ln()
}

/// ln(e^a + e^b).
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo <= EMPTY { hi } else { hi + (lo - hi).exp().ln_1p() }
}

/// The Shiryaev–Roberts e-detector over the Bernoulli mixture, for sliding (duration)
/// windows: R_s = (1 + R_{s−1})·L_s per odds ratio, on the batch of trials since the previous
/// tick; fire when (1/K)·Σ_j R_j ≥ TICKS_PER_DAY/alpha; restart every day of engine time.
/// Under H0, P(fire within a day) ≤ alpha (CALIBRATION.md §1.7: R_s − s is a supermartingale).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiryaevRoberts {
    /// ln R_j per odds ratio (EMPTY, i.e. R = 0, at the start of a period).
    ln_r: Vec<f64>,
    /// Cumulative (x, n) seen at the previous tick.
    last: Option<(i64, i64)>,
    /// Index of the budget day the detector is in (engine ms / DAY_MS from its start).
    day: i64,
    start: Option<i64>,
    /// Engine second of the previous tick: a second evaluation within one second joins that
    /// tick's batch (R ← R·L, no new change point), so the statistic does not depend on how
    /// often a second is evaluated (end of input, a restore).
    #[serde(default)]
    last_sec: Option<i64>,
}

/// ln 0 as stored: finite, so that a snapshot (JSON) can hold it; exp(EMPTY − x) is 0.
const EMPTY: f64 = f64::MIN;

impl Default for ShiryaevRoberts {
    fn default() -> Self {
        ShiryaevRoberts { ln_r: vec![EMPTY; MIXTURE_K], last: None, day: 0, start: None, last_sec: None }
    }
}

impl ShiryaevRoberts {
    /// One tick at engine time `now` with cumulative counts (x, n); returns ln of the mixture
    /// statistic (1/K)·Σ_j R_j, to compare with `ln_boundary`.
    ///
    /// Each ln R_j is capped at `ln_boundary + ln K + 2`: a single component at the cap already
    /// puts the mixture e² above the boundary, so the first crossing (all the budget is about)
    /// is unchanged, and once the rate is back within its limit the statistic falls below the
    /// boundary in bounded time instead of working off whatever a long breach piled up. A new
    /// budget day restarts the detector — unless it is above the boundary (a breach in
    /// progress), which a restart would resolve and re-fire.
    pub fn tick(&mut self, m: &BernoulliMixture, x: u64, n: u64, now: i64, ln_boundary: f64) -> f64 {
        let ln_cap = ln_boundary + (MIXTURE_K as f64).ln() + 2.0;
        let start = *self.start.get_or_insert(now);
        let day = (now - start).div_euclid(DAY_MS);
        if day != self.day {
            self.day = day;
            if self.ln_stat() < ln_boundary {
                self.ln_r.iter_mut().for_each(|r| *r = EMPTY);
            }
        }
        let sec = now.div_euclid(1000);
        let same_second = self.last_sec == Some(sec);
        self.last_sec = Some(sec);
        let (x, n) = (x as i64, n as i64);
        let (dx, dn) = match self.last {
            Some((lx, ln)) => ((x - lx) as f64, (n - ln) as f64),
            None => (x as f64, n as f64),
        };
        self.last = Some((x, n));
        for (j, r) in self.ln_r.iter_mut().enumerate() {
            let before = if same_second { *r } else { log_add_exp(0.0, *r) };
            *r = (before + m.ln_lr(j, dx, dn)).min(ln_cap);
        }
        self.ln_stat()
    }

    pub fn ln_stat(&self) -> f64 {
        log_mean_exp(self.ln_r.iter().copied())
    }
}

/// ln of the Shiryaev–Roberts threshold A = TICKS_PER_DAY/alpha.
pub fn sr_threshold(alpha: f64) -> f64 {
    (TICKS_PER_DAY / alpha).ln()
}

/// ln of the e-value threshold 1/alpha.
pub fn e_threshold(alpha: f64) -> f64 {
    -alpha.ln()
}

fn ln_beta(a: f64, b: f64) -> f64 {
    statrs::function::gamma::ln_gamma(a) + statrs::function::gamma::ln_gamma(b)
        - statrs::function::gamma::ln_gamma(a + b)
}

/// x·ln p + (n−x)·ln(1−p), with 0·ln 0 = 0.
fn bin_ll(x: f64, n: f64, p: f64) -> f64 {
    let mut s = 0.0;
    if x > 0.0 {
        s += x * p.ln();
    }
    if n - x > 0.0 {
        s += (n - x) * (1.0 - p).ln();
    }
    s
}

/// Universal-inference e-value (Wasserman, Ramdas & Balakrishnan 2020) against
/// H0: p_g ≤ r0·p_h, from x_g of n_g and x_h of n_h: the Jeffreys predictive likelihood of both
/// groups over the null maximum likelihood (CALIBRATION.md §3(a)). Returns ln M; requires
/// n_g, n_h > 0 and r0 ≥ 1.
pub fn disparity_ln_m(xg: u64, ng: u64, xh: u64, nh: u64, r0: f64) -> f64 {
    let (xg, ng, xh, nh) = (xg.min(ng) as f64, ng as f64, xh.min(nh) as f64, nh as f64);
    let kappa = |x: f64, n: f64| ln_beta(x + 0.5, n - x + 0.5) - std::f64::consts::PI.ln();
    let null_ll = if xg / ng <= r0 * xh / nh {
        bin_ll(xg, ng, xg / ng) + bin_ll(xh, nh, xh / nh)
    } else {
        let (n, x) = (ng + nh, xg + xh);
        let b = r0 * ng + nh + xg + r0 * xh;
        let p = (b - (b * b - 4.0 * r0 * n * x).max(0.0).sqrt()) / (2.0 * r0 * n);
        bin_ll(xg, ng, (r0 * p).min(1.0)) + bin_ll(xh, nh, p)
    };
    kappa(xg, ng) + kappa(xh, nh) - null_ll
}

/// Each group against the others pooled, under H0: every group has the same rate (r0 = 1):
/// the largest ln M over groups with n > 0 whose pooled rest has n > 0, and that group's index.
/// Under the null every alert is a Bernoulli(p) draw whatever its group, so each group's e-value
/// is valid however the group mix changes over time.
pub fn disparity_vs_rest(rows: &[(u64, u64)]) -> Option<(f64, usize)> {
    let (tx, tn) = rows.iter().fold((0, 0), |(a, b), &(x, n)| (a + x.min(n), b + n));
    let mut best: Option<(f64, usize)> = None;
    for (g, &(x, n)) in rows.iter().enumerate() {
        let (rx, rn) = (tx - x.min(n), tn - n);
        if n == 0 || rn == 0 {
            continue;
        }
        let m = disparity_ln_m(x, n, rx, rn, 1.0);
        if best.is_none_or(|(b, _)| m > b) {
            best = Some((m, g));
        }
    }
    best
}

/// Threshold on the largest ln M: ln(groups/alpha), a union bound over the allow-list's groups
/// (fixed in advance).
pub fn disparity_threshold(groups: usize, alpha: f64) -> f64 {
    (groups.max(1) as f64 / alpha).ln()
}

/// The KS decision boundary ε0 + ε_t (CALIBRATION.md §4(a)): ε0 = √(ln(2/α0)/(2N)) for a
/// baseline of N values (DKW–Massart), ε_t = 0.85·√((ln ln(e·t) + 0.8·ln(1612/α_b))/t) for a
/// segment of t values (time-uniform DKW, Howard & Ramdas 2022).
pub fn ks_boundary(baseline_n: u64, alpha0: f64, t: u64, alpha_b: f64) -> f64 {
    let (nb, t) = (baseline_n.max(1) as f64, t.max(1) as f64);
    let e0 = ((2.0 / alpha0).ln() / (2.0 * nb)).sqrt();
    let et = 0.85 * (((std::f64::consts::E * t).ln().ln() + 0.8 * (1612.0 / alpha_b).ln()) / t).sqrt();
    e0 + et
}

/// Share of `alpha` spent on the k-th segment (k ≥ 1) of a day: 6/(π²k²), summing to 1.
pub fn segment_share(k: u64) -> f64 {
    6.0 / (std::f64::consts::PI.powi(2) * (k.max(1) as f64).powi(2))
}

/// Values a Page–Hinkley detector is assumed to see in a deployment (the horizon of its bound).
pub const PH_HORIZON: f64 = 1e8;

/// The Page–Hinkley threshold that holds `alpha_side` per direction: with values of variance σ²
/// (sub-Gaussian), exp(θ·S) with θ = 2δ/σ² is a supermartingale for the PH sum S, so over at
/// most PH_HORIZON starting points P(statistic > c) ≤ PH_HORIZON·e^{−θc}; the configured λ
/// stands when it is already larger.
pub fn ph_threshold(lambda: f64, delta: f64, variance: f64, alpha_side: f64) -> f64 {
    if delta <= 0.0 {
        return f64::INFINITY;
    }
    let needed = variance.max(0.0) / (2.0 * delta) * horizon_ln(alpha_side);
    lambda.max(needed)
}

/// ln(PH_HORIZON / alpha_side), remembered per thread for the last `alpha_side` (the threshold is
/// recomputed for every value a detector sees, with its condition's fixed budget).
fn horizon_ln(alpha_side: f64) -> f64 {
    thread_local! {
        static LAST: std::cell::Cell<(u64, f64)> = const { std::cell::Cell::new((u64::MAX, f64::NAN)) };
    }
    LAST.with(|last| {
        let (bits, ln) = last.get();
        if bits == alpha_side.to_bits() {
            return ln;
        }
        let ln = (PH_HORIZON / alpha_side).ln();
        last.set((alpha_side.to_bits(), ln));
        ln
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Test vectors from ../shared/spec/CALIBRATION.md §2(a) and §3(a), recomputed with
    // tests/fixtures/calibration_vectors.py (plain Python `math`: lgamma, log1p) — see docs/STATISTICS.md.
    #[test]
    fn bernoulli_mixture_matches_the_reference_vectors() {
        for (x, n, p0, want) in [
            (0, 1000, 0.001, -0.368146),
            (5, 1000, 0.001, 2.145402),
            (30, 10_000, 0.001, 10.196929),
            (1200, 1_000_000, 0.001, 15.532271),
            (10, 20, 0.05, 13.775196),
        ] {
            let got = BernoulliMixture::new(p0, Side::Upper).ln_e(x, n);
            assert!((got - want).abs() < 5e-6, "({x}, {n}, {p0}): {got} vs {want}");
        }
        // Lower test (θ → 1/θ): python3 tests/fixtures/calibration_vectors.py prints 11.933115 and 7.144456.
        assert_eq!(*BernoulliMixture::shared(0.001, Side::Upper), BernoulliMixture::new(0.001, Side::Upper));
        assert_eq!(*BernoulliMixture::shared(0.001, Side::Lower), BernoulliMixture::new(0.001, Side::Lower));
        assert_ne!(*BernoulliMixture::shared(0.002, Side::Upper), BernoulliMixture::new(0.001, Side::Upper));
        for (v, a) in [(0.01, 0.005), (0.02, 0.005), (0.01, 0.0005), (0.03, 0.005), (0.0, 1e-9)] {
            let want = 50f64.max(v / (2.0 * 0.005) * (PH_HORIZON / a).ln());
            assert_eq!(ph_threshold(50.0, 0.005, v, a).to_bits(), want.to_bits(), "{v} {a}");
        }
        let lower = BernoulliMixture::new(0.99, Side::Lower).ln_e(90, 100);
        assert!((lower - 11.933115).abs() < 5e-6, "{lower}");
        let lower = BernoulliMixture::new(0.01, Side::Lower).ln_e(0, 1000);
        assert!((lower - 7.144456).abs() < 5e-6, "{lower}");
    }

    #[test]
    fn disparity_matches_the_reference_vectors() {
        for ((xg, ng, xh, nh, r0), want) in [
            ((30, 100, 10, 100, 1.0), 1.420726),
            ((900, 2000, 600, 2000, 1.25), 1.535173),
            ((60, 200, 40, 200, 1.0), -3.072315),
        ] {
            let got = disparity_ln_m(xg, ng, xh, nh, r0);
            assert!((got - want).abs() < 5e-6, "{got} vs {want}");
        }
        assert!((disparity_threshold(6, 0.01) - (600f64).ln()).abs() < 1e-12);
        // Against the rest pooled: group 1 (30 of 100) against 10 + 5 of 100 + 100.
        let (m, g) = disparity_vs_rest(&[(10, 100), (30, 100), (5, 100)]).unwrap();
        assert_eq!(g, 1);
        assert!((m - disparity_ln_m(30, 100, 15, 200, 1.0)).abs() < 1e-12);
    }

    #[test]
    fn sr_telescopes_to_the_cumulative_ratio_on_one_tick() {
        // After one tick from zero, R_j = L_j(x, n): the same as the cumulative mixture.
        let m = BernoulliMixture::new(0.001, Side::Upper);
        let mut sr = ShiryaevRoberts::default();
        let got = sr.tick(&m, 5, 1000, 0, 1e300);
        assert!((got - m.ln_e(5, 1000)).abs() < 1e-12);
        // With no new trials R grows by one per tick: (1 + R)·1.
        let mut idle = ShiryaevRoberts::default();
        for s in 0..10 {
            idle.tick(&m, 0, 0, s * 1000, 1e300);
        }
        assert!((idle.ln_stat() - 10f64.ln()).abs() < 1e-9, "{}", idle.ln_stat());
        // A new day restarts it.
        idle.tick(&m, 0, 0, DAY_MS, 1e300);
        // A second look within the same second adds no change point.
        idle.tick(&m, 0, 0, DAY_MS + 500, 1e300);
        assert!(idle.ln_stat().abs() < 1e-12);
    }

    #[test]
    fn sr_cap_keeps_the_first_crossing_and_a_new_day_keeps_a_breach_in_progress() {
        let m = BernoulliMixture::new(0.001, Side::Upper);
        let boundary = sr_threshold(0.01);
        // A rate at 10× the limit: uncapped and capped detectors cross on the same tick.
        let (mut capped, mut free) = (ShiryaevRoberts::default(), ShiryaevRoberts::default());
        let (mut x, mut n) = (0u64, 0u64);
        let mut crossed = (None, None);
        for s in 0..3_000i64 {
            n += 100;
            x += if s % 10 == 0 { 10 } else { 0 } + u64::from(s % 10 != 0 && s % 2 == 0);
            let c = capped.tick(&m, x, n, s * 1000, boundary);
            let f = free.tick(&m, x, n, s * 1000, 1e300);
            if crossed.0.is_none() && c >= boundary {
                crossed.0 = Some(s);
            }
            if crossed.1.is_none() && f >= boundary {
                crossed.1 = Some(s);
            }
        }
        assert!(crossed.1.is_some(), "the shift is detected");
        assert_eq!(crossed.0, crossed.1, "the cap does not move the first crossing");
        let cap = boundary + (MIXTURE_K as f64).ln() + 2.0;
        assert!(
            capped.ln_stat() <= cap + 1e-9 && free.ln_stat() > cap + 10.0,
            "{} {}",
            capped.ln_stat(),
            free.ln_stat()
        );
        // Across a budget day: above the boundary the detector carries on (a breach in
        // progress), below it restarts.
        let before = capped.ln_stat();
        let after = capped.tick(&m, x, n, DAY_MS + 1000, boundary);
        assert!(after >= boundary && after >= before - 1e-9, "{before} → {after}");
        let mut quiet = ShiryaevRoberts::default();
        quiet.tick(&m, 0, 1000, 0, boundary);
        quiet.tick(&m, 0, 2000, 1000, boundary);
        let restarted = quiet.tick(&m, 0, 2000, DAY_MS + 5000, boundary);
        assert!(restarted.abs() < 1e-9, "a quiet detector restarts at R = 1 after its first tick: {restarted}");
    }

    #[test]
    fn ks_boundary_by_hand() {
        // ε0 at α0 = 0.005, N = 10,000 and ε_t at t = 10,000, α_b = 0.005/24 (CALIBRATION.md §4:
        // one-hour blocks, "a threshold of 0.050 at t = 10⁴").
        let ab = 0.005 / 24.0;
        let e0 = ((2.0f64 / 0.005).ln() / 20_000.0).sqrt();
        let et = 0.85 * (((std::f64::consts::E * 1e4).ln().ln() + 0.8 * (1612.0f64 / ab).ln()) / 1e4).sqrt();
        let got = ks_boundary(10_000, 0.005, 10_000, ab);
        assert!((got - (e0 + et)).abs() < 1e-15);
        assert!((got - 0.050).abs() < 0.001, "{got}");
        let total: f64 = (1..200_000).map(segment_share).sum();
        assert!(total < 1.0 && total > 0.99999);
    }

    proptest! {
        /// Upper test: no evidence while the observed rate is at or below p0 (x ≤ p0·n ⇒ E ≤ 1).
        #[test]
        fn no_evidence_at_or_below_the_null(n in 1u64..1_000_000, p0 in 0.0001f64..0.9) {
            let x = (p0 * n as f64).floor() as u64;
            prop_assert!(BernoulliMixture::new(p0, Side::Upper).ln_e(x, n) <= 1e-9);
        }

        /// E is increasing in x for the upper test and decreasing for the lower test.
        #[test]
        fn monotone_in_successes(n in 2u64..100_000, x in 0u64..100_000, p0 in 0.001f64..0.99) {
            let x = x % n;
            let up = BernoulliMixture::new(p0, Side::Upper);
            let lo = BernoulliMixture::new(p0, Side::Lower);
            prop_assert!(up.ln_e(x + 1, n) >= up.ln_e(x, n));
            prop_assert!(lo.ln_e(x + 1, n) <= lo.ln_e(x, n));
        }

        /// The Shiryaev–Roberts statistic after several ticks equals its recursion computed by
        /// brute force (sum over change points of the products of later likelihood ratios).
        #[test]
        fn sr_equals_brute_force(batches in proptest::collection::vec((0u64..5, 0u64..40), 1..12)) {
            let m = BernoulliMixture::new(0.05, Side::Upper);
            let mut sr = ShiryaevRoberts::default();
            let (mut cx, mut cn) = (0, 0);
            let mut got = 0.0;
            let batches: Vec<(u64, u64)> = batches.into_iter().map(|(x, n)| (x.min(n), n)).collect();
            for (s, &(x, n)) in batches.iter().enumerate() {
                cx += x;
                cn += n;
                got = sr.tick(&m, cx, cn, s as i64 * 1000, 1e300);
            }
            // R_t^(j) = Σ_{k=1..t} Π_{s=k..t} L_s^(j)
            let mut mix = 0.0;
            for j in 0..MIXTURE_K {
                let mut r = 0.0;
                for k in 0..batches.len() {
                    let p: f64 = batches[k..].iter().map(|&(x, n)| m.ln_lr(j, x as f64, n as f64)).sum();
                    r += p.exp();
                }
                mix += r / MIXTURE_K as f64;
            }
            prop_assert!((got - mix.ln()).abs() < 1e-9, "{} vs {}", got, mix.ln());
        }

        /// Disparity: a pair whose observed ratio is within r0 gets no more evidence than the
        /// Jeffreys-over-MLE ratio (which is ≤ 1), i.e. ln M ≤ 0.
        #[test]
        fn disparity_no_evidence_inside_the_null(ng in 1u64..3000, nh in 1u64..3000, xh in 0u64..3000, r0 in 1.0f64..2.0) {
            let xh = xh % (nh + 1);
            let xg = ((xh as f64 / nh as f64) * ng as f64).floor() as u64;
            prop_assert!(disparity_ln_m(xg, ng, xh, nh, r0) <= 1e-9);
        }
    }
}
