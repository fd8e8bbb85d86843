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
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::config::SourceConfig;
use crate::engine::DeadLetter;
use crate::engine::snapshot::Through;
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
    /// Re-delivered messages skipped because a restored snapshot already holds them.
    pub skipped: AtomicU64,
    /// False while librdkafka reports all brokers down.
    pub broker_up: AtomicBool,
    /// (topic, partition) → consumer lag (messages), from librdkafka statistics.
    pub lag: Mutex<BTreeMap<(String, i32), i64>>,
}

/// librdkafka client configuration of a `kafka` source (secrets resolved).
pub fn client_config(source: &SourceConfig) -> anyhow::Result<ClientConfig> {
    let SourceConfig::Kafka { brokers, properties, secret_properties, .. } = source else {
        anyhow::bail!("not a kafka source");
    };
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c.set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in properties {
        c.set(k, v);
    }
    for (k, r) in secret_properties {
        c.set(k, r.read(k)?);
    }
    Ok(c)
}

/// Client settings of the producers that must not lose a record (DLQ, state topic).
fn reliable_producer_config(base: &ClientConfig) -> ClientConfig {
    let mut c = base.clone();
    c.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "5");
    c
}

/// Queues a record, waiting (polling) while librdkafka's local queue is full, so none is dropped.
fn send_retrying<C: ProducerContext>(
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
}

struct Ctx {
    stats: Arc<KafkaStats>,
    pipeline: Pipeline,
    tracking: Mutex<Tracking>,
    /// Snapshot producer and topic (None: state topic off).
    state: Option<(ThreadedProducer<DlqContext>, String)>,
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
        if let Some((producer, topic)) = &self.state {
            let dirty: Vec<(String, Through)> = {
                let mut t = self.track();
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
                let snaps: Vec<(String, Vec<u8>)> = {
                    let engine = self.pipeline.engine.lock().unwrap_or_else(|p| p.into_inner());
                    dirty
                        .into_iter()
                        .filter_map(|(id, th)| Some((id.clone(), engine.snapshot(&id, Some(th))?)))
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
            }
        }
        if !self.pipeline.sync_dead_letters(self.grace) {
            tracing::warn!("dead letters not yet acknowledged; offsets not committed this round");
            return None;
        }
        Some(positions)
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
                    let mut t = self.track();
                    t.owner.insert(id.clone(), (th.topic.clone(), th.partition));
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
fn read_topic(client: &ClientConfig, topic: &str, timeout: Duration) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use rdkafka::consumer::BaseConsumer;
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

    fn error(&self, error: KafkaError, reason: &str) {
        self.stats.client_errors.fetch_add(1, Ordering::Relaxed);
        if matches!(error.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)) {
            self.stats.broker_up.store(false, Ordering::Relaxed);
        }
        tracing::warn!(error = %error, reason, "kafka client error");
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

/// Counts deliveries of the DLQ producer (`dlq: true`) or logs failures of the state producer.
pub struct DlqContext {
    pub stats: Arc<KafkaStats>,
    pub dlq: bool,
}

impl ClientContext for DlqContext {}

impl ProducerContext for DlqContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match (r, self.dlq) {
            (Ok(_), true) => self.stats.dlq_produced.fetch_add(1, Ordering::Relaxed),
            (Err((e, _)), true) => {
                tracing::error!(error = %e, "dead letter could not be produced");
                self.stats.dlq_failed.fetch_add(1, Ordering::Relaxed)
            }
            (Ok(_), false) => 0,
            (Err((e, _)), false) => {
                tracing::error!(error = %e, "snapshot could not be produced");
                self.stats.client_errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// The DLQ producer: idempotent, acks=all; flushed before offsets are committed.
pub struct KafkaDlq {
    producer: ThreadedProducer<DlqContext>,
    topic: String,
}

impl KafkaDlq {
    pub fn new(source: &SourceConfig, topic: &str, stats: Arc<KafkaStats>) -> anyhow::Result<Self> {
        let producer = reliable_producer_config(&client_config(source)?)
            .create_with_context(DlqContext { stats, dlq: true })
            .context("creating the dead-letter producer")?;
        Ok(KafkaDlq { producer, topic: topic.to_string() })
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
        if let Err(e) = send_retrying(&self.producer, record) {
            tracing::error!(error = %e, reason = d.reason.as_str(), "dead letter rejected by the producer");
        }
    }

    /// Waits until every queued dead letter is acknowledged (true) or the timeout passes.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.producer.flush(timeout).is_ok() && self.producer.in_flight_count() == 0
    }
}

/// Settings of the consume loop.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub commit_interval: Duration,
    pub grace: Duration,
}

/// Consumes until `shutdown` turns true, then stores and commits what was applied.
pub async fn consume(
    source: SourceConfig,
    pipeline: Pipeline,
    stats: Arc<KafkaStats>,
    opts: ConsumeOptions,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let SourceConfig::Kafka { topics, group_id, state_topic, .. } = &source else {
        anyhow::bail!("not a kafka source")
    };
    let base = client_config(&source)?;
    let state = if state_topic.is_empty() {
        None
    } else {
        let mut pc = reliable_producer_config(&base);
        pc.set("compression.type", "lz4").set("message.max.bytes", "67108864");
        let producer: ThreadedProducer<DlqContext> = pc
            .create_with_context(DlqContext { stats: stats.clone(), dlq: false })
            .context("creating the state-topic producer")?;
        Some((producer, state_topic.clone()))
    };
    let mut c = base.clone();
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000");
    if c.get("auto.offset.reset").is_none() {
        c.set("auto.offset.reset", "earliest");
    }
    let consumer: StreamConsumer<Ctx> = c
        .create_with_context(Ctx {
            stats: stats.clone(),
            pipeline: pipeline.clone(),
            tracking: Mutex::new(Tracking::default()),
            state,
            client: base,
            grace: opts.grace,
        })
        .context("creating the Kafka consumer")?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).context("subscribing")?;
    stats.broker_up.store(true, Ordering::Relaxed);
    tracing::info!(topics = ?names, group = %group_id, "kafka source consuming");
    let mut commit_tick = tokio::time::interval(opts.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let commit =
        |mode: CommitMode, consumer: &StreamConsumer<Ctx>| checkpoint_and_commit(consumer, consumer.context(), mode);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = commit_tick.tick() => commit(CommitMode::Async, &consumer),
            m = consumer.recv() => match m {
                Ok(msg) => {
                    stats.broker_up.store(true, Ordering::Relaxed);
                    let payload = msg.payload().unwrap_or_default();
                    stats.messages.fetch_add(1, Ordering::Relaxed);
                    stats.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
                    let origin = Through { topic: msg.topic().to_string(), partition: msg.partition(), offset: msg.offset() };
                    let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
                    let skip = {
                        let mut t = consumer.context().track();
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
                        stats.skipped.fetch_add(1, Ordering::Relaxed);
                    } else {
                        pipeline.ingest_message(payload, crate::http::wall_clock_ms(), origin);
                    }
                    if let Err(e) = consumer.store_offset_from_message(&msg) {
                        tracing::warn!(error = %e, "storing offset failed");
                    }
                }
                Err(e) => {
                    stats.client_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "kafka receive error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
    tracing::info!("kafka source stopping: committing offsets");
    commit(CommitMode::Sync, &consumer);
    consumer.unsubscribe();
    Ok(())
}
