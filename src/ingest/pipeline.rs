//! The live pipeline: one shared engine fed by every source (simulator, HTTP, files, Kafka),
//! with its breach transitions fanned out to receivers and its dead letters written to the sink.

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::engine::{Engine, Ingested, SharedEngine};
use crate::event::Phase;
use crate::ingest::DeadLetterSink;
use crate::rules::Transition;
use crate::time::Millis;

/// What the engine produces besides its state, handed on after each call that applied events
/// (and before it returns): breach transitions and deployment phase changes. The notifier
/// (`notify::Notifier`) journals, wakes the dispatcher and audits them.
pub trait Publisher: Send + Sync {
    fn transition(&self, t: &Transition);
    fn phase(&self, deployment: &str, phase: Phase, ts: Millis);
    /// The undelivered notifications about `deployment`, as opaque JSON entries: they travel
    /// with its state in state-topic snapshots, so the instance that takes the deployment over
    /// delivers them if this one cannot (issue 19). Default: none.
    fn pending_for(&self, _deployment: &str) -> Vec<serde_json::Value> {
        Vec::new()
    }
    /// Takes over notifications handed over in a restored snapshot (each under its original
    /// idempotency key; one already known here is skipped). Returns how many were new.
    fn take_over(&self, _entries: Vec<serde_json::Value>) -> usize {
        0
    }
    /// Makes what this publisher wrote durable beyond the process (the audit topic) before a
    /// source commits the offsets of the events behind it; false if it could not within
    /// `timeout` (the commit then waits for the next checkpoint).
    fn sync(&self, _timeout: std::time::Duration) -> bool {
        true
    }
    /// `deployment` was retired; `record` is its final summary (JSON). Kept where the API and
    /// `ddtwatch report` find it again (`state_dir/records/<id>.json`). Also called for a
    /// deployment another instance retired (a state-topic marker): a record already kept is
    /// left as it is. False if it could not be kept (the engine then keeps it in memory).
    /// Default: nothing to keep it in (true).
    fn retired(&self, _deployment: &str, _record: &[u8]) -> bool {
        true
    }
}

/// Outcome counts of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchResult {
    pub accepted: u64,
    pub held: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// The first few rejections: (1-based line, reason, detail).
    pub errors: Vec<LineError>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub line: usize,
    pub reason: &'static str,
    pub detail: String,
}

const MAX_REPORTED_ERRORS: usize = 10;

#[derive(Clone)]
pub struct Pipeline {
    pub engine: SharedEngine,
    transitions: broadcast::Sender<Transition>,
    dead: Arc<Mutex<DeadLetterSink>>,
    publisher: Arc<Mutex<Option<Arc<dyn Publisher>>>>,
    /// Final summaries of retired deployments not yet on the state topic (Some only when a
    /// Kafka source with a state topic collects them, see [`Pipeline::collect_retired`]).
    retired: Arc<Mutex<Option<Vec<RetiredRecord>>>>,
    /// The wall clock the sources stamp arrivals with ([`crate::time::wall_clock_ms`] unless
    /// [`Pipeline::with_clock`]).
    clock: crate::time::Clock,
}

/// A retired deployment's id and final summary (JSON).
pub type RetiredRecord = (String, Vec<u8>);

impl Pipeline {
    pub fn new(engine: Engine, dead: DeadLetterSink) -> Self {
        // Receivers that fall 4096 transitions behind see a Lagged error (logged); the durable
        // outbox replaces this channel as the source of truth for notifications.
        let (tx, _) = broadcast::channel(4096);
        Pipeline {
            engine: Arc::new(Mutex::new(engine)),
            transitions: tx,
            dead: Arc::new(Mutex::new(dead)),
            publisher: Arc::new(Mutex::new(None)),
            retired: Arc::new(Mutex::new(None)),
            clock: crate::time::wall_clock_ms,
        }
    }

    /// Sources stamp arrivals with `clock` (tests drive it).
    pub fn with_clock(mut self, clock: crate::time::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The arrival time sources pass with each event, and the time of the periodic tick.
    pub fn now(&self) -> Millis {
        (self.clock)()
    }

    /// Final summaries of retired deployments are kept for [`Pipeline::take_retired`] from now
    /// on (the Kafka source writes them to the state topic at its checkpoints).
    pub fn collect_retired(&self) {
        self.retired.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Vec::new);
    }

    /// The retired deployments' final summaries collected since the last call: (id, JSON).
    pub fn take_retired(&self) -> Vec<RetiredRecord> {
        self.retired.lock().unwrap_or_else(|p| p.into_inner()).as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Puts back summaries [`Pipeline::take_retired`] gave that could not be written.
    pub fn return_retired(&self, back: Vec<RetiredRecord>) {
        if let Some(v) = self.retired.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            v.extend(back);
        }
    }

    /// The publisher, if one is set.
    pub fn publisher(&self) -> Option<Arc<dyn Publisher>> {
        self.publisher.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Breach transitions and deployment phase changes go to `p` from now on, before the call
    /// that applied their events returns.
    pub fn set_publisher(&self, p: Arc<dyn Publisher>) {
        *self.publisher.lock().unwrap_or_else(|p| p.into_inner()) = Some(p);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.transitions.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies messages (each one event) received at wall time `receive`.
    pub fn ingest<'a>(&self, messages: impl IntoIterator<Item = Ingest<'a>>, receive: i64) -> BatchResult {
        let mut r = BatchResult::default();
        let mut engine = self.lock();
        for (i, m) in messages.into_iter().enumerate() {
            let res = match m {
                Ingest::Raw(bytes) => engine.ingest(bytes, receive),
                Ingest::Parsed(parsed, raw) => engine.ingest_parsed(&parsed, &raw, receive),
            };
            match res {
                Ingested::Applied(_) => r.accepted += 1,
                Ingested::Held => r.held += 1,
                Ingested::Duplicate => r.duplicates += 1,
                Ingested::Invalid(_) => r.rejected += 1,
            }
            for d in engine.drain_dead_letters() {
                if r.errors.len() < MAX_REPORTED_ERRORS {
                    r.errors.push(LineError { line: i + 1, reason: d.reason.as_str(), detail: d.detail.clone() });
                }
                self.dead_letter(&d);
            }
        }
        self.flush(&mut engine);
        r
    }

    /// Applies one Kafka message; its dead letters carry the coordinates of the message each
    /// came from.
    pub fn ingest_message(&self, payload: &[u8], receive: i64, origin: crate::engine::snapshot::Through) -> Ingested {
        let mut engine = self.lock();
        // Dead letters carry the message they came from: this one, or an earlier one whose
        // held event expires now.
        engine.set_origin(Some(origin));
        let res = engine.ingest(payload, receive);
        engine.set_origin(None);
        self.flush(&mut engine);
        res
    }

    /// Applies one line of a `file` source and records the position after it, under one lock, so
    /// a snapshot never holds a line's effect without its position (or the reverse).
    pub fn ingest_file_line(&self, line: &[u8], receive: i64, path: &str, next: u64) -> Ingested {
        let mut engine = self.lock();
        let res = engine.ingest(line, receive);
        engine.source_positions.insert(path.to_string(), next);
        self.flush(&mut engine);
        res
    }

    /// See [`DeadLetterSink::sync`].
    pub fn sync_dead_letters(&self, timeout: std::time::Duration) -> bool {
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).sync(timeout)
    }

    /// Advances the wall clock (wall mode) and forwards what the evaluation produced.
    pub fn tick(&self, now: i64) {
        let mut engine = self.lock();
        engine.tick(now);
        self.flush(&mut engine);
    }

    /// Hot reload: new conditions (lifecycles and statistics kept, see `Engine::reload`).
    pub fn reload(&self, config: Arc<crate::config::Config>) {
        self.lock().reload(config);
    }

    /// End of a finite input (simulator/file): orphans dead-lettered, final evaluation.
    pub fn finish(&self) {
        let mut engine = self.lock();
        engine.finish();
        self.flush(&mut engine);
    }

    fn dead_letter(&self, d: &crate::engine::DeadLetter) {
        let mut sink = self.dead.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = sink.send(d) {
            tracing::error!(error = %e, reason = d.reason.as_str(), "dead-letter sink failed");
        }
    }

    fn flush(&self, engine: &mut Engine) {
        for d in engine.drain_dead_letters() {
            self.dead_letter(&d);
        }
        let _ = self.dead.lock().map(|mut s| s.flush());
        let publisher = self.publisher.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (deployment, phase, ts) in engine.drain_lifecycle() {
            if let Some(p) = &publisher {
                p.phase(&deployment, phase, ts);
            }
        }
        for t in engine.drain_transitions() {
            if let Some(p) = &publisher {
                p.transition(&t);
            }
            // No subscriber is not an error (e.g. before receivers start).
            let _ = self.transitions.send(t);
        }
        for summary in engine.drain_retired() {
            let record = serde_json::to_vec_pretty(&summary).unwrap_or_default();
            if let Some(v) = self.retired.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                v.push((summary.deployment_id.clone(), record.clone()));
            }
            if let Some(p) = &publisher
                && !p.retired(&summary.deployment_id, &record)
            {
                // Not lost: served from memory until the next restart (the error is logged).
                engine.keep_retired(summary);
            }
        }
    }
}

/// One message for [`Pipeline::ingest`].
pub enum Ingest<'a> {
    Raw(&'a [u8]),
    /// Already parsed (an element of a JSON array body) with its serialised form.
    Parsed(Box<Result<crate::event::Event, crate::event::Invalid>>, Vec<u8>),
}
