//! A topic over HTTP: publish an event (admin), read the history (viewer), for scripts
//! and for clients that were offline.

use super::hub::EventFrame;
use super::topics::role_may_read;
use crate::api::{ApiError, ApiJson, Problem};
use crate::app::AppState;
use crate::auth::{Admin, Viewer};
use crate::bus::validate_client_topic;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(publish, history))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Event name, e.g. `alert:triggered` (1-100 of a-z, 0-9, `_`, `:`, `.`, `-`).
    pub event: String,
    /// The event's data, any JSON value.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublishedEvent {
    pub topic: String,
    /// The event's offset in the topic's history.
    pub offset: u64,
    /// The history's epoch.
    pub epoch: String,
}

/// Publishes an event to a topic of the caller's tenant; every subscriber on every
/// replica receives it.
#[utoipa::path(
    post,
    path = "/api/v1/topics/{topic}/events",
    tag = "realtime",
    params(("topic" = String, Path, description = "Topic name, e.g. `alerts` or `custom.orders`")),
    request_body = PublishRequest,
    responses(
        (status = 201, body = PublishedEvent),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn publish(
    State(state): State<AppState>,
    admin: Admin,
    Path(topic): Path<String>,
    ApiJson(request): ApiJson<PublishRequest>,
) -> Result<(StatusCode, ApiJson<PublishedEvent>), ApiError> {
    validate_client_topic(&topic).map_err(|m| ApiError::field("topic", m))?;
    let published = state
        .bus
        .publish(&admin.tenant, &topic, &request.event, &request.data)
        .await
        .map_err(|e| match e {
            crate::bus::BusError::Invalid(m) => ApiError::field("event", m),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        ApiJson(PublishedEvent {
            topic,
            offset: published.offset,
            epoch: published.epoch,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Events with an offset above this one (default 0: the whole history).
    pub since: Option<u64>,
    /// At most this many events (default and maximum: the history length).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopicHistory {
    pub topic: String,
    /// The topic's newest offset.
    pub offset: u64,
    pub epoch: String,
    /// False when events after `since` are no longer kept: reload state over REST.
    pub complete: bool,
    /// `event` frames as `/ws` sends them, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Box<RawValue>>,
}

/// The topic's history after `since`, for clients that were offline.
#[utoipa::path(
    get,
    path = "/api/v1/topics/{topic}/events",
    tag = "realtime",
    params(("topic" = String, Path, description = "Topic name"), HistoryQuery),
    responses(
        (status = 200, body = TopicHistory),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn history(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(topic): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<ApiJson<TopicHistory>, ApiError> {
    validate_client_topic(&topic).map_err(|m| ApiError::field("topic", m))?;
    if !role_may_read(viewer.role, &topic) {
        return Err(ApiError::Forbidden(format!(
            "the {} role may not read '{topic}'",
            viewer.role
        )));
    }
    let max = state.config.bus.history_len;
    let limit = query.limit.unwrap_or(max);
    if limit == 0 || limit > max {
        return Err(ApiError::field("limit", format!("must be 1 to {max}")));
    }
    let since = query.since.unwrap_or(0);
    let history = state
        .bus
        .history(&viewer.tenant, &topic, since, limit)
        .await?;
    let events = history
        .events
        .iter()
        .filter_map(|e| RawValue::from_string(EventFrame::new(e).text.to_string()).ok())
        .collect();
    Ok(ApiJson(TopicHistory {
        topic,
        offset: history.head.offset,
        epoch: history.head.epoch,
        complete: history.complete,
        events,
    }))
}
