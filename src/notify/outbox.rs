//! The notification outbox: every breach transition becomes one notification per receiver,
//! journaled (JSON lines, fsync'd) in `state_dir/outbox.jsonl` before the events that caused it
//! are acknowledged; a dispatcher delivers from here and journals the result. A restart replays
//! the journal: pending notifications are sent again, delivered ones never.
//!
//! Journal lines: `{"op":"enqueue","id":n,"receiver":"…","key":"…","at":ms,"notification":{…}}`
//! and `{"op":"delivered"|"failed","id":n,"at":ms,"attempts":k,"detail":"…"}`. The journal is
//! compacted (rewritten with the pending entries only) when it passes `compact_bytes`.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::key::split_state;
pub use super::key::{breach_key, identity_key};
use crate::rules::TransitionKind;

pub type SharedOutbox = std::sync::Arc<std::sync::Mutex<Outbox>>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub id: u64,
    pub receiver: String,
    /// Idempotency key of the breach plus the transition state (`…/firing`, `…/resolved`).
    pub key: String,
    pub at: i64,
    pub attempts: u32,
    pub notification: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Enqueue {
        id: u64,
        receiver: String,
        key: String,
        at: i64,
        notification: Value,
    },
    Delivered {
        id: u64,
        at: i64,
        attempts: u32,
    },
    Failed {
        id: u64,
        at: i64,
        attempts: u32,
        detail: String,
    },
    /// Not sent: a later transition of the same alert identity replaces it (Alertmanager).
    Superseded {
        id: u64,
        at: i64,
        by: u64,
    },
}

#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    file: File,
    pending: BTreeMap<u64, Entry>,
    /// (receiver, key) of every notification ever enqueued (delivered or not): no duplicates.
    seen: HashSet<(String, String)>,
    /// (receiver, breach key) → the delivered `firing` notification of a breach whose `resolved`
    /// is not delivered yet: what the Alertmanager receiver re-sends while the breach lasts.
    active: BTreeMap<(String, String), Entry>,
    next_id: u64,
    bytes: u64,
    compact_bytes: u64,
    /// (receiver, result) → count since start (metrics).
    pub results: BTreeMap<(String, &'static str), u64>,
}

impl Outbox {
    pub fn open(path: &Path, compact_bytes: u64) -> io::Result<Self> {
        let mut pending = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut active = BTreeMap::new();
        let mut next_id = 1;
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                let line = line?;
                // A torn last line (crash mid-write) was never acknowledged: skip it.
                let Ok(l) = serde_json::from_str::<Line>(&line) else { continue };
                match l {
                    Line::Enqueue { id, receiver, key, at, notification } => {
                        seen.insert((receiver.clone(), key.clone()));
                        next_id = next_id.max(id + 1);
                        pending.insert(id, Entry { id, receiver, key, at, attempts: 0, notification });
                    }
                    Line::Delivered { id, .. } => {
                        if let Some(e) = pending.remove(&id) {
                            track_active(&mut active, e);
                        }
                    }
                    Line::Failed { id, .. } => {
                        if let Some(e) = pending.remove(&id) {
                            close_active(&mut active, &e);
                        }
                    }
                    Line::Superseded { id, .. } => {
                        if let Some(e) = pending.remove(&id) {
                            close_active(&mut active, &e);
                        }
                    }
                }
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let bytes = file.metadata()?.len();
        Ok(Outbox {
            path: path.to_path_buf(),
            file,
            pending,
            seen,
            active,
            next_id,
            bytes,
            compact_bytes,
            results: BTreeMap::new(),
        })
    }

    /// Appends a journal line; `durable` waits for the disk (fsync).
    fn write(&mut self, l: &Line, durable: bool) -> io::Result<()> {
        let mut b = serde_json::to_vec(l).expect("json");
        b.push(b'\n');
        self.file.write_all(&b)?;
        if durable {
            self.file.sync_data()?;
        }
        self.bytes += b.len() as u64;
        Ok(())
    }

    /// Journals a notification (durable on return). None if this receiver already has this key.
    pub fn enqueue(&mut self, receiver: &str, key: &str, notification: Value, now: i64) -> io::Result<Option<u64>> {
        if !self.seen.insert((receiver.to_string(), key.to_string())) {
            return Ok(None);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.write(
            &Line::Enqueue {
                id,
                receiver: receiver.into(),
                key: key.into(),
                at: now,
                notification: notification.clone(),
            },
            true,
        )?;
        self.pending
            .insert(id, Entry { id, receiver: receiver.into(), key: key.into(), at: now, attempts: 0, notification });
        Ok(Some(id))
    }

    pub fn pending(&self) -> impl Iterator<Item = &Entry> {
        self.pending.values()
    }

    /// Delivered `firing` notifications whose breach has not been delivered as resolved.
    pub fn active(&self) -> impl Iterator<Item = &Entry> {
        self.active.values()
    }

    /// Breaches receivers were told (or are about to be told) are firing: a `firing`
    /// notification pending or delivered, and no `resolved` one enqueued. One per breach,
    /// whatever the number of receivers; read from the notifications' own fields.
    pub fn open_breaches(&self) -> Vec<crate::engine::OpenBreach> {
        let resolved: HashSet<&str> = self.pending.values().filter_map(|e| resolved_breach(&e.key)).collect();
        let mut open: BTreeMap<&str, crate::engine::OpenBreach> = BTreeMap::new();
        for e in self.active.values().chain(self.pending.values()) {
            let Some((breach, TransitionKind::Firing)) = split_state(&e.key) else { continue };
            if resolved.contains(breach) || open.contains_key(breach) {
                continue;
            }
            let n = &e.notification;
            let ts = |k: &str| n[k].as_str().and_then(crate::event::parse_ts);
            let (Some(deployment_id), Some(condition), Some(started_at), Some(fired_at)) =
                (n["deployment_id"].as_str(), n["condition"].as_str(), ts("started_at"), ts("at"))
            else {
                continue;
            };
            open.insert(
                breach,
                crate::engine::OpenBreach {
                    deployment_id: deployment_id.to_string(),
                    condition: condition.to_string(),
                    started_at,
                    fired_at,
                },
            );
        }
        // One per condition: the latest breach (by time, not by the key's text, where
        // `…:04.001Z` sorts before `…:04Z`).
        let mut latest: BTreeMap<(String, String), crate::engine::OpenBreach> = BTreeMap::new();
        for b in open.into_values() {
            let k = (b.deployment_id.clone(), b.condition.clone());
            if latest.get(&k).is_none_or(|x| x.started_at < b.started_at) {
                latest.insert(k, b);
            }
        }
        latest.into_values().collect()
    }

    /// Counts a result that does not change an entry (e.g. an Alertmanager re-send).
    pub fn count(&mut self, receiver: &str, result: &'static str) {
        *self.results.entry((receiver.to_string(), result)).or_default() += 1;
    }

    /// Records a delivery attempt's end: delivered, or failed for good (permanent error / too old).
    pub fn finish(&mut self, id: u64, delivered: bool, detail: &str, now: i64) -> io::Result<()> {
        let Some(e) = self.pending.remove(&id) else { return Ok(()) };
        let attempts = e.attempts + 1;
        let line = if delivered {
            Line::Delivered { id, at: now, attempts }
        } else {
            Line::Failed { id, at: now, attempts, detail: detail.into() }
        };
        // Not fsync'd: a result lost in a crash means one more delivery of the same notification
        // (same webhook-id / Alertmanager alert), which receivers absorb — at-least-once — and
        // it keeps the dispatcher from competing with enqueues for the disk.
        self.write(&line, false)?;
        *self.results.entry((e.receiver.clone(), if delivered { "delivered" } else { "failed" })).or_default() += 1;
        if delivered {
            track_active(&mut self.active, e);
        } else {
            // A `resolved` that failed for good still ends its breach: no more re-sends.
            close_active(&mut self.active, &e);
        }
        if self.compact_bytes > 0 && self.bytes > self.compact_bytes {
            self.compact()?;
        }
        Ok(())
    }

    /// Ends a notification without sending it: `by`, a later transition of the same alert
    /// identity to the same receiver, carries the state the receiver needs (Alertmanager keeps
    /// one alert per label set). A superseded `resolved` closes its breach's open entry, so the
    /// breach is not re-sent; a superseded `firing` never opens one.
    pub fn supersede(&mut self, id: u64, by: u64, now: i64) -> io::Result<()> {
        let Some(e) = self.pending.remove(&id) else { return Ok(()) };
        self.write(&Line::Superseded { id, at: now, by }, false)?;
        *self.results.entry((e.receiver.clone(), "superseded")).or_default() += 1;
        close_active(&mut self.active, &e);
        Ok(())
    }

    /// A retryable failure: counted, stays pending.
    pub fn retry(&mut self, id: u64) {
        if let Some(e) = self.pending.get_mut(&id) {
            e.attempts += 1;
            *self.results.entry((e.receiver.clone(), "retry")).or_default() += 1;
        }
    }

    pub fn depth(&self) -> usize {
        self.pending.len()
    }

    /// Age (ms) of the oldest pending notification.
    pub fn oldest_age(&self, now: i64) -> Option<i64> {
        self.pending.values().map(|e| now - e.at).max()
    }

    /// Rewrites the journal with the pending entries only (temp file, fsync, rename).
    fn compact(&mut self) -> io::Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut put = |l: &Line| -> io::Result<()> {
                let mut b = serde_json::to_vec(l).expect("json");
                b.push(b'\n');
                f.write_all(&b)
            };
            let enqueue = |e: &Entry| Line::Enqueue {
                id: e.id,
                receiver: e.receiver.clone(),
                key: e.key.clone(),
                at: e.at,
                notification: e.notification.clone(),
            };
            // Open breaches keep their delivered firing notification (for re-sends after restart).
            for e in self.active.values() {
                put(&enqueue(e))?;
                put(&Line::Delivered { id: e.id, at: e.at, attempts: e.attempts })?;
            }
            for e in self.pending.values() {
                put(&enqueue(e))?;
            }
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.bytes = self.file.metadata()?.len();
        // Keys of delivered notifications are forgotten with the compaction; a transition is
        // enqueued once when it happens, so that only matters for re-delivered events, which the
        // engine's dedup already drops.
        self.seen =
            self.pending.values().chain(self.active.values()).map(|e| (e.receiver.clone(), e.key.clone())).collect();
        Ok(())
    }
}

/// `…/<started_at>/firing` delivered opens the breach; `…/resolved` delivered closes it.
fn track_active(active: &mut BTreeMap<(String, String), Entry>, e: Entry) {
    match split_state(&e.key) {
        Some((base, TransitionKind::Firing)) => {
            let base = base.to_string();
            active.insert((e.receiver.clone(), base), e);
        }
        Some((base, TransitionKind::Resolved)) => {
            active.remove(&(e.receiver.clone(), base.to_string()));
        }
        None => {}
    }
}

/// A `resolved` that will never be delivered still closes its breach for re-sends.
fn close_active(active: &mut BTreeMap<(String, String), Entry>, e: &Entry) {
    if let Some(base) = resolved_breach(&e.key) {
        active.remove(&(e.receiver.clone(), base.to_string()));
    }
}

/// The breach a `resolved` key closes.
fn resolved_breach(key: &str) -> Option<&str> {
    split_state(key).and_then(|(b, s)| (s == TransitionKind::Resolved).then_some(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pending_survive_a_restart_and_delivered_are_not_resent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        let mut o = Outbox::open(&path, 0).unwrap();
        let a = o.enqueue("ops", "ddtwatch/d/c/t/firing", json!({"n": 1}), 1000).unwrap().unwrap();
        let b = o.enqueue("oversight", "ddtwatch/d/c/t/firing", json!({"n": 1}), 1000).unwrap().unwrap();
        assert_eq!(o.enqueue("ops", "ddtwatch/d/c/t/firing", json!({"n": 1}), 1001).unwrap(), None, "same key twice");
        o.finish(a, true, "", 2000).unwrap();
        assert_eq!(o.depth(), 1);
        assert_eq!(o.oldest_age(61_000), Some(60_000));
        drop(o);
        // Restart (as after SIGKILL): only `b` is pending, the key of `a` is still known.
        let mut o = Outbox::open(&path, 0).unwrap();
        assert_eq!(o.pending().map(|e| e.id).collect::<Vec<_>>(), vec![b]);
        assert_eq!(o.enqueue("ops", "ddtwatch/d/c/t/firing", json!({}), 3000).unwrap(), None);
        let c = o.enqueue("ops", "ddtwatch/d/c/t/resolved", json!({}), 3000).unwrap().unwrap();
        assert!(c > b, "ids keep growing across restarts");
        o.finish(b, false, "permanent 400", 4000).unwrap();
        assert_eq!(o.results.get(&("oversight".to_string(), "failed")), Some(&1));
    }

    fn notification(state: &str, started: &str) -> Value {
        json!({"deployment_id": "d", "condition": "c", "state": state, "started_at": started, "at": "2026-01-01T00:00:09Z"})
    }

    #[test]
    fn open_breaches_are_firings_without_a_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(&dir.path().join("outbox.jsonl"), 0).unwrap();
        let (t1, t2) = ("2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z");
        // Breach 1: fired (delivered to ops, pending for oversight), then resolved (pending).
        let a = o.enqueue("ops", &format!("ddtwatch/d/c/{t1}/firing"), notification("firing", t1), 1).unwrap().unwrap();
        o.enqueue("oversight", &format!("ddtwatch/d/c/{t1}/firing"), notification("firing", t1), 1).unwrap();
        o.finish(a, true, "", 2).unwrap();
        assert_eq!(o.open_breaches().len(), 1, "one breach, two receivers");
        o.enqueue("ops", &format!("ddtwatch/d/c/{t1}/resolved"), notification("resolved", t1), 3).unwrap();
        assert!(o.open_breaches().is_empty());
        // Breach 2: fired and delivered everywhere (only `active` remembers it).
        let b = o.enqueue("ops", &format!("ddtwatch/d/c/{t2}/firing"), notification("firing", t2), 4).unwrap().unwrap();
        o.finish(b, true, "", 5).unwrap();
        let open = o.open_breaches();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].started_at, crate::event::parse_ts(t2).unwrap());
        assert_eq!(open[0].fired_at, crate::event::parse_ts("2026-01-01T00:00:09Z").unwrap());
        assert_eq!((open[0].deployment_id.as_str(), open[0].condition.as_str()), ("d", "c"));
    }

    #[test]
    fn a_failed_resolved_ends_its_breach_and_the_latest_open_breach_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        let mut o = Outbox::open(&path, 0).unwrap();
        let t1 = "2026-01-01T00:00:04Z";
        let f = o.enqueue("ops", &format!("ddtwatch/d/c/{t1}/firing"), notification("firing", t1), 1).unwrap().unwrap();
        o.finish(f, true, "", 2).unwrap();
        let r =
            o.enqueue("ops", &format!("ddtwatch/d/c/{t1}/resolved"), notification("resolved", t1), 3).unwrap().unwrap();
        o.finish(r, false, "permanent 400", 4).unwrap();
        assert_eq!(o.active().count(), 0, "no re-sends of a breach whose resolution failed for good");
        assert!(o.open_breaches().is_empty());
        drop(o);
        let mut o = Outbox::open(&path, 0).unwrap();
        assert_eq!(o.active().count(), 0, "also after a restart");
        // Two open breaches of one condition (a resolution lost): the later in time is taken,
        // though its key sorts first as text.
        let (a, b) = ("2026-01-01T00:00:04Z", "2026-01-01T00:00:04.001Z");
        for t in [a, b] {
            o.enqueue("ops", &format!("ddtwatch/d/c/{t}/firing"), notification("firing", t), 5).unwrap();
        }
        let open = o.open_breaches();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].started_at, crate::event::parse_ts(b).unwrap());
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_compaction_keeps_pending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        let mut o = Outbox::open(&path, 300).unwrap();
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(o.enqueue("ops", &format!("k{i}"), json!({"i": i}), i).unwrap().unwrap());
        }
        for id in &ids[..4] {
            o.finish(*id, true, "", 10).unwrap();
        }
        drop(o);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"op\":\"enq");
        std::fs::write(&path, text).unwrap();
        let o = Outbox::open(&path, 300).unwrap();
        assert_eq!(o.pending().map(|e| e.id).collect::<Vec<_>>(), ids[4..].to_vec());
    }
}
