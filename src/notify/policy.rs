//! How a rule's alerts are notified, beyond which channels: resolved messages, grouping,
//! repeats, escalation. Part of a rule (`RuleSpec::notify`); applied by notify workers.

use serde::{Deserialize, Serialize};

/// A rule's notification policy. Every field has a default, so rules may omit it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyPolicy {
    /// Also notify when an alert resolves.
    pub send_resolved: bool,
}

impl Default for NotifyPolicy {
    fn default() -> Self {
        NotifyPolicy {
            send_resolved: true,
        }
    }
}

impl NotifyPolicy {
    /// Problems with the policy, with field paths under `prefix`.
    pub fn validate(&self, _prefix: &str) -> Vec<crate::validation::FieldError> {
        Vec::new()
    }
}
