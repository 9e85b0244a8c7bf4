//! `GET /api/v1/agents/connect`: the agents' WebSocket (protocol.md, "Monitoring agents").
//!
//! One session per socket: this task reads and handles frames in order (a metrics batch
//! is acknowledged only after [`Ingest::write`](crate::ingest::Ingest::write) committed
//! it), a writer task drains the session's bounded queue into the socket, and anyone
//! (the hub, a REST call on another replica) reaches the agent through that queue.
//!
//! Frames are `{"type":…, "data":{…}, "timestamp":"RFC 3339"}` both ways. Every bad
//! input gets an `error` frame or a close code, never a panic: malformed frames (not
//! JSON, binary, no `type`) close with 4000, oversized ones with 1009, floods with 4008
//! after a `rate_limit` frame, silence for three ping intervals with 4004.

use super::hub::{self, Outgoing, SessionControl, Signal};
use super::model::{validate_capabilities, validate_id, validate_labels, validate_text};
use super::repo::{self, Connect, Registration};
use crate::api::error::ApiError;
use crate::app::AppState;
use crate::auth::{AuthError, Identity, Role, bearer_token};
use crate::ingest::{IngestError, MetricBatch, Rejection, decode_metrics};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// `?agent_id=&provider=&region=` (and `token`, for clients that cannot set headers).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectParams {
    /// The agent's id; must equal the token's `sub` unless the token is an admin's.
    pub agent_id: Option<String>,
    pub provider: Option<String>,
    pub region: Option<String>,
    /// A JWT, when the `Authorization` header cannot be set.
    pub token: Option<String>,
}

/// Serializes a server frame.
pub fn frame<T: Serialize + ?Sized>(kind: &str, data: &T) -> String {
    #[derive(Serialize)]
    struct Frame<'a, T: ?Sized> {
        #[serde(rename = "type")]
        kind: &'a str,
        data: &'a T,
        timestamp: String,
    }
    serde_json::to_string(&Frame {
        kind,
        data,
        timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    })
    .unwrap_or_else(|_| {
        r#"{"type":"error","data":{"code":"internal","message":"unserializable frame"}}"#
            .to_string()
    })
}

fn error_frame(code: &str, message: &str, batch_id: Option<&str>) -> String {
    #[derive(Serialize)]
    struct ErrorData<'a> {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        batch_id: Option<&'a str>,
    }
    frame(
        "error",
        &ErrorData {
            code,
            message,
            batch_id,
        },
    )
}

/// Opens an agent's socket. The token comes from the `Authorization` header, the
/// `token` query parameter, or a first frame `{"type":"auth","data":{"token":…}}`.
#[utoipa::path(
    get,
    path = "/api/v1/agents/connect",
    tag = "agents",
    params(ConnectParams),
    responses(
        (status = 101, description = "WebSocket of protocol.md, \"Monitoring agents\""),
        (status = 400, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::api::Problem, content_type = "application/problem+json"),
        (status = 422, body = crate::api::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn connect(
    State(state): State<AppState>,
    Query(params): Query<ConnectParams>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let agent_id = params
        .agent_id
        .clone()
        .ok_or_else(|| ApiError::field("agent_id", "is required"))?;
    validate_id("agent_id", &agent_id).map_err(|e| ApiError::field("agent_id", e))?;
    for (field, value) in [("provider", &params.provider), ("region", &params.region)] {
        if let Some(value) = value {
            validate_id(field, value).map_err(|e| ApiError::field(field, e))?;
        }
    }
    let token = bearer_token(&headers)
        .map(str::to_string)
        .or_else(|| params.token.clone());
    let identity = match token {
        Some(token) => {
            let identity = state.auth.verify(&token).await?;
            allowed(&identity, &agent_id).map_err(ApiError::Forbidden)?;
            Some(identity)
        }
        None => None,
    };
    let upgrade = upgrade.map_err(|_| {
        ApiError::BadRequest("this endpoint takes a WebSocket upgrade request".into())
    })?;
    let config = &state.config.agents;
    // Small read buffers keep idle agents cheap; the message limit bounds what one
    // frame can make us buffer; the write buffer is flushed per frame (agents get few
    // frames) and capped so a dead peer cannot grow it.
    let upgrade = upgrade
        .read_buffer_size(config.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(config.max_frame_bytes.max(64 * 1024) * 2)
        .max_message_size(config.max_frame_bytes)
        .max_frame_size(config.max_frame_bytes);
    let tracked = state.tasks.clone();
    Ok(upgrade.on_upgrade(move |socket| {
        tracked.track_future(async move {
            Session::run(state, socket, identity, agent_id, params).await;
        })
    }))
}

/// Whether `identity` may connect as `agent_id`.
fn allowed(identity: &Identity, agent_id: &str) -> Result<(), String> {
    match identity.role {
        Role::Admin => Ok(()),
        Role::Agent if identity.sub == agent_id => Ok(()),
        Role::Agent => Err("an agent token may only connect as its own agent_id (sub)".into()),
        other => Err(format!("the {other} role may not connect as an agent")),
    }
}

/// A frame as an agent sends it.
#[derive(Debug, Deserialize)]
struct InFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
    /// Dashboards' envelope name for `data`; accepted for `auth`.
    #[serde(default)]
    payload: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrationData {
    hostname: Option<String>,
    version: Option<String>,
    provider: Option<String>,
    region: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    capabilities: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct StatusData {
    status: String,
    #[serde(default)]
    details: Option<Value>,
}

#[derive(Debug, Serialize)]
struct Ack<'a> {
    batch_id: &'a str,
    accepted: usize,
    rejected: &'a [Rejection],
}

/// Why the read loop ended.
enum End {
    /// Close with this code and reason after the queued frames.
    Close(u16, &'static str),
    /// The peer closed or the socket broke: nothing more to send.
    Gone,
    /// Closed through the session's control (hub, shutdown of the writer).
    Cancelled,
}

struct Session {
    state: AppState,
    control: Arc<SessionControl>,
    identity: Identity,
    agent_id: String,
    limiter: DefaultDirectRateLimiter,
    /// Frames dropped in a row by the rate limit.
    dropped: u32,
    last_heard: Instant,
}

impl Session {
    async fn run(
        state: AppState,
        socket: WebSocket,
        identity: Option<Identity>,
        agent_id: String,
        params: ConnectParams,
    ) {
        let config = state.config.agents.clone();
        let (sink, mut stream) = socket.split();
        let (outbox, queue) = mpsc::channel(config.send_queue_len);
        let session_id = uuid::Uuid::now_v7().to_string();
        // The tenant is known only after authentication; the control is rebuilt then.
        let pre = Arc::new(SessionControl::new(
            "",
            &agent_id,
            &session_id,
            outbox.clone(),
        ));
        let writer = tokio::spawn(write_loop(sink, queue, pre.clone()));

        let identity = match identity {
            Some(identity) => identity,
            None => match authenticate(&state, &mut stream, &outbox, &agent_id).await {
                Some(identity) => identity,
                None => {
                    finish_writer(writer, &pre).await;
                    drain(&mut stream).await;
                    return;
                }
            },
        };
        let control = Arc::new(SessionControl::new(
            &identity.tenant,
            &agent_id,
            &session_id,
            outbox.clone(),
        ));
        let now = Utc::now();
        let connected = repo::connect(
            &state.store,
            Connect {
                tenant: &identity.tenant,
                agent_id: &agent_id,
                provider: params.provider.as_deref(),
                region: params.region.as_deref(),
                session_id: &session_id,
                replica_id: state.replica_id(),
                until: now + config.presence_ttl,
                now,
            },
        )
        .await;
        let row = match connected {
            Ok(row) => row,
            Err(e) => {
                tracing::warn!(error = %e, agent = %agent_id, "could not register an agent socket");
                let _ = outbox.try_send(Outgoing::Text(error_frame(
                    "internal",
                    "the registry is unavailable; reconnect later",
                    None,
                )));
                let _ = outbox.try_send(Outgoing::Close(1013, "try_again_later"));
                finish_writer(writer, &pre).await;
                drain(&mut stream).await;
                return;
            }
        };
        let hub = state.agents.clone();
        hub.add(control.clone());
        hub::signal(
            &state,
            &identity.tenant,
            &Signal::Session {
                agent_id: agent_id.clone(),
                session_id: session_id.clone(),
            },
        )
        .await;
        hub::announce(&state, "agent:connected", &row).await;
        tracing::info!(tenant = %identity.tenant, agent = %agent_id, session = %session_id, "agent connected");

        let burst = NonZeroU32::new(config.rate_limit_burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let rate = NonZeroU32::new(config.rate_limit_per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
        let mut session = Session {
            state: state.clone(),
            control: control.clone(),
            identity,
            agent_id,
            limiter: DefaultDirectRateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            dropped: 0,
            last_heard: Instant::now(),
        };
        let end = session.read_loop(&mut stream).await;
        hub.remove(&control);
        // Let the writer's `pre` control follow this session's closing.
        match end {
            End::Close(code, reason) => {
                let _ = outbox.try_send(Outgoing::Close(code, reason));
            }
            End::Gone => pre.close_now(1000, "closed"),
            End::Cancelled => {
                let (code, reason) = control.close_reason();
                pre.close_now(code, reason);
            }
        }
        finish_writer(writer, &pre).await;
        match repo::disconnect(
            &state.store,
            &control.tenant,
            &control.agent_id,
            &session_id,
            Utc::now(),
        )
        .await
        {
            Ok(Some(row)) => hub::announce(&state, "agent:disconnected", &row).await,
            Ok(None) => {}
            // The presence sweep marks it disconnected within one TTL.
            Err(e) => {
                tracing::warn!(error = %e, agent = %control.agent_id, "could not record an agent disconnect")
            }
        }
        tracing::info!(tenant = %control.tenant, agent = %control.agent_id, session = %session_id, "agent disconnected");
        drain(&mut stream).await;
    }

    async fn read_loop(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
    ) -> End {
        let ping_interval = self.state.config.agents.ping_interval;
        let mut pings = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let expiry = tokio::time::sleep(until(self.identity.expires_at));
        tokio::pin!(expiry);
        let shutdown = self.state.shutdown.clone();
        let cancelled = self.control.cancelled().clone();
        loop {
            tokio::select! {
                _ = cancelled.cancelled() => return End::Cancelled,
                _ = shutdown.cancelled() => {
                    let after_ms = rand::random::<u64>() % 5000 + 500;
                    self.control.send(frame(
                        "reconnect",
                        &serde_json::json!({"reason": "shutdown", "after_ms": after_ms}),
                    ));
                    return End::Close(1012, "shutdown");
                }
                _ = &mut expiry => {
                    // A fresh `auth` frame moves the deadline (see `handle`).
                    if Utc::now() >= self.identity.expires_at {
                        return End::Close(4002, "token_expired");
                    }
                    expiry.as_mut().reset(Instant::now() + until(self.identity.expires_at));
                }
                _ = pings.tick() => {
                    if self.last_heard.elapsed() > ping_interval * 3 {
                        return End::Close(4004, "heartbeat_timeout");
                    }
                    self.control.send(frame("ping", &serde_json::json!({})));
                }
                message = stream.next() => {
                    let Some(message) = message else { return End::Gone };
                    match message {
                        Ok(message) => {
                            if let Some(end) = self.on_message(message).await {
                                return end;
                            }
                        }
                        Err(e) => return read_error(e),
                    }
                }
            }
        }
    }

    async fn on_message(&mut self, message: Message) -> Option<End> {
        self.last_heard = Instant::now();
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.control.send(error_frame(
                    "bad_request",
                    "binary frames are not part of the protocol; send JSON text",
                    None,
                ));
                return Some(End::Close(4000, "binary_frame"));
            }
            Message::Ping(_) | Message::Pong(_) => return None,
            Message::Close(_) => return Some(End::Gone),
        };
        if let Err(not_until) = self.limiter.check() {
            self.dropped += 1;
            if self.dropped == 1 {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                self.control.send(frame(
                    "rate_limit",
                    &serde_json::json!({"retry_after_ms": wait.as_millis().max(1) as u64}),
                ));
            }
            if self.dropped > self.state.config.agents.rate_limit_burst {
                return Some(End::Close(4008, "rate_limited"));
            }
            return None;
        }
        self.dropped = 0;
        let frame_in = match serde_json::from_str::<InFrame>(text.as_str()) {
            Ok(frame_in) => frame_in,
            Err(e) => {
                self.control.send(error_frame(
                    "bad_request",
                    &format!("a frame is a JSON object with a string \"type\": {e}"),
                    None,
                ));
                return Some(End::Close(4000, "malformed_frame"));
            }
        };
        self.handle(frame_in).await
    }

    async fn handle(&mut self, frame_in: InFrame) -> Option<End> {
        match frame_in.kind.as_str() {
            "registration" => self.on_registration(frame_in.data).await,
            "metrics" => self.on_metrics(frame_in.data).await,
            "status" => self.on_status(frame_in.data).await,
            "pong" => None,
            "ping" => {
                self.control.send(frame("pong", &serde_json::json!({})));
                None
            }
            "auth" => self.on_reauth(frame_in).await,
            other => {
                let other: String = other.chars().take(64).collect();
                self.control.send(error_frame(
                    "unknown_type",
                    &format!("unknown frame type '{other}': registration, metrics, status or pong"),
                    None,
                ));
                None
            }
        }
    }

    fn bad_request(&self, message: &str, batch_id: Option<&str>) -> Option<End> {
        self.control
            .send(error_frame("bad_request", message, batch_id));
        None
    }

    fn internal(&self, error: &dyn std::fmt::Display, batch_id: Option<&str>) -> Option<End> {
        tracing::error!(error = %error, agent = %self.agent_id, "agent frame failed");
        self.control.send(error_frame(
            "internal",
            "could not store this; send it again later",
            batch_id,
        ));
        None
    }

    async fn on_registration(&mut self, data: Value) -> Option<End> {
        let data: RegistrationData = match serde_json::from_value(data) {
            Ok(data) => data,
            Err(e) => return self.bad_request(&format!("invalid registration: {e}"), None),
        };
        let checks = [
            data.hostname
                .as_deref()
                .map_or(Ok(()), |h| validate_text("hostname", h)),
            data.version
                .as_deref()
                .map_or(Ok(()), |v| validate_text("version", v)),
            data.provider
                .as_deref()
                .map_or(Ok(()), |p| validate_id("provider", p)),
            data.region
                .as_deref()
                .map_or(Ok(()), |r| validate_id("region", r)),
            validate_labels(&data.labels),
            validate_capabilities(&data.capabilities),
        ];
        if let Some(Err(problem)) = checks.into_iter().find(Result::is_err) {
            return self.bad_request(&format!("invalid registration: {problem}"), None);
        }
        let registered = repo::register(
            &self.state.store,
            &self.control.tenant,
            &self.agent_id,
            &self.control.session_id,
            Registration {
                hostname: data.hostname.as_deref(),
                version: data.version.as_deref(),
                provider: data.provider.as_deref(),
                region: data.region.as_deref(),
                labels: &data.labels,
                capabilities: &data.capabilities,
            },
            Utc::now(),
        )
        .await;
        match registered {
            Ok(Some(row)) => {
                self.control.config_sent(row.config_version);
                self.control.send(frame(
                    "registered",
                    &serde_json::json!({"agent_id": row.id, "config": row.config.0}),
                ));
                hub::announce(&self.state, "agent:updated", &row).await;
                None
            }
            // Another socket of this agent took over, or the agent was deleted.
            Ok(None) => Some(End::Close(1000, "replaced")),
            Err(e) => self.internal(&e, None),
        }
    }

    async fn on_metrics(&mut self, data: Value) -> Option<End> {
        // The same shape as `POST /api/v1/metrics`, decoded by ingest's own reader so
        // both ways in reject a bad sample with the same words.
        let batch: MetricBatch = match serde_json::from_value(data) {
            Ok(batch) => batch,
            Err(e) => {
                return self.bad_request(
                    &format!("a metrics frame's data is {{batch_id, metrics:[…]}}: {e}"),
                    None,
                );
            }
        };
        // The ack names the batch, and only a named batch can be resent safely.
        let Some(batch_id) = batch.batch_id.as_deref() else {
            return self.bad_request("a metrics frame needs a batch_id", None);
        };
        let (samples, undecodable) = decode_metrics(&batch.metrics);
        // Stored (one transaction, batch id recorded in it) before the ack goes out;
        // `metrics:update` is published by ingest.
        let outcome = self
            .state
            .ingest
            .write(
                &self.control.tenant,
                Some(batch_id),
                samples,
                undecodable,
                chrono::Utc::now(),
            )
            .await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(IngestError::Store(e)) => return self.internal(&e, Some(batch_id)),
            // HTTP answers this 429: over a quota, not malformed; resending later may work.
            Err(e @ IngestError::SeriesLimit { .. }) => {
                self.control
                    .send(error_frame("rate_limited", &e.to_string(), Some(batch_id)));
                return None;
            }
            Err(e @ (IngestError::BatchTooLarge { .. } | IngestError::BadBatchId)) => {
                return self.bad_request(&e.to_string(), Some(batch_id));
            }
        };
        if !outcome.duplicate
            && let Err(e) = repo::record_batch(
                &self.state.store,
                &self.control.tenant,
                &self.agent_id,
                outcome.accepted,
                outcome.rejected.len(),
                Utc::now(),
            )
            .await
        {
            // The batch is stored; only the agent's counters missed it.
            tracing::warn!(error = %e, agent = %self.agent_id, "could not count an agent batch");
        }
        self.control.send(frame(
            "ack",
            &Ack {
                batch_id,
                accepted: outcome.accepted,
                rejected: &outcome.rejected,
            },
        ));
        None
    }

    async fn on_status(&mut self, data: Value) -> Option<End> {
        let data: StatusData = match serde_json::from_value(data) {
            Ok(data) => data,
            Err(e) => {
                return self.bad_request(
                    &format!("a status frame's data is {{status, details}}: {e}"),
                    None,
                );
            }
        };
        if let Err(e) = validate_id("status", &data.status) {
            return self.bad_request(&e, None);
        }
        let details = data.details.filter(|d| !d.is_null());
        if let Some(details) = &details {
            if !details.is_object() {
                return self.bad_request("status details must be an object", None);
            }
            if details.to_string().len() > super::model::MAX_DETAILS_BYTES {
                return self.bad_request(
                    &format!(
                        "status details must be at most {} bytes",
                        super::model::MAX_DETAILS_BYTES
                    ),
                    None,
                );
            }
        }
        let stored = repo::set_health(
            &self.state.store,
            &self.control.tenant,
            &self.agent_id,
            &self.control.session_id,
            &data.status,
            details.as_ref(),
            Utc::now(),
        )
        .await;
        match stored {
            Ok(Some(row)) => {
                hub::announce(&self.state, "agent:status", &row).await;
                None
            }
            Ok(None) => Some(End::Close(1000, "replaced")),
            Err(e) => self.internal(&e, None),
        }
    }

    /// A fresh token extends the session past the current one's expiry.
    async fn on_reauth(&mut self, frame_in: InFrame) -> Option<End> {
        let token = frame_in
            .data
            .get("token")
            .or_else(|| frame_in.payload.get("token"))
            .and_then(Value::as_str);
        let Some(token) = token else {
            return self.bad_request("auth takes {\"token\": \"<jwt>\"}", None);
        };
        match self.state.auth.verify(token).await {
            Ok(identity)
                if identity.tenant == self.identity.tenant
                    && allowed(&identity, &self.agent_id).is_ok() =>
            {
                self.identity = identity;
                self.control.send(frame(
                    "auth_success",
                    &serde_json::json!({"expires_at": self.identity.expires_at}),
                ));
                None
            }
            Ok(_) => {
                self.control.send(error_frame(
                    "forbidden",
                    "the new token is for another agent or tenant",
                    None,
                ));
                None
            }
            Err(e) => {
                self.control.send(frame(
                    "auth_error",
                    &serde_json::json!({"code": "unauthorized", "message": e.to_string()}),
                ));
                None
            }
        }
    }
}

/// Time left until `at` (zero when past).
fn until(at: DateTime<Utc>) -> Duration {
    (at - Utc::now()).to_std().unwrap_or_default()
}

fn read_error(error: axum::Error) -> End {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = std::error::Error::source(&error).and_then(|e| e.downcast_ref::<WsError>());
    match inner {
        Some(WsError::Capacity(_)) => End::Close(1009, "frame_too_large"),
        Some(WsError::Utf8(_)) => End::Close(1007, "invalid_utf8"),
        Some(WsError::Protocol(_)) => End::Close(1002, "protocol_error"),
        _ => End::Gone,
    }
}

/// Waits for the first frame `{"type":"auth","data":{"token":…}}`; on failure sends
/// `auth_error` and closes with 4001 (4003 for a role that may not connect).
async fn authenticate(
    state: &AppState,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    outbox: &mpsc::Sender<Outgoing>,
    agent_id: &str,
) -> Option<Identity> {
    let fail = |code: u16, reason: &'static str, message: String| {
        let error_code = if code == 4003 {
            "forbidden"
        } else {
            "unauthorized"
        };
        let _ = outbox.try_send(Outgoing::Text(frame(
            "auth_error",
            &serde_json::json!({"code": error_code, "message": message}),
        )));
        let _ = outbox.try_send(Outgoing::Close(code, reason));
        None
    };
    let first = tokio::time::timeout(state.config.agents.auth_timeout, stream.next()).await;
    let text = match first {
        Err(_) => return fail(4001, "auth_timeout", "no auth frame in time".into()),
        Ok(None) | Ok(Some(Err(_))) => return None,
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(Some(Ok(_))) => {
            return fail(
                4001,
                "auth_required",
                "the first frame must be an auth frame".into(),
            );
        }
    };
    let token = serde_json::from_str::<InFrame>(text.as_str())
        .ok()
        .filter(|f| f.kind == "auth")
        .and_then(|f| {
            f.data
                .get("token")
                .or_else(|| f.payload.get("token"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let Some(token) = token else {
        return fail(
            4001,
            "auth_required",
            "the first frame must be {\"type\":\"auth\",\"data\":{\"token\":\"<jwt>\"}}".into(),
        );
    };
    match state.auth.verify(&token).await {
        Ok(identity) => match allowed(&identity, agent_id) {
            Ok(()) => {
                let _ = outbox.try_send(Outgoing::Text(frame(
                    "auth_success",
                    &serde_json::json!({"agent_id": agent_id, "tenant": identity.tenant,
                        "expires_at": identity.expires_at, "server": state.replica_id()}),
                )));
                Some(identity)
            }
            Err(message) => fail(4003, "forbidden", message),
        },
        Err(AuthError::Unavailable(_)) => {
            fail(1013, "try_again_later", "cannot check the token now".into())
        }
        Err(e) => fail(4001, "auth_failed", e.to_string()),
    }
}

/// Drains the session's queue into the socket until a close.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Outgoing>,
    control: Arc<SessionControl>,
) {
    let close = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        tokio::select! {
            biased;
            _ = control.cancelled().cancelled() => {
                let (code, reason) = control.close_reason();
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close(code, reason))).await;
                break;
            }
            next = queue.recv() => match next {
                Some(Outgoing::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close(code, reason))).await;
                    break;
                }
                None => break,
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// After our close frame, reads (and drops) what the peer still sends until its close
/// or a short deadline. Dropping a socket with unread data makes TCP reset it, and a
/// reset can destroy the close frame before the peer reads it.
async fn drain(stream: &mut futures_util::stream::SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Lets the writer send what is queued (bounded), then stops it.
async fn finish_writer(writer: tokio::task::JoinHandle<()>, control: &SessionControl) {
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .is_err()
    {
        control.close_now(1011, "stuck");
        abort.abort();
    }
}
