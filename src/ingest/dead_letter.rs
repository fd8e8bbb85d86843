//! Dead-letter sinks: every event that is not applied is written here with its reason, so
//! nothing is dropped silently. One JSON line per dead letter:
//! `{"reason": "...", "detail": "...", "deployment_id": "...", "payload": "<original text>"}`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde_json::json;

use crate::config::DeadLetterConfig;
use crate::engine::DeadLetter;

pub enum DeadLetterSink {
    File(BufWriter<File>),
    Stderr,
    /// Counted in metrics only (tests, `discard` in config).
    Discard,
    /// A Kafka topic (`dead_letter: {kind: kafka, topic}`), produced with the source's settings.
    Kafka(super::kafka::KafkaDlq),
}

impl DeadLetterSink {
    pub fn file(path: &Path) -> io::Result<Self> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(DeadLetterSink::File(BufWriter::new(f)))
    }

    /// The sink a config names. A Kafka DLQ uses the first Kafka source's brokers and settings.
    pub fn from_config(
        c: Option<&DeadLetterConfig>,
        sources: &[crate::config::SourceConfig],
        stats: &std::sync::Arc<super::kafka::KafkaStats>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        match c {
            Some(DeadLetterConfig::File { path }) => {
                DeadLetterSink::file(path).with_context(|| format!("opening {}", path.display()))
            }
            Some(DeadLetterConfig::Discard {}) => Ok(DeadLetterSink::Discard),
            Some(DeadLetterConfig::Kafka { topic }) => {
                let source = crate::config::SourceConfig::first_kafka(sources)
                    .context("dead_letter kind kafka needs a kafka source for its brokers")?;
                Ok(DeadLetterSink::Kafka(super::kafka::KafkaDlq::new(source, topic, stats.clone())?))
            }
            _ => Ok(DeadLetterSink::Stderr),
        }
    }

    pub fn record(dl: &DeadLetter) -> String {
        let payload = String::from_utf8_lossy(&dl.payload);
        json!({
            "reason": dl.reason.as_str(),
            "detail": dl.detail,
            "deployment_id": dl.deployment_id,
            "payload": payload,
        })
        .to_string()
    }

    pub fn send(&mut self, dl: &DeadLetter) -> io::Result<()> {
        match self {
            DeadLetterSink::File(w) => {
                w.write_all(Self::record(dl).as_bytes())?;
                w.write_all(b"\n")
            }
            DeadLetterSink::Stderr => {
                // Never the payload on stderr (it is a log): reason and deployment only.
                eprintln!(
                    "dead letter: reason={} deployment={} ({})",
                    dl.reason,
                    dl.deployment_id.as_deref().unwrap_or("-"),
                    dl.detail
                );
                Ok(())
            }
            DeadLetterSink::Discard => Ok(()),
            DeadLetterSink::Kafka(k) => {
                k.send(dl);
                Ok(())
            }
        }
    }

    /// Writes buffered file output (cheap; after every batch).
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            DeadLetterSink::File(w) => w.flush(),
            _ => Ok(()),
        }
    }

    /// Makes every dead letter so far durable before the offsets of their messages are
    /// committed: file fsync'd, Kafka producer acknowledged. False if that did not happen.
    pub fn sync(&mut self, timeout: std::time::Duration) -> bool {
        match self {
            DeadLetterSink::File(w) => w.flush().and_then(|_| w.get_ref().sync_data()).is_ok(),
            DeadLetterSink::Kafka(k) => k.flush(timeout),
            _ => true,
        }
    }
}
