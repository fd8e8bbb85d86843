//! The Alertmanager receiver's payload (INTERFACES.md "Receivers"; Alertmanager API v2
//! `POST /api/v2/alerts`, a JSON array of `postableAlert`).
//!
//! labels `alertname` (= condition id), `deployment`, `system`, `severity`, `condition_kind`;
//! annotations `summary`, `description`, `runbook_url`; `startsAt` = when the breach started;
//! `endsAt` = now + 4·resend while firing (CONDITIONS.md: re-sent every `resend`, so Alertmanager
//! keeps it active between re-sends and resolves it by itself if ddtwatch disappears), = now when
//! resolved. The labels hold no identities: deployment and condition ids, system and severity.

use serde_json::{Value, json};

use crate::event::{Millis, format_ts};

/// One `postableAlert` from a stored notification (a serialised [`crate::rules::Transition`]).
/// `generator` (the receiver's `generator_url`, ddtwatch's external address) makes the alert's
/// `generatorURL` link to the deployment's summary in ddtwatch's API; without it, empty.
pub fn alert(notification: &Value, firing: bool, now: Millis, resend_ms: i64, generator: Option<&str>) -> Value {
    let s = |k: &str| notification[k].as_str().unwrap_or("").to_string();
    let ends = if firing { now + 4 * resend_ms } else { now };
    let value = notification["value"].as_f64().map(|v| format!("{v}")).unwrap_or_else(|| "n/a".into());
    let mut annotations = json!({
        "summary": s("summary"),
        "description": format!(
            "{} {} on deployment {}: value {} against limit {}{}.{}",
            s("kind"),
            s("condition"),
            s("deployment_id"),
            value,
            notification["limit"],
            notification["window"].as_str().map(|w| format!(" over window {w}")).unwrap_or_default(),
            notification["false_breach_budget"].as_str().map(|w| format!(" {w}")).unwrap_or_default(),
        ),
    });
    if let Some(r) = notification["runbook"].as_str() {
        annotations["runbook_url"] = json!(r);
    }
    json!({
        "labels": {
            "alertname": s("condition"),
            "deployment": s("deployment_id"),
            "system": s("system"),
            "severity": s("severity"),
            "condition_kind": s("kind"),
        },
        "annotations": annotations,
        "startsAt": s("started_at"),
        "endsAt": format_ts(ends),
        "generatorURL": generator
            .map(|g| format!("{}/api/v1/deployments/{}", g.trim_end_matches('/'), s("deployment_id")))
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_times() {
        let n = json!({"deployment_id": "lfr-1", "system": "lfr", "condition": "threshold_floor",
            "kind": "state", "severity": "critical", "state": "firing", "started_at": "2026-04-25T09:00:00Z",
            "value": 0.5, "limit": {"min": 0.6}, "summary": "threshold below floor", "runbook": "https://r/x"});
        let now = 1_777_107_600_000; // 2026-04-25T09:00:00Z
        let a = alert(&n, true, now, 60_000, None);
        assert_eq!(a["labels"]["alertname"], "threshold_floor");
        assert_eq!(a["labels"]["condition_kind"], "state");
        assert_eq!(a["startsAt"], "2026-04-25T09:00:00Z");
        assert_eq!(a["endsAt"], "2026-04-25T09:04:00Z", "now + 4·resend");
        assert_eq!(a["annotations"]["runbook_url"], "https://r/x");
        assert_eq!(alert(&n, false, now, 60_000, None)["endsAt"], "2026-04-25T09:00:00Z", "resolved: endsAt = now");
        assert_eq!(a["generatorURL"], "");
        let linked = alert(&n, true, now, 60_000, Some("https://ddtwatch.example.org/"));
        assert_eq!(linked["generatorURL"], "https://ddtwatch.example.org/api/v1/deployments/lfr-1");
    }
}
