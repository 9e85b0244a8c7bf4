//! The Bus seam: publish events to topics, receive every replica's events, read a
//! topic's recent history, and keep subscribers' durable positions.
//!
//! Every topic of every tenant has its own sequence: events get consecutive offsets
//! (1, 2, 3, …) and the newest `history_len` are kept for `history_retention`. An
//! `epoch` names one history; it changes when a history is lost (Redis restarted empty,
//! an embedded process restarted, or the topic stayed idle past the retention), so a
//! client that resumes with an offset from another epoch is told to reload.
//!
//! Two implementations with the same behaviour (one conformance suite runs on both):
//! [`memory::MemoryBus`] for embedded mode and [`redis::RedisBus`] for cluster mode.
//! Delivery to [`Bus::receiver`] is at most once (a Redis reconnect can drop events);
//! receivers that must not miss anything compare offsets and fill gaps from
//! [`Bus::history`], and treat [`BusMessage::Resync`] as "something may have been
//! missed: check every topic you follow".

pub mod memory;
pub mod redis;
mod topic;

pub use topic::{TopicPattern, is_internal_topic, validate_client_topic, validate_topic};

use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use tokio::sync::broadcast;

/// One published event, as every replica receives it. Shared by `Arc`: a replica
/// holds one copy however many subscribers it serves.
#[derive(Debug, Clone)]
pub struct BusEvent {
    pub tenant: String,
    pub topic: String,
    pub offset: u64,
    pub epoch: String,
    /// Event name, e.g. `alert:triggered`.
    pub event: String,
    /// Publication time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The event's data, already serialized.
    pub data: Box<RawValue>,
}

/// What [`Bus::receiver`] yields.
#[derive(Debug, Clone)]
pub enum BusMessage {
    Event(Arc<BusEvent>),
    /// Events may have been missed (the bus reconnected, or this receiver lagged):
    /// compare each followed topic's last offset with its history.
    Resync,
}

/// Where a published event landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub offset: u64,
    pub epoch: String,
}

/// A topic's current position: the last offset published and the history's epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// The part of a topic's history after some offset.
#[derive(Debug, Clone)]
pub struct History {
    /// The history's epoch and its newest offset.
    pub head: Position,
    /// Events with offset > the one asked for, oldest first, at most the limit asked for.
    pub events: Vec<Arc<BusEvent>>,
    /// False when events between the offset asked for and the first one returned are no
    /// longer kept (or the offset is ahead of the head): the reader cannot catch up
    /// from the history alone and should reload its state.
    pub complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The backing service (Redis) did not answer.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// A topic or event name that cannot be used.
    #[error("{0}")]
    Invalid(String),
}

/// The bus of this process, chosen once at start-up.
#[derive(Clone)]
pub enum Bus {
    Memory(Arc<memory::MemoryBus>),
    Redis(Arc<redis::RedisBus>),
}

impl Bus {
    /// Publishes one event; returns its offset and epoch once it is in the history.
    pub async fn publish(
        &self,
        tenant: &str,
        topic: &str,
        event: &str,
        data: &RawValue,
    ) -> Result<Published, BusError> {
        validate_topic(topic).map_err(BusError::Invalid)?;
        validate_event_name(event)?;
        match self {
            Bus::Memory(bus) => Ok(bus.publish(tenant, topic, event, data)),
            Bus::Redis(bus) => bus.publish(tenant, topic, event, data).await,
        }
    }

    /// Serializes `data` and publishes it.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        tenant: &str,
        topic: &str,
        event: &str,
        data: &T,
    ) -> Result<Published, BusError> {
        let raw = serde_json::value::to_raw_value(data)
            .map_err(|e| BusError::Invalid(format!("event data is not serializable: {e}")))?;
        self.publish(tenant, topic, event, &raw).await
    }

    /// Every event of every tenant published on any replica, from now on.
    pub fn receiver(&self) -> broadcast::Receiver<BusMessage> {
        match self {
            Bus::Memory(bus) => bus.receiver(),
            Bus::Redis(bus) => bus.receiver(),
        }
    }

    /// Events of one tenant whose topic matches `pattern`, from now on.
    pub fn subscribe(&self, tenant: &str, pattern: TopicPattern) -> Subscription {
        Subscription {
            tenant: tenant.to_string(),
            pattern,
            receiver: self.receiver(),
        }
    }

    /// Up to `limit` events with offset > `after`, and whether nothing between is lost.
    pub async fn history(
        &self,
        tenant: &str,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<History, BusError> {
        validate_topic(topic).map_err(BusError::Invalid)?;
        match self {
            Bus::Memory(bus) => Ok(bus.history(tenant, topic, after, limit)),
            Bus::Redis(bus) => bus.history(tenant, topic, after, limit).await,
        }
    }

    /// The topic's newest offset and epoch (offset 0 when nothing was published yet).
    pub async fn head(&self, tenant: &str, topic: &str) -> Result<Position, BusError> {
        validate_topic(topic).map_err(BusError::Invalid)?;
        match self {
            Bus::Memory(bus) => Ok(bus.head(tenant, topic)),
            Bus::Redis(bus) => bus.head(tenant, topic).await,
        }
    }

    /// Stores how far `subject` has read `topic` (a dashboard's `ack`).
    pub async fn store_position(
        &self,
        tenant: &str,
        subject: &str,
        topic: &str,
        position: &Position,
    ) -> Result<(), BusError> {
        match self {
            Bus::Memory(bus) => {
                bus.store_position(tenant, subject, topic, position);
                Ok(())
            }
            Bus::Redis(bus) => bus.store_position(tenant, subject, topic, position).await,
        }
    }

    /// The position last stored for `subject` on `topic`.
    pub async fn load_position(
        &self,
        tenant: &str,
        subject: &str,
        topic: &str,
    ) -> Result<Option<Position>, BusError> {
        match self {
            Bus::Memory(bus) => Ok(bus.load_position(tenant, subject, topic)),
            Bus::Redis(bus) => bus.load_position(tenant, subject, topic).await,
        }
    }

    /// Answers when the bus does; used by `/readyz`.
    pub async fn ping(&self) -> Result<(), BusError> {
        match self {
            Bus::Memory(_) => Ok(()),
            Bus::Redis(bus) => bus.ping().await,
        }
    }

    /// Whether events published elsewhere currently reach this replica.
    pub fn is_receiving(&self) -> bool {
        match self {
            Bus::Memory(_) => true,
            Bus::Redis(bus) => bus.is_receiving(),
        }
    }
}

/// A filtered view of [`Bus::receiver`]: one tenant, one topic pattern.
pub struct Subscription {
    tenant: String,
    pattern: TopicPattern,
    receiver: broadcast::Receiver<BusMessage>,
}

impl Subscription {
    /// The next matching event, or `Resync` when events may have been missed; `None` when
    /// the bus is gone.
    pub async fn next(&mut self) -> Option<BusMessage> {
        loop {
            match self.receiver.recv().await {
                Ok(BusMessage::Event(e)) => {
                    if e.tenant == self.tenant && self.pattern.matches(&e.topic) {
                        return Some(BusMessage::Event(e));
                    }
                }
                Ok(BusMessage::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some(BusMessage::Resync);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Event names: `word` or `word:word`, ASCII, at most 100 bytes.
fn validate_event_name(event: &str) -> Result<(), BusError> {
    let ok = !event.is_empty()
        && event.len() <= 100
        && event
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_:.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BusError::Invalid(format!(
            "invalid event name '{}': 1-100 characters of a-z, 0-9, '_', ':', '.', '-'",
            event.chars().take(100).collect::<String>()
        )))
    }
}

/// A random epoch name: 12 hex digits.
fn new_epoch() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
