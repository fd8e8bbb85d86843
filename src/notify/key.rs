//! Notification keys: `ddtwatch/<deployment>/<condition>/<started_at>/<firing|resolved>`
//! (CONDITIONS.md; the same breach is the same key, so receivers de-duplicate by it). Built in one
//! place ([`NotificationKey::of`]) and read back with [`NotificationKey::from_str`]; the journal
//! and the audit log keep the text.
//!
//! A condition id may hold a `/` (silence instances: `camera_silence/cam-2`), so a key is read
//! from both ends: the deployment is the first segment, the state and time the last two.

use std::fmt;
use std::str::FromStr;

use crate::rules::{Transition, TransitionKind};
use crate::time::{Millis, format_ts, parse_ts};

const PREFIX: &str = "ddtwatch/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationKey {
    pub deployment: String,
    pub condition: String,
    /// The breach's start (its key time, README "Notifications").
    pub started_at: Millis,
    pub state: TransitionKind,
}

impl NotificationKey {
    pub fn of(t: &Transition) -> Self {
        NotificationKey {
            deployment: t.deployment_id.clone(),
            condition: t.condition.clone(),
            started_at: t.started_at,
            state: t.state,
        }
    }

    /// `ddtwatch/<deployment>/<condition>`: one alert to an Alertmanager (same labels) across
    /// the condition's breaches.
    pub fn identity(&self) -> String {
        format!("{PREFIX}{}/{}", self.deployment, self.condition)
    }

    /// The key without its state: one breach.
    pub fn breach(&self) -> String {
        format!("{}/{}", self.identity(), format_ts(self.started_at))
    }
}

impl fmt::Display for NotificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.breach(), self.state.as_str())
    }
}

impl FromStr for NotificationKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("not a notification key: {s:?}");
        let rest = s.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (rest, state) = rest.rsplit_once('/').ok_or_else(bad)?;
        let state = match state {
            "firing" => TransitionKind::Firing,
            "resolved" => TransitionKind::Resolved,
            _ => return Err(bad()),
        };
        let (rest, ts) = rest.rsplit_once('/').ok_or_else(bad)?;
        let started_at = parse_ts(ts).ok_or_else(bad)?;
        let (deployment, condition) = rest.split_once('/').ok_or_else(bad)?;
        if deployment.is_empty() || condition.is_empty() {
            return Err(bad());
        }
        Ok(NotificationKey { deployment: deployment.into(), condition: condition.into(), started_at, state })
    }
}

/// The breach part of a key's text (without the trailing `/<state>`), without parsing it.
pub fn breach_key(key: &str) -> &str {
    key.rsplit_once('/').map(|(b, _)| b).unwrap_or(key)
}

/// The breach part and the state of a key's text (`…/<started_at>/<firing|resolved>`), without
/// parsing the rest; None if it does not end in a state.
pub fn split_state(key: &str) -> Option<(&str, TransitionKind)> {
    match key.rsplit_once('/')? {
        (breach, "firing") => Some((breach, TransitionKind::Firing)),
        (breach, "resolved") => Some((breach, TransitionKind::Resolved)),
        _ => None,
    }
}

/// The alert identity of a key's text ([`NotificationKey::identity`]), without parsing it.
/// Deliveries to a receiver keep transition order per identity, so a later breach's `firing`
/// never overtakes an earlier one's undelivered `resolved`.
pub fn identity_key(key: &str) -> &str {
    let breach = breach_key(key);
    breach.rsplit_once('/').map(|(i, _)| i).unwrap_or(breach)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_split_off_like_it_parses() {
        let k = "ddtwatch/d/camera_silence/cam-2/2026-04-25T09:00:00Z/resolved";
        assert_eq!(
            split_state(k),
            Some(("ddtwatch/d/camera_silence/cam-2/2026-04-25T09:00:00Z", TransitionKind::Resolved))
        );
        assert_eq!(k.parse::<NotificationKey>().unwrap().state, TransitionKind::Resolved);
        assert_eq!(split_state("ddtwatch/d/c/2026-04-25T09:00:00Z/firing").map(|s| s.1), Some(TransitionKind::Firing));
        assert_eq!(split_state("ddtwatch/d/c/2026-04-25T09:00:00Z/open"), None);
        assert_eq!(split_state("nothing"), None);
    }

    #[test]
    fn keys_round_trip_and_slice_like_they_parse() {
        for (condition, state) in
            [("threshold_floor", TransitionKind::Firing), ("camera_silence/cam-2", TransitionKind::Resolved)]
        {
            let k = NotificationKey {
                deployment: "lfr-a".into(),
                condition: condition.into(),
                started_at: parse_ts("2026-04-25T09:00:01.5Z").unwrap(),
                state,
            };
            let text = k.to_string();
            assert_eq!(text.parse::<NotificationKey>().unwrap(), k);
            assert_eq!(breach_key(&text), k.breach());
            assert_eq!(identity_key(&text), k.identity());
        }
        assert_eq!(
            "ddtwatch/lfr-a/camera_silence/cam-2/2026-04-25T09:00:00Z/firing"
                .parse::<NotificationKey>()
                .unwrap()
                .condition,
            "camera_silence/cam-2"
        );
        for bad in [
            "",
            "ddtwatch/",
            "other/d/c/2026-04-25T09:00:00Z/firing",
            "ddtwatch/d/c/not-a-time/firing",
            "ddtwatch/d/c/2026-04-25T09:00:00Z/open",
            "ddtwatch/d/2026-04-25T09:00:00Z/firing",
        ] {
            assert!(bad.parse::<NotificationKey>().is_err(), "{bad}");
        }
    }
}
