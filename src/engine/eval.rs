//! Evaluation of one condition against one deployment at engine time `now`
//! (formulas exactly as CONDITIONS.md writes them). Part of the engine (it reads deployment
//! state); the condition model and the result type are `rules`'.

use super::series::{DisparityBlock, DriftState, LatencySeries, Sequential};
use super::tally::{ENG_ENGAGED, ENG_FALSE_ENGAGED, SUBJ_ALERTS, SUBJ_ENGAGED, SUBJ_FALSE_ALERTS, SUBJ_FALSE_ENGAGED};
use super::{ConditionRuntime, Deployment};
use crate::rules::*;
use crate::stats::sequential::{self, BernoulliMixture, ShiryaevRoberts, Side};
use crate::stats::{disparity, ks_binned, ks_critical, psi};
use crate::time::{Dur, Millis};

/// Evaluates a condition into `rt.last` (silence conditions give one evaluation per source). In
/// place: the vector is reused, and where the counts a statistic is computed from are unchanged
/// (`memo_hit`), `rt.last` already is the evaluation and stands.
pub fn evaluate(rt: &mut ConditionRuntime, dep: &Deployment, now: Millis) {
    let e = match &rt.condition.kind {
        Kind::Rate(r) => {
            let t = dep.tally(r.window, now);
            let (x, n) = (t.get(r.numerator), t.get(r.denominator));
            if rate_is_sequential(r) {
                // Sliding window: a Shiryaev–Roberts detector on the deployment's counts.
                let c = dep.tally(Window::Deployment, now);
                let cum = (c.get(r.numerator), c.get(r.denominator));
                rate_evaluation(r, (x, n), cum, &mut rt.seq, now)
            } else if memo_hit(&mut rt.memo, &rt.last, [x, n].into_iter()) {
                return;
            } else {
                rate_evaluation(r, (x, n), (x, n), &mut rt.seq, now)
            }
        }
        Kind::Disparity(d) => match group_rows(d, dep, now) {
            None => {
                let mut e = Evaluation::new(Verdict::InsufficientData);
                e.limit = disparity_limit(d);
                e
            }
            Some(rows) => {
                if let (Budget::PerDay(_), Window::Duration(_)) = (d.false_breach_per_day, d.window) {
                    let whole = DisparitySpec { window: Window::Deployment, ..d.clone() };
                    let cum: Vec<(u64, u64)> =
                        group_rows(&whole, dep, now).unwrap_or_default().into_iter().map(|(_, x, n)| (x, n)).collect();
                    disparity_evaluation(d, &rows, &cum, &mut rt.seq, now)
                } else if memo_hit(&mut rt.memo, &rt.last, rows.iter().flat_map(|(_, x, n)| [*x, *n])) {
                    return;
                } else {
                    disparity_evaluation(d, &rows, &[], &mut rt.seq, now)
                }
            }
        },
        Kind::Drift(_) => match rt.drift.as_mut() {
            Some(ds) => drift_evaluation(ds, now),
            None => Evaluation::new(Verdict::InsufficientData),
        },
        Kind::Quantile(q) => quantile_evaluation(q, &dep.latency[q.value as usize], &mut rt.seq, now),
        Kind::State(check) => state(check, dep, now),
        Kind::Silence { event_type, max_gap } => {
            rt.last.clear();
            rt.last.reserve_exact(dep.sources.len().max(1));
            for (source, s) in &dep.sources {
                let Some(last) = s.last_seen[event_type.index()] else { continue };
                let (verdict, gap) = silence_now(dep, last, *max_gap, now);
                let mut e = Evaluation::new(verdict);
                e.instance = Some(source.clone());
                e.value = Some(gap);
                e.stamp = Some(last);
                e.limit = Limit::Number("max_gap", max_gap.as_secs_f64());
                e.detail = Detail::Silence { source: source.clone(), last_seen: last, event_type: event_type.as_str() };
                rt.last.push(e);
            }
            if rt.last.is_empty() {
                rt.last.push(Evaluation::new(Verdict::InsufficientData));
            }
            return;
        }
        Kind::Deadline { scope, within } => deadline(scope, *within, dep, now),
    };
    rt.last.clear();
    // Room for exactly one: a first push would make room for four (≈ 1 KB a condition, 17 MB
    // over the memory bench's 1,000 deployments).
    rt.last.reserve_exact(1);
    rt.last.push(e);
}

/// Brings `rt.last` up to `now` when the deployment has not changed since it was evaluated in full
/// (`ConditionRuntime::seen`), and returns whether it could: false sends the condition to a full
/// [`evaluate`]. Exact, and checked against a full evaluation in debug builds
/// (`round::check_refresh`); a kind qualifies only where what follows holds.
///
/// - Whole-deployment rates and disparities, quantiles, count-window PSI/KS: pure functions of
///   unchanged counts (where [`memo_hit`] would keep it), so `last` stands.
/// - State checks other than list age (which grows with the clock): pure functions of the
///   deployment's state; `last` stands.
/// - Page–Hinkley: only "a detection within `hold`" moves with the clock; the verdict is redone.
/// - Silence: each instance's gap and verdict move with the clock, from its source's last event
///   (`Evaluation::stamp`); its limit and detail depend on that event alone.
/// - Deletion deadline: the time since the stop and whether the deadline passed move with the clock.
///
/// Sliding windows, budgets on sliding windows (their detectors count evaluations), list age and
/// the authorised window are always evaluated in full.
pub fn refresh(rt: &mut ConditionRuntime, dep: &Deployment, now: Millis) -> bool {
    if rt.seen != Some(inputs(rt, dep)) {
        return false;
    }
    if rt.last.is_empty() {
        return false;
    }
    match &rt.condition.kind {
        Kind::Rate(r) => r.window == Window::Deployment,
        Kind::Disparity(d) => d.window == Window::Deployment,
        Kind::Quantile(q) => q.window == Window::Deployment,
        Kind::Drift(spec) => match (&spec.method, rt.drift.as_deref()) {
            (DriftMethod::PageHinkley { hold, .. }, Some(ds)) => {
                let [e] = rt.last.as_mut_slice() else { return false };
                e.verdict = page_hinkley_verdict(ds, *hold, now);
                true
            }
            (_, Some(ds)) => ds.window_counts_values(),
            (_, None) => true,
        },
        Kind::State(check) => !matches!(check, StateCheck::ListAgeMax { .. } | StateCheck::AuthorisedWindow),
        Kind::Silence { max_gap, .. } => {
            for e in &mut rt.last {
                // The "no source yet" evaluation has no stamp and does not move.
                let Some(last) = e.stamp else { continue };
                let (verdict, gap) = silence_now(dep, last, *max_gap, now);
                (e.verdict, e.value) = (verdict, Some(gap));
            }
            true
        }
        Kind::Deadline { scope, within } => {
            let Some(stop) = dep.stopped_at else { return true };
            let [e] = rt.last.as_mut_slice() else { return false };
            let (verdict, since_stop, _) = deadline_now(scope, *within, dep, stop, now);
            (e.verdict, e.value) = (verdict, Some(since_stop));
            true
        }
    }
}

/// The version of what a condition reads ([`ConditionRuntime::seen`] holds it as of the last full
/// evaluation): narrower than the whole deployment's [`Deployment::changes`] where the kind reads
/// less, so that, say, a quantile of decision latency is not redone for every detection.
/// - whole-deployment quantiles: their value series (`LatencySeries::changes`);
/// - state checks: the state they read (`Deployment::state_changes`);
/// - everything else: the deployment.
pub fn inputs(rt: &ConditionRuntime, dep: &Deployment) -> u64 {
    match &rt.condition.kind {
        Kind::Quantile(q) if q.window == Window::Deployment => dep.latency[q.value as usize].changes,
        Kind::State(_) => dep.state_changes,
        _ => dep.changes,
    }
}

/// Whether `key` is what the single evaluation in `last` was computed from (then it stands: the
/// statistics are pure functions of those counts and the unchanged condition); else `key` is
/// remembered for the evaluation about to be made.
fn memo_hit(memo: &mut Option<Vec<u64>>, last: &[Evaluation], key: impl Iterator<Item = u64> + Clone) -> bool {
    if let (Some(k), [_]) = (memo.as_deref(), last)
        && k.iter().copied().eq(key.clone())
    {
        return true;
    }
    let m = memo.get_or_insert_with(Vec::new);
    m.clear();
    m.extend(key);
    false
}

/// The sides of a band as one-sided Bernoulli nulls: `max` → H0: p ≤ max, `min` → H0: p ≥ min.
fn band_sides(min: Option<f64>, max: Option<f64>) -> Vec<(Side, f64)> {
    let mut sides = Vec::with_capacity(2);
    if let Some(m) = max {
        sides.push((Side::Upper, m));
    }
    if let Some(m) = min {
        sides.push((Side::Lower, m));
    }
    sides
}

/// The evidence of a calibrated decision: ln of the statistic (an e-value, or a
/// Shiryaev–Roberts statistic), the ln boundary it must reach, and the budget it holds.
#[derive(Debug, Clone, Copy)]
struct Evidence {
    ln: f64,
    boundary: f64,
    budget: f64,
}

impl Evidence {
    fn crossed(&self) -> bool {
        self.ln >= self.boundary
    }

    /// The `decision` of a detail.
    fn decision(&self, rule: &'static str) -> Decision {
        Decision { rule, budget: self.budget, ln: self.ln, boundary: self.boundary }
    }
}

/// Cumulative window: the Bernoulli mixture e-value per side, each side holding alpha/sides.
fn cumulative_evidence(sides: &[(Side, f64)], x: u64, n: u64, alpha: f64) -> Evidence {
    let share = alpha / sides.len().max(1) as f64;
    let ln = sides.iter().map(|&(side, p0)| BernoulliMixture::shared(p0, side).ln_e(x, n)).fold(f64::MIN, f64::max);
    Evidence { ln, boundary: sequential::e_threshold(share), budget: alpha }
}

/// Duration window: one Shiryaev–Roberts detector per side, ticked with cumulative counts.
fn sr_evidence(
    sr: &mut Vec<ShiryaevRoberts>,
    sides: &[(Side, f64)],
    x: u64,
    n: u64,
    now: Millis,
    alpha: f64,
) -> Evidence {
    sr.resize_with(sides.len(), ShiryaevRoberts::default);
    let share = alpha / sides.len().max(1) as f64;
    let boundary = sequential::sr_threshold(share);
    let ln = sides
        .iter()
        .zip(sr.iter_mut())
        .map(|(&(side, p0), d)| d.tick(&BernoulliMixture::shared(p0, side), x, n, now, boundary))
        .fold(f64::MIN, f64::max);
    Evidence { ln, boundary, budget: alpha }
}

/// Whether a rate's decision carries state from one evaluation to the next (a sliding window
/// under a budget: Shiryaev–Roberts), so it must be evaluated every tick, not memoised.
fn rate_is_sequential(r: &RateSpec) -> bool {
    r.on == BreachOn::Bound && r.false_breach_per_day.per_day().is_some() && matches!(r.window, Window::Duration(_))
}

/// A rate condition from its window's counts (x, n) and the deployment's cumulative counts
/// (used by a sliding window's detector). Public for the calibration harness
/// (`engine::calibration`), which drives exactly this code.
pub fn rate_evaluation(
    r: &RateSpec,
    (x, n): (u64, u64),
    cum: (u64, u64),
    seq: &mut Sequential,
    now: Millis,
) -> Evaluation {
    let evidence = match (r.on, r.false_breach_per_day) {
        (BreachOn::Bound, Budget::PerDay(alpha)) => {
            let sides = band_sides(r.min, r.max);
            Some(if rate_is_sequential(r) {
                sr_evidence(&mut seq.sr, &sides, cum.0.min(cum.1), cum.1, now, alpha)
            } else {
                cumulative_evidence(&sides, x.min(n), n, alpha)
            })
        }
        _ => None,
    };
    rate(r, x, n, evidence)
}

fn rate(r: &RateSpec, x_raw: u64, n: u64, evidence: Option<Evidence>) -> Evaluation {
    // CONDITIONS.md: a numerator above its denominator is computed on min(x, n), excess reported.
    let x = x_raw.min(n);
    let mut e = Evaluation::new(Verdict::InsufficientData);
    e.n = Some(n);
    e.limit = Limit::Band { min: r.min, max: r.max };
    let rule = if matches!(r.window, Window::Duration(_)) { "shiryaev_roberts" } else { "e_process" };
    e.detail = Detail::Rate {
        x,
        n,
        method: r.interval.as_str(),
        confidence: r.confidence,
        on: match r.on {
            BreachOn::Bound => "bound",
            BreachOn::Estimate => "estimate",
        },
        excess: (x_raw > n).then(|| x_raw - n),
        decision: evidence.map(|ev| ev.decision(rule)),
    };
    if n == 0 {
        return e;
    }
    let i = r.interval.interval(x, n, r.confidence);
    e.value = Some(i.estimate);
    e.lower = Some(i.lower);
    e.upper = Some(i.upper);
    if n < r.min_denominator {
        return e;
    }
    let breach = match (r.on, evidence) {
        // docs/STATISTICS.md: under a false-breach budget the evidence decides.
        (BreachOn::Bound, Some(ev)) => ev.crossed(),
        (BreachOn::Bound, None) => r.max.is_some_and(|m| i.lower > m) || r.min.is_some_and(|m| i.upper < m),
        (BreachOn::Estimate, _) => r.max.is_some_and(|m| i.estimate > m) || r.min.is_some_and(|m| i.estimate < m),
    };
    e.verdict = if breach { Verdict::Breach } else { Verdict::Ok };
    e
}

/// Per-group (x, n) rows of a disparity condition in allow-list order.
pub fn group_rows(d: &DisparitySpec, dep: &Deployment, now: Millis) -> Option<Vec<(String, u64, u64)>> {
    let a = dep.groups.attribute(&d.attribute)?;
    let t = dep.tally(d.window, now);
    let subj = |c: Counter| match c {
        Counter::Alerts => SUBJ_ALERTS,
        Counter::FalseAlerts => SUBJ_FALSE_ALERTS,
        Counter::Engaged => SUBJ_ENGAGED,
        _ => SUBJ_FALSE_ENGAGED,
    };
    let eng = |c: Counter| if c == Counter::Engaged { ENG_ENGAGED } else { ENG_FALSE_ENGAGED };
    let rows = dep
        .groups
        .slots(a)
        .map(|(slot, g)| {
            let (x, n) = match d.source {
                GroupSource::SubjectGroups => {
                    (t.subject[slot][subj(d.numerator)], t.subject[slot][subj(d.denominator)])
                }
                GroupSource::EngagedGroups => (t.engaged[slot][eng(d.numerator)], t.engaged[slot][eng(d.denominator)]),
                GroupSource::Exposure => (t.engaged[slot][ENG_FALSE_ENGAGED], t.exposure[slot]),
            };
            (g.to_string(), x.max(0) as u64, n.max(0) as u64)
        })
        .collect();
    Some(rows)
}

/// The limits that decide: under a budget the per-look `alpha` does not (the budget is in
/// `detail.decision`).
fn disparity_limit(d: &DisparitySpec) -> Limit {
    let alpha = match d.false_breach_per_day {
        Budget::PerDay(_) => None,
        Budget::PerLook => Some(d.alpha),
    };
    Limit::Disparity { max_ratio: d.max_ratio, alpha, min_per_group: d.min_per_group }
}

/// A windowed disparity under a budget is decided on tumbling blocks of the window's width:
/// the per-group counts since the current block began (deployment counts `cum` minus the
/// block's start).
fn disparity_block(seq: &mut Sequential, cum: &[(u64, u64)], now: Millis, width: Dur) -> Vec<(u64, u64)> {
    let origin = seq.block.as_ref().map_or(now, |b| b.origin);
    let index = (now - origin).div_euclid(width.ms().max(1));
    match &mut seq.block {
        Some(b) if b.index == index && b.start.len() == cum.len() => {}
        _ => seq.block = Some(DisparityBlock { origin, index, start: cum.to_vec() }),
    }
    let start = &seq.block.as_ref().expect("set above").start;
    cum.iter().zip(start).map(|(&(x, n), &(x0, n0))| (x.saturating_sub(x0), n.saturating_sub(n0))).collect()
}

/// A disparity condition from its window's per-group rows (allow-list order) and, for a
/// windowed one under a budget, the deployment's cumulative (x, n) per group. Public for the
/// calibration harness.
pub fn disparity_evaluation(
    d: &DisparitySpec,
    rows: &[(String, u64, u64)],
    cum: &[(u64, u64)],
    seq: &mut Sequential,
    now: Millis,
) -> Evaluation {
    let budget = match (d.false_breach_per_day, d.window) {
        (Budget::PerDay(alpha), Window::Duration(w)) => {
            Some((disparity_block(seq, cum, now, w), alpha_per_block(alpha, w)))
        }
        (Budget::PerDay(alpha), _) => Some((rows.iter().map(|(_, x, n)| (*x, *n)).collect(), alpha)),
        (Budget::PerLook, _) => None,
    };
    disparity_eval(d, rows, budget)
}

/// A day overlaps at most ⌈24h/W⌉ + 1 blocks of width W: each gets that share of the budget.
fn alpha_per_block(alpha: f64, width: Dur) -> f64 {
    let per_day = (sequential::DAY_MS as f64 / width.ms().max(1) as f64).ceil();
    alpha / (per_day + 1.0)
}

/// docs/STATISTICS.md: the largest universal-inference e-value of a group against the other
/// groups pooled (groups with at least `min_per_group`, as CONDITIONS.md's Fisher test), under
/// H0: no disparity, over ln(groups/alpha); the groups are the whole allow-list (fixed in advance).
fn disparity_evidence(d: &DisparitySpec, counts: &[(u64, u64)], alpha: f64) -> (Evidence, Option<usize>) {
    let qualifying: Vec<(usize, (u64, u64))> =
        counts.iter().copied().enumerate().filter(|(_, (_, n))| *n >= d.min_per_group.max(1)).collect();
    let table: Vec<(u64, u64)> = qualifying.iter().map(|(_, c)| *c).collect();
    let best = sequential::disparity_vs_rest(&table);
    let ev = Evidence {
        // No group to compare: no evidence (E = 1).
        ln: best.map_or(0.0, |(m, _)| m),
        boundary: sequential::disparity_threshold(counts.len(), alpha),
        budget: alpha,
    };
    (ev, best.map(|(_, g)| qualifying[g].0))
}

fn disparity_eval(
    d: &DisparitySpec,
    rows: &[(String, u64, u64)],
    budget: Option<(Vec<(u64, u64)>, f64)>,
) -> Evaluation {
    let mut e = Evaluation::new(Verdict::InsufficientData);
    e.limit = disparity_limit(d);
    let r = disparity(rows, d.min_per_group, 0.95);
    e.n = Some(r.groups.iter().filter(|g| g.qualifies).map(|g| g.n).sum());
    e.value = r.ratio_max_min;
    let rule =
        if matches!(d.window, Window::Duration(_)) { "universal_inference_blocks" } else { "universal_inference" };
    let evidence = budget.map(|(counts, alpha)| disparity_evidence(d, &counts, alpha));
    let significant = match evidence {
        Some((ev, _)) => ev.crossed(),
        None => r.p_value.is_some_and(|p| p < d.alpha),
    };
    let breach = r.ratio_max_min.is_some_and(|x| x > d.max_ratio) && significant;
    if r.qualifying >= 2 {
        e.verdict = if breach { Verdict::Breach } else { Verdict::Ok };
    }
    e.detail = Detail::Disparity(std::sync::Arc::new(DisparityDetail {
        attribute: d.attribute.clone(),
        source: d.source,
        result: r,
        decision: evidence.map(|(ev, group)| (ev.decision(rule), group.map(|g| rows[g].0.clone()))),
    }));
    e
}

/// A drift condition from its state. Public for the calibration harness.
pub fn drift_evaluation(ds: &mut DriftState, now: Millis) -> Evaluation {
    let mut e = Evaluation::new(Verdict::InsufficientData);
    let spec = ds.spec.clone();
    if let DriftMethod::PageHinkley { hold, delta, lambda } = &spec.method {
        e.limit = Limit::PageHinkley { lambda: *lambda, delta: *delta, hold: hold.as_secs_f64() };
        e.value = Some(ds.ph.statistic());
        e.n = Some(ds.ph_seen);
        e.detail = Detail::PageHinkley {
            statistic: ds.ph.statistic(),
            detections: ds.ph.detections,
            last_detection: ds.last_detection,
            decision: spec.false_breach_per_day.per_day().map(|alpha| (alpha, ds.ph.lambda, ds.variance())),
        };
        e.verdict = page_hinkley_verdict(ds, *hold, now);
        return e;
    }
    let current = ds.current(now);
    let m: u64 = current.iter().sum();
    let nb = ds.baseline.total();
    e.n = Some(m);
    let baseline_full = ds.baseline_missing == 0;
    // docs/STATISTICS.md: under a budget, the current segment's time-uniform KS band decides
    // (PSI: and PSI above its max).
    let decision = spec.false_breach_per_day.per_day().map(|alpha| {
        ds.segment.look(&ds.baseline.counts, alpha, spec.min_samples);
        let seg = &ds.segment;
        KsBand {
            budget: alpha,
            segment_n: seg.n,
            segment_index: seg.index,
            segment_ks_d: seg.d,
            boundary: seg.boundary,
            crossed: seg.decision(spec.min_samples),
        }
    });
    let crossed = decision.map(|d| d.crossed == Some(true));
    let enough = baseline_full && m >= spec.min_samples;
    match &spec.method {
        DriftMethod::Psi { max, .. } => {
            e.limit = Limit::Number("max", *max);
            let v = psi(&current, &ds.baseline.counts);
            e.detail = Detail::Psi(std::sync::Arc::new(PsiDetail {
                psi: v,
                baseline_n: nb,
                window_n: m,
                baseline_full,
                edges: ds.baseline.edges.clone(),
                baseline_counts: ds.baseline.counts.clone(),
                window_counts: current,
                decision,
            }));
            if !enough {
                return e;
            }
            e.value = Some(v);
            let moved = crossed.unwrap_or(true);
            e.verdict = if v > *max && moved { Verdict::Breach } else { Verdict::Ok };
        }
        DriftMethod::Ks { alpha } => {
            let d = ks_binned(&current, &ds.baseline.counts);
            let crit = if m > 0 && nb > 0 { ks_critical(m, nb, *alpha) } else { f64::NAN };
            // A non-finite critical value is shown as null (as serde_json writes any).
            e.limit = Limit::Ks { alpha: *alpha, critical: crit };
            e.detail = Detail::Ks {
                ks_d: d,
                critical: crit,
                baseline_n: nb,
                window_n: m,
                baseline_full,
                bins: current.len() as u64,
                decision,
            };
            if !enough {
                return e;
            }
            e.value = Some(d);
            e.verdict = if crossed.unwrap_or(d > crit) { Verdict::Breach } else { Verdict::Ok };
        }
        DriftMethod::PageHinkley { .. } => unreachable!("handled above"),
    }
    e
}

/// docs/STATISTICS.md: the q-quantile is above `max` exactly when more than a share 1 − q of
/// values exceed `max`, so under a budget the decision is the Bernoulli upper test of the
/// exceedances against p0 = 1 − q (Howard & Ramdas 2022, fixed-quantile route).
/// A quantile condition from its value series. Public for the calibration harness.
pub fn quantile_evaluation(q: &QuantileSpec, series: &LatencySeries, seq: &mut Sequential, now: Millis) -> Evaluation {
    let mut e = Evaluation::new(Verdict::InsufficientData);
    e.limit = Limit::Number("max", q.max.as_secs_f64());
    let (value, n) = series.quantile(q.window, q.q, now);
    e.n = Some(n);
    let mut exceedances = None;
    let bound = q.max.ms().max(0) as u64;
    let evidence = q.false_breach_per_day.per_day().map(|alpha| {
        let sides = [(Side::Upper, 1.0 - q.q)];
        match q.window {
            Window::Duration(_) => {
                let (x, n) = series.exceedances(Window::Deployment, bound, now);
                (sr_evidence(&mut seq.sr, &sides, x, n, now, alpha), "shiryaev_roberts")
            }
            w => {
                let (x, n) = series.exceedances(w, bound, now);
                exceedances = Some(x);
                (cumulative_evidence(&sides, x, n, alpha), "e_process")
            }
        }
    });
    e.detail = Detail::Quantile {
        q: q.q,
        value: value.map(|v| v as f64 / 1000.0),
        samples: n,
        exceedances,
        decision: evidence.map(|(ev, rule)| ev.decision(rule)),
    };
    let Some(v) = value else { return e };
    e.value = Some(v as f64 / 1000.0);
    if n < q.min_samples {
        return e;
    }
    let breach = match evidence {
        Some((ev, _)) => ev.crossed(),
        None => v as i64 > q.max.ms(),
    };
    e.verdict = if breach { Verdict::Breach } else { Verdict::Ok };
    e
}

/// Worst value over active sources and whether any breaches.
fn over_sources<T: Copy>(
    dep: &Deployment,
    get: impl Fn(&crate::engine::SourceState) -> Option<T>,
    bad: impl Fn(T) -> bool,
    worse: impl Fn(T, T) -> bool,
) -> (Option<T>, Vec<String>) {
    let mut worst: Option<T> = None;
    let mut breaching = Vec::new();
    for (id, s) in &dep.sources {
        if let Some(v) = get(s) {
            if bad(v) {
                breaching.push(id.clone());
            }
            if worst.is_none_or(|w| worse(v, w)) {
                worst = Some(v);
            }
        }
    }
    (worst, breaching)
}

fn state(check: &StateCheck, dep: &Deployment, now: Millis) -> Evaluation {
    let mut e = Evaluation::new(Verdict::InsufficientData);
    let auth = dep.authorisation.as_ref();
    let (value, breaching, limit): (Option<f64>, Vec<String>, Limit) = match check {
        StateCheck::ThresholdFloor { min } => {
            // The stricter of the config and the authorisation applies.
            let floor = match (*min, auth.and_then(|a| a.threshold_floor)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let Some(floor) = floor else { return e };
            let (v, b) = over_sources(dep, |s| s.threshold.as_ref().map(|t| t.value), |t| t < floor, |a, b| a < b);
            (v, b, Limit::Number("min", floor))
        }
        StateCheck::ThresholdChanged => {
            let Some(first) = dep.first_threshold else { return e };
            let (v, b) = over_sources(
                dep,
                |s| s.threshold.as_ref().map(|t| t.value),
                |t| t != first,
                |a, b| (a - first).abs() > (b - first).abs(),
            );
            (v, b, Limit::Number("expected", first))
        }
        StateCheck::AlgorithmPinned { version } => {
            let Some(expected) = version.as_ref().or(dep.first_algorithm.as_ref()) else { return e };
            let breaching: Vec<String> = dep
                .sources
                .iter()
                .filter(|(_, s)| s.algorithm_version.as_ref().is_some_and(|v| &v.value != expected))
                .map(|(id, _)| id.clone())
                .collect();
            let any = dep.sources.values().any(|s| s.algorithm_version.is_some());
            if !any {
                return e;
            }
            (None, breaching, Limit::Version(expected.clone()))
        }
        StateCheck::ListSizeMax { max } => {
            let limit = match (*max, auth.and_then(|a| a.max_list_size)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(limit) = limit else { return e };
            let (v, b) = over_sources(dep, |s| s.list_size.as_ref().map(|t| t.value), |n| n > limit, |a, b| a > b);
            (v.map(|x| x as f64), b, Limit::Count("max", limit))
        }
        StateCheck::ListAgeMax { max } => {
            let (v, b) = over_sources(
                dep,
                |s| s.list_built_at.as_ref().map(|t| now - t.value),
                |age| age > max.ms(),
                |a, b| a > b,
            );
            (v.map(|ms| ms as f64 / 1000.0), b, Limit::Number("max", max.as_secs_f64()))
        }
        StateCheck::ListUnder18Max { max } => {
            let (v, b) = over_sources(dep, |s| s.list_under_18.as_ref().map(|t| t.value), |n| n > *max, |a, b| a > b);
            (v.map(|x| x as f64), b, Limit::Count("max", *max))
        }
        StateCheck::ListVersionKnown => {
            if dep.announced_versions.is_empty() && dep.unknown_versions.is_empty() {
                return e;
            }
            let n = dep.unknown_versions.len();
            let b = if n > 0 { vec!["alerts".to_string()] } else { vec![] };
            (Some(n as f64), b, Limit::Count("unknown_versions", 0))
        }
        StateCheck::AuthorisedWindow => {
            let b = if dep.window_tripped { vec!["deployment".to_string()] } else { vec![] };
            let limit =
                Limit::Window { start: auth.and_then(|a| a.window_start), end: auth.and_then(|a| a.window_end) };
            (Some(dep.window_tripped as u8 as f64), b, limit)
        }
        StateCheck::ClockSkewMax { max } => {
            let (v, b) = over_sources(
                dep,
                |s| s.clock_offset_ms.as_ref().map(|t| t.value.abs()),
                |x| x > max.ms(),
                |a, b| a > b,
            );
            (v.map(|ms| ms as f64 / 1000.0), b, Limit::Number("max", max.as_secs_f64()))
        }
        StateCheck::CaptureOk => {
            let (v, b) = over_sources(dep, |s| s.capture_ok.as_ref().map(|t| t.value), |ok| !ok, |a, _| !a);
            if v.is_none() {
                return e;
            }
            (v.map(|ok| ok as u8 as f64), b, Limit::CaptureOk)
        }
    };
    e.value = value;
    e.limit = limit;
    let has_data = value.is_some() || !breaching.is_empty() || matches!(check, StateCheck::AlgorithmPinned { .. });
    // CONDITIONS.md: state checks apply to active deployments only and resolve at `stopped`.
    e.verdict = if !has_data {
        Verdict::InsufficientData
    } else if dep.is_active() && !breaching.is_empty() {
        Verdict::Breach
    } else {
        Verdict::Ok
    };
    e.detail = Detail::State { check: check.name(), sources_breaching: breaching, active: dep.is_active() };
    e
}

fn deadline(scope: &str, within: Dur, dep: &Deployment, now: Millis) -> Evaluation {
    let mut e = Evaluation::new(Verdict::Ok);
    e.limit = Limit::Deadline { within: within.as_secs_f64(), scope: scope.to_string() };
    let Some(stop) = dep.stopped_at else {
        e.detail = Detail::NotStopped;
        return e;
    };
    let (verdict, since_stop, attested) = deadline_now(scope, within, dep, stop, now);
    e.value = Some(since_stop);
    e.verdict = verdict;
    e.detail = Detail::Deadline { stopped_at: stop, due: stop + within.ms(), attested };
    e
}

/// A deletion deadline at `now` for a deployment stopped at `stop`: its verdict (late and not
/// attested is a breach; exactly due is not late), the seconds since the stop, and whether a
/// deletion of `scope` up to the stop was attested. [`deadline`] and [`refresh`] both use it.
fn deadline_now(scope: &str, within: Dur, dep: &Deployment, stop: Millis, now: Millis) -> (Verdict, f64, bool) {
    let met = dep.deletions.iter().any(|d| d.scope == scope && d.up_to >= stop);
    let verdict = if !met && now > stop + within.ms() { Verdict::Breach } else { Verdict::Ok };
    (verdict, (now - stop).max(0) as f64 / 1000.0, met)
}

/// A silence instance at `now` whose source last sent at `last`: its verdict (a gap over
/// `max_gap` on an active deployment is a breach) and the gap in seconds. [`evaluate`] and
/// [`refresh`] both use it.
fn silence_now(dep: &Deployment, last: Millis, max_gap: Dur, now: Millis) -> (Verdict, f64) {
    let gap = now - last;
    let verdict = if dep.is_active() && gap > max_gap.ms() { Verdict::Breach } else { Verdict::Ok };
    (verdict, gap.max(0) as f64 / 1000.0)
}

/// Page–Hinkley's verdict at `now`: a breach while its last detection is within `hold`; no data
/// before 30 values without a detection. [`drift_evaluation`] and [`refresh`] both use it.
fn page_hinkley_verdict(ds: &DriftState, hold: Dur, now: Millis) -> Verdict {
    if ds.last_detection.is_some_and(|(at, _)| now - at < hold.ms()) {
        Verdict::Breach
    } else if ds.ph_seen < 30 && ds.last_detection.is_none() {
        Verdict::InsufficientData
    } else {
        Verdict::Ok
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::config::{ClockMode, Config};
    use crate::engine::Engine;
    use crate::rules::{Evaluation, Verdict};

    /// An engine whose LFR deployments have only `conditions` (YAML list items).
    fn engine(conditions: &str) -> Engine {
        let yaml = format!(
            "receivers: {{ops: {{kind: log}}, oversight: {{kind: log}}}}\ngroups: {{sex: [male], ethnicity: [black]}}\ndefaults: {{lfr: p}}\nprofiles:\n  p:\n    conditions:\n{conditions}"
        );
        Engine::new(Arc::new(Config::from_yaml(&yaml, None).expect("valid config")), ClockMode::Event)
    }

    fn ingest(e: &mut Engine, id: &str, source: &str, ts: &str, body: &str) {
        let line = format!(
            r#"{{"schema_version":1,"event_id":"{id}","deployment_id":"d","system":"lfr","source_id":"{source}","ts":"{ts}",{body}}}"#
        );
        let r = e.ingest(line.as_bytes(), 0);
        assert!(matches!(r, crate::engine::Ingested::Applied(_)), "{r:?}: {line}");
    }

    /// The latest evaluations of condition `id` (one per silence instance).
    fn last(e: &Engine, id: &str) -> Vec<Evaluation> {
        let d = e.deployment("d").expect("deployment d");
        d.conditions.iter().find(|c| c.condition.id == id).expect("condition").last.clone()
    }

    /// Each condition of the shipped LFR profile keeps room for exactly the evaluations it has
    /// after rounds in place, one each with one camera (a vector grown by a first push holds
    /// four: 17 MB more over the memory bench's 1,000 deployments).
    #[test]
    fn evaluations_in_place_keep_no_spare_room() {
        let mut e = Engine::new(Arc::new(Config::demo()), ClockMode::Event);
        for s in 0..20 {
            let ts = format!("2026-04-25T09:00:{s:02}Z");
            ingest(&mut e, &format!("d{s}"), "cam-1", &ts, r#""type":"detection","count":5,"scores":[0.1,0.2,0.3]"#);
        }
        let d = e.deployment("d").expect("deployment d");
        assert!(d.conditions.len() > 10);
        assert_eq!(d.sources.len(), 1);
        for c in &d.conditions {
            assert_eq!((c.last.len(), c.last.capacity()), (1, 1), "{}", c.condition.id);
        }
    }

    #[test]
    fn a_deletion_deadline_breaches_only_once_due_and_an_attestation_ends_it() {
        let mut e = engine(
            "      - {id: del, kind: deadline, check: deletion_after_stop, scope: non_match_biometrics, within: 1h, severity: critical, notify: [oversight]}\n",
        );
        ingest(&mut e, "s", "control", "2026-04-25T09:00:00Z", r#""type":"deployment","phase":"started""#);
        let ev = &last(&e, "del")[0];
        assert_eq!((ev.verdict, ev.value), (Verdict::Ok, None), "not stopped: nothing due");
        ingest(&mut e, "x", "control", "2026-04-25T09:00:01Z", r#""type":"deployment","phase":"stopped""#);
        ingest(&mut e, "t1", "control", "2026-04-25T09:30:01Z", r#""type":"status""#);
        let ev = &last(&e, "del")[0];
        assert_eq!((ev.verdict, ev.value), (Verdict::Ok, Some(1800.0)), "half an hour after the stop: not yet due");
        assert_eq!(ev.detail.value()["due"], "2026-04-25T10:00:01Z");
        ingest(&mut e, "t2", "control", "2026-04-25T10:00:01Z", r#""type":"status""#);
        assert_eq!(last(&e, "del")[0].verdict, Verdict::Ok, "exactly due is not late");
        ingest(&mut e, "t3", "control", "2026-04-25T10:00:02Z", r#""type":"status""#);
        assert_eq!(last(&e, "del")[0].verdict, Verdict::Breach, "a second late");
        // An attestation that does not reach the stop does not count; one that does ends it.
        ingest(
            &mut e,
            "a1",
            "control",
            "2026-04-25T10:00:03Z",
            r#""type":"deletion","scope":"non_match_biometrics","up_to":"2026-04-25T09:00:00Z""#,
        );
        assert_eq!(last(&e, "del")[0].verdict, Verdict::Breach);
        ingest(
            &mut e,
            "a2",
            "control",
            "2026-04-25T10:00:04Z",
            r#""type":"deletion","scope":"non_match_biometrics","up_to":"2026-04-25T09:00:01Z""#,
        );
        let ev = &last(&e, "del")[0];
        assert_eq!(ev.verdict, Verdict::Ok);
        assert_eq!(ev.detail.value()["attested"], true);
    }

    #[test]
    fn a_quiet_source_keeps_its_silence_detail_and_a_new_event_changes_it() {
        let mut e = engine(
            "      - {id: quiet, kind: silence, type: detection, max_gap: 5m, severity: warning, notify: [ops]}\n",
        );
        ingest(&mut e, "s", "control", "2026-04-25T09:00:00Z", r#""type":"deployment","phase":"started""#);
        ingest(&mut e, "d1", "cam-1", "2026-04-25T09:00:01Z", r#""type":"detection","count":1"#);
        ingest(&mut e, "t1", "control", "2026-04-25T09:00:02Z", r#""type":"status""#);
        let before = last(&e, "quiet");
        ingest(&mut e, "t2", "control", "2026-04-25T09:00:03Z", r#""type":"status""#);
        let after = last(&e, "quiet");
        assert_eq!((before.len(), after.len()), (1, 1));
        assert_eq!((before[0].value, after[0].value), (Some(1.0), Some(2.0)), "the gap grows every second");
        assert_eq!((&after[0].detail, &after[0].limit), (&before[0].detail, &before[0].limit));
        // Six minutes on: the detail is still the same, the verdict is a breach.
        ingest(&mut e, "t3", "control", "2026-04-25T09:06:03Z", r#""type":"status""#);
        let late = last(&e, "quiet");
        assert_eq!(late[0].verdict, Verdict::Breach);
        assert_eq!(late[0].detail, before[0].detail);
        // A new detection from the camera: a new `last_seen`.
        ingest(&mut e, "d2", "cam-1", "2026-04-25T09:06:04Z", r#""type":"detection","count":1"#);
        let fresh = last(&e, "quiet");
        assert_eq!(fresh[0].verdict, Verdict::Ok);
        assert_ne!(fresh[0].detail, before[0].detail);
        assert_eq!(fresh[0].detail.value()["last_seen"], "2026-04-25T09:06:04Z");
        assert_eq!(fresh[0].limit, before[0].limit);
        assert_eq!(fresh[0].limit.to_string(), r#"{"max_gap":300.0}"#);
    }
}
