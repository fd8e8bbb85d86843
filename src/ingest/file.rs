//! The `file` source of `run`: applies a file's lines once, resuming after the position a
//! restored snapshot recorded (each line's effect and the position after it are taken under one
//! lock, so a snapshot never holds one without the other).

use std::io::{self, BufRead};
use std::path::PathBuf;

use super::Pipeline;

/// A `file` source: applies the file's lines (then stays idle; its task ends "finished").
pub fn follow_file(
    pipeline: Pipeline,
    path: PathBuf,
    health: &crate::health::SourceHealth,
    task: &crate::health::TaskGuard,
) {
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            health.error("io", &format!("cannot open {}: {e}", path.display()));
            task.fail(format!("cannot open {}: {e}", path.display()));
            return;
        }
    };
    health.set_up(true);
    let key = path.to_string_lossy().to_string();
    // Resume where a restored snapshot stopped.
    let mut pos = pipeline.engine.lock().map(|e| e.source_positions.get(&key).copied().unwrap_or(0)).unwrap_or(0);
    let mut f = f;
    if pos > 0 {
        use std::io::Seek;
        if let Err(e) = f.seek(io::SeekFrom::Start(pos)) {
            health.error("io", &format!("cannot seek {}: {e}", path.display()));
            task.fail(format!("cannot seek {}: {e}", path.display()));
            return;
        }
        tracing::info!(path = %path.display(), offset = pos, "file source resumes after the snapshot");
    }
    let mut reader = io::BufReader::new(f);
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(read) => {
                pos += read as u64;
                let line = buf.trim_ascii();
                if !line.is_empty() {
                    pipeline.ingest_file_line(line, pipeline.now(), &key, pos);
                    n += 1;
                }
            }
            Err(e) => {
                health.error("io", &format!("reading {}: {e}", path.display()));
                task.fail(format!("reading {}: {e}", path.display()));
                return;
            }
        }
    }
    tracing::info!(path = %path.display(), events = n, "file source finished");
    // A file read to its end is a task that is done, not a dead one.
    task.finished();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClockMode, Config};
    use crate::engine::Engine;
    use crate::ingest::DeadLetterSink;

    /// 2026-04-25T10:00:00Z, an hour after the event below.
    fn fixed() -> crate::time::Millis {
        1_777_111_200_000
    }

    /// The file source stamps arrivals with the pipeline's clock. Under the wall clock mode an
    /// event a day after that clock is in the future (dead-lettered), while one an hour before it
    /// is applied; by the system's clock both are in the past.
    #[test]
    fn arrivals_carry_the_pipeline_clock() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.ndjson");
        std::fs::write(
            &input,
            r#"{"deployment_id":"lfr-a","event_id":"e1","phase":"started","schema_version":1,"source_id":"control","system":"lfr","ts":"2026-04-25T09:00:00Z","type":"deployment"}
{"deployment_id":"lfr-b","event_id":"e2","phase":"started","schema_version":1,"source_id":"control","system":"lfr","ts":"2026-04-26T10:00:00Z","type":"deployment"}
"#,
        )
        .unwrap();
        let engine = Engine::new(std::sync::Arc::new(Config::demo()), ClockMode::Wall);
        let dead = DeadLetterSink::file(&dir.path().join("dead.ndjson")).unwrap();
        let pipeline = Pipeline::new(engine, dead).with_clock(fixed);
        let health = crate::health::Health::new();
        let source = health.source("file", "file");
        let task = health.task("file", std::time::Duration::from_secs(60));
        follow_file(pipeline.clone(), input, &source, &task);
        let dead = std::fs::read_to_string(dir.path().join("dead.ndjson")).unwrap();
        assert!(dead.contains("\"future_timestamp\"") && dead.contains("lfr-b"), "{dead}");
        assert!(!dead.contains("lfr-a"), "the past event is applied: {dead}");
        let e = pipeline.engine.lock().unwrap();
        assert!(e.deployments().any(|d| d.id == "lfr-a" && d.started_at.is_some()));
    }
}
