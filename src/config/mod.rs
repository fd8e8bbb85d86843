//! Configuration: YAML model, loading (with profile files), validation and the embedded default.
//!
//! Loading is two steps, as in quickwit's config crate: serde with `deny_unknown_fields` (so a
//! misspelled key fails with its path and a "did you mean" hint), then `validate`-style
//! checks that need the whole picture (profiles exist, receivers exist, overrides name real
//! conditions). Every problem is reported as `path: problem`, all at once.

pub mod reload;

pub use crate::time::Dur;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_norway::{Mapping, Value};
use sha2::Digest;

use crate::event::{Authorisation, System, parse_ts};
use crate::rules::{Condition, Kind, parse_condition};

pub use crate::diag::{ConfigError, ConfigErrors, suggest};

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
}

impl AuditConfig {
    fn is_unset(&self) -> bool {
        self.key.is_none()
    }

    /// The key's bytes, if one is configured (refused when shorter than the minimum).
    pub fn read_key(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(k) = &self.key else { return Ok(None) };
        let v = k.read("audit.key")?.into_bytes();
        if v.len() < MIN_AUDIT_KEY_BYTES {
            anyhow::bail!("audit.key is {} bytes; at least {} are needed", v.len(), MIN_AUDIT_KEY_BYTES);
        }
        Ok(Some(v))
    }
}

fn five_seconds() -> Dur {
    Dur::secs(5)
}

/// A profile's validated conditions, shared by every deployment that uses it (a deployment's
/// runtime holds an `Arc` to its condition instead of a copy: ≈ 0.5 KB less per condition and
/// deployment).
pub type Conditions = Arc<Vec<Arc<Condition>>>;

fn shared(conditions: Vec<Condition>) -> Conditions {
    Arc::new(conditions.into_iter().map(Arc::new).collect())
}

/// A validated configuration, ready for the engine.
#[derive(Debug, Clone)]
pub struct Config {
    pub raw: RawConfig,
    /// attribute → allowed groups (always including `other` and `unknown`).
    pub groups: BTreeMap<String, Vec<String>>,
    /// profile name → validated conditions.
    pub profiles: BTreeMap<String, Conditions>,
    /// deployment id → conditions after overrides.
    pub deployment_conditions: BTreeMap<String, Conditions>,
    pub authorisations: BTreeMap<String, Authorisation>,
    /// SHA-256 of the effective configuration (hex), shown in summaries and reports.
    pub hash: String,
}

/// Embedded default profiles (also shipped as files in `config/profiles/`).
pub const LFR_PROFILE: &str = include_str!("../../config/profiles/lfr.yaml");
pub const ANPR_PROFILE: &str = include_str!("../../config/profiles/anpr.yaml");
/// Embedded demo configuration (`ddtwatch demo`).
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.yaml");

impl Config {
    /// Loads a config file; `profiles_dir` is resolved relative to the file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![ConfigError::new(path.display().to_string(), e.to_string())]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_yaml(&text, Some(base))
    }

    /// The embedded demo configuration with the embedded default profiles.
    pub fn demo() -> Config {
        Config::from_yaml(DEMO_CONFIG, None).expect("embedded demo config is valid (tested)")
    }

    /// Parses and validates YAML. Without `base`, or in a file with neither `profiles_dir` nor
    /// inline profiles, the embedded profiles stand in for `profiles_dir`.
    pub fn from_yaml(text: &str, base: Option<&Path>) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = deserialize(text, "")?;
        let mut profiles = raw.profiles.clone();
        let mut errors = Vec::new();
        // A file with neither `profiles_dir` nor inline profiles (a first, minimal config) gets
        // the embedded defaults too: before, it monitored nothing and said nothing.
        let embedded = raw.profiles_dir.is_none() && raw.profiles.is_empty();
        match (&raw.profiles_dir, base) {
            (Some(dir), Some(base)) => load_profiles_dir(&base.join(dir), &mut profiles, &mut errors),
            _ if embedded || base.is_none() => {
                for (name, text) in [("lfr", LFR_PROFILE), ("anpr", ANPR_PROFILE)] {
                    if !profiles.contains_key(name) {
                        match deserialize::<ProfileFile>(text, &format!("profiles.{name}")) {
                            Ok(p) => {
                                profiles.insert(name.into(), p);
                            }
                            Err(e) => errors.extend(e.0),
                        }
                    }
                }
            }
            _ => {}
        }
        let mut raw = raw;
        raw.profiles = profiles;
        if embedded {
            // What the embedded profiles need, as the demo has them, unless the file says
            // otherwise: `oversight` and `ops` receivers (log lines) and the group allow-lists
            // their disparity conditions tabulate.
            let demo: RawConfig = deserialize(DEMO_CONFIG, "")?;
            if raw.receivers.is_empty() {
                raw.receivers = demo.receivers;
            }
            if raw.groups.is_empty() {
                raw.groups = demo.groups;
            }
        }
        validate(raw, errors)
    }

    /// Conditions for a deployment: its own (with overrides), else its system's default profile.
    pub fn conditions_for(&self, deployment_id: &str, system: Option<System>) -> Conditions {
        if let Some(c) = self.deployment_conditions.get(deployment_id) {
            return c.clone();
        }
        let profile = match system {
            Some(System::Lfr) => self.raw.defaults.lfr.as_deref().unwrap_or("lfr"),
            Some(System::Anpr) => self.raw.defaults.anpr.as_deref().unwrap_or("anpr"),
            None => return Arc::new(Vec::new()),
        };
        self.profiles.get(profile).cloned().unwrap_or_default()
    }

    /// Conditions in every profile and per-deployment set (0: the config monitors nothing).
    pub fn condition_count(&self) -> usize {
        self.profiles.values().map(|p| p.len()).sum::<usize>()
            + self.deployment_conditions.values().map(|p| p.len()).sum::<usize>()
    }

    /// The effective configuration as JSON with secret references redacted.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.raw).unwrap_or_default();
        redact(&mut v);
        v
    }
}

fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k.contains("secret") || k.contains("token") || k.contains("password") {
                    *val = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        serde_json::Value::String(s) if s.contains("://") => *s = redact_url(s),
        _ => {}
    }
}

/// A URL without its credentials: userinfo, the path (webhook services carry their secret in
/// it) and every query value become `<redacted>`
/// (`http://user:pw@host:9/ops/T0/xyz?token=x` → `http://<redacted>@host:9/<redacted>?token=<redacted>`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    // The host starts after the last `@` before any query or fragment (a password may hold
    // an unencoded `/`).
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    let host_start = rest[..before_query].rfind('@').map_or(0, |i| i + 1);
    let end = rest[host_start..].find(['/', '?', '#']).map_or(rest.len(), |i| host_start + i);
    let authority =
        if host_start > 0 { format!("<redacted>@{}", &rest[host_start..end]) } else { rest[..end].to_string() };
    let tail = &rest[end..];
    let (tail, fragment) = match tail.split_once('#') {
        Some((t, f)) => (t, Some(f)),
        None => (tail, None),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let path = if path.is_empty() || path == "/" { path.to_string() } else { "/<redacted>".to_string() };
    let query = query
        .map(|q| {
            let pairs: Vec<String> = q
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) => format!("{k}=<redacted>"),
                    None => pair.to_string(),
                })
                .collect();
            format!("?{}", pairs.join("&"))
        })
        .unwrap_or_default();
    let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
    format!("{scheme}://{authority}{path}{query}{fragment}")
}

/// serde with the key path of the failure and a did-you-mean for unknown fields.
fn deserialize<T: serde::de::DeserializeOwned>(text: &str, prefix: &str) -> Result<T, ConfigErrors> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner().to_string();
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        let path = match (prefix.is_empty(), path.is_empty()) {
            (true, true) => "(top level)".to_string(),
            (true, false) => path,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{path}"),
        };
        ConfigErrors(vec![ConfigError::new(path, unknown_field_hint(&inner))])
    })
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" into a short hint.
fn unknown_field_hint(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return msg.to_string();
    };
    let Some((field, rest)) = rest.split_once('`') else {
        return msg.to_string();
    };
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let loc = msg.find(" at line ").map(|i| &msg[i..]).unwrap_or("");
    let hint = suggest(field, &expected);
    if hint.is_empty() {
        format!("unknown key `{field}` (expected one of {}){loc}", expected.join(", "))
    } else {
        format!("unknown key `{field}`{hint}{loc}")
    }
}

fn load_profiles_dir(dir: &Path, profiles: &mut BTreeMap<String, ProfileFile>, errors: &mut Vec<ConfigError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(ConfigError::new("profiles_dir", format!("{}: {e}", dir.display())));
            return;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if profiles.contains_key(&name) {
            errors.push(ConfigError::new(format!("profiles.{name}"), "defined both inline and in profiles_dir"));
            continue;
        }
        match std::fs::read_to_string(&file) {
            Ok(text) => match deserialize::<ProfileFile>(&text, &format!("profiles.{name}")) {
                Ok(p) => {
                    profiles.insert(name, p);
                }
                Err(e) => errors.extend(e.0),
            },
            Err(e) => errors.push(ConfigError::new(format!("profiles.{name}"), e.to_string())),
        }
    }
}

fn parse_profile(name: &str, conditions: &[Mapping], errors: &mut Vec<ConfigError>) -> Vec<Condition> {
    let mut out: Vec<Condition> = Vec::new();
    for (i, m) in conditions.iter().enumerate() {
        let path = format!("profiles.{name}.conditions[{i}]");
        match parse_condition(m, &path) {
            Ok(c) => {
                if out.iter().any(|o| o.id == c.id) {
                    errors.push(ConfigError::new(format!("{path}.id"), format!("duplicate condition id `{}`", c.id)));
                }
                out.push(c);
            }
            Err(e) => errors.extend(e),
        }
    }
    out
}

fn validate(raw: RawConfig, mut errors: Vec<ConfigError>) -> Result<Config, ConfigErrors> {
    // Group allow-lists always include the catch-alls (INTERFACES.md: values outside → other).
    let mut groups = BTreeMap::new();
    for (attr, list) in &raw.groups {
        let mut list = list.clone();
        for catch_all in ["other", "unknown"] {
            if !list.iter().any(|g| g == catch_all) {
                list.push(catch_all.into());
            }
        }
        groups.insert(attr.clone(), list);
    }
    let mut profiles = BTreeMap::new();
    for (name, p) in &raw.profiles {
        profiles.insert(name.clone(), shared(parse_profile(name, &p.conditions, &mut errors)));
    }
    for (system, name) in [("lfr", &raw.defaults.lfr), ("anpr", &raw.defaults.anpr)] {
        if let Some(name) = name
            && !profiles.contains_key(name)
        {
            let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
            errors.push(ConfigError::new(
                format!("defaults.{system}"),
                format!("no profile `{name}`{}", suggest(name, &names)),
            ));
        }
    }
    let mut deployment_conditions = BTreeMap::new();
    let mut authorisations = BTreeMap::new();
    for (id, d) in &raw.deployments {
        let path = format!("deployments.{id}");
        if let Some(a) = &d.authorisation {
            match authorisation(a, &format!("{path}.authorisation")) {
                Ok(a) => {
                    authorisations.insert(id.clone(), a);
                }
                Err(e) => errors.push(e),
            }
        }
        let Some(profile) = &d.profile else {
            if !d.overrides.is_empty() {
                errors.push(ConfigError::new(format!("{path}.overrides"), "overrides need an explicit `profile`"));
            }
            continue;
        };
        let Some(base) = raw.profiles.get(profile) else {
            let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
            errors.push(ConfigError::new(
                format!("{path}.profile"),
                format!("no profile `{profile}`{}", suggest(profile, &names)),
            ));
            continue;
        };
        let mut maps = base.conditions.clone();
        for (i, o) in d.overrides.iter().enumerate() {
            let opath = format!("{path}.overrides[{i}]");
            let Some(oid) = o.get("id").and_then(Value::as_str) else {
                errors.push(ConfigError::new(format!("{opath}.id"), "is required (the condition to change)"));
                continue;
            };
            let Some(target) = maps.iter_mut().find(|m| m.get("id").and_then(Value::as_str) == Some(oid)) else {
                let ids: Vec<&str> =
                    base.conditions.iter().filter_map(|m| m.get("id").and_then(Value::as_str)).collect();
                errors.push(ConfigError::new(
                    format!("{opath}.id"),
                    format!("profile `{profile}` has no condition `{oid}`{}", suggest(oid, &ids)),
                ));
                continue;
            };
            for (k, v) in o {
                target.insert(k.clone(), v.clone());
            }
        }
        let mut errs = Vec::new();
        let conds = parse_profile(&format!("{profile}(deployment {id})"), &maps, &mut errs);
        errors.extend(errs);
        deployment_conditions.insert(id.clone(), shared(conds));
    }
    // Receivers named by conditions must exist; receiver settings must be complete.
    let receiver_names: Vec<&str> = raw.receivers.keys().map(String::as_str).collect();
    let mut all_conditions: Vec<(&str, &Condition)> = Vec::new();
    for (name, conds) in &profiles {
        all_conditions.extend(conds.iter().map(|c| (name.as_str(), &**c)));
    }
    // Per-deployment overrides can name receivers too (a misspelt one would fail for good at
    // run time).
    for (id, conds) in &deployment_conditions {
        for c in conds.iter() {
            for r in &c.notify {
                if !raw.receivers.contains_key(r) {
                    errors.push(ConfigError::new(
                        format!("deployments.{id}.overrides[id={}].notify", c.id),
                        format!("no receiver `{r}`{}", suggest(r, &receiver_names)),
                    ));
                }
            }
        }
    }
    for (name, c) in all_conditions {
        for r in &c.notify {
            if !raw.receivers.contains_key(r) {
                errors.push(ConfigError::new(
                    format!("profiles.{name}.conditions[id={}].notify", c.id),
                    format!("no receiver `{r}`{}", suggest(r, &receiver_names)),
                ));
            }
        }
        if let Kind::Disparity(d) = &c.kind
            && !groups.contains_key(&d.attribute)
        {
            errors.push(ConfigError::new(
                format!("profiles.{name}.conditions[id={}].attribute", c.id),
                format!(
                    "`{}` has no allow-list under `groups` (attributes without one are not tabulated)",
                    d.attribute
                ),
            ));
        }
    }
    for (name, r) in &raw.receivers {
        let path = format!("receivers.{name}");
        if matches!(r.kind, ReceiverKind::Webhook | ReceiverKind::Alertmanager) && r.url.is_none() {
            errors.push(ConfigError::new(format!("{path}.url"), "is required for this receiver kind"));
        }
        if r.kind == ReceiverKind::Webhook && r.secret_file.is_none() && r.secret_env.is_none() {
            errors.push(ConfigError::new(format!("{path}.secret_file"), "a webhook needs secret_file or secret_env"));
        }
        if r.resend.ms() <= 0 {
            errors.push(ConfigError::new(format!("{path}.resend"), "must be positive"));
        }
        if r.timeout.ms() <= 0 {
            errors.push(ConfigError::new(format!("{path}.timeout"), "must be positive"));
        }
        if r.backoff_initial.ms() <= 0 {
            errors.push(ConfigError::new(format!("{path}.backoff_initial"), "must be positive"));
        }
        if r.backoff_initial.ms() > r.backoff_max.ms() {
            errors.push(ConfigError::new(
                format!("{path}.backoff_initial"),
                format!("({}) is above backoff_max ({})", r.backoff_initial, r.backoff_max),
            ));
        }
        if let Some(url) = &r.url {
            let ok = url.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.starts_with('/')
            });
            if !ok {
                errors.push(ConfigError::new(
                    format!("{path}.url"),
                    format!("`{url}` is not an http:// or https:// URL with a host"),
                ));
            }
        }
    }
    for (i, s) in raw.sources.iter().enumerate() {
        if let SourceConfig::Kafka { topics, brokers, properties, secret_properties, .. } = s {
            for k in properties.keys().chain(secret_properties.keys()) {
                let section = if properties.contains_key(k) { "properties" } else { "secret_properties" };
                if let Some((_, why)) = KAFKA_OWNED_PROPERTIES.iter().find(|(o, _)| o == k) {
                    errors.push(ConfigError::new(
                        format!("sources[{i}].{section}.{k}"),
                        format!("is set by ddtwatch and cannot be overridden: {why}"),
                    ));
                }
            }
            for k in secret_properties.keys() {
                if properties.contains_key(k) {
                    errors.push(ConfigError::new(
                        format!("sources[{i}].secret_properties.{k}"),
                        "is also in properties; give it in one place only",
                    ));
                }
            }
            if topics.is_empty() {
                errors.push(ConfigError::new(format!("sources[{i}].topics"), "needs at least one topic"));
            }
            if brokers.trim().is_empty() {
                errors.push(ConfigError::new(format!("sources[{i}].brokers"), "is empty"));
            }
            for k in properties.keys() {
                if k.contains("password") || k.contains("secret") || k.ends_with(".key") {
                    errors.push(ConfigError::new(
                        format!("sources[{i}].properties.{k}"),
                        "secrets go in secret_properties (file or env), never inline",
                    ));
                }
            }
        }
    }
    if raw.http.read_timeout.ms() <= 0 {
        errors.push(ConfigError::new("http.read_timeout", "must be positive"));
    }
    if raw.http.header_timeout.ms() <= 0 {
        errors.push(ConfigError::new("http.header_timeout", "must be positive"));
    }
    if raw.http.max_connections == 0 {
        errors.push(ConfigError::new("http.max_connections", "must be at least 1"));
    }
    if raw.http.listen.parse::<std::net::SocketAddr>().is_err() {
        errors.push(ConfigError::new("http.listen", format!("`{}` is not host:port", raw.http.listen)));
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let hash = {
        let canonical = serde_json::to_vec(&raw).unwrap_or_default();
        let digest = sha2::Sha256::digest(&canonical);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    };
    Ok(Config { raw, groups, profiles, deployment_conditions, authorisations, hash })
}

fn authorisation(a: &AuthorisationConfig, path: &str) -> Result<Authorisation, ConfigError> {
    let ts = |v: &Option<String>, key: &str| -> Result<Option<i64>, ConfigError> {
        match v {
            None => Ok(None),
            Some(s) => parse_ts(s)
                .map(Some)
                .ok_or_else(|| ConfigError::new(format!("{path}.{key}"), "must be RFC 3339 with an offset")),
        }
    };
    let (window_start, window_end) = (ts(&a.window_start, "window_start")?, ts(&a.window_end, "window_end")?);
    if let (Some(start), Some(end)) = (window_start, window_end)
        && end <= start
    {
        return Err(ConfigError::new(format!("{path}.window_end"), "is not after window_start"));
    }
    if let Some(f) = a.threshold_floor
        && !(0.0..=1.0).contains(&f)
    {
        return Err(ConfigError::new(
            format!("{path}.threshold_floor"),
            format!("is {f}: match thresholds are scores between 0 and 1"),
        ));
    }
    Ok(Authorisation {
        authority_token: None,
        rank: a.rank.clone(),
        window_start,
        window_end,
        location: a.location.clone(),
        purpose: a.purpose.clone(),
        max_list_size: a.max_list_size,
        threshold_floor: a.threshold_floor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_when_shown() {
        assert_eq!(
            redact_url("http://user:pa55word@am.example:9093/ops?token=abc&team=x#top"),
            "http://<redacted>@am.example:9093/<redacted>?token=<redacted>&team=<redacted>#top"
        );
        assert_eq!(redact_url("http://alertmanager:9093"), "http://alertmanager:9093");
        assert_eq!(
            redact_url("https://hooks.example.com/services/T0/B1/s3cr3t"),
            "https://hooks.example.com/<redacted>"
        );
        assert_eq!(redact_url("http://u:pa/ss@h:1/x"), "http://<redacted>@h:1/<redacted>");
        let mut v = serde_json::json!({"receivers": {"ops": {"url": "http://u:p@h/x?k=v"}}, "n": 1});
        redact(&mut v);
        let text = v.to_string();
        assert!(!text.contains("u:p") && !text.contains("k=v"), "{text}");
    }

    #[test]
    fn embedded_demo_config_is_valid() {
        let c = Config::demo();
        assert!(!c.profiles["lfr"].is_empty());
        assert!(!c.profiles["anpr"].is_empty());
    }

    #[test]
    fn misspelled_top_level_key_has_path_and_hint() {
        let e = Config::from_yaml("sorces: []\n", None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("did you mean \"sources\""), "{msg}");
    }

    #[test]
    fn misspelled_condition_key_has_path_and_hint() {
        let yaml = "profiles:\n  p:\n    conditions:\n      - {id: r, kind: rate, numerator: false_alerts, denominatr: detections, max: 0.1}\n";
        let e = Config::from_yaml(yaml, None).unwrap_err().to_string();
        assert!(e.contains("profiles.p.conditions[0].denominatr"), "{e}");
        assert!(e.contains("did you mean \"denominator\""), "{e}");
    }

    #[test]
    fn override_of_unknown_condition_is_an_error() {
        let yaml = "deployments:\n  d1: {profile: lfr, overrides: [{id: false_alert_rat, max: 0.1}]}\nreceivers: {oversight: {kind: log}, ops: {kind: log}}\ngroups: {ethnicity: [black], sex: [female]}\n";
        let e = Config::from_yaml(yaml, None).unwrap_err().to_string();
        assert!(e.contains("deployments.d1.overrides[0].id"), "{e}");
    }

    #[test]
    fn secrets_are_redacted() {
        let yaml = "receivers: {oversight: {kind: webhook, url: 'http://x', secret_file: /run/s}, ops: {kind: log}}\ngroups: {ethnicity: [black], sex: [female]}\n";
        let c = Config::from_yaml(yaml, None).unwrap();
        let text = c.redacted().to_string();
        assert!(!text.contains("/run/s"), "{text}");
    }
}
