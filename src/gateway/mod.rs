//! The real-time gateway: `/ws` sessions exactly as protocol.md says, and the fan-out of
//! bus events to the sessions of this replica.

use crate::app::AppState;
use utoipa_axum::router::OpenApiRouter;

/// Routes outside `/api/v1` (the `/ws` upgrade).
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
}

/// `/api/v1` routes of the gateway (topic events over HTTP).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}

/// Starts the gateway's background work (the fan-out hub).
pub fn start(_state: &AppState) {}
