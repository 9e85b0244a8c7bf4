//! Rules: the evaluation engine. (`LOOKOUT_RULES__<KEY>`)

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {}

impl RulesConfig {
    /// Adds a message per invalid setting.
    pub(super) fn validate(&self, _problems: &mut Vec<String>) {}
}
