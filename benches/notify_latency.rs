//! Breach-to-notification latency (issue 6): from handing the event that trips a condition to the
//! pipeline until (a) its notification is durable in the outbox (fsync'd journal on this disk) and
//! (b) the signed webhook has been acknowledged by a local receiver (axum on 127.0.0.1).
//!
//! Each sample is a status event reporting a threshold under the 0.6 floor at a new second of
//! event time, which evaluates and fires `threshold_floor`; the next one resolves it. Samples are
//! paced: each waits for its delivery, so this is latency, not a backlog.
//!
//! `cargo bench --bench notify_latency` (`DDTWATCH_LAT_SAMPLES`, default 2000).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use ddtwatch::config::{ClockMode, Config};
use ddtwatch::engine::Engine;
use ddtwatch::ingest::{DeadLetterSink, Ingest, Pipeline};
use ddtwatch::notify::dispatch::{self, Dispatcher};
use ddtwatch::notify::outbox::Outbox;

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let samples: usize = std::env::var("DDTWATCH_LAT_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let arrivals: Arrivals = Arc::default();
    let base = rt.block_on(async {
        let a = arrivals.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |h: HeaderMap| {
                let a = a.clone();
                async move {
                    let id = h.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    a.lock().unwrap().insert(id, Instant::now());
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        base
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "bench-secret").unwrap();
    let config = Config::from_yaml(
        &format!(
            r#"clock: event
dead_letter: {{kind: discard}}
groups: {{sex: [female, male, unknown]}}
defaults: {{lfr: lfr}}
receivers: {{hook: {{kind: webhook, url: "{base}/hook", secret_file: {secret}}}, ops: {{kind: log}}, oversight: {{kind: log}}}}
profiles:
  lfr:
    conditions:
      - {{id: threshold_floor, kind: state, check: threshold_floor, min: 0.6, severity: critical, notify: [hook]}}
"#,
            secret = dir.path().join("secret").display()
        ),
        None,
    )
    .unwrap();
    let receivers = config.raw.receivers.clone();
    let pipeline = Pipeline::new(Engine::new(Arc::new(config), ClockMode::Event), DeadLetterSink::Discard);
    let outbox = Arc::new(Mutex::new(Outbox::open(&dir.path().join("outbox.jsonl"), 16 << 20).unwrap()));
    let notifier = ddtwatch::notify::Notifier::new(Some(outbox.clone()), None);
    pipeline.set_publisher(notifier.clone());
    let d = Dispatcher::new(outbox.clone(), None);
    let health = ddtwatch::health::Health::new();
    let task = health.task("dispatcher", Duration::from_secs(600));
    rt.spawn(dispatch::run(
        d,
        move || receivers.clone(),
        notifier.wake.clone(),
        ddtwatch::time::wall_clock_ms,
        task,
        health.clone(),
    ));

    let ev = |id: String, dep: &str, ty: &str, ts: &str, extra: &str| {
        format!(
            r#"{{"schema_version":1,"event_id":"{id}","deployment_id":"{dep}","system":"lfr","source_id":"cam-1","type":"{ty}","ts":"{ts}"{extra}}}"#
        )
    };
    let mut durable = Vec::with_capacity(samples);
    let mut starts = HashMap::with_capacity(samples);
    let dep = "lat-1";
    let start_ev = ev("start".into(), dep, "deployment", "2026-04-25T09:00:00Z", r#","phase":"started""#);
    pipeline.ingest([Ingest::Raw(start_ev.as_bytes())], 0);
    let enqueued = || {
        let o = outbox.lock().unwrap();
        o.depth() + o.results.iter().filter(|((_, r), _)| *r != "retry").map(|(_, n)| n).sum::<u64>() as usize
    };
    let mut transitions = pipeline.subscribe();
    for i in 0..samples {
        // One deployment, 2 s of event time per sample: a status under the floor at a new second
        // evaluates and fires (measured); one back above the floor a second later resolves.
        let t = chrono::DateTime::from_timestamp(1_777_107_601 + 2 * i as i64, 0).unwrap();
        let ts = |s: i64| (t + chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let trip = ev(format!("{i}-a"), dep, "status", &ts(0), r#","threshold":0.5"#);
        let before = enqueued();
        let start = Instant::now();
        pipeline.ingest([Ingest::Raw(trip.as_bytes())], 0);
        durable.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(enqueued(), before + 1, "sample {i} enqueued one notification");
        let t = transitions.try_recv().expect("the firing transition");
        let key = ddtwatch::notify::key::NotificationKey::of(&t).to_string();
        // Paced: wait for this delivery before the next breach (latency, not a backlog).
        while !arrivals.lock().unwrap().contains_key(&key) {
            std::thread::sleep(Duration::from_micros(50));
        }
        starts.insert(key, start);
        let reset = ev(format!("{i}-b"), dep, "status", &ts(1), r#","threshold":0.7"#);
        pipeline.ingest([Ingest::Raw(reset.as_bytes())], 0);
        assert_eq!(transitions.try_recv().expect("resolved").state.as_str(), "resolved");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !starts.keys().all(|k| arrivals.lock().unwrap().contains_key(k)) {
        assert!(Instant::now() < deadline, "not every notification arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    let arr = arrivals.lock().unwrap();
    let mut delivered: Vec<f64> = starts.iter().map(|(k, s)| arr[k].duration_since(*s).as_secs_f64() * 1e3).collect();
    // Reference: one 300-byte append + fdatasync on the same disk.
    let mut fsync: Vec<f64> = {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.path().join("fsync-probe")).unwrap();
        (0..200)
            .map(|_| {
                let s = Instant::now();
                f.write_all(&[b'x'; 300]).unwrap();
                f.sync_data().unwrap();
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    };
    println!("notify_latency: {samples} breaches, outbox journal fsync'd on {}", dir.path().display());
    for (name, v) in [
        ("fdatasync of a 300-byte append", &mut fsync),
        ("event → durable in outbox", &mut durable),
        ("event → delivered (local webhook)", &mut delivered),
    ] {
        let (p50, p99, max) = (pct(v, 0.5), pct(v, 0.99), pct(v, 1.0));
        println!("  {name:<36} p50 {p50:.3} ms  p99 {p99:.3} ms  max {max:.3} ms");
    }
}
