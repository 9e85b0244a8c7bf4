//! The real-time gateway: `/ws` sessions exactly as protocol.md says, and the fan-out of
//! bus events to the sessions of this replica.
//!
//! - [`hub`]: one bus receiver per replica, one serialization per event, bounded
//!   per-connection send queues, gap fill from the history.
//! - [`session`]: one task per connection (auth, subscriptions with replay, limits).
//! - [`quota`]: connection quotas per subject and tenant across replicas.
//! - [`http`]: publish to and read a topic over HTTP.

mod frames;
mod http;
pub mod hub;
mod metrics;
mod quota;
mod session;
mod topics;

pub use topics::{ADMIN_TOPIC_PREFIX, required_role};

use crate::api::ApiError;
use crate::app::AppState;
use crate::auth::bearer_token;
use crate::bus::Bus;
use crate::config::{Config, Mode};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hub::Hub;
use quota::Quotas;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use utoipa_axum::router::OpenApiRouter;

/// Routes outside `/api/v1` (the `/ws` upgrade).
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/ws", get(upgrade))
}

/// `/api/v1` routes of the gateway (topic events over HTTP).
pub fn router() -> OpenApiRouter<AppState> {
    http::router()
}

/// Starts the gateway's background work (the fan-out hub, quota lease renewal).
pub fn start(state: &AppState) {
    let gateway = state.gateway.clone();
    state
        .tasks
        .spawn(gateway.hub.clone().run(state.shutdown.clone()));
    state
        .tasks
        .spawn(gateway.quotas.clone().run_renewal(state.shutdown.clone()));
}

/// The gateway of one replica.
pub struct Gateway {
    hub: Arc<Hub>,
    quotas: Arc<Quotas>,
    next_id: AtomicU64,
    connections: AtomicU32,
}

impl Gateway {
    /// The gateway of a replica with `config`, fanning out the events of `bus`.
    pub fn new(config: &Config, bus: &Bus) -> Arc<Gateway> {
        let quotas = match config.mode() {
            Mode::Cluster { redis_url, .. } => {
                Quotas::redis(&config.realtime, &redis_url, &config.redis.prefix)
            }
            Mode::Embedded { .. } => Quotas::local(&config.realtime),
        };
        Arc::new(Gateway {
            hub: Hub::new(bus.clone(), config.bus.history_len),
            quotas,
            next_id: AtomicU64::new(1),
            connections: AtomicU32::new(0),
        })
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// One of this replica's connection slots, or `None` when all are taken (1013).
    fn take_slot(self: &Arc<Self>, max: u32) -> Option<Slot> {
        let taken = self.connections.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.clone());
        (taken < max).then_some(slot)
    }
}

/// Holds one of the replica's connection slots; given back on drop.
struct Slot(Arc<Gateway>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Deserialize)]
struct UpgradeQuery {
    token: Option<String>,
}

/// `GET /ws`: a token in the header or the query is checked before the upgrade (401 on
/// a bad one); without one, the session waits for an `auth` frame.
async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<UpgradeQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let token = bearer_token(&headers)
        .map(str::to_string)
        .or(query.token.filter(|t| !t.is_empty()));
    let identity = match token {
        Some(token) => match state.auth.verify(&token).await {
            Ok(identity) => Some(identity),
            Err(e) => return ApiError::Unauthorized(e).into_response(),
        },
        None => None,
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::BadRequest(format!("/ws needs a WebSocket upgrade: {rejection}"))
                .into_response();
        }
    };
    let config = &state.config;
    let max_frame = config.realtime.max_frame_bytes;
    let write_buffer = config.realtime.write_buffer_bytes;
    let gateway = state.gateway.clone();
    upgrade
        // tungstenite's defaults (128 KiB read buffer, unbounded write buffer, 64 MiB
        // messages) cost ~135 KB per idle connection and let one client make the server
        // buffer a lot: every size here is bounded and small.
        .read_buffer_size(config.realtime.read_buffer_bytes)
        .write_buffer_size(write_buffer)
        // Room for the buffer plus the largest event (bounded by the HTTP body limit).
        .max_write_buffer_size(write_buffer + config.server.body_limit_bytes + 64 * 1024)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_upgrade(move |socket| session::run(state, gateway, socket, identity))
}
