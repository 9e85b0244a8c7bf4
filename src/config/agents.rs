//! Monitoring agents: presence, liveness and limits of `/api/v1/agents/connect`.
//! (`LOOKOUT_AGENTS__<KEY>`)

use super::duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsConfig {
    /// How long an agent counts as connected after the replica holding its socket last
    /// vouched for it. The holder refreshes every third of this, so a killed replica's
    /// agents turn disconnected within one TTL.
    #[serde(with = "duration::human")]
    pub presence_ttl: Duration,
    /// Interval of the server's `ping` frames; an agent that sends nothing for three
    /// intervals is closed with 4004.
    #[serde(with = "duration::human")]
    pub ping_interval: Duration,
    /// Time allowed for the first `auth` frame when the upgrade carried no token.
    #[serde(with = "duration::human")]
    pub auth_timeout: Duration,
    /// Largest frame accepted from an agent (larger ones close with 1009). Larger than
    /// the dashboards' 64 KiB: a full batch of 10 000 samples with labels needs ~1-2 MiB.
    pub max_frame_bytes: usize,
    /// Frames per second an agent may send on average…
    pub rate_limit_per_sec: u32,
    /// …and in a burst.
    pub rate_limit_burst: u32,
    /// Frames queued for one agent before it is closed as a slow consumer (4005).
    pub send_queue_len: usize,
    /// Size of each agent socket's read buffer (tungstenite's default is 128 KiB).
    pub read_buffer_bytes: usize,
    /// Largest configuration (serialized JSON) that may be set for an agent.
    pub max_config_bytes: usize,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            presence_ttl: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(10),
            max_frame_bytes: 4 * 1024 * 1024,
            rate_limit_per_sec: 50,
            rate_limit_burst: 100,
            send_queue_len: 64,
            read_buffer_bytes: 4096,
            max_config_bytes: 64 * 1024,
        }
    }
}

impl AgentsConfig {
    /// Adds a message per invalid setting.
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.presence_ttl < Duration::from_millis(300) {
            problems.push("LOOKOUT_AGENTS__PRESENCE_TTL must be at least 300ms".into());
        }
        if self.ping_interval < Duration::from_millis(100) {
            problems.push("LOOKOUT_AGENTS__PING_INTERVAL must be at least 100ms".into());
        }
        if self.auth_timeout.is_zero() {
            problems.push("LOOKOUT_AGENTS__AUTH_TIMEOUT must be positive".into());
        }
        if !(1024..=64 << 20).contains(&self.max_frame_bytes) {
            problems
                .push("LOOKOUT_AGENTS__MAX_FRAME_BYTES must be between 1 KiB and 64 MiB".into());
        }
        if self.rate_limit_per_sec == 0 || self.rate_limit_burst < self.rate_limit_per_sec {
            problems.push(
                "LOOKOUT_AGENTS__RATE_LIMIT_PER_SEC must be positive and not above \
                 LOOKOUT_AGENTS__RATE_LIMIT_BURST"
                    .into(),
            );
        }
        if self.send_queue_len == 0 {
            problems.push("LOOKOUT_AGENTS__SEND_QUEUE_LEN must be positive".into());
        }
        if !(256..=1 << 20).contains(&self.read_buffer_bytes) {
            problems.push("LOOKOUT_AGENTS__READ_BUFFER_BYTES must be between 256 and 1 MiB".into());
        }
        if !(2..=1 << 20).contains(&self.max_config_bytes) {
            problems.push("LOOKOUT_AGENTS__MAX_CONFIG_BYTES must be between 2 and 1 MiB".into());
        }
    }
}
