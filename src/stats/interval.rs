//! Confidence intervals for a binomial proportion (CONDITIONS.md, kind `rate`).

use serde::{Deserialize, Serialize};

/// How the interval of a proportion is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalMethod {
    /// Wilson score interval (the default: good coverage, never outside [0, 1]).
    #[default]
    Wilson,
    /// Exact (conservative) Clopper-Pearson interval from the beta distribution.
    ClopperPearson,
}

impl IntervalMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            IntervalMethod::Wilson => "wilson",
            IntervalMethod::ClopperPearson => "clopper_pearson",
        }
    }

    pub fn interval(self, x: u64, n: u64, confidence: f64) -> Interval {
        match self {
            IntervalMethod::Wilson => wilson(x, n, confidence),
            IntervalMethod::ClopperPearson => clopper_pearson(x, n, confidence),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

/// z = Φ⁻¹(1 − (1 − confidence)/2).
pub fn z_for_confidence(confidence: f64) -> f64 {
    let p = 1.0 - (1.0 - confidence) / 2.0;
    std::f64::consts::SQRT_2 * statrs::function::erf::erf_inv(2.0 * p - 1.0)
}

/// Wilson score interval, exactly as CONDITIONS.md writes it.
/// n = 0 gives the uninformative [0, 1] with estimate 0.
pub fn wilson(x: u64, n: u64, confidence: f64) -> Interval {
    if n == 0 {
        return Interval { estimate: 0.0, lower: 0.0, upper: 1.0 };
    }
    let x = x.min(n);
    let nf = n as f64;
    let p = x as f64 / nf;
    let z = z_for_confidence(confidence);
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    Interval { estimate: p, lower: (centre - half).max(0.0), upper: (centre + half).min(1.0) }
}

/// Clopper-Pearson: lower = B⁻¹(α/2; x, n−x+1), upper = B⁻¹(1−α/2; x+1, n−x).
pub fn clopper_pearson(x: u64, n: u64, confidence: f64) -> Interval {
    if n == 0 {
        return Interval { estimate: 0.0, lower: 0.0, upper: 1.0 };
    }
    let x = x.min(n);
    let alpha = 1.0 - confidence;
    let (xf, nf) = (x as f64, n as f64);
    let lower = if x == 0 { 0.0 } else { inv_beta(alpha / 2.0, xf, nf - xf + 1.0) };
    let upper = if x == n { 1.0 } else { inv_beta(1.0 - alpha / 2.0, xf + 1.0, nf - xf) };
    Interval { estimate: xf / nf, lower, upper }
}

/// Quantile of Beta(a, b) by bisection on the regularised incomplete beta function
/// (monotone, so bisection to 1e-15 is exact enough and never diverges).
fn inv_beta(p: f64, a: f64, b: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if statrs::function::beta::beta_reg(a, b, mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-15 {
            break;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn z_matches_normal_quantiles() {
        // python3 -c "from scipy.stats import norm; print(norm.ppf(0.975), norm.ppf(0.995), norm.ppf(0.95))"
        close(z_for_confidence(0.95), 1.959963984540054, 1e-9);
        close(z_for_confidence(0.99), 2.5758293035489004, 1e-9);
        close(z_for_confidence(0.90), 1.6448536269514722, 1e-9);
    }

    #[test]
    fn wilson_matches_statsmodels_reference() {
        // Independent scipy implementation of the CONDITIONS.md formula:
        // python3 -c "from scipy.stats import norm; import math
        // def w(x,n): z=norm.ppf(.975);p=x/n;d=1+z*z/n;c=(p+z*z/(2*n))/d;h=z*math.sqrt(p*(1-p)/n+z*z/(4*n*n))/d;return c-h,c+h
        // print(w(10,2077), w(0,50), w(17,30))"
        let i = wilson(10, 2077, 0.95);
        close(i.lower, 0.002617332304559167, 1e-12);
        close(i.upper, 0.008840272367642121, 1e-12);
        let i = wilson(0, 50, 0.95);
        close(i.lower, 0.0, 1e-12);
        close(i.upper, 0.07134759913335872, 1e-12);
        let i = wilson(17, 30, 0.95);
        close(i.lower, 0.3919730700081361, 1e-12);
        close(i.upper, 0.7262251442353347, 1e-12);
    }

    #[test]
    fn clopper_pearson_matches_scipy_beta() {
        // python3 -c "from scipy.stats import beta; a=0.05;
        //   print(beta.ppf(a/2,10,2077-10+1), beta.ppf(1-a/2,11,2077-10));
        //   print(beta.ppf(1-a/2,1,50)); print(beta.ppf(a/2,17,14), beta.ppf(1-a/2,18,13))"
        let i = clopper_pearson(10, 2077, 0.95);
        close(i.lower, 0.0023111467989756452, 1e-10);
        close(i.upper, 0.008836408061868922, 1e-10);
        let i = clopper_pearson(0, 50, 0.95);
        close(i.upper, 0.07112173646419764, 1e-10);
        let i = clopper_pearson(17, 30, 0.95);
        close(i.lower, 0.37427345060922074, 1e-10);
        close(i.upper, 0.745392450096737, 1e-10);
    }

    proptest! {
        #[test]
        fn intervals_contain_the_estimate(n in 1u64..100_000, frac in 0.0f64..=1.0, c in 0.5f64..0.999) {
            let x = ((n as f64) * frac) as u64;
            for m in [IntervalMethod::Wilson, IntervalMethod::ClopperPearson] {
                let i = m.interval(x, n, c);
                prop_assert!(i.lower <= i.estimate + 1e-12 && i.estimate <= i.upper + 1e-12, "{m:?} {i:?}");
                prop_assert!(i.lower >= 0.0 && i.upper <= 1.0);
            }
        }

        #[test]
        fn clopper_pearson_is_wider_than_wilson_at_the_extremes(n in 5u64..5_000) {
            let w = wilson(0, n, 0.95);
            let cp = clopper_pearson(0, n, 0.95);
            prop_assert!(cp.upper >= w.upper * 0.8);
        }
    }
}
