//! ddtwatch — a live-monitoring sidecar for police data-driven technologies (live facial
//! recognition, ANPR).
//!
//! The path of an event: a source in [`ingest`] parses it ([`event`]) and hands it to the
//! [`engine`], which keeps each deployment's state and evaluates its conditions ([`rules`]) once
//! a second; a breach transition goes through the [`ingest::Publisher`] to the
//! [`notify::Notifier`] (outbox, dispatcher, receivers) and the [`audit`] log; [`telemetry`],
//! [`report`] and [`http`] read the engine; [`cli`] wires it all.
//!
//! Modules by layer, lowest first; a module uses only modules on lower layers
//! (`tests/layering.rs` checks every `crate::` path):
//! 0. [`time`] (event time, durations, the one wall clock), [`diag`] (config errors with key
//!    paths);
//! 1. [`event`] (the event contract: typed events, validation with reasons), [`stats`] (pure
//!    statistics), [`health`] (liveness of tasks and sources);
//! 2. [`rules`]: the condition model, evaluation results and the breach lifecycle;
//! 3. [`config`]: the YAML model, loading, validation, embedded defaults, hot reload;
//! 4. [`engine`]: per-deployment state, the alert ↔ decision ↔ outcome join, windows, the engine
//!    clock, evaluation, snapshots;
//! 5. [`ingest`]: sources (files, HTTP bodies, the simulator, [`ingest::kafka`]) into the
//!    pipeline, and dead letters;
//! 6. [`audit`]: the hash-chained audit log and its verification;
//! 7. [`notify`]: notification keys, the notifier, the durable outbox, the dispatcher, receivers;
//! 8. [`report`] (the publishable deployment record), [`telemetry`] (metrics, logging);
//! 9. [`http`]: `/metrics`, health, the API, connection limits;
//! 10. [`service`]: what `run` builds and serves, with one shutdown signal;
//! 11. [`cli`]: the `ddtwatch` commands (argument parsing, the demo, replay, reports).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod audit;
pub mod cli;
pub mod config;
pub mod diag;
pub mod engine;
pub mod event;
pub mod health;
pub mod http;
pub mod ingest;
pub mod notify;
pub mod report;
pub mod rules;
pub mod service;
pub mod stats;
pub mod telemetry;
pub mod time;
