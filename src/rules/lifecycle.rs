//! The breach lifecycle of one (deployment, condition):
//! `insufficient_data | ok → pending (since t0) → firing at t0 + for → resolved → ok`.

use serde::Serialize;

use crate::event::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachState {
    #[default]
    InsufficientData,
    Ok,
    Pending,
    Firing,
}

impl BreachState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreachState::InsufficientData => "insufficient_data",
            BreachState::Ok => "ok",
            BreachState::Pending => "pending",
            BreachState::Firing => "firing",
        }
    }

    /// Metric encoding (INTERFACES.md): 0 ok, 1 pending, 2 firing, -1 insufficient data.
    pub fn gauge(self) -> i64 {
        match self {
            BreachState::InsufficientData => -1,
            BreachState::Ok => 0,
            BreachState::Pending => 1,
            BreachState::Firing => 2,
        }
    }
}

/// What an evaluation concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    InsufficientData,
    Ok,
    Breach,
}

/// A notification-worthy change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    Firing,
    Resolved,
}

impl TransitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Firing => "firing",
            TransitionKind::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Lifecycle {
    pub state: BreachState,
    /// Start of the current pending/firing period (t0): part of the idempotency key.
    pub since: Option<Millis>,
    pub times_fired: u64,
    pub last_fired_at: Option<Millis>,
    pub last_resolved_at: Option<Millis>,
    /// Wall mode only: the event-time start of the current (or last) breach, the deployment's
    /// newest event time when it went pending. It replaces `since` in the idempotency key, so a
    /// notification id never carries a wall-clock time (README "Semantics", notification ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Millis>,
    /// Wall mode, after a restart without the state that saw it: a breach that receivers were
    /// told is firing, taken over from the outbox. Until the deployment's events reach this
    /// event time again, verdicts come from a partial re-read and cannot resolve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<Millis>,
}

impl Lifecycle {
    /// Advances the lifecycle with a verdict at engine time `now`.
    pub fn step(&mut self, verdict: Verdict, now: Millis, for_ms: i64) -> Option<TransitionKind> {
        self.step_at(verdict, now, for_ms, None)
    }

    /// [`Lifecycle::step`] in wall mode: `event_time` is the deployment's newest event time,
    /// which anchors a new breach's key (strictly after the previous breach's anchor, so two
    /// breaches never share a key) and releases a [`Lifecycle::seed`]ed breach once reached.
    pub fn step_at(
        &mut self,
        verdict: Verdict,
        now: Millis,
        for_ms: i64,
        event_time: Option<Millis>,
    ) -> Option<TransitionKind> {
        if let Some(until) = self.hold_until {
            match event_time {
                Some(t) if t >= until => self.hold_until = None,
                _ if verdict != Verdict::Breach => return None,
                _ => {}
            }
        }
        match verdict {
            Verdict::Breach => {
                let since = match self.state {
                    BreachState::Pending | BreachState::Firing => self.since.unwrap_or(now),
                    _ => {
                        if let Some(t) = event_time {
                            self.anchor = Some(self.anchor.map_or(t, |a| t.max(a + 1)));
                        }
                        now
                    }
                };
                self.since = Some(since);
                if self.state == BreachState::Firing {
                    return None;
                }
                if now - since >= for_ms {
                    self.state = BreachState::Firing;
                    self.times_fired += 1;
                    self.last_fired_at = Some(now);
                    Some(TransitionKind::Firing)
                } else {
                    self.state = BreachState::Pending;
                    None
                }
            }
            Verdict::Ok | Verdict::InsufficientData => {
                let was_firing = self.state == BreachState::Firing;
                self.state = if verdict == Verdict::Ok { BreachState::Ok } else { BreachState::InsufficientData };
                if was_firing {
                    self.last_resolved_at = Some(now);
                    // `since` stays until the next breach so the resolved notification keeps its key.
                    Some(TransitionKind::Resolved)
                } else {
                    self.since = None;
                    None
                }
            }
        }
    }

    /// The time in this breach's idempotency key: its event-time anchor (wall mode) or the engine
    /// time it went pending.
    pub fn key_time(&self, now: Millis) -> Millis {
        self.anchor.or(self.since).unwrap_or(now)
    }

    /// Takes over a breach that receivers were told is firing (from the outbox, after a restart
    /// that lost the state behind it): firing under its old key, held until the deployment's
    /// events reach `anchor` again. False if the lifecycle already holds this breach firing or
    /// over, or knows a later one. (A snapshot may hold this breach still pending, or an earlier
    /// breach firing: both are taken over.)
    pub fn seed(&mut self, anchor: Millis, fired_at: Millis) -> bool {
        match self.anchor {
            Some(a) if a > anchor => return false,
            // This breach: taken over only if the snapshot saw it pending (not firing, not over).
            Some(a) if a == anchor && self.state != BreachState::Pending => return false,
            _ => {}
        }
        self.state = BreachState::Firing;
        self.since = Some(fired_at);
        self.anchor = Some(anchor);
        self.hold_until = Some(anchor);
        self.times_fired += 1;
        self.last_fired_at = Some(fired_at);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let mut l = Lifecycle::default();
        assert_eq!(l.step(Verdict::InsufficientData, 0, 600), None);
        assert_eq!(l.state, BreachState::InsufficientData);
        assert_eq!(l.step(Verdict::Breach, 1000, 600), None);
        assert_eq!(l.state, BreachState::Pending);
        assert_eq!(l.step(Verdict::Breach, 1500, 600), None);
        assert_eq!(l.step(Verdict::Breach, 1600, 600), Some(TransitionKind::Firing));
        assert_eq!(l.since, Some(1000));
        assert_eq!(l.step(Verdict::Breach, 9000, 600), None, "fires once");
        assert_eq!(l.step(Verdict::Ok, 9500, 600), Some(TransitionKind::Resolved));
        assert_eq!(l.state, BreachState::Ok);
        assert_eq!(l.times_fired, 1);
    }

    #[test]
    fn pending_that_clears_never_fires() {
        let mut l = Lifecycle::default();
        l.step(Verdict::Breach, 0, 600);
        assert_eq!(l.step(Verdict::Ok, 100, 600), None);
        assert_eq!(l.step(Verdict::Breach, 200, 600), None);
        assert_eq!(l.since, Some(200), "a new pending period starts afresh");
        assert_eq!(l.times_fired, 0);
    }

    #[test]
    fn wall_mode_keys_use_event_time_and_never_repeat() {
        let mut l = Lifecycle::default();
        // Pending at wall 10_000 with the newest event at 4_000: the key is the event time, the
        // `for` timer runs on the engine clock.
        assert_eq!(l.step_at(Verdict::Breach, 10_000, 600, Some(4_000)), None);
        assert_eq!(l.step_at(Verdict::Breach, 10_500, 600, Some(4_100)), None);
        assert_eq!(l.step_at(Verdict::Breach, 10_600, 600, Some(4_200)), Some(TransitionKind::Firing));
        assert_eq!(l.key_time(0), 4_000);
        assert_eq!(l.step_at(Verdict::Ok, 11_000, 600, Some(4_200)), Some(TransitionKind::Resolved));
        assert_eq!(l.key_time(0), 4_000, "the resolved notification keeps the key");
        // The next breach is keyed by the newest event time then…
        l.step_at(Verdict::Breach, 12_000, 0, Some(4_200));
        assert_eq!(l.key_time(0), 4_200);
        l.step_at(Verdict::Ok, 13_000, 0, Some(4_200));
        // …and with no newer event, still by a later time than the breach before it.
        l.step_at(Verdict::Breach, 14_000, 0, Some(4_200));
        assert_eq!(l.key_time(0), 4_201);
    }

    #[test]
    fn a_seeded_breach_holds_until_its_event_time_is_reached() {
        let mut l = Lifecycle::default();
        assert!(l.seed(5_000, 9_000));
        assert_eq!(l.state, BreachState::Firing);
        // Partial re-read: neither insufficient data nor ok resolves it.
        assert_eq!(l.step_at(Verdict::InsufficientData, 20_000, 0, None), None);
        assert_eq!(l.step_at(Verdict::Ok, 21_000, 0, Some(4_999)), None);
        assert_eq!(l.state, BreachState::Firing);
        // Caught up: the verdict counts, and the resolution carries the old key.
        assert_eq!(l.step_at(Verdict::Ok, 22_000, 0, Some(5_000)), Some(TransitionKind::Resolved));
        assert_eq!(l.key_time(0), 5_000);
        assert!(!l.seed(5_000, 9_000), "a breach it already knows is not taken over again");
    }

    #[test]
    fn a_snapshot_that_saw_the_breach_pending_or_an_earlier_one_firing_is_taken_over() {
        // Pending in the snapshot (anchor 5_000), fired after it: taken over, firing.
        let mut l = Lifecycle::default();
        l.step_at(Verdict::Breach, 10_000, 60_000, Some(5_000));
        assert_eq!(l.state, BreachState::Pending);
        assert!(l.seed(5_000, 12_000));
        assert_eq!(l.state, BreachState::Firing);
        assert_eq!(l.step_at(Verdict::Ok, 20_000, 0, Some(6_000)), Some(TransitionKind::Resolved), "resolvable");
        // An earlier breach (anchor 1_000) firing in the snapshot; breach 5_000 fired after it.
        let mut l = Lifecycle::default();
        l.step_at(Verdict::Breach, 2_000, 0, Some(1_000));
        assert_eq!(l.state, BreachState::Firing);
        assert!(l.seed(5_000, 12_000));
        assert_eq!(l.key_time(0), 5_000);
        // The same breach already firing, or a later one known: nothing to take over.
        assert!(!l.seed(5_000, 12_000));
        assert!(!l.seed(4_000, 12_000));
    }

    #[test]
    fn a_seeded_breach_that_is_confirmed_keeps_its_key() {
        let mut l = Lifecycle::default();
        l.seed(5_000, 9_000);
        assert_eq!(l.step_at(Verdict::Breach, 20_000, 0, Some(3_000)), None, "no second firing");
        assert_eq!(l.step_at(Verdict::Breach, 21_000, 0, Some(6_000)), None);
        assert_eq!(l.key_time(0), 5_000);
        assert_eq!(l.hold_until, None);
    }

    #[test]
    fn zero_for_fires_immediately() {
        let mut l = Lifecycle::default();
        assert_eq!(l.step(Verdict::Breach, 5, 0), Some(TransitionKind::Firing));
    }
}
