//! The Redis bus of cluster mode.
//!
//! Per topic, a hash `…bus:{tenant:topic}:meta` (fields `seq`, `epoch`) and a stream
//! `…bus:{tenant:topic}:log` whose entry ids are `<offset>-0`. Publishing is one Lua
//! call, so offsets, history and notification can never disagree: it increments `seq`,
//! `XADD`s with `MAXLEN ~`, refreshes both keys' expiry (the retention) and `PUBLISH`es
//! the event on one channel that every replica listens to. The braces are a hash tag:
//! both keys of a topic live on one Redis Cluster slot.
//!
//! Each replica keeps one subscriber connection. When it drops, a task reconnects with
//! backoff, resubscribes, and sends `Resync` to the receivers so they check the
//! histories for what was published meanwhile. If Redis restarted empty, `seq` starts
//! again at 1 under a new epoch, and resuming clients are told to reload.

use super::{BusError, BusEvent, BusMessage, History, Position, Published, new_epoch, now_ms};
use crate::config::BusConfig;
use ::redis::aio::ConnectionManager;
use ::redis::{AsyncCommands, Script, Value};
use futures_util::StreamExt;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const RECEIVER_CAPACITY: usize = 16 * 1024;
/// A command that takes longer counts as Redis being unavailable.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

const PUBLISH_LUA: &str = r#"
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
if seq == 1 then
  -- A new history: whatever an older one left in the log must not collide with offset 1.
  redis.call('DEL', KEYS[2])
end
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'e', ARGV[7], 't', ARGV[8], 'd', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5] .. '\n' .. ARGV[6] .. '\n' .. seq .. '\n' .. epoch .. '\n' .. ARGV[7] .. '\n' .. ARGV[8] .. '\n' .. ARGV[9])
return {seq, epoch}
"#;

/// Reads a topic's head (creating its epoch if the topic is new) and, atomically with
/// it, the log after an offset.
const HISTORY_LUA: &str = r#"
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local head = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
local entries = {}
if tonumber(ARGV[4]) > 0 then
  entries = redis.call('XRANGE', KEYS[2], ARGV[3], '+', 'COUNT', ARGV[4])
end
return {head[1] or '0', head[2], entries}
"#;

/// One `XRANGE` entry: id and field/value pairs.
type StreamEntry = (String, Vec<(String, Value)>);

pub struct RedisBus {
    prefix: String,
    history_len: usize,
    retention_ms: i64,
    connection: ConnectionManager,
    channel: String,
    sender: broadcast::Sender<BusMessage>,
    receiving: Arc<AtomicBool>,
    publish_script: Script,
    history_script: Script,
}

impl RedisBus {
    /// Connects the command connection and starts the subscriber task, which runs until
    /// `shutdown`.
    pub async fn connect(
        client: ::redis::Client,
        connection: ConnectionManager,
        prefix: &str,
        config: &BusConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<RedisBus>, BusError> {
        let (sender, _) = broadcast::channel(RECEIVER_CAPACITY);
        let bus = Arc::new(RedisBus {
            prefix: prefix.to_string(),
            history_len: config.history_len,
            retention_ms: i64::try_from(config.history_retention.as_millis()).unwrap_or(i64::MAX),
            connection,
            channel: format!("{prefix}bus:events"),
            sender,
            receiving: Arc::new(AtomicBool::new(false)),
            publish_script: Script::new(PUBLISH_LUA),
            history_script: Script::new(HISTORY_LUA),
        });
        let subscribed = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(run_subscriber(
            client,
            bus.channel.clone(),
            bus.sender.clone(),
            bus.receiving.clone(),
            subscribed.clone(),
            config.subscriber_ping_interval,
            shutdown,
        ));
        // Wait (briefly) for the first subscription so that events published right after
        // start-up are received; if Redis is down the task keeps trying on its own.
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, subscribed.notified()).await;
        Ok(bus)
    }

    fn keys(&self, tenant: &str, topic: &str) -> (String, String) {
        let tag = format!("{}bus:{{{tenant}:{topic}}}", self.prefix);
        (format!("{tag}:meta"), format!("{tag}:log"))
    }

    pub async fn publish(
        &self,
        tenant: &str,
        topic: &str,
        event: &str,
        data: &RawValue,
    ) -> Result<Published, BusError> {
        let (meta, log) = self.keys(tenant, topic);
        let mut connection = self.connection.clone();
        let mut invocation = self.publish_script.key(meta);
        invocation
            .key(log)
            .arg(new_epoch())
            .arg(self.history_len)
            .arg(self.retention_ms)
            .arg(&self.channel)
            .arg(tenant)
            .arg(topic)
            .arg(event)
            .arg(now_ms())
            .arg(data.get());
        let (offset, epoch): (u64, String) =
            timed(invocation.invoke_async(&mut connection)).await?;
        Ok(Published { offset, epoch })
    }

    pub fn receiver(&self) -> broadcast::Receiver<BusMessage> {
        self.sender.subscribe()
    }

    pub fn is_receiving(&self) -> bool {
        self.receiving.load(Ordering::Relaxed)
    }

    pub async fn history(
        &self,
        tenant: &str,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<History, BusError> {
        let (meta, log) = self.keys(tenant, topic);
        let epoch_if_new = new_epoch();
        let from = format!("{}-0", after.saturating_add(1));
        let (head, epoch, entries): (u64, String, Vec<StreamEntry>) = timed_idempotent(|| {
            let mut connection = self.connection.clone();
            let mut invocation = self.history_script.key(&meta);
            invocation
                .key(&log)
                .arg(&epoch_if_new)
                .arg(self.retention_ms)
                .arg(&from)
                .arg(limit);
            async move { invocation.invoke_async(&mut connection).await }
        })
        .await?;
        let oldest_kept = now_ms().saturating_sub(self.retention_ms);
        let mut events = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let event = parse_entry(tenant, topic, &epoch, &id, fields).ok_or_else(|| {
                BusError::Unavailable(format!("malformed history entry {id} in topic {topic}"))
            })?;
            if event.ts_ms >= oldest_kept {
                events.push(Arc::new(event));
            }
        }
        let complete = match events.first() {
            Some(first) => first.offset == after + 1,
            None => after == head,
        };
        Ok(History {
            head: Position {
                offset: head,
                epoch,
            },
            events,
            complete,
        })
    }

    pub async fn head(&self, tenant: &str, topic: &str) -> Result<Position, BusError> {
        let history = self.history(tenant, topic, u64::MAX - 1, 0).await?;
        Ok(history.head)
    }

    fn position_key(&self, tenant: &str, subject: &str) -> String {
        format!("{}pos:{{{tenant}}}:{subject}", self.prefix)
    }

    pub async fn store_position(
        &self,
        tenant: &str,
        subject: &str,
        topic: &str,
        position: &Position,
    ) -> Result<(), BusError> {
        let key = self.position_key(tenant, subject);
        let value = format!("{}:{}", position.epoch, position.offset);
        let mut connection = self.connection.clone();
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .hset(&key, topic, value)
            .ignore()
            .pexpire(&key, self.retention_ms)
            .ignore();
        timed(pipe.query_async::<()>(&mut connection)).await
    }

    pub async fn load_position(
        &self,
        tenant: &str,
        subject: &str,
        topic: &str,
    ) -> Result<Option<Position>, BusError> {
        let key = self.position_key(tenant, subject);
        let value: Option<String> = timed_idempotent(|| {
            let mut connection = self.connection.clone();
            let key = key.clone();
            async move { connection.hget(key, topic).await }
        })
        .await?;
        Ok(value.and_then(|v| {
            let (epoch, offset) = v.rsplit_once(':')?;
            Some(Position {
                offset: offset.parse().ok()?,
                epoch: epoch.to_string(),
            })
        }))
    }

    pub async fn ping(&self) -> Result<(), BusError> {
        timed_idempotent(|| {
            let mut connection = self.connection.clone();
            async move {
                ::redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
            }
        })
        .await
        .map(|_| ())
    }
}

/// Awaits a Redis command with [`COMMAND_TIMEOUT`], mapping failures to `Unavailable`.
pub async fn timed<T>(
    command: impl Future<Output = ::redis::RedisResult<T>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(BusError::Unavailable(e.to_string())),
        Err(_) => Err(BusError::Unavailable("Redis did not answer in time".into())),
    }
}

/// Like [`timed`], but tries once more when the connection had dropped: the connection
/// manager only notices a dead connection (Redis restarted) when a command fails on it,
/// and reconnects for the next one. Only for commands that are safe to repeat.
pub async fn timed_idempotent<T, F, Fut>(mut command: F) -> Result<T, BusError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ::redis::RedisResult<T>>,
{
    match tokio::time::timeout(COMMAND_TIMEOUT, command()).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) if e.is_connection_dropped() || e.is_io_error() => timed(command()).await,
        Ok(Err(e)) => Err(BusError::Unavailable(e.to_string())),
        Err(_) => Err(BusError::Unavailable("Redis did not answer in time".into())),
    }
}

fn parse_entry(
    tenant: &str,
    topic: &str,
    epoch: &str,
    id: &str,
    fields: Vec<(String, Value)>,
) -> Option<BusEvent> {
    let offset = id.split('-').next()?.parse().ok()?;
    let (mut event, mut ts_ms, mut data) = (None, None, None);
    for (name, value) in fields {
        let text = match value {
            Value::BulkString(bytes) => String::from_utf8(bytes).ok()?,
            Value::SimpleString(s) => s,
            _ => return None,
        };
        match name.as_str() {
            "e" => event = Some(text),
            "t" => ts_ms = text.parse().ok(),
            "d" => data = RawValue::from_string(text).ok(),
            _ => {}
        }
    }
    Some(BusEvent {
        tenant: tenant.to_string(),
        topic: topic.to_string(),
        offset,
        epoch: epoch.to_string(),
        event: event?,
        ts_ms: ts_ms?,
        data: data?,
    })
}

/// Parses a notification published by [`PUBLISH_LUA`]:
/// `tenant \n topic \n offset \n epoch \n event \n ts_ms \n data`.
fn parse_notification(payload: &[u8]) -> Option<BusEvent> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(7, '\n');
    let tenant = parts.next()?.to_string();
    let topic = parts.next()?.to_string();
    let offset = parts.next()?.parse().ok()?;
    let epoch = parts.next()?.to_string();
    let event = parts.next()?.to_string();
    let ts_ms = parts.next()?.parse().ok()?;
    let data = RawValue::from_string(parts.next()?.to_string()).ok()?;
    Some(BusEvent {
        tenant,
        topic,
        offset,
        epoch,
        event,
        ts_ms,
        data,
    })
}

/// Keeps one subscription to the events channel alive until `shutdown`.
async fn run_subscriber(
    client: ::redis::Client,
    channel: String,
    sender: broadcast::Sender<BusMessage>,
    receiving: Arc<AtomicBool>,
    subscribed: Arc<tokio::sync::Notify>,
    ping_every: Duration,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = async {
            let mut pubsub = timed(client.get_async_pubsub())
                .await
                .map_err(|e| e.to_string())?;
            timed(pubsub.subscribe(&channel))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = connected => result,
        };
        match pubsub {
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                receiving.store(true, Ordering::Relaxed);
                subscribed.notify_waiters();
                tracing::info!("subscribed to the event bus");
                // Anything published while we were not subscribed is in the histories.
                let _ = sender.send(BusMessage::Resync);
                let (mut sink, mut stream) = pubsub.split();
                let mut ping = tokio::time::interval(ping_every);
                ping.tick().await;
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        message = stream.next() => match message {
                            Some(message) => match parse_notification(message.get_payload_bytes()) {
                                Some(event) => { let _ = sender.send(BusMessage::Event(Arc::new(event))); }
                                None => tracing::warn!("ignored a malformed bus notification"),
                            },
                            None => break,
                        },
                        _ = ping.tick() => {
                            // In subscribed mode Redis answers PING with the array
                            // ["pong", ""], not "PONG": any answer will do.
                            if let Err(e) = timed(sink.ping::<Value>()).await {
                                tracing::warn!(error = %e, "event bus subscriber ping failed");
                                break;
                            }
                        }
                    }
                }
                receiving.store(false, Ordering::Relaxed);
                tracing::warn!("lost the event bus subscription; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot subscribe to the event bus");
            }
        }
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff.mul_f64(jitter)) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_round_trip_with_newlines_in_data() {
        let payload = b"acme\nqueues:a\n42\nabc123\nqueue:update\n1700000000000\n{\"a\":\n1}";
        let event = parse_notification(payload).expect("parses");
        assert_eq!(event.tenant, "acme");
        assert_eq!(event.topic, "queues:a");
        assert_eq!(event.offset, 42);
        assert_eq!(event.epoch, "abc123");
        assert_eq!(event.event, "queue:update");
        assert_eq!(event.data.get(), "{\"a\":\n1}");
        assert!(parse_notification(b"acme\nx\nnot-a-number\ne\nv\n1\n{}").is_none());
    }
}
