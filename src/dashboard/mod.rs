//! Dashboard data: overview, health of components and dependencies, recent activity.
//! Other parts contribute sections (alerts from rules, queues and probes from sources).
//!
//! Recent activity is read from the bus history of the main topics rather than from a
//! table of its own: every event a dashboard shows live is already kept there (the
//! newest `bus.history_len` per topic, for `bus.history_retention`), in the same shape
//! as on `/ws`, so the first screen and the live stream agree, and nothing is written
//! twice. The price: activity reaches back only as far as those histories.

use crate::agents::repo as agents_repo;
use crate::api::error::{ApiError, Problem};
use crate::api::paging::{Page, PageParams, encode_cursor};
use crate::app::AppState;
use crate::auth::Viewer;
use crate::sql;
use crate::store::DbTime;
use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The `/api/v1/dashboard` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(overview))
        .routes(routes!(health))
        .routes(routes!(activity))
}

/// One component or dependency in `GET /api/v1/dashboard/health`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ComponentHealth {
    /// e.g. "database", "bus", or a probe's or source's name.
    pub name: String,
    /// e.g. "store", "bus", "http_probe", "kumomta".
    pub kind: String,
    /// "up", "down" or "unknown".
    pub status: String,
    pub response_time_ms: Option<f64>,
    pub detail: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
}

/// Agents by presence and reported health.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentCounts {
    pub total: i64,
    pub connected: i64,
    pub disconnected: i64,
    pub by_health: BTreeMap<String, i64>,
}

/// Samples stored over the last minute.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestRate {
    pub window_seconds: i64,
    /// Batches stored in the window (batches sent with a `batch_id`: every agent batch,
    /// and HTTP batches that name one).
    pub batches: i64,
    pub samples: i64,
    pub samples_per_second: f64,
}

/// What a dashboard's first screen needs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub agents: AgentCounts,
    /// Open alerts by severity; absent when the tenant has no alerts at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<BTreeMap<String, i64>>,
    /// KumoMTA queue totals; absent when KumoMTA is not polled.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub queues: Option<serde_json::Value>,
    pub ingest: IngestRate,
    pub generated_at: DateTime<Utc>,
}

/// Window of the ingest rate.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Agents by status, open alerts by severity, queue totals and the ingest rate.
#[utoipa::path(
    get,
    path = "/api/v1/dashboard/overview",
    tag = "dashboard",
    responses(
        (status = 200, body = Overview),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn overview(
    State(state): State<AppState>,
    caller: Viewer,
) -> Result<Json<Overview>, ApiError> {
    let tenant = caller.tenant.as_str();
    let now = Utc::now();
    let (agents, alerts, queues, ingest) = tokio::join!(
        agents_repo::summary(&state.store, tenant),
        crate::rules::alert_counts(&state, tenant),
        crate::sources::queue_totals(&state, tenant),
        ingest_rate(&state, tenant, now),
    );
    let agents = agents?;
    Ok(Json(Overview {
        agents: AgentCounts {
            total: agents.total,
            connected: agents.connected,
            disconnected: agents.disconnected,
            by_health: agents.by_health,
        },
        alerts: alerts?,
        queues: queues?,
        ingest: ingest?,
        generated_at: now,
    }))
}

async fn ingest_rate(
    state: &AppState,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<IngestRate, sqlx::Error> {
    let since = now - RATE_WINDOW;
    let mut conn = state.store.read().await?;
    let (batches, samples): (i64, i64) = sql!(
        conn.db(),
        one(i64, i64),
        "SELECT count(*), CAST(COALESCE(sum(accepted), 0) AS BIGINT)
         FROM ingest_batches WHERE tenant = $1 AND created_at >= $2",
        tenant,
        DbTime(since)
    )?;
    let window = RATE_WINDOW.as_secs() as i64;
    Ok(IngestRate {
        window_seconds: window,
        batches,
        samples,
        samples_per_second: samples as f64 / window as f64,
    })
}

/// Health of every component and dependency.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthView {
    /// "up" when everything is, "degraded" when something other than the database is
    /// down, "down" when the database is.
    pub status: String,
    /// The replica that answered.
    pub replica: String,
    pub components: Vec<ComponentHealth>,
}

/// Database and bus (each timed), every live replica, and the tenant's probes and
/// polled sources.
#[utoipa::path(
    get,
    path = "/api/v1/dashboard/health",
    tag = "dashboard",
    responses(
        (status = 200, body = HealthView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn health(State(state): State<AppState>, caller: Viewer) -> Json<HealthView> {
    /// A dependency that takes longer than this is reported down.
    const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
    let timed =
        |name: &str, kind: &str, outcome: Result<(), String>, started: Instant| ComponentHealth {
            name: name.to_string(),
            kind: kind.to_string(),
            status: if outcome.is_ok() { "up" } else { "down" }.to_string(),
            response_time_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
            detail: outcome.err(),
            checked_at: Some(Utc::now()),
        };
    let store_probe = async {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "database health check failed");
                Err("database does not answer".to_string())
            }
            Err(_) => Err("database did not answer in time".to_string()),
        };
        timed("database", "store", outcome, started)
    };
    let bus_probe = async {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, state.bus.ping()).await {
            Ok(Ok(())) if state.bus.is_receiving() => Ok(()),
            Ok(Ok(())) => Err("events from other replicas are not arriving".to_string()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "bus health check failed");
                Err("event bus does not answer".to_string())
            }
            Err(_) => Err("event bus did not answer in time".to_string()),
        };
        timed("bus", "bus", outcome, started)
    };
    let (store, bus, replicas, sources) = tokio::join!(
        store_probe,
        bus_probe,
        state.registry.replicas(),
        crate::sources::health(&state, &caller.tenant),
    );
    let store_up = store.status == "up";
    let mut components = vec![store, bus];
    match replicas {
        Ok(replicas) => components.extend(replicas.into_iter().map(|r| ComponentHealth {
            name: r.id,
            kind: "replica".into(),
            status: "up".into(),
            response_time_ms: None,
            detail: Some(format!("version {} at {}", r.version, r.address)),
            checked_at: r.last_seen,
        })),
        Err(e) => {
            tracing::warn!(error = %e, "replica registry unavailable");
            components.push(unknown(
                "replicas",
                "replica",
                "the replica registry is unavailable",
            ));
        }
    }
    match sources {
        Ok(sources) => components.extend(sources),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "sources health unavailable");
            components.push(unknown(
                "sources",
                "sources",
                "source health is unavailable",
            ));
        }
    }
    let status = if !store_up {
        "down"
    } else if components.iter().any(|c| c.status == "down") {
        "degraded"
    } else {
        "up"
    };
    Json(HealthView {
        status: status.into(),
        replica: state.replica_id().to_string(),
        components,
    })
}

fn unknown(name: &str, kind: &str, detail: &str) -> ComponentHealth {
    ComponentHealth {
        name: name.into(),
        kind: kind.into(),
        status: "unknown".into(),
        response_time_ms: None,
        detail: Some(detail.into()),
        checked_at: Some(Utc::now()),
    }
}

/// The topics recent activity is read from, by default.
pub const ACTIVITY_TOPICS: &[&str] = &["alerts", "agents", "queues", "connection", "metrics"];
/// Events read per topic for one page; bounds the work of a request.
const ACTIVITY_SCAN: usize = 1000;

/// `?topics=&limit=&cursor=` of `GET /api/v1/dashboard/activity`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityParams {
    /// Comma-separated topics (default: alerts,agents,queues,connection,metrics).
    pub topics: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// One recent event, as `/ws` delivers it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityItem {
    pub topic: String,
    pub event: String,
    pub offset: u64,
    pub ts: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
}

/// Sort key, newest first: time descending, then topic, then offset descending.
type ActivityKey = (i64, String, u64);

fn comes_after(item: &ActivityKey, cursor: &ActivityKey) -> bool {
    use std::cmp::Ordering::*;
    match cursor.0.cmp(&item.0) {
        Less => false,
        Greater => true,
        Equal => match item.1.cmp(&cursor.1) {
            Less => false,
            Greater => true,
            Equal => item.2 < cursor.2,
        },
    }
}

/// Recent events of the main topics, newest first, paged.
#[utoipa::path(
    get,
    path = "/api/v1/dashboard/activity",
    tag = "dashboard",
    params(ActivityParams),
    responses(
        (status = 200, body = Page<ActivityItem>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn activity(
    State(state): State<AppState>,
    caller: Viewer,
    Query(params): Query<ActivityParams>,
) -> Result<Json<Page<ActivityItem>>, ApiError> {
    let paging = PageParams {
        limit: params.limit,
        cursor: params.cursor.clone(),
    };
    let limit = paging.limit()?;
    let cursor: Option<ActivityKey> = paging.after()?;
    let topics: Vec<String> = match params.topics.as_deref() {
        None => ACTIVITY_TOPICS.iter().map(|t| t.to_string()).collect(),
        Some(list) => {
            let topics: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            if topics.is_empty() || topics.len() > 16 {
                return Err(ApiError::field("topics", "name 1 to 16 topics"));
            }
            for topic in &topics {
                crate::bus::validate_client_topic(topic)
                    .map_err(|e| ApiError::field("topics", e))?;
            }
            topics
        }
    };
    let scan = ACTIVITY_SCAN.min(state.config.bus.history_len);
    let mut items: Vec<(ActivityKey, ActivityItem)> = Vec::new();
    for topic in &topics {
        let head = state.bus.head(&caller.tenant, topic).await?;
        if head.offset == 0 {
            continue;
        }
        let after = head.offset.saturating_sub(scan as u64);
        let history = state
            .bus
            .history(&caller.tenant, topic, after, scan)
            .await?;
        for event in history.events {
            let key = (event.ts_ms, event.topic.clone(), event.offset);
            if cursor.as_ref().is_some_and(|c| !comes_after(&key, c)) {
                continue;
            }
            items.push((
                key,
                ActivityItem {
                    topic: event.topic.clone(),
                    event: event.event.clone(),
                    offset: event.offset,
                    ts: Utc
                        .timestamp_millis_opt(event.ts_ms)
                        .single()
                        .unwrap_or_default(),
                    data: event.data.clone(),
                },
            ));
        }
    }
    items.sort_by(|a, b| {
        b.0.0
            .cmp(&a.0.0)
            .then_with(|| a.0.1.cmp(&b.0.1))
            .then_with(|| b.0.2.cmp(&a.0.2))
    });
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|(key, _)| encode_cursor(key))
    } else {
        None
    };
    Ok(Json(Page {
        items: items.into_iter().map(|(_, item)| item).collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_cursor_orders_newest_first() {
        let cursor = (100, "alerts".to_string(), 5);
        assert!(comes_after(&(99, "zz".into(), 9), &cursor));
        assert!(!comes_after(&(101, "a".into(), 1), &cursor));
        assert!(comes_after(&(100, "alerts".into(), 4), &cursor));
        assert!(!comes_after(&(100, "alerts".into(), 5), &cursor));
        assert!(comes_after(&(100, "metrics".into(), 9), &cursor));
        assert!(!comes_after(&(100, "agents".into(), 1), &cursor));
    }
}
