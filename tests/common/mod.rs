//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod broker;
pub mod secure;

use std::path::PathBuf;
use std::sync::Arc;

use ddtwatch::config::{ClockMode, Config};
use ddtwatch::engine::{DeadLetter, Engine, ReplaySummary};
use ddtwatch::rules::Transition;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documented example config with the shipped default profiles.
pub fn example_config() -> Arc<Config> {
    Arc::new(Config::load(&repo().join("config/ddtwatch.yaml")).expect("config/ddtwatch.yaml is valid"))
}

pub struct Replayed {
    pub transitions: Vec<Transition>,
    pub dead: Vec<DeadLetter>,
    pub summary: ReplaySummary,
    pub engine: Engine,
}

/// Replays lines through a fresh engine on event time, like `ddtwatch replay`.
pub fn replay<S: AsRef<str>>(config: Arc<Config>, lines: &[S]) -> Replayed {
    let mut engine = Engine::new(config, ClockMode::Event);
    let mut transitions = Vec::new();
    let mut dead = Vec::new();
    for l in lines {
        engine.ingest(l.as_ref().as_bytes(), 0);
        transitions.extend(engine.drain_transitions());
        dead.extend(engine.drain_dead_letters());
    }
    engine.finish();
    transitions.extend(engine.drain_transitions());
    dead.extend(engine.drain_dead_letters());
    let summary = engine.summary();
    Replayed { transitions, dead, summary, engine }
}

/// Path of the built binary (cargo builds it for integration tests).
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ddtwatch"))
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ddtwatch run --config path` with extra environment; its log goes to the test's stderr with
/// DDTWATCH_TEST_LOGS=1.
pub fn spawn_run_env(path: &std::path::Path, env: &[(&str, &str)]) -> Proc {
    use std::process::Stdio;
    let logs = || if std::env::var_os("DDTWATCH_TEST_LOGS").is_some() { Stdio::inherit() } else { Stdio::null() };
    let mut c = std::process::Command::new(bin());
    c.args(["run", "--config"]).arg(path).stdout(Stdio::null()).stderr(logs());
    for (k, v) in env {
        c.env(k, v);
    }
    Proc(c.spawn().unwrap())
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// deployment id → counters from a running instance's `/api/v1/deployments` (None if it is not
/// answering).
pub fn api_counters(base: &str) -> Option<std::collections::BTreeMap<String, serde_json::Value>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let list: serde_json::Value = rt.block_on(async {
        ddtwatch::notify::http_client().get(format!("{base}/api/v1/deployments")).send().await.ok()?.json().await.ok()
    })?;
    list["deployments"]
        .as_array()?
        .iter()
        .map(|d| Some((d["deployment_id"].as_str()?.to_string(), d["counters"].clone())))
        .collect()
}

/// deployment id → counters of an event-time replay of `lines` with the example config.
pub fn replay_counters(lines: &[String]) -> std::collections::BTreeMap<String, serde_json::Value> {
    let r = replay(example_config(), lines);
    r.summary
        .deployments
        .iter()
        .map(|d| (d.deployment_id.clone(), serde_json::to_value(&d.counters).unwrap()))
        .collect()
}

/// `ddtwatch_…` metric names in a PromQL expression (recording rules are `ddtwatch:…`).
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("ddtwatch_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}
