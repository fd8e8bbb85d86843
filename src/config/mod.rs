//! Configuration: YAML model, loading (with profile files), validation and the embedded default.
//!
//! Loading is two steps, as in quickwit's config crate: serde with `deny_unknown_fields` (so a
//! misspelled key fails with its path and a "did you mean" hint), then `validate`-style
//! checks that need the whole picture (profiles exist, receivers exist, overrides name real
//! conditions). Every problem is reported as `path: problem`, all at once.

mod model;
pub mod reload;
mod validate;

pub use model::*;
use validate::validate;

pub use crate::time::Dur;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_norway::{Mapping, Value};

use crate::event::{Authorisation, System};
use crate::rules::{Condition, parse_condition};

pub use crate::diag::{ConfigError, ConfigErrors, suggest};

/// A profile's validated conditions, shared by every deployment that uses it (a deployment's
/// runtime holds an `Arc` to its condition instead of a copy: ≈ 0.5 KB less per condition and
/// deployment).
pub type Conditions = Arc<Vec<Arc<Condition>>>;

fn shared(conditions: Vec<Condition>) -> Conditions {
    Arc::new(conditions.into_iter().map(Arc::new).collect())
}

/// A validated configuration, ready for the engine.
#[derive(Debug, Clone)]
pub struct Config {
    pub raw: RawConfig,
    /// attribute → allowed groups (always including `other` and `unknown`).
    pub groups: BTreeMap<String, Vec<String>>,
    /// profile name → validated conditions.
    pub profiles: BTreeMap<String, Conditions>,
    /// deployment id → conditions after overrides.
    pub deployment_conditions: BTreeMap<String, Conditions>,
    pub authorisations: BTreeMap<String, Authorisation>,
    /// SHA-256 of the effective configuration (hex), shown in summaries and reports.
    pub hash: String,
}

/// Embedded default profiles (also shipped as files in `config/profiles/`).
pub const LFR_PROFILE: &str = include_str!("../../config/profiles/lfr.yaml");
pub const ANPR_PROFILE: &str = include_str!("../../config/profiles/anpr.yaml");
/// Embedded demo configuration (`ddtwatch demo`).
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.yaml");

impl Config {
    /// Loads a config file; `profiles_dir` is resolved relative to the file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![ConfigError::new(path.display().to_string(), e.to_string())]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_yaml(&text, Some(base))
    }

    /// The embedded demo configuration with the embedded default profiles.
    pub fn demo() -> Config {
        Config::from_yaml(DEMO_CONFIG, None).expect("embedded demo config is valid (tested)")
    }

    /// Parses and validates YAML. Without `base`, or in a file with neither `profiles_dir` nor
    /// inline profiles, the embedded profiles stand in for `profiles_dir`.
    pub fn from_yaml(text: &str, base: Option<&Path>) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = deserialize(text, "")?;
        let mut profiles = raw.profiles.clone();
        let mut errors = Vec::new();
        // A file with neither `profiles_dir` nor inline profiles (a first, minimal config) gets
        // the embedded defaults too: before, it monitored nothing and said nothing.
        // Only a file that sets none of what they need: one that names its own receivers or
        // groups is a real configuration missing its profiles (zero conditions: warned about,
        // and a reload to it is refused), not a first try.
        let embedded =
            raw.profiles_dir.is_none() && raw.profiles.is_empty() && raw.receivers.is_empty() && raw.groups.is_empty();
        match (&raw.profiles_dir, base) {
            (Some(dir), Some(base)) => load_profiles_dir(&base.join(dir), &mut profiles, &mut errors),
            _ if embedded || base.is_none() => {
                for (name, text) in [("lfr", LFR_PROFILE), ("anpr", ANPR_PROFILE)] {
                    if !profiles.contains_key(name) {
                        match deserialize::<ProfileFile>(text, &format!("profiles.{name}")) {
                            Ok(p) => {
                                profiles.insert(name.into(), p);
                            }
                            Err(e) => errors.extend(e.0),
                        }
                    }
                }
            }
            _ => {}
        }
        let mut raw = raw;
        raw.profiles = profiles;
        if embedded {
            // What the embedded profiles need, as the demo has them: `oversight` and `ops`
            // receivers (log lines) and the group allow-lists their disparity conditions tabulate.
            let demo: RawConfig = deserialize(DEMO_CONFIG, "")?;
            raw.receivers = demo.receivers;
            raw.groups = demo.groups;
        }
        validate(raw, errors)
    }

    /// Conditions for a deployment: its own (with overrides), else its system's default profile.
    pub fn conditions_for(&self, deployment_id: &str, system: Option<System>) -> Conditions {
        if let Some(c) = self.deployment_conditions.get(deployment_id) {
            return c.clone();
        }
        let profile = match system {
            Some(System::Lfr) => self.raw.defaults.lfr.as_deref().unwrap_or("lfr"),
            Some(System::Anpr) => self.raw.defaults.anpr.as_deref().unwrap_or("anpr"),
            None => return Arc::new(Vec::new()),
        };
        self.profiles.get(profile).cloned().unwrap_or_default()
    }

    /// Conditions in every profile and per-deployment set (0: the config monitors nothing).
    pub fn condition_count(&self) -> usize {
        self.profiles.values().map(|p| p.len()).sum::<usize>()
            + self.deployment_conditions.values().map(|p| p.len()).sum::<usize>()
    }

    /// What this configuration leaves unmonitored, for check-config, replay and the start-up
    /// log: one line when it has no condition at all, else one per system whose deployments no
    /// condition would monitor (its default profile empty or missing), e.g. "anpr deployments: no
    /// conditions (profile `anpr` is missing)". Empty when every system has conditions.
    pub fn unmonitored(&self) -> Vec<String> {
        if self.condition_count() == 0 {
            return vec!["no conditions: this configuration monitors nothing (its profiles are empty)".into()];
        }
        [
            (System::Lfr, "lfr", self.raw.defaults.lfr.as_deref()),
            (System::Anpr, "anpr", self.raw.defaults.anpr.as_deref()),
        ]
        .into_iter()
        .filter(|(sys, _, _)| self.conditions_for("", Some(*sys)).is_empty())
        .map(|(_, name, profile)| {
            let profile = profile.unwrap_or(name);
            let why = if self.profiles.contains_key(profile) { "is empty" } else { "is missing" };
            format!("{name} deployments: no conditions (profile `{profile}` {why}): they are monitored by nothing")
        })
        .collect()
    }

    /// The effective configuration as JSON with secret references redacted.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.raw).unwrap_or_default();
        redact(&mut v);
        v
    }
}

fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k.contains("secret") || k.contains("token") || k.contains("password") {
                    *val = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        serde_json::Value::String(s) if s.contains("://") => *s = redact_url(s),
        _ => {}
    }
}

/// A URL without its credentials: userinfo, the path (webhook services carry their secret in
/// it) and every query value become `<redacted>`
/// (`http://user:pw@host:9/ops/T0/xyz?token=x` → `http://<redacted>@host:9/<redacted>?token=<redacted>`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    // The host starts after the last `@` before any query or fragment (a password may hold
    // an unencoded `/`).
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    let host_start = rest[..before_query].rfind('@').map_or(0, |i| i + 1);
    let end = rest[host_start..].find(['/', '?', '#']).map_or(rest.len(), |i| host_start + i);
    let authority =
        if host_start > 0 { format!("<redacted>@{}", &rest[host_start..end]) } else { rest[..end].to_string() };
    let tail = &rest[end..];
    let (tail, fragment) = match tail.split_once('#') {
        Some((t, f)) => (t, Some(f)),
        None => (tail, None),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let path = if path.is_empty() || path == "/" { path.to_string() } else { "/<redacted>".to_string() };
    let query = query
        .map(|q| {
            let pairs: Vec<String> = q
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) => format!("{k}=<redacted>"),
                    None => pair.to_string(),
                })
                .collect();
            format!("?{}", pairs.join("&"))
        })
        .unwrap_or_default();
    let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
    format!("{scheme}://{authority}{path}{query}{fragment}")
}

/// serde with the key path of the failure and a did-you-mean for unknown fields.
fn deserialize<T: serde::de::DeserializeOwned>(text: &str, prefix: &str) -> Result<T, ConfigErrors> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut path = e.path().to_string();
        // serde_norway's message may start with the same key path: say it once.
        let inner = e.inner().to_string();
        let inner = inner.strip_prefix(&format!("{path}: ")).map(str::to_string).unwrap_or(inner);
        if path == "." {
            path.clear();
        }
        let path = match (prefix.is_empty(), path.is_empty()) {
            (true, true) => "(top level)".to_string(),
            (true, false) => path,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{path}"),
        };
        ConfigErrors(vec![ConfigError::new(path, unknown_field_hint(&inner))])
    })
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" into a short hint.
fn unknown_field_hint(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return msg.to_string();
    };
    let Some((field, rest)) = rest.split_once('`') else {
        return msg.to_string();
    };
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let loc = msg.find(" at line ").map(|i| &msg[i..]).unwrap_or("");
    let hint = suggest(field, &expected);
    if hint.is_empty() {
        format!("unknown key `{field}` (expected one of {}){loc}", expected.join(", "))
    } else {
        format!("unknown key `{field}`{hint}{loc}")
    }
}

fn load_profiles_dir(dir: &Path, profiles: &mut BTreeMap<String, ProfileFile>, errors: &mut Vec<ConfigError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(ConfigError::new("profiles_dir", format!("{}: {e}", dir.display())));
            return;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if profiles.contains_key(&name) {
            errors.push(ConfigError::new(format!("profiles.{name}"), "defined both inline and in profiles_dir"));
            continue;
        }
        match std::fs::read_to_string(&file) {
            Ok(text) => match deserialize::<ProfileFile>(&text, &format!("profiles.{name}")) {
                Ok(p) => {
                    profiles.insert(name, p);
                }
                Err(e) => errors.extend(e.0),
            },
            Err(e) => errors.push(ConfigError::new(format!("profiles.{name}"), e.to_string())),
        }
    }
}

fn parse_profile(name: &str, conditions: &[Mapping], errors: &mut Vec<ConfigError>) -> Vec<Condition> {
    let mut out: Vec<Condition> = Vec::new();
    for (i, m) in conditions.iter().enumerate() {
        let path = format!("profiles.{name}.conditions[{i}]");
        match parse_condition(m, &path) {
            Ok(c) => {
                if out.iter().any(|o| o.id == c.id) {
                    errors.push(ConfigError::new(format!("{path}.id"), format!("duplicate condition id `{}`", c.id)));
                }
                out.push(c);
            }
            Err(e) => errors.extend(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_when_shown() {
        assert_eq!(
            redact_url("http://user:pa55word@am.example:9093/ops?token=abc&team=x#top"),
            "http://<redacted>@am.example:9093/<redacted>?token=<redacted>&team=<redacted>#top"
        );
        assert_eq!(redact_url("http://alertmanager:9093"), "http://alertmanager:9093");
        assert_eq!(
            redact_url("https://hooks.example.com/services/T0/B1/s3cr3t"),
            "https://hooks.example.com/<redacted>"
        );
        assert_eq!(redact_url("http://u:pa/ss@h:1/x"), "http://<redacted>@h:1/<redacted>");
        let mut v = serde_json::json!({"receivers": {"ops": {"url": "http://u:p@h/x?k=v"}}, "n": 1});
        redact(&mut v);
        let text = v.to_string();
        assert!(!text.contains("u:p") && !text.contains("k=v"), "{text}");
    }

    #[test]
    fn embedded_demo_config_is_valid() {
        let c = Config::demo();
        assert!(!c.profiles["lfr"].is_empty());
        assert!(!c.profiles["anpr"].is_empty());
    }

    #[test]
    fn misspelled_top_level_key_has_path_and_hint() {
        let e = Config::from_yaml("sorces: []\n", None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("did you mean \"sources\""), "{msg}");
    }

    #[test]
    fn a_bad_value_names_its_key_path_once() {
        let e = Config::from_yaml("receivers:\n  ops:\n    kind: pager\n", None).unwrap_err().to_string();
        assert!(e.starts_with("receivers.ops.kind: unknown variant `pager`"), "{e}");
        assert_eq!(e.matches("receivers.ops.kind").count(), 1, "{e}");
    }

    #[test]
    fn misspelled_condition_key_has_path_and_hint() {
        let yaml = "profiles:\n  p:\n    conditions:\n      - {id: r, kind: rate, numerator: false_alerts, denominatr: detections, max: 0.1}\n";
        let e = Config::from_yaml(yaml, None).unwrap_err().to_string();
        assert!(e.contains("profiles.p.conditions[0].denominatr"), "{e}");
        assert!(e.contains("did you mean \"denominator\""), "{e}");
    }

    /// PSI edges must be finite and ascending: a NaN (`.nan`) compares false both ways, so the
    /// ascending check alone let it through, and binning depended on how a value was searched.
    #[test]
    fn psi_edges_must_be_finite() {
        for edges in ["[0, .nan, 0.5]", "[0, 0.5, .inf]", "[0, 0.5, 0.5]"] {
            let yaml = format!(
                "profiles:\n  p:\n    conditions:\n      - {{id: d, kind: drift, value: score, method: psi, edges: {edges}, max: 0.25}}\n"
            );
            let e = Config::from_yaml(&yaml, None).unwrap_err().to_string();
            assert!(e.contains("edges"), "{edges}: {e}");
        }
    }

    #[test]
    fn override_of_unknown_condition_is_an_error() {
        let yaml = "deployments:\n  d1: {profile: lfr, overrides: [{id: false_alert_rat, max: 0.1}]}\nreceivers: {oversight: {kind: log}, ops: {kind: log}}\ngroups: {ethnicity: [black], sex: [female]}\n";
        let e = Config::from_yaml(yaml, None).unwrap_err().to_string();
        assert!(e.contains("deployments.d1.overrides[0].id"), "{e}");
    }

    #[test]
    fn secrets_are_redacted() {
        let yaml = "receivers: {oversight: {kind: webhook, url: 'http://x', secret_file: /run/s}, ops: {kind: log}}\ngroups: {ethnicity: [black], sex: [female]}\n";
        let c = Config::from_yaml(yaml, None).unwrap();
        let text = c.redacted().to_string();
        assert!(!text.contains("/run/s"), "{text}");
    }
}
