//! The breach book: every breach of every deployment, open or closed (`/api/v1/breaches`,
//! summaries, records, snapshots), kept from the transitions the lifecycle produces. With
//! [`Transition::new`], the whole breach lifecycle lives in `rules`: the engine evaluates and
//! steps, this records.

use std::collections::HashMap;

use super::{Condition, Evaluation, Severity, Transition, TransitionKind};
use crate::event::System;
use crate::time::{Millis, ser_opt_ts, ser_ts};

/// One breach, open or closed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BreachRecord {
    pub deployment_id: String,
    pub condition: String,
    pub kind: String,
    pub severity: Severity,
    #[serde(serialize_with = "ser_ts")]
    pub started_at: Millis,
    #[serde(serialize_with = "ser_ts")]
    pub fired_at: Millis,
    #[serde(serialize_with = "ser_opt_ts")]
    pub resolved_at: Option<Millis>,
    pub value: Option<f64>,
    pub limit: serde_json::Value,
    pub notify: Vec<String>,
}

#[derive(Debug, Default)]
pub struct BreachBook {
    records: Vec<BreachRecord>,
    /// (deployment, condition) → its open breach (at most one).
    open: HashMap<(String, String), usize>,
}

impl BreachBook {
    pub fn all(&self) -> &[BreachRecord] {
        &self.records
    }

    pub fn of<'a>(&'a self, deployment: &'a str) -> impl Iterator<Item = &'a BreachRecord> + 'a {
        self.records.iter().filter(move |b| b.deployment_id == deployment)
    }

    /// Replaces a deployment's history (restored from a snapshot, or emptied when it leaves).
    pub fn replace(&mut self, deployment: &str, records: Vec<BreachRecord>) {
        self.records.retain(|b| b.deployment_id != deployment);
        self.records.extend(records);
        // Indices moved: rebuild the open index.
        self.open = self
            .records
            .iter()
            .enumerate()
            .filter(|(_, b)| b.resolved_at.is_none())
            .map(|(i, b)| ((b.deployment_id.clone(), b.condition.clone()), i))
            .collect();
    }

    /// A firing opens a breach; a resolution closes the open one.
    pub fn record(&mut self, t: &Transition) {
        let key = (t.deployment_id.clone(), t.condition.clone());
        match t.state {
            TransitionKind::Firing => {
                self.open.insert(key, self.records.len());
                self.records.push(BreachRecord {
                    deployment_id: t.deployment_id.clone(),
                    condition: t.condition.clone(),
                    kind: t.kind.to_string(),
                    severity: t.severity,
                    started_at: t.started_at,
                    fired_at: t.at,
                    resolved_at: None,
                    value: t.value,
                    limit: t.limit.clone(),
                    notify: t.notify.clone(),
                });
            }
            TransitionKind::Resolved => {
                if let Some(i) = self.open.remove(&key) {
                    self.records[i].resolved_at = Some(t.at);
                }
            }
        }
    }

    /// A breach taken over after a restart (`Lifecycle::seed`): open under its key time; an
    /// earlier breach still open here ended before it fired.
    pub fn take_over(
        &mut self,
        deployment: &str,
        id: &str,
        c: &Condition,
        started_at: Millis,
        fired_at: Millis,
        limit: serde_json::Value,
    ) {
        let key = (deployment.to_string(), id.to_string());
        if let Some(&i) = self.open.get(&key)
            && self.records[i].started_at != started_at
        {
            self.records[i].resolved_at = Some(fired_at);
            self.open.remove(&key);
        }
        if !self.open.contains_key(&key) {
            self.open.insert(key, self.records.len());
            self.records.push(BreachRecord {
                deployment_id: deployment.to_string(),
                condition: id.to_string(),
                kind: c.kind.name().to_string(),
                severity: c.severity,
                started_at,
                fired_at,
                resolved_at: None,
                value: None,
                limit,
                notify: c.notify.clone(),
            });
        }
    }
}

impl Transition {
    /// The transition of condition `c` (instance `id`) of a deployment at engine time `at`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        deployment: &str,
        system: Option<System>,
        id: String,
        c: &Condition,
        state: TransitionKind,
        at: Millis,
        started_at: Millis,
        e: &Evaluation,
    ) -> Self {
        Transition {
            deployment_id: deployment.to_string(),
            system,
            summary: summary(c, &id, state, e),
            condition: id,
            kind: c.kind.name(),
            severity: c.severity,
            state,
            at,
            started_at,
            value: e.value,
            lower: e.lower,
            upper: e.upper,
            samples: e.n,
            limit: e.limit.value(),
            window: c.kind.window().map(|w| w.to_string()),
            runbook: c.runbook.clone(),
            notify: c.notify.clone(),
            false_breach_budget: c.kind.budget().map(|b| b.words()),
            detail: e.detail.value(),
        }
    }
}

/// The one-line summary of a transition: the condition's own, or kind, id, state, value, limit.
fn summary(c: &Condition, id: &str, kind: TransitionKind, e: &Evaluation) -> String {
    if let Some(s) = &c.summary {
        return format!("{s} ({})", kind.as_str());
    }
    let value = match e.value {
        Some(v) => format!("value {v:.6}"),
        None => "no value".to_string(),
    };
    format!("{} {} {} ({value}, limit {})", c.kind.name(), id, kind.as_str(), e.limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition() -> Condition {
        let m: serde_norway::Mapping =
            serde_norway::from_str("{id: floor, kind: state, check: threshold_floor, min: 0.6, notify: [ops]}")
                .unwrap();
        super::super::parse_condition(&m, "c").unwrap()
    }

    fn transition(state: TransitionKind, at: Millis, started_at: Millis) -> Transition {
        let e = Evaluation::new(super::super::Verdict::Breach);
        Transition::new("d", None, "floor".into(), &condition(), state, at, started_at, &e)
    }

    #[test]
    fn firings_open_and_resolutions_close_one_breach_per_condition() {
        let mut b = BreachBook::default();
        b.record(&transition(TransitionKind::Firing, 10, 5));
        b.record(&transition(TransitionKind::Resolved, 20, 5));
        b.record(&transition(TransitionKind::Firing, 30, 25));
        let got: Vec<(Millis, Millis, Option<Millis>)> =
            b.all().iter().map(|r| (r.started_at, r.fired_at, r.resolved_at)).collect();
        assert_eq!(got, vec![(5, 10, Some(20)), (25, 30, None)]);
        assert_eq!(b.all()[0].notify, vec!["ops".to_string()]);
        // Replacing a deployment's history keeps the open index right.
        let kept: Vec<BreachRecord> = b.of("d").cloned().collect();
        b.replace("d", kept);
        b.record(&transition(TransitionKind::Resolved, 40, 25));
        assert_eq!(b.all()[1].resolved_at, Some(40));
    }

    #[test]
    fn a_taken_over_breach_closes_an_earlier_open_one_and_is_not_doubled() {
        let mut b = BreachBook::default();
        b.record(&transition(TransitionKind::Firing, 10, 5));
        let c = condition();
        b.take_over("d", "floor", &c, 25, 30, serde_json::json!({"min": 0.6}));
        b.take_over("d", "floor", &c, 25, 30, serde_json::json!({"min": 0.6}));
        let got: Vec<(Millis, Option<Millis>)> = b.all().iter().map(|r| (r.started_at, r.resolved_at)).collect();
        assert_eq!(got, vec![(5, Some(30)), (25, None)]);
    }
}
