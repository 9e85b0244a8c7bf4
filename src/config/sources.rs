//! Sources: polling of KumoMTA, Prometheus targets and probes. (`LOOKOUT_SOURCES__<KEY>`)

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourcesConfig {}

impl SourcesConfig {
    /// Adds a message per invalid setting.
    pub(super) fn validate(&self, _problems: &mut Vec<String>) {}
}
