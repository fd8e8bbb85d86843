//! Criterion benches of the engine without JSON parsing (issue: ≥ 1M events/s applying a
//! detection with 10 scores and evaluating the LFR default profile; Page-Hinkley ≥ 50M values/s).
//!
//! `apply_detection_10_scores`: one started LFR deployment with the embedded LFR profile (26
//! conditions incl. PSI and Page-Hinkley score drift, disparity, rates); detections arrive 1 ms
//! apart in event time, so the profile is evaluated once per 1,000 events as the engine does.
//! `evaluate_lfr_profile`: the cost of one evaluation of all conditions of one deployment
//! (what the engine pays per deployment per second, whatever the event rate).

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ddtwatch::config::{ClockMode, Config};
use ddtwatch::engine::Engine;
use ddtwatch::event::{Event, format_ts, parse_line};
use ddtwatch::stats::PageHinkley;
use std::hint::black_box;

const T0: i64 = 1_777_107_600_000; // 2026-04-25T09:00:00Z

fn line(v: serde_json::Value) -> Event {
    parse_line(v.to_string().as_bytes()).expect("bench event is valid")
}

fn setup_events() -> Vec<Event> {
    let dep = "lfr-bench";
    let base = |id: u64, ty: &str, ts: i64| {
        serde_json::json!({"schema_version": 1, "event_id": format!("e{id}"), "deployment_id": dep,
            "system": "lfr", "source_id": "cam-1", "type": ty, "ts": format_ts(ts)})
    };
    let mut out = Vec::new();
    let mut v = base(0, "deployment", T0 - 1000);
    v["phase"] = "started".into();
    out.push(line(v));
    let mut v = base(1, "status", T0 - 1000);
    v["threshold"] = 0.64.into();
    v["list"] = serde_json::json!({"version": "l1", "size": 1800, "built_at": format_ts(T0 - 3_600_000)});
    out.push(line(v));
    out
}

fn detections(n: usize) -> Vec<Event> {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            let scores: Vec<f64> = (0..10).map(|_| (next() * 0.5 * 1000.0).round() / 1000.0).collect();
            line(serde_json::json!({"schema_version": 1, "event_id": format!("d{i}"), "deployment_id": "lfr-bench",
                "system": "lfr", "source_id": "cam-1", "type": "detection", "ts": format_ts(T0 + i as i64),
                "count": 10, "scores": scores}))
        })
        .collect()
}

/// An engine with `setup` applied, its event ids spilled to `spill` if given.
fn engine_with(config: Arc<Config>, spill: Option<&std::path::Path>, setup: &[Event]) -> Engine {
    let mut e = Engine::new(config, ClockMode::Event);
    if let Some(dir) = spill {
        e.spill_dedup_to(dir).unwrap();
    }
    for ev in setup {
        e.ingest_parsed(&Ok(ev.clone()), b"", 0);
    }
    e
}

fn bench(c: &mut Criterion) {
    let setup = setup_events();
    let n = 100_000;
    let events = detections(n);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    // Event ids in memory (as `replay`), and spilled to disk as `run` does with a state_dir:
    // indexes in memory (the default budget), and none (budget 0: every lookup of a spilled
    // segment reads its file).
    let spill_dir = tempfile::tempdir().unwrap();
    for (name, index_mb) in [
        ("apply_detection_10_scores", None),
        ("apply_detection_10_scores_ids_spilled", Some(8)),
        ("apply_detection_10_scores_ids_spilled_no_index", Some(0)),
    ] {
        let config = match index_mb {
            None => Config::demo(),
            Some(mb) => {
                let text = format!("{}\nengine: {{dedup_index_mb: {mb}}}\n", ddtwatch::config::DEMO_CONFIG);
                Config::from_yaml(&text, None).unwrap()
            }
        };
        let config = Arc::new(config);
        let spill = index_mb.map(|_| spill_dir.path().join("dedup"));
        g.bench_function(name, |b| {
            b.iter_batched(
                || (engine_with(config.clone(), spill.as_deref(), &setup), events.clone()),
                |(mut engine, evs)| {
                    for ev in evs {
                        engine.ingest_parsed(&Ok(ev), b"", 0);
                    }
                    engine
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();

    // A deployment with 100k detections applied, evaluated at successive seconds.
    let mut engine = Engine::new(Arc::new(Config::demo()), ClockMode::Wall);
    for ev in setup.iter().chain(events.iter()) {
        engine.ingest_parsed(&Ok(ev.clone()), b"", T0);
    }
    // Every condition in full (as when the deployment had input in the second), then the same
    // deployment with no input since: only the clock-driven part refreshed (eval::refresh).
    let mut now = T0;
    engine.set_full_evaluation(true);
    c.bench_function("evaluate_lfr_profile", |b| {
        b.iter(|| {
            now += 1000;
            engine.tick(black_box(now));
        })
    });
    engine.set_full_evaluation(false);
    c.bench_function("refresh_lfr_profile", |b| {
        b.iter(|| {
            now += 1000;
            engine.tick(black_box(now));
        })
    });

    let values: Vec<f64> = (0..1_000_000u64).map(|i| ((i * 7919) % 1000) as f64 / 1000.0).collect();
    let mut g = c.benchmark_group("page_hinkley");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("update_1m", |b| {
        b.iter(|| {
            let mut ph = PageHinkley::new(0.005, 50.0, 30);
            for &x in &values {
                black_box(ph.update(x));
            }
            ph.detections
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
