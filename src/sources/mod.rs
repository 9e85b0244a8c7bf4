//! Sources: what Lookout polls (KumoMTA, Prometheus targets, HTTP probes) and the
//! KumoMTA log-hook receiver.
//!
//! - [`kumomta`] and [`prometheus_text`]: what the sources serve, and what it means (pure);
//! - [`model`] and [`repo`]: the registry (`/api/v1/sources`, [`api`]);
//! - [`poller`]: the one poller per cluster, on the `sources` leaseholder;
//! - [`log_hook`]: kumod's log hook, on every replica.

pub mod api;
pub mod kumomta;
pub mod log_hook;
pub mod model;
pub mod poller;
pub mod prometheus_text;
pub mod repo;

use crate::app::AppState;
use crate::dashboard::ComponentHealth;
use chrono::{TimeZone, Utc};
use model::SourceKind;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;

/// The `/api/v1/sources` and `/api/v1/queues` routes.
pub fn router() -> OpenApiRouter<AppState> {
    api::router()
}

/// Starts the elected poller (it polls only while this replica holds the `sources` lease).
pub fn start(state: &AppState) {
    poller::start(state);
}

/// Health of the probes and polled sources of `tenant`, for the dashboard: a probe is up
/// when its target answered as expected, a KumoMTA source when kumod is reachable and
/// live, a Prometheus target when its last scrape worked.
pub async fn health(state: &AppState, tenant: &str) -> anyhow::Result<Vec<ComponentHealth>> {
    let rows = repo::all_of_tenant(&state.store, tenant).await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let kind = row.kind()?;
            let polled = row.last_polled_at.map(|t| t.0);
            let status = match (row.enabled, polled, kind) {
                (false, _, _) | (_, None, _) => "unknown",
                (_, Some(_), SourceKind::Kumomta) => {
                    let stored: poller::KumoState = row
                        .state
                        .as_ref()
                        .and_then(|s| serde_json::from_value(s.0.clone()).ok())
                        .unwrap_or_default();
                    match stored.connection {
                        Some(c) if c.connected && row.last_error.is_none() => "up",
                        Some(_) => "down",
                        None => "unknown",
                    }
                }
                (_, Some(_), _) if row.last_error.is_none() => "up",
                (_, Some(_), _) => "down",
            };
            Some(ComponentHealth {
                name: row.name.clone(),
                kind: kind.as_str().to_string(),
                status: status.to_string(),
                response_time_ms: row.last_latency_ms,
                detail: row.last_error.clone(),
                checked_at: polled,
            })
        })
        .collect())
}

/// Queue totals of `tenant` for the dashboard overview; `None` when KumoMTA is not polled.
/// Totals and rates are summed over the tenant's KumoMTA sources.
pub async fn queue_totals(
    state: &AppState,
    tenant: &str,
) -> anyhow::Result<Option<serde_json::Value>> {
    let nodes = api::kumomta_states(state, tenant).await?;
    if nodes.is_empty() {
        return Ok(None);
    }
    let sum = |values: &mut dyn Iterator<Item = Option<f64>>| -> Option<f64> {
        values
            .flatten()
            .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
    };
    let snapshots: Vec<_> = nodes
        .iter()
        .filter_map(|(_, _, s)| s.snapshot.as_ref())
        .collect();
    let total = |pick: fn(&kumomta::Totals) -> Option<f64>| {
        sum(&mut snapshots.iter().map(|s| pick(&s.totals)))
    };
    let rate = |pick: fn(&kumomta::Throughput) -> Option<f64>| {
        sum(&mut nodes.iter().map(|(_, _, s)| pick(&s.throughput)))
    };
    let latest = nodes
        .iter()
        .filter_map(|(_, _, s)| s.polled_at_ms)
        .max()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    Ok(Some(json!({
        "sources": nodes.len(),
        "connected": nodes.iter().filter(|(_, _, s)| s.connection.as_ref().is_some_and(|c| c.connected)).count(),
        "queues": snapshots.iter().map(|s| s.queues.len()).sum::<usize>(),
        "delivered": total(|t| t.delivered),
        "bounced": total(|t| t.bounced),
        "deferred": total(|t| t.deferred),
        "received": total(|t| t.received),
        "ready": total(|t| t.ready),
        "scheduled": total(|t| t.scheduled),
        "throughput": {
            "delivered_per_s": rate(|t| t.delivered_per_s),
            "bounced_per_s": rate(|t| t.bounced_per_s),
            "deferred_per_s": rate(|t| t.deferred_per_s),
            "received_per_s": rate(|t| t.received_per_s),
        },
        "polled_at": latest,
    })))
}
