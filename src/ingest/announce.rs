//! The live side of ingest: one `metrics:update` event on the `metrics` topic per stored
//! batch (never one per sample: a batch of 10 000 samples would flood every dashboard),
//! published after the batch is committed.

use super::IngestOutcome;
use crate::series::Labels;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

pub const TOPIC: &str = "metrics";
pub const EVENT: &str = "metrics:update";

/// At most this many series' newest samples travel in one event.
const MAX_LATEST: usize = 100;
/// At most this many metric names are listed in one event.
const MAX_NAMES: usize = 20;

/// The data of a `metrics:update` event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// Samples stored.
    pub accepted: usize,
    /// Samples refused.
    pub rejected: usize,
    /// Distinct series written.
    pub series: usize,
    /// Metric names written (at most 20).
    pub names: Vec<String>,
    /// Oldest and newest sample time of the batch.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// The newest sample of each series written (at most 100), for live charts:
    /// `{name, labels, value, timestamp}` as protocol.md describes generic series.
    pub latest: Vec<LatestSample>,
    /// True when `latest` or `names` was cut short.
    pub truncated: bool,
    /// When the batch was stored.
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LatestSample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
    pub timestamp: DateTime<Utc>,
}

impl BatchSummary {
    /// Summarises the stored samples `(fingerprint, name, labels, ts_ms, value)`.
    pub(super) fn of(
        batch_id: Option<&str>,
        accepted: usize,
        rejected: usize,
        series: usize,
        now: DateTime<Utc>,
        stored: impl Iterator<Item = (i64, String, Labels, i64, f64)>,
    ) -> BatchSummary {
        let mut latest: HashMap<i64, (String, Labels, i64, f64)> = HashMap::new();
        let mut names: HashSet<String> = HashSet::new();
        let mut truncated = false;
        let (mut from, mut to) = (i64::MAX, i64::MIN);
        for (fingerprint, name, labels, ts, value) in stored {
            from = from.min(ts);
            to = to.max(ts);
            if !names.contains(&name) {
                if names.len() < MAX_NAMES {
                    names.insert(name.clone());
                } else {
                    truncated = true;
                }
            }
            let room = latest.len() < MAX_LATEST;
            match latest.get_mut(&fingerprint) {
                Some(entry) => {
                    if ts >= entry.2 {
                        entry.2 = ts;
                        entry.3 = value;
                    }
                }
                None if room => {
                    latest.insert(fingerprint, (name, labels, ts, value));
                }
                None => truncated = true,
            }
        }
        let time = |ms: i64| crate::store::DbTime::from_millis(ms).0;
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        let mut latest: Vec<LatestSample> = latest
            .into_values()
            .map(|(name, labels, ts, value)| LatestSample {
                name,
                labels,
                value,
                timestamp: time(ts),
            })
            .collect();
        latest.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        BatchSummary {
            batch_id: batch_id.map(str::to_string),
            accepted,
            rejected,
            series,
            names,
            from: (from <= to).then(|| time(from)),
            to: (from <= to).then(|| time(to)),
            latest,
            truncated,
            timestamp: now,
        }
    }
}

/// Counts a stored batch's samples in the replica's own metrics.
pub(super) fn count(outcome: &IngestOutcome) {
    metrics::counter!("lookout_ingest_samples_total", "outcome" => "accepted")
        .increment(outcome.accepted as u64);
    metrics::counter!("lookout_ingest_samples_total", "outcome" => "rejected")
        .increment(outcome.rejected.len() as u64);
}

/// Publishes a stored batch's summary (nothing when no sample was stored).
pub(super) async fn publish(bus: &crate::bus::Bus, tenant: &str, summary: &BatchSummary) {
    if summary.accepted == 0 {
        return;
    }
    // The batch is stored whatever happens here: a bus outage costs live viewers one
    // update, never the data.
    if let Err(e) = bus.publish_json(tenant, TOPIC, EVENT, summary).await {
        tracing::warn!(error = %e, tenant, "could not publish metrics:update");
    }
}
