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
