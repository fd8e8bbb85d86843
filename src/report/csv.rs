//! The record as CSV, one row per metric, for analysis.

use serde_json::{Value, json};

use super::model::Report;

/// One row per metric: `section,metric,group,value,lower,upper,numerator,denominator`.
pub fn csv(r: &Report) -> String {
    let mut rows: Vec<[Value; 8]> = Vec::new();
    // A row with a value only (no interval, no counts).
    let value_row = |section: &str, metric: Value, group: Value, value: Value| -> [Value; 8] {
        [json!(section), metric, group, value, Value::Null, Value::Null, Value::Null, Value::Null]
    };
    rows.push(value_row("deployment", json!("deployment_id"), Value::Null, json!(r.deployment_id)));
    for (k, v) in r.activity.counts() {
        rows.push(value_row("activity", json!(k), Value::Null, json!(v)));
    }
    for (k, v) in &r.activity.outcomes_by_result {
        rows.push(value_row("outcomes", json!(k), Value::Null, json!(v)));
    }
    for x in &r.rates {
        rows.push([
            json!("rate"),
            json!(x.id),
            Value::Null,
            json!(x.value),
            json!(x.lower),
            json!(x.upper),
            json!(x.x),
            json!(x.n),
        ]);
    }
    for g in &r.groups {
        let attr = &g.attribute;
        for row in &g.rows {
            rows.push([
                json!("group_false_alerts_per_alert"),
                json!(attr),
                json!(row.group),
                json!(row.rate),
                json!(row.lower),
                json!(row.upper),
                json!(row.false_alerts),
                json!(row.alerts),
            ]);
        }
        if let Some(d) = &g.disparity {
            for (k, v) in
                [("ratio_max_min", d.ratio_max_min), ("ratio_max_geomean", d.ratio_max_geomean), ("p_value", d.p_value)]
            {
                rows.push(value_row("disparity", json!(format!("{attr}.{k}")), json!(d.top_group), json!(v)));
            }
        }
    }
    for l in &r.latency {
        for (q, v) in l.quantiles() {
            let mut row = value_row("latency_seconds", json!(format!("{}.{q}", l.series)), Value::Null, json!(v));
            row[7] = json!(l.n);
            rows.push(row);
        }
    }
    for b in &r.breaches {
        rows.push(value_row("breach", json!(b.condition), json!(b.started_at), json!(b.value)));
    }
    let mut out = String::from("section,metric,group,value,lower,upper,numerator,denominator\n");
    for row in rows {
        out += &row.iter().map(csv_field).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    out
}

fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_separators_are_quoted() {
        assert_eq!(csv_field(&json!("a,b")), "\"a,b\"");
    }
}
