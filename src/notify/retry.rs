//! One retry policy for every HTTP receiver (webhook, Alertmanager): what an HTTP answer means
//! and how long to wait before the next attempt.
//!
//! - 2xx: delivered.
//! - 4xx other than 408 (timeout) and 429 (too many requests): permanent — the receiver rejected
//!   this notification and will reject it again; recorded as failed, never retried.
//! - Anything else (5xx, 408, 429, connection errors, timeouts): retried with exponential backoff
//!   and *full jitter* (a uniformly random wait in `[0, min(max_interval, initial·2^attempt)]`,
//!   the AWS Architecture Blog's "Exponential Backoff And Jitter" scheme, which spreads a burst of
//!   retries after an outage instead of synchronising them), or after `Retry-After` when the
//!   receiver sends one, until the notification is `max_age` old (INTERFACES.md: default 24h).

use crate::event::Millis;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub initial_ms: i64,
    pub max_interval_ms: i64,
    pub max_age_ms: i64,
}

impl RetryPolicy {
    /// The shared policy with a receiver's settings.
    pub fn of(r: &crate::config::ReceiverConfig) -> Self {
        RetryPolicy {
            initial_ms: r.backoff_initial.ms(),
            max_interval_ms: r.backoff_max.ms(),
            max_age_ms: r.max_age.ms(),
        }
    }
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered,
    /// Do not retry (recorded as failed with this detail).
    Permanent(String),
    /// Retry; `after_ms` is the receiver's `Retry-After`, when it gave one.
    Retry {
        detail: String,
        after_ms: Option<i64>,
    },
}

impl Attempt {
    /// Classifies an HTTP status (and its `Retry-After` header value, if any) at wall time `now`.
    pub fn from_status(status: u16, retry_after: Option<&str>, now: Millis) -> Attempt {
        match status {
            200..=299 => Attempt::Delivered,
            408 | 429 => Attempt::Retry {
                detail: format!("HTTP {status}"),
                after_ms: retry_after.and_then(|v| parse_retry_after(v, now)),
            },
            400..=499 => Attempt::Permanent(format!("HTTP {status} (permanent: not retried)")),
            _ => Attempt::Retry {
                detail: format!("HTTP {status}"),
                after_ms: retry_after.and_then(|v| parse_retry_after(v, now)),
            },
        }
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; the wait in ms from `now`.
pub fn parse_retry_after(v: &str, now: Millis) -> Option<i64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some((secs.min(86_400 * 7) * 1000) as i64);
    }
    chrono::DateTime::parse_from_rfc2822(v).ok().map(|t| (t.timestamp_millis() - now).max(0))
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 0 for the first failure),
    /// with `unit` a uniform random number in [0, 1).
    pub fn backoff_ms(&self, attempt: u32, unit: f64) -> i64 {
        let exp = self.initial_ms.saturating_mul(1i64 << attempt.min(40));
        let ceiling = exp.min(self.max_interval_ms).max(1);
        ((ceiling as f64) * unit.clamp(0.0, 1.0)) as i64
    }

    /// When to try again after a retryable failure at `now`, or None when the notification
    /// (enqueued at `enqueued`) would by then be older than `max_age`.
    pub fn next_attempt(
        &self,
        attempt: u32,
        retry_after_ms: Option<i64>,
        enqueued: Millis,
        now: Millis,
        unit: f64,
    ) -> Option<Millis> {
        let wait = retry_after_ms.unwrap_or_else(|| self.backoff_ms(attempt, unit));
        let at = now.saturating_add(wait);
        (at - enqueued <= self.max_age_ms).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: RetryPolicy = RetryPolicy { initial_ms: 1000, max_interval_ms: 300_000, max_age_ms: 86_400_000 };

    #[test]
    fn statuses() {
        assert_eq!(Attempt::from_status(200, None, 0), Attempt::Delivered);
        assert_eq!(Attempt::from_status(204, None, 0), Attempt::Delivered);
        for s in [400, 401, 403, 404, 410, 413, 422] {
            assert!(matches!(Attempt::from_status(s, None, 0), Attempt::Permanent(_)), "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 301] {
            assert!(matches!(Attempt::from_status(s, None, 0), Attempt::Retry { .. }), "{s}");
        }
        assert_eq!(
            Attempt::from_status(503, Some("120"), 0),
            Attempt::Retry { detail: "HTTP 503".into(), after_ms: Some(120_000) }
        );
        // 1994-11-06T08:49:37Z is 784111777 s; asked at 60 s before.
        let now = 784_111_777_000 - 60_000;
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(60_000));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_wins_and_max_age_stops() {
        assert_eq!(P.next_attempt(0, Some(30_000), 0, 1000, 0.9), Some(31_000));
        let day = 86_400_000;
        assert_eq!(P.next_attempt(5, Some(10_000), 0, day - 5_000, 0.5), None, "past max_age");
        assert_eq!(P.next_attempt(5, Some(10_000), 0, day - 10_000, 0.5), Some(day));
    }

    proptest! {
        /// Full jitter: the wait lies in [0, min(cap, initial·2^attempt)] and grows with `unit`.
        #[test]
        fn backoff_is_bounded_full_jitter(attempt in 0u32..80, unit in 0.0f64..1.0) {
            let w = P.backoff_ms(attempt, unit);
            let ceiling = (1000i64 << attempt.min(40)).min(300_000);
            prop_assert!(w >= 0 && w <= ceiling);
            prop_assert!(P.backoff_ms(attempt, 1.0) == ceiling);
            prop_assert!(P.backoff_ms(attempt, unit) <= P.backoff_ms(attempt, (unit + 0.1).min(1.0)));
        }
    }
}
