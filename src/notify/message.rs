//! What a notification says, independent of how it travels.
//!
//! The rules engine writes one [`Notification`] per channel into the outbox (as JSON) when an
//! alert changes state; a notify worker later reads it back and hands it to a renderer in
//! [`super::render`]. Everything a message needs is copied in here at enqueue time, so a
//! delivery retried an hour later says the same thing as the first attempt, even if the rule
//! was renamed in between.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

use crate::series::Labels;

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// One or more alerts started firing (or are still firing at a repeat interval).
    Firing,
    /// The alerts have recovered.
    Resolved,
    /// Nobody acknowledged a firing alert in time; the next escalation step is told.
    Escalation,
    /// Sent by an administrator to check a channel (`POST /api/v1/channels/{id}/test`).
    Test,
}

impl NotificationKind {
    /// The lower-case word used in payloads and templates (`firing`, `resolved`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Firing => "firing",
            NotificationKind::Resolved => "resolved",
            NotificationKind::Escalation => "escalation",
            NotificationKind::Test => "test",
        }
    }
}

/// One alert as a notification shows it: a snapshot taken when the notification was queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertSummary {
    pub id: Uuid,
    pub rule_id: Uuid,
    pub rule_name: String,
    /// `info`, `warning`, `error` or `critical`; renderers treat anything else like `info`
    /// but print it as given.
    pub severity: String,
    /// `firing`, `resolved`, `pending`, ...: the alert's state when the notification was queued.
    pub state: String,
    /// The value that crossed the threshold, when the rule has one.
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// The alert's labels (the series' labels and the rule's extra labels). They come from
    /// users and scraped metrics, so every renderer escapes them for its medium.
    #[schema(value_type = BTreeMap<String, String>)]
    pub labels: Labels,
    /// Annotations already rendered from the rule's templates (`summary`, `description`,
    /// `runbook_url`, ...). Also user-controlled text.
    pub annotations: BTreeMap<String, String>,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    /// Link to the alert in the dashboard.
    pub url: Option<String>,
}

impl AlertSummary {
    /// Whether this alert has recovered (its state is `resolved`).
    pub fn is_resolved(&self) -> bool {
        self.state.eq_ignore_ascii_case("resolved")
    }
}

/// One message to one channel: one or more alerts grouped by the channel's group labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    /// Stable across retries: sent as `webhook-id`, used in the e-mail `Message-ID` and as
    /// the idempotency key, so that receivers can drop the duplicates that at-least-once
    /// delivery produces.
    pub id: Uuid,
    pub kind: NotificationKind,
    pub tenant: String,
    /// The labels the alerts were grouped by (equal in every alert of this notification).
    #[schema(value_type = BTreeMap<String, String>)]
    pub group_labels: Labels,
    /// At least one alert. Renderers accept an empty list without panicking, but say little.
    pub alerts: Vec<AlertSummary>,
    /// Base URL of the Lookout dashboard, for links back.
    pub external_url: Option<String>,
}

impl Notification {
    /// `resolved` when every alert has resolved, otherwise `firing`: the group status that
    /// Alertmanager-style receivers expect.
    pub fn status(&self) -> &'static str {
        if !self.alerts.is_empty() && self.alerts.iter().all(AlertSummary::is_resolved) {
            "resolved"
        } else {
            "firing"
        }
    }

    /// A made-up notification with one firing alert, for `POST /channels/{id}/test` and for
    /// checking templates when a channel is saved. `now` is the alert's start time.
    pub fn sample(tenant: &str, id: Uuid, now: DateTime<Utc>) -> Notification {
        let labels: Labels = [("queue", "example.com"), ("source", "lookout")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let annotations = [
            ("summary", "This is a test notification from Lookout"),
            (
                "description",
                "If you can read this, the channel is configured correctly.",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Notification {
            id,
            kind: NotificationKind::Test,
            tenant: tenant.to_string(),
            group_labels: Labels::new(),
            alerts: vec![AlertSummary {
                id: Uuid::nil(),
                rule_id: Uuid::nil(),
                rule_name: "Test notification".to_string(),
                severity: "info".to_string(),
                state: "firing".to_string(),
                value: Some(42.0),
                threshold: Some(10.0),
                labels,
                annotations,
                started_at: now,
                resolved_at: None,
                acknowledged_by: None,
                url: None,
            }],
            external_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn round_trips_through_json_as_the_outbox_stores_it() {
        let now = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        let n = Notification::sample("acme", Uuid::from_u128(7), now);
        let json = serde_json::to_string(&n).unwrap();
        assert!(json.contains(r#""kind":"test""#), "{json}");
        let back: Notification = serde_json::from_str(&json).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn group_status_is_resolved_only_when_every_alert_is() {
        let now = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        let mut n = Notification::sample("acme", Uuid::nil(), now);
        assert_eq!(n.status(), "firing");
        n.alerts[0].state = "resolved".into();
        assert_eq!(n.status(), "resolved");
        let mut second = n.alerts[0].clone();
        second.state = "firing".into();
        n.alerts.push(second);
        assert_eq!(n.status(), "firing");
        n.alerts.clear();
        assert_eq!(n.status(), "firing");
    }

    #[test]
    fn kinds_serialize_as_their_names() {
        for kind in [
            NotificationKind::Firing,
            NotificationKind::Resolved,
            NotificationKind::Escalation,
            NotificationKind::Test,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
