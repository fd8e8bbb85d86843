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

use crate::notify::key::NotificationKey;
use serde_json::{Value, json};

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
const RATES: &[(&str, &str)] = &[
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
            json!({"id": c["id"], "kind": c["kind"], "severity": c["severity"], "state": c["state"],
                   "value": c["value"], "limit": c["limit"], "times_fired": c["times_fired"]})
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

/// A proportion as a percentage with two significant digits ("0.0084%", "6.3%", "100%").
pub fn percent(p: f64) -> String {
    let v = p * 100.0;
    // Below 1e-10 % is float noise from an interval computation (a Wilson lower bound of 0).
    if v.abs() < 1e-10 {
        return "0%".into();
    }
    let digits = (1 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s}%")
}

/// "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The array at `v`, or empty.
fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A `## title` section listing `items` one line each, or `empty` when there are none.
fn list_section(o: &mut String, title: &str, items: &[Value], empty: &str, line: impl Fn(&Value) -> String) {
    *o += &format!("## {title}\n\n");
    if items.is_empty() {
        *o += &format!("{empty}\n\n");
        return;
    }
    for item in items {
        *o += &line(item);
        o.push('\n');
    }
    o.push('\n');
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// "about 0.0084% of faces processed (between 0.0054% and 0.013%)".
fn rate_words(r: &Value, of: &str) -> String {
    match (r["value"].as_f64(), r["lower"].as_f64(), r["upper"].as_f64()) {
        (Some(v), Some(l), Some(u)) => {
            format!("{} of {of} (between {} and {})", percent(v), percent(l), percent(u))
        }
        _ => format!("not measurable: no {of}"),
    }
}

fn rate<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["rates"].as_array().and_then(|rs| rs.iter().find(|r| r["id"] == id)).unwrap_or(&Value::Null)
}

fn system_name(system: &str) -> &'static str {
    match system {
        "lfr" => "live facial recognition",
        "anpr" => "automatic number plate recognition",
        _ => "data-driven technology",
    }
}

fn date_time(ts: &Value) -> String {
    ts_words(ts, "%H:%M on %-d %B %Y (UTC)")
}

/// To the second (breaches and notifications).
fn date_time_s(ts: &Value) -> String {
    ts_words(ts, "%H:%M:%S on %-d %B %Y (UTC)")
}

fn ts_words(ts: &Value, fmt: &str) -> String {
    ts.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc).format(fmt).to_string())
        .unwrap_or_else(|| "an unknown time".into())
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

fn opt(v: &Value) -> String {
    match v {
        Value::Null => "not recorded".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn interval_cell(r: &Value) -> String {
    match (r["lower"].as_f64(), r["upper"].as_f64()) {
        (Some(l), Some(u)) => format!("{} – {}", percent(l), percent(u)),
        _ => "–".into(),
    }
}

fn pct_cell(v: &Value) -> String {
    v.as_f64().map(percent).unwrap_or_else(|| "–".into())
}

fn limit_words(l: &Value) -> String {
    match l.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| {
                let k = match k.as_str() {
                    "min" => "at least",
                    "max" => "at most",
                    "max_ratio" => "ratio at most",
                    "alpha" => "significance level",
                    "min_per_group" => "alerts per group at least",
                    other => other,
                };
                format!("{} {v}", k.replace('_', " "))
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "–".into(),
    }
}

fn value_cell(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.4}"),
        None => "–".into(),
    }
}

/// The record in Markdown, for a non-technical reader.
pub fn markdown(r: &Value) -> String {
    let mut o = String::new();
    let a = &r["activity"];
    let units = a["unit"].as_str().unwrap_or("faces");
    o += &format!("# Deployment record: {}\n\n", r["deployment_id"].as_str().unwrap_or_default());
    o += &format!("{}\n\n", r["summary"].as_str().unwrap_or_default());

    o += "## Authorisation\n\n";
    let au = &r["authorisation"];
    if au.is_null() {
        o += "No authorisation was recorded for this deployment.\n\n";
    } else {
        o += &format!("- Authorised by: an officer of the rank of {}\n", opt(&au["rank"]));
        o += &format!("- Authorised from {} to {}\n", date_time(&au["window_start"]), date_time(&au["window_end"]));
        o += &format!("- Location: {}\n", opt(&au["location"]));
        o += &format!("- Purpose: {}\n", opt(&au["purpose"]));
        o += &format!(
            "- Lowest match threshold allowed: {}\n",
            au["threshold_floor"].as_f64().map(|v| v.to_string()).unwrap_or_else(|| "not recorded".into())
        );
        o += &format!(
            "- Largest watch list allowed: {}\n\n",
            au["max_list_size"]
                .as_u64()
                .map(|v| format!("{} entries", thousands(v)))
                .unwrap_or_else(|| "not recorded".into())
        );
    }

    o += "## When it ran\n\n";
    let op = &r["operation"];
    o += &format!("- Started: {}\n", date_time(&op["started_at"]));
    o += &format!("- Stopped: {}\n", date_time(&op["stopped_at"]));
    o += &format!(
        "- First and last events seen: {} and {}\n",
        date_time(&op["first_event"]),
        date_time(&op["last_event"])
    );
    o += &format!("- Cameras and other sources reporting: {}\n", op["sources"]);
    o += &format!("- Final phase: {}\n\n", opt(&op["phase"]));

    o += "## Watch list\n\n";
    let w = &r["watchlist"];
    if w.is_null() {
        o += "No watch-list details were reported.\n\n";
    } else {
        o += &format!("- Version in use: {}\n", opt(&w["version"]));
        o += &format!("- Entries: {}\n", w["size"].as_u64().map(thousands).unwrap_or_else(|| "not reported".into()));
        o += &format!(
            "- Age when the deployment started: {}\n\n",
            w["age_hours_at_start"].as_f64().map(|h| format!("{h:.1} hours")).unwrap_or_else(|| "not reported".into())
        );
    }

    o += "## What happened\n\n";
    o += "| | Count |\n|---|---:|\n";
    for (label, key) in [
        (format!("{} processed", capitalise(units)), "processed"),
        ("Alerts".to_string(), "alerts"),
        ("Alerts reviewed by an operator".to_string(), "adjudicated"),
        ("Alerts acted on (engaged)".to_string(), "engaged"),
        ("Alerts dismissed by the operator".to_string(), "dismissed"),
        ("Engagements verified by a second person".to_string(), "verified"),
        ("Alerts never reviewed in time".to_string(), "unadjudicated"),
        ("Alerts with a recorded outcome".to_string(), "outcomes"),
        ("Confirmed true alerts".to_string(), "true_alerts"),
        ("Confirmed false alerts".to_string(), "false_alerts"),
        ("False alerts that officers acted on".to_string(), "false_engaged"),
    ] {
        o += &format!("| {label} | {} |\n", thousands(num(&a[key])));
    }
    if let Some(m) = a["outcomes_by_result"].as_object() {
        for (k, v) in m {
            if num(v) > 0 {
                o += &format!("| Outcome: {} | {} |\n", k.replace('_', " "), thousands(num(v)));
            }
        }
    }
    o += "\n";

    o += "## How accurate it was\n\n";
    o += "Two false-alert rates are shown because they answer different questions: how often a \
          member of the public passing the camera is wrongly flagged, and how often an alert \
          that officers receive is wrong.\n\n";
    o += "| Measure | Rate | 95% range | Counts |\n|---|---:|---:|---:|\n";
    for rr in arr(&r["rates"]) {
        o += &format!(
            "| {} | {} | {} | {} of {} |\n",
            rr["label"].as_str().unwrap_or_default(),
            pct_cell(&rr["value"]),
            interval_cell(rr),
            thousands(num(&rr["x"])),
            thousands(num(&rr["n"])),
        );
    }
    let method = rate(r, "false_alerts_per_detection")["method"].as_str().unwrap_or("95% confidence interval");
    o += &format!(
        "\nThe range is a {method}: the true rate is very likely inside it. For example, false alerts \
         were {}.\n\n",
        rate_words(rate(r, "false_alerts_per_detection"), &format!("{units} processed"))
    );

    o += "## Differences between groups of people\n\n";
    let groups = arr(&r["groups"]);
    if groups.is_empty() {
        o += "No demographic groups were recorded.\n\n";
    }
    for g in groups {
        let attr = g["attribute"].as_str().unwrap_or_default();
        let min = num(&g["min_per_group"]);
        o += &format!(
            "### By {attr}\n\nShare of alerts that were false, by the recorded {attr} of the person on the list. "
        );
        o += &format!(
            "Groups with fewer than {min} alerts are listed but marked \"too few to judge\": their rates are too uncertain to compare.\n\n"
        );
        o += "| Group | Alerts | False alerts | Rate | 95% range | |\n|---|---:|---:|---:|---:|---|\n";
        for row in arr(&g["rows"]) {
            o += &format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                row["group"].as_str().unwrap_or_default(),
                thousands(num(&row["alerts"])),
                thousands(num(&row["false_alerts"])),
                pct_cell(&row["rate"]),
                interval_cell(row),
                if row["too_few_to_judge"] == true { "too few to judge" } else { "" }
            );
        }
        let d = &g["disparity"];
        if d.is_null() {
            o += "\nNo disparity test was set for this attribute.\n\n";
        } else if num(&d["qualifying_groups"]) < 2 {
            o += "\nToo few groups had enough alerts to compare: no disparity is judged.\n\n";
        } else {
            o += &format!(
                "\nThe highest rate ({}) is {:.2} times the lowest and {:.2} times the average (geometric mean) of the groups with enough alerts; \
                 the limit is {} times. A {} gives p = {} (a difference is judged real below {}). Condition state: {}.\n\n",
                opt(&d["top_group"]),
                d["ratio_max_min"].as_f64().unwrap_or(f64::NAN),
                d["ratio_max_geomean"].as_f64().unwrap_or(f64::NAN),
                opt(&d["max_ratio"]),
                d["test"].as_str().unwrap_or_default(),
                d["p_value"].as_f64().map(|p| format!("{p:.4}")).unwrap_or_else(|| "–".into()),
                opt(&d["alpha"]),
                opt(&d["state"]),
            );
        }
    }

    o += "## How quickly people responded\n\n";
    let lat = arr(&r["latency"]);
    if lat.is_empty() {
        o += "No response times were recorded.\n\n";
    } else {
        o +=
            "| Measure | Half within | 95% within | 99% within | Longest | Samples |\n|---|---:|---:|---:|---:|---:|\n";
        for l in lat {
            let label = match l["series"].as_str().unwrap_or_default() {
                "adjudication_latency" => "Alert to operator decision",
                "alert_latency" => "Capture to alert",
                "hit_latency" => "Read to hit",
                other => other,
            };
            let secs = |v: &Value| v.as_f64().map(|s| format!("{s:.1} s")).unwrap_or_else(|| "–".into());
            o += &format!(
                "| {label} | {} | {} | {} | {} | {} |\n",
                secs(&l["p50"]),
                secs(&l["p95"]),
                secs(&l["p99"]),
                secs(&l["max"]),
                thousands(num(&l["n"]))
            );
        }
        o += "\n";
    }

    list_section(&mut o, "Breaches of the deployment's conditions", arr(&r["breaches"]), "None.", |b| {
        let mut line = format!(
            "- **{}** ({}, {}): from {} to {}; value {} against limit {}.",
            b["condition"].as_str().unwrap_or_default(),
            b["kind"].as_str().unwrap_or_default(),
            b["severity"].as_str().unwrap_or_default(),
            date_time_s(&b["started_at"]),
            if b["resolved_at"].is_null() {
                "the end of the record (still open)".into()
            } else {
                date_time_s(&b["resolved_at"])
            },
            value_cell(&b["value"]),
            limit_words(&b["limit"]),
        );
        let sent = arr(&b["notifications"]);
        if sent.is_empty() {
            let to: Vec<&str> = arr(&b["notified"]).iter().filter_map(Value::as_str).collect();
            line += &format!(" Receivers to notify: {}.", if to.is_empty() { "none".into() } else { to.join(", ") });
        } else {
            let parts: Vec<String> = sent
                .iter()
                .map(|n| {
                    format!(
                        "{} {} {} at {}",
                        n["receiver"].as_str().unwrap_or_default(),
                        n["notification"].as_str().unwrap_or_default(),
                        n["result"].as_str().unwrap_or_default(),
                        date_time_s(&n["at"])
                    )
                })
                .collect();
            line += &format!(" Notifications: {}.", parts.join("; "));
        }
        line
    });
    list_section(&mut o, "Deletion of data", arr(&r["deletions"]), "No deletion was attested.", |d| {
        format!(
            "- {} deleted up to {}{}",
            d["scope"].as_str().unwrap_or_default().replace('_', " "),
            date_time(&d["up_to"]),
            d["count"].as_u64().map(|n| format!(" ({} items)", thousands(n))).unwrap_or_default()
        )
    });

    o += "## About this record\n\n";
    o += &format!(
        "Produced by ddtwatch {} from configuration {}. It contains no images, identities, \
         watch-list entries, number plates, officer identifiers or alert identifiers.\n",
        r["generated_by"]["ddtwatch_version"].as_str().unwrap_or_default(),
        r["generated_by"]["config_hash"].as_str().map(|h| &h[..h.len().min(12)]).unwrap_or("unknown"),
    );
    o
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// One row per metric: `section,metric,group,value,lower,upper,numerator,denominator`.
pub fn csv(r: &Value) -> String {
    let mut rows: Vec<[Value; 8]> = Vec::new();
    // A row with a value only (no interval, no counts).
    let value_row = |section: &str, metric: Value, group: Value, value: Value| -> [Value; 8] {
        [json!(section), metric, group, value, Value::Null, Value::Null, Value::Null, Value::Null]
    };
    rows.push(value_row("deployment", json!("deployment_id"), Value::Null, r["deployment_id"].clone()));
    if let Some(a) = r["activity"].as_object() {
        for (k, v) in a.iter().filter(|(_, v)| v.is_number()) {
            rows.push(value_row("activity", json!(k), Value::Null, v.clone()));
        }
        for (k, v) in a.get("outcomes_by_result").and_then(Value::as_object).into_iter().flatten() {
            rows.push(value_row("outcomes", json!(k), Value::Null, v.clone()));
        }
    }
    for x in arr(&r["rates"]) {
        let c = |k: &str| x[k].clone();
        rows.push([json!("rate"), c("id"), Value::Null, c("value"), c("lower"), c("upper"), c("x"), c("n")]);
    }
    for g in arr(&r["groups"]) {
        let attr = g["attribute"].as_str().unwrap_or_default();
        for row in arr(&g["rows"]) {
            let c = |k: &str| row[k].clone();
            let section = json!("group_false_alerts_per_alert");
            rows.push([
                section,
                json!(attr),
                c("group"),
                c("rate"),
                c("lower"),
                c("upper"),
                c("false_alerts"),
                c("alerts"),
            ]);
        }
        let d = &g["disparity"];
        if !d.is_null() {
            for k in ["ratio_max_min", "ratio_max_geomean", "p_value"] {
                rows.push(value_row("disparity", json!(format!("{attr}.{k}")), d["top_group"].clone(), d[k].clone()));
            }
        }
    }
    for l in arr(&r["latency"]) {
        for q in ["p50", "p90", "p95", "p99", "max"] {
            let mut row =
                value_row("latency_seconds", json!(format!("{}.{q}", opt(&l["series"]))), Value::Null, l[q].clone());
            row[7] = l["n"].clone();
            rows.push(row);
        }
    }
    for b in arr(&r["breaches"]) {
        rows.push(value_row("breach", b["condition"].clone(), b["started_at"].clone(), b["value"].clone()));
    }
    let mut out = String::from("section,metric,group,value,lower,upper,numerator,denominator\n");
    for row in rows {
        out += &row.iter().map(csv_field).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(csv_field(&json!("a,b")), "\"a,b\"");
    }
}
