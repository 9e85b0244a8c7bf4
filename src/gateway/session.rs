//! One `/ws` connection: authentication, subscriptions with replay, event delivery from
//! its [`SendQueue`], limits, liveness and closing (protocol.md, "Dashboards").
//!
//! A session is one task. Every write to the socket is raced against the queue's
//! overflow, the shutdown and a deadline, so a client that stops reading can neither
//! hold the session forever nor slow anyone else (the hub never waits for it).

use super::Gateway;
use super::frames::{ClientFrame, error_frame, server_frame};
use super::hub::{EventFrame, SendQueue, Subscriber};
use super::metrics as m;
use super::topics::role_may_read;
use crate::app::AppState;
use crate::auth::{AuthError, Identity, Role};
use crate::bus::{Position, TopicPattern, validate_client_topic};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Topic patterns one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 256;
/// Topics in one `subscribe` / `unsubscribe` frame.
const MAX_TOPICS_PER_FRAME: usize = 100;
/// Topics whose position a connection remembers (for patterns matching many topics).
const MAX_CURSORS: usize = 10_000;
/// Queued events written per batch (one flush per batch).
const BATCH: usize = 64;
/// How long the client may take to answer the server's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// Why a session ends.
enum Stop {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The server is shutting down: `reconnect`, then 1012.
    Shutdown,
    /// The client closed: answer its close frame (queued by the WebSocket layer).
    ClientClosed(u16),
    /// The client vanished: nothing more to send.
    Gone,
}

/// Runs one upgraded connection to its end. `identity` is set when the upgrade request
/// carried a valid token; otherwise the first frame must be `auth`.
pub async fn run(
    state: AppState,
    gateway: Arc<Gateway>,
    socket: WebSocket,
    identity: Option<Identity>,
) {
    // Shutdown waits for sessions to say goodbye.
    let _tracked = state.tasks.token();
    let (mut sink, mut stream) = socket.split();
    let (identity, auth_id) = match identity {
        Some(identity) => (identity, None),
        None => match Box::pin(authenticate_first_frame(&state, &mut sink, &mut stream)).await {
            Ok(found) => found,
            Err(stop) => return Box::pin(finish(&state, &mut sink, &mut stream, stop)).await,
        },
    };
    if identity.role == Role::Agent {
        let stop = Stop::Close(4003, "forbidden_role");
        return Box::pin(finish(&state, &mut sink, &mut stream, stop)).await;
    }
    let Some(_slot) = gateway.take_slot(state.config.realtime.max_connections_per_replica) else {
        let stop = Stop::Close(1013, "overloaded");
        return Box::pin(finish(&state, &mut sink, &mut stream, stop)).await;
    };
    let connection_id = uuid::Uuid::now_v7().to_string();
    let _quota = match Box::pin(gateway.quotas.acquire(&identity, &connection_id)).await {
        Ok(guard) => guard,
        Err(_) => {
            let stop = Stop::Close(4006, "quota_exceeded");
            return Box::pin(finish(&state, &mut sink, &mut stream, stop)).await;
        }
    };

    let config = &state.config.realtime;
    let (queue, receiver) = SendQueue::new(config.send_queue_len);
    let per_sec = NonZeroU32::new(config.rate_limit_per_sec).unwrap_or(NonZeroU32::MIN);
    let burst =
        NonZeroU32::new(config.rate_limit_burst.max(config.rate_limit_per_sec)).unwrap_or(per_sec);
    let mut session = Session {
        state: state.clone(),
        gateway: gateway.clone(),
        id: gateway.next_id(),
        connection_id,
        identity,
        queue,
        subscriptions: Vec::new(),
        cursors: HashMap::new(),
        limiter: RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst)),
        strikes: 0,
        last_drop: Instant::now(),
        expiry: Instant::now(),
    };
    session.expiry = deadline_of(&session.identity);
    m::connection_opened(state.replica_id(), &session.identity.tenant);
    let hello = session.auth_success(auth_id.as_ref());
    let stop = match Box::pin(session.write(&mut sink, vec![hello])).await {
        Ok(()) => session.serve(&mut sink, &mut stream, receiver).await,
        Err(stop) => stop,
    };
    session.unsubscribe_all();
    m::connection_closed(state.replica_id(), &session.identity.tenant);
    Box::pin(finish(&state, &mut sink, &mut stream, stop)).await;
}

/// Waits for the first frame, which must be a valid `auth`.
async fn authenticate_first_frame(
    state: &AppState,
    sink: &mut Sink,
    stream: &mut Stream,
) -> Result<(Identity, Option<Value>), Stop> {
    let timeout = state.config.realtime.auth_timeout;
    let message = match tokio::time::timeout(timeout, stream.next()).await {
        Err(_) => return Err(Stop::Close(4001, "auth_timeout")),
        Ok(None) => return Err(Stop::Gone),
        Ok(Some(Err(e))) => return Err(read_error(&e)),
        Ok(Some(Ok(message))) => message,
    };
    let text = match message {
        Message::Text(text) => text,
        Message::Close(_) => return Err(Stop::Gone),
        _ => return Err(Stop::Close(4000, "binary_frame")),
    };
    let frame = ClientFrame::parse(&text).map_err(|e| Stop::Close(4000, e.0))?;
    let id = frame.reply_id().ok().flatten();
    let refuse = async |sink: &mut Sink, message: &str| {
        let text = server_frame("auth_error", id.as_ref(), &json!({"message": message}));
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Text(text.into()))).await;
        Stop::Close(4001, "auth_failed")
    };
    if frame.kind != "auth" {
        return Err(refuse(sink, "authenticate first: send an auth frame").await);
    }
    let Some(token) = frame.payload.get("token").and_then(Value::as_str) else {
        return Err(refuse(sink, "payload.token is required").await);
    };
    match state.auth.verify(token).await {
        Ok(identity) => Ok((identity, id)),
        Err(e) => Err(refuse(sink, &e.to_string()).await),
    }
}

/// Maps a read error: a frame over the size limit is 1009, anything else a lost client.
fn read_error(error: &axum::Error) -> Stop {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<WsError>())
        .or_else(|| {
            // axum::Error may expose the tungstenite error directly or as its source.
            (error as &dyn std::error::Error).downcast_ref::<WsError>()
        });
    match inner {
        Some(WsError::Capacity(_)) => Stop::Close(1009, "frame_too_large"),
        Some(WsError::Protocol(_)) | Some(WsError::Utf8(_)) => Stop::Close(4000, "protocol_error"),
        _ => Stop::Gone,
    }
}

/// Sends the closing frames (when there is someone to send them to) and waits briefly
/// for the client's close reply, so that the close frame is not lost to a reset.
async fn finish(state: &AppState, sink: &mut Sink, stream: &mut Stream, stop: Stop) {
    let (code, reason, notice) = match stop {
        Stop::Gone => return,
        Stop::ClientClosed(code) => {
            m::closed_with(code);
            let _ = tokio::time::timeout(CLOSE_GRACE, sink.flush()).await;
            return;
        }
        Stop::Close(code, reason) => (code, reason, None),
        Stop::Shutdown => {
            let spread = state.config.realtime.reconnect_spread.as_millis() as u64;
            let after_ms = if spread == 0 {
                0
            } else {
                rand::random::<u64>() % spread
            };
            let notice = server_frame(
                "reconnect",
                None,
                &json!({"reason": "shutdown", "after_ms": after_ms}),
            );
            (1012, "service_restart", Some(notice))
        }
    };
    m::closed_with(code);
    let closing = async {
        if let Some(notice) = notice {
            sink.feed(Message::Text(notice.into())).await?;
        }
        sink.send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await
    };
    // A client that is alive but not reading (a slow consumer) gets as long to take its
    // close frame as it would get to answer pings.
    let write_deadline = state.config.realtime.heartbeat_interval * 3;
    if let Ok(Ok(())) = tokio::time::timeout(write_deadline, closing).await {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
    }
}

fn deadline_of(identity: &Identity) -> Instant {
    let left = (identity.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

struct Session {
    state: AppState,
    gateway: Arc<Gateway>,
    id: u64,
    connection_id: String,
    identity: Identity,
    queue: Arc<SendQueue>,
    subscriptions: Vec<TopicPattern>,
    /// Last (epoch, offset) sent per topic: drops what the replay already sent.
    cursors: HashMap<String, (String, u64)>,
    limiter: DefaultDirectRateLimiter,
    /// Frames dropped by the rate limit in the current streak.
    strikes: u32,
    last_drop: Instant,
    expiry: Instant,
}

impl Session {
    async fn serve(
        &mut self,
        sink: &mut Sink,
        stream: &mut Stream,
        mut receiver: mpsc::Receiver<Arc<EventFrame>>,
    ) -> Stop {
        let interval = self.state.config.realtime.heartbeat_interval;
        let mut heartbeat = tokio::time::interval_at(Instant::now() + interval, interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // Created once, not per loop turn: a fresh `cancelled()` or `notified()` future
        // registers (and its drop unregisters) a waiter under a lock that every session
        // of the replica shares, which at one event per turn was a cost per delivery.
        let shutdown = self.state.shutdown.clone();
        let stopping = shutdown.cancelled();
        tokio::pin!(stopping);
        let queue = self.queue.clone();
        let overflowed = queue.overflowed();
        tokio::pin!(overflowed);
        let expiry = tokio::time::sleep_until(self.expiry);
        tokio::pin!(expiry);
        loop {
            let mut out = Vec::new();
            if expiry.deadline() != self.expiry {
                // A refreshed token moved the expiry.
                expiry.as_mut().reset(self.expiry);
            }
            let stop = tokio::select! {
                biased;
                _ = &mut stopping => Some(Stop::Shutdown),
                _ = &mut overflowed => Some(Stop::Close(4005, "slow_consumer")),
                _ = &mut expiry => Some(Stop::Close(4002, "token_expired")),
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() >= interval * 3 {
                        Some(Stop::Close(4004, "heartbeat_timeout"))
                    } else {
                        out.push(Message::Ping(bytes::Bytes::new()));
                        None
                    }
                }
                message = stream.next() => match message {
                    None => Some(Stop::Gone),
                    Some(Err(e)) => Some(read_error(&e)),
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        // Boxed: handling a client frame may await the store or Redis,
                        // whose large futures would otherwise be part of every idle
                        // connection's task.
                        Box::pin(self.on_message(message, &mut out)).await
                    }
                },
                Some(frame) = receiver.recv() => {
                    self.on_event(&frame, &mut out);
                    while out.len() < BATCH {
                        match receiver.try_recv() {
                            Ok(frame) => self.on_event(&frame, &mut out),
                            Err(_) => break,
                        }
                    }
                    None
                }
            };
            if !out.is_empty()
                && let Err(stop) = self.write(sink, out).await
            {
                return stop;
            }
            if let Some(stop) = stop {
                return stop;
            }
        }
    }

    /// Writes frames, giving up when the queue overflows, the server stops or the
    /// client takes longer than three heartbeat intervals to take them.
    async fn write(&self, sink: &mut Sink, frames: Vec<Message>) -> Result<(), Stop> {
        let write = async {
            for frame in frames {
                sink.feed(frame).await?;
            }
            sink.flush().await
        };
        tokio::pin!(write);
        // Nearly every write finishes at once (the socket has room): only one that has
        // to wait pays for the deadline timer and the overflow and shutdown watchers.
        if let Some(written) = (&mut write).now_or_never() {
            return written.map_err(|_| Stop::Gone);
        }
        let deadline = self.state.config.realtime.heartbeat_interval * 3;
        tokio::select! {
            written = write => written.map_err(|_| Stop::Gone),
            _ = self.queue.overflowed() => Err(Stop::Close(4005, "slow_consumer")),
            _ = self.state.shutdown.cancelled() => Err(Stop::Shutdown),
            _ = tokio::time::sleep(deadline) => Err(Stop::Close(4005, "slow_consumer")),
        }
    }

    fn auth_success(&self, id: Option<&Value>) -> Message {
        let identity = &self.identity;
        let text = server_frame(
            "auth_success",
            id,
            &json!({
                "connection_id": self.connection_id,
                "sub": identity.sub,
                "role": identity.role,
                "tenant": identity.tenant,
                "expires_at": identity.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "heartbeat_interval_ms": self.state.config.realtime.heartbeat_interval.as_millis() as u64,
                "server": self.state.replica_id(),
            }),
        );
        Message::Text(text.into())
    }

    fn on_event(&mut self, frame: &EventFrame, out: &mut Vec<Message>) {
        if !self.subscriptions.iter().any(|p| p.matches(&frame.topic)) {
            return; // Queued before an unsubscribe.
        }
        match self.cursors.get_mut(&frame.topic) {
            Some((epoch, last)) if *epoch == frame.epoch => {
                if frame.offset <= *last {
                    return; // Sent by the replay already.
                }
                *last = frame.offset;
            }
            Some(cursor) => *cursor = (frame.epoch.clone(), frame.offset),
            None => {
                if self.cursors.len() >= MAX_CURSORS {
                    self.cursors.clear();
                }
                self.cursors
                    .insert(frame.topic.clone(), (frame.epoch.clone(), frame.offset));
            }
        }
        out.push(Message::Text(frame.text.clone()));
    }

    async fn on_message(&mut self, message: Message, out: &mut Vec<Message>) -> Option<Stop> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => return Some(Stop::Close(4000, "binary_frame")),
            Message::Close(frame) => {
                return Some(Stop::ClientClosed(frame.map_or(1005, |f| f.code)));
            }
            // Answered by the WebSocket layer; they count as signs of life.
            Message::Ping(_) | Message::Pong(_) => return None,
        };
        if let Err(not_until) = self.limiter.check() {
            m::frame_dropped("rate_limited");
            if self.last_drop.elapsed() > Duration::from_secs(1) {
                self.strikes = 0;
            }
            self.last_drop = Instant::now();
            self.strikes += 1;
            if self.strikes == 1 {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                out.push(text_message(server_frame(
                    "rate_limit",
                    None,
                    &json!({"retry_after_ms": wait.as_millis().max(1) as u64}),
                )));
            }
            if self.strikes > self.state.config.realtime.rate_limit_burst {
                return Some(Stop::Close(4008, "rate_limit"));
            }
            return None;
        }
        let frame = match ClientFrame::parse(&text) {
            Ok(frame) => frame,
            Err(malformed) => return Some(Stop::Close(4000, malformed.0)),
        };
        let id = match frame.reply_id() {
            Ok(id) => id,
            Err(message) => {
                out.push(text_message(error_frame(None, "bad_request", &message)));
                return None;
            }
        };
        let id = id.as_ref();
        match frame.kind.as_str() {
            "auth" => self.refresh(id, &frame.payload, out).await,
            "subscribe" => self.subscribe(id, &frame.payload, out).await,
            "unsubscribe" => self.unsubscribe(id, &frame.payload, out),
            "ack" => self.ack(id, &frame.payload, out).await,
            "ping" => out.push(text_message(server_frame("pong", id, &json!({})))),
            "heartbeat" => {
                let next = self.state.config.realtime.heartbeat_interval.as_millis() as u64;
                out.push(text_message(server_frame(
                    "heartbeat_ack",
                    id,
                    &json!({"next_heartbeat_ms": next}),
                )))
            }
            other => out.push(text_message(error_frame(
                id,
                "unknown_type",
                &format!(
                    "unknown frame type '{}'",
                    other.chars().take(40).collect::<String>()
                ),
            ))),
        }
        None
    }

    /// A fresh token extends the session; it must name the same subject and tenant.
    async fn refresh(&mut self, id: Option<&Value>, payload: &Value, out: &mut Vec<Message>) {
        let Some(token) = payload.get("token").and_then(Value::as_str) else {
            out.push(text_message(error_frame(
                id,
                "bad_request",
                "payload.token is required",
            )));
            return;
        };
        match self.state.auth.verify(token).await {
            Ok(identity)
                if identity.sub == self.identity.sub && identity.tenant == self.identity.tenant =>
            {
                if identity.role != self.identity.role {
                    // Subscriptions were checked against the old role: start over.
                    self.unsubscribe_all();
                }
                self.identity = identity;
                self.expiry = deadline_of(&self.identity);
                out.push(self.auth_success(id));
            }
            Ok(_) => out.push(text_message(error_frame(
                id,
                "forbidden",
                "a refreshed token must name the same subject and tenant",
            ))),
            Err(AuthError::Unavailable(e)) => {
                out.push(text_message(error_frame(id, "internal", &e)));
            }
            Err(e) => out.push(text_message(server_frame(
                "auth_error",
                id,
                &json!({"message": e.to_string()}),
            ))),
        }
    }

    async fn subscribe(&mut self, id: Option<&Value>, payload: &Value, out: &mut Vec<Message>) {
        let topics = match topic_list(payload) {
            Ok(topics) => topics,
            Err(message) => {
                out.push(text_message(error_frame(id, "bad_request", &message)));
                return;
            }
        };
        let since = match parse_since(payload.get("since")) {
            Ok(since) => since,
            Err(message) => {
                out.push(text_message(error_frame(id, "bad_request", &message)));
                return;
            }
        };
        let durable = payload.get("durable").and_then(Value::as_bool) == Some(true);
        for text in topics {
            // The `subscribed` reply goes first, then the replayed events.
            let mut replay = Vec::new();
            let pattern = match TopicPattern::parse(text) {
                Ok(pattern) => pattern,
                Err(message) => {
                    out.push(text_message(error_frame(id, "bad_request", &message)));
                    continue;
                }
            };
            if pattern.is_exact() && !role_may_read(self.identity.role, text) {
                out.push(text_message(error_frame(
                    id,
                    "forbidden",
                    &format!(
                        "the {} role may not subscribe to '{text}'",
                        self.identity.role
                    ),
                )));
                continue;
            }
            let already = self.subscriptions.contains(&pattern);
            if !already {
                if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                    out.push(text_message(error_frame(
                        id,
                        "bad_request",
                        &format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
                    )));
                    continue;
                }
                // Registered before the history is read, so that nothing published in
                // between is missed; the cursors drop what both would send.
                self.gateway.hub.add(
                    &self.identity.tenant,
                    &pattern,
                    Subscriber {
                        id: self.id,
                        role: self.identity.role,
                        queue: self.queue.clone(),
                    },
                );
                self.subscriptions.push(pattern.clone());
            }
            let reply = if pattern.is_exact() {
                let start = match since.get(text) {
                    Some(position) => Some(position.clone()),
                    None if durable => {
                        match self
                            .state
                            .bus
                            .load_position(&self.identity.tenant, &self.identity.sub, text)
                            .await
                        {
                            Ok(position) => position,
                            Err(e) => {
                                out.push(text_message(error_frame(id, "internal", &e.to_string())));
                                continue;
                            }
                        }
                    }
                    None => None,
                };
                match self.start_topic(text, start, &mut replay).await {
                    Ok((head, recovered, replayed)) => json!({
                        "topic": text, "offset": head.offset, "epoch": head.epoch,
                        "recovered": recovered, "replayed": replayed,
                    }),
                    Err(message) => {
                        out.push(text_message(error_frame(id, "internal", &message)));
                        continue;
                    }
                }
            } else {
                // A pattern replays the `since` entries of the topics it matches.
                let mut recovered = true;
                let mut replayed = 0;
                let matching: Vec<(String, Position)> = since
                    .iter()
                    .filter(|(topic, _)| {
                        pattern.matches(topic) && role_may_read(self.identity.role, topic)
                    })
                    .map(|(t, p)| (t.clone(), p.clone()))
                    .collect();
                for (topic, position) in matching {
                    match self.start_topic(&topic, Some(position), &mut replay).await {
                        Ok((_, r, n)) => {
                            recovered &= r;
                            replayed += n;
                        }
                        Err(message) => {
                            out.push(text_message(error_frame(id, "internal", &message)));
                            recovered = false;
                        }
                    }
                }
                json!({
                    "topic": text, "offset": null, "epoch": null,
                    "recovered": recovered, "replayed": replayed,
                })
            };
            out.push(text_message(server_frame("subscribed", id, &reply)));
            out.append(&mut replay);
        }
    }

    /// Sets a topic's cursor, replaying the events after `since` when the history still
    /// holds all of them. Returns the topic's head, whether it recovered, and how many
    /// events were replayed.
    async fn start_topic(
        &mut self,
        topic: &str,
        since: Option<Position>,
        replay: &mut Vec<Message>,
    ) -> Result<(Position, bool, usize), String> {
        let tenant = self.identity.tenant.clone();
        let bus = &self.state.bus;
        let limit = self.state.config.bus.history_len;
        let (head, recovered, replayed, cursor) = match since {
            None => {
                let head = bus.head(&tenant, topic).await.map_err(|e| e.to_string())?;
                let cursor = head.offset;
                (head, true, 0, cursor)
            }
            Some(since) => {
                let history = bus
                    .history(&tenant, topic, since.offset, limit)
                    .await
                    .map_err(|e| e.to_string())?;
                if history.head.epoch != since.epoch || !history.complete {
                    let cursor = history.head.offset;
                    (history.head, false, 0, cursor)
                } else {
                    // Events this connection already got live (through another pattern)
                    // are not sent twice.
                    let sent = match self.cursors.get(topic) {
                        Some((epoch, last)) if *epoch == since.epoch => *last,
                        _ => 0,
                    };
                    let mut cursor = since.offset;
                    let mut replayed = 0;
                    for event in &history.events {
                        if event.offset > sent {
                            replay.push(Message::Text(EventFrame::new(event).text));
                            replayed += 1;
                        }
                        cursor = event.offset;
                    }
                    (history.head, true, replayed, cursor)
                }
            }
        };
        self.gateway
            .hub
            .note_position(&tenant, topic, &head.epoch, head.offset);
        // Keep a later cursor (a live event already sent) rather than go back.
        match self.cursors.get(topic) {
            Some((epoch, last)) if *epoch == head.epoch && *last >= cursor => {}
            _ => {
                self.cursors
                    .insert(topic.to_string(), (head.epoch.clone(), cursor));
            }
        }
        Ok((head, recovered, replayed))
    }

    fn unsubscribe(&mut self, id: Option<&Value>, payload: &Value, out: &mut Vec<Message>) {
        let topics = match topic_list(payload) {
            Ok(topics) => topics,
            Err(message) => {
                out.push(text_message(error_frame(id, "bad_request", &message)));
                return;
            }
        };
        for text in topics {
            let Some(index) = self.subscriptions.iter().position(|p| p.as_str() == text) else {
                out.push(text_message(error_frame(
                    id,
                    "not_found",
                    &format!(
                        "not subscribed to '{}'",
                        text.chars().take(80).collect::<String>()
                    ),
                )));
                continue;
            };
            let pattern = self.subscriptions.remove(index);
            self.gateway
                .hub
                .remove(&self.identity.tenant, &pattern, self.id);
            self.cursors
                .retain(|topic, _| self.subscriptions.iter().any(|p| p.matches(topic)));
            out.push(text_message(server_frame(
                "unsubscribed",
                id,
                &json!({"topic": text}),
            )));
        }
    }

    fn unsubscribe_all(&mut self) {
        for pattern in std::mem::take(&mut self.subscriptions) {
            self.gateway
                .hub
                .remove(&self.identity.tenant, &pattern, self.id);
        }
        self.cursors.clear();
    }

    /// Stores the subject's position on a topic (answered only when invalid).
    async fn ack(&mut self, id: Option<&Value>, payload: &Value, out: &mut Vec<Message>) {
        let topic = payload.get("topic").and_then(Value::as_str);
        let offset = payload.get("offset").and_then(Value::as_u64);
        let (Some(topic), Some(offset)) = (topic, offset) else {
            out.push(text_message(error_frame(
                id,
                "bad_request",
                "ack takes {\"topic\": string, \"offset\": non-negative integer}",
            )));
            return;
        };
        if let Err(message) = validate_client_topic(topic) {
            out.push(text_message(error_frame(id, "bad_request", &message)));
            return;
        }
        if !role_may_read(self.identity.role, topic) {
            out.push(text_message(error_frame(
                id,
                "forbidden",
                "this role may not read that topic",
            )));
            return;
        }
        let tenant = self.identity.tenant.clone();
        let epoch = match self.cursors.get(topic) {
            Some((epoch, _)) => epoch.clone(),
            None => match self.state.bus.head(&tenant, topic).await {
                Ok(head) => head.epoch,
                Err(e) => {
                    out.push(text_message(error_frame(id, "internal", &e.to_string())));
                    return;
                }
            },
        };
        let position = Position { offset, epoch };
        if let Err(e) = self
            .state
            .bus
            .store_position(&tenant, &self.identity.sub, topic, &position)
            .await
        {
            out.push(text_message(error_frame(id, "internal", &e.to_string())));
        }
    }
}

fn text_message(text: String) -> Message {
    Message::Text(text.into())
}

/// `payload.topics`: 1 to 100 strings.
fn topic_list(payload: &Value) -> Result<Vec<&str>, String> {
    let Some(list) = payload.get("topics").and_then(Value::as_array) else {
        return Err("payload.topics must be an array of topic names".into());
    };
    if list.is_empty() || list.len() > MAX_TOPICS_PER_FRAME {
        return Err(format!(
            "payload.topics must hold 1 to {MAX_TOPICS_PER_FRAME} topics"
        ));
    }
    list.iter()
        .map(|t| {
            t.as_str()
                .ok_or_else(|| "payload.topics must hold strings".to_string())
        })
        .collect()
}

/// `payload.since`: `{topic: {offset, epoch}}`.
fn parse_since(since: Option<&Value>) -> Result<HashMap<String, Position>, String> {
    let Some(since) = since.filter(|v| !v.is_null()) else {
        return Ok(HashMap::new());
    };
    let Some(entries) = since.as_object() else {
        return Err("payload.since must be an object of {topic: {offset, epoch}}".into());
    };
    if entries.len() > MAX_TOPICS_PER_FRAME {
        return Err(format!(
            "payload.since may name at most {MAX_TOPICS_PER_FRAME} topics"
        ));
    }
    entries
        .iter()
        .map(|(topic, position)| {
            serde_json::from_value::<Position>(position.clone())
                .map(|p| (topic.clone(), p))
                .map_err(|_| {
                    format!(
                        "payload.since.{}: expected {{\"offset\": integer, \"epoch\": string}}",
                        topic.chars().take(80).collect::<String>()
                    )
                })
        })
        .collect()
}
