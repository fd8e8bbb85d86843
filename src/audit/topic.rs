//! The audit topic (`audit.topic`): every audit record is also produced to Kafka, so the trail
//! outlives the pod and its `state_dir` (issue 19). The producer is flushed before the Kafka
//! source commits offsets, so every record about events that are committed is on the topic.
//!
//! Message value: `{"chain":"<id>","record":{…the record as in the file…}}`; header
//! `ddtwatch-deployment`: the deployment the record is about ("ddtwatch" for process records).
//! Several instances write to one topic, each its own chain (a pod on a fresh `state_dir` starts
//! a new one).
//!
//! The message key is the chain id, not the deployment: one chain's records then share one
//! partition, where the idempotent producer keeps them in order without gaps, so a pod killed
//! mid-write leaves a complete prefix of its chain on the topic. Keyed by deployment, the chain
//! would be spread over partitions, and a kill could leave a hole that looks exactly like a
//! deleted record.
//!
//! `ddtwatch audit verify --topic-dump` groups a dump of the topic by chain, orders each by seq
//! and checks it as it checks files.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde_json::{Value, json};

use super::{ChainCheck, Record, VerifyOptions};
use crate::config::SourceConfig;

/// Largest audit message accepted in a dump (a record is a few KB; a disparity record with its
/// group table ~10 KB).
pub const MAX_DUMP_LINE_BYTES: usize = 1 << 20;

/// The header naming the deployment a record is about.
pub const DEPLOYMENT_HEADER: &str = "ddtwatch-deployment";

/// Produced and failed records (`ddtwatch_audit_records_produced_total`,
/// `ddtwatch_audit_produce_errors_total`).
#[derive(Debug, Default)]
pub struct AuditTopicStats {
    pub produced: AtomicU64,
    pub errors: AtomicU64,
}

struct Counting {
    stats: Arc<AuditTopicStats>,
    /// Records whose delivery failed for good (librdkafka's own retries are done): sent again at
    /// the next checkpoint, which commits nothing until they are acknowledged.
    failed: Mutex<Vec<Failed>>,
    /// Sends whose outcome (acknowledged or failed) is known, with the condition a sync waits on.
    done: Mutex<u64>,
    settled: Condvar,
}

impl Counting {
    fn settle(&self) {
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.settled.notify_all();
    }
}

/// A record to send again.
struct Failed {
    chain: String,
    deployment: String,
    payload: Vec<u8>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.stats.produced.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, m)) => {
                tracing::error!(error = %e, "audit record could not be produced; it is sent again and offsets wait");
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                let deployment = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == DEPLOYMENT_HEADER)?.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let chain = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                let payload = m.payload().unwrap_or_default().to_vec();
                self.failed.lock().unwrap_or_else(|p| p.into_inner()).push(Failed { chain, deployment, payload });
            }
        }
        self.settle();
    }
}

pub struct AuditTopic {
    producer: ThreadedProducer<Counting>,
    topic: String,
    /// Records handed to the producer (each send, re-sends included).
    queued: AtomicU64,
    pub stats: Arc<AuditTopicStats>,
}

impl std::fmt::Debug for AuditTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTopic").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl AuditTopic {
    /// A producer with the Kafka source's client settings (brokers, TLS, SASL): idempotent,
    /// acks=all.
    pub fn new(source: &SourceConfig, topic: &str) -> anyhow::Result<Self> {
        let stats = Arc::new(AuditTopicStats::default());
        let producer = crate::ingest::kafka::reliable_producer_config(&crate::ingest::kafka::client_config(source)?)
            .create_with_context(Counting {
                stats: stats.clone(),
                failed: Mutex::default(),
                done: Mutex::default(),
                settled: Condvar::new(),
            })
            .map_err(|e| anyhow::anyhow!("creating the audit-topic producer: {e}"))?;
        Ok(AuditTopic { producer, topic: topic.to_string(), queued: AtomicU64::new(0), stats })
    }

    /// Queues a record (waiting while librdkafka's local queue is full, so none is dropped).
    pub fn send(&self, chain: &str, r: &Record) {
        let key = deployment_of(r);
        let payload = serde_json::to_vec(&json!({"chain": chain, "record": r})).expect("json");
        self.queue(chain, &key, &payload);
    }

    fn queue(&self, chain: &str, deployment: &str, payload: &[u8]) {
        // Counted before it is handed over, so a sync that starts after this sees it.
        self.queued.fetch_add(1, Ordering::SeqCst);
        let headers = OwnedHeaders::new().insert(Header { key: DEPLOYMENT_HEADER, value: Some(deployment) });
        let rec = BaseRecord::to(&self.topic).key(chain).payload(payload).headers(headers);
        if let Err(e) = crate::ingest::kafka::send_retrying(&self.producer, rec) {
            tracing::error!(error = %e, "audit record refused by the producer; it is sent again and offsets wait");
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            let failed = &self.producer.context().failed;
            failed.lock().unwrap_or_else(|p| p.into_inner()).push(Failed {
                chain: chain.to_string(),
                deployment: deployment.to_string(),
                payload: payload.to_vec(),
            });
            self.producer.context().settle();
        }
    }

    /// Waits up to `timeout` until every record queued before the call is acknowledged (records
    /// queued meanwhile are left to the next call, so steady traffic cannot starve it); true only
    /// if all of them are on the topic. Records that failed are queued again (for the next call).
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.queued.load(Ordering::SeqCst);
        let ctx = self.producer.context();
        let done = ctx.done.lock().unwrap_or_else(|p| p.into_inner());
        let (done, _) =
            ctx.settled.wait_timeout_while(done, timeout, |d| *d < target).unwrap_or_else(|p| p.into_inner());
        let drained = *done >= target;
        drop(done);
        let failed = std::mem::take(&mut *self.producer.context().failed.lock().unwrap_or_else(|p| p.into_inner()));
        let clean = failed.is_empty();
        for f in failed {
            self.queue(&f.chain, &f.deployment, &f.payload);
        }
        drained && clean
    }
}

/// The deployment a record is about (breach, lifecycle, notification), for the
/// `ddtwatch-deployment` header; "ddtwatch" for process records (start, config).
fn deployment_of(r: &Record) -> String {
    let d = &r.data;
    if let Some(id) = d["deployment_id"].as_str().or_else(|| d["deployment"].as_str()) {
        return id.to_string();
    }
    // A notification record's key is `ddtwatch/<deployment>/…` (README "Notifications"); the
    // audit layer reads its first segment rather than depend on notify.
    d["key"]
        .as_str()
        .and_then(|k| k.strip_prefix("ddtwatch/")?.split('/').next())
        .filter(|id| !id.is_empty())
        .unwrap_or("ddtwatch")
        .to_string()
}

/// The outcome of verifying a topic dump: one verification per chain.
#[derive(Debug)]
pub struct TopicVerification {
    pub chains: BTreeMap<String, super::Verification>,
    /// Messages seen twice (a producer retry): counted once.
    pub duplicates: u64,
}

/// Verifies a dump of the audit topic: JSON lines `{"chain":…,"record":{…}}` in any order
/// (partitions interleave). Each chain is checked in seq order with the file checks; a chain may
/// start after seq 1 only with `opts.partial` (a topic enabled after the log began, or
/// retention). An unparsable or oversized line is an error naming its place.
pub fn verify_dump(files: &[PathBuf], opts: &VerifyOptions) -> io::Result<Result<TopicVerification, String>> {
    let mut chains: BTreeMap<String, BTreeMap<u64, (Record, PathBuf, usize)>> = BTreeMap::new();
    let mut duplicates = 0;
    for file in files {
        let f = std::fs::File::open(file)?;
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{}: line {}", file.display(), i + 1);
            if line.len() > MAX_DUMP_LINE_BYTES {
                return Ok(Err(format!("{at}: {} bytes, more than an audit record can be", line.len())));
            }
            let v: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => return Ok(Err(format!("{at}: not JSON ({e})"))),
            };
            let Some(chain) = v["chain"].as_str().filter(|c| !c.is_empty()) else {
                return Ok(Err(format!("{at}: no chain id (not an audit-topic message)")));
            };
            // Nothing beside what the hash covers (and the chain id): an added field would pass
            // the hash check unseen.
            let unknown = |v: &Value, known: &[&str]| {
                v.as_object().and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())).cloned())
            };
            if let Some(k) = unknown(&v, &["chain", "record"])
                .or_else(|| unknown(&v["record"], &["seq", "ts", "kind", "data", "prev", "hash", "mac"]))
            {
                return Ok(Err(format!("{at}: unknown field {k:?} (not written by ddtwatch: added)")));
            }
            let r: Record = match serde_json::from_value(v["record"].clone()) {
                Ok(r) => r,
                Err(e) => return Ok(Err(format!("{at}: not an audit record ({e})"))),
            };
            let seqs = chains.entry(chain.to_string()).or_default();
            match seqs.get(&r.seq) {
                Some((seen, _, _)) if seen == &r => duplicates += 1,
                Some(_) => {
                    return Ok(Err(format!(
                        "{at}: chain {chain} has two different records with seq {} (edited or forged)",
                        r.seq
                    )));
                }
                None => {
                    seqs.insert(r.seq, (r, file.clone(), i + 1));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for (chain, records) in chains {
        let mut check = ChainCheck::new(opts);
        let (first, last) =
            (records.keys().next().copied().unwrap_or(0), records.keys().next_back().copied().unwrap_or(0));
        let mut result = super::Verification::Ok { records: records.len() as u64, first_seq: first, last_seq: last };
        for (r, file, line) in records.values() {
            if let Err((seq, problem)) = check.next(r) {
                result = super::Verification::Broken { file: file.clone(), line: *line, seq, problem };
                break;
            }
        }
        out.insert(chain, result);
    }
    Ok(Ok(TopicVerification { chains: out, duplicates }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, Verification};

    /// The audit-topic messages of a chain of `n` records, as a dump holds them.
    fn chain_messages(dir: &std::path::Path, name: &str, n: u64) -> Vec<String> {
        let mut log = AuditLog::open(&dir.join(name), 0).unwrap();
        (0..n)
            .map(|i| {
                let r =
                    log.append("breach", json!({"deployment_id": "d", "i": i}), 1_777_107_600_000 + i as i64).unwrap();
                json!({"chain": log.chain(), "record": r}).to_string()
            })
            .collect()
    }

    fn verify(dir: &std::path::Path, lines: &[String], partial: bool) -> Result<TopicVerification, String> {
        let path = dir.join("dump");
        std::fs::write(&path, lines.join("\n")).unwrap();
        verify_dump(&[path], &VerifyOptions { partial, ..Default::default() }).unwrap()
    }

    fn broken(v: &TopicVerification) -> Vec<String> {
        v.chains
            .values()
            .filter_map(|c| match c {
                Verification::Broken { problem, .. } => Some(problem.clone()),
                Verification::Ok { .. } => None,
            })
            .collect()
    }

    #[test]
    fn two_chains_interleaved_out_of_order_with_a_retry_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (chain_messages(dir.path(), "a.log", 5), chain_messages(dir.path(), "b.log", 3));
        // Partitions interleave; a producer retry repeats a message.
        let dump = vec![
            b[2].clone(),
            a[0].clone(),
            a[3].clone(),
            b[0].clone(),
            a[1].clone(),
            a[4].clone(),
            b[1].clone(),
            a[2].clone(),
            a[3].clone(),
        ];
        let v = verify(dir.path(), &dump, false).unwrap();
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.chains.len(), 2);
        let mut records: Vec<u64> = v
            .chains
            .values()
            .map(|c| match c {
                Verification::Ok { records, first_seq: 1, .. } => *records,
                other => panic!("{other:?}"),
            })
            .collect();
        records.sort();
        assert_eq!(records, vec![3, 5]);
    }

    #[test]
    fn a_missing_or_edited_record_breaks_its_chain_only() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (chain_messages(dir.path(), "a.log", 5), chain_messages(dir.path(), "b.log", 3));
        let mut dump: Vec<String> = a.iter().chain(&b).cloned().collect();
        dump.remove(2); // a's seq 3
        let v = verify(dir.path(), &dump, false).unwrap();
        assert_eq!(broken(&v).len(), 1, "only chain a");
        assert!(broken(&v)[0].starts_with("prev does not match"), "{:?}", broken(&v));

        let mut dump: Vec<String> = a.iter().chain(&b).cloned().collect();
        dump[6] = dump[6].replace("\"i\":1", "\"i\":7"); // b's seq 2, edited
        let v = verify(dir.path(), &dump, false).unwrap();
        assert_eq!(broken(&v), vec!["hash does not match the record's content (edited)".to_string()]);
    }

    #[test]
    fn a_chain_without_its_start_needs_partial() {
        let dir = tempfile::tempdir().unwrap();
        let a = chain_messages(dir.path(), "a.log", 5);
        let v = verify(dir.path(), &a[2..], false).unwrap();
        assert!(broken(&v)[0].contains("starts at seq 3 instead of 1"), "{:?}", broken(&v));
        let v = verify(dir.path(), &a[2..], true).unwrap();
        assert!(broken(&v).is_empty());
    }

    #[test]
    fn a_second_different_record_with_the_same_seq_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = chain_messages(dir.path(), "a.log", 3);
        let forged = a[1].replace("\"i\":1", "\"i\":9");
        let err = verify(dir.path(), &[a[0].clone(), a[1].clone(), forged, a[2].clone()], false).unwrap_err();
        assert!(err.contains("line 3") && err.contains("two different records with seq 2"), "{err}");
    }

    #[test]
    fn each_record_names_its_deployment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(&dir.path().join("a.log"), 0).unwrap();
        let mut of = |kind: &str, data: Value| deployment_of(&log.append(kind, data, 0).unwrap());
        assert_eq!(of("breach", json!({"deployment_id": "lfr-1"})), "lfr-1");
        assert_eq!(of("lifecycle", json!({"deployment": "anpr-2"})), "anpr-2");
        let key = "ddtwatch/lfr-3/camera_silence/cam-2/2026-04-25T09:00:00Z/firing";
        assert_eq!(of("notification", json!({"key": key, "result": "delivered"})), "lfr-3");
        assert_eq!(of("config", json!({"event": "loaded"})), "ddtwatch");
        assert_eq!(of("notification", json!({"key": "other/x"})), "ddtwatch");
    }

    /// On open, the records the topic has not acknowledged (after the head's `topic_seq`) are
    /// produced again; with no acknowledgement recorded, the whole live file is.
    #[test]
    fn reopening_resends_what_the_topic_has_not_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let source: SourceConfig = serde_norway::from_str("{kind: kafka, brokers: \"127.0.0.1:9\"}").unwrap();
        let topic = || Arc::new(AuditTopic::new(&source, "ddt.audit").unwrap());
        let mut log = AuditLog::open(&path, 0).unwrap();
        for i in 0..5 {
            log.append("breach", json!({"deployment_id": "d", "i": i}), 0).unwrap();
        }
        let chain = log.chain().to_string();
        drop(log);
        // Never acknowledged (a log from before the topic): all five.
        let (log, resent) = AuditLog::open(&path, 0).unwrap().with_topic(topic()).unwrap();
        assert_eq!((resent, log.chain()), (5, chain.as_str()), "the same chain continues");
        let mut log = log;
        log.mark_on_topic(3).unwrap();
        drop(log);
        let (mut log, resent) = AuditLog::open(&path, 0).unwrap().with_topic(topic()).unwrap();
        assert_eq!(resent, 2, "seq 4 and 5");
        log.mark_on_topic(5).unwrap();
        log.mark_on_topic(2).unwrap(); // never backwards
        drop(log);
        let (_, resent) = AuditLog::open(&path, 0).unwrap().with_topic(topic()).unwrap();
        assert_eq!(resent, 0);
    }

    /// Two replicas with the same path and start millisecond (PID 1 in containers) still get
    /// different chains.
    #[test]
    fn chain_ids_differ_for_the_same_path_and_time() {
        let path = std::path::Path::new("/var/lib/ddtwatch/audit.log");
        let ids: std::collections::BTreeSet<String> =
            (0..20).map(|_| crate::audit::new_chain_id(path, crate::audit::GENESIS)).collect();
        assert_eq!(ids.len(), 20);
    }

    #[test]
    fn bad_lines_are_refused_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let a = chain_messages(dir.path(), "a.log", 2);
        let cases = [
            ("{not json".to_string(), "not JSON"),
            (json!({"record": {"seq": 1}}).to_string(), "no chain id"),
            (json!({"chain": "c", "record": {"seq": "one"}}).to_string(), "not an audit record"),
            (
                format!("{{\"chain\":\"c\",\"pad\":\"{}\"}}", "x".repeat(MAX_DUMP_LINE_BYTES)),
                "more than an audit record",
            ),
            (a[1].replacen("{\"chain\"", "{\"note\":1,\"chain\"", 1), "unknown field \"note\""),
            (a[1].replacen("\"seq\":2", "\"seq\":2,\"by\":\"x\"", 1), "unknown field \"by\""),
        ];
        for (line, want) in cases {
            let err = verify(dir.path(), &[a[0].clone(), line, a[1].clone()], false).unwrap_err();
            assert!(err.contains("dump: line 2") && err.contains(want), "{want}: {err}");
        }
    }
}
