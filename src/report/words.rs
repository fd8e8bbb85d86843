//! Plain-English formatting shared by the record's summary paragraph and its renderings:
//! percentages, thousands, rates in words, dates.

use super::model::Rate;

/// A proportion as a percentage with two significant digits ("0.0084%", "6.3%", "100%").
pub fn percent(p: f64) -> String {
    let v = p * 100.0;
    // Below 1e-10 % is float noise from an interval computation (a Wilson lower bound of 0).
    if v.abs() < 1e-10 {
        return "0%".into();
    }
    let digits = (1 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s}%")
}

/// "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// "about 0.0084% of faces processed (between 0.0054% and 0.013%)".
pub(super) fn rate_words(r: Option<&Rate>, of: &str) -> String {
    match r.map(|r| (r.value, r.lower, r.upper)) {
        Some((Some(v), Some(l), Some(u))) => {
            format!("{} of {of} (between {} and {})", percent(v), percent(l), percent(u))
        }
        _ => format!("not measurable: no {of}"),
    }
}

pub(super) fn system_name(system: &str) -> &'static str {
    match system {
        "lfr" => "live facial recognition",
        "anpr" => "automatic number plate recognition",
        _ => "data-driven technology",
    }
}

pub(super) fn date_time(ts: Option<&String>) -> String {
    ts_words(ts, "%H:%M on %-d %B %Y (UTC)")
}

/// To the second (breaches and notifications).
pub(super) fn date_time_s(ts: Option<&String>) -> String {
    ts_words(ts, "%H:%M:%S on %-d %B %Y (UTC)")
}

fn ts_words(ts: Option<&String>, fmt: &str) -> String {
    ts.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc).format(fmt).to_string())
        .unwrap_or_else(|| "an unknown time".into())
}

/// A recorded text, or "not recorded".
pub(super) fn opt(v: Option<&String>) -> String {
    v.cloned().unwrap_or_else(|| "not recorded".into())
}
