//! The record as Markdown, for the public.

use super::model::*;
use super::words::*;

/// The record in Markdown, for a non-technical reader.
pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let a = &r.activity;
    let units = a.unit.as_str();
    o += &format!("# Deployment record: {}\n\n", r.deployment_id);
    o += &format!("{}\n\n", r.summary);

    o += "## Authorisation\n\n";
    match &r.authorisation {
        None => o += "No authorisation was recorded for this deployment.\n\n",
        Some(au) => {
            o += &format!("- Authorised by: an officer of the rank of {}\n", opt(au.rank.as_ref()));
            o += &format!(
                "- Authorised from {} to {}\n",
                date_time(au.window_start.as_ref()),
                date_time(au.window_end.as_ref())
            );
            o += &format!("- Location: {}\n", opt(au.location.as_ref()));
            o += &format!("- Purpose: {}\n", opt(au.purpose.as_ref()));
            o += &format!(
                "- Lowest match threshold allowed: {}\n",
                au.threshold_floor.map(|v| v.to_string()).unwrap_or_else(|| "not recorded".into())
            );
            o += &format!(
                "- Largest watch list allowed: {}\n\n",
                au.max_list_size.map(|v| format!("{} entries", thousands(v))).unwrap_or_else(|| "not recorded".into())
            );
        }
    }

    o += "## When it ran\n\n";
    let op = &r.operation;
    o += &format!("- Started: {}\n", date_time(op.started_at.as_ref()));
    o += &format!("- Stopped: {}\n", date_time(op.stopped_at.as_ref()));
    o += &format!(
        "- First and last events seen: {} and {}\n",
        date_time(op.first_event.as_ref()),
        date_time(op.last_event.as_ref())
    );
    o += &format!("- Cameras and other sources reporting: {}\n", op.sources);
    o += &format!("- Final phase: {}\n\n", op.phase);

    o += "## Watch list\n\n";
    match &r.watchlist {
        None => o += "No watch-list details were reported.\n\n",
        Some(w) => {
            o += &format!("- Version in use: {}\n", opt(w.version.as_ref()));
            o += &format!("- Entries: {}\n", w.size.map(thousands).unwrap_or_else(|| "not reported".into()));
            o += &format!(
                "- Age when the deployment started: {}\n\n",
                w.age_hours_at_start.map(|h| format!("{h:.1} hours")).unwrap_or_else(|| "not reported".into())
            );
        }
    }

    o += "## What happened\n\n";
    o += "| | Count |\n|---|---:|\n";
    for (label, n) in [
        (format!("{} processed", capitalise(units)), a.processed),
        ("Alerts".to_string(), a.alerts),
        ("Alerts reviewed by an operator".to_string(), a.adjudicated),
        ("Alerts acted on (engaged)".to_string(), a.engaged),
        ("Alerts dismissed by the operator".to_string(), a.dismissed),
        ("Engagements verified by a second person".to_string(), a.verified),
        ("Alerts never reviewed in time".to_string(), a.unadjudicated),
        ("Alerts with a recorded outcome".to_string(), a.outcomes),
        ("Confirmed true alerts".to_string(), a.true_alerts),
        ("Confirmed false alerts".to_string(), a.false_alerts),
        ("False alerts that officers acted on".to_string(), a.false_engaged),
    ] {
        o += &format!("| {label} | {} |\n", thousands(n));
    }
    for (k, &n) in &a.outcomes_by_result {
        if n > 0 {
            o += &format!("| Outcome: {} | {} |\n", k.replace('_', " "), thousands(n));
        }
    }
    o += "\n";

    o += "## How accurate it was\n\n";
    o += "Two false-alert rates are shown because they answer different questions: how often a \
          member of the public passing the camera is wrongly flagged, and how often an alert \
          that officers receive is wrong.\n\n";
    o += "| Measure | Rate | 95% range | Counts |\n|---|---:|---:|---:|\n";
    for rr in &r.rates {
        o += &format!(
            "| {} | {} | {} | {} of {} |\n",
            rr.label,
            pct_cell(rr.value),
            interval_cell(rr.lower, rr.upper),
            thousands(rr.x),
            thousands(rr.n),
        );
    }
    let per_detection = r.rate("false_alerts_per_detection");
    let method = per_detection.map_or("95% confidence interval", |x| x.method.as_str());
    o += &format!(
        "\nThe range is a {method}: the true rate is very likely inside it. For example, false alerts \
         were {}.\n\n",
        rate_words(per_detection, &format!("{units} processed"))
    );

    o += "## Differences between groups of people\n\n";
    if r.groups.is_empty() {
        o += "No demographic groups were recorded.\n\n";
    }
    for g in &r.groups {
        let attr = &g.attribute;
        let min = g.min_per_group;
        o += &format!(
            "### By {attr}\n\nShare of alerts that were false, by the recorded {attr} of the person on the list. "
        );
        o += &format!(
            "Groups with fewer than {min} alerts are listed but marked \"too few to judge\": their rates are too uncertain to compare.\n\n"
        );
        o += "| Group | Alerts | False alerts | Rate | 95% range | |\n|---|---:|---:|---:|---:|---|\n";
        for row in &g.rows {
            o += &format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                row.group,
                thousands(row.alerts),
                thousands(row.false_alerts),
                pct_cell(row.rate),
                interval_cell(row.lower, row.upper),
                if row.too_few_to_judge { "too few to judge" } else { "" }
            );
        }
        match &g.disparity {
            None => o += "\nNo disparity test was set for this attribute.\n\n",
            Some(d) if d.qualifying_groups.unwrap_or(0) < 2 => {
                o += "\nToo few groups had enough alerts to compare: no disparity is judged.\n\n"
            }
            Some(d) => {
                o += &format!(
                    "\nThe highest rate ({}) is {:.2} times the lowest and {:.2} times the average (geometric mean) of the groups with enough alerts; \
                 the limit is {} times. A {} gives p = {} (a difference is judged real below {}). Condition state: {}.\n\n",
                    opt(d.top_group.as_ref()),
                    d.ratio_max_min.unwrap_or(f64::NAN),
                    d.ratio_max_geomean.unwrap_or(f64::NAN),
                    opt_num(d.max_ratio),
                    d.test,
                    d.p_value.map(|p| format!("{p:.4}")).unwrap_or_else(|| "–".into()),
                    opt_num(d.alpha),
                    d.state,
                );
            }
        }
    }

    o += "## How quickly people responded\n\n";
    let lat = &r.latency;
    if lat.is_empty() {
        o += "No response times were recorded.\n\n";
    } else {
        o +=
            "| Measure | Half within | 95% within | 99% within | Longest | Samples |\n|---|---:|---:|---:|---:|---:|\n";
        for l in lat {
            let label = match l.series.as_str() {
                "adjudication_latency" => "Alert to operator decision",
                "alert_latency" => "Capture to alert",
                "hit_latency" => "Read to hit",
                other => other,
            };
            let secs = |v: Option<f64>| v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "–".into());
            o += &format!(
                "| {label} | {} | {} | {} | {} | {} |\n",
                secs(l.p50),
                secs(l.p95),
                secs(l.p99),
                secs(l.max),
                thousands(l.n)
            );
        }
        o += "\n";
    }

    list_section(&mut o, "Breaches of the deployment's conditions", &r.breaches, "None.", |b| {
        let mut line = format!(
            "- **{}** ({}, {}): from {} to {}; value {} against limit {}.",
            b.condition,
            b.kind,
            b.severity,
            date_time_s(b.started_at.as_ref()),
            match &b.resolved_at {
                None => "the end of the record (still open)".into(),
                Some(t) => date_time_s(Some(t)),
            },
            value_cell(b.value),
            limit_words(&b.limit),
        );
        let base = b.condition.split('/').next().unwrap_or_default();
        if let Some(w) = r.conditions.iter().find(|c| c.id == base).and_then(|c| c.false_breach_budget.as_ref()) {
            line += &format!(" {w}");
        }
        if b.notifications.is_empty() {
            let to = &b.notified;
            line += &format!(" Receivers to notify: {}.", if to.is_empty() { "none".into() } else { to.join(", ") });
        } else {
            let parts: Vec<String> = b
                .notifications
                .iter()
                .map(|n| format!("{} {} {} at {}", n.receiver, n.notification, n.result, date_time_s(n.at.as_ref())))
                .collect();
            line += &format!(" Notifications: {}.", parts.join("; "));
        }
        line
    });
    let calibrated: Vec<&ConditionRow> = r.conditions.iter().filter(|c| c.false_breach_budget.is_some()).collect();
    list_section(
        &mut o,
        "How often the statistical alarms fire falsely",
        &calibrated,
        "No statistical conditions.",
        |c| format!("- **{}** ({}): {}", c.id, c.kind, c.false_breach_budget.as_deref().unwrap_or_default()),
    );
    if !calibrated.is_empty() {
        let total: f64 =
            calibrated.iter().filter_map(|c| c.false_breach_per_day.as_ref().and_then(|b| b.as_f64())).sum();
        o += &format!(
            "Each statistical condition fires only on evidence strong enough that, when nothing is wrong \
             (rates exactly at their limits, no difference between groups, a steady score distribution), it \
             fires falsely on at most that share of deployment-days. Together these conditions fire falsely \
             on at most {} of deployment-days. The statistics shown above are the familiar ones; the \
             decision rules, and what they assume, are in ddtwatch's docs/STATISTICS.md.\n\n",
            crate::report::words::percent(total.min(1.0))
        );
    }
    list_section(&mut o, "Deletion of data", &r.deletions, "No deletion was attested.", |d| {
        format!(
            "- {} deleted up to {}{}",
            d.scope.replace('_', " "),
            date_time(d.up_to.as_ref()),
            d.count.map(|n| format!(" ({} items)", thousands(n))).unwrap_or_default()
        )
    });

    o += "## About this record\n\n";
    o += &format!(
        "Produced by ddtwatch {} from configuration {}. It contains no images, identities, \
         watch-list entries, number plates, officer identifiers or alert identifiers.\n",
        r.generated_by.ddtwatch_version,
        r.generated_by.config_hash.as_deref().map(|h| &h[..h.len().min(12)]).unwrap_or("unknown"),
    );
    o
}

/// A `## title` section listing `items` one line each, or `empty` when there are none.
fn list_section<T>(o: &mut String, title: &str, items: &[T], empty: &str, line: impl Fn(&T) -> String) {
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

fn interval_cell(lower: Option<f64>, upper: Option<f64>) -> String {
    match (lower, upper) {
        (Some(l), Some(u)) => format!("{} – {}", percent(l), percent(u)),
        _ => "–".into(),
    }
}

fn pct_cell(v: Option<f64>) -> String {
    v.map(percent).unwrap_or_else(|| "–".into())
}

/// A number as JSON writes it ("1.0", "0.05"), or "not recorded".
fn opt_num(v: Option<f64>) -> String {
    v.map(|x| serde_json::Value::from(x).to_string()).unwrap_or_else(|| "not recorded".into())
}

fn limit_words(l: &serde_json::Value) -> String {
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

fn value_cell(v: Option<f64>) -> String {
    match v {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.4}"),
        None => "–".into(),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}
