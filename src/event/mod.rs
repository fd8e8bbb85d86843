//! The event contract (`schema_version` 1, see `../shared/spec/EVENTS.md`).
//!
//! Every message ddtwatch consumes — a Kafka record, an NDJSON line, an element of an HTTP body —
//! is parsed here into a typed [`Event`] or rejected with an [`Invalid`] that names a short
//! snake_case [`Reason`] and the offending field. Nothing past this module ever sees raw JSON.
//!
//! Times are carried as milliseconds since the Unix epoch (UTC), which is all the engine needs.

mod by_hand;
mod fast;
mod parse;

pub use parse::{MAX_EVENT_BYTES, MAX_INTEGER, is_valid_id, parse_line, parse_line_into, parse_value};

use std::collections::BTreeMap;
use std::fmt;

// Event time is `crate::time`'s; re-exported for the event contract.
pub use crate::time::{Millis, format_ts, parse_ts, ser_opt_ts, ser_ts};

/// Which kind of operational system produced the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// Live facial recognition.
    Lfr,
    /// Automatic number plate recognition.
    Anpr,
}

impl System {
    pub fn as_str(self) -> &'static str {
        match self {
            System::Lfr => "lfr",
            System::Anpr => "anpr",
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One valid event: the envelope plus its typed body.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub deployment_id: String,
    pub system: System,
    pub source_id: String,
    pub ts: Millis,
    pub ts_emitted: Option<Millis>,
    pub body: Body,
}

/// The seven event types.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Detection(Detection),
    Alert(Alert),
    Adjudication(Adjudication),
    Outcome(Outcome),
    Status(Status),
    Deployment(DeploymentEvent),
    Deletion(Deletion),
}

impl Body {
    pub fn kind(&self) -> EventType {
        match self {
            Body::Detection(_) => EventType::Detection,
            Body::Alert(_) => EventType::Alert,
            Body::Adjudication(_) => EventType::Adjudication,
            Body::Outcome(_) => EventType::Outcome,
            Body::Status(_) => EventType::Status,
            Body::Deployment(_) => EventType::Deployment,
            Body::Deletion(_) => EventType::Deletion,
        }
    }
}

/// The `type` field, also used as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Detection,
    Alert,
    Adjudication,
    Outcome,
    Status,
    Deployment,
    Deletion,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::Detection,
        EventType::Alert,
        EventType::Adjudication,
        EventType::Outcome,
        EventType::Status,
        EventType::Deployment,
        EventType::Deletion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Detection => "detection",
            EventType::Alert => "alert",
            EventType::Adjudication => "adjudication",
            EventType::Outcome => "outcome",
            EventType::Status => "status",
            EventType::Deployment => "deployment",
            EventType::Deletion => "deletion",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Demographic attributes: attribute → group (e.g. `ethnicity → black`).
pub type Groups = BTreeMap<String, String>;

/// Faces processed (LFR) or plates read (ANPR).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detection {
    pub count: u64,
    pub scores: Vec<f64>,
    pub quality: Vec<f64>,
    /// attribute → group → estimated count in this batch.
    pub exposure: BTreeMap<String, BTreeMap<String, u64>>,
    pub canary_passes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub alert_id: String,
    pub score: f64,
    pub threshold: f64,
    pub list_version: String,
    pub category: Option<String>,
    pub subject_groups: Groups,
    pub canary: bool,
    pub latency_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Engage,
    Dismiss,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Engage => "engage",
            Decision::Dismiss => "dismiss",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Adjudication {
    pub alert_id: String,
    pub decision: Decision,
    pub verified: bool,
    /// Only whether the reason code is `misread` is kept: free text never leaves the parser.
    pub reason_misread: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeResult {
    TrueMatch,
    FalseMatch,
    Inconclusive,
    NotLocated,
    Misread,
}

impl OutcomeResult {
    pub const ALL: [OutcomeResult; 5] = [
        OutcomeResult::TrueMatch,
        OutcomeResult::FalseMatch,
        OutcomeResult::Inconclusive,
        OutcomeResult::NotLocated,
        OutcomeResult::Misread,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeResult::TrueMatch => "true_match",
            OutcomeResult::FalseMatch => "false_match",
            OutcomeResult::Inconclusive => "inconclusive",
            OutcomeResult::NotLocated => "not_located",
            OutcomeResult::Misread => "misread",
        }
    }

    /// `false_match` or `misread`: the person or vehicle was not the one on the list.
    pub fn is_false(self) -> bool {
        matches!(self, OutcomeResult::FalseMatch | OutcomeResult::Misread)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub alert_id: String,
    pub result: OutcomeResult,
    pub engaged_groups: Groups,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListInfo {
    pub version: Option<String>,
    pub size: Option<u64>,
    pub built_at: Option<Millis>,
    pub under_18: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    pub threshold: Option<f64>,
    pub algorithm_version: Option<String>,
    pub list: Option<ListInfo>,
    pub clock_offset_ms: Option<i64>,
    pub capture_ok: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Authorised,
    Started,
    Stopped,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Authorised => "authorised",
            Phase::Started => "started",
            Phase::Stopped => "stopped",
        }
    }
}

/// What an authorising officer set for a deployment.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Authorisation {
    /// Keyed hash of the authorising officer; never shown in metrics or logs.
    #[serde(skip_serializing)]
    pub authority_token: Option<String>,
    pub rank: Option<String>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub window_start: Option<Millis>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub window_end: Option<Millis>,
    pub location: Option<String>,
    pub purpose: Option<String>,
    pub max_list_size: Option<u64>,
    pub threshold_floor: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentEvent {
    pub phase: Phase,
    pub authorisation: Option<Authorisation>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Deletion {
    pub scope: String,
    pub up_to: Millis,
    pub count: Option<u64>,
}

/// Why a message was not applied. Codes are stable: they appear in metrics, dead letters and
/// summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not parseable JSON (incl. bare `NaN`, numbers beyond f64 range, invalid UTF-8).
    MalformedJson,
    /// Valid JSON but not an object.
    NotAnObject,
    MissingField,
    WrongType,
    /// Right JSON type, value not allowed (range, length, charset, enum member, timestamp format).
    OutOfRange,
    UnknownType,
    UnsupportedVersion,
    TooLarge,
    FutureTimestamp,
    Orphan,
    /// Its deployment was retired (`engine.retain_stopped` after its stop was applied): it has no state
    /// left to apply the event to (README "Semantics", retired deployments).
    RetiredDeployment,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::MalformedJson,
        Reason::NotAnObject,
        Reason::MissingField,
        Reason::WrongType,
        Reason::OutOfRange,
        Reason::UnknownType,
        Reason::UnsupportedVersion,
        Reason::TooLarge,
        Reason::FutureTimestamp,
        Reason::Orphan,
        Reason::RetiredDeployment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::OutOfRange => "out_of_range",
            Reason::UnknownType => "unknown_type",
            Reason::UnsupportedVersion => "unsupported_version",
            Reason::TooLarge => "too_large",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::Orphan => "orphan",
            Reason::RetiredDeployment => "retired_deployment",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected message: the reason, the field at fault, and the deployment it named if that much
/// was valid (so the deployment's own `invalid` counter can be charged).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Invalid {
    pub reason: Reason,
    /// Human-readable, never containing payload values (only field names and limits).
    pub detail: String,
    pub deployment_id: Option<String>,
    pub system: Option<System>,
}

impl Invalid {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Invalid { reason, detail: detail.into(), deployment_id: None, system: None }
    }
}
