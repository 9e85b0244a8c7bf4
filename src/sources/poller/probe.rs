//! One HTTP probe: up when the answer has the expected status (and its body matches),
//! stored as `probe_success` and `probe_duration_ms`, with a `health:update` event when
//! the result changes.

use super::fetch;
use super::{PollContext, PollReport, PollTarget};
use crate::ingest::SampleIn;
use crate::sources::kumomta::snapshot::rfc3339;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a probe remembers: its last result, to publish only changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProbeState {
    pub up: Option<bool>,
    pub response_ms: Option<f64>,
}

impl ProbeState {
    pub fn load(stored: Option<&Value>) -> ProbeState {
        stored
            .and_then(|value| serde_json::from_value(value.clone()).ok())
            .unwrap_or_default()
    }
}

pub async fn poll(
    context: &PollContext,
    target: &PollTarget,
    state: &mut ProbeState,
    now: DateTime<Utc>,
) -> PollReport {
    let started = std::time::Instant::now();
    let url = &target.settings.url;
    let max = context.state.config.sources.max_response_bytes;
    let fetched = fetch::get(&context.client, target, url, max).await;
    let response_ms = started.elapsed().as_secs_f64() * 1000.0;
    let expected = target.settings.expected_status.unwrap_or(200);
    let down_because = match &fetched {
        Err(e) => Some(e.to_string()),
        Ok(answer) if answer.status != expected => {
            Some(format!("expected HTTP {expected}, got {}", answer.status))
        }
        Ok(answer) => match &target.body_match {
            Some(pattern) if !pattern.is_match(&answer.body) => {
                Some("the body does not match body_match".to_string())
            }
            _ => None,
        },
    };
    let up = down_because.is_none();

    let labels: crate::series::Labels = [("source".to_string(), target.name.clone())].into();
    let now_ms = now.timestamp_millis();
    let samples = vec![
        SampleIn {
            name: "probe_success".into(),
            labels: labels.clone(),
            value: if up { 1.0 } else { 0.0 },
            timestamp_ms: Some(now_ms),
        },
        SampleIn {
            name: "probe_duration_ms".into(),
            labels,
            value: response_ms,
            timestamp_ms: Some(now_ms),
        },
    ];
    let stored = context.store_samples(target, samples, now).await;

    if state.up != Some(up) {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let data = json!({
            "host": host,
            "service": target.name,
            "source_id": target.id,
            "status": if up { "up" } else { "down" },
            "response_ms": response_ms,
            "detail": down_because,
            "timestamp": rfc3339(now),
        });
        context
            .publish(&target.tenant, "health", "health:update", &data)
            .await;
    }
    state.up = Some(up);
    state.response_ms = Some(response_ms);
    PollReport {
        error: down_because.or(stored.err()),
        state: serde_json::to_value(&*state).ok(),
        back_off: false,
    }
}
