//! The fast version of `cargo bench --bench calibration` (issue 20): fewer simulated
//! deployment-days and a looser bound, so a later change cannot silently break the calibration
//! of the shipped profile's statistical conditions. The bench runs 1,000 days per kind and
//! checks the Clopper–Pearson upper bound against twice the budget (benches/README.md).

use ddtwatch::engine::calibration::{Probe, World, simulate_days};
use ddtwatch::rules::{Budget, DEFAULT_FALSE_BREACH_PER_DAY};
use statrs::distribution::{Binomial, DiscreteCDF};

const SEED: u64 = 7;

/// Days per probe: as many as the suite can afford for each kind's cost.
const DAYS: [(Probe, u64); 8] = [
    (Probe::RateUpper, 40),
    (Probe::RateWindowed, 20),
    (Probe::RateLower, 300),
    (Probe::Disparity, 300),
    (Probe::Quantile, 300),
    (Probe::DriftPsi, 12),
    (Probe::DriftKs, 12),
    (Probe::PageHinkley, 12),
];

/// The most firings that `days` days may show if the true rate is at most twice the budget:
/// P(Bin(days, 2·budget) > bound) < 0.001.
fn bound(days: u64) -> u64 {
    let b = Binomial::new(2.0 * DEFAULT_FALSE_BREACH_PER_DAY, days).unwrap();
    (0..=days).find(|&k| 1.0 - b.cdf(k) < 0.001).unwrap()
}

fn fired(probe: Probe, budget: Budget, days: u64) -> u64 {
    simulate_days(probe, budget, World::Null, days, SEED, 2).iter().filter(|d| d.is_some()).count() as u64
}

#[test]
fn calibrated_conditions_keep_their_false_breach_budget_on_null_days() {
    for (probe, days) in DAYS {
        let k = fired(probe, Budget::PerDay(DEFAULT_FALSE_BREACH_PER_DAY), days);
        assert!(k <= bound(days), "{}: fired on {k} of {days} null days (bound {})", probe.name(), bound(days));
    }
}

/// The bound above catches the miscalibration issue 20 is about: CONDITIONS.md's per-look
/// rules, on the same simulated days, break it for every kind whose per-look rule is a
/// significance test (PSI and Page-Hinkley thresholds are effect sizes, quiet on these days).
#[test]
fn per_look_rules_break_that_bound() {
    for (probe, days) in DAYS {
        if matches!(probe, Probe::DriftPsi | Probe::PageHinkley | Probe::DriftKs) {
            continue;
        }
        let k = fired(probe, Budget::PerLook, days);
        assert!(k > bound(days), "{}: per-look fired on only {k} of {days} null days", probe.name());
    }
}

/// Power is kept: each reference shift of issue 20 is detected within a day under the budget.
#[test]
fn calibrated_conditions_detect_the_reference_shifts() {
    for (probe, runs) in [
        (Probe::RateUpper, 3),
        (Probe::Quantile, 10),
        (Probe::DriftKs, 3),
        (Probe::DriftPsi, 3),
        (Probe::PageHinkley, 3),
    ] {
        let r = simulate_days(probe, Budget::PerDay(DEFAULT_FALSE_BREACH_PER_DAY), World::Shifted, runs, SEED, 2);
        let detected = r.iter().filter(|d| d.is_some()).count() as u64;
        assert_eq!(detected, runs, "{}: detected in {detected} of {runs} shifted days", probe.name());
    }
}

/// A persistent shift keeps a calibrated drift condition firing across its segment boundaries
/// (a new segment starts with few values; the last full segment's decision stands until a whole
/// segment passes without crossing), and it resolves once the scores are back to normal.
#[test]
fn a_persistent_drift_fires_across_segments_and_resolves_after_it_ends() {
    use ddtwatch::engine::{DriftState, drift_evaluation};
    use ddtwatch::rules::{Kind, Verdict, parse_condition};
    let yaml = "{id: ks, kind: drift, value: score, method: ks, baseline: {first: 10000}, window: {last: 10000}, min_samples: 1000}";
    let c = parse_condition(&serde_norway::from_str(yaml).unwrap(), "t").unwrap();
    let Kind::Drift(spec) = &c.kind else { unreachable!() };
    let mut ds = DriftState::new(spec);
    let mut rng = ddtwatch::engine::calibration::Rng::new(3);
    let mut verdicts = Vec::new();
    let mut s = 0i64;
    // Baseline and a calm stretch, then 6 segments' worth of a moderate shift (KS D ≈ 0.1: above
    // the band late in a segment, below it in a new segment's first thousands of values), then
    // calm again for 3 segments.
    for (values, shift) in [(20_000, 0.0), (60_000, 0.03), (30_000, 0.0)] {
        for i in 0..values {
            let v = (rng.beta(2.5, 7.0) + shift).min(1.0);
            ds.push(v, s * 1000, s * 1000);
            if i % 20 == 19 {
                s += 1;
                verdicts.push((shift > 0.0, drift_evaluation(&mut ds, s * 1000).verdict));
            }
        }
    }
    let first = verdicts.iter().position(|(_, v)| *v == Verdict::Breach).expect("the shift is detected");
    assert!(verdicts[first].0, "no breach before the shift");
    let last_shifted = verdicts.iter().rposition(|(shifted, _)| *shifted).unwrap();
    let gaps = verdicts[first..=last_shifted].iter().filter(|(_, v)| *v != Verdict::Breach).count();
    assert_eq!(gaps, 0, "firing throughout the shift, across segment boundaries");
    assert_eq!(verdicts.last().unwrap().1, Verdict::Ok, "resolved once a whole calm segment has passed");
}
