//! Valid events parsed from the bytes straight into the typed event, without the
//! `serde_json::Value` tree the general parser builds first (issue 21): the event nearly every
//! stream is made of, a `detection` ([`detection`]), and the six other types ([`other`]). They
//! accept only what the general parser accepts, with the same result; anything else (any doubt,
//! any invalid field) returns None and goes to the general parser, which gives the reason.
//! Differential property tests hold the two together (`tests` below).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use super::parse::{MAX_INTEGER, MAX_SCORES, chars_within, is_valid_id};
use super::{
    Adjudication, Alert, Authorisation, Body, Decision as AdjudicationDecision, Deletion, DeploymentEvent, Detection,
    Event, EventType, Groups, ListInfo, Millis, Outcome, OutcomeResult, Phase, Status, System, parse_ts,
};

/// Whether the typed parses may take `line`: they skip the fields they do not read with
/// serde_json's `IgnoredAny`, which checks less than building a `Value` does (the general
/// parser's `malformed_json`): no UTF-8 check of a skipped string, no check of a `\u` escape
/// for lone surrogates, no range check of a skipped number, no depth limit. A line with any of
/// those (invalid UTF-8, a surrogate escape, a number with an exponent or over 300 digits, nesting
/// beyond 100) is left to the general parser. Returns the line as text (valid UTF-8, so the typed
/// parses read it without checking each string again). One pass over the bytes, which skips
/// through strings to their next quote or backslash.
pub(super) fn plain(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?;
    if surely_plain(line) {
        return Some(text);
    }
    let (mut depth, mut i) = (0usize, 0);
    while i < line.len() {
        match line[i] {
            b'"' => {
                // Inside a string only its escapes matter: straight to the next quote or backslash.
                i += 1;
                loop {
                    // An unterminated string is malformed: the general parser says so.
                    let at = i + memchr::memchr2(b'"', b'\\', line.get(i..)?)?;
                    if line[at] == b'"' {
                        i = at + 1;
                        break;
                    }
                    // \uD800–\uDFFF: a surrogate (paired or not): left to the general parser.
                    if line.get(at + 1) == Some(&b'u')
                        && line.get(at + 2).is_some_and(|c| matches!(c, b'd' | b'D'))
                        && line.get(at + 3).is_some_and(|c| matches!(c, b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'))
                    {
                        return None;
                    }
                    i = at + 2;
                }
            }
            _ => i = outside_strings(line, i, &mut depth)?,
        }
    }
    Some(text)
}

/// [`plain`]'s step at `line[i]`, outside any string: nesting (None beyond 100) and number tokens
/// (None where one may not fit an f64). Returns where the next step starts.
fn outside_strings(line: &[u8], i: usize, depth: &mut usize) -> Option<usize> {
    match line[i] {
        b'[' | b'{' => {
            *depth += 1;
            if *depth > 100 {
                return None;
            }
        }
        b']' | b'}' => *depth = depth.saturating_sub(1),
        b'0'..=b'9' | b'-' => {
            let end = line[i..]
                .iter()
                .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .map_or(line.len(), |n| i + n);
            return finite(&line[i..end]).then_some(end);
        }
        _ => {}
    }
    Some(i + 1)
}

/// A sufficient condition for [`plain`], in one branch-free pass that the compiler vectorises
/// (the scan below costs a branch per byte): an ASCII line of at most 1,000 bytes (so valid
/// UTF-8, and every number token at most 1,000 characters) without a backslash (so no surrogate
/// escape, and every quote delimits a string: an even count means none is left open), with at
/// most 100 `[` or `{` (so no deeper nesting), at most 300 digits (so no token has more) and no
/// `e` or `E` after a digit, `.`, `+` or `-` (every number token starts with a digit or `-`, so a
/// token with an exponent has one of those before its first `e`). Every such line passes the
/// scan; lines that fail this go to the scan.
fn surely_plain(line: &[u8]) -> bool {
    if line.len() > 1000 {
        return false;
    }
    // Counts in u8 lanes per chunk (≤ 128 each), so the compiler keeps 16 bytes to a register.
    let (mut quotes, mut opens, mut digits, mut odd) = (0u32, 0u32, 0u32, 0u8);
    for chunk in line.chunks(128) {
        let (mut q, mut o, mut d) = (0u8, 0u8, 0u8);
        for &b in chunk {
            q += (b == b'"') as u8;
            o += (b == b'[' || b == b'{') as u8;
            d += b.is_ascii_digit() as u8;
            odd |= (b >= 0x80) as u8 | (b == b'\\') as u8;
        }
        (quotes, opens, digits) = (quotes + q as u32, opens + o as u32, digits + d as u32);
    }
    let pairs = line.iter().zip(line.iter().skip(1));
    let exponent = pairs.fold(0u8, |f, (&p, &b)| {
        f | (((b | 0x20) == b'e') as u8 & (p.is_ascii_digit() | (p == b'.') | (p == b'+') | (p == b'-')) as u8)
    });
    odd | exponent == 0 && quotes % 2 == 0 && opens <= 100 && digits <= 300
}

/// Whether a number token surely fits an f64 (as building a `Value` requires): at most 300
/// digits before the point plus a positive exponent (a negative one only rounds towards 0, which
/// serde_json accepts), and not absurdly long. Scores such as `1.0E-4` (Java's way) stay typed.
fn finite(token: &[u8]) -> bool {
    let (mantissa, exponent) = match token.iter().position(|c| matches!(c, b'e' | b'E')) {
        Some(at) => (&token[..at], &token[at + 1..]),
        None => (token, &b""[..]),
    };
    let digits = mantissa.iter().take_while(|c| **c != b'.').filter(|c| c.is_ascii_digit()).count();
    let exponent: i64 = match std::str::from_utf8(exponent).ok().filter(|e| e.len() <= 6) {
        Some("") => 0,
        Some(e) => match e.trim_start_matches('+').parse() {
            Ok(v) => v,
            Err(_) => return false,
        },
        None => return false,
    };
    token.len() <= 1000 && digits as i64 + exponent.max(0) <= 300
}

/// `T` from a JSON object only: a derived struct also takes an array of its fields in order,
/// which the general parser rejects (`not_an_object`, or a field of the wrong type).
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Object(std::marker::PhantomData)).map(ObjectOnly)
    }
}

/// A detection's fields as serde reads them (also filled by `by_hand`).
#[derive(Deserialize)]
pub(super) struct RawDetection<'a> {
    pub(super) schema_version: u64,
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) deployment_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) system: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) source_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) ts: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) ts_emitted: Option<Cow<'a, str>>,
    pub(super) count: u64,
    #[serde(default, deserialize_with = "units")]
    pub(super) scores: Option<Vec<f64>>,
    #[serde(default, deserialize_with = "units")]
    pub(super) quality: Option<Vec<f64>>,
    #[serde(default)]
    pub(super) exposure: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) canary_passes: Option<u64>,
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

/// What reading a line as a detection by hand gave.
pub(super) enum Read<T> {
    /// A valid detection.
    Valid(T),
    /// Read by hand, so in the plain form (no [`plain`] check needed), but not a valid detection.
    Plain,
    /// Not in the form `by_hand` reads: for [`plain`] and serde to decide.
    Left,
}

/// The event in `line` (valid UTF-8) if it is a valid detection without `exposure` in the plain
/// form, read by hand.
pub(super) fn detection(line: &str) -> Read<Event> {
    let Some(raw) = super::by_hand::detection(line, Default::default()) else { return Read::Left };
    detection_parts(raw).and_then(|(head, body)| head.event(body)).map_or(Read::Plain, Read::Valid)
}

/// [`detection`], written into an event of `spares` (events done with, boxed so that they move
/// as pointers, not as their 272 bytes) where there is one, its scores read into the spare's
/// vectors.
#[allow(clippy::vec_box)] // boxed on purpose: they move as pointers, not 272 bytes
pub(super) fn detection_into(line: &str, spares: &mut Vec<Box<Event>>) -> Read<Box<Event>> {
    // The spare keeps empty vectors if the line is not a valid detection.
    let units = match spares.last_mut().map(|ev| &mut ev.body) {
        Some(Body::Detection(d)) => [std::mem::take(&mut d.scores), std::mem::take(&mut d.quality)],
        _ => Default::default(),
    };
    let Some(raw) = super::by_hand::detection(line, units) else { return Read::Left };
    let Some((head, body)) = detection_parts(raw) else { return Read::Plain };
    let Some(times) = head.check() else { return Read::Plain };
    Read::Valid(match spares.pop() {
        Some(mut ev) => {
            head.write_into(times, body, &mut ev);
            ev
        }
        None => Box::new(head.into_event(times, body)),
    })
}

/// A valid detection read by serde, for the lines `by_hand` leaves (nearly none); only for lines
/// [`plain`] took.
pub(super) fn detection_by_serde(line: &str) -> Option<Event> {
    let ObjectOnly(raw) = serde_json::from_str::<ObjectOnly<RawDetection<'_>>>(line).ok()?;
    let (head, body) = detection_parts(raw)?;
    head.event(body)
}

/// The envelope and body of the valid detection `r` holds (the envelope still to be checked).
fn detection_parts(r: RawDetection<'_>) -> Option<(Head<'_>, Body)> {
    if r.kind != "detection" || r.exposure.is_some() {
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
    if r.count == 0 || r.count > MAX_INTEGER || !units(&r.scores, r.count) || !units(&r.quality, r.count) {
        return None;
    }
    let canary_passes = r.canary_passes.unwrap_or(0);
    if canary_passes > MAX_INTEGER {
        return None;
    }
    let body = Body::Detection(Detection {
        count: r.count,
        scores: r.scores.unwrap_or_default(),
        quality: r.quality.unwrap_or_default(),
        exposure: BTreeMap::new(),
        canary_passes,
    });
    let head = Head {
        schema_version: r.schema_version,
        event_id: r.event_id,
        deployment_id: r.deployment_id,
        system: system(&r.system)?,
        source_id: r.source_id,
        ts: r.ts,
        ts_emitted: r.ts_emitted,
    };
    Some((head, body))
}

/// The envelope every type shares, as read by serde.
struct Head<'a> {
    schema_version: u64,
    event_id: Cow<'a, str>,
    deployment_id: Cow<'a, str>,
    system: System,
    source_id: Cow<'a, str>,
    ts: Cow<'a, str>,
    ts_emitted: Option<Cow<'a, str>>,
}

impl Head<'_> {
    /// Whether the envelope is valid (`parse.rs::parse_object`'s rules), with its times.
    fn check(&self) -> Option<(Millis, Option<Millis>)> {
        if self.schema_version != 1
            || !chars_within(&self.event_id, 1, 128)
            || !is_valid_id(&self.deployment_id)
            || !is_valid_id(&self.source_id)
        {
            return None;
        }
        Some((parse_ts(&self.ts)?, time(&self.ts_emitted)?))
    }

    /// The event with `body` if the envelope is valid.
    fn event(self, body: Body) -> Option<Event> {
        let times = self.check()?;
        Some(self.into_event(times, body))
    }

    /// The event of a checked envelope (`times` from [`Head::check`]).
    fn into_event(self, (ts, ts_emitted): (Millis, Option<Millis>), body: Body) -> Event {
        Event {
            event_id: self.event_id.into_owned(),
            deployment_id: self.deployment_id.into_owned(),
            system: self.system,
            source_id: self.source_id.into_owned(),
            ts,
            ts_emitted,
            body,
        }
    }

    /// [`Head::into_event`] written into `ev`, an event done with: its id strings are overwritten
    /// in place, which saves their allocations.
    fn write_into(self, (ts, ts_emitted): (Millis, Option<Millis>), body: Body, ev: &mut Event) {
        for (to, from) in [
            (&mut ev.event_id, &self.event_id),
            (&mut ev.deployment_id, &self.deployment_id),
            (&mut ev.source_id, &self.source_id),
        ] {
            to.clear();
            to.push_str(from);
        }
        (ev.system, ev.ts, ev.ts_emitted, ev.body) = (self.system, ts, ts_emitted, body);
    }
}

fn system(s: &str) -> Option<System> {
    match s {
        "lfr" => Some(System::Lfr),
        "anpr" => Some(System::Anpr),
        _ => None,
    }
}

/// Any field of the six other event types (a field the type does not read may be absent; one of a
/// type the typed parse cannot take sends the event to the general parser, which ignores what its
/// type does not read).
#[derive(Deserialize)]
struct RawEvent<'a> {
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
    // alert
    #[serde(default, borrow)]
    alert_id: Option<Cow<'a, str>>,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default, borrow)]
    list_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    category: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    subject_groups: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(default)]
    canary: Option<bool>,
    #[serde(default)]
    latency_ms: Option<u64>,
    // adjudication
    #[serde(default, borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    operator_token: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    verifier_token: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    // outcome
    #[serde(default, borrow)]
    result: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    engaged_groups: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    // status
    #[serde(default, borrow)]
    algorithm_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    list: Option<ObjectOnly<RawList<'a>>>,
    #[serde(default)]
    clock_offset_ms: Option<i64>,
    #[serde(default)]
    capture_ok: Option<bool>,
    // deployment
    #[serde(default, borrow)]
    phase: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    authorisation: Option<ObjectOnly<RawAuthorisation<'a>>>,
    // deletion
    #[serde(default, borrow)]
    scope: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    up_to: Option<Cow<'a, str>>,
    #[serde(default)]
    count: Option<u64>,
}

#[derive(Deserialize)]
struct RawList<'a> {
    #[serde(default, borrow)]
    version: Option<Cow<'a, str>>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, borrow)]
    built_at: Option<Cow<'a, str>>,
    #[serde(default)]
    under_18: Option<u64>,
}

#[derive(Deserialize)]
struct RawAuthorisation<'a> {
    #[serde(default, borrow)]
    authority_token: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    rank: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    window_start: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    window_end: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    location: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    purpose: Option<Cow<'a, str>>,
    #[serde(default)]
    max_list_size: Option<u64>,
    #[serde(default)]
    threshold_floor: Option<f64>,
}

/// An optional string of `min`–`max` characters: `Some(value)` if valid (None: let the general
/// parser say why).
fn text(s: &Option<Cow<'_, str>>, min: usize, max: usize) -> Option<Option<String>> {
    match s {
        None => Some(None),
        Some(s) => chars_within(s, min, max).then(|| Some(s.to_string())),
    }
}

/// A required string of `min`–`max` characters.
fn required(s: &Option<Cow<'_, str>>, min: usize, max: usize) -> Option<String> {
    text(s, min, max)?
}

/// An optional count within 2^53 − 1.
fn count(v: Option<u64>) -> Option<Option<u64>> {
    match v {
        Some(n) if n > MAX_INTEGER => None,
        v => Some(v),
    }
}

/// An optional number in [0, 1].
fn unit(v: Option<f64>) -> Option<Option<f64>> {
    match v {
        Some(x) if !x.is_finite() || !(0.0..=1.0).contains(&x) => None,
        v => Some(v),
    }
}

/// An optional RFC 3339 time.
fn time(s: &Option<Cow<'_, str>>) -> Option<Option<Millis>> {
    match s {
        None => Some(None),
        Some(s) => Some(Some(parse_ts(s)?)),
    }
}

/// `{attr: group}`, both at most 64 bytes.
fn groups(g: Option<BTreeMap<Cow<'_, str>, Cow<'_, str>>>) -> Option<Groups> {
    let mut out = Groups::new();
    for (a, v) in g.unwrap_or_default() {
        if a.len() > 64 || v.len() > 64 {
            return None;
        }
        out.insert(a.into_owned(), v.into_owned());
    }
    Some(out)
}

/// The event in `line` if it is a valid alert, adjudication, outcome, status, deployment or
/// deletion (None: let the general parser decide). The rules are `parse.rs`'s, field by field.
pub(super) fn other(line: &str) -> Option<Event> {
    let ObjectOnly(r) = serde_json::from_str::<ObjectOnly<RawEvent<'_>>>(line).ok()?;
    let kind = EventType::parse(&r.kind)?;
    let system = system(&r.system)?;
    let body = match kind {
        EventType::Detection => return None,
        EventType::Alert => Body::Alert(Alert {
            alert_id: required(&r.alert_id, 1, 128)?,
            score: unit(r.score)??,
            threshold: unit(r.threshold)??,
            list_version: required(&r.list_version, 1, 128)?,
            category: text(&r.category, 1, 64)?,
            subject_groups: groups(r.subject_groups)?,
            canary: r.canary.unwrap_or(false),
            latency_ms: count(r.latency_ms)?,
        }),
        EventType::Adjudication => {
            let alert_id = required(&r.alert_id, 1, 128)?;
            let decision = match required(&r.decision, 1, 16)?.as_str() {
                "engage" => AdjudicationDecision::Engage,
                "dismiss" => AdjudicationDecision::Dismiss,
                _ => return None,
            };
            required(&r.operator_token, 1, 256)?;
            let verified = text(&r.verifier_token, 1, 256)?.is_some();
            let reason = text(&r.reason, 0, 64)?;
            Body::Adjudication(Adjudication {
                alert_id,
                decision,
                verified,
                reason_misread: reason.as_deref() == Some("misread"),
            })
        }
        EventType::Outcome => {
            let alert_id = required(&r.alert_id, 1, 128)?;
            let result = match (required(&r.result, 1, 32)?.as_str(), system) {
                ("true_match", _) => OutcomeResult::TrueMatch,
                ("false_match", _) => OutcomeResult::FalseMatch,
                ("inconclusive", _) => OutcomeResult::Inconclusive,
                ("not_located", _) => OutcomeResult::NotLocated,
                ("misread", System::Anpr) => OutcomeResult::Misread,
                _ => return None,
            };
            text(&r.action, 0, 64)?;
            Body::Outcome(Outcome { alert_id, result, engaged_groups: groups(r.engaged_groups)? })
        }
        EventType::Status => {
            let list = match &r.list {
                None => None,
                Some(ObjectOnly(l)) => Some(ListInfo {
                    version: text(&l.version, 1, 128)?,
                    size: count(l.size)?,
                    built_at: time(&l.built_at)?,
                    under_18: count(l.under_18)?,
                }),
            };
            if r.clock_offset_ms.is_some_and(|v| v.unsigned_abs() > MAX_INTEGER) {
                return None;
            }
            Body::Status(Status {
                threshold: unit(r.threshold)?,
                algorithm_version: text(&r.algorithm_version, 1, 128)?,
                list,
                clock_offset_ms: r.clock_offset_ms,
                capture_ok: r.capture_ok,
            })
        }
        EventType::Deployment => {
            let phase = match required(&r.phase, 1, 16)?.as_str() {
                "authorised" => Phase::Authorised,
                "started" => Phase::Started,
                "stopped" => Phase::Stopped,
                _ => return None,
            };
            let authorisation = match &r.authorisation {
                None => None,
                Some(ObjectOnly(a)) => {
                    let auth = Authorisation {
                        authority_token: text(&a.authority_token, 1, 256)?,
                        rank: text(&a.rank, 1, 64)?,
                        window_start: time(&a.window_start)?,
                        window_end: time(&a.window_end)?,
                        location: text(&a.location, 1, 256)?,
                        purpose: text(&a.purpose, 1, 256)?,
                        max_list_size: count(a.max_list_size)?,
                        threshold_floor: unit(a.threshold_floor)?,
                    };
                    if let (Some(s), Some(e)) = (auth.window_start, auth.window_end)
                        && e < s
                    {
                        return None;
                    }
                    Some(auth)
                }
            };
            Body::Deployment(DeploymentEvent { phase, authorisation })
        }
        EventType::Deletion => {
            let scope = required(&r.scope, 1, 32)?;
            if !matches!(scope.as_str(), "non_match_biometrics" | "list" | "alerts" | "reads") {
                return None;
            }
            Body::Deletion(Deletion { scope, up_to: time(&r.up_to)??, count: count(r.count)? })
        }
    };
    let head = Head {
        schema_version: r.schema_version,
        event_id: r.event_id,
        deployment_id: r.deployment_id,
        system,
        source_id: r.source_id,
        ts: r.ts,
        ts_emitted: r.ts_emitted,
    };
    head.event(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse::parse_value;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// A detection read typed, as `parse_with` reads it: by hand, else by serde where [`plain`]
    /// takes the line.
    fn detection(line: &str) -> Option<Event> {
        match super::detection(line) {
            Read::Valid(ev) => Some(ev),
            Read::Plain => None,
            Read::Left => plain(line.as_bytes()).and_then(|_| detection_by_serde(line)),
        }
    }

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
        /// Whatever the fast path accepts, the general parser accepts with the same event (that
        /// a plain valid detection takes the fast path is `a_plain_detection_takes_the_fast_path`
        /// and `plain_detections_are_read_by_hand_as_serde_reads_them`).
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
            if let Some(fast) = detection(&line) {
                prop_assert_eq!(Ok(fast), slow, "{}", line);
            }
        }
    }

    #[test]
    fn a_plain_detection_takes_the_fast_path() {
        let line = serde_json::to_vec(&valid()).unwrap();
        assert_eq!(detection(text(&line)), Some(general(&line).unwrap()));
        let with_exposure = br#"{"schema_version":1,"type":"detection","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","count":2,"exposure":{"sex":{"male":2}}}"#;
        assert_eq!(detection(text(with_exposure)), None, "exposure is left to the general parser");
        let duplicate = br#"{"schema_version":1,"type":"detection","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","count":2,"count":3}"#;
        assert_eq!(detection(text(duplicate)), None, "a repeated key is left to the general parser");
        // A derived struct would take its fields as an array; the general parser does not.
        let array = br#"[1,"detection","e","d","lfr","c","2026-04-25T09:00:00Z",null,2]"#;
        assert_eq!(detection(text(array)), None);
        assert_eq!(general(array).unwrap_err().reason, crate::event::Reason::NotAnObject);
    }

    /// A valid event of each other type, with every field its type reads.
    fn others() -> Vec<serde_json::Map<String, Value>> {
        let envelope = json!({"schema_version": 1, "event_id": "e-2", "deployment_id": "d-1", "system": "anpr",
            "source_id": "cam-1", "ts": "2026-04-25T09:00:00.5+01:00", "ts_emitted": "2026-04-25T08:00:00.4Z"});
        let bodies = [
            json!({"type": "alert", "alert_id": "a-1", "score": 0.91, "threshold": 0.8, "list_version": "v1",
                "category": "stolen_vehicle", "subject_groups": {"sex": "male", "ethnicity": "white"}, "canary": true,
                "latency_ms": 120}),
            json!({"type": "adjudication", "alert_id": "a-1", "decision": "dismiss", "operator_token": "op",
                "verifier_token": "ver", "reason": "misread"}),
            json!({"type": "outcome", "alert_id": "a-1", "result": "misread", "action": "none",
                "engaged_groups": {"sex": "female"}}),
            json!({"type": "status", "threshold": 0.8, "algorithm_version": "ocr-7", "clock_offset_ms": -12,
                "capture_ok": false, "list": {"version": "v1", "size": 42000, "built_at": "2026-04-25T07:00:00Z",
                "under_18": 0, "categories": {"stolen_vehicle": 30000}}}),
            json!({"type": "deployment", "phase": "authorised", "authorisation": {"authority_token": "t",
                "rank": "superintendent", "window_start": "2026-04-25T08:00:00Z", "window_end": "2026-04-25T12:00:00Z",
                "location": "A12", "purpose": "vehicles of interest", "max_list_size": 100000, "threshold_floor": 0.6}}),
            json!({"type": "deletion", "scope": "reads", "up_to": "2026-04-25T12:00:00Z", "count": 5800}),
        ];
        bodies
            .into_iter()
            .map(|b| {
                let mut o = envelope.as_object().unwrap().clone();
                o.extend(b.as_object().unwrap().clone());
                o
            })
            .collect()
    }

    const OTHER_FIELDS: [&str; 31] = [
        "schema_version",
        "type",
        "event_id",
        "deployment_id",
        "system",
        "source_id",
        "ts",
        "ts_emitted",
        "alert_id",
        "score",
        "threshold",
        "list_version",
        "category",
        "subject_groups",
        "canary",
        "latency_ms",
        "decision",
        "operator_token",
        "verifier_token",
        "reason",
        "result",
        "action",
        "engaged_groups",
        "algorithm_version",
        "list",
        "clock_offset_ms",
        "capture_ok",
        "phase",
        "authorisation",
        "scope",
        "up_to",
    ];

    /// Values for the other types' fields: [`field_values`], their enumerations and nested objects.
    fn other_values() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            3 => field_values(),
            1 => prop_oneof![
                Just(Some(json!("engage"))),
                Just(Some(json!("misread"))),
                Just(Some(json!("true_match"))),
                Just(Some(json!("stopped"))),
                Just(Some(json!("list"))),
                Just(Some(json!("x".repeat(129)))),
                Just(Some(json!(-9007199254740992i64))),
                Just(Some(json!({"version": "", "size": 1}))),
                Just(Some(json!({"size": -1}))),
                Just(Some(json!({"built_at": "yesterday"}))),
                Just(Some(json!({"window_start": "2026-04-25T12:00:00Z", "window_end": "2026-04-25T08:00:00Z"}))),
                Just(Some(json!({"threshold_floor": 2}))),
                Just(Some(json!({"max_list_size": 9007199254740992u64}))),
                Just(Some(json!({"sex": "x".repeat(65)}))),
            ],
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6000))]
        /// Whatever the typed parse of the other six types accepts, the general parser accepts
        /// with the same event.
        #[test]
        fn the_typed_parse_of_other_types_agrees_with_the_general_parser(
            which in 0..6usize,
            changes in proptest::collection::vec((0..OTHER_FIELDS.len(), other_values()), 0..4),
            escaped in any::<bool>(),
        ) {
            let mut obj = others()[which].clone();
            for (i, v) in changes {
                match v {
                    None => { obj.remove(OTHER_FIELDS[i]); }
                    Some(v) => { obj.insert(OTHER_FIELDS[i].to_string(), v); }
                }
            }
            let mut line = serde_json::to_string(&obj).unwrap();
            if escaped {
                line = line.replace("\"alert_id\"", "\"alert\\u005fid\"").replace("a-1", "a\\u002d1");
            }
            let slow = general(line.as_bytes());
            if let Some(fast) = other(&line) {
                prop_assert_eq!(Ok(fast), slow, "{}", line);
            }
        }
    }

    #[test]
    fn every_other_type_takes_the_typed_path() {
        for o in others() {
            let line = serde_json::to_vec(&o).unwrap();
            let want = general(&line).unwrap();
            assert_eq!(other(text(&line)), Some(want), "{}", String::from_utf8_lossy(&line));
            assert_eq!(super::super::parse_line(&line), general(&line));
        }
        // A detection is not another type's; an outcome `misread` is ANPR's only.
        assert_eq!(other(&serde_json::to_string(&valid()).unwrap()), None);
        let mut lfr = others()[2].clone();
        lfr.insert("system".into(), json!("lfr"));
        let line = serde_json::to_vec(&lfr).unwrap();
        assert_eq!(other(text(&line)), None);
        assert!(general(&line).is_err());
    }

    /// What serde_json's skipping of unread fields does not check, and building a `Value` does:
    /// such a line is never taken by the typed parses (it is `malformed_json`, as before them).
    #[test]
    fn unread_fields_are_checked_as_the_general_parser_checks_them() {
        let alert = r#"{"schema_version":1,"type":"alert","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","alert_id":"a","score":0.9,"threshold":0.8,"list_version":"v1""#;
        let detection = r#"{"schema_version":1,"type":"detection","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","count":2"#;
        let status = r#"{"schema_version":1,"type":"status","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","list":{"size":3"#;
        let deep = format!("{}1{}", "[".repeat(129), "]".repeat(129));
        let bad: Vec<Vec<u8>> = vec![
            br#""vendor":1e400"#.to_vec(),
            br#""vendor":"\ud800""#.to_vec(),
            br#""vendor":"\udc00""#.to_vec(),
            br#""vendor":{"\ud800":1}"#.to_vec(),
            [&b"\"vendor\":\""[..], &[0xFF], b"\""].concat(),
            format!(r#""vendor":{}"#, "9".repeat(400)).into_bytes(),
            format!(r#""vendor":{deep}"#).into_bytes(),
        ];
        for base in [alert, detection, status] {
            let closing: &[u8] = if base == status { b"}}" } else { b"}" };
            let good = [base.as_bytes(), closing].concat();
            assert!(plain(&good).is_some());
            assert!(super::super::parse_line(&good).is_ok(), "{base}");
            for field in &bad {
                let line = [base.as_bytes(), b",", field, closing].concat();
                assert!(plain(&line).is_none(), "{}", String::from_utf8_lossy(&line));
                let got = super::super::parse_line(&line).map_err(|e| e.reason);
                assert_eq!(got, Err(crate::event::Reason::MalformedJson), "{}", String::from_utf8_lossy(&line));
            }
        }
        // Where the general parser takes them, so does the fallback: a valid surrogate pair.
        let pair = base_with(alert, r#""vendor":"\ud83d\ude00""#);
        assert!(plain(pair.as_bytes()).is_none());
        assert!(super::super::parse_line(pair.as_bytes()).is_ok(), "{pair}");
        // Exponents that surely fit stay on the typed path, with the general parser's result.
        for field in [r#""vendor":1e3"#, r#""vendor":1e-400"#, r#""vendor":-2.5E+299"#, r#""scores":[1.0E-4,5e-1]"#] {
            let line = base_with(detection, field);
            assert!(plain(line.as_bytes()).is_some(), "{line}");
            assert_eq!(super::super::parse_line(line.as_bytes()), general(line.as_bytes()), "{line}");
            assert!(super::super::parse_line(line.as_bytes()).is_ok(), "{line}");
        }
        for token in ["1e301", "10e300", "1E+999999", "1e9999999999", &"9".repeat(301)] {
            assert!(!finite(token.as_bytes()), "{token}");
        }
    }

    /// `plain`'s scan with strings walked byte by byte (the first version, before it skipped
    /// through them), for the differential test below.
    fn plain_bytewise(line: &[u8]) -> bool {
        if std::str::from_utf8(line).is_err() {
            return false;
        }
        let (mut depth, mut in_string, mut i) = (0usize, false, 0);
        while i < line.len() {
            let b = line[i];
            if in_string {
                match b {
                    b'\\' => {
                        if line.get(i + 1) == Some(&b'u')
                            && line.get(i + 2).is_some_and(|c| matches!(c, b'd' | b'D'))
                            && line.get(i + 3).is_some_and(|c| matches!(c, b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'))
                        {
                            return false;
                        }
                        i += 1;
                    }
                    b'"' => in_string = false,
                    _ => {}
                }
            } else if b == b'"' {
                in_string = true;
            } else {
                // Outside strings the step is `plain`'s own (what differs is the string skipping).
                match outside_strings(line, i, &mut depth) {
                    Some(next) => i = next,
                    None => return false,
                }
                continue;
            }
            i += 1;
        }
        // An unterminated string: malformed either way.
        !in_string
    }

    proptest! {
        /// The string-skipping scan decides as the byte-by-byte one, on lines made of the bytes
        /// that matter to it (quotes, escapes, surrogate hex, brackets, numbers, invalid UTF-8).
        #[test]
        fn plain_equals_the_bytewise_scan(
            parts in proptest::collection::vec(prop_oneof![
                Just(&b"\""[..]), Just(&b"\\"[..]), Just(&b"\\u"[..]), Just(&b"d8"[..]), Just(&b"DF"[..]),
                Just(&b"dc00"[..]), Just(&b"{"[..]), Just(&b"["[..]), Just(&b"}"[..]), Just(&b"]"[..]),
                Just(&b"1"[..]), Just(&b"-2.5"[..]), Just(&b"e"[..]), Just(&b"E+400"[..]), Just(&b"9"[..]),
                Just(&b"ab c:,"[..]), Just(&[0xFFu8][..]), Just("é".as_bytes()), Just(&[b'7'; 150][..]), Just(&b"-"[..]),
            ], 0..60),
            deep in 0usize..3,
        ) {
            let mut line: Vec<u8> = parts.concat();
            if deep == 1 {
                line = [&b"["[..].repeat(101), &line[..]].concat();
            }
            if deep == 2 {
                // ASCII without escapes: the lines the quick test may take.
                line.retain(|&b| b != b'\\' && b < 0x80);
            }
            prop_assert_eq!(plain(&line).is_some(), plain_bytewise(&line), "{}", String::from_utf8_lossy(&line));
            // The quick test alone is sufficient (never says yes where the scan says no).
            prop_assert!(!surely_plain(&line) || plain_bytewise(&line), "{}", String::from_utf8_lossy(&line));
        }
    }

    /// A line that ends inside a string on a backslash (found by the proptest below at 20,000
    /// cases: the scan read past the end and panicked).
    #[test]
    fn a_line_ending_in_an_escape_is_malformed_not_a_panic() {
        for line in [&br#"{"a":"x\"#[..], br#"{"a":"\"#, br#""\"#, br#"{"event_id":"e\u"#] {
            assert_eq!(plain(line), None);
            let got = super::super::parse_line(line).map_err(|e| e.reason);
            assert_eq!(got, Err(crate::event::Reason::MalformedJson));
        }
    }

    /// `by_hand`'s fields equal serde's, bit for bit (None where serde has none).
    fn hand_equals_serde(line: &str) -> Result<bool, String> {
        let Some(h) = super::super::by_hand::detection(line, Default::default()) else { return Ok(false) };
        // Read by hand means in the plain form: the general parser takes the line too.
        if serde_json::from_str::<Value>(line).is_err() {
            return Err(format!("by hand took what the general parser rejects: {line}"));
        }
        let Ok(ObjectOnly(s)) = serde_json::from_str::<ObjectOnly<RawDetection<'_>>>(line) else {
            return Err(format!("by hand took what serde rejects: {line}"));
        };
        let bits = |v: &Option<Vec<f64>>| v.as_ref().map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        let same = (h.schema_version, &h.kind, &h.event_id, &h.deployment_id, &h.system, &h.source_id, &h.ts)
            == (s.schema_version, &s.kind, &s.event_id, &s.deployment_id, &s.system, &s.source_id, &s.ts)
            && (&h.ts_emitted, h.count, h.canary_passes, h.exposure.is_some())
                == (&s.ts_emitted, s.count, s.canary_passes, s.exposure.is_some())
            && bits(&h.scores) == bits(&s.scores)
            && bits(&h.quality) == bits(&s.quality);
        if same { Ok(true) } else { Err(format!("by hand and serde differ on {line}")) }
    }

    /// Plain detections of every shape are read by hand, the same as serde reads them; so are the
    /// optional fields, nulls, blanks, unknown nested fields and integers as scores.
    #[test]
    fn plain_detections_are_read_by_hand_as_serde_reads_them() {
        // Detections as the simulator and serde_json write them (keys sorted), of every shape.
        for i in 0..3000u64 {
            let count = 1 + i % 12;
            let score = |k: u64| match k % 5 {
                4 => "1".to_string(),
                3 => "0".to_string(),
                _ => format!("0.{:03}", (i * 7 + k) % 1000),
            };
            let scores: Vec<String> = (0..(i % (count + 1))).map(score).collect();
            let mut line = format!(
                r#"{{"canary_passes":{},"count":{count},"deployment_id":"dep-{}","event_id":"e-{i:0w$}""#,
                i % 3,
                i % 7,
                w = (i % 40) as usize
            );
            if i % 4 == 0 {
                line += &format!(r#","quality":[{}]"#, scores.join(","));
            }
            line += &format!(
                r#","schema_version":1,"scores":[{}],"source_id":"cam-{}","system":"{}","ts":"2026-04-25T09:{:02}:{:02}.{:03}Z""#,
                scores.join(","),
                i % 10,
                if i % 2 == 0 { "lfr" } else { "anpr" },
                i / 60 % 60,
                i % 60,
                i % 1000
            );
            if i % 3 == 0 {
                line += r#","ts_emitted":"2026-04-25T09:00:00Z""#;
            }
            line += r#","type":"detection"}"#;
            assert!(hand_equals_serde(&line).unwrap(), "not read by hand: {line}");
            assert!(detection(&line).is_some(), "not a valid detection: {line}");
        }
        let base = r#""schema_version":1,"type":"detection","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","count":3"#;
        for extra in [
            r#","ts_emitted":"2026-04-25T09:00:01Z","canary_passes":2,"scores":[0,1,0.25],"quality":null"#,
            r#","ts_emitted":null,"canary_passes":null,"scores":[],"exposure":null"#,
            r#","vendor":{"a":[1,-2.5,true,false,null,"x",{"b":{}}],"c":[]},"v2":-0"#,
            r#" , "scores" : [ 0.1 , 0.2 ] "#,
        ] {
            let line = format!("{{{base}{extra}}}");
            assert!(hand_equals_serde(&line).unwrap(), "not read by hand: {line}");
        }
        // Left to serde: escapes, exponents, signs on scores, repeated keys, exposure tables.
        for extra in [
            r#","source_id":"c""#,
            r#","scores":[1e-1]"#,
            r#","scores":[-0]"#,
            r#","exposure":{}"#,
            r#","v":"
""#,
        ] {
            let line = format!("{{{base}{extra}}}");
            assert!(!hand_equals_serde(&line).unwrap(), "read by hand: {line}");
        }
        // `plain`'s bounds, which reading by hand keeps without it: 300 digits before a point,
        // nesting 100 deep counting the line's own object.
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        // (`plain` also leaves tokens over 1,000 characters to the general parser, which takes
        // this one, as reading by hand does.)
        for (extra, by_hand, plain_too) in [
            (format!(r#","v":{}"#, "9".repeat(300)), true, true),
            (format!(r#","v":-{}.5"#, "9".repeat(300)), true, true),
            (format!(r#","v":{}"#, "9".repeat(301)), false, false),
            (format!(r#","v":-{}.5"#, "9".repeat(301)), false, false),
            (format!(r#","v":0.{}"#, "0".repeat(2000)), true, false),
            (format!(r#","v":{}"#, nested(99)), true, true),
            (format!(r#","v":{}"#, nested(100)), false, false),
        ] {
            let line = format!("{{{base}{extra}}}");
            assert_eq!(hand_equals_serde(&line).unwrap(), by_hand, "{}", &line[..line.len().min(300)]);
            assert_eq!(plain(line.as_bytes()).is_some(), plain_too, "plain's bound differs");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        /// Scores of any length and any place of the point are read by hand to serde's f64, bit
        /// for bit: those that take the one-division path and those that do not.
        #[test]
        fn scores_are_read_as_serde_reads_them(
            numbers in proptest::collection::vec((proptest::collection::vec(0u8..10, 1..30), 0usize..30, any::<bool>()), 1..10),
        ) {
            let tokens: Vec<String> = numbers
                .into_iter()
                .map(|(digits, point, zero)| {
                    let mut t: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
                    if zero {
                        t.insert_str(0, "0.");
                    } else {
                        // No leading zeros before a point (JSON does not allow them).
                        t = t.trim_start_matches('0').to_string();
                        if t.is_empty() {
                            t.push('0');
                        }
                        if point > 0 && point < t.len() {
                            t.insert(point, '.');
                        }
                    }
                    t
                })
                .collect();
            let line = format!(
                r#"{{"schema_version":1,"type":"detection","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","count":10,"scores":[{}]}}"#,
                tokens.join(",")
            );
            prop_assert!(hand_equals_serde(&line).map_err(TestCaseError::fail)?, "not read by hand: {}", line);
        }
    }

    proptest! {
        /// Lines a few random edits away from valid detections: whatever `by_hand` takes, serde
        /// takes, with the same fields.
        #[test]
        fn by_hand_takes_nothing_serde_would_read_otherwise(
            base in 0usize..6,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(
                b"{}[]\",:0123456789.-eE ntrufalsx\\\t\x01".to_vec())), 1..4),
        ) {
            let bases = [
                r#"{"schema_version":1,"type":"detection","event_id":"e-1","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","count":3,"scores":[0.5,0.25,1]}"#,
                r#"{"count":2,"deployment_id":"d","event_id":"x","schema_version":1,"scores":[0.772,0.827],"source_id":"cam-1","system":"anpr","ts":"2026-04-25T09:00:00.001Z","type":"detection"}"#,
                r#"{"schema_version":1,"type":"detection","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","count":10,"quality":[0,0.5],"canary_passes":1,"ts_emitted":"2026-04-25T09:00:01Z"}"#,
                r#"{"schema_version":1,"type":"detection","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","count":1,"vendor":{"k":[1,{"z":null}],"t":true}}"#,
                r#"{ "schema_version" : 1 , "type" : "detection" , "event_id" : "e" , "deployment_id" : "d" , "system" : "lfr" , "source_id" : "c" , "ts" : "2026-04-25T09:00:00Z" , "count" : 12 }"#,
                r#"{"schema_version":1,"type":"detection","event_id":"e","deployment_id":"d","system":"lfr","source_id":"c","ts":"2026-04-25T09:00:00Z","count":4,"scores":null,"exposure":null,"canary_passes":null,"ts_emitted":null}"#,
            ];
            let mut line = bases[base].as_bytes().to_vec();
            for (at, op, byte) in edits {
                let i = at.index(line.len() + 1);
                match op {
                    0 if i < line.len() => { line.remove(i); }
                    1 if i < line.len() => line[i] = byte,
                    _ => line.insert(i, byte),
                }
            }
            if let Ok(line) = std::str::from_utf8(&line) {
                prop_assert!(hand_equals_serde(line).is_ok(), "{}", hand_equals_serde(line).unwrap_err());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The whole parse (hand reader, typed parses, general parser) against the general parser
        /// alone, on lines a few random edits away from valid events of every type, in compact
        /// and spaced form: the same event, or the same reason.
        #[test]
        fn parse_line_agrees_with_the_general_parser_on_edited_lines(
            base in any::<prop::sample::Index>(),
            spaced in any::<bool>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(vec![
                &b"{"[..], b"}", b"[", b"]", b"\"", b",", b":", b"0", b"1", b"9", b".", b"-", b"e", b"E", b" ",
                b"n", b"t", b"r", b"u", b"f", b"a", b"l", b"s", b"x", b"\\", b"\t", b"\x01", b"\x80",
                "\u{e9}".as_bytes(), "\u{1F600}".as_bytes(),
            ])), 1..4),
        ) {
            let mut objects = vec![valid()];
            objects.extend(others());
            let object = Value::Object(base.get(&objects).clone());
            let text = if spaced { serde_json::to_string_pretty(&object).unwrap().replace('\n', " ") } else { object.to_string() };
            let mut line = text.into_bytes();
            // Whole pieces (a character of two or four bytes among them) removed, put over or
            // put before the byte at a random place.
            for (at, op, piece) in edits {
                let i = at.index(line.len() + 1);
                match op {
                    0 if i < line.len() => { line.remove(i); }
                    1 if i < line.len() => { line.splice(i..i + 1, piece.iter().copied()); }
                    _ => { line.splice(i..i, piece.iter().copied()); }
                }
            }
            let reason = |r: Result<Event, crate::event::Invalid>| r.map_err(|e| e.reason);
            prop_assert_eq!(
                reason(super::super::parse_line(&line)),
                reason(general(&line)),
                "{}",
                String::from_utf8_lossy(&line)
            );
            // `replay` parses into spare events (a detection with scores and quality, and an
            // event of another type): the same result as `parse_line`, which HTTP and Kafka use.
            let mut spares: Vec<Box<Event>> = [serde_json::to_vec(&valid()).unwrap(), serde_json::to_vec(&others()[3]).unwrap()]
                .iter()
                .map(|l| Box::new(super::super::parse_line(l).unwrap()))
                .collect();
            for _ in 0..3 {
                let into = super::super::parse_line_into(&line, &mut spares).map(|ev| *ev);
                prop_assert_eq!(reason(into), reason(super::super::parse_line(&line)));
            }
        }
    }

    fn text(line: &[u8]) -> &str {
        std::str::from_utf8(line).unwrap()
    }

    fn base_with(base: &str, field: &str) -> String {
        format!("{base},{field}}}")
    }
}
