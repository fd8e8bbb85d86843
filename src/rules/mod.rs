//! Conditions: the config model, their evaluation against a deployment, and the breach
//! lifecycle that turns verdicts into `firing` / `resolved` transitions.

mod book;
mod detail;
mod evaluation;
mod lifecycle;
mod model;
mod parse;

pub use book::{BreachBook, BreachRecord};
pub use detail::{Decision, Detail, DisparityDetail, KsBand, Limit, PsiDetail, round6};
pub use evaluation::{Evaluation, J};
pub use lifecycle::{BreachState, Lifecycle, TransitionKind, Verdict};
pub use model::*;
pub use parse::parse_condition;

use serde::Serialize;

use crate::event::{Millis, System, ser_ts};

/// A breach transition: what receivers are told (CONDITIONS.md, "Breach lifecycle and
/// notifications"). Emitted by the engine in order; `replay` prints one JSON line per transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub deployment_id: String,
    pub system: Option<System>,
    /// Condition id; silence instances are `<id>/<source>`.
    pub condition: String,
    pub kind: &'static str,
    pub severity: Severity,
    pub state: TransitionKind,
    #[serde(serialize_with = "ser_ts")]
    pub at: Millis,
    #[serde(serialize_with = "ser_ts")]
    pub started_at: Millis,
    pub value: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub samples: Option<u64>,
    pub limit: serde_json::Value,
    pub window: Option<String>,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    pub notify: Vec<String>,
    /// The condition's false-breach budget in plain words (statistical conditions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub false_breach_budget: Option<String>,
    pub detail: serde_json::Value,
}
