//! `/api/v1/channels` (viewer reads, admin changes; secrets write-only) and
//! `/api/v1/notifications` (delivery records with their attempts).

use super::channel::{self, Channel, ChannelInput, ChannelView};
use super::message::Notification;
use super::retry::Outcome;
use super::send::Sender;
use crate::api::paging::{Page, PageParams};
use crate::api::{ApiError, ApiJson};
use crate::app::AppState;
use crate::auth::{Admin, Viewer};
use crate::sql;
use crate::store::DbTime;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_channels, create_channel))
        .routes(routes!(get_channel, update_channel, delete_channel))
        .routes(routes!(test_channel))
        .routes(routes!(list_notifications))
        .routes(routes!(get_notification))
}

/// An id in a path; anything that is not a UUID cannot name an object: 404.
fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::NotFound)
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
}

/// Lists the tenant's channels.
#[utoipa::path(get, path = "/api/v1/channels", tag = "notifications", params(PageParams),
    responses((status = 200, body = Page<ChannelView>)))]
async fn list_channels(
    State(state): State<AppState>,
    viewer: Viewer,
    page: Result<Query<PageParams>, QueryRejection>,
) -> Result<ApiJson<Page<ChannelView>>, ApiError> {
    let page = query(page)?;
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    let channels = channel::list(&state.store, &viewer.tenant, after, i64::from(limit) + 1).await?;
    let views = channels.iter().map(Channel::view).collect();
    Ok(ApiJson(Page::from_overfetch(
        views,
        limit,
        |c: &ChannelView| c.id,
    )))
}

/// Creates a channel.
#[utoipa::path(post, path = "/api/v1/channels", tag = "notifications", request_body = ChannelInput,
    responses((status = 201, body = ChannelView),
        (status = 409, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::api::Problem, content_type = "application/problem+json")))]
async fn create_channel(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(input): ApiJson<ChannelInput>,
) -> Result<(StatusCode, ApiJson<ChannelView>), ApiError> {
    let settings = channel::settings_from_input(&input, None).map_err(ApiError::Validation)?;
    let now = Utc::now();
    let channel = Channel {
        id: Uuid::now_v7(),
        tenant: admin.tenant.clone(),
        name: input.name.trim().to_string(),
        enabled: input.enabled,
        settings,
        templates: input.templates,
        origin: "api".into(),
        created_at: now,
        updated_at: now,
    };
    channel::insert(&state.store, &channel)
        .await
        .map_err(conflict_on_name)?;
    tracing::info!(tenant = %channel.tenant, channel_id = %channel.id, name = %channel.name,
        kind = channel.kind().as_str(), by = %admin.sub, "channel created");
    Ok((StatusCode::CREATED, ApiJson(channel.view())))
}

fn conflict_on_name(e: sqlx::Error) -> ApiError {
    if crate::store::is_unique_violation(&e) {
        ApiError::Conflict("a channel with this name already exists".into())
    } else {
        e.into()
    }
}

/// One channel.
#[utoipa::path(get, path = "/api/v1/channels/{id}", tag = "notifications",
    params(("id" = Uuid, Path)), responses((status = 200, body = ChannelView),
        (status = 404, body = crate::api::Problem, content_type = "application/problem+json")))]
async fn get_channel(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<ApiJson<ChannelView>, ApiError> {
    let id = parse_id(&id)?;
    let channel = channel::get(&state.store, &viewer.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(ApiJson(channel.view()))
}

/// Replaces a channel. Secrets left out keep their value; `""` clears one.
#[utoipa::path(put, path = "/api/v1/channels/{id}", tag = "notifications",
    params(("id" = Uuid, Path)), request_body = ChannelInput,
    responses((status = 200, body = ChannelView),
        (status = 404, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::api::Problem, content_type = "application/problem+json")))]
async fn update_channel(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ChannelInput>,
) -> Result<ApiJson<ChannelView>, ApiError> {
    let id = parse_id(&id)?;
    let previous = channel::get(&state.store, &admin.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let settings =
        channel::settings_from_input(&input, Some(&previous)).map_err(ApiError::Validation)?;
    let channel = Channel {
        name: input.name.trim().to_string(),
        enabled: input.enabled,
        settings,
        templates: input.templates,
        updated_at: Utc::now(),
        ..previous
    };
    if !channel::update(&state.store, &channel)
        .await
        .map_err(conflict_on_name)?
    {
        return Err(ApiError::NotFound);
    }
    tracing::info!(tenant = %channel.tenant, channel_id = %channel.id, by = %admin.sub, "channel updated");
    Ok(ApiJson(channel.view()))
}

/// Deletes a channel. Its pending notifications are dead-lettered when they come due.
#[utoipa::path(delete, path = "/api/v1/channels/{id}", tag = "notifications",
    params(("id" = Uuid, Path)), responses((status = 204),
        (status = 404, body = crate::api::Problem, content_type = "application/problem+json")))]
async fn delete_channel(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if !channel::delete(&state.store, &admin.tenant, id).await? {
        return Err(ApiError::NotFound);
    }
    tracing::info!(tenant = %admin.tenant, channel_id = %id, by = %admin.sub, "channel deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The outcome of a test send.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestResult {
    /// The test notification's id (also in `GET /notifications`).
    pub notification_id: Uuid,
    /// `delivered`, or `failed`.
    pub outcome: String,
    /// HTTP status or SMTP reply code, when the receiver answered.
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// Sends a test notification through the channel now and answers the outcome. The send is
/// recorded like any other, without retries.
#[utoipa::path(post, path = "/api/v1/channels/{id}/test", tag = "notifications",
    params(("id" = Uuid, Path)), responses((status = 200, body = TestResult),
        (status = 404, body = crate::api::Problem, content_type = "application/problem+json")))]
async fn test_channel(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<ApiJson<TestResult>, ApiError> {
    let id = parse_id(&id)?;
    let channel = channel::get(&state.store, &admin.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let now = Utc::now();
    let mut notification = Notification::sample(&admin.tenant, Uuid::now_v7(), now);
    notification.external_url = state.config.server.public_url.clone();
    let sender = Sender::new(state.config.notify.send_timeout);
    let started = Instant::now();
    let outcome = sender.send(&channel, &notification).await;
    let elapsed = started.elapsed();
    let (status, status_code, error) = match &outcome {
        Outcome::Delivered => ("delivered", None, None),
        Outcome::Retry { reason, status, .. } | Outcome::Permanent { reason, status } => {
            ("failed", *status, Some(reason.clone()))
        }
    };
    let finished = Utc::now();
    let mut tx = state.store.begin().await?;
    sql!(
        tx.db(),
        exec,
        "INSERT INTO deliveries (id, tenant, channel_id, rule_id, group_key, kind, status, due_at,
                                 attempts, last_error, last_status_code, created_at, updated_at, finished_at)
         VALUES ($1, $2, $3, NULL, 'test', 'test', $4, $5, 1, $6, $7, $5, $8, $8)",
        notification.id,
        &admin.tenant,
        channel.id,
        status,
        DbTime(now),
        error.as_deref(),
        status_code.map(i32::from),
        DbTime(finished)
    )?;
    sql!(
        tx.db(),
        exec,
        "INSERT INTO delivery_attempts (id, tenant, delivery_id, attempt, at, outcome, status_code,
                                        error, duration_ms, replica)
         VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9)",
        Uuid::now_v7(),
        &admin.tenant,
        notification.id,
        DbTime(finished),
        status,
        status_code.map(i32::from),
        error.as_deref(),
        i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        state.replica_id()
    )?;
    tx.commit().await?;
    Ok(ApiJson(TestResult {
        notification_id: notification.id,
        outcome: status.to_string(),
        status_code,
        error,
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    }))
}

/// Filters of `GET /notifications`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationFilter {
    /// `pending`, `delivered`, `failed`, `suppressed` or `cancelled`.
    pub status: Option<String>,
    pub channel_id: Option<Uuid>,
    pub rule_id: Option<Uuid>,
    pub alert_id: Option<Uuid>,
    /// `firing`, `resolved`, `escalation`, `repeat` or `test`.
    pub kind: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A delivery record: one message to one channel.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NotificationRecord {
    /// The notification id (`webhook-id`, `Message-ID`), stable across attempts.
    pub id: Uuid,
    pub channel_id: Uuid,
    pub kind: String,
    pub status: String,
    pub rule_id: Option<Uuid>,
    pub alert_ids: Vec<Uuid>,
    pub group_key: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub last_status_code: Option<i32>,
    /// When the next attempt is due (pending) or the first was due.
    pub due_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first (only in `GET /notifications/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptRecord>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct AttemptRecord {
    pub attempt: i32,
    #[sqlx(try_from = "DbTime")]
    pub at: DateTime<Utc>,
    /// `delivered`, `retry` or `failed`.
    pub outcome: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub replica: String,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    channel_id: Uuid,
    kind: String,
    status: String,
    rule_id: Option<Uuid>,
    group_key: String,
    attempts: i32,
    last_error: Option<String>,
    last_status_code: Option<i32>,
    #[sqlx(try_from = "DbTime")]
    due_at: DateTime<Utc>,
    #[sqlx(try_from = "DbTime")]
    created_at: DateTime<Utc>,
    #[sqlx(try_from = "DbTime")]
    updated_at: DateTime<Utc>,
    finished_at: Option<DbTime>,
}

macro_rules! delivery_columns {
    () => {
        "id, channel_id, kind, status, rule_id, group_key, attempts, last_error, last_status_code, \
         due_at, created_at, updated_at, finished_at"
    };
}

const STATUSES: [&str; 5] = ["pending", "delivered", "failed", "suppressed", "cancelled"];
const KINDS: [&str; 5] = ["firing", "resolved", "escalation", "repeat", "test"];

/// Delivery records, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications",
    params(NotificationFilter), responses((status = 200, body = Page<NotificationRecord>),
        (status = 422, body = crate::api::Problem, content_type = "application/problem+json")))]
async fn list_notifications(
    State(state): State<AppState>,
    viewer: Viewer,
    filter: Result<Query<NotificationFilter>, QueryRejection>,
) -> Result<ApiJson<Page<NotificationRecord>>, ApiError> {
    let filter = query(filter)?;
    let page = PageParams {
        limit: filter.limit,
        cursor: filter.cursor.clone(),
    };
    let limit = page.limit()?;
    let before: Option<Uuid> = page.after()?;
    if let Some(status) = &filter.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::field(
            "status",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    if let Some(kind) = &filter.kind
        && !KINDS.contains(&kind.as_str())
    {
        return Err(ApiError::field(
            "kind",
            format!("must be one of {}", KINDS.join(", ")),
        ));
    }
    let mut conn = state.store.read().await?;
    let rows: Vec<DeliveryRow> = sql!(
        conn.db(),
        all DeliveryRow,
        concat!(
            "SELECT ", delivery_columns!(), " FROM deliveries
             WHERE tenant = $1 AND ($2 IS NULL OR id < $2) AND ($3 IS NULL OR status = $3)
               AND ($4 IS NULL OR channel_id = $4) AND ($5 IS NULL OR rule_id = $5)
               AND ($6 IS NULL OR kind = $6)
               AND ($7 IS NULL OR id IN (SELECT delivery_id FROM outbox WHERE tenant = $1 AND alert_id = $7))
             ORDER BY id DESC LIMIT $8"
        ),
        &viewer.tenant,
        before,
        filter.status.as_deref(),
        filter.channel_id,
        filter.rule_id,
        filter.kind.as_deref(),
        filter.alert_id,
        i64::from(limit) + 1
    )?;
    // The alerts of the page's deliveries, in one query over the page's id range.
    let mut alerts: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
    if let (Some(first), Some(last)) = (rows.first(), rows.get(limit as usize - 1).or(rows.last()))
    {
        let pairs: Vec<(Uuid, Uuid)> = sql!(
            conn.db(),
            all(Uuid, Uuid),
            "SELECT delivery_id, alert_id FROM outbox
             WHERE tenant = $1 AND delivery_id >= $2 AND delivery_id <= $3 ORDER BY id",
            &viewer.tenant,
            last.id,
            first.id
        )?;
        for (delivery, alert) in pairs {
            let list = alerts.entry(delivery).or_default();
            if !list.contains(&alert) {
                list.push(alert);
            }
        }
    }
    let records = rows
        .into_iter()
        .map(|row| {
            let alert_ids = alerts.remove(&row.id).unwrap_or_default();
            record(row, alert_ids, None)
        })
        .collect();
    Ok(ApiJson(Page::from_overfetch(
        records,
        limit,
        |r: &NotificationRecord| r.id,
    )))
}

fn record(
    row: DeliveryRow,
    alert_ids: Vec<Uuid>,
    attempts: Option<Vec<AttemptRecord>>,
) -> NotificationRecord {
    NotificationRecord {
        id: row.id,
        channel_id: row.channel_id,
        kind: row.kind,
        status: row.status,
        rule_id: row.rule_id,
        alert_ids,
        group_key: row.group_key,
        attempts: row.attempts,
        last_error: row.last_error,
        last_status_code: row.last_status_code,
        due_at: row.due_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
        finished_at: row.finished_at.map(|t| t.0),
        attempt_log: attempts,
    }
}

/// One delivery record with every attempt.
#[utoipa::path(get, path = "/api/v1/notifications/{id}", tag = "notifications",
    params(("id" = Uuid, Path)), responses((status = 200, body = NotificationRecord),
        (status = 404, body = crate::api::Problem, content_type = "application/problem+json")))]
async fn get_notification(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<ApiJson<NotificationRecord>, ApiError> {
    let id = parse_id(&id)?;
    let mut conn = state.store.read().await?;
    let row: DeliveryRow = sql!(
        conn.db(),
        opt DeliveryRow,
        concat!("SELECT ", delivery_columns!(), " FROM deliveries WHERE tenant = $1 AND id = $2"),
        &viewer.tenant,
        id
    )?
    .ok_or(ApiError::NotFound)?;
    let attempts: Vec<AttemptRecord> = sql!(
        conn.db(),
        all AttemptRecord,
        "SELECT attempt, at, outcome, status_code, error, duration_ms, replica FROM delivery_attempts
         WHERE tenant = $1 AND delivery_id = $2 ORDER BY attempt, at",
        &viewer.tenant,
        id
    )?;
    let alert_ids: Vec<Uuid> = sql!(
        conn.db(),
        all(Uuid,),
        "SELECT alert_id FROM outbox WHERE tenant = $1 AND delivery_id = $2 ORDER BY id",
        &viewer.tenant,
        id
    )?
    .into_iter()
    .map(|(a,)| a)
    .collect();
    Ok(ApiJson(record(row, alert_ids, Some(attempts))))
}
