//! The Kafka source against a real Kafka-protocol broker (tansu, started here on an ephemeral
//! port from the binary `scripts/test` installs): a 110k-event stream over 3 partitions and three
//! deployments, with invalid messages, consumed by `ddtwatch run`; the API's counters equal an
//! event-time replay of the same events, and every invalid message is on the DLQ topic with its
//! reason and origin headers.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::broker::*;
use std::time::{Duration, Instant};

use ddtwatch::ingest::simulator::{Scenario, generate_lines};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

/// ddtwatch started while the broker is down is ready all the same, reports the outage, and
/// consumes once the broker comes up — by itself.
#[test]
fn ready_without_broker_and_consumes_when_it_comes_up() {
    let broker_port = common::free_port();
    let brokers = format!("127.0.0.1:{broker_port}");
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let path = run_config(dir.path(), &brokers, port);
    let _run = spawn_run(&path);
    let base = format!("http://127.0.0.1:{port}");
    wait_for("readyz 200 with the broker down", Duration::from_secs(30), || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            ddtwatch::notify::http_client().get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
        })
    });
    // A real outage: several failed connection rounds (librdkafka backs off between them) before
    // the broker appears, seen as the source down with transport errors.
    // The scenario: the broker stays away for 12 s (librdkafka's reconnect backoff grows to its
    // cap meanwhile), not a synchronisation.
    let outage = Instant::now();
    wait_for("a 12 s outage", Duration::from_secs(15), || outage.elapsed() >= Duration::from_secs(12));
    wait_for("the outage in metrics", Duration::from_secs(60), || {
        http_text(&format!("{base}/metrics")).is_some_and(|m| {
            metric(&m, r#"ddtwatch_source_errors_total{source="kafka-0",kind="transport"}"#) >= 3.0
                && metric(&m, r#"ddtwatch_source_up{source="kafka-0"}"#) == 0.0
        })
    });
    let (_broker, _) = start_broker_on(broker_port);
    let lines = generate_lines(Scenario::AnprSteady, 5_000, 3);
    produce(&brokers, &lines);
    wait_for("consumption after the broker came up", Duration::from_secs(120), || {
        http_text(&format!("{base}/metrics"))
            .is_some_and(|m| metric(&m, "ddtwatch_kafka_messages_total") as usize == lines.len())
    });
    let m = http_text(&format!("{base}/metrics")).unwrap();
    assert_eq!(metric(&m, "ddtwatch_kafka_broker_up"), 1.0);
}

#[test]
fn consumes_a_partitioned_stream_like_replay_and_dead_letters_with_headers() {
    let (_broker, brokers) = start_broker();
    // Three deployments; ≥ 100k events.
    let mut lines: Vec<String> = Vec::new();
    lines.extend(generate_lines(Scenario::ThresholdLowered, 40_000, 7));
    lines.extend(generate_lines(Scenario::AnprSteady, 40_000, 7));
    lines.extend(generate_lines(Scenario::DemographicSkew, 30_000, 7));
    let bad = [
        r#"{"schema_version":1,"event_id":"bad-1","deployment_id":"lfr-sim-threshold-lowered","system":"lfr","source_id":"cam-1","type":"detection","ts":"2026-04-25T09:00:00Z","count":"seven"}"#.to_string(),
        "this is not json".to_string(),
        r#"{"schema_version":9,"event_id":"bad-3","deployment_id":"anpr-sim-anpr-steady","system":"anpr","source_id":"c","type":"detection","ts":"2026-04-25T09:00:00Z","count":1}"#.to_string(),
    ];
    let all: Vec<String> = lines.iter().chain(bad.iter()).cloned().collect();

    // Produced keyed by deployment_id (the operational system's contract).
    produce(&brokers, &all);

    // The reference: an event-time replay of the same events in file order.
    let replayed = common::replay(common::example_config(), &all);

    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let path = run_config(dir.path(), &brokers, port);
    let _run = spawn_run(&path);
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    wait_for("all messages consumed", Duration::from_secs(300), || {
        http_text(&format!("{base}/metrics"))
            .is_some_and(|m| metric(&m, "ddtwatch_kafka_messages_total") as usize == all.len())
    });
    let secs = started.elapsed().as_secs_f64();
    eprintln!("consumed {} messages in {secs:.1}s ({:.0}/s incl. startup)", all.len(), all.len() as f64 / secs);

    let mut expected = BTreeMap::new();
    for d in &replayed.summary.deployments {
        expected.insert(d.deployment_id.clone(), serde_json::to_value(&d.counters).unwrap());
    }
    assert_eq!(expected.len(), 3);
    for (id, counters) in &expected {
        let d = http_json(&format!("{base}/api/v1/deployments/{id}")).unwrap();
        assert_eq!(&d["counters"], counters, "deployment {id}");
        let groups = replayed.summary.deployments.iter().find(|x| &x.deployment_id == id).unwrap();
        assert_eq!(d["groups"], serde_json::to_value(&groups.groups).unwrap(), "groups of {id}");
    }

    // Every invalid message is on the DLQ with its reason and origin, before its offset commit.
    wait_for("dead letters produced", Duration::from_secs(30), || {
        http_text(&format!("{base}/metrics")).is_some_and(|m| {
            metric(&m, r#"ddtwatch_dead_letters_produced_total{result="success"}"#) as u64
                == replayed.summary.invalid.total
        })
    });
    let consumer = reader_from_start(&brokers, "dlq-reader", "ddt.events.dlq");
    let mut reasons = Vec::new();
    let start = Instant::now();
    while reasons.len() < bad.len() && start.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            let h = m.headers().expect("dead letters carry headers");
            let get = |k: &str| {
                h.iter().find(|x| x.key == k).and_then(|x| x.value).map(|v| String::from_utf8_lossy(v).to_string())
            };
            assert_eq!(get("ddtwatch-source-topic").as_deref(), Some("ddt.events"));
            assert!(get("ddtwatch-source-offset").is_some());
            assert!(bad.iter().any(|b| b.as_bytes() == m.payload().unwrap()), "DLQ value is the original message");
            reasons.push(get("ddtwatch-reason").unwrap());
        }
    }
    reasons.sort();
    assert_eq!(reasons, vec!["malformed_json", "unsupported_version", "wrong_type"]);
}

/// Six deployments (one per scenario), so keyed partitioning spreads them over 3 partitions.
/// A consumer of `topic` from its first record, in its own group.
fn reader_from_start(brokers: &str, group: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

fn six_deployments(per: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for s in [
        Scenario::ThresholdLowered,
        Scenario::AnprSteady,
        Scenario::DemographicSkew,
        Scenario::Steady,
        Scenario::AutomationBias,
        Scenario::AnprMisreads,
    ] {
        lines.extend(generate_lines(s, per, 11));
    }
    lines
}

/// A broker, a six-deployment stream split in halves with its replayed counters, and a `run`
/// config in a temp dir: the setting of the kill -9 tests.
struct RestartCase {
    _broker: common::Proc,
    brokers: String,
    lines: Vec<String>,
    half: usize,
    expected: BTreeMap<String, serde_json::Value>,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    base: String,
}

fn restart_case() -> RestartCase {
    let (_broker, brokers) = start_broker();
    let lines = six_deployments(10_000);
    let half = lines.len() / 2;
    let expected = common::replay_counters(&lines);
    let _dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let path = run_config(_dir.path(), &brokers, port);
    RestartCase { _broker, brokers, lines, half, expected, _dir, path, base: format!("http://127.0.0.1:{port}") }
}

/// Waits until a SIGKILLed member's session (session.timeout.ms = 6 s in run_config) has run out:
/// the broker learns of the death only by missed heartbeats, an event with nothing to wait on, and
/// tansu 0.6 gives a member that joins inside that window while the dead one leads the group no
/// partitions (and no rebalance follows) — on Kubernetes a crashed pod's restart back-off has the
/// same effect.
fn wait_out_session(killed: Instant) {
    let session = Duration::from_millis(6000 + 1000);
    wait_for("the dead member's session to run out", session + Duration::from_secs(1), || killed.elapsed() >= session);
}

/// kill -9 mid-stream, restart: the deployments come back from the state topic, re-delivered
/// messages are skipped by offset, and the totals equal a replay of the whole stream.
#[test]
fn kill_9_and_restart_loses_and_doubles_nothing() {
    let RestartCase { _broker, brokers, lines, half, expected, _dir, path, base } = restart_case();
    produce_resumable(&brokers, &lines[..half]);
    let mut first = spawn_run(&path);
    wait_for("first half consumed", Duration::from_secs(120), || {
        http_text(&format!("{base}/metrics")).is_some_and(|m| {
            metric(&m, "ddtwatch_kafka_messages_total") as usize >= half
                && metric(&m, "ddtwatch_state_snapshots_total") >= 1.0
        })
    });
    first.0.kill().unwrap(); // SIGKILL: no commit, no snapshot at exit
    first.0.wait().unwrap();
    let killed = Instant::now();
    if std::env::var_os("DDTWATCH_TEST_LOGS").is_some() {
        let consumer = reader_from_start(&brokers, "state-dump", "ddt.state");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Some(r) = consumer.poll(Duration::from_millis(200)) {
                match r {
                    Ok(m) => eprintln!(
                        "STATE key={:?} offset={} bytes={}",
                        m.key().map(String::from_utf8_lossy),
                        m.offset(),
                        m.payload().map_or(0, |p| p.len())
                    ),
                    Err(e) => eprintln!("STATE error {e}"),
                }
            }
        }
    }
    produce(&brokers, &lines[half..]);
    wait_out_session(killed);
    let _second = spawn_run(&path);
    wait_for("every deployment equal to the replay", Duration::from_secs(60), || {
        let c = common::api_counters(&base);
        if std::env::var_os("DDTWATCH_TEST_LOGS").is_some()
            && let Some(c) = &c
        {
            for (id, want) in &expected {
                let got = c.get(id).cloned().unwrap_or_default();
                if &got != want {
                    let diff: Vec<String> = want
                        .as_object()
                        .unwrap()
                        .iter()
                        .filter(|(k, v)| got.get(k.as_str()) != Some(v))
                        .map(|(k, v)| format!("{k}: got {} want {v}", got.get(k.as_str()).cloned().unwrap_or_default()))
                        .collect();
                    let full = http_json(&format!("{base}/api/v1/deployments/{id}")).unwrap_or_default();
                    eprintln!("DIFF {id}: {diff:?} invalid {}", full["invalid_by_reason"]);
                }
            }
            let m = http_text(&format!("{base}/metrics")).unwrap_or_default();
            eprintln!(
                "METRICS {:?}",
                m.lines()
                    .filter(|l| l.starts_with("ddtwatch_kafka")
                        || l.starts_with("ddtwatch_deployments")
                        || l.starts_with("ddtwatch_events_total"))
                    .collect::<Vec<_>>()
            );
        }
        c.is_some_and(|c| c == expected)
    });
    let m = http_text(&format!("{base}/metrics")).unwrap();
    assert!(metric(&m, "ddtwatch_state_restored_deployments_total") >= 1.0, "restored from the state topic");
    // The audit trail survived the kill on the topic too: the restart continued the same chain
    // (same state_dir) and re-sent what the topic had not acknowledged, so the topic holds the
    // whole file, and it verifies.
    let mut second = _second;
    assert!(Command::new("kill").args(["-TERM", &second.0.id().to_string()]).status().unwrap().success());
    assert!(second.0.wait().unwrap().success());
    let dump = dump_topic(&brokers, "ddt.audit");
    let file = std::fs::read_to_string(_dir.path().join("state/audit.log")).unwrap();
    let on_file: std::collections::BTreeSet<String> = file.lines().map(String::from).collect();
    let on_topic: std::collections::BTreeSet<String> =
        dump.iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["record"].to_string()).collect();
    let on_file: std::collections::BTreeSet<String> =
        on_file.iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap().to_string()).collect();
    assert_eq!(on_topic, on_file, "the topic holds exactly the file's records");
    let (ok, text) = verify_topic_dump(&_dir.path().join("audit.dump"), &dump);
    assert!(ok, "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("OK: chain")).count(), 1, "one chain across the restart: {text}");
}

/// SIGKILL once the first half is consumed and checkpointed (no commit, no snapshot at exit),
/// restart: the deployments come back from the state topic, re-delivery is skipped or deduplicated,
/// and the totals equal a replay of the whole stream. The kill comes between checkpoints, and the
/// restart once the broker shows every snapshot (the mid-checkpoint kill is the test above).
#[test]
fn kill_9_between_checkpoints_then_restart_equals_the_replay() {
    let RestartCase { _broker, brokers, lines, half, expected, _dir, path, base } = restart_case();
    let first_half: std::collections::BTreeSet<String> = lines[..half]
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["deployment_id"].as_str().unwrap().to_string())
        .collect();
    produce_resumable(&brokers, &lines[..half]);
    let mut first = spawn_run(&path);
    // Everything consumed, then the snapshot count settles: the checkpoint after the last event
    // has snapshotted every changed deployment (commit_interval is 500 ms in run_config).
    let mut settled: Option<(f64, Instant)> = None;
    wait_for("first half consumed and checkpointed", Duration::from_secs(120), || {
        let Some(m) = http_text(&format!("{base}/metrics")) else { return false };
        let snaps = metric(&m, "ddtwatch_state_snapshots_total");
        if (metric(&m, "ddtwatch_kafka_messages_total") as usize) < half || snaps < first_half.len() as f64 {
            return false;
        }
        match settled {
            Some((n, since)) if n == snaps => since.elapsed() >= Duration::from_millis(2000),
            _ => {
                settled = Some((snaps, Instant::now()));
                false
            }
        }
    });
    let snapshots = settled.unwrap().0 as usize;
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    let killed = Instant::now();
    // tansu acknowledges a produce before a fetch returns it: wait until it shows them all.
    let reader = reader_from_start(&brokers, "state-count", "ddt.state");
    let mut seen = 0usize;
    wait_for("every snapshot readable on ddt.state", Duration::from_secs(60), || {
        while let Some(Ok(_)) = reader.poll(Duration::from_millis(100)) {
            seen += 1;
        }
        seen >= snapshots
    });
    produce(&brokers, &lines[half..]);
    wait_out_session(killed);
    let _second = spawn_run(&path);
    wait_for("every deployment equal to the replay", Duration::from_secs(120), || {
        common::api_counters(&base).is_some_and(|c| c == expected)
    });
    let m = http_text(&format!("{base}/metrics")).unwrap();
    let restored = metric(&m, "ddtwatch_state_restored_deployments_total") as usize;
    assert!(restored >= first_half.len(), "the first half's deployments restored from the state topic ({restored})");
}

/// Two instances in one group split the deployments; their union equals the replay. After one
/// stops (SIGTERM), the other takes over its deployments with their history.
#[test]
fn two_instances_split_then_one_takes_over() {
    let (_broker, brokers) = start_broker();
    let lines = six_deployments(10_000);
    let expected = common::replay_counters(&lines);
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (common::free_port(), common::free_port());
    let a = spawn_run(&run_config(dir_a.path(), &brokers, port_a));
    let mut b = spawn_run(&run_config(dir_b.path(), &brokers, port_b));
    let (base_a, base_b) = (format!("http://127.0.0.1:{port_a}"), format!("http://127.0.0.1:{port_b}"));
    // Both in the group (each has partitions) before the data arrives.
    wait_for("both instances assigned", Duration::from_secs(60), || {
        [&base_a, &base_b].iter().all(|b| {
            http_text(&format!("{b}/metrics"))
                .is_some_and(|m| metric(&m, "ddtwatch_kafka_partitions_assigned_total") >= 1.0)
        })
    });
    produce(&brokers, &lines);
    wait_for("the two halves together equal the replay", Duration::from_secs(180), || {
        let (Some(ca), Some(cb)) = (common::api_counters(&base_a), common::api_counters(&base_b)) else { return false };
        let mut union = ca.clone();
        union.extend(cb.clone());
        !ca.is_empty() && !cb.is_empty() && union.len() == ca.len() + cb.len() && union == expected
    });
    // SIGTERM b: it snapshots and commits on revoke; a restores b's deployments.
    let st = Command::new("kill").args(["-TERM", &b.0.id().to_string()]).status().unwrap();
    assert!(st.success());
    let exit = b.0.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    wait_for("a holds every deployment with its history", Duration::from_secs(120), || {
        common::api_counters(&base_a).is_some_and(|c| c == expected)
    });
    drop(a);
}

/// The broker restarts mid-stream (persistent sqlite storage): ddtwatch reconnects by itself and
/// ends with the same counters as a replay of the whole stream.
#[test]
fn broker_restart_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = "sqlite://tansu.db";
    let port = common::free_port();
    let (broker, brokers) = run_broker(port, storage, dir.path());
    create_topics(port);
    let lines = six_deployments(5_000);
    let half = lines.len() / 2;
    let expected = common::replay_counters(&lines);
    let http = common::free_port();
    let _run = spawn_run(&run_config(dir.path(), &brokers, http));
    let base = format!("http://127.0.0.1:{http}");
    produce(&brokers, &lines[..half]);
    wait_for("first half consumed", Duration::from_secs(120), || {
        http_text(&format!("{base}/metrics"))
            .is_some_and(|m| metric(&m, "ddtwatch_kafka_messages_total") as usize >= half)
    });
    drop(broker); // SIGKILL the broker
    // It stays away until ddtwatch has seen the outage (reconnects refused, the source down).
    wait_for("the outage seen by the source", Duration::from_secs(60), || {
        http_text(&format!("{base}/metrics")).is_some_and(|m| {
            metric(&m, r#"ddtwatch_source_up{source="kafka-0"}"#) == 0.0
                && metric(&m, r#"ddtwatch_source_errors_total{source="kafka-0",kind="transport"}"#) >= 1.0
        })
    });
    let (_broker, _) = run_broker(port, storage, dir.path());
    produce(&brokers, &lines[half..]);
    wait_for("every deployment equal to the replay", Duration::from_secs(180), || {
        common::api_counters(&base).is_some_and(|c| c == expected)
    });
    let m = http_text(&format!("{base}/metrics")).unwrap();
    assert!(metric(&m, "ddtwatch_kafka_client_errors_total") >= 1.0, "the outage was visible in metrics");
    wait_for("the source up again", Duration::from_secs(30), || {
        http_text(&format!("{base}/metrics"))
            .is_some_and(|m| metric(&m, r#"ddtwatch_source_up{source="kafka-0"}"#) == 1.0)
    });
}

/// Shifts every timestamp in an event (its `ts` and any other RFC 3339 field) by `days`.
fn shift_days(line: &str, days: i64) -> String {
    fn walk(v: &mut serde_json::Value, by: i64) {
        match v {
            serde_json::Value::String(s) => {
                if let Some(t) = ddtwatch::event::parse_ts(s) {
                    *s = ddtwatch::event::format_ts(t + by);
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(x, by)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| walk(x, by)),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    walk(&mut v, days * 86_400_000);
    v.to_string()
}

/// Catch-up from Kafka with partitions at different positions: three deployments, each on its
/// own partition, recorded two days apart. The consumer reads the partitions side by side, so
/// the event clock runs days ahead of the older partitions and events arrive days "late" or
/// days "early" relative to it. Nothing is lost or changed: no dead letter, nothing left held,
/// and every deployment's counters equal a replay of its own stream.
#[test]
fn catch_up_with_partitions_days_apart_loses_nothing() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let (_broker, brokers) = start_broker();
    let streams: Vec<Vec<String>> = [(Scenario::Steady, 0), (Scenario::AnprSteady, 2), (Scenario::DemographicSkew, 4)]
        .into_iter()
        .map(|(s, days)| generate_lines(s, 20_000, 5).iter().map(|l| shift_days(l, days)).collect())
        .collect();
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "5").create().unwrap();
    let send = |partition: usize, lines: &[String]| {
        for l in lines {
            let mut rec = BaseRecord::<str, str>::to("ddt.events").payload(l.as_str()).partition(partition as i32);
            while let Err((_, r)) = producer.send(rec) {
                rec = r;
                producer.poll(Duration::from_millis(10));
            }
        }
        producer.flush(Duration::from_secs(240)).unwrap();
    };
    let total: usize = streams.iter().map(Vec::len).sum();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let path = run_config(dir.path(), &brokers, port);
    let _run = spawn_run(&path);
    let base = format!("http://127.0.0.1:{port}");
    let consumed = |n: usize| {
        wait_for("messages consumed", Duration::from_secs(300), || {
            http_text(&format!("{base}/metrics"))
                .is_some_and(|m| metric(&m, "ddtwatch_kafka_messages_total") as usize == n)
        })
    };
    // The oldest partition's first half sets the clock; then the rest of every partition
    // arrives together, read side by side: the newest days ahead of the clock, the oldest days
    // behind it once the clock has jumped.
    let half = streams[0].len() / 2;
    send(0, &streams[0][..half]);
    consumed(half);
    send(2, &streams[2]);
    send(0, &streams[0][half..]);
    send(1, &streams[1]);
    consumed(total);
    let m = http_text(&format!("{base}/metrics")).unwrap();
    let invalid: f64 = m
        .lines()
        .filter(|l| l.starts_with("ddtwatch_invalid_events_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        invalid,
        0.0,
        "dead-lettered during catch-up:\n{}",
        m.lines().filter(|l| l.starts_with("ddtwatch_invalid_events_total")).collect::<Vec<_>>().join("\n")
    );
    // The partitions really were read at different positions: events arrived days ahead of the
    // clock and were held (then applied); none is held at the end.
    assert!(metric(&m, "ddtwatch_future_held_events_total") > 0.0, "no event ever arrived ahead of the clock");
    assert_eq!(metric(&m, "ddtwatch_future_held "), 0.0);
    for lines in &streams {
        let replayed = common::replay(common::example_config(), lines);
        let d = &replayed.summary.deployments[0];
        let got = http_json(&format!("{base}/api/v1/deployments/{}", d.deployment_id)).unwrap();
        assert_eq!(got["counters"], serde_json::to_value(&d.counters).unwrap(), "deployment {}", d.deployment_id);
        assert_eq!(got["groups"], serde_json::to_value(&d.groups).unwrap(), "groups of {}", d.deployment_id);
    }
}

/// A webhook receiver on a plain TCP socket: answers 503 until `up` is set, then 204; records
/// the `webhook-id` of every request it acknowledged.
struct Receiver {
    url: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn receiver() -> Receiver {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::Ordering;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let r = Receiver { url, up: Default::default(), acked: Default::default(), refused: Default::default() };
    let (up, acked, refused) = (r.up.clone(), r.acked.clone(), r.refused.clone());
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let (up, acked, refused) = (up.clone(), acked.clone(), refused.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let (mut id, mut len) = (String::new(), 0usize);
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let t = line.trim_end();
                        if t.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = t.split_once(':') {
                            match k.to_ascii_lowercase().as_str() {
                                "webhook-id" => id = v.trim().to_string(),
                                "content-length" => len = v.trim().parse().unwrap_or(0),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let status = if up.load(Ordering::SeqCst) {
                        acked.lock().unwrap().push(id);
                        "204 No Content"
                    } else {
                        refused.fetch_add(1, Ordering::SeqCst);
                        "503 Service Unavailable"
                    };
                    let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    if stream.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    r
}

const HOOK_SECRET: &str = "whsec_c2VjcmV0LWZvci10aGUta2Fma2EtdGVzdA==";

/// Issue 19, pod loss: the receiver is down while instance A raises breaches; A is SIGKILLed and
/// its state_dir (outbox included) deleted, as when Kubernetes deletes a pod on an emptyDir. B,
/// in the same group with a fresh state_dir, takes the deployment over from the state topic —
/// and with it the undelivered notifications, which it delivers under their original
/// idempotency keys once the receiver is back. Without the handover nothing would arrive: A
/// had consumed and committed everything, so B has no events to re-derive them from. Both write
/// their audit records to the audit topic: with no pod left, a dump of it holds every transition
/// and `ddtwatch audit verify --topic-dump` passes over both chains (and fails once edited).
#[test]
fn pod_loss_hands_undelivered_notifications_to_the_next_instance() {
    use std::sync::atomic::Ordering;
    let (_broker, brokers) = start_broker();
    let hook = receiver();
    let lines = generate_lines(Scenario::ThresholdLowered, 20_000, 3);
    // The notifications a replay says the oversight receiver must get, by idempotency key.
    let want: std::collections::BTreeSet<String> = common::replay(common::example_config(), &lines)
        .transitions
        .iter()
        .filter(|t| t.notify.iter().any(|r| r == "oversight"))
        .map(|t| ddtwatch::notify::key::NotificationKey::of(t).to_string())
        .collect();
    assert!(want.len() >= 2, "the scenario raises oversight breaches: {want:?}");
    let every_transition: std::collections::BTreeSet<String> = common::replay(common::example_config(), &lines)
        .transitions
        .iter()
        .map(|t| ddtwatch::notify::key::NotificationKey::of(t).to_string())
        .collect();

    let config = |dir: &std::path::Path, port: u16| {
        let path = run_config(dir, &brokers, port);
        let mut v: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["receivers"] = serde_norway::from_str(&format!(
            "{{oversight: {{kind: webhook, url: \"{}\", secret_env: DDTWATCH_TEST_HOOK_SECRET, backoff_initial: 200ms, backoff_max: 1s}}, ops: {{kind: log}}}}",
            hook.url
        ))
        .unwrap();
        v["audit"] = serde_norway::from_str("{topic: ddt.audit}").unwrap();
        std::fs::write(&path, serde_norway::to_string(&v).unwrap()).unwrap();
        path
    };
    let env = [("DDTWATCH_TEST_HOOK_SECRET", HOOK_SECRET)];
    let dir_a = tempfile::tempdir().unwrap();
    let port_a = common::free_port();
    let base_a = format!("http://127.0.0.1:{port_a}");
    let mut a = common::spawn_run_env(&config(dir_a.path(), port_a), &env);
    produce(&brokers, &lines);
    // A has consumed everything, its outbox holds the oversight notifications (refused), and a
    // checkpoint has written them into the deployment's snapshot.
    wait_for("A consumed, failed to deliver, and handed the notifications over", Duration::from_secs(120), || {
        http_text(&format!("{base_a}/metrics")).is_some_and(|m| {
            metric(&m, "ddtwatch_kafka_messages_total") as usize >= lines.len()
                && metric(&m, "ddtwatch_outbox_depth") as usize >= want.len()
                && metric(&m, "ddtwatch_outbox_handed_over_total") as usize >= want.len()
                && hook.refused.load(Ordering::SeqCst) > 0
        })
    });
    // A commits only after the checkpoint that wrote the snapshots (and the audit records):
    // once the group's offsets reach the end of the stream, the handover is on the state topic.
    wait_for("A committed the whole stream", Duration::from_secs(30), || {
        committed_count(&brokers, "ddtwatch-test", "ddt.events") == lines.len() as i64
    });
    a.0.kill().unwrap(); // SIGKILL
    a.0.wait().unwrap();
    let killed = Instant::now();
    std::fs::remove_dir_all(dir_a.path().join("state")).unwrap(); // the emptyDir goes with the pod
    assert!(hook.acked.lock().unwrap().is_empty(), "nothing was delivered by A");
    hook.up.store(true, Ordering::SeqCst);

    wait_out_session(killed);
    let dir_b = tempfile::tempdir().unwrap();
    let port_b = common::free_port();
    let base_b = format!("http://127.0.0.1:{port_b}");
    let mut b = common::spawn_run_env(&config(dir_b.path(), port_b), &env);
    wait_for("every oversight notification delivered by B", Duration::from_secs(90), || {
        let got: std::collections::BTreeSet<String> = hook.acked.lock().unwrap().iter().cloned().collect();
        want.iter().all(|k| got.contains(k))
    });
    let m = http_text(&format!("{base_b}/metrics")).unwrap();
    assert!(metric(&m, "ddtwatch_outbox_restored_total") as usize >= want.len(), "taken over from the snapshot");
    // B consumed nothing new: the notifications came with the state, not from re-processing.
    assert_eq!(metric(&m, "ddtwatch_kafka_messages_total"), 0.0, "A had committed everything");
    let acked = hook.acked.lock().unwrap().clone();
    assert!(acked.iter().all(|k| want.contains(k)), "only the expected keys: {acked:?}");

    // B is terminated too (flushing its last records); then no pod is left, only the topic.
    assert!(Command::new("kill").args(["-TERM", &b.0.id().to_string()]).status().unwrap().success());
    assert!(b.0.wait().unwrap().success(), "B exits cleanly on SIGTERM");
    let dump = dump_topic(&brokers, "ddt.audit");
    let records: Vec<serde_json::Value> = dump.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let chains: std::collections::BTreeSet<&str> = records.iter().map(|r| r["chain"].as_str().unwrap()).collect();
    assert_eq!(chains.len(), 2, "one chain per pod");
    let on_topic: std::collections::BTreeSet<String> = records
        .iter()
        .map(|r| &r["record"])
        .filter(|r| r["kind"] == "breach")
        .map(|r| {
            let d = &r["data"];
            format!(
                "ddtwatch/{}/{}/{}/{}",
                s(&d["deployment_id"]),
                s(&d["condition"]),
                s(&d["started_at"]),
                s(&d["state"])
            )
        })
        .collect();
    assert_eq!(on_topic, every_transition, "the audit topic holds every transition");
    let delivered: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| &r["record"]["data"])
        .filter(|d| d["result"] == "delivered")
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert!(want.iter().all(|k| delivered.contains(k.as_str())), "B's deliveries are on the topic too");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.dump");
    let (ok, text) = verify_topic_dump(&path, &dump);
    assert!(ok, "audit verify over the topic dump: {text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("OK: chain")).count(), 2, "{text}");
    // An edit to one record (a breach's value) breaks its chain.
    let i = dump.iter().position(|l| l.contains("\"kind\":\"breach\"")).unwrap();
    let mut edited = dump.clone();
    let mut v: serde_json::Value = serde_json::from_str(&edited[i]).unwrap();
    v["record"]["data"]["summary"] = "nothing happened".into();
    edited[i] = v.to_string();
    let (ok, text) = verify_topic_dump(&path, &edited);
    assert!(!ok, "{text}");
    assert!(text.contains("BROKEN: chain") && text.contains("hash does not match"), "{text}");
}

/// The sum of `group`'s committed offsets over `topic`'s partitions, the number of messages it
/// has committed when every message has its own offset (an offset fetch: the asking client does
/// not join the group). tansu 0.6's high watermarks lag the offsets it hands out, so the count
/// is compared with what the test produced.
fn committed_count(brokers: &str, group: &str, topic: &str) -> i64 {
    let c: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create().unwrap();
    let meta = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in meta.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    let Ok(committed) = c.committed_offsets(tpl, Duration::from_secs(10)) else { return 0 };
    committed.elements().iter().filter_map(|e| e.offset().to_raw().filter(|o| *o >= 0)).sum()
}

/// `ddtwatch audit verify --topic-dump` over `lines` written to `path`: success and stdout.
fn verify_topic_dump(path: &std::path::Path, lines: &[String]) -> (bool, String) {
    std::fs::write(path, lines.join("\n")).unwrap();
    let out = Command::new(common::bin()).args(["audit", "verify", "--topic-dump"]).arg(path).output().unwrap();
    assert!(out.status.code().is_some_and(|c| c <= 1), "verify crashed: {out:?}");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn s(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Every message value of `topic`, read from the start, once nothing else writes to it: a
/// sentinel produced to each partition marks its end (tansu 0.6's high watermarks lag its
/// offsets, so they cannot).
fn dump_topic(brokers: &str, topic: &str) -> Vec<String> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    const END: &str = "end-of-dump";
    let c = reader_from_start(brokers, "audit-dump", topic);
    let meta = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions: Vec<i32> = meta.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let p: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    for part in &partitions {
        p.send(BaseRecord::<str, str>::to(topic).partition(*part).payload(END)).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let (mut out, mut ended) = (Vec::new(), std::collections::BTreeSet::new());
    let start = Instant::now();
    while ended.len() < partitions.len() {
        assert!(start.elapsed() < Duration::from_secs(60), "reading the audit topic: ended {ended:?}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            match std::str::from_utf8(m.payload().unwrap()).unwrap() {
                END => {
                    ended.insert(m.partition());
                }
                v => out.push(v.to_string()),
            }
        }
    }
    out
}

/// A deployment retired under Kafka (`engine.retain_stopped`) leaves a marker holding its final
/// summary on the state topic. The next instance, on a fresh state_dir, keeps that record (the API
/// serves it) and dead-letters the deployment's late events instead of starting it afresh.
#[test]
fn a_retired_deployment_stays_retired_on_the_next_pod() {
    let (_broker, brokers) = start_broker();
    let config = |dir: &std::path::Path, port: u16| {
        let path = run_config(dir, &brokers, port);
        let mut v: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["engine"] = serde_norway::from_str("{commit_interval: 500ms, retain_stopped: 1h}").unwrap();
        std::fs::write(&path, serde_norway::to_string(&v).unwrap()).unwrap();
        path
    };
    let t0 = 1_780_000_000_000i64;
    let ev = |id: &str, dep: &str, ts: i64, body: &str| {
        format!(
            r#"{{"schema_version":1,"event_id":"{id}","deployment_id":"{dep}","system":"lfr","source_id":"cam-1","ts":"{}",{body}}}"#,
            ddtwatch::event::format_ts(ts)
        )
    };
    let up_to = ddtwatch::event::format_ts(t0 + 2000);
    let short = vec![
        ev("r-s", "r", t0, r#""type":"deployment","phase":"started""#),
        ev("r-d", "r", t0 + 1000, r#""type":"detection","count":40"#),
        ev("r-x", "r", t0 + 2000, r#""type":"deployment","phase":"stopped""#),
        ev("r-del", "r", t0 + 3000, &format!(r#""type":"deletion","scope":"non_match_biometrics","up_to":"{up_to}""#)),
    ];
    // Another deployment moves the event clock past r's retirement (in steps within max_future).
    let ticker: Vec<String> =
        (1..=8).map(|k| ev(&format!("t{k}"), "t", t0 + k * 20 * 60_000, r#""type":"detection","count":1"#)).collect();
    let dir_a = tempfile::tempdir().unwrap();
    let port_a = common::free_port();
    let base_a = format!("http://127.0.0.1:{port_a}");
    let mut a = spawn_run(&config(dir_a.path(), port_a));
    produce(&brokers, &short);
    // r's events first, so the clock reaches its retirement only afterwards.
    wait_for("r's events applied", Duration::from_secs(60), || {
        http_text(&format!("{base_a}/metrics")).is_some_and(|m| metric(&m, "ddtwatch_kafka_messages_total") >= 4.0)
    });
    produce(&brokers, &ticker);
    wait_for("r retired", Duration::from_secs(60), || {
        http_text(&format!("{base_a}/metrics")).is_some_and(|m| metric(&m, "ddtwatch_deployments_retired_total") >= 1.0)
    });
    let record = dir_a.path().join("state/records/r.json");
    assert!(record.exists(), "the final summary is in state_dir/records");
    assert!(Command::new("kill").args(["-TERM", &a.0.id().to_string()]).status().unwrap().success());
    assert!(a.0.wait().unwrap().success());
    let state = dump_topic(&brokers, "ddt.state");
    let marker = state
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["retired_deployment"]["deployment_id"] == "r")
        .expect("a retired marker for r on the state topic");
    assert_eq!(marker["retired_deployment"]["counters"]["detections"], 40);
    assert!(marker["retired_deployment"]["retired_at"].is_string());

    // The next pod, with an empty state_dir.
    let dir_b = tempfile::tempdir().unwrap();
    let port_b = common::free_port();
    let base_b = format!("http://127.0.0.1:{port_b}");
    let _b = spawn_run(&config(dir_b.path(), port_b));
    wait_for("r's record served by the next pod", Duration::from_secs(60), || {
        http_json(&format!("{base_b}/api/v1/deployments/r")).is_some_and(|v| v["retired_at"].is_string())
    });
    let got = http_json(&format!("{base_b}/api/v1/deployments/r")).unwrap();
    assert_eq!(got, marker["retired_deployment"], "the record as the retiring pod wrote it");
    produce(&brokers, &[ev("r-late", "r", t0 + 9 * 20 * 60_000, r#""type":"detection","count":1"#)]);
    wait_for("r's late event dead-lettered", Duration::from_secs(60), || {
        http_text(&format!("{base_b}/metrics"))
            .is_some_and(|m| metric(&m, "ddtwatch_invalid_events_total{reason=\"retired_deployment\"}") >= 1.0)
    });
    let list = http_json(&format!("{base_b}/api/v1/deployments")).unwrap();
    assert!(
        !list["deployments"].as_array().unwrap().iter().any(|d| d["deployment_id"] == "r"),
        "r was not started afresh: {list}"
    );
}
