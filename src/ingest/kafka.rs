//! The Kafka source (rdkafka `StreamConsumer` on tokio) and the Kafka dead-letter producer.
//!
//! At-least-once: `enable.auto.commit` and `enable.auto.offset.store` are off. A message's offset
//! is stored only after it was applied to the engine and any dead letter it caused was handed to
//! the DLQ producer; stored offsets are committed every `commit_interval`, on partition revoke and
//! at shutdown, each time only after the DLQ producer flushed (so a dead letter is on the DLQ
//! topic before the offset of its message is committed). Re-delivery after a crash is absorbed
//! by event_id dedup.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::config::SourceConfig;
use crate::engine::DeadLetter;
use crate::engine::snapshot::Through;
use crate::health::{SourceHealth, TaskGuard};
use crate::ingest::Pipeline;

/// Counters of the Kafka source and DLQ producer, read by the metrics collector.
#[derive(Debug, Default)]
pub struct KafkaStats {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub commits_ok: AtomicU64,
    pub commits_failed: AtomicU64,
    pub assigned: AtomicU64,
    pub revoked: AtomicU64,
    pub dlq_produced: AtomicU64,
    pub dlq_failed: AtomicU64,
    pub client_errors: AtomicU64,
    pub snapshots: AtomicU64,
    pub restored: AtomicU64,
    /// Undelivered notifications written into state-topic snapshots (each time one is).
    pub outbox_handed_over: AtomicU64,
    /// Notifications taken over from restored snapshots (new to this instance's outbox).
    pub outbox_restored: AtomicU64,
    /// Re-delivered messages skipped because a restored snapshot already holds them.
    pub skipped: AtomicU64,
    /// False while librdkafka reports all brokers down.
    pub broker_up: AtomicBool,
    /// (topic, partition) → consumer lag (messages), from librdkafka statistics.
    pub lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// Whether the state topic meets its requirements (compacted, large enough messages):
    /// None until checked (or when the broker cannot say), Some(problems) after.
    pub state_topic_problems: Mutex<Option<Vec<String>>>,
}

/// How long between librdkafka statistics (broker up/down, consumer lag).
const STATISTICS_INTERVAL_MS: &str = "2000";

/// Where secret property values come from when building a client configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Read every secret file / env variable (a missing one is an error).
    Read,
    /// Put a placeholder in place of each secret (`check-config --skip-secrets`).
    Placeholder,
}

/// The default `client.id`: `ddtwatch-<pod or host name>` so broker logs and quotas can tell
/// replicas apart; a user's `client.id` wins.
pub fn default_client_id() -> String {
    match std::env::var("HOSTNAME") {
        Ok(h) if !h.trim().is_empty() => format!("ddtwatch-{}", h.trim()),
        _ => "ddtwatch".to_string(),
    }
}

/// librdkafka client configuration of a `kafka` source (secrets resolved).
pub fn client_config(source: &SourceConfig) -> anyhow::Result<ClientConfig> {
    client_config_with(source, Secrets::Read)
}

/// [`client_config`], with secrets read or replaced by placeholders.
pub fn client_config_with(source: &SourceConfig, secrets: Secrets) -> anyhow::Result<ClientConfig> {
    let SourceConfig::Kafka { brokers, properties, secret_properties, .. } = source else {
        anyhow::bail!("not a kafka source");
    };
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c.set("client.id", default_client_id());
    c.set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in properties {
        c.set(k, v);
    }
    for (k, r) in secret_properties {
        match secrets {
            Secrets::Read => c.set(k, r.read(k)?),
            Secrets::Placeholder => c.set(k, "placeholder-secret"),
        };
    }
    Ok(c)
}

/// The consumer's settings: ddtwatch's own on top of the user's.
fn consumer_config(base: &ClientConfig, group_id: &str) -> ClientConfig {
    let mut c = base.clone();
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    // Documented default (README, Kafka): a new group starts at the beginning of the topic, so a
    // deployment's first events are not skipped; `latest` is the user's to choose.
    if c.get("auto.offset.reset").is_none() {
        c.set("auto.offset.reset", "earliest");
    }
    c
}

/// The largest record the DLQ and state producers send (librdkafka's own default is 1 MB).
const MAX_RECORD_BYTES: &str = "67108864";

/// The state-topic producer's settings.
fn state_producer_config(base: &ClientConfig) -> ClientConfig {
    let mut pc = reliable_producer_config(base);
    pc.set("compression.type", "lz4").set("message.max.bytes", MAX_RECORD_BYTES);
    pc
}

/// The dead-letter producer's settings: a `too_large` dead letter carries its whole original
/// message (the broker let the consumer fetch it), which the 1 MB default would refuse.
fn dlq_producer_config(base: &ClientConfig) -> ClientConfig {
    let mut pc = reliable_producer_config(base);
    pc.set("message.max.bytes", MAX_RECORD_BYTES);
    pc
}

/// Builds every librdkafka client a source would create (consumer, dead-letter producer, state
/// producer) without a broker address, so nothing is contacted, and returns librdkafka's own
/// message for each that it refuses (unknown property, unsupported value, a certificate or key
/// file that is missing or does not parse, a SASL mechanism not compiled in).
pub fn check_offline(source: &SourceConfig, dead_letter: bool, secrets: Secrets) -> Vec<String> {
    use rdkafka::producer::BaseProducer;
    let SourceConfig::Kafka { group_id, state_topic, .. } = source else { return Vec::new() };
    let mut base = match client_config_with(source, secrets) {
        Ok(c) => c,
        Err(e) => return vec![format!("{e:#}")],
    };
    base.remove("bootstrap.servers");
    let mut errors = Vec::new();
    let consumer: Result<BaseConsumer, _> = consumer_config(&base, group_id).create();
    if let Err(e) = consumer {
        errors.push(format!("consumer: {}", explain(&e)));
    }
    if dead_letter {
        let p: Result<BaseProducer, _> = dlq_producer_config(&base).create();
        if let Err(e) = p {
            errors.push(format!("dead-letter producer: {}", explain(&e)));
        }
    }
    if !state_topic.is_empty() {
        let p: Result<BaseProducer, _> = state_producer_config(&base).create();
        if let Err(e) = p {
            errors.push(format!("state-topic producer: {}", explain(&e)));
        }
    }
    // The same message for every client is one problem, not three.
    errors.dedup_by(|a, b| a.split_once(": ").map(|x| x.1) == b.split_once(": ").map(|x| x.1));
    errors
}

/// librdkafka's message for a failed client creation or configuration, with a hint where the
/// cause is a feature missing from the build.
fn explain(e: &KafkaError) -> String {
    // A property error's Display includes the value, which may be a secret (a misspelt
    // `secret_properties` key): name the property, never its value.
    let msg = match e {
        KafkaError::ClientConfig(_, desc, key, _) => format!("Client config error: {desc} (property {key})"),
        e => e.to_string(),
    };
    if msg.contains("not supported by this build") || msg.contains("No provider for SASL mechanism") {
        format!("{msg} (librdkafka features compiled in: {})", librdkafka_info().1)
    } else {
        msg
    }
}

/// librdkafka's version and `builtin.features`, as logged at start and exposed on
/// `ddtwatch_kafka_client_info`.
pub fn librdkafka_info() -> (String, String) {
    static INFO: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    INFO.get_or_init(|| {
        let (_, version) = rdkafka::util::get_rdkafka_version();
        let features = ClientConfig::new()
            .create_native_config()
            .and_then(|n| n.get("builtin.features"))
            .unwrap_or_else(|_| "unknown".to_string());
        (version, features)
    })
    .clone()
}

/// The kind label of a librdkafka error (`ddtwatch_source_errors_total{kind}`).
pub fn error_kind(code: Option<rdkafka::types::RDKafkaErrorCode>, message: &str) -> &'static str {
    use rdkafka::types::RDKafkaErrorCode as C;
    // Broker names and addresses ("sasl_ssl://kafka-tls-0:9093/1:", "ipv4#10.0.0.1:9093") say
    // nothing about the cause (a host may well be called kafka-tls-0): words with a scheme, a
    // `#`, a port or a broker id are left out before looking for one.
    let is_address = |w: &str| {
        w.contains("://")
            || w.contains('#')
            || w.split(':').skip(1).any(|p| p.starts_with(|c: char| c.is_ascii_digit()))
            || (w.ends_with(':') && w.contains('/'))
    };
    let lower: String =
        message.split_whitespace().filter(|w| !is_address(w)).collect::<Vec<_>>().join(" ").to_ascii_lowercase();
    match code {
        Some(C::Authentication | C::SaslAuthenticationFailed) => "authentication",
        Some(C::TopicAuthorizationFailed | C::GroupAuthorizationFailed | C::ClusterAuthorizationFailed) => {
            "authorization"
        }
        Some(C::SSL) => "tls",
        Some(C::Fatal) => "fatal",
        _ if lower.contains("sasl") || lower.contains("authentication") => "authentication",
        _ if lower.contains("ssl") || lower.contains("certificate") || lower.contains("tls") => "tls",
        Some(
            C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::Resolve
            | C::NetworkException
            | C::OperationTimedOut
            | C::BrokerNotAvailable
            | C::CoordinatorNotAvailable
            | C::NotCoordinator,
        ) => "transport",
        _ => "other",
    }
}

/// Client settings of the producers that must not lose a record (DLQ, state topic).
pub fn reliable_producer_config(base: &ClientConfig) -> ClientConfig {
    let mut c = base.clone();
    c.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "5");
    c
}

/// Queues a record, waiting (polling) while librdkafka's local queue is full, so none is dropped.
pub fn send_retrying<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, str, [u8], C::DeliveryOpaque>,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Checkpoints (snapshots, dead letters) and then commits the positions the checkpoint covers;
/// nothing processed since the last commit is not a failure.
fn checkpoint_and_commit<C: Consumer<Ctx>>(consumer: &C, ctx: &Ctx, mode: CommitMode) {
    let Some(positions) = ctx.checkpoint() else { return };
    if positions.count() == 0 {
        return;
    }
    // The positions the checkpoint covered, not the consumer's stored offsets: an asynchronous
    // commit of "the current state" is carried out later on librdkafka's thread and would take
    // offsets stored after the snapshots were taken (events no snapshot holds: lost on a crash).
    match consumer.commit(&positions, mode) {
        Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "offset commit failed"),
    }
}

/// What the consumer knows about deployments and partitions, shared with the rebalance
/// callbacks.
#[derive(Default)]
struct Tracking {
    /// deployment (message key) → the partition its events come from.
    owner: HashMap<String, (String, i32)>,
    /// Last processed offset per partition.
    last_offset: HashMap<(String, i32), i64>,
    /// Deployments with events since their last snapshot.
    dirty: HashSet<String>,
    /// Restored deployments: their events up to this offset are already in the snapshot.
    skip_through: HashMap<String, Through>,
    /// Undelivered notifications per deployment in its last snapshot: a deployment whose count
    /// changes is snapshotted again even without new events (a clock-driven breach, a delivery).
    handed_over: HashMap<String, usize>,
}

struct Ctx {
    stats: Arc<KafkaStats>,
    health: Arc<SourceHealth>,
    /// Set by librdkafka's error callback on a fatal error: the source cannot go on.
    fatal: Mutex<Option<String>>,
    /// A broker is reachable but nothing can be consumed (authorization refused, topic
    /// unknown): the source stays down until a message arrives or partitions are assigned.
    blocked: AtomicBool,
    pipeline: Pipeline,
    tracking: Mutex<Tracking>,
    /// Snapshot producer and topic (None: state topic off).
    state: Option<(ThreadedProducer<CountingContext>, String)>,
    /// Client settings for the state-topic reader.
    client: ClientConfig,
    grace: Duration,
}

impl Ctx {
    fn track(&self) -> std::sync::MutexGuard<'_, Tracking> {
        self.tracking.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Snapshots every deployment changed since the last checkpoint to the state topic and waits
    /// for the broker's acknowledgement, then makes dead letters durable. Returns the positions
    /// (next offset per partition) that the snapshots and dead letters cover — only those may be
    /// committed — or None when nothing may be committed this round.
    fn checkpoint(&self) -> Option<TopicPartitionList> {
        // Messages are applied on the consuming task, which is running this: every processed
        // offset is in the engine now, and stays covered by what is snapshotted below.
        let mut positions = TopicPartitionList::new();
        for ((topic, partition), offset) in self.track().last_offset.iter() {
            positions.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(offset + 1)).ok()?;
        }
        if positions.count() == 0 {
            // Nothing consumed yet: nothing to make durable first (and no waiting on a producer
            // while the broker is away) — but deployments restored and then retired on the clock
            // leave their markers.
            if let Some((producer, topic)) = &self.state {
                self.write_retired(producer, topic);
            }
            return Some(positions);
        }
        if let Some((producer, topic)) = &self.state {
            let publisher = self.pipeline.publisher();
            // Pending notifications of the deployments this instance holds (issue 19).
            let pending: HashMap<String, Vec<serde_json::Value>> = {
                let owned: Vec<String> = self.track().owner.keys().cloned().collect();
                owned
                    .into_iter()
                    .map(|id| {
                        let p = publisher.as_ref().map(|p| p.pending_for(&id)).unwrap_or_default();
                        (id, p)
                    })
                    .collect()
            };
            let dirty: Vec<(String, Through)> = {
                let mut t = self.track();
                for (id, p) in &pending {
                    if t.handed_over.get(id).copied().unwrap_or(0) != p.len() {
                        t.dirty.insert(id.clone());
                    }
                }
                let dirty: Vec<String> = t.dirty.drain().collect();
                dirty
                    .into_iter()
                    .filter_map(|id| {
                        let (topic, partition) = t.owner.get(&id)?.clone();
                        let offset = *t.last_offset.get(&(topic.clone(), partition))?;
                        Some((id, Through { topic, partition, offset }))
                    })
                    .collect()
            };
            if !dirty.is_empty() {
                let mut handed: HashMap<String, usize> = HashMap::new();
                let snaps: Vec<(String, Vec<u8>)> = {
                    let engine = self.pipeline.engine.lock().unwrap_or_else(|p| p.into_inner());
                    dirty
                        .into_iter()
                        .filter_map(|(id, th)| {
                            let outbox = pending.get(&id).cloned().unwrap_or_default();
                            handed.insert(id.clone(), outbox.len());
                            Some((id.clone(), engine.snapshot_with_outbox(&id, Some(th), outbox)?))
                        })
                        .collect()
                };
                for (id, bytes) in &snaps {
                    let rec = BaseRecord::to(topic).key(id.as_str()).payload(bytes.as_slice());
                    if let Err(e) = send_retrying(producer, rec) {
                        tracing::error!(error = %e, "snapshot rejected by the producer");
                        self.track().dirty.extend(snaps.iter().map(|(id, _)| id.clone()));
                        return None;
                    }
                }
                if producer.flush(self.grace).is_err() || producer.in_flight_count() > 0 {
                    tracing::warn!("snapshots not acknowledged; offsets not committed this round");
                    self.track().dirty.extend(snaps.into_iter().map(|(id, _)| id));
                    return None;
                }
                self.stats.snapshots.fetch_add(snaps.len() as u64, Ordering::Relaxed);
                let n: usize = handed.values().sum();
                self.stats.outbox_handed_over.fetch_add(n as u64, Ordering::Relaxed);
                self.track().handed_over.extend(handed);
            }
        }
        if let Some((producer, topic)) = &self.state
            && !self.write_retired(producer, topic)
        {
            return None;
        }
        if !self.pipeline.sync_dead_letters(self.grace) {
            tracing::warn!("dead letters not yet acknowledged; offsets not committed this round");
            return None;
        }
        if let Some(p) = self.pipeline.publisher()
            && !p.sync(self.grace)
        {
            tracing::warn!("audit records not yet acknowledged by the audit topic; offsets not committed this round");
            return None;
        }
        Some(positions)
    }

    /// Replaces the snapshots of deployments retired since the last checkpoint with a marker
    /// holding their final summary (`{"retired_deployment": …}`, one small record a deployment on
    /// the compacted topic), so the next holder neither restores them nor applies their late
    /// events. False if the topic did not acknowledge them (they are tried again next time).
    fn write_retired(&self, producer: &ThreadedProducer<CountingContext>, topic: &str) -> bool {
        let retired = self.pipeline.take_retired();
        if retired.is_empty() {
            return true;
        }
        for (id, record) in &retired {
            let marker = retired_marker(record);
            if let Err(e) = send_retrying(producer, BaseRecord::to(topic).key(id.as_str()).payload(marker.as_slice())) {
                tracing::error!(error = %e, "retired-deployment marker rejected by the producer");
                self.pipeline.return_retired(retired);
                return false;
            }
        }
        if producer.flush(self.grace).is_err() || producer.in_flight_count() > 0 {
            tracing::warn!("retired-deployment markers not acknowledged; offsets not committed this round");
            self.pipeline.return_retired(retired);
            return false;
        }
        let mut t = self.track();
        for (id, _) in &retired {
            t.owner.remove(id);
            t.handed_over.remove(id);
            t.skip_through.remove(id);
            t.dirty.remove(id);
        }
        true
    }

    /// Reads the state topic to its end and restores the deployments whose events come from the
    /// given partitions.
    fn restore(&self, assigned: &[(String, i32)]) {
        let Some((_, topic)) = &self.state else { return };
        let mut latest: HashMap<String, Vec<u8>> = HashMap::new();
        match read_topic(&self.client, topic, self.grace) {
            Ok(records) => {
                for (k, v) in records {
                    latest.insert(k, v);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, topic = %topic, "cannot read the state topic; assigned deployments start empty");
                return;
            }
        }
        let mut restored = 0u64;
        tracing::info!(snapshots = latest.len(), "state topic read");
        for (id, bytes) in latest {
            if self.pipeline.engine.lock().unwrap_or_else(|p| p.into_inner()).is_retired(&id) {
                // Retired here: an older snapshot (its marker not yet on the topic) must not
                // bring it back.
                continue;
            }
            if let Some(record) = retired_record(&bytes) {
                // Retired (here or elsewhere): its later events are dead-lettered, and its
                // final summary is kept in this instance's state_dir too.
                self.pipeline.engine.lock().unwrap_or_else(|p| p.into_inner()).mark_retired(&id);
                if let Some(p) = self.pipeline.publisher() {
                    p.retired(&id, &record);
                }
                continue;
            }
            let Ok(snap) = crate::engine::snapshot::DeploymentSnapshot::from_bytes(&bytes) else {
                tracing::warn!("unreadable snapshot on the state topic, skipped");
                continue;
            };
            let Some(th) = snap.through.clone() else { continue };
            if !assigned.iter().any(|(t, p)| *t == th.topic && *p == th.partition) {
                continue;
            }
            let mut engine = self.pipeline.engine.lock().unwrap_or_else(|p| p.into_inner());
            match engine.restore(&bytes) {
                Ok(_) => {
                    drop(engine);
                    // Notifications the previous holder had not delivered (its pod, and its
                    // state_dir, may be gone): delivered from here under their original keys.
                    let handed = snap.outbox.len();
                    if handed > 0
                        && let Some(p) = self.pipeline.publisher()
                    {
                        let taken = p.take_over(snap.outbox);
                        self.stats.outbox_restored.fetch_add(taken as u64, Ordering::Relaxed);
                        tracing::info!(
                            handed_over = handed,
                            new = taken,
                            "undelivered notifications taken over with a deployment"
                        );
                    }
                    let mut t = self.track();
                    t.owner.insert(id.clone(), (th.topic.clone(), th.partition));
                    t.handed_over.insert(id.clone(), handed);
                    t.skip_through.insert(id, th);
                    restored += 1;
                }
                Err(e) => tracing::warn!(error = %e, "snapshot not restored"),
            }
        }
        self.stats.restored.fetch_add(restored, Ordering::Relaxed);
        tracing::info!(deployments = restored, "deployment state restored from the state topic");
    }
}

/// Every (key, value) of a topic from the beginning to its current end, in order.
/// The state-topic record that marks a deployment retired, holding its final summary.
fn retired_marker(record: &[u8]) -> Vec<u8> {
    let mut m = b"{\"retired_deployment\":".to_vec();
    m.extend_from_slice(record);
    m.push(b'}');
    m
}

/// The final summary in a [`retired_marker`] (None: a snapshot, or not JSON).
fn retired_record(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.starts_with(b"{\"retired_deployment\":") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    serde_json::to_vec_pretty(v.get("retired_deployment")?).ok()
}

fn read_topic(client: &ClientConfig, topic: &str, timeout: Duration) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut c = client.clone();
    c.set("group.id", format!("ddtwatch-state-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let reader: BaseConsumer = c.create().context("creating the state reader")?;
    let md = reader.fetch_metadata(Some(topic), timeout).context("state topic metadata")?;
    let parts: Vec<i32> =
        md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    if parts.is_empty() {
        anyhow::bail!("state topic {topic} has no partitions (does it exist?)");
    }
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in &parts {
        let (_, high) = reader.fetch_watermarks(topic, *p, timeout).context("state topic watermarks")?;
        if high > 0 {
            ends.insert(*p, high);
            tpl.add_partition_offset(topic, *p, rdkafka::Offset::Beginning)?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    reader.assign(&tpl)?;
    tracing::debug!(topic, ends = ?ends, "reading the state topic");
    // Read until every partition reached its high watermark and then nothing more arrives for a
    // moment (some Kafka-protocol brokers report watermarks that lag the log).
    let deadline = std::time::Instant::now() + timeout * 3;
    let mut done: HashSet<i32> = HashSet::new();
    let mut idle_since = std::time::Instant::now();
    loop {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("timed out reading the state topic");
        }
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle_since = std::time::Instant::now();
                let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                out.push((key, m.payload().unwrap_or_default().to_vec()));
                if ends.get(&m.partition()).is_some_and(|end| m.offset() + 1 >= *end) {
                    done.insert(m.partition());
                }
            }
            Some(Err(e)) => anyhow::bail!("reading the state topic: {e}"),
            None => {
                if done.len() >= ends.len() && idle_since.elapsed() > Duration::from_millis(500) {
                    break;
                }
            }
        }
    }
    Ok(out)
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        {
            let mut lag = self.stats.lag.lock().unwrap_or_else(|p| p.into_inner());
            for (topic, t) in &s.topics {
                for (p, part) in &t.partitions {
                    // -1 is librdkafka's internal unassigned partition; -1 lag means unknown yet.
                    if *p >= 0 && part.consumer_lag >= 0 {
                        lag.insert((topic.clone(), *p), part.consumer_lag);
                    }
                }
            }
        }
        // Up while at least one broker connection is up (authenticated, if SASL is on) and
        // nothing blocks consumption.
        let up = s.brokers.values().any(|b| b.state == "UP");
        self.stats.broker_up.store(up, Ordering::Relaxed);
        self.health.set_up(up && !self.blocked.load(Ordering::Relaxed));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.stats.client_errors.fetch_add(1, Ordering::Relaxed);
        let code = error.rdkafka_error_code();
        let kind = error_kind(code, reason);
        // librdkafka's reason names the broker and the cause ("SASL authentication error: …",
        // "SSL handshake failed: … certificate verify failed").
        let message = if reason.is_empty() { error.to_string() } else { reason.to_string() };
        let all_down = matches!(code, Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown));
        if all_down {
            // A consequence: the cause (refused connection, failed handshake) came just before.
            self.health.error_summary(kind, &message);
        } else {
            self.health.error(kind, &message);
        }
        let unknown_topic = matches!(
            code,
            Some(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                    | rdkafka::types::RDKafkaErrorCode::UnknownTopic
            )
        );
        if kind == "authorization" || unknown_topic {
            self.blocked.store(true, Ordering::Relaxed);
            self.health.set_up(false);
        }
        if all_down || matches!(kind, "authentication" | "tls") {
            self.stats.broker_up.store(false, Ordering::Relaxed);
            self.health.set_up(false);
        }
        if kind == "fatal" {
            let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert(message);
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.stats.revoked.fetch_add(tpl.count() as u64, Ordering::Relaxed);
            // State and offsets of applied events go with the partitions we hand over.
            checkpoint_and_commit(consumer, self, CommitMode::Sync);
            let revoked: Vec<(String, i32)> =
                tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
            // Their positions are the next owner's to commit from now on.
            self.track().last_offset.retain(|tp, _| !revoked.contains(tp));
            if self.state.is_some() {
                let gone: Vec<String> = {
                    let mut t = self.track();
                    let gone: Vec<String> =
                        t.owner.iter().filter(|(_, tp)| revoked.contains(tp)).map(|(id, _)| id.clone()).collect();
                    for id in &gone {
                        t.owner.remove(id);
                        t.skip_through.remove(id);
                    }
                    gone
                };
                let mut engine = self.pipeline.engine.lock().unwrap_or_else(|p| p.into_inner());
                for id in &gone {
                    engine.remove(id);
                }
                tracing::info!(deployments = gone.len(), "deployments handed over");
            }
            tracing::info!(partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.stats.assigned.fetch_add(tpl.count() as u64, Ordering::Relaxed);
            if tpl.count() > 0 {
                self.blocked.store(false, Ordering::Relaxed);
            }
            tracing::info!(partitions = tpl.count(), "partitions assigned");
            let assigned: Vec<(String, i32)> =
                tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
            // Before the first message of these partitions is fetched.
            self.restore(&assigned);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.stats.commits_ok.fetch_add(1, Ordering::Relaxed),
            // Nothing stored since the last commit: not a failure.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => 0,
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed");
                self.stats.commits_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// What a producer of ddtwatch's writes: its delivery reports are counted by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerRole {
    /// The dead-letter topic (`ddtwatch_dead_letters_produced_total`).
    DeadLetters,
    /// The state topic (snapshots; a failure is a client error).
    Snapshots,
}

/// The delivery-report context of the dead-letter and state producers.
pub struct CountingContext {
    pub stats: Arc<KafkaStats>,
    pub role: ProducerRole,
}

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match (r, self.role) {
            (Ok(_), ProducerRole::DeadLetters) => self.stats.dlq_produced.fetch_add(1, Ordering::Relaxed),
            (Err((e, _)), ProducerRole::DeadLetters) => {
                tracing::error!(error = %e, "dead letter could not be produced");
                self.stats.dlq_failed.fetch_add(1, Ordering::Relaxed)
            }
            (Ok(_), ProducerRole::Snapshots) => 0,
            (Err((e, _)), ProducerRole::Snapshots) => {
                tracing::error!(error = %e, "snapshot could not be produced");
                self.stats.client_errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// The DLQ producer: idempotent, acks=all; flushed before offsets are committed.
pub struct KafkaDlq {
    producer: ThreadedProducer<CountingContext>,
    topic: String,
    stats: Arc<KafkaStats>,
    /// Dead letters handed to the producer (acknowledged ones are counted in `stats`).
    queued: AtomicU64,
}

impl KafkaDlq {
    pub fn new(source: &SourceConfig, topic: &str, stats: Arc<KafkaStats>) -> anyhow::Result<Self> {
        let producer = dlq_producer_config(&client_config(source)?)
            .create_with_context(CountingContext { stats: stats.clone(), role: ProducerRole::DeadLetters })
            .map_err(|e| anyhow::anyhow!("creating the dead-letter producer: {}", explain(&e)))?;
        Ok(KafkaDlq { producer, topic: topic.to_string(), stats, queued: AtomicU64::new(0) })
    }

    /// Queues one dead letter: the original bytes as value, the deployment as key, the reason and
    /// origin as headers. Blocks (retrying) while the local queue is full, so none is dropped.
    pub fn send(&self, d: &DeadLetter) {
        let mut headers = OwnedHeaders::new()
            .insert(Header { key: "ddtwatch-reason", value: Some(d.reason.as_str()) })
            .insert(Header { key: "ddtwatch-detail", value: Some(d.detail.as_str()) });
        if let Some(o) = &d.origin {
            headers = headers
                .insert(Header { key: "ddtwatch-source-topic", value: Some(o.topic.as_str()) })
                .insert(Header { key: "ddtwatch-source-partition", value: Some(&o.partition.to_string()) })
                .insert(Header { key: "ddtwatch-source-offset", value: Some(&o.offset.to_string()) });
        }
        let key = d.deployment_id.as_deref().unwrap_or("");
        let record = BaseRecord::to(&self.topic).payload(&d.payload[..]).key(key).headers(headers);
        match send_retrying(&self.producer, record) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.dlq_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, reason = d.reason.as_str(), "dead letter rejected by the producer");
            }
        }
    }

    /// Waits until every queued dead letter is acknowledged (true) or the timeout passes.
    pub fn flush(&self, timeout: Duration) -> bool {
        let acked = || {
            self.stats.dlq_produced.load(Ordering::Relaxed) + self.stats.dlq_failed.load(Ordering::Relaxed)
                >= self.queued.load(Ordering::Relaxed)
        };
        // Nothing waiting for an acknowledgement: no flush, which would otherwise wait out the
        // timeout on the producer's own requests while the broker is away (and hold the consume
        // loop with it).
        if acked() {
            return true;
        }
        self.producer.flush(timeout).is_ok() && acked()
    }
}

/// Settings of the consume loop.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub commit_interval: Duration,
    pub grace: Duration,
}

/// A Kafka source whose clients are built: every error that can never succeed (an unknown
/// property, an unsupported value, a missing credentials file, a certificate that does not parse)
/// surfaced from [`KafkaSource::new`], before anything runs. [`KafkaSource::run`] then consumes on
/// the calling (dedicated) thread, so no blocking librdkafka call — a producer flush, the
/// state-topic read in a rebalance callback, a commit, the outbox fsyncs of the events it applies —
/// ever runs on a tokio worker that serves `/metrics` and `/healthz`.
pub struct KafkaSource {
    consumer: BaseConsumer<Ctx>,
    topics: Vec<String>,
    group_id: String,
    state_topic: String,
    opts: ConsumeOptions,
}

impl KafkaSource {
    pub fn new(
        source: &SourceConfig,
        pipeline: Pipeline,
        stats: Arc<KafkaStats>,
        health: Arc<SourceHealth>,
        opts: ConsumeOptions,
    ) -> anyhow::Result<Self> {
        let SourceConfig::Kafka { topics, group_id, state_topic, .. } = source else {
            anyhow::bail!("not a kafka source")
        };
        let base = client_config(source)?;
        let state = if state_topic.is_empty() {
            None
        } else {
            let producer: ThreadedProducer<CountingContext> = state_producer_config(&base)
                .create_with_context(CountingContext { stats: stats.clone(), role: ProducerRole::Snapshots })
                .map_err(|e| anyhow::anyhow!("creating the state-topic producer: {}", explain(&e)))?;
            // Retired deployments' final summaries go to the state topic too (see `checkpoint`).
            pipeline.collect_retired();
            Some((producer, state_topic.clone()))
        };
        let consumer: BaseConsumer<Ctx> = consumer_config(&base, group_id)
            .create_with_context(Ctx {
                stats,
                health,
                fatal: Mutex::new(None),
                blocked: AtomicBool::new(false),
                pipeline,
                tracking: Mutex::new(Tracking::default()),
                state,
                client: base,
                grace: opts.grace,
            })
            .map_err(|e| anyhow::anyhow!("creating the Kafka consumer: {}", explain(&e)))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(|e| anyhow::anyhow!("subscribing to {names:?}: {}", explain(&e)))?;
        Ok(KafkaSource {
            consumer,
            topics: topics.clone(),
            group_id: group_id.clone(),
            state_topic: state_topic.clone(),
            opts,
        })
    }

    /// Consumes until `stop` turns true, then commits what was applied. Transient failures
    /// (broker unreachable, coordinator moves, authentication refused) are counted and logged
    /// with librdkafka's cause by the error callback while librdkafka reconnects by itself; only
    /// a fatal client error ends it with `Err`.
    pub fn run(self, task: &TaskGuard, stop: &AtomicBool) -> anyhow::Result<()> {
        let consumer = self.consumer;
        let ctx = consumer.context();
        tracing::info!(topics = ?self.topics, group = %self.group_id, source = %ctx.health.name, "kafka source consuming");
        if !self.state_topic.is_empty() {
            // On its own thread: with the broker down it would hold the consume loop for a while.
            let (client, topic, stats, grace) =
                (ctx.client.clone(), self.state_topic.clone(), ctx.stats.clone(), self.opts.grace);
            let _ = std::thread::Builder::new()
                .name("state-topic-check".into())
                .spawn(move || check_state_topic(&client, &topic, &stats, grace));
        }
        let mut last_commit = Instant::now();
        let result = loop {
            task.beat();
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            if let Some(fatal) = ctx.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                break Err(anyhow::anyhow!("fatal Kafka client error: {fatal}"));
            }
            if last_commit.elapsed() >= self.opts.commit_interval {
                checkpoint_and_commit(&consumer, ctx, CommitMode::Async);
                last_commit = Instant::now();
                continue;
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(msg)) => {
                    ctx.stats.broker_up.store(true, Ordering::Relaxed);
                    ctx.blocked.store(false, Ordering::Relaxed);
                    ctx.health.set_up(true);
                    apply(&consumer, ctx, &msg);
                }
                Some(Err(e)) => {
                    // rdkafka hands every error event to the context's error callback (counted
                    // and logged there, with librdkafka's reason) and returns it here as well:
                    // only a fatal one matters here. librdkafka reconnects and retries by itself
                    // (reconnect.backoff.ms doubling to reconnect.backoff.max.ms); the loop never
                    // sleeps on these (draining an outage's queued reports one per sleep kept a
                    // consumer from its partitions long after the broker was back).
                    if matches!(e, KafkaError::MessageConsumptionFatal(_)) {
                        break Err(anyhow::anyhow!("fatal Kafka client error: {e}"));
                    }
                }
            }
        };
        tracing::info!(source = %ctx.health.name, "kafka source stopping: committing offsets");
        checkpoint_and_commit(&consumer, ctx, CommitMode::Sync);
        consumer.unsubscribe();
        result
    }
}

impl KafkaSource {
    /// Runs the source on a thread of its own named `name`. An error that ends it marks `task`
    /// failed and goes to `on_error` at once (not only when the thread is joined).
    pub fn spawn(
        self,
        name: String,
        task: TaskGuard,
        stop: Arc<AtomicBool>,
        on_error: impl FnOnce(String) + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
        std::thread::Builder::new().name(name.clone()).spawn(move || {
            let r = self.run(&task, &stop);
            if let Err(e) = &r {
                let msg = format!("kafka source {name}: {e:#}");
                task.fail(msg.clone());
                on_error(msg);
            }
            r
        })
    }
}

/// Applies one message and stores its offset (after the event and its dead letter were handed on).
fn apply(consumer: &BaseConsumer<Ctx>, ctx: &Ctx, msg: &rdkafka::message::BorrowedMessage<'_>) {
    let payload = msg.payload().unwrap_or_default();
    ctx.stats.messages.fetch_add(1, Ordering::Relaxed);
    ctx.stats.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
    let origin = Through { topic: msg.topic().to_string(), partition: msg.partition(), offset: msg.offset() };
    let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
    let skip = {
        let mut t = ctx.track();
        let tp = (origin.topic.clone(), origin.partition);
        t.last_offset.insert(tp.clone(), origin.offset);
        match &key {
            Some(k) if !k.is_empty() => {
                let covered = t.skip_through.get(k).is_some_and(|th| {
                    th.topic == origin.topic && th.partition == origin.partition && origin.offset <= th.offset
                });
                if !covered {
                    t.owner.insert(k.clone(), tp);
                    t.dirty.insert(k.clone());
                }
                covered
            }
            _ => false,
        }
    };
    tracing::trace!(partition = origin.partition, offset = origin.offset, skip, "message");
    if skip {
        ctx.stats.skipped.fetch_add(1, Ordering::Relaxed);
    } else {
        ctx.pipeline.ingest_message(payload, ctx.pipeline.now(), origin);
    }
    if let Err(e) = consumer.store_offset_from_message(msg) {
        tracing::warn!(error = %e, "storing offset failed");
    }
}

/// Checks, where the broker answers DescribeConfigs, that the state topic is compacted and takes
/// messages as large as the state producer sends; logs and records what is not met.
fn check_state_topic(client: &ClientConfig, topic: &str, stats: &KafkaStats, timeout: Duration) {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = match client.create() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create an admin client to check the state topic");
            return;
        }
    };
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let Ok(rt) = rt else { return };
    let res = rt.block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &opts));
    let resource = match res.map(|mut v| v.pop()) {
        Ok(Some(Ok(r))) => r,
        Ok(Some(Err(e))) => {
            tracing::warn!(topic, error = %e, "the broker did not describe the state topic's config; its requirements (compaction, max.message.bytes) are unchecked");
            return;
        }
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(topic, error = %e, "the broker did not describe the state topic's config; its requirements (compaction, max.message.bytes) are unchecked");
            return;
        }
    };
    let get = |name: &str| resource.get(name).and_then(|e| e.value.clone());
    let problems = state_topic_problems(get("cleanup.policy").as_deref(), get("max.message.bytes").as_deref());
    for p in &problems {
        tracing::warn!(topic, problem = %p, "state topic requirement not met");
    }
    if problems.is_empty() {
        tracing::info!(topic, "state topic requirements met (compacted, max.message.bytes)");
    }
    *stats.state_topic_problems.lock().unwrap_or_else(|p| p.into_inner()) = Some(problems);
}

/// What is wrong with a state topic's `cleanup.policy` and `max.message.bytes` (None: the broker
/// did not say).
fn state_topic_problems(cleanup_policy: Option<&str>, max_message_bytes: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(p) = cleanup_policy
        && !p.contains("compact")
    {
        problems.push(format!("cleanup.policy is `{p}`, not compact: old snapshots are never cleaned up"));
    }
    if let Some(max) = max_message_bytes.and_then(|v| v.parse::<u64>().ok())
        && max < MIN_STATE_TOPIC_MESSAGE_BYTES
    {
        problems.push(format!(
            "max.message.bytes is {max}, below {MIN_STATE_TOPIC_MESSAGE_BYTES}: a large deployment's snapshot will be refused"
        ));
    }
    problems
}

/// The smallest `max.message.bytes` the state topic should allow (README, Kafka: a compressed
/// snapshot of a busy deployment stays well under this; the producer's limit is 64 MiB).
pub const MIN_STATE_TOPIC_MESSAGE_BYTES: u64 = 8 << 20;

/// Consumes a `kafka` source on a dedicated thread until `shutdown` turns true (for embedding and
/// the benches; `run` builds the source itself to stop at once on a config error).
pub async fn consume(
    source: SourceConfig,
    pipeline: Pipeline,
    stats: Arc<KafkaStats>,
    opts: ConsumeOptions,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let health = crate::health::Health::new();
    let src_health = health.source("kafka-0", "kafka");
    let src = KafkaSource::new(&source, pipeline, stats, src_health, opts)?;
    let stop = Arc::new(AtomicBool::new(false));
    let task = health.task("source kafka-0", Duration::from_secs(60));
    let handle = src.spawn("kafka-0".into(), task, stop.clone(), |_| {})?;
    let _ = shutdown.changed().await;
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || handle.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the kafka source thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(properties: &[(&str, &str)]) -> SourceConfig {
        SourceConfig::Kafka {
            brokers: "kafka:9093".into(),
            topics: vec!["ddt.events".into()],
            group_id: "g".into(),
            properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            secret_properties: Default::default(),
            state_topic: "ddt.state".into(),
        }
    }

    #[test]
    fn client_id_defaults_to_ddtwatch_and_the_users_wins() {
        let c = client_config(&source(&[])).unwrap();
        assert!(c.get("client.id").unwrap().starts_with("ddtwatch"), "{:?}", c.get("client.id"));
        let c = client_config(&source(&[("client.id", "lfr-watch-1")])).unwrap();
        assert_eq!(c.get("client.id"), Some("lfr-watch-1"));
        // The consumer's own settings are ddtwatch's; auto.offset.reset defaults to earliest.
        let consumer = consumer_config(&c, "g");
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        assert_eq!(consumer.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(consumer.get("auto.offset.reset"), Some("earliest"));
        let latest = consumer_config(&client_config(&source(&[("auto.offset.reset", "latest")])).unwrap(), "g");
        assert_eq!(latest.get("auto.offset.reset"), Some("latest"));
    }

    #[test]
    fn retired_markers_carry_the_summary_and_are_told_from_snapshots() {
        let record = br#"{"deployment_id": "d1", "retired_at": "2026-01-02T00:00:00Z"}"#;
        let marker = retired_marker(record);
        let back: serde_json::Value = serde_json::from_slice(&retired_record(&marker).unwrap()).unwrap();
        assert_eq!(back["deployment_id"], "d1");
        assert_eq!(back["retired_at"], "2026-01-02T00:00:00Z");
        assert!(retired_record(br#"{"snapshot_version": 1, "deployment_id": "d1"}"#).is_none());
        assert!(retired_record(b"{\"retired_deployment\": not json").is_none());
    }

    #[test]
    fn state_topic_requirements() {
        assert!(state_topic_problems(Some("compact"), Some("67108864")).is_empty());
        assert!(state_topic_problems(Some("compact,delete"), None).is_empty());
        assert!(state_topic_problems(None, None).is_empty(), "unknown is not a problem");
        let p = state_topic_problems(Some("delete"), Some("1048588"));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("not compact") && p[1].contains("1048588"), "{p:?}");
    }

    #[test]
    fn errors_are_classified_by_code_then_by_cause() {
        use rdkafka::types::RDKafkaErrorCode as C;
        assert_eq!(error_kind(Some(C::Authentication), ""), "authentication");
        assert_eq!(error_kind(Some(C::SSL), ""), "tls");
        assert_eq!(error_kind(Some(C::AllBrokersDown), "1/1 brokers are down"), "transport");
        assert_eq!(
            error_kind(Some(C::BrokerTransportFailure), "SSL handshake failed: certificate verify failed"),
            "tls"
        );
        assert_eq!(
            error_kind(Some(C::BrokerTransportFailure), "SASL SCRAM-SHA-512 mechanism handshake failed"),
            "authentication"
        );
        assert_eq!(error_kind(Some(C::BrokerTransportFailure), "Connect to ipv4#127.0.0.1:9 failed"), "transport");
        // A SASL_SSL broker's name is not a cause.
        let refused = "sasl_ssl://127.0.0.1:9093/bootstrap: Connect to ipv4#127.0.0.1:9093 failed: Connection refused";
        assert_eq!(error_kind(Some(C::BrokerTransportFailure), refused), "transport");
        // Nor is a host called kafka-tls-0.
        let disconnected = "kafka-tls-0.corp:9092/0: Disconnected (after 12ms in state UP)";
        assert_eq!(error_kind(Some(C::BrokerTransportFailure), disconnected), "transport");
        assert_eq!(error_kind(Some(C::TopicAuthorizationFailed), ""), "authorization");
        assert_eq!(error_kind(Some(C::Fatal), ""), "fatal");
        assert_eq!(error_kind(None, "something else"), "other");
    }
}
