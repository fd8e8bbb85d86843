//! Retiring stopped deployments (`engine.retain_stopped`, issue 22): a force that runs
//! deployments every day keeps `/metrics` and memory bounded, never loses a deployment's final
//! summary, and never retires one before its deletion deadline has been judged.

mod common;

use std::sync::Arc;

use ddtwatch::config::{ClockMode, Config, StateDir};
use ddtwatch::engine::{Engine, Ingested};
use ddtwatch::event::{Reason, format_ts};
use ddtwatch::http::{AppState, router};
use ddtwatch::ingest::{DeadLetterSink, Ingest, Pipeline};
use ddtwatch::telemetry::{Format, ProcessState, registry};

const T0: i64 = 1_780_000_000_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn ev(id: &str, dep: &str, ts: i64, body: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{id}","deployment_id":"{dep}","system":"lfr","source_id":"cam-1","ts":"{}",{body}}}"#,
        format_ts(ts)
    )
}

/// One short LFR deployment starting at `t`: started, a batch of faces, stopped 2 s later, and
/// (if `attested`) its non-match biometrics deleted a second after that.
fn deployment(dep: &str, t: i64, attested: bool) -> Vec<String> {
    let mut v = vec![
        ev(&format!("{dep}-s"), dep, t, r#""type":"deployment","phase":"started""#),
        ev(&format!("{dep}-d"), dep, t + 1000, r#""type":"detection","count":40,"scores":[0.2,0.3,0.25]"#),
        ev(&format!("{dep}-x"), dep, t + 2000, r#""type":"deployment","phase":"stopped""#),
    ];
    if attested {
        let up_to = format_ts(t + 2000);
        v.push(ev(
            &format!("{dep}-del"),
            dep,
            t + 3000,
            &format!(r#""type":"deletion","scope":"non_match_biometrics","up_to":"{up_to}""#),
        ));
    }
    v
}

fn config(retain: &str) -> Arc<Config> {
    config_in(retain, None)
}

fn config_in(retain: &str, state_dir: Option<&std::path::Path>) -> Arc<Config> {
    let mut yaml = format!("engine:\n  retain_stopped: {retain}\n");
    if let Some(d) = state_dir {
        yaml.push_str(&format!("state_dir: {}\n", d.display()));
    }
    Arc::new(Config::from_yaml(&yaml, None).expect("valid config"))
}

/// Sample lines of a `/metrics` scrape.
fn series(state: &AppState) -> usize {
    let text = ddtwatch::telemetry::encode(&state.registry, &state.pipeline.engine, Format::OpenMetrics).unwrap();
    text.lines().filter(|l| !l.starts_with('#')).count()
}

fn feed(p: &Pipeline, lines: &[String]) {
    p.ingest(lines.iter().map(|l| Ingest::Raw(l.as_bytes())), 0);
}

/// 10,000 deployments, one every 10 minutes of event time (69 days), each stopped and (but every
/// hundredth) its deletion attested, through the `run` pipeline with a state_dir: `/metrics`
/// stops growing once retirement keeps pace, every retired deployment's final summary is in
/// `state_dir/records`, the API serves it, and a late event for it is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_deployments_leave_metrics_and_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = StateDir::new(dir.path());
    let mut engine = Engine::new(config_in("1h", Some(dir.path())), ClockMode::Event);
    engine.hand_off_retired();
    let pipeline = Pipeline::new(engine, DeadLetterSink::Discard).with_clock(|| 0);
    pipeline.set_publisher(ddtwatch::notify::Notifier::build(None, None, || 0, Some(state_dir.clone())));
    let process = Arc::new(ProcessState::default());
    process.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let state = AppState {
        pipeline: pipeline.clone(),
        registry: Arc::new(registry(pipeline.engine.clone(), process.clone())),
        process,
        token: None,
        anonymous_reads: true,
        max_body_bytes: 1 << 20,
    };
    let n = 10_000;
    let mut at_2000 = 0;
    let mut most_live = 0;
    for i in 0..n {
        feed(&pipeline, &deployment(&format!("d{i:05}"), T0 + i * 10 * MIN, true));
        let live = pipeline.engine.lock().unwrap().deployments().count();
        most_live = most_live.max(live);
        if i + 1 == 2000 {
            at_2000 = series(&state);
        }
    }
    let at_end = series(&state);
    // One deployment every 10 minutes, retired an hour after it stops: a handful live at a time.
    assert!(most_live <= (HOUR / (10 * MIN)) as usize + 4, "{most_live} live deployments at most");
    assert!(at_2000 > 0);
    assert!(
        at_end <= at_2000 + at_2000 / 20,
        "/metrics grew from {at_2000} series at 2,000 deployments to {at_end} at 10,000"
    );
    let (live, retired) = {
        let e = pipeline.engine.lock().unwrap();
        (e.deployments().count(), e.retired_len())
    };
    assert_eq!(live + retired, n as usize, "every deployment is live or retired");
    assert!(retired >= n as usize - 8, "{retired} retired");
    let records = std::fs::read_dir(state_dir.records()).unwrap().count();
    assert_eq!(records, retired, "one final summary per retired deployment in state_dir/records");

    let attested: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.record("d00101").unwrap()).unwrap()).unwrap();
    assert_eq!(attested["deployment_id"], "d00101");
    assert!(attested["retired_at"].is_string());
    assert_eq!(attested["counters"]["detections"], 40);
    assert_eq!(attested["phase"], "stopped");

    // The API serves a retired deployment's summary and record from state_dir.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let client = ddtwatch::notify::http_client();
    let got: serde_json::Value =
        client.get(format!("{base}/api/v1/deployments/d00101")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got, attested);
    let report = client.get(format!("{base}/api/v1/deployments/d00101/report?format=json")).send().await.unwrap();
    assert_eq!(report.status(), 200);
    let report: serde_json::Value = report.json().await.unwrap();
    assert_eq!(report["deployment_id"], "d00101", "{report}");
    let missing = client.get(format!("{base}/api/v1/deployments/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let list: serde_json::Value =
        client.get(format!("{base}/api/v1/deployments")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["retired"], retired);

    // A late event for a retired deployment is dead-lettered, not applied to a fresh state.
    let late = ev("late-1", "d00101", T0 + n * 10 * MIN, r#""type":"detection","count":1"#);
    let r = pipeline.engine.lock().unwrap().ingest(late.as_bytes(), 0);
    assert_eq!(r, Ingested::Invalid(Reason::RetiredDeployment));
    assert!(pipeline.engine.lock().unwrap().deployment("d00101").is_none());
}

/// A deployment is retired only once `retain_stopped` has passed *and* its deletion is attested:
/// attested, it goes at `retain_stopped`; unattested, its deletion breach fires and the deployment
/// stays (the breach open, visible) until a late attestation resolves it, and only then goes. In a
/// replay the final summaries stay in the summary, in id order.
#[test]
fn an_unattested_deletion_keeps_its_deployment_until_attested_and_replay_keeps_every_summary() {
    let mut lines = deployment("a-attested", T0, true);
    lines.extend(deployment("b-unattested", T0, false));
    // A ticker deployment moves the event clock: one event every 30 minutes for two days.
    lines.push(ev("t-s", "ticker", T0, r#""type":"deployment","phase":"started""#));
    let mut live_at = Vec::new();
    let mut engine = Engine::new(config("1h"), ClockMode::Event);
    let mut transitions = Vec::new();
    for l in &lines {
        engine.ingest(l.as_bytes(), 0);
    }
    for k in 1..=96 {
        let ts = T0 + k * 30 * MIN;
        engine.ingest(ev(&format!("t{k}"), "ticker", ts, r#""type":"detection","count":1"#).as_bytes(), 0);
        transitions.extend(engine.drain_transitions());
        live_at.push((ts - T0, engine.deployment("a-attested").is_some(), engine.deployment("b-unattested").is_some()));
    }
    // Attested: live until an hour after its stop, then retired.
    for &(since, a, _) in &live_at {
        assert_eq!(a, since < HOUR + 2000, "attested deployment live {a} at +{since} ms");
    }
    // Unattested: its deletion breach fired after 24 h, and it is still here two days on.
    assert!(live_at.iter().all(|(_, _, b)| *b), "an unattested deployment is never retired");
    let breach = |transitions: &[ddtwatch::rules::Transition], state: &str| {
        transitions.iter().any(|t| {
            t.deployment_id == "b-unattested"
                && t.condition == "deletion_after_stop"
                && serde_json::to_value(t.state).unwrap() == state
        })
    };
    assert!(breach(&transitions, "firing"), "the deletion breach fired");
    // The late attestation is applied (not dead-lettered): it resolves the breach, and the
    // deployment goes at that evaluation.
    let up_to = format_ts(T0 + 2000);
    let late = ev(
        "b-del-late",
        "b-unattested",
        T0 + 48 * HOUR + 1000,
        &format!(r#""type":"deletion","scope":"non_match_biometrics","up_to":"{up_to}""#),
    );
    assert!(matches!(engine.ingest(late.as_bytes(), 0), Ingested::Applied(_)));
    transitions.extend(engine.drain_transitions());
    assert!(breach(&transitions, "resolved"), "the late attestation resolved the breach");
    assert!(engine.deployment("b-unattested").is_none() && engine.is_retired("b-unattested"));

    engine.finish();
    let summary = engine.summary();
    let ids: Vec<&str> = summary.deployments.iter().map(|d| d.deployment_id.as_str()).collect();
    assert_eq!(ids, ["a-attested", "b-unattested", "ticker"], "replay keeps retired deployments' summaries");
    assert!(summary.deployments[0].retired_at.is_some() && summary.deployments[2].retired_at.is_none());
    let b = &summary.deployments[1];
    assert!(b.breaches.iter().any(|r| r.condition == "deletion_after_stop" && r.resolved_at.is_some()));
}

/// `retain_stopped: 0s` keeps stopped deployments for ever; and the whole-engine snapshot
/// carries retired ids, so a restart still dead-letters their late events.
#[test]
fn zero_keeps_for_ever_and_snapshots_remember_retired_ids() {
    let run = |retain: &str| {
        let mut e = Engine::new(config(retain), ClockMode::Event);
        for l in deployment("a", T0, true) {
            e.ingest(l.as_bytes(), 0);
        }
        // The event clock moves in steps within `max_future`.
        for k in 1..=4 {
            e.ingest(
                ev(&format!("t{k}"), "ticker", T0 + k * 30 * MIN, r#""type":"detection","count":1"#).as_bytes(),
                0,
            );
        }
        e
    };
    assert!(run("0s").deployment("a").is_some(), "0s never retires");
    let e = run("1h");
    assert!(e.deployment("a").is_none() && e.is_retired("a"));
    let mut restored = Engine::new(config("1h"), ClockMode::Event);
    restored.restore_all(&e.snapshot_all()).unwrap();
    assert!(restored.is_retired("a"));
    let late = ev("late", "a", T0 + 2 * HOUR, r#""type":"detection","count":1"#);
    assert_eq!(restored.ingest(late.as_bytes(), 0), Ingested::Invalid(Reason::RetiredDeployment));
    let dead = restored.drain_dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, Reason::RetiredDeployment);
    assert!(restored.deployment("a").is_none());
}

/// A final summary whose record cannot be written (here `state_dir/records` is a file) is not
/// lost: the engine keeps it in memory and serves it.
#[test]
fn a_record_that_cannot_be_written_stays_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("records"), b"not a directory").unwrap();
    let state_dir = StateDir::new(dir.path());
    let mut engine = Engine::new(config_in("1h", Some(dir.path())), ClockMode::Event);
    engine.hand_off_retired();
    let pipeline = Pipeline::new(engine, DeadLetterSink::Discard).with_clock(|| 0);
    pipeline.set_publisher(ddtwatch::notify::Notifier::build(None, None, || 0, Some(state_dir)));
    feed(&pipeline, &deployment("a", T0, true));
    for k in 1..=4 {
        feed(&pipeline, &[ev(&format!("t{k}"), "ticker", T0 + k * 30 * MIN, r#""type":"detection","count":1"#)]);
    }
    let e = pipeline.engine.lock().unwrap();
    assert!(e.is_retired("a") && e.deployment("a").is_none(), "retired");
    let kept = e.deployment_summary("a").expect("the final summary is kept in memory");
    assert!(kept.retired_at.is_some());
    assert_eq!(kept.counters.detections, 40);
}
