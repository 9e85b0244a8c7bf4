//! `POST /api/v1/metrics`: batches of samples over HTTP.

use super::{IngestError, IngestOutcome, MetricBatch, MetricBatchRef, decode_metrics};
use crate::api::{ApiError, Problem};
use crate::app::AppState;
use crate::auth::{Caller, Role};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use std::time::Duration;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest_batch))
}

/// Stores a batch of samples for the caller's tenant.
///
/// Each sample is checked on its own: the answer lists the index and reason of every
/// sample refused, and the others are stored. A batch resent with the same `batch_id`
/// is answered with the first outcome (`duplicate: true`) and stored once.
#[utoipa::path(
    post,
    path = "/api/v1/metrics",
    tag = "metrics",
    request_body = MetricBatch,
    responses(
        (status = 200, description = "What was stored and why each refused sample was refused", body = IngestOutcome),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only agent and admin tokens may ingest", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`batch_too_large` (over 10 000 samples), `validation` (bad shape or batch_id)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`series_limit`: the tenant's active series limit would be passed; `rate_limited`", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn ingest_batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestOutcome>, ApiError> {
    if !matches!(caller.role, Role::Agent | Role::Admin) {
        return Err(ApiError::Forbidden(format!(
            "ingesting metrics requires an agent or admin token (token has {})",
            caller.role
        )));
    }
    check_json(&headers)?;
    // This route has its own body limit: a full batch is larger than other requests.
    let limit = state.config.metrics.ingest_body_limit_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })?;
    let batch: MetricBatchRef<'_> = crate::api::json::parse(&bytes)?;
    let max = state.ingest.limits().max_batch;
    if batch.metrics.len() > max {
        return Err(batch_too_large(max, batch.metrics.len()));
    }
    let (samples, undecodable) = decode_metrics(&batch.metrics);
    let batch_id = batch.batch_id;
    drop(bytes);
    let outcome = state
        .ingest
        .write(
            &caller.tenant,
            batch_id.as_deref(),
            samples,
            undecodable,
            chrono::Utc::now(),
        )
        .await
        .map_err(ApiError::from)?;
    Ok(Json(outcome))
}

fn batch_too_large(max: usize, got: usize) -> ApiError {
    ApiError::Unprocessable {
        code: "batch_too_large",
        detail: format!("a batch holds at most {max} samples, this one has {got}"),
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::BatchTooLarge { max, got } => batch_too_large(max, got),
            IngestError::BadBatchId => ApiError::field("batch_id", "must be 1-128 characters"),
            e @ IngestError::SeriesLimit { .. } => ApiError::RateLimited {
                code: "series_limit",
                detail: e.to_string(),
                // Series stop being active an hour or so after their last sample.
                retry_after: Duration::from_secs(60),
            },
            IngestError::Store(e) => ApiError::from(e),
        }
    }
}

fn check_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let mime = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "expected Content-Type: application/json, got '{mime}'"
        )))
    }
}

/// Whether reading a body failed because it passed the limit (http-body-util's
/// `LengthLimitError`, which axum does not re-export, somewhere in the chain).
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.to_string() == "length limit exceeded" {
            return true;
        }
        source = e.source();
    }
    false
}
