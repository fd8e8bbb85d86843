//! Liveness of the long-lived tasks and the state of each event source.
//!
//! Every long-lived task (engine clock, each source, notification dispatcher, snapshotter, config
//! reload) holds a [`TaskGuard`] and beats it as it works. `/healthz` answers 503 naming the task
//! when one has stopped (returned, panicked, failed) or has not beaten within its bound, so a
//! dead Kafka source can no longer hide behind a green health check (INTERFACES.md: "200 while
//! the process loop is alive").
//!
//! Each source keeps a [`SourceHealth`]: up or down, errors counted by kind, and the last error
//! with its cause as the client library gave it. Repeated identical errors are logged once and then
//! at most once a minute with a count, so a broker outage does not flood the log.
//!
//! This module depends on nothing else in the crate: the layers above it report into it, and
//! telemetry and HTTP read it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn now_ms() -> i64 {
    crate::time::wall_clock_ms()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// All tasks and sources of one process.
#[derive(Debug, Default)]
pub struct Health {
    tasks: Mutex<Vec<Arc<Task>>>,
    sources: Mutex<Vec<Arc<SourceHealth>>>,
    /// Set at shutdown: tasks that end from then on ended on purpose.
    stopping: AtomicBool,
}

/// One long-lived task.
#[derive(Debug)]
pub struct Task {
    pub name: String,
    /// The task must beat at least this often while it runs.
    pub stall_after: Duration,
    started: Instant,
    /// Milliseconds after `started` of the last beat.
    last_beat: AtomicI64,
    /// Why it ended, once it has.
    ended: Mutex<Option<String>>,
    /// It ended because its work was done (a file read to its end): not a problem.
    done: AtomicBool,
}

impl Task {
    pub fn beat(&self) {
        self.last_beat.store(self.started.elapsed().as_millis() as i64, Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn silent_for(&self) -> Duration {
        let last = self.last_beat.load(Ordering::Relaxed).max(0) as u64;
        self.started.elapsed().saturating_sub(Duration::from_millis(last))
    }

    pub fn ended(&self) -> Option<String> {
        lock(&self.ended).clone()
    }
}

/// Held by a running task; marks the task ended when dropped (a return, an error or a panic
/// unwinding through it), with the reason given to [`TaskGuard::fail`] if any.
#[derive(Debug)]
pub struct TaskGuard(Arc<Task>);

impl TaskGuard {
    pub fn beat(&self) {
        self.0.beat();
    }

    /// The task is about to end because of `why` (kept for `/healthz` and the API).
    pub fn fail(&self, why: impl Into<String>) {
        *lock(&self.0.ended) = Some(why.into());
    }

    /// The task's work is done: it ends, and that is not a problem.
    pub fn finished(&self) {
        self.0.done.store(true, Ordering::Relaxed);
        *lock(&self.0.ended) = Some("finished".into());
    }

    pub fn task(&self) -> &Arc<Task> {
        &self.0
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let mut ended = lock(&self.0.ended);
        if ended.is_none() {
            *ended = Some(if std::thread::panicking() { "panicked".into() } else { "exited".into() });
        }
    }
}

/// One problem `/healthz` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub task: String,
    pub problem: String,
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Health::default())
    }

    /// Registers a task that must beat at least every `stall_after`.
    pub fn task(&self, name: impl Into<String>, stall_after: Duration) -> TaskGuard {
        let t = Arc::new(Task {
            name: name.into(),
            stall_after,
            started: Instant::now(),
            last_beat: AtomicI64::new(0),
            ended: Mutex::new(None),
            done: AtomicBool::new(false),
        });
        lock(&self.tasks).push(t.clone());
        TaskGuard(t)
    }

    /// Registers a source (`name` is its label: `kafka-0`, `file-1`, …).
    pub fn source(&self, name: impl Into<String>, kind: &'static str) -> Arc<SourceHealth> {
        let s = Arc::new(SourceHealth::new(name.into(), kind));
        // Every kind this source can report starts at 0, so rates and alerts see the series
        // before the first error.
        let kinds: &[&'static str] = match kind {
            "kafka" => &["transport", "authentication", "authorization", "tls", "fatal", "other"],
            "file" => &["io"],
            _ => &[],
        };
        lock(&s.errors).extend(kinds.iter().map(|k| (*k, 0)));
        lock(&self.sources).push(s.clone());
        s
    }

    pub fn tasks(&self) -> Vec<Arc<Task>> {
        lock(&self.tasks).clone()
    }

    pub fn sources(&self) -> Vec<Arc<SourceHealth>> {
        lock(&self.sources).clone()
    }

    /// From now on, tasks that end are not problems (the process is shutting down).
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// What is wrong with the tasks: ended, or silent past their bound. Empty when healthy.
    pub fn problems(&self) -> Vec<Problem> {
        let stopping = self.is_stopping();
        let mut out = Vec::new();
        for t in self.tasks() {
            if t.done.load(Ordering::Relaxed) {
                continue;
            }
            match t.ended() {
                Some(why) if !stopping => {
                    out.push(Problem { task: t.name.clone(), problem: format!("stopped: {why}") });
                }
                Some(_) => {}
                None => {
                    let silent = t.silent_for();
                    if silent > t.stall_after {
                        out.push(Problem {
                            task: t.name.clone(),
                            problem: format!(
                                "stalled: no progress for {:.0}s (bound {:.0}s)",
                                silent.as_secs_f64(),
                                t.stall_after.as_secs_f64()
                            ),
                        });
                    }
                }
            }
        }
        out
    }
}

/// The last error a source saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastError {
    pub kind: &'static str,
    pub message: String,
    /// Unix ms.
    pub at_ms: i64,
}

/// State of one source.
#[derive(Debug)]
pub struct SourceHealth {
    pub name: String,
    pub kind: &'static str,
    up: AtomicBool,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    last_error: Mutex<Option<LastError>>,
    /// Log rate limiting per kind: when one was last logged, and how many were not since.
    logged: Mutex<BTreeMap<&'static str, (Instant, u64)>>,
}

/// Identical errors are logged at most this often (with the number suppressed in between).
pub const REPEAT_LOG_EVERY: Duration = Duration::from_secs(60);

impl SourceHealth {
    fn new(name: String, kind: &'static str) -> Self {
        SourceHealth {
            name,
            kind,
            up: AtomicBool::new(false),
            errors: Mutex::new(BTreeMap::new()),
            last_error: Mutex::new(None),
            logged: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Marks the source up or down; a change is logged.
    pub fn set_up(&self, up: bool) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!(source = %self.name, "source up");
            } else {
                let cause = lock(&self.last_error).as_ref().map(|e| e.message.clone()).unwrap_or_default();
                tracing::error!(source = %self.name, cause = %cause, "source down");
            }
        }
    }

    /// Counts an error of `kind` and logs it with its cause: the first of a kind at once, then at
    /// most one a minute per kind with the number not logged in between (librdkafka's messages
    /// vary in their details — "after 12ms in state CONNECT" — so a per-message limit would not
    /// hold during an outage).
    pub fn error(&self, kind: &'static str, message: &str) {
        *lock(&self.errors).entry(kind).or_default() += 1;
        *lock(&self.last_error) = Some(LastError { kind, message: message.to_string(), at_ms: now_ms() });
        let mut logged = lock(&self.logged);
        match logged.get_mut(kind) {
            Some((at, suppressed)) if at.elapsed() < REPEAT_LOG_EVERY => *suppressed += 1,
            Some((at, suppressed)) => {
                tracing::error!(source = %self.name, kind, cause = %message, repeated = *suppressed + 1, "source error (repeated)");
                *at = Instant::now();
                *suppressed = 0;
            }
            None => {
                tracing::error!(source = %self.name, kind, cause = %message, "source error");
                logged.insert(kind, (Instant::now(), 0));
            }
        }
    }

    /// Counts an error that sums up or echoes others without their cause ("1/1 brokers are
    /// down", librdkafka's consumer queue repeating "SSL (Local: SSL error)" after the error
    /// callback said "certificate verify failed"): the last cause stays if it is from the last
    /// minute, whatever its kind.
    pub fn error_summary(&self, kind: &'static str, message: &str) {
        let keep =
            lock(&self.last_error).as_ref().is_some_and(|e| now_ms() - e.at_ms < REPEAT_LOG_EVERY.as_millis() as i64);
        if keep {
            *lock(&self.errors).entry(kind).or_default() += 1;
        } else {
            self.error(kind, message);
        }
    }

    pub fn errors(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.errors).clone()
    }

    pub fn last_error(&self) -> Option<LastError> {
        lock(&self.last_error).clone()
    }

    /// The API's view.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "source": self.name,
            "kind": self.kind,
            "up": self.is_up(),
            "errors": self.errors(),
            "last_error": self.last_error(),
        })
    }
}

/// One shutdown signal for every long-lived task of `run` (instead of aborting them): triggered
/// once, awaited anywhere.
#[derive(Clone)]
pub struct Shutdown(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the shutdown is triggered (at once if it was).
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Runs `task` until it ends or the shutdown is triggered (then it is dropped at its
    /// current await point).
    pub async fn run_until<F: std::future::Future<Output = ()>>(self, task: F) {
        tokio::select! {
            _ = task => {}
            _ = self.wait() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_task_is_a_problem_until_shutdown() {
        let h = Health::new();
        let g = h.task("engine", Duration::from_secs(30));
        g.beat();
        assert!(h.problems().is_empty());
        g.fail("boom: cause");
        drop(g);
        let p = h.problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].task, "engine");
        assert!(p[0].problem.contains("boom: cause"), "{p:?}");
        h.stopping();
        assert!(h.problems().is_empty());
    }

    #[test]
    fn a_dropped_guard_without_a_reason_says_exited() {
        let h = Health::new();
        drop(h.task("dispatcher", Duration::from_secs(30)));
        assert_eq!(h.problems()[0].problem, "stopped: exited");
    }

    #[test]
    fn a_panicking_task_is_reported_as_panicked() {
        let h = Health::new();
        let g = h.task("snapshotter", Duration::from_secs(30));
        let r = std::thread::spawn(move || {
            let _g = g;
            panic!("injected");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(h.problems()[0].problem, "stopped: panicked");
    }

    #[test]
    fn a_task_silent_past_its_bound_is_stalled() {
        let h = Health::new();
        let g = h.task("source kafka-0", Duration::ZERO);
        // Bound zero: any time after the (implicit) first beat counts as silent.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(2) {}
        let p = h.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].problem.starts_with("stalled"), "{p:?}");
        drop(g);
    }

    #[test]
    fn a_summary_error_is_counted_but_keeps_the_recent_cause() {
        let h = Health::new();
        let s = h.source("kafka-0", "kafka");
        s.error("tls", "SSL handshake failed: certificate verify failed");
        s.error_summary("transport", "Message consumption error: BrokerTransportFailure");
        assert_eq!(s.errors()["transport"], 1);
        assert_eq!(s.last_error().unwrap().message, "SSL handshake failed: certificate verify failed");
        // With no recent cause the summary is the cause.
        let t = h.source("kafka-1", "kafka");
        t.error_summary("transport", "1/1 brokers are down");
        assert_eq!(t.last_error().unwrap().message, "1/1 brokers are down");
    }

    #[test]
    fn source_errors_are_counted_by_kind_and_keep_the_last_cause() {
        let h = Health::new();
        let s = h.source("kafka-0", "kafka");
        assert!(!s.is_up());
        s.set_up(true);
        for _ in 0..5 {
            s.error("transport", "connection refused");
        }
        s.error("authentication", "SASL authentication failed");
        s.set_up(false);
        assert_eq!(s.errors()["transport"], 5);
        assert_eq!(s.errors()["authentication"], 1);
        let last = s.last_error().unwrap();
        assert_eq!(last.kind, "authentication");
        assert_eq!(last.message, "SASL authentication failed");
        assert_eq!(s.to_json()["up"], false);
        // Repeats of a kind are held back in the log (4 of the 5 transport errors) but counted.
        let logged = lock(&s.logged);
        assert_eq!(logged["transport"].1, 4);
        assert_eq!(logged["authentication"].1, 0);
    }
}
