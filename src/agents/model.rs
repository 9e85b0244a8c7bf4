//! The agent as the REST API and the `agents` topic show it, and the checks on what
//! agents and admins send.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Agent ids, providers and regions: `[A-Za-z0-9_.:@-]{1,128}`, safe in URLs and logs.
pub const MAX_ID_BYTES: usize = 128;
/// Hostnames and versions reported at registration.
pub const MAX_TEXT_BYTES: usize = 256;
/// Labels an agent may carry.
pub const MAX_AGENT_LABELS: usize = 32;
/// Capabilities an agent may announce.
pub const MAX_CAPABILITIES: usize = 64;
/// Serialized size of a `status` frame's details that is stored.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;

/// Whether a replica currently holds a live socket of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Connected,
    Disconnected,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Connected => "connected",
            Presence::Disconnected => "disconnected",
        }
    }

    pub fn parse(text: &str) -> Option<Presence> {
        match text {
            "connected" => Some(Presence::Connected),
            "disconnected" => Some(Presence::Disconnected),
            _ => None,
        }
    }
}

/// One monitoring agent.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: String,
    /// `connected` while a replica holds its socket (kept right across replicas by a
    /// presence time-to-live), else `disconnected`.
    pub status: Presence,
    /// What the agent last reported in a `status` frame (`ok`, `degraded`, …).
    pub health: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub health_details: Option<serde_json::Value>,
    pub provider: Option<String>,
    pub region: Option<String>,
    pub hostname: Option<String>,
    pub version: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    /// Version of the configuration, incremented by every `PUT …/config`.
    pub config_version: i64,
    /// The replica holding its socket, while connected.
    pub replica: Option<String>,
    pub connected_at: Option<DateTime<Utc>>,
    pub disconnected_at: Option<DateTime<Utc>>,
    /// Last frame received from it.
    pub last_seen_at: Option<DateTime<Utc>>,
    pub registered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Ingest figures of one agent (`GET /api/v1/agents/{id}/stats`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentStats {
    pub agent_id: String,
    pub status: Presence,
    pub health: Option<String>,
    /// Metric batches stored (a resent batch counts once).
    pub batches_total: i64,
    pub samples_total: i64,
    pub rejected_total: i64,
    pub last_batch_at: Option<DateTime<Utc>>,
    pub connected_at: Option<DateTime<Utc>>,
    /// Seconds since `connected_at`, while connected.
    pub uptime_seconds: Option<i64>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// Counts over every agent of the tenant (`GET /api/v1/agents/summary/stats`).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct AgentSummary {
    pub total: i64,
    pub connected: i64,
    pub disconnected: i64,
    /// By reported health; agents that never reported one count as `unknown`.
    pub by_health: BTreeMap<String, i64>,
    /// Agents without a provider count as `unknown`.
    pub by_provider: BTreeMap<String, i64>,
    pub by_region: BTreeMap<String, i64>,
    pub batches_total: i64,
    pub samples_total: i64,
    pub rejected_total: i64,
}

/// The configuration of an agent, as `GET/PUT …/config` show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentConfigView {
    pub agent_id: String,
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub version: i64,
    /// Whether the agent was connected when the configuration was stored (it receives
    /// the new one at once).
    pub connected: bool,
}

/// Checks an agent id, provider or region.
pub fn validate_id(what: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} must be 1-{MAX_ID_BYTES} characters of A-Z, a-z, 0-9, '_', '.', ':', '@', '-'"
        ))
    }
}

/// Checks free text reported by an agent (hostname, version).
pub fn validate_text(what: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_TEXT_BYTES || value.chars().any(char::is_control) {
        Err(format!(
            "{what} must be at most {MAX_TEXT_BYTES} bytes without control characters"
        ))
    } else {
        Ok(())
    }
}

/// Checks the labels an agent reports at registration (Prometheus label rules).
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_AGENT_LABELS {
        return Err(format!("at most {MAX_AGENT_LABELS} labels"));
    }
    crate::series::validate_labels(labels)
}

pub fn validate_capabilities(capabilities: &[String]) -> Result<(), String> {
    if capabilities.len() > MAX_CAPABILITIES {
        return Err(format!("at most {MAX_CAPABILITIES} capabilities"));
    }
    for capability in capabilities {
        if capability.is_empty() || capability.len() > MAX_ID_BYTES {
            return Err(format!(
                "each capability must be 1-{MAX_ID_BYTES} characters"
            ));
        }
        validate_text("capability", capability)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("agent_id", "host-1.example:9100").is_ok());
        assert!(validate_id("agent_id", "").is_err());
        assert!(validate_id("agent_id", "a b").is_err());
        assert!(validate_id("agent_id", &"x".repeat(129)).is_err());
        assert!(validate_text("hostname", "a\nb").is_err());
    }
}
