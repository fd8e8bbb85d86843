//! The deterministic engine: every event goes through [`Engine::ingest`]; conditions are
//! evaluated once per second of engine clock; breach transitions and dead letters queue up for
//! the caller to drain.
//!
//! The engine never reads a clock. In `event` mode its clock is the watermark (largest applied
//! event `ts`), so a replay of the same input gives the same output byte for byte; in `wall`
//! mode the caller passes the receive time with every event and calls [`Engine::tick`].

pub mod calibration;
mod dedup;
mod deployment;
mod eval;
mod round;
mod series;
pub mod snapshot;
mod summary;
pub mod tally;

pub use deployment::{Applied, ConditionRuntime, Deployment, SourceState};
pub use eval::{disparity_evaluation, drift_evaluation, quantile_evaluation, rate_evaluation};
pub use series::{DriftState, LatencySeries, Sequential};
pub use summary::*;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{ClockMode, Config};
use crate::event::{Body, Event, EventType, Invalid, Millis, Reason, parse_line};
use crate::rules::{BreachState, Transition, TransitionKind};

use dedup::{Dedup, fingerprint};
pub use dedup::{Spill, SpillCounts};
use deployment::Held;
use tally::GroupIndex;

/// An event that was not applied, for the dead-letter sink.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: Reason,
    pub detail: String,
    pub deployment_id: Option<String>,
    pub payload: Arc<[u8]>,
    /// Kafka coordinates of the message, set by the Kafka source (DLQ headers).
    pub origin: Option<snapshot::Through>,
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    Applied(EventType),
    Held,
    Duplicate,
    Invalid(Reason),
}

pub use crate::rules::BreachRecord;

/// The engine shared by the sources, the HTTP API and the metrics.
pub type SharedEngine = Arc<std::sync::Mutex<Engine>>;

pub struct Engine {
    config: Arc<Config>,
    groups: Arc<GroupIndex>,
    mode: ClockMode,
    clock: Option<Millis>,
    last_eval_sec: Option<i64>,
    deployments: BTreeMap<String, Deployment>,
    /// Remembered event ids per deployment (looked up for every event: a fast hasher, seeded per
    /// process).
    dedup: HashMap<String, Dedup, foldhash::quality::RandomState>,
    /// Where remembered event ids' sorted runs go (`state_dir/dedup` under `run`).
    spill: Option<Arc<Spill>>,
    transitions: Vec<Transition>,
    dead: Vec<DeadLetter>,
    breaches: crate::rules::BreachBook,
    /// Read positions of `file` sources (path → byte offset), kept with the state they produced
    /// so a restored snapshot resumes each file exactly where its events stop.
    pub source_positions: BTreeMap<String, u64>,
    /// Deployment phase changes (for the audit log), drained by the pipeline.
    lifecycle: Vec<(String, crate::event::Phase, Millis)>,
    /// Event mode: valid events more than `max_future` ahead of the clock, in arrival order
    /// (README "Semantics", future timestamps).
    future: Vec<FutureHeld>,
    /// Wall mode: breaches receivers were told are firing, taken over from the outbox after a
    /// restart ((deployment, condition) → (event-time anchor, fired at)); each is applied at the
    /// condition's next evaluation (see [`Lifecycle::seed`](crate::rules::Lifecycle::seed)).
    seeds: HashMap<(String, String), (Millis, Millis)>,
    /// Where the message being ingested came from (Kafka): its dead letters carry it, and so do
    /// the events it leaves held, whose dead letters may come much later.
    origin: Option<snapshot::Through>,
    /// Deployments retired (`engine.retain_stopped`), by id: their later events are
    /// dead-lettered `retired_deployment`, never applied to a fresh, empty state.
    retired: BTreeMap<String, Retired>,
    /// Final summaries of deployments retired since the last drain (when handed off).
    retiring: Vec<DeploymentSummary>,
    /// Final summaries do not stay in memory (they are kept in `state_dir/records`).
    hand_off_retired: bool,
    /// Final summaries also go to [`Engine::drain_retired`] (records, state-topic markers).
    emit_retired: bool,
    /// Threads that evaluate deployments (`engine.workers`).
    workers: usize,
    /// Every condition evaluated in full every round (`replay --full-evaluation`).
    full_evaluation: bool,
    pub stats: EngineStats,
}

/// Below this many deployments a worker costs more (a thread per evaluation round) than it saves.
const MIN_DEPLOYMENTS_PER_WORKER: usize = 16;

/// What a deployment's evaluation round reads of the engine.
pub(crate) struct RoundCtx<'a> {
    pub config: &'a Config,
    pub mode: ClockMode,
    /// Open breaches taken over from the outbox (wall mode), read only: those used are removed
    /// afterwards ([`Round::seeds_used`]).
    pub seeds: &'a HashMap<(String, String), (Millis, Millis)>,
    /// Deployments with events held beyond the clock's horizon (not retired meanwhile).
    pub future: &'a std::collections::HashSet<&'a str>,
    pub now: Millis,
    pub end_of_input: bool,
    /// Whether conditions of unchanged deployments may be refreshed (`eval::refresh`).
    pub refresh: bool,
}

/// What one deployment's evaluation round produced for the engine-wide state.
pub(crate) struct Round {
    /// Held decisions/outcomes whose alert never came, to dead-letter `orphan`.
    pub orphans: Vec<Held>,
    /// Breach-book operations, in the order they happened.
    pub book: Vec<BookOp>,
    /// Seeds applied (or found) this round.
    pub seeds_used: Vec<(String, String)>,
    pub retire: bool,
    /// Conditions evaluated in full, and refreshed (`eval::refresh`).
    pub evaluated: u64,
    pub refreshed: u64,
}

impl Round {
    /// Nothing for the engine to apply but the counts.
    fn is_quiet(&self) -> bool {
        self.orphans.is_empty() && self.book.is_empty() && self.seeds_used.is_empty() && !self.retire
    }
}

pub(crate) enum BookOp {
    TakeOver {
        cond_id: String,
        condition: Arc<crate::rules::Condition>,
        anchor: Millis,
        fired_at: Millis,
        limit: serde_json::Value,
    },
    Transition(Box<Transition>),
}

/// What the engine keeps of a retired deployment.
#[derive(Debug)]
enum Retired {
    /// Its final summary (replay, and `run` with nowhere to write it).
    Kept(Box<DeploymentSummary>),
    /// Only its id: the summary went to [`Engine::drain_retired`] (≈ 100 bytes a deployment).
    HandedOff,
}

/// The deployment `id`, created on first sight; its conditions set once its system is known.
fn deployment_in<'a>(
    deployments: &'a mut BTreeMap<String, Deployment>,
    config: &Arc<Config>,
    groups: &Arc<GroupIndex>,
    id: &str,
    system: Option<crate::event::System>,
) -> &'a mut Deployment {
    if !deployments.contains_key(id) {
        deployments.insert(id.to_string(), Deployment::new(id, system, config, groups.clone()));
    }
    let d = deployments.get_mut(id).expect("inserted above");
    // The caller is about to change it: its conditions evaluate in full next time.
    d.changes += 1;
    if d.system.is_none() && system.is_some() {
        d.system = system;
        d.set_conditions(config);
    }
    d
}

/// The key an event is remembered by for duplicate detection (a fingerprint of its `event_id`,
/// the same in every process; see `dedup.rs`).
pub fn event_key(ev: &Event) -> u64 {
    fingerprint(&ev.event_id)
}

/// `engine.workers`, or the available cores.
fn config_workers(config: &Config) -> usize {
    config
        .raw
        .engine
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
        .max(1)
}

/// An event held because it lies beyond the clock's horizon.
#[derive(Debug)]
struct FutureHeld {
    origin: Option<snapshot::Through>,
    event: Event,
    payload: Arc<[u8]>,
    receive: Millis,
    /// The engine clock when it was held.
    held_at: Millis,
}

/// How many valid events beyond the horizon make the clock jump (a gap in the stream, not a
/// corrupt timestamp).
pub const FUTURE_JUMP: usize = 10;

/// Process-wide totals (the metrics read them at scrape time).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineStats {
    pub applied_by_type: [u64; 7],
    pub invalid_total: u64,
    pub invalid_by_reason: BTreeMap<&'static str, u64>,
    pub duplicates: u64,
    pub held: u64,
    pub transitions_firing: u64,
    pub transitions_resolved: u64,
    pub evaluations: u64,
    /// Event mode: events held because they lay beyond the clock's horizon (a gap in the
    /// stream, partitions read at different positions, or a corrupt timestamp).
    #[serde(skip)]
    pub future_held: u64,
    /// Deployments retired (`engine.retain_stopped`) since start.
    #[serde(skip)]
    pub retired: u64,
    /// Condition evaluations done in full, and those whose unchanged inputs let only their
    /// clock-driven part be brought up to date (`eval::refresh`).
    #[serde(skip)]
    pub conditions_evaluated: u64,
    #[serde(skip)]
    pub conditions_refreshed: u64,
}

/// A breach the outbox holds as firing (its `firing` notification enqueued, no `resolved`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBreach {
    pub deployment_id: String,
    pub condition: String,
    /// The breach's key time (`started_at` of its notifications).
    pub started_at: Millis,
    pub fired_at: Millis,
}

impl Engine {
    pub fn new(config: Arc<Config>, mode: ClockMode) -> Self {
        Engine {
            workers: config_workers(&config),
            full_evaluation: false,
            groups: Arc::new(GroupIndex::new(&config.groups)),
            config,
            mode,
            clock: None,
            last_eval_sec: None,
            deployments: BTreeMap::new(),
            dedup: HashMap::default(),
            spill: None,
            transitions: Vec::new(),
            dead: Vec::new(),
            breaches: crate::rules::BreachBook::default(),
            future: Vec::new(),
            seeds: HashMap::new(),
            origin: None,
            lifecycle: Vec::new(),
            source_positions: BTreeMap::new(),
            retired: BTreeMap::new(),
            retiring: Vec::new(),
            hand_off_retired: false,
            emit_retired: false,
            stats: EngineStats::default(),
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Evaluates deployments on `n` threads from now on (at least 1); the output is the same for
    /// every `n`.
    pub fn set_workers(&mut self, n: usize) {
        self.workers = n.max(1);
    }

    /// Evaluates every condition in full every round, instead of only bringing the clock-driven
    /// part up to date where a deployment had no input (`eval::refresh`). The output is the same.
    pub fn set_full_evaluation(&mut self, full: bool) {
        self.full_evaluation = full;
    }

    /// The origin of the messages ingested from now on (None: not from Kafka).
    pub fn set_origin(&mut self, origin: Option<snapshot::Through>) {
        self.origin = origin;
    }

    /// Events held beyond the clock's horizon right now (README "Semantics").
    pub fn future_held_now(&self) -> usize {
        self.future.len()
    }

    /// Engine clock (None before the first event in event mode).
    pub fn now(&self) -> Option<Millis> {
        self.clock
    }

    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.deployments.values()
    }

    pub fn deployment(&self, id: &str) -> Option<&Deployment> {
        self.deployments.get(id)
    }

    /// The deployment's state as bytes (see [`snapshot`]).
    pub fn snapshot(&self, id: &str, through: Option<snapshot::Through>) -> Option<Vec<u8>> {
        self.snapshot_with_outbox(id, through, Vec::new())
    }

    /// [`Engine::snapshot`] carrying the deployment's undelivered notifications (state topic).
    pub fn snapshot_with_outbox(
        &self,
        id: &str,
        through: Option<snapshot::Through>,
        outbox: Vec<serde_json::Value>,
    ) -> Option<Vec<u8>> {
        let mut s = self.deployment_snapshot(id, through)?;
        s.outbox = outbox;
        Some(s.to_bytes())
    }

    fn deployment_snapshot(
        &self,
        id: &str,
        through: Option<snapshot::Through>,
    ) -> Option<snapshot::DeploymentSnapshot> {
        let d = self.deployments.get(id)?;
        let mut s = snapshot::DeploymentSnapshot::of(d, through, self.clock);
        s.breaches = self.breaches.of(id).map(snapshot::BreachSnap::of).collect();
        Some(s)
    }

    /// Replaces a deployment's breach history.
    fn restore_breaches(&mut self, id: &str, list: Vec<snapshot::BreachSnap>) {
        self.breaches.replace(id, list.into_iter().map(|b| b.into_record(id)).collect());
    }

    /// Replaces (or adds) a deployment from a snapshot; returns its id and the offset it covers.
    /// Event ids are not in snapshots: re-delivery after a restore is skipped by offset (Kafka).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(String, Option<snapshot::Through>), String> {
        let mut s = snapshot::DeploymentSnapshot::from_bytes(bytes)?;
        let (id, through, last_ts) = (s.deployment_id.clone(), s.through.clone(), s.taken_at);
        let breaches = std::mem::take(&mut s.breaches);
        let d = s.restore(&self.config, self.groups.clone());
        self.restore_breaches(&id, breaches);
        if self.mode == ClockMode::Event
            && let Some(t) = last_ts.or(d.last_ts)
        {
            self.clock = Some(self.clock.map_or(t, |c| c.max(t)));
            // The second the snapshot was taken in was evaluated where it was taken (the clock
            // entering a second evaluates first): not again here, so state that counts
            // evaluations (Shiryaev–Roberts detectors) continues exactly.
            let sec = t.div_euclid(1000);
            self.last_eval_sec = Some(self.last_eval_sec.map_or(sec, |s| s.max(sec)));
        }
        self.retired.remove(&id);
        self.deployments.insert(id.clone(), d);
        Ok((id, through))
    }

    /// The whole engine state for `state_dir/snapshot.json`: clock, file positions, breach
    /// history and every deployment.
    pub fn snapshot_all(&self) -> serde_json::Value {
        let deployments: Vec<serde_json::Value> = self
            .deployments
            .keys()
            .filter_map(|id| self.deployment_snapshot(id, None))
            .map(|s| serde_json::to_value(s).expect("snapshot"))
            .collect();
        serde_json::json!({
            "engine_snapshot_version": 1,
            "clock": self.clock,
            "source_positions": self.source_positions,
            "stats": self.stats,
            "deployments": deployments,
            "retired": self.retired.keys().collect::<Vec<_>>(),
        })
    }

    /// Restores [`Engine::snapshot_all`]; returns how many deployments came back.
    pub fn restore_all(&mut self, v: &serde_json::Value) -> Result<usize, String> {
        if v["engine_snapshot_version"] != 1 {
            return Err("engine_snapshot_version is not 1".into());
        }
        let mut n = 0;
        for d in v["deployments"].as_array().ok_or("no deployments array")? {
            self.restore(&serde_json::to_vec(d).map_err(|e| e.to_string())?)?;
            n += 1;
        }
        if let Some(c) = v["clock"].as_i64() {
            self.clock = Some(self.clock.map_or(c, |x| x.max(c)));
        }
        for id in v["retired"].as_array().into_iter().flatten().filter_map(|i| i.as_str()) {
            self.mark_retired(id);
        }
        if let Some(p) = v["source_positions"].as_object() {
            for (k, pos) in p {
                self.source_positions.insert(k.clone(), pos.as_u64().unwrap_or(0));
            }
        }
        if let Some(s) = v.get("stats") {
            let s = s.clone();
            self.stats.applied_by_type = serde_json::from_value(s["applied_by_type"].clone()).unwrap_or_default();
            self.stats.invalid_total = s["invalid_total"].as_u64().unwrap_or(0);
            self.stats.duplicates = s["duplicates"].as_u64().unwrap_or(0);
            self.stats.held = s["held"].as_u64().unwrap_or(0);
            for (k, c) in s["invalid_by_reason"].as_object().into_iter().flatten() {
                if let Some(r) = Reason::ALL.iter().find(|r| r.as_str() == k) {
                    self.stats.invalid_by_reason.insert(r.as_str(), c.as_u64().unwrap_or(0));
                }
            }
        }
        Ok(n)
    }

    /// Wall mode: takes over the open breaches the outbox holds (see [`Lifecycle::seed`](crate::rules::Lifecycle::seed)), so a
    /// restart that lost the state behind them neither fires them again under a new id nor
    /// leaves their ids unresolved. Event mode needs none: its re-read is deterministic and
    /// re-derives the same keys, which the outbox de-duplicates. Returns how many were taken.
    pub fn seed_open_breaches(&mut self, open: impl IntoIterator<Item = OpenBreach>) -> usize {
        if self.mode != ClockMode::Wall {
            return 0;
        }
        let before = self.seeds.len();
        // A retired deployment's breaches are never evaluated again (nothing would take them).
        for b in open.into_iter().filter(|b| !self.retired.contains_key(&b.deployment_id)) {
            self.seeds.insert((b.deployment_id, b.condition), (b.started_at, b.fired_at));
        }
        self.seeds.len() - before
    }

    /// Keeps remembered event ids on disk in `dir` from now on (emptied first): ≈ 2 bytes an id in
    /// memory instead of 8 up to `engine.dedup_index_mb` of indexes, none beyond (see `dedup.rs`).
    pub fn spill_dedup_to(&mut self, dir: &std::path::Path) -> std::io::Result<()> {
        let budget = self.config.raw.engine.dedup_index_mb as u64 * (1 << 20);
        self.spill = Some(Spill::open(dir, Spill::RUN_LEN, budget)?);
        Ok(())
    }

    /// The dedup spill's counters (all zero without one).
    pub fn dedup_spill_counts(&self) -> SpillCounts {
        self.spill.as_deref().map(Spill::counts).unwrap_or_default()
    }

    /// Forgets a deployment (it moved to another instance).
    pub fn remove(&mut self, id: &str) -> bool {
        self.dedup.remove(id);
        // Its events held beyond the horizon go with it (applied here later, they would recreate
        // a deployment this instance no longer owns).
        self.future.retain(|f| f.event.deployment_id != id);
        self.restore_breaches(id, Vec::new());
        self.deployments.remove(id).is_some()
    }

    /// Final summaries of retired deployments go to [`Engine::drain_retired`] from now on (the
    /// pipeline writes them to `state_dir/records` and the state topic).
    pub fn emit_retired(&mut self) {
        self.emit_retired = true;
    }

    /// Only retired deployments' ids stay in memory from now on: their final summaries are
    /// emitted ([`Engine::emit_retired`]) and kept in `state_dir/records`.
    pub fn hand_off_retired(&mut self) {
        self.emit_retired = true;
        self.hand_off_retired = true;
    }

    /// A final summary that could not be kept where it was handed (its record not written): kept
    /// in memory instead, so the API still serves it.
    pub fn keep_retired(&mut self, summary: DeploymentSummary) {
        if let Some(r) = self.retired.get_mut(&summary.deployment_id) {
            *r = Retired::Kept(Box::new(summary));
        }
    }

    /// Records that `id` was retired elsewhere (a state-topic marker, a whole-engine snapshot):
    /// its later events are dead-lettered. A live deployment `id` is left alone.
    pub fn mark_retired(&mut self, id: &str) {
        if !self.deployments.contains_key(id) && !self.retired.contains_key(id) {
            self.retired.insert(id.to_string(), Retired::HandedOff);
        }
    }

    /// Whether `id` was retired.
    pub fn is_retired(&self, id: &str) -> bool {
        self.retired.contains_key(id)
    }

    /// How many deployments are retired (ids remembered).
    pub fn retired_len(&self) -> usize {
        self.retired.len()
    }

    /// The final summaries of deployments retired since the last call (when handed off).
    pub fn drain_retired(&mut self) -> Vec<DeploymentSummary> {
        std::mem::take(&mut self.retiring)
    }

    /// Retires `id` at `now`: its final summary (with its breaches) is kept or handed off, and
    /// its state, remembered event ids and breach history leave memory.
    fn retire(&mut self, id: &str, now: Millis) {
        let Some(mut s) = self.deployment_summary(id) else { return };
        s.retired_at = Some(now);
        self.deployments.remove(id);
        self.dedup.remove(id);
        self.breaches.replace(id, Vec::new());
        self.seeds.retain(|(d, _), _| d != id);
        self.stats.retired += 1;
        if self.emit_retired {
            self.retiring.push(s.clone());
        }
        let kept = if self.hand_off_retired { Retired::HandedOff } else { Retired::Kept(Box::new(s)) };
        self.retired.insert(id.to_string(), kept);
    }

    /// Event ids currently remembered for duplicate detection, over all deployments.
    pub fn dedup_len(&self) -> usize {
        self.dedup.values().map(Dedup::len).sum()
    }

    pub fn breaches(&self) -> &[BreachRecord] {
        self.breaches.all()
    }

    pub fn drain_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.transitions)
    }

    pub fn drain_lifecycle(&mut self) -> Vec<(String, crate::event::Phase, Millis)> {
        std::mem::take(&mut self.lifecycle)
    }

    pub fn drain_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }

    /// Replaces the configuration; statistics and lifecycles of unchanged conditions stay.
    pub fn reload(&mut self, config: Arc<Config>) {
        self.groups = Arc::new(GroupIndex::new(&config.groups));
        self.workers = config_workers(&config);
        self.config = config;
        for d in self.deployments.values_mut() {
            d.set_conditions(&self.config);
        }
    }

    /// Parses and applies one message. `receive` is the wall time it arrived.
    pub fn ingest(&mut self, payload: &[u8], receive: Millis) -> Ingested {
        match parse_line(payload) {
            Ok(ev) => self.apply(&ev, None, payload, receive),
            Err(e) => self.reject(e, payload),
        }
    }

    /// Applies an already-parsed message (HTTP JSON arrays, replay's reader stage). Borrowed, so
    /// the caller drops it where it was made (an event is copied only when it is held).
    pub fn ingest_parsed(&mut self, parsed: &Result<Event, Invalid>, payload: &[u8], receive: Millis) -> Ingested {
        self.ingest_keyed(parsed.as_ref(), None, payload, receive)
    }

    /// [`Engine::ingest_parsed`] with the event's [`event_key`] where the caller has it (computed
    /// on the thread that parsed the event: `replay`'s parse stage).
    pub fn ingest_keyed(
        &mut self,
        parsed: Result<&Event, &Invalid>,
        key: Option<u64>,
        payload: &[u8],
        receive: Millis,
    ) -> Ingested {
        match parsed {
            Ok(ev) => self.apply(ev, key, payload, receive),
            Err(e) => self.reject(e.clone(), payload),
        }
    }

    /// Dead-letters the message being ingested.
    fn reject(&mut self, e: Invalid, payload: &[u8]) -> Ingested {
        let origin = self.origin.clone();
        self.reject_from(e, payload, origin)
    }

    /// Dead-letters an event that came from `origin` (a held one: not the current message).
    fn reject_from(&mut self, e: Invalid, payload: &[u8], origin: Option<snapshot::Through>) -> Ingested {
        let reason = e.reason;
        self.stats.invalid_total += 1;
        *self.stats.invalid_by_reason.entry(reason.as_str()).or_default() += 1;
        if let Some(id) = &e.deployment_id
            && !self.retired.contains_key(id)
        {
            let d = self.deployment_mut(id, e.system);
            d.total.counts[crate::rules::Counter::Invalid.index()] += 1;
            *d.invalid_by_reason.entry(reason.as_str()).or_default() += 1;
        }
        self.dead.push(DeadLetter {
            reason,
            detail: e.detail,
            deployment_id: e.deployment_id,
            payload: Arc::from(payload),
            origin,
        });
        Ingested::Invalid(reason)
    }

    fn deployment_mut(&mut self, id: &str, system: Option<crate::event::System>) -> &mut Deployment {
        deployment_in(&mut self.deployments, &self.config, &self.groups, id, system)
    }

    /// Applies a valid event, or holds it when it lies more than `max_future` ahead of the clock
    /// (README "Semantics"): in wall mode such an event is dead-lettered at once (the wall clock
    /// at receipt is the reference); in event mode it is held, and
    /// - once [`FUTURE_JUMP`] events are held, the clock jumps: held events are applied, in
    ///   arrival order, if they lie within `max_future` of the later of the clock and the earliest
    ///   held `ts` (a gap in the stream costs nothing);
    /// - whenever the clock moves, held events now within its horizon are applied;
    /// - a held event still beyond the horizon after the clock advanced `max_future` since it was
    ///   held, or at end of input, is dead-lettered `future_timestamp` (a corrupt timestamp moves
    ///   no clock and changes no state).
    fn apply(&mut self, ev: &Event, key: Option<u64>, payload: &[u8], receive: Millis) -> Ingested {
        if self.retired.contains_key(&ev.deployment_id) {
            let e = Invalid {
                reason: Reason::RetiredDeployment,
                detail: format!(
                    "its deployment was retired ({} after it stopped); events after that are not applied",
                    self.config.raw.engine.retain_stopped
                ),
                deployment_id: Some(ev.deployment_id.clone()),
                system: Some(ev.system),
            };
            return self.reject(e, payload);
        }
        let horizon = self.config.raw.engine.max_future.ms();
        match (self.mode, self.clock) {
            (ClockMode::Wall, _) if ev.ts > receive + horizon => {
                let e = self.future_invalid(ev, "the wall clock at receipt");
                return self.reject(e, payload);
            }
            (ClockMode::Event, Some(clock)) if ev.ts > clock + horizon => {
                // A re-sent copy of a held event is a duplicate, not one more reason to jump.
                if self
                    .future
                    .iter()
                    .any(|f| f.event.event_id == ev.event_id && f.event.deployment_id == ev.deployment_id)
                {
                    self.stats.duplicates += 1;
                    return Ingested::Duplicate;
                }
                let origin = self.origin.clone();
                self.future.push(FutureHeld {
                    origin,
                    event: ev.clone(),
                    payload: Arc::from(payload),
                    receive,
                    held_at: clock,
                });
                self.stats.future_held += 1;
                if self.future.len() >= FUTURE_JUMP {
                    let earliest = self.future.iter().map(|f| f.event.ts).min();
                    self.settle_future(earliest);
                }
                return Ingested::Held;
            }
            _ => {}
        }
        let r = self.apply_now(ev, key, payload, receive);
        if !self.future.is_empty() {
            self.settle_future(None);
        }
        r
    }

    fn future_invalid(&self, ev: &Event, reference: &str) -> Invalid {
        Invalid {
            reason: Reason::FutureTimestamp,
            detail: format!("ts is more than {} ahead of {reference}", self.config.raw.engine.max_future),
            deployment_id: Some(ev.deployment_id.clone()),
            system: Some(ev.system),
        }
    }

    /// Applies the held future events that are now within the horizon of the clock (or of
    /// `floor`, the jump target), in arrival order, until none is; then dead-letters those held
    /// for longer than `max_future` of clock.
    fn settle_future(&mut self, floor: Option<Millis>) {
        let horizon = self.config.raw.engine.max_future.ms();
        // Against the later of the clock and the jump target (events are held only once the clock
        // is set); each one applied may move the clock.
        while let Some(reference) = self.clock.max(floor) {
            let Some(i) = self.future.iter().position(|f| f.event.ts <= reference + horizon) else { break };
            let f = self.future.remove(i);
            // Whatever it holds or dead-letters came from its own message.
            let current = std::mem::replace(&mut self.origin, f.origin);
            self.apply_now(&f.event, None, &f.payload, f.receive);
            self.origin = current;
        }
        let Some(clock) = self.clock else { return };
        let (expired, keep): (Vec<FutureHeld>, Vec<FutureHeld>) =
            std::mem::take(&mut self.future).into_iter().partition(|f| clock - f.held_at > horizon);
        self.future = keep;
        for f in expired {
            let e = self.future_invalid(&f.event, "the engine clock");
            self.reject_from(e, &f.payload, f.origin);
        }
    }

    fn apply_now(&mut self, ev: &Event, key: Option<u64>, payload: &[u8], receive: Millis) -> Ingested {
        let now = match self.mode {
            ClockMode::Event => self.clock.unwrap_or(ev.ts),
            ClockMode::Wall => receive,
        };
        let engine_cfg = &self.config.raw.engine;
        let timeout = engine_cfg.adjudication_timeout;
        // The clock a newly applied event would set (watermark in event mode).
        let new_clock = match self.mode {
            ClockMode::Event => Some(self.clock.map_or(ev.ts, |c| c.max(ev.ts))),
            ClockMode::Wall => Some(receive),
        };
        let eval_now = new_clock.unwrap_or(now);
        // Every event that gets this far is remembered, whatever the deployment does with it.
        let key = key.unwrap_or_else(|| event_key(ev));
        let remember = |d: &mut Dedup| {
            d.insert(key, eval_now, engine_cfg.dedup_horizon.ms(), engine_cfg.dedup_min_ids, self.spill.as_ref())
        };
        // One lookup for a known deployment (nearly every event).
        let fresh = match self.dedup.get_mut(&ev.deployment_id) {
            Some(d) => remember(d),
            None => {
                let mut d = Dedup::default();
                let fresh = remember(&mut d);
                self.dedup.insert(ev.deployment_id.clone(), d);
                fresh
            }
        };
        if !fresh {
            self.stats.duplicates += 1;
            let d = self.deployment_mut(&ev.deployment_id, Some(ev.system));
            d.total.counts[crate::rules::Counter::Duplicates.index()] += 1;
            return Ingested::Duplicate;
        }
        let mode = self.mode;
        // Only a held event keeps its origin (cloned then, not for every event).
        let origin = &self.origin;
        // Borrows only the fields it needs: the origin stays readable.
        let d = deployment_in(&mut self.deployments, &self.config, &self.groups, &ev.deployment_id, Some(ev.system));
        let outcome = d.apply(ev, eval_now, timeout);
        match outcome {
            Applied::Duplicate => {
                d.total.counts[crate::rules::Counter::Duplicates.index()] += 1;
                self.stats.duplicates += 1;
                return Ingested::Duplicate;
            }
            Applied::Hold => {
                let alert_id = match &ev.body {
                    Body::Adjudication(a) => a.alert_id.clone(),
                    Body::Outcome(o) => o.alert_id.clone(),
                    _ => unreachable!("only decisions and outcomes are held"),
                };
                d.held_order.push_back((now, alert_id.clone()));
                d.held.entry(alert_id).or_default().push(Held {
                    event: ev.clone(),
                    held_at: now,
                    raw: Arc::from(payload),
                    origin: origin.clone(),
                });
                self.stats.held += 1;
                return Ingested::Held;
            }
            Applied::Applied => {}
        }
        if mode == ClockMode::Wall {
            if let Some(emitted) = ev.ts_emitted {
                d.observe_skew(&ev.source_id, emitted - receive, ev.ts);
            }
            d.record_lag(receive - ev.ts, ev.ts, receive);
        }
        // An alert releases decisions/outcomes that arrived before it, in arrival order.
        let mut released = Vec::new();
        if let Body::Alert(a) = &ev.body
            && let Some(held) = d.held.remove(&a.alert_id)
        {
            for h in held {
                d.apply(&h.event, eval_now, timeout);
                released.push(h.event.body.kind());
            }
        }
        for k in released {
            self.stats.applied_by_type[k.index()] += 1;
        }
        if let Body::Deployment(dep) = &ev.body {
            self.lifecycle.push((ev.deployment_id.clone(), dep.phase, ev.ts));
        }
        self.stats.applied_by_type[ev.body.kind().index()] += 1;
        if self.mode == ClockMode::Event {
            self.clock = new_clock;
            self.maybe_evaluate();
        }
        Ingested::Applied(ev.body.kind())
    }

    /// Wall mode: advance the clock to `now` and evaluate if a new second began.
    pub fn tick(&mut self, now: Millis) {
        if self.mode == ClockMode::Wall {
            self.clock = Some(self.clock.map_or(now, |c| c.max(now)));
            self.maybe_evaluate();
        }
    }

    fn maybe_evaluate(&mut self) {
        let Some(now) = self.clock else { return };
        let sec = now.div_euclid(1000);
        if self.last_eval_sec.is_some_and(|s| s >= sec) {
            return;
        }
        self.last_eval_sec = Some(sec);
        self.evaluate_all(now, false);
    }

    /// End of replay input: held orphans are dead-lettered, then a final evaluation at the
    /// current clock (which does not move).
    pub fn finish(&mut self) {
        // Held future events that never became due: dead-lettered, the clock unmoved.
        for f in std::mem::take(&mut self.future) {
            let e = self.future_invalid(&f.event, "the engine clock");
            self.reject_from(e, &f.payload, f.origin);
        }
        let Some(now) = self.clock else { return };
        self.evaluate_all(now, true);
    }

    /// Evaluates every deployment at `now`: each deployment's round (orphans, conditions,
    /// retirement) depends on that deployment alone, so rounds run on up to `workers` threads
    /// over contiguous runs of deployments; what they produce is applied to the engine in
    /// deployment-id order, as one thread would have, so the output does not depend on the
    /// number of workers (tests/determinism.rs).
    fn evaluate_all(&mut self, now: Millis, end_of_input: bool) {
        self.stats.evaluations += 1;
        let future: std::collections::HashSet<&str> =
            self.future.iter().map(|f| f.event.deployment_id.as_str()).collect();
        let ctx = RoundCtx {
            config: &self.config,
            mode: self.mode,
            seeds: &self.seeds,
            future: &future,
            now,
            end_of_input,
            refresh: !self.full_evaluation,
        };
        let mut list: Vec<(&String, &mut Deployment)> = self.deployments.iter_mut().collect();
        let workers = self.workers.min(list.len() / MIN_DEPLOYMENTS_PER_WORKER).max(1);
        let ctx = &ctx;
        // Quiet rounds (most of them) are counted here, not handed back.
        let run = |chunk: &mut [(&String, &mut Deployment)]| -> (Vec<(String, Round)>, u64, u64) {
            let (mut out, mut evaluated, mut refreshed) = (Vec::new(), 0, 0);
            for (id, d) in chunk.iter_mut() {
                let round = d.evaluate_round(id, ctx);
                evaluated += round.evaluated;
                refreshed += round.refreshed;
                if !round.is_quiet() {
                    out.push(((*id).clone(), round));
                }
            }
            (out, evaluated, refreshed)
        };
        let rounds = if workers <= 1 {
            run(&mut list)
        } else {
            let per = list.len().div_ceil(workers);
            std::thread::scope(|scope| {
                let mut chunks = list.chunks_mut(per);
                let first = chunks.next().expect("at least one deployment");
                let handles: Vec<_> = chunks.map(|chunk| scope.spawn(move || run(chunk))).collect();
                let mut out = run(first);
                for h in handles {
                    let (rounds, evaluated, refreshed) = h.join().expect("an evaluation worker panicked");
                    out.0.extend(rounds);
                    out.1 += evaluated;
                    out.2 += refreshed;
                }
                out
            })
        };
        let (rounds, evaluated, refreshed) = rounds;
        self.stats.conditions_evaluated += evaluated;
        self.stats.conditions_refreshed += refreshed;
        for (id, round) in rounds {
            self.apply_round(&id, round, now);
        }
    }

    /// Applies one deployment's round to the engine-wide state, in the order one thread would have.
    fn apply_round(&mut self, id: &str, round: Round, now: Millis) {
        for h in round.orphans {
            self.stats.invalid_total += 1;
            *self.stats.invalid_by_reason.entry(Reason::Orphan.as_str()).or_default() += 1;
            self.dead.push(DeadLetter {
                reason: Reason::Orphan,
                detail: format!("no alert with this alert_id arrived within {}", self.config.raw.engine.orphan_hold),
                deployment_id: Some(id.to_string()),
                payload: h.raw,
                origin: h.origin,
            });
        }
        for key in round.seeds_used {
            self.seeds.remove(&key);
        }
        for op in round.book {
            match op {
                BookOp::TakeOver { cond_id, condition, anchor, fired_at, limit } => {
                    self.breaches.take_over(id, &cond_id, &condition, anchor, fired_at, limit)
                }
                BookOp::Transition(t) => {
                    match t.state {
                        TransitionKind::Firing => self.stats.transitions_firing += 1,
                        TransitionKind::Resolved => self.stats.transitions_resolved += 1,
                    }
                    self.breaches.record(&t);
                    self.transitions.push(*t);
                }
            }
        }
        if round.retire {
            self.retire(id, now);
        }
    }

    /// One deployment's summary with its breach history.
    pub fn deployment_summary(&self, id: &str) -> Option<DeploymentSummary> {
        let Some(d) = self.deployments.get(id) else {
            return match self.retired.get(id)? {
                Retired::Kept(s) => Some((**s).clone()),
                Retired::HandedOff => None,
            };
        };
        let mut s = DeploymentSummary::of(d);
        s.breaches = self.breaches.of(id).cloned().collect();
        Some(s)
    }

    /// Summary of every deployment plus process-wide invalid counts (`replay --summary`).
    pub fn summary(&self) -> ReplaySummary {
        ReplaySummary {
            summary_version: 1,
            // Live and retired (kept) ones, in id order.
            deployments: {
                let mut ids: Vec<&String> = self.deployments.keys().chain(self.retired.keys()).collect();
                ids.sort();
                ids.into_iter().filter_map(|id| self.deployment_summary(id)).collect()
            },
            invalid: InvalidSummary {
                total: self.stats.invalid_total,
                by_reason: self.stats.invalid_by_reason.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            },
            duplicates: self.stats.duplicates,
            config_hash: self.config.hash.clone(),
            ddtwatch_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// How many conditions are firing across all deployments.
    pub fn firing(&self) -> usize {
        self.deployments
            .values()
            .flat_map(|d| d.conditions.iter())
            .map(|rt| {
                (rt.lifecycle.state == BreachState::Firing) as usize
                    + rt.instances.values().filter(|l| l.state == BreachState::Firing).count()
            })
            .sum()
    }
}
