//! Hot reload of `ddtwatch run` (a real process): a valid change keeps statistics and the open
//! breach (no second firing), an invalid one is rejected and counted while the old config stays,
//! and a relaxed limit resolves the breach.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "reload-test-token";

fn config(floor: &str) -> String {
    format!(
        r#"http: {{listen: "127.0.0.1:PORT", token_env: DDTWATCH_TEST_TOKEN}}
clock: event
state_dir: STATE
reload_interval: 100ms
sources: [{{kind: http}}]
dead_letter: {{kind: discard}}
groups: {{sex: [female, male, unknown]}}
defaults: {{lfr: lfr}}
receivers: {{ops: {{kind: log}}}}
profiles:
  lfr:
    conditions:
      - {{id: threshold_floor, kind: state, check: threshold_floor, min: {floor}, severity: critical, notify: [ops]}}
"#
    )
}

/// Polls `f` every 50 ms until it returns Some, failing after 20 s.
async fn until<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event(id: &str, ty: &str, ts: &str, extra: Value) -> Value {
    let mut v = json!({"schema_version": 1, "event_id": id, "deployment_id": "lfr-r", "system": "lfr",
        "source_id": "cam-1", "type": ty, "ts": ts});
    v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    v
}

#[tokio::test]
async fn reload_keeps_statistics_and_breaches_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let path = dir.path().join("ddtwatch.yaml");
    let state = dir.path().join("state");
    let fill = |text: String| text.replace("PORT", &port.to_string()).replace("STATE", &state.to_string_lossy());
    let write = |floor: &str| std::fs::write(&path, fill(config(floor))).unwrap();
    write("0.6");
    let _server = common::spawn_run_env(&path, &[("DDTWATCH_TEST_TOKEN", TOKEN)]);
    let base = format!("http://127.0.0.1:{port}");
    let c = ddtwatch::notify::http_client();
    until("readyz", || async { c.get(format!("{base}/readyz")).send().await.ok().filter(|r| r.status() == 200) }).await;
    let post = |events: Vec<Value>| {
        let body = events.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        c.post(format!("{base}/api/v1/events")).bearer_auth(TOKEN).body(body).send()
    };
    let r = post(vec![
        event("e1", "deployment", "2026-04-25T09:00:00Z", json!({"phase": "started"})),
        event("e2", "status", "2026-04-25T09:00:00Z", json!({"threshold": 0.5})),
        event("e3", "detection", "2026-04-25T09:00:01Z", json!({"count": 7, "scores": [0.1, 0.2]})),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let condition =
        |d: &Value| d["conditions"].as_array().unwrap().iter().find(|c| c["id"] == "threshold_floor").cloned();
    let summary = || async {
        c.get(format!("{base}/api/v1/deployments/lfr-r"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?
            .json::<Value>()
            .await
            .ok()
    };
    let metrics = || async { c.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok() };
    let d = summary().await.unwrap();
    assert_eq!(condition(&d).unwrap()["state"], "firing");
    assert_eq!(condition(&d).unwrap()["times_fired"], 1);
    let first_hash =
        c.get(format!("{base}/api/v1/config")).bearer_auth(TOKEN).send().await.unwrap().json::<Value>().await.unwrap()
            ["config_hash"]
            .clone();

    // A stricter-but-still-breached limit: same breach, statistics kept, no second firing.
    write("0.55");
    until("reload to 0.55", || async {
        let d = summary().await?;
        (condition(&d)?["limit"]["min"] == json!(0.55) || d["config_hash"] != first_hash).then_some(d)
    })
    .await;
    post(vec![event("e4", "detection", "2026-04-25T09:00:02Z", json!({"count": 3, "scores": [0.3]}))]).await.unwrap();
    let d = summary().await.unwrap();
    let cond = condition(&d).unwrap();
    assert_eq!(cond["limit"]["min"], json!(0.55));
    assert_eq!(cond["state"], "firing");
    assert_eq!(cond["times_fired"], 1, "a reload must not fire the open breach again");
    assert_eq!(d["counters"]["detections"], 10, "statistics survive the reload");
    let m = metrics().await.unwrap();
    assert!(m.contains(r#"ddtwatch_transitions_total{state="firing"} 1"#), "{m}");
    assert!(m.contains(r#"ddtwatch_config_reloads_total{result="success"} 1"#));

    // An invalid file: rejected, counted once, old config in force.
    std::fs::write(&path, fill(config("0.55")).replace("check:", "chek:")).unwrap();
    until("rejected reload", || async {
        metrics().await.filter(|m| m.contains(r#"ddtwatch_config_reloads_total{result="failure"} 1"#))
    })
    .await;
    let d = summary().await.unwrap();
    assert_eq!(condition(&d).unwrap()["limit"]["min"], json!(0.55));
    // While the rejected file is still there, the gauge the alert reads stays 0 (the failure
    // counter alone would let the alert resolve after its window).
    assert!(metrics().await.unwrap().contains("ddtwatch_config_last_reload_successful 0"));

    // Relaxing the floor below the threshold resolves the breach at the next evaluation.
    write("0.4");
    until("reload to 0.4", || async {
        metrics().await.filter(|m| m.contains(r#"ddtwatch_config_reloads_total{result="success"} 2"#))
    })
    .await;
    post(vec![event("e5", "detection", "2026-04-25T09:00:03Z", json!({"count": 1, "scores": [0.3]}))]).await.unwrap();
    let d = summary().await.unwrap();
    let cond = condition(&d).unwrap();
    assert_eq!(cond["state"], "ok");
    assert_eq!(cond["times_fired"], 1);
    assert!(metrics().await.unwrap().contains("ddtwatch_config_last_reload_successful 1"), "fixed file: back to 1");
    let m = metrics().await.unwrap();
    assert!(m.contains(r#"ddtwatch_transitions_total{state="resolved"} 1"#), "{m}");

    // Both transitions went through the outbox to the `ops` log receiver, once each.
    until("notifications delivered", || async {
        metrics().await.filter(|m| m.contains(r#"ddtwatch_notifications_total{receiver="ops",result="delivered"} 2"#))
    })
    .await;
    let m = metrics().await.unwrap();
    assert!(m.contains("ddtwatch_outbox_depth 0"), "{m}");

    // The audit log holds every step, and its hash chain verifies; an edit is named.
    let log = state.join("audit.log");
    let records: Vec<Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["kind"].as_str().unwrap(),
                r["data"]["event"]
                    .as_str()
                    .or(r["data"]["state"].as_str())
                    .or(r["data"]["phase"].as_str())
                    .unwrap_or("")
            )
        })
        .collect();
    for want in [
        "config:loaded",
        "lifecycle:started",
        "breach:firing",
        "config:reloaded",
        "config:reload_rejected",
        "breach:resolved",
        "notification:",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} missing from the audit log: {kinds:?}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(TOKEN), "no tokens in the audit log");
    let verify = |expect_ok: bool| {
        let out = Command::new(common::bin()).args(["audit", "verify"]).arg(&log).output().unwrap();
        assert_eq!(out.status.success(), expect_ok, "{}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(verify(true).starts_with("OK"));
    let tampered = text.replacen("\"state\":\"firing\"", "\"state\":\"ok\"", 1);
    std::fs::write(&log, tampered).unwrap();
    let out = verify(false);
    let firing_seq = records.iter().find(|r| r["kind"] == "breach").unwrap()["seq"].as_u64().unwrap();
    assert!(out.contains(&format!("(seq {firing_seq})")), "{out}");
}

/// A reload that changes a silence condition's `max_gap` shows the new limit at the next
/// evaluation, though the source's last event (whose texts are otherwise reused) is the same.
#[test]
fn a_reloaded_limit_is_written_anew() {
    use ddtwatch::config::{ClockMode, Config};
    use ddtwatch::engine::Engine;
    let config = |gap: &str| {
        let yaml = format!(
            "receivers: {{ops: {{kind: log}}, oversight: {{kind: log}}}}\ngroups: {{sex: [male], ethnicity: [black]}}\ndefaults: {{lfr: p}}\nprofiles:\n  p:\n    conditions:\n      - {{id: silent, kind: silence, type: detection, max_gap: {gap}, severity: warning, notify: [ops]}}\n"
        );
        std::sync::Arc::new(Config::from_yaml(&yaml, None).expect("valid"))
    };
    let line = |id: &str, ts: &str, ty: &str| {
        format!(
            r#"{{"schema_version":1,"event_id":"{id}","type":"{ty}","deployment_id":"d","system":"lfr","source_id":"{}","ts":"{ts}","count":1,"phase":"started"}}"#,
            if ty == "detection" { "cam-1" } else { "control" }
        )
    };
    let mut e = Engine::new(config("5m"), ClockMode::Event);
    for l in [
        line("s", "2026-04-25T09:00:00Z", "deployment"),
        line("a", "2026-04-25T09:00:01Z", "detection"),
        line("b", "2026-04-25T09:00:02Z", "deployment"),
    ] {
        e.ingest(l.as_bytes(), 0);
    }
    let limit = |e: &Engine| {
        let d = e.deployment("d").unwrap();
        let rt = d.conditions.iter().find(|c| c.condition.id == "silent").unwrap();
        rt.last.iter().find(|x| x.instance.as_deref() == Some("cam-1")).unwrap().limit.value()
    };
    assert_eq!(limit(&e)["max_gap"], 300.0);
    e.reload(config("10m"));
    // cam-1 sends nothing new; the control source moves the clock a second on.
    e.ingest(line("c", "2026-04-25T09:00:03Z", "deployment").as_bytes(), 0);
    assert_eq!(limit(&e)["max_gap"], 600.0);
}
