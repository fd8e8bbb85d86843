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
}

impl DeadLetterSink {
    pub fn file(path: &Path) -> io::Result<Self> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(DeadLetterSink::File(BufWriter::new(f)))
    }

    /// The sink a config names (Kafka topics are handled by the Kafka source).
    pub fn from_config(c: Option<&DeadLetterConfig>) -> io::Result<Self> {
        match c {
            Some(DeadLetterConfig::File { path }) => DeadLetterSink::file(path),
            Some(DeadLetterConfig::Discard {}) => Ok(DeadLetterSink::Discard),
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
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            DeadLetterSink::File(w) => w.flush(),
            _ => Ok(()),
        }
    }
}
