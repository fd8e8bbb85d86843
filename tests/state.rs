//! `run` with a file source and `state_dir`: the engine state is snapshotted (periodically and at
//! shutdown) with the file position it covers; after a SIGKILL the restarted process restores
//! it and resumes the file exactly there, ending with the counters of a replay of everything.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ddtwatch::ingest::simulator::{Scenario, generate_lines};
use serde_json::Value;

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn file_source_resumes_from_the_snapshot_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = generate_lines(Scenario::ThresholdLowered, 20_000, 4);
    lines.extend(generate_lines(Scenario::AnprMisreads, 20_000, 4));
    let half = lines.len() / 2;
    let input = dir.path().join("events.ndjson");
    std::fs::write(&input, lines[..half].join("\n") + "\n").unwrap();
    let port = common::free_port();
    let state = dir.path().join("state");
    let config = std::fs::read_to_string(common::repo().join("config/ddtwatch.yaml")).unwrap();
    let mut v: serde_norway::Value = serde_norway::from_str(&config).unwrap();
    v["http"] = serde_norway::from_str(&format!("{{listen: \"127.0.0.1:{port}\", anonymous_reads: true}}")).unwrap();
    v["clock"] = "event".into();
    v["state_dir"] = state.to_string_lossy().to_string().into();
    v["sources"] = serde_norway::from_str(&format!("[{{kind: file, path: \"{}\"}}]", input.display())).unwrap();
    v["dead_letter"] = serde_norway::from_str("{kind: discard}").unwrap();
    v.as_mapping_mut().unwrap().remove("audit"); // the audit topic needs a Kafka source
    v["profiles_dir"] = common::repo().join("config/profiles").to_string_lossy().to_string().into();
    v["engine"] = serde_norway::from_str("{snapshot_interval: 200ms}").unwrap();
    v["receivers"] = serde_norway::from_str("{oversight: {kind: log}, ops: {kind: log}}").unwrap();
    let path = dir.path().join("ddtwatch.yaml");
    std::fs::write(&path, serde_norway::to_string(&v).unwrap()).unwrap();
    let spawn = || {
        common::Proc(
            Command::new(common::bin())
                .args(["run", "--config"])
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let base = format!("http://127.0.0.1:{port}");
    let snapshot = state.join("snapshot.json");
    let first_len = std::fs::metadata(&input).unwrap().len();
    let covers = |len: u64| {
        std::fs::read(&snapshot)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|s| s["source_positions"][input.to_string_lossy().as_ref()] == len)
    };

    let mut first = spawn();
    wait_for("the first half applied", || {
        common::api_counters(&base).is_some_and(|c| c == common::replay_counters(&lines[..half]))
    });
    wait_for("a snapshot covering the first half", || covers(first_len));
    // ≈ 10,000 ids a deployment: all but the newest run went to state_dir/dedup, and the metric
    // shows how many are on disk.
    let m = common::broker::http_text(&format!("{base}/metrics")).unwrap();
    let on_disk = common::broker::metric(&m, r#"ddtwatch_dedup_remembered_ids{where="disk"}"#);
    let in_memory = common::broker::metric(&m, r#"ddtwatch_dedup_remembered_ids{where="memory"}"#);
    assert!(on_disk >= 10_000.0 && in_memory < on_disk, "dedup ids on disk {on_disk}, in memory {in_memory}");
    let index = common::broker::metric(&m, "ddtwatch_dedup_index_bytes");
    assert!(index > on_disk * 2.0 && index < on_disk * 2.5, "index of {index} bytes for {on_disk} ids on disk");
    assert!(std::fs::read_dir(state.join("dedup")).unwrap().count() > 0, "spill files in state_dir/dedup");
    first.0.kill().unwrap();
    first.0.wait().unwrap();

    let mut f = std::fs::OpenOptions::new().append(true).open(&input).unwrap();
    f.write_all((lines[half..].join("\n") + "\n").as_bytes()).unwrap();
    drop(f);
    let mut second = spawn();
    let all = common::replay_counters(&lines);
    wait_for("everything applied exactly once", || common::api_counters(&base).is_some_and(|c| c == all));

    // SIGTERM: a final snapshot covering the whole file, exit 0.
    assert!(Command::new("kill").args(["-TERM", &second.0.id().to_string()]).status().unwrap().success());
    assert!(second.0.wait().unwrap().success());
    assert!(covers(std::fs::metadata(&input).unwrap().len()), "shutdown snapshot covers the whole file");
}
