//! Response bodies of kumod's admin endpoints that a poll reads, and kumod's rule for which
//! scheduled queues an admin bounce or suspension applies to.
//!
//! The types are lenient: unknown fields are ignored and optional fields may be missing, so a
//! newer kumod that adds fields does not break polling.

use super::queue_name::QueueName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// `GET /api/admin/ready-q-states/v1`: the throttle and limit flags currently set on each
/// ready queue.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ReadyQueueStates {
    /// Ready queue name → flag name (`connection_limited`, `connection_rate_throttled`, …) →
    /// state.
    #[serde(default)]
    pub states_by_ready_queue: BTreeMap<String, BTreeMap<String, ReadyQueueFlag>>,
}

/// One flag set on a ready queue.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ReadyQueueFlag {
    /// kumod's explanation, e.g. `TooManyLeases for queue`.
    #[serde(default)]
    pub context: String,
    /// When the flag was set.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
}

/// One entry of `GET /api/admin/suspend/v1`: a suspension of the scheduled queues matching
/// the criteria (a missing criterion matches anything).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedSuspension {
    pub id: String,
    #[serde(default)]
    pub campaign: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    /// Not listed by every kumod version; matched like the others when present.
    #[serde(default)]
    pub routing_domain: Option<String>,
    #[serde(default)]
    pub reason: String,
    /// Time remaining, as kumod writes it (e.g. `3600s`).
    #[serde(default, deserialize_with = "lenient_duration")]
    pub duration: Option<String>,
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
}

/// One entry of `GET /api/admin/suspend-ready-q/v1`: a suspension of one ready queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReadySuspension {
    pub id: String,
    /// The ready queue name, `source->site@protocol`.
    pub name: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default, deserialize_with = "lenient_duration")]
    pub duration: Option<String>,
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
}

/// One entry of `GET /api/admin/bounce/v1`: messages in the matching scheduled queues are
/// being bounced (a missing criterion matches anything).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AdminBounce {
    pub id: String,
    #[serde(default)]
    pub campaign: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub routing_domain: Option<String>,
    #[serde(default)]
    pub reason: String,
    #[serde(default, deserialize_with = "lenient_duration")]
    pub duration: Option<String>,
    /// Queue name → messages this entry has bounced there.
    #[serde(default)]
    pub bounced: BTreeMap<String, u64>,
    #[serde(default)]
    pub total_bounced: u64,
}

impl SchedSuspension {
    /// Whether this suspension applies to the scheduled queue `queue`.
    pub fn matches(&self, queue: &QueueName) -> bool {
        criteria_match(
            queue,
            self.campaign.as_deref(),
            self.tenant.as_deref(),
            self.domain.as_deref(),
            self.routing_domain.as_deref(),
        )
    }
}

impl AdminBounce {
    /// Whether this bounce applies to the scheduled queue `queue`.
    pub fn matches(&self, queue: &QueueName) -> bool {
        criteria_match(
            queue,
            self.campaign.as_deref(),
            self.tenant.as_deref(),
            self.domain.as_deref(),
            self.routing_domain.as_deref(),
        )
    }
}

/// kumod's `match_criteria`, applied to each part: a criterion that is not set matches
/// anything; one that is set must equal the queue's part, and a queue without that part does
/// not match. So a bounce for routing domain `r.example` does not touch `example.com`.
fn criteria_match(
    queue: &QueueName,
    campaign: Option<&str>,
    tenant: Option<&str>,
    domain: Option<&str>,
    routing_domain: Option<&str>,
) -> bool {
    fn part(actual: Option<&str>, wanted: Option<&str>) -> bool {
        wanted.is_none_or(|wanted| actual == Some(wanted))
    }
    part(queue.campaign.as_deref(), campaign)
        && part(queue.tenant.as_deref(), tenant)
        && part(Some(&queue.domain), domain)
        && part(queue.routing_domain.as_deref(), routing_domain)
}

/// kumod writes durations as strings (`3600s`); accept a number of seconds too.
fn lenient_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(
        Option::<Raw>::deserialize(deserializer)?.map(|raw| match raw {
            Raw::Text(text) => text,
            Raw::Number(number) => format!("{number}s"),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn fixtures_deserialize() {
        let states: ReadyQueueStates =
            serde_json::from_str(fixtures::READY_Q_STATES).expect("ready-q-states");
        let gmail = &states.states_by_ready_queue[fixtures::GMAIL_READY_QUEUE];
        let flag = &gmail["connection_limited"];
        assert_eq!(flag.context, "TooManyLeases for queue");
        assert_eq!(
            flag.since.map(|t| t.to_rfc3339()),
            Some("2026-08-01T10:00:00+00:00".to_string())
        );

        let ready: Vec<ReadySuspension> =
            serde_json::from_str(fixtures::SUSPEND_READY_Q).expect("suspend-ready-q");
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].name, fixtures::GMAIL_READY_QUEUE);
        assert_eq!(ready[0].duration.as_deref(), Some("3600s"));
        assert_eq!(ready[0].id, "9511a32e-66f8-42aa-b151-ccb176df47d9");

        let bounces: Vec<AdminBounce> = serde_json::from_str(fixtures::BOUNCE).expect("bounce");
        assert_eq!(bounces.len(), 1);
        assert_eq!(bounces[0].campaign.as_deref(), Some("campaign_name"));
        assert_eq!(
            bounces[0].routing_domain.as_deref(),
            Some("routing_domain.com")
        );
        assert_eq!(bounces[0].bounced.get("gmail.com"), Some(&200));
        assert_eq!(bounces[0].total_bounced, 42);
    }

    #[test]
    fn lenient_shapes() {
        let states: ReadyQueueStates = serde_json::from_str("{}").expect("empty states");
        assert!(states.states_by_ready_queue.is_empty());
        let states: ReadyQueueStates =
            serde_json::from_str(r#"{"states_by_ready_queue":{"q":{"f":{}}},"new_field":1}"#)
                .expect("minimal flag");
        assert_eq!(
            states.states_by_ready_queue["q"]["f"],
            ReadyQueueFlag::default()
        );

        let sched: Vec<SchedSuspension> = serde_json::from_str(
            r#"[{"id":"a","reason":"r","duration":90},
                {"id":"b","domain":"d.com","reason":"r","duration":"1h",
                 "expires":"2026-01-01T00:00:00Z","extra":true}]"#,
        )
        .expect("suspensions");
        assert_eq!(sched[0].duration.as_deref(), Some("90s"));
        assert_eq!(sched[0].domain, None);
        assert_eq!(sched[1].domain.as_deref(), Some("d.com"));
        assert!(sched[1].expires.is_some());

        let err = serde_json::from_str::<Vec<ReadySuspension>>(r#"[{"id":"a"}]"#)
            .expect_err("name is required");
        assert!(err.to_string().contains("name"), "{err}");
    }

    #[test]
    fn matching_follows_kumod() {
        let bounce = |campaign: Option<&str>,
                      tenant: Option<&str>,
                      domain: Option<&str>,
                      routing: Option<&str>| AdminBounce {
            id: "x".into(),
            campaign: campaign.map(str::to_string),
            tenant: tenant.map(str::to_string),
            domain: domain.map(str::to_string),
            routing_domain: routing.map(str::to_string),
            reason: "r".into(),
            duration: None,
            bounced: BTreeMap::new(),
            total_bounced: 0,
        };
        let cases = [
            (
                bounce(None, None, None, None),
                "anything@anywhere.com!r.com",
                true,
            ),
            (
                bounce(None, None, Some("example.com"), None),
                "c:t@example.com",
                true,
            ),
            (
                bounce(None, None, Some("example.com"), None),
                "example.com!r.com",
                true,
            ),
            (
                bounce(None, None, Some("example.com"), None),
                "example.org",
                false,
            ),
            (
                bounce(Some("c"), Some("t"), Some("example.com"), None),
                "c:t@example.com",
                true,
            ),
            (
                bounce(Some("c"), Some("t"), Some("example.com"), None),
                "t@example.com",
                false,
            ),
            (bounce(None, Some("t"), None, None), "c:t@example.com", true),
            (
                bounce(None, None, None, Some("r.com")),
                "example.com",
                false,
            ),
            (
                bounce(None, None, None, Some("r.com")),
                "example.com!r.com",
                true,
            ),
        ];
        for (entry, queue, expected) in cases {
            assert_eq!(
                entry.matches(&QueueName::parse(queue)),
                expected,
                "{queue} vs {entry:?}"
            );
        }
    }
}
