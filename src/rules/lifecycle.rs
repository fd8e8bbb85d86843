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
}

impl Lifecycle {
    /// Advances the lifecycle with a verdict at engine time `now`.
    pub fn step(&mut self, verdict: Verdict, now: Millis, for_ms: i64) -> Option<TransitionKind> {
        match verdict {
            Verdict::Breach => {
                let since = match self.state {
                    BreachState::Pending | BreachState::Firing => self.since.unwrap_or(now),
                    _ => now,
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
    fn zero_for_fires_immediately() {
        let mut l = Lifecycle::default();
        assert_eq!(l.step(Verdict::Breach, 5, 0), Some(TransitionKind::Firing));
    }
}
