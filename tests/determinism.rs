//! Identical input gives identical output, byte for byte (the binary, end to end).

mod common;

use std::process::Command;

fn run(input: &std::path::Path, summary: &std::path::Path) -> Vec<u8> {
    let out = Command::new(common::bin())
        .args(["replay", "--quiet", "--config"])
        .arg(common::repo().join("config/ddtwatch.yaml"))
        .arg("--input")
        .arg(input)
        .arg("--summary")
        .arg(summary)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn same_input_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let sim = Command::new(common::bin())
        .args(["simulate", "--scenario", "threshold_lowered", "--events", "60000", "--seed", "5"])
        .output()
        .unwrap();
    assert!(sim.status.success());
    // Two deployments interleaved, so map iteration order would show up if it leaked.
    let other = Command::new(common::bin())
        .args(["simulate", "--scenario", "anpr_steady", "--events", "30000"])
        .output()
        .unwrap();
    let mut data = sim.stdout.clone();
    data.extend_from_slice(&other.stdout);
    std::fs::write(&input, &data).unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let t1 = run(&input, &a);
    let t2 = run(&input, &b);
    assert!(!t1.is_empty(), "the scenario produces transitions");
    assert_eq!(t1, t2, "transitions differ");
    let (s1, s2) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(s1, s2, "summaries differ");
    let v: serde_json::Value = serde_json::from_slice(&s1).unwrap();
    assert_eq!(v["deployments"].as_array().unwrap().len(), 2);
}

#[test]
fn unreadable_input_is_an_error_exit() {
    let out = Command::new(common::bin()).args(["replay", "--input", "/nonexistent/file.ndjson"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/file.ndjson"));
}

/// `replay --workers N` evaluates deployments on N threads: transitions, summary and dead letters
/// are byte-identical for 1, 2 and 4 workers over every scenario, 4 deployments of each (36, so
/// several workers really share them), interleaved, with invalid lines and orphans. The same
/// holds with `--full-evaluation` (every condition evaluated in full every second, none only
/// refreshed): skipping the unchanged part changes nothing that is output.
#[test]
fn workers_do_not_change_a_byte() {
    use ddtwatch::ingest::simulator::{Scenario, generate_lines};
    let dir = tempfile::tempdir().unwrap();
    let mut streams: Vec<Vec<String>> = Vec::new();
    for s in Scenario::ALL {
        for k in 0..4u64 {
            let lines = generate_lines(s, 4_000, 7 + k);
            let id = serde_json::from_str::<serde_json::Value>(&lines[0]).unwrap()["deployment_id"]
                .as_str()
                .unwrap()
                .to_string();
            let (from, to) = (format!("\"deployment_id\":\"{id}\""), format!("\"deployment_id\":\"{id}-{k}\""));
            streams.push(lines.iter().map(|l| l.replace(&from, &to)).collect());
        }
    }
    let mut lines = Vec::new();
    for i in 0..streams.iter().map(Vec::len).max().unwrap() {
        for s in &streams {
            if let Some(l) = s.get(i) {
                lines.push(l.clone());
            }
        }
        if i % 997 == 0 {
            lines.push("{\"not\": \"an event\"".to_string());
            lines.push(format!(
                r#"{{"schema_version":1,"event_id":"orphan-{i}","type":"adjudication","deployment_id":"lfr-sim-steady-0","system":"lfr","source_id":"console-1","ts":"2026-04-25T10:00:00Z","alert_id":"never-{i}","decision":"dismiss","operator_token":"t"}}"#
            ));
        }
    }
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let run = |workers: &str| {
        let (summary, dead) =
            (dir.path().join(format!("s{workers}.json")), dir.path().join(format!("d{workers}.jsonl")));
        let (workers, full) = match workers.strip_suffix("-full") {
            Some(w) => (w, Some("--full-evaluation")),
            None => (workers, None),
        };
        let out = Command::new(common::bin())
            .args(["replay", "--quiet", "--workers", workers])
            .args(full)
            .arg("--config")
            .arg(common::repo().join("config/ddtwatch.yaml"))
            .arg("--input")
            .arg(&input)
            .arg("--summary")
            .arg(&summary)
            .arg("--dead-letter")
            .arg(&dead)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (out.stdout, std::fs::read(summary).unwrap(), std::fs::read(dead).unwrap())
    };
    let one = run("1");
    let v: serde_json::Value = serde_json::from_slice(&one.1).unwrap();
    assert_eq!(v["deployments"].as_array().unwrap().len(), 36);
    assert!(one.0.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() > 36, "the scenarios breach");
    let dead = String::from_utf8_lossy(&one.2);
    assert!(dead.contains("\"orphan\"") && dead.contains("\"malformed_json\""), "dead letters of both kinds");
    for workers in ["2", "4", "1-full", "2-full"] {
        let other = run(workers);
        assert!(other.0 == one.0, "transitions differ with {workers} workers");
        assert!(other.1 == one.1, "summaries differ with {workers} workers");
        assert!(other.2 == one.2, "dead letters differ with {workers} workers");
    }
}

/// Most per-second evaluations of a sparse stream find their deployment unchanged and are only
/// refreshed (`eval::refresh`); in this (debug) build each refresh is also checked against a full
/// evaluation, which panics on any difference. The refreshed share shows the check is exercised.
#[test]
fn unchanged_deployments_are_refreshed_and_checked() {
    use ddtwatch::config::{ClockMode, Config};
    use ddtwatch::engine::Engine;
    use ddtwatch::ingest::simulator::{Scenario, generate_lines};
    for s in Scenario::ALL {
        let mut engine = Engine::new(std::sync::Arc::new(Config::demo()), ClockMode::Event);
        for l in generate_lines(s, 3_000, 11) {
            engine.ingest(l.as_bytes(), 0);
        }
        engine.finish();
        let (full, refreshed) = (engine.stats.conditions_evaluated, engine.stats.conditions_refreshed);
        assert!(refreshed > 0 && full > 0, "{s:?}: {full} full, {refreshed} refreshed");
    }
}

/// The clock-driven edges of refreshed conditions, where a refresh and a full evaluation could
/// part: a camera silent exactly `max_gap` (not yet a breach; one second later, a breach) and a
/// deletion exactly due (not yet late; one second later, late), on deployments with no input of
/// their own while another deployment's events move the clock second by second.
#[test]
fn refreshed_conditions_turn_at_the_same_second_as_full_ones() {
    use ddtwatch::config::{ClockMode, Config};
    use ddtwatch::engine::Engine;
    let config = Config::from_yaml(
        r#"
clock: event
profiles:
  edge:
    conditions:
      - {id: quiet, kind: silence, type: detection, max_gap: 5m, severity: warning}
      - {id: deletion, kind: deadline, check: deletion_after_stop, scope: non_match_biometrics, within: 5m, severity: critical}
defaults: {lfr: edge}
receivers: {ops: {kind: log}, oversight: {kind: log}}
groups: {ethnicity: [asian, black, white], sex: [female, male]}
"#,
        None,
    )
    .expect("config");
    let t0 = 1_777_107_600_000i64; // 2026-04-25T09:00:00Z
    let ts = |ms: i64| ddtwatch::event::format_ts(ms);
    let mut lines = vec![
        format!(
            r#"{{"schema_version":1,"event_id":"a1","type":"deployment","phase":"started","deployment_id":"a","system":"lfr","source_id":"control","ts":"{}"}}"#,
            ts(t0)
        ),
        format!(
            r#"{{"schema_version":1,"event_id":"a2","type":"detection","count":1,"deployment_id":"a","system":"lfr","source_id":"cam-1","ts":"{}"}}"#,
            ts(t0)
        ),
        format!(
            r#"{{"schema_version":1,"event_id":"b1","type":"deployment","phase":"started","deployment_id":"b","system":"lfr","source_id":"control","ts":"{}"}}"#,
            ts(t0)
        ),
        format!(
            r#"{{"schema_version":1,"event_id":"b2","type":"deployment","phase":"stopped","deployment_id":"b","system":"lfr","source_id":"control","ts":"{}"}}"#,
            ts(t0)
        ),
    ];
    for s in 1..=400 {
        lines.push(format!(
            r#"{{"schema_version":1,"event_id":"c{s}","type":"detection","count":1,"deployment_id":"c","system":"lfr","source_id":"cam-9","ts":"{}"}}"#,
            ts(t0 + s * 1000)
        ));
    }
    let run = |full: bool| {
        let mut engine = Engine::new(std::sync::Arc::new(config.clone()), ClockMode::Event);
        engine.set_full_evaluation(full);
        for l in &lines {
            engine.ingest(l.as_bytes(), 0);
        }
        engine.finish();
        let fired: Vec<(String, String, i64)> = engine
            .drain_transitions()
            .into_iter()
            .map(|t| (t.deployment_id.clone(), t.condition.clone(), t.at))
            .collect();
        (fired, engine.stats.conditions_refreshed)
    };
    let (refreshing, refreshed) = run(false);
    let (full, none) = run(true);
    assert!(refreshed > 700 && none == 0, "a and b are refreshed each second: {refreshed}");
    assert_eq!(refreshing, full);
    assert!(refreshing.contains(&("a".into(), "quiet/cam-1".into(), t0 + 301_000)), "{refreshing:?}");
    assert!(refreshing.contains(&("b".into(), "deletion".into(), t0 + 301_000)), "{refreshing:?}");
}
