//! Dashboard data: overview, health of components and dependencies, recent activity.
//! Other parts contribute sections (alerts from rules, queues and probes from sources).

use crate::app::AppState;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;

/// The `/api/v1/dashboard` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}

/// One component or dependency in `GET /api/v1/dashboard/health`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ComponentHealth {
    /// e.g. "database", "bus", or a probe's or source's name.
    pub name: String,
    /// e.g. "store", "bus", "http_probe", "kumomta".
    pub kind: String,
    /// "up", "down" or "unknown".
    pub status: String,
    pub response_time_ms: Option<f64>,
    pub detail: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
}
