//! The record as Markdown, for the public.

use serde_json::Value;

use super::arr;
use super::words::*;

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
        let base = b["condition"].as_str().unwrap_or_default().split('/').next().unwrap_or_default();
        if let Some(w) =
            arr(&r["conditions"]).iter().find(|c| c["id"] == base).and_then(|c| c["false_breach_budget"].as_str())
        {
            line += &format!(" {w}");
        }
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
    let calibrated: Vec<Value> =
        arr(&r["conditions"]).iter().filter(|c| c["false_breach_budget"].is_string()).cloned().collect();
    list_section(
        &mut o,
        "How often the statistical alarms fire falsely",
        &calibrated,
        "No statistical conditions.",
        |c| {
            format!(
                "- **{}** ({}): {}",
                c["id"].as_str().unwrap_or_default(),
                c["kind"].as_str().unwrap_or_default(),
                c["false_breach_budget"].as_str().unwrap_or_default()
            )
        },
    );
    if !calibrated.is_empty() {
        let total: f64 = calibrated.iter().filter_map(|c| c["false_breach_per_day"].as_f64()).sum();
        o += &format!(
            "Each statistical condition fires only on evidence strong enough that, when nothing is wrong \
             (rates exactly at their limits, no difference between groups, a steady score distribution), it \
             fires falsely on at most that share of deployment-days. Together these conditions fire falsely \
             on at most {} of deployment-days. The statistics shown above are the familiar ones; the \
             decision rules, and what they assume, are in ddtwatch's docs/STATISTICS.md.\n\n",
            crate::report::words::percent(total.min(1.0))
        );
    }
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

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}
