//! Notifications: delivery workers, retries, noise control. (`LOOKOUT_NOTIFY__<KEY>`)

use super::duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Run delivery workers on this replica (every replica does by default).
    pub workers: bool,
    /// How often an idle worker looks for due deliveries. Bounds the delay between a
    /// transition's commit and its send when nothing else wakes the worker.
    #[serde(with = "duration::human_or_millis")]
    pub poll_interval: Duration,
    /// Deliveries claimed per query.
    pub batch_size: u32,
    /// Sends in flight at once on one replica.
    pub concurrency: usize,
    /// A claimed delivery not finished within this time (its replica died) is claimed
    /// again by another replica. Must exceed the longest send timeout.
    #[serde(with = "duration::human")]
    pub claim_timeout: Duration,
    /// Waits before attempts 1, 2, 3, …; the last repeats (`0s, 5s, 30s, 2m, 10m, 30m, 1h`).
    pub retry_schedule: String,
    /// Attempts in all before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// Each retry wait is spread over ±this fraction of itself.
    pub retry_jitter: f64,
    /// Timeout of an e-mail, Slack or SMS send (webhooks have their own per channel).
    #[serde(with = "duration::human")]
    pub send_timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            workers: true,
            poll_interval: Duration::from_millis(200),
            batch_size: 64,
            concurrency: 32,
            claim_timeout: Duration::from_secs(120),
            retry_schedule: "0s, 5s, 30s, 2m, 10m, 30m, 1h".into(),
            max_attempts: 30,
            retry_jitter: 0.1,
            send_timeout: Duration::from_secs(30),
        }
    }
}

impl NotifyConfig {
    /// The retry policy these settings describe.
    pub fn retry_policy(&self) -> crate::notify::retry::RetryPolicy {
        crate::notify::retry::RetryPolicy {
            schedule: crate::notify::retry::RetryPolicy::parse_schedule(&self.retry_schedule)
                .unwrap_or_else(|_| crate::notify::retry::RetryPolicy::default().schedule),
            max_attempts: self.max_attempts,
            jitter: self.retry_jitter,
            ..Default::default()
        }
    }

    /// Adds a message per invalid setting.
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if let Err(e) = crate::notify::retry::RetryPolicy::parse_schedule(&self.retry_schedule) {
            problems.push(format!("notify.retry_schedule: {e}"));
        }
        if let Err(e) = self.retry_policy().validate() {
            problems.push(format!("notify: {e}"));
        }
        if self.batch_size == 0 || self.batch_size > 1000 {
            problems.push("notify.batch_size must be 1-1000".into());
        }
        if self.concurrency == 0 {
            problems.push("notify.concurrency must be at least 1".into());
        }
        if self.poll_interval.is_zero() {
            problems.push("notify.poll_interval must be positive".into());
        }
        if self.claim_timeout <= self.send_timeout {
            problems.push("notify.claim_timeout must be longer than notify.send_timeout".into());
        }
    }
}
