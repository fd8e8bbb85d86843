//! The HTTP API and /metrics against a real server on an ephemeral port, with a real client.

mod common;

use std::sync::Arc;

use ddtwatch::config::{ClockMode, Config};
use ddtwatch::engine::Engine;
use ddtwatch::http::{AppState, router};
use ddtwatch::ingest::simulator::{Scenario, generate_lines};
use ddtwatch::ingest::{DeadLetterSink, Ingest, Pipeline};
use ddtwatch::telemetry::{ProcessState, names, registry};

const TOKEN: &str = "test-token-123";

/// The app state over the example config's engine (1 MiB bodies, its pipeline's clock at 0).
fn app_state(token: Option<&str>, anonymous_reads: bool) -> AppState {
    let config = Arc::new(Config::load(&common::repo().join("config/ddtwatch.yaml")).unwrap());
    let pipeline = Pipeline::new(Engine::new(config, ClockMode::Event), DeadLetterSink::Discard).with_clock(|| 0);
    let process = Arc::new(ProcessState::default());
    AppState {
        pipeline: pipeline.clone(),
        registry: Arc::new(registry(pipeline.engine.clone(), process.clone())),
        process,
        token: token.map(Arc::from),
        anonymous_reads,
        max_body_bytes: 1 << 20,
    }
}

/// A server whose API reads are open (the read authorisation has its own test).
async fn start(max_body: usize) -> (String, Pipeline) {
    let (base, pipeline, _) = start_with(max_body, Arc::new(ProcessState::default())).await;
    (base, pipeline)
}

async fn start_with(max_body: usize, process: Arc<ProcessState>) -> (String, Pipeline, Arc<ProcessState>) {
    start_auth(max_body, process, true).await
}

async fn start_auth(
    max_body: usize,
    process: Arc<ProcessState>,
    anonymous_reads: bool,
) -> (String, Pipeline, Arc<ProcessState>) {
    let config = Arc::new(Config::load(&common::repo().join("config/ddtwatch.yaml")).unwrap());
    let pipeline = Pipeline::new(Engine::new(config, ClockMode::Event), DeadLetterSink::Discard).with_clock(|| 0);
    process.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let process2 = process.clone();
    let state = AppState {
        pipeline: pipeline.clone(),
        registry: Arc::new(registry(pipeline.engine.clone(), process.clone())),
        process,
        token: Some(Arc::from(TOKEN)),
        anonymous_reads,
        max_body_bytes: max_body,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    (format!("http://{addr}"), pipeline, process2)
}

/// `/healthz` is 200 while every task runs and beats, 503 naming a task that stopped (with its
/// cause) or stalled; `/api/v1/status` and the metrics say the same, and which source is down.
#[tokio::test]
async fn healthz_names_a_dead_or_stalled_task_and_status_names_the_source() {
    let (base, _pipeline, process) = start_with(1 << 20, Arc::new(ProcessState::default())).await;
    let health = process.health.clone();
    let c = ddtwatch::notify::http_client();
    let engine = health.task("engine", std::time::Duration::from_secs(30));
    let source = health.task("source kafka-0", std::time::Duration::from_secs(30));
    let kafka = health.source("kafka-0", "kafka");
    kafka.error("authentication", "SASL authentication error: Authentication failed");
    let r = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");

    source.fail("kafka source kafka-0: fatal Kafka client error: boom");
    drop(source);
    let r = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unhealthy: source kafka-0", "{body}");
    assert!(body["detail"][0]["problem"].as_str().unwrap().contains("fatal Kafka client error: boom"), "{body}");

    let status: serde_json::Value = c.get(format!("{base}/api/v1/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["sources"][0]["source"], "kafka-0");
    assert_eq!(status["sources"][0]["up"], false);
    assert_eq!(status["sources"][0]["errors"]["authentication"], 1);
    assert_eq!(status["sources"][0]["last_error"]["kind"], "authentication");
    let tasks = status["tasks"].as_array().unwrap();
    assert_eq!(tasks.iter().find(|t| t["task"] == "engine").unwrap()["healthy"], true);
    assert_eq!(tasks.iter().find(|t| t["task"] == "source kafka-0").unwrap()["healthy"], false);

    let m = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("ddtwatch_source_up{source=\"kafka-0\"} 0"), "{m}");
    assert!(m.contains("ddtwatch_source_errors_total{source=\"kafka-0\",kind=\"authentication\"} 1"), "{m}");
    assert!(m.contains("ddtwatch_task_healthy{task=\"engine\"} 1"), "{m}");
    assert!(m.contains("ddtwatch_task_healthy{task=\"source kafka-0\"} 0"), "{m}");
    assert!(m.contains("ddtwatch_kafka_client_info{version="), "{m}");
    drop(engine);
}

#[tokio::test]
async fn api_metrics_and_ingest() {
    let (base, pipeline) = start(8 << 20).await;
    let lines = generate_lines(Scenario::ThresholdLowered, 30_000, 1);
    pipeline.ingest(lines.iter().map(|l| Ingest::Raw(l.as_bytes())), 0);
    pipeline.finish();
    let c = ddtwatch::notify::http_client();

    assert_eq!(c.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);

    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = r.text().await.unwrap();
    // Event lag is measured in wall-clock mode only, and the reload timestamp is set by `run`.
    // Kafka and audit metrics exist only with a Kafka source / state_dir (tests/kafka.rs, reload.rs).
    let live_only = [
        "ddtwatch_event_lag_seconds",
        "ddtwatch_config_last_reload_success_timestamp_seconds",
        "ddtwatch_kafka_",
        "ddtwatch_dead_letters_produced",
        "ddtwatch_state_",
        "ddtwatch_audit_",
        "ddtwatch_outbox_",
        "ddtwatch_notifications_",
        "ddtwatch_source_",
        "ddtwatch_task_",
    ];
    for name in names::ALL_SAMPLES.iter().filter(|n| !live_only.iter().any(|p| n.starts_with(p))) {
        assert!(text.lines().any(|l| l.starts_with(name)), "metric {name} missing");
    }
    // The standard process metrics, with values that make sense for this process.
    let sample = |name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(-1.0)
    };
    assert!(sample("process_resident_memory_bytes") > 1e6, "RSS");
    assert!(sample("process_open_fds") >= 3.0 && sample("process_open_fds") <= sample("process_max_fds"));
    let now = ddtwatch::time::wall_clock_ms() as f64 / 1000.0;
    let started = sample("process_start_time_seconds");
    assert!(started > now - 3600.0 && started <= now + 1.0, "start time {started} vs now {now}");
    assert!(sample("process_cpu_seconds_total") > 0.0);
    // Latency histograms: cumulative buckets ending at +Inf = count.
    let bucket = |le: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("ddtwatch_adjudication_latency_seconds_bucket{{deployment=\"lfr-sim-threshold-lowered\",le=\"{le}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("bucket {le} missing"))
    };
    let count = text
        .lines()
        .find(|l| {
            l.starts_with("ddtwatch_adjudication_latency_seconds_count{deployment=\"lfr-sim-threshold-lowered\"}")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap();
    assert!(count > 0);
    assert_eq!(bucket("+Inf"), count);
    assert!(bucket("10") <= bucket("60") && bucket("60") <= bucket("+Inf"));
    assert!(text.contains(r#"ddtwatch_condition_state{deployment="lfr-sim-threshold-lowered",system="lfr",condition="threshold_floor",kind="state",severity="critical"} 0"#));
    // Privacy: no tokens or alert ids in metrics.
    assert!(!text.contains("a-1\""), "alert id in metrics");
    let om = c.get(format!("{base}/metrics")).header("accept", "application/openmetrics-text").send().await.unwrap();
    assert!(om.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    assert!(om.text().await.unwrap().ends_with("# EOF\n"));

    let list: serde_json::Value =
        c.get(format!("{base}/api/v1/deployments")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["deployments"][0]["deployment_id"], "lfr-sim-threshold-lowered");
    let one: serde_json::Value = c
        .get(format!("{base}/api/v1/deployments/lfr-sim-threshold-lowered"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["summary_version"], 1);
    assert!(one["counters"]["detections"].as_u64().unwrap() > 0);
    // The headline rates are the same numbers on /metrics as in the summary (one definition;
    // they used to be computed twice, and the metric lacked two of the six).
    for (name, rate) in one["rates"].as_object().unwrap() {
        let Some(value) = rate["value"].as_f64() else { continue };
        let line = format!(
            r#"ddtwatch_rate_ratio{{deployment="lfr-sim-threshold-lowered",system="lfr",rate="{name}",bound="estimate"}} "#
        );
        let metric: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("rate {name} missing from /metrics"))
            .parse()
            .unwrap();
        assert!((metric - value).abs() <= 1e-12 * value.abs().max(1.0), "{name}: {metric} vs {value}");
    }
    let r = c.get(format!("{base}/api/v1/deployments/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "unknown deployment");

    let b: serde_json::Value =
        c.get(format!("{base}/api/v1/breaches?state=resolved")).send().await.unwrap().json().await.unwrap();
    assert!(b["breaches"].as_array().unwrap().iter().any(|x| x["condition"] == "threshold_floor"));
    assert_eq!(c.get(format!("{base}/api/v1/breaches?state=bogus")).send().await.unwrap().status(), 400);

    let cfg = c.get(format!("{base}/api/v1/config")).send().await.unwrap().text().await.unwrap();
    assert!(!cfg.contains("/etc/ddtwatch/webhook-secret"), "secret reference not redacted");
    assert!(cfg.contains("<redacted>"));
}

#[tokio::test]
async fn post_events_needs_the_token_and_respects_the_size_limit() {
    let (base, pipeline) = start(64 * 1024).await;
    let c = ddtwatch::notify::http_client();
    let lines = generate_lines(Scenario::Steady, 200, 1);
    let mut body = lines[..50].join("\n");
    body.push_str("\n{not json\n");
    let url = format!("{base}/api/v1/events");
    assert_eq!(c.post(&url).body(body.clone()).send().await.unwrap().status(), 401);
    assert_eq!(c.post(&url).bearer_auth("wrong").body(body.clone()).send().await.unwrap().status(), 401);
    let other_scheme = c.post(&url).header("authorization", format!("Basic {TOKEN}")).body(body.clone());
    assert_eq!(other_scheme.send().await.unwrap().status(), 401);
    let r: serde_json::Value =
        c.post(&url).bearer_auth(TOKEN).body(body.clone()).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["accepted"], 50);
    assert_eq!(r["rejected"], 1);
    assert_eq!(r["errors"][0]["reason"], "malformed_json");
    assert_eq!(r["errors"][0]["line"], 51);
    // Re-delivery is absorbed by event_id dedup; the auth scheme is case-insensitive (RFC 7235).
    let r: serde_json::Value = c
        .post(&url)
        .header("authorization", format!("bearer {TOKEN}"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["duplicates"], 50);
    // A JSON array body.
    let arr: Vec<serde_json::Value> = lines[50..60].iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let r: serde_json::Value = c.post(&url).bearer_auth(TOKEN).json(&arr).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["accepted"], 10);
    // Over the limit: 413 with a JSON error.
    let big = "x".repeat(65 * 1024);
    let r = c.post(&url).bearer_auth(TOKEN).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "body too large");
    let e = pipeline.engine.lock().unwrap();
    assert_eq!(e.stats.applied_by_type.iter().sum::<u64>(), 60);
    assert_eq!(e.stats.duplicates, 50);
}

/// The per-event size limit applies inside a JSON array body as on a line of its own.
#[tokio::test]
async fn the_event_size_limit_holds_inside_array_bodies() {
    let (base, _pipeline) = start(8 << 20).await;
    let c = ddtwatch::notify::http_client();
    let ok = generate_lines(Scenario::Steady, 10, 1);
    let mut arr: Vec<serde_json::Value> = ok.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    arr.push(serde_json::json!({"deployment_id": "x", "pad": "y".repeat(ddtwatch::event::MAX_EVENT_BYTES)}));
    let url = format!("{base}/api/v1/events");
    let r: serde_json::Value = c.post(&url).bearer_auth(TOKEN).json(&arr).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["accepted"], 10, "{r}");
    assert_eq!(r["rejected"], 1, "{r}");
    assert_eq!(r["errors"][0]["reason"], "too_large", "{r}");
}

/// Every `/api/v1/*` read takes the bearer token unless `anonymous_reads`; `/metrics`,
/// `/healthz` and `/readyz` stay open.
#[tokio::test]
async fn api_reads_need_the_token() {
    let (base, pipeline, _) = start_auth(1 << 20, Arc::new(ProcessState::default()), false).await;
    let lines = generate_lines(Scenario::Steady, 2_000, 1);
    pipeline.ingest(lines.iter().map(|l| Ingest::Raw(l.as_bytes())), 0);
    let c = ddtwatch::notify::http_client();
    let dep = Scenario::Steady.deployment_id();
    for path in [
        "/api/v1/deployments".to_string(),
        format!("/api/v1/deployments/{dep}"),
        format!("/api/v1/deployments/{dep}/report?format=json"),
        "/api/v1/breaches".to_string(),
        "/api/v1/config".to_string(),
        "/api/v1/status".to_string(),
    ] {
        let url = format!("{base}{path}");
        assert_eq!(c.get(&url).send().await.unwrap().status(), 401, "{path} without a token");
        assert_eq!(c.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401, "{path} wrong token");
        let ok = c.get(&url).header("authorization", format!("bearer {TOKEN}")).send().await.unwrap();
        assert_eq!(ok.status(), 200, "{path} with the token");
    }
    for open in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(c.get(format!("{base}{open}")).send().await.unwrap().status(), 200, "{open}");
    }
}

/// A client that stalls mid-headers is cut off after the read timeout, and at the connection
/// limit a new client is served only once a slot frees.
#[tokio::test]
async fn stalled_clients_are_cut_off_and_connections_are_limited() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let state = app_state(None, false);
    let (addr, limited) =
        limited_listener(1, std::time::Duration::from_millis(800), std::time::Duration::from_secs(10)).await;
    tokio::spawn(async move { axum::serve(limited, router(state)).await.unwrap() });

    // Holds the only slot: half a request, then silence.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let complete = tokio::spawn(async move {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        out
    });
    let mut buf = [0u8; 64];
    let mut complete = Box::pin(complete);
    // Whichever finishes first must be the stalled connection's close (biased: checked first).
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::select! {
            biased;
            // EOF, a reset or a 408: the server gave up on it (it never sent a full request).
            _ = stalled.read(&mut buf) => "stalled closed",
            _ = &mut complete => "served",
        }
    })
    .await
    .expect("the stalled connection was never cut off");
    assert_eq!(first, "stalled closed", "the second client was served while the only slot was held");
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), complete).await.unwrap().unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// A listener on an ephemeral port with at most `max` connections and these timeouts.
async fn limited_listener(
    max: usize,
    read_timeout: std::time::Duration,
    header_timeout: std::time::Duration,
) -> (std::net::SocketAddr, ddtwatch::http::limits::LimitedListener) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ddtwatch::http::limits::Limits { read_timeout, header_timeout };
    (addr, ddtwatch::http::limits::LimitedListener::new(listener, max, limits))
}

/// A server with a deliberately slow handler behind [`LimitedListener`] with short timeouts.
async fn limited_server(read_ms: u64, header_ms: u64) -> std::net::SocketAddr {
    use axum::routing::{get, post};
    let slow = || async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        "done"
    };
    let app = axum::Router::new().route("/slow", get(slow)).route("/slow", post(move |_b: String| slow()));
    let (addr, limited) =
        limited_listener(4, std::time::Duration::from_millis(read_ms), std::time::Duration::from_millis(header_ms))
            .await;
    tokio::spawn(async move { axum::serve(limited, app).await.unwrap() });
    addr
}

/// Headers trickled one byte every 100 ms are never inactive for the read timeout, but the
/// header deadline still cuts the connection (before: a slowloris client held it for ever).
#[tokio::test]
async fn trickled_headers_are_cut_off_at_the_header_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = limited_server(1000, 1500).await;
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let (mut rd, mut wr) = c.split();
    // The trickle takes ≈ 20 s; the server must hang up long before it ends.
    let trickle = async {
        for b in request.iter() {
            if wr.write_all(&[*b]).await.is_err() {
                return "write refused";
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        "trickle finished"
    };
    let mut buf = [0u8; 256];
    let outcome = tokio::select! {
        biased;
        r = rd.read(&mut buf) => match r { Ok(0) | Err(_) => "cut off", Ok(_) => "answered" },
        t = trickle => t,
    };
    assert!(outcome == "cut off" || outcome == "write refused", "{outcome}");
}

/// Once a request is complete the client owes nothing: a handler slower than the read timeout
/// is answered, for a GET and for a POST with a body (before: cut off after the read timeout).
#[tokio::test]
async fn a_slow_handler_is_not_cut_off_by_the_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = limited_server(300, 5000).await;
    for request in [
        "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_string(),
    ] {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        let read = c.read_to_string(&mut out).await;
        assert!(
            read.is_ok() && out.starts_with("HTTP/1.1 200") && out.ends_with("done"),
            "{request:?}: {out:?} {read:?}"
        );
    }
    // A body that stops short is still under the read timeout.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nhello").await.unwrap();
    let mut out = Vec::new();
    let r = tokio::time::timeout(std::time::Duration::from_secs(20), c.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "a stalled body was never cut off");
    assert!(!String::from_utf8_lossy(&out).contains("done"), "the handler never ran on half a body");
}

/// Shutdown does not wait for ever on an in-flight request: a POST whose body stalls (the read
/// timeout here is 120 s) holds the drain for at most `DRAIN_LIMIT`, then `serve` returns.
#[tokio::test]
async fn shutdown_drains_requests_for_a_bounded_time() {
    use tokio::io::AsyncWriteExt;
    let state = app_state(Some("drain-token"), true);
    let (addr, limited) =
        limited_listener(4, std::time::Duration::from_secs(120), std::time::Duration::from_secs(120)).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ddtwatch::service::serve(
        limited,
        state,
        async move {
            let _ = stop_rx.await;
        },
        || {},
        tokio::sync::mpsc::unbounded_channel().1,
    ));
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer drain-token\r\nContent-Length: 100\r\n\r\n{\"schema",
    )
    .await
    .unwrap();
    // Let the server take the request in before the shutdown begins.
    let health = format!("http://{addr}/healthz");
    assert_eq!(ddtwatch::notify::http_client().get(&health).send().await.unwrap().status(), 200);
    stop_tx.send(()).unwrap();
    let limit = ddtwatch::service::DRAIN_LIMIT + std::time::Duration::from_secs(10);
    tokio::time::timeout(limit, server)
        .await
        .expect("serve kept waiting on the stalled request past the drain limit")
        .unwrap()
        .unwrap();
    drop(c);
}

/// The README's first command: `ddtwatch demo` serves metrics and the API while it feeds the
/// simulated deployments, prints breaches as they fire, and stops cleanly on SIGTERM (one
/// shutdown signal for the server, the feeder and the summary lines).
#[test]
fn the_demo_serves_breaches_and_stops_cleanly_on_sigterm() {
    use common::broker::{http_text, metric, wait_for};
    use std::io::{BufRead, BufReader};
    use std::time::Duration;
    let port = common::free_port();
    let mut demo = common::Proc(
        std::process::Command::new(common::bin())
            .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--speed", "20000", "--events", "20000"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Stdout lines through a channel, so a missing line fails after a timeout instead of hanging.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = demo.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let line_with = |what: &str, pred: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(e) => panic!("no {what} on the demo's stdout: {e}"),
            }
        }
    };
    let serving = line_with("serving line", &|l| l.contains("serving"));
    assert!(serving.contains(&format!("http://127.0.0.1:{port}/metrics")), "{serving}");
    // A breach line: the simulated threshold is lowered below its floor.
    line_with("threshold_floor breach", &|l| l.contains("FIRING") && l.contains("threshold_floor"));
    let base = format!("http://127.0.0.1:{port}");
    wait_for("events applied", Duration::from_secs(30), || {
        http_text(&format!("{base}/metrics")).is_some_and(|m| metric(&m, "ddtwatch_events_total") > 0.0)
    });
    assert!(std::process::Command::new("kill").args(["-TERM", &demo.0.id().to_string()]).status().unwrap().success());
    assert!(demo.0.wait().unwrap().success(), "the demo exits 0 on SIGTERM");
    line_with("stop line", &|l| l == "ddtwatch demo: stopped");
}

/// `/metrics` as text after 20,000 events of `scenario` (the example config's engine).
fn scrape_after(scenario: Scenario) -> String {
    let state = app_state(None, true);
    let lines = generate_lines(scenario, 20_000, 3);
    state.pipeline.ingest(lines.iter().map(|l| Ingest::Raw(l.as_bytes())), 0);
    ddtwatch::telemetry::encode(&state.registry, &state.pipeline.engine, ddtwatch::telemetry::Format::OpenMetrics)
        .unwrap()
}

/// A silence instance is exposed as its condition's id plus a `source` label, so `condition`
/// holds only the profile's ids (issue 22: its cardinality no longer follows the stream).
#[test]
fn silence_instances_carry_a_source_label() {
    let text = scrape_after(Scenario::CameraSilence);
    assert!(!text.contains("condition=\"camera_silence/"), "a source inside the condition label");
    let silent: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ddtwatch_condition_state{") && l.contains("condition=\"camera_silence\""))
        .collect();
    assert!(silent.len() >= 2, "one series per camera: {silent:?}");
    assert!(silent.iter().all(|l| l.contains("source=\"cam-")), "{silent:?}");
    // The scenario's camera that fell silent has fired, under its own source.
    let fired = |src: &str| {
        text.lines()
            .find(|l| l.starts_with("ddtwatch_breaches_total{") && l.contains(&format!("source=\"{src}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(fired("cam-2"), Some(1.0), "{text}");
    assert_eq!(fired("cam-1"), Some(0.0));
    // Its value and limit carry the same labels, so dashboards can join them.
    assert!(
        text.lines().any(|l| l.starts_with("ddtwatch_condition_limit{")
            && l.contains("condition=\"camera_silence\",source=\"cam-2\""))
    );
}

/// A condition's value goes to the metric of its unit, so no metric mixes units (issue 22):
/// rates are proportions, latencies and silences seconds, statistics plain numbers.
#[test]
fn condition_values_are_split_by_unit() {
    let text = scrape_after(Scenario::ThresholdLowered);
    let conditions_in = |metric: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")))
            .filter_map(|l| Some(l.split("condition=\"").nth(1)?.split('"').next()?.to_string()))
            .collect()
    };
    let (ratio, seconds, plain) = (
        conditions_in("ddtwatch_condition_value_ratio"),
        conditions_in("ddtwatch_condition_value_seconds"),
        conditions_in("ddtwatch_condition_value"),
    );
    assert!(ratio.contains("false_alert_rate") && ratio.contains("override_rate"), "{ratio:?}");
    assert!(seconds.contains("camera_silence"), "{seconds:?}");
    assert!(plain.contains("score_drift") && plain.contains("threshold_floor"), "{plain:?}");
    assert!(ratio.is_disjoint(&seconds) && ratio.is_disjoint(&plain) && seconds.is_disjoint(&plain));
    // Rates are proportions; seconds are not.
    for l in text.lines().filter(|l| l.starts_with("ddtwatch_condition_value_ratio{")) {
        let v: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&v), "{l}");
    }
}

/// `/metrics` writes the per-deployment families itself (two threads, `telemetry/text.rs`): the
/// bytes equal prometheus-client's own encoding of the same samples, in both text formats, over
/// every scenario's deployments (groups, silence instances, histograms, disparity and drift).
/// The OS `process_*` readings, which move between two scrapes, are left out of the comparison.
#[test]
fn direct_metrics_text_equals_prometheus_clients() {
    use ddtwatch::telemetry::{Format, encode, reference_registry};
    let state = app_state(None, true);
    // Each scenario four times over under other deployment ids, so the larger families span
    // several of the encoder's text chunks (`telemetry::Chunks`: 8, 16, 32, 64 KiB…).
    for s in Scenario::ALL {
        for copy in 0..4 {
            let lines: Vec<String> =
                generate_lines(s, 6_000, 5).iter().map(|l| l.replace("-sim-", &format!("-sim{copy}-"))).collect();
            state.pipeline.ingest(lines.iter().map(|l| Ingest::Raw(l.as_bytes())), 0);
        }
    }
    let engine = state.pipeline.engine.clone();
    let reference = reference_registry(engine.clone(), Arc::new(ProcessState::default()));
    let stable = |t: &str| -> String {
        t.lines().filter(|l| !l.starts_with("process_") && !l.contains(" process_")).collect::<Vec<_>>().join("\n")
    };
    for format in [Format::OpenMetrics, Format::Prometheus] {
        let mut want = String::new();
        match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut want, &reference).unwrap(),
            Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut want, &reference).unwrap(),
        }
        let got = encode(&state.registry, &engine, format).unwrap();
        let (got, want) = (stable(&got), stable(&want));
        assert!(want.lines().count() > 6_000, "a rich scrape: {} lines", want.lines().count());
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(g, w, "{format:?}: line {} differs", i + 1);
        }
        assert_eq!(got.len(), want.len(), "{format:?}");
    }
}
