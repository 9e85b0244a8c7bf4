//! Notifications: what a notification holds, how it is rendered for each channel type
//! (email, Slack, webhook in Lookout's or Alertmanager's format, SMS), Standard Webhooks
//! signing, and the retry schedule.

pub mod message;
pub mod outbox;
pub mod policy;
pub mod render;
pub mod retry;
pub mod signing;

use crate::app::AppState;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

/// The `/api/v1/channels` and `/api/v1/notifications` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}

/// Starts the delivery workers (every replica runs them).
pub fn start(_state: &AppState) {}

/// Something notify did about an alert, for the alert's timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NotificationEvent {
    pub at: DateTime<Utc>,
    /// e.g. "notification_sent", "notification_failed", "notification_suppressed".
    pub kind: String,
    pub channel_id: String,
    pub detail: serde_json::Value,
}

/// Notification events about one alert, oldest first (merged into its timeline).
pub async fn events_for_alert(
    _store: &crate::store::Store,
    _tenant: &str,
    _alert_id: Uuid,
) -> Result<Vec<NotificationEvent>, sqlx::Error> {
    Ok(Vec::new())
}
