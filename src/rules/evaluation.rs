//! What an evaluation of a condition concluded (the engine's evaluator, `engine/eval.rs`,
//! produces them; the lifecycle, metrics and API read them).

use serde_json::Value;

use super::lifecycle::Verdict;

/// The result of one evaluation: verdict, value, bounds, sample size and kind-specific detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Per-source instance (silence), else None.
    pub instance: Option<String>,
    pub verdict: Verdict,
    pub value: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub n: Option<u64>,
    pub limit: JsonText,
    pub detail: JsonText,
}

/// The limit and kind-specific detail of an evaluation, kept as compact JSON text: every
/// condition of every deployment keeps its latest evaluation, and a `serde_json::Value` tree
/// costs several times its text (a per-group table alone ≈ 10 KB; ≈ 60 KB a deployment with the
/// LFR profile). Parsed only when shown (API, metrics at scrape time, transitions).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonText(Box<str>);

impl std::fmt::Display for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Default for JsonText {
    fn default() -> Self {
        JsonText("{}".into())
    }
}

impl From<Value> for JsonText {
    fn from(v: Value) -> Self {
        JsonText(v.to_string().into_boxed_str())
    }
}

impl JsonText {
    /// The text as a JSON value.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).expect("a JsonText holds serialised JSON")
    }
}

impl Evaluation {
    /// An evaluation with only its verdict (the rest filled in by the evaluator).
    pub fn new(verdict: Verdict) -> Self {
        Evaluation {
            instance: None,
            verdict,
            value: None,
            lower: None,
            upper: None,
            n: None,
            limit: JsonText::default(),
            detail: JsonText::default(),
        }
    }
}
