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
/// several workers really share them), interleaved, with invalid lines and orphans.
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
        let out = Command::new(common::bin())
            .args(["replay", "--quiet", "--workers", workers, "--config"])
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
    for workers in ["2", "4"] {
        let other = run(workers);
        assert!(other.0 == one.0, "transitions differ with {workers} workers");
        assert!(other.1 == one.1, "summaries differ with {workers} workers");
        assert!(other.2 == one.2, "dead letters differ with {workers} workers");
    }
}
