//! The agent registry over REST: list, read, stats, configuration, delete.

use super::hub::{self, Signal};
use super::model::{Agent, AgentConfigView, AgentStats, AgentSummary, Presence, validate_id};
use super::repo::{self, Filter};
use crate::api::error::{ApiError, Problem};
use crate::api::json::ApiJson;
use crate::api::paging::{Page, PageParams};
use crate::app::AppState;
use crate::auth::{Admin, Viewer};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

/// Filters of `GET /api/v1/agents`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `connected` or `disconnected`.
    pub status: Option<String>,
    pub provider: Option<String>,
    pub region: Option<String>,
    /// What the agent last reported (`ok`, `degraded`, …).
    pub health: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn known(id: &str) -> Result<(), ApiError> {
    // An id no agent can have is simply not found (404), like another tenant's.
    validate_id("agent_id", id).map_err(|_| ApiError::NotFound)
}

/// The tenant's agent `id`, or 404 (also for an id no agent can have).
async fn agent_of(state: &AppState, tenant: &str, id: &str) -> Result<repo::AgentRow, ApiError> {
    known(id)?;
    repo::get(&state.store, tenant, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// The tenant's agents, in id order, filtered by status, provider, region or health.
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "agents",
    params(ListParams),
    responses(
        (status = 200, body = Page<Agent>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Viewer,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<Agent>>, ApiError> {
    let paging = PageParams {
        limit: params.limit,
        cursor: params.cursor.clone(),
    };
    let limit = paging.limit()?;
    let after: Option<String> = paging.after()?;
    let status = match params.status.as_deref() {
        None => None,
        Some(s) => Some(
            Presence::parse(s)
                .ok_or_else(|| ApiError::field("status", "must be connected or disconnected"))?,
        ),
    };
    for (field, value) in [
        ("provider", &params.provider),
        ("region", &params.region),
        ("health", &params.health),
    ] {
        if let Some(value) = value {
            validate_id(field, value).map_err(|e| ApiError::field(field, e))?;
        }
    }
    let filter = Filter {
        status,
        provider: params.provider.as_deref(),
        region: params.region.as_deref(),
        health: params.health.as_deref(),
        after: after.as_deref(),
    };
    let rows = repo::list(&state.store, &caller.tenant, &filter, limit + 1).await?;
    let items = rows.iter().map(|r| r.view()).collect();
    Ok(Json(Page::from_overfetch(items, limit, |a: &Agent| {
        a.id.clone()
    })))
}

/// One agent.
#[utoipa::path(
    get,
    path = "/api/v1/agents/{id}",
    tag = "agents",
    params(("id" = String, Path, description = "agent id")),
    responses(
        (status = 200, body = Agent),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Viewer,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    let row = agent_of(&state, &caller.tenant, &id).await?;
    Ok(Json(row.view()))
}

/// Ingest figures of one agent.
#[utoipa::path(
    get,
    path = "/api/v1/agents/{id}/stats",
    tag = "agents",
    params(("id" = String, Path, description = "agent id")),
    responses(
        (status = 200, body = AgentStats),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    caller: Viewer,
    Path(id): Path<String>,
) -> Result<Json<AgentStats>, ApiError> {
    let row = agent_of(&state, &caller.tenant, &id).await?;
    Ok(Json(row.stats(Utc::now())))
}

/// Counts over every agent of the tenant.
#[utoipa::path(
    get,
    path = "/api/v1/agents/summary/stats",
    tag = "agents",
    responses(
        (status = 200, body = AgentSummary),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn summary(
    State(state): State<AppState>,
    caller: Viewer,
) -> Result<Json<AgentSummary>, ApiError> {
    Ok(Json(repo::summary(&state.store, &caller.tenant).await?))
}

/// Removes an agent from the registry; a connected agent is disconnected (it is
/// registered again if it reconnects).
#[utoipa::path(
    delete,
    path = "/api/v1/agents/{id}",
    tag = "agents",
    params(("id" = String, Path, description = "agent id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    known(&id)?;
    let row = repo::delete(&state.store, &caller.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    hub::signal(
        &state,
        &caller.tenant,
        &Signal::Deleted {
            agent_id: id.clone(),
        },
    )
    .await;
    hub::announce(&state, "agent:deleted", &row).await;
    Ok(StatusCode::NO_CONTENT)
}

fn config_view(row: &repo::AgentRow) -> AgentConfigView {
    AgentConfigView {
        agent_id: row.id.clone(),
        config: row.config.0.clone(),
        version: row.config_version,
        connected: row.presence() == Presence::Connected,
    }
}

/// The agent's configuration (what it receives in `registered` and `config`).
#[utoipa::path(
    get,
    path = "/api/v1/agents/{id}/config",
    tag = "agents",
    params(("id" = String, Path, description = "agent id")),
    responses(
        (status = 200, body = AgentConfigView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_config(
    State(state): State<AppState>,
    caller: Admin,
    Path(id): Path<String>,
) -> Result<Json<AgentConfigView>, ApiError> {
    let row = agent_of(&state, &caller.tenant, &id).await?;
    Ok(Json(config_view(&row)))
}

/// Replaces the agent's configuration (a JSON object, the body) and pushes it at once
/// to the agent, whichever replica holds its socket.
#[utoipa::path(
    put,
    path = "/api/v1/agents/{id}/config",
    tag = "agents",
    params(("id" = String, Path, description = "agent id")),
    request_body(content = Object, description = "the new configuration"),
    responses(
        (status = 200, body = AgentConfigView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_config(
    State(state): State<AppState>,
    caller: Admin,
    Path(id): Path<String>,
    ApiJson(config): ApiJson<Value>,
) -> Result<Json<AgentConfigView>, ApiError> {
    known(&id)?;
    if !config.is_object() {
        return Err(ApiError::field("config", "must be a JSON object"));
    }
    let max = state.config.agents.max_config_bytes;
    if config.to_string().len() > max {
        return Err(ApiError::field(
            "config",
            format!("must be at most {max} bytes of JSON"),
        ));
    }
    let row = repo::set_config(&state.store, &caller.tenant, &id, &config)
        .await?
        .ok_or(ApiError::NotFound)?;
    hub::signal(
        &state,
        &caller.tenant,
        &Signal::Config {
            agent_id: id,
            version: row.config_version,
            config,
        },
    )
    .await;
    hub::announce(&state, "agent:updated", &row).await;
    Ok(Json(config_view(&row)))
}
