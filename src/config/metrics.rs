//! Metrics: ingest limits, retention, queries. (`LOOKOUT_METRICS__<KEY>`)

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {}

impl MetricsConfig {
    /// Adds a message per invalid setting.
    pub(super) fn validate(&self, _problems: &mut Vec<String>) {}
}
