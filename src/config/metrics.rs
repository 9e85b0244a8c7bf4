//! Metrics: ingest limits, retention, queries. (`LOOKOUT_METRICS__<KEY>`)

use super::duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Samples older than this are deleted (and refused at ingest).
    #[serde(with = "duration::human")]
    pub retention: Duration,
    /// Series one tenant may have active at once (seen within `active_series_window`);
    /// a batch that would create more is answered 429 `series_limit`. 0: no limit.
    pub max_active_series: usize,
    /// How recently a series must have been written to count as active.
    #[serde(with = "duration::human")]
    pub active_series_window: Duration,
    /// How long a batch id is remembered (a batch resent within it is stored once).
    #[serde(with = "duration::human")]
    pub batch_id_ttl: Duration,
    /// Largest `POST /api/v1/metrics` body (a batch of 10 000 samples is 1-3 MiB).
    pub ingest_body_limit_bytes: usize,
    /// Most samples one query (raw, history, aggregation) reads before it is refused
    /// with 422 `query_too_large`; bounds the memory and time of a request.
    pub max_query_samples: usize,
    /// Most series one query selects.
    pub max_query_series: usize,
    /// Most rows one export streams.
    pub max_export_rows: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            retention: Duration::from_secs(30 * 24 * 3600),
            max_active_series: 100_000,
            active_series_window: Duration::from_secs(3600),
            batch_id_ttl: Duration::from_secs(24 * 3600),
            ingest_body_limit_bytes: 16 * 1024 * 1024,
            max_query_samples: 1_000_000,
            max_query_series: 10_000,
            max_export_rows: 50_000_000,
        }
    }
}

impl MetricsConfig {
    /// Adds a message per invalid setting.
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.retention < Duration::from_secs(3600) {
            problems.push("metrics.retention must be at least 1h".into());
        }
        // Ingest marks a series as seen at most every 5 minutes; a shorter window would
        // count busy series as inactive.
        if self.active_series_window < Duration::from_secs(600) {
            problems.push("metrics.active_series_window must be at least 10m".into());
        }
        if self.ingest_body_limit_bytes < 1024 {
            problems.push("metrics.ingest_body_limit_bytes must be at least 1024".into());
        }
        if self.max_query_samples == 0 || self.max_query_series == 0 || self.max_export_rows == 0 {
            problems.push(
                "metrics.max_query_samples, max_query_series and max_export_rows must be positive"
                    .into(),
            );
        }
    }
}
