//! Where breach transitions go. This first cut has the `log` receiver (stdout/log line per
//! transition); the durable outbox, Alertmanager and signed webhooks build on the same
//! [`Transition`] stream.

pub mod outbox;

use crate::rules::Transition;

/// One human-readable line for a transition (demo output, `log` receivers).
pub fn describe(t: &Transition) -> String {
    let value = t.value.map(|v| format!("{v:.6}")).unwrap_or_else(|| "-".into());
    let bounds = match (t.lower, t.upper) {
        (Some(l), Some(u)) => format!(" [{l:.6}, {u:.6}]"),
        _ => String::new(),
    };
    format!(
        "{} {:<8} {:<8} {} / {} ({}) value {}{} limit {} since {}",
        crate::event::format_ts(t.at),
        t.state.as_str().to_uppercase(),
        t.severity.as_str(),
        t.deployment_id,
        t.condition,
        t.kind,
        value,
        bounds,
        t.limit,
        crate::event::format_ts(t.started_at),
    )
}
