//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

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
