//! The `ddtwatch` commands (INTERFACES.md, Command line).

use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::config::{ClockMode, Config};
use crate::engine::Engine;
use crate::http::AppState;
use crate::ingest::replay::{Progress, replay};
use crate::ingest::simulator::{self, Scenario};
use crate::ingest::{DeadLetterSink, Ingest, Pipeline};
use crate::telemetry::{ProcessState, init_logging, registry};

#[derive(Parser)]
#[command(name = "ddtwatch", version, about = "Live monitoring of police data-driven technologies (LFR, ANPR)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Built-in simulator + embedded config: serves HTTP and prints breaches as they fire.
    Demo {
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: SocketAddr,
        /// Simulated events applied per second of real time.
        #[arg(long, default_value_t = 5000)]
        speed: u64,
        /// Events per simulated deployment.
        #[arg(long, default_value_t = 30_000)]
        events: usize,
    },
    /// The service: sources, conditions and receivers from the config.
    Run {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Applies a recorded NDJSON stream on event time; prints one JSON line per breach transition.
    Replay {
        /// Configuration (default: the embedded demo config with the default profiles).
        #[arg(long)]
        config: Option<PathBuf>,
        /// NDJSON input file, or - for stdin.
        #[arg(long, default_value = "-")]
        input: String,
        /// Write the final summaries (JSON) here.
        #[arg(long)]
        summary: Option<PathBuf>,
        /// Write dead letters (JSON lines with reason and payload) here instead of stderr.
        #[arg(long)]
        dead_letter: Option<PathBuf>,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
        /// Threads that evaluate deployments (default: `engine.workers`, else the available
        /// cores). The output is the same for any number.
        #[arg(long)]
        workers: Option<usize>,
        /// Evaluate every condition in full every second, even where the deployment had no input
        /// since and only the clock-driven part of the result can move (slower; the output is the
        /// same byte for byte, which this flag lets an evaluator check).
        #[arg(long)]
        full_evaluation: bool,
    },
    /// Writes a deterministic NDJSON stream of a scenario to stdout.
    Simulate {
        #[arg(long, required_unless_present = "list")]
        scenario: Option<String>,
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// List the scenarios, what they simulate and which conditions they trip.
        #[arg(long)]
        list: bool,
    },
    /// Validates a config and prints the effective conditions per system and deployment. Also
    /// reads every secret it names and builds every Kafka client (consumer, dead-letter and
    /// state producers) offline, without contacting a broker.
    CheckConfig {
        file: PathBuf,
        /// Do not read secret files / env variables (e.g. in CI where they are not mounted);
        /// placeholders stand in for their values.
        #[arg(long)]
        skip_secrets: bool,
    },
    /// The publishable record of one deployment (Markdown, JSON or CSV), from a running instance
    /// (`--url`) or a `replay --summary` file.
    Report {
        #[arg(long)]
        deployment: String,
        #[arg(long, value_enum, default_value = "md")]
        format: crate::report::Format,
        /// A running ddtwatch (e.g. http://127.0.0.1:9464): asks its report endpoint.
        #[arg(long, conflicts_with = "summary", required_unless_present = "summary")]
        url: Option<String>,
        /// File holding the instance's bearer token (API reads need it unless the instance has
        /// `http.anonymous_reads`); the environment variable DDTWATCH_TOKEN works too.
        #[arg(long, requires = "url")]
        token_file: Option<PathBuf>,
        /// A `replay --summary` file (or one deployment summary from the API).
        #[arg(long)]
        summary: Option<PathBuf>,
        /// Audit log files (oldest first) to name the notifications sent for each breach.
        #[arg(long, requires = "summary")]
        audit: Vec<PathBuf>,
        /// Write here instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// The audit log: `audit verify FILE...` checks its hash chain (rotated files first, in order).
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Verifies the hash chain; exit 0 when intact, 1 naming the first broken record.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Accept a chain that does not start at seq 1 (a tail; older files archived elsewhere).
        #[arg(long)]
        partial: bool,
        /// Do not require the `.head` file beside the last file (an archive without one).
        #[arg(long)]
        no_head: bool,
        /// The key of a keyed chain (the file `audit.key` names): every record's HMAC is checked.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// The files are dumps of the audit topic (`audit.topic`: one message value per line, in
        /// any order): every chain in them is checked in seq order.
        #[arg(long)]
        topic_dump: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { listen, speed, events } => demo(listen, speed, events),
        Command::Run { config, listen } => run(config, listen),
        Command::Replay { config, input, summary, dead_letter, quiet, workers, full_evaluation } => {
            replay_cmd(config, &input, summary, dead_letter, quiet, workers, full_evaluation)
        }
        Command::Simulate { scenario, events, seed, list } => simulate(scenario.as_deref(), events, seed, list),
        Command::CheckConfig { file, skip_secrets } => return check_config(&file, skip_secrets),
        Command::Audit { action: AuditAction::Verify { files, partial, no_head, key_file, topic_dump } } => {
            let key = key_file.map(|f| {
                crate::config::AuditConfig {
                    key: Some(crate::config::SecretRef { file: Some(f), env: None }),
                    topic: None,
                }
                .read_key()
            });
            match key.transpose() {
                Ok(key) if topic_dump => {
                    audit_verify_dump(&files, crate::audit::VerifyOptions { partial, no_head, key: key.flatten() })
                }
                Ok(key) => audit_verify(&files, crate::audit::VerifyOptions { partial, no_head, key: key.flatten() }),
                Err(e) => Err(e),
            }
        }
        Command::Report { deployment, format, url, token_file, summary, audit, output } => {
            let token = match token_file {
                Some(f) => std::fs::read_to_string(&f)
                    .map(|t| Some(t.trim().to_string()))
                    .map_err(|e| anyhow::anyhow!("reading the token file {}: {e}", f.display())),
                None => Ok(std::env::var("DDTWATCH_TOKEN").ok()),
            };
            token.and_then(|token| {
                report_cmd(
                    &deployment,
                    format,
                    url.as_deref(),
                    token.as_deref(),
                    summary.as_deref(),
                    &audit,
                    output.as_deref(),
                )
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration {}:\n{e}", path.display()))
}

fn check_config(file: &std::path::Path, skip_secrets: bool) -> ExitCode {
    // Written ignoring errors: `check-config FILE | head` closes the pipe early (not a failure).
    let stdout = io::stdout();
    let mut stdout = stdout.lock();
    macro_rules! out {
        ($($t:tt)*) => {{ let _ = writeln!(stdout, $($t)*); }};
    }
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            for err in &e.0 {
                out!("{err}");
            }
            return ExitCode::from(2);
        }
    };
    let problems = crate::service::runtime_problems(&config, skip_secrets, true);
    if !problems.is_empty() {
        for (path, problem) in &problems {
            out!("{path}: {problem}");
        }
        return ExitCode::from(2);
    }
    out!("{}: OK (config hash {})", file.display(), &config.hash[..12]);
    for w in config.unmonitored() {
        out!("warning: {w}");
    }
    for (system, name) in [("lfr", config.raw.defaults.lfr.as_deref()), ("anpr", config.raw.defaults.anpr.as_deref())] {
        let name = name.unwrap_or(system);
        let sys = if system == "lfr" { crate::event::System::Lfr } else { crate::event::System::Anpr };
        out!("\n{system} (profile {name}):");
        for c in config.conditions_for("", Some(sys)).iter() {
            out!("  {}", describe_condition(c));
        }
    }
    for id in config.deployment_conditions.keys() {
        out!("\ndeployment {id}:");
        for c in config.deployment_conditions[id].iter() {
            out!("  {}", describe_condition(c));
        }
    }
    ExitCode::SUCCESS
}

fn describe_condition(c: &crate::rules::Condition) -> String {
    let params = serde_json::to_value(&c.kind).unwrap_or_default();
    format!(
        "{:<28} {:<9} {:<8} for {:<5} notify {:?} {}",
        c.id,
        c.kind.name(),
        c.severity.as_str(),
        c.for_,
        c.notify,
        params
    )
}

fn simulate(scenario: Option<&str>, events: usize, seed: u64, list: bool) -> anyhow::Result<ExitCode> {
    if list {
        for s in Scenario::ALL {
            println!("{:<20} {}\n{:<20} trips: {:?}", s.name(), s.doc(), "", s.expected_breaches());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = scenario.unwrap_or_default();
    let Some(s) = Scenario::parse(name) else {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        bail!("unknown scenario `{name}`{} (one of {})", crate::config::suggest(name, &names), names.join(", "));
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut err: Option<io::Error> = None;
    simulator::generate(s, events, seed, |line| {
        if err.is_none()
            && let Err(e) = out.write_all(line.as_bytes()).and_then(|_| out.write_all(b"\n"))
        {
            err = Some(e);
        }
    });
    match err.map_or_else(|| out.flush(), Err) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        r => r.map(|_| ExitCode::SUCCESS).context("writing stdout"),
    }
}

fn replay_cmd(
    config: Option<PathBuf>,
    input: &str,
    summary: Option<PathBuf>,
    dead_letter: Option<PathBuf>,
    quiet: bool,
    workers: Option<usize>,
    full_evaluation: bool,
) -> anyhow::Result<ExitCode> {
    let config = match &config {
        Some(p) => load_config(p)?,
        None => Config::demo(),
    };
    for w in config.unmonitored() {
        eprintln!("warning: {w}");
    }
    let mut engine = Engine::new(Arc::new(config), ClockMode::Event);
    if let Some(n) = workers {
        engine.set_workers(n);
    }
    engine.set_full_evaluation(full_evaluation);
    let mut dead = match &dead_letter {
        Some(p) => DeadLetterSink::file(p).with_context(|| format!("opening {}", p.display()))?,
        None => DeadLetterSink::Stderr,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut on_transition = |t: &crate::rules::Transition| -> io::Result<()> {
        serde_json::to_writer(&mut out, t)?;
        out.write_all(b"\n")
    };
    let stats = if input == "-" {
        let progress = Progress::new(None, quiet);
        replay(
            &mut engine,
            io::BufReader::with_capacity(1 << 20, io::stdin()),
            &mut on_transition,
            &mut dead,
            &progress,
        )
    } else {
        let f = std::fs::File::open(input).with_context(|| format!("opening {input}"))?;
        let size = f.metadata().ok().map(|m| m.len());
        let progress = Progress::new(size, quiet);
        replay(&mut engine, io::BufReader::with_capacity(1 << 20, f), &mut on_transition, &mut dead, &progress)
    };
    stats.context("reading input")?;
    out.flush()?;
    if let Some(path) = summary {
        let mut json = serde_json::to_vec_pretty(&engine.summary())?;
        json.push(b'\n');
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `ddtwatch run`: builds the service (everything that can fail for good fails here, exit 1),
/// then serves until SIGINT/SIGTERM.
fn run(config_path: PathBuf, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    init_logging(true);
    let config = load_config(&config_path)?;
    let service = crate::service::Service::build(config_path, config, listen)?;
    let addr = service.listen();
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        service.run(listener, crate::service::signals()).await
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")
}

fn demo(listen: SocketAddr, speed: u64, events: usize) -> anyhow::Result<ExitCode> {
    init_logging(false);
    let config = Arc::new(Config::demo());
    let engine = Engine::new(config, ClockMode::Event);
    let pipeline = Pipeline::new(engine, DeadLetterSink::Stderr);
    let process = Arc::new(ProcessState::default());
    let registry = Arc::new(registry(pipeline.engine.clone(), process.clone()));
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let state = AppState {
            pipeline: pipeline.clone(),
            registry,
            process: process.clone(),
            token: None,
            // The demo's API is open (README: the demo is for a look around, on 127.0.0.1).
            anonymous_reads: true,
            max_body_bytes: 16 << 20,
        };
        process.ready.store(true, Ordering::Relaxed);
        println!("ddtwatch demo: serving http://{addr}/metrics and http://{addr}/api/v1/deployments");
        println!(
            "simulating: an LFR deployment whose threshold is lowered, one with a silent camera, an ANPR deployment"
        );
        println!("breaches print below as they fire and resolve; Ctrl-C stops.\n");
        crate::service::spawn_log_receiver(&pipeline, true);
        // One shutdown signal, as in `run`: Ctrl-C (or SIGTERM) stops the server, the feeder and
        // the summary lines at their next await point.
        let shutdown = crate::health::Shutdown::default();
        let feeder = tokio::spawn(shutdown.clone().run_until(feed_demo(pipeline.clone(), speed.max(1), events)));
        let summary = tokio::spawn(shutdown.clone().run_until(summary_lines(pipeline.clone())));
        let listener = crate::http::limits::LimitedListener::from_config(listener, &Default::default());
        let stop = shutdown.clone();
        let served = crate::service::serve(
            listener,
            state,
            crate::service::signals(),
            move || stop.trigger(),
            tokio::sync::mpsc::unbounded_channel().1,
        )
        .await;
        shutdown.trigger();
        let _ = tokio::join!(feeder, summary);
        served?;
        println!("\nddtwatch demo: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The demo's streams, merged in event-time order.
fn demo_lines(events: usize) -> Vec<String> {
    let mut all: Vec<(i64, String)> = Vec::new();
    for s in [Scenario::ThresholdLowered, Scenario::CameraSilence, Scenario::AnprSteady] {
        for line in simulator::generate_lines(s, events, 7) {
            let ts = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["ts"].as_str().and_then(crate::event::parse_ts))
                .unwrap_or(0);
            all.push((ts, line));
        }
    }
    all.sort_by_key(|(ts, _)| *ts);
    all.into_iter().map(|(_, l)| l).collect()
}

async fn feed_demo(pipeline: Pipeline, speed: u64, events: usize) {
    let lines = tokio::task::spawn_blocking(move || demo_lines(events)).await.unwrap_or_default();
    let batch = (speed / 20).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for chunk in lines.chunks(batch) {
        tick.tick().await;
        pipeline.ingest(chunk.iter().map(|l| Ingest::Raw(l.as_bytes())), pipeline.now());
    }
    pipeline.finish();
    println!("\ndemo stream finished ({} events); still serving — Ctrl-C to stop", lines.len());
}

async fn summary_lines(pipeline: Pipeline) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (now, deployments, applied, invalid, firing) = {
            let e = pipeline.engine.lock().unwrap_or_else(|p| p.into_inner());
            (
                e.now(),
                e.deployments().count(),
                e.stats.applied_by_type.iter().sum::<u64>(),
                e.stats.invalid_total,
                e.firing(),
            )
        };
        println!(
            "-- engine clock {} | {deployments} deployments | {applied} events applied | {invalid} invalid | {firing} conditions firing",
            now.map(crate::event::format_ts).unwrap_or_else(|| "-".into())
        );
    }
}

fn report_cmd(
    deployment: &str,
    format: crate::report::Format,
    url: Option<&str>,
    token: Option<&str>,
    summary: Option<&Path>,
    audit: &[PathBuf],
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let text = match (url, summary) {
        (Some(url), _) => runtime()?.block_on(crate::report::source::fetch(url, deployment, format, token))?,
        (None, Some(path)) => crate::report::source::from_files(path, deployment, audit, format)?,
        (None, None) => bail!("give --url or --summary"),
    };
    match output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => io::stdout().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit verify --topic-dump`: every chain in the dump, one line each; exit 1 if any is broken.
fn audit_verify_dump(files: &[PathBuf], opts: crate::audit::VerifyOptions) -> anyhow::Result<ExitCode> {
    let v = match crate::audit::topic::verify_dump(files, &opts).context("reading the topic dump")? {
        Ok(v) => v,
        Err(problem) => {
            println!("BROKEN: {problem}");
            return Ok(ExitCode::from(1));
        }
    };
    if v.chains.is_empty() {
        println!("BROKEN: no audit records in the dump");
        return Ok(ExitCode::from(1));
    }
    let mut ok = true;
    for (chain, result) in &v.chains {
        match result {
            crate::audit::Verification::Ok { records, first_seq, last_seq } => {
                println!("OK: chain {chain}: {records} records, seq {first_seq}..{last_seq}, hash chain intact")
            }
            crate::audit::Verification::Broken { file, line, seq, problem } => {
                ok = false;
                let seq = seq.map(|s| format!(" (seq {s})")).unwrap_or_default();
                println!("BROKEN: chain {chain}: {}: record at line {line}{seq}: {problem}", file.display());
            }
        }
    }
    if v.duplicates > 0 {
        println!("({} messages appeared twice, a producer retry: counted once)", v.duplicates);
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn audit_verify(files: &[PathBuf], opts: crate::audit::VerifyOptions) -> anyhow::Result<ExitCode> {
    match crate::audit::verify_with(files, opts).context("reading the audit log")? {
        crate::audit::Verification::Ok { records, first_seq, last_seq } => {
            println!("OK: {records} records, seq {first_seq}..{last_seq}, hash chain intact");
            Ok(ExitCode::SUCCESS)
        }
        crate::audit::Verification::Broken { file, line, seq, problem } => {
            let seq = seq.map(|s| format!(" (seq {s})")).unwrap_or_default();
            println!("BROKEN: {}: record at line {line}{seq}: {problem}", file.display());
            Ok(ExitCode::from(1))
        }
    }
}
