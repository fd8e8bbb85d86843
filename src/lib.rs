//! ddtwatch — a live-monitoring sidecar for police data-driven technologies (live facial
//! recognition, ANPR).
//!
//! The pipeline, by module:
//! - [`event`]: the event contract (schema_version 1): typed events, validation with reasons.
//! - [`ingest`]: where events come from (file/stdin replay, HTTP, the simulator) and where
//!   invalid ones go (dead letters).
//! - [`engine`]: per-deployment state, the alert ↔ decision ↔ outcome join, counters, windows,
//!   the engine clock, evaluation once per second of engine time.
//! - [`stats`]: pure statistics (intervals, Fisher exact, PSI/KS/Page-Hinkley).
//! - [`rules`]: the condition model, evaluation formulas and the breach lifecycle.
//! - [`notify`]: where breach transitions go (receivers).
//! - [`report`]: the publishable deployment record (Markdown, JSON, CSV).
//! - [`telemetry`]: every metric name and the logging setup.
//! - [`health`]: liveness of the long-lived tasks (behind `/healthz`) and each source's state.
//! - [`audit`]: the hash-chained audit log and its verification.
//! - [`http`]: `/metrics`, health, the API, connection limits.
//! - [`config`]: YAML model, loading, validation, embedded defaults.
//! - [`clock`]: the wall clock.
//! - [`cli`]: the `ddtwatch` commands.
//!
//! [`ingest::kafka`] is the Kafka source (its own thread per source) and the Kafka dead-letter
//! producer.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod event;
pub mod health;
pub mod http;
pub mod ingest;
pub mod notify;
pub mod report;
pub mod rules;
pub mod stats;
pub mod telemetry;
