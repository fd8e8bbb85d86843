//! A fast path for the event nearly every stream is made of, a valid `detection`: parsed from the
//! bytes straight into the typed event, without the `serde_json::Value` tree the general parser
//! builds first (issue 21). It accepts only what the general parser accepts, with the same
//! result; anything else (another type, any doubt, any invalid field) returns None and goes to
//! the general parser, which gives the reason. A differential property test holds the two
//! together (`tests` below).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use super::parse::{MAX_INTEGER, MAX_SCORES, is_valid_id};
use super::{Body, Detection, Event, System, parse_ts};

#[derive(Deserialize)]
struct RawDetection<'a> {
    schema_version: u64,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    deployment_id: Cow<'a, str>,
    #[serde(borrow)]
    system: Cow<'a, str>,
    #[serde(borrow)]
    source_id: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(default, borrow)]
    ts_emitted: Option<Cow<'a, str>>,
    count: u64,
    #[serde(default, deserialize_with = "units")]
    scores: Option<Vec<f64>>,
    #[serde(default, deserialize_with = "units")]
    quality: Option<Vec<f64>>,
    #[serde(default)]
    exposure: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    canary_passes: Option<u64>,
}

/// An optional array of numbers, as `Option<Vec<f64>>` reads it (null is None), into a vector
/// sized for a typical batch up front instead of grown from empty (three reallocations for ten
/// scores).
fn units<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<f64>>, D::Error> {
    struct Units;
    impl<'de> serde::de::Visitor<'de> for Units {
        type Value = Option<Vec<f64>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of numbers or null")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(16).min(MAX_SCORES));
            while let Some(x) = seq.next_element::<f64>()? {
                v.push(x);
            }
            Ok(Some(v))
        }
    }
    d.deserialize_option(Units)
}

/// The event in `line` if it is a valid detection without `exposure` (None: let the general
/// parser decide).
pub(super) fn detection(line: &[u8]) -> Option<Event> {
    let r: RawDetection<'_> = serde_json::from_slice(line).ok()?;
    if r.schema_version != 1 || r.kind != "detection" || r.exposure.is_some() {
        return None;
    }
    let units = |v: &Option<Vec<f64>>, count: u64| match v {
        None => true,
        Some(v) => {
            v.len() <= MAX_SCORES
                && v.len() as u64 <= count
                && v.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x))
        }
    };
    let event_id_len = r.event_id.chars().count();
    if !(1..=128).contains(&event_id_len) || !is_valid_id(&r.deployment_id) || !is_valid_id(&r.source_id) {
        return None;
    }
    let system = match r.system.as_ref() {
        "lfr" => System::Lfr,
        "anpr" => System::Anpr,
        _ => return None,
    };
    let ts = parse_ts(&r.ts)?;
    let ts_emitted = match &r.ts_emitted {
        None => None,
        Some(s) => Some(parse_ts(s)?),
    };
    if r.count == 0 || r.count > MAX_INTEGER || !units(&r.scores, r.count) || !units(&r.quality, r.count) {
        return None;
    }
    let canary_passes = r.canary_passes.unwrap_or(0);
    if canary_passes > MAX_INTEGER {
        return None;
    }
    Some(Event {
        event_id: r.event_id.into_owned(),
        deployment_id: r.deployment_id.into_owned(),
        system,
        source_id: r.source_id.into_owned(),
        ts,
        ts_emitted,
        body: Body::Detection(Detection {
            count: r.count,
            scores: r.scores.unwrap_or_default(),
            quality: r.quality.unwrap_or_default(),
            exposure: BTreeMap::new(),
            canary_passes,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse::parse_value;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn general(line: &[u8]) -> Result<Event, crate::event::Invalid> {
        parse_value(
            serde_json::from_slice::<Value>(line)
                .map_err(|e| crate::event::Invalid::new(crate::event::Reason::MalformedJson, e.to_string()))?,
        )
    }

    /// Values a field may be given: right, wrong, edge.
    fn field_values() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            Just(Some(json!(1))),
            Just(Some(json!(0))),
            Just(Some(json!(-1))),
            Just(Some(json!(1.0))),
            Just(Some(json!(0.5))),
            Just(Some(json!(9007199254740992u64))),
            Just(Some(json!("detection"))),
            Just(Some(json!("alert"))),
            Just(Some(json!("lfr"))),
            Just(Some(json!("LFR"))),
            Just(Some(json!("cam-1"))),
            Just(Some(json!("cam 1"))),
            Just(Some(json!(""))),
            Just(Some(json!("é"))),
            Just(Some(json!("x".repeat(65)))),
            Just(Some(json!("2026-04-25T09:00:00Z"))),
            Just(Some(json!("2026-04-25T09:00:00"))),
            Just(Some(json!([0.1, 0.2]))),
            Just(Some(json!([0.1, 1.5]))),
            Just(Some(json!([0.1, null]))),
            Just(Some(json!([]))),
            Just(Some(json!({"sex": {"male": 3}}))),
            Just(Some(json!({}))),
            Just(Some(json!(true))),
        ]
    }

    const FIELDS: [&str; 13] = [
        "schema_version",
        "type",
        "event_id",
        "deployment_id",
        "system",
        "source_id",
        "ts",
        "ts_emitted",
        "count",
        "scores",
        "quality",
        "exposure",
        "canary_passes",
    ];

    fn valid() -> serde_json::Map<String, Value> {
        let v = json!({"schema_version": 1, "type": "detection", "event_id": "e-1", "deployment_id": "d-1",
            "system": "anpr", "source_id": "cam-1", "ts": "2026-04-25T09:00:00.123Z", "count": 3,
            "scores": [0.9, 0.8, -0.0], "quality": [1, 0.5]});
        v.as_object().unwrap().clone()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Whatever the fast path accepts, the general parser accepts with the same event; and
        /// a valid detection is never left to the slow path without cause.
        #[test]
        fn the_fast_path_agrees_with_the_general_parser(
            changes in proptest::collection::vec((0..FIELDS.len(), field_values()), 0..5),
            bare in any::<bool>(),
            extra in any::<bool>(),
            escaped in any::<bool>(),
        ) {
            let mut obj = valid();
            if bare {
                obj.remove("scores");
                obj.remove("quality");
            }
            for (i, v) in changes {
                match v {
                    None => { obj.remove(FIELDS[i]); }
                    Some(v) => { obj.insert(FIELDS[i].to_string(), v); }
                }
            }
            if extra {
                obj.insert("vendor_field".into(), json!({"any": [1, 2]}));
            }
            let mut line = serde_json::to_string(&obj).unwrap();
            if escaped {
                line = line.replace("\"count\"", "\"co\\u0075nt\"").replace("cam-1", "cam\\u002d1");
            }
            let slow = general(line.as_bytes());
            if let Some(fast) = detection(line.as_bytes()) {
                prop_assert_eq!(Ok(fast), slow, "{}", line);
            }
        }
    }

    #[test]
    fn a_plain_detection_takes_the_fast_path() {
        let line = serde_json::to_vec(&valid()).unwrap();
        assert_eq!(detection(&line), Some(general(&line).unwrap()));
        let with_exposure = br#"{"schema_version":1,"type":"detection","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","count":2,"exposure":{"sex":{"male":2}}}"#;
        assert_eq!(detection(with_exposure), None, "exposure is left to the general parser");
        let duplicate = br#"{"schema_version":1,"type":"detection","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","count":2,"count":3}"#;
        assert_eq!(detection(duplicate), None, "a repeated key is left to the general parser");
    }
}
