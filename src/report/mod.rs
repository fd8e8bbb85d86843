//! The publishable deployment record (INTERFACES.md "Deployment record"; DOMAIN.md: what forces
//! publish after each use, and why both false-alert rates are shown).
//!
//! Built from one deployment summary (`summary_version: 1`: the API's
//! `GET /api/v1/deployments/{id}` or an element of `replay --summary`) plus, when present, the
//! audit log's notification records; rendered as Markdown for the public, JSON
//! (`schema/report.v1.json`) and CSV for analysis. Every number comes from the summary unchanged,
//! so the record and the summary cannot disagree.
//!
//! Privacy: the summary carries no tokens, alert ids, list entries or free-text reasons (the
//! authorising officer's token is never serialised), and nothing here adds any: the record names
//! the authorising rank only.

mod csv;
mod markdown;
pub mod model;
pub mod source;
mod words;

pub use csv::csv;
pub use markdown::markdown;
pub use model::Report;
pub use words::{percent, thousands};

use crate::notify::key::NotificationKey;
use model::*;
use serde_json::Value;
use words::*;

/// CONDITIONS.md: `min_per_group` default when no disparity condition names the attribute.
pub const DEFAULT_MIN_PER_GROUP: u64 = 20;
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Md,
    Json,
    Csv,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "md" | "markdown" => Some(Format::Md),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    /// The name `parse` reads (and the API's `format` parameter).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Md => "md",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Md => "text/markdown; charset=utf-8",
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn render(self, report: &Report) -> String {
        match self {
            Format::Md => markdown(report),
            Format::Json => serde_json::to_string_pretty(&report.to_json()).expect("json") + "\n",
            Format::Csv => csv(report),
        }
    }
}

/// The rates every record shows, in order, with their wording.
pub(super) const RATES: &[(&str, &str)] = &[
    ("false_alerts_per_detection", "False alerts per {unit} processed"),
    ("false_alerts_per_alert", "False alerts per alert"),
    ("alerts_per_detection", "Alerts per {unit} processed"),
    ("override_rate", "Alerts dismissed by the operator (override rate)"),
    ("false_alert_engagement", "False alerts that officers acted on"),
    ("canary_recall", "Test subjects (canaries) correctly alerted"),
];

fn unit(system: &str) -> (&'static str, &'static str) {
    if system == "anpr" { ("plate read", "plate reads") } else { ("face", "faces") }
}

/// Builds the record of one deployment from its summary. `audit` holds audit-log records (any
/// kinds; only `notification` ones are used) to say which receivers were told of each breach, and
/// when. A field the summary lacks is null (or 0 for a count) in the record.
pub fn build(summary: &Value, audit: &[Value]) -> Report {
    let dep = str_of(&summary["deployment_id"]);
    let system = summary["system"].as_str().unwrap_or("unknown").to_string();
    let (one, units) = unit(&system);
    let c = &summary["counters"];
    let rates = RATES
        .iter()
        .filter_map(|(id, label)| {
            let r = summary["rates"].get(*id)?;
            Some(Rate {
                id: id.to_string(),
                label: label.replace("{unit}", one),
                x: num(&r["x"]),
                n: num(&r["n"]),
                value: r["value"].as_f64(),
                lower: r["lower"].as_f64(),
                upper: r["upper"].as_f64(),
                method: method_name(r["method"].as_str().unwrap_or("")).to_string(),
            })
        })
        .collect();
    // Final notification results with their keys, read once for all the breaches.
    let sent: Vec<(NotificationKey, &Value)> = audit
        .iter()
        .filter(|r| r["kind"] == "notification" && r["data"]["result"] != "retry")
        .filter_map(|r| Some((r["data"]["key"].as_str()?.parse().ok()?, r)))
        .collect();
    let breaches = arr(&summary["breaches"]).iter().map(|b| breach(&dep, b, &sent)).collect();
    let conditions = arr(&summary["conditions"])
        .iter()
        .map(|c| {
            let budget = crate::rules::Budget::from_json(&c["false_breach_per_day"]);
            ConditionRow {
                id: str_of(&c["id"]),
                kind: str_of(&c["kind"]),
                severity: str_of(&c["severity"]),
                state: str_of(&c["state"]),
                value: c["value"].as_f64(),
                limit: c["limit"].clone(),
                times_fired: num(&c["times_fired"]),
                false_breach_per_day: budget.map(|_| c["false_breach_per_day"].clone()),
                false_breach_budget: budget.map(|b| b.words()),
            }
        })
        .collect();
    let latency = summary["latency"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| Latency {
            series: k.clone(),
            unit: "seconds".into(),
            n: num(&v["n"]),
            p50: v["p50"].as_f64(),
            p90: v["p90"].as_f64(),
            p95: v["p95"].as_f64(),
            p99: v["p99"].as_f64(),
            max: v["max"].as_f64(),
        })
        .collect();
    let mut report = Report {
        report_version: REPORT_VERSION,
        deployment_id: dep,
        generated_by: GeneratedBy {
            ddtwatch_version: env!("CARGO_PKG_VERSION").into(),
            config_hash: summary["config_hash"].as_str().map(str::to_string),
            summary_version: summary["summary_version"].as_u64(),
        },
        summary: String::new(),
        authorisation: typed(&summary["authorisation"]),
        operation: Operation {
            phase: summary["phase"].as_str().unwrap_or("unknown").to_string(),
            first_event: ts(&summary["first_ts"]),
            last_event: ts(&summary["last_ts"]),
            started_at: ts(&summary["started_at"]),
            stopped_at: ts(&summary["stopped_at"]),
            sources: summary["sources"].as_array().map_or(0, Vec::len) as u64,
        },
        watchlist: typed(&summary["watchlist"]),
        activity: Activity {
            unit: units.to_string(),
            processed: num(&c["detections"]),
            alerts: num(&c["alerts"]),
            adjudicated: num(&c["adjudicated"]),
            engaged: num(&c["engaged"]),
            dismissed: num(&c["dismissed"]),
            verified: num(&c["verified"]),
            unadjudicated: num(&c["unadjudicated"]),
            outcomes: num(&c["outcomes"]),
            outcomes_by_result: summary["outcomes_by_result"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), num(v)))
                .collect(),
            true_alerts: num(&c["true_alerts"]),
            false_alerts: num(&c["false_alerts"]),
            false_engaged: num(&c["false_engaged"]),
            misreads: num(&c["misreads"]),
            canary_passes: num(&c["canary_passes"]),
            canary_alerts: num(&c["canary_alerts"]),
            invalid_events: num(&c["invalid"]),
        },
        rates,
        groups: group_tables(summary),
        latency,
        breaches,
        conditions,
        deletions: typed::<Vec<Deletion>>(&summary["deletions"]).unwrap_or_default(),
        system,
    };
    report.summary = summary_paragraph(&report);
    report
}

/// One breach of the summary, with the final results of its notifications (`sent`: audit
/// records of final results with their keys).
fn breach(dep: &str, b: &Value, sent: &[(NotificationKey, &Value)]) -> Breach {
    let condition = str_of(&b["condition"]);
    let started_at = ts(&b["started_at"]);
    let started_ms = started_at.as_deref().and_then(crate::time::parse_ts);
    let notifications = sent
        .iter()
        .filter_map(|(key, r)| {
            let ours = key.deployment == dep && key.condition == condition && Some(key.started_at) == started_ms;
            ours.then(|| Notification {
                receiver: str_of(&r["data"]["receiver"]),
                notification: key.state.as_str().to_string(),
                result: str_of(&r["data"]["result"]),
                at: ts(&r["ts"]),
                attempts: r["data"]["attempts"].as_u64(),
            })
        })
        .collect();
    Breach {
        kind: str_of(&b["kind"]),
        severity: str_of(&b["severity"]),
        fired_at: ts(&b["fired_at"]),
        resolved_at: ts(&b["resolved_at"]),
        value: b["value"].as_f64(),
        limit: b["limit"].clone(),
        notified: arr(&b["notify"]).iter().filter_map(|r| r.as_str().map(str::to_string)).collect(),
        notifications,
        condition,
        started_at,
    }
}

fn method_name(m: &str) -> &'static str {
    match m {
        "wilson_95" => "Wilson score interval, 95% confidence",
        "clopper_pearson_95" => "Clopper-Pearson exact interval, 95% confidence",
        _ => "95% confidence interval",
    }
}

/// Per-attribute tables of false alerts per alert by the subject's recorded group, with the
/// disparity test of the condition that watches that attribute (if any).
fn group_tables(summary: &Value) -> Vec<GroupTable> {
    let Some(groups) = summary["groups"].as_object() else { return Vec::new() };
    let conditions = arr(&summary["conditions"]);
    groups
        .iter()
        .map(|(attr, rows)| {
            let cond = conditions.iter().find(|c| {
                c["kind"] == "disparity"
                    && c["detail"]["attribute"] == attr.as_str()
                    && c["detail"]["source"] == "subject_groups"
            });
            let min = cond.and_then(|c| c["limit"]["min_per_group"].as_u64()).unwrap_or(DEFAULT_MIN_PER_GROUP);
            let rows = arr(rows)
                .iter()
                .map(|r| {
                    let alerts = num(&r["alerts"]);
                    GroupRow {
                        group: str_of(&r["group"]),
                        alerts,
                        false_alerts: num(&r["false_alerts"]),
                        rate: r["rate"].as_f64(),
                        lower: r["lower"].as_f64(),
                        upper: r["upper"].as_f64(),
                        too_few_to_judge: alerts < min,
                    }
                })
                .collect();
            let disparity = cond.map(|c| {
                let d = &c["detail"];
                Disparity {
                    condition: str_of(&c["id"]),
                    state: str_of(&c["state"]),
                    qualifying_groups: d["qualifying_groups"].as_u64(),
                    ratio_max_min: d["ratio_max_min"].as_f64(),
                    ratio_max_geomean: d["ratio_max_geomean"].as_f64(),
                    p_value: d["p_value"].as_f64(),
                    top_group: d["top_group"].as_str().map(str::to_string),
                    max_ratio: c["limit"]["max_ratio"].as_f64(),
                    alpha: c["limit"]["alpha"].as_f64(),
                    test: "two-sided Fisher exact test, highest-rate group against the others pooled".into(),
                }
            });
            GroupTable {
                attribute: attr.clone(),
                measure: "false alerts per alert, by the recorded group of the person on the list".into(),
                min_per_group: min,
                rows,
                disparity,
            }
        })
        .collect()
}

// ---------- reading the summary ----------

/// The array at `v`, or empty.
fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn ts(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// A part of the summary read into its record type (None when absent, null or malformed).
fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    if v.is_null() { None } else { serde_json::from_value(v.clone()).ok() }
}

// ---------- wording ----------

fn summary_paragraph(r: &Report) -> String {
    let units = &r.activity.unit;
    let a = &r.activity;
    let mut distinct: Vec<&str> = Vec::new();
    for b in &r.breaches {
        if !distinct.contains(&b.condition.as_str()) {
            distinct.push(&b.condition);
        }
    }
    let op = &r.operation;
    let from = op.started_at.as_ref().or(op.first_event.as_ref());
    let to = op.stopped_at.as_ref().or(op.last_event.as_ref());
    let mut s = format!(
        "This is the record of {} deployment {}, from {} to {}. {} {units} were processed and {} alerts raised. ",
        system_name(&r.system),
        r.deployment_id,
        date_time(from),
        date_time(to),
        thousands(a.processed),
        thousands(a.alerts),
    );
    s += &format!(
        "{} alerts were confirmed false: {} and {}. ",
        thousands(a.false_alerts),
        rate_words(r.rate("false_alerts_per_detection"), &format!("{units} processed")),
        rate_words(r.rate("false_alerts_per_alert"), "alerts"),
    );
    s += &format!("Operators acted on {} alerts and dismissed {}. ", thousands(a.engaged), thousands(a.dismissed));
    if distinct.is_empty() {
        s += "No condition set for this deployment was breached.";
    } else {
        s += &format!(
            "{} condition{} set for this deployment {} breached ({}); each breach is listed below with the notifications sent.",
            distinct.len(),
            if distinct.len() == 1 { "" } else { "s" },
            if distinct.len() == 1 { "was" } else { "were" },
            distinct.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_words_every_headline_rate() {
        let worded: Vec<&str> = RATES.iter().map(|(name, _)| *name).collect();
        let headline: Vec<&str> = crate::engine::HEADLINE_RATES.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(worded, headline, "a headline rate without wording would be missing from the record");
    }

    #[test]
    fn wording() {
        assert_eq!(percent(8.44425679429346e-05), "0.0084%");
        assert_eq!(percent(0.06333), "6.3%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(1.3877787807814457e-17), "0%");
        assert_eq!(percent(0.000_012_3), "0.0012%");
        assert_eq!(thousands(225_005), "225,005");
        assert_eq!(thousands(12), "12");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
