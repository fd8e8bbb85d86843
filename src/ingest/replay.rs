//! Replay of a recorded NDJSON stream on event time (`ddtwatch replay`).

use std::io::{self, BufRead, IsTerminal};

use crate::engine::{Engine, Ingested};
use crate::ingest::DeadLetterSink;
use crate::rules::Transition;

/// Counts of one replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub lines: u64,
    pub applied: u64,
    pub held: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub bytes: u64,
}

/// Progress on stderr: a bar on a terminal, a line every `every` events otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    every: u64,
    quiet: bool,
}

impl Progress {
    pub fn new(total_bytes: Option<u64>, quiet: bool) -> Self {
        let bar = (!quiet && io::stderr().is_terminal()).then(|| {
            let bar = match total_bytes {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} {msg}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar, every: 500_000, quiet }
    }

    fn update(&self, s: &ReplayStats) {
        if let Some(bar) = &self.bar {
            if s.lines.is_multiple_of(4096) {
                bar.set_position(s.bytes);
                bar.set_message(format!("{} events, {} invalid", s.lines, s.invalid));
            }
        } else if !self.quiet && s.lines.is_multiple_of(self.every) {
            eprintln!(
                "replay: {} events ({} applied, {} invalid, {} duplicates)",
                s.lines, s.applied, s.invalid, s.duplicates
            );
        }
    }

    fn finish(&self, s: &ReplayStats) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if !self.quiet {
            eprintln!(
                "replay: done, {} events ({} applied, {} held, {} invalid, {} duplicates)",
                s.lines, s.applied, s.held, s.invalid, s.duplicates
            );
        }
    }
}

/// Applies every line of `input`; transitions go to `on_transition` in order, dead letters to
/// `dead`. Ends with the engine's end-of-input step (orphans dead-lettered, final evaluation).
pub fn replay(
    engine: &mut Engine,
    mut input: impl BufRead,
    on_transition: &mut dyn FnMut(&Transition) -> io::Result<()>,
    dead: &mut DeadLetterSink,
    progress: &Progress,
) -> io::Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    let mut buf = Vec::with_capacity(4096);
    let mut first = true;
    loop {
        buf.clear();
        let n = read_line_bounded(&mut input, &mut buf, crate::event::MAX_EVENT_BYTES + 1)?;
        if n == 0 {
            break;
        }
        stats.bytes += n as u64;
        // A UTF-8 byte-order mark is stripped from the first line of a file only; elsewhere it is
        // the documented `malformed_json`.
        if std::mem::take(&mut first) && buf.starts_with(UTF8_BOM) {
            buf.drain(..UTF8_BOM.len());
        }
        let line = trim(&buf);
        if line.is_empty() {
            continue;
        }
        stats.lines += 1;
        // Replay runs on event time: the receive time is not used.
        match engine.ingest(line, 0) {
            Ingested::Applied(_) => stats.applied += 1,
            Ingested::Held => stats.held += 1,
            Ingested::Duplicate => stats.duplicates += 1,
            Ingested::Invalid(_) => stats.invalid += 1,
        }
        drain(engine, on_transition, dead)?;
        progress.update(&stats);
    }
    engine.finish();
    drain(engine, on_transition, dead)?;
    dead.flush()?;
    progress.finish(&stats);
    Ok(stats)
}

fn drain(
    engine: &mut Engine,
    on_transition: &mut dyn FnMut(&Transition) -> io::Result<()>,
    dead: &mut DeadLetterSink,
) -> io::Result<()> {
    for t in engine.drain_transitions() {
        on_transition(&t)?;
    }
    for d in engine.drain_dead_letters() {
        dead.send(&d)?;
    }
    Ok(())
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads one line (through `\n`) into `buf`, keeping at most `keep` bytes of it and skipping
/// the rest without buffering it (a 200 MB line costs `keep` bytes of memory, not 200 MB; kept
/// over the event limit it is dead-lettered `too_large` with its first bytes). Returns the
/// bytes the line had in the input (0 at end of input).
pub fn read_line_bounded(input: &mut impl BufRead, buf: &mut Vec<u8>, keep: usize) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(total);
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = keep.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        input.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}

fn trim(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    let mut start = 0;
    while start < end && matches!(line[start], b' ' | b'\t') {
        start += 1;
    }
    &line[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines_keep_at_most_keep_bytes_and_count_all() {
        let long = "x".repeat(10_000);
        let input = format!("short\n{long}\nnext\nlast-without-newline");
        // A small internal buffer, so lines span many fill_buf calls.
        let mut r = io::BufReader::with_capacity(64, input.as_bytes());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            buf.clear();
            let n = read_line_bounded(&mut r, &mut buf, 100).unwrap();
            if n == 0 {
                break;
            }
            got.push((n, buf.clone()));
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], (6, b"short\n".to_vec()));
        assert_eq!(got[1].0, 10_001);
        assert_eq!(got[1].1.len(), 100, "only `keep` bytes of the long line are held");
        assert_eq!(got[2], (5, b"next\n".to_vec()));
        assert_eq!(got[3], (20, b"last-without-newline".to_vec()));
    }
}
