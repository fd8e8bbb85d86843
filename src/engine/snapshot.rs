//! Deployment state snapshots: everything a deployment has accumulated (counters, the alert
//! join, windows, series, per-source state, breach lifecycles), serialised so the deployment can
//! move to another instance (Kafka `ddt.state` topic on rebalance) or survive a restart.
//!
//! Conditions are not stored: on restore the deployment is bound to the *current* config and
//! each condition's runtime (lifecycle, silence instances, drift state) is taken over by id when
//! its kind is unchanged — a drift state only when its definition is identical.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use serde::{Deserialize, Serialize};

use super::deployment::{AlertRec, Deployment, Held, SlotLists, SourceState};
use super::series::{DriftState, LatencySeries};
use super::tally::{GroupIndex, Tally, WindowedTally};
use crate::config::Config;
use crate::event::{Authorisation, Deletion, Millis, Phase, Reason, System, parse_line};
use crate::rules::{Kind, Lifecycle};

/// 2: alerts keyed by their alert_id fingerprint, group slots as ids into `slot_lists`.
pub const SNAPSHOT_VERSION: u32 = 2;

/// A Kafka message position. In a snapshot: it holds every event of its deployment up to and
/// including this offset, so a consumer restoring it skips re-delivered ones. On a dead letter:
/// the message it came from (DLQ headers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Through {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
/// The authorisation without its `authority_token`: a snapshot is state, not a credential store
/// (an older snapshot's token field is ignored when read).
struct AuthorisationState {
    rank: Option<String>,
    window_start: Option<Millis>,
    window_end: Option<Millis>,
    location: Option<String>,
    purpose: Option<String>,
    max_list_size: Option<u64>,
    threshold_floor: Option<f64>,
}

impl From<&Authorisation> for AuthorisationState {
    fn from(a: &Authorisation) -> Self {
        AuthorisationState {
            rank: a.rank.clone(),
            window_start: a.window_start,
            window_end: a.window_end,
            location: a.location.clone(),
            purpose: a.purpose.clone(),
            max_list_size: a.max_list_size,
            threshold_floor: a.threshold_floor,
        }
    }
}

impl From<AuthorisationState> for Authorisation {
    fn from(a: AuthorisationState) -> Self {
        Authorisation {
            authority_token: None,
            rank: a.rank,
            window_start: a.window_start,
            window_end: a.window_end,
            location: a.location,
            purpose: a.purpose,
            max_list_size: a.max_list_size,
            threshold_floor: a.threshold_floor,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConditionState {
    kind: String,
    lifecycle: Lifecycle,
    instances: BTreeMap<String, Lifecycle>,
    drift: Option<Box<DriftState>>,
    /// The drift definition the state was built for (JSON), to detect a changed definition.
    drift_spec: Option<String>,
    /// Decision state under a false-breach budget, and the condition definition (JSON) it was
    /// built for.
    #[serde(default)]
    seq: Option<(super::series::Sequential, String)>,
}

/// A held decision/outcome: its original bytes (re-parsed on restore).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeldState {
    raw: String,
    held_at: Millis,
}

/// Unknown fields are refused: a snapshot written by a newer build (or tampered with) is never
/// applied half-way.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSnapshot {
    pub snapshot_version: u32,
    pub deployment_id: String,
    pub system: Option<System>,
    pub through: Option<Through>,
    /// The engine clock when taken.
    pub taken_at: Option<Millis>,
    phase: Option<Phase>,
    started_at: Option<Millis>,
    stopped_at: Option<Millis>,
    /// Absent in snapshots from before retirement existed (`stopped_at` stands in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_seen: Option<Millis>,
    first_ts: Option<Millis>,
    last_ts: Option<Millis>,
    /// The group allow-list the tallies are indexed by; restoring under a different one starts
    /// the per-group cells afresh (counters are kept).
    groups: Vec<(String, Vec<String>)>,
    total: Tally,
    windows: Vec<WindowedTally>,
    /// (alert key, alert) by key.
    alerts: Vec<(u64, AlertRec)>,
    /// The group-slot lists the alerts' slot ids index.
    slot_lists: Vec<Vec<usize>>,
    adjudication_deadlines: BTreeSet<(Millis, u64)>,
    held: Vec<(String, Vec<HeldState>)>,
    held_order: VecDeque<(Millis, String)>,
    sources: BTreeMap<String, Box<SourceState>>,
    first_threshold: Option<f64>,
    first_algorithm: Option<String>,
    authorisation: Option<AuthorisationState>,
    authorisation_from_stream: bool,
    window_tripped: bool,
    announced_versions: HashSet<String>,
    unknown_versions: BTreeSet<String>,
    deletions: Vec<Deletion>,
    latency: [LatencySeries; 3],
    conditions: BTreeMap<String, ConditionState>,
    events_by_type: [u64; 7],
    outcomes_by_result: [u64; 5],
    invalid_by_reason: BTreeMap<String, u64>,
    seq: u64,
    /// The deployment's breach history (held by the engine; filled by `Engine::snapshot`).
    #[serde(default)]
    pub(crate) breaches: Vec<BreachSnap>,
    /// Notifications about the deployment not yet delivered when the snapshot was taken
    /// (opaque outbox entries; state-topic snapshots only): the instance that restores the
    /// deployment takes them over (issue 19).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<serde_json::Value>,
}

/// A [`crate::rules::BreachRecord`] in a snapshot (raw times, no deployment: the snapshot's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BreachSnap {
    pub condition: String,
    pub kind: String,
    pub severity: crate::rules::Severity,
    pub started_at: Millis,
    pub fired_at: Millis,
    pub resolved_at: Option<Millis>,
    pub value: Option<f64>,
    pub limit: serde_json::Value,
    pub notify: Vec<String>,
}

impl BreachSnap {
    pub(crate) fn of(b: &crate::rules::BreachRecord) -> Self {
        BreachSnap {
            condition: b.condition.clone(),
            kind: b.kind.clone(),
            severity: b.severity,
            started_at: b.started_at,
            fired_at: b.fired_at,
            resolved_at: b.resolved_at,
            value: b.value,
            limit: b.limit.clone(),
            notify: b.notify.clone(),
        }
    }

    pub(crate) fn into_record(self, deployment: &str) -> crate::rules::BreachRecord {
        crate::rules::BreachRecord {
            deployment_id: deployment.to_string(),
            condition: self.condition,
            kind: self.kind,
            severity: self.severity,
            started_at: self.started_at,
            fired_at: self.fired_at,
            resolved_at: self.resolved_at,
            value: self.value,
            limit: self.limit,
            notify: self.notify,
        }
    }
}

impl DeploymentSnapshot {
    pub fn of(d: &Deployment, through: Option<Through>, taken_at: Option<Millis>) -> Self {
        DeploymentSnapshot {
            snapshot_version: SNAPSHOT_VERSION,
            deployment_id: d.id.clone(),
            system: d.system,
            through,
            taken_at,
            phase: d.phase,
            started_at: d.started_at,
            stopped_at: d.stopped_at,
            stop_seen: d.stop_seen,
            first_ts: d.first_ts,
            last_ts: d.last_ts,
            groups: d.groups.attributes.clone(),
            total: d.total.clone(),
            windows: d.windows.clone(),
            alerts: {
                let mut a: Vec<(u64, AlertRec)> = d.alerts.iter().map(|(k, v)| (*k, v.clone())).collect();
                a.sort_unstable_by_key(|(k, _)| *k);
                a
            },
            slot_lists: d.slot_lists.to_vecs(),
            adjudication_deadlines: d.adjudication_deadlines.clone(),
            held: d
                .held
                .iter()
                .map(|(k, v)| {
                    let list = v
                        .iter()
                        .map(|h| HeldState { raw: String::from_utf8_lossy(&h.raw).into_owned(), held_at: h.held_at })
                        .collect();
                    (k.clone(), list)
                })
                .collect(),
            held_order: d.held_order.clone(),
            sources: d.sources.clone(),
            first_threshold: d.first_threshold,
            first_algorithm: d.first_algorithm.clone(),
            authorisation: d.authorisation.as_ref().map(AuthorisationState::from),
            authorisation_from_stream: d.authorisation_from_stream,
            window_tripped: d.window_tripped,
            announced_versions: d.announced_versions.clone(),
            unknown_versions: d.unknown_versions.clone(),
            deletions: d.deletions.clone(),
            latency: d.latency.clone(),
            conditions: d
                .conditions
                .iter()
                .map(|rt| {
                    let state = ConditionState {
                        kind: rt.condition.kind.name().to_string(),
                        lifecycle: rt.lifecycle.clone(),
                        instances: rt.instances.clone(),
                        drift: rt.drift.clone(),
                        drift_spec: rt.drift.as_ref().and_then(|ds| serde_json::to_string(&ds.spec).ok()),
                        seq: (rt.seq != Default::default())
                            .then(|| serde_json::to_string(&rt.condition.kind).ok().map(|k| (rt.seq.clone(), k)))
                            .flatten(),
                    };
                    (rt.condition.id.clone(), state)
                })
                .collect(),
            events_by_type: d.events_by_type,
            outcomes_by_result: d.outcomes_by_result,
            invalid_by_reason: d.invalid_by_reason.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            seq: d.seq,
            breaches: Vec::new(),
            outbox: Vec::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshot serialises")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        // The version first, so a newer snapshot is named as such rather than by its new fields.
        #[derive(Deserialize)]
        struct Version {
            snapshot_version: u32,
        }
        let v: Version = serde_json::from_slice(bytes).map_err(|e| format!("bad snapshot: {e}"))?;
        if v.snapshot_version != SNAPSHOT_VERSION {
            return Err(format!("snapshot_version {} is not supported", v.snapshot_version));
        }
        serde_json::from_slice(bytes).map_err(|e| format!("bad snapshot: {e}"))
    }

    /// Rebuilds the deployment under the current config.
    pub fn restore(self, config: &Config, groups: Arc<GroupIndex>) -> Deployment {
        let mut d = Deployment::new(&self.deployment_id, self.system, config, groups.clone());
        let same_groups = groups.attributes == self.groups;
        d.phase = self.phase;
        d.started_at = self.started_at;
        d.stopped_at = self.stopped_at;
        d.stop_seen = self.stop_seen;
        d.first_ts = self.first_ts;
        d.last_ts = self.last_ts;
        if same_groups {
            d.total = self.total;
            d.windows = self.windows;
            d.slot_lists = SlotLists::from_vecs(self.slot_lists, &groups);
        } else {
            // Different allow-list: per-group cells would be indexed wrongly; keep the counters
            // (the alerts' slot ids then resolve to no groups).
            d.total.counts = self.total.counts;
            d.slot_lists = SlotLists::emptied(self.slot_lists.len(), &groups);
        }
        d.alerts = self.alerts.into_iter().collect();
        d.adjudication_deadlines = self.adjudication_deadlines;
        for (alert_id, list) in self.held {
            let held: Vec<Held> = list
                .into_iter()
                .filter_map(|h| {
                    let event = parse_line(h.raw.as_bytes()).ok()?;
                    Some(Held { event, held_at: h.held_at, raw: Arc::from(h.raw.into_bytes()), origin: None })
                })
                .collect();
            if !held.is_empty() {
                d.held.insert(alert_id, held);
            }
        }
        d.held_order = self.held_order;
        d.sources = self.sources;
        d.first_threshold = self.first_threshold;
        d.first_algorithm = self.first_algorithm;
        // A config authorisation stands unless the stream supplied one (as at apply time).
        if self.authorisation_from_stream || d.authorisation.is_none() {
            d.authorisation = self.authorisation.map(Authorisation::from);
        }
        d.authorisation_from_stream = self.authorisation_from_stream;
        d.window_tripped = self.window_tripped;
        d.announced_versions = self.announced_versions;
        d.unknown_versions = self.unknown_versions;
        d.deletions = self.deletions;
        d.latency = self.latency;
        d.events_by_type = self.events_by_type;
        d.outcomes_by_result = self.outcomes_by_result;
        d.invalid_by_reason = self
            .invalid_by_reason
            .into_iter()
            .filter_map(|(k, v)| Reason::ALL.iter().find(|r| r.as_str() == k).map(|r| (r.as_str(), v)))
            .collect();
        d.seq = self.seq;
        let mut states = self.conditions;
        for rt in &mut d.conditions {
            let Some(st) = states.remove(&rt.condition.id) else { continue };
            if st.kind != rt.condition.kind.name() {
                continue;
            }
            rt.lifecycle = st.lifecycle;
            rt.instances = st.instances;
            if let Some((seq, kind)) = st.seq
                && serde_json::to_string(&rt.condition.kind).ok().as_deref() == Some(kind.as_str())
            {
                rt.seq = seq;
            }
            if let (Kind::Drift(spec), Some(mut ds)) = (&rt.condition.kind, st.drift)
                && st.drift_spec == serde_json::to_string(spec).ok()
            {
                ds.spec = spec.clone();
                rt.drift = Some(ds);
            }
        }
        d
    }
}
/// The file form of [`super::Engine::snapshot_all`] (`run` with `state_dir`).
/// Writes the whole engine state to `state_dir/snapshot.json` atomically (temp file, fsync,
/// rename).
pub fn write_file(engine: &super::SharedEngine, path: &Path) -> anyhow::Result<()> {
    // One writer at a time, from taking the state to the rename: the periodic write still in
    // flight at shutdown (its task dropped, its blocking write running on) and the final one
    // would otherwise share the temp file, or rename an older state over the newer.
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let bytes = {
        let engine = engine.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::to_vec(&engine.snapshot_all())?
    };
    crate::config::write_atomic(path, &bytes)?;
    Ok(())
}

/// Restores `state_dir/snapshot.json` if it exists; a corrupt one is an error (not silently lost).
pub fn restore_file(engine: &super::SharedEngine, path: &Path) -> anyhow::Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a snapshot", path.display()))?;
    let mut engine = engine.lock().unwrap_or_else(|p| p.into_inner());
    let n = engine.restore_all(&v).map_err(|e| anyhow::anyhow!("restoring {}: {e}", path.display()))?;
    tracing::info!(deployments = n, path = %path.display(), "state restored from snapshot");
    Ok(())
}
