//! Monitoring agents: the `/api/v1/agents/connect` socket of protocol.md, the agent
//! registry, presence across replicas, and configuration pushed to agents.

use crate::app::AppState;
use utoipa_axum::router::OpenApiRouter;

/// The `/api/v1/agents` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}

/// Starts the agents' background work (presence, config pushes).
pub fn start(_state: &AppState) {}
