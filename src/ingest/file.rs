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
                    pipeline.ingest_file_line(line, crate::time::wall_clock_ms(), &key, pos);
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
