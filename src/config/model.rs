//! The configuration file's model (serde types with their defaults), as INTERFACES.md documents
//! it. Loading is in `mod.rs`, validation in `validate.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_norway::Mapping;

use crate::time::Dur;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// Wall time: live consumption.
    #[default]
    Wall,
    /// Event time (the watermark): replay.
    Event,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to serve `/metrics`, health and the API on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// File holding the bearer token required by `POST /api/v1/events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding that token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Largest accepted `POST /api/v1/events` body, bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// `GET /api/v1/*` without the bearer token (per-group tables, the authorisation, the
    /// config). Off by default: reads take the same token as `POST /api/v1/events`. The demo
    /// turns it on. `/metrics`, `/healthz` and `/readyz` are always open.
    #[serde(default, skip_serializing_if = "is_false")]
    pub anonymous_reads: bool,
    /// A connection is closed after this long without a byte from the client (slow or stalled
    /// headers or body, idle keep-alive).
    #[serde(default = "default_read_timeout", skip_serializing_if = "is_default_read_timeout")]
    pub read_timeout: Dur,
    /// A request's headers must be complete within this long of their first byte, however
    /// steadily they trickle in (slowloris).
    #[serde(default = "default_header_timeout", skip_serializing_if = "is_default_header_timeout")]
    pub header_timeout: Dur,
    /// Connections served at once; more wait in the accept backlog.
    #[serde(default = "default_max_connections", skip_serializing_if = "is_default_max_connections")]
    pub max_connections: usize,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_read_timeout() -> Dur {
    Dur::secs(30)
}

fn is_default_read_timeout(d: &Dur) -> bool {
    *d == default_read_timeout()
}

fn default_header_timeout() -> Dur {
    Dur::secs(10)
}

fn is_default_header_timeout(d: &Dur) -> bool {
    *d == default_header_timeout()
}

fn default_max_connections() -> usize {
    512
}

fn is_default_max_connections(n: &usize) -> bool {
    *n == default_max_connections()
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_max_body() -> usize {
    16 * 1024 * 1024
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            token_file: None,
            token_env: None,
            max_body_bytes: default_max_body(),
            anonymous_reads: false,
            read_timeout: default_read_timeout(),
            header_timeout: default_header_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

/// A secret given by reference only (never inline).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

impl SecretRef {
    /// The secret's value: the file's content (trimmed), else the environment variable's.
    pub fn read(&self, name: &str) -> anyhow::Result<String> {
        use anyhow::Context as _;
        if let Some(path) = &self.file {
            let v = std::fs::read_to_string(path)
                .with_context(|| format!("reading secret {name} from {}", path.display()))?;
            return Ok(v.trim().to_string());
        }
        if let Some(var) = &self.env {
            return std::env::var(var).with_context(|| format!("secret {name}: ${var} is not set"));
        }
        anyhow::bail!("secret {name}: neither file nor env given")
    }
}

/// librdkafka properties that ddtwatch sets itself; a user value would silently break its
/// guarantees, so setting one is a config error naming the key and why.
pub const KAFKA_OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "it is the source's `brokers`"),
    ("metadata.broker.list", "it is the source's `brokers`"),
    ("group.id", "it is the source's `group_id`"),
    (
        "enable.auto.commit",
        "ddtwatch commits offsets itself, only after the events were applied and checkpointed (at-least-once)",
    ),
    ("auto.commit.enable", "ddtwatch commits offsets itself (at-least-once)"),
    ("enable.auto.offset.store", "ddtwatch stores an offset only after its event was applied"),
    ("enable.partition.eof", "the source consumes without end-of-partition events"),
    ("enable.idempotence", "the dead-letter and state producers are always idempotent"),
    ("acks", "the dead-letter and state producers always wait for every in-sync replica"),
    ("request.required.acks", "the dead-letter and state producers always wait for every in-sync replica"),
    ("statistics.interval.ms", "ddtwatch reads broker state and consumer lag from librdkafka statistics"),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    Kafka {
        brokers: String,
        #[serde(default = "default_topics")]
        topics: Vec<String>,
        #[serde(default = "default_group")]
        group_id: String,
        /// librdkafka properties passed through (e.g. `security.protocol`, `sasl.mechanism`).
        #[serde(default)]
        properties: BTreeMap<String, String>,
        /// librdkafka properties whose values are secrets, read from files or env.
        #[serde(default)]
        secret_properties: BTreeMap<String, SecretRef>,
        /// Compacted topic of deployment snapshots (key = deployment_id): written before each
        /// offset commit, read on partition assignment, so deployments move with partitions.
        /// Empty string: off.
        #[serde(default = "default_state_topic")]
        state_topic: String,
    },
    File {
        path: PathBuf,
    },
    Http {},
}

impl SourceConfig {
    /// The first Kafka source of `sources`: the client settings the dead-letter and audit-topic
    /// producers use.
    pub fn first_kafka(sources: &[SourceConfig]) -> Option<&SourceConfig> {
        sources.iter().find(|s| matches!(s, SourceConfig::Kafka { .. }))
    }
}

fn default_state_topic() -> String {
    "ddt.state".into()
}

fn default_topics() -> Vec<String> {
    vec!["ddt.events".into()]
}
fn default_group() -> String {
    "ddtwatch".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeadLetterConfig {
    Kafka { topic: String },
    File { path: PathBuf },
    Stderr {},
    Discard {},
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub kind: ReceiverKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Re-send interval while firing (CONDITIONS.md: default 1m).
    #[serde(default = "default_resend")]
    pub resend: Dur,
    /// Give up retrying after this long (INTERFACES.md: default 24h).
    #[serde(default = "default_max_age")]
    pub max_age: Dur,
    /// First retry waits up to this long (full jitter), doubling per attempt …
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial: Dur,
    /// … up to at most this long between attempts.
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Dur,
    /// Per-request timeout (a timeout is retried).
    #[serde(default = "default_receiver_timeout")]
    pub timeout: Dur,
    /// Alertmanager: ddtwatch's external address; each alert's `generatorURL` then links to the
    /// deployment's summary under it (`…/api/v1/deployments/<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

impl ReceiverConfig {
    pub fn secret(&self) -> SecretRef {
        SecretRef { file: self.secret_file.clone(), env: self.secret_env.clone() }
    }
}

fn default_backoff_initial() -> Dur {
    Dur::secs(1)
}
fn default_backoff_max() -> Dur {
    Dur::mins(5)
}
fn default_receiver_timeout() -> Dur {
    Dur::secs(10)
}

fn default_resend() -> Dur {
    Dur::mins(1)
}
fn default_max_age() -> Dur {
    Dur::hours(24)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverKind {
    /// Writes notifications to the log (and stdout in `demo`).
    Log,
    Webhook,
    Alertmanager,
}

/// Engine timing parameters (CONDITIONS.md defaults).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// An alert with no decision and no outcome this long after it is `unadjudicated`.
    #[serde(default = "ten_minutes")]
    pub adjudication_timeout: Dur,
    /// Adjudications/outcomes whose alert is unknown are held this long.
    #[serde(default = "ten_minutes")]
    pub orphan_hold: Dur,
    /// Events older than now − allowed_lateness still count in `deployment` windows.
    #[serde(default = "five_minutes")]
    pub allowed_lateness: Dur,
    /// Events further ahead of the clock are dead-lettered `future_timestamp`.
    #[serde(default = "one_hour")]
    pub max_future: Dur,
    /// Event ids are remembered at least this long (and at least the last `dedup_min_ids`).
    #[serde(default = "one_hour")]
    pub dedup_horizon: Dur,
    #[serde(default = "million")]
    pub dedup_min_ids: usize,
    /// `run` with `state_dir`: MiB of in-memory indexes over the event ids spilled to
    /// `state_dir/dedup` (≈ 2.1 bytes an id, so ≈ 4M ids); past it the oldest are read from disk
    /// instead (two small reads a lookup), which keeps memory flat however many ids are held.
    #[serde(default = "eight")]
    pub dedup_index_mb: usize,
    /// Kafka source: how often stored offsets are committed.
    #[serde(default = "five_seconds")]
    pub commit_interval: Dur,
    /// How often `run` writes `state_dir/snapshot.json` (also written at shutdown).
    #[serde(default = "thirty_seconds")]
    pub snapshot_interval: Dur,
    /// On SIGTERM: how long sources get to finish in-flight events and commit.
    #[serde(default = "ten_seconds")]
    pub shutdown_grace: Dur,
    /// A deployment stopped this long (engine clock) is retired: its final summary goes to
    /// `state_dir/records/<id>.json` (and the state topic), and it leaves memory and `/metrics`.
    /// Never while its deletion is unattested or one of its conditions is pending (README
    /// "Retired deployments"). `0s` keeps stopped deployments for ever. Default 24 h: a day to
    /// read the finished deployment on the dashboards.
    #[serde(default = "one_day")]
    pub retain_stopped: Dur,
    /// Threads that evaluate deployments each second (each deployment on one of them; the
    /// output is the same for any number). Default (unset): the available cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

fn one_day() -> Dur {
    Dur::hours(24)
}

fn thirty_seconds() -> Dur {
    Dur::secs(30)
}

fn ten_seconds() -> Dur {
    Dur::secs(10)
}

fn ten_minutes() -> Dur {
    Dur::mins(10)
}
fn five_minutes() -> Dur {
    Dur::mins(5)
}
fn one_hour() -> Dur {
    Dur::hours(1)
}
fn eight() -> usize {
    8
}
fn million() -> usize {
    1_000_000
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            adjudication_timeout: ten_minutes(),
            orphan_hold: ten_minutes(),
            allowed_lateness: five_minutes(),
            max_future: one_hour(),
            dedup_horizon: one_hour(),
            dedup_min_ids: million(),
            dedup_index_mb: eight(),
            commit_interval: five_seconds(),
            snapshot_interval: thirty_seconds(),
            shutdown_grace: ten_seconds(),
            retain_stopped: one_day(),
            workers: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anpr: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    #[serde(default)]
    pub conditions: Vec<Mapping>,
}

/// The authorisation as written in config (timestamps as RFC 3339 strings).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthorisationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_list_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_floor: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Per-deployment changes to the profile's conditions: `{id: ..., <key>: <value>}`.
    #[serde(default)]
    pub overrides: Vec<Mapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorisation: Option<AuthorisationConfig>,
}

/// The file as written.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub clock: ClockMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterConfig>,
    /// Allow-list of groups per attribute; others count as `other`, missing as `unknown`.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles_dir: Option<PathBuf>,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentConfig>,
    #[serde(default)]
    pub receivers: BTreeMap<String, ReceiverConfig>,
    #[serde(default)]
    pub engine: EngineConfig,
    /// How often `run` re-reads the config file (and profiles) for hot reload; SIGHUP reloads at
    /// once. Polling content, not inotify: a Kubernetes ConfigMap update swaps a `..data`
    /// symlink, which inotify watches on the old file miss.
    #[serde(default = "five_seconds")]
    pub reload_interval: Dur,
    #[serde(default, skip_serializing_if = "AuditConfig::is_unset")]
    pub audit: AuditConfig,
}

/// The files `run` keeps in `state_dir` (README "State snapshots", "Audit log", "Notifications").
#[derive(Debug, Clone)]
pub struct StateDir(PathBuf);

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateDir(dir.into())
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
    /// The whole engine state, written every `snapshot_interval` and at shutdown.
    pub fn snapshot(&self) -> PathBuf {
        self.0.join("snapshot.json")
    }
    /// The hash-chained audit log (its head is `audit.log.head`).
    pub fn audit_log(&self) -> PathBuf {
        self.0.join("audit.log")
    }
    /// The notification journal.
    pub fn outbox(&self) -> PathBuf {
        self.0.join("outbox.jsonl")
    }
    /// Remembered event ids spilled to disk.
    pub fn dedup(&self) -> PathBuf {
        self.0.join("dedup")
    }
    /// Final summaries of retired deployments (`engine.retain_stopped`).
    pub fn records(&self) -> PathBuf {
        self.0.join("records")
    }
    /// The final summary of the retired deployment `id` (None: not a valid deployment id, so it
    /// cannot name a file here).
    pub fn record(&self, id: &str) -> Option<PathBuf> {
        crate::event::is_valid_id(id).then(|| self.records().join(format!("{id}.json")))
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never a part:
/// a temporary file beside it, synced, then renamed over it (its directory created if missing).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = {
        let mut p = path.as_os_str().to_owned();
        p.push(".tmp");
        PathBuf::from(p)
    };
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

/// Shortest `audit.key` accepted (bytes): an HMAC key as strong as the hash.
pub const MIN_AUDIT_KEY_BYTES: usize = 32;

/// The audit log in `state_dir` (README "Audit log").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// HMAC-SHA-256 key (≥ 32 bytes, from a secret file or variable) that makes the hash chain
    /// keyed, so whoever can write `state_dir` cannot recompute it. Unset: an unkeyed chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretRef>,
    /// Kafka topic every audit record is also produced to (with the Kafka source's client
    /// settings), so the trail outlives the pod (README "Durability"). Unset: the file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

impl AuditConfig {
    fn is_unset(&self) -> bool {
        self.key.is_none() && self.topic.is_none()
    }

    /// The key's bytes, if one is configured (refused when shorter than the minimum).
    pub fn read_key(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(k) = &self.key else { return Ok(None) };
        // Text, trimmed whichever way it comes (a file is trimmed already; a variable set from
        // one may carry its newline), so `audit verify --key-file` reads the same key.
        let v = k.read("audit.key")?.trim().as_bytes().to_vec();
        if v.len() < MIN_AUDIT_KEY_BYTES {
            anyhow::bail!("audit.key is {} bytes; at least {} are needed", v.len(), MIN_AUDIT_KEY_BYTES);
        }
        Ok(Some(v))
    }
}

fn five_seconds() -> Dur {
    Dur::secs(5)
}
