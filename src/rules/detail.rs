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
use crate::time::{Millis, format_ts};

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
        let window: [Option<String>; 2];
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
                window = [start.map(format_ts), end.map(format_ts)];
                J::Obj(vec![("window_start", window[0].as_deref().into()), ("window_end", window[1].as_deref().into())])
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
        let stamps: [String; 2];
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
                let last = last_detection.map(|(at, _)| format_ts(at));
                stamps = [last.unwrap_or_default(), String::new()];
                let direction = last_detection.map(|(_, s)| match s {
                    Shift::Up => "up",
                    Shift::Down => "down",
                });
                let mut pairs = vec![
                    ("statistic", J::F64(*statistic)),
                    ("detections", J::U64(*detections)),
                    ("last_detection", last_detection.map(|_| stamps[0].as_str()).into()),
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
                stamps = [format_ts(*last_seen), String::new()];
                J::Obj(vec![
                    ("source", J::Str(source)),
                    ("last_seen", J::Str(&stamps[0])),
                    ("type", J::Str(event_type)),
                ])
            }
            Detail::NotStopped => J::Obj(vec![("stopped", J::Bool(false))]),
            Detail::Deadline { stopped_at, due, attested } => {
                stamps = [format_ts(*stopped_at), format_ts(*due)];
                J::Obj(vec![
                    ("stopped_at", J::Str(&stamps[0])),
                    ("due", J::Str(&stamps[1])),
                    ("attested", J::Bool(*attested)),
                ])
            }
        };
        j.write(out);
    }

    /// The detail as a JSON value.
    pub fn value(&self) -> Value {
        parse(|out| self.write(out))
    }
}

/// Writes with `f` and reads the text back as a value (so the value is exactly the text's).
fn parse(f: impl FnOnce(&mut Vec<u8>)) -> Value {
    let mut out = Vec::with_capacity(128);
    f(&mut out);
    serde_json::from_slice(&out).expect("the writer writes JSON")
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::with_capacity(64);
        self.write(&mut out);
        f.write_str(std::str::from_utf8(&out).map_err(|_| std::fmt::Error)?)
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::with_capacity(128);
        self.write(&mut out);
        f.write_str(std::str::from_utf8(&out).map_err(|_| std::fmt::Error)?)
    }
}
