//! `GET /api/v1/cluster`: the replicas alive and who holds each leader lease.

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::Viewer;
use crate::cluster::{LeaseInfo, ReplicaInfo, lease_names};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cluster))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// `embedded` or `cluster`.
    pub mode: String,
    /// The replica that answered.
    pub replica: String,
    pub replicas: Vec<ReplicaInfo>,
    pub leases: Vec<LeaseInfo>,
}

/// Replicas alive and the holder of each leader lease.
#[utoipa::path(
    get,
    path = "/api/v1/cluster",
    tag = "cluster",
    responses(
        (status = 200, body = ClusterView),
        (status = 401, body = super::Problem, content_type = "application/problem+json"),
        (status = 503, body = super::Problem, content_type = "application/problem+json"),
    )
)]
async fn cluster(
    State(state): State<AppState>,
    _caller: Viewer,
) -> Result<Json<ClusterView>, ApiError> {
    let unavailable = |_| ApiError::Unavailable {
        what: "cluster registry",
        retry_after: std::time::Duration::from_secs(2),
    };
    let (replicas, leases) = tokio::join!(
        state.registry.replicas(),
        state.leases.holders(lease_names::ALL)
    );
    Ok(Json(ClusterView {
        mode: state.mode.to_string(),
        replica: state.replica_id().to_string(),
        replicas: replicas.map_err(unavailable)?,
        leases: leases.map_err(unavailable)?,
    }))
}
