//! Reads of the stored samples: raw series, aggregations, names, search, stats, export.
//!
//! Every query is scoped to the caller's tenant and bounded: series selected
//! (`metrics.max_query_series`), samples read (`metrics.max_query_samples`), buckets of
//! an aggregation, rows of an export (`metrics.max_export_rows`). Label matchers use
//! Rust's regex syntax, so series are selected by tenant and name in SQL and by
//! matchers here; samples are then read for the selected series ids only.

pub mod aggregate;
mod export;
mod params;

use crate::api::paging::Page;
use crate::api::{ApiError, Problem};
use crate::app::AppState;
use crate::auth::Viewer;
use crate::series::{Labels, Matcher, validate_metric_name};
use crate::store::samples::{self, SeriesInfo};
use aggregate::{Aggregator, Func};
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use params::Pairs;
use serde::Serialize;
use std::time::Duration;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The `/api/v1/metrics` read routes. Their paths are all literal or under a literal
/// prefix (`/history/{name}`), so no pattern captures another.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_samples))
        .routes(routes!(aggregated))
        .routes(routes!(history))
        .routes(routes!(names))
        .routes(routes!(search))
        .routes(routes!(stats))
        .routes(routes!(realtime))
        .routes(routes!(export::export))
}

/// At most this many buckets in one aggregation (as Prometheus' 11 000 points).
const MAX_BUCKETS: i64 = 11_000;
/// `/realtime` looks this far back.
const REALTIME_WINDOW: Duration = Duration::from_secs(300);

/// One sample with its series.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SampleOut {
    pub name: String,
    pub labels: Labels,
    pub timestamp: DateTime<Utc>,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Point {
    pub timestamp: DateTime<Utc>,
    pub value: f64,
}

/// A series with its samples in a window.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SeriesOut {
    pub name: String,
    pub labels: Labels,
    /// Oldest first.
    pub samples: Vec<Point>,
}

/// The series of a window.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub series: Vec<SeriesOut>,
    /// True when `limit` samples were returned and more exist.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupOut {
    /// Values of the `by` labels.
    pub labels: Labels,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Aggregated {
    pub name: String,
    #[serde(rename = "fn")]
    pub func: Func,
    /// Bucket width in seconds.
    pub step: f64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Points are bucket starts; buckets without data are absent.
    pub groups: Vec<GroupOut>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NameOut {
    pub name: String,
    /// Series with this name.
    pub series: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub series: i64,
    /// Series written within `metrics.active_series_window`.
    pub active_series: i64,
    pub names: i64,
    /// Samples stored within the retention (counted at ingest).
    pub samples: i64,
    /// Samples ingested per second over the last few minutes.
    pub ingest_rate_per_sec: f64,
    /// The tenant's limit of active series (0: none).
    pub max_active_series: usize,
    pub retention_seconds: u64,
}

fn time(ms: i64) -> DateTime<Utc> {
    crate::store::DbTime::from_millis(ms).0
}

/// The series of the tenant named `name` (any when `None`) that all `matchers` select.
/// 422 `query_too_large` past `metrics.max_query_series`.
pub(crate) async fn select_series(
    state: &AppState,
    tenant: &str,
    name: Option<&str>,
    matchers: &[Matcher],
) -> Result<Vec<SeriesInfo>, ApiError> {
    let max = state.config.metrics.max_query_series;
    // Read one more than allowed without matchers: more means too many. With matchers
    // the SQL side cannot filter, so read a bounded multiple and filter here.
    let read_limit = if matchers.is_empty() {
        max + 1
    } else {
        max * 10 + 1
    };
    let candidates = samples::series_named(&state.store, tenant, name, read_limit).await?;
    if candidates.len() == read_limit {
        return Err(too_large(format!(
            "the query selects more than {max} series; narrow it with a name or matchers"
        )));
    }
    let selected: Vec<SeriesInfo> = candidates
        .into_iter()
        .filter(|s| matchers.iter().all(|m| m.matches(&s.labels)))
        .collect();
    if selected.len() > max {
        return Err(too_large(format!(
            "the query selects more than {max} series; narrow it with matchers"
        )));
    }
    Ok(selected)
}

fn too_large(detail: String) -> ApiError {
    ApiError::Unprocessable {
        code: "query_too_large",
        detail,
    }
}

/// Raw samples of the selected series in a time range, as a paged list ordered by
/// series then time.
#[utoipa::path(
    get,
    path = "/api/v1/metrics",
    tag = "metrics",
    params(
        ("name" = Option<String>, Query, description = "Metric name"),
        ("match" = Option<Vec<String>>, Query, description = "Label matcher, repeatable: `queue=a`, `queue!=a`, `queue=~g.*`, `queue!~g.*`"),
        ("from" = Option<String>, Query, description = "Start (inclusive), RFC 3339 or epoch ms; default `to` − 1h"),
        ("to" = Option<String>, Query, description = "End (exclusive), RFC 3339 or epoch ms; default now"),
        ("limit" = Option<u32>, Query, description = "Samples per page, 1-1000 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = Page<SampleOut>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_samples(
    State(state): State<AppState>,
    caller: Viewer,
    pairs: Pairs,
) -> Result<Json<Page<SampleOut>>, ApiError> {
    pairs.check(&["name", "match", "from", "to", "limit", "cursor"])?;
    let name = pairs.metric_name()?;
    let matchers = pairs.matchers()?;
    let range = pairs.range(Utc::now(), Duration::from_secs(3600))?;
    let limit = pairs.limit(50, 1000)?;
    let after: Option<(i64, i64)> = pairs.cursor()?;
    let series = select_series(&state, &caller.tenant, name.as_deref(), &matchers).await?;
    let by_id: std::collections::HashMap<i64, &SeriesInfo> =
        series.iter().map(|s| (s.id, s)).collect();
    let ids: Vec<i64> = series.iter().map(|s| s.id).collect();
    let mut rows = Vec::new();
    samples::for_each_sample(
        &state.store,
        &ids,
        range,
        after,
        u64::from(limit) + 1,
        |row| {
            rows.push(row);
            std::future::ready(true)
        },
    )
    .await?;
    let page = Page::from_overfetch(rows, limit, |r| (r.series_id, r.ts_ms));
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .filter_map(|r| {
                by_id.get(&r.series_id).map(|s| SampleOut {
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                    timestamp: time(r.ts_ms),
                    value: r.value,
                })
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Samples bucketed by `step` and combined with `fn`, per group of the `by` labels.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/aggregated",
    tag = "metrics",
    params(
        ("name" = String, Query, description = "Metric name"),
        ("fn" = Option<String>, Query, description = "avg (default), min, max, sum, count, rate (per second), increase, p95; rate and increase handle counter resets"),
        ("step" = Option<String>, Query, description = "Bucket width: 30s, 5m, 1h or seconds; default (to − from) / 100, at least 1s; at most 11 000 buckets"),
        ("by" = Option<String>, Query, description = "Comma-separated labels to group by; none: one group"),
        ("match" = Option<Vec<String>>, Query, description = "Label matcher, repeatable"),
        ("from" = Option<String>, Query, description = "Start, RFC 3339 or epoch ms; default `to` − 1h"),
        ("to" = Option<String>, Query, description = "End, RFC 3339 or epoch ms; default now"),
    ),
    responses(
        (status = 200, body = Aggregated),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation`, or `query_too_large` (too many series, samples or buckets)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn aggregated(
    State(state): State<AppState>,
    caller: Viewer,
    pairs: Pairs,
) -> Result<Json<Aggregated>, ApiError> {
    pairs.check(&["name", "fn", "step", "by", "match", "from", "to"])?;
    let name = pairs
        .metric_name()?
        .ok_or_else(|| ApiError::field("name", "is required"))?;
    let func = match pairs.get("fn") {
        None => Func::Avg,
        Some(text) => Func::parse(text).ok_or_else(|| {
            ApiError::field(
                "fn",
                "must be one of avg, min, max, sum, count, rate, increase, p95",
            )
        })?,
    };
    let by: Vec<String> = match pairs.get("by") {
        None => Vec::new(),
        Some(text) => text
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                crate::series::validate_label_name(l)
                    .map(|()| l.to_string())
                    .map_err(|e| ApiError::field("by", e))
            })
            .collect::<Result<_, _>>()?,
    };
    let matchers = pairs.matchers()?;
    let (from, to) = pairs.range(Utc::now(), Duration::from_secs(3600))?;
    let span_ms = (to - from).num_milliseconds();
    let step_ms = match pairs.duration("step")? {
        Some(step) => step.as_millis().min(i64::MAX as u128) as i64,
        None => (span_ms / 100).max(1000),
    };
    if step_ms < 1000 {
        return Err(ApiError::field("step", "must be at least 1s"));
    }
    let buckets = (span_ms + step_ms - 1) / step_ms;
    if buckets > MAX_BUCKETS {
        return Err(too_large(format!(
            "{buckets} buckets; at most {MAX_BUCKETS}: use a larger step or a shorter range"
        )));
    }

    let series = select_series(&state, &caller.tenant, Some(&name), &matchers).await?;
    let ids: Vec<i64> = series.iter().map(|s| s.id).collect();
    let baselines = if func.is_counter() {
        samples::samples_before(
            &state.store,
            &ids,
            from,
            chrono::Duration::milliseconds(step_ms),
        )
        .await?
    } else {
        Default::default()
    };
    let mut aggregator = Aggregator::new(
        func,
        from.timestamp_millis(),
        step_ms,
        &by,
        series.iter().map(|s| (s.id, &s.labels)),
        baselines,
    );
    let max_samples = state.config.metrics.max_query_samples as u64;
    let mut read = 0u64;
    samples::for_each_sample(
        &state.store,
        &ids,
        (from, to),
        None,
        max_samples + 1,
        |row| {
            read += 1;
            aggregator.push(row.series_id, row.ts_ms, row.value);
            std::future::ready(true)
        },
    )
    .await?;
    if read > max_samples {
        return Err(too_large(format!(
            "the query reads more than {max_samples} samples; use a shorter range or matchers"
        )));
    }
    let groups = aggregator
        .finish()
        .into_iter()
        .map(|g| GroupOut {
            labels: g.labels,
            points: g
                .points
                .into_iter()
                .map(|(ts, value)| Point {
                    timestamp: time(ts),
                    value,
                })
                .collect(),
        })
        .collect();
    Ok(Json(Aggregated {
        name,
        func,
        step: step_ms as f64 / 1000.0,
        from,
        to,
        groups,
    }))
}

/// The samples of every selected series in a window, grouped by series, at most
/// `limit` samples in all.
async fn window(
    state: &AppState,
    tenant: &str,
    name: Option<&str>,
    matchers: &[Matcher],
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    limit: u32,
) -> Result<Window, ApiError> {
    let series = select_series(state, tenant, name, matchers).await?;
    let ids: Vec<i64> = series.iter().map(|s| s.id).collect();
    let mut out: Vec<SeriesOut> = Vec::new();
    let mut current: Option<i64> = None;
    let mut read = 0u32;
    let index: std::collections::HashMap<i64, &SeriesInfo> =
        series.iter().map(|s| (s.id, s)).collect();
    samples::for_each_sample(
        &state.store,
        &ids,
        (from, to),
        None,
        u64::from(limit) + 1,
        |row| {
            read += 1;
            if read <= limit
                && let Some(info) = index.get(&row.series_id)
            {
                if current != Some(row.series_id) {
                    current = Some(row.series_id);
                    out.push(SeriesOut {
                        name: info.name.clone(),
                        labels: info.labels.clone(),
                        samples: Vec::new(),
                    });
                }
                if let Some(last) = out.last_mut() {
                    last.samples.push(Point {
                        timestamp: time(row.ts_ms),
                        value: row.value,
                    });
                }
            }
            std::future::ready(true)
        },
    )
    .await?;
    Ok(Window {
        from,
        to,
        series: out,
        truncated: read > limit,
    })
}

/// The history of one metric: every selected series with its samples, grouped.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/history/{name}",
    tag = "metrics",
    params(
        ("name" = String, Path, description = "Metric name"),
        ("match" = Option<Vec<String>>, Query, description = "Label matcher, repeatable"),
        ("from" = Option<String>, Query, description = "Start, RFC 3339 or epoch ms; default `to` − 24h"),
        ("to" = Option<String>, Query, description = "End, RFC 3339 or epoch ms; default now"),
        ("limit" = Option<u32>, Query, description = "Samples in all, 1-100000 (default 10000)"),
    ),
    responses(
        (status = 200, body = Window),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn history(
    State(state): State<AppState>,
    caller: Viewer,
    Path(name): Path<String>,
    pairs: Pairs,
) -> Result<Json<Window>, ApiError> {
    pairs.check(&["match", "from", "to", "limit"])?;
    validate_metric_name(&name).map_err(|e| ApiError::field("name", e))?;
    let matchers = pairs.matchers()?;
    let range = pairs.range(Utc::now(), Duration::from_secs(24 * 3600))?;
    let limit = pairs.limit(10_000, 100_000)?;
    window(&state, &caller.tenant, Some(&name), &matchers, range, limit)
        .await
        .map(Json)
}

/// The last five minutes of the selected series (all the tenant's when no name).
#[utoipa::path(
    get,
    path = "/api/v1/metrics/realtime",
    tag = "metrics",
    params(
        ("name" = Option<String>, Query, description = "Metric name"),
        ("match" = Option<Vec<String>>, Query, description = "Label matcher, repeatable"),
        ("limit" = Option<u32>, Query, description = "Samples in all, 1-100000 (default 10000)"),
    ),
    responses(
        (status = 200, body = Window),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn realtime(
    State(state): State<AppState>,
    caller: Viewer,
    pairs: Pairs,
) -> Result<Json<Window>, ApiError> {
    pairs.check(&["name", "match", "limit"])?;
    let name = pairs.metric_name()?;
    let matchers = pairs.matchers()?;
    let limit = pairs.limit(10_000, 100_000)?;
    let now = Utc::now();
    // Samples may be stamped up to 10 minutes ahead; show those that already arrived.
    let to = now + chrono::Duration::minutes(10);
    let from = now - chrono::Duration::from_std(REALTIME_WINDOW).unwrap_or_default();
    window(
        &state,
        &caller.tenant,
        name.as_deref(),
        &matchers,
        (from, to),
        limit,
    )
    .await
    .map(Json)
}

/// Metric names of the tenant, in name order, with their series counts.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/names",
    tag = "metrics",
    params(
        ("limit" = Option<u32>, Query, description = "Names per page, 1-1000 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = Page<NameOut>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn names(
    State(state): State<AppState>,
    caller: Viewer,
    pairs: Pairs,
) -> Result<Json<Page<NameOut>>, ApiError> {
    pairs.check(&["limit", "cursor"])?;
    name_page(&state, &caller.tenant, None, &pairs)
        .await
        .map(Json)
}

/// Metric names containing `q` (case-insensitive), in name order.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/search",
    tag = "metrics",
    params(
        ("q" = String, Query, description = "Text the name contains, 1-200 characters"),
        ("limit" = Option<u32>, Query, description = "Names per page, 1-1000 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = Page<NameOut>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn search(
    State(state): State<AppState>,
    caller: Viewer,
    pairs: Pairs,
) -> Result<Json<Page<NameOut>>, ApiError> {
    pairs.check(&["q", "limit", "cursor"])?;
    let q = pairs
        .get("q")
        .ok_or_else(|| ApiError::field("q", "is required"))?;
    if q.chars().count() > 200 {
        return Err(ApiError::field("q", "must be at most 200 characters"));
    }
    name_page(&state, &caller.tenant, Some(q), &pairs)
        .await
        .map(Json)
}

async fn name_page(
    state: &AppState,
    tenant: &str,
    search: Option<&str>,
    pairs: &Pairs,
) -> Result<Page<NameOut>, ApiError> {
    let limit = pairs.limit(50, 1000)?;
    let after: Option<String> = pairs.cursor()?;
    let rows = samples::names(&state.store, tenant, search, after.as_deref(), limit + 1).await?;
    let page = Page::from_overfetch(rows, limit, |(name, _)| name.clone());
    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(|(name, series)| NameOut { name, series })
            .collect(),
        next_cursor: page.next_cursor,
    })
}

/// Series and sample counts and the ingest rate of the tenant.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/stats",
    tag = "metrics",
    responses(
        (status = 200, body = Stats),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn stats(State(state): State<AppState>, caller: Viewer) -> Result<Json<Stats>, ApiError> {
    let config = &state.config.metrics;
    let now = Utc::now();
    let retention = chrono::Duration::from_std(config.retention).unwrap_or_default();
    let active = chrono::Duration::from_std(config.active_series_window).unwrap_or_default();
    let (recent_since, elapsed) = rate_window(now);
    let counts = samples::tenant_stats(
        &state.store,
        &caller.tenant,
        now - active,
        now - retention,
        recent_since,
    )
    .await?;
    Ok(Json(Stats {
        series: counts.series,
        active_series: counts.active_series,
        names: counts.names,
        samples: counts.samples,
        ingest_rate_per_sec: counts.recent_samples as f64 / elapsed,
        max_active_series: config.max_active_series,
        retention_seconds: config.retention.as_secs(),
    }))
}

/// The start of the ingest-rate window (the last five minute buckets, the current one
/// included) and its length in seconds so far.
fn rate_window(now: DateTime<Utc>) -> (DateTime<Utc>, f64) {
    let minute = now.timestamp_millis().div_euclid(60_000) * 60_000;
    let start = minute - 4 * 60_000;
    let elapsed = (now.timestamp_millis() - start) as f64 / 1000.0;
    (time(start), elapsed.max(1.0))
}

/// Samples per second the tenant ingested over the last few minutes, on every replica
/// together (for the dashboard's overview).
pub async fn ingest_rate(state: &AppState, tenant: &str) -> Result<f64, sqlx::Error> {
    let now = Utc::now();
    let (recent_since, elapsed) = rate_window(now);
    let counts =
        samples::tenant_stats(&state.store, tenant, now, recent_since, recent_since).await?;
    Ok(counts.recent_samples as f64 / elapsed)
}
