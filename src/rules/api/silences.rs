//! `/api/v1/silences`: silences (label matchers + a fixed time window) and maintenance
//! windows (the same with a weekly recurrence). Viewers read; operators create and
//! delete.

use super::rules::parse_id;
use crate::api::paging::{Page, PageParams};
use crate::api::{ApiError, ApiJson, FieldError, Problem};
use crate::app::AppState;
use crate::auth::{Operator, Viewer};
use crate::rules::silence::{
    MAX_COMMENT_CHARS, MAX_MATCHERS, MatcherView, Recurrence, SilenceRow, SilenceView,
};
use crate::series::Matcher;
use crate::sql;
use crate::store::DbTime;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::types::Json;
use std::time::Duration;
use uuid::Uuid;

/// The longest a fixed silence may last.
const MAX_SILENCE: chrono::Duration = chrono::Duration::days(366);
/// How long a maintenance window recurs when no end is given.
const DEFAULT_MAINTENANCE_SPAN: chrono::Duration = chrono::Duration::days(3650);

/// Body of `POST /api/v1/silences`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceInput {
    /// Alerts whose labels match all of these are muted (`=`, `!=`, `=~`, `!~`).
    #[schema(value_type = Vec<MatcherView>)]
    pub matchers: Vec<Matcher>,
    /// Default: now.
    pub starts_at: Option<DateTime<Utc>>,
    /// A silence needs `ends_at` or `duration`; a maintenance window recurs until
    /// `ends_at` (default: ten years).
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::rules::model::duration_format::option")]
    #[schema(value_type = Option<String>, example = "2h")]
    pub duration: Option<Duration>,
    /// Makes this a maintenance window: muted only on these weekdays and times.
    pub recurrence: Option<Recurrence>,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SilenceQuery {
    /// Only silences that have not ended.
    pub current: Option<bool>,
    /// Items per page, 1-1000 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

macro_rules! columns {
    () => {
        "id, tenant, kind, matchers, starts_at, ends_at, recurrence, comment, created_by, created_at"
    };
}

/// Silences and maintenance windows of the caller's tenant, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/silences",
    tag = "silences",
    params(SilenceQuery),
    responses(
        (status = 200, body = Page<SilenceView>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_silences(
    State(state): State<AppState>,
    caller: Viewer,
    Query(query): Query<SilenceQuery>,
) -> Result<axum::Json<Page<SilenceView>>, ApiError> {
    let page = PageParams {
        limit: query.limit,
        cursor: query.cursor,
    };
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    let now = Utc::now();
    let ended_after = query.current.unwrap_or(false).then_some(DbTime(now));
    let mut conn = state.store.read().await?;
    let rows: Vec<SilenceRow> = sql!(
        conn.db(),
        all SilenceRow,
        concat!(
            "SELECT ",
            columns!(),
            " FROM silences
             WHERE tenant = $1 AND ($2 IS NULL OR id < $2) AND ($3 IS NULL OR ends_at > $3)
             ORDER BY id DESC LIMIT $4"
        ),
        &caller.tenant,
        after,
        ended_after,
        i64::from(limit) + 1
    )?;
    let items = rows.iter().map(|r| r.view(now)).collect();
    Ok(axum::Json(Page::from_overfetch(
        items,
        limit,
        |s: &SilenceView| s.id,
    )))
}

/// Creates a silence, or a maintenance window when `recurrence` is given.
#[utoipa::path(
    post,
    path = "/api/v1/silences",
    tag = "silences",
    request_body = SilenceInput,
    responses(
        (status = 201, body = SilenceView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_silence(
    State(state): State<AppState>,
    operator: Operator,
    ApiJson(input): ApiJson<SilenceInput>,
) -> Result<(StatusCode, axum::Json<SilenceView>), ApiError> {
    let now = Utc::now();
    let mut errors = Vec::new();
    if input.matchers.len() > MAX_MATCHERS {
        errors.push(FieldError::new(
            "matchers",
            format!("at most {MAX_MATCHERS} matchers"),
        ));
    }
    for (i, m) in input.matchers.iter().enumerate() {
        if let Err(message) = crate::series::validate_label_name(m.name()) {
            errors.push(FieldError::new(format!("matchers[{i}].name"), message));
        }
    }
    if input.comment.chars().count() > MAX_COMMENT_CHARS {
        errors.push(FieldError::new(
            "comment",
            format!("must be at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    let starts_at = input.starts_at.unwrap_or(now);
    let ends_at = match (input.ends_at, input.duration, &input.recurrence) {
        (Some(end), None, _) => Some(end),
        (None, Some(d), _) => {
            Some(starts_at + chrono::Duration::milliseconds(crate::rules::model::millis(d)))
        }
        (None, None, Some(_)) => Some(starts_at + DEFAULT_MAINTENANCE_SPAN),
        (None, None, None) => {
            errors.push(FieldError::new("ends_at", "give ends_at or duration"));
            None
        }
        (Some(_), Some(_), _) => {
            errors.push(FieldError::new(
                "duration",
                "give ends_at or duration, not both",
            ));
            None
        }
    };
    if let Some(end) = ends_at {
        if end <= starts_at {
            errors.push(FieldError::new("ends_at", "must be after starts_at"));
        } else if input.recurrence.is_none() && end - starts_at > MAX_SILENCE {
            errors.push(FieldError::new(
                "ends_at",
                "a silence lasts at most 366 days",
            ));
        }
    }
    if let Some(recurrence) = &input.recurrence {
        errors.extend(recurrence.validate("recurrence"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let ends_at = ends_at.unwrap_or(starts_at);
    let kind = if input.recurrence.is_some() {
        "maintenance"
    } else {
        "silence"
    };
    let row = SilenceRow {
        id: Uuid::now_v7(),
        tenant: operator.tenant.clone(),
        kind: kind.to_string(),
        matchers: Json(input.matchers),
        starts_at: DbTime(starts_at),
        ends_at: DbTime(ends_at),
        recurrence: input.recurrence.map(Json),
        comment: input.comment.trim().to_string(),
        created_by: operator.sub.clone(),
        created_at: DbTime(now),
    };
    let mut conn = state.store.write().await?;
    sql!(
        conn.db(),
        exec,
        concat!(
            "INSERT INTO silences (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ),
        row.id,
        &row.tenant,
        &row.kind,
        &row.matchers,
        row.starts_at,
        row.ends_at,
        row.recurrence.as_ref(),
        &row.comment,
        &row.created_by,
        row.created_at
    )?;
    tracing::info!(tenant = %row.tenant, silence = %row.id, kind, by = %row.created_by, "silence created");
    Ok((StatusCode::CREATED, axum::Json(row.view(now))))
}

/// Deletes a silence or maintenance window (it stops muting at once).
#[utoipa::path(
    delete,
    path = "/api/v1/silences/{id}",
    tag = "silences",
    params(("id" = String, Path, description = "Silence id")),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn delete_silence(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let mut conn = state.store.write().await?;
    let deleted = sql!(
        conn.db(),
        exec,
        "DELETE FROM silences WHERE tenant = $1 AND id = $2",
        &operator.tenant,
        id
    )?;
    if deleted == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}
