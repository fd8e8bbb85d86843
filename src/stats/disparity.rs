//! Demographic disparity of an error rate (CONDITIONS.md, kind `disparity`).
//!
//! Ratios as in NIST FRVT demographic summaries (max/min and max/geometric mean), paired with a
//! two-sided Fisher exact test (highest-rate group vs the rest pooled) because a ratio alone on
//! small counts misleads (DOMAIN.md, "Demographic summaries").

use serde::Serialize;

use super::interval::wilson;

/// One group's row in a per-group table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRate {
    pub group: String,
    pub x: u64,
    pub n: u64,
    /// x/n with a zero rate replaced by 0.5/n (only for qualifying groups).
    pub rate: f64,
    pub lower: f64,
    pub upper: f64,
    /// n ≥ min_per_group.
    pub qualifies: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisparityResult {
    pub groups: Vec<GroupRate>,
    pub qualifying: usize,
    pub ratio_max_min: Option<f64>,
    pub ratio_max_geomean: Option<f64>,
    pub p_value: Option<f64>,
    pub top_group: Option<String>,
}

/// Computes the table and statistics for `(group, x, n)` rows given in allow-list order.
pub fn disparity(rows: &[(String, u64, u64)], min_per_group: u64, confidence: f64) -> DisparityResult {
    let mut groups = Vec::with_capacity(rows.len());
    for (g, x, n) in rows {
        let x = (*x).min(*n);
        let qualifies = *n >= min_per_group.max(1);
        let i = wilson(x, *n, confidence);
        let raw = if *n == 0 { 0.0 } else { x as f64 / *n as f64 };
        let rate = if qualifies && x == 0 { 0.5 / *n as f64 } else { raw };
        groups.push(GroupRate { group: g.clone(), x, n: *n, rate, lower: i.lower, upper: i.upper, qualifies });
    }
    let q: Vec<&GroupRate> = groups.iter().filter(|g| g.qualifies).collect();
    let mut out = DisparityResult {
        qualifying: q.len(),
        ratio_max_min: None,
        ratio_max_geomean: None,
        p_value: None,
        top_group: None,
        groups: Vec::new(),
    };
    if q.len() >= 2 {
        // Ties for the highest rate: first group in allow-list order (strict > keeps the first).
        let mut top = 0;
        for (i, g) in q.iter().enumerate() {
            if g.rate > q[top].rate {
                top = i;
            }
        }
        let all_zero = q.iter().all(|g| g.x == 0);
        if all_zero {
            out.ratio_max_min = Some(1.0);
            out.ratio_max_geomean = Some(1.0);
        } else {
            let max = q[top].rate;
            let min = q.iter().map(|g| g.rate).fold(f64::INFINITY, f64::min);
            let geo = (q.iter().map(|g| g.rate.ln()).sum::<f64>() / q.len() as f64).exp();
            out.ratio_max_min = Some(max / min);
            out.ratio_max_geomean = Some(max / geo);
        }
        let (a, n1) = (q[top].x, q[top].n);
        let (c, n2) = q.iter().enumerate().filter(|(i, _)| *i != top).fold((0, 0), |(x, n), (_, g)| (x + g.x, n + g.n));
        out.p_value = Some(fisher_exact_two_sided(a, n1 - a, c, n2 - c));
        out.top_group = Some(q[top].group.clone());
    }
    out.groups = groups;
    out
}

fn ln_choose(n: u64, k: u64) -> f64 {
    use statrs::function::gamma::ln_gamma;
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// Two-sided Fisher exact test of the 2×2 table [[a, b], [c, d]]: the sum of the hypergeometric
/// probabilities of all tables with the same margins that are no more likely than the observed
/// one (scipy's definition, relative tolerance 1e-7).
///
/// Walks from the mode outwards with the ratio recurrence P(x+1)/P(x), stopping once terms are
/// negligible (below e^-50 of the observed table's). The terms are carried relative to the mode's
/// (all ≤ 1, so counts in the millions cannot overflow them): one product and one division a
/// table. Where the observed table is beyond e^-650 of the mode, so far that its relative term
/// would underflow, the walk is made in log space instead (four logarithms and an exponential a
/// table).
pub fn fisher_exact_two_sided(a: u64, b: u64, c: u64, d: u64) -> f64 {
    let r1 = a + b;
    let r2 = c + d;
    let c1 = a + c;
    let n = r1 + r2;
    if n == 0 || r1 == 0 || r2 == 0 || c1 == 0 || c1 == n {
        return 1.0;
    }
    let lo = c1.saturating_sub(r2);
    let hi = r1.min(c1);
    let ln_p = |x: u64| ln_choose(r1, x) + ln_choose(r2, c1 - x) - ln_choose(n, c1);
    let ln_obs = ln_p(a);
    // Mode of the hypergeometric distribution.
    let mode = (((r1 + 1) as f64 * (c1 + 1) as f64) / (n + 2) as f64).floor() as u64;
    let mode = mode.clamp(lo, hi);
    let ln_mode = ln_p(mode);
    // P(x+1) / P(x) = (r1-x)(c1-x) / ((x+1)(r2-c1+x+1)); each factor ≤ 2^32 in practice, and the
    // products exact in f64 below 2^53.
    let ratio = |x: u64| ((r1 - x) as f64 * (c1 - x) as f64) / ((x + 1) as f64 * (r2 + x + 1 - c1) as f64);
    if ln_obs - ln_mode < -650.0 {
        return fisher_log_space(lo, hi, mode, ln_mode, ln_obs, ratio);
    }
    // Terms P(x)/P(mode); the observed table's, and the cut-offs, on the same scale.
    let t_obs = (ln_obs - ln_mode).exp();
    let cutoff = t_obs * (1.0 + 1e-7);
    let negligible = t_obs * NEGLIGIBLE.exp();
    // Sum of P(x)/P(mode) over tables no more likely than the observed one.
    let mut sum = 0.0f64;
    let (mut t, mut x) = (1.0f64, mode);
    loop {
        if t <= cutoff {
            sum += t;
            if t < negligible {
                break;
            }
        }
        if x == hi {
            break;
        }
        t *= ratio(x);
        x += 1;
    }
    let (mut t, mut x) = (1.0f64, mode);
    while x > lo {
        t /= ratio(x - 1);
        x -= 1;
        if t <= cutoff {
            sum += t;
            if t < negligible {
                break;
            }
        }
    }
    (sum * ln_mode.exp()).min(1.0)
}

/// Terms below e^-50 of the observed table's cannot change the result.
const NEGLIGIBLE: f64 = -50.0;

/// [`fisher_exact_two_sided`]'s walk in log space, for an observed table so unlikely that its
/// probability relative to the mode's underflows.
fn fisher_log_space(lo: u64, hi: u64, mode: u64, ln_mode: f64, ln_obs: f64, ratio: impl Fn(u64) -> f64) -> f64 {
    let cutoff = ln_obs + (1e-7f64).ln_1p();
    let step_up = |x: u64| ratio(x).ln();
    // Sum of P(x)/P(obs) over tables no more likely than the observed one.
    let mut sum = 0.0f64;
    let (mut lp, mut x) = (ln_mode, mode);
    loop {
        if lp <= cutoff {
            sum += (lp - ln_obs).exp();
            if lp - ln_obs < NEGLIGIBLE {
                break;
            }
        }
        if x == hi {
            break;
        }
        lp += step_up(x);
        x += 1;
    }
    let (mut lp, mut x) = (ln_mode, mode);
    while x > lo {
        lp -= step_up(x - 1);
        x -= 1;
        if lp <= cutoff {
            sum += (lp - ln_obs).exp();
            if lp - ln_obs < NEGLIGIBLE {
                break;
            }
        }
    }
    (sum * ln_obs.exp()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_fisher(a: u64, b: u64, c: u64, d: u64) -> f64 {
        let (r1, r2, c1) = (a + b, c + d, a + c);
        let n = r1 + r2;
        let lo = c1.saturating_sub(r2);
        let hi = r1.min(c1);
        let p = |x: u64| (ln_choose(r1, x) + ln_choose(r2, c1 - x) - ln_choose(n, c1)).exp();
        let obs = p(a);
        (lo..=hi).map(p).filter(|&q| q <= obs * (1.0 + 1e-7)).sum::<f64>().min(1.0)
    }

    #[test]
    fn fisher_matches_scipy() {
        // python3 -c "from scipy.stats import fisher_exact as f;
        //   print(f([[8,2],[2,8]]).pvalue, f([[22,158],[31,989]]).pvalue,
        //         f([[1,9],[11,3]]).pvalue, f([[3000,997000],[1000,999000]]).pvalue)"
        let cases = [
            ((8, 2, 2, 8), 0.023014137565221155),
            ((22, 158, 31, 989), 1.5104658911849393e-06),
            ((1, 9, 11, 3), 0.0027594561852200836),
        ];
        for ((a, b, c, d), want) in cases {
            let got = fisher_exact_two_sided(a, b, c, d);
            assert!((got - want).abs() <= want * 1e-6, "{a},{b},{c},{d}: {got} vs {want}");
        }
        // same command: f([[3000,997000],[1000,999000]]).pvalue = 9.14744117931969e-230
        let huge = fisher_exact_two_sided(3000, 997_000, 1000, 999_000);
        assert!((huge - 9.14744117931969e-230).abs() <= 9.14744117931969e-230 * 1e-6, "{huge}");
        // Beyond e^-650 of the mode (the log-space walk), scipy 1.17.1:
        // f([[120,880],[880,120]]).pvalue = 7.626744131471723e-285
        let far = fisher_exact_two_sided(120, 880, 880, 120);
        assert!((far - 7.626744131471723e-285).abs() <= 7.626744131471723e-285 * 1e-6, "{far}");
    }

    #[test]
    fn disparity_edge_cases() {
        let rows = |v: &[(u64, u64)]| -> Vec<(String, u64, u64)> {
            v.iter().enumerate().map(|(i, (x, n))| (format!("g{i}"), *x, *n)).collect()
        };
        // fewer than 2 qualifying groups
        let r = disparity(&rows(&[(5, 100), (1, 10)]), 20, 0.95);
        assert_eq!(r.qualifying, 1);
        assert_eq!(r.ratio_max_min, None);
        // all zero: ratios 1
        let r = disparity(&rows(&[(0, 100), (0, 50)]), 20, 0.95);
        assert_eq!(r.ratio_max_min, Some(1.0));
        // zero replaced by 0.5/n: max 10/100, min 0.5/50 → ratio 10
        let r = disparity(&rows(&[(10, 100), (0, 50)]), 20, 0.95);
        assert!((r.ratio_max_min.unwrap() - 10.0).abs() < 1e-12);
        // geomean: rates 0.1 and 0.01 → geo = 0.0316..., ratio = 0.1/0.0316 = 3.1623
        assert!((r.ratio_max_geomean.unwrap() - 10f64.sqrt()).abs() < 1e-9);
        assert_eq!(r.top_group.as_deref(), Some("g0"));
        // ties: first in allow-list order
        let r = disparity(&rows(&[(5, 50), (10, 100), (1, 100)]), 20, 0.95);
        assert_eq!(r.top_group.as_deref(), Some("g0"));
    }

    proptest! {
        /// The two walks agree wherever both can run (the log-space one is otherwise taken only
        /// beyond e^-650 of the mode), up to counts in the hundreds of thousands.
        #[test]
        fn the_linear_and_log_space_walks_agree(
            a in 0u64..3000, b in 1u64..300_000, c in 0u64..3000, d in 1u64..300_000,
        ) {
            let (r1, r2, c1) = (a + b, c + d, a + c);
            if c1 == 0 || c1 == r1 + r2 {
                return Ok(());
            }
            let n = r1 + r2;
            let ln_p = |x: u64| ln_choose(r1, x) + ln_choose(r2, c1 - x) - ln_choose(n, c1);
            let (lo, hi) = (c1.saturating_sub(r2), r1.min(c1));
            let mode = ((((r1 + 1) as f64 * (c1 + 1) as f64) / (n + 2) as f64).floor() as u64).clamp(lo, hi);
            let ratio = |x: u64| ((r1 - x) as f64 * (c1 - x) as f64) / ((x + 1) as f64 * (r2 + x + 1 - c1) as f64);
            // (About a third of these tables are beyond it: nothing to compare there.)
            if ln_p(a) - ln_p(mode) < -650.0 {
                return Ok(());
            }
            let linear = fisher_exact_two_sided(a, b, c, d);
            let logs = fisher_log_space(lo, hi, mode, ln_p(mode), ln_p(a), ratio);
            prop_assert!((linear - logs).abs() <= 1e-300 + logs * 1e-9, "{linear} vs {logs}");
        }

        #[test]
        fn fisher_equals_brute_force(a in 0u64..60, b in 0u64..60, c in 0u64..60, d in 0u64..60) {
            let fast = fisher_exact_two_sided(a, b, c, d);
            let slow = if a + b == 0 || c + d == 0 || a + c == 0 || b + d == 0 { 1.0 } else { brute_fisher(a, b, c, d) };
            prop_assert!((fast - slow).abs() <= 1e-9 + slow * 1e-9, "{fast} vs {slow}");
        }
    }
}
