//! The `ddtwatch` commands (INTERFACES.md, Command line).

use std::io::{self, BufRead, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::config::{ClockMode, Config, SourceConfig};
use crate::engine::Engine;
use crate::http::{AppState, router, wall_clock_ms};
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
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { listen, speed, events } => demo(listen, speed, events),
        Command::Run { config, listen } => run(config, listen),
        Command::Replay { config, input, summary, dead_letter, quiet } => {
            replay_cmd(config, &input, summary, dead_letter, quiet)
        }
        Command::Simulate { scenario, events, seed, list } => simulate(scenario.as_deref(), events, seed, list),
        Command::CheckConfig { file, skip_secrets } => return check_config(&file, skip_secrets),
        Command::Audit { action: AuditAction::Verify { files, partial, no_head, key_file } } => {
            let key = key_file.map(|f| {
                crate::config::AuditConfig { key: Some(crate::config::SecretRef { file: Some(f), env: None }) }
                    .read_key()
            });
            match key.transpose() {
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
    let problems = runtime_problems(&config, skip_secrets, true);
    if !problems.is_empty() {
        for (path, problem) in &problems {
            out!("{path}: {problem}");
        }
        return ExitCode::from(2);
    }
    out!("{}: OK (config hash {})", file.display(), &config.hash[..12]);
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

/// What `run` would fail on at start that the YAML alone does not show: secrets that cannot be
/// read, Kafka clients librdkafka refuses to build (with `kafka`), receivers that need a
/// `state_dir`. As `(key path, problem)`.
fn runtime_problems(config: &Config, skip_secrets: bool, kafka: bool) -> Vec<(String, String)> {
    use crate::ingest::kafka::{Secrets, check_offline};
    let mut out = Vec::new();
    let raw = &config.raw;
    if !skip_secrets {
        // The same reads `run` makes.
        if let Err(e) = http_token(config) {
            out.push(("http.token_file".into(), format!("{e:#}")));
        }
        for (name, r) in &raw.receivers {
            if (r.secret_file.is_some() || r.secret_env.is_some())
                && let Err(e) = r.secret().read(&format!("receivers.{name}"))
            {
                out.push((format!("receivers.{name}.secret_file"), format!("{e:#}")));
            }
        }
        if let Err(e) = raw.audit.read_key() {
            out.push(("audit.key".into(), format!("{e:#}")));
        }
    }
    if raw.audit.key.is_some() && raw.state_dir.is_none() {
        out.push(("audit.key".into(), "the audit log is kept in `state_dir`; set it, or remove audit.key".into()));
    }
    // Webhook and Alertmanager deliveries go through the durable outbox in state_dir: without it
    // they would never be sent (nothing would say so).
    if raw.state_dir.is_none() {
        for (name, r) in &raw.receivers {
            if matches!(r.kind, crate::config::ReceiverKind::Webhook | crate::config::ReceiverKind::Alertmanager) {
                out.push((
                    format!("receivers.{name}"),
                    "webhook and alertmanager receivers need `state_dir` (their notifications are journaled there \
                     before delivery); set it, or use kind log"
                        .into(),
                ));
            }
        }
    }
    let secrets = if skip_secrets { Secrets::Placeholder } else { Secrets::Read };
    let dlq_kafka = matches!(raw.dead_letter, Some(crate::config::DeadLetterConfig::Kafka { .. }));
    let mut first_kafka = true;
    for (i, s) in raw.sources.iter().enumerate().filter(|_| kafka) {
        if matches!(s, SourceConfig::Kafka { .. }) {
            // The Kafka DLQ producer uses the first Kafka source's settings.
            for p in check_offline(s, dlq_kafka && first_kafka, secrets) {
                out.push((format!("sources[{i}]"), p));
            }
            first_kafka = false;
        }
    }
    out
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
) -> anyhow::Result<ExitCode> {
    let config = match &config {
        Some(p) => load_config(p)?,
        None => Config::demo(),
    };
    let mut engine = Engine::new(Arc::new(config), ClockMode::Event);
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
        replay(&mut engine, io::stdin().lock(), &mut on_transition, &mut dead, &progress)
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

/// Reads the HTTP bearer token from the configured file or environment variable.
fn http_token(config: &Config) -> anyhow::Result<Option<Arc<str>>> {
    let http = &config.raw.http;
    if http.token_file.is_none() && http.token_env.is_none() {
        return Ok(None);
    }
    let secret = crate::config::SecretRef { file: http.token_file.clone(), env: http.token_env.clone() };
    Ok(Some(Arc::from(secret.read("http.token")?.trim())))
}

/// Serves HTTP until SIGINT or SIGTERM, or until a source reports a failure it cannot recover
/// from (returned as `Some(cause)`), then tells the sources to stop.
async fn serve(
    listener: crate::http::limits::LimitedListener,
    state: AppState,
    on_stop: impl FnOnce() + Send + 'static,
    mut fatal: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> anyhow::Result<Option<String>> {
    let cause = Arc::new(std::sync::Mutex::new(None));
    let cause2 = cause.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                Some(c) = fatal.recv() => {
                    tracing::error!(cause = %c, "a source failed for good; stopping");
                    *cause2.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
                }
            }
            tracing::info!("shutting down");
            // At once, not after the HTTP connections have drained: the sources checkpoint and
            // commit within the grace period.
            on_stop();
        })
        .await
        .context("HTTP server")?;
    let c = cause.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok(c)
}

/// Prints every transition (the `log` receiver).
fn spawn_log_receiver(pipeline: &Pipeline, to_stdout: bool) {
    let mut rx = pipeline.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(t) => {
                    if to_stdout {
                        println!("{}", crate::notify::describe(&t));
                    } else {
                        tracing::warn!(
                            deployment = %t.deployment_id,
                            condition = %t.condition,
                            state = t.state.as_str(),
                            severity = t.severity.as_str(),
                            value = t.value,
                            "breach transition"
                        );
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(missed = n, "log receiver fell behind");
                }
                Err(_) => break,
            }
        }
    });
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
            clock: wall_clock_ms,
        };
        process.ready.store(true, Ordering::Relaxed);
        println!("ddtwatch demo: serving http://{addr}/metrics and http://{addr}/api/v1/deployments");
        println!(
            "simulating: an LFR deployment whose threshold is lowered, one with a silent camera, an ANPR deployment"
        );
        println!("breaches print below as they fire and resolve; Ctrl-C stops.\n");
        spawn_log_receiver(&pipeline, true);
        let feeder = tokio::spawn(feed_demo(pipeline.clone(), speed.max(1), events));
        let listener = crate::http::limits::LimitedListener::from_config(listener, &Default::default());
        let server = tokio::spawn(serve(listener, state, || {}, tokio::sync::mpsc::unbounded_channel().1));
        let summary = tokio::spawn(summary_lines(pipeline.clone()));
        tokio::select! {
            r = server => { r??; }
            _ = tokio::signal::ctrl_c() => {}
        }
        feeder.abort();
        summary.abort();
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
        pipeline.ingest(chunk.iter().map(|l| Ingest::Raw(l.as_bytes())), wall_clock_ms());
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

fn run(config_path: PathBuf, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    init_logging(true);
    let config = load_config(&config_path)?;
    let listen = match listen {
        Some(l) => l,
        None => config.raw.http.listen.parse().context("http.listen")?,
    };
    // What check-config finds beyond the YAML (secrets are read below, where they are used).
    let problems = runtime_problems(&config, true, false);
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
        bail!("invalid configuration {}:\n{}", config_path.display(), lines.join("\n"));
    }
    let token = http_token(&config)?;
    let mode = config.raw.clock;
    let sources = config.raw.sources.clone();
    let kafka_stats = Arc::new(crate::ingest::kafka::KafkaStats::default());
    let dead = DeadLetterSink::from_config(config.raw.dead_letter.as_ref(), &sources, &kafka_stats)
        .context("opening the dead-letter sink (a kafka DLQ uses the first kafka source's settings)")?;
    let grace = Duration::from_millis(config.raw.engine.shutdown_grace.ms().max(0) as u64);
    let commit_interval = Duration::from_millis(config.raw.engine.commit_interval.ms().max(100) as u64);
    let max_body = config.raw.http.max_body_bytes;
    let anonymous_reads = config.raw.http.anonymous_reads;
    let http_limits = config.raw.http.clone();
    let config_hash = config.hash.clone();
    let config = Arc::new(config);
    let reload_every = config.raw.reload_interval;
    // A reload must pass what start-up checks beyond the YAML (not the Kafka clients: sources
    // take effect only on restart).
    let reloader = crate::config::reload::Reloader::new(config_path.clone(), config.clone())
        .with_check(Box::new(|c| runtime_problems(c, true, false)));
    let mut engine = Engine::new(config.clone(), mode);
    if let Some(dir) = &config.raw.state_dir {
        let d = dir.join("dedup");
        engine.spill_dedup_to(&d).with_context(|| format!("opening the dedup spill directory {}", d.display()))?;
    }
    let pipeline = Pipeline::new(engine, dead);
    let audit = match &config.raw.state_dir {
        Some(dir) => {
            let key = config.raw.audit.read_key()?;
            let log = crate::audit::AuditLog::open_keyed(&dir.join("audit.log"), 64 << 20, key)
                .with_context(|| format!("opening the audit log in {}", dir.display()))?;
            let log = Arc::new(std::sync::Mutex::new(log));
            crate::audit::record(&log, "config", serde_json::json!({"event": "loaded", "config_hash": config.hash}));
            Some(log)
        }
        None => None,
    };
    if let Some(dir) = &config.raw.state_dir {
        restore_snapshot(&pipeline, &dir.join("snapshot.json"))?;
    }
    let snapshot_every = Duration::from_millis(config.raw.engine.snapshot_interval.ms().max(100) as u64);
    let snapshot_path = config.raw.state_dir.as_ref().map(|d| d.join("snapshot.json"));
    let outbox = match &config.raw.state_dir {
        Some(dir) => {
            let o = crate::notify::outbox::Outbox::open(&dir.join("outbox.jsonl"), 16 << 20)
                .with_context(|| format!("opening the outbox in {}", dir.display()))?;
            if o.depth() > 0 {
                tracing::info!(pending = o.depth(), "outbox: notifications from before the restart will be delivered");
            }
            let seeded =
                pipeline.engine.lock().unwrap_or_else(|p| p.into_inner()).seed_open_breaches(o.open_breaches());
            if seeded > 0 {
                tracing::info!(breaches = seeded, "outbox: open breaches taken over under their notification ids");
            }
            let o = Arc::new(std::sync::Mutex::new(o));
            Some(o)
        }
        None => None,
    };
    let notifier = crate::notify::Notifier::new(outbox.clone(), audit.clone());
    pipeline.set_publisher(notifier.clone());
    let health = crate::health::Health::new();
    let process = Arc::new(ProcessState {
        kafka: Some(kafka_stats.clone()),
        audit: audit.clone(),
        outbox: outbox.clone(),
        health: health.clone(),
        ..ProcessState::default()
    });
    process.last_reload_ok_ms.store(wall_clock_ms(), Ordering::Relaxed);
    // Every source's clients are built here, before anything runs: a failure that can never
    // succeed (unknown property, unsupported value, missing credentials file, a certificate that
    // does not parse) stops the process now, with librdkafka's own message.
    let mut kafka_sources = Vec::new();
    let mut file_sources = Vec::new();
    if sources.iter().any(|s| matches!(s, SourceConfig::Kafka { .. })) {
        let (version, features) = crate::ingest::kafka::librdkafka_info();
        tracing::info!(librdkafka = %version, builtin_features = %features, "kafka client library");
    }
    for (i, s) in sources.into_iter().enumerate() {
        let name = source_name(&s, i);
        match s {
            SourceConfig::File { path } => file_sources.push((name, path)),
            SourceConfig::Kafka { .. } => {
                let opts = crate::ingest::kafka::ConsumeOptions { commit_interval, grace };
                let h = health.source(name.clone(), "kafka");
                let src = crate::ingest::kafka::KafkaSource::new(&s, pipeline.clone(), kafka_stats.clone(), h, opts)
                    .with_context(|| format!("kafka source {name}"))?;
                kafka_sources.push((name, src));
            }
            SourceConfig::Http {} => {
                health.source(name, "http").set_up(true);
            }
        }
    }
    // A Kafka source may block in a checkpoint (snapshots and dead letters acknowledged) or in
    // reading the state topic for a while: it counts as stalled only well past those bounds.
    let source_stall = (grace * 6).max(Duration::from_secs(60));
    let registry = Arc::new(registry(pipeline.engine.clone(), process.clone()));
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        tracing::info!(addr = %listener.local_addr()?, config_hash = %config_hash, "ddtwatch serving");
        spawn_log_receiver(&pipeline, false);
        // A source that ends with an error it cannot recover from stops the process.
        let (fatal_tx, fatal_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stop_sources = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut consumers = Vec::new();
        for (name, src) in kafka_sources {
            let task = health.task(format!("source {name}"), source_stall);
            let fatal = fatal_tx.clone();
            consumers.push(src.spawn(name, task, stop_sources.clone(), move |msg| {
                let _ = fatal.send(msg);
            })?);
        }
        for (name, path) in file_sources {
            let p = pipeline.clone();
            let h = health.source(name.clone(), "file");
            let task = health.task(format!("source {name}"), Duration::MAX);
            tokio::task::spawn_blocking(move || follow_file(p, path, &h, &task));
        }
        let ticker = {
            let p = pipeline.clone();
            let task = health.task("engine", Duration::from_secs(30));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    task.beat();
                    let p = p.clone();
                    // Evaluation journals its transitions (fsync): off the async workers.
                    if tokio::task::spawn_blocking(move || p.tick(wall_clock_ms())).await.is_err() {
                        task.fail("the evaluation panicked");
                        break;
                    }
                }
            })
        };
        let reload_task = health
            .task("config-reload", Duration::from_millis(every_ms(reload_every) * 10).max(Duration::from_secs(60)));
        let reloads =
            tokio::spawn(watch_config(reloader, reload_every, pipeline.clone(), process.clone(), reload_task));
        let dispatcher = outbox.clone().map(|o| {
            let d = crate::notify::dispatch::Dispatcher::new(o, audit.clone());
            let engine = pipeline.engine.clone();
            let receivers = move || engine.lock().map(|e| e.config().raw.receivers.clone()).unwrap_or_default();
            let task = health.task("dispatcher", Duration::from_secs(600));
            tokio::spawn(crate::notify::dispatch::run(d, receivers, notifier.wake.clone(), wall_clock_ms, task))
        });
        let snapshots = snapshot_path.clone().map(|path| {
            let p = pipeline.clone();
            let task = health.task("snapshotter", (snapshot_every * 3).max(Duration::from_secs(60)));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(snapshot_every);
                tick.tick().await;
                loop {
                    task.beat();
                    tick.tick().await;
                    let (p, path) = (p.clone(), path.clone());
                    match tokio::task::spawn_blocking(move || write_snapshot(&p, &path)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "writing the state snapshot failed"),
                        Err(_) => {
                            task.fail("writing the snapshot panicked");
                            break;
                        }
                    }
                }
            })
        });
        process.ready.store(true, Ordering::Relaxed);
        let pipeline_for_shutdown = pipeline.clone();
        let state = AppState {
            pipeline,
            registry,
            process,
            token,
            anonymous_reads,
            max_body_bytes: max_body,
            clock: wall_clock_ms,
        };
        let listener = crate::http::limits::LimitedListener::from_config(listener, &http_limits);
        let on_stop = {
            let (health, stop) = (health.clone(), stop_sources.clone());
            move || {
                health.stopping();
                // SIGTERM/SIGINT: the consumers stop fetching, finish the message in hand, commit.
                stop.store(true, Ordering::Relaxed);
            }
        };
        let fatal = serve(listener, state, on_stop, fatal_rx).await;
        for c in consumers {
            match tokio::time::timeout(grace, tokio::task::spawn_blocking(move || c.join())).await {
                Ok(Ok(Ok(_))) => {}
                Ok(_) => tracing::error!("kafka source panicked"),
                Err(_) => tracing::warn!("kafka source did not stop within the grace period"),
            }
        }
        ticker.abort();
        reloads.abort();
        if let Some(d) = dispatcher {
            d.abort();
        }
        if let Some(s) = snapshots {
            s.abort();
        }
        if let Some(path) = &snapshot_path {
            match write_snapshot(&pipeline_for_shutdown, path) {
                Ok(()) => tracing::info!(path = %path.display(), "state snapshot written at shutdown"),
                Err(e) => tracing::error!(error = %e, "writing the shutdown snapshot failed"),
            }
        }
        match fatal? {
            Some(cause) => {
                tracing::error!(cause = %cause, "ddtwatch stopped: a source failed for good");
                eprintln!("error: {cause}");
                Ok(ExitCode::from(1))
            }
            None => {
                tracing::info!("ddtwatch stopped");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// A source's label (`ddtwatch_source_up{source}`): its kind and position in `sources`.
fn source_name(s: &SourceConfig, i: usize) -> String {
    let kind = match s {
        SourceConfig::Kafka { .. } => "kafka",
        SourceConfig::File { .. } => "file",
        SourceConfig::Http {} => "http",
    };
    format!("{kind}-{i}")
}

fn every_ms(d: crate::config::Dur) -> u64 {
    d.ms().max(100) as u64
}

/// Writes the engine state atomically (temp file, fsync, rename).
fn write_snapshot(pipeline: &Pipeline, path: &Path) -> anyhow::Result<()> {
    let bytes = {
        let engine = pipeline.engine.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::to_vec(&engine.snapshot_all())?
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Restores `state_dir/snapshot.json` if it exists; a corrupt one is an error (not silently lost).
fn restore_snapshot(pipeline: &Pipeline, path: &Path) -> anyhow::Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a snapshot", path.display()))?;
    let mut engine = pipeline.engine.lock().unwrap_or_else(|p| p.into_inner());
    let n = engine.restore_all(&v).map_err(|e| anyhow::anyhow!("restoring {}: {e}", path.display()))?;
    tracing::info!(deployments = n, path = %path.display(), "state restored from snapshot");
    Ok(())
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
        (Some(url), _) => {
            let f = match format {
                crate::report::Format::Md => "md",
                crate::report::Format::Json => "json",
                crate::report::Format::Csv => "csv",
            };
            let endpoint = format!("{}/api/v1/deployments/{deployment}/report?format={f}", url.trim_end_matches('/'));
            runtime()?.block_on(async {
                let mut req = crate::notify::http_client().get(&endpoint);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let resp = req.send().await.with_context(|| format!("asking {endpoint}"))?;
                let status = resp.status();
                let body = resp.text().await?;
                if !status.is_success() {
                    bail!("{endpoint} answered {status}: {body}");
                }
                Ok::<_, anyhow::Error>(body)
            })?
        }
        (None, Some(path)) => {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
                    .with_context(|| format!("{} is not JSON", path.display()))?;
            // A replay summary holds `deployments`; an API summary is one deployment.
            let one = match v["deployments"].as_array() {
                Some(list) => list.iter().find(|d| d["deployment_id"] == deployment).cloned().with_context(|| {
                    let ids: Vec<&str> = list.iter().filter_map(|d| d["deployment_id"].as_str()).collect();
                    format!("no deployment `{deployment}` in {} (it has: {})", path.display(), ids.join(", "))
                })?,
                None if v["deployment_id"] == deployment => v,
                None => bail!("{} is not a summary of deployment `{deployment}`", path.display()),
            };
            let mut records = Vec::new();
            for f in audit {
                records.extend(crate::audit::read_records(f).with_context(|| format!("reading {}", f.display()))?);
            }
            format.render(&crate::report::build(&one, &records))
        }
        (None, None) => bail!("give --url or --summary"),
    };
    match output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => io::stdout().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn audit_verify(files: &[PathBuf], opts: crate::audit::VerifyOptions) -> anyhow::Result<ExitCode> {
    match crate::audit::verify_with(files, opts).context("reading the audit log")? {
        crate::audit::Verdict::Ok { records, first_seq, last_seq } => {
            println!("OK: {records} records, seq {first_seq}..{last_seq}, hash chain intact");
            Ok(ExitCode::SUCCESS)
        }
        crate::audit::Verdict::Broken { file, line, seq, problem } => {
            let seq = seq.map(|s| format!(" (seq {s})")).unwrap_or_default();
            println!("BROKEN: {}: record at line {line}{seq}: {problem}", file.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// Hot reload loop: checks the config every `every` and on SIGHUP; applies a valid change,
/// rejects (logs, counts) an invalid one and keeps the old config.
async fn watch_config(
    mut reloader: crate::config::reload::Reloader,
    every: crate::config::Dur,
    pipeline: Pipeline,
    process: Arc<ProcessState>,
    task: crate::health::TaskGuard,
) {
    use crate::config::reload::ReloadOutcome;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(Duration::from_millis(every.ms().max(100) as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        task.beat();
        match hup.as_mut() {
            Some(h) => tokio::select! {
                _ = tick.tick() => {}
                _ = h.recv() => tracing::info!("SIGHUP: checking the config"),
            },
            None => {
                tick.tick().await;
            }
        }
        let old = reloader.current().hash.clone();
        // Reading files and hashing: off the async workers.
        let (r, outcome) = match tokio::task::spawn_blocking(move || {
            let o = reloader.check();
            (reloader, o)
        })
        .await
        {
            Ok(x) => x,
            Err(_) => {
                task.fail("the config check panicked");
                return;
            }
        };
        reloader = r;
        match outcome {
            ReloadOutcome::Unchanged => {}
            ReloadOutcome::Changed { config, restart_needed } => {
                let new = config.hash.clone();
                pipeline.reload(config);
                if let Some(a) = &process.audit {
                    crate::audit::record(
                        a,
                        "config",
                        serde_json::json!({"event": "reloaded", "old_hash": old, "config_hash": new}),
                    );
                }
                process.reloads_ok.fetch_add(1, Ordering::Relaxed);
                process.last_reload_ok_ms.store(wall_clock_ms(), Ordering::Relaxed);
                tracing::info!(old_hash = %old, new_hash = %new, "config reloaded");
                if !restart_needed.is_empty() {
                    tracing::warn!(keys = ?restart_needed, "these config changes take effect only after a restart");
                }
            }
            ReloadOutcome::Rejected(errors) => {
                process.reloads_failed.fetch_add(1, Ordering::Relaxed);
                if let Some(a) = &process.audit {
                    crate::audit::record(
                        a,
                        "config",
                        serde_json::json!({"event": "reload_rejected", "config_hash": old, "errors": errors.to_string()}),
                    );
                }
                tracing::error!(config_hash = %old, errors = %errors, "config reload rejected; the previous config stays in force");
            }
        }
    }
}

/// A `file` source: applies the file's lines (then stays idle; its task ends "finished").
fn follow_file(
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
                    pipeline.ingest_file_line(line, wall_clock_ms(), &key, pos);
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
