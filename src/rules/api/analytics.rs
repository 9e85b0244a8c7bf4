//! `GET /api/v1/alerts/analytics`: what the alert history says over a range.

use crate::api::{ApiError, Problem};
use crate::app::AppState;
use crate::auth::Viewer;
use crate::sql;
use crate::store::DbTime;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// An alert that resolved within this long of firing counts as a flap.
const FLAP_WITHIN_SECS: f64 = 600.0;
/// A rule with at least this many flaps in the range is flapping.
const FLAPPING_MIN: u64 = 3;
/// How many noisy rules are listed.
const NOISY_TOP: usize = 10;
/// The longest range analysed at once.
const MAX_RANGE_DAYS: i64 = 400;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// Start of the range (alerts that fired at or after it); default 7 days ago.
    pub from: Option<DateTime<Utc>>,
    /// End of the range (exclusive); default now.
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleCount {
    pub rule_id: Uuid,
    pub rule_name: String,
    pub severity: String,
    /// Alerts of the rule that fired in the range.
    pub fired: u64,
    /// Of those, resolved within 10 minutes of firing.
    pub flaps: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Analytics {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Alerts that fired in the range.
    pub fired: u64,
    pub by_rule: Vec<RuleCount>,
    pub by_severity: BTreeMap<String, u64>,
    /// Mean time from firing to the first acknowledgement, in seconds (acknowledged alerts).
    pub mtta_seconds: Option<f64>,
    /// Mean time from firing to resolution, in seconds (resolved alerts).
    pub mttr_seconds: Option<f64>,
    /// Rules with at least 3 alerts that resolved within 10 minutes of firing.
    pub flapping_rules: Vec<RuleCount>,
    /// The rules that fired most, at most 10.
    pub noisy_rules: Vec<RuleCount>,
    /// Share (0-1) of the resolved alerts that nobody acknowledged.
    pub resolved_without_ack_share: Option<f64>,
}

type FiredRow = (Uuid, String, String, DbTime, Option<DbTime>, Option<DbTime>);

fn seconds_between(a: DbTime, b: DbTime) -> f64 {
    (b.millis() - a.millis()) as f64 / 1000.0
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Counts by rule and severity, MTTA, MTTR, flapping and noisy rules, and the share of
/// alerts resolved without acknowledgement, over a range.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/analytics",
    tag = "alerts",
    params(AnalyticsQuery),
    responses(
        (status = 200, body = Analytics),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn analytics(
    State(state): State<AppState>,
    caller: Viewer,
    Query(query): Query<AnalyticsQuery>,
) -> Result<axum::Json<Analytics>, ApiError> {
    let to = query.to.unwrap_or_else(Utc::now);
    let from = query.from.unwrap_or(to - chrono::Duration::days(7));
    if from >= to {
        return Err(ApiError::field("from", "must be before to"));
    }
    if to - from > chrono::Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::field(
            "from",
            format!("the range is at most {MAX_RANGE_DAYS} days"),
        ));
    }
    let mut conn = state.store.read().await?;
    let rows: Vec<FiredRow> = sql!(
        conn.db(),
        all FiredRow,
        "SELECT rule_id, rule_name, severity, fired_at, resolved_at, first_acknowledged_at
         FROM alerts
         WHERE tenant = $1 AND fired_at IS NOT NULL AND fired_at >= $2 AND fired_at < $3",
        &caller.tenant,
        DbTime(from),
        DbTime(to)
    )?;
    let mut by_rule: BTreeMap<Uuid, RuleCount> = BTreeMap::new();
    let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
    let (mut ack_times, mut resolve_times) = (Vec::new(), Vec::new());
    let (mut resolved, mut resolved_unacked) = (0u64, 0u64);
    for (rule_id, rule_name, severity, fired_at, resolved_at, acked_at) in &rows {
        let entry = by_rule.entry(*rule_id).or_insert_with(|| RuleCount {
            rule_id: *rule_id,
            rule_name: rule_name.clone(),
            severity: severity.clone(),
            fired: 0,
            flaps: 0,
        });
        entry.fired += 1;
        *by_severity.entry(severity.clone()).or_default() += 1;
        if let Some(acked) = acked_at {
            ack_times.push(seconds_between(*fired_at, *acked));
        }
        if let Some(resolved_at) = resolved_at {
            let took = seconds_between(*fired_at, *resolved_at);
            resolve_times.push(took);
            resolved += 1;
            if acked_at.is_none() {
                resolved_unacked += 1;
            }
            if took <= FLAP_WITHIN_SECS {
                entry.flaps += 1;
            }
        }
    }
    let counts: Vec<RuleCount> = by_rule.into_values().collect();
    let flapping_rules = counts
        .iter()
        .filter(|c| c.flaps >= FLAPPING_MIN)
        .cloned()
        .collect();
    let mut noisy_rules = counts.clone();
    noisy_rules.sort_by(|a, b| b.fired.cmp(&a.fired).then(a.rule_name.cmp(&b.rule_name)));
    noisy_rules.truncate(NOISY_TOP);
    Ok(axum::Json(Analytics {
        from,
        to,
        fired: rows.len() as u64,
        by_rule: counts,
        by_severity,
        mtta_seconds: mean(&ack_times),
        mttr_seconds: mean(&resolve_times),
        flapping_rules,
        noisy_rules,
        resolved_without_ack_share: (resolved > 0)
            .then(|| resolved_unacked as f64 / resolved as f64),
    }))
}
