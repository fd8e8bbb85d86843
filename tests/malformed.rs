//! Malformed input is dead-lettered with a reason and counted; valid lines around it are applied.

mod common;

use std::collections::BTreeMap;

use ddtwatch::event::MAX_EVENT_BYTES;
use ddtwatch::ingest::simulator::{Scenario, generate_lines};

fn bad_lines() -> Vec<(String, &'static str, bool)> {
    // (line, expected reason, names a valid deployment)
    let valid = r#"{"schema_version":1,"event_id":"x-1","type":"detection","deployment_id":"lfr-sim-steady","system":"lfr","source_id":"cam-1","ts":"2026-04-25T09:30:00Z","count":3}"#;
    vec![
        (valid[..70].to_string(), "malformed_json", false),
        ("NaN".to_string(), "malformed_json", false),
        (valid.replace("\"count\":3", "\"count\":1e999"), "malformed_json", false),
        (valid.replace("\"count\":3", "\"count\":\"3\""), "wrong_type", true),
        (valid.replace("\"count\":3", "\"count\":3,\"scores\":[0.1,NaN]"), "malformed_json", false),
        (valid.replace("\"count\":3", "\"count\":3,\"scores\":[0.1,7.0]"), "out_of_range", true),
        (format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_EVENT_BYTES)), "too_large", false),
        (valid.replace("\"detection\"", "\"selfie\""), "unknown_type", true),
        (valid.replace("\"schema_version\":1", "\"schema_version\":2"), "unsupported_version", true),
        (valid.replace("\"ts\":\"2026-04-25T09:30:00Z\",", ""), "missing_field", true),
        (valid.replace("2026-04-25T09:30:00Z", "2026-04-26T09:30:00Z").replace("x-1", "x-2"), "future_timestamp", true),
        ("[1,2,3]".to_string(), "not_an_object", false),
        (
            r#"{"schema_version":1,"event_id":"o-1","type":"outcome","deployment_id":"lfr-sim-steady","system":"lfr","source_id":"t","ts":"2026-04-25T09:30:00Z","alert_id":"never-seen","result":"true_match"}"#.to_string(),
            "orphan",
            true,
        ),
    ]
}

#[test]
fn bad_lines_are_dead_lettered_and_valid_ones_applied() {
    let valid = generate_lines(Scenario::Steady, 20_000, 1);
    let clean = common::replay(common::example_config(), &valid);
    // Interleave the bad lines through the valid stream.
    let bad = bad_lines();
    let mut mixed: Vec<String> = Vec::new();
    let step = valid.len() / (bad.len() + 1);
    for (i, l) in valid.iter().enumerate() {
        mixed.push(l.clone());
        if i % step == step / 2 && i / step < bad.len() {
            mixed.push(bad[i / step].0.clone());
        }
    }
    assert_eq!(mixed.len(), valid.len() + bad.len());
    let r = common::replay(common::example_config(), &mixed);

    // Every bad line is dead-lettered with its reason; nothing else is.
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (_, reason, _) in &bad {
        *want.entry(reason.to_string()).or_default() += 1;
    }
    assert_eq!(r.summary.invalid.by_reason, want);
    assert_eq!(r.summary.invalid.total, bad.len() as u64);
    assert_eq!(r.dead.len(), bad.len());
    for (line, reason, _) in &bad {
        assert!(
            r.dead.iter().any(|d| d.reason.as_str() == *reason && &*d.payload == line.as_bytes()),
            "no dead letter with reason {reason} and the original payload"
        );
    }
    // The deployment is charged with the invalid events that named it.
    let attributed = bad.iter().filter(|b| b.2).count() as u64;
    let d = &r.summary.deployments[0];
    assert_eq!(d.counters.invalid, attributed);
    // All valid lines were applied: the counters equal the clean run's.
    let mut counters = d.counters.clone();
    counters.invalid = 0;
    assert_eq!(counters, clean.summary.deployments[0].counters);
}

/// A file's leading UTF-8 BOM is stripped (editors on Windows write one); a BOM inside the
/// stream is `malformed_json`; a 128 MB line is skipped while streaming (`too_large`) without
/// being held in memory: peak RSS of the replay stays far below the line's size.
#[test]
fn bom_and_huge_lines_in_a_replayed_file() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let lines = ddtwatch::ingest::simulator::generate_lines(ddtwatch::ingest::simulator::Scenario::Steady, 1_000, 1);
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(b"\xEF\xBB\xBF").unwrap();
        for l in &lines[..500] {
            writeln!(f, "{l}").unwrap();
        }
        f.write_all(b"\xEF\xBB\xBF").unwrap();
        writeln!(f, "{}", lines[500]).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        f.write_all(b"{\"pad\":\"").unwrap();
        for _ in 0..128 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\"}\n").unwrap();
        for l in &lines[501..] {
            writeln!(f, "{l}").unwrap();
        }
    }
    let summary = dir.path().join("s.json");
    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kb=%M"])
        .arg(common::bin())
        .args(["replay", "--quiet", "--input"])
        .arg(&path)
        .arg("--summary")
        .arg(&summary)
        .arg("--dead-letter")
        .arg(dir.path().join("dead.jsonl"))
        .output()
        .expect("/usr/bin/time (scripts/test installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["invalid"]["total"], 2, "{}", s["invalid"]);
    assert_eq!(s["invalid"]["by_reason"]["malformed_json"], 1);
    assert_eq!(s["invalid"]["by_reason"]["too_large"], 1);
    let applied: u64 =
        s["deployments"].as_array().unwrap().iter().map(|d| d["counters"]["detections"].as_u64().unwrap_or(0)).sum();
    assert!(applied > 0);
    let rss_kb: u64 = stderr.lines().find_map(|l| l.strip_prefix("maxrss_kb=")?.trim().parse().ok()).expect("maxrss");
    assert!(rss_kb < 64 * 1024, "peak RSS {rss_kb} kB with a 128 MB line: the line was buffered");
}
