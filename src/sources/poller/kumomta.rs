//! One poll of a kumod node: fetch, interpret ([`crate::sources::kumomta`]), store and
//! publish.
//!
//! The six endpoints are fetched at once. The queue snapshot needs `/metrics` and the four
//! admin endpoints: if any of them fails, the poll fails whole and nothing is stored
//! (a missing series would read as an idle queue). Liveness only sets the connection
//! status, which is published when it changes.

use super::fetch::{self, FetchError, Fetched};
use super::{PollContext, PollReport, PollTarget};
use crate::ingest::SampleIn;
use crate::sources::kumomta::snapshot::rfc3339;
use crate::sources::kumomta::{
    AdminBounce, KumoSnapshot, ReadyQueueStates, ReadySuspension, SchedSuspension, Throughput,
    ThroughputTracker, build_snapshot, diff_queues, series_samples,
};
use crate::sources::prometheus_text::{ParseOptions, parse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const METRICS: &str = "/metrics";
pub const READY_Q_STATES: &str = "/api/admin/ready-q-states/v1";
pub const SUSPEND: &str = "/api/admin/suspend/v1";
pub const SUSPEND_READY_Q: &str = "/api/admin/suspend-ready-q/v1";
pub const BOUNCE: &str = "/api/admin/bounce/v1";
pub const LIVENESS: &str = "/api/check-liveness/v1";

/// The connection status as `connection:status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Connection {
    /// True when kumod answered and says it is live.
    pub connected: bool,
    /// `ok`, kumod's own reason (`load shedding`, …), or why it could not be asked.
    pub status: String,
}

/// What is stored between polls, so that a new leaseholder goes on without reporting
/// every queue as new or losing the rate baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KumoState {
    /// When `snapshot` was taken (ms since the epoch).
    pub polled_at_ms: Option<i64>,
    pub snapshot: Option<KumoSnapshot>,
    #[serde(default)]
    pub throughput: Throughput,
    pub connection: Option<Connection>,
    #[serde(skip)]
    tracker: Option<ThroughputTracker>,
}

impl KumoState {
    pub fn load(stored: Option<&Value>) -> KumoState {
        let mut state: KumoState = stored
            .and_then(|value| serde_json::from_value(value.clone()).ok())
            .unwrap_or_default();
        // The rate baseline is the stored snapshot's totals.
        let mut tracker = ThroughputTracker::new();
        if let (Some(at), Some(snapshot)) = (state.polled_at_ms, &state.snapshot) {
            tracker.observe(at, &snapshot.totals);
        }
        state.tracker = Some(tracker);
        state
    }

    fn to_value(&self) -> Option<Value> {
        serde_json::to_value(self).ok()
    }
}

/// The data of a `connection:status` event.
pub fn connection_event(target: &PollTarget, connection: &Connection, now: DateTime<Utc>) -> Value {
    json!({
        "source": target.name,
        "source_id": target.id,
        "connected": connection.connected,
        "status": connection.status,
        "timestamp": rfc3339(now),
    })
}

pub async fn poll(
    context: &PollContext,
    target: &PollTarget,
    state: &mut KumoState,
    now: DateTime<Utc>,
) -> PollReport {
    let base = target.settings.url.trim_end_matches('/');
    let max = context.state.config.sources.max_response_bytes;
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        async move { (path, fetch::get(&context.client, target, &url, max).await) }
    };
    let (metrics, ready_states, suspend, suspend_ready, bounce, liveness) = tokio::join!(
        get(METRICS),
        get(READY_Q_STATES),
        get(SUSPEND),
        get(SUSPEND_READY_Q),
        get(BOUNCE),
        get(LIVENESS),
    );

    let connection = connection_of(
        [&metrics, &ready_states, &suspend, &suspend_ready, &bounce],
        &liveness,
    );
    if state.connection.as_ref() != Some(&connection) {
        context
            .publish(
                &target.tenant,
                "connection",
                "connection:status",
                &connection_event(target, &connection, now),
            )
            .await;
        state.connection = Some(connection);
    }

    let data = (|| -> Result<_, String> {
        let metrics = ok_body(&metrics)?;
        let ready_states: ReadyQueueStates = json_body(&ready_states)?;
        let suspend: Vec<SchedSuspension> = json_body(&suspend)?;
        let suspend_ready: Vec<ReadySuspension> = json_body(&suspend_ready)?;
        let bounce: Vec<AdminBounce> = json_body(&bounce)?;
        Ok((metrics, ready_states, suspend, suspend_ready, bounce))
    })();
    let (metrics, ready_states, suspend, suspend_ready, bounce) = match data {
        Ok(data) => data,
        Err(error) => {
            return PollReport {
                error: Some(error),
                state: state.to_value(),
                back_off: true,
            };
        }
    };
    let exposition = parse(metrics, ParseOptions::KUMOD);
    let snapshot = build_snapshot(
        &exposition,
        &ready_states,
        &suspend,
        &suspend_ready,
        &bounce,
    );

    let now_ms = now.timestamp_millis();
    let previous = state.snapshot.take();
    for change in diff_queues(
        previous
            .as_ref()
            .map(|p| p.queues.as_slice())
            .unwrap_or(&[]),
        &snapshot.queues,
    ) {
        let mut data = change.event_data(now);
        data["source"] = json!(target.name);
        data["source_id"] = json!(target.id);
        data["change"] = json!(change.change);
        context
            .publish(&target.tenant, "queues", "queue:update", &data)
            .await;
    }

    let throughput = state
        .tracker
        .get_or_insert_with(ThroughputTracker::new)
        .observe(now_ms, &snapshot.totals);
    let mut samples: Vec<SampleIn> = series_samples(&snapshot, previous.as_ref())
        .into_iter()
        .map(|(name, mut labels, value)| {
            labels.insert("source".into(), target.name.clone());
            SampleIn {
                name,
                labels,
                value,
                timestamp_ms: Some(now_ms),
            }
        })
        .collect();
    let rates = [
        ("kumomta_delivered_rate", throughput.delivered_per_s),
        ("kumomta_bounced_rate", throughput.bounced_per_s),
        ("kumomta_deferred_rate", throughput.deferred_per_s),
        ("kumomta_received_rate", throughput.received_per_s),
    ];
    for (name, rate) in rates {
        if let Some(value) = rate {
            samples.push(SampleIn {
                name: name.into(),
                labels: [("source".to_string(), target.name.clone())].into(),
                value,
                timestamp_ms: Some(now_ms),
            });
        }
    }
    let stored = context.store_samples(target, samples, now).await;

    let mut update = snapshot.totals.metrics_update_data(&throughput, now);
    update["source"] = json!(target.name);
    update["source_id"] = json!(target.id);
    context
        .publish(&target.tenant, "metrics", "metrics:update", &update)
        .await;

    state.snapshot = Some(snapshot);
    state.polled_at_ms = Some(now_ms);
    state.throughput = throughput;
    PollReport {
        error: stored.err(),
        state: state.to_value(),
        back_off: true,
    }
}

type Answer = (&'static str, Result<Fetched, FetchError>);

/// Liveness as kumod states it, unless kumod could not be asked at all.
fn connection_of(data: [&Answer; 5], liveness: &Answer) -> Connection {
    let all = data.iter().copied().chain(std::iter::once(liveness));
    for (path, answer) in all.clone() {
        if let Err(FetchError::Unreachable(why)) = answer {
            let _ = path;
            return Connection {
                connected: false,
                status: format!("unreachable: {why}"),
            };
        }
    }
    if all
        .clone()
        .any(|(_, answer)| matches!(answer, Ok(fetched) if fetched.status == 401))
    {
        return Connection {
            connected: false,
            status: "unauthorized: Lookout is not in kumod's trusted_hosts".into(),
        };
    }
    match &liveness.1 {
        Ok(fetched) if fetched.status == 200 => Connection {
            connected: true,
            status: "ok".into(),
        },
        Ok(fetched) => {
            let reason = fetched.body.trim();
            Connection {
                connected: false,
                status: if reason.is_empty() {
                    format!("not live (HTTP {})", fetched.status)
                } else {
                    reason.chars().take(200).collect()
                },
            }
        }
        Err(e) => Connection {
            connected: false,
            status: e.to_string(),
        },
    }
}

/// The body of a 200 answer, or why there is none.
fn ok_body(answer: &Answer) -> Result<&str, String> {
    let (path, result) = answer;
    match result {
        Ok(fetched) if fetched.status == 200 => Ok(&fetched.body),
        Ok(fetched) if fetched.status == 401 => Err(format!(
            "kumod answered 401 for {path}: Lookout is not in kumod's trusted_hosts \
             (add this replica's address there, or allow it with an ACL)"
        )),
        Ok(fetched) => Err(format!("kumod answered HTTP {} for {path}", fetched.status)),
        Err(e) => Err(e.to_string()),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(answer: &Answer) -> Result<T, String> {
    let body = ok_body(answer)?;
    serde_json::from_str(body).map_err(|e| {
        format!(
            "kumod's answer for {} is not what Lookout reads: {e}",
            answer.0
        )
    })
}
