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
pub mod source;
mod words;

pub use csv::csv;
pub use markdown::markdown;
pub use words::{percent, thousands};

use crate::notify::key::NotificationKey;
use serde_json::{Value, json};
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

    pub fn render(self, report: &Value) -> String {
        match self {
            Format::Md => markdown(report),
            Format::Json => serde_json::to_string_pretty(report).expect("json") + "\n",
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

/// Builds the record of one deployment. `audit` holds audit-log records (any kinds; only
/// `notification` ones are used) to say which receivers were told of each breach, and when.
pub fn build(summary: &Value, audit: &[Value]) -> Value {
    let dep = summary["deployment_id"].as_str().unwrap_or_default();
    let system = summary["system"].as_str().unwrap_or("unknown");
    let (one, _) = unit(system);
    let c = &summary["counters"];
    let rates: Vec<Value> = RATES
        .iter()
        .filter_map(|(id, label)| {
            let r = summary["rates"].get(*id)?;
            Some(json!({
                "id": id,
                "label": label.replace("{unit}", one),
                "x": r["x"], "n": r["n"], "value": r["value"], "lower": r["lower"], "upper": r["upper"],
                "method": method_name(r["method"].as_str().unwrap_or("")),
            }))
        })
        .collect();
    let groups = group_tables(summary);
    let breaches: Vec<Value> = summary["breaches"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|b| {
            let breach = (
                dep,
                b["condition"].as_str().unwrap_or_default(),
                b["started_at"].as_str().and_then(crate::time::parse_ts),
            );
            let notifications: Vec<Value> = audit
                .iter()
                .filter(|r| r["kind"] == "notification")
                .filter(|r| r["data"]["result"] != "retry")
                .filter_map(|r| {
                    let key: NotificationKey = r["data"]["key"].as_str()?.parse().ok()?;
                    ((key.deployment.as_str(), key.condition.as_str(), Some(key.started_at)) == breach).then(|| {
                        json!({
                            "receiver": r["data"]["receiver"],
                            "notification": key.state.as_str(),
                            "result": r["data"]["result"],
                            "at": r["ts"],
                            "attempts": r["data"]["attempts"],
                        })
                    })
                })
                .collect();
            json!({
                "condition": b["condition"], "kind": b["kind"], "severity": b["severity"],
                "started_at": b["started_at"], "fired_at": b["fired_at"], "resolved_at": b["resolved_at"],
                "value": b["value"], "limit": b["limit"],
                "notified": b["notify"],
                "notifications": notifications,
            })
        })
        .collect();
    let conditions: Vec<Value> = summary["conditions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let mut row = json!({"id": c["id"], "kind": c["kind"], "severity": c["severity"], "state": c["state"],
                   "value": c["value"], "limit": c["limit"], "times_fired": c["times_fired"]});
            if let Some(b) = crate::rules::Budget::from_json(&c["false_breach_per_day"]) {
                row["false_breach_per_day"] = c["false_breach_per_day"].clone();
                row["false_breach_budget"] = json!(b.words());
            }
            row
        })
        .collect();
    let latency: Vec<Value> = summary["latency"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    json!({"series": k, "unit": "seconds", "n": v["n"], "p50": v["p50"], "p90": v["p90"],
                           "p95": v["p95"], "p99": v["p99"], "max": v["max"]})
                })
                .collect()
        })
        .unwrap_or_default();
    let mut report = json!({
        "report_version": REPORT_VERSION,
        "deployment_id": dep,
        "system": system,
        "generated_by": {
            "ddtwatch_version": env!("CARGO_PKG_VERSION"),
            "config_hash": summary["config_hash"],
            "summary_version": summary["summary_version"],
        },
        "summary": "",
        "authorisation": summary["authorisation"],
        "operation": {
            "phase": summary["phase"],
            "first_event": summary["first_ts"],
            "last_event": summary["last_ts"],
            "started_at": summary["started_at"],
            "stopped_at": summary["stopped_at"],
            "sources": summary["sources"].as_array().map_or(0, Vec::len),
        },
        "watchlist": summary["watchlist"],
        "activity": {
            "unit": unit(system).1,
            "processed": c["detections"],
            "alerts": c["alerts"],
            "adjudicated": c["adjudicated"],
            "engaged": c["engaged"],
            "dismissed": c["dismissed"],
            "verified": c["verified"],
            "unadjudicated": c["unadjudicated"],
            "outcomes": c["outcomes"],
            "outcomes_by_result": summary["outcomes_by_result"],
            "true_alerts": c["true_alerts"],
            "false_alerts": c["false_alerts"],
            "false_engaged": c["false_engaged"],
            "misreads": c["misreads"],
            "canary_passes": c["canary_passes"],
            "canary_alerts": c["canary_alerts"],
            "invalid_events": c["invalid"],
        },
        "rates": rates,
        "groups": groups,
        "latency": latency,
        "breaches": breaches,
        "conditions": conditions,
        "deletions": summary["deletions"].as_array().cloned().unwrap_or_default(),
    });
    report["summary"] = json!(summary_paragraph(&report));
    report
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
fn group_tables(summary: &Value) -> Vec<Value> {
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
            let rows: Vec<Value> = rows
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    let n = r["alerts"].as_u64().unwrap_or(0);
                    json!({"group": r["group"], "alerts": n, "false_alerts": r["false_alerts"],
                           "rate": r["rate"], "lower": r["lower"], "upper": r["upper"],
                           "too_few_to_judge": n < min})
                })
                .collect();
            let disparity = cond.map(|c| {
                let d = &c["detail"];
                json!({"condition": c["id"], "state": c["state"],
                       "qualifying_groups": d["qualifying_groups"],
                       "ratio_max_min": d["ratio_max_min"], "ratio_max_geomean": d["ratio_max_geomean"],
                       "p_value": d["p_value"], "top_group": d["top_group"],
                       "max_ratio": c["limit"]["max_ratio"], "alpha": c["limit"]["alpha"],
                       "test": "two-sided Fisher exact test, highest-rate group against the others pooled"})
            });
            json!({"attribute": attr, "measure": "false alerts per alert, by the recorded group of the person on the list",
                   "min_per_group": min, "rows": rows, "disparity": disparity})
        })
        .collect()
}

// ---------- wording ----------

/// The array at `v`, or empty.
pub(super) fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn summary_paragraph(r: &Value) -> String {
    let a = &r["activity"];
    let units = a["unit"].as_str().unwrap_or("faces");
    let fired: Vec<&str> = r["breaches"]
        .as_array()
        .map(|b| b.iter().filter_map(|b| b["condition"].as_str()).collect())
        .unwrap_or_default();
    let mut distinct: Vec<&str> = Vec::new();
    for f in &fired {
        if !distinct.contains(f) {
            distinct.push(f);
        }
    }
    let from =
        r["operation"]["started_at"].as_str().map_or(&r["operation"]["first_event"], |_| &r["operation"]["started_at"]);
    let to =
        r["operation"]["stopped_at"].as_str().map_or(&r["operation"]["last_event"], |_| &r["operation"]["stopped_at"]);
    let mut s = format!(
        "This is the record of {} deployment {}, from {} to {}. {} {units} were processed and {} alerts raised. ",
        system_name(r["system"].as_str().unwrap_or_default()),
        r["deployment_id"].as_str().unwrap_or_default(),
        date_time(from),
        date_time(to),
        thousands(num(&a["processed"])),
        thousands(num(&a["alerts"])),
    );
    s += &format!(
        "{} alerts were confirmed false: {} and {}. ",
        thousands(num(&a["false_alerts"])),
        rate_words(rate(r, "false_alerts_per_detection"), &format!("{units} processed")),
        rate_words(rate(r, "false_alerts_per_alert"), "alerts"),
    );
    s += &format!(
        "Operators acted on {} alerts and dismissed {}. ",
        thousands(num(&a["engaged"])),
        thousands(num(&a["dismissed"]))
    );
    if fired.is_empty() {
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
