//! The notifier: what becomes of a breach transition besides the engine's own state. It journals
//! one notification per receiver in the outbox (durable before the call returns, so before the
//! events that caused it are acknowledged), wakes the dispatcher, and writes the audit record;
//! deployment phase changes are audited too. The pipeline hands it everything through the
//! [`Publisher`] trait (ingest knows nothing of notify or audit).

use std::sync::Arc;

use super::key::NotificationKey;
use super::outbox::SharedOutbox;
use crate::audit::SharedAudit;
use crate::event::Phase;
use crate::ingest::Publisher;
use crate::rules::Transition;
use crate::time::{Millis, format_ts, wall_clock_ms};

pub struct Notifier {
    outbox: Option<SharedOutbox>,
    audit: Option<SharedAudit>,
    /// Woken whenever a notification is enqueued (the dispatcher waits on it).
    pub wake: Arc<tokio::sync::Notify>,
    /// When a notification is enqueued (its age in the outbox counts from here).
    clock: crate::time::Clock,
    /// Where retired deployments' final summaries go (`state_dir`).
    records: Option<crate::config::StateDir>,
}

impl Notifier {
    /// Without an outbox, transitions are only audited (and broadcast by the pipeline).
    pub fn new(outbox: Option<SharedOutbox>, audit: Option<SharedAudit>) -> Arc<Self> {
        Self::with_clock(outbox, audit, wall_clock_ms)
    }

    /// [`Notifier::new`] with the clock passed in (the service passes the wall clock; tests a
    /// fixed one).
    pub fn with_clock(
        outbox: Option<SharedOutbox>,
        audit: Option<SharedAudit>,
        clock: crate::time::Clock,
    ) -> Arc<Self> {
        Self::build(outbox, audit, clock, None)
    }

    /// [`Notifier::with_clock`] that also keeps retired deployments' final summaries in
    /// `state_dir/records/<id>.json`.
    pub fn build(
        outbox: Option<SharedOutbox>,
        audit: Option<SharedAudit>,
        clock: crate::time::Clock,
        records: Option<crate::config::StateDir>,
    ) -> Arc<Self> {
        Arc::new(Notifier { outbox, audit, wake: Arc::new(tokio::sync::Notify::new()), clock, records })
    }
}

impl Publisher for Notifier {
    fn transition(&self, t: &Transition) {
        let body = serde_json::to_value(t).unwrap_or_default();
        if let Some(o) = &self.outbox {
            let key = NotificationKey::of(t).to_string();
            let mut o = o.lock().unwrap_or_else(|p| p.into_inner());
            for r in &t.notify {
                if let Err(e) = o.enqueue(r, &key, body.clone(), (self.clock)()) {
                    tracing::error!(error = %e, receiver = %r, "outbox write failed");
                }
            }
            if !t.notify.is_empty() {
                self.wake.notify_one();
            }
        }
        if let Some(a) = &self.audit {
            crate::audit::record(a, "breach", body);
        }
    }

    fn pending_for(&self, deployment: &str) -> Vec<serde_json::Value> {
        let Some(o) = &self.outbox else { return Vec::new() };
        let o = o.lock().unwrap_or_else(|p| p.into_inner());
        o.pending()
            .filter(|e| e.notification["deployment_id"] == deployment)
            .map(|e| serde_json::json!({"receiver": e.receiver, "key": e.key, "at": e.at, "notification": e.notification}))
            .collect()
    }

    fn take_over(&self, entries: Vec<serde_json::Value>) -> usize {
        let Some(o) = &self.outbox else { return 0 };
        let mut o = o.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = 0;
        for e in entries {
            let (Some(receiver), Some(key)) = (e["receiver"].as_str(), e["key"].as_str()) else {
                tracing::warn!("a handed-over notification without receiver or key, skipped");
                continue;
            };
            let at = e["at"].as_i64().unwrap_or_else(self.clock);
            match o.enqueue(receiver, key, e["notification"].clone(), at) {
                Ok(Some(_)) => taken += 1,
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(error = %err, receiver, "outbox write failed for a handed-over notification")
                }
            }
        }
        if taken > 0 {
            self.wake.notify_one();
        }
        taken
    }

    fn sync(&self, timeout: std::time::Duration) -> bool {
        let Some(a) = &self.audit else { return true };
        // The records appended so far, and the topic they go to (the lock is not held while
        // waiting: appends go on meanwhile and are covered by the next sync).
        let (topic, seq) = {
            let log = a.lock().unwrap_or_else(|p| p.into_inner());
            (log.topic().cloned(), log.seq())
        };
        let Some(topic) = topic else { return true };
        if !topic.flush(timeout) {
            return false;
        }
        if let Err(e) = a.lock().unwrap_or_else(|p| p.into_inner()).mark_on_topic(seq) {
            tracing::error!(error = %e, "recording the audit topic's progress in the head failed");
        }
        true
    }

    fn retired(&self, deployment: &str, record: &[u8]) -> bool {
        let Some(path) = self.records.as_ref().and_then(|d| d.record(deployment)) else { return true };
        if path.exists() {
            // Retired by another instance, or before a restart: already kept.
            return true;
        }
        if let Err(e) = crate::config::write_atomic(&path, record) {
            tracing::error!(error = %e, path = %path.display(), "writing a retired deployment's record failed; kept in memory until restart");
            return false;
        }
        if let Some(a) = &self.audit {
            let retired_at = serde_json::from_slice::<serde_json::Value>(record)
                .ok()
                .and_then(|v| v.get("retired_at").cloned())
                .unwrap_or_default();
            crate::audit::record(a, "retired", serde_json::json!({"deployment": deployment, "retired_at": retired_at}));
        }
        true
    }

    fn phase(&self, deployment: &str, phase: Phase, ts: Millis) {
        if let Some(a) = &self.audit {
            crate::audit::record(
                a,
                "lifecycle",
                serde_json::json!({"deployment": deployment, "phase": phase.as_str(), "event_ts": format_ts(ts)}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::Outbox;

    /// A taken-over notification without its enqueue time gets the notifier's clock, not the
    /// system's.
    #[test]
    fn the_clock_is_passed_in() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(std::sync::Mutex::new(Outbox::open(&dir.path().join("outbox.jsonl"), 0).unwrap()));
        let n = Notifier::with_clock(Some(outbox.clone()), None, || 42_000);
        let entry = serde_json::json!({
            "receiver": "ops",
            "key": "ddtwatch/d/threshold_floor/2026-04-25T09:00:00Z/firing",
            "notification": {"deployment_id": "d"},
        });
        assert_eq!(n.take_over(vec![entry]), 1);
        let o = outbox.lock().unwrap();
        let at: Vec<i64> = o.pending().map(|e| e.at).collect();
        assert_eq!(at, vec![42_000]);
    }
}
