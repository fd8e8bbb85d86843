//! Time, in one leaf module: event-time milliseconds ([`Millis`]), RFC 3339 formatting, config
//! durations ([`Dur`]) and the one wall clock. Every layer may use it; it uses none of them.
//! Only [`wall_clock_ms`] reads the system clock (`clippy.toml` bans `SystemTime::now`
//! elsewhere); everything else takes the time as a parameter.

mod duration;

pub use duration::Dur;

/// Milliseconds since the Unix epoch (event time or wall time).
pub type Millis = i64;

/// A clock passed into the components that stamp wall time (audit records, sources, the
/// notifier), so tests can drive it: [`wall_clock_ms`] in production.
pub type Clock = fn() -> Millis;

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
#[allow(clippy::disallowed_methods)] // the one place the system clock is read
pub fn wall_clock_ms() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Formats a timestamp as RFC 3339 UTC with millisecond precision when needed.
pub fn format_ts(ms: Millis) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => ms.to_string(),
    }
}

/// Parses RFC 3339 with an offset into epoch milliseconds.
pub fn parse_ts(s: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
}

/// Serialises an optional timestamp as RFC 3339 (serde `serialize_with`).
pub fn ser_opt_ts<S: serde::Serializer>(ts: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(t) => s.serialize_str(&format_ts(*t)),
        None => s.serialize_none(),
    }
}

/// Serialises a timestamp as RFC 3339 (serde `serialize_with`).
pub fn ser_ts<S: serde::Serializer>(ts: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(*ts))
}
