//! Sources: polling of KumoMTA, Prometheus targets and probes. (`LOOKOUT_SOURCES__<KEY>`)

use super::duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourcesConfig {
    /// Polls running at once on the leaseholder, across all sources.
    pub max_concurrent_polls: usize,
    /// How often the poller looks for sources added, changed or removed.
    #[serde(with = "duration::human")]
    pub reload_interval: Duration,
    /// Longest pause between polls of a source that keeps failing (backoff doubles the
    /// interval per failure up to this).
    #[serde(with = "duration::human")]
    pub max_backoff: Duration,
    /// Largest response read from a polled target (a `/metrics` page or a probe's body).
    pub max_response_bytes: usize,
    /// Most samples kept from one Prometheus scrape.
    pub max_samples_per_scrape: usize,
    /// Most records in one KumoMTA log-hook request.
    pub max_log_records_per_request: usize,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        SourcesConfig {
            max_concurrent_polls: 32,
            reload_interval: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            max_response_bytes: 16 * 1024 * 1024,
            max_samples_per_scrape: 50_000,
            max_log_records_per_request: 10_000,
        }
    }
}

impl SourcesConfig {
    /// Adds a message per invalid setting.
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.max_concurrent_polls == 0 {
            problems.push("LOOKOUT_SOURCES__MAX_CONCURRENT_POLLS must be positive".into());
        }
        if self.reload_interval < Duration::from_millis(100) {
            problems.push("LOOKOUT_SOURCES__RELOAD_INTERVAL must be at least 100ms".into());
        }
        if self.max_backoff < Duration::from_secs(1) {
            problems.push("LOOKOUT_SOURCES__MAX_BACKOFF must be at least 1s".into());
        }
        if self.max_response_bytes < 1024 {
            problems.push("LOOKOUT_SOURCES__MAX_RESPONSE_BYTES must be at least 1024".into());
        }
        if self.max_samples_per_scrape == 0 {
            problems.push("LOOKOUT_SOURCES__MAX_SAMPLES_PER_SCRAPE must be positive".into());
        }
        if self.max_log_records_per_request == 0 {
            problems.push("LOOKOUT_SOURCES__MAX_LOG_RECORDS_PER_REQUEST must be positive".into());
        }
    }
}
