//! One deployment's state: funnel counters, the alert ↔ decision ↔ outcome join, per-source
//! system state, value series, and its conditions' breach lifecycles.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::config::{Config, Dur};
use crate::event::{
    Adjudication, Alert, Authorisation, Body, Decision, Deletion, Detection, Event, EventType, Groups, Millis, Outcome,
    OutcomeResult, Phase, Status, System,
};
use crate::rules::{Condition, Counter, DriftValue, Evaluation, Kind, Lifecycle, QuantileValue, Window};

use super::series::{DriftState, LatencySeries};
use super::tally::{Contribution, GroupIndex, Tally, WindowedTally, bit};

/// The latest human decision on an alert.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DecisionRec {
    pub ts: Millis,
    pub decision: Decision,
    pub verified: bool,
    pub reason_misread: bool,
}

/// The latest outcome of an alert.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OutcomeRec {
    pub ts: Millis,
    pub result: OutcomeResult,
    /// The outcome's `engaged_groups` (see [`SlotLists`]).
    pub engaged_slots: SlotsId,
}

/// One alert and what is known about it. A deployment keeps every alert for its life (a late
/// decision or outcome still changes its counters), so this is kept small: ≈ 56 bytes, its group
/// slots as ids into the deployment's [`SlotLists`], and its contribution to the counters
/// recomputed when needed rather than stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AlertRec {
    pub ts: Millis,
    pub decision: Option<DecisionRec>,
    pub outcome: Option<OutcomeRec>,
    /// The alert's `subject_groups`.
    pub subject_slots: SlotsId,
    pub canary: bool,
    pub timed_out: bool,
    pub first_decision_seen: bool,
}

impl AlertRec {
    /// The alert's current contribution to the counters (CONDITIONS.md Counters, EVENTS.md
    /// definitions of false and true alerts). `lists` resolves its slot ids; an engaged alert
    /// without an outcome counts in the `unknown` group of every attribute.
    pub fn contribution(&self, lists: &SlotLists) -> Contribution {
        let mut flags = 0u32;
        let subject = lists.get(self.subject_slots);
        if self.canary {
            flags |= bit(Counter::CanaryAlerts);
            return Contribution { flags, subject, engaged: Arc::from([]) };
        }
        flags |= bit(Counter::Alerts);
        let decision = self.decision.as_ref();
        let outcome = self.outcome.as_ref();
        if let Some(d) = decision {
            flags |= bit(Counter::Adjudicated);
            match d.decision {
                Decision::Engage => {
                    flags |= bit(Counter::Engaged);
                    if d.verified {
                        flags |= bit(Counter::Verified);
                    }
                }
                Decision::Dismiss => flags |= bit(Counter::Dismissed),
            }
        }
        if let Some(o) = outcome {
            flags |= bit(Counter::Outcomes);
            if o.result == OutcomeResult::TrueMatch {
                flags |= bit(Counter::TrueAlerts);
            }
        }
        let outcome_false = outcome.is_some_and(|o| o.result.is_false());
        let dismissed_unrefuted = decision.is_some_and(|d| {
            d.decision == Decision::Dismiss
                && !outcome.is_some_and(|o| o.result == OutcomeResult::TrueMatch && o.ts >= d.ts)
        });
        if outcome_false || dismissed_unrefuted {
            flags |= bit(Counter::FalseAlerts);
        }
        if outcome_false && decision.is_some_and(|d| d.decision == Decision::Engage) {
            flags |= bit(Counter::FalseEngaged);
        }
        let misread = outcome.is_some_and(|o| o.result == OutcomeResult::Misread)
            || decision.is_some_and(|d| d.decision == Decision::Dismiss && d.reason_misread);
        if misread {
            flags |= bit(Counter::Misreads);
        }
        if self.timed_out && decision.is_none() && outcome.is_none() {
            flags |= bit(Counter::Unadjudicated);
        }
        let engaged = if lists.is_foreign(self.subject_slots) {
            Arc::from([])
        } else {
            lists.get(outcome.map_or(lists.unknown, |o| o.engaged_slots))
        };
        Contribution { flags, subject, engaged }
    }
}

/// Index of an interned group-slot list in a deployment's [`SlotLists`].
pub type SlotsId = u32;

/// A deployment's distinct group-slot lists (one slot per tabulated attribute), interned: there
/// are few distinct group combinations, and every alert refers to its lists by a 4-byte id.
#[derive(Debug, Clone, Default)]
pub struct SlotLists {
    lists: Vec<Arc<[usize]>>,
    index: HashMap<Arc<[usize]>, SlotsId>,
    /// The list of an alert without outcome groups: `unknown` for every attribute.
    unknown: SlotsId,
    /// Ids below this came from a snapshot taken under another allow-list and resolve to no
    /// slots (see [`SlotLists::is_foreign`]).
    foreign: SlotsId,
}

impl SlotLists {
    fn new(groups: &GroupIndex) -> Self {
        SlotLists::default().with_unknown(groups)
    }

    fn with_unknown(mut self, groups: &GroupIndex) -> Self {
        self.unknown = self.intern((0..groups.attributes.len()).map(|a| groups.slot(a, None)).collect());
        self
    }

    fn intern(&mut self, key: Vec<usize>) -> SlotsId {
        if let Some(id) = self.index.get(key.as_slice()) {
            return *id;
        }
        let id = SlotsId::try_from(self.lists.len()).expect("fewer than 2^32 group combinations");
        let list: Arc<[usize]> = Arc::from(key);
        self.lists.push(list.clone());
        self.index.insert(list, id);
        id
    }

    /// Whether an alert with subject list `subject` was restored from a snapshot taken under
    /// another allow-list: its per-group cells were not restored, so it stays out of every
    /// per-group table (also once a later outcome records its engaged groups).
    pub fn is_foreign(&self, subject: SlotsId) -> bool {
        subject < self.foreign
    }

    /// The list of `id` (empty for an id this deployment does not know).
    pub fn get(&self, id: SlotsId) -> Arc<[usize]> {
        self.lists.get(id as usize).cloned().unwrap_or_else(|| Arc::from([]))
    }

    /// The lists in id order (for a snapshot).
    pub fn to_vecs(&self) -> Vec<Vec<usize>> {
        self.lists.iter().map(|l| l.to_vec()).collect()
    }

    /// Lists restored from a snapshot taken under the same group allow-list.
    pub fn from_vecs(vecs: Vec<Vec<usize>>, groups: &GroupIndex) -> Self {
        let mut l = SlotLists::default();
        for v in vecs {
            let list: Arc<[usize]> = Arc::from(v);
            let id = l.lists.len() as SlotsId;
            l.lists.push(list.clone());
            l.index.entry(list).or_insert(id);
        }
        l.with_unknown(groups)
    }

    /// `n` ids that all resolve to no slots (a snapshot taken under another allow-list: its
    /// alerts keep their counters but drop out of the per-group cells), then fresh lists.
    pub fn emptied(n: usize, groups: &GroupIndex) -> Self {
        let foreign = SlotsId::try_from(n).expect("fewer than 2^32 group combinations");
        SlotLists { lists: vec![Arc::from([]); n], foreign, ..SlotLists::default() }.with_unknown(groups)
    }
}

/// Alerts keyed by the 64-bit fingerprint of their alert_id (see [`alert_key`]).
pub type AlertMap = HashMap<u64, AlertRec, std::hash::BuildHasherDefault<super::dedup::Identity>>;

/// The key of an alert_id in [`AlertMap`]: the same 64-bit fingerprint as event-id dedup. Two
/// ids of one deployment sharing it (chance ≈ n²/2^65 for n alerts) would be taken for one alert.
pub fn alert_key(alert_id: &str) -> u64 {
    super::dedup::fingerprint(alert_id)
}

/// Latest value of a field with the event time it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stamped<T> {
    pub value: T,
    pub ts: Millis,
}

fn set_latest<T>(slot: &mut Option<Stamped<T>>, value: T, ts: Millis) {
    if slot.as_ref().is_none_or(|s| ts >= s.ts) {
        *slot = Some(Stamped { value, ts });
    }
}

/// What a source (camera, console) last reported.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SourceState {
    pub threshold: Option<Stamped<f64>>,
    pub status_ts: Option<Millis>,
    pub algorithm_version: Option<Stamped<String>>,
    pub list_version: Option<Stamped<String>>,
    pub list_size: Option<Stamped<u64>>,
    pub list_built_at: Option<Stamped<Millis>>,
    pub list_under_18: Option<Stamped<u64>>,
    pub clock_offset_ms: Option<Stamped<i64>>,
    pub capture_ok: Option<Stamped<bool>>,
    /// Latest ts per event type.
    pub last_seen: [Option<Millis>; 7],
}

/// A held adjudication/outcome whose alert has not arrived.
#[derive(Debug, Clone)]
pub struct Held {
    pub event: Event,
    pub held_at: Millis,
    pub raw: Arc<[u8]>,
    /// The Kafka message it came from (for its dead letter, if it is orphaned); not in snapshots.
    pub origin: Option<super::snapshot::Through>,
}

/// Per-condition runtime: the breach lifecycle plus any series it needs.
#[derive(Debug, Clone)]
pub struct ConditionRuntime {
    pub condition: Arc<Condition>,
    pub lifecycle: Lifecycle,
    /// Silence conditions: one lifecycle per source.
    pub instances: BTreeMap<String, Lifecycle>,
    /// Boxed: most conditions have none, and a drift state is several times a runtime's size.
    pub drift: Option<Box<DriftState>>,
    /// The latest evaluations (one, or one per silence instance).
    pub last: Vec<Evaluation>,
    /// Rate and disparity conditions: the counts behind `last`. The counts change far less
    /// often than once a second, and an unchanged table gives the same interval / Fisher
    /// p-value, so the statistics are not recomputed.
    pub memo: Option<Vec<u64>>,
    /// Decision state under a false-breach budget (duration windows; see `series::Sequential`).
    pub seq: super::series::Sequential,
    /// The deployment's [`Deployment::changes`] when `last` was evaluated in full; None forces a
    /// full evaluation (new, restored or reloaded condition).
    pub(crate) seen: Option<u64>,
}

impl ConditionRuntime {
    /// (id, source, lifecycle, latest evaluation) per reported condition: the condition itself
    /// (no source), or one `<id>/<source>` entry per silence instance.
    pub fn entries(&self) -> Vec<(String, Option<&str>, &Lifecycle, Option<&Evaluation>)> {
        self.states()
            .map(|(src, l, e)| match src {
                None => (self.condition.id.clone(), None, l, e),
                Some(src) => (format!("{}/{src}", self.condition.id), Some(src), l, e),
            })
            .collect()
    }

    /// [`ConditionRuntime::entries`] without building their ids (a scrape reads ≈ 30,000 of them
    /// at 1,000 deployments).
    pub fn states(&self) -> impl Iterator<Item = (Option<&str>, &Lifecycle, Option<&Evaluation>)> {
        let whole = self.instances.is_empty().then(|| (None, &self.lifecycle, self.last.first()));
        let instances = self
            .instances
            .iter()
            .map(|(src, l)| (Some(src.as_str()), l, self.last.iter().find(|e| e.instance.as_deref() == Some(src))));
        whole.into_iter().chain(instances)
    }
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub system: Option<System>,
    pub phase: Option<Phase>,
    pub started_at: Option<Millis>,
    pub stopped_at: Option<Millis>,
    /// The engine clock when the `stopped` event was applied: `engine.retain_stopped` counts
    /// from here, so a stream replayed through `run` (wall clock) keeps its stopped
    /// deployments as long as a live one would.
    pub stop_seen: Option<Millis>,
    pub first_ts: Option<Millis>,
    pub last_ts: Option<Millis>,
    pub groups: Arc<GroupIndex>,
    pub total: Tally,
    pub windows: Vec<WindowedTally>,
    pub alerts: AlertMap,
    /// (deadline, alert key) for alerts that may become unadjudicated.
    pub adjudication_deadlines: BTreeSet<(Millis, u64)>,
    pub held: HashMap<String, Vec<Held>>,
    pub held_order: VecDeque<(Millis, String)>,
    /// Boxed states: a B-tree leaf holds 11 values inline, so a deployment with 3 sources would
    /// otherwise carry room for 11 states.
    pub sources: BTreeMap<String, Box<SourceState>>,
    pub first_threshold: Option<f64>,
    pub first_algorithm: Option<String>,
    pub authorisation: Option<Authorisation>,
    pub authorisation_from_stream: bool,
    pub window_tripped: bool,
    pub announced_versions: HashSet<String>,
    pub unknown_versions: BTreeSet<String>,
    pub deletions: Vec<Deletion>,
    pub latency: [LatencySeries; 3],
    pub conditions: Vec<ConditionRuntime>,
    pub events_by_type: [u64; 7],
    pub outcomes_by_result: [u64; 5],
    pub invalid_by_reason: BTreeMap<&'static str, u64>,
    pub seq: u64,
    pub config_hash: String,
    /// The group-slot lists the alerts refer to.
    pub slot_lists: SlotLists,
    /// Bumped whenever anything conditions read may have changed (every mutable access by the
    /// engine, orphans and adjudication timeouts in a round): a condition evaluated at the same
    /// count saw the same inputs, so only the clock-driven part of its result can differ
    /// (`eval::refresh`). Not persisted: a restored deployment evaluates in full.
    pub(crate) changes: u64,
    /// Bumped whenever what state checks read may have changed: a source's status, an alert's
    /// threshold or list version, the phase or authorisation, the authorised window tripped, a
    /// clock-skew reading, a new source.
    pub(crate) state_changes: u64,
}

impl Deployment {
    pub fn new(id: &str, system: Option<System>, config: &Config, groups: Arc<GroupIndex>) -> Self {
        let slot_lists = SlotLists::new(&groups);
        let mut d = Deployment {
            id: id.to_string(),
            system,
            phase: None,
            started_at: None,
            stopped_at: None,
            stop_seen: None,
            first_ts: None,
            last_ts: None,
            total: Tally::new(groups.len),
            groups,
            windows: Vec::new(),
            alerts: AlertMap::default(),
            adjudication_deadlines: BTreeSet::new(),
            held: HashMap::new(),
            held_order: VecDeque::new(),
            sources: BTreeMap::new(),
            first_threshold: None,
            first_algorithm: None,
            authorisation: config.authorisations.get(id).cloned(),
            authorisation_from_stream: false,
            window_tripped: false,
            announced_versions: HashSet::new(),
            unknown_versions: BTreeSet::new(),
            deletions: Vec::new(),
            latency: Default::default(),
            conditions: Vec::new(),
            events_by_type: [0; 7],
            outcomes_by_result: [0; 5],
            invalid_by_reason: BTreeMap::new(),
            seq: 0,
            config_hash: String::new(),
            slot_lists,
            changes: 0,
            state_changes: 0,
        };
        d.set_conditions(config);
        d
    }

    /// (Re)binds the deployment to its conditions, keeping lifecycles and series of conditions
    /// whose definition did not change.
    pub fn set_conditions(&mut self, config: &Config) {
        if self.system.is_none() {
            return;
        }
        if self.config_hash == config.hash && !self.conditions.is_empty() {
            return;
        }
        self.config_hash = config.hash.clone();
        let conditions = config.conditions_for(&self.id, self.system);
        let mut old: HashMap<String, ConditionRuntime> =
            self.conditions.drain(..).map(|c| (c.condition.id.clone(), c)).collect();
        self.conditions = Vec::with_capacity(conditions.len());
        for c in conditions.iter() {
            // Hot reload: a condition with the same id and kind keeps its breach lifecycle (a
            // firing breach stays one breach, re-judged against the new limits), and a drift
            // condition keeps its baseline and window if its definition is unchanged.
            let runtime = match old.remove(&c.id) {
                Some(mut rt) if rt.condition.kind.name() == c.kind.name() => {
                    if rt.condition.kind != c.kind
                        && let Kind::Drift(spec) = &c.kind
                    {
                        rt.drift = Some(Box::new(DriftState::new(spec)));
                    }
                    if rt.condition.kind != c.kind {
                        // A changed definition starts its evidence afresh.
                        rt.seq = Default::default();
                    }
                    rt.condition = c.clone();
                    rt.memo = None;
                    rt.seen = None;
                    rt
                }
                _ => ConditionRuntime {
                    condition: c.clone(),
                    lifecycle: Lifecycle::default(),
                    instances: BTreeMap::new(),
                    drift: match &c.kind {
                        Kind::Drift(spec) => Some(Box::new(DriftState::new(spec))),
                        _ => None,
                    },
                    last: Vec::new(),
                    memo: None,
                    seq: Default::default(),
                    seen: None,
                },
            };
            if let Some(Window::Duration(d)) = c.kind.window() {
                if !self.windows.iter().any(|w| w.width_ms == d.ms()) {
                    self.windows.push(WindowedTally::new(d.ms(), self.groups.len));
                }
                if let Kind::Quantile(q) = &c.kind {
                    self.latency[q.value as usize].keep_window(d.ms());
                }
            }
            self.conditions.push(runtime);
        }
    }

    pub fn is_active(&self) -> bool {
        self.phase == Some(Phase::Started)
    }

    /// Counts for a window ending at `now` (borrowed for the whole deployment).
    pub fn tally(&self, window: Window, now: Millis) -> Cow<'_, Tally> {
        match window {
            Window::Duration(d) => match self.windows.iter().find(|w| w.width_ms == d.ms()) {
                Some(w) => Cow::Owned(w.sum(now)),
                None => Cow::Owned(Tally::new(self.groups.len)),
            },
            _ => Cow::Borrowed(&self.total),
        }
    }

    /// The interned group slots of `groups`, one per attribute.
    fn slots(&mut self, groups: &Groups) -> SlotsId {
        let key: Vec<usize> = (0..self.groups.attributes.len())
            .map(|a| self.groups.slot(a, groups.get(&self.groups.attributes[a].0).map(String::as_str)))
            .collect();
        self.slot_lists.intern(key)
    }

    /// Applies a valid, non-duplicate event. Returns false for an `alert` reusing an alert_id
    /// (a duplicate), and hands adjudications/outcomes of unknown alerts back for holding.
    pub fn apply(&mut self, ev: &Event, now: Millis, timeout: Dur) -> Applied {
        self.seq += 1;
        if self.system.is_none() {
            self.system = Some(ev.system);
        }
        let ty = ev.body.kind();
        match &ev.body {
            Body::Adjudication(a) if !self.alerts.contains_key(&alert_key(&a.alert_id)) => return Applied::Hold,
            Body::Outcome(o) if !self.alerts.contains_key(&alert_key(&o.alert_id)) => return Applied::Hold,
            Body::Alert(a) if self.alerts.contains_key(&alert_key(&a.alert_id)) => return Applied::Duplicate,
            _ => {}
        }
        self.first_ts = Some(self.first_ts.map_or(ev.ts, |t| t.min(ev.ts)));
        self.last_ts = Some(self.last_ts.map_or(ev.ts, |t| t.max(ev.ts)));
        self.events_by_type[ty.index()] += 1;
        // One lookup for a known source (nearly every event).
        let see = |src: &mut SourceState| {
            let seen = &mut src.last_seen[ty.index()];
            *seen = Some(seen.map_or(ev.ts, |t| t.max(ev.ts)));
        };
        match self.sources.get_mut(&ev.source_id) {
            Some(src) => see(src),
            None => {
                let mut src = Box::<SourceState>::default();
                see(&mut src);
                self.sources.insert(ev.source_id.clone(), src);
                self.state_changes += 1;
            }
        }
        match &ev.body {
            Body::Detection(d) => self.detection(ev, d, now),
            Body::Alert(a) => self.alert(ev, a, now, timeout),
            Body::Adjudication(a) => self.adjudication(ev, a, now),
            Body::Outcome(o) => self.outcome(ev, o, now),
            Body::Status(s) => self.status(ev, s),
            Body::Deployment(d) => {
                self.state_changes += 1;
                match d.phase {
                    Phase::Authorised => {
                        if let Some(a) = &d.authorisation {
                            self.authorisation = Some(a.clone());
                            self.authorisation_from_stream = true;
                        }
                    }
                    Phase::Started => {
                        self.started_at.get_or_insert(ev.ts);
                        self.stopped_at = None;
                        self.stop_seen = None;
                        if self.authorisation.is_none() {
                            // CONDITIONS.md authorised_window: a started deployment with no authorisation.
                            self.window_tripped = true;
                        }
                    }
                    Phase::Stopped => {
                        self.stopped_at = Some(ev.ts);
                        self.stop_seen = Some(now);
                    }
                }
                // A late `authorised` never moves a started/stopped deployment back.
                let rank = |p: Phase| p as u8;
                if self.phase.is_none_or(|p| rank(d.phase) >= rank(p) || d.phase == Phase::Started) {
                    self.phase = Some(d.phase);
                }
            }
            Body::Deletion(d) => self.deletions.push(d.clone()),
        }
        Applied::Applied
    }

    fn check_window(&mut self, ts: Millis) {
        if self.phase == Some(Phase::Stopped) {
            return;
        }
        if let Some(a) = &self.authorisation {
            let before = a.window_start.is_some_and(|s| ts < s);
            let after = a.window_end.is_some_and(|e| ts > e);
            if (before || after) && !self.window_tripped {
                self.window_tripped = true;
                self.state_changes += 1;
            }
        }
    }

    fn for_windows(&mut self, ts: Millis, now: Millis, f: impl Fn(&mut Tally)) {
        f(&mut self.total);
        for w in &mut self.windows {
            if let Some(t) = w.at(ts, now) {
                f(t);
            }
        }
    }

    fn detection(&mut self, ev: &Event, d: &Detection, now: Millis) {
        self.check_window(ev.ts);
        let mut exposure: Vec<(usize, i64)> = Vec::new();
        for (a, (attr, _)) in self.groups.attributes.iter().enumerate() {
            if let Some(counts) = d.exposure.get(attr) {
                for (g, n) in counts {
                    exposure.push((self.groups.slot(a, Some(g)), *n as i64));
                }
            }
        }
        let (count, canary) = (d.count as i64, d.canary_passes as i64);
        self.for_windows(ev.ts, now, |t| {
            t.counts[Counter::Detections.index()] += count;
            t.counts[Counter::CanaryPasses.index()] += canary;
            for (slot, n) in &exposure {
                t.exposure[*slot] += n;
            }
        });
        for rt in &mut self.conditions {
            if let Some(drift) = &mut rt.drift {
                let values = match drift.spec.value {
                    DriftValue::Score => &d.scores,
                    DriftValue::Quality => &d.quality,
                    DriftValue::AlertScore => continue,
                };
                for &x in values {
                    drift.push(x, ev.ts, now);
                }
            }
        }
    }

    fn alert(&mut self, ev: &Event, a: &Alert, now: Millis, timeout: Dur) {
        self.check_window(ev.ts);
        self.state_changes += 1;
        let src = self.sources.get_mut(&ev.source_id).expect("source inserted in apply");
        if src.status_ts.is_none_or(|s| ev.ts > s) {
            set_latest(&mut src.threshold, a.threshold, ev.ts);
        }
        self.first_threshold.get_or_insert(a.threshold);
        if !self.announced_versions.contains(&a.list_version) {
            self.unknown_versions.insert(a.list_version.clone());
        }
        let rec = AlertRec {
            ts: ev.ts,
            decision: None,
            outcome: None,
            subject_slots: self.slots(&a.subject_groups),
            canary: a.canary,
            timed_out: false,
            first_decision_seen: false,
        };
        let c = rec.contribution(&self.slot_lists);
        self.for_windows(ev.ts, now, |t| t.apply(&c, 1));
        let key = alert_key(&a.alert_id);
        if !a.canary {
            self.adjudication_deadlines.insert((ev.ts + timeout.ms(), key));
            if let Some(l) = a.latency_ms {
                self.latency[QuantileValue::AlertLatency as usize].record(l as i64, ev.ts, now);
            }
            for rt in &mut self.conditions {
                if let Some(drift) = &mut rt.drift
                    && drift.spec.value == DriftValue::AlertScore
                {
                    drift.push(a.score, ev.ts, now);
                }
            }
        }
        self.alerts.insert(key, rec);
    }

    /// Replaces an alert's contribution after its decision/outcome/timeout changed.
    fn update_alert(&mut self, key: u64, now: Millis, change: impl FnOnce(&mut AlertRec)) {
        let Some(rec) = self.alerts.get_mut(&key) else { return };
        let old = rec.contribution(&self.slot_lists);
        change(rec);
        let new = rec.contribution(&self.slot_lists);
        if new == old {
            return;
        }
        let ts = rec.ts;
        self.for_windows(ts, now, |t| {
            t.apply(&old, -1);
            t.apply(&new, 1);
        });
    }

    fn adjudication(&mut self, ev: &Event, a: &Adjudication, now: Millis) {
        let key = alert_key(&a.alert_id);
        let rec = &self.alerts[&key];
        if !rec.canary && !rec.first_decision_seen {
            let latency = ev.ts - rec.ts;
            let alert_ts = rec.ts;
            self.latency[QuantileValue::AdjudicationLatency as usize].record(latency, alert_ts.max(ev.ts), now);
        }
        let d = DecisionRec { ts: ev.ts, decision: a.decision, verified: a.verified, reason_misread: a.reason_misread };
        // CONDITIONS.md: several decisions → the latest ts stands (ties: later arrival).
        self.update_alert(key, now, |rec| {
            rec.first_decision_seen = true;
            if rec.decision.as_ref().is_none_or(|old| d.ts >= old.ts) {
                rec.decision = Some(d);
            }
        });
    }

    fn outcome(&mut self, ev: &Event, o: &Outcome, now: Millis) {
        let rec = OutcomeRec { ts: ev.ts, result: o.result, engaged_slots: self.slots(&o.engaged_groups) };
        let key = alert_key(&o.alert_id);
        let replaced = self.alerts[&key].outcome.as_ref().map(|old| (old.ts, old.result));
        if replaced.is_none_or(|(ts, _)| ev.ts >= ts) {
            if let Some((_, old)) = replaced {
                self.outcomes_by_result[old as usize] -= 1;
            }
            self.outcomes_by_result[o.result as usize] += 1;
        }
        self.update_alert(key, now, |a| {
            if a.outcome.as_ref().is_none_or(|old| rec.ts >= old.ts) {
                a.outcome = Some(rec);
            }
        });
    }

    fn status(&mut self, ev: &Event, s: &Status) {
        self.state_changes += 1;
        let src = self.sources.get_mut(&ev.source_id).expect("source inserted in apply");
        src.status_ts = Some(src.status_ts.map_or(ev.ts, |t| t.max(ev.ts)));
        if let Some(t) = s.threshold {
            set_latest(&mut src.threshold, t, ev.ts);
            self.first_threshold.get_or_insert(t);
        }
        if let Some(v) = &s.algorithm_version {
            set_latest(&mut src.algorithm_version, v.clone(), ev.ts);
            self.first_algorithm.get_or_insert_with(|| v.clone());
        }
        if let Some(o) = s.clock_offset_ms {
            set_latest(&mut src.clock_offset_ms, o, ev.ts);
        }
        if let Some(ok) = s.capture_ok {
            set_latest(&mut src.capture_ok, ok, ev.ts);
        }
        if let Some(l) = &s.list {
            if let Some(v) = &l.version {
                set_latest(&mut src.list_version, v.clone(), ev.ts);
                self.unknown_versions.remove(v);
                self.announced_versions.insert(v.clone());
            }
            if let Some(n) = l.size {
                set_latest(&mut src.list_size, n, ev.ts);
            }
            if let Some(b) = l.built_at {
                set_latest(&mut src.list_built_at, b, ev.ts);
            }
            if let Some(n) = l.under_18 {
                set_latest(&mut src.list_under_18, n, ev.ts);
            }
        }
    }

    /// Live mode: |ts_emitted − receive time| is a clock-skew reading of the source.
    pub fn observe_skew(&mut self, source: &str, skew_ms: i64, ts: Millis) {
        self.state_changes += 1;
        if let Some(src) = self.sources.get_mut(source) {
            set_latest(&mut src.clock_offset_ms, skew_ms, ts);
        }
    }

    /// Marks alerts whose adjudication deadline passed (clock > alert ts + timeout).
    pub fn expire_adjudications(&mut self, now: Millis) {
        while let Some((deadline, _)) = self.adjudication_deadlines.first() {
            if *deadline >= now {
                break;
            }
            self.changes += 1;
            let (_, key) = self.adjudication_deadlines.pop_first().expect("checked non-empty");
            self.update_alert(key, now, |rec| rec.timed_out = true);
        }
        for w in &mut self.windows {
            w.expire(now);
        }
        for l in &mut self.latency {
            l.expire(now);
        }
    }

    pub fn record_lag(&mut self, lag_ms: i64, ts: Millis, now: Millis) {
        self.latency[QuantileValue::EventLag as usize].record(lag_ms, ts, now);
    }

    pub fn count(&self, c: Counter) -> u64 {
        self.total.get(c)
    }

    pub fn event_type_count(&self, t: EventType) -> u64 {
        self.events_by_type[t.index()]
    }
}

/// What [`Deployment::apply`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// An adjudication/outcome whose alert is unknown: hold it.
    Hold,
    /// An alert reusing an alert_id.
    Duplicate,
}
