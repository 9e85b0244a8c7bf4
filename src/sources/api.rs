//! `/api/v1/sources` (the registry) and `/api/v1/queues` (the KumoMTA queues as last
//! polled). Reads are for viewers, changes for admins; every query is scoped to the
//! caller's tenant, and another tenant's source is a 404.

use super::model::{SourceInput, SourceKind, SourceView, ValidSource};
use super::poller::KumoState;
use super::repo;
use crate::api::paging::{Page, PageParams};
use crate::api::{ApiError, ApiJson};
use crate::app::AppState;
use crate::auth::{Admin, Viewer};
use crate::sources::kumomta::{QueueState, Throughput, Totals};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(list_sources, create_source))
        .routes(routes!(get_source, update_source, delete_source))
        .routes(routes!(list_queues))
        .routes(routes!(super::log_hook::receive))
}

/// A path id: anything that is not a UUID names no source.
pub(super) fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound)
}

/// The tenant's sources and their last outcome.
#[utoipa::path(
    get,
    path = "/api/v1/sources",
    tag = "sources",
    params(PageParams),
    responses(
        (status = 200, body = Page<SourceView>),
        (status = 401, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::api::Problem, content_type = "application/problem+json"),
    )
)]
async fn list_sources(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(page): Query<PageParams>,
) -> Result<ApiJson<Page<SourceView>>, ApiError> {
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    let rows = repo::list(&state.store, &viewer.tenant, after, limit + 1).await?;
    let views = rows.iter().map(repo::SourceRow::view).collect();
    Ok(ApiJson(Page::from_overfetch(
        views,
        limit,
        |view: &SourceView| view.id,
    )))
}

/// Adds a source; polling starts within a few seconds.
#[utoipa::path(
    post,
    path = "/api/v1/sources",
    tag = "sources",
    request_body = SourceInput,
    responses(
        (status = 201, body = SourceView, description = "Created. A generated log-hook token is in `log_hook_token`, this once."),
        (status = 403, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::api::Problem, content_type = "application/problem+json"),
    )
)]
async fn create_source(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(input): ApiJson<SourceInput>,
) -> Result<(StatusCode, ApiJson<SourceView>), ApiError> {
    let source = input.validate().map_err(ApiError::Validation)?;
    // A kumomta source always has a log-hook token: the admin's, or one made here.
    let generated = (source.kind == SourceKind::Kumomta && source.log_hook_token.is_none())
        .then(generate_token);
    let token = source
        .log_hook_token
        .as_ref()
        .map(|t| t.expose().to_string())
        .or(generated.clone());
    let digest = token.as_deref().map(repo::token_digest);
    let id = Uuid::now_v7();
    let row = repo::insert(
        &state.store,
        &admin.tenant,
        id,
        &source,
        digest.as_deref(),
        "api",
        Utc::now(),
    )
    .await
    .map_err(name_taken)?;
    tracing::info!(tenant = %admin.tenant, source = %id, kind = source.kind.as_str(), by = %admin.sub, "source created");
    let mut view = row.view();
    view.log_hook_token = generated;
    Ok((StatusCode::CREATED, ApiJson(view)))
}

/// One source.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}",
    tag = "sources",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = SourceView),
        (status = 404, body = crate::api::Problem, content_type = "application/problem+json"),
    )
)]
async fn get_source(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<ApiJson<SourceView>, ApiError> {
    let id = parse_id(&id)?;
    let row = repo::get(&state.store, &viewer.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(ApiJson(row.view()))
}

/// Replaces a source's settings. Credentials and the log-hook token left out are kept.
/// The kind cannot change.
#[utoipa::path(
    put,
    path = "/api/v1/sources/{id}",
    tag = "sources",
    params(("id" = String, Path)),
    request_body = SourceInput,
    responses(
        (status = 200, body = SourceView),
        (status = 404, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::api::Problem, content_type = "application/problem+json"),
    )
)]
async fn update_source(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<SourceInput>,
) -> Result<ApiJson<SourceView>, ApiError> {
    let id = parse_id(&id)?;
    let source: ValidSource = input.validate().map_err(ApiError::Validation)?;
    let existing = repo::get(&state.store, &admin.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if existing.kind() != Some(source.kind) {
        return Err(ApiError::field(
            "kind",
            format!("cannot change the kind of a {} source", existing.kind),
        ));
    }
    let digest = source
        .log_hook_token
        .as_ref()
        .map(|t| repo::token_digest(t.expose()));
    let row = repo::update(
        &state.store,
        &admin.tenant,
        id,
        &source,
        digest.as_deref(),
        Utc::now(),
    )
    .await
    .map_err(name_taken)?
    .ok_or(ApiError::NotFound)?;
    tracing::info!(tenant = %admin.tenant, source = %id, by = %admin.sub, "source updated");
    Ok(ApiJson(row.view()))
}

/// Removes a source; it is no longer polled, and its log hook stops accepting.
#[utoipa::path(
    delete,
    path = "/api/v1/sources/{id}",
    tag = "sources",
    params(("id" = String, Path)),
    responses(
        (status = 204),
        (status = 404, body = crate::api::Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_source(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if !repo::delete(&state.store, &admin.tenant, id).await? {
        return Err(ApiError::NotFound);
    }
    tracing::info!(tenant = %admin.tenant, source = %id, by = %admin.sub, "source deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn name_taken(error: sqlx::Error) -> ApiError {
    if crate::store::is_unique_violation(&error) {
        ApiError::Conflict("a source with this name already exists".into())
    } else {
        error.into()
    }
}

/// 32 random bytes, URL-safe base64.
fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `?source=` of `GET /api/v1/queues`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueuesParams {
    /// Only this KumoMTA source's queues (its id).
    pub source: Option<String>,
}

/// One queue, with the source it belongs to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueItem {
    pub source_id: Uuid,
    pub source: String,
    #[serde(flatten)]
    pub queue: QueueState,
}

/// A KumoMTA source's node totals and connection as last polled.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KumoNode {
    pub source_id: Uuid,
    pub source: String,
    /// When the queues were last read; null before the first successful poll.
    pub polled_at: Option<DateTime<Utc>>,
    pub connection: Option<super::poller::Connection>,
    pub totals: Totals,
    pub throughput: Throughput,
}

/// `GET /api/v1/queues`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueuesView {
    pub items: Vec<QueueItem>,
    pub sources: Vec<KumoNode>,
    /// Always null: a node's queues come in one page.
    pub next_cursor: Option<String>,
}

/// The latest state of every KumoMTA queue of the tenant (as of each source's last
/// successful poll), and each node's totals and throughput.
#[utoipa::path(
    get,
    path = "/api/v1/queues",
    tag = "sources",
    params(QueuesParams),
    responses(
        (status = 200, body = QueuesView),
        (status = 401, body = crate::api::Problem, content_type = "application/problem+json"),
    )
)]
async fn list_queues(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(params): Query<QueuesParams>,
) -> Result<ApiJson<QueuesView>, ApiError> {
    let only = params
        .source
        .as_deref()
        .map(|id| Uuid::parse_str(id).map_err(|_| ApiError::field("source", "not a source id")))
        .transpose()?;
    let mut view = QueuesView {
        items: Vec::new(),
        sources: Vec::new(),
        next_cursor: None,
    };
    for (id, name, stored) in kumomta_states(&state, &viewer.tenant).await? {
        if only.is_some_and(|only| only != id) {
            continue;
        }
        let snapshot = stored.snapshot.unwrap_or_default();
        view.items
            .extend(snapshot.queues.into_iter().map(|queue| QueueItem {
                source_id: id,
                source: name.clone(),
                queue,
            }));
        view.sources.push(KumoNode {
            source_id: id,
            source: name,
            polled_at: stored
                .polled_at_ms
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
            connection: stored.connection,
            totals: snapshot.totals,
            throughput: stored.throughput,
        });
    }
    Ok(ApiJson(view))
}

/// Every KumoMTA source of `tenant` with what its last poll stored.
pub(super) async fn kumomta_states(
    state: &AppState,
    tenant: &str,
) -> Result<Vec<(Uuid, String, KumoState)>, sqlx::Error> {
    Ok(repo::kumomta_states(&state.store, tenant)
        .await?
        .into_iter()
        .map(|(id, name, stored)| {
            let state = stored
                .and_then(|json| serde_json::from_value(json.0).ok())
                .unwrap_or_default();
            (id, name, state)
        })
        .collect())
}
