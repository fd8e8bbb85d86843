//! The typed limit and detail of an evaluation. The evaluator fills them in every second for every
//! condition of every deployment, so they are plain data (numbers, the few strings a kind names);
//! JSON is written only where they leave the process (API, summary, transitions, metrics at
//! scrape time), by [`Limit::write`] / [`Detail::write`], and is the text the evaluator wrote
//! before they were typed, byte for byte (keys sorted as a `serde_json::Value` object sorts them;
//! numbers and strings written by serde_json; a non-finite float is `null`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::evaluation::J;
use super::model::GroupSource;
use crate::stats::DisparityResult;
use crate::stats::drift::Shift;
use crate::time::Millis;

/// What a condition's value is held against.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Limit {
    /// `{}`: no limit known (insufficient data before anything was read).
    #[default]
    None,
    /// A rate's band: `{"min"?, "max"?}`.
    Band { min: Option<f64>, max: Option<f64> },
    /// `{"max_ratio", "alpha"?, "min_per_group"}`: `alpha` only where it decides (per look).
    Disparity { max_ratio: f64, alpha: Option<f64>, min_per_group: u64 },
    /// `{"lambda", "delta", "hold"}` (hold in seconds).
    PageHinkley { lambda: f64, delta: f64, hold: f64 },
    /// `{"alpha", "critical"}`.
    Ks { alpha: f64, critical: f64 },
    /// One number: `{key: value}` (`max`, `min`, `expected`, `max_gap`; seconds where a time).
    Number(&'static str, f64),
    /// One count: `{key: value}` (`max`, `unknown_versions`).
    Count(&'static str, u64),
    /// `{"version"}`.
    Version(String),
    /// `{"window_start", "window_end"}` (null where not authorised).
    Window { start: Option<Millis>, end: Option<Millis> },
    /// `{"capture_ok": true}`.
    CaptureOk,
    /// `{"within", "scope"}` (within in seconds).
    Deadline { within: f64, scope: String },
}

/// The evidence of a calibrated decision, as a detail's `decision` object shows it:
/// `{"rule", "false_breach_per_day", "evidence", "boundary"}` (ln values rounded to 6 decimals for
/// display; the decision used the exact ones).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub rule: &'static str,
    pub budget: f64,
    pub ln: f64,
    pub boundary: f64,
}

/// The time-uniform KS band of a drift condition's current segment (`ks_band_segments`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsBand {
    pub budget: f64,
    pub segment_n: u64,
    pub segment_index: u64,
    pub segment_ks_d: f64,
    pub boundary: f64,
    pub crossed: Option<bool>,
}

/// A disparity table with its statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct DisparityDetail {
    pub attribute: String,
    pub source: GroupSource,
    pub result: DisparityResult,
    /// Under a budget: the evidence and the group it points at.
    pub decision: Option<(Decision, Option<String>)>,
}

/// A PSI comparison of the current window with the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct PsiDetail {
    pub psi: f64,
    pub baseline_n: u64,
    pub window_n: u64,
    pub baseline_full: bool,
    pub edges: Arc<[f64]>,
    pub baseline_counts: Vec<u64>,
    pub window_counts: Vec<u64>,
    pub decision: Option<KsBand>,
}

/// The kind-specific detail of an evaluation.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Detail {
    /// `{}`.
    #[default]
    None,
    Rate {
        x: u64,
        n: u64,
        method: &'static str,
        confidence: f64,
        on: &'static str,
        /// A numerator above its denominator: by how much (CONDITIONS.md).
        excess: Option<u64>,
        decision: Option<Decision>,
    },
    /// Shared: a memoised evaluation hands the same table on every second.
    Disparity(Arc<DisparityDetail>),
    PageHinkley {
        statistic: f64,
        detections: u64,
        last_detection: Option<(Millis, Shift)>,
        /// Under a budget: (budget, threshold λ, variance).
        decision: Option<(f64, f64, f64)>,
    },
    Psi(Arc<PsiDetail>),
    Ks {
        ks_d: f64,
        critical: f64,
        baseline_n: u64,
        window_n: u64,
        baseline_full: bool,
        bins: u64,
        decision: Option<KsBand>,
    },
    Quantile {
        q: f64,
        /// Seconds.
        value: Option<f64>,
        samples: u64,
        /// Whole-deployment and count windows under a budget.
        exceedances: Option<u64>,
        decision: Option<Decision>,
    },
    State {
        check: &'static str,
        sources_breaching: Vec<String>,
        active: bool,
    },
    Silence {
        source: String,
        last_seen: Millis,
        event_type: &'static str,
    },
    /// A deletion deadline before the deployment stopped: `{"stopped": false}`.
    NotStopped,
    Deadline {
        stopped_at: Millis,
        due: Millis,
        attested: bool,
    },
}

/// Rounded for display (the decisions use the exact values).
pub fn round6(x: f64) -> f64 {
    let x = x.clamp(-1e300, 1e300);
    (x * 1e6).round() / 1e6
}

impl Decision {
    fn j(&self) -> Vec<(&'static str, J<'static>)> {
        vec![
            ("rule", J::Str(self.rule)),
            ("false_breach_per_day", J::F64(self.budget)),
            ("evidence", J::F64(round6(self.ln))),
            ("boundary", J::F64(round6(self.boundary))),
        ]
    }
}

impl KsBand {
    fn j(&self) -> J<'static> {
        J::Obj(vec![
            ("rule", J::Str("ks_band_segments")),
            ("false_breach_per_day", J::F64(self.budget)),
            ("segment_n", J::U64(self.segment_n)),
            ("segment_index", J::U64(self.segment_index)),
            ("segment_ks_d", J::F64(round6(self.segment_ks_d))),
            ("boundary", J::F64(round6(self.boundary))),
            ("crossed", self.crossed.map_or(J::Null, J::Bool)),
        ])
    }
}

impl Limit {
    /// Writes the limit as JSON text.
    pub fn write(&self, out: &mut Vec<u8>) {
        let j = match self {
            Limit::None => J::Obj(vec![]),
            Limit::Band { min, max } => {
                let mut pairs = Vec::with_capacity(2);
                if let Some(v) = min {
                    pairs.push(("min", J::F64(*v)));
                }
                if let Some(v) = max {
                    pairs.push(("max", J::F64(*v)));
                }
                J::Obj(pairs)
            }
            Limit::Disparity { max_ratio, alpha, min_per_group } => {
                let mut pairs = vec![("max_ratio", J::F64(*max_ratio)), ("min_per_group", J::U64(*min_per_group))];
                if let Some(a) = alpha {
                    pairs.push(("alpha", J::F64(*a)));
                }
                J::Obj(pairs)
            }
            Limit::PageHinkley { lambda, delta, hold } => {
                J::Obj(vec![("lambda", J::F64(*lambda)), ("delta", J::F64(*delta)), ("hold", J::F64(*hold))])
            }
            Limit::Ks { alpha, critical } => J::Obj(vec![("alpha", J::F64(*alpha)), ("critical", J::F64(*critical))]),
            Limit::Number(k, v) => J::Obj(vec![(k, J::F64(*v))]),
            Limit::Count(k, v) => J::Obj(vec![(k, J::U64(*v))]),
            Limit::Version(v) => J::Obj(vec![("version", J::Str(v))]),
            Limit::Window { start, end } => {
                J::Obj(vec![("window_start", start.map_or(J::Null, J::Ts)), ("window_end", end.map_or(J::Null, J::Ts))])
            }
            Limit::CaptureOk => J::Obj(vec![("capture_ok", J::Bool(true))]),
            Limit::Deadline { within, scope } => J::Obj(vec![("within", J::F64(*within)), ("scope", J::Str(scope))]),
        };
        j.write(out);
    }

    /// The limit as a JSON value.
    pub fn value(&self) -> Value {
        parse(|out| self.write(out))
    }
}

impl Detail {
    /// Writes the detail as JSON text.
    pub fn write(&self, out: &mut Vec<u8>) {
        let j = match self {
            Detail::None => J::Obj(vec![]),
            Detail::Rate { x, n, method, confidence, on, excess, decision } => {
                let mut pairs = vec![
                    ("x", J::U64(*x)),
                    ("n", J::U64(*n)),
                    ("method", J::Str(method)),
                    ("confidence", J::F64(*confidence)),
                    ("on", J::Str(on)),
                ];
                if let Some(e) = excess {
                    pairs.push(("excess", J::U64(*e)));
                }
                if let Some(d) = decision {
                    pairs.push(("decision", J::Obj(d.j())));
                }
                J::Obj(pairs)
            }
            Detail::Disparity(d) => {
                // The table is serialised by serde (as it always was): written through a Value.
                let r = &d.result;
                let mut v = json!({
                    "attribute": d.attribute,
                    "source": d.source,
                    "ratio_max_min": r.ratio_max_min,
                    "ratio_max_geomean": r.ratio_max_geomean,
                    "p_value": r.p_value,
                    "top_group": r.top_group,
                    "qualifying_groups": r.qualifying,
                    "groups": r.groups,
                });
                if let Some((ev, group)) = &d.decision {
                    v["decision"] = json!({
                        "rule": ev.rule,
                        "false_breach_per_day": ev.budget,
                        "evidence": round6(ev.ln),
                        "boundary": round6(ev.boundary),
                        "group": group,
                    });
                }
                serde_json::to_writer(out, &v).expect("writing to a Vec cannot fail");
                return;
            }
            Detail::PageHinkley { statistic, detections, last_detection, decision } => {
                let direction = last_detection.map(|(_, s)| match s {
                    Shift::Up => "up",
                    Shift::Down => "down",
                });
                let mut pairs = vec![
                    ("statistic", J::F64(*statistic)),
                    ("detections", J::U64(*detections)),
                    ("last_detection", last_detection.map_or(J::Null, |(at, _)| J::Ts(at))),
                    ("direction", direction.into()),
                ];
                if let Some((budget, threshold, variance)) = decision {
                    pairs.push((
                        "decision",
                        J::Obj(vec![
                            ("rule", J::Str("page_hinkley_budget")),
                            ("false_breach_per_day", J::F64(*budget)),
                            ("threshold", J::F64(round6(*threshold))),
                            ("variance", J::F64(round6(*variance))),
                        ]),
                    ));
                }
                J::Obj(pairs)
            }
            Detail::Psi(p) => {
                let mut pairs = vec![
                    ("psi", J::F64(p.psi)),
                    ("baseline_n", J::U64(p.baseline_n)),
                    ("window_n", J::U64(p.window_n)),
                    ("baseline_full", J::Bool(p.baseline_full)),
                    ("edges", J::F64s(&p.edges)),
                    ("baseline_counts", J::U64s(&p.baseline_counts)),
                    ("window_counts", J::U64s(&p.window_counts)),
                ];
                if let Some(d) = &p.decision {
                    pairs.push(("decision", d.j()));
                }
                J::Obj(pairs)
            }
            Detail::Ks { ks_d, critical, baseline_n, window_n, baseline_full, bins, decision } => {
                let mut pairs = vec![
                    ("ks_d", J::F64(*ks_d)),
                    ("critical", J::F64(*critical)),
                    ("baseline_n", J::U64(*baseline_n)),
                    ("window_n", J::U64(*window_n)),
                    ("baseline_full", J::Bool(*baseline_full)),
                    ("bins", J::U64(*bins)),
                ];
                if let Some(d) = decision {
                    pairs.push(("decision", d.j()));
                }
                J::Obj(pairs)
            }
            Detail::Quantile { q, value, samples, exceedances, decision } => {
                let mut pairs = vec![("q", J::F64(*q)), ("value", (*value).into()), ("samples", J::U64(*samples))];
                if let Some(x) = exceedances {
                    pairs.push(("exceedances", J::U64(*x)));
                }
                if let Some(d) = decision {
                    pairs.push(("decision", J::Obj(d.j())));
                }
                J::Obj(pairs)
            }
            Detail::State { check, sources_breaching, active } => J::Obj(vec![
                ("check", J::Str(check)),
                ("sources_breaching", J::Strs(sources_breaching)),
                ("active", J::Bool(*active)),
            ]),
            Detail::Silence { source, last_seen, event_type } => {
                J::Obj(vec![("source", J::Str(source)), ("last_seen", J::Ts(*last_seen)), ("type", J::Str(event_type))])
            }
            Detail::NotStopped => J::Obj(vec![("stopped", J::Bool(false))]),
            Detail::Deadline { stopped_at, due, attested } => {
                J::Obj(vec![("stopped_at", J::Ts(*stopped_at)), ("due", J::Ts(*due)), ("attested", J::Bool(*attested))])
            }
        };
        j.write(out);
    }

    /// The detail as a JSON value.
    pub fn value(&self) -> Value {
        parse(|out| self.write(out))
    }
}

impl Limit {
    /// The limit's numbers, keys sorted, as [`Limit::value`]'s object holds them (a non-finite
    /// number is shown as null, so it is not one): what `/metrics` exports, without writing JSON.
    pub fn numbers(&self) -> impl Iterator<Item = (&'static str, f64)> {
        let pairs: [Option<(&'static str, f64)>; 3] = match self {
            Limit::None | Limit::Version(_) | Limit::Window { .. } | Limit::CaptureOk => [None, None, None],
            Limit::Band { min, max } => [max.map(|v| ("max", v)), min.map(|v| ("min", v)), None],
            Limit::Disparity { max_ratio, alpha, min_per_group } => [
                alpha.map(|a| ("alpha", a)),
                Some(("max_ratio", *max_ratio)),
                Some(("min_per_group", *min_per_group as f64)),
            ],
            Limit::PageHinkley { lambda, delta, hold } => {
                [Some(("delta", *delta)), Some(("hold", *hold)), Some(("lambda", *lambda))]
            }
            Limit::Ks { alpha, critical } => [Some(("alpha", *alpha)), Some(("critical", *critical)), None],
            Limit::Number(k, v) => [Some((k, *v)), None, None],
            Limit::Count(k, v) => [Some((k, *v as f64)), None, None],
            Limit::Deadline { within, .. } => [Some(("within", *within)), None, None],
        };
        pairs.into_iter().flatten().filter(|(_, v)| v.is_finite())
    }
}

impl Detail {
    /// The detail's top-level number `key` as [`Detail::value`] holds it, for the statistics
    /// `/metrics` exports (`ratio_max_min`, `ratio_max_geomean`, `p_value`, `psi`, `ks_d`,
    /// `critical`, `statistic`); None for any other key.
    pub fn number(&self, key: &str) -> Option<f64> {
        let v = match (self, key) {
            (Detail::Disparity(d), "ratio_max_min") => d.result.ratio_max_min,
            (Detail::Disparity(d), "ratio_max_geomean") => d.result.ratio_max_geomean,
            (Detail::Disparity(d), "p_value") => d.result.p_value,
            (Detail::Psi(p), "psi") => Some(p.psi),
            (Detail::Ks { ks_d, .. }, "ks_d") => Some(*ks_d),
            (Detail::Ks { critical, .. }, "critical") => Some(*critical),
            (Detail::PageHinkley { statistic, .. }, "statistic") => Some(*statistic),
            _ => None,
        };
        v.filter(|x| x.is_finite())
    }

    /// A calibrated decision's statistic over its threshold, on one linear scale for every kind,
    /// firing at 1 (docs/STATISTICS.md): e-value / (1/α) and Shiryaev–Roberts R / A (both from
    /// their logarithms), segment KS D / band for PSI and KS, statistic / threshold for
    /// Page–Hinkley. Capped at 1,000 (a breach far past its boundary). From the values the detail
    /// shows (rounded as shown). None without a decision.
    pub fn evidence_ratio(&self) -> Option<f64> {
        let finite = |x: f64| Some(x).filter(|x| x.is_finite());
        let positive = |x: f64| finite(x).filter(|x| *x > 0.0);
        let band = |b: &KsBand| Some(finite(round6(b.segment_ks_d))? / positive(round6(b.boundary))?);
        let evidence = |d: &Decision| Some((finite(round6(d.ln))? - finite(round6(d.boundary))?).min(7.0).exp());
        let r = match self {
            Detail::Rate { decision: Some(d), .. } | Detail::Quantile { decision: Some(d), .. } => evidence(d)?,
            Detail::Disparity(d) => evidence(&d.decision.as_ref()?.0)?,
            Detail::Psi(p) => band(p.decision.as_ref()?)?,
            Detail::Ks { decision: Some(b), .. } => band(b)?,
            Detail::PageHinkley { statistic, decision: Some((_, threshold, _)), .. } => {
                finite(*statistic)? / positive(round6(*threshold))?
            }
            _ => return None,
        };
        Some(r.clamp(0.0, 1000.0))
    }
}

/// Writes with `f` and reads the text back as a value (so the value is exactly the text's).
fn parse(f: impl FnOnce(&mut Vec<u8>)) -> Value {
    let mut out = Vec::with_capacity(128);
    f(&mut out);
    serde_json::from_slice(&out).expect("the writer writes JSON")
}

/// Shows what `write` writes.
fn show(f: &mut std::fmt::Formatter<'_>, write: impl FnOnce(&mut Vec<u8>)) -> std::fmt::Result {
    let mut out = Vec::with_capacity(128);
    write(&mut out);
    f.write_str(std::str::from_utf8(&out).map_err(|_| std::fmt::Error)?)
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        show(f, |out| self.write(out))
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        show(f, |out| self.write(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::disparity;

    /// What `/metrics` read from the JSON before the typed accessors (the reference).
    fn evidence_ratio_of(detail: &Value) -> Option<f64> {
        let d = &detail["decision"];
        let r = match d["rule"].as_str()? {
            "ks_band_segments" => d["segment_ks_d"].as_f64()? / d["boundary"].as_f64().filter(|b| *b > 0.0)?,
            "page_hinkley_budget" => detail["statistic"].as_f64()? / d["threshold"].as_f64().filter(|b| *b > 0.0)?,
            _ => (d["evidence"].as_f64()? - d["boundary"].as_f64()?).min(7.0).exp(),
        };
        Some(r.clamp(0.0, 1000.0))
    }

    fn limits(x: f64) -> Vec<Limit> {
        vec![
            Limit::None,
            Limit::Band { min: Some(x), max: Some(0.25) },
            Limit::Band { min: None, max: Some(x) },
            Limit::Disparity { max_ratio: x, alpha: Some(0.05), min_per_group: 20 },
            Limit::Disparity { max_ratio: 1.25, alpha: None, min_per_group: 7 },
            Limit::PageHinkley { lambda: 50.0, delta: x, hold: 900.0 },
            Limit::Ks { alpha: 0.01, critical: x },
            Limit::Number("max_gap", x),
            Limit::Count("max", 2000),
            Limit::Count("unknown_versions", 0),
            Limit::Version("v1".into()),
            Limit::Window { start: Some(0), end: None },
            Limit::CaptureOk,
            Limit::Deadline { within: x, scope: "s".into() },
        ]
    }

    fn details(x: f64) -> Vec<Detail> {
        let decision = Decision { rule: "e_process", budget: 0.01, ln: x, boundary: 4.605170186 };
        let band = KsBand {
            budget: 0.01,
            segment_n: 10,
            segment_index: 1,
            segment_ks_d: x,
            boundary: 0.0756189,
            crossed: Some(false),
        };
        let rows = vec![("a".to_string(), 3, 40), ("b".to_string(), 9, 41)];
        vec![
            Detail::None,
            Detail::Rate {
                x: 1,
                n: 2,
                method: "wilson",
                confidence: 0.95,
                on: "bound",
                excess: None,
                decision: Some(decision),
            },
            Detail::Quantile { q: 0.95, value: Some(x), samples: 3, exceedances: Some(1), decision: Some(decision) },
            Detail::Disparity(Arc::new(DisparityDetail {
                attribute: "sex".into(),
                source: GroupSource::SubjectGroups,
                result: disparity(&rows, 20, 0.95),
                decision: Some((decision, Some("b".into()))),
            })),
            Detail::Psi(Arc::new(PsiDetail {
                psi: x,
                baseline_n: 10,
                window_n: 10,
                baseline_full: true,
                edges: Arc::from([0.0, 0.5]),
                baseline_counts: vec![5, 5],
                window_counts: vec![4, 6],
                decision: Some(band),
            })),
            Detail::Ks {
                ks_d: x,
                critical: f64::NAN,
                baseline_n: 1,
                window_n: 0,
                baseline_full: false,
                bins: 2,
                decision: Some(band),
            },
            Detail::Ks {
                ks_d: 0.1,
                critical: x,
                baseline_n: 1,
                window_n: 1,
                baseline_full: true,
                bins: 2,
                decision: None,
            },
            Detail::PageHinkley {
                statistic: x,
                detections: 1,
                last_detection: Some((0, Shift::Up)),
                decision: Some((0.01, 50.0, 0.01)),
            },
            Detail::PageHinkley { statistic: 1.0, detections: 0, last_detection: None, decision: Some((0.01, x, 0.0)) },
            Detail::State { check: "capture_ok", sources_breaching: vec!["cam-\"1".into()], active: true },
            Detail::Silence { source: "cam-1".into(), last_seen: 1, event_type: "detection" },
            Detail::NotStopped,
            Detail::Deadline { stopped_at: 0, due: 1000, attested: false },
        ]
    }

    const SAMPLES: [f64; 9] = [0.0, -0.0, 0.1, 1.0 / 3.0, 12.5, -7.25, 1e-300, f64::NAN, f64::INFINITY];

    /// The typed accessors give exactly what reading the written JSON gives.
    #[test]
    fn typed_numbers_equal_the_json_ones() {
        for x in SAMPLES {
            for limit in limits(x) {
                let json: Vec<(String, f64)> = match limit.value() {
                    Value::Object(m) => m.into_iter().filter_map(|(k, v)| Some((k, v.as_f64()?))).collect(),
                    other => panic!("a limit is an object: {other}"),
                };
                let typed: Vec<(String, f64)> = limit.numbers().map(|(k, v)| (k.to_string(), v)).collect();
                assert_eq!(format!("{typed:?}"), format!("{json:?}"), "{limit:?}");
            }
            for detail in details(x) {
                let v = detail.value();
                for key in ["ratio_max_min", "ratio_max_geomean", "p_value", "psi", "ks_d", "critical", "statistic"] {
                    let want = v.get(key).and_then(|v| v.as_f64());
                    assert_eq!(format!("{:?}", detail.number(key)), format!("{want:?}"), "{key} of {detail:?}");
                }
                let want = evidence_ratio_of(&v);
                assert_eq!(format!("{:?}", detail.evidence_ratio()), format!("{want:?}"), "{detail:?}");
            }
        }
    }

    /// Each kind is shown with its keys (sorted) and values as the API documents them.
    #[test]
    fn limits_and_details_are_shown_as_documented() {
        let texts: Vec<String> = limits(0.5).iter().map(|l| l.to_string()).collect();
        assert_eq!(texts[2], r#"{"max":0.5}"#);
        assert_eq!(texts[3], r#"{"alpha":0.05,"max_ratio":0.5,"min_per_group":20}"#);
        assert_eq!(texts[11], r#"{"window_end":null,"window_start":"1970-01-01T00:00:00Z"}"#);
        assert_eq!(texts[13], r#"{"scope":"s","within":0.5}"#);
        let d: Vec<String> = details(0.5).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            d[1],
            r#"{"confidence":0.95,"decision":{"boundary":4.60517,"evidence":0.5,"false_breach_per_day":0.01,"rule":"e_process"},"method":"wilson","n":2,"on":"bound","x":1}"#
        );
        assert_eq!(
            d[7],
            r#"{"decision":{"false_breach_per_day":0.01,"rule":"page_hinkley_budget","threshold":50.0,"variance":0.01},"detections":1,"direction":"up","last_detection":"1970-01-01T00:00:00Z","statistic":0.5}"#
        );
        assert_eq!(d[9], r#"{"active":true,"check":"capture_ok","sources_breaching":["cam-\"1"]}"#);
        assert_eq!(d[12], r#"{"attested":false,"due":"1970-01-01T00:00:01Z","stopped_at":"1970-01-01T00:00:00Z"}"#);
        assert!(d[3].contains(r#""decision":{"boundary":4.60517,"evidence":0.5,"false_breach_per_day":0.01,"group":"b","rule":"e_process"}"#), "{}", d[3]);
    }
}
