//! Replay of a recorded NDJSON stream on event time (`ddtwatch replay`).

use std::io::{self, BufRead, IsTerminal};

use crate::engine::{Engine, Ingested, event_key};
use crate::event::{Event, Invalid, parse_line_into};
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

/// Lines handed from the reader to a parse thread at a time (fewer once their text reaches
/// `BATCH_BYTES`), and batches queued between two stages. In flight at most: per parse thread one
/// queued to it, one it parses, one queued to the engine and one the engine applies, plus the one
/// the reader fills: with two parse threads ≈ 10 batches, ≈ 20 MB however long the lines.
const BATCH_LINES: usize = 1024;
const BATCH_BYTES: usize = 2 << 20;
const QUEUED: usize = 1;

/// Lines read and, once a parse thread has been at them, what they parsed to, in input order.
struct Batch {
    text: Vec<u8>,
    /// Each line's bytes, `text[range]` (kept for dead letters and held events).
    lines: Vec<std::ops::Range<usize>>,
    /// What each line parsed to, and a valid event's [`event_key`] (0 for an invalid line).
    parsed: Vec<(Result<Box<Event>, Invalid>, u64)>,
    /// Input bytes the batch covers (blank lines included).
    bytes: u64,
}

/// What flows from the reader through a parse thread to the engine.
enum Msg {
    Batch(Batch),
    /// A read error: the replay fails with it after the lines before it.
    Failed(io::Error),
    /// End of input.
    End,
}

/// Applies every line of `input`; transitions go to `on_transition` in order, dead letters to
/// `dead`. Ends with the engine's end-of-input step (orphans dead-lettered, final evaluation).
///
/// Three stages, so that even a single deployment's stream uses every core: a thread reads lines
/// into batches; parse threads (the available cores but one, at least 1 and at most 4) parse
/// them, batch `k` by thread
/// `k mod threads`; this thread applies them to the engine, taking batch `k` from thread
/// `k mod threads`, so in input order. Parsing is a pure function of the line, and the engine
/// sees exactly what [`Engine::ingest`] of each line in turn would give it: the output is the
/// same for any number of parse threads. Applied batches go back to the parse thread that filled
/// them, which drops their events (memory is freed by the thread that allocated it, which glibc's
/// allocator does far faster than a free from another), and their buffers then to the reader.
pub fn replay(
    engine: &mut Engine,
    input: impl BufRead + Send + 'static,
    on_transition: &mut dyn FnMut(&Transition) -> io::Result<()>,
    dead: &mut DeadLetterSink,
    progress: &Progress,
) -> io::Result<ReplayStats> {
    // The engine's thread needs a core of its own: parse threads on the others (measured on two
    // cores: a second parse thread competing with the engine made both streams of the
    // `replay_throughput` bench slower, by 5–10%).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    replay_with(engine, input, on_transition, dead, progress, (cores - 1).clamp(1, 4))
}

fn replay_with(
    engine: &mut Engine,
    input: impl BufRead + Send + 'static,
    on_transition: &mut dyn FnMut(&Transition) -> io::Result<()>,
    dead: &mut DeadLetterSink,
    progress: &Progress,
    parse_threads: usize,
) -> io::Result<ReplayStats> {
    use std::sync::mpsc::{channel, sync_channel};
    let mut stats = ReplayStats::default();
    let (recycle, recycled) = channel::<Batch>();
    let (mut to_parse, mut parsed, mut used) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..parse_threads.max(1) {
        let (tx, rx) = sync_channel::<Msg>(QUEUED);
        let (out, out_rx) = sync_channel::<Msg>(QUEUED);
        let (back, back_rx) = channel::<Batch>();
        let recycle = recycle.clone();
        std::thread::Builder::new()
            .name(format!("replay-parse-{i}"))
            .spawn(move || parse_batches(&rx, &out, &back_rx, &recycle))?;
        to_parse.push(tx);
        parsed.push(out_rx);
        used.push(back);
    }
    drop(recycle);
    std::thread::Builder::new().name("replay-read".into()).spawn(move || read_lines(input, &to_parse, &recycled))?;
    // An error here (stdout closed, the dead-letter file unwritable, a read error) ends the replay
    // at once: the other stages stop at their next send, or with the process, without waiting for
    // more input.
    apply_batches(engine, parsed, &used, &mut stats, on_transition, dead, progress)?;
    engine.finish();
    drain(engine, on_transition, dead)?;
    dead.flush()?;
    progress.finish(&stats);
    Ok(stats)
}

/// The reader stage: batches of lines to the parse threads in turn until end of input or a read
/// error (each passed on after the lines before it), or a parse thread hanging up.
fn read_lines(
    mut input: impl BufRead,
    to_parse: &[std::sync::mpsc::SyncSender<Msg>],
    recycled: &std::sync::mpsc::Receiver<Batch>,
) {
    let mut first = true;
    let mut turn = (0..to_parse.len()).cycle();
    let mut send = |m: Msg| to_parse[turn.next().expect("endless")].send(m).is_ok();
    // An applied batch emptied (its events dropped by its parse thread), else a new one; a text
    // grown past the budget by long lines is not kept.
    let fresh = || match recycled.try_recv() {
        Ok(mut b) if b.text.capacity() <= 2 * BATCH_BYTES => {
            b.text.clear();
            b.lines.clear();
            b.bytes = 0;
            b
        }
        _ => Batch {
            text: Vec::with_capacity(BATCH_LINES * 512),
            lines: Vec::with_capacity(BATCH_LINES),
            parsed: Vec::with_capacity(BATCH_LINES),
            bytes: 0,
        },
    };
    let mut batch = fresh();
    loop {
        // Straight into the batch's text (at most the event limit and one byte more of a line).
        let start = batch.text.len();
        let n = match read_line_bounded(&mut input, &mut batch.text, start + crate::event::MAX_EVENT_BYTES + 1) {
            Ok(n) => n,
            Err(e) => {
                batch.text.truncate(start);
                // The lines read before the error are applied, then the error ends the replay.
                if send(Msg::Batch(batch)) {
                    send(Msg::Failed(e));
                }
                return;
            }
        };
        if n == 0 {
            break;
        }
        batch.bytes += n as u64;
        // A UTF-8 byte-order mark is stripped from the first line of a file only; elsewhere it is
        // the documented `malformed_json`.
        if std::mem::take(&mut first) && batch.text.starts_with(UTF8_BOM) {
            batch.text.drain(..UTF8_BOM.len());
        }
        let range = trim(&batch.text, start);
        if range.is_empty() {
            batch.text.truncate(start);
            continue;
        }
        batch.text.truncate(range.end);
        batch.lines.push(range);
        let full = batch.lines.len() >= BATCH_LINES || batch.text.len() >= BATCH_BYTES;
        if full && !send(Msg::Batch(std::mem::replace(&mut batch, fresh()))) {
            return;
        }
    }
    if send(Msg::Batch(batch)) {
        send(Msg::End);
    }
}

/// A parse stage: each batch's lines parsed and passed on; batches the engine has applied are
/// emptied here (their events dropped by the thread that made them) and go back to the reader.
fn parse_batches(
    rx: &std::sync::mpsc::Receiver<Msg>,
    out: &std::sync::mpsc::SyncSender<Msg>,
    used: &std::sync::mpsc::Receiver<Batch>,
    recycle: &std::sync::mpsc::Sender<Batch>,
) {
    // Valid events of applied batches, rewritten by the next parses (saving their strings'
    // allocations and frees, a third of this stage's time before).
    let mut spares: Vec<Box<Event>> = Vec::with_capacity(2 * BATCH_LINES);
    for msg in rx {
        while let Ok(mut b) = used.try_recv() {
            for (parsed, _) in b.parsed.drain(..) {
                if let Ok(ev) = parsed
                    && spares.len() < 2 * BATCH_LINES
                {
                    spares.push(ev);
                }
            }
            let _ = recycle.send(b);
        }
        let msg = match msg {
            Msg::Batch(mut b) => {
                for range in &b.lines {
                    let line = &b.text[range.clone()];
                    #[cfg(test)]
                    assert!(line != tests::PANIC_IN_PARSE, "the test's parse-thread panic");
                    let parsed = parse_line_into(line, &mut spares);
                    let key = parsed.as_deref().map_or(0, event_key);
                    b.parsed.push((parsed, key));
                }
                Msg::Batch(b)
            }
            other => other,
        };
        if out.send(msg).is_err() {
            return;
        }
    }
}

/// The engine stage: every batch's lines applied in order (batch `k` from parse thread
/// `k mod threads`), transitions and dead letters drained after each line (as they always were).
fn apply_batches(
    engine: &mut Engine,
    parsed: Vec<std::sync::mpsc::Receiver<Msg>>,
    used: &[std::sync::mpsc::Sender<Batch>],
    stats: &mut ReplayStats,
    on_transition: &mut dyn FnMut(&Transition) -> io::Result<()>,
    dead: &mut DeadLetterSink,
    progress: &Progress,
) -> io::Result<()> {
    for k in (0..parsed.len()).cycle() {
        let batch = match parsed[k].recv() {
            Ok(Msg::Batch(b)) => b,
            Ok(Msg::Failed(e)) => return Err(e),
            Ok(Msg::End) => return Ok(()),
            // Only a panic ends a stage without a word: never a silently shortened replay.
            Err(_) => return Err(io::Error::other("a replay reader or parse thread stopped unexpectedly (panicked)")),
        };
        stats.bytes += batch.bytes;
        for (range, (parsed, key)) in batch.lines.iter().zip(&batch.parsed) {
            stats.lines += 1;
            // Replay runs on event time: the receive time is not used.
            match engine.ingest_keyed(parsed.as_deref(), Some(*key), &batch.text[range.clone()], 0) {
                Ingested::Applied(_) => stats.applied += 1,
                Ingested::Held => stats.held += 1,
                Ingested::Duplicate => stats.duplicates += 1,
                Ingested::Invalid(_) => stats.invalid += 1,
            }
            drain(engine, on_transition, dead)?;
            progress.update(stats);
        }
        // The parse thread may have finished: then the batch is dropped here.
        let _ = used[k].send(batch);
    }
    unreachable!("an endless cycle of at least one parse thread")
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
        let (take, done) = match memchr::memchr(b'\n', chunk) {
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

/// The range of `text[from..]` without its line ending and surrounding blanks.
fn trim(text: &[u8], from: usize) -> std::ops::Range<usize> {
    let mut end = text.len();
    while end > from && matches!(text[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    let mut start = from;
    while start < end && matches!(text[start], b' ' | b'\t') {
        start += 1;
    }
    start..end
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

    /// Input that serves its bytes, then does what `end` does (fail, or wait) before its end.
    struct Input<F>(io::Cursor<Vec<u8>>, F);

    impl<F: FnMut() -> io::Result<()>> io::Read for Input<F> {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            unreachable!("read through BufRead")
        }
    }

    impl<F: FnMut() -> io::Result<()>> BufRead for Input<F> {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            if self.0.position() as usize == self.0.get_ref().len() {
                (self.1)()?;
                return Ok(&[]);
            }
            self.0.fill_buf()
        }
        fn consume(&mut self, n: usize) {
            self.0.consume(n)
        }
    }

    fn engine() -> Engine {
        let config = std::sync::Arc::new(crate::config::Config::demo());
        Engine::new(config, crate::config::ClockMode::Event)
    }

    /// A line that makes a parse thread panic (tests only).
    pub(super) const PANIC_IN_PARSE: &[u8] = b"\0panic in parse";

    fn run(lines: &[String], parse_threads: usize) -> (Engine, Vec<crate::rules::Transition>, io::Result<ReplayStats>) {
        let mut e = engine();
        let mut got = Vec::new();
        let input = lines.join("\n").into_bytes();
        let r = replay_with(
            &mut e,
            io::Cursor::new(input),
            &mut |t| {
                got.push(t.clone());
                Ok(())
            },
            &mut DeadLetterSink::Discard,
            &Progress::new(None, true),
            parse_threads,
        );
        (e, got, r)
    }

    /// Several batches (and a malformed line, a blank one and a duplicate among them), with one,
    /// two and three parse threads: the stages give exactly what ingesting each line in turn gives.
    #[test]
    fn the_reader_stage_changes_nothing() {
        use crate::ingest::simulator::{Scenario, generate_lines};
        let mut lines = generate_lines(Scenario::ThresholdLowered, 3 * BATCH_LINES + 17, 3);
        lines.insert(100, "{not json".into());
        lines.insert(2000, String::new());
        lines.insert(2500, lines[1500].clone());
        let mut direct = engine();
        let mut want = Vec::new();
        for l in lines.iter().filter(|l| !l.is_empty()) {
            direct.ingest(l.as_bytes(), 0);
            want.extend(direct.drain_transitions());
        }
        direct.finish();
        want.extend(direct.drain_transitions());
        let input_len = lines.join("\n").len();
        let json = |e: &Engine| serde_json::to_string(&e.summary()).unwrap();
        assert!(!want.is_empty());
        for threads in 1..=3 {
            let (staged, got, stats) = run(&lines, threads);
            let stats = stats.unwrap();
            assert_eq!(stats.lines as usize, lines.len() - 1, "the blank line is not an event");
            assert_eq!((stats.invalid, stats.duplicates), (1, 1));
            assert_eq!(stats.bytes as usize, input_len);
            assert_eq!(got, want, "{threads} parse threads");
            assert!(json(&staged) == json(&direct), "the summaries differ with {threads} parse threads");
        }
    }

    /// A parse thread that dies fails the replay, never ends it early as if the input had.
    #[test]
    fn a_parse_thread_panic_fails_the_replay() {
        use crate::ingest::simulator::{Scenario, generate_lines};
        let mut lines = generate_lines(Scenario::Steady, 5 * BATCH_LINES, 1);
        lines.insert(2 * BATCH_LINES + 5, String::from_utf8(PANIC_IN_PARSE.to_vec()).unwrap());
        for threads in 1..=3 {
            let (e, _, r) = run(&lines, threads);
            let err = r.unwrap_err();
            assert!(err.to_string().contains("stopped unexpectedly"), "{err}");
            // At most the batches before the one that failed were applied.
            assert!(e.stats.applied_by_type.iter().sum::<u64>() <= 2 * BATCH_LINES as u64);
        }
    }

    /// A read error mid-stream: the lines before it are applied, then the replay fails with it.
    #[test]
    fn a_read_error_applies_what_came_before_and_fails() {
        let lines = crate::ingest::simulator::generate_lines(crate::ingest::simulator::Scenario::Steady, 10, 1);
        let input = lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
        for threads in 1..=3 {
            let mut e = engine();
            let err = replay_with(
                &mut e,
                Input(io::Cursor::new(input.clone()), || Err(io::Error::other("disk gone"))),
                &mut |_| Ok(()),
                &mut DeadLetterSink::Discard,
                &Progress::new(None, true),
                threads,
            )
            .unwrap_err();
            assert_eq!(err.to_string(), "disk gone");
            assert_eq!(e.stats.applied_by_type.iter().sum::<u64>(), 10, "every line before the error applied");
        }
    }

    /// Long lines make smaller batches: the reader's text stays within its byte budget.
    #[test]
    fn batches_are_bounded_in_bytes_as_well_as_lines() {
        let line = format!("{}\n", "x".repeat(100_000));
        let input = line.repeat(100);
        let (tx, rx) = std::sync::mpsc::sync_channel(1000);
        let (_back, used) = std::sync::mpsc::channel();
        read_lines(io::Cursor::new(input.into_bytes()), &[tx], &used);
        let batches: Vec<Batch> = rx
            .into_iter()
            .filter_map(|m| match m {
                Msg::Batch(b) => Some(b),
                _ => None,
            })
            .collect();
        assert!(batches.len() >= 4, "{} batches", batches.len());
        assert_eq!(batches.iter().map(|b| b.lines.len()).sum::<usize>(), 100);
        for b in &batches {
            assert!(b.text.len() < BATCH_BYTES + 100_000, "{} bytes in a batch", b.text.len());
        }
    }

    /// An error on the engine's side (here: writing a transition) ends the replay at once, even
    /// while the input has nothing more to give (a pipe from a live producer).
    #[test]
    fn an_output_error_returns_without_waiting_for_input() {
        use crate::ingest::simulator::{Scenario, generate_lines};
        let lines = generate_lines(Scenario::ThresholdLowered, 20_000, 1);
        let input = lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
        let (_never, wait) = std::sync::mpsc::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut e = engine();
            let r = replay(
                &mut e,
                // After the lines, no end of input: it waits as a quiet pipe does.
                Input(io::Cursor::new(input), move || {
                    let _ = wait.recv();
                    Ok(())
                }),
                &mut |_| Err(io::Error::new(io::ErrorKind::BrokenPipe, "stdout closed")),
                &mut DeadLetterSink::Discard,
                &Progress::new(None, true),
            );
            let _ = done_tx.send(r.map_err(|e| e.kind()));
        });
        let got = done.recv_timeout(std::time::Duration::from_secs(60)).expect("replay returned");
        assert_eq!(got, Err(io::ErrorKind::BrokenPipe));
    }

    /// Parsing into events done with gives exactly what a fresh parse gives, whatever those
    /// events were (every scenario's types, ids of other lengths, scores and qualities of other
    /// sizes, exposure tables, and invalid lines in between).
    #[test]
    fn parsing_into_spare_events_equals_a_fresh_parse() {
        use crate::ingest::simulator::{Scenario, generate_lines};
        let mut spares = Vec::new();
        let mut reused = 0;
        for scenario in Scenario::ALL {
            let mut lines = generate_lines(scenario, 3000, 7);
            lines.insert(50, "{not json".into());
            lines.insert(70, lines[60].replace("\"count\":", "\"count\":-"));
            for (i, line) in lines.iter().enumerate() {
                let before = spares.len();
                let got = crate::event::parse_line_into(line.as_bytes(), &mut spares);
                reused += usize::from(spares.len() < before);
                assert_eq!(got.as_deref(), crate::event::parse_line(line.as_bytes()).as_ref(), "{}", line);
                // Hand back events in a scrambled order, some at once and some later.
                if let Ok(ev) = got
                    && i % 3 != 0
                {
                    spares.insert((i * 7) % (spares.len() + 1), ev);
                }
            }
        }
        assert!(reused > 10_000, "{reused} parses reused a spare event");
    }
}
