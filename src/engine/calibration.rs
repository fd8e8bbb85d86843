//! The null-simulation harness behind `cargo bench --bench calibration` and the calibration
//! test (issue 20): simulated deployment-days of the shipped LFR conditions, evaluated every
//! second through the engine's own evaluation functions and breach lifecycle, with every event
//! drawn independently. It measures
//! - the false-breach rate per deployment-day when the null holds at its least favourable
//!   point (a rate exactly at its limit, no disparity, a stationary score distribution,
//!   exactly 5% of adjudications later than the limit), and
//! - the detection delay on the reference shifts of issue 20.
//!
//! Counts are simulated per second rather than as events through `Engine::ingest`: a
//! deployment-day of LFR is 3 million faces, and the budget needs thousands of days. The
//! evaluation, decision and `for` hold are the engine's own code; what is skipped is parsing
//! and counting, which other tests check.

use std::sync::Arc;

use crate::config::Config;
use crate::rules::{Budget, Condition, Kind, Lifecycle, TransitionKind, Verdict, parse_condition};

use super::series::{DriftState, LatencySeries, Sequential};
use super::{disparity_evaluation, drift_evaluation, quantile_evaluation, rate_evaluation};

/// Seconds in a simulated deployment-day.
pub const DAY_S: i64 = 86_400;

/// LFR traffic, from the issue 20 measurement (4 cameras, ≈ 520k faces and ≈ 305 alerts in 4 h).
pub const FACES_PER_S: u32 = 36;
pub const ALERTS_PER_HOUR: f64 = 76.0;
/// Two-person verifications happen on engagements: about 0.7 of alerts.
pub const ENGAGED_PER_HOUR: f64 = 53.0;
/// Scores per second fed to the drift conditions (fewer than faces, to keep 1,000 days
/// affordable; the budget is per day whatever the rate).
pub const SCORES_PER_S: u32 = 10;
/// The LFR demo allow-list's ethnicity mix among alerts (asian, black, mixed, white, other,
/// unknown), as the simulator draws it.
pub const GROUP_MIX: [f64; 6] = [0.19, 0.17, 0.05, 0.51, 0.03, 0.05];
/// Share of alerts that are false, the same in every group under the null.
pub const FALSE_SHARE: f64 = 0.04;

/// What a simulated day looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// `false_alert_rate` (false alerts per face ≤ 0.001, cumulative).
    RateUpper,
    /// `false_alert_rate` over a sliding 1-hour window (the Shiryaev–Roberts detector).
    RateWindowed,
    /// `two_person_verification` (verified per engagement ≥ 0.99).
    RateLower,
    /// `ethnicity_disparity`.
    Disparity,
    /// `score_drift` (PSI).
    DriftPsi,
    /// A KS drift condition with CONDITIONS.md defaults (no shipped profile uses KS).
    DriftKs,
    /// `score_shift` (Page–Hinkley).
    PageHinkley,
    /// `adjudication_latency` (p95 ≤ 2 min).
    Quantile,
}

impl Probe {
    pub const ALL: [Probe; 8] = [
        Probe::RateUpper,
        Probe::RateWindowed,
        Probe::RateLower,
        Probe::Disparity,
        Probe::DriftPsi,
        Probe::DriftKs,
        Probe::PageHinkley,
        Probe::Quantile,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Probe::RateUpper => "rate, upper (false_alert_rate)",
            Probe::RateWindowed => "rate, upper, 1h window (false_alert_rate, Shiryaev-Roberts)",
            Probe::RateLower => "rate, lower (two_person_verification)",
            Probe::Disparity => "disparity (ethnicity_disparity)",
            Probe::DriftPsi => "drift, PSI (score_drift)",
            Probe::DriftKs => "drift, KS (CONDITIONS.md defaults)",
            Probe::PageHinkley => "drift, Page-Hinkley (score_shift)",
            Probe::Quantile => "quantile (adjudication_latency)",
        }
    }

    /// The condition under test: the shipped LFR profile's, with `budget` in place of its own.
    pub fn condition(self, budget: Budget) -> Condition {
        let id = match self {
            Probe::RateWindowed => {
                let mut c = Probe::RateUpper.condition(budget);
                if let Kind::Rate(r) = &mut c.kind {
                    r.window = crate::rules::Window::Duration(crate::time::Dur::mins(60));
                }
                return c;
            }
            Probe::RateUpper => "false_alert_rate",
            Probe::RateLower => "two_person_verification",
            Probe::Disparity => "ethnicity_disparity",
            Probe::DriftPsi => "score_drift",
            Probe::PageHinkley => "score_shift",
            Probe::Quantile => "adjudication_latency",
            Probe::DriftKs => {
                let yaml = "{id: score_ks, kind: drift, value: score, method: ks}";
                let map: serde_norway::Mapping = serde_norway::from_str(yaml).expect("valid YAML");
                return with_budget(parse_condition(&map, "calibration").expect("valid condition"), budget);
            }
        };
        let config = Config::demo();
        let c = config.profiles["lfr"].iter().find(|c| c.id == id).expect("shipped LFR condition");
        with_budget(Condition::clone(c), budget)
    }
}

fn with_budget(mut c: Condition, budget: Budget) -> Condition {
    match &mut c.kind {
        Kind::Rate(r) => r.false_breach_per_day = budget,
        Kind::Disparity(d) => d.false_breach_per_day = budget,
        Kind::Drift(d) => d.false_breach_per_day = budget,
        Kind::Quantile(q) => q.false_breach_per_day = budget,
        _ => {}
    }
    c
}

/// What differs from the null in a power run, from time 0 (drift: from `SHIFT_AT_S`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum World {
    Null,
    /// Issue 20's reference shift for the probe: scores Beta(2.5, 7) → Beta(3.5, 6.5); false
    /// alerts 3× as likely for one group; false-alert rate 2× its cap; p95 latency 2× its limit.
    Shifted,
}

/// Drift shifts start here (after the 10,000-value baseline at 10 values a second).
pub const SHIFT_AT_S: i64 = 7_200;

/// xoshiro256** seeded by SplitMix64: fast, independent streams per (seed, day).
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform on [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Standard normal (Box–Muller, one of the pair).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.f64();
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Gamma(shape, 1) (Marsaglia & Tsang 2000; shape < 1 by boosting).
    fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            return self.gamma(shape + 1.0) * self.f64().powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.f64();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        x / (x + self.gamma(b))
    }

    /// A draw from a distribution given by its quantile table (inverse transform).
    pub fn from_table(&mut self, t: &QuantileTable) -> f64 {
        t.at(self.f64())
    }

    /// Exponential with this mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }
}

/// A distribution on [0, 1] as its quantile function at 4,096 equal steps, linearly
/// interpolated: drawing from it costs one uniform (a Gamma-ratio Beta draw costs ~20× more,
/// and the drift probes draw 864,000 scores a day). Any fixed distribution serves the null,
/// which is only that the stream is stationary; the table follows the Beta to ~1e-4.
#[derive(Debug, Clone)]
pub struct QuantileTable(Vec<f64>);

const TABLE_STEPS: usize = 4096;

impl QuantileTable {
    /// Beta(a, b) by bisection of its CDF.
    pub fn beta(a: f64, b: f64) -> Self {
        use statrs::distribution::{Beta, ContinuousCDF};
        let d = Beta::new(a, b).expect("valid Beta parameters");
        let q = (0..=TABLE_STEPS)
            .map(|i| {
                let p = i as f64 / TABLE_STEPS as f64;
                let (mut lo, mut hi) = (0.0f64, 1.0f64);
                for _ in 0..50 {
                    let mid = 0.5 * (lo + hi);
                    if d.cdf(mid) < p {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                0.5 * (lo + hi)
            })
            .collect();
        QuantileTable(q)
    }

    fn at(&self, u: f64) -> f64 {
        let x = u * TABLE_STEPS as f64;
        let i = (x as usize).min(TABLE_STEPS - 1);
        let f = x - i as f64;
        self.0[i] + f * (self.0[i + 1] - self.0[i])
    }
}

/// The reference score distributions of issue 20: before and after the shift.
fn score_tables() -> &'static (QuantileTable, QuantileTable) {
    static T: std::sync::OnceLock<(QuantileTable, QuantileTable)> = std::sync::OnceLock::new();
    T.get_or_init(|| (QuantileTable::beta(2.5, 7.0), QuantileTable::beta(3.5, 6.5)))
}

/// One simulated deployment: the condition's runtime and the lifecycle that decides firing.
struct Run {
    condition: Arc<Condition>,
    lifecycle: Lifecycle,
    seq: Sequential,
    last: Verdict,
    fired_at: Option<i64>,
}

impl Run {
    fn new(condition: Condition) -> Self {
        Run {
            condition: Arc::new(condition),
            lifecycle: Lifecycle::default(),
            seq: Sequential::default(),
            last: Verdict::InsufficientData,
            fired_at: None,
        }
    }

    /// Steps the lifecycle with a verdict at second `s` (the engine steps every condition every
    /// second, with the memoised verdict when the counts did not change).
    fn step(&mut self, verdict: Verdict, s: i64) {
        self.last = verdict;
        let now = s * 1000;
        if self.lifecycle.step(verdict, now, self.condition.for_.ms()) == Some(TransitionKind::Firing)
            && self.fired_at.is_none()
        {
            self.fired_at = Some(s);
        }
    }
}

/// The second of the first firing in one simulated day (None: it never fired).
pub fn simulate_day(probe: Probe, budget: Budget, world: World, seed: u64) -> Option<i64> {
    let mut rng = Rng::new(seed);
    let mut run = Run::new(probe.condition(budget));
    let shifted = world == World::Shifted;
    match probe {
        Probe::RateUpper | Probe::RateWindowed | Probe::RateLower => {
            let Kind::Rate(spec) = &run.condition.kind.clone() else { unreachable!("rate probe") };
            let (mut x, mut n) = (0u64, 0u64);
            let (p, per_s) = match probe {
                // At its cap (null) or twice it (shifted).
                Probe::RateUpper | Probe::RateWindowed => {
                    (spec.max.unwrap_or(0.001) * if shifted { 2.0 } else { 1.0 }, None)
                }
                // Exactly at its floor.
                _ => (spec.min.unwrap_or(0.99), Some(ENGAGED_PER_HOUR / 3600.0)),
            };
            for s in 0..DAY_S {
                let before = n;
                match per_s {
                    None => {
                        for _ in 0..FACES_PER_S {
                            n += 1;
                            x += rng.bernoulli(p) as u64;
                        }
                    }
                    Some(rate) => {
                        if rng.bernoulli(rate) {
                            n += 1;
                            x += rng.bernoulli(p) as u64;
                        }
                    }
                }
                let verdict = if n != before || s == 0 {
                    rate_evaluation(spec, (x, n), (x, n), &mut run.seq, s * 1000).verdict
                } else {
                    run.last
                };
                run.step(verdict, s);
                if run.fired_at.is_some() {
                    break;
                }
            }
        }
        Probe::Disparity => {
            let Kind::Disparity(spec) = &run.condition.kind.clone() else { unreachable!("disparity probe") };
            let names = ["asian", "black", "mixed", "white", "other", "unknown"];
            let mut rows: Vec<(String, u64, u64)> = names.iter().map(|g| (g.to_string(), 0, 0)).collect();
            let per_s = ALERTS_PER_HOUR / 3600.0;
            for s in 0..DAY_S {
                let mut changed = s == 0;
                if rng.bernoulli(per_s) {
                    let u = rng.f64();
                    let mut acc = 0.0;
                    let g = GROUP_MIX.iter().position(|w| {
                        acc += w;
                        u < acc
                    });
                    let g = g.unwrap_or(GROUP_MIX.len() - 1);
                    // Shifted: false alerts three times as likely for one group (black).
                    let p = if shifted && g == 1 { 3.0 * FALSE_SHARE } else { FALSE_SHARE };
                    rows[g].2 += 1;
                    rows[g].1 += rng.bernoulli(p) as u64;
                    changed = true;
                }
                let verdict = if changed {
                    disparity_evaluation(spec, &rows, &[], &mut run.seq, s * 1000).verdict
                } else {
                    run.last
                };
                run.step(verdict, s);
                if run.fired_at.is_some() {
                    break;
                }
            }
        }
        Probe::DriftPsi | Probe::DriftKs | Probe::PageHinkley => {
            let Kind::Drift(spec) = &run.condition.kind.clone() else { unreachable!("drift probe") };
            let mut ds = DriftState::new(spec);
            let (before, after) = score_tables();
            for s in 0..DAY_S {
                let now = s * 1000;
                let table = if shifted && s >= SHIFT_AT_S { after } else { before };
                for _ in 0..SCORES_PER_S {
                    ds.push(rng.from_table(table), now, now);
                }
                let verdict = drift_evaluation(&mut ds, now).verdict;
                run.step(verdict, s);
                if run.fired_at.is_some() {
                    break;
                }
            }
        }
        Probe::Quantile => {
            let Kind::Quantile(spec) = &run.condition.kind.clone() else { unreachable!("quantile probe") };
            let mut series = LatencySeries::default();
            // P(L > max) = 5% exactly (null) or p95 at twice the limit (shifted).
            let limit_s = spec.max.as_secs_f64() * if shifted { 2.0 } else { 1.0 };
            let mean_s = limit_s / 20f64.ln();
            let per_s = ALERTS_PER_HOUR / 3600.0;
            for s in 0..DAY_S {
                let now = s * 1000;
                let mut changed = s == 0;
                if rng.bernoulli(per_s) {
                    series.record((rng.exp(mean_s) * 1000.0) as i64, now, now);
                    changed = true;
                }
                let verdict =
                    if changed { quantile_evaluation(spec, &series, &mut run.seq, now).verdict } else { run.last };
                run.step(verdict, s);
                if run.fired_at.is_some() {
                    break;
                }
            }
        }
    }
    run.fired_at
}

/// The seed of day `day` of a run seeded `seed`: every day an independent stream.
pub fn day_seed(seed: u64, probe: Probe, day: u64) -> u64 {
    seed ^ (probe as u64).wrapping_mul(0xA076_1D64_78BD_642F) ^ day.wrapping_mul(0xE703_7ED1_A0B4_28DB)
}

/// Simulates `days` days on up to `threads` threads; returns the first-firing second of each.
pub fn simulate_days(
    probe: Probe,
    budget: Budget,
    world: World,
    days: u64,
    seed: u64,
    threads: usize,
) -> Vec<Option<i64>> {
    let threads = threads.max(1) as u64;
    let mut out = vec![None; days as usize];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..days)
                        .step_by(threads as usize)
                        .map(|d| (d, simulate_day(probe, budget, world, day_seed(seed, probe, d))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (d, r) in h.join().expect("simulation thread") {
                out[d as usize] = r;
            }
        }
    });
    out
}

/// Clopper–Pearson two-sided 95% interval for k of n.
pub fn clopper_pearson(k: u64, n: u64) -> (f64, f64) {
    let i = crate::stats::clopper_pearson(k, n, 0.95);
    (i.lower, i.upper)
}
