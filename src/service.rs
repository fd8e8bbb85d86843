//! The service `ddtwatch run` starts: [`Service::build`] opens everything that can fail for good
//! (config checks, secrets, Kafka clients, state directory, audit log, outbox, snapshot) before
//! anything runs; [`Service::run`] serves until a signal or a fatal source failure, then stops
//! every task with one shutdown signal, waits for the sources to checkpoint within the grace
//! period, and writes the last snapshot. (The shape of mini-redis's `server::run(listener,
//! shutdown)`.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::{Config, SourceConfig, StateDir};
use crate::engine::Engine;
use crate::http::{AppState, router};
use crate::ingest::{DeadLetterSink, Pipeline};
use crate::telemetry::{ProcessState, registry};
use crate::time::wall_clock_ms;

/// Everything `run` built, ready to serve.
pub struct Service {
    /// The configuration at start: the settings `run` reads (HTTP limits, grace periods,
    /// intervals, state_dir) take effect only on restart.
    config: Arc<Config>,
    listen: SocketAddr,
    token: Option<Arc<str>>,
    pipeline: Pipeline,
    health: Arc<crate::health::Health>,
    process: Arc<ProcessState>,
    kafka_sources: Vec<(String, crate::ingest::kafka::KafkaSource)>,
    file_sources: Vec<(String, PathBuf)>,
    reloader: crate::config::reload::Reloader,
    outbox: Option<crate::notify::outbox::SharedOutbox>,
    audit: Option<crate::audit::SharedAudit>,
    notifier: Arc<crate::notify::Notifier>,
}

/// How long sources (and then the outbox drain) get at shutdown (`engine.shutdown_grace`).
fn shutdown_grace(config: &Config) -> Duration {
    Duration::from_millis(config.raw.engine.shutdown_grace.ms().max(0) as u64)
}

impl Service {
    /// Builds the service for `config` (read from `config_path`, which hot reload re-reads).
    pub fn build(config_path: PathBuf, config: Config, listen: Option<SocketAddr>) -> anyhow::Result<Service> {
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
        for w in config.unmonitored() {
            tracing::warn!("{w}");
        }
        let token = http_token(&config)?;
        let mode = config.raw.clock;
        let sources = config.raw.sources.clone();
        let kafka_stats = Arc::new(crate::ingest::kafka::KafkaStats::default());
        let dead = DeadLetterSink::from_config(config.raw.dead_letter.as_ref(), &sources, &kafka_stats)
            .context("opening the dead-letter sink (a kafka DLQ uses the first kafka source's settings)")?;
        let grace = shutdown_grace(&config);
        let commit_interval = Duration::from_millis(config.raw.engine.commit_interval.ms().max(100) as u64);
        let config = Arc::new(config);
        // A reload must pass what start-up checks beyond the YAML (not the Kafka clients: sources
        // take effect only on restart).
        let reloader = crate::config::reload::Reloader::new(config_path, config.clone())
            .with_check(Box::new(|c| runtime_problems(c, true, false)));
        let mut engine = Engine::new(config.clone(), mode);
        let state_dir = config.raw.state_dir.as_ref().map(StateDir::new);
        if let Some(dir) = &state_dir {
            let d = dir.dedup();
            engine.spill_dedup_to(&d).with_context(|| format!("opening the dedup spill directory {}", d.display()))?;
        }
        // Retired deployments' final summaries go to state_dir/records (and the state topic);
        // without a state_dir they stay in memory, so the API still serves them.
        engine.emit_retired();
        if state_dir.is_some() {
            engine.hand_off_retired();
        }
        let pipeline = Pipeline::new(engine, dead);
        let audit = match &state_dir {
            Some(dir) => {
                let key = config.raw.audit.read_key()?;
                let mut log = crate::audit::AuditLog::open_keyed(&dir.audit_log(), 64 << 20, key)
                    .with_context(|| format!("opening the audit log in {}", dir.path().display()))?;
                if let Some(topic) = &config.raw.audit.topic {
                    let source = crate::config::SourceConfig::first_kafka(&config.raw.sources)
                        .context("audit.topic needs a kafka source")?;
                    let t = crate::audit::topic::AuditTopic::new(source, topic)?;
                    let (with, resent) = log.with_topic(Arc::new(t)).context("re-sending the audit log's tail")?;
                    log = with;
                    tracing::info!(
                        topic = %topic,
                        chain = %log.chain(),
                        resent,
                        "audit records also go to the audit topic (resent: records not acknowledged before the restart)"
                    );
                }
                let log = Arc::new(std::sync::Mutex::new(log));
                crate::audit::record(
                    &log,
                    "config",
                    serde_json::json!({"event": "loaded", "config_hash": config.hash}),
                );
                Some(log)
            }
            None => None,
        };
        if let Some(dir) = &state_dir {
            crate::engine::snapshot::restore_file(&pipeline.engine, &dir.snapshot())?;
        }
        let outbox = match &state_dir {
            Some(dir) => {
                let o = crate::notify::outbox::Outbox::open(&dir.outbox(), 16 << 20)
                    .with_context(|| format!("opening the outbox in {}", dir.path().display()))?;
                if o.depth() > 0 {
                    tracing::info!(
                        pending = o.depth(),
                        "outbox: notifications from before the restart will be delivered"
                    );
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
        let notifier = crate::notify::Notifier::build(outbox.clone(), audit.clone(), wall_clock_ms, state_dir.clone());
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
                    let src =
                        crate::ingest::kafka::KafkaSource::new(&s, pipeline.clone(), kafka_stats.clone(), h, opts)
                            .with_context(|| format!("kafka source {name}"))?;
                    kafka_sources.push((name, src));
                }
                SourceConfig::Http {} => {
                    health.source(name, "http").set_up(true);
                }
            }
        }
        Ok(Service {
            config,
            listen,
            token,
            pipeline,
            health,
            process,
            kafka_sources,
            file_sources,
            reloader,
            outbox,
            audit,
            notifier,
        })
    }

    /// Where it will listen.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// Serves on `listener` until `signal` resolves (or a source fails for good: exit 1).
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<ExitCode> {
        let Service {
            config,
            listen: _,
            token,
            pipeline,
            health,
            process,
            kafka_sources,
            file_sources,
            reloader,
            outbox,
            audit,
            notifier,
        } = self;
        let grace = shutdown_grace(&config);
        // A Kafka source may block in a checkpoint (snapshots and dead letters acknowledged) or in
        // reading the state topic for a while: it counts as stalled only well past those bounds.
        let source_stall = (grace * 6).max(Duration::from_secs(60));
        let reload_every = config.raw.reload_interval;
        let snapshot_every = Duration::from_millis(config.raw.engine.snapshot_interval.ms().max(100) as u64);
        let snapshot_path = config.raw.state_dir.as_ref().map(|d| StateDir::new(d).snapshot());
        let registry = Arc::new(registry(pipeline.engine.clone(), process.clone()));
        tracing::info!(addr = %listener.local_addr()?, config_hash = %config.hash, "ddtwatch serving");
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
            tokio::task::spawn_blocking(move || crate::ingest::file::follow_file(p, path, &h, &task));
        }
        // Every long-lived task ends at the one shutdown signal (not by abort).
        let shutdown = crate::health::Shutdown::default();
        let mut tasks = tokio::task::JoinSet::new();
        {
            let p = pipeline.clone();
            let task = health.task("engine", Duration::from_secs(30));
            tasks.spawn(shutdown.clone().run_until(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    task.beat();
                    let p = p.clone();
                    // Evaluation journals its transitions (fsync): off the async workers.
                    if tokio::task::spawn_blocking(move || p.tick(p.now())).await.is_err() {
                        task.fail("the evaluation panicked");
                        break;
                    }
                }
            }));
        }
        {
            let task = health
                .task("config-reload", Duration::from_millis(every_ms(reload_every) * 10).max(Duration::from_secs(60)));
            let (p, proc1, proc2) = (pipeline.clone(), process.clone(), process.clone());
            let applied = move |config: Arc<Config>, old: &str| {
                let new = config.hash.clone();
                // Counted and audited before it takes effect: whoever sees the new config sees both.
                proc1.reloads_ok.fetch_add(1, Ordering::Relaxed);
                proc1.last_reload_ok_ms.store(wall_clock_ms(), Ordering::Relaxed);
                if let Some(a) = &proc1.audit {
                    crate::audit::record(
                        a,
                        "config",
                        serde_json::json!({"event": "reloaded", "old_hash": old, "config_hash": new}),
                    );
                }
                p.reload(config);
            };
            let rejected = move |errors: &crate::config::ConfigErrors, old: &str| {
                proc2.reloads_failed.fetch_add(1, Ordering::Relaxed);
                if let Some(a) = &proc2.audit {
                    crate::audit::record(
                        a,
                        "config",
                        serde_json::json!({"event": "reload_rejected", "config_hash": old, "errors": errors.to_string()}),
                    );
                }
            };
            let proc3 = process.clone();
            let file_ok = move |ok: bool| proc3.config_file_rejected.store(!ok, Ordering::Relaxed);
            tasks.spawn(shutdown.clone().run_until(crate::config::reload::watch(
                reloader,
                reload_every,
                applied,
                rejected,
                file_ok,
                task,
            )));
        }
        if let Some(o) = outbox.clone() {
            let d = crate::notify::dispatch::Dispatcher::new(o, audit.clone());
            let engine = pipeline.engine.clone();
            let receivers = move || engine.lock().map(|e| e.config().raw.receivers.clone()).unwrap_or_default();
            let task = health.task("dispatcher", Duration::from_secs(600));
            // Dropped at shutdown, which stops its per-receiver loops; what is undelivered stays in the outbox.
            tasks.spawn(shutdown.clone().run_until(crate::notify::dispatch::run(
                d,
                receivers,
                notifier.wake.clone(),
                wall_clock_ms,
                task,
                health.clone(),
            )));
        }
        if let Some(path) = snapshot_path.clone() {
            let p = pipeline.clone();
            let task = health.task("snapshotter", (snapshot_every * 3).max(Duration::from_secs(60)));
            tasks.spawn(shutdown.clone().run_until(async move {
                let mut tick = tokio::time::interval(snapshot_every);
                tick.tick().await;
                loop {
                    task.beat();
                    tick.tick().await;
                    let (engine, path) = (p.engine.clone(), path.clone());
                    match tokio::task::spawn_blocking(move || crate::engine::snapshot::write_file(&engine, &path)).await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "writing the state snapshot failed"),
                        Err(_) => {
                            task.fail("writing the snapshot panicked");
                            break;
                        }
                    }
                }
            }));
        }
        process.ready.store(true, Ordering::Relaxed);
        let pipeline_for_shutdown = pipeline.clone();
        let state = AppState {
            pipeline,
            registry,
            process,
            token,
            anonymous_reads: config.raw.http.anonymous_reads,
            max_body_bytes: config.raw.http.max_body_bytes,
        };
        let listener = crate::http::limits::LimitedListener::from_config(listener, &config.raw.http);
        let on_stop = {
            let (health, stop) = (health.clone(), stop_sources.clone());
            move || {
                health.stopping();
                // SIGTERM/SIGINT: the consumers stop fetching, finish the message in hand, commit.
                stop.store(true, Ordering::Relaxed);
            }
        };
        let fatal = serve(listener, state, signal, on_stop, fatal_rx).await;
        for c in consumers {
            match tokio::time::timeout(grace, tokio::task::spawn_blocking(move || c.join())).await {
                Ok(Ok(Ok(_))) => {}
                Ok(_) => tracing::error!("kafka source panicked"),
                Err(_) => tracing::warn!("kafka source did not stop within the grace period"),
            }
        }
        // Notifications still in the outbox get the grace period to go out before the
        // dispatcher stops (a pod on an emptyDir loses what is left).
        if let Some(o) = &outbox {
            let depth = || o.lock().map(|o| o.depth()).unwrap_or(0);
            let deadline = tokio::time::Instant::now() + grace;
            notifier.wake.notify_one();
            while depth() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            match depth() {
                0 => {}
                n => tracing::warn!(
                    pending = n,
                    grace_s = grace.as_secs_f64(),
                    "notifications still undelivered at shutdown; they stay in the outbox (state_dir) for the next start"
                ),
            }
        }
        // The one shutdown signal: every task stops at its next await point.
        shutdown.trigger();
        while tasks.join_next().await.is_some() {}
        if let Some(path) = &snapshot_path {
            match crate::engine::snapshot::write_file(&pipeline_for_shutdown.engine, path) {
                Ok(()) => tracing::info!(path = %path.display(), "state snapshot written at shutdown"),
                Err(e) => tracing::error!(error = %e, "writing the shutdown snapshot failed"),
            }
        }
        // Audit records written during the drain (deliveries, the stop) reach the audit topic too.
        if !crate::ingest::pipeline::Publisher::sync(&*notifier, grace) {
            tracing::error!(
                "audit records not acknowledged by the audit topic at shutdown; only the file in state_dir holds them"
            );
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
    }
}

/// SIGINT or SIGTERM.
pub async fn signals() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// How long in-flight HTTP requests may take to finish once shutdown begins.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Serves HTTP until `signal` (SIGINT/SIGTERM in `run`) resolves, or until a source reports a
/// failure it cannot recover from (returned as `Some(cause)`), then calls `on_stop` at once.
pub async fn serve(
    listener: crate::http::limits::LimitedListener,
    state: AppState,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
    on_stop: impl FnOnce() + Send + 'static,
    mut fatal: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> anyhow::Result<Option<String>> {
    let cause = Arc::new(std::sync::Mutex::new(None));
    let cause2 = cause.clone();
    let stopping = crate::health::Shutdown::default();
    let stopping2 = stopping.clone();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        tokio::select! {
            _ = signal => {}
            Some(c) = fatal.recv() => {
                tracing::error!(cause = %c, "a source failed for good; stopping");
                *cause2.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
            }
        }
        tracing::info!("shutting down");
        // At once, not after the HTTP connections have drained: the sources checkpoint and
        // commit within the grace period.
        on_stop();
        stopping2.trigger();
    });
    // Draining in-flight requests is bounded: a handler that never returns must not keep the
    // process (and its final snapshot) from finishing.
    tokio::select! {
        r = server => r.context("HTTP server")?,
        _ = async {
            stopping.wait().await;
            tokio::time::sleep(DRAIN_LIMIT).await;
        } => tracing::warn!(limit_s = DRAIN_LIMIT.as_secs(), "HTTP requests still in flight after the drain limit; stopping without them"),
    }
    let c = cause.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok(c)
}

/// Prints every transition (the `log` receiver).
pub fn spawn_log_receiver(pipeline: &Pipeline, to_stdout: bool) {
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

/// Reads the HTTP bearer token from the configured file or environment variable.
pub fn http_token(config: &Config) -> anyhow::Result<Option<Arc<str>>> {
    let http = &config.raw.http;
    if http.token_file.is_none() && http.token_env.is_none() {
        return Ok(None);
    }
    let secret = crate::config::SecretRef { file: http.token_file.clone(), env: http.token_env.clone() };
    Ok(Some(Arc::from(secret.read("http.token")?.trim())))
}

/// What `run` would fail on at start that the YAML alone does not show: secrets that cannot be
/// read, Kafka clients librdkafka refuses to build (with `kafka`), receivers that need a
/// `state_dir`. As `(key path, problem)`.
pub fn runtime_problems(config: &Config, skip_secrets: bool, kafka: bool) -> Vec<(String, String)> {
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
    if let Some(t) = &raw.audit.topic {
        if raw.state_dir.is_none() {
            out.push((
                "audit.topic".into(),
                "the audit log is kept in `state_dir`; set it, or remove audit.topic".into(),
            ));
        }
        if t.trim().is_empty() {
            out.push(("audit.topic".into(), "is empty".into()));
        }
        if crate::config::SourceConfig::first_kafka(&raw.sources).is_none() {
            out.push((
                "audit.topic".into(),
                "needs a kafka source (its client settings produce the records, and its checkpoints wait for them)"
                    .into(),
            ));
        }
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
