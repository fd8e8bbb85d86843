//! What an evaluation of a condition concluded (the engine's evaluator, `engine/eval.rs`,
//! produces them; the lifecycle, metrics and API read them).

use super::detail::{Detail, Limit};
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
    pub limit: Limit,
    pub detail: Detail,
    /// The one input time the evaluation was made from, where it depends on nothing else of the
    /// deployment (a silence instance: its source's last event); `engine::eval::refresh` moves
    /// such an evaluation to the current second from it.
    pub stamp: Option<i64>,
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
            limit: Limit::None,
            detail: Detail::None,
            stamp: None,
        }
    }
}

/// A JSON value to write as text (how [`Limit`] and [`Detail`] are shown): objects are written
/// with their keys sorted as a `serde_json::Value` object (a `BTreeMap`) sorts them, numbers and
/// strings by serde_json itself (a non-finite float is `null`), so the text equals `Value`'s.
#[derive(Debug, Clone)]
pub enum J<'a> {
    Null,
    Bool(bool),
    F64(f64),
    U64(u64),
    I64(i64),
    Str(&'a str),
    /// A time, as RFC 3339 text (`time::format_ts`).
    Ts(crate::time::Millis),
    Strs(&'a [String]),
    F64s(&'a [f64]),
    U64s(&'a [u64]),
    Obj(Vec<(&'a str, J<'a>)>),
}

impl<'a> J<'a> {
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        let leaf = |out: &mut Vec<u8>, v: &dyn ErasedLeaf| v.put(out);
        match self {
            J::Null => out.extend_from_slice(b"null"),
            J::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            J::F64(x) => leaf(out, x),
            J::U64(x) => leaf(out, x),
            J::I64(x) => leaf(out, x),
            J::Str(x) => leaf(out, x),
            J::Ts(ms) => leaf(out, &crate::time::format_ts(*ms)),
            J::Strs(x) => leaf(out, x),
            J::F64s(x) => leaf(out, x),
            J::U64s(x) => leaf(out, x),
            J::Obj(pairs) => {
                let mut order: Vec<usize> = (0..pairs.len()).collect();
                order.sort_by(|&a, &b| pairs[a].0.cmp(pairs[b].0));
                out.push(b'{');
                for (i, &k) in order.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    leaf(out, &pairs[k].0);
                    out.push(b':');
                    pairs[k].1.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

impl From<Option<f64>> for J<'_> {
    fn from(v: Option<f64>) -> Self {
        v.map_or(J::Null, J::F64)
    }
}

impl<'a> From<Option<&'a str>> for J<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(J::Null, J::Str)
    }
}

/// A leaf serde_json writes itself (so its text is serde_json's).
trait ErasedLeaf {
    fn put(&self, out: &mut Vec<u8>);
}

impl<T: serde::Serialize + ?Sized> ErasedLeaf for T {
    fn put(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, self).expect("writing to a Vec cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn text(j: &J<'_>) -> String {
        let mut out = Vec::new();
        j.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn objects_are_written_as_value_writes_them() {
        let strs = vec!["cam-2".to_string(), "cam-\"1".to_string()];
        let cases: Vec<(J<'_>, Value)> = vec![
            (J::Obj(vec![]), json!({})),
            (
                J::Obj(vec![
                    ("source", J::Str("cam-1")),
                    ("last_seen", J::Str("2026-01-01T00:00:00Z")),
                    ("type", J::Str("detection")),
                ]),
                json!({"source": "cam-1", "last_seen": "2026-01-01T00:00:00Z", "type": "detection"}),
            ),
            (
                J::Obj(vec![("due", J::Ts(1_777_107_601_500)), ("at", J::Ts(0))]),
                json!({"due": "2026-04-25T09:00:01.500Z", "at": "1970-01-01T00:00:00Z"}),
            ),
            (
                J::Obj(vec![("max", J::F64(0.1)), ("min", J::F64(f64::NAN)), ("n", J::U64(7)), ("d", J::I64(-3))]),
                json!({"max": 0.1, "min": f64::NAN, "n": 7, "d": -3}),
            ),
            (
                J::Obj(vec![
                    ("check", J::Str("x")),
                    ("sources_breaching", J::Strs(&strs)),
                    ("active", J::Bool(true)),
                    ("none", J::Null),
                    ("decision", J::Obj(vec![("rule", J::Str("e")), ("boundary", J::F64(4.60517))])),
                    ("edges", J::F64s(&[0.0, 0.5, 1.0])),
                    ("counts", J::U64s(&[1, 2, 3])),
                ]),
                json!({"check": "x", "sources_breaching": strs, "active": true, "none": null,
                       "decision": {"rule": "e", "boundary": 4.60517}, "edges": [0.0, 0.5, 1.0], "counts": [1, 2, 3]}),
            ),
        ];
        for (j, v) in cases {
            assert_eq!(text(&j), v.to_string());
        }
    }

    proptest! {
        #[test]
        fn any_flat_object_is_written_as_value_writes_it(
            entries in proptest::collection::btree_map("[a-z_]{1,12}", (any::<f64>(), any::<u64>(), any::<i64>(), ".{0,8}"), 0..8)
        ) {
            let mut pairs = Vec::new();
            let mut v = serde_json::Map::new();
            for (i, (k, (f, u, n, s))) in entries.iter().enumerate() {
                let (j, x) = match i % 4 {
                    0 => (J::F64(*f), json!(f)),
                    1 => (J::U64(*u), json!(u)),
                    2 => (J::I64(*n), json!(n)),
                    _ => (J::Str(s), json!(s)),
                };
                pairs.push((k.as_str(), j));
                v.insert(k.clone(), x);
            }
            // Keys given in reverse order: the writer sorts them.
            pairs.reverse();
            prop_assert_eq!(text(&J::Obj(pairs)), Value::Object(v).to_string());
        }
    }
}
