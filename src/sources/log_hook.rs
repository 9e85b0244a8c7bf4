//! `POST /api/v1/sources/{id}/kumomta/logs`: kumod's log hook (one record per request from
//! a webhook hook, an array from a batching hook).
//!
//! The caller is kumod, not a person: it authenticates with the source's own bearer token
//! (only its SHA-256 is stored). A body is taken whole or refused whole (422, nothing
//! stored), so the hook's retry resends it whole. Each record not seen before adds one to
//! its per-queue counter (`kumomta_log_bounced_total{queue, source}`, …, stored as series so
//! that rules work from log data) and is published as `message:status`; a record seen
//! before (the hook retried) is acknowledged and counted nowhere.

use super::api::parse_id;
use super::repo::{self, LogCount};
use crate::api::{ApiError, ApiJson, FieldError};
use crate::app::AppState;
use crate::auth::{AuthError, bearer_token};
use crate::ingest::SampleIn;
use crate::sources::kumomta::{LogRecord, parse_log_body};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chrono::Utc;
use serde::Serialize;

/// What the hook is told.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogHookOutcome {
    /// Records in the body.
    pub received: usize,
    /// Records counted now.
    pub accepted: usize,
    /// Records already counted before (resent).
    pub duplicates: usize,
}

/// Receives KumoMTA log records for a kumomta source.
#[utoipa::path(
    post,
    path = "/api/v1/sources/{id}/kumomta/logs",
    tag = "sources",
    params(("id" = String, Path)),
    request_body(content = serde_json::Value, description = "One kumod log record, or an array of them. \
        Authenticated by the source's own log-hook token (`Authorization: Bearer <token>`), not a user's JWT."),
    responses(
        (status = 200, body = LogHookOutcome),
        (status = 401, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 413, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::api::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn receive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<ApiJson<LogHookOutcome>, ApiError> {
    let refused = || {
        ApiError::Unauthorized(AuthError::Invalid(
            "not this source's log-hook token".into(),
        ))
    };
    // An unknown id and a wrong token look alike: the answer says nothing about which
    // sources exist.
    let id = parse_id(&id).map_err(|_| refused())?;
    let token = bearer_token(&headers).ok_or(ApiError::Unauthorized(AuthError::Missing))?;
    let (tenant, name, kind, digest) = repo::log_hook_target(&state.store, id)
        .await?
        .ok_or_else(refused)?;
    let matches = digest.is_some_and(|digest| same(&digest, &repo::token_digest(token)));
    if kind != "kumomta" || !matches {
        return Err(refused());
    }

    let limit = state.config.server.body_limit_bytes;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit })?;
    let records = parse_log_body(&bytes)
        .map_err(|e| ApiError::Validation(vec![FieldError::new(e.path, e.message)]))?;
    let max = state.config.sources.max_log_records_per_request;
    if records.len() > max {
        return Err(ApiError::field(
            "body",
            format!("at most {max} records per request"),
        ));
    }

    let now = Utc::now();
    let keys: Vec<String> = records.iter().map(LogRecord::dedup_key).collect();
    let queues: Vec<String> = records
        .iter()
        .map(|r| r.counter_labels().remove("queue").unwrap_or_default())
        .collect();
    let counts: Vec<LogCount<'_>> = records
        .iter()
        .zip(&keys)
        .zip(&queues)
        .map(|((record, key), queue)| LogCount {
            dedup_key: key,
            metric: record.counter_name(),
            queue,
        })
        .collect();
    let (fresh, counters) =
        repo::count_log_records(&state.store, &tenant, id, &counts, now).await?;

    // The counters' new values, as samples; the database holds the truth, so a lost
    // write is made good by the next record of that queue.
    let now_ms = now.timestamp_millis();
    let samples: Vec<SampleIn> = counters
        .into_iter()
        .map(|(metric, queue, count)| {
            let mut labels = crate::series::Labels::new();
            labels.insert("source".into(), name.clone());
            if !queue.is_empty() {
                labels.insert("queue".into(), queue);
            }
            SampleIn {
                name: metric,
                labels,
                value: count as f64,
                timestamp_ms: Some(now_ms),
            }
        })
        .collect();
    if !samples.is_empty()
        && let Err(e) = state
            .ingest
            .write(&tenant, None, samples, Vec::new(), now)
            .await
    {
        tracing::warn!(source = %id, error = %e, "could not store log-hook counters");
    }

    let accepted = fresh.iter().filter(|new| **new).count();
    for (record, _) in records.iter().zip(&fresh).filter(|(_, new)| **new) {
        let mut data = record.event_data();
        data["source"] = serde_json::json!(name);
        data["source_id"] = serde_json::json!(id);
        if let Err(e) = state
            .bus
            .publish_json(&tenant, "messages", "message:status", &data)
            .await
        {
            tracing::warn!(source = %id, error = %e, "could not publish message:status");
        }
    }
    Ok(ApiJson(LogHookOutcome {
        received: records.len(),
        accepted,
        duplicates: records.len() - accepted,
    }))
}

/// Compares two digests in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
