//! Conditions from YAML: a condition is written as one flat mapping (`id`, `kind`, common keys
//! and the kind's parameters, as in CONDITIONS.md). Keys that do not belong to the kind are errors
//! with a "did you mean" hint, so a typo never silently disables a safeguard.

use serde_norway::{Mapping, Value};

use super::model::*;
use crate::diag::{ConfigError, suggest};
use crate::event::EventType;
use crate::stats::IntervalMethod;
use crate::time::Dur;

const COMMON: &[&str] = &["id", "kind", "severity", "for", "notify", "runbook", "summary"];
const KINDS: &[&str] = &["rate", "disparity", "drift", "quantile", "state", "silence", "deadline"];

fn params(kind: &str) -> &'static [&'static str] {
    match kind {
        "rate" => &[
            "numerator",
            "denominator",
            "min",
            "max",
            "window",
            "min_denominator",
            "confidence",
            "interval",
            "on",
            "false_breach_per_day",
        ],
        "disparity" => &[
            "numerator",
            "denominator",
            "attribute",
            "source",
            "max_ratio",
            "alpha",
            "min_per_group",
            "window",
            "false_breach_per_day",
        ],
        "drift" => &[
            "value",
            "method",
            "window",
            "min_samples",
            "baseline",
            "edges",
            "max",
            "alpha",
            "delta",
            "lambda",
            "hold",
            "false_breach_per_day",
        ],
        "quantile" => &["value", "q", "max", "min_samples", "window", "false_breach_per_day"],
        "state" => &["check", "min", "max", "version"],
        "silence" => &["type", "max_gap"],
        "deadline" => &["check", "scope", "within"],
        _ => &[],
    }
}

/// Reads typed values out of one condition mapping, collecting errors with their key paths.
struct Reader<'a> {
    map: &'a Mapping,
    path: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> Reader<'a> {
    fn err(&mut self, key: &str, msg: impl Into<String>) {
        self.errors.push(ConfigError::new(format!("{}.{key}", self.path), msg));
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn str(&mut self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.err(key, "must be a string");
                None
            }
        }
    }

    fn req_str(&mut self, key: &str) -> Option<String> {
        let v = self.str(key);
        if v.is_none() && self.get(key).is_none() {
            self.err(key, "is required");
        }
        v
    }

    fn f64(&mut self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => n.as_f64(),
            _ => {
                self.err(key, "must be a number");
                None
            }
        }
    }

    fn prob(&mut self, key: &str, default: f64, open: bool) -> f64 {
        let v = self.f64(key).unwrap_or(default);
        let ok = if open { v > 0.0 && v < 1.0 } else { (0.0..=1.0).contains(&v) };
        if !ok {
            self.err(key, if open { "must be in (0, 1)" } else { "must be in [0, 1]" });
        }
        v
    }

    fn u64(&mut self, key: &str) -> Option<u64> {
        match self.get(key)? {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            _ => {
                self.err(key, "must be a non-negative integer");
                None
            }
        }
    }

    fn dur(&mut self, key: &str) -> Option<Dur> {
        match self.get(key)? {
            Value::String(s) => match Dur::parse(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(key, e);
                    None
                }
            },
            _ => {
                self.err(key, "must be a duration string like 30s, 5m, 24h");
                None
            }
        }
    }

    fn counter(&mut self, key: &str) -> Option<Counter> {
        let s = self.req_str(key)?;
        let c = Counter::parse(&s);
        if c.is_none() {
            let names: Vec<&str> = Counter::ALL.iter().map(|c| c.as_str()).collect();
            self.err(key, format!("`{s}` is not a counter{}", suggest(&s, &names)));
        }
        c
    }

    fn choice<T: Copy>(&mut self, key: &str, options: &[(&str, T)], default: Option<T>) -> Option<T> {
        let Some(s) = self.str(key) else {
            if default.is_none() && self.get(key).is_none() {
                self.err(key, "is required");
            }
            return default;
        };
        match options.iter().find(|(n, _)| *n == s) {
            Some((_, v)) => Some(*v),
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.err(key, format!("`{s}` is not one of {}{}", names.join(", "), suggest(&s, &names)));
                default
            }
        }
    }

    /// `false_breach_per_day`: a probability in (0, 1), or `per_look` (CONDITIONS.md's per-look
    /// rule); default 0.01 (docs/STATISTICS.md).
    fn budget(&mut self) -> Budget {
        const KEY: &str = "false_breach_per_day";
        match self.get(KEY) {
            None => Budget::default(),
            Some(Value::String(s)) if s == "per_look" => Budget::PerLook,
            Some(Value::Number(n)) if n.as_f64().is_some_and(|a| a > 0.0 && a < 1.0) => {
                Budget::PerDay(n.as_f64().unwrap_or_default())
            }
            Some(v) => {
                let shown = serde_norway::to_string(v).unwrap_or_default();
                self.err(
                    KEY,
                    format!(
                        "is {}: it must be a probability strictly between 0 and 1 (e.g. 0.01, a false \
                         alarm on at most 1 in 100 deployment-days), or `per_look`",
                        shown.trim()
                    ),
                );
                Budget::default()
            }
        }
    }

    /// `deployment`, a duration, or (when `last` is allowed) `{last: N}`.
    fn window(&mut self, key: &str, allow_last: bool, default: Window) -> Window {
        match self.get(key) {
            None => default,
            Some(Value::String(s)) if s == "deployment" && !allow_last => Window::Deployment,
            Some(Value::String(s)) => match Dur::parse(s) {
                Ok(d) if d.ms() > 0 => Window::Duration(d),
                _ => {
                    let what = if allow_last { "a duration or {last: N}" } else { "`deployment` or a duration" };
                    self.err(key, format!("`{s}` is not {what}"));
                    default
                }
            },
            Some(Value::Mapping(m)) if allow_last => match m.get("last").and_then(Value::as_u64) {
                Some(n) if n > 0 && m.len() == 1 => Window::Last(n),
                _ => {
                    self.err(key, "must be {last: N} with N ≥ 1");
                    default
                }
            },
            Some(_) => {
                self.err(key, "has the wrong type");
                default
            }
        }
    }
}

/// Builds one condition from its mapping; `path` is its key path for messages.
pub fn parse_condition(map: &Mapping, path: &str) -> Result<Condition, Vec<ConfigError>> {
    let mut r = Reader { map, path, errors: Vec::new() };
    let id = r.req_str("id");
    if let Some(id) = &id
        && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    {
        r.err("id", "must be non-empty [A-Za-z0-9_-] (it becomes a metric label)");
    }
    let kind = r.req_str("kind").unwrap_or_default();
    if !kind.is_empty() && !KINDS.contains(&kind.as_str()) {
        r.err("kind", format!("`{kind}` is not a condition kind{}", suggest(&kind, KINDS)));
        return Err(r.errors);
    }
    // Unknown keys for this kind.
    let allowed: Vec<&str> = COMMON.iter().chain(params(&kind)).copied().collect();
    for key in map.keys() {
        match key.as_str() {
            Some(k) if allowed.contains(&k) => {}
            Some(k) => {
                let hint = suggest(k, &allowed);
                let msg = if hint.is_empty() {
                    format!("unknown key for kind `{kind}`")
                } else {
                    format!("unknown key for kind `{kind}`{hint}")
                };
                r.err(k, msg);
            }
            None => r.errors.push(ConfigError::new(path, "keys must be strings")),
        }
    }
    let severity = r
        .choice(
            "severity",
            &[("critical", Severity::Critical), ("warning", Severity::Warning)],
            Some(Severity::Warning),
        )
        .unwrap_or(Severity::Warning);
    let for_ = r.dur("for").unwrap_or_default();
    let notify = match r.get("notify") {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        Some(_) => {
            r.err("notify", "must be a list of receiver names");
            Vec::new()
        }
    };
    let runbook = r.str("runbook");
    let summary = r.str("summary");
    let kind = match kind.as_str() {
        "rate" => rate(&mut r).map(Kind::Rate),
        "disparity" => disparity(&mut r).map(Kind::Disparity),
        "drift" => drift(&mut r).map(Kind::Drift),
        "quantile" => quantile(&mut r).map(Kind::Quantile),
        "state" => state(&mut r).map(Kind::State),
        "silence" => silence(&mut r),
        "deadline" => deadline(&mut r),
        _ => None,
    };
    match (id, kind) {
        (Some(id), Some(kind)) if r.errors.is_empty() => {
            Ok(Condition { id, kind, severity, for_, notify, runbook, summary })
        }
        _ => {
            if r.errors.is_empty() {
                r.errors.push(ConfigError::new(path, "invalid condition"));
            }
            Err(r.errors)
        }
    }
}

fn rate(r: &mut Reader<'_>) -> Option<RateSpec> {
    let numerator = r.counter("numerator");
    let denominator = r.counter("denominator");
    let min = r.f64("min");
    let max = r.f64("max");
    if min.is_none() && max.is_none() {
        r.err("max", "a rate needs min, max or both");
    }
    for (key, v) in [("min", min), ("max", max)] {
        if let Some(v) = v
            && !(0.0..=1.0).contains(&v)
        {
            r.err(key, format!("is {v}: a rate is a proportion, between 0 and 1"));
        }
    }
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        r.err("min", "is above max");
    }
    let window = r.window("window", false, Window::Deployment);
    // CONDITIONS.md `rate` defaults: min_denominator 30, confidence 0.95, Wilson, on bound.
    let min_denominator = r.u64("min_denominator").unwrap_or(30);
    let confidence = r.prob("confidence", 0.95, true);
    let interval = r
        .choice(
            "interval",
            &[("wilson", IntervalMethod::Wilson), ("clopper_pearson", IntervalMethod::ClopperPearson)],
            Some(IntervalMethod::Wilson),
        )
        .unwrap_or_default();
    let on = r.choice("on", &[("bound", BreachOn::Bound), ("estimate", BreachOn::Estimate)], Some(BreachOn::Bound))?;
    if on == BreachOn::Estimate && r.get("false_breach_per_day").is_some() {
        r.err(
            "false_breach_per_day",
            "does not apply with `on: estimate` (a threshold on the point estimate, not a test); \
             use `on: bound` for a condition with a false-breach budget",
        );
    }
    let false_breach_per_day = r.budget();
    Some(RateSpec {
        numerator: numerator?,
        denominator: denominator?,
        min,
        max,
        window,
        min_denominator,
        confidence,
        interval,
        on,
        false_breach_per_day,
    })
}

fn disparity(r: &mut Reader<'_>) -> Option<DisparitySpec> {
    let numerator = r.counter("numerator");
    let denominator = r.counter("denominator");
    let attribute = r.req_str("attribute");
    let source = r.choice(
        "source",
        &[
            ("subject_groups", GroupSource::SubjectGroups),
            ("engaged_groups", GroupSource::EngagedGroups),
            ("exposure", GroupSource::Exposure),
        ],
        Some(GroupSource::SubjectGroups),
    )?;
    // CONDITIONS.md `disparity` defaults: 1.25 (four-fifths rule, DOMAIN.md), alpha 0.05, 20.
    let max_ratio = r.f64("max_ratio").unwrap_or(1.25);
    if max_ratio < 1.0 {
        r.err("max_ratio", "must be ≥ 1");
    }
    let alpha = r.prob("alpha", 0.05, true);
    let min_per_group = r.u64("min_per_group").unwrap_or(20);
    let window = r.window("window", false, Window::Deployment);
    let (numerator, denominator) = (numerator?, denominator?);
    let counters_ok = match source {
        GroupSource::SubjectGroups => [numerator, denominator]
            .iter()
            .all(|c| matches!(c, Counter::Alerts | Counter::FalseAlerts | Counter::Engaged | Counter::FalseEngaged)),
        GroupSource::EngagedGroups => {
            [numerator, denominator].iter().all(|c| matches!(c, Counter::Engaged | Counter::FalseEngaged))
        }
        GroupSource::Exposure => numerator == Counter::FalseEngaged && denominator == Counter::Detections,
    };
    if !counters_ok {
        r.err(
            "numerator",
            "per-group counters are alerts/false_alerts/engaged/false_engaged (subject_groups), \
             engaged/false_engaged (engaged_groups), false_engaged over detections (exposure)",
        );
    }
    Some(DisparitySpec {
        numerator,
        denominator,
        attribute: attribute?,
        source,
        max_ratio,
        alpha,
        min_per_group,
        window,
        false_breach_per_day: r.budget(),
    })
}

fn drift(r: &mut Reader<'_>) -> Option<DriftSpec> {
    let value = r.choice(
        "value",
        &[("score", DriftValue::Score), ("quality", DriftValue::Quality), ("alert_score", DriftValue::AlertScore)],
        None,
    );
    let method_name = r.choice("method", &[("psi", 0), ("ks", 1), ("page_hinkley", 2)], None)?;
    let method = match method_name {
        0 => {
            let edges: Vec<f64> = match r.get("edges") {
                None => (0..10).map(|i| i as f64 / 10.0).collect(),
                Some(Value::Sequence(s)) => {
                    let e: Vec<f64> = s.iter().filter_map(Value::as_f64).collect();
                    // A NaN edge (`.nan` in YAML) compares false both ways: rejected on its own.
                    if e.len() != s.len()
                        || e.len() < 2
                        || e[0] != 0.0
                        || e.iter().any(|x| !x.is_finite())
                        || e.windows(2).any(|w| w[0] >= w[1])
                    {
                        r.err("edges", "must be ascending numbers starting at 0 (left edges of the bins)");
                    }
                    e
                }
                Some(_) => {
                    r.err("edges", "must be a list of numbers");
                    Vec::new()
                }
            };
            // CONDITIONS.md: PSI breach above 0.25 by default.
            DriftMethod::Psi { edges: edges.into(), max: r.f64("max").unwrap_or(0.25) }
        }
        // CONDITIONS.md: KS alpha 0.001 by default (repeated test on overlapping data).
        1 => DriftMethod::Ks { alpha: r.prob("alpha", 0.001, true) },
        _ => DriftMethod::PageHinkley {
            // CONDITIONS.md / river defaults: δ = 0.005, λ = 50, hold 15m.
            delta: r.f64("delta").unwrap_or(0.005),
            lambda: r.f64("lambda").unwrap_or(50.0),
            hold: r.dur("hold").unwrap_or(Dur::mins(15)),
        },
    };
    for (key, ok) in [
        ("edges", method_name == 0),
        ("max", method_name == 0),
        ("alpha", method_name == 1),
        ("delta", method_name == 2),
        ("lambda", method_name == 2),
        ("hold", method_name == 2),
    ] {
        if !ok && r.get(key).is_some() {
            r.err(key, "does not apply to this drift method");
        }
    }
    let window = r.window("window", true, Window::Last(10_000));
    let min_samples = r.u64("min_samples").unwrap_or(1000);
    let bins = match &method {
        DriftMethod::Psi { edges, .. } => edges.len(),
        _ => 100,
    };
    let baseline = match r.get("baseline") {
        None => Baseline::First(10_000),
        Some(Value::Mapping(m)) => {
            if let Some(n) = m.get("first").and_then(Value::as_u64) {
                Baseline::First(n.max(1))
            } else if let Some(Value::Sequence(c)) = m.get("histogram") {
                let counts: Vec<u64> = c.iter().filter_map(Value::as_u64).collect();
                if counts.len() != bins || counts.iter().sum::<u64>() == 0 {
                    r.err("baseline", format!("histogram needs {bins} non-negative counts, not all zero"));
                }
                Baseline::Histogram(counts)
            } else {
                r.err("baseline", "must be {first: N} or {histogram: [counts per bin]}");
                Baseline::First(10_000)
            }
        }
        Some(_) => {
            r.err("baseline", "must be {first: N} or {histogram: [...]}");
            Baseline::First(10_000)
        }
    };
    let false_breach_per_day = r.budget();
    if let (Budget::PerDay(alpha), false) = (false_breach_per_day, method_name == 2) {
        reachable(r, alpha, &baseline, window, min_samples);
    }
    Some(DriftSpec { value: value?, method, window, min_samples, baseline, false_breach_per_day })
}

/// A PSI/KS condition under a budget decides on segments of its window against its baseline
/// (docs/STATISTICS.md); one that could never reach its decision boundary is an error, not a
/// silently quiet condition.
fn reachable(r: &mut Reader<'_>, alpha: f64, baseline: &Baseline, window: Window, min_samples: u64) {
    use crate::stats::sequential::{ks_boundary, segment_share};
    let baseline_n = match baseline {
        Baseline::First(n) => *n,
        Baseline::Histogram(c) => c.iter().sum(),
    };
    // At the first segment of a day (the largest share of the budget).
    let boundary = |t: u64| ks_boundary(baseline_n, alpha / 2.0, t, alpha / 2.0 * segment_share(1));
    if boundary(u64::MAX / 2) >= 1.0 {
        r.err(
            "baseline",
            format!(
                "a baseline of {baseline_n} values is too small to ever reach the false-breach budget {alpha}: \
                 its own sampling error leaves no distance that could count as drift"
            ),
        );
        return;
    }
    let Window::Last(n) = window else { return };
    if min_samples > n {
        r.err(
            "min_samples",
            format!(
                "is {min_samples}, above the window's {n} values: under a false-breach budget each segment of \
                 {n} values must reach min_samples before it decides, so this condition could never fire"
            ),
        );
    }
    if boundary(n) >= 1.0 {
        let mut need = n.max(1);
        while boundary(need) >= 1.0 {
            need *= 2;
        }
        let (mut lo, mut hi) = (need / 2, need);
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            if boundary(mid) >= 1.0 { lo = mid } else { hi = mid }
        }
        r.err(
            "window",
            format!(
                "{{last: {n}}} is too small to ever reach the false-breach budget {alpha}: at {n} values the \
                 decision boundary is {:.2}, above the largest possible distance 1; use at least {hi} values",
                boundary(n)
            ),
        );
    }
}

fn quantile(r: &mut Reader<'_>) -> Option<QuantileSpec> {
    let value = r.choice(
        "value",
        &[
            ("adjudication_latency", QuantileValue::AdjudicationLatency),
            ("alert_latency", QuantileValue::AlertLatency),
            ("event_lag", QuantileValue::EventLag),
        ],
        None,
    );
    let q = r.prob("q", 0.95, true);
    let max = r.dur("max");
    if max.is_none() && r.get("max").is_none() {
        r.err("max", "is required (a duration)");
    }
    let min_samples = r.u64("min_samples").unwrap_or(20);
    let window = r.window("window", false, Window::Deployment);
    let false_breach_per_day = r.budget();
    Some(QuantileSpec { value: value?, q, max: max?, min_samples, window, false_breach_per_day })
}

fn state(r: &mut Reader<'_>) -> Option<StateCheck> {
    let check = r.req_str("check")?;
    let checks = [
        "threshold_floor",
        "threshold_changed",
        "algorithm_pinned",
        "list_size_max",
        "list_age_max",
        "list_under_18_max",
        "list_version_known",
        "authorised_window",
        "clock_skew_max",
        "capture_ok",
    ];
    let uses: &[&str] = match check.as_str() {
        "threshold_floor" => &["min"],
        "algorithm_pinned" => &["version"],
        "list_size_max" | "list_age_max" | "list_under_18_max" | "clock_skew_max" => &["max"],
        _ => &[],
    };
    for key in ["min", "max", "version"] {
        if !uses.contains(&key) && r.get(key).is_some() {
            r.err(key, format!("does not apply to check `{check}`"));
        }
    }
    Some(match check.as_str() {
        "threshold_floor" => {
            let min = r.f64("min");
            if let Some(v) = min
                && !(0.0..=1.0).contains(&v)
            {
                r.err("min", format!("is {v}: match thresholds are scores between 0 and 1"));
            }
            StateCheck::ThresholdFloor { min }
        }
        "threshold_changed" => StateCheck::ThresholdChanged,
        "algorithm_pinned" => StateCheck::AlgorithmPinned { version: r.str("version") },
        "list_size_max" => StateCheck::ListSizeMax { max: r.u64("max") },
        // SWP SOP (Bridges [2020] EWCA Civ 1058 para 128): watchlist retained no more than 24 h.
        "list_age_max" => StateCheck::ListAgeMax { max: r.dur("max").unwrap_or(Dur::hours(24)) },
        // SWP SOP: under-18s not ordinarily included.
        "list_under_18_max" => StateCheck::ListUnder18Max { max: r.u64("max").unwrap_or(0) },
        "list_version_known" => StateCheck::ListVersionKnown,
        "authorised_window" => StateCheck::AuthorisedWindow,
        "clock_skew_max" => match r.dur("max") {
            Some(d) => StateCheck::ClockSkewMax { max: d },
            None => {
                r.err("max", "is required (a duration)");
                return None;
            }
        },
        "capture_ok" => StateCheck::CaptureOk,
        other => {
            r.err("check", format!("`{other}` is not a state check{}", suggest(other, &checks)));
            return None;
        }
    })
}

fn silence(r: &mut Reader<'_>) -> Option<Kind> {
    let ty = r.req_str("type")?;
    let Some(event_type) = EventType::parse(&ty) else {
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        r.err("type", format!("`{ty}` is not an event type{}", suggest(&ty, &names)));
        return None;
    };
    // CONDITIONS.md `silence`: max_gap 5m by default.
    let max_gap = r.dur("max_gap").unwrap_or(Dur::mins(5));
    Some(Kind::Silence { event_type, max_gap })
}

fn deadline(r: &mut Reader<'_>) -> Option<Kind> {
    let check = r.str("check").unwrap_or_else(|| "deletion_after_stop".into());
    if check != "deletion_after_stop" {
        r.err("check", "the only deadline is `deletion_after_stop`");
    }
    let scope = r.req_str("scope")?;
    if !matches!(scope.as_str(), "non_match_biometrics" | "list" | "alerts" | "reads") {
        r.err("scope", "must be non_match_biometrics, list, alerts or reads");
    }
    // CONDITIONS.md `deadline`: within 24h by default.
    let within = r.dur("within").unwrap_or(Dur::hours(24));
    Some(Kind::Deadline { scope, within })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Condition, Vec<(String, String)>> {
        let map: Mapping = serde_norway::from_str(yaml).unwrap();
        parse_condition(&map, "profiles.p.conditions[0]")
            .map_err(|errs| errs.into_iter().map(|e| (e.path, e.message)).collect())
    }

    #[test]
    fn a_rate_condition_with_its_common_keys() {
        let c = parse(
            "{id: far, kind: rate, numerator: false_alerts, denominator: detections, max: 0.001, \
             severity: critical, for: 10m, notify: [ops, oversight], runbook: https://r/far, summary: cap}",
        )
        .unwrap();
        assert_eq!(c.id, "far");
        assert_eq!(c.severity, Severity::Critical);
        assert_eq!(c.for_.ms(), 600_000);
        assert_eq!(c.notify, ["ops", "oversight"]);
        assert_eq!((c.runbook.as_deref(), c.summary.as_deref()), (Some("https://r/far"), Some("cap")));
        assert!(matches!(c.kind, Kind::Rate(_)));
        // Defaults: a warning, no hold, nobody notified.
        let c = parse("{id: x, kind: silence, type: detection, max_gap: 5m}").unwrap();
        assert_eq!((c.severity, c.for_.ms(), c.notify.len()), (Severity::Warning, 0, 0));
    }

    #[test]
    fn a_misspelled_kind_or_key_is_named_with_a_suggestion() {
        let errs = parse("{id: x, kind: rat}").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, "profiles.p.conditions[0].kind");
        assert!(errs[0].1.contains("`rat` is not a condition kind") && errs[0].1.contains("did you mean \"rate\""));
        let errs = parse("{id: x, kind: silence, type: detection, max_gap: 5m, severty: critical}").unwrap_err();
        assert_eq!(errs[0].0, "profiles.p.conditions[0].severty");
        assert!(errs[0].1.contains("unknown key for kind `silence`") && errs[0].1.contains("\"severity\""), "{errs:?}");
    }

    #[test]
    fn every_problem_of_a_condition_is_reported_at_once() {
        let errs = parse("{id: 'bad id', kind: silence, type: detection, max_gap: 5m, notify: ops, severity: loud}")
            .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        for want in
            ["profiles.p.conditions[0].id", "profiles.p.conditions[0].notify", "profiles.p.conditions[0].severity"]
        {
            assert!(paths.contains(&want), "{want} missing from {errs:?}");
        }
        assert!(errs.iter().any(|(_, m)| m.contains("it becomes a metric label")));
    }

    #[test]
    fn a_missing_id_is_an_error_not_a_nameless_condition() {
        let errs = parse("{kind: silence, type: detection, max_gap: 5m}").unwrap_err();
        assert!(errs.iter().any(|(p, _)| p == "profiles.p.conditions[0].id"), "{errs:?}");
    }
}
