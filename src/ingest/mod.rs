//! Where events come from and where invalid ones go.
//!
//! - [`replay`]: NDJSON from a file or stdin, applied on event time, with progress on stderr.
//! - [`simulator`]: deterministic scenario streams (`ddtwatch simulate`, `demo`).
//! - [`kafka`]: the Kafka source (consumer group, at-least-once) and the Kafka dead-letter topic.
//! - [`dead_letter`]: the sink for events that were not applied, each with its reason.

pub mod dead_letter;
pub mod file;
pub mod kafka;
pub mod pipeline;
pub mod replay;
pub mod simulator;

pub use dead_letter::DeadLetterSink;
pub use pipeline::{BatchResult, Ingest, Pipeline, Publisher};
