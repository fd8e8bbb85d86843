//! The condition model: typed, validated conditions (built from a profile's YAML mappings by
//! [`super::parse_condition`], in `parse.rs`).

use serde::Serialize;

use crate::event::EventType;
use crate::stats::IntervalMethod;
use crate::time::Dur;

/// Counters of CONDITIONS.md usable as numerator or denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    Detections,
    Alerts,
    Adjudicated,
    Engaged,
    Dismissed,
    Verified,
    Outcomes,
    TrueAlerts,
    FalseAlerts,
    FalseEngaged,
    Misreads,
    Unadjudicated,
    CanaryPasses,
    CanaryAlerts,
    Invalid,
    Duplicates,
}

impl Counter {
    pub const ALL: [Counter; 16] = [
        Counter::Detections,
        Counter::Alerts,
        Counter::Adjudicated,
        Counter::Engaged,
        Counter::Dismissed,
        Counter::Verified,
        Counter::Outcomes,
        Counter::TrueAlerts,
        Counter::FalseAlerts,
        Counter::FalseEngaged,
        Counter::Misreads,
        Counter::Unadjudicated,
        Counter::CanaryPasses,
        Counter::CanaryAlerts,
        Counter::Invalid,
        Counter::Duplicates,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Detections => "detections",
            Counter::Alerts => "alerts",
            Counter::Adjudicated => "adjudicated",
            Counter::Engaged => "engaged",
            Counter::Dismissed => "dismissed",
            Counter::Verified => "verified",
            Counter::Outcomes => "outcomes",
            Counter::TrueAlerts => "true_alerts",
            Counter::FalseAlerts => "false_alerts",
            Counter::FalseEngaged => "false_engaged",
            Counter::Misreads => "misreads",
            Counter::Unadjudicated => "unadjudicated",
            Counter::CanaryPasses => "canary_passes",
            Counter::CanaryAlerts => "canary_alerts",
            Counter::Invalid => "invalid",
            Counter::Duplicates => "duplicates",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub(super) fn parse(s: &str) -> Option<Counter> {
        Counter::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// A counting window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// Everything since the deployment's first event (exact).
    Deployment,
    /// Events with ts in (now − W, now], kept in W/60 buckets.
    Duration(Dur),
    /// The last N values (drift only).
    Last(u64),
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Window::Deployment => f.write_str("deployment"),
            Window::Duration(d) => write!(f, "{d}"),
            Window::Last(n) => write!(f, "last {n}"),
        }
    }
}

/// The false-breach budget of a statistical condition: how its decision to fire is made
/// (docs/STATISTICS.md; CONDITIONS.md "Calibration under continuous evaluation").
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// At most this probability of a false firing in 24 h of continuous evaluation when the
    /// null holds (`false_breach_per_day`).
    PerDay(f64),
    /// CONDITIONS.md's per-look rule: the nominal test at every evaluation, no budget
    /// (`false_breach_per_day: per_look`). Kept to compare with and for conformance replays.
    PerLook,
}

/// Default `false_breach_per_day`: a false alarm on at most 1 in 100 deployment-days.
pub const DEFAULT_FALSE_BREACH_PER_DAY: f64 = 0.01;

impl Default for Budget {
    fn default() -> Self {
        Budget::PerDay(DEFAULT_FALSE_BREACH_PER_DAY)
    }
}

impl Budget {
    /// The per-day budget, or None under the per-look rule.
    pub fn per_day(self) -> Option<f64> {
        match self {
            Budget::PerDay(a) => Some(a),
            Budget::PerLook => None,
        }
    }
}

impl Budget {
    /// From its serialised form (a probability or "per_look"), e.g. a summary's condition.
    pub fn from_json(v: &serde_json::Value) -> Option<Budget> {
        match v {
            serde_json::Value::String(s) if s == "per_look" => Some(Budget::PerLook),
            v => v.as_f64().filter(|a| *a > 0.0 && *a < 1.0).map(Budget::PerDay),
        }
    }

    /// The budget in plain words, for records and notifications.
    pub fn words(self) -> String {
        match self {
            Budget::PerDay(a) => {
                let one_in = 1.0 / a;
                if (one_in - one_in.round()).abs() < 1e-6 * one_in {
                    format!(
                        "This alarm is designed to fire falsely on at most 1 in {} deployment-days.",
                        one_in.round() as u64
                    )
                } else {
                    format!("This alarm is designed to fire falsely on at most {:.3}% of deployment-days.", a * 100.0)
                }
            }
            Budget::PerLook => "This alarm tests its nominal significance level at every evaluation (the per-look \
                                rule), so over a deployment it fires falsely far more often than that level."
                .to_string(),
        }
    }
}

impl Serialize for Budget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Budget::PerDay(a) => s.serialize_f64(*a),
            Budget::PerLook => s.serialize_str("per_look"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachOn {
    /// Confident the rate is outside the band (interval entirely outside).
    Bound,
    /// The point estimate is outside the band.
    Estimate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateSpec {
    pub numerator: Counter,
    pub denominator: Counter,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub window: Window,
    pub min_denominator: u64,
    pub confidence: f64,
    pub interval: IntervalMethod,
    pub on: BreachOn,
    /// Applies with `on: bound` (an `estimate` rule is a plain threshold, with no budget).
    pub false_breach_per_day: Budget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupSource {
    SubjectGroups,
    EngagedGroups,
    Exposure,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisparitySpec {
    pub numerator: Counter,
    pub denominator: Counter,
    pub attribute: String,
    pub source: GroupSource,
    pub max_ratio: f64,
    pub alpha: f64,
    pub min_per_group: u64,
    pub window: Window,
    pub false_breach_per_day: Budget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftValue {
    Score,
    Quality,
    AlertScore,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum DriftMethod {
    Psi { edges: std::sync::Arc<[f64]>, max: f64 },
    Ks { alpha: f64 },
    PageHinkley { delta: f64, lambda: f64, hold: Dur },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    First(u64),
    /// Explicit baseline counts over the method's bins.
    Histogram(Vec<u64>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftSpec {
    pub value: DriftValue,
    pub method: DriftMethod,
    pub window: Window,
    pub min_samples: u64,
    pub baseline: Baseline,
    pub false_breach_per_day: Budget,
}

impl DriftSpec {
    /// Stands in for the spec while a deserialised drift state waits to be rebound to its
    /// condition (`engine::snapshot`); never evaluated.
    pub fn placeholder() -> Self {
        DriftSpec {
            value: DriftValue::Score,
            method: DriftMethod::Ks { alpha: 0.05 },
            window: Window::Deployment,
            min_samples: 0,
            baseline: Baseline::First(0),
            false_breach_per_day: Budget::PerLook,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantileValue {
    AdjudicationLatency,
    AlertLatency,
    EventLag,
}

impl QuantileValue {
    pub const ALL: [QuantileValue; 3] =
        [QuantileValue::AdjudicationLatency, QuantileValue::AlertLatency, QuantileValue::EventLag];

    pub fn as_str(self) -> &'static str {
        match self {
            QuantileValue::AdjudicationLatency => "adjudication_latency",
            QuantileValue::AlertLatency => "alert_latency",
            QuantileValue::EventLag => "event_lag",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantileSpec {
    pub value: QuantileValue,
    pub q: f64,
    pub max: Dur,
    pub min_samples: u64,
    pub window: Window,
    pub false_breach_per_day: Budget,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "check")]
pub enum StateCheck {
    ThresholdFloor { min: Option<f64> },
    ThresholdChanged,
    AlgorithmPinned { version: Option<String> },
    ListSizeMax { max: Option<u64> },
    ListAgeMax { max: Dur },
    ListUnder18Max { max: u64 },
    ListVersionKnown,
    AuthorisedWindow,
    ClockSkewMax { max: Dur },
    CaptureOk,
}

impl StateCheck {
    pub fn name(&self) -> &'static str {
        match self {
            StateCheck::ThresholdFloor { .. } => "threshold_floor",
            StateCheck::ThresholdChanged => "threshold_changed",
            StateCheck::AlgorithmPinned { .. } => "algorithm_pinned",
            StateCheck::ListSizeMax { .. } => "list_size_max",
            StateCheck::ListAgeMax { .. } => "list_age_max",
            StateCheck::ListUnder18Max { .. } => "list_under_18_max",
            StateCheck::ListVersionKnown => "list_version_known",
            StateCheck::AuthorisedWindow => "authorised_window",
            StateCheck::ClockSkewMax { .. } => "clock_skew_max",
            StateCheck::CaptureOk => "capture_ok",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Kind {
    Rate(RateSpec),
    Disparity(DisparitySpec),
    Drift(DriftSpec),
    Quantile(QuantileSpec),
    State(StateCheck),
    Silence { event_type: EventType, max_gap: Dur },
    Deadline { scope: String, within: Dur },
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Rate(_) => "rate",
            Kind::Disparity(_) => "disparity",
            Kind::Drift(_) => "drift",
            Kind::Quantile(_) => "quantile",
            Kind::State(_) => "state",
            Kind::Silence { .. } => "silence",
            Kind::Deadline { .. } => "deadline",
        }
    }

    /// The false-breach budget of a statistical condition (None for deterministic checks and
    /// for a rate judged `on: estimate`).
    pub fn budget(&self) -> Option<Budget> {
        match self {
            Kind::Rate(r) if r.on == BreachOn::Bound => Some(r.false_breach_per_day),
            Kind::Disparity(d) => Some(d.false_breach_per_day),
            Kind::Drift(d) => Some(d.false_breach_per_day),
            Kind::Quantile(q) => Some(q.false_breach_per_day),
            _ => None,
        }
    }

    /// The unit of the condition's value (and of its `min`/`max` limits): rates are proportions,
    /// latencies, gaps, ages and deadlines are seconds, everything else (disparity and drift
    /// statistics, scores, counts, 0/1 flags) is a plain number.
    pub fn value_unit(&self) -> ValueUnit {
        match self {
            Kind::Rate(_) => ValueUnit::Ratio,
            Kind::Quantile(_) | Kind::Silence { .. } | Kind::Deadline { .. } => ValueUnit::Seconds,
            Kind::State(StateCheck::ListAgeMax { .. } | StateCheck::ClockSkewMax { .. }) => ValueUnit::Seconds,
            Kind::Disparity(_) | Kind::Drift(_) | Kind::State(_) => ValueUnit::Number,
        }
    }

    /// The counting window the condition reads (used to know which windows to keep).
    pub fn window(&self) -> Option<Window> {
        match self {
            Kind::Rate(r) => Some(r.window),
            Kind::Disparity(d) => Some(d.window),
            Kind::Quantile(q) => Some(q.window),
            _ => None,
        }
    }
}

/// The unit of a condition's value ([`Kind::value_unit`]); each has its own metric, so that one
/// metric never mixes units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueUnit {
    Ratio,
    Seconds,
    Number,
}

/// One validated condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    pub id: String,
    #[serde(flatten)]
    pub kind: Kind,
    pub severity: Severity,
    #[serde(rename = "for")]
    pub for_: Dur,
    pub notify: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}
