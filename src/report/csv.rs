//! The record as CSV, one row per metric, for analysis.

use serde_json::{Value, json};

use super::arr;
use super::words::opt;

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
