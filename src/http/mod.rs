//! HTTP: `/metrics`, `/healthz`, `/readyz` and the JSON API (INTERFACES.md, HTTP).
//!
//! Errors are `{"error": "...", "detail": ...}` with the right status.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::DeploymentSummary;
use crate::event::{format_ts, parse_value};
use crate::ingest::{Ingest, Pipeline};
use crate::rules::BreachState;
use crate::telemetry::ProcessState;

pub mod limits;

#[derive(Clone)]
pub struct AppState {
    pub pipeline: Pipeline,
    pub registry: Arc<Registry>,
    pub process: Arc<ProcessState>,
    /// Bearer token for POST /api/v1/events and the reads of /api/v1/*; None disables POST
    /// (and reads, unless `anonymous_reads`).
    pub token: Option<Arc<str>>,
    /// GET /api/v1/* without a token (`http.anonymous_reads`; the demo).
    pub anonymous_reads: bool,
    pub max_body_bytes: usize,
}

pub use crate::time::wall_clock_ms;

pub fn router(state: AppState) -> Router {
    // Reads of the API need the bearer token (or `anonymous_reads`): they carry per-group
    // demographic tables and the authorisation.
    let reads = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/deployments", get(deployments))
        .route("/api/v1/deployments/{id}", get(deployment))
        .route("/api/v1/deployments/{id}/report", get(report))
        .route("/api/v1/breaches", get(breaches))
        .route("/api/v1/config", get(config))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authorise_read));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/events", post(post_events))
        .merge(reads)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found", Value::Null) })
        .with_state(state)
}

/// The bearer token in an `Authorization` header (the scheme is case-insensitive, RFC 7235).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token.trim_start())
    })
}

async fn authorise_read(State(s): State<AppState>, req: Request, next: axum::middleware::Next) -> Response {
    if s.anonymous_reads {
        return next.run(req).await;
    }
    let Some(token) = &s.token else {
        return error(
            StatusCode::FORBIDDEN,
            "API reads are disabled",
            json!(
                "set http.token_file or http.token_env (reads take that bearer token), or http.anonymous_reads: true"
            ),
        );
    };
    if !bearer(req.headers()).is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token", Value::Null);
    }
    next.run(req).await
}

fn error(status: StatusCode, msg: &str, detail: Value) -> Response {
    (status, Json(json!({"error": msg, "detail": detail}))).into_response()
}

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (format, ctype) = if openmetrics {
        (crate::telemetry::Format::OpenMetrics, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    } else {
        (crate::telemetry::Format::Prometheus, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)
    };
    match crate::telemetry::encode(&s.registry, &s.pipeline.engine, format) {
        Ok(body) => ([(header::CONTENT_TYPE, ctype)], body).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed", Value::Null),
    }
}

/// 200 while every long-lived task runs and reports progress; 503 naming each task that stopped
/// or stalled (INTERFACES.md: "200 while the process loop is alive").
async fn healthz(State(s): State<AppState>) -> Response {
    let problems = s.process.health.problems();
    if problems.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let names: Vec<&str> = problems.iter().map(|p| p.task.as_str()).collect();
        error(StatusCode::SERVICE_UNAVAILABLE, &format!("unhealthy: {}", names.join(", ")), json!(problems))
    }
}

/// Sources (up, errors by kind, the last error's cause) and tasks (healthy or why not).
async fn status(State(s): State<AppState>) -> Response {
    let problems = s.process.health.problems();
    let tasks: Vec<Value> = s
        .process
        .health
        .tasks()
        .iter()
        .map(|t| {
            let problem = problems.iter().find(|p| p.task == t.name).map(|p| p.problem.clone());
            json!({"task": t.name, "healthy": problem.is_none(), "problem": problem})
        })
        .collect();
    let sources: Vec<Value> = s.process.health.sources().iter().map(|h| h.to_json()).collect();
    Json(json!({"sources": sources, "tasks": tasks, "ready": s.process.ready.load(Ordering::Relaxed)})).into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.process.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "not ready", json!("config loading or state restoring"))
    }
}

async fn deployments(State(s): State<AppState>) -> Response {
    let engine = s.pipeline.engine.lock().unwrap_or_else(|p| p.into_inner());
    let list: Vec<Value> = engine
        .deployments()
        .map(|d| {
            let sum = DeploymentSummary::of(d);
            let firing: Vec<&str> = sum
                .conditions
                .iter()
                .filter(|c| c.state == BreachState::Firing.as_str())
                .map(|c| c.id.as_str())
                .collect();
            json!({
                "deployment_id": sum.deployment_id,
                "system": sum.system,
                "phase": sum.phase,
                "first_ts": sum.first_ts.map(format_ts),
                "last_ts": sum.last_ts.map(format_ts),
                "counters": sum.counters,
                "firing": firing,
            })
        })
        .collect();
    Json(json!({"deployments": list, "retired": engine.retired_len(), "engine_clock": engine.now().map(format_ts)}))
        .into_response()
}

/// A deployment's summary: live (or retired and kept in memory) from the engine, else the final
/// summary a retirement left in `state_dir/records/<id>.json`; plus where the audit log is.
fn summary_of(s: &AppState, id: &str) -> Option<(Value, Option<std::path::PathBuf>)> {
    let (live, state_dir) = {
        let engine = s.pipeline.engine.lock().unwrap_or_else(|p| p.into_inner());
        let live = engine.deployment_summary(id).map(|sum| serde_json::to_value(sum).unwrap_or_default());
        (live, engine.config().raw.state_dir.as_ref().map(crate::config::StateDir::new))
    };
    let audit = state_dir.as_ref().map(|d| d.audit_log());
    if let Some(v) = live {
        return Some((v, audit));
    }
    let path = state_dir?.record(id)?;
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some((v, audit)),
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "a retired deployment's record is not JSON");
            None
        }
    }
}

async fn deployment(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match summary_of(&s, &id) {
        Some((d, _)) => Json(d).into_response(),
        None => error(StatusCode::NOT_FOUND, "unknown deployment", json!(id)),
    }
}

#[derive(Deserialize)]
struct ReportQuery {
    format: Option<String>,
}

/// The deployment record; breaches name their notifications from `state_dir/audit.log` if any.
async fn report(State(s): State<AppState>, Path(id): Path<String>, Query(q): Query<ReportQuery>) -> Response {
    let f = q.format.as_deref().unwrap_or("md");
    let Some(format) = crate::report::Format::parse(f) else {
        return error(StatusCode::BAD_REQUEST, "format must be md, json or csv", json!(f));
    };
    let Some((summary, audit_path)) = summary_of(&s, &id) else {
        return error(StatusCode::NOT_FOUND, "unknown deployment", json!(id));
    };
    // Reading the audit log is the costly part: a few at a time, the others told to retry.
    let Ok(_permit) = REPORTS.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(
                json!({"error": "busy", "detail": format!("at most {MAX_CONCURRENT_REPORTS} reports at once; retry")}),
            ),
        )
            .into_response();
    };
    let audit = match audit_path {
        Some(p) if p.exists() => tokio::task::spawn_blocking(move || crate::audit::read_notifications(&p, &id))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let body = format.render(&crate::report::build(&summary, &audit));
    ([(axum::http::header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// Report requests served at once (each streams the audit log).
const MAX_CONCURRENT_REPORTS: usize = 2;
static REPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_REPORTS);

#[derive(Deserialize)]
struct BreachQuery {
    state: Option<String>,
    deployment: Option<String>,
}

async fn breaches(State(s): State<AppState>, Query(q): Query<BreachQuery>) -> Response {
    let which = q.state.as_deref().unwrap_or("all");
    if !matches!(which, "firing" | "resolved" | "all") {
        return error(StatusCode::BAD_REQUEST, "state must be firing, resolved or all", json!(which));
    }
    let engine = s.pipeline.engine.lock().unwrap_or_else(|p| p.into_inner());
    let list: Vec<_> = engine
        .breaches()
        .iter()
        .filter(|b| q.deployment.as_ref().is_none_or(|d| &b.deployment_id == d))
        .filter(|b| match which {
            "firing" => b.resolved_at.is_none(),
            "resolved" => b.resolved_at.is_some(),
            _ => true,
        })
        .cloned()
        .collect();
    Json(json!({"breaches": list})).into_response()
}

async fn config(State(s): State<AppState>) -> Response {
    let engine = s.pipeline.engine.lock().unwrap_or_else(|p| p.into_inner());
    let c = engine.config();
    let profiles: serde_json::Map<String, Value> =
        c.profiles.iter().map(|(k, v)| (k.clone(), serde_json::to_value(&**v).unwrap_or_default())).collect();
    Json(json!({"config": c.redacted(), "effective_profiles": profiles, "config_hash": c.hash})).into_response()
}

async fn post_events(State(s): State<AppState>, headers: HeaderMap, req: Request<Body>) -> Response {
    let Some(token) = &s.token else {
        return error(
            StatusCode::FORBIDDEN,
            "event ingestion over HTTP is disabled",
            json!("set http.token_file or http.token_env"),
        );
    };
    let presented = bearer(&headers);
    if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token", Value::Null);
    }
    let body = match to_bytes(req.into_body(), s.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large", json!({"max_body_bytes": s.max_body_bytes}));
        }
    };
    let receive = s.pipeline.now();
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let pipeline = s.pipeline.clone();
    let result = tokio::task::spawn_blocking(move || {
        if first == Some(b'[') {
            match serde_json::from_slice::<Vec<Value>>(&body) {
                Ok(items) => {
                    let msgs = items.into_iter().map(|v| {
                        let raw = serde_json::to_vec(&v).unwrap_or_default();
                        // The per-event limit holds inside an array as on a line of its own.
                        if raw.len() > crate::event::MAX_EVENT_BYTES {
                            let invalid = crate::event::Invalid {
                                reason: crate::event::Reason::TooLarge,
                                detail: format!(
                                    "{} bytes exceeds the {} byte limit",
                                    raw.len(),
                                    crate::event::MAX_EVENT_BYTES
                                ),
                                deployment_id: v.get("deployment_id").and_then(Value::as_str).map(String::from),
                                system: None,
                            };
                            return Ingest::Parsed(Box::new(Err(invalid)), raw);
                        }
                        Ingest::Parsed(Box::new(parse_value(v)), raw)
                    });
                    return Ok(pipeline.ingest(msgs, receive));
                }
                Err(e) => return Err(format!("body is not a JSON array of events: {e}")),
            }
        }
        let lines = body.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace));
        Ok(pipeline.ingest(lines.map(Ingest::Raw), receive))
    })
    .await;
    match result {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(msg)) => error(StatusCode::BAD_REQUEST, "malformed body", json!(msg)),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "ingest task failed", Value::Null),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
