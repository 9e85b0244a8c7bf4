//! `POST /api/v1/tokens/revoke`: refuse a token everywhere from now on.

use super::error::ApiError;
use super::json::ApiJson;
use crate::app::AppState;
use crate::auth::Admin;
use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(revoke))
}

/// How long a revocation is kept when the caller does not say when the token expires.
const DEFAULT_KEEP: Duration = Duration::days(366);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The token's `jti` claim.
    pub jti: String,
    /// When the token expires anyway (its `exp`); the revocation is kept until then.
    /// Default: one year.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub jti: String,
    pub revoked: bool,
    pub expires_at: DateTime<Utc>,
}

/// Revokes a token id of the caller's tenant on every replica.
#[utoipa::path(
    post,
    path = "/api/v1/tokens/revoke",
    tag = "auth",
    request_body = RevokeRequest,
    responses(
        (status = 200, body = Revoked),
        (status = 403, body = super::Problem, content_type = "application/problem+json"),
        (status = 422, body = super::Problem, content_type = "application/problem+json"),
    )
)]
async fn revoke(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(request): ApiJson<RevokeRequest>,
) -> Result<ApiJson<Revoked>, ApiError> {
    let jti = request.jti.trim();
    if jti.is_empty() || jti.len() > 256 {
        return Err(ApiError::field("jti", "must be 1-256 characters"));
    }
    let expires_at = request
        .expires_at
        .unwrap_or_else(|| Utc::now() + DEFAULT_KEEP);
    state
        .auth
        .revocations()
        .revoke(&admin.tenant, jti, &admin.sub, expires_at)
        .await?;
    tracing::info!(tenant = %admin.tenant, jti, by = %admin.sub, "token revoked");
    Ok(ApiJson(Revoked {
        jti: jti.to_string(),
        revoked: true,
        expires_at,
    }))
}
