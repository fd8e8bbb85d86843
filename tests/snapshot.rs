//! A deployment restored from its snapshot mid-stream continues exactly as if it had never
//! moved: same summary (counters, groups, rates, condition states, lifecycles, latency).

mod common;

use ddtwatch::config::ClockMode;
use ddtwatch::engine::Engine;
use ddtwatch::ingest::simulator::{Scenario, generate_lines};

fn check(scenario: Scenario, events: usize, split_at: f64) {
    check_with(common::example_config(), scenario, events, split_at);
}

fn check_with(config: std::sync::Arc<ddtwatch::config::Config>, scenario: Scenario, events: usize, split_at: f64) {
    let lines = generate_lines(scenario, events, 5);
    let split = (lines.len() as f64 * split_at) as usize;
    let mut straight = Engine::new(config.clone(), ClockMode::Event);
    let mut first = Engine::new(config.clone(), ClockMode::Event);
    for l in &lines[..split] {
        straight.ingest(l.as_bytes(), 0);
        first.ingest(l.as_bytes(), 0);
    }
    // Move every deployment to a fresh engine through bytes.
    let mut moved = Engine::new(config, ClockMode::Event);
    let ids: Vec<String> = first.deployments().map(|d| d.id.clone()).collect();
    assert!(!ids.is_empty());
    for id in &ids {
        let bytes = first.snapshot(id, None).unwrap();
        let (restored, _) = moved.restore(&bytes).unwrap();
        assert_eq!(&restored, id);
    }
    for l in &lines[split..] {
        straight.ingest(l.as_bytes(), 0);
        moved.ingest(l.as_bytes(), 0);
    }
    straight.finish();
    moved.finish();
    let a = serde_json::to_value(straight.summary().deployments).unwrap();
    let b = serde_json::to_value(moved.summary().deployments).unwrap();
    if let Some(path) = first_difference(&a, &b, String::new()) {
        panic!("{} split at {split}: summaries differ first at {path}", scenario.name());
    }
}

/// The JSON path of the first difference between two values, with both sides.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| {
                first_difference(
                    p,
                    q,
                    format!("{path}[{}]", p.get("id").and_then(Value::as_str).map_or(i.to_string(), String::from)),
                )
            })
        }
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

#[test]
fn restored_deployments_continue_exactly() {
    for s in [Scenario::ThresholdLowered, Scenario::DemographicSkew, Scenario::ScoreDrift, Scenario::AnprMisreads] {
        for at in [0.3, 0.77] {
            check(s, 30_000, at);
        }
    }
}

/// The decision state of calibrated conditions with sliding windows (Shiryaev–Roberts detectors,
/// disparity blocks, drift segments; docs/STATISTICS.md) moves with the snapshot: the restored
/// evidence continues exactly (it is in every condition's `detail.decision`).
#[test]
fn calibrated_decision_state_continues_exactly() {
    let yaml = r#"
clock: event
groups: {ethnicity: [asian, black, mixed, white], sex: [female, male]}
receivers: {ops: {kind: log}, oversight: {kind: log}}
profiles:
  windowed:
    conditions:
      - {id: share_30m, kind: rate, numerator: false_alerts, denominator: alerts, max: 0.05, window: 30m, min_denominator: 10}
      - {id: floor_30m, kind: rate, numerator: verified, denominator: engaged, min: 0.999, window: 30m, min_denominator: 5}
      - {id: latency_30m, kind: quantile, value: adjudication_latency, max: 30s, window: 30m, min_samples: 5}
      - {id: ethnicity_1h, kind: disparity, numerator: false_alerts, denominator: alerts, attribute: ethnicity, window: 1h, min_per_group: 5}
      - {id: ks_last, kind: drift, value: score, method: ks, baseline: {first: 2000}, window: {last: 3000}, min_samples: 500}
      - {id: psi_10m, kind: drift, value: score, method: psi, baseline: {first: 2000}, window: 10m, min_samples: 500}
      - {id: ph, kind: drift, value: score, method: page_hinkley}
defaults: {lfr: windowed, anpr: windowed}
"#;
    let config = std::sync::Arc::new(ddtwatch::config::Config::from_yaml(yaml, None).unwrap());
    for s in [Scenario::ScoreDrift, Scenario::ThresholdLowered] {
        for at in [0.3, 0.77] {
            check_with(config.clone(), s, 30_000, at);
        }
    }
}

#[test]
fn a_bad_snapshot_is_an_error() {
    let mut e = Engine::new(common::example_config(), ClockMode::Event);
    assert!(e.restore(b"{}").is_err());
    assert!(e.restore(br#"{"snapshot_version": 99}"#).is_err());
    // A well-formed snapshot of an earlier version is refused by its version, not misread.
    let lines = generate_lines(Scenario::Steady, 2_000, 1);
    for l in &lines {
        e.ingest(l.as_bytes(), 0);
    }
    let id = e.deployments().next().unwrap().id.clone();
    let mut v: serde_json::Value = serde_json::from_slice(&e.snapshot(&id, None).unwrap()).unwrap();
    assert!(e.restore(&serde_json::to_vec(&v).unwrap()).is_ok());
    // An unknown field (a newer build's, or an edit) is refused, not ignored.
    let mut extra = v.clone();
    extra["fields_from_the_future"] = 1.into();
    let err = e.restore(&serde_json::to_vec(&extra).unwrap()).unwrap_err();
    assert!(err.contains("unknown field"), "{err}");
    v["snapshot_version"] = 1.into();
    let err = e.restore(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.contains("snapshot_version 1"), "{err}");
}

/// A snapshot restored under a different group allow-list keeps its counters, and its alerts
/// drop out of the per-group cells: the cells then hold exactly what an engine that saw only the
/// events after the move tabulates (their decisions and outcomes on earlier alerts take nothing
/// out of cells those alerts never counted in).
#[test]
fn a_restore_under_another_allow_list_keeps_counters_and_tabulates_only_later_alerts() {
    let lines = generate_lines(Scenario::DemographicSkew, 30_000, 7);
    let split = lines.len() / 2;
    let config = common::example_config();
    let mut other = (*config).clone();
    other.groups.remove("sex").expect("the example config tabulates sex");
    let other = std::sync::Arc::new(other);
    let mut first = Engine::new(config, ClockMode::Event);
    for l in &lines[..split] {
        first.ingest(l.as_bytes(), 0);
    }
    let mut moved = Engine::new(other.clone(), ClockMode::Event);
    for id in first.deployments().map(|d| d.id.clone()).collect::<Vec<_>>() {
        moved.restore(&first.snapshot(&id, None).unwrap()).unwrap();
    }
    let mut straight = Engine::new(other.clone(), ClockMode::Event);
    let mut later_only = Engine::new(other, ClockMode::Event);
    for (i, l) in lines.iter().enumerate() {
        if i >= split {
            moved.ingest(l.as_bytes(), 0);
            later_only.ingest(l.as_bytes(), 0);
        }
        straight.ingest(l.as_bytes(), 0);
    }
    for e in [&mut moved, &mut straight, &mut later_only] {
        e.finish();
    }
    let (a, b) = (straight.summary().deployments, moved.summary().deployments);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.counters, y.counters);
    }
    let mut tabulated = 0;
    for (m, l) in moved.deployments().zip(later_only.deployments()) {
        assert_eq!(m.id, l.id);
        assert_eq!((&m.total.subject, &m.total.engaged), (&l.total.subject, &l.total.engaged), "{}", m.id);
        tabulated += m.total.engaged.iter().map(|c| c[0]).sum::<i64>();
    }
    assert!(tabulated > 0, "later engagements are tabulated");
}

/// Snapshots (file and state topic) hold state, not credentials: the authorising officer's
/// token from the `authorised` event is in no snapshot.
#[test]
fn snapshots_store_no_authority_token() {
    let lines = generate_lines(Scenario::ThresholdLowered, 5_000, 5);
    let token = lines
        .iter()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["authorisation"]["authority_token"].as_str().map(String::from)
        })
        .expect("the scenario has an authorised event with a token");
    let mut engine = Engine::new(common::example_config(), ClockMode::Event);
    for l in &lines {
        engine.ingest(l.as_bytes(), 0);
    }
    let all = serde_json::to_string(&engine.snapshot_all()).unwrap();
    assert!(all.contains("superintendent"), "the authorisation itself is kept");
    assert!(!all.contains(&token), "token in snapshot.json");
    let id = engine.deployments().next().unwrap().id.clone();
    let one = engine.snapshot(&id, None).unwrap();
    // A deployment snapshot is JSON bytes (the state producer compresses them on the wire).
    assert!(!String::from_utf8_lossy(&one).contains(&token), "token in a state-topic snapshot");
}
