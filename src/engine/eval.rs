//! Evaluation of one condition against one deployment at engine time `now`
//! (formulas exactly as CONDITIONS.md writes them). Part of the engine (it reads deployment
//! state); the condition model and the result type are `rules`'.

use serde_json::{Map, Value, json};

use super::tally::{ENG_ENGAGED, ENG_FALSE_ENGAGED, SUBJ_ALERTS, SUBJ_ENGAGED, SUBJ_FALSE_ALERTS, SUBJ_FALSE_ENGAGED};
use super::{ConditionRuntime, Deployment};
use crate::rules::*;
use crate::stats::{disparity, ks_binned, ks_critical, psi};
use crate::time::{Dur, Millis, format_ts};

/// Evaluates a condition; silence conditions give one evaluation per source.
pub fn evaluate(rt: &mut ConditionRuntime, dep: &Deployment, now: Millis) -> Vec<Evaluation> {
    match &rt.condition.kind {
        Kind::Rate(r) => {
            let t = dep.tally(r.window, now);
            let (x, n) = (t.get(r.numerator), t.get(r.denominator));
            vec![memoised(&mut rt.memo, &rt.last, &[x, n], || rate(r, x, n))]
        }
        Kind::Disparity(d) => {
            let Some(rows) = group_rows(d, dep, now) else {
                let mut e = Evaluation::new(Verdict::InsufficientData);
                e.limit = disparity_limit(d).into();
                return vec![e];
            };
            let key: Vec<u64> = rows.iter().flat_map(|(_, x, n)| [*x, *n]).collect();
            vec![memoised(&mut rt.memo, &rt.last, &key, || disparity_eval(d, &rows))]
        }
        Kind::Drift(_) => vec![drift(rt, now)],
        Kind::Quantile(q) => vec![quantile(q, dep, now)],
        Kind::State(check) => vec![state(check, dep, now)],
        Kind::Silence { event_type, max_gap } => {
            let mut out = Vec::new();
            for (source, s) in &dep.sources {
                let Some(last) = s.last_seen[event_type.index()] else { continue };
                let gap = now - last;
                let breach = dep.is_active() && gap > max_gap.ms();
                let mut e = Evaluation::new(if breach { Verdict::Breach } else { Verdict::Ok });
                e.instance = Some(source.clone());
                e.value = Some(gap.max(0) as f64 / 1000.0);
                e.limit = json!({"max_gap": max_gap.as_secs_f64()}).into();
                e.detail = json!({"source": source, "last_seen": format_ts(last), "type": event_type.as_str()}).into();
                out.push(e);
            }
            if out.is_empty() {
                out.push(Evaluation::new(Verdict::InsufficientData));
            }
            out
        }
        Kind::Deadline { scope, within } => vec![deadline(scope, *within, dep, now)],
    }
}

/// The previous evaluation (`last`) when the counts it was computed from are unchanged; the
/// statistics are pure functions of those counts and the (unchanged) condition.
fn memoised(
    memo: &mut Option<Vec<u64>>,
    last: &[Evaluation],
    key: &[u64],
    f: impl FnOnce() -> Evaluation,
) -> Evaluation {
    if let (Some(k), [e]) = (memo.as_deref(), last)
        && k == key
    {
        return e.clone();
    }
    *memo = Some(key.to_vec());
    f()
}

fn rate(r: &RateSpec, x_raw: u64, n: u64) -> Evaluation {
    // CONDITIONS.md: a numerator above its denominator is computed on min(x, n), excess reported.
    let x = x_raw.min(n);
    let mut e = Evaluation::new(Verdict::InsufficientData);
    e.n = Some(n);
    e.limit = limits(r.min, r.max).into();
    let mut detail = json!({
        "x": x, "n": n, "method": r.interval.as_str(), "confidence": r.confidence,
        "on": match r.on { BreachOn::Bound => "bound", BreachOn::Estimate => "estimate" },
    });
    if x_raw > n {
        detail["excess"] = json!(x_raw - n);
    }
    e.detail = detail.into();
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
    let breach = match r.on {
        BreachOn::Bound => r.max.is_some_and(|m| i.lower > m) || r.min.is_some_and(|m| i.upper < m),
        BreachOn::Estimate => r.max.is_some_and(|m| i.estimate > m) || r.min.is_some_and(|m| i.estimate < m),
    };
    e.verdict = if breach { Verdict::Breach } else { Verdict::Ok };
    e
}

fn limits(min: Option<f64>, max: Option<f64>) -> Value {
    let mut m = Map::new();
    if let Some(v) = min {
        m.insert("min".into(), json!(v));
    }
    if let Some(v) = max {
        m.insert("max".into(), json!(v));
    }
    Value::Object(m)
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

fn disparity_limit(d: &DisparitySpec) -> Value {
    json!({"max_ratio": d.max_ratio, "alpha": d.alpha, "min_per_group": d.min_per_group})
}

fn disparity_eval(d: &DisparitySpec, rows: &[(String, u64, u64)]) -> Evaluation {
    let mut e = Evaluation::new(Verdict::InsufficientData);
    e.limit = disparity_limit(d).into();
    let r = disparity(rows, d.min_per_group, 0.95);
    e.n = Some(r.groups.iter().filter(|g| g.qualifies).map(|g| g.n).sum());
    e.value = r.ratio_max_min;
    e.detail = json!({
        "attribute": d.attribute,
        "source": d.source,
        "ratio_max_min": r.ratio_max_min,
        "ratio_max_geomean": r.ratio_max_geomean,
        "p_value": r.p_value,
        "top_group": r.top_group,
        "qualifying_groups": r.qualifying,
        "groups": r.groups,
    })
    .into();
    if r.qualifying < 2 {
        return e;
    }
    let breach = r.ratio_max_min.is_some_and(|x| x > d.max_ratio) && r.p_value.is_some_and(|p| p < d.alpha);
    e.verdict = if breach { Verdict::Breach } else { Verdict::Ok };
    e
}

fn drift(rt: &mut ConditionRuntime, now: Millis) -> Evaluation {
    let mut e = Evaluation::new(Verdict::InsufficientData);
    let Some(ds) = rt.drift.as_mut() else { return e };
    let spec = ds.spec.clone();
    if let DriftMethod::PageHinkley { hold, delta, lambda } = &spec.method {
        e.limit = json!({"lambda": lambda, "delta": delta, "hold": hold.as_secs_f64()}).into();
        e.value = Some(ds.ph.statistic());
        e.n = Some(ds.ph_seen);
        let recent = ds.last_detection.filter(|(at, _)| now - at < hold.ms());
        e.detail = json!({
            "statistic": ds.ph.statistic(),
            "detections": ds.ph.detections,
            "last_detection": ds.last_detection.map(|(at, _)| format_ts(at)),
            "direction": ds.last_detection.map(|(_, s)| s),
        })
        .into();
        e.verdict = if recent.is_some() {
            Verdict::Breach
        } else if ds.ph_seen < 30 && ds.last_detection.is_none() {
            Verdict::InsufficientData
        } else {
            Verdict::Ok
        };
        return e;
    }
    let current = ds.current(now);
    let m: u64 = current.iter().sum();
    let nb = ds.baseline.total();
    e.n = Some(m);
    let baseline_full = ds.baseline_missing == 0;
    match &spec.method {
        DriftMethod::Psi { max, .. } => {
            e.limit = json!({"max": max}).into();
            let v = psi(&current, &ds.baseline.counts);
            e.detail = json!({"psi": v, "baseline_n": nb, "window_n": m, "baseline_full": baseline_full,
                "edges": ds.baseline.edges, "baseline_counts": ds.baseline.counts, "window_counts": current})
            .into();
            if !baseline_full || m < spec.min_samples {
                return e;
            }
            e.value = Some(v);
            e.verdict = if v > *max { Verdict::Breach } else { Verdict::Ok };
        }
        DriftMethod::Ks { alpha } => {
            let d = ks_binned(&current, &ds.baseline.counts);
            let crit = if m > 0 && nb > 0 { ks_critical(m, nb, *alpha) } else { f64::NAN };
            e.limit =
                json!({"alpha": alpha, "critical": if crit.is_finite() { json!(crit) } else { Value::Null }}).into();
            e.detail = json!({"ks_d": d, "critical": if crit.is_finite() { json!(crit) } else { Value::Null },
                "baseline_n": nb, "window_n": m, "baseline_full": baseline_full, "bins": current.len()})
            .into();
            if !baseline_full || m < spec.min_samples {
                return e;
            }
            e.value = Some(d);
            e.verdict = if d > crit { Verdict::Breach } else { Verdict::Ok };
        }
        DriftMethod::PageHinkley { .. } => unreachable!("handled above"),
    }
    e
}

fn quantile(q: &QuantileSpec, dep: &Deployment, now: Millis) -> Evaluation {
    let mut e = Evaluation::new(Verdict::InsufficientData);
    e.limit = json!({"max": q.max.as_secs_f64()}).into();
    let (value, n) = dep.latency[q.value as usize].quantile(q.window, q.q, now);
    e.n = Some(n);
    e.detail = json!({"q": q.q, "value": value.map(|v| v as f64 / 1000.0), "samples": n}).into();
    let Some(v) = value else { return e };
    e.value = Some(v as f64 / 1000.0);
    if n < q.min_samples {
        return e;
    }
    e.verdict = if v as i64 > q.max.ms() { Verdict::Breach } else { Verdict::Ok };
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
    let (value, breaching, limit): (Option<f64>, Vec<String>, Value) = match check {
        StateCheck::ThresholdFloor { min } => {
            // The stricter of the config and the authorisation applies.
            let floor = match (*min, auth.and_then(|a| a.threshold_floor)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let Some(floor) = floor else { return e };
            let (v, b) = over_sources(dep, |s| s.threshold.as_ref().map(|t| t.value), |t| t < floor, |a, b| a < b);
            (v, b, json!({"min": floor}))
        }
        StateCheck::ThresholdChanged => {
            let Some(first) = dep.first_threshold else { return e };
            let (v, b) = over_sources(
                dep,
                |s| s.threshold.as_ref().map(|t| t.value),
                |t| t != first,
                |a, b| (a - first).abs() > (b - first).abs(),
            );
            (v, b, json!({"expected": first}))
        }
        StateCheck::AlgorithmPinned { version } => {
            let Some(expected) = version.clone().or_else(|| dep.first_algorithm.clone()) else { return e };
            let breaching: Vec<String> = dep
                .sources
                .iter()
                .filter(|(_, s)| s.algorithm_version.as_ref().is_some_and(|v| v.value != expected))
                .map(|(id, _)| id.clone())
                .collect();
            let any = dep.sources.values().any(|s| s.algorithm_version.is_some());
            if !any {
                return e;
            }
            (None, breaching, json!({"version": expected}))
        }
        StateCheck::ListSizeMax { max } => {
            let limit = match (*max, auth.and_then(|a| a.max_list_size)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(limit) = limit else { return e };
            let (v, b) = over_sources(dep, |s| s.list_size.as_ref().map(|t| t.value), |n| n > limit, |a, b| a > b);
            (v.map(|x| x as f64), b, json!({"max": limit}))
        }
        StateCheck::ListAgeMax { max } => {
            let (v, b) = over_sources(
                dep,
                |s| s.list_built_at.as_ref().map(|t| now - t.value),
                |age| age > max.ms(),
                |a, b| a > b,
            );
            (v.map(|ms| ms as f64 / 1000.0), b, json!({"max": max.as_secs_f64()}))
        }
        StateCheck::ListUnder18Max { max } => {
            let (v, b) = over_sources(dep, |s| s.list_under_18.as_ref().map(|t| t.value), |n| n > *max, |a, b| a > b);
            (v.map(|x| x as f64), b, json!({"max": max}))
        }
        StateCheck::ListVersionKnown => {
            if dep.announced_versions.is_empty() && dep.unknown_versions.is_empty() {
                return e;
            }
            let n = dep.unknown_versions.len();
            let b = if n > 0 { vec!["alerts".to_string()] } else { vec![] };
            (Some(n as f64), b, json!({"unknown_versions": 0}))
        }
        StateCheck::AuthorisedWindow => {
            let b = if dep.window_tripped { vec!["deployment".to_string()] } else { vec![] };
            let limit = json!({
                "window_start": auth.and_then(|a| a.window_start).map(format_ts),
                "window_end": auth.and_then(|a| a.window_end).map(format_ts),
            });
            (Some(dep.window_tripped as u8 as f64), b, limit)
        }
        StateCheck::ClockSkewMax { max } => {
            let (v, b) = over_sources(
                dep,
                |s| s.clock_offset_ms.as_ref().map(|t| t.value.abs()),
                |x| x > max.ms(),
                |a, b| a > b,
            );
            (v.map(|ms| ms as f64 / 1000.0), b, json!({"max": max.as_secs_f64()}))
        }
        StateCheck::CaptureOk => {
            let (v, b) = over_sources(dep, |s| s.capture_ok.as_ref().map(|t| t.value), |ok| !ok, |a, _| !a);
            if v.is_none() {
                return e;
            }
            (v.map(|ok| ok as u8 as f64), b, json!({"capture_ok": true}))
        }
    };
    e.value = value;
    e.limit = limit.into();
    e.detail = json!({"check": check.name(), "sources_breaching": breaching, "active": dep.is_active()}).into();
    let has_data = value.is_some() || !breaching.is_empty() || matches!(check, StateCheck::AlgorithmPinned { .. });
    // CONDITIONS.md: state checks apply to active deployments only and resolve at `stopped`.
    e.verdict = if !has_data {
        Verdict::InsufficientData
    } else if dep.is_active() && !breaching.is_empty() {
        Verdict::Breach
    } else {
        Verdict::Ok
    };
    e
}

fn deadline(scope: &str, within: Dur, dep: &Deployment, now: Millis) -> Evaluation {
    let mut e = Evaluation::new(Verdict::Ok);
    e.limit = json!({"within": within.as_secs_f64(), "scope": scope}).into();
    let Some(stop) = dep.stopped_at else {
        e.detail = json!({"stopped": false}).into();
        return e;
    };
    let due = stop + within.ms();
    let met = dep.deletions.iter().any(|d| d.scope == scope && d.up_to >= stop);
    e.value = Some(((now - stop).max(0)) as f64 / 1000.0);
    e.detail = json!({"stopped_at": format_ts(stop), "due": format_ts(due), "attested": met}).into();
    if !met && now > due {
        e.verdict = Verdict::Breach;
    }
    e
}
