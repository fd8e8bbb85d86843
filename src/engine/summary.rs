//! The deployment summary (`summary_version: 1`): what `GET /api/v1/deployments/{id}` answers
//! and `replay --summary` writes. Field order and float formatting are fixed, so identical input
//! gives identical bytes.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::deployment::Deployment;
use super::tally::{ENG_ENGAGED, ENG_FALSE_ENGAGED, SUBJ_ALERTS, SUBJ_ENGAGED, SUBJ_FALSE_ALERTS, SUBJ_FALSE_ENGAGED};
use crate::event::{Authorisation, EventType, Millis, OutcomeResult, System};
use crate::rules::{BreachState, Counter, Lifecycle, QuantileValue};
use crate::stats::wilson;

pub(crate) use crate::event::{ser_opt_ts, ser_ts};

#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    pub summary_version: u32,
    pub deployments: Vec<DeploymentSummary>,
    pub invalid: InvalidSummary,
    pub duplicates: u64,
    pub config_hash: String,
    pub ddtwatch_version: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct InvalidSummary {
    pub total: u64,
    pub by_reason: BTreeMap<String, u64>,
}

/// The counters block, in the order INTERFACES.md lists them.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Counters {
    pub detections: u64,
    pub alerts: u64,
    pub adjudicated: u64,
    pub engaged: u64,
    pub dismissed: u64,
    pub verified: u64,
    pub outcomes: u64,
    pub true_alerts: u64,
    pub false_alerts: u64,
    pub false_engaged: u64,
    pub misreads: u64,
    pub unadjudicated: u64,
    pub canary_passes: u64,
    pub canary_alerts: u64,
    pub invalid: u64,
    pub duplicates: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConditionSummary {
    pub id: String,
    pub kind: &'static str,
    pub severity: &'static str,
    pub state: &'static str,
    pub value: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub n: Option<u64>,
    pub limit: Value,
    pub times_fired: u64,
    #[serde(serialize_with = "ser_opt_ts")]
    pub since: Option<Millis>,
    /// `false_breach_per_day` of a statistical condition (a probability, or "per_look").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub false_breach_per_day: Option<crate::rules::Budget>,
    pub detail: Value,
}

/// One row of a per-group table (subject_groups: alerts by the list entry's recorded groups).
#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub group: String,
    pub alerts: u64,
    pub false_alerts: u64,
    pub engaged: u64,
    pub false_engaged: u64,
    /// false_alerts / alerts with its Wilson 95% interval (null when no alerts).
    pub rate: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

/// Engaged people by their recorded groups, with false_engaged / engaged.
#[derive(Debug, Clone, Serialize)]
pub struct EngagedRow {
    pub group: String,
    pub engaged: u64,
    pub false_engaged: u64,
    pub exposure: u64,
    pub rate: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeploymentSummary {
    pub summary_version: u32,
    pub deployment_id: String,
    pub system: Option<System>,
    pub phase: &'static str,
    #[serde(serialize_with = "ser_opt_ts")]
    pub first_ts: Option<Millis>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_ts: Option<Millis>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub started_at: Option<Millis>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub stopped_at: Option<Millis>,
    pub counters: Counters,
    pub rates: BTreeMap<&'static str, RateSummary>,
    pub conditions: Vec<ConditionSummary>,
    pub groups: BTreeMap<String, Vec<GroupRow>>,
    pub engaged_groups: BTreeMap<String, Vec<EngagedRow>>,
    pub events_by_type: BTreeMap<&'static str, u64>,
    pub outcomes_by_result: BTreeMap<&'static str, u64>,
    pub invalid_by_reason: BTreeMap<&'static str, u64>,
    pub authorisation: Option<Authorisation>,
    pub sources: Vec<String>,
    /// Whole-deployment latency quantiles (seconds) per series with samples.
    pub latency: BTreeMap<&'static str, LatencySummary>,
    pub config_hash: String,
    /// The watch list as the sources last reported it (None: no source reported one).
    pub watchlist: Option<WatchlistSeen>,
    /// Deletion attestations received, in arrival order.
    pub deletions: Vec<DeletionSummary>,
    /// Every breach of this deployment since this process saw it (open ones have no
    /// resolved_at). Filled by [`crate::engine::Engine::deployment_summary`].
    pub breaches: Vec<super::BreachRecord>,
    /// When (engine clock) the deployment was retired (`engine.retain_stopped`): this is its
    /// final summary. Absent while it is live.
    #[serde(serialize_with = "ser_opt_ts", skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<Millis>,
}

/// The latest watch-list facts across the deployment's sources.
#[derive(Debug, Clone, Serialize)]
pub struct WatchlistSeen {
    pub version: Option<String>,
    pub size: Option<u64>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub built_at: Option<Millis>,
    /// Age of the list when the deployment started (or at its first event), hours.
    pub age_hours_at_start: Option<f64>,
    pub under_18: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeletionSummary {
    pub scope: String,
    #[serde(serialize_with = "ser_ts")]
    pub up_to: Millis,
    pub count: Option<u64>,
}

/// Quantiles of one latency series from its HDR histogram (3 significant digits), seconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub n: u64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Headline rates shown for every deployment regardless of its conditions (both false-alert
/// rates always, DOMAIN.md).
#[derive(Debug, Clone, Serialize)]
pub struct RateSummary {
    pub x: u64,
    pub n: u64,
    pub value: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub method: &'static str,
}

/// The headline rates (numerator, denominator), in one place: the summary, the deployment
/// record and the `ddtwatch_rate_ratio` metric all show these.
pub const HEADLINE_RATES: [(&str, Counter, Counter); 6] = [
    ("false_alerts_per_detection", Counter::FalseAlerts, Counter::Detections),
    ("false_alerts_per_alert", Counter::FalseAlerts, Counter::Alerts),
    ("alerts_per_detection", Counter::Alerts, Counter::Detections),
    ("override_rate", Counter::Dismissed, Counter::Adjudicated),
    ("false_alert_engagement", Counter::FalseEngaged, Counter::FalseAlerts),
    ("canary_recall", Counter::CanaryAlerts, Counter::CanaryPasses),
];

/// A headline rate of a deployment with its Wilson 95% interval (None without a denominator).
pub fn rate_summary(x: u64, n: u64) -> RateSummary {
    if n == 0 {
        return RateSummary { x, n, value: None, lower: None, upper: None, method: "wilson_95" };
    }
    let i = wilson(x.min(n), n, 0.95);
    RateSummary { x, n, value: Some(i.estimate), lower: Some(i.lower), upper: Some(i.upper), method: "wilson_95" }
}

fn lifecycle_summary(
    id: String,
    rt: &super::ConditionRuntime,
    l: &Lifecycle,
    e: Option<&crate::rules::Evaluation>,
) -> ConditionSummary {
    ConditionSummary {
        id,
        kind: rt.condition.kind.name(),
        severity: rt.condition.severity.as_str(),
        state: l.state.as_str(),
        value: e.and_then(|e| e.value),
        lower: e.and_then(|e| e.lower),
        upper: e.and_then(|e| e.upper),
        n: e.and_then(|e| e.n),
        limit: e.map(|e| e.limit.value()).unwrap_or(Value::Null),
        times_fired: l.times_fired,
        false_breach_per_day: rt.condition.kind.budget(),
        since: if matches!(l.state, BreachState::Pending | BreachState::Firing) { l.since } else { None },
        detail: e.map(|e| e.detail.value()).unwrap_or(Value::Null),
    }
}

impl DeploymentSummary {
    pub fn of(d: &Deployment) -> Self {
        let c = |k: Counter| d.count(k);
        let counters = Counters {
            detections: c(Counter::Detections),
            alerts: c(Counter::Alerts),
            adjudicated: c(Counter::Adjudicated),
            engaged: c(Counter::Engaged),
            dismissed: c(Counter::Dismissed),
            verified: c(Counter::Verified),
            outcomes: c(Counter::Outcomes),
            true_alerts: c(Counter::TrueAlerts),
            false_alerts: c(Counter::FalseAlerts),
            false_engaged: c(Counter::FalseEngaged),
            misreads: c(Counter::Misreads),
            unadjudicated: c(Counter::Unadjudicated),
            canary_passes: c(Counter::CanaryPasses),
            canary_alerts: c(Counter::CanaryAlerts),
            invalid: c(Counter::Invalid),
            duplicates: c(Counter::Duplicates),
        };
        let rates = HEADLINE_RATES.iter().map(|&(name, x, n)| (name, rate_summary(c(x), c(n)))).collect();
        let mut conditions = Vec::new();
        for rt in &d.conditions {
            for (id, _, l, e) in rt.entries() {
                conditions.push(lifecycle_summary(id, rt, l, e));
            }
        }
        let mut groups = BTreeMap::new();
        let mut engaged_groups = BTreeMap::new();
        for (a, (attr, _)) in d.groups.attributes.iter().enumerate() {
            let rows = d
                .groups
                .slots(a)
                .map(|(slot, g)| {
                    let cell = d.total.subject[slot].map(|v| v.max(0) as u64);
                    let (x, n) = (cell[SUBJ_FALSE_ALERTS], cell[SUBJ_ALERTS]);
                    let r = rate_summary(x, n);
                    GroupRow {
                        group: g.to_string(),
                        alerts: n,
                        false_alerts: x,
                        engaged: cell[SUBJ_ENGAGED],
                        false_engaged: cell[SUBJ_FALSE_ENGAGED],
                        rate: r.value,
                        lower: r.lower,
                        upper: r.upper,
                    }
                })
                .collect();
            groups.insert(attr.clone(), rows);
            let rows = d
                .groups
                .slots(a)
                .map(|(slot, g)| {
                    let cell = d.total.engaged[slot].map(|v| v.max(0) as u64);
                    let (x, n) = (cell[ENG_FALSE_ENGAGED], cell[ENG_ENGAGED]);
                    let r = rate_summary(x, n);
                    EngagedRow {
                        group: g.to_string(),
                        engaged: n,
                        false_engaged: x,
                        exposure: d.total.exposure[slot].max(0) as u64,
                        rate: r.value,
                        lower: r.lower,
                        upper: r.upper,
                    }
                })
                .collect();
            engaged_groups.insert(attr.clone(), rows);
        }
        DeploymentSummary {
            summary_version: 1,
            deployment_id: d.id.clone(),
            system: d.system,
            phase: d.phase.map(|p| p.as_str()).unwrap_or("unknown"),
            first_ts: d.first_ts,
            last_ts: d.last_ts,
            started_at: d.started_at,
            stopped_at: d.stopped_at,
            counters,
            rates,
            conditions,
            groups,
            engaged_groups,
            events_by_type: EventType::ALL.iter().map(|t| (t.as_str(), d.event_type_count(*t))).collect(),
            outcomes_by_result: OutcomeResult::ALL
                .iter()
                .map(|r| (r.as_str(), d.outcomes_by_result[*r as usize]))
                .collect(),
            invalid_by_reason: d.invalid_by_reason.clone(),
            authorisation: d.authorisation.clone(),
            sources: d.sources.keys().cloned().collect(),
            latency: QuantileValue::ALL
                .iter()
                .filter(|q| !d.latency[**q as usize].total.is_empty())
                .map(|q| {
                    let h = &d.latency[*q as usize].total;
                    let at = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
                    let s = LatencySummary {
                        n: h.len(),
                        p50: at(0.5),
                        p90: at(0.9),
                        p95: at(0.95),
                        p99: at(0.99),
                        max: at(1.0),
                    };
                    (q.as_str(), s)
                })
                .collect(),
            config_hash: d.config_hash.clone(),
            watchlist: watchlist_seen(d),
            deletions: d
                .deletions
                .iter()
                .map(|x| DeletionSummary { scope: x.scope.clone(), up_to: x.up_to, count: x.count })
                .collect(),
            breaches: Vec::new(),
            retired_at: None,
        }
    }
}

fn watchlist_seen(d: &Deployment) -> Option<WatchlistSeen> {
    fn latest<'a, T: Clone + 'a>(
        it: impl Iterator<Item = &'a Option<crate::engine::deployment::Stamped<T>>>,
    ) -> Option<T> {
        it.flatten().max_by_key(|s| s.ts).map(|s| s.value.clone())
    }
    let src = || d.sources.values();
    let w = WatchlistSeen {
        version: latest(src().map(|s| &s.list_version)),
        size: latest(src().map(|s| &s.list_size)),
        built_at: latest(src().map(|s| &s.list_built_at)),
        age_hours_at_start: None,
        under_18: latest(src().map(|s| &s.list_under_18)),
    };
    if w.version.is_none() && w.size.is_none() && w.built_at.is_none() {
        return None;
    }
    let start = d.started_at.or(d.first_ts);
    let age = match (w.built_at, start) {
        (Some(b), Some(s)) => Some((s - b) as f64 / 3_600_000.0),
        _ => None,
    };
    Some(WatchlistSeen { age_hours_at_start: age, ..w })
}
