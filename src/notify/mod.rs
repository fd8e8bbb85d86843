//! Where breach transitions go: each becomes one notification per receiver in the durable
//! [`outbox`] (before the events that caused it are acknowledged); the [`dispatch`]er delivers
//! them to `log`, [`webhook`] (Standard Webhooks signed) and [`alertmanager`] receivers under one
//! [`retry`] policy.

pub mod alertmanager;
pub mod dispatch;
pub mod key;
pub mod notifier;
pub mod outbox;
pub mod retry;
pub mod webhook;

pub use notifier::Notifier;

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

/// An HTTP client for receivers (and tests): reqwest over rustls with the ring provider, which
/// is installed process-wide here first (reqwest is built without a default provider).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().user_agent(concat!("ddtwatch/", env!("CARGO_PKG_VERSION"))).build().expect("HTTP client")
}
