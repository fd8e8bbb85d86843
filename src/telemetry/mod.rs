//! Every metric name ddtwatch exposes, and the logging setup.
//!
//! Metrics are read from the engine at scrape time, so the numbers on `/metrics` are the numbers
//! in the API and the summaries: there is no second bookkeeping to drift apart. One
//! [`prometheus_client`] collector writes the process-wide families; [`encode`] adds the
//! per-deployment ones (nearly all of a scrape at scale) itself, on two threads, in the bytes
//! prometheus-client would write (`text.rs`). Labels come only from bounded sets (deployment and condition ids
//! validated by charset, allow-listed groups, fixed enums); never tokens, plates, alert ids or
//! free text.

mod text;

use std::borrow::Cow;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::engine::{Engine, tally::SUBJ_ALERTS, tally::SUBJ_FALSE_ALERTS};
use crate::event::{EventType, Reason};
use crate::rules::{Counter, Kind};
use crate::stats::wilson;

/// All metric names (without the `_total` suffix prometheus-client adds to counters).
pub mod names {
    pub const BUILD_INFO: &str = "ddtwatch_build_info";
    pub const EVENTS: &str = "ddtwatch_events";
    pub const INVALID_EVENTS: &str = "ddtwatch_invalid_events";
    pub const DUPLICATE_EVENTS: &str = "ddtwatch_duplicate_events";
    pub const HELD_EVENTS: &str = "ddtwatch_held_events";
    pub const FUTURE_HELD: &str = "ddtwatch_future_held_events";
    pub const FUTURE_HELD_NOW: &str = "ddtwatch_future_held";
    pub const DEDUP_IDS: &str = "ddtwatch_dedup_remembered_ids";
    pub const DEDUP_SPILL_ERRORS: &str = "ddtwatch_dedup_spill_errors";
    pub const DEDUP_INDEX_BYTES: &str = "ddtwatch_dedup_index_bytes";
    pub const ENGINE_CLOCK: &str = "ddtwatch_engine_clock_timestamp_seconds";
    pub const EVALUATIONS: &str = "ddtwatch_evaluations";
    pub const DEPLOYMENTS: &str = "ddtwatch_deployments";
    pub const RETIRED: &str = "ddtwatch_deployments_retired";
    pub const DEPLOYMENT_INFO: &str = "ddtwatch_deployment_info";
    pub const DETECTIONS: &str = "ddtwatch_detections";
    pub const FUNNEL: &str = "ddtwatch_funnel";
    pub const DEPLOYMENT_INVALID: &str = "ddtwatch_deployment_invalid_events";
    pub const RATE: &str = "ddtwatch_rate_ratio";
    pub const GROUP_ALERTS: &str = "ddtwatch_group_alerts";
    pub const GROUP_FALSE_ALERTS: &str = "ddtwatch_group_false_alerts";
    pub const GROUP_FALSE_ALERT_RATE: &str = "ddtwatch_group_false_alert_ratio";
    pub const CONDITION_STATE: &str = "ddtwatch_condition_state";
    pub const CONDITION_VALUE: &str = "ddtwatch_condition_value";
    pub const CONDITION_VALUE_RATIO: &str = "ddtwatch_condition_value_ratio";
    pub const CONDITION_VALUE_SECONDS: &str = "ddtwatch_condition_value_seconds";
    pub const CONDITION_LIMIT: &str = "ddtwatch_condition_limit";
    pub const CONDITION_SAMPLES: &str = "ddtwatch_condition_samples";
    pub const DISPARITY_RATIO: &str = "ddtwatch_disparity_ratio";
    pub const DISPARITY_P_VALUE: &str = "ddtwatch_disparity_p_value";
    pub const CONDITION_EVIDENCE: &str = "ddtwatch_condition_evidence_ratio";
    pub const DRIFT_STATISTIC: &str = "ddtwatch_drift_statistic";
    pub const QUANTILE_SECONDS: &str = "ddtwatch_quantile_seconds";
    pub const BREACHES: &str = "ddtwatch_breaches";
    pub const TRANSITIONS: &str = "ddtwatch_transitions";
    pub const CONDITIONS_FIRING: &str = "ddtwatch_conditions_firing";
    pub const READY: &str = "ddtwatch_ready";
    pub const ADJUDICATION_LATENCY: &str = "ddtwatch_adjudication_latency_seconds";
    pub const ALERT_LATENCY: &str = "ddtwatch_alert_latency_seconds";
    pub const EVENT_LAG: &str = "ddtwatch_event_lag_seconds";
    pub const KAFKA_MESSAGES: &str = "ddtwatch_kafka_messages";
    pub const KAFKA_BYTES: &str = "ddtwatch_kafka_bytes";
    pub const KAFKA_COMMITS: &str = "ddtwatch_kafka_commits";
    pub const KAFKA_PARTITIONS_ASSIGNED: &str = "ddtwatch_kafka_partitions_assigned";
    pub const KAFKA_PARTITIONS_REVOKED: &str = "ddtwatch_kafka_partitions_revoked";
    pub const KAFKA_CONSUMER_LAG: &str = "ddtwatch_kafka_consumer_lag";
    pub const KAFKA_CLIENT_ERRORS: &str = "ddtwatch_kafka_client_errors";
    pub const KAFKA_BROKER_UP: &str = "ddtwatch_kafka_broker_up";
    pub const AUDIT_RECORDS: &str = "ddtwatch_audit_records";
    pub const AUDIT_WRITE_ERRORS: &str = "ddtwatch_audit_write_errors";
    pub const AUDIT_PRODUCED: &str = "ddtwatch_audit_records_produced";
    pub const AUDIT_PRODUCE_ERRORS: &str = "ddtwatch_audit_produce_errors";
    pub const OUTBOX_DEPTH: &str = "ddtwatch_outbox_depth";
    pub const OUTBOX_OLDEST: &str = "ddtwatch_outbox_oldest_pending_age_seconds";
    pub const NOTIFICATIONS: &str = "ddtwatch_notifications";
    pub const STATE_SNAPSHOTS: &str = "ddtwatch_state_snapshots";
    pub const STATE_RESTORED: &str = "ddtwatch_state_restored_deployments";
    pub const KAFKA_SKIPPED: &str = "ddtwatch_kafka_skipped_messages";
    pub const OUTBOX_HANDED_OVER: &str = "ddtwatch_outbox_handed_over";
    pub const OUTBOX_RESTORED: &str = "ddtwatch_outbox_restored";
    pub const DEAD_LETTERS_PRODUCED: &str = "ddtwatch_dead_letters_produced";
    pub const CONFIG_RELOADS: &str = "ddtwatch_config_reloads";
    pub const CONFIG_LAST_RELOAD: &str = "ddtwatch_config_last_reload_success_timestamp_seconds";
    pub const CONFIG_LAST_RELOAD_OK: &str = "ddtwatch_config_last_reload_successful";
    pub const SOURCE_UP: &str = "ddtwatch_source_up";
    pub const SOURCE_ERRORS: &str = "ddtwatch_source_errors";
    pub const TASK_HEALTHY: &str = "ddtwatch_task_healthy";
    pub const KAFKA_CLIENT_INFO: &str = "ddtwatch_kafka_client_info";
    pub const KAFKA_STATE_TOPIC_PROBLEMS: &str = "ddtwatch_kafka_state_topic_problems";

    /// Every exposed sample name (counters with `_total`), for dashboard/rule checks.
    pub const ALL_SAMPLES: &[&str] = &[
        "ddtwatch_build_info",
        "ddtwatch_events_total",
        "ddtwatch_invalid_events_total",
        "ddtwatch_duplicate_events_total",
        "ddtwatch_held_events_total",
        "ddtwatch_future_held_events_total",
        "ddtwatch_future_held",
        "ddtwatch_dedup_remembered_ids",
        "ddtwatch_dedup_spill_errors_total",
        "ddtwatch_dedup_index_bytes",
        "ddtwatch_engine_clock_timestamp_seconds",
        "ddtwatch_evaluations_total",
        "ddtwatch_deployments",
        "ddtwatch_deployments_retired_total",
        "ddtwatch_deployment_info",
        "ddtwatch_detections_total",
        "ddtwatch_funnel",
        "ddtwatch_deployment_invalid_events_total",
        "ddtwatch_rate_ratio",
        "ddtwatch_group_alerts",
        "ddtwatch_group_false_alerts",
        "ddtwatch_group_false_alert_ratio",
        "ddtwatch_condition_state",
        "ddtwatch_condition_value",
        "ddtwatch_condition_value_ratio",
        "ddtwatch_condition_value_seconds",
        "ddtwatch_condition_limit",
        "ddtwatch_condition_samples",
        "ddtwatch_disparity_ratio",
        "ddtwatch_disparity_p_value",
        "ddtwatch_condition_evidence_ratio",
        "ddtwatch_drift_statistic",
        "ddtwatch_quantile_seconds",
        "ddtwatch_breaches_total",
        "ddtwatch_transitions_total",
        "ddtwatch_conditions_firing",
        "ddtwatch_ready",
        "ddtwatch_adjudication_latency_seconds_bucket",
        "ddtwatch_adjudication_latency_seconds_sum",
        "ddtwatch_adjudication_latency_seconds_count",
        "ddtwatch_alert_latency_seconds_bucket",
        "ddtwatch_alert_latency_seconds_sum",
        "ddtwatch_alert_latency_seconds_count",
        "ddtwatch_event_lag_seconds_bucket",
        "ddtwatch_event_lag_seconds_sum",
        "ddtwatch_event_lag_seconds_count",
        "ddtwatch_config_reloads_total",
        "ddtwatch_config_last_reload_success_timestamp_seconds",
        "ddtwatch_config_last_reload_successful",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "ddtwatch_audit_records_total",
        "ddtwatch_audit_write_errors_total",
        "ddtwatch_audit_records_produced_total",
        "ddtwatch_audit_produce_errors_total",
        "ddtwatch_outbox_depth",
        "ddtwatch_outbox_oldest_pending_age_seconds",
        "ddtwatch_notifications_total",
        "ddtwatch_kafka_messages_total",
        "ddtwatch_kafka_bytes_total",
        "ddtwatch_kafka_commits_total",
        "ddtwatch_kafka_partitions_assigned_total",
        "ddtwatch_kafka_partitions_revoked_total",
        "ddtwatch_kafka_consumer_lag",
        "ddtwatch_kafka_client_errors_total",
        "ddtwatch_kafka_broker_up",
        "ddtwatch_dead_letters_produced_total",
        "ddtwatch_state_snapshots_total",
        "ddtwatch_state_restored_deployments_total",
        "ddtwatch_kafka_skipped_messages_total",
        "ddtwatch_outbox_handed_over_total",
        "ddtwatch_outbox_restored_total",
        "ddtwatch_source_up",
        "ddtwatch_source_errors_total",
        "ddtwatch_task_healthy",
        "ddtwatch_kafka_client_info",
        "ddtwatch_kafka_state_topic_problems",
    ];
}

/// The engine shared between the ingest loop, HTTP handlers and the metrics collector.
pub use crate::engine::SharedEngine;

/// Process state the collector reports besides the engine.
#[derive(Debug, Default)]
pub struct ProcessState {
    pub ready: std::sync::atomic::AtomicBool,
    pub reloads_ok: std::sync::atomic::AtomicU64,
    pub reloads_failed: std::sync::atomic::AtomicU64,
    /// Unix ms of the last successful load (start or reload); 0 before.
    pub last_reload_ok_ms: std::sync::atomic::AtomicI64,
    /// False while the config file on disk was rejected and has not been fixed (the alert
    /// `DdtwatchConfigReloadFailed` stays firing until then).
    pub config_file_rejected: std::sync::atomic::AtomicBool,
    /// The Kafka source's counters when one runs.
    pub kafka: Option<Arc<crate::ingest::kafka::KafkaStats>>,
    /// The audit log when `state_dir` is set.
    pub audit: Option<crate::audit::SharedAudit>,
    /// The notification outbox when `state_dir` is set.
    pub outbox: Option<crate::notify::outbox::SharedOutbox>,
    /// Long-lived tasks and sources (`/healthz`, `ddtwatch_source_up`, `ddtwatch_task_healthy`).
    pub health: Arc<crate::health::Health>,
}

/// Upper bounds (seconds) of the latency histogram buckets: from sub-second alert latency to
/// hour-long event lag.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// A histogram family built from the engine's HDR series at scrape time.
struct HistFamily<'a> {
    name: &'static str,
    help: &'static str,
    samples: Vec<HistSample<'a>>,
}

/// Labels, sum, count, (upper bound, count in that bucket alone).
type HistSample<'a> = (Labels<'a>, f64, u64, Vec<(f64, u64)>);

impl<'a> HistFamily<'a> {
    /// Cumulative bucket counts of a latency series (ms): a value counts in a bucket when its
    /// whole HDR bucket (3 significant digits) is at or below the bound.
    fn add(&mut self, labels: Labels<'a>, h: &crate::stats::SparseHdr) {
        // prometheus-client accumulates, so it is given per-bucket (non-cumulative) counts.
        let bounds: [u64; LATENCY_BUCKETS.len()] = std::array::from_fn(|i| (LATENCY_BUCKETS[i] * 1000.0) as u64);
        let mut below = 0;
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .zip(h.counts_le(&bounds))
            .map(|(&le, upto)| {
                let n = upto - below;
                below = upto;
                (le, n)
            })
            .collect();
        buckets.push((f64::INFINITY, h.len() - below));
        self.samples.push((labels, h.sum() as f64 / 1000.0, h.len(), buckets));
    }

    fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut me = enc.encode_descriptor(self.name, self.help, None, MetricType::Histogram)?;
        for (labels, sum, count, buckets) in &self.samples {
            me.encode_family(labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(*sum, *count, buckets, None)?;
        }
        Ok(())
    }
}

pub use text::Format;

/// Reads the engine at scrape time.
#[derive(Debug)]
pub struct EngineCollector {
    engine: SharedEngine,
    process: Arc<ProcessState>,
    /// The per-deployment families too, through prometheus-client (the reference [`encode`] is
    /// compared with); else [`encode`] writes them.
    deployments: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("clock", &self.now()).finish_non_exhaustive()
    }
}

/// Builds the registry with the engine collector; [`encode`] writes it with the per-deployment
/// families.
pub fn registry(engine: SharedEngine, process: Arc<ProcessState>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(EngineCollector { engine, process, deployments: false }));
    r
}

/// A registry whose collector also encodes the per-deployment families through prometheus-client:
/// the reference `tests/http.rs` compares [`encode`]'s output with, byte for byte.
#[doc(hidden)]
pub fn reference_registry(engine: SharedEngine, process: Arc<ProcessState>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(EngineCollector { engine, process, deployments: true }));
    r
}

/// The whole exposition in `format`: the registry through prometheus-client, then the
/// per-deployment families written directly (`text.rs`) from `engine`, halves of the deployments
/// on two threads.
pub fn encode(registry: &Registry, engine: &SharedEngine, format: Format) -> Result<String, std::fmt::Error> {
    const EOF: &str = "# EOF\n";
    let mut body = String::new();
    match format {
        Format::OpenMetrics => {
            prometheus_client::encoding::text::encode(&mut body, registry)?;
            if body.ends_with(EOF) {
                body.truncate(body.len() - EOF.len());
            }
        }
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut body, registry)?,
    }
    let engine = engine.lock().unwrap_or_else(|p| p.into_inner());
    let all: Vec<&crate::engine::Deployment> = engine.deployments().collect();
    let (a, b) = all.split_at(all.len() / 2);
    let part = |list: &[&'_ crate::engine::Deployment]| {
        let mut f = DeploymentFamilies::new(true);
        for d in list.iter().copied() {
            f.add(d);
        }
        (f.texts(format), f.by_phase)
    };
    let ((first, phases_a), (second, phases_b)) = std::thread::scope(|s| {
        let second = s.spawn(|| part(b));
        (part(a), second.join().expect("a metrics encoding thread panicked"))
    });
    // The families' heads, and the phase counts of both halves.
    let mut heads = DeploymentFamilies::new(true);
    for (phase, n) in phases_a.into_iter().chain(phases_b) {
        *heads.by_phase.entry(phase).or_default() += n;
    }
    body.reserve(first.iter().chain(&second).map(Chunks::len).sum::<usize>() + 64 * 1024);
    heads.write_by_phase(&mut body, format);
    for ((head, x), y) in heads.heads().into_iter().zip(first).zip(second) {
        text::header(&mut body, head.0, head.1, head.2, format);
        x.write_to(&mut body);
        y.write_to(&mut body);
    }
    if format == Format::OpenMetrics {
        body.push_str(EOF);
    }
    Ok(body)
}

/// Label pairs of one sample: a shared run (a deployment's, a condition's) and up to two pairs of
/// its own, so a deployment's ≈ 175 samples do not each allocate and copy their labels. Values
/// borrow from the engine (locked while a scrape encodes) where they can.
#[derive(Debug, Clone, Default)]
struct Labels<'a> {
    base: std::rc::Rc<LabelRun<'a>>,
    extra: [Option<(&'static str, Cow<'a, str>)>; 2],
}

/// The shared run of label pairs, and its exposition text (`k="v",…`) once written.
#[derive(Debug, Default)]
struct LabelRun<'a> {
    pairs: Vec<(&'static str, Cow<'a, str>)>,
    text: std::cell::OnceCell<String>,
}

impl<'a> Labels<'a> {
    /// These labels and one more after them.
    fn with(&self, key: &'static str, value: impl Into<Cow<'a, str>>) -> Self {
        let mut more = self.clone();
        let slot = more.extra.iter_mut().find(|e| e.is_none()).expect("at most two labels past the shared ones");
        *slot = Some((key, value.into()));
        more
    }

    fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let extra = self.extra.iter().flatten();
        self.base.pairs.iter().chain(extra).map(|(k, v)| (*k, v.as_ref()))
    }

    /// The shared run as exposition text, written once for all the samples that share it.
    fn base_text(&self) -> &str {
        self.base.text.get_or_init(|| {
            // Sized for the pairs unescaped, `k="v",` each (grown instead, it was reallocated
            // three or four times for each of a scrape's ≈ 60,000 runs; see `Chunks`).
            let mut s = String::with_capacity(self.base.pairs.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
            for (i, (k, v)) in self.base.pairs.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                text::pair(&mut s, k, v);
            }
            s
        })
    }

    /// This sample's own pairs, after the shared run.
    fn own(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.extra.iter().flatten().map(|(k, v)| (*k, v.as_ref()))
    }
}

impl<'a> From<Vec<(&'static str, Cow<'a, str>)>> for Labels<'a> {
    fn from(pairs: Vec<(&'static str, Cow<'a, str>)>) -> Self {
        Labels { base: std::rc::Rc::new(LabelRun { pairs, text: Default::default() }), extra: [None, None] }
    }
}

impl prometheus_client::encoding::EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        for pair in self.iter() {
            pair.encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// A family's exposition lines in chunks of up to 64 KiB, so that a text of megabytes grows
/// without being copied. Grown by doubling as one string instead, each of the ≈ 40 texts of
/// 0.1–2 MB at 1,000 deployments was reallocated ≈ 15 times, which took half of a scrape, with
/// both encoding threads queued on the allocator's lock for it (issue 21: 60–70 ms scrapes).
#[derive(Debug, Default)]
struct Chunks(Vec<String>);

impl Chunks {
    /// Room for one line: a chunk with less left starts the next (a longer line grows its chunk,
    /// which is only slower).
    const LINE: usize = 2 * 1024;

    /// Where to write the next line. Chunks double from 8 KiB to 64 KiB, so a family of a few
    /// lines takes little.
    fn line(&mut self) -> &mut String {
        let last = self.0.last().map_or(0, String::capacity);
        if last - self.0.last().map_or(0, String::len) < Self::LINE {
            self.0.push(String::with_capacity((last * 2).clamp(8 * 1024, 64 * 1024)));
        }
        self.0.last_mut().expect("a chunk was just pushed if there was none")
    }

    fn len(&self) -> usize {
        self.0.iter().map(String::len).sum()
    }

    fn write_to(&self, out: &mut String) {
        for chunk in &self.0 {
            out.push_str(chunk);
        }
    }
}

/// One metric family: its samples collected for prometheus-client's encoder, or (`text`, the
/// per-deployment families of a scrape) written as exposition lines as they are added, so a
/// scrape keeps no sample (≈ 175k at 1,000 deployments) and allocates nothing per sample.
struct Family<'a> {
    name: &'static str,
    help: &'static str,
    ty: MetricType,
    samples: Vec<(Labels<'a>, f64)>,
    text: Option<std::cell::RefCell<Chunks>>,
}

impl<'a> Family<'a> {
    fn new(name: &'static str, help: &'static str, ty: MetricType) -> Self {
        Family { name, help, ty, samples: Vec::new(), text: None }
    }

    fn add(&mut self, labels: impl Into<Labels<'a>>, v: f64) {
        if !v.is_finite() {
            return;
        }
        match &mut self.text {
            Some(out) => text::sample(out.get_mut().line(), self.name, self.ty, &labels.into(), v),
            None => self.samples.push((labels.into(), v)),
        }
    }

    /// The lines written so far (a family writing text), leaving it empty.
    fn take_text(&self) -> Chunks {
        self.text.as_ref().map(|t| std::mem::take(&mut *t.borrow_mut())).unwrap_or_default()
    }

    fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut me: MetricEncoder<'_> = enc.encode_descriptor(self.name, self.help, None, self.ty)?;
        for (labels, v) in &self.samples {
            let mut fam = me.encode_family(labels)?;
            match self.ty {
                MetricType::Counter => {
                    fam.encode_counter::<prometheus_client::encoding::NoLabelSet, f64, f64>(v, None)?
                }
                _ => fam.encode_gauge(v)?,
            }
        }
        Ok(())
    }
}

fn l<'a>(pairs: &[(&'static str, &'a str)]) -> Labels<'a> {
    l2(pairs, None)
}

/// [`l`] with one more pair at the end.
fn l2<'a>(pairs: &[(&'static str, &'a str)], last: Option<(&'static str, &'a str)>) -> Labels<'a> {
    pairs.iter().copied().chain(last).map(|(k, v)| (k, Cow::Borrowed(v))).collect::<Vec<_>>().into()
}

/// [`l`] with copied values (process-wide families, built from short-lived values).
fn lo(pairs: &[(&'static str, &str)]) -> Labels<'static> {
    pairs.iter().map(|(k, v)| (*k, Cow::Owned(v.to_string()))).collect::<Vec<_>>().into()
}

impl Collector for EngineCollector {
    /// Reads the engine and the process state at scrape time, family group by family group.
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let engine = match self.engine.lock() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut fams: Vec<Family<'static>> = Vec::new();
        process_families(&self.process, &engine, &mut fams);
        health_and_kafka_families(&self.process, &mut fams);
        engine_families(&engine, &mut fams);
        for f in &fams {
            f.encode(&mut enc)?;
        }
        if !self.deployments {
            return Ok(());
        }
        let mut per_deployment = DeploymentFamilies::new(false);
        for d in engine.deployments() {
            per_deployment.add(d);
        }
        per_deployment.finish(&mut enc)
    }
}

/// The standard `process_*` metrics (as the Prometheus client libraries export them), read from
/// `/proc/self` on Linux; nothing elsewhere.
fn os_process_families(fams: &mut Vec<Family<'static>>) {
    let (g, c) = (MetricType::Gauge, MetricType::Counter);
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // Fields after the command name (which may hold spaces), numbered from 3 (`state`).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    // /proc reports times in USER_HZ, which the kernel ABI fixes at 100 a second.
    const TICKS: f64 = 100.0;
    let mut add = |name: &'static str, help: &'static str, ty: MetricType, v: Option<f64>| {
        if let Some(v) = v {
            let mut fam = Family::new(name, help, ty);
            fam.add(vec![], v);
            fams.push(fam);
        }
    };
    add(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds",
        c,
        field(14).zip(field(15)).map(|(u, s)| (u + s) / TICKS),
    );
    add("process_virtual_memory_bytes", "Virtual memory size in bytes", g, field(23));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok());
    add("process_resident_memory_bytes", "Resident memory size in bytes", g, rss_kib.map(|k| k * 1024.0));
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).ok();
    add("process_open_fds", "Number of open file descriptors", g, fds);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse::<f64>().ok());
    add("process_max_fds", "Maximum number of open file descriptors", g, max_fds);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok()));
    add(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds",
        g,
        boot.zip(field(22)).map(|(b, t)| b + t / TICKS),
    );
}

/// Process-level families: build, readiness, reloads, audit, outbox and notifications.
fn process_families(p: &ProcessState, engine: &Engine, fams: &mut Vec<Family<'static>>) {
    use names::*;
    let (g, c) = (MetricType::Gauge, MetricType::Counter);
    os_process_families(fams);
    let mut f = Family::new(BUILD_INFO, "Build information", g);
    f.add(lo(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    fams.push(f);
    let mut f = Family::new(READY, "1 once config is loaded and state restored", g);
    f.add(vec![], p.ready.load(std::sync::atomic::Ordering::Relaxed) as u8 as f64);
    fams.push(f);
    let mut f = Family::new(CONFIG_RELOADS, "Config reloads by result (a rejected file keeps the old config)", c);
    f.add(lo(&[("result", "success")]), p.reloads_ok.load(std::sync::atomic::Ordering::Relaxed) as f64);
    f.add(lo(&[("result", "failure")]), p.reloads_failed.load(std::sync::atomic::Ordering::Relaxed) as f64);
    fams.push(f);
    let mut f = Family::new(
        CONFIG_LAST_RELOAD_OK,
        "1 when the config file on disk is the one in force, 0 while a rejected file is still there",
        g,
    );
    f.add(vec![], !p.config_file_rejected.load(std::sync::atomic::Ordering::Relaxed) as u8 as f64);
    fams.push(f);
    let mut f = Family::new(CONFIG_LAST_RELOAD, "When the config in force was loaded, Unix seconds", g);
    let last = p.last_reload_ok_ms.load(std::sync::atomic::Ordering::Relaxed);
    if last > 0 {
        f.add(vec![], last as f64 / 1000.0);
    }
    fams.push(f);

    if let Some(a) = &p.audit {
        let mut f = Family::new(AUDIT_RECORDS, "Audit log records written by this process", c);
        let log = a.lock().unwrap_or_else(|p| p.into_inner());
        f.add(vec![], log.written as f64);
        fams.push(f);
        let mut f = Family::new(
            AUDIT_WRITE_ERRORS,
            "Audit log appends that failed (disk full, state_dir unwritable); those records are missing",
            c,
        );
        f.add(vec![], log.write_errors as f64);
        fams.push(f);
        if let Some(t) = log.topic() {
            use std::sync::atomic::Ordering::Relaxed;
            let mut f = Family::new(AUDIT_PRODUCED, "Audit records acknowledged by the audit topic (audit.topic)", c);
            f.add(vec![], t.stats.produced.load(Relaxed) as f64);
            fams.push(f);
            let mut f = Family::new(
                AUDIT_PRODUCE_ERRORS,
                "Failed attempts to produce an audit record to the audit topic (each is sent again; offsets wait; see the log)",
                c,
            );
            f.add(vec![], t.stats.errors.load(Relaxed) as f64);
            fams.push(f);
        }
    }
    if let Some(o) = &p.outbox {
        let o = o.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = Family::new(OUTBOX_DEPTH, "Notifications waiting in the outbox", g);
        f.add(vec![], o.depth() as f64);
        fams.push(f);
        let mut f = Family::new(OUTBOX_OLDEST, "Age of the oldest pending notification (0 when none)", g);
        f.add(vec![], o.oldest_age(crate::time::wall_clock_ms()).unwrap_or(0).max(0) as f64 / 1000.0);
        fams.push(f);
        let mut f = Family::new(NOTIFICATIONS, "Notification attempts by receiver and result", c);
        for (r, rc) in &engine.config().raw.receivers {
            let results: &[&str] = match rc.kind {
                // Re-sends of open breaches while firing (CONDITIONS.md `resend`).
                crate::config::ReceiverKind::Alertmanager => {
                    &["delivered", "failed", "retry", "superseded", "resent", "resend_failed"]
                }
                _ => &["delivered", "failed", "retry"],
            };
            for &result in results {
                let n = o.results.get(&(r.clone(), result)).copied().unwrap_or(0);
                f.add(lo(&[("receiver", r), ("result", result)]), n as f64);
            }
        }
        fams.push(f);
    }
}

/// Sources, tasks and the Kafka client.
fn health_and_kafka_families(p: &ProcessState, fams: &mut Vec<Family<'static>>) {
    use names::*;
    let (g, c) = (MetricType::Gauge, MetricType::Counter);
    let sources = p.health.sources();
    let mut up = Family::new(SOURCE_UP, "1 while the source is connected and consuming, 0 while it is not", g);
    let mut errs = Family::new(SOURCE_ERRORS, "Source errors by kind (transport, authentication, tls, ...)", c);
    for s in &sources {
        up.add(lo(&[("source", &s.name)]), s.is_up() as u8 as f64);
        for (kind, n) in s.errors() {
            errs.add(lo(&[("source", &s.name), ("kind", kind)]), n as f64);
        }
    }
    fams.push(up);
    fams.push(errs);
    let problems = p.health.problems();
    let mut f = Family::new(
        TASK_HEALTHY,
        "1 while a long-lived task runs and reports progress, 0 once it stopped or stalled",
        g,
    );
    for t in p.health.tasks() {
        f.add(lo(&[("task", &t.name)]), !problems.iter().any(|pr| pr.task == t.name) as u8 as f64);
    }
    fams.push(f);
    if sources.iter().any(|s| s.kind == "kafka") {
        let (version, features) = crate::ingest::kafka::librdkafka_info();
        let mut f = Family::new(KAFKA_CLIENT_INFO, "librdkafka version and builtin.features (1)", g);
        f.add(lo(&[("version", &version), ("features", &features)]), 1.0);
        fams.push(f);
    }
    if let Some(k) = &p.kafka
        && let Some(problems) = k.state_topic_problems.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
    {
        let mut f = Family::new(
            KAFKA_STATE_TOPIC_PROBLEMS,
            "State topic requirements not met (not compacted, max.message.bytes too small); 0 when met",
            g,
        );
        f.add(vec![], problems.len() as f64);
        fams.push(f);
    }
    if let Some(k) = &p.kafka {
        use std::sync::atomic::Ordering::Relaxed;
        let mut counter =
            |name, help, labels: Vec<(&'static str, Cow<'static, str>)>, v: &std::sync::atomic::AtomicU64| {
                let mut f = Family::new(name, help, c);
                f.add(labels, v.load(Relaxed) as f64);
                fams.push(f);
            };
        counter(KAFKA_MESSAGES, "Kafka messages consumed", vec![], &k.messages);
        counter(KAFKA_BYTES, "Kafka message payload bytes consumed", vec![], &k.bytes);
        counter(KAFKA_PARTITIONS_ASSIGNED, "Partitions assigned to this instance (rebalances)", vec![], &k.assigned);
        counter(KAFKA_PARTITIONS_REVOKED, "Partitions revoked from this instance (rebalances)", vec![], &k.revoked);
        counter(KAFKA_CLIENT_ERRORS, "Kafka client errors (broker down, receive errors)", vec![], &k.client_errors);
        counter(STATE_SNAPSHOTS, "Deployment snapshots written to the state topic", vec![], &k.snapshots);
        counter(STATE_RESTORED, "Deployments restored from the state topic on assignment", vec![], &k.restored);
        counter(KAFKA_SKIPPED, "Re-delivered messages already in a restored snapshot", vec![], &k.skipped);
        counter(
            OUTBOX_HANDED_OVER,
            "Undelivered notifications written into state-topic snapshots (each time a snapshot carries one)",
            vec![],
            &k.outbox_handed_over,
        );
        counter(
            OUTBOX_RESTORED,
            "Notifications taken over from restored state-topic snapshots (new to this instance)",
            vec![],
            &k.outbox_restored,
        );
        let mut f = Family::new(KAFKA_COMMITS, "Offset commits by result", c);
        f.add(lo(&[("result", "success")]), k.commits_ok.load(Relaxed) as f64);
        f.add(lo(&[("result", "failure")]), k.commits_failed.load(Relaxed) as f64);
        fams.push(f);
        let mut f = Family::new(DEAD_LETTERS_PRODUCED, "Dead letters produced to the DLQ topic by result", c);
        f.add(lo(&[("result", "success")]), k.dlq_produced.load(Relaxed) as f64);
        f.add(lo(&[("result", "failure")]), k.dlq_failed.load(Relaxed) as f64);
        fams.push(f);
        let mut f = Family::new(KAFKA_BROKER_UP, "0 while librdkafka reports all brokers down", g);
        f.add(vec![], k.broker_up.load(Relaxed) as u8 as f64);
        fams.push(f);
        let mut f = Family::new(KAFKA_CONSUMER_LAG, "Consumer lag per partition (messages), librdkafka statistics", g);
        for ((topic, part), lag) in k.lag.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            f.add(lo(&[("topic", topic), ("partition", &part.to_string())]), *lag as f64);
        }
        fams.push(f);
    }
}

/// Engine-wide families: events, dead letters, duplicates, holds, dedup, evaluations, clock.
fn engine_families(engine: &Engine, fams: &mut Vec<Family<'static>>) {
    use names::*;
    let (g, c) = (MetricType::Gauge, MetricType::Counter);
    let s = &engine.stats;
    let mut f = Family::new(EVENTS, "Events applied, by type", c);
    for t in EventType::ALL {
        f.add(lo(&[("type", t.as_str())]), s.applied_by_type[t.index()] as f64);
    }
    fams.push(f);
    let mut f = Family::new(INVALID_EVENTS, "Events dead-lettered, by reason", c);
    for r in Reason::ALL {
        f.add(lo(&[("reason", r.as_str())]), *s.invalid_by_reason.get(r.as_str()).unwrap_or(&0) as f64);
    }
    fams.push(f);
    let mut f = Family::new(DUPLICATE_EVENTS, "Re-delivered events ignored (event_id or alert_id seen)", c);
    f.add(vec![], s.duplicates as f64);
    fams.push(f);
    let mut f = Family::new(HELD_EVENTS, "Decisions/outcomes held until their alert arrived", c);
    f.add(vec![], s.held as f64);
    fams.push(f);
    let mut f = Family::new(
        FUTURE_HELD,
        "Events held because their ts lay beyond the event clock's horizon (gap, catch-up, corrupt ts)",
        c,
    );
    f.add(vec![], s.future_held as f64);
    fams.push(f);
    let mut f = Family::new(FUTURE_HELD_NOW, "Events held beyond the event clock's horizon now", g);
    f.add(vec![], engine.future_held_now() as f64);
    fams.push(f);
    let mut f = Family::new(
        RETIRED,
        "Stopped deployments retired from memory and /metrics (engine.retain_stopped) since start",
        c,
    );
    f.add(vec![], s.retired as f64);
    fams.push(f);
    let spill = engine.dedup_spill_counts();
    let on_disk = spill.ids_on_disk as usize;
    let mut f = Family::new(DEDUP_IDS, "Event ids remembered for duplicate detection, in memory or on disk", g);
    f.add(lo(&[("where", "memory")]), engine.dedup_len().saturating_sub(on_disk) as f64);
    f.add(lo(&[("where", "disk")]), on_disk as f64);
    fams.push(f);
    let mut f = Family::new(DEDUP_SPILL_ERRORS, "Dedup spill file writes or reads that failed (state_dir/dedup)", c);
    f.add(vec![], spill.errors as f64);
    fams.push(f);
    let mut f =
        Family::new(DEDUP_INDEX_BYTES, "In-memory index of spilled event ids (budget engine.dedup_index_mb)", g);
    f.add(vec![], spill.index_bytes as f64);
    fams.push(f);
    let mut f = Family::new(EVALUATIONS, "Condition evaluation rounds", c);
    f.add(vec![], s.evaluations as f64);
    fams.push(f);
    let mut f = Family::new(TRANSITIONS, "Breach transitions, by state", c);
    f.add(lo(&[("state", "firing")]), s.transitions_firing as f64);
    f.add(lo(&[("state", "resolved")]), s.transitions_resolved as f64);
    fams.push(f);
    let mut f = Family::new(ENGINE_CLOCK, "Engine clock (event-time watermark or wall time), Unix seconds", g);
    if let Some(now) = engine.now() {
        f.add(vec![], now as f64 / 1000.0);
    }
    fams.push(f);
    let mut f = Family::new(CONDITIONS_FIRING, "Conditions currently firing across deployments", g);
    f.add(vec![], engine.firing() as f64);
    fams.push(f);
}

/// The per-deployment families, filled one deployment (and condition) at a time.
struct DeploymentFamilies<'a> {
    deployments: Family<'a>,
    info: Family<'a>,
    detections: Family<'a>,
    funnel: Family<'a>,
    dep_invalid: Family<'a>,
    rates: Family<'a>,
    galerts: Family<'a>,
    gfalse: Family<'a>,
    grate: Family<'a>,
    state: Family<'a>,
    /// Condition values by unit ([`crate::rules::ValueUnit`]): ratio, seconds, plain number.
    value_ratio: Family<'a>,
    value_seconds: Family<'a>,
    value: Family<'a>,
    limit: Family<'a>,
    samples: Family<'a>,
    ratio: Family<'a>,
    pval: Family<'a>,
    evidence: Family<'a>,
    drift: Family<'a>,
    quant: Family<'a>,
    breaches: Family<'a>,
    /// Indexed by QuantileValue.
    latency: [HistFamily<'a>; 3],
    by_phase: std::collections::BTreeMap<&'static str, u64>,
}

impl<'a> DeploymentFamilies<'a> {
    /// `text`: the families write their lines as samples are added ([`Family::text`]).
    fn new(text: bool) -> Self {
        use names::*;
        let fam = |name, help, ty| Family { text: text.then(Default::default), ..Family::new(name, help, ty) };
        let (g, c) = (MetricType::Gauge, MetricType::Counter);
        let hist = |name, help| HistFamily { name, help, samples: Vec::new() };
        DeploymentFamilies {
            deployments: fam(DEPLOYMENTS, "Deployments by phase", g),
            info: fam(DEPLOYMENT_INFO, "One per deployment, with its system and phase", g),
            detections: fam(DETECTIONS, "Faces processed (LFR) or plates read (ANPR)", c),
            funnel: fam(FUNNEL, "Funnel counters (current values; derived ones can decrease)", g),
            dep_invalid: fam(DEPLOYMENT_INVALID, "Invalid events naming this deployment", c),
            rates: fam(RATE, "Headline rates with Wilson 95% bounds", g),
            galerts: fam(GROUP_ALERTS, "Alerts by the list entry's recorded group", g),
            gfalse: fam(GROUP_FALSE_ALERTS, "False alerts by the list entry's recorded group", g),
            grate: fam(GROUP_FALSE_ALERT_RATE, "False alerts per alert by group, Wilson 95% bounds", g),
            state: fam(CONDITION_STATE, "Condition state: 0 ok, 1 pending, 2 firing, -1 insufficient data", g),
            value_ratio: fam(
                CONDITION_VALUE_RATIO,
                "Value of a rate condition (a proportion), with its interval bounds",
                g,
            ),
            value_seconds: fam(
                CONDITION_VALUE_SECONDS,
                "Value of a condition measured in seconds (latency quantile, silence, deadline, list age, clock skew)",
                g,
            ),
            value: fam(
                CONDITION_VALUE,
                "Value of a condition without a unit (disparity and drift statistics, scores, counts, 0/1 checks)",
                g,
            ),
            limit: fam(CONDITION_LIMIT, "Configured limits of conditions", g),
            samples: fam(CONDITION_SAMPLES, "Samples behind a condition's value", g),
            ratio: fam(DISPARITY_RATIO, "Disparity ratios (max/min, max/geometric mean)", g),
            pval: fam(DISPARITY_P_VALUE, "Two-sided Fisher exact p-value, top group vs the rest", g),
            evidence: fam(
                CONDITION_EVIDENCE,
                "How close a statistical condition is to firing: its evidence over its decision boundary, 1 fires (docs/STATISTICS.md)",
                g,
            ),
            drift: fam(DRIFT_STATISTIC, "Drift statistics (psi, ks_d, ks_critical, page_hinkley)", g),
            quant: fam(QUANTILE_SECONDS, "Latency/lag quantiles of quantile conditions, seconds", g),
            breaches: fam(BREACHES, "Times each condition fired", c),
            latency: [
                hist(ADJUDICATION_LATENCY, "Alert to first human decision, whole deployment"),
                hist(ALERT_LATENCY, "Capture to alert (the alert's latency_ms), whole deployment"),
                hist(EVENT_LAG, "Receive time minus event ts (live mode), whole deployment"),
            ],
            by_phase: std::collections::BTreeMap::new(),
        }
    }

    /// A deployment's counters, rates, groups and conditions.
    fn add(&mut self, d: &'a crate::engine::Deployment) {
        let dep = d.id.as_str();
        let sys = d.system.map(|s| s.as_str()).unwrap_or("unknown");
        let phase = d.phase.map(|p| p.as_str()).unwrap_or("unknown");
        *self.by_phase.entry(phase).or_default() += 1;
        self.info.add(l(&[("deployment", dep), ("system", sys), ("phase", phase)]), 1.0);
        for q in crate::rules::QuantileValue::ALL {
            let h = &d.latency[q as usize].total;
            if !h.is_empty() {
                self.latency[q as usize].add(l(&[("deployment", dep)]), h);
            }
        }
        // One shared run for the deployment's counter, funnel and rate samples.
        let ds = l(&[("deployment", dep), ("system", sys)]);
        self.detections.add(ds.clone(), d.count(Counter::Detections) as f64);
        self.dep_invalid.add(ds.clone(), d.count(Counter::Invalid) as f64);
        for k in Counter::ALL {
            self.funnel.add(ds.with("stage", k.as_str()), d.count(k) as f64);
        }
        for (name, x, n) in crate::engine::HEADLINE_RATES {
            let r = crate::engine::rate_summary(d.count(x), d.count(n));
            if let (Some(e), Some(lo), Some(hi)) = (r.value, r.lower, r.upper) {
                for (b, v) in [("estimate", e), ("lower", lo), ("upper", hi)] {
                    self.rates.add(ds.with("rate", name).with("bound", b), v);
                }
            }
        }
        for (a, (attr, _)) in d.groups.attributes.iter().enumerate() {
            for (slot, group) in d.groups.slots(a) {
                let cell = d.total.subject[slot];
                let (x, n) = (cell[SUBJ_FALSE_ALERTS].max(0) as u64, cell[SUBJ_ALERTS].max(0) as u64);
                let labels = l(&[("deployment", dep), ("system", sys), ("attribute", attr), ("group", group)]);
                self.galerts.add(labels.clone(), n as f64);
                self.gfalse.add(labels.clone(), x as f64);
                if n > 0 {
                    let i = wilson(x.min(n), n, 0.95);
                    for (b, v) in [("estimate", i.estimate), ("lower", i.lower), ("upper", i.upper)] {
                        self.grate.add(labels.with("bound", b), v);
                    }
                }
            }
        }
        for rt in &d.conditions {
            self.add_condition(dep, sys, rt);
        }
    }

    /// One condition's state, value, limits and kind-specific statistics.
    fn add_condition(&mut self, dep: &'a str, sys: &'a str, rt: &'a crate::engine::ConditionRuntime) {
        let cond = &rt.condition;
        for (source, lc, e) in rt.states() {
            // A silence instance (`camera_silence/cam-2`) is the condition's id plus a `source`
            // label, so `condition` keeps the profile's ids and its values do not follow the stream.
            let base = [
                ("deployment", dep),
                ("system", sys),
                ("condition", cond.id.as_str()),
                ("kind", cond.kind.name()),
                ("severity", cond.severity.as_str()),
            ];
            let short = [("deployment", dep), ("condition", cond.id.as_str())];
            let source = source.map(|src| ("source", src));
            // Slices, not vectors grown by a push: a scrape's reallocations take the allocator's
            // lock, which its two threads share (see `Chunks`).
            let (base, short) = (l2(&base, source), l2(&short, source));
            self.state.add(base.clone(), lc.state.gauge() as f64);
            self.breaches.add(base.clone(), lc.times_fired as f64);
            let Some(e) = e else { continue };
            let values = match cond.kind.value_unit() {
                crate::rules::ValueUnit::Ratio => &mut self.value_ratio,
                crate::rules::ValueUnit::Seconds => &mut self.value_seconds,
                crate::rules::ValueUnit::Number => &mut self.value,
            };
            for (b, v) in [("estimate", e.value), ("lower", e.lower), ("upper", e.upper)] {
                if let Some(v) = v {
                    values.add(short.with("bound", b), v);
                }
            }
            if let Some(n) = e.n {
                self.samples.add(short.clone(), n as f64);
            }
            for (k, v) in e.limit.numbers() {
                if let Some(k) = LIMIT_KEYS.iter().find(|x| **x == k) {
                    self.limit.add(short.with("limit", *k), v);
                }
            }
            if cond.kind.budget().and_then(|b| b.per_day()).is_some()
                && let Some(r) = e.detail.evidence_ratio()
            {
                self.evidence.add(short.clone(), r);
            }
            let detail = &e.detail;
            match &cond.kind {
                Kind::Disparity(spec) => {
                    for (key, r) in [("ratio_max_min", "max_min"), ("ratio_max_geomean", "max_geomean")] {
                        if let Some(v) = detail.number(key) {
                            self.ratio.add(short.with("attribute", spec.attribute.as_str()).with("ratio", r), v);
                        }
                    }
                    if let Some(p) = detail.number("p_value") {
                        self.pval.add(short.with("attribute", spec.attribute.as_str()), p);
                    }
                }
                Kind::Drift(_) => {
                    for (key, stat) in
                        [("psi", "psi"), ("ks_d", "ks_d"), ("critical", "ks_critical"), ("statistic", "page_hinkley")]
                    {
                        if let Some(v) = detail.number(key) {
                            self.drift.add(short.with("statistic", stat), v);
                        }
                    }
                }
                Kind::Quantile(q) => {
                    if let Some(v) = e.value {
                        self.quant.add(short.with("quantile", format!("{}", q.q)), v);
                    }
                }
                _ => {}
            }
        }
    }

    /// Deployments by phase (the first family), from `by_phase`.
    fn count_phases(&mut self) {
        for phase in ["authorised", "started", "stopped", "unknown"] {
            self.deployments.add(l(&[("phase", phase)]), *self.by_phase.get(phase).unwrap_or(&0) as f64);
        }
    }

    /// [`DeploymentFamilies::count_phases`], written as text.
    fn write_by_phase(&mut self, out: &mut String, format: Format) {
        self.count_phases();
        let f = &self.deployments;
        text::header(out, f.name, f.help, f.ty, format);
        f.take_text().write_to(out);
    }

    /// (name, help, type) of every family after the phase counts, in [`Self::finish`]'s order.
    fn heads(&self) -> Vec<(&'static str, &'static str, MetricType)> {
        let mut v: Vec<_> = self.plain().iter().map(|f| (f.name, f.help, f.ty)).collect();
        v.extend(self.latency.iter().map(|h| (h.name, h.help, MetricType::Histogram)));
        v
    }

    /// The sample lines of every family after the phase counts, one text each, in
    /// [`Self::heads`]' order.
    fn texts(&self, format: Format) -> Vec<Chunks> {
        let mut v: Vec<Chunks> = self.plain().iter().map(|f| f.take_text()).collect();
        v.extend(self.latency.iter().map(|h| {
            let mut s = String::with_capacity(h.samples.len() * 16 * 96);
            text::hist_samples(&mut s, h, format);
            Chunks(vec![s])
        }));
        v
    }

    /// The gauge and counter families after the phase counts, in order.
    fn plain(&self) -> [&Family<'a>; 20] {
        [
            &self.info,
            &self.detections,
            &self.funnel,
            &self.dep_invalid,
            &self.rates,
            &self.galerts,
            &self.gfalse,
            &self.grate,
            &self.state,
            &self.value_ratio,
            &self.value_seconds,
            &self.value,
            &self.limit,
            &self.samples,
            &self.ratio,
            &self.pval,
            &self.evidence,
            &self.drift,
            &self.quant,
            &self.breaches,
        ]
    }

    /// Every family, histograms last.
    fn finish(mut self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.count_phases();
        self.deployments.encode(enc)?;
        for f in self.plain() {
            f.encode(enc)?;
        }
        for h in &self.latency {
            h.encode(enc)?;
        }
        Ok(())
    }
}

/// Limit keys exported as `ddtwatch_condition_limit{limit=...}` (a bounded set).
const LIMIT_KEYS: &[&str] =
    &["min", "max", "max_ratio", "alpha", "min_per_group", "max_gap", "within", "lambda", "delta", "hold", "critical"];

/// Logging: JSON lines for `run`, human-readable for `demo` and the other commands.
/// The default log filter: rdkafka's own "Global error" lines repeat what the sources' error
/// callbacks report (with their kind, and identical repeats rate-limited), so they are off unless
/// `DDTWATCH_LOG` asks for them.
pub const DEFAULT_LOG_FILTER: &str = "info,rdkafka::client=off";

/// Logs to stderr with the filter in `DDTWATCH_LOG` (default [`DEFAULT_LOG_FILTER`]), as JSON
/// lines or text: `DDTWATCH_LOG_FORMAT` (`json` | `text`) overrides the command's default
/// (`json_default`: JSON for `run`, text for the interactive commands).
pub fn init_logging(json_default: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DDTWATCH_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let json = match log_format(std::env::var("DDTWATCH_LOG_FORMAT").ok().as_deref(), json_default) {
        Ok(json) => json,
        Err(e) => {
            eprintln!("warning: {e}; logging as {}", if json_default { "json" } else { "text" });
            json_default
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Whether `DDTWATCH_LOG_FORMAT` (`value`) asks for JSON; unset or empty: `default`.
pub fn log_format(value: Option<&str>, default: bool) -> Result<bool, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("json") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("text") => Ok(false),
        Some(v) => Err(format!("DDTWATCH_LOG_FORMAT is {v:?}, not json or text")),
    }
}

#[cfg(test)]
mod tests {
    use super::Chunks;

    /// A text written line by line over many chunks reads back as the lines in order, and a
    /// chunk is never grown (so never copied) unless one line outgrows the room kept for it.
    #[test]
    fn chunks_hold_the_lines_in_order_without_growing() {
        let mut chunks = Chunks::default();
        let mut expected = String::new();
        for i in 0..20_000usize {
            // Mostly sample-sized lines, now and then one longer than the room kept for a line.
            let line = if i % 997 == 0 {
                format!("{i}:{}\n", "x".repeat(3 * Chunks::LINE))
            } else {
                format!("{i}:{}\n", "y".repeat(i % 300))
            };
            let out = chunks.line();
            let (before, long) = (out.capacity(), line.len() > Chunks::LINE);
            out.push_str(&line);
            assert!(long || out.capacity() == before, "line {i} grew its chunk");
            expected.push_str(&line);
        }
        assert!(chunks.0.len() > 50, "the test spans many chunks: {}", chunks.0.len());
        assert_eq!(chunks.len(), expected.len());
        let mut out = String::new();
        chunks.write_to(&mut out);
        assert_eq!(out, expected);
    }
}
