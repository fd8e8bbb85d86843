//! Webhook delivery under faults, on injected time: a receiver in the test (axum on an ephemeral
//! port) verifies every Standard Webhooks signature and can be told to fail. The dispatcher is
//! driven with a simulated clock (`run_due(now)`), so ten minutes of outage take no real time.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use ddtwatch::config::{ClockMode, Config};
use ddtwatch::engine::Engine;
use ddtwatch::ingest::{DeadLetterSink, Ingest, Pipeline, simulator};
use ddtwatch::notify::dispatch::Dispatcher;
use ddtwatch::notify::outbox::{Outbox, SharedOutbox};
use ddtwatch::notify::webhook;
use serde_json::Value;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the receiver saw. `now` is the simulated unix time in seconds (for signature freshness).
#[derive(Default)]
struct Hook {
    down: bool,
    now: i64,
    /// (path, webhook-id) → 2xx answers given.
    acked: BTreeMap<(String, String), u32>,
    /// (path, webhook-id) → simulated times (s) of every request.
    attempts: BTreeMap<(String, String), Vec<i64>>,
    bad_signatures: u32,
    throttled: HashSet<String>,
    /// Ids answered 503 once.
    fail_once: HashSet<String>,
    /// Ids in the order they were acknowledged, and when.
    order: Vec<String>,
    acked_at: Vec<std::time::Instant>,
}

type Shared = Arc<Mutex<Hook>>;

async fn receive(State(s): State<Shared>, Path(name): Path<String>, h: HeaderMap, body: Bytes) -> impl IntoResponse {
    let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (id, ts, sig) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
    let mut s = s.lock().unwrap();
    let now = s.now;
    s.attempts.entry((name.clone(), id.clone())).or_default().push(now);
    if webhook::verify(SECRET, &id, &ts, &sig, &body, now, webhook::DEFAULT_TOLERANCE_SECS).is_err() {
        s.bad_signatures += 1;
        return (StatusCode::UNAUTHORIZED, HeaderMap::new());
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["idempotency_key"], id.as_str(), "the body names its idempotency key");
    match name.as_str() {
        "reject" => return (StatusCode::UNPROCESSABLE_ENTITY, HeaderMap::new()),
        "throttle" if s.throttled.insert(id.clone()) => {
            let mut hm = HeaderMap::new();
            hm.insert("retry-after", "120".parse().unwrap());
            return (StatusCode::TOO_MANY_REQUESTS, hm);
        }
        _ if s.down => return (StatusCode::SERVICE_UNAVAILABLE, HeaderMap::new()),
        _ if s.fail_once.remove(&id) => return (StatusCode::SERVICE_UNAVAILABLE, HeaderMap::new()),
        _ => {}
    }
    s.order.push(id.clone());
    s.acked_at.push(std::time::Instant::now());
    *s.acked.entry((name, id)).or_default() += 1;
    (StatusCode::OK, HeaderMap::new())
}

async fn start_receiver() -> (Shared, String) {
    let s: Shared = Arc::default();
    let app = Router::new().route("/hook/{name}", post(receive)).with_state(s.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (s, base)
}

/// The demo configuration with its two receivers pointed at the test receiver.
fn config(base: &str, secret_file: &std::path::Path, oversight: &str, ops: &str) -> Config {
    let text = ddtwatch::config::DEMO_CONFIG.replace(
        "  oversight: {kind: log}\n  ops: {kind: log}",
        &format!(
            "  oversight: {{kind: webhook, url: \"{base}/hook/{oversight}\", secret_file: {f}}}\n  ops: {{kind: webhook, url: \"{base}/hook/{ops}\", secret_file: {f}}}",
            f = secret_file.display()
        ),
    );
    Config::from_yaml(&text, None).unwrap()
}

/// Replays a breach-tripping scenario through a pipeline whose outbox is `outbox`.
fn enqueue_breaches(config: &Config, outbox: &SharedOutbox) {
    let pipeline = Pipeline::new(Engine::new(Arc::new(config.clone()), ClockMode::Event), DeadLetterSink::Discard);
    let notifier = ddtwatch::notify::Notifier::new(Some(outbox.clone()), None);
    pipeline.set_publisher(notifier.clone());
    let lines = simulator::generate_lines(simulator::Scenario::ThresholdLowered, 3000, 11);
    pipeline.ingest(lines.iter().map(|l| Ingest::Raw(l.as_bytes())), 0);
    pipeline.engine.lock().unwrap().finish();
}

struct Setup {
    hook: Shared,
    outbox: SharedOutbox,
    journal: std::path::PathBuf,
    config: Config,
    _dir: tempfile::TempDir,
}

async fn setup(oversight: &str, ops: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let (hook, base) = start_receiver().await;
    let config = config(&base, &secret_file, oversight, ops);
    let journal = dir.path().join("outbox.jsonl");
    let outbox = Arc::new(Mutex::new(Outbox::open(&journal, 0).unwrap()));
    enqueue_breaches(&config, &outbox);
    Setup { hook, outbox, journal, config, _dir: dir }
}

fn wall_ms() -> i64 {
    ddtwatch::http::wall_clock_ms()
}

#[tokio::test]
async fn ten_minute_outage_then_every_notification_delivered_once() {
    let s = setup("oversight", "ops").await;
    let enqueued: BTreeMap<(String, String), ()> =
        s.outbox.lock().unwrap().pending().map(|e| ((e.receiver.clone(), e.key.clone()), ())).collect();
    assert!(enqueued.len() >= 3, "the scenario trips breaches for both receivers: {enqueued:?}");
    assert!(enqueued.keys().any(|(_, k)| k.ends_with("/resolved")), "and resolves one");
    let receivers = s.config.raw.receivers.clone();
    let mut d = Dispatcher::new(s.outbox.clone(), None).with_seed(5);

    // Ten simulated minutes of 503s.
    let t0 = wall_ms();
    let mut now = t0;
    s.hook.lock().unwrap().down = true;
    let mut passes = 0;
    while now < t0 + 600_000 {
        s.hook.lock().unwrap().now = now / 1000;
        let next = d.run_due(&receivers, now).await.expect("retries are scheduled during the outage");
        assert!(next >= now, "the next attempt is not in the past");
        now = next.max(now + 1);
        passes += 1;
    }
    {
        let h = s.hook.lock().unwrap();
        assert!(h.acked.is_empty());
        assert_eq!(h.bad_signatures, 0, "every attempt is signed");
        for ((_, id), times) in &h.attempts {
            assert!(times.len() >= 3, "{id} was retried during the outage: {times:?}");
            // Exponential backoff with a 5 min cap: far fewer than one attempt per second.
            assert!(times.len() <= 40, "{id} attempted {} times in 10 minutes", times.len());
        }
        // Ordering: no resolved was attempted while its firing was undelivered.
        assert!(h.attempts.keys().all(|(_, id)| id.ends_with("/firing")), "{:?}", h.attempts.keys());
    }
    assert!(passes > 3);
    assert_eq!(s.outbox.lock().unwrap().depth(), enqueued.len(), "nothing dropped during the outage");

    // Recovery: everything goes out once, firing before resolved.
    s.hook.lock().unwrap().down = false;
    for _ in 0..100 {
        if s.outbox.lock().unwrap().depth() == 0 {
            break;
        }
        s.hook.lock().unwrap().now = now / 1000;
        let next = d.run_due(&receivers, now).await;
        now = next.unwrap_or(now + 1000).max(now + 1);
    }
    let h = s.hook.lock().unwrap();
    let acked: BTreeMap<(String, String), ()> = h.acked.keys().map(|k| (k.clone(), ())).collect();
    assert_eq!(acked, enqueued, "every (receiver, key) acknowledged");
    assert!(h.acked.values().all(|&n| n == 1), "none twice: {:?}", h.acked);
    let o = s.outbox.lock().unwrap();
    let delivered: u64 = o.results.iter().filter(|((_, r), _)| *r == "delivered").map(|(_, n)| n).sum();
    let retries: u64 = o.results.iter().filter(|((_, r), _)| *r == "retry").map(|(_, n)| n).sum();
    assert_eq!(delivered as usize, enqueued.len());
    assert!(retries >= 3 * enqueued.len() as u64 / 2, "retries counted: {retries}");
    drop(o);
    // The journal agrees after a restart: nothing left to send.
    assert_eq!(Outbox::open(&s.journal, 0).unwrap().depth(), 0);
}

#[tokio::test]
async fn permanent_4xx_is_recorded_not_retried_and_retry_after_is_honoured() {
    let s = setup("throttle", "reject").await;
    let receivers = s.config.raw.receivers.clone();
    let (ops, oversight): (Vec<String>, Vec<String>) = {
        let o = s.outbox.lock().unwrap();
        let ops = o.pending().filter(|e| e.receiver == "ops").map(|e| e.key.clone()).collect();
        let ov = o.pending().filter(|e| e.receiver == "oversight").map(|e| e.key.clone()).collect();
        (ops, ov)
    };
    assert!(!ops.is_empty() && !oversight.is_empty());
    let mut d = Dispatcher::new(s.outbox.clone(), None).with_seed(9);
    let t0 = wall_ms();
    let mut now = t0;
    for _ in 0..200 {
        if s.outbox.lock().unwrap().depth() == 0 {
            break;
        }
        s.hook.lock().unwrap().now = now / 1000;
        now = d.run_due(&receivers, now).await.unwrap_or(now + 1000).max(now + 1);
    }
    assert_eq!(s.outbox.lock().unwrap().depth(), 0);
    let h = s.hook.lock().unwrap();
    for k in &ops {
        let times = &h.attempts[&("reject".to_string(), k.clone())];
        assert_eq!(times.len(), 1, "a 422 is not retried: {k}");
    }
    let o = s.outbox.lock().unwrap();
    assert_eq!(o.results.get(&("ops".to_string(), "failed")).copied(), Some(ops.len() as u64));
    // Every oversight notification: a 429 with Retry-After: 120, then delivered exactly 120 s later
    // (resolved ones wait for their firing, so only the first of a breach starts at t0).
    for k in &oversight {
        let times = &h.attempts[&("throttle".to_string(), k.clone())];
        assert_eq!(times.len(), 2, "{k}: {times:?}");
        assert_eq!(times[1] - times[0], 120, "Retry-After honoured for {k}");
        assert_eq!(h.acked[&("throttle".to_string(), k.clone())], 1);
    }
    assert_eq!(o.results.get(&("oversight".to_string(), "delivered")).copied(), Some(oversight.len() as u64));
}

/// The Python verifier documented in README.md accepts ddtwatch's signatures and rejects a
/// tampered body (the snippet is run as written).
#[test]
fn readme_python_verifier_agrees_with_the_signer() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("### Verifying ddtwatch webhooks").expect("README section")..];
    let start = section.find("```python\n").unwrap() + "```python\n".len();
    let snippet = &section[start..start + section[start..].find("```").unwrap()];
    let now = wall_ms() / 1000;
    let body = br#"{"condition":"threshold_floor","state":"firing"}"#;
    let id = "ddtwatch/lfr-1/threshold_floor/2026-04-25T09:00:01Z/firing";
    for secret in [SECRET, "a plain secret"] {
        let sig = webhook::sign(secret, id, now, body);
        let script = format!(
            "{snippet}\nh = {{'webhook-id': {id:?}, 'webhook-timestamp': '{now}', 'webhook-signature': {sig:?}}}\nprint(verify({secret:?}, h, b{body:?}), verify({secret:?}, h, b{tampered:?}))\n",
            body = String::from_utf8_lossy(body),
            tampered = String::from_utf8_lossy(body).replace("firing", "resolved"),
        );
        let out = std::process::Command::new("python3").arg("-c").arg(&script).output().expect("python3");
        assert!(out.status.success(), "{}\n{script}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True False", "{script}");
    }
}

/// Two breaches of one condition: breach 1's `firing` fails once, so its `resolved` waits — and
/// so does breach 2's `firing`, which used to overtake them (an Alertmanager then showed the
/// condition resolved while it was firing). Deliveries keep the order of transitions per
/// receiver and condition.
#[tokio::test]
async fn a_later_breach_never_overtakes_an_earlier_undelivered_transition() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let (hook, base) = start_receiver().await;
    let config = config(&base, &secret_file, "ordered", "ops");
    let outbox: SharedOutbox = Arc::new(Mutex::new(Outbox::open(&dir.path().join("outbox.jsonl"), 0).unwrap()));
    let keys = [
        "ddtwatch/lfr-a/camera_silence/cam-2/2026-04-25T09:00:00Z/firing",
        "ddtwatch/lfr-a/camera_silence/cam-2/2026-04-25T09:00:00Z/resolved",
        "ddtwatch/lfr-a/camera_silence/cam-2/2026-04-25T10:00:00Z/firing",
    ];
    let t0 = wall_ms();
    for k in keys {
        let body = serde_json::json!({"deployment_id": "lfr-a", "condition": "camera_silence/cam-2", "state": k.rsplit('/').next()});
        outbox.lock().unwrap().enqueue("oversight", k, body, t0).unwrap();
    }
    hook.lock().unwrap().fail_once.insert(keys[0].to_string());
    let mut d = Dispatcher::new(outbox.clone(), None).with_seed(3);
    let receivers = config.raw.receivers.clone();
    hook.lock().unwrap().now = t0 / 1000;
    d.run_due(&receivers, t0).await;
    assert!(
        hook.lock().unwrap().order.is_empty(),
        "nothing may overtake the failed firing: {:?}",
        hook.lock().unwrap().order
    );
    // Later, past any retry backoff: all three, in order.
    let later = t0 + 3_600_000;
    hook.lock().unwrap().now = later / 1000;
    for _ in 0..3 {
        d.run_due(&receivers, later).await;
    }
    assert_eq!(hook.lock().unwrap().order, keys.to_vec());
}

/// A black-hole receiver: accepts connections, reads, never answers. Reports when a request
/// arrives and when the client gives up on a connection (closes it).
async fn start_black_hole() -> (String, Arc<Mutex<Vec<std::time::Instant>>>, tokio::sync::mpsc::UnboundedReceiver<()>) {
    use tokio::io::AsyncReadExt;
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", hole.local_addr().unwrap());
    let closed: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
    let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel();
    let closed2 = closed.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = hole.accept().await.unwrap();
            let (closed, tx) = (closed2.clone(), arrived_tx.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if sock.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    let _ = tx.send(());
                    while sock.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                }
                closed.lock().unwrap().push(std::time::Instant::now());
            });
        }
    });
    (url, closed, arrived)
}

/// A receiver that accepts connections and never answers (a black hole) beside a healthy one:
/// the healthy receiver gets all its notifications while the black hole's first request is still
/// hanging (receivers are served concurrently; before, they went one at a time).
#[tokio::test]
async fn a_black_hole_receiver_delays_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let (hook, base) = start_receiver().await;
    let (hole_url, closed, _arrived) = start_black_hole().await;
    let text = ddtwatch::config::DEMO_CONFIG.replace(
        "  oversight: {kind: log}\n  ops: {kind: log}",
        &format!(
            "  oversight: {{kind: webhook, url: \"{hole_url}\", secret_file: {f}, timeout: 2s}}\n  ops: {{kind: webhook, url: \"{base}/hook/healthy\", secret_file: {f}}}",
            f = secret_file.display()
        ),
    );
    let config = Config::from_yaml(&text, None).unwrap();
    let outbox: SharedOutbox = Arc::new(Mutex::new(Outbox::open(&dir.path().join("outbox.jsonl"), 0).unwrap()));
    let t0 = wall_ms();
    // The black hole's notifications first (one condition's transitions), then five for ops.
    for i in 0..3 {
        let key = format!("ddtwatch/lfr-a/threshold_floor/2026-04-25T0{i}:00:00Z/firing");
        outbox.lock().unwrap().enqueue("oversight", &key, serde_json::json!({"n": i}), t0).unwrap();
    }
    let ops_keys: Vec<String> =
        (0..5).map(|i| format!("ddtwatch/lfr-a/cond-{i}/2026-04-25T09:00:00Z/firing")).collect();
    for k in &ops_keys {
        outbox.lock().unwrap().enqueue("ops", k, serde_json::json!({"k": k}), t0).unwrap();
    }
    hook.lock().unwrap().now = t0 / 1000;
    let mut d = Dispatcher::new(outbox.clone(), None).with_seed(1);
    d.run_due(&config.raw.receivers, t0).await;
    // The client gave up on the black hole (timeout 2 s); its connection closes in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while closed.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the black hole's connection was never closed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let h = hook.lock().unwrap();
    assert_eq!(h.order, ops_keys, "every ops notification delivered, in order");
    let first_close = closed.lock().unwrap()[0];
    let last_ack = *h.acked_at.last().unwrap();
    assert!(last_ack < first_close, "the healthy receiver waited for the black hole");
    // The black hole's notifications wait for a retry, in order (the first is scheduled, the
    // others blocked behind it).
    assert_eq!(outbox.lock().unwrap().pending().filter(|e| e.receiver == "oversight").count(), 3);
}

/// Alert bodies an Alertmanager stand-in received, one entry per POST.
type Posts = Arc<Mutex<Vec<Vec<Value>>>>;

async fn start_alertmanager_stand_in() -> (Posts, String) {
    let posts: Posts = Arc::default();
    let app = Router::new()
        .route(
            "/api/v2/alerts",
            post(|State(p): State<Posts>, body: Bytes| async move {
                p.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                StatusCode::OK
            }),
        )
        .with_state(posts.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (posts, base)
}

/// An Alertmanager keeps one alert per label set: of an identity's undelivered transitions only
/// the latest is sent, the earlier ones are superseded (journaled, counted) — and a superseded
/// `resolved` closes its breach, so it is not re-sent, even after a restart. Re-sends of open
/// breaches go in one request.
#[tokio::test]
async fn alertmanager_gets_only_the_latest_state_of_each_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (posts, base) = start_alertmanager_stand_in().await;
    let text = ddtwatch::config::DEMO_CONFIG.replace(
        "  oversight: {kind: log}\n  ops: {kind: log}",
        &format!("  oversight: {{kind: alertmanager, url: \"{base}\", resend: 1m}}\n  ops: {{kind: log}}"),
    );
    let config = Config::from_yaml(&text, None).unwrap();
    let journal = dir.path().join("outbox.jsonl");
    let outbox: SharedOutbox = Arc::new(Mutex::new(Outbox::open(&journal, 0).unwrap()));
    let t0 = wall_ms();
    let note = |cond: &str, state: &str, started: &str| {
        serde_json::json!({"deployment_id": "lfr-a", "condition": cond, "state": state, "started_at": started,
                           "at": started, "severity": "critical", "kind": "state"})
    };
    let (b1, b2) = ("2026-04-25T09:00:00Z", "2026-04-25T10:00:00Z");
    for (cond, state, started) in [("a", "firing", b1), ("a", "resolved", b1), ("b", "firing", b1), ("a", "firing", b2)]
    {
        let key = format!("ddtwatch/lfr-a/{cond}/{started}/{state}");
        outbox.lock().unwrap().enqueue("oversight", &key, note(cond, state, started), t0).unwrap();
    }
    let mut d = Dispatcher::new(outbox.clone(), None).with_seed(5);
    d.run_due(&config.raw.receivers, t0).await;
    let sent: Vec<(String, String)> = posts
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .map(|a| (a["labels"]["alertname"].as_str().unwrap().to_string(), a["startsAt"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(sent, vec![("b".to_string(), b1.to_string()), ("a".to_string(), b2.to_string())]);
    {
        let o = outbox.lock().unwrap();
        assert_eq!(o.depth(), 0);
        assert_eq!(o.results.get(&("oversight".to_string(), "superseded")), Some(&2));
        assert_eq!(o.results.get(&("oversight".to_string(), "delivered")), Some(&2));
    }
    // After a restart: nothing pending, and exactly the two open breaches are re-sent — in one
    // request, a minute later.
    let outbox: SharedOutbox = Arc::new(Mutex::new(Outbox::open(&journal, 0).unwrap()));
    assert_eq!(outbox.lock().unwrap().depth(), 0);
    let open: Vec<String> = outbox.lock().unwrap().active().map(|e| e.key.clone()).collect();
    assert_eq!(open, vec![format!("ddtwatch/lfr-a/a/{b2}/firing"), format!("ddtwatch/lfr-a/b/{b1}/firing")]);
    posts.lock().unwrap().clear();
    let mut d = Dispatcher::new(outbox.clone(), None).with_seed(5);
    d.run_due(&config.raw.receivers, t0 + 60_000).await;
    let p = posts.lock().unwrap();
    assert_eq!(p.len(), 1, "one request for every due re-send: {p:?}");
    assert_eq!(p[0].len(), 2);
}

/// `run`'s per-receiver loops: while a black hole holds a request (for up to its 30 s timeout),
/// a notification enqueued for a healthy receiver is delivered at once, not after the black
/// hole's pass ends (before: every pass waited for its slowest receiver).
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_receiver_does_not_hold_back_later_notifications_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let (hook, base) = start_receiver().await;
    let (hole_url, _closed, mut arrived) = start_black_hole().await;
    let text = ddtwatch::config::DEMO_CONFIG.replace(
        "  oversight: {kind: log}\n  ops: {kind: log}",
        &format!(
            "  oversight: {{kind: webhook, url: \"{hole_url}\", secret_file: {f}, timeout: 30s}}\n  ops: {{kind: webhook, url: \"{base}/hook/healthy\", secret_file: {f}}}",
            f = secret_file.display()
        ),
    );
    let receivers = Config::from_yaml(&text, None).unwrap().raw.receivers;
    let outbox: SharedOutbox = Arc::new(Mutex::new(Outbox::open(&dir.path().join("outbox.jsonl"), 0).unwrap()));
    let wake = Arc::new(tokio::sync::Notify::new());
    hook.lock().unwrap().now = wall_ms() / 1000;
    let health = ddtwatch::health::Health::new();
    let task = health.task("dispatcher", std::time::Duration::from_secs(600));
    let d = Dispatcher::new(outbox.clone(), None);
    let dispatcher = tokio::spawn(ddtwatch::notify::dispatch::run(
        d,
        move || receivers.clone(),
        wake.clone(),
        wall_ms,
        task,
        health.clone(),
    ));
    let enqueue = |receiver: &str, key: &str| {
        outbox.lock().unwrap().enqueue(receiver, key, serde_json::json!({"k": key}), wall_ms()).unwrap();
    };
    enqueue("oversight", "ddtwatch/lfr-a/c/2026-04-25T09:00:00Z/firing");
    enqueue("ops", "ddtwatch/lfr-a/c/2026-04-25T09:00:00Z/firing");
    tokio::time::timeout(std::time::Duration::from_secs(20), arrived.recv())
        .await
        .expect("the black hole never got its request");
    // The black hole now holds its request; a new notification for ops must not wait for it.
    let later = "ddtwatch/lfr-a/d/2026-04-25T09:05:00Z/firing";
    enqueue("ops", later);
    let start = std::time::Instant::now();
    while !hook.lock().unwrap().order.iter().any(|k| k == later) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(15),
            "the healthy receiver's new notification waited for the black hole"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(outbox.lock().unwrap().pending().filter(|e| e.receiver == "oversight").count(), 1);
    // Each receiver's loop has its own heartbeat, named on /healthz if it stalls.
    let names: Vec<String> = health.tasks().iter().map(|t| t.name.clone()).collect();
    for n in ["dispatcher", "dispatcher oversight", "dispatcher ops"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    dispatcher.abort();
}

/// A backoff in force carries over to the transition that supersedes the one it was set for:
/// after an Alertmanager's `503` with `Retry-After: 120`, a later transition of the same alert is
/// not sent before the 120 s are up (before: superseding dropped the wait).
#[tokio::test]
async fn supersession_keeps_the_alertmanagers_retry_after() {
    let posts: Posts = Arc::default();
    let app = Router::new()
        .route(
            "/api/v2/alerts",
            post(|State(p): State<Posts>, body: Bytes| async move {
                let mut p = p.lock().unwrap();
                p.push(serde_json::from_slice(&body).unwrap());
                if p.len() == 1 {
                    (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "120")])
                } else {
                    (StatusCode::OK, [("retry-after", "0")])
                }
            }),
        )
        .with_state(posts.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let text = ddtwatch::config::DEMO_CONFIG.replace(
        "  oversight: {kind: log}\n  ops: {kind: log}",
        &format!("  oversight: {{kind: alertmanager, url: \"{base}\"}}\n  ops: {{kind: log}}"),
    );
    let receivers = Config::from_yaml(&text, None).unwrap().raw.receivers;
    let outbox: SharedOutbox = Arc::new(Mutex::new(Outbox::open(&dir.path().join("outbox.jsonl"), 0).unwrap()));
    let note = |state: &str| serde_json::json!({"deployment_id": "d", "condition": "a", "state": state, "started_at": "2026-04-25T09:00:00Z"});
    let t0 = wall_ms();
    outbox
        .lock()
        .unwrap()
        .enqueue("oversight", "ddtwatch/d/a/2026-04-25T09:00:00Z/firing", note("firing"), t0)
        .unwrap();
    let mut d = Dispatcher::new(outbox.clone(), None).with_seed(2);
    d.run_due(&receivers, t0).await;
    assert_eq!(posts.lock().unwrap().len(), 1, "the first attempt, answered 503 Retry-After: 120");
    outbox
        .lock()
        .unwrap()
        .enqueue("oversight", "ddtwatch/d/a/2026-04-25T09:00:00Z/resolved", note("resolved"), t0 + 1_000)
        .unwrap();
    d.run_due(&receivers, t0 + 60_000).await;
    assert_eq!(posts.lock().unwrap().len(), 1, "nothing sent inside the receiver's Retry-After");
    assert_eq!(outbox.lock().unwrap().depth(), 1, "the firing is superseded, the resolved waits");
    d.run_due(&receivers, t0 + 121_000).await;
    let p = posts.lock().unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[1][0]["labels"]["alertname"], "a");
    assert_eq!(outbox.lock().unwrap().depth(), 0, "the resolved delivered after the wait");
}
