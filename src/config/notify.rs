//! Notifications: delivery workers, retries, noise control. (`LOOKOUT_NOTIFY__<KEY>`)

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {}

impl NotifyConfig {
    /// Adds a message per invalid setting.
    pub(super) fn validate(&self, _problems: &mut Vec<String>) {}
}
