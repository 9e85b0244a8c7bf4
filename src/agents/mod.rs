//! Monitoring agents: the `/api/v1/agents/connect` socket of protocol.md, the agent
//! registry, presence across replicas, and configuration pushed to agents.
//!
//! - [`socket`]: one session per agent socket (auth, registration, batches stored
//!   through ingest and acknowledged after commit, status, pings, limits).
//! - [`hub`]: this replica's sockets, pushes from any replica over the internal bus
//!   topic `_agents`, and presence (a TTL in the registry row, refreshed by the holder
//!   and swept by everyone).
//! - [`repo`]: the `agents` table; [`api`]: the REST routes; [`model`]: what they show.

pub mod api;
pub mod hub;
pub mod model;
pub mod repo;
pub mod socket;

use crate::app::AppState;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The `/api/v1/agents` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(socket::connect))
        .routes(routes!(api::list))
        .routes(routes!(api::summary))
        .routes(routes!(api::get_one, api::delete))
        .routes(routes!(api::stats))
        .routes(routes!(api::get_config, api::put_config))
}

/// Starts the agents' background work (presence, config pushes).
pub fn start(state: &AppState) {
    hub::start(state);
}
