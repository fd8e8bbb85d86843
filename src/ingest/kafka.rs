//! The Kafka source (rdkafka `StreamConsumer` on tokio) and the Kafka dead-letter producer.
//!
//! At-least-once: `enable.auto.commit` and `enable.auto.offset.store` are off. A message's offset
//! is stored only after it was applied to the engine and any dead letter it caused was handed to
//! the DLQ producer; stored offsets are committed every `commit_interval`, on partition revoke and
//! at shutdown, each time only after the DLQ producer flushed (so a dead letter is on the DLQ
//! topic before the offset of its message is committed). Re-delivery after a crash is absorbed
//! by event_id dedup.

use std::collections::BTreeMap;
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

use crate::config::{SecretRef, SourceConfig};
use crate::engine::DeadLetter;
use crate::ingest::Pipeline;

/// Where a message came from (DLQ headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

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
    /// False while librdkafka reports all brokers down.
    pub broker_up: AtomicBool,
    /// (topic, partition) → consumer lag (messages), from librdkafka statistics.
    pub lag: Mutex<BTreeMap<(String, i32), i64>>,
}

/// Reads a secret property value from its file or environment variable.
pub fn read_secret(name: &str, r: &SecretRef) -> anyhow::Result<String> {
    if let Some(path) = &r.file {
        let v =
            std::fs::read_to_string(path).with_context(|| format!("reading secret {name} from {}", path.display()))?;
        return Ok(v.trim().to_string());
    }
    if let Some(var) = &r.env {
        return std::env::var(var).with_context(|| format!("secret {name}: ${var} is not set"));
    }
    anyhow::bail!("secret {name}: neither file nor env given")
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
        c.set(k, read_secret(k, r)?);
    }
    Ok(c)
}

struct Ctx {
    stats: Arc<KafkaStats>,
    pipeline: Pipeline,
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
            // Offsets of applied events go with the partitions we hand over.
            if self.pipeline.sync_dead_letters(Duration::from_secs(10)) {
                match consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
                    Err(e) => tracing::warn!(error = %e, "commit on revoke failed"),
                }
            }
            tracing::info!(partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.stats.assigned.fetch_add(tpl.count() as u64, Ordering::Relaxed);
            tracing::info!(partitions = tpl.count(), "partitions assigned");
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

/// Counts DLQ deliveries.
pub struct DlqContext {
    pub stats: Arc<KafkaStats>,
}

impl ClientContext for DlqContext {}

impl ProducerContext for DlqContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.stats.dlq_produced.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                tracing::error!(error = %e, "dead letter could not be produced");
                self.stats.dlq_failed.fetch_add(1, Ordering::Relaxed)
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
        let mut c = client_config(source)?;
        c.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "5");
        let producer = c.create_with_context(DlqContext { stats }).context("creating the dead-letter producer")?;
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
        let mut record = BaseRecord::to(&self.topic).payload(&d.payload[..]).key(key).headers(headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, reason = d.reason.as_str(), "dead letter rejected by the producer");
                    return;
                }
            }
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
    let SourceConfig::Kafka { topics, group_id, .. } = &source else { anyhow::bail!("not a kafka source") };
    let mut c = client_config(&source)?;
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000");
    if c.get("auto.offset.reset").is_none() {
        c.set("auto.offset.reset", "earliest");
    }
    let consumer: StreamConsumer<Ctx> = c
        .create_with_context(Ctx { stats: stats.clone(), pipeline: pipeline.clone() })
        .context("creating the Kafka consumer")?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).context("subscribing")?;
    stats.broker_up.store(true, Ordering::Relaxed);
    tracing::info!(topics = ?names, group = %group_id, "kafka source consuming");
    let mut commit_tick = tokio::time::interval(opts.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let commit = |mode: CommitMode, consumer: &StreamConsumer<Ctx>| {
        if !pipeline.sync_dead_letters(opts.grace) {
            tracing::warn!("dead letters not yet acknowledged; offsets not committed this round");
            return;
        }
        match consumer.commit_consumer_state(mode) {
            Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, "offset commit failed"),
        }
    };
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
                    let origin = Origin { topic: msg.topic().to_string(), partition: msg.partition(), offset: msg.offset() };
                    pipeline.ingest_message(payload, crate::http::wall_clock_ms(), origin);
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
