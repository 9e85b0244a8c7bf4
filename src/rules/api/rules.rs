//! `/api/v1/rules`: alert rules (viewers read, admins change).

use crate::api::paging::{Page, PageParams};
use crate::api::{ApiError, ApiJson, Problem};
use crate::app::AppState;
use crate::auth::{Admin, Viewer};
use crate::rules::model::RuleInput;
use crate::rules::repo::{self, RuleView};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

/// A rule id from the path; one that is not a UUID names no rule (404).
pub(super) fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound)
}

/// Rules of the caller's tenant, oldest first. The tenant's default rules are created
/// on its first visit.
#[utoipa::path(
    get,
    path = "/api/v1/rules",
    tag = "rules",
    params(PageParams),
    responses(
        (status = 200, body = Page<RuleView>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_rules(
    State(state): State<AppState>,
    caller: Viewer,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<RuleView>>, ApiError> {
    let limit = page.limit()?;
    let after: Option<Uuid> = page.after()?;
    if state.config.rules.create_default_rules {
        repo::ensure_default_rules(&state.store, &caller.tenant, Utc::now()).await?;
    }
    let rows = repo::list_rules(&state.store, &caller.tenant, after, i64::from(limit) + 1).await?;
    let items: Vec<RuleView> = rows.into_iter().map(RuleView::from).collect();
    Ok(axum::Json(Page::from_overfetch(items, limit, |r| r.id)))
}

/// Creates a rule. Accepts the native shape or the seeds' shapes (see the model).
#[utoipa::path(
    post,
    path = "/api/v1/rules",
    tag = "rules",
    request_body = RuleInput,
    responses(
        (status = 201, body = RuleView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_rule(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(input): ApiJson<RuleInput>,
) -> Result<(StatusCode, axum::Json<RuleView>), ApiError> {
    let spec = input.into_spec().map_err(ApiError::Validation)?;
    let mut tx = state.store.begin().await?;
    let row = repo::insert_rule(&mut tx, &admin.tenant, &spec, false, Utc::now()).await?;
    tx.commit().await?;
    tracing::info!(tenant = %admin.tenant, rule = %row.id, by = %admin.sub, "rule created");
    Ok((StatusCode::CREATED, axum::Json(row.into())))
}

/// One rule.
#[utoipa::path(
    get,
    path = "/api/v1/rules/{id}",
    tag = "rules",
    params(("id" = String, Path, description = "Rule id")),
    responses(
        (status = 200, body = RuleView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn get_rule(
    State(state): State<AppState>,
    caller: Viewer,
    Path(id): Path<String>,
) -> Result<axum::Json<RuleView>, ApiError> {
    let id = parse_id(&id)?;
    let row = repo::get_rule(&state.store, &caller.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(row.into()))
}

/// Replaces a rule.
#[utoipa::path(
    put,
    path = "/api/v1/rules/{id}",
    tag = "rules",
    params(("id" = String, Path, description = "Rule id")),
    request_body = RuleInput,
    responses(
        (status = 200, body = RuleView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn replace_rule(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RuleInput>,
) -> Result<axum::Json<RuleView>, ApiError> {
    let id = parse_id(&id)?;
    let spec = input.into_spec().map_err(ApiError::Validation)?;
    let row = repo::update_rule(&state.store, &admin.tenant, id, &spec, Utc::now())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(row.into()))
}

/// What `PATCH /api/v1/rules/{id}` changes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    /// Enables or disables the rule (disabling resolves its open alerts).
    pub enabled: bool,
}

/// Enables or disables a rule.
#[utoipa::path(
    patch,
    path = "/api/v1/rules/{id}",
    tag = "rules",
    params(("id" = String, Path, description = "Rule id")),
    request_body = RulePatch,
    responses(
        (status = 200, body = RuleView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn patch_rule(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<RulePatch>,
) -> Result<axum::Json<RuleView>, ApiError> {
    let id = parse_id(&id)?;
    let row = repo::get_rule(&state.store, &admin.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut spec = row.spec.0;
    spec.enabled = patch.enabled;
    let row = repo::update_rule(&state.store, &admin.tenant, id, &spec, Utc::now())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(row.into()))
}

/// Deletes a rule; its open alerts are resolved by the engine at its next tick.
#[utoipa::path(
    delete,
    path = "/api/v1/rules/{id}",
    tag = "rules",
    params(("id" = String, Path, description = "Rule id")),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn delete_rule(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if repo::delete_rule(&state.store, &admin.tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
