//! Rules: the evaluation engine. (`LOOKOUT_RULES__<KEY>`)

use super::duration::human;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// How often the engine looks for due rules (each rule has its own evaluation
    /// interval, at least 1 s; this is the granularity).
    #[serde(with = "human")]
    pub tick_interval: Duration,
    /// Create the default KumoMTA rules for each tenant on first start (each can still be
    /// disabled or deleted).
    pub create_default_rules: bool,
    /// Run the engine at all on this replica (it still only evaluates while it holds
    /// the `rules` lease).
    pub engine_enabled: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            tick_interval: Duration::from_secs(1),
            create_default_rules: true,
            engine_enabled: true,
        }
    }
}

impl RulesConfig {
    /// Adds a message per invalid setting.
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.tick_interval < Duration::from_millis(50)
            || self.tick_interval > Duration::from_secs(60)
        {
            problems.push("rules.tick_interval must be between 50ms and 60s".into());
        }
    }
}
