//! Sources: what Lookout polls (KumoMTA, Prometheus targets, HTTP probes) and the
//! KumoMTA log-hook receiver. This holds the parsing and interpretation of what the
//! sources serve; it does no I/O.

pub mod kumomta;
pub mod prometheus_text;

use crate::app::AppState;
use utoipa_axum::router::OpenApiRouter;

/// The `/api/v1/sources` and `/api/v1/queues` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}

/// Starts the elected poller (it polls only while this replica holds the `sources` lease).
pub fn start(_state: &AppState) {}

/// Health of the probes and polled sources of `tenant`, for the dashboard.
pub async fn health(
    _state: &AppState,
    _tenant: &str,
) -> anyhow::Result<Vec<crate::dashboard::ComponentHealth>> {
    Ok(Vec::new())
}

/// Queue totals of `tenant` for the dashboard overview; `None` when KumoMTA is not polled.
pub async fn queue_totals(
    _state: &AppState,
    _tenant: &str,
) -> anyhow::Result<Option<serde_json::Value>> {
    Ok(None)
}
