//! Memory of the engine: 1,000 LFR deployments (embedded LFR profile: 26 conditions, PSI and
//! Page-Hinkley drift, disparity tables, HDR latencies), 10M events round-robin over them
//! (detections with 10 scores; every 100th event an alert with a decision and an outcome).
//! Prints resident memory (VmRSS) after every million events, and how much of the growth is the
//! event-id dedup set that CONDITIONS.md requires (≥ 1h and ≥ the last 1,000,000 ids per
//! deployment) versus everything else.
//!
//! `cargo bench --bench memory` (env `DDTWATCH_MEM_EVENTS` to change the 10M;
//! `DDTWATCH_MEM_DEDUP=short` remembers event ids for 1 minute only, to see the engine's own
//! memory apart from the dedup set the spec requires; `DDTWATCH_MEM_DEDUP=memory` keeps the
//! spec's id set all in memory, as `replay` does, instead of spilling sorted runs to a temporary
//! directory as `run` does to `state_dir/dedup`; `DDTWATCH_MEM_INDEX_MB` sets the budget of their
//! in-memory indexes, default 8).

use std::sync::Arc;

use ddtwatch::config::{ClockMode, Config};
use ddtwatch::engine::Engine;
use ddtwatch::event::format_ts;

const T0: i64 = 1_777_107_600_000;
const DEPLOYMENTS: usize = 1000;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let step: usize = std::env::var("DDTWATCH_MEM_STEP").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let total: usize = std::env::var("DDTWATCH_MEM_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let engine_yaml = match (std::env::var("DDTWATCH_MEM_DEDUP").as_deref(), std::env::var("DDTWATCH_MEM_INDEX_MB")) {
        (Ok("short"), _) => "{dedup_horizon: 1m, dedup_min_ids: 0}".to_string(),
        (_, Ok(mb)) => format!("{{dedup_index_mb: {mb}}}"),
        _ => "{}".to_string(),
    };
    let text = format!("{}\nengine: {engine_yaml}\n", ddtwatch::config::DEMO_CONFIG);
    let config = Config::from_yaml(&text, None).expect("demo config with the bench's engine settings");
    println!(
        "dedup: ids kept >= {} and >= the last {} per deployment",
        config.raw.engine.dedup_horizon, config.raw.engine.dedup_min_ids
    );
    let mut engine = Engine::new(Arc::new(config), ClockMode::Event);
    let spill_dir = tempfile::tempdir().expect("a temporary directory");
    if std::env::var("DDTWATCH_MEM_DEDUP").is_err() {
        engine.spill_dedup_to(&spill_dir.path().join("dedup")).expect("spill directory");
        println!(
            "dedup: sorted id runs spill to {}, indexes in memory up to {} MiB",
            spill_dir.path().display(),
            engine.config().raw.engine.dedup_index_mb
        );
    }
    // The pipeline drains transitions, dead letters and lifecycle records after every batch;
    // so does the bench (else they would pile up here and not in production).
    let mut drained = [0usize; 3];
    let mut feed = |engine: &mut Engine, line: String| {
        engine.ingest(line.as_bytes(), 0);
        drained[0] += engine.drain_transitions().len();
        drained[1] += engine.drain_dead_letters().len();
        drained[2] += engine.drain_lifecycle().len();
    };
    let before = rss_mb();
    for d in 0..DEPLOYMENTS {
        let head = format!(
            r#""schema_version":1,"deployment_id":"lfr-{d}","system":"lfr","source_id":"cam-1","ts":"{}""#,
            format_ts(T0)
        );
        feed(&mut engine, format!(r#"{{{head},"event_id":"s{d}","type":"deployment","phase":"started"}}"#));
        feed(
            &mut engine,
            format!(
                r#"{{{head},"event_id":"t{d}","type":"status","threshold":0.64,"list":{{"version":"l1","size":1800,"built_at":"{}"}}}}"#,
                format_ts(T0 - 3_600_000)
            ),
        );
    }
    println!(
        "engine with {DEPLOYMENTS} started LFR deployments: RSS {:.1} MB (process before: {before:.1} MB)",
        rss_mb()
    );
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let groups = ["asian", "black", "mixed", "white", "other"];
    let started = std::time::Instant::now();
    for i in 0..total {
        let d = i % DEPLOYMENTS;
        // 10,000 events per second across all deployments (10 per deployment).
        let ts = format_ts(T0 + 1000 + i as i64 / 10);
        let head = format!(r#""schema_version":1,"deployment_id":"lfr-{d}","system":"lfr","ts":"{ts}""#);
        let line = if i % 100 == 99 {
            let a = i / 100;
            let g = groups[a % groups.len()];
            feed(
                &mut engine,
                format!(
                    r#"{{{head},"event_id":"a{i}","source_id":"cam-1","type":"alert","alert_id":"x{a}","score":0.7,"threshold":0.64,"list_version":"l1","subject_groups":{{"ethnicity":"{g}","sex":"male"}}}}"#
                ),
            );
            feed(
                &mut engine,
                format!(
                    r#"{{{head},"event_id":"j{i}","source_id":"console","type":"adjudication","alert_id":"x{a}","decision":"engage","operator_token":"op-1","verifier_token":"op-2"}}"#
                ),
            );
            format!(
                r#"{{{head},"event_id":"o{i}","source_id":"team","type":"outcome","alert_id":"x{a}","result":"{}"}}"#,
                if a % 3 == 0 { "not_located" } else { "true_match" }
            )
        } else {
            let scores: Vec<String> = (0..10).map(|_| format!("{:.3}", rnd() * 0.5)).collect();
            format!(
                r#"{{{head},"event_id":"d{i}","source_id":"cam-1","type":"detection","count":10,"scores":[{}]}}"#,
                scores.join(",")
            )
        };
        feed(&mut engine, line);
        if (i + 1) % step == 0 {
            println!(
                "{:>9} events: RSS {:7.1} MB, dedup ids held {:>9} ({:>9} on disk, index {:5.1} MB), breaches {:>6}, {:.0} events/s",
                i + 1,
                rss_mb(),
                engine.dedup_len(),
                engine.dedup_spill_counts().ids_on_disk,
                engine.dedup_spill_counts().index_bytes as f64 / 1e6,
                engine.breaches().len(),
                (i + 1) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let s = engine.summary();
    let alerts: u64 = s.deployments.iter().map(|d| d.counters.alerts).sum();
    println!(
        "done: {} deployments, {alerts} alerts, RSS {:.1} MB; drained {} transitions, {} dead letters, {} lifecycle records",
        s.deployments.len(),
        rss_mb(),
        drained[0],
        drained[1],
        drained[2]
    );
    assert_eq!(drained[1], 0, "every event of the bench is valid");
}
