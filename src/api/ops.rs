//! Operations endpoints: liveness, readiness, own metrics, and the fallbacks.

use super::error::{ApiError, problem_response};
use crate::app::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::{Duration, Instant};

/// How long a readiness check waits for a dependency.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the database and the bus answer, else 503 naming the one that
/// does not. A load balancer takes the replica out while it is not ready.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = timed_check(async { state.store.ping().await.map_err(|e| e.to_string()) });
    let bus = timed_check(async { state.bus.ping().await.map_err(|e| e.to_string()) });
    let (store, bus) = tokio::join!(store, bus);
    let receiving = state.bus.is_receiving();
    let checks = json!({
        "store": check_json(&store),
        "bus": check_json(&bus),
        "bus_subscription": if receiving { "up" } else { "down" },
    });
    let failing: Vec<String> = [("store", &store), ("bus", &bus)]
        .into_iter()
        .filter_map(|(name, (result, _))| result.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    if failing.is_empty() {
        return axum::Json(
            json!({"status": "ready", "replica": state.replica_id(), "checks": checks}),
        )
        .into_response();
    }
    // A problem with the per-dependency detail as an extension member.
    let body = json!({
        "type": "/problems/unavailable",
        "title": "Service Unavailable",
        "status": 503,
        "code": "unavailable",
        "detail": format!("not ready: {}", failing.join("; ")),
        "checks": checks,
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONTENT_TYPE, "application/problem+json"),
            (header::RETRY_AFTER, "2"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn timed_check(
    check: impl Future<Output = Result<(), String>>,
) -> (Result<(), String>, Duration) {
    let started = Instant::now();
    let result = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
    };
    (result, started.elapsed())
}

fn check_json((result, took): &(Result<(), String>, Duration)) -> serde_json::Value {
    match result {
        Ok(()) => json!({"status": "up", "response_ms": took.as_secs_f64() * 1000.0}),
        Err(e) => json!({"status": "down", "response_ms": took.as_secs_f64() * 1000.0, "error": e}),
    }
}

/// `GET /metrics`: this process's own metrics in Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> Response {
    problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        Some("method not allowed on this resource".into()),
        Vec::new(),
    )
}
