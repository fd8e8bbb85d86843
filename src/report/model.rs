//! The record's types (`schema/report.v1.json`), built once by [`super::build`] and rendered by
//! `markdown.rs`, `csv.rs` and [`Report::to_json`]. Timestamps stay the summary's RFC 3339 text,
//! so the record repeats them to the millisecond exactly as the summary gave them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub report_version: u32,
    pub deployment_id: String,
    pub system: String,
    pub generated_by: GeneratedBy,
    /// One paragraph in plain words (the Markdown record's opening).
    pub summary: String,
    pub authorisation: Option<Authorisation>,
    pub operation: Operation,
    pub watchlist: Option<Watchlist>,
    pub activity: Activity,
    pub rates: Vec<Rate>,
    pub groups: Vec<GroupTable>,
    pub latency: Vec<Latency>,
    pub breaches: Vec<Breach>,
    pub conditions: Vec<ConditionRow>,
    pub deletions: Vec<Deletion>,
}

impl Report {
    /// The JSON record (`schema/report.v1.json`). Keys come out sorted, as `serde_json::Value`
    /// sorts them.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a report serialises")
    }

    /// A headline rate by id (`super::RATES`).
    pub fn rate(&self, id: &str) -> Option<&Rate> {
        self.rates.iter().find(|r| r.id == id)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GeneratedBy {
    pub ddtwatch_version: String,
    pub config_hash: Option<String>,
    pub summary_version: Option<u64>,
}

/// As authorised; never the officer's token.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Authorisation {
    pub rank: Option<String>,
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    pub location: Option<String>,
    pub purpose: Option<String>,
    pub max_list_size: Option<u64>,
    pub threshold_floor: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub phase: String,
    pub first_event: Option<String>,
    pub last_event: Option<String>,
    pub started_at: Option<String>,
    pub stopped_at: Option<String>,
    /// Cameras, readers and consoles that sent events.
    pub sources: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Watchlist {
    pub version: Option<String>,
    pub size: Option<u64>,
    pub built_at: Option<String>,
    pub age_hours_at_start: Option<f64>,
    pub under_18: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    /// "faces" or "plate reads".
    pub unit: String,
    pub processed: u64,
    pub alerts: u64,
    pub adjudicated: u64,
    pub engaged: u64,
    pub dismissed: u64,
    pub verified: u64,
    pub unadjudicated: u64,
    pub outcomes: u64,
    pub outcomes_by_result: BTreeMap<String, u64>,
    pub true_alerts: u64,
    pub false_alerts: u64,
    pub false_engaged: u64,
    pub misreads: u64,
    pub canary_passes: u64,
    pub canary_alerts: u64,
    pub invalid_events: u64,
}

impl Activity {
    /// Every count by its JSON name, in name order (the CSV's `activity` rows).
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        let mut c = vec![
            ("processed", self.processed),
            ("alerts", self.alerts),
            ("adjudicated", self.adjudicated),
            ("engaged", self.engaged),
            ("dismissed", self.dismissed),
            ("verified", self.verified),
            ("unadjudicated", self.unadjudicated),
            ("outcomes", self.outcomes),
            ("true_alerts", self.true_alerts),
            ("false_alerts", self.false_alerts),
            ("false_engaged", self.false_engaged),
            ("misreads", self.misreads),
            ("canary_passes", self.canary_passes),
            ("canary_alerts", self.canary_alerts),
            ("invalid_events", self.invalid_events),
        ];
        c.sort_unstable_by_key(|(name, _)| *name);
        c
    }
}

/// A proportion with its 95% interval and counts.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub id: String,
    pub label: String,
    pub x: u64,
    pub n: u64,
    pub value: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub method: String,
}

/// False alerts per alert by one attribute's recorded groups.
#[derive(Debug, Clone, Serialize)]
pub struct GroupTable {
    pub attribute: String,
    pub measure: String,
    pub min_per_group: u64,
    pub rows: Vec<GroupRow>,
    pub disparity: Option<Disparity>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub group: String,
    pub alerts: u64,
    pub false_alerts: u64,
    pub rate: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub too_few_to_judge: bool,
}

/// The disparity condition watching an attribute, as last evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct Disparity {
    pub condition: String,
    pub state: String,
    pub qualifying_groups: Option<u64>,
    pub ratio_max_min: Option<f64>,
    pub ratio_max_geomean: Option<f64>,
    pub p_value: Option<f64>,
    pub top_group: Option<String>,
    pub max_ratio: Option<f64>,
    pub alpha: Option<f64>,
    pub test: String,
}

/// Quantiles of one latency series, seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub series: String,
    pub unit: String,
    pub n: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Latency {
    /// The quantiles by name, in the CSV's order.
    pub fn quantiles(&self) -> [(&'static str, Option<f64>); 5] {
        [("p50", self.p50), ("p90", self.p90), ("p95", self.p95), ("p99", self.p99), ("max", self.max)]
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Breach {
    pub condition: String,
    pub kind: String,
    pub severity: String,
    pub started_at: Option<String>,
    pub fired_at: Option<String>,
    /// None: still open at the end of the record.
    pub resolved_at: Option<String>,
    pub value: Option<f64>,
    /// The condition's limit as configured (its keys depend on the kind).
    pub limit: Value,
    /// Receivers configured for the condition.
    pub notified: Vec<String>,
    /// Final results from the audit log, when one was available.
    pub notifications: Vec<Notification>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub receiver: String,
    /// "firing" or "resolved".
    pub notification: String,
    /// "delivered" or "failed".
    pub result: String,
    pub at: Option<String>,
    pub attempts: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConditionRow {
    pub id: String,
    pub kind: String,
    pub severity: String,
    pub state: String,
    pub value: Option<f64>,
    pub limit: Value,
    pub times_fired: u64,
    /// Statistical conditions: the budget per deployment-day, or `"per_look"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub false_breach_per_day: Option<Value>,
    /// The budget in plain words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub false_breach_budget: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Deletion {
    pub scope: String,
    pub up_to: Option<String>,
    pub count: Option<u64>,
}
