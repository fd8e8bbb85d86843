//! Notification delivery by a real `ddtwatch run` process: to a real Alertmanager (the Debian
//! `prometheus-alertmanager`, installed by scripts/test) and, across a SIGKILL between the breach
//! and its delivery, to a signed-webhook receiver in the test.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::Proc;
use ddtwatch::notify::webhook;
use serde_json::{Value, json};

const TOKEN: &str = "delivery-test-token";
const SECRET: &str = "whsec_c2VjcmV0LWZvci10aGUtZGVsaXZlcnktdGVzdA==";

fn config(port: u16, state: &Path, receiver: &str) -> String {
    format!(
        r#"http: {{listen: "127.0.0.1:{port}", token_env: DDTWATCH_TEST_TOKEN}}
clock: event
state_dir: {state}
sources: [{{kind: http}}]
dead_letter: {{kind: discard}}
groups: {{sex: [female, male, unknown]}}
defaults: {{lfr: lfr}}
receivers:
  {receiver}
profiles:
  lfr:
    conditions:
      - {{id: threshold_floor, kind: state, check: threshold_floor, min: 0.6, severity: critical, notify: [oversight],
          runbook: "https://runbooks.example.org/threshold_floor"}}
"#,
        state = state.display()
    )
}

fn spawn_run(path: &Path, env: &[(&str, &str)]) -> Proc {
    let mut env = env.to_vec();
    env.push(("DDTWATCH_TEST_TOKEN", TOKEN));
    common::spawn_run_env(path, &env)
}

/// `ddtwatch run` with the config at `path`, returned once `{base}/readyz` answers 200.
async fn run_ready(path: &Path, env: &[(&str, &str)], base: &str) -> Proc {
    let run = spawn_run(path, env);
    let c = ddtwatch::notify::http_client();
    until("ddtwatch ready", 30, || async {
        c.get(format!("{base}/readyz")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    run
}

/// Polls `f` every 50 ms until it returns Some, failing after `secs`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(what: &str, secs: u64, mut f: impl FnMut() -> F) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event(id: &str, ty: &str, ts: &str, extra: Value) -> Value {
    let mut v = json!({"schema_version": 1, "event_id": id, "deployment_id": "lfr-d", "system": "lfr",
        "source_id": "cam-1", "type": ty, "ts": ts});
    v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    v
}

async fn post_events(c: &reqwest::Client, base: &str, events: &[Value]) {
    let body = events.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
    let r = c.post(format!("{base}/api/v1/events")).bearer_auth(TOKEN).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Threshold 0.5 under the 0.6 floor: the breach fires at once.
fn breach_events() -> Vec<Value> {
    vec![
        event("e1", "deployment", "2026-04-25T09:00:00Z", json!({"phase": "started"})),
        event("e2", "status", "2026-04-25T09:00:00Z", json!({"threshold": 0.5})),
        event("e3", "detection", "2026-04-25T09:00:01Z", json!({"count": 4, "scores": [0.1]})),
    ]
}

async fn metrics(c: &reqwest::Client, base: &str) -> Option<String> {
    c.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()
}

fn alertmanager_binary() -> PathBuf {
    for p in ["/usr/bin/prometheus-alertmanager", "/usr/local/bin/alertmanager"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("no Alertmanager binary: scripts/test installs the Debian package prometheus-alertmanager");
}

/// A real Alertmanager on `port` with the routing example shipped in config/ (critical →
/// oversight, warning → ops), as is.
fn start_alertmanager(dir: &Path, port: u16) -> Proc {
    let am_config = dir.join("alertmanager.yml");
    std::fs::copy(common::repo().join("config/alertmanager.yml"), &am_config).unwrap();
    Proc(
        Command::new(alertmanager_binary())
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn breaches_reach_a_real_alertmanager_are_resent_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let am_port = common::free_port();
    let _am = start_alertmanager(dir.path(), am_port);
    let am = format!("http://127.0.0.1:{am_port}");
    let c = ddtwatch::notify::http_client();
    until("alertmanager ready", 30, || async {
        c.get(format!("{am}/-/ready")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;

    let port = common::free_port();
    let path = dir.path().join("ddtwatch.yaml");
    let receiver = format!(
        "oversight: {{kind: alertmanager, url: \"{am}\", resend: 1s, generator_url: \"https://ddtwatch.example.org\"}}"
    );
    std::fs::write(&path, config(port, &dir.path().join("state"), &receiver)).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let _run = run_ready(&path, &[], &base).await;
    post_events(&c, &base, &breach_events()).await;

    let alerts = || async {
        let v: Value = c.get(format!("{am}/api/v2/alerts")).send().await.ok()?.json().await.ok()?;
        let list: Vec<Value> =
            v.as_array()?.iter().filter(|a| a["labels"]["alertname"] == "threshold_floor").cloned().collect();
        Some(list)
    };
    let alert = until("the alert in Alertmanager", 30, || async { alerts().await?.into_iter().next() }).await;
    let labels = &alert["labels"];
    assert_eq!(labels["deployment"], "lfr-d");
    assert_eq!(labels["system"], "lfr");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["condition_kind"], "state");
    assert_eq!(alert["annotations"]["runbook_url"], "https://runbooks.example.org/threshold_floor");
    assert!(alert["annotations"]["summary"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(alert["startsAt"], "2026-04-25T09:00:01.000Z", "startsAt is when the breach started");
    assert_eq!(alert["status"]["state"], "active");
    // Routed by the shipped example: critical → the oversight receiver.
    assert_eq!(alert["receivers"][0]["name"], "oversight");
    assert_eq!(alert["generatorURL"], "https://ddtwatch.example.org/api/v1/deployments/lfr-d", "{alert}");

    // While firing it is re-sent every `resend` (1 s here), moving endsAt forward.
    let first_end = alert["endsAt"].as_str().unwrap().to_string();
    until("a re-send that moves endsAt", 30, || async {
        let a = alerts().await?.into_iter().next()?;
        (a["endsAt"].as_str()? > first_end.as_str()).then_some(())
    })
    .await;
    let m = metrics(&c, &base).await.unwrap();
    assert!(m.contains(r#"ddtwatch_notifications_total{receiver="oversight",result="delivered"} 1"#), "{m}");
    assert!(m.contains(r#"ddtwatch_notifications_total{receiver="oversight",result="resent"}"#), "{m}");

    // Threshold back above the floor: resolved, and Alertmanager no longer lists it as active.
    post_events(
        &c,
        &base,
        &[
            event("e4", "status", "2026-04-25T09:00:05Z", json!({"threshold": 0.7})),
            event("e5", "detection", "2026-04-25T09:00:06Z", json!({"count": 1, "scores": [0.1]})),
        ],
    )
    .await;
    until("the alert resolved in Alertmanager", 30, || async { alerts().await.filter(|l| l.is_empty()) }).await;
    let m = until("resolved delivered", 30, || async {
        metrics(&c, &base)
            .await
            .filter(|m| m.contains(r#"ddtwatch_notifications_total{receiver="oversight",result="delivered"} 2"#))
    })
    .await;
    assert!(m.contains("ddtwatch_outbox_depth 0"), "{m}");
}

/// The receiver: holds the first request forever (ddtwatch is killed while it waits), then
/// acknowledges; every request's signature is checked.
#[derive(Default)]
struct Hook {
    requests: Vec<String>,
    acked: BTreeMap<String, u32>,
    bad_signatures: u32,
}

async fn hook(State(s): State<Arc<Mutex<Hook>>>, h: HeaderMap, body: Bytes) -> StatusCode {
    let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let id = header("webhook-id");
    let first = {
        let mut s = s.lock().unwrap();
        let now = ddtwatch::http::wall_clock_ms() / 1000;
        let ok =
            webhook::verify(SECRET, &id, &header("webhook-timestamp"), &header("webhook-signature"), &body, now, 300);
        if ok.is_err() {
            s.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED;
        }
        s.requests.push(id.clone());
        s.requests.len() == 1
    };
    if first {
        std::future::pending::<()>().await;
    }
    *s.lock().unwrap().acked.entry(id).or_default() += 1;
    StatusCode::NO_CONTENT
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_between_breach_and_delivery_then_delivered_exactly_once() {
    let s: Arc<Mutex<Hook>> = Arc::default();
    let app = axum::Router::new().route("/hook", post(hook)).with_state(s.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let path = dir.path().join("ddtwatch.yaml");
    let receiver = format!("oversight: {{kind: webhook, url: \"{hook_url}\", secret_env: DDTWATCH_TEST_HOOK_SECRET}}");
    std::fs::write(&path, config(port, &dir.path().join("state"), &receiver)).unwrap();
    let env = [("DDTWATCH_TEST_HOOK_SECRET", SECRET)];
    let base = format!("http://127.0.0.1:{port}");
    let c = ddtwatch::notify::http_client();

    let mut run = run_ready(&path, &env, &base).await;
    post_events(&c, &base, &breach_events()).await;
    // The notification is durable (the POST above returned after the outbox fsync) and in flight.
    until("the first delivery attempt", 30, || async { (!s.lock().unwrap().requests.is_empty()).then_some(()) }).await;
    run.0.kill().unwrap(); // SIGKILL
    run.0.wait().unwrap();
    assert!(s.lock().unwrap().acked.is_empty(), "nothing was acknowledged before the crash");

    let _run = run_ready(&path, &env, &base).await;
    let m = until("delivery after the restart", 30, || async {
        metrics(&c, &base).await.filter(|m| {
            m.contains(r#"ddtwatch_notifications_total{receiver="oversight",result="delivered"} 1"#)
                && m.contains("ddtwatch_outbox_depth 0")
        })
    })
    .await;
    assert!(m.contains(r#"ddtwatch_notifications_total{receiver="oversight",result="failed"} 0"#), "{m}");
    let h = s.lock().unwrap();
    assert_eq!(h.bad_signatures, 0);
    assert_eq!(h.acked.len(), 1, "one notification: {:?}", h.acked);
    let (key, n) = h.acked.iter().next().unwrap();
    assert_eq!(*n, 1, "acknowledged exactly once");
    assert_eq!(key, "ddtwatch/lfr-d/threshold_floor/2026-04-25T09:00:01Z/firing");
    assert_eq!(h.requests, vec![key.clone(), key.clone()], "the retry carries the same webhook-id");
}

/// An Alertmanager outage spanning two breaches of one condition (fire, resolve, fire again):
/// once it is back, it ends showing the true state — firing, from the second breach — because
/// only the latest transition of the alert (same labels) is sent; the earlier two are superseded.
#[tokio::test(flavor = "multi_thread")]
async fn after_an_outage_across_two_breaches_alertmanager_shows_the_true_state() {
    let dir = tempfile::tempdir().unwrap();
    let am_port = common::free_port();
    let am = format!("http://127.0.0.1:{am_port}");
    let c = ddtwatch::notify::http_client();
    let port = common::free_port();
    let path = dir.path().join("ddtwatch.yaml");
    // Short backoff, so retries follow the Alertmanager's return within seconds.
    let receiver = format!(
        "oversight: {{kind: alertmanager, url: \"{am}\", resend: 1s, backoff_initial: 200ms, backoff_max: 1s}}"
    );
    std::fs::write(&path, config(port, &dir.path().join("state"), &receiver)).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let _run = run_ready(&path, &[], &base).await;
    // Alertmanager is down: breach 1 fires and resolves, breach 2 fires.
    let mut events = breach_events();
    events.extend([
        event("e4", "status", "2026-04-25T09:00:05Z", json!({"threshold": 0.7})),
        event("e5", "detection", "2026-04-25T09:00:06Z", json!({"count": 1, "scores": [0.1]})),
        event("e6", "status", "2026-04-25T09:00:10Z", json!({"threshold": 0.5})),
        event("e7", "detection", "2026-04-25T09:00:11Z", json!({"count": 1, "scores": [0.1]})),
    ]);
    post_events(&c, &base, &events).await;
    // The three transitions of one alert identity: the latest (breach 2's firing) stands for
    // the earlier two, which are superseded, never sent; it waits for the Alertmanager.
    until("two superseded, the latest retried", 30, || async {
        metrics(&c, &base).await.filter(|m| {
            m.contains("ddtwatch_outbox_depth 1")
                && m.contains(r#"ddtwatch_notifications_total{receiver="oversight",result="superseded"} 2"#)
                && m.contains(r#"ddtwatch_notifications_total{receiver="oversight",result="retry"}"#)
        })
    })
    .await;
    // Alertmanager comes back.
    let _am = start_alertmanager(dir.path(), am_port);
    until("every notification delivered", 60, || async {
        metrics(&c, &base).await.filter(|m| m.contains("ddtwatch_outbox_depth 0"))
    })
    .await;
    let alerts = || async {
        let v: Value = c.get(format!("{am}/api/v2/alerts")).send().await.ok()?.json().await.ok()?;
        Some(
            v.as_array()?.iter().filter(|a| a["labels"]["alertname"] == "threshold_floor").cloned().collect::<Vec<_>>(),
        )
    };
    let shown = until("the alert listed", 30, || async { alerts().await?.into_iter().next() }).await;
    assert_eq!(shown["status"]["state"], "active", "Alertmanager must show the condition firing: {shown}");
    let starts = ddtwatch::event::parse_ts(shown["startsAt"].as_str().unwrap()).unwrap();
    assert_eq!(starts, ddtwatch::event::parse_ts("2026-04-25T09:00:10Z").unwrap(), "breach 2's alert: {shown}");
    // The audit log says what became of each: two superseded, then breach 2's firing delivered.
    let log = std::fs::read_to_string(dir.path().join("state/audit.log")).unwrap();
    let results: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "notification" && r["data"]["result"] != "retry")
        .map(|r| {
            let state = r["data"]["key"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
            format!("{state}:{}", r["data"]["result"].as_str().unwrap())
        })
        .collect();
    assert_eq!(results, vec!["firing:superseded", "resolved:superseded", "firing:delivered"]);
}

/// A receiver that acknowledges everything and records each `webhook-id` it was sent.
async fn recording_hook(State(s): State<Arc<Mutex<Vec<String>>>>, h: HeaderMap, _body: Bytes) -> StatusCode {
    let id = h.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    s.lock().unwrap().push(id);
    StatusCode::NO_CONTENT
}

fn metric_value(m: &str, name: &str) -> Option<f64> {
    m.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Wall-clock mode, SIGKILL before the first snapshot: the restarted process re-reads its file
/// from the start and re-derives the breach at a different wall time. The breach receivers were
/// told about keeps its notification id — no second `firing` under a new id — and its
/// resolution, when it comes, carries that id. (Before: the id held the wall-clock start, so the
/// restart fired the breach again under a new id and the old one was never resolved.)
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_wall_mode_before_the_first_snapshot_gives_no_new_ids() {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = axum::Router::new().route("/hook", post(recording_hook)).with_state(got.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let now = ddtwatch::time::wall_clock_ms();
    let ts = |back_s: i64| ddtwatch::event::format_ts((now / 1000 - back_s) * 1000);
    let events = [
        event("e1", "deployment", &ts(60), json!({"phase": "started"})),
        event("e2", "status", &ts(60), json!({"threshold": 0.5})),
        event("e3", "detection", &ts(59), json!({"count": 4, "scores": [0.1]})),
    ];
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, events.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
    let receiver = format!("oversight: {{kind: webhook, url: \"{hook_url}\", secret_env: DDTWATCH_TEST_HOOK_SECRET}}");
    let text = config(port, &dir.path().join("state"), &receiver)
        .replace("clock: event", "clock: wall\nengine: {snapshot_interval: 1h}")
        .replace(
            "sources: [{kind: http}]",
            &format!("sources: [{{kind: file, path: \"{}\"}}, {{kind: http}}]", file.display()),
        );
    let path = dir.path().join("ddtwatch.yaml");
    std::fs::write(&path, text).unwrap();
    let env = [("DDTWATCH_TEST_HOOK_SECRET", SECRET)];
    let base = format!("http://127.0.0.1:{port}");
    let c = ddtwatch::notify::http_client();
    // The ids received, each once: delivery is at least once, and a SIGKILL right after a
    // request arrives (before its result is journaled) re-sends it after the restart under the
    // same id. What must never appear is a new id.
    let ids = || {
        let mut ids: Vec<String> = Vec::new();
        for id in got.lock().unwrap().iter() {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        ids
    };
    let delivered = |n: usize| {
        let ids = ids();
        async move { (ids.len() >= n).then_some(()) }
    };

    let mut run = run_ready(&path, &env, &base).await;
    until("the firing notification", 30, || delivered(1)).await;
    let firing = ids()[0].clone();
    let breach = firing.strip_suffix("/firing").expect("a firing notification").to_string();
    // Keyed by the newest event time when the breach went pending (the tick may fall between
    // the status and the detection), never by the wall clock.
    let keyed = [ts(60), ts(59)].map(|t| format!("ddtwatch/lfr-d/threshold_floor/{t}"));
    assert!(keyed.contains(&breach), "{breach} is not keyed by event time");
    run.0.kill().unwrap(); // SIGKILL: no shutdown snapshot, the file position is lost
    run.0.wait().unwrap();
    // More of the stream arrived meanwhile: the re-read ends at a later event time, so a breach
    // re-derived from scratch would get a later key — only taking it over from the outbox keeps
    // the old one.
    let more = event("e5", "detection", &ts(30), json!({"count": 2, "scores": [0.2]}));
    let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
    std::io::Write::write_all(&mut f, format!("{more}\n").as_bytes()).unwrap();

    let _run = run_ready(&path, &env, &base).await;
    // The file is read again from the start, then evaluated on at least two more ticks.
    let evals = until("the file re-read", 30, || async {
        let m = metrics(&c, &base).await?;
        (m.contains(r#"ddtwatch_events_total{type="detection"} 2"#))
            .then(|| metric_value(&m, "ddtwatch_evaluations_total"))
            .flatten()
    })
    .await;
    until("two evaluations after the re-read", 30, || async {
        metric_value(&metrics(&c, &base).await?, "ddtwatch_evaluations_total").filter(|e| *e >= evals + 2.0)
    })
    .await;
    let summary: Value = c
        .get(format!("{base}/api/v1/deployments/lfr-d"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(), vec![firing.clone()], "no notification under a new id: {summary}");

    // The threshold goes back above the floor: resolved, under the same id.
    post_events(&c, &base, &[event("e4", "status", &ts(0), json!({"threshold": 0.7}))]).await;
    until("the resolved notification", 30, || delivered(2)).await;
    assert_eq!(ids(), vec![firing, format!("{breach}/resolved")]);
}

/// SIGTERM while a notification is in flight to a slow receiver: `run` keeps delivering for the
/// grace period before it stops, so the notification is acknowledged before the process exits
/// (before: the dispatcher was stopped at once, and the notification waited for a next start —
/// on an emptyDir, for ever).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_the_outbox_within_the_grace_period() {
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(move |State(s): State<Arc<Mutex<Vec<String>>>>, h: HeaderMap, _b: Bytes| {
                let tx = arrived_tx.clone();
                async move {
                    let _ = tx.send(());
                    // A slow receiver: the answer comes after the SIGTERM.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    s.lock().unwrap().push(h["webhook-id"].to_str().unwrap().to_string());
                    StatusCode::NO_CONTENT
                }
            }),
        )
        .with_state(acked.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let path = dir.path().join("ddtwatch.yaml");
    let receiver = format!("oversight: {{kind: webhook, url: \"{hook_url}\", secret_env: DDTWATCH_TEST_HOOK_SECRET}}");
    std::fs::write(&path, config(port, &dir.path().join("state"), &receiver)).unwrap();
    let env = [("DDTWATCH_TEST_HOOK_SECRET", SECRET)];
    let base = format!("http://127.0.0.1:{port}");
    let c = ddtwatch::notify::http_client();
    let mut run = run_ready(&path, &env, &base).await;
    post_events(&c, &base, &breach_events()).await;
    tokio::time::timeout(Duration::from_secs(30), arrived.recv()).await.expect("the delivery attempt");
    let pid = run.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || {
        let s = run.0.wait().unwrap();
        (s, run)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status:?}");
    assert_eq!(acked.lock().unwrap().len(), 1, "acknowledged before the process exited");
    let journal = std::fs::read_to_string(dir.path().join("state/outbox.jsonl")).unwrap();
    assert!(journal.contains(r#""op":"delivered""#), "{journal}");
}
