//! Parsing and validation of one message into an [`Event`].
//!
//! Validation is explicit, field by field, so each rejection carries a precise reason and the
//! field name. Checks run in a fixed order (size, JSON, object, `deployment_id` for attribution,
//! `schema_version`, `type`, envelope, body) so the same bad line always gets the same reason.

use serde_json::{Map, Value};

use super::fast::Read;
use super::*;

/// Largest accepted message (EVENTS.md: "an object over 1 MiB ... is not applied").
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// EVENTS.md: `scores` has at most 10,000 entries.
pub(super) const MAX_SCORES: usize = 10_000;
const SUPPORTED_VERSION: u64 = 1;

type Obj = Map<String, Value>;
type R<T> = Result<T, Invalid>;

/// Parses one NDJSON line (or Kafka payload).
pub fn parse_line(line: &[u8]) -> R<Event> {
    parse_with(line, super::fast::detection, |ev| ev)
}

/// [`parse_line`], boxed, writing a valid detection (nearly every event of a stream) into one of
/// `spares`, events the caller is done with, to save its allocations. The result is the same.
pub fn parse_line_into(line: &[u8], spares: &mut Vec<Box<Event>>) -> R<Box<Event>> {
    parse_with(line, |text| super::fast::detection_into(text, spares), Box::new)
}

fn parse_with<T>(line: &[u8], detection: impl FnOnce(&str) -> Read<T>, event: impl Fn(Event) -> T) -> R<T> {
    if line.len() > MAX_EVENT_BYTES {
        return Err(Invalid::new(
            Reason::TooLarge,
            format!("{} bytes exceeds the {} byte limit", line.len(), MAX_EVENT_BYTES),
        ));
    }
    // Nearly every event is a valid detection in the plain form, read by hand (`by_hand.rs`);
    // other valid events are read typed (`fast.rs`), unless the line holds something only the
    // general parser checks.
    if let Ok(text) = std::str::from_utf8(line) {
        let plain = match detection(text) {
            Read::Valid(ev) => return Ok(ev),
            Read::Plain => true,
            Read::Left => {
                let plain = super::fast::plain(line).is_some();
                if let Some(ev) = plain.then(|| super::fast::detection_by_serde(text)).flatten() {
                    return Ok(event(ev));
                }
                plain
            }
        };
        if let Some(ev) = plain.then(|| super::fast::other(text)).flatten() {
            return Ok(event(ev));
        }
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| Invalid::new(Reason::MalformedJson, format!("{e}")))?;
    parse_value(value).map(event)
}

/// Validates an already-parsed JSON value (used for JSON-array HTTP bodies).
pub fn parse_value(value: Value) -> R<Event> {
    let Value::Object(obj) = value else {
        return Err(Invalid::new(Reason::NotAnObject, "expected a JSON object"));
    };
    // Attribution first: a valid deployment_id (and system) is charged with the error.
    let deployment_id = ident(&obj, "deployment_id", 64);
    let system = system(&obj);
    let attributed = |mut e: Invalid| {
        if let Ok(d) = &deployment_id {
            e.deployment_id = Some(d.clone());
            e.system = system.as_ref().ok().copied();
        }
        e
    };
    parse_object(&obj, &deployment_id, &system).map_err(attributed)
}

fn parse_object(obj: &Obj, deployment_id: &R<String>, system: &R<System>) -> R<Event> {
    schema_version(obj)?;
    let kind = match obj.get("type") {
        None => return Err(missing("type")),
        Some(Value::String(s)) => EventType::parse(s)
            .ok_or_else(|| Invalid::new(Reason::UnknownType, "type is not one of the seven event types"))?,
        Some(_) => return Err(wrong("type", "a string")),
    };
    let event_id = string(obj, "event_id", 1, 128)?;
    let deployment_id = deployment_id.clone()?;
    let system = (*system).clone()?;
    let source_id = ident(obj, "source_id", 64)?;
    let ts = timestamp(obj, "ts")?.ok_or_else(|| missing("ts"))?;
    let ts_emitted = timestamp(obj, "ts_emitted")?;
    let body = match kind {
        EventType::Detection => Body::Detection(detection(obj)?),
        EventType::Alert => Body::Alert(alert(obj)?),
        EventType::Adjudication => Body::Adjudication(adjudication(obj)?),
        EventType::Outcome => Body::Outcome(outcome(obj, system)?),
        EventType::Status => Body::Status(status(obj)?),
        EventType::Deployment => Body::Deployment(deployment(obj)?),
        EventType::Deletion => Body::Deletion(deletion(obj)?),
    };
    Ok(Event { event_id, deployment_id, system, source_id, ts, ts_emitted, body })
}

fn missing(field: &str) -> Invalid {
    Invalid::new(Reason::MissingField, format!("{field} is required"))
}

fn wrong(field: &str, expected: &str) -> Invalid {
    Invalid::new(Reason::WrongType, format!("{field} must be {expected}"))
}

fn range(field: &str, rule: &str) -> Invalid {
    Invalid::new(Reason::OutOfRange, format!("{field} {rule}"))
}

fn schema_version(obj: &Obj) -> R<()> {
    match obj.get("schema_version") {
        None => Err(missing("schema_version")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(SUPPORTED_VERSION) => Ok(()),
            Some(0) => Err(range("schema_version", "must be 1")),
            Some(v) => Err(Invalid::new(
                Reason::UnsupportedVersion,
                format!("schema_version {v} is newer than the supported version {SUPPORTED_VERSION}"),
            )),
            None if n.is_i64() => Err(range("schema_version", "must be 1")),
            None => Err(wrong("schema_version", "an integer")),
        },
        Some(_) => Err(wrong("schema_version", "an integer")),
    }
}

fn system(obj: &Obj) -> R<System> {
    match obj.get("system") {
        None => Err(missing("system")),
        Some(Value::String(s)) => match s.as_str() {
            "lfr" => Ok(System::Lfr),
            "anpr" => Ok(System::Anpr),
            _ => Err(range("system", "must be lfr or anpr")),
        },
        Some(_) => Err(wrong("system", "a string")),
    }
}

/// Whether `s` has `min`–`max` characters. A character is 1–4 bytes, so its byte length settles
/// it without counting unless it leaves a doubt (issue 21: counting every event id's characters
/// was a percent of the parse stage).
pub(super) fn chars_within(s: &str, min: usize, max: usize) -> bool {
    let (fewest, most) = (s.len().div_ceil(4), s.len());
    match (fewest >= min && most <= max, most < min || fewest > max) {
        (true, _) => true,
        (_, true) => false,
        _ => (min..=max).contains(&s.chars().count()),
    }
}

fn opt_string(obj: &Obj, field: &str, min: usize, max: usize) -> R<Option<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if !chars_within(s, min, max) {
                return Err(range(field, &format!("must be {min}-{max} characters")));
            }
            Ok(Some(s.clone()))
        }
        Some(_) => Err(wrong(field, "a string")),
    }
}

fn string(obj: &Obj, field: &str, min: usize, max: usize) -> R<String> {
    opt_string(obj, field, min, max)?.ok_or_else(|| missing(field))
}

/// Whether `s` is a valid deployment or source id: 1–64 chars of `[A-Za-z0-9._:-]` (EVENTS.md;
/// ids are metric labels and name files such as `state_dir/records/<id>.json`).
pub fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && id_chars(s)
}

fn id_chars(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// 1–max chars of `[A-Za-z0-9._:-]` (deployment and source ids are metric labels).
fn ident(obj: &Obj, field: &str, max: usize) -> R<String> {
    let s = string(obj, field, 1, max)?;
    if !id_chars(&s) {
        return Err(range(field, "may only contain [A-Za-z0-9._:-]"));
    }
    Ok(s)
}

fn timestamp(obj: &Obj, field: &str) -> R<Option<Millis>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_ts(s).map(Some).ok_or_else(|| range(field, "must be RFC 3339 with an offset")),
        Some(_) => Err(wrong(field, "an RFC 3339 string")),
    }
}

/// The largest integer any count or size may hold: 2^53 − 1, the largest every JSON reader
/// represents exactly (a larger "count" is a corrupt or hostile event, and would wrap the
/// engine's signed arithmetic).
pub const MAX_INTEGER: u64 = (1 << 53) - 1;

fn opt_uint(obj: &Obj, field: &str) -> R<Option<u64>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v > MAX_INTEGER => Err(range(field, "is above 2^53 - 1")),
            Some(v) => Ok(Some(v)),
            None if n.is_i64() => Err(range(field, "must be ≥ 0")),
            None => Err(wrong(field, "an integer")),
        },
        Some(_) => Err(wrong(field, "an integer")),
    }
}

fn opt_int(obj: &Obj, field: &str) -> R<Option<i64>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v.unsigned_abs() > MAX_INTEGER => Err(range(field, "is beyond ±(2^53 - 1)")),
            Some(v) => Ok(Some(v)),
            None if n.is_u64() => Err(range(field, "is too large")),
            None => Err(wrong(field, "an integer")),
        },
        Some(_) => Err(wrong(field, "an integer")),
    }
}

fn unit_float(v: &Value, field: &str) -> R<f64> {
    match v {
        Value::Number(n) => {
            let x = n.as_f64().ok_or_else(|| wrong(field, "a number"))?;
            if !x.is_finite() || !(0.0..=1.0).contains(&x) {
                return Err(range(field, "must be in [0, 1]"));
            }
            Ok(x)
        }
        _ => Err(wrong(field, "a number")),
    }
}

fn opt_unit_float(obj: &Obj, field: &str) -> R<Option<f64>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => unit_float(v, field).map(Some),
    }
}

fn unit_floats(obj: &Obj, field: &str) -> R<Vec<f64>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            if items.len() > MAX_SCORES {
                return Err(range(field, &format!("has more than {MAX_SCORES} entries")));
            }
            items.iter().map(|v| unit_float(v, field)).collect()
        }
        Some(_) => Err(wrong(field, "an array of numbers")),
    }
}

fn opt_bool(obj: &Obj, field: &str) -> R<Option<bool>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(wrong(field, "a boolean")),
    }
}

fn opt_obj<'a>(obj: &'a Obj, field: &str) -> R<Option<&'a Obj>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(wrong(field, "an object")),
    }
}

/// `{attr: group}` with short string values.
fn groups(obj: &Obj, field: &str) -> R<Groups> {
    let mut out = Groups::new();
    if let Some(o) = opt_obj(obj, field)? {
        for (attr, v) in o {
            match v {
                Value::String(g) if g.len() <= 64 && attr.len() <= 64 => {
                    out.insert(attr.clone(), g.clone());
                }
                Value::String(_) => return Err(range(field, "attributes and groups are at most 64 characters")),
                _ => return Err(wrong(field, "an object of strings")),
            }
        }
    }
    Ok(out)
}

fn detection(obj: &Obj) -> R<Detection> {
    let count = opt_uint(obj, "count")?.ok_or_else(|| missing("count"))?;
    if count == 0 {
        return Err(range("count", "must be ≥ 1"));
    }
    let scores = unit_floats(obj, "scores")?;
    if scores.len() as u64 > count {
        return Err(range("scores", "has more entries than count"));
    }
    let quality = unit_floats(obj, "quality")?;
    if quality.len() as u64 > count {
        return Err(range("quality", "has more entries than count"));
    }
    let mut exposure = BTreeMap::new();
    if let Some(o) = opt_obj(obj, "exposure")? {
        for (attr, groups) in o {
            let Value::Object(groups) = groups else {
                return Err(wrong("exposure", "an object of {group: count} objects"));
            };
            let mut counts = BTreeMap::new();
            for (g, n) in groups {
                let n = n.as_u64().ok_or_else(|| wrong("exposure", "non-negative integer counts"))?;
                if n > MAX_INTEGER {
                    return Err(range("exposure", "a count is above 2^53 - 1"));
                }
                counts.insert(g.clone(), n);
            }
            exposure.insert(attr.clone(), counts);
        }
    }
    let canary_passes = opt_uint(obj, "canary_passes")?.unwrap_or(0);
    Ok(Detection { count, scores, quality, exposure, canary_passes })
}

fn alert(obj: &Obj) -> R<Alert> {
    Ok(Alert {
        alert_id: string(obj, "alert_id", 1, 128)?,
        score: opt_unit_float(obj, "score")?.ok_or_else(|| missing("score"))?,
        threshold: opt_unit_float(obj, "threshold")?.ok_or_else(|| missing("threshold"))?,
        list_version: string(obj, "list_version", 1, 128)?,
        category: opt_string(obj, "category", 1, 64)?,
        subject_groups: groups(obj, "subject_groups")?,
        canary: opt_bool(obj, "canary")?.unwrap_or(false),
        latency_ms: opt_uint(obj, "latency_ms")?,
    })
}

fn adjudication(obj: &Obj) -> R<Adjudication> {
    let alert_id = string(obj, "alert_id", 1, 128)?;
    let decision = match string(obj, "decision", 1, 16)?.as_str() {
        "engage" => Decision::Engage,
        "dismiss" => Decision::Dismiss,
        _ => return Err(range("decision", "must be engage or dismiss")),
    };
    string(obj, "operator_token", 1, 256)?;
    let verified = opt_string(obj, "verifier_token", 1, 256)?.is_some();
    let reason = opt_string(obj, "reason", 0, 64)?;
    Ok(Adjudication { alert_id, decision, verified, reason_misread: reason.as_deref() == Some("misread") })
}

fn outcome(obj: &Obj, system: System) -> R<Outcome> {
    let alert_id = string(obj, "alert_id", 1, 128)?;
    let result = match string(obj, "result", 1, 32)?.as_str() {
        "true_match" => OutcomeResult::TrueMatch,
        "false_match" => OutcomeResult::FalseMatch,
        "inconclusive" => OutcomeResult::Inconclusive,
        "not_located" => OutcomeResult::NotLocated,
        "misread" if system == System::Anpr => OutcomeResult::Misread,
        "misread" => return Err(range("result", "misread applies to ANPR only")),
        _ => return Err(range("result", "is not a known outcome")),
    };
    opt_string(obj, "action", 0, 64)?;
    Ok(Outcome { alert_id, result, engaged_groups: groups(obj, "engaged_groups")? })
}

fn status(obj: &Obj) -> R<Status> {
    let list = match opt_obj(obj, "list")? {
        None => None,
        Some(l) => Some(ListInfo {
            version: opt_string(l, "version", 1, 128).map_err(|e| prefix("list", e))?,
            size: opt_uint(l, "size").map_err(|e| prefix("list", e))?,
            built_at: timestamp(l, "built_at").map_err(|e| prefix("list", e))?,
            under_18: opt_uint(l, "under_18").map_err(|e| prefix("list", e))?,
        }),
    };
    Ok(Status {
        threshold: opt_unit_float(obj, "threshold")?,
        algorithm_version: opt_string(obj, "algorithm_version", 1, 128)?,
        list,
        clock_offset_ms: opt_int(obj, "clock_offset_ms")?,
        capture_ok: opt_bool(obj, "capture_ok")?,
    })
}

fn prefix(parent: &str, mut e: Invalid) -> Invalid {
    e.detail = format!("{parent}.{}", e.detail);
    e
}

fn deployment(obj: &Obj) -> R<DeploymentEvent> {
    let phase = match string(obj, "phase", 1, 16)?.as_str() {
        "authorised" => Phase::Authorised,
        "started" => Phase::Started,
        "stopped" => Phase::Stopped,
        _ => return Err(range("phase", "must be authorised, started or stopped")),
    };
    let authorisation = match opt_obj(obj, "authorisation")? {
        None => None,
        Some(a) => Some(authorisation(a).map_err(|e| prefix("authorisation", e))?),
    };
    Ok(DeploymentEvent { phase, authorisation })
}

fn authorisation(a: &Obj) -> R<Authorisation> {
    let auth = Authorisation {
        authority_token: opt_string(a, "authority_token", 1, 256)?,
        rank: opt_string(a, "rank", 1, 64)?,
        window_start: timestamp(a, "window_start")?,
        window_end: timestamp(a, "window_end")?,
        location: opt_string(a, "location", 1, 256)?,
        purpose: opt_string(a, "purpose", 1, 256)?,
        max_list_size: opt_uint(a, "max_list_size")?,
        threshold_floor: opt_unit_float(a, "threshold_floor")?,
    };
    if let (Some(s), Some(e)) = (auth.window_start, auth.window_end)
        && e < s
    {
        return Err(range("window_end", "is before window_start"));
    }
    Ok(auth)
}

fn deletion(obj: &Obj) -> R<Deletion> {
    let scope = string(obj, "scope", 1, 32)?;
    if !matches!(scope.as_str(), "non_match_biometrics" | "list" | "alerts" | "reads") {
        return Err(range("scope", "must be non_match_biometrics, list, alerts or reads"));
    }
    Ok(Deletion {
        scope,
        up_to: timestamp(obj, "up_to")?.ok_or_else(|| missing("up_to"))?,
        count: opt_uint(obj, "count")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETECTION: &str = r#"{"schema_version":1,"event_id":"e-1","type":"detection","deployment_id":"lfr-stratford-0425","system":"lfr","source_id":"cam-3","ts":"2026-04-25T10:00:01Z","count":12,"scores":[0.21,0.33]}"#;

    fn reason(line: &str) -> Reason {
        parse_line(line.as_bytes()).unwrap_err().reason
    }

    proptest::proptest! {
        /// The byte-length shortcut answers as counting the characters, for strings of one- to
        /// four-byte characters and bounds around their lengths.
        #[test]
        fn chars_within_equals_counting(
            chars in proptest::collection::vec(proptest::sample::select(vec!['a', 'é', '€', '😀']), 0..200),
            min in 0usize..160,
            span in 0usize..160,
        ) {
            let s: String = chars.iter().collect();
            let max = min + span;
            proptest::prop_assert_eq!(chars_within(&s, min, max), (min..=max).contains(&chars.len()), "{} bytes", s.len());
        }
    }

    fn with(field: &str, value: &str) -> String {
        let mut v: Value = serde_json::from_str(DETECTION).unwrap();
        v[field] = serde_json::from_str(value).unwrap();
        v.to_string()
    }

    fn without(field: &str) -> String {
        let mut v: Value = serde_json::from_str(DETECTION).unwrap();
        v.as_object_mut().unwrap().remove(field);
        v.to_string()
    }

    #[test]
    fn valid_detection_parses() {
        let e = parse_line(DETECTION.as_bytes()).unwrap();
        assert_eq!(e.deployment_id, "lfr-stratford-0425");
        assert_eq!(e.ts, parse_ts("2026-04-25T10:00:01Z").unwrap());
        let Body::Detection(d) = e.body else { panic!() };
        assert_eq!(d.count, 12);
        assert_eq!(d.scores, vec![0.21, 0.33]);
    }

    #[test]
    fn each_defect_has_its_reason() {
        assert_eq!(reason(&DETECTION[..40]), Reason::MalformedJson);
        assert_eq!(reason("NaN"), Reason::MalformedJson);
        assert_eq!(reason("[1,2]"), Reason::NotAnObject);
        assert_eq!(reason(&with("count", "\"12\"")), Reason::WrongType);
        assert_eq!(reason(&with("count", "0")), Reason::OutOfRange);
        // Hostile sizes: u64::MAX used to count as -1, i64::MAX wrapped a denominator to 0.
        assert_eq!(reason(&with("count", "18446744073709551615")), Reason::OutOfRange);
        assert_eq!(reason(&with("count", "9223372036854775807")), Reason::OutOfRange);
        assert_eq!(reason(&with("count", "9007199254740992")), Reason::OutOfRange);
        assert!(parse_line(with("count", "9007199254740991").as_bytes()).is_ok());
        assert_eq!(reason(&with("scores", "[1.5]")), Reason::OutOfRange);
        assert_eq!(reason(&DETECTION.replace("0.33", "1e400")), Reason::MalformedJson);
        assert_eq!(reason(&with("type", "\"selfie\"")), Reason::UnknownType);
        assert_eq!(reason(&with("schema_version", "2")), Reason::UnsupportedVersion);
        assert_eq!(reason(&with("schema_version", "1.5")), Reason::WrongType);
        assert_eq!(reason(&with("deployment_id", "\"bad id!\"")), Reason::OutOfRange);
        assert_eq!(reason(&with("ts", "\"yesterday\"")), Reason::OutOfRange);
        assert_eq!(reason(&without("ts")), Reason::MissingField);
        assert_eq!(reason(&without("schema_version")), Reason::MissingField);
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_EVENT_BYTES));
        assert_eq!(reason(&big), Reason::TooLarge);
    }

    #[test]
    fn errors_are_attributed_to_a_valid_deployment() {
        let e = parse_line(with("count", "-1").as_bytes()).unwrap_err();
        assert_eq!(e.deployment_id.as_deref(), Some("lfr-stratford-0425"));
        let e = parse_line(with("deployment_id", "\"\"").as_bytes()).unwrap_err();
        assert_eq!(e.deployment_id, None);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let e = parse_line(with("future_field", "{\"a\":1}").as_bytes());
        assert!(e.is_ok());
    }

    #[test]
    fn misread_is_anpr_only() {
        let lfr = r#"{"schema_version":1,"event_id":"o","type":"outcome","deployment_id":"d","system":"lfr","source_id":"s","ts":"2026-04-25T10:00:01Z","alert_id":"a","result":"misread"}"#;
        assert_eq!(reason(lfr), Reason::OutOfRange);
        assert!(parse_line(lfr.replace("\"lfr\"", "\"anpr\"").as_bytes()).is_ok());
    }
}
