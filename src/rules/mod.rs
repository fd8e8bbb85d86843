//! Conditions: the config model, their evaluation against a deployment, and the breach
//! lifecycle that turns verdicts into `firing` / `resolved` transitions.

mod eval;
mod lifecycle;
mod model;

pub use eval::{Evaluation, JsonText, evaluate};
pub use lifecycle::{BreachState, Lifecycle, TransitionKind, Verdict};
pub use model::*;

use serde::Serialize;

use crate::event::{Millis, System, format_ts, ser_ts};

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
    pub detail: serde_json::Value,
}

impl Transition {
    /// `ddtwatch/<deployment>/<condition>/<started_at>`: the same breach is the same notification.
    pub fn idempotency_key(&self) -> String {
        format!("ddtwatch/{}/{}/{}", self.deployment_id, self.condition, format_ts(self.started_at))
    }
}
