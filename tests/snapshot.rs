//! A deployment restored from its snapshot mid-stream continues exactly as if it had never
//! moved: same summary (counters, groups, rates, condition states, lifecycles, latency).

mod common;

use ddtwatch::config::ClockMode;
use ddtwatch::engine::Engine;
use ddtwatch::ingest::simulator::{Scenario, generate_lines};

fn check(scenario: Scenario, events: usize, split_at: f64) {
    let lines = generate_lines(scenario, events, 5);
    let split = (lines.len() as f64 * split_at) as usize;
    let config = common::example_config();
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
    assert_eq!(a, b, "{} split at {split}", scenario.name());
}

#[test]
fn restored_deployments_continue_exactly() {
    for s in [Scenario::ThresholdLowered, Scenario::DemographicSkew, Scenario::ScoreDrift, Scenario::AnprMisreads] {
        for at in [0.3, 0.77] {
            check(s, 30_000, at);
        }
    }
}

#[test]
fn a_bad_snapshot_is_an_error() {
    let mut e = Engine::new(common::example_config(), ClockMode::Event);
    assert!(e.restore(b"{}").is_err());
    assert!(e.restore(br#"{"snapshot_version": 99}"#).is_err());
}
