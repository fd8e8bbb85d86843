//! A real Kafka-protocol broker (tansu) and `ddtwatch run` processes for end-to-end tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;

use super::Proc;

pub fn tansu() -> PathBuf {
    let path = std::env::var_os("DDTWATCH_TANSU").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
        cache.join("ddtwatch-tools/tansu/bin/tansu")
    });
    assert!(
        path.exists(),
        "no tansu broker at {} — run scripts/test (it installs it) or set DDTWATCH_TANSU",
        path.display()
    );
    path
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn start_broker() -> (Proc, String) {
    start_broker_on(super::free_port())
}

pub fn start_broker_on(port: u16) -> (Proc, String) {
    let (p, brokers) = run_broker(port, "memory://tansu/", std::path::Path::new("."));
    create_topics(port);
    (p, brokers)
}

/// The broker process only (topics persist in `storage` across restarts unless it is memory;
/// tansu resolves a `sqlite://` path against its working directory `cwd`).
pub fn run_broker(port: u16, storage: &str, cwd: &std::path::Path) -> (Proc, String) {
    let url = format!("tcp://127.0.0.1:{port}");
    // DDTWATCH_TEST_LOGS=1 shows the broker's group-coordinator log beside ddtwatch's.
    let logs = std::env::var_os("DDTWATCH_TEST_LOGS").is_some();
    let p = Proc(
        Command::new(tansu())
            .current_dir(cwd)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", storage])
            .env("RUST_LOG", "tansu_broker::coordinator=info")
            .stdout(if logs { Stdio::inherit() } else { Stdio::null() })
            .stderr(if logs { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap(),
    );
    wait_for("broker port", Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    (p, format!("127.0.0.1:{port}"))
}

pub fn create_topics(port: u16) {
    let url = format!("tcp://127.0.0.1:{port}");
    for (topic, parts) in [("ddt.events", "3"), ("ddt.events.dlq", "1"), ("ddt.state", "1"), ("ddt.audit", "3")] {
        let st = Command::new(tansu())
            .args(["topic", "create", topic, "--partitions", parts, "--broker", &url])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "creating topic {topic}");
    }
}

pub fn http_json(url: &str) -> Option<Value> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { ddtwatch::notify::http_client().get(url).send().await.ok()?.json::<Value>().await.ok() })
}

pub fn http_text(url: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { ddtwatch::notify::http_client().get(url).send().await.ok()?.text().await.ok() })
}

pub fn metric(text: &str, name: &str) -> f64 {
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

/// Writes a `run` config for a Kafka source at `brokers` with its HTTP API on `port`.
pub fn run_config(dir: &std::path::Path, brokers: &str, port: u16) -> PathBuf {
    let config = std::fs::read_to_string(super::repo().join("config/ddtwatch.yaml")).unwrap();
    let mut v: serde_norway::Value = serde_norway::from_str(&config).unwrap();
    v["http"] = serde_norway::from_str(&format!("{{listen: \"127.0.0.1:{port}\", anonymous_reads: true}}")).unwrap();
    v["clock"] = "event".into();
    v["sources"] = serde_norway::from_str(&format!(
        "[{{kind: kafka, brokers: \"{brokers}\", topics: [ddt.events], group_id: ddtwatch-test, properties: {{session.timeout.ms: \"6000\", heartbeat.interval.ms: \"500\"}}}}]"
    ))
    .unwrap();
    v["dead_letter"] = serde_norway::from_str("{kind: kafka, topic: ddt.events.dlq}").unwrap();
    v["profiles_dir"] = super::repo().join("config/profiles").to_string_lossy().to_string().into();
    v["engine"] = serde_norway::from_str("{commit_interval: 500ms}").unwrap();
    // The test's own state_dir (the example's /var/lib/ddtwatch would be shared by every run) and
    // log receivers (the example's webhook/Alertmanager hosts do not exist here).
    v["state_dir"] = dir.join("state").to_string_lossy().to_string().into();
    v["receivers"] = serde_norway::from_str("{oversight: {kind: log}, ops: {kind: log}}").unwrap();
    let path = dir.join("ddtwatch.yaml");
    std::fs::write(&path, serde_norway::to_string(&v).unwrap()).unwrap();
    path
}

/// Produces `lines` to ddt.events keyed by deployment_id, batched as a producer would.
/// For a stream a consumer reads from the start in one go.
pub fn produce(brokers: &str, lines: &[String]) {
    produce_batched(brokers, lines, "10000");
}

/// Produces `lines` one record per batch, for a stream a consumer resumes mid-way from a
/// committed offset it did not reach at a batch end (a SIGKILL mid-stream). tansu 0.6 answers a
/// fetch from an offset inside a multi-record batch with the batches *after* it (its storage
/// splits the batch index at the offset), so a consumer resuming mid-batch would skip the rest of
/// that batch; Kafka returns the containing batch, and librdkafka drops the records before the
/// offset.
pub fn produce_resumable(brokers: &str, lines: &[String]) {
    produce_batched(brokers, lines, "1");
}

fn produce_batched(brokers: &str, lines: &[String], batch_num_messages: &str) {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("batch.num.messages", batch_num_messages);
    produce_with(c, lines);
}

/// Produces `lines` to ddt.events keyed by deployment_id with the client settings `c`
/// (plaintext, TLS, SASL, a codec).
pub fn produce_with(mut c: ClientConfig, lines: &[String]) {
    c.set("linger.ms", "5");
    let producer: ThreadedProducer<DefaultProducerContext> = c.create().unwrap();
    for l in lines {
        let key = serde_json::from_str::<Value>(l)
            .ok()
            .and_then(|v| v["deployment_id"].as_str().map(String::from))
            .unwrap_or_default();
        let mut rec = BaseRecord::to("ddt.events").payload(l.as_str()).key(key.as_str());
        while let Err((_, r)) = producer.send(rec) {
            rec = r;
            producer.poll(Duration::from_millis(10));
        }
    }
    // Generous: one record per batch under a loaded test run is slow, not wrong.
    producer.flush(Duration::from_secs(240)).unwrap();
}

/// `ddtwatch run`; its log goes to the test's stderr with DDTWATCH_TEST_LOGS=1.
pub fn spawn_run(path: &std::path::Path) -> Proc {
    super::spawn_run_env(path, &[])
}
