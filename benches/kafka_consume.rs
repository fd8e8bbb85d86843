//! End-to-end Kafka ingest against a local tansu broker: a bare rdkafka `StreamConsumer` reading
//! the topic (payloads touched, nothing else) versus ddtwatch's Kafka source (parse, engine with
//! the shipped LFR/ANPR profiles, offset store, periodic commits, state snapshots off).
//! Issue target: ddtwatch ≥ 0.5× the bare consumer.
//!
//! `cargo bench --bench kafka_consume` (needs the tansu binary `scripts/test` builds, or
//! `DDTWATCH_TANSU`; `DDTWATCH_KAFKA_EVENTS` to change the 200k).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ddtwatch::config::{ClockMode, Config, SourceConfig};
use ddtwatch::engine::Engine;
use ddtwatch::ingest::kafka::{ConsumeOptions, KafkaStats, consume};
use ddtwatch::ingest::simulator::{Scenario, generate_lines};
use ddtwatch::ingest::{DeadLetterSink, Pipeline};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn tansu() -> PathBuf {
    std::env::var_os("DDTWATCH_TANSU").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/ddtwatch-tools/tansu/bin/tansu")
    })
}

fn main() {
    let n: usize = std::env::var("DDTWATCH_KAFKA_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut broker = Command::new(tansu())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu broker (run scripts/test once to build it)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let st =
        Command::new(tansu()).args(["topic", "create", "ddt.events", "--partitions", "3", "--broker", &url]).status();
    assert!(st.is_ok_and(|s| s.success()));
    let brokers = format!("127.0.0.1:{port}");

    let mut lines = generate_lines(Scenario::ThresholdLowered, n / 2, 1);
    lines.extend(generate_lines(Scenario::AnprSteady, n - n / 2, 1));
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "5").create().unwrap();
    for l in &lines {
        let key = if l.contains("\"lfr-") { "lfr-sim-threshold-lowered" } else { "anpr-sim-anpr-steady" };
        let mut rec = BaseRecord::to("ddt.events").payload(l.as_str()).key(key);
        while let Err((_, r)) = producer.send(rec) {
            rec = r;
            producer.poll(Duration::from_millis(10));
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let total = lines.len();
    println!("produced {total} events ({} MB)", lines.iter().map(|l| l.len()).sum::<usize>() / 1_000_000);

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // Bare consumer.
    let bare = rt.block_on(async {
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "bare")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        c.subscribe(&["ddt.events"]).unwrap();
        let start = Instant::now();
        let (mut count, mut bytes) = (0usize, 0usize);
        while count < total {
            let m = c.recv().await.unwrap();
            bytes += m.payload().map_or(0, |p| p.len());
            count += 1;
        }
        std::hint::black_box(bytes);
        total as f64 / start.elapsed().as_secs_f64()
    });
    println!("bare rdkafka StreamConsumer: {bare:.0} events/s");

    // ddtwatch's source.
    let config =
        Arc::new(Config::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/ddtwatch.yaml")).unwrap());
    let pipeline = Pipeline::new(Engine::new(config, ClockMode::Event), DeadLetterSink::Discard);
    let stats = Arc::new(KafkaStats::default());
    let source: SourceConfig = serde_norway::from_str(&format!(
        "{{kind: kafka, brokers: \"{brokers}\", topics: [ddt.events], group_id: ddtwatch-bench, state_topic: \"\"}}"
    ))
    .unwrap();
    let ours = rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let opts = ConsumeOptions { commit_interval: Duration::from_secs(5), grace: Duration::from_secs(10) };
        let start = Instant::now();
        let task = tokio::spawn(consume(source, pipeline.clone(), stats.clone(), opts, rx));
        while stats.messages.load(Ordering::Relaxed) < total as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let rate = total as f64 / start.elapsed().as_secs_f64();
        tx.send(true).unwrap();
        task.await.unwrap().unwrap();
        rate
    });
    println!("ddtwatch Kafka source:       {ours:.0} events/s");
    println!("ratio: {:.2}x (target >= 0.5x)", ours / bare);
    let _ = broker.kill();
    let _ = broker.wait();
}
