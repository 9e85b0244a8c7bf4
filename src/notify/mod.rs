//! Notifications: channels (email, Slack, webhook, SMS) and their REST API, routing of
//! alert transitions into deliveries (grouping, throttle, escalation, repeats), delivery
//! workers on every replica with retries and dead letters, and the delivery record.
//!
//! * [`message`]: what a notification holds; [`render`]: how each channel type shows it;
//!   [`signing`]: Standard Webhooks signatures; [`retry`]: the retry schedule.
//! * [`channel`]: channel settings and storage; [`api`]: `/channels`, `/notifications`.
//! * [`outbox`]: the rule engine's entry point, routing inside its transaction.
//! * [`worker`]: claim, send-time check, send ([`send`]), record.

pub mod api;
pub mod channel;
pub mod message;
pub mod outbox;
pub mod policy;
pub mod render;
pub mod retry;
pub mod send;
pub mod signing;
pub mod worker;

use crate::app::AppState;
use crate::sql;
use crate::store::DbTime;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

/// The `/api/v1/channels` and `/api/v1/notifications` routes.
pub fn router() -> OpenApiRouter<AppState> {
    api::router()
}

/// Creates the default channels of the seed environment and starts the delivery workers
/// (every replica runs them).
pub fn start(state: &AppState) {
    let defaults_state = state.clone();
    state.tasks.spawn(async move {
        if let Err(e) =
            channel::ensure_defaults(&defaults_state.store, &defaults_state.config).await
        {
            tracing::warn!(error = %e, "could not create the default notification channels");
        }
    });
    if state.config.notify.workers {
        state.tasks.spawn(worker::run(state.clone()));
    }
}

/// Something notify did about an alert, for the alert's timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NotificationEvent {
    pub at: DateTime<Utc>,
    /// `notification_queued`, `notification_sent`, `notification_failed`,
    /// `notification_suppressed`, `notification_throttled` or `notification_cancelled`.
    pub kind: String,
    pub channel_id: String,
    /// `notification_id`, `delivery_kind` (firing, resolved, escalation, repeat),
    /// `attempts`, `status_code`, `error` / `reason`.
    pub detail: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct TimelineRow {
    #[sqlx(try_from = "DbTime")]
    created_at: DateTime<Utc>,
    item_status: String,
    reason: Option<String>,
    channel_ref: String,
    delivery_id: Option<Uuid>,
    channel_id: Option<Uuid>,
    delivery_kind: Option<String>,
    delivery_status: Option<String>,
    attempts: Option<i32>,
    last_error: Option<String>,
    last_status_code: Option<i32>,
    finished_at: Option<DbTime>,
    due_at: Option<DbTime>,
}

/// Notification events about one alert, oldest first (merged into its timeline): one per
/// outbox row of the alert, with where its delivery stands.
pub async fn events_for_alert(
    store: &crate::store::Store,
    tenant: &str,
    alert_id: Uuid,
) -> Result<Vec<NotificationEvent>, sqlx::Error> {
    let mut conn = store.read().await?;
    let rows: Vec<TimelineRow> = sql!(
        conn.db(),
        all TimelineRow,
        "SELECT o.created_at, o.status AS item_status, o.reason, o.channel_id AS channel_ref,
                d.id AS delivery_id, d.channel_id, d.kind AS delivery_kind, d.status AS delivery_status,
                d.attempts, d.last_error, d.last_status_code, d.finished_at, d.due_at
         FROM outbox o LEFT JOIN deliveries d ON d.id = o.delivery_id AND d.tenant = o.tenant
         WHERE o.tenant = $1 AND o.alert_id = $2
         ORDER BY o.created_at, o.id",
        tenant,
        alert_id
    )?;
    let mut events: Vec<NotificationEvent> = rows.into_iter().map(timeline_event).collect();
    events.sort_by_key(|e| e.at);
    Ok(events)
}

fn timeline_event(row: TimelineRow) -> NotificationEvent {
    let finished = row.finished_at.map(|t| t.0);
    let (kind, at, reason) = match (row.item_status.as_str(), row.delivery_status.as_deref()) {
        ("throttled", _) => (
            "notification_throttled",
            row.created_at,
            Some("the rule's throttle".to_string()),
        ),
        ("suppressed", _) => (
            "notification_suppressed",
            finished.unwrap_or(row.created_at),
            row.reason.clone(),
        ),
        (_, Some("delivered")) => (
            "notification_sent",
            finished.unwrap_or(row.created_at),
            None,
        ),
        (_, Some("failed")) => (
            "notification_failed",
            finished.unwrap_or(row.created_at),
            row.last_error.clone(),
        ),
        (_, Some("suppressed")) => (
            "notification_suppressed",
            finished.unwrap_or(row.created_at),
            row.last_error.clone(),
        ),
        (_, Some("cancelled")) => (
            "notification_cancelled",
            finished.unwrap_or(row.created_at),
            row.last_error.clone(),
        ),
        _ => (
            "notification_queued",
            row.created_at,
            row.last_error.clone(),
        ),
    };
    NotificationEvent {
        at,
        kind: kind.to_string(),
        channel_id: row
            .channel_id
            .map(|id| id.to_string())
            .unwrap_or(row.channel_ref.clone()),
        detail: serde_json::json!({
            "notification_id": row.delivery_id,
            "channel": row.channel_ref,
            "delivery_kind": row.delivery_kind,
            "attempts": row.attempts,
            "status_code": row.last_status_code,
            "reason": reason,
            "due_at": row.due_at.map(|t| t.0),
        }),
    }
}
