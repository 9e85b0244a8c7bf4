//! How a rule's alerts are notified, beyond which channels: resolved messages, grouping,
//! repeats, escalation, per-channel severity filters. Part of a rule (`RuleSpec::notify`);
//! applied by notify's routing ([`super::outbox::enqueue_transition`]) and workers.

use crate::validation::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest `group_wait`: a notification held longer is late rather than grouped.
pub const MAX_GROUP_WAIT: Duration = Duration::from_secs(3600);
/// Shortest `repeat_interval`: anything shorter is a flood.
pub const MIN_REPEAT_INTERVAL: Duration = Duration::from_secs(1);
/// At most this many escalation steps, and channels per step.
pub const MAX_ESCALATION_STEPS: usize = 10;
pub const MAX_STEP_CHANNELS: usize = 20;

/// A rule's notification policy. Every field has a default, so rules may omit it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyPolicy {
    /// Also notify when an alert resolves.
    pub send_resolved: bool,
    /// Hold a notification this long so that other alerts with the same group key for the
    /// same channel go out in the same message (`"30s"`). Default 0: send at once.
    #[serde(with = "human")]
    #[schema(value_type = String, example = "30s")]
    pub group_wait: Duration,
    /// Notify again at this interval while an alert keeps firing (`"4h"`). Default: never.
    #[serde(with = "human_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "4h")]
    pub repeat_interval: Option<Duration>,
    /// When a firing alert is still unacknowledged `after` a step's duration, that step's
    /// channels are told too.
    pub escalation: Vec<EscalationStep>,
    /// Per channel (as the rule names it): the only severities it is told about
    /// (`{"sms": ["critical"]}`). Channels not listed get every severity.
    pub channel_severities: BTreeMap<String, Vec<String>>,
}

/// One escalation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    #[serde(with = "human")]
    #[schema(value_type = String, example = "15m")]
    pub after: Duration,
    /// Channel ids or names.
    pub channels: Vec<String>,
}

impl Default for NotifyPolicy {
    fn default() -> Self {
        NotifyPolicy {
            send_resolved: true,
            group_wait: Duration::ZERO,
            repeat_interval: None,
            escalation: Vec::new(),
            channel_severities: BTreeMap::new(),
        }
    }
}

const SEVERITIES: [&str; 4] = ["info", "warning", "error", "critical"];

impl NotifyPolicy {
    /// Problems with the policy, with field paths under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let field = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            }
        };
        if self.group_wait > MAX_GROUP_WAIT {
            errors.push(FieldError::new(field("group_wait"), "must be at most 1h"));
        }
        if let Some(repeat) = self.repeat_interval
            && repeat < MIN_REPEAT_INTERVAL
        {
            errors.push(FieldError::new(
                field("repeat_interval"),
                "must be at least 1s",
            ));
        }
        if self.escalation.len() > MAX_ESCALATION_STEPS {
            errors.push(FieldError::new(
                field("escalation"),
                format!("at most {MAX_ESCALATION_STEPS} steps are allowed"),
            ));
        }
        for (i, step) in self.escalation.iter().enumerate() {
            if step.after.is_zero() {
                errors.push(FieldError::new(
                    field(&format!("escalation[{i}].after")),
                    "must be positive",
                ));
            }
            if step.channels.is_empty() || step.channels.len() > MAX_STEP_CHANNELS {
                errors.push(FieldError::new(
                    field(&format!("escalation[{i}].channels")),
                    format!("must name 1-{MAX_STEP_CHANNELS} channels"),
                ));
            }
            for (j, channel) in step.channels.iter().enumerate() {
                if channel.trim().is_empty() || channel.len() > 200 {
                    errors.push(FieldError::new(
                        field(&format!("escalation[{i}].channels[{j}]")),
                        "must be 1-200 characters",
                    ));
                }
            }
        }
        if self.channel_severities.len() > MAX_STEP_CHANNELS {
            errors.push(FieldError::new(
                field("channel_severities"),
                format!("at most {MAX_STEP_CHANNELS} channels"),
            ));
        }
        for (channel, severities) in &self.channel_severities {
            for (j, severity) in severities.iter().enumerate() {
                if !SEVERITIES.contains(&severity.as_str()) {
                    errors.push(FieldError::new(
                        field(&format!("channel_severities.{channel}[{j}]")),
                        "must be one of info, warning, error, critical",
                    ));
                }
            }
        }
        errors
    }

    /// Whether `channel` (as the rule names it) is told about an alert of `severity`.
    pub fn channel_wants(&self, channel: &str, severity: &str) -> bool {
        self.channel_severities
            .get(channel)
            .is_none_or(|allowed| allowed.iter().any(|s| s.eq_ignore_ascii_case(severity)))
    }
}

/// `"30s"` in and out (a bare number is seconds).
mod human {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(Duration::from_secs(n)),
            Raw::Text(text) => humantime::parse_duration(text.trim()).map_err(|e| {
                serde::de::Error::custom(format!("invalid duration '{text}': {e} (e.g. 30s, 5m)"))
            }),
        }
    }
}

mod human_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::human::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::human")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_durations_and_defaults() {
        let policy: NotifyPolicy = serde_json::from_value(json!({
            "group_wait": "30s",
            "repeat_interval": "4h",
            "escalation": [{"after": "15m", "channels": ["sms"]}],
            "channel_severities": {"sms": ["critical"]}
        }))
        .unwrap();
        assert_eq!(policy.group_wait, Duration::from_secs(30));
        assert_eq!(policy.repeat_interval, Some(Duration::from_secs(4 * 3600)));
        assert!(policy.send_resolved);
        assert!(policy.validate("notify").is_empty());
        assert!(policy.channel_wants("sms", "critical"));
        assert!(!policy.channel_wants("sms", "warning"));
        assert!(policy.channel_wants("email", "warning"));
        let back: NotifyPolicy =
            serde_json::from_value(serde_json::to_value(&policy).unwrap()).unwrap();
        assert_eq!(back, policy);
        assert_eq!(
            serde_json::from_value::<NotifyPolicy>(json!({})).unwrap(),
            NotifyPolicy::default()
        );
    }

    #[test]
    fn names_bad_fields() {
        let policy: NotifyPolicy = serde_json::from_value(json!({
            "group_wait": "2h",
            "repeat_interval": "10ms",
            "escalation": [{"after": "0s", "channels": []}],
            "channel_severities": {"sms": ["loud"]}
        }))
        .unwrap();
        let fields: Vec<String> = policy
            .validate("notify")
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "notify.group_wait",
                "notify.repeat_interval",
                "notify.escalation[0].after",
                "notify.escalation[0].channels",
                "notify.channel_severities.sms[0]"
            ]
        );
        assert!(serde_json::from_value::<NotifyPolicy>(json!({"group_wait": "soon"})).is_err());
    }
}
