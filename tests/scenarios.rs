//! Every simulator scenario, replayed with the shipped config, fires exactly the conditions its
//! documentation names — and no others.

mod common;

use std::collections::BTreeSet;

use ddtwatch::ingest::simulator::{Scenario, generate_lines};
use ddtwatch::rules::TransitionKind;

fn fired(s: Scenario, events: usize, seed: u64) -> BTreeSet<String> {
    let lines = generate_lines(s, events, seed);
    let r = common::replay(common::example_config(), &lines);
    assert_eq!(r.summary.invalid.total, 0, "{}: simulator output must be valid: {:?}", s.name(), r.dead.first());
    assert_eq!(r.summary.deployments.len(), 1);
    r.transitions.iter().filter(|t| t.state == TransitionKind::Firing).map(|t| t.condition.clone()).collect()
}

fn expected(s: Scenario) -> BTreeSet<String> {
    s.expected_breaches().iter().map(|c| c.to_string()).collect()
}

/// The simulator draws every event independently (no error diffusion), so a scenario carries
/// real sampling noise: over five seeds, each intended breach must fire in at least four, and
/// an unintended one in at most one (each condition's false-breach budget is 1% a day; a
/// 100,000-event run is about 6.5 hours).
fn check(s: Scenario) {
    let want = expected(s);
    let runs: Vec<BTreeSet<String>> = (1..=5).map(|seed| fired(s, 100_000, seed)).collect();
    for c in &want {
        let hits = runs.iter().filter(|f| f.contains(c)).count();
        assert!(hits >= 4, "{}: intended breach {c} fired in {hits} of 5 seeds: {runs:?}", s.name());
    }
    let extra: BTreeSet<&String> = runs.iter().flatten().filter(|c| !want.contains(*c)).collect();
    for c in extra {
        let hits = runs.iter().filter(|f| f.contains(c)).count();
        assert!(hits <= 1, "{}: unintended breach {c} fired in {hits} of 5 seeds: {runs:?}", s.name());
    }
}

macro_rules! scenario_test {
    ($name:ident, $scenario:expr) => {
        #[test]
        fn $name() {
            check($scenario);
        }
    };
}

scenario_test!(steady_fires_nothing, Scenario::Steady);
scenario_test!(threshold_lowered, Scenario::ThresholdLowered);
scenario_test!(demographic_skew, Scenario::DemographicSkew);
scenario_test!(score_drift, Scenario::ScoreDrift);
scenario_test!(automation_bias, Scenario::AutomationBias);
scenario_test!(camera_silence, Scenario::CameraSilence);
scenario_test!(unauthorised_window, Scenario::UnauthorisedWindow);
scenario_test!(anpr_steady_fires_nothing, Scenario::AnprSteady);
scenario_test!(anpr_misreads, Scenario::AnprMisreads);

#[test]
fn every_scenario_is_tested() {
    // Adding a scenario without a test above fails here.
    assert_eq!(Scenario::ALL.len(), 9);
}

/// Acceptance: `simulate --scenario threshold_lowered --events 200000 | replay --config
/// config/ddtwatch.yaml --summary out.json` through the real binary.
#[test]
fn threshold_lowered_through_the_cli() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let mut sim = Command::new(common::bin())
        .args(["simulate", "--scenario", "threshold_lowered", "--events", "200000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let replay = Command::new(common::bin())
        .args(["replay", "--config"])
        .arg(common::repo().join("config/ddtwatch.yaml"))
        .arg("--summary")
        .arg(&out)
        .stdin(sim.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(sim.wait().unwrap().success());
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let stdout = String::from_utf8(replay.stdout).unwrap();
    let fired: BTreeSet<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["state"] == "firing")
        .map(|v| v["condition"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fired, expected(Scenario::ThresholdLowered));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let d = &summary["deployments"][0];
    assert_eq!(d["summary_version"], 1);
    assert_eq!(d["phase"], "stopped");
    let floor = d["conditions"].as_array().unwrap().iter().find(|c| c["id"] == "threshold_floor").unwrap();
    assert_eq!(floor["times_fired"], 1);
    assert!(String::from_utf8_lossy(&replay.stderr).contains("replay: done"), "progress on stderr");
}
