//! `/api/v1/alerts`: reading alerts and their timeline, and people's actions on them
//! (acknowledge, resolve, snooze, delete).

use super::rules::parse_id;
use crate::api::paging::{Page, PageParams};
use crate::api::{ApiError, ApiJson, Problem};
use crate::app::AppState;
use crate::auth::{Admin, Operator, Viewer};
use crate::notify::outbox::{self, OutboxKind};
use crate::rules::engine::publish_alert;
use crate::rules::model::MAX_HOLD;
use crate::rules::repo::{self, AlertRow, AlertView, NewEvent};
use crate::series::Matcher;
use crate::sql;
use crate::store::DbTime;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// Longest comment accepted on an acknowledgement.
const MAX_COMMENT_CHARS: usize = 1000;
/// At most this many label matchers in a list filter.
const MAX_LABEL_MATCHERS: usize = 16;
/// A list with label matchers scans at most this many alerts per page.
const MAX_SCAN: usize = 20_000;

/// Filters of `GET /api/v1/alerts`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// `pending`, `firing`, `no_data`, `resolved`, `inactive`, or `open` (the first three).
    pub state: Option<String>,
    /// `info`, `warning`, `error` or `critical`.
    pub severity: Option<String>,
    pub rule_id: Option<Uuid>,
    pub acknowledged: Option<bool>,
    /// Label matchers separated by commas, e.g. `queue=~gmail.*,team=mail`.
    pub labels: Option<String>,
    /// Alerts that started at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Alerts that started before this time.
    pub to: Option<DateTime<Utc>>,
    /// Items per page, 1-1000 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn parse_matchers(text: &str) -> Result<Vec<Matcher>, ApiError> {
    let matchers: Vec<Matcher> = text
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            Matcher::parse(part.trim()).map_err(|e| ApiError::field("labels", e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    if matchers.len() > MAX_LABEL_MATCHERS {
        return Err(ApiError::field(
            "labels",
            format!("at most {MAX_LABEL_MATCHERS} matchers"),
        ));
    }
    Ok(matchers)
}

/// Alerts of the caller's tenant, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(AlertQuery),
    responses(
        (status = 200, body = Page<AlertView>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_alerts(
    State(state): State<AppState>,
    caller: Viewer,
    Query(query): Query<AlertQuery>,
) -> Result<axum::Json<Page<AlertView>>, ApiError> {
    let page = PageParams {
        limit: query.limit,
        cursor: query.cursor.clone(),
    };
    let limit = page.limit()?;
    let mut after: Option<Uuid> = page.after()?;
    let states: Vec<String> = match query.state.as_deref() {
        None => Vec::new(),
        Some("open") => repo::OPEN_STATES.iter().map(|s| s.to_string()).collect(),
        Some(s @ ("pending" | "firing" | "no_data" | "resolved" | "inactive")) => {
            vec![s.to_string()]
        }
        Some(_) => {
            return Err(ApiError::field(
                "state",
                "must be one of pending, firing, no_data, resolved, inactive, open",
            ));
        }
    };
    if let Some(severity) = &query.severity
        && !["info", "warning", "error", "critical"].contains(&severity.as_str())
    {
        return Err(ApiError::field(
            "severity",
            "must be one of info, warning, error, critical",
        ));
    }
    let matchers = query
        .labels
        .as_deref()
        .map(parse_matchers)
        .transpose()?
        .unwrap_or_default();
    let (s1, s2, s3) = (
        states.first().cloned(),
        states.get(1).cloned(),
        states.get(2).cloned(),
    );
    let batch = if matchers.is_empty() {
        i64::from(limit) + 1
    } else {
        500
    };
    let mut items: Vec<AlertView> = Vec::new();
    let mut scanned = 0usize;
    let mut conn = state.store.read().await?;
    loop {
        let rows: Vec<AlertRow> = sql!(
            conn.db(),
            all AlertRow,
            concat!(
                "SELECT ",
                crate::rules::repo::alert_columns!(),
                " FROM alerts
                 WHERE tenant = $1 AND ($2 IS NULL OR id < $2)
                   AND ($3 IS NULL OR state = $3 OR state = $4 OR state = $5)
                   AND ($6 IS NULL OR severity = $6)
                   AND ($7 IS NULL OR rule_id = $7)
                   AND ($8 IS NULL OR (acknowledged_at IS NOT NULL) = $8)
                   AND ($9 IS NULL OR started_at >= $9)
                   AND ($10 IS NULL OR started_at < $10)
                 ORDER BY id DESC LIMIT $11"
            ),
            &caller.tenant,
            after,
            s1.as_deref(),
            s2.as_deref().or(s1.as_deref()),
            s3.as_deref().or(s1.as_deref()),
            query.severity.as_deref(),
            query.rule_id,
            query.acknowledged,
            query.from.map(DbTime),
            query.to.map(DbTime),
            batch
        )?;
        let fetched = rows.len();
        scanned += fetched;
        after = rows.last().map(|r| r.id).or(after);
        items.extend(
            rows.into_iter()
                .filter(|r| matchers.iter().all(|m| m.matches(&r.labels.0)))
                .map(|r| r.view()),
        );
        if items.len() > limit as usize || (fetched as i64) < batch || scanned >= MAX_SCAN {
            break;
        }
    }
    Ok(axum::Json(Page::from_overfetch(items, limit, |a| a.id)))
}

async fn load(state: &AppState, tenant: &str, id: &str) -> Result<AlertRow, ApiError> {
    let id = parse_id(id)?;
    let mut conn = state.store.read().await?;
    repo::get_alert(conn.db(), tenant, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// One alert.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{id}",
    tag = "alerts",
    params(("id" = String, Path, description = "Alert id")),
    responses(
        (status = 200, body = AlertView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn get_alert(
    State(state): State<AppState>,
    caller: Viewer,
    Path(id): Path<String>,
) -> Result<axum::Json<AlertView>, ApiError> {
    Ok(axum::Json(load(&state, &caller.tenant, &id).await?.view()))
}

/// One entry of an alert's timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    /// Transitions (`pending`, `firing`, `resolved`, `no_data`, `pending_cleared`),
    /// actions (`acknowledged`, `resolved_by_hand`, `snoozed`), held-back notifications
    /// (`notification_suppressed`), and what notify did (`notification_sent`, …).
    pub kind: String,
    /// The alert's state after the entry (transitions and actions).
    pub state: Option<String>,
    pub value: Option<f64>,
    /// Who did it (actions).
    pub actor: Option<String>,
    pub reason: Option<String>,
    /// Notification entries: the channel.
    pub channel_id: Option<String>,
    pub detail: serde_json::Value,
}

/// The alert's timeline, oldest first: transitions, actions and notifications.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{id}/events",
    tag = "alerts",
    params(("id" = String, Path, description = "Alert id")),
    responses(
        (status = 200, body = Vec<TimelineEntry>),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn alert_events(
    State(state): State<AppState>,
    caller: Viewer,
    Path(id): Path<String>,
) -> Result<axum::Json<Vec<TimelineEntry>>, ApiError> {
    let alert = load(&state, &caller.tenant, &id).await?;
    let events = repo::alert_events(&state.store, &caller.tenant, alert.id).await?;
    let notifications =
        crate::notify::events_for_alert(&state.store, &caller.tenant, alert.id).await?;
    let mut timeline: Vec<TimelineEntry> = events
        .into_iter()
        .map(|e| TimelineEntry {
            at: e.at.0,
            kind: e.kind,
            state: Some(e.state),
            value: e.value,
            actor: e.actor,
            reason: Some(e.reason),
            channel_id: None,
            detail: e.detail.0,
        })
        .chain(notifications.into_iter().map(|n| TimelineEntry {
            at: n.at,
            kind: n.kind,
            state: None,
            value: None,
            actor: None,
            reason: None,
            channel_id: Some(n.channel_id),
            detail: n.detail,
        }))
        .collect();
    // Stable: entries at the same instant keep their recorded order.
    timeline.sort_by_key(|e| e.at);
    Ok(axum::Json(timeline))
}

/// Body of `POST /api/v1/alerts/{id}/acknowledge`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Why, or what is being done; at most 1000 characters.
    #[serde(default)]
    pub comment: Option<String>,
}

/// What a person does to an open alert.
enum Action {
    Acknowledge { comment: Option<String> },
    Resolve,
    Snooze { until: DateTime<Utc> },
}

impl Action {
    fn kind(&self) -> &'static str {
        match self {
            Action::Acknowledge { .. } => "acknowledged",
            Action::Resolve => "resolved_by_hand",
            Action::Snooze { .. } => "snoozed",
        }
    }
}

/// An action on an open alert, in one transaction: the row (compare-and-set on its
/// version, then + 1) and a timeline entry; a manual resolution of an alert that fired
/// also asks for resolved notifications. 409 when the alert is no longer open.
async fn act(
    state: &AppState,
    tenant: &str,
    id: &str,
    actor: &str,
    action: Action,
    reason: String,
) -> Result<AlertRow, ApiError> {
    let id = parse_id(id)?;
    let now = Utc::now();
    let kind = action.kind();
    let mut tx = state.store.begin().await?;
    let before = repo::get_alert(tx.db(), tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !before.is_open() {
        return Err(ApiError::Conflict(format!(
            "the alert is {}; only pending, firing or no_data alerts can be changed",
            before.state
        )));
    }
    let (db, v) = (tx.db(), before.version);
    let updated = match &action {
        Action::Acknowledge { comment } => sql!(
            db,
            exec,
            "UPDATE alerts SET acknowledged_at = $1, acknowledged_by = $2, ack_comment = $3,
                first_acknowledged_at = COALESCE(first_acknowledged_at, $1),
                version = version + 1, updated_at = $1
             WHERE tenant = $4 AND id = $5 AND version = $6",
            DbTime(now),
            actor,
            comment.as_deref(),
            tenant,
            id,
            v
        )?,
        Action::Resolve => sql!(
            db,
            exec,
            "UPDATE alerts SET state = 'resolved', resolved_at = $1, acknowledged_at = NULL,
                acknowledged_by = NULL, ack_comment = NULL, snoozed_until = NULL,
                version = version + 1, updated_at = $1
             WHERE tenant = $2 AND id = $3 AND version = $4",
            DbTime(now),
            tenant,
            id,
            v
        )?,
        Action::Snooze { until } => sql!(
            db,
            exec,
            "UPDATE alerts SET snoozed_until = $1, version = version + 1, updated_at = $2
             WHERE tenant = $3 AND id = $4 AND version = $5",
            DbTime(*until),
            DbTime(now),
            tenant,
            id,
            v
        )?,
    };
    if updated == 0 {
        return Err(ApiError::Conflict(
            "the alert changed meanwhile; read it again and retry".into(),
        ));
    }
    let bind_text = match &action {
        Action::Acknowledge { comment } => comment.clone(),
        _ => None,
    };
    let row = repo::get_alert(tx.db(), tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    repo::insert_event(
        &mut tx,
        &NewEvent {
            tenant,
            alert_id: id,
            rule_id: row.rule_id,
            kind,
            state: &row.state,
            value: row.value,
            actor: Some(actor),
            reason: &reason,
            detail: serde_json::json!({ "comment": bind_text }),
            at: now,
        },
    )
    .await?;
    if kind == "resolved_by_hand" && before.fired_at.is_some() {
        // Tell the channels that were told it fired.
        if let Some(rule) = repo::get_rule(&state.store, tenant, row.rule_id).await? {
            let spec = rule.spec.0;
            outbox::enqueue_transition(
                &mut tx,
                &outbox::Transition {
                    tenant,
                    alert_id: id,
                    rule_id: row.rule_id,
                    kind: OutboxKind::Resolved,
                    channels: &spec.channels,
                    policy: &spec.notify,
                    throttle: spec.throttle.as_ref(),
                    alert: &row.summary(),
                    group_key: crate::rules::engine::group_key(row.rule_id, &spec, &row.labels),
                    at: now,
                },
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(row)
}

/// Acknowledges an open alert (the acknowledgement is cleared when it resolves).
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/acknowledge",
    tag = "alerts",
    params(("id" = String, Path, description = "Alert id")),
    request_body = AckRequest,
    responses(
        (status = 200, body = AlertView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn acknowledge(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<axum::Json<AlertView>, ApiError> {
    // The body is optional: an empty one acknowledges without a comment.
    let request: AckRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AckRequest::default()
    } else {
        crate::api::json::parse(&body)?
    };
    let comment = request
        .comment
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(ApiError::field(
            "comment",
            format!("must be at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    let reason = match &comment {
        Some(c) => format!("acknowledged by {}: {c}", operator.sub),
        None => format!("acknowledged by {}", operator.sub),
    };
    let row = act(
        &state,
        &operator.tenant,
        &id,
        &operator.sub,
        Action::Acknowledge { comment },
        reason,
    )
    .await?;
    publish_alert(&state.bus, &row, "alert:acknowledged").await;
    Ok(axum::Json(row.view()))
}

/// Resolves an open alert by hand. If the condition still holds, the rule opens a new
/// alert at its next evaluation.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/resolve",
    tag = "alerts",
    params(("id" = String, Path, description = "Alert id")),
    responses(
        (status = 200, body = AlertView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn resolve(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<axum::Json<AlertView>, ApiError> {
    let row = act(
        &state,
        &operator.tenant,
        &id,
        &operator.sub,
        Action::Resolve,
        format!("resolved by {}", operator.sub),
    )
    .await?;
    publish_alert(&state.bus, &row, "alert:resolved").await;
    Ok(axum::Json(row.view()))
}

/// Body of `POST /api/v1/alerts/{id}/snooze`: `until` or `duration`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnoozeRequest {
    /// Notifications are held back until this time.
    pub until: Option<DateTime<Utc>>,
    /// … or for this long from now (`"30m"`, `"2h"`, or seconds).
    #[serde(default, with = "crate::rules::model::duration_format::option")]
    #[schema(value_type = Option<String>, example = "1h")]
    pub duration: Option<Duration>,
}

/// Snoozes an open alert: it keeps changing state, but is not notified until then.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/snooze",
    tag = "alerts",
    params(("id" = String, Path, description = "Alert id")),
    request_body = SnoozeRequest,
    responses(
        (status = 200, body = AlertView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn snooze(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<SnoozeRequest>,
) -> Result<axum::Json<AlertView>, ApiError> {
    let now = Utc::now();
    let until = match (request.until, request.duration) {
        (Some(until), None) => until,
        (None, Some(duration)) => {
            if duration.is_zero() {
                return Err(ApiError::field("duration", "must be greater than 0"));
            }
            if duration > MAX_HOLD {
                return Err(ApiError::field("duration", "must be at most 30 days"));
            }
            now + chrono::Duration::milliseconds(crate::rules::model::millis(duration))
        }
        _ => {
            return Err(ApiError::field(
                "until",
                "give until or duration (one of them)",
            ));
        }
    };
    if until <= now {
        return Err(ApiError::field("until", "must be in the future"));
    }
    if until > now + chrono::Duration::days(30) {
        return Err(ApiError::field("until", "must be at most 30 days ahead"));
    }
    let row = act(
        &state,
        &operator.tenant,
        &id,
        &operator.sub,
        Action::Snooze { until },
        format!("snoozed by {} until {}", operator.sub, until.to_rfc3339()),
    )
    .await?;
    publish_alert(&state.bus, &row, "alert:snoozed").await;
    Ok(axum::Json(row.view()))
}

/// Deletes an alert and its timeline.
#[utoipa::path(
    delete,
    path = "/api/v1/alerts/{id}",
    tag = "alerts",
    params(("id" = String, Path, description = "Alert id")),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn delete_alert(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.store.begin().await?;
    let row = repo::get_alert(tx.db(), &admin.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    sql!(
        tx.db(),
        exec,
        "DELETE FROM alert_events WHERE tenant = $1 AND alert_id = $2",
        &admin.tenant,
        id
    )?;
    sql!(
        tx.db(),
        exec,
        "DELETE FROM alerts WHERE tenant = $1 AND id = $2",
        &admin.tenant,
        id
    )?;
    tx.commit().await?;
    let mut gone = row;
    gone.state = "deleted".into();
    publish_alert(&state.bus, &gone, "alert:updated").await;
    tracing::info!(tenant = %admin.tenant, alert = %id, by = %admin.sub, "alert deleted");
    Ok(StatusCode::NO_CONTENT)
}
