//! Kafka consume throughput over TLS against plaintext, on the same topic of the same broker, in
//! one run: ddtwatch's Kafka source (parse, engine with the shipped profiles, offset store,
//! commits; state snapshots off) reads the topic once through the broker's plaintext port and once
//! through a TLS terminator in front of it (socat OPENSSL-LISTEN, as in tests/kafka_security.rs;
//! the TLS path includes socat's extra copy, so it is a pessimistic figure for TLS itself).
//!
//! `cargo bench --bench kafka_tls` (needs the tansu binary `scripts/test` builds, the openssl CLI
//! and socat; `DDTWATCH_KAFKA_EVENTS` to change the 200k).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ddtwatch::config::{ClockMode, Config, SourceConfig};
use ddtwatch::engine::Engine;
use ddtwatch::ingest::kafka::{ConsumeOptions, KafkaStats, consume};
use ddtwatch::ingest::simulator::{Scenario, generate_lines};
use ddtwatch::ingest::{DeadLetterSink, Pipeline};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn tansu() -> PathBuf {
    std::env::var_os("DDTWATCH_TANSU").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/ddtwatch-tools/tansu/bin/tansu")
    })
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(p: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "port {p} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    assert!(Command::new("openssl").current_dir(dir).args(args).output().unwrap().status.success(), "openssl {args:?}");
}

fn main() {
    let n: usize = std::env::var("DDTWATCH_KAFKA_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca", "-keyout", "ca.key",
            "-out", "ca.pem",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );

    let (plain, tls) = (port(), port());
    let url = format!("tcp://127.0.0.1:{plain}");
    // One broker on sqlite storage, so the topic outlives a restart: it first advertises its
    // plaintext port, then (restarted on the same storage) the TLS port in front of it, so a TLS
    // client's every connection goes through TLS.
    let broker = |advertised: u16| {
        let adv = format!("tcp://127.0.0.1:{advertised}");
        let b = Kill(
            Command::new(tansu())
                .current_dir(d)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &adv,
                    "--storage-engine",
                    "sqlite://bench.db",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tansu broker (run scripts/test once to build it)"),
        );
        wait_port(plain);
        b
    };
    let first = broker(plain);
    assert!(
        Command::new(tansu())
            .args(["topic", "create", "ddt.events", "--partitions", "3", "--broker", &url])
            .status()
            .unwrap()
            .success()
    );
    let _socat = Kill(
        Command::new("socat")
            .current_dir(d)
            .arg(format!("OPENSSL-LISTEN:{tls},bind=127.0.0.1,cert=server.pem,key=server.key,verify=0,reuseaddr,fork"))
            .arg(format!("TCP:127.0.0.1:{plain}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat"),
    );
    wait_port(tls);

    let brokers = format!("127.0.0.1:{plain}");
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
    let total = lines.len() as u64;
    println!("produced {total} events ({} MB)", lines.iter().map(|l| l.len()).sum::<usize>() / 1_000_000);

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let run = |name: &str, brokers: &str, group: &str, props: &[(&str, String)]| -> f64 {
        let mut properties = std::collections::BTreeMap::new();
        for (k, v) in props {
            properties.insert(k.to_string(), v.clone());
        }
        let source = SourceConfig::Kafka {
            brokers: brokers.to_string(),
            topics: vec!["ddt.events".into()],
            group_id: group.into(),
            properties,
            secret_properties: Default::default(),
            state_topic: String::new(),
        };
        let pipeline = Pipeline::new(Engine::new(Arc::new(Config::demo()), ClockMode::Event), DeadLetterSink::Discard);
        let stats = Arc::new(KafkaStats::default());
        let rate = rt.block_on(async {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let opts = ConsumeOptions { commit_interval: Duration::from_secs(5), grace: Duration::from_secs(10) };
            let start = Instant::now();
            let task = tokio::spawn(consume(source, pipeline, stats.clone(), opts, rx));
            while stats.messages.load(Ordering::Relaxed) < total {
                assert!(
                    start.elapsed() < Duration::from_secs(600),
                    "{name}: stuck at {}",
                    stats.messages.load(Ordering::Relaxed)
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let rate = total as f64 / start.elapsed().as_secs_f64();
            tx.send(true).unwrap();
            task.await.unwrap().unwrap();
            rate
        });
        println!("{name:<10} {rate:>10.0} events/s");
        rate
    };
    let plain_rate = run("plaintext", &brokers, "bench-plain", &[]);
    drop(first);
    let stopped = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", plain)).is_ok() {
        assert!(stopped.elapsed() < Duration::from_secs(20), "the first broker did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _second = broker(tls);
    let tls_rate = run(
        "tls",
        &format!("127.0.0.1:{tls}"),
        "bench-tls",
        &[
            ("security.protocol", "ssl".to_string()),
            ("ssl.ca.location", d.join("ca.pem").to_string_lossy().to_string()),
        ],
    );
    println!("ratio tls/plaintext: {:.2}x", tls_rate / plain_rate);
}
