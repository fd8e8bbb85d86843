//! Validation: a deserialised [`RawConfig`] becomes a [`Config`] (conditions parsed per profile
//! and deployment, overrides applied, every cross-reference and bound checked), or every problem
//! found, each with its key path.

use std::collections::BTreeMap;

use sha2::Digest;

use super::*;
use crate::event::{Authorisation, parse_ts};
use crate::rules::{Condition, Kind};

/// Checks `raw` whole, adding to the problems found while reading it (`errors`). Each part of the
/// file is checked by its own function below, in the file's order, so errors come out in a stable
/// order.
pub(super) fn validate(raw: RawConfig, mut errors: Vec<ConfigError>) -> Result<Config, ConfigErrors> {
    let groups = groups(&raw);
    let profiles = profiles(&raw, &mut errors);
    let (deployment_conditions, authorisations) = deployments(&raw, &profiles, &mut errors);
    conditions_refs(&raw, &groups, &profiles, &deployment_conditions, &mut errors);
    receivers(&raw, &mut errors);
    sources(&raw, &mut errors);
    http(&raw.http, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let hash = {
        let canonical = serde_json::to_vec(&raw).unwrap_or_default();
        let digest = sha2::Sha256::digest(&canonical);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    };
    Ok(Config { raw, groups, profiles, deployment_conditions, authorisations, hash })
}

/// Group allow-lists always include the catch-alls (INTERFACES.md: values outside → other).
fn groups(raw: &RawConfig) -> BTreeMap<String, Vec<String>> {
    let mut groups = BTreeMap::new();
    for (attr, list) in &raw.groups {
        let mut list = list.clone();
        for catch_all in ["other", "unknown"] {
            if !list.iter().any(|g| g == catch_all) {
                list.push(catch_all.into());
            }
        }
        groups.insert(attr.clone(), list);
    }
    groups
}

/// The named profiles, parsed; and the per-system defaults must name one of them.
fn profiles(raw: &RawConfig, errors: &mut Vec<ConfigError>) -> BTreeMap<String, Conditions> {
    let mut profiles = BTreeMap::new();
    for (name, p) in &raw.profiles {
        profiles.insert(name.clone(), shared(parse_profile(name, &p.conditions, errors)));
    }
    for (system, name) in [("lfr", &raw.defaults.lfr), ("anpr", &raw.defaults.anpr)] {
        if let Some(name) = name
            && !profiles.contains_key(name)
        {
            let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
            errors.push(ConfigError::new(
                format!("defaults.{system}"),
                format!("no profile `{name}`{}", suggest(name, &names)),
            ));
        }
    }
    profiles
}

type DeploymentParts = (BTreeMap<String, Conditions>, BTreeMap<String, Authorisation>);

/// Per-deployment authorisations, and the conditions of deployments that name a profile (with
/// their overrides applied).
fn deployments(
    raw: &RawConfig,
    profiles: &BTreeMap<String, Conditions>,
    errors: &mut Vec<ConfigError>,
) -> DeploymentParts {
    let mut deployment_conditions = BTreeMap::new();
    let mut authorisations = BTreeMap::new();
    for (id, d) in &raw.deployments {
        let path = format!("deployments.{id}");
        if let Some(a) = &d.authorisation {
            match authorisation(a, &format!("{path}.authorisation")) {
                Ok(a) => {
                    authorisations.insert(id.clone(), a);
                }
                Err(e) => errors.push(e),
            }
        }
        let Some(profile) = &d.profile else {
            if !d.overrides.is_empty() {
                errors.push(ConfigError::new(format!("{path}.overrides"), "overrides need an explicit `profile`"));
            }
            continue;
        };
        let Some(base) = raw.profiles.get(profile) else {
            let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
            errors.push(ConfigError::new(
                format!("{path}.profile"),
                format!("no profile `{profile}`{}", suggest(profile, &names)),
            ));
            continue;
        };
        let maps = overridden(&path, profile, base, &d.overrides, errors);
        let mut errs = Vec::new();
        let conds = parse_profile(&format!("{profile}(deployment {id})"), &maps, &mut errs);
        errors.extend(errs);
        deployment_conditions.insert(id.clone(), shared(conds));
    }
    (deployment_conditions, authorisations)
}

/// A profile's condition mappings with a deployment's overrides merged in (an override whose
/// `id` is missing or unknown is an error and changes nothing).
fn overridden(
    path: &str,
    profile: &str,
    base: &ProfileFile,
    overrides: &[Mapping],
    errors: &mut Vec<ConfigError>,
) -> Vec<Mapping> {
    let mut maps = base.conditions.clone();
    for (i, o) in overrides.iter().enumerate() {
        let opath = format!("{path}.overrides[{i}]");
        let Some(oid) = o.get("id").and_then(Value::as_str) else {
            errors.push(ConfigError::new(format!("{opath}.id"), "is required (the condition to change)"));
            continue;
        };
        let Some(target) = maps.iter_mut().find(|m| m.get("id").and_then(Value::as_str) == Some(oid)) else {
            let ids: Vec<&str> = base.conditions.iter().filter_map(|m| m.get("id").and_then(Value::as_str)).collect();
            errors.push(ConfigError::new(
                format!("{opath}.id"),
                format!("profile `{profile}` has no condition `{oid}`{}", suggest(oid, &ids)),
            ));
            continue;
        };
        for (k, v) in o {
            target.insert(k.clone(), v.clone());
        }
    }
    maps
}

/// Receivers named by conditions (in profiles and in per-deployment overrides) must exist, and a
/// disparity condition's attribute needs an allow-list.
fn conditions_refs(
    raw: &RawConfig,
    groups: &BTreeMap<String, Vec<String>>,
    profiles: &BTreeMap<String, Conditions>,
    deployment_conditions: &BTreeMap<String, Conditions>,
    errors: &mut Vec<ConfigError>,
) {
    // Per-deployment overrides can name receivers too (a misspelt one would fail for good at
    // run time).
    for (id, conds) in deployment_conditions {
        for c in conds.iter() {
            unknown_receivers(raw, &format!("deployments.{id}.overrides"), c, errors);
        }
    }
    for (name, conds) in profiles {
        for c in conds.iter() {
            unknown_receivers(raw, &format!("profiles.{name}.conditions"), c, errors);
            if let Kind::Disparity(d) = &c.kind
                && !groups.contains_key(&d.attribute)
            {
                errors.push(ConfigError::new(
                    format!("profiles.{name}.conditions[id={}].attribute", c.id),
                    format!(
                        "`{}` has no allow-list under `groups` (attributes without one are not tabulated)",
                        d.attribute
                    ),
                ));
            }
        }
    }
}

fn unknown_receivers(raw: &RawConfig, path: &str, c: &Condition, errors: &mut Vec<ConfigError>) {
    for r in &c.notify {
        if !raw.receivers.contains_key(r) {
            let names: Vec<&str> = raw.receivers.keys().map(String::as_str).collect();
            errors.push(ConfigError::new(
                format!("{path}[id={}].notify", c.id),
                format!("no receiver `{r}`{}", suggest(r, &names)),
            ));
        }
    }
}

/// Each receiver's settings are complete and in range.
fn receivers(raw: &RawConfig, errors: &mut Vec<ConfigError>) {
    for (name, r) in &raw.receivers {
        let path = format!("receivers.{name}");
        if matches!(r.kind, ReceiverKind::Webhook | ReceiverKind::Alertmanager) && r.url.is_none() {
            errors.push(ConfigError::new(format!("{path}.url"), "is required for this receiver kind"));
        }
        if r.kind == ReceiverKind::Webhook && r.secret_file.is_none() && r.secret_env.is_none() {
            errors.push(ConfigError::new(format!("{path}.secret_file"), "a webhook needs secret_file or secret_env"));
        }
        if r.resend.ms() <= 0 {
            errors.push(ConfigError::new(format!("{path}.resend"), "must be positive"));
        }
        if r.timeout.ms() <= 0 {
            errors.push(ConfigError::new(format!("{path}.timeout"), "must be positive"));
        }
        if r.backoff_initial.ms() <= 0 {
            errors.push(ConfigError::new(format!("{path}.backoff_initial"), "must be positive"));
        }
        if r.backoff_initial.ms() > r.backoff_max.ms() {
            errors.push(ConfigError::new(
                format!("{path}.backoff_initial"),
                format!("({}) is above backoff_max ({})", r.backoff_initial, r.backoff_max),
            ));
        }
        for (key, url) in [("url", &r.url), ("generator_url", &r.generator_url)] {
            let Some(url) = url else { continue };
            let ok = url.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.starts_with('/')
            });
            if !ok {
                errors.push(ConfigError::new(
                    format!("{path}.{key}"),
                    format!("`{url}` is not an http:// or https:// URL with a host"),
                ));
            }
        }
        if r.generator_url.is_some() && r.kind != ReceiverKind::Alertmanager {
            errors.push(ConfigError::new(format!("{path}.generator_url"), "applies to alertmanager receivers only"));
        }
    }
}

/// Kafka sources: topics and brokers given; properties ddtwatch owns not overridden; secrets
/// never inline.
fn sources(raw: &RawConfig, errors: &mut Vec<ConfigError>) {
    for (i, s) in raw.sources.iter().enumerate() {
        if let SourceConfig::Kafka { topics, brokers, properties, secret_properties, .. } = s {
            for k in properties.keys().chain(secret_properties.keys()) {
                let section = if properties.contains_key(k) { "properties" } else { "secret_properties" };
                if let Some((_, why)) = KAFKA_OWNED_PROPERTIES.iter().find(|(o, _)| o == k) {
                    errors.push(ConfigError::new(
                        format!("sources[{i}].{section}.{k}"),
                        format!("is set by ddtwatch and cannot be overridden: {why}"),
                    ));
                }
            }
            for k in secret_properties.keys() {
                if properties.contains_key(k) {
                    errors.push(ConfigError::new(
                        format!("sources[{i}].secret_properties.{k}"),
                        "is also in properties; give it in one place only",
                    ));
                }
            }
            if topics.is_empty() {
                errors.push(ConfigError::new(format!("sources[{i}].topics"), "needs at least one topic"));
            }
            if brokers.trim().is_empty() {
                errors.push(ConfigError::new(format!("sources[{i}].brokers"), "is empty"));
            }
            for k in properties.keys() {
                if k.contains("password") || k.contains("secret") || k.ends_with(".key") {
                    errors.push(ConfigError::new(
                        format!("sources[{i}].properties.{k}"),
                        "secrets go in secret_properties (file or env), never inline",
                    ));
                }
            }
        }
    }
}

fn http(h: &HttpConfig, errors: &mut Vec<ConfigError>) {
    if h.read_timeout.ms() <= 0 {
        errors.push(ConfigError::new("http.read_timeout", "must be positive"));
    }
    if h.header_timeout.ms() <= 0 {
        errors.push(ConfigError::new("http.header_timeout", "must be positive"));
    }
    if h.max_connections == 0 {
        errors.push(ConfigError::new("http.max_connections", "must be at least 1"));
    }
    if h.listen.parse::<std::net::SocketAddr>().is_err() {
        errors.push(ConfigError::new("http.listen", format!("`{}` is not host:port", h.listen)));
    }
}

fn authorisation(a: &AuthorisationConfig, path: &str) -> Result<Authorisation, ConfigError> {
    let ts = |v: &Option<String>, key: &str| -> Result<Option<i64>, ConfigError> {
        match v {
            None => Ok(None),
            Some(s) => parse_ts(s)
                .map(Some)
                .ok_or_else(|| ConfigError::new(format!("{path}.{key}"), "must be RFC 3339 with an offset")),
        }
    };
    let (window_start, window_end) = (ts(&a.window_start, "window_start")?, ts(&a.window_end, "window_end")?);
    if let (Some(start), Some(end)) = (window_start, window_end)
        && end <= start
    {
        return Err(ConfigError::new(format!("{path}.window_end"), "is not after window_start"));
    }
    if let Some(f) = a.threshold_floor
        && !(0.0..=1.0).contains(&f)
    {
        return Err(ConfigError::new(
            format!("{path}.threshold_floor"),
            format!("is {f}: match thresholds are scores between 0 and 1"),
        ));
    }
    Ok(Authorisation {
        authority_token: None,
        rank: a.rank.clone(),
        window_start,
        window_end,
        location: a.location.clone(),
        purpose: a.purpose.clone(),
        max_list_size: a.max_list_size,
        threshold_floor: a.threshold_floor,
    })
}
