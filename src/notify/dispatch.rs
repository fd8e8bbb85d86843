//! The dispatcher: delivers the outbox's pending notifications to their receivers with the
//! shared [`RetryPolicy`](super::retry::RetryPolicy), journals each end (delivered / failed for good) in the outbox and
//! every attempt in the audit log, and re-sends open breaches to Alertmanager every `resend`.
//!
//! Time is a parameter ([`Dispatcher::run_due`] takes `now`), so tests drive hours of retries
//! without sleeping; `run` calls it with the wall clock.
//!
//! Order: per receiver and alert identity (the condition), transitions are delivered in the
//! order they happened, across breaches — otherwise an Alertmanager could see a resolution after
//! a later firing and show the condition resolved while it fires. An Alertmanager keeps one
//! alert per label set, so there only the latest undelivered transition of an identity is sent:
//! the earlier ones are superseded (journaled, counted, audited, never sent).
//!
//! `run` serves each receiver on a loop of its own, so a receiver that hangs (up to its
//! `timeout` per request) delays no other, not even by one pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::outbox::{SharedOutbox, breach_key, identity_key};
use super::retry::Attempt;
use crate::audit::SharedAudit;
use crate::config::{ReceiverConfig, ReceiverKind};
use crate::event::Millis;

pub struct Dispatcher {
    outbox: SharedOutbox,
    audit: Option<SharedAudit>,
    client: reqwest::Client,
    /// Notification id → earliest time of its next attempt (after a retryable failure).
    next_try: HashMap<u64, Millis>,
    /// (receiver, breach key) → next Alertmanager re-send.
    next_resend: HashMap<(String, String), Millis>,
    warned: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Source of the jitter (seedable for tests).
    rng: fastrand::Rng,
    /// Beaten before every delivery attempt (`/healthz` sees a dispatcher that hangs).
    heartbeat: Option<Arc<crate::health::Task>>,
    /// Serve only this receiver's notifications (`run`'s per-receiver loops).
    only: Option<String>,
}

/// One pending notification, copied out of the outbox so no lock is held while sending.
#[derive(Clone)]
struct Due {
    id: u64,
    receiver: String,
    key: String,
    at: Millis,
    attempts: u32,
    notification: Value,
}

impl Due {
    fn of(e: &super::outbox::Entry) -> Self {
        Due {
            id: e.id,
            receiver: e.receiver.clone(),
            key: e.key.clone(),
            at: e.at,
            attempts: e.attempts,
            notification: e.notification.clone(),
        }
    }
}

impl Dispatcher {
    pub fn new(outbox: SharedOutbox, audit: Option<SharedAudit>) -> Self {
        let client = super::http_client();
        Dispatcher {
            outbox,
            audit,
            client,
            next_try: HashMap::new(),
            next_resend: HashMap::new(),
            warned: Arc::default(),
            rng: fastrand::Rng::new(),
            heartbeat: None,
            only: None,
        }
    }

    /// Serves only `receiver`'s notifications and re-sends.
    pub fn only(mut self, receiver: &str) -> Self {
        self.only = Some(receiver.to_string());
        self
    }

    /// Fails for good the pending notifications (of the receivers this dispatcher serves) whose
    /// receiver is not configured (a reload removed it): nothing would ever deliver them.
    pub fn fail_unconfigured(&mut self, receivers: &BTreeMap<String, ReceiverConfig>, now: Millis) {
        let orphans: Vec<Due> = self
            .lock()
            .pending()
            .filter(|e| self.serves(&e.receiver) && !receivers.contains_key(&e.receiver))
            .map(Due::of)
            .collect();
        for d in orphans {
            let detail = format!("receiver `{}` is not in the config", d.receiver);
            self.finish(&d, false, &detail, now);
        }
    }

    fn serves(&self, receiver: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == receiver)
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, super::outbox::Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends everything due at `now`; returns when the next retry or re-send is due (None: nothing
    /// scheduled; new notifications can arrive at any time). Receivers are served concurrently
    /// (one that hangs delays no other); each receiver's notifications go in outbox order.
    pub async fn run_due(&mut self, receivers: &BTreeMap<String, ReceiverConfig>, now: Millis) -> Option<Millis> {
        self.fail_unconfigured(receivers, now);
        let due: Vec<Due> = self.lock().pending().filter(|e| self.serves(&e.receiver)).map(Due::of).collect();
        let mut next: Option<Millis> = None;
        let mut soonest = |t: Millis| next = Some(next.map_or(t, |n: Millis| n.min(t)));
        let mut by_receiver: BTreeMap<String, Vec<Due>> = BTreeMap::new();
        for d in due {
            by_receiver.entry(d.receiver.clone()).or_default().push(d);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (name, items) in by_receiver {
            let Some(r) = receivers.get(&name).cloned() else {
                continue; // failed for good by fail_unconfigured above
            };
            let next_try: HashMap<u64, Millis> =
                items.iter().filter_map(|d| self.next_try.get(&d.id).map(|t| (d.id, *t))).collect();
            // Jitter drawn here, in outbox order, so a seeded dispatcher stays deterministic.
            let units: Vec<f64> = items.iter().map(|_| self.rng.f64()).collect();
            let job = ReceiverJob {
                client: self.client.clone(),
                warned: self.warned.clone(),
                heartbeat: self.heartbeat.clone(),
                receiver: r,
                items,
                next_try,
                units,
                now,
            };
            tasks.spawn(job.deliver());
        }
        let mut outcomes: Vec<(Due, Outcome)> = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(v) => outcomes.extend(v),
                Err(e) => tracing::error!(error = %e, "a receiver's delivery task failed"),
            }
        }
        // Recorded in outbox order, whatever order the receivers finished in.
        outcomes.sort_by_key(|(d, _)| d.id);
        for (d, outcome) in outcomes {
            let resend =
                receivers.get(&d.receiver).filter(|r| r.kind == ReceiverKind::Alertmanager).map(|r| r.resend.ms());
            match outcome {
                Outcome::NotYet(t) => soonest(t),
                Outcome::GiveUp(detail) => self.finish(&d, false, &detail, now),
                Outcome::Superseded(by) => self.supersede(&d, by, now),
                Outcome::Attempted { verdict, retry_at } => {
                    self.audit_attempt(&d, d.attempts + 1, &verdict);
                    match verdict {
                        Attempt::Delivered => {
                            if let Some(every) = resend {
                                self.next_resend
                                    .insert((d.receiver.clone(), breach_key(&d.key).to_string()), now + every);
                            }
                            self.finish(&d, true, "", now);
                        }
                        Attempt::Permanent(detail) => self.finish(&d, false, &detail, now),
                        Attempt::Retry { detail, .. } => match retry_at {
                            Some(t) => {
                                tracing::warn!(receiver = %d.receiver, attempt = d.attempts + 1, %detail, retry_in_ms = t - now, "notification not delivered; will retry");
                                self.lock().retry(d.id);
                                self.next_try.insert(d.id, t);
                                soonest(t);
                            }
                            None => {
                                let max_age =
                                    receivers.get(&d.receiver).map(|r| r.max_age.to_string()).unwrap_or_default();
                                self.finish(&d, false, &format!("{detail}; giving up: max_age {max_age} reached"), now)
                            }
                        },
                    }
                }
            }
        }
        // Alertmanager re-sends of open breaches (endsAt moves forward each time).
        let active: Vec<(String, String, Value)> = self
            .lock()
            .active()
            .filter(|e| self.serves(&e.receiver))
            .map(|e| (e.receiver.clone(), breach_key(&e.key).to_string(), e.notification.clone()))
            .collect();
        let live: HashSet<(String, String)> = active.iter().map(|(r, b, _)| (r.clone(), b.clone())).collect();
        self.next_resend.retain(|k, _| live.contains(k));
        // One POST per receiver carries every alert due for a re-send (Alertmanager takes a list).
        // receiver → (the (receiver, breach) keys re-sent, their alerts)
        type Batch = (Vec<(String, String)>, Vec<Value>);
        let mut batches: BTreeMap<String, Batch> = BTreeMap::new();
        for (receiver, breach, notification) in active {
            let Some(r) = receivers.get(&receiver).filter(|r| r.kind == ReceiverKind::Alertmanager) else { continue };
            let k = (receiver.clone(), breach);
            // After a restart the schedule is unknown: re-send at once (Alertmanager merges it).
            let due_at = *self.next_resend.get(&k).unwrap_or(&now);
            if due_at > now {
                soonest(due_at);
                continue;
            }
            let b = batches.entry(receiver).or_default();
            b.0.push(k);
            b.1.push(super::alertmanager::alert(&notification, true, now, r.resend.ms(), r.generator_url.as_deref()));
        }
        for (receiver, (keys, alerts)) in batches {
            let r = &receivers[&receiver];
            let v = send_alertmanager(&self.client, r, &Value::Array(alerts), now).await;
            let result = if v == Attempt::Delivered { "resent" } else { "resend_failed" };
            if v != Attempt::Delivered {
                tracing::warn!(receiver = %receiver, alerts = keys.len(), ?v, "Alertmanager re-send failed");
            }
            let t = now + r.resend.ms();
            {
                let mut o = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
                for _ in &keys {
                    o.count(&receiver, result);
                }
            }
            for k in keys {
                self.next_resend.insert(k, t);
            }
            soonest(t);
        }
        next
    }

    fn supersede(&mut self, d: &Due, by: u64, now: Millis) {
        // A backoff in force (the receiver's Retry-After, or our own) carries over to the
        // notification that replaces this one.
        if let Some(t) = self.next_try.remove(&d.id) {
            let later = self.next_try.entry(by).or_insert(t);
            *later = (*later).max(t);
        }
        if let Err(e) = self.lock().supersede(d.id, by, now) {
            tracing::error!(error = %e, "outbox write failed");
        }
        if let Some(a) = &self.audit {
            crate::audit::record(
                a,
                "notification",
                json!({"receiver": d.receiver, "key": d.key, "result": "superseded", "attempts": d.attempts,
                       "detail": "a later transition of the same alert was sent instead"}),
            );
        }
    }

    fn finish(&mut self, d: &Due, delivered: bool, detail: &str, now: Millis) {
        self.next_try.remove(&d.id);
        if !delivered {
            tracing::error!(receiver = %d.receiver, %detail, "notification failed for good");
        }
        if let Err(e) = self.lock().finish(d.id, delivered, detail, now) {
            tracing::error!(error = %e, "outbox write failed");
        }
        if let Some(a) = &self.audit {
            crate::audit::record(
                a,
                "notification",
                json!({"receiver": d.receiver, "key": d.key, "result": if delivered { "delivered" } else { "failed" },
                       "attempts": d.attempts + 1, "detail": detail}),
            );
        }
    }

    /// Every HTTP attempt that did not end the notification is audited too (the end is audited
    /// by `finish`).
    fn audit_attempt(&self, d: &Due, attempt: u32, v: &Attempt) {
        if let (Some(a), Attempt::Retry { detail, .. }) = (&self.audit, v) {
            crate::audit::record(
                a,
                "notification",
                json!({"receiver": d.receiver, "key": d.key, "result": "retry", "attempts": attempt, "detail": detail}),
            );
        }
    }
}

/// What became of one due notification in a pass.
enum Outcome {
    /// Its retry is not due yet (at this time).
    NotYet(Millis),
    /// Too old to try again.
    GiveUp(String),
    /// Replaced by this later notification of the same alert identity (Alertmanager).
    Superseded(u64),
    /// Sent; with the time of the next attempt if it is to be retried.
    Attempted { verdict: Attempt, retry_at: Option<Millis> },
}

/// One receiver's due notifications, delivered in order on a task of their own.
struct ReceiverJob {
    client: reqwest::Client,
    warned: Arc<std::sync::Mutex<HashSet<String>>>,
    heartbeat: Option<Arc<crate::health::Task>>,
    receiver: ReceiverConfig,
    items: Vec<Due>,
    next_try: HashMap<u64, Millis>,
    units: Vec<f64>,
    now: Millis,
}

impl ReceiverJob {
    async fn deliver(self) -> Vec<(Due, Outcome)> {
        let (r, now) = (&self.receiver, self.now);
        let policy = super::retry::RetryPolicy::of(r);
        // Alert identities (the condition) with an earlier notification still undelivered: later
        // transitions of that condition — of this breach or a later one — wait for it, so the
        // receiver never sees them out of order (an Alertmanager would otherwise show breach 1
        // resolved after breach 2's firing, for the same labels).
        let mut blocked: HashSet<String> = HashSet::new();
        let mut out = Vec::with_capacity(self.items.len());
        // Alertmanager: the latest transition of each identity stands for the earlier ones, and
        // waits for the latest backoff any of them is under.
        let (latest, waits): (HashMap<&str, u64>, HashMap<&str, Millis>) = if r.kind == ReceiverKind::Alertmanager {
            let mut waits: HashMap<&str, Millis> = HashMap::new();
            for d in &self.items {
                if let Some(&t) = self.next_try.get(&d.id) {
                    let w = waits.entry(identity_key(&d.key)).or_insert(t);
                    *w = (*w).max(t);
                }
            }
            (self.items.iter().map(|d| (identity_key(&d.key), d.id)).collect(), waits)
        } else {
            (HashMap::new(), HashMap::new())
        };
        for (d, unit) in self.items.iter().zip(&self.units) {
            if let Some(h) = &self.heartbeat {
                h.beat();
            }
            if let Some(&by) = latest.get(identity_key(&d.key))
                && by != d.id
            {
                out.push((d.clone(), Outcome::Superseded(by)));
                continue;
            }
            let identity = identity_key(&d.key).to_string();
            // Waits behind an earlier undelivered notification of the same condition: nothing to
            // record this pass.
            if blocked.contains(&identity) {
                continue;
            }
            if let Some(t) = self.next_try.get(&d.id).copied().max(waits.get(identity_key(&d.key)).copied())
                && t > now
            {
                blocked.insert(identity);
                out.push((d.clone(), Outcome::NotYet(t)));
                continue;
            }
            if now - d.at > policy.max_age_ms {
                out.push((d.clone(), Outcome::GiveUp(format!("undelivered after max_age {}", r.max_age))));
                continue;
            }
            let verdict = match r.kind {
                ReceiverKind::Log => {
                    tracing::info!(receiver = %d.receiver, key = %d.key, "notification delivered (log receiver)");
                    Attempt::Delivered
                }
                ReceiverKind::Webhook => send_webhook(&self.client, &self.warned, d, r, now).await,
                ReceiverKind::Alertmanager => {
                    let firing =
                        matches!(super::key::split_state(&d.key), Some((_, crate::rules::TransitionKind::Firing)));
                    let body = json!([super::alertmanager::alert(
                        &d.notification,
                        firing,
                        now,
                        r.resend.ms(),
                        r.generator_url.as_deref(),
                    )]);
                    send_alertmanager(&self.client, r, &body, now).await
                }
            };
            let retry_at = match &verdict {
                Attempt::Retry { after_ms, .. } => policy.next_attempt(d.attempts, *after_ms, d.at, now, *unit),
                _ => None,
            };
            if retry_at.is_some() {
                blocked.insert(identity);
            }
            out.push((d.clone(), Outcome::Attempted { verdict, retry_at }));
        }
        out
    }
}

async fn post(
    client: &reqwest::Client,
    r: &ReceiverConfig,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
    now: Millis,
) -> Attempt {
    let mut req = client
        .post(url)
        .timeout(Duration::from_millis(r.timeout.ms().max(1) as u64))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    match req.send().await {
        Ok(resp) => {
            let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
            Attempt::from_status(resp.status().as_u16(), retry_after.as_deref(), now)
        }
        Err(e) => Attempt::Retry { detail: format!("request failed: {}", error_chain(&e)), after_ms: None },
    }
}

async fn send_webhook(
    client: &reqwest::Client,
    warned: &std::sync::Mutex<HashSet<String>>,
    d: &Due,
    r: &ReceiverConfig,
    now: Millis,
) -> Attempt {
    let secret = match r.secret().read(&format!("receivers.{}", d.receiver)) {
        Ok(s) => s,
        Err(e) => {
            if warned.lock().unwrap_or_else(|p| p.into_inner()).insert(d.receiver.clone()) {
                tracing::error!(receiver = %d.receiver, error = %e, "webhook secret unavailable; notifications wait");
            }
            return Attempt::Retry { detail: format!("{e:#}"), after_ms: None };
        }
    };
    let mut body = d.notification.clone();
    body["idempotency_key"] = json!(d.key);
    let bytes = serde_json::to_vec(&body).expect("json");
    let ts = now.div_euclid(1000);
    let sig = super::webhook::sign(&secret, &d.key, ts, &bytes);
    let url = r.url.clone().unwrap_or_default();
    let headers = [("webhook-id", d.key.clone()), ("webhook-timestamp", ts.to_string()), ("webhook-signature", sig)];
    post(client, r, &url, bytes, &headers, now).await
}

async fn send_alertmanager(client: &reqwest::Client, r: &ReceiverConfig, body: &Value, now: Millis) -> Attempt {
    let url = format!("{}/api/v2/alerts", r.url.as_deref().unwrap_or_default().trim_end_matches('/'));
    post(client, r, &url, serde_json::to_vec(body).expect("json"), &[], now).await
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// `run`'s dispatcher: one loop per configured receiver (so a receiver that hangs delays no
/// other, not even until the end of a pass), each woken when a notification is enqueued
/// (`wake`), when its next retry or re-send is due, and at least every second. The supervisor
/// starts loops for receivers added by a reload (a removed receiver's loop ends by itself) and
/// fails for good the notifications of receivers no longer configured.
pub async fn run(
    mut d: Dispatcher,
    receivers: impl Fn() -> BTreeMap<String, ReceiverConfig> + Send + Sync + 'static,
    wake: Arc<tokio::sync::Notify>,
    clock: crate::time::Clock,
    task: crate::health::TaskGuard,
    health: Arc<crate::health::Health>,
) {
    let receivers = Arc::new(receivers);
    // Dropped with the supervisor (aborted at shutdown): its loops stop with it.
    let mut loops: BTreeMap<String, ReceiverLoop> = BTreeMap::new();
    loop {
        task.beat();
        let configured = receivers();
        d.fail_unconfigured(&configured, clock());
        loops.retain(|name, l| {
            if l.handle.is_finished() && configured.contains_key(name) {
                tracing::error!(receiver = %name, "a receiver's delivery loop ended; restarting it");
            }
            !l.handle.is_finished()
        });
        for name in configured.keys() {
            if loops.contains_key(name) {
                continue;
            }
            let mut rd = Dispatcher::new(d.outbox.clone(), d.audit.clone()).only(name);
            rd.rng = fastrand::Rng::with_seed(d.rng.u64(..));
            // Its own heartbeat: a loop wedged on one receiver shows on /healthz by name.
            let guard = health.task(format!("dispatcher {name}"), Duration::from_secs(600));
            rd.heartbeat = Some(guard.task().clone());
            let wake = Arc::new(tokio::sync::Notify::new());
            let handle = tokio::spawn(receiver_loop(rd, name.clone(), receivers.clone(), wake.clone(), clock, guard));
            loops.insert(name.clone(), ReceiverLoop { handle, wake });
        }
        let _ = tokio::time::timeout(Duration::from_millis(1000), wake.notified()).await;
        for l in loops.values() {
            l.wake.notify_one();
        }
    }
}

/// A receiver's running loop; aborted when dropped.
struct ReceiverLoop {
    handle: tokio::task::JoinHandle<()>,
    wake: Arc<tokio::sync::Notify>,
}

impl Drop for ReceiverLoop {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// One receiver's delivery loop; ends when the receiver leaves the config.
async fn receiver_loop<F: Fn() -> BTreeMap<String, ReceiverConfig>>(
    mut d: Dispatcher,
    name: String,
    receivers: Arc<F>,
    wake: Arc<tokio::sync::Notify>,
    clock: crate::time::Clock,
    task: crate::health::TaskGuard,
) {
    loop {
        task.beat();
        let configured = receivers();
        if !configured.contains_key(&name) {
            // Removed by a reload: done, not dead.
            task.finished();
            return;
        }
        let next = d.run_due(&configured, clock()).await;
        let wait = next.map_or(1000, |t| (t - clock()).clamp(0, 1000));
        let _ = tokio::time::timeout(Duration::from_millis(wait as u64), wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::Dispatcher;
    use crate::config::ReceiverConfig;
    use crate::notify::outbox::Outbox;

    fn receivers(names: &[&str]) -> BTreeMap<String, ReceiverConfig> {
        names
            .iter()
            .map(|n| {
                (n.to_string(), serde_json::from_value(serde_json::json!({"kind": "log"})).expect("a log receiver"))
            })
            .collect()
    }

    /// Notifications for a receiver a reload removed fail for good (nothing would ever deliver
    /// them); those of configured receivers, and those another dispatcher serves, stay pending.
    #[test]
    fn notifications_of_an_unconfigured_receiver_fail_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(&dir.path().join("outbox.jsonl"), 1 << 20).unwrap();
        for (receiver, key) in [("gone", "k1"), ("ops", "k2"), ("gone", "k3")] {
            outbox.enqueue(receiver, key, serde_json::json!({"deployment_id": "d"}), 0).unwrap();
        }
        let outbox = Arc::new(Mutex::new(outbox));
        let pending = |o: &Arc<Mutex<Outbox>>| {
            let o = o.lock().unwrap();
            let mut v: Vec<String> = o.pending().map(|e| format!("{}/{}", e.receiver, e.key)).collect();
            v.sort();
            v
        };
        // A dispatcher serving only `ops` leaves `gone`'s notifications to the one that serves it.
        Dispatcher::new(outbox.clone(), None).only("ops").fail_unconfigured(&receivers(&["ops"]), 1);
        assert_eq!(pending(&outbox), ["gone/k1", "gone/k3", "ops/k2"]);
        Dispatcher::new(outbox.clone(), None).fail_unconfigured(&receivers(&["ops"]), 2);
        assert_eq!(pending(&outbox), ["ops/k2"]);
        let failed = outbox.lock().unwrap().results.get(&("gone".to_string(), "failed")).copied();
        assert_eq!(failed, Some(2));
    }

    /// An HTTP receiver answering each request with the next scripted status (200 when the script
    /// runs out) and recording what it was sent: fault injection a real Alertmanager cannot give.
    struct Scripted {
        url: String,
        bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    }

    async fn scripted(statuses: Vec<(u16, Option<&'static str>)>) -> Scripted {
        use axum::response::IntoResponse;
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(statuses)));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let (script, seen) = (script.clone(), seen.clone());
            async move {
                seen.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or_default());
                let (status, retry_after) = script.lock().unwrap().pop_front().unwrap_or((200, None));
                let mut resp = axum::http::StatusCode::from_u16(status).unwrap().into_response();
                if let Some(v) = retry_after {
                    resp.headers_mut().insert("retry-after", v.parse().unwrap());
                }
                resp
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Scripted { url, bodies }
    }

    fn alertmanager(url: &str) -> BTreeMap<String, ReceiverConfig> {
        let r = serde_json::json!({"kind": "alertmanager", "url": url, "resend": "1m",
                                   "backoff_initial": "2s", "backoff_max": "8s", "max_age": "1h"});
        BTreeMap::from([("am".to_string(), serde_json::from_value(r).expect("an alertmanager receiver"))])
    }

    /// A firing notification of one breach, enqueued at `at`.
    fn firing(outbox: &Arc<Mutex<Outbox>>, at: i64) {
        let n = serde_json::json!({"deployment_id": "d", "condition": "c", "severity": "warning", "kind": "rate",
                                   "system": "lfr", "started_at": "2026-04-25T09:00:00Z"});
        let key = "ddtwatch/d/c/2026-04-25T09:00:00Z/firing";
        outbox.lock().unwrap().enqueue("am", key, n, at).unwrap();
    }

    fn result(outbox: &Arc<Mutex<Outbox>>, result: &'static str) -> u64 {
        outbox.lock().unwrap().results.get(&("am".to_string(), result)).copied().unwrap_or(0)
    }

    /// Retries follow the schedule: full-jitter backoff within `backoff_initial·2^attempt`
    /// (capped at `backoff_max`), nothing sent before a retry is due, `Retry-After` obeyed to the
    /// millisecond, and delivery ends the retries.
    #[tokio::test]
    async fn retries_keep_their_schedule() {
        let server = scripted(vec![(503, None), (503, None), (503, None), (429, Some("120"))]).await;
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Mutex::new(Outbox::open(&dir.path().join("outbox.jsonl"), 1 << 20).unwrap()));
        firing(&outbox, 0);
        let receivers = alertmanager(&server.url);
        let mut d = Dispatcher::new(outbox.clone(), None).with_seed(7);
        let sent = || server.bodies.lock().unwrap().len();
        let mut now = 0;
        // Attempts 1..3 fail with 503: each next try lies within (now, now + min(2s·2^k, 8s)].
        for (k, ceiling) in [(0, 2_000), (1, 4_000), (2, 8_000)] {
            let next = d.run_due(&receivers, now).await.expect("a retry is scheduled");
            assert_eq!(sent(), k + 1, "attempt {}", k + 1);
            assert!(next >= now && next <= now + ceiling, "attempt {}: next {next} at {now}", k + 1);
            // Nothing is sent before the retry is due.
            if next > now {
                assert_eq!(d.run_due(&receivers, next - 1).await, Some(next));
                assert_eq!(sent(), k + 1, "no attempt before its time");
            }
            now = next;
        }
        // Attempt 4: 429 with Retry-After: 120 → exactly two minutes later.
        let next = d.run_due(&receivers, now).await.expect("Retry-After schedules the retry");
        assert_eq!(next, now + 120_000);
        assert_eq!(result(&outbox, "retry"), 4);
        // Attempt 5 is delivered; the next thing scheduled is the re-send, a minute on.
        assert_eq!(d.run_due(&receivers, next).await, Some(next + 60_000));
        assert_eq!(sent(), 5);
        assert_eq!(outbox.lock().unwrap().depth(), 0);
        assert_eq!(result(&outbox, "delivered"), 1);
    }

    /// A notification older than the receiver's `max_age` is given up, not retried for ever.
    #[tokio::test]
    async fn retries_stop_at_max_age() {
        let server = scripted(vec![(503, None); 4]).await;
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Mutex::new(Outbox::open(&dir.path().join("outbox.jsonl"), 1 << 20).unwrap()));
        firing(&outbox, 0);
        let receivers = alertmanager(&server.url);
        let mut d = Dispatcher::new(outbox.clone(), None).with_seed(7);
        assert!(d.run_due(&receivers, 0).await.is_some());
        // An hour and a bit later the retry is due but the notification is too old to send.
        assert_eq!(d.run_due(&receivers, 3_600_001).await, None);
        assert_eq!(server.bodies.lock().unwrap().len(), 1, "not sent again");
        assert_eq!(result(&outbox, "failed"), 1);
        assert_eq!(outbox.lock().unwrap().depth(), 0);
    }

    /// An open breach delivered to an Alertmanager is re-sent every `resend` with its `endsAt`
    /// moved on (so the alert does not expire there), counted `resent`; a failed re-send is
    /// counted `resend_failed` and tried again a `resend` later.
    #[tokio::test]
    async fn open_breaches_are_resent_every_resend() {
        let server = scripted(vec![(200, None), (200, None), (500, None)]).await;
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Mutex::new(Outbox::open(&dir.path().join("outbox.jsonl"), 1 << 20).unwrap()));
        firing(&outbox, 0);
        let receivers = alertmanager(&server.url);
        let mut d = Dispatcher::new(outbox.clone(), None).with_seed(7);
        assert_eq!(d.run_due(&receivers, 0).await, Some(60_000), "delivered; re-send a minute on");
        assert_eq!(d.run_due(&receivers, 30_000).await, Some(60_000), "not before");
        assert_eq!(server.bodies.lock().unwrap().len(), 1);
        assert_eq!(d.run_due(&receivers, 60_000).await, Some(120_000));
        assert_eq!(d.run_due(&receivers, 120_000).await, Some(180_000), "a failed re-send waits a resend too");
        let bodies = server.bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 3);
        let ends: Vec<&str> = bodies.iter().map(|b| b[0]["endsAt"].as_str().unwrap()).collect();
        // endsAt = now + 4·resend at each send.
        assert_eq!(ends, ["1970-01-01T00:04:00Z", "1970-01-01T00:05:00Z", "1970-01-01T00:06:00Z"]);
        assert!(bodies.iter().all(|b| b[0]["labels"]["alertname"] == "c"), "the same alert each time");
        assert_eq!((result(&outbox, "resent"), result(&outbox, "resend_failed")), (1, 1));
    }
}
