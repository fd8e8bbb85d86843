//! National-scale ANPR replay (issue 21): 1,000 ANPR deployments of 10 cameras each, always on,
//! at about national density in event time (≈ 1,000 plate reads a second over 10,000 cameras:
//! each camera batches its reads into one detection event a minute), ≥ 50M reads, with alerts,
//! human decisions and outcomes, through JSON parsing and the engine with the shipped ANPR
//! profile, as `ddtwatch replay` does. Prints reads/s sustained, peak RSS and the projected time
//! for a national year (3·10¹⁰ reads). Generating the JSON lines is not timed.
//!
//! Run: `cargo bench --bench anpr_national` (env: `DDTWATCH_NAT_READS`, default 50,000,000;
//! `DDTWATCH_NAT_DEPLOYMENTS`, default 1,000; `DDTWATCH_NAT_WORKERS`, default the cores;
//! `DDTWATCH_NAT_SCRAPES`, /metrics scrapes at the end, default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ddtwatch::config::{ClockMode, Config};
use ddtwatch::engine::{Engine, Ingested};
use ddtwatch::event::format_ts;

const CAMERAS: usize = 10;
/// Reads per camera-minute (10,000 cameras × 6 / 60 s = 1,000 reads/s).
const READS_PER_BATCH: usize = 6;
const T0: i64 = 1_777_100_400_000; // 2026-04-25T07:00:00Z
const NATIONAL_YEAR: f64 = 3e10;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A deterministic generator (xorshift), so every run reads the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Stream {
    deployments: usize,
    minute: i64,
    seq: u64,
    alerts: u64,
    rng: Rng,
    /// Decisions and outcomes not yet due, with their times.
    later: Vec<(i64, String)>,
}

impl Stream {
    fn line(&mut self, dep: usize, source: &str, ts: i64, body: &str) -> String {
        self.seq += 1;
        format!(
            r#"{{"schema_version":1,"event_id":"e{}","deployment_id":"anpr-nat-{dep:04}","system":"anpr","source_id":"{source}","ts":"{}",{body}}}"#,
            self.seq,
            format_ts(ts)
        )
    }

    /// Authorisation, start and each camera's status for every deployment.
    fn opening(&mut self, hours: i64) -> Vec<String> {
        let mut out = Vec::new();
        let (start, end) = (format_ts(T0 - 600_000), format_ts(T0 + (hours + 1) * 3_600_000));
        for d in 0..self.deployments {
            let auth = format!(
                r#""type":"deployment","phase":"authorised","authorisation":{{"authority_token":"t{d}","rank":"superintendent","window_start":"{start}","window_end":"{end}","location":"national","purpose":"vehicles of interest","max_list_size":100000,"threshold_floor":0.0}}"#
            );
            out.push(self.line(d, "control", T0 - 600_000, &auth));
            out.push(self.line(d, "control", T0, r#""type":"deployment","phase":"started""#));
            for c in 0..CAMERAS {
                let status = format!(
                    r#""type":"status","threshold":0.8,"algorithm_version":"anpr-ocr-7.2","capture_ok":true,"list":{{"version":"l{d}","size":42000,"built_at":"{}","under_18":0}}"#,
                    format_ts(T0 - 3_600_000)
                );
                out.push(self.line(d, &format!("cam-{c}"), T0, &status));
            }
        }
        out
    }

    /// One minute of every camera: a detection batch each; about one alert per 1,000 reads,
    /// each decided 20 s later and its outcome 60 s later (1 in 10 a misread).
    fn minute(&mut self) -> (Vec<String>, u64) {
        let base = T0 + self.minute * 60_000;
        self.minute += 1;
        let mut out: Vec<(i64, String)> = Vec::with_capacity(self.deployments * CAMERAS + 16);
        let mut reads = 0;
        for d in 0..self.deployments {
            for c in 0..CAMERAS {
                let ts = base + ((d * CAMERAS + c) as i64 * 5) % 60_000;
                let scores: Vec<String> =
                    (0..READS_PER_BATCH).map(|_| format!("{:.3}", 0.75 + 0.24 * self.rng.unit())).collect();
                let body = format!(r#""type":"detection","count":{READS_PER_BATCH},"scores":[{}]"#, scores.join(","));
                let l = self.line(d, &format!("cam-{c}"), ts, &body);
                out.push((ts, l));
                reads += READS_PER_BATCH as u64;
                if self.rng.unit() < READS_PER_BATCH as f64 / 1000.0 {
                    self.alerts += 1;
                    let a = self.alerts;
                    let alert = format!(
                        r#""type":"alert","alert_id":"a{a}","score":0.91,"threshold":0.8,"list_version":"l{d}","category":"stolen_vehicle","latency_ms":500"#
                    );
                    let l = self.line(d, &format!("cam-{c}"), ts + 1, &alert);
                    out.push((ts + 1, l));
                    let decision = format!(
                        r#""type":"adjudication","alert_id":"a{a}","decision":"engage","operator_token":"op{d}","verifier_token":"v{d}""#
                    );
                    let l = self.line(d, "console-1", ts + 20_000, &decision);
                    self.later.push((ts + 20_000, l));
                    let result = if a.is_multiple_of(10) { "misread" } else { "true_match" };
                    let outcome =
                        format!(r#""type":"outcome","alert_id":"a{a}","result":"{result}","action":"vehicle_stopped""#);
                    let l = self.line(d, "team-1", ts + 60_000, &outcome);
                    self.later.push((ts + 60_000, l));
                }
            }
        }
        // Decisions and outcomes in time order with the minute they fall in.
        let end = base + 60_000;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.later).into_iter().partition(|(t, _)| *t < end);
        self.later = later;
        out.extend(due);
        out.sort_by_key(|(t, _)| *t);
        (out.into_iter().map(|(_, l)| l).collect(), reads)
    }
}

/// Time spent in parse + engine, and what went through.
#[derive(Default)]
struct Run {
    busy: Duration,
    events: u64,
    transitions: usize,
}

impl Run {
    fn feed(&mut self, engine: &mut Engine, lines: Vec<String>) {
        let t = Instant::now();
        for l in &lines {
            let r = engine.ingest(l.as_bytes(), 0);
            assert!(matches!(r, Ingested::Applied(_) | Ingested::Held), "every event is valid: {r:?}\n{l}");
            self.transitions += engine.drain_transitions().len();
            assert!(engine.drain_dead_letters().is_empty(), "no dead letters");
        }
        self.busy += t.elapsed();
        self.events += lines.len() as u64;
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let target_reads = env("DDTWATCH_NAT_READS", 50_000_000) as u64;
    let deployments = env("DDTWATCH_NAT_DEPLOYMENTS", 1_000);
    let reads_per_minute = (deployments * CAMERAS * READS_PER_BATCH) as u64;
    let minutes = target_reads.div_ceil(reads_per_minute);
    let mut engine = Engine::new(Arc::new(Config::demo()), ClockMode::Event);
    if let Ok(w) = std::env::var("DDTWATCH_NAT_WORKERS") {
        engine.set_workers(w.parse().expect("DDTWATCH_NAT_WORKERS is a number"));
    }
    let mut stream =
        Stream { deployments, minute: 0, seq: 0, alerts: 0, rng: Rng(0x9e37_79b9_7f4a_7c15), later: Vec::new() };
    let mut reads = 0u64;
    let mut run = Run::default();
    run.feed(&mut engine, stream.opening((minutes / 60 + 1) as i64));
    let wall = Instant::now();
    for m in 0..minutes {
        let (lines, r) = stream.minute();
        reads += r;
        run.feed(&mut engine, lines);
        if (m + 1).is_multiple_of(60) {
            eprintln!(
                "{:>5} min of event time: {:>11} reads, {:>9.0} reads/s, peak RSS {:.0} MB",
                m + 1,
                reads,
                reads as f64 / run.busy.as_secs_f64(),
                peak_rss_mb()
            );
        }
    }
    let t = Instant::now();
    engine.finish();
    run.busy += t.elapsed();
    let rate = reads as f64 / run.busy.as_secs_f64();
    let hours = NATIONAL_YEAR / rate / 3600.0;
    println!("deployments: {deployments} × {CAMERAS} cameras, {} minutes of event time", minutes);
    println!("events: {} ({} alerts, {} transitions), reads: {reads}", run.events, stream.alerts, run.transitions);
    println!(
        "time in parse + engine: {:.1} s (of {:.1} s wall including line generation)",
        run.busy.as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
    println!("reads/s sustained: {rate:.0} (target >= 350,000)");
    println!("events/s: {:.0}", run.events as f64 / run.busy.as_secs_f64());
    let (full, refreshed) = (engine.stats.conditions_evaluated, engine.stats.conditions_refreshed);
    println!(
        "condition evaluations: {full} in full, {refreshed} refreshed ({:.1}% refreshed: no input since)",
        100.0 * refreshed as f64 / (full + refreshed).max(1) as f64
    );
    println!("peak RSS: {:.1} MB (target < 200 MB)", peak_rss_mb());
    println!("projected national year (3e10 reads): {hours:.1} h (target < 24 h)");
    // A /metrics scrape of all the deployments (issue 21: < 50 ms at 1,000 deployments).
    let engine = Arc::new(std::sync::Mutex::new(engine));
    let registry =
        ddtwatch::telemetry::registry(engine.clone(), Arc::new(ddtwatch::telemetry::ProcessState::default()));
    let mut times = Vec::new();
    let mut size = 0;
    // More scrapes (`DDTWATCH_NAT_SCRAPES`) to profile them.
    let scrapes = env("DDTWATCH_NAT_SCRAPES", 5).max(1);
    for _ in 0..scrapes {
        let t = Instant::now();
        let text =
            ddtwatch::telemetry::encode(&registry, &engine, ddtwatch::telemetry::Format::OpenMetrics).expect("encodes");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        size = text.len();
        if let Ok(path) = std::env::var("DDTWATCH_NAT_DUMP") {
            std::fs::write(path, &text).expect("writing the scrape");
        }
    }
    // Each in order: the first scrapes after a long run are the slowest (the heap grows to hold
    // the scrape's text), so the median alone hides them.
    let each: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
    println!("/metrics scrapes in order (ms): {}", each.join(" "));
    times.sort_by(f64::total_cmp);
    println!(
        "/metrics scrape: median {:.1} ms of {scrapes} ({:.1} MB of text; target < 50 ms)",
        times[scrapes / 2],
        size as f64 / 1e6
    );
}
