//! The in-process bus of embedded mode: a ring buffer per topic and one broadcast
//! channel. Its histories live as long as the process; each process start is a new
//! epoch.

use super::{BusEvent, BusMessage, History, Position, Published, new_epoch, now_ms};
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Capacity of the broadcast channel to this process's receivers; a receiver that falls
/// further behind gets `Resync` and catches up from the histories.
const RECEIVER_CAPACITY: usize = 16 * 1024;

pub struct MemoryBus {
    history_len: usize,
    retention_ms: i64,
    // A std Mutex: held only for in-memory updates, never across an await, and the
    // publish order under it is the delivery order.
    state: Mutex<State>,
    sender: broadcast::Sender<BusMessage>,
}

#[derive(Default)]
struct State {
    topics: HashMap<(String, String), TopicLog>,
    positions: HashMap<(String, String, String), Position>,
}

struct TopicLog {
    epoch: String,
    head: u64,
    events: VecDeque<Arc<BusEvent>>,
}

impl TopicLog {
    fn new() -> Self {
        TopicLog {
            epoch: new_epoch(),
            head: 0,
            events: VecDeque::new(),
        }
    }
}

impl MemoryBus {
    pub fn new(history_len: usize, retention: Duration) -> MemoryBus {
        let (sender, _) = broadcast::channel(RECEIVER_CAPACITY);
        MemoryBus {
            history_len,
            retention_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
            state: Mutex::new(State::default()),
            sender,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the bus, so a poisoned lock is simply taken over.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn publish(&self, tenant: &str, topic: &str, event: &str, data: &RawValue) -> Published {
        let mut state = self.state();
        let log = state
            .topics
            .entry((tenant.to_string(), topic.to_string()))
            .or_insert_with(TopicLog::new);
        log.head += 1;
        let event = Arc::new(BusEvent {
            tenant: tenant.to_string(),
            topic: topic.to_string(),
            offset: log.head,
            epoch: log.epoch.clone(),
            event: event.to_string(),
            ts_ms: now_ms(),
            data: data.to_owned(),
        });
        log.events.push_back(event.clone());
        while log.events.len() > self.history_len {
            log.events.pop_front();
        }
        let published = Published {
            offset: log.head,
            epoch: log.epoch.clone(),
        };
        // Sent under the lock so that receivers see each topic's offsets in order.
        // No receiver is not an error: nobody is listening yet.
        let _ = self.sender.send(BusMessage::Event(event));
        published
    }

    pub fn receiver(&self) -> broadcast::Receiver<BusMessage> {
        self.sender.subscribe()
    }

    pub fn history(&self, tenant: &str, topic: &str, after: u64, limit: usize) -> History {
        let mut state = self.state();
        let log = state
            .topics
            .entry((tenant.to_string(), topic.to_string()))
            .or_insert_with(TopicLog::new);
        let oldest_kept = now_ms().saturating_sub(self.retention_ms);
        let events: Vec<Arc<BusEvent>> = log
            .events
            .iter()
            .filter(|e| e.offset > after && e.ts_ms >= oldest_kept)
            .take(limit)
            .cloned()
            .collect();
        let complete = match events.first() {
            Some(first) => first.offset == after + 1,
            None => after == log.head,
        };
        History {
            head: Position {
                offset: log.head,
                epoch: log.epoch.clone(),
            },
            events,
            complete,
        }
    }

    pub fn head(&self, tenant: &str, topic: &str) -> Position {
        let mut state = self.state();
        let log = state
            .topics
            .entry((tenant.to_string(), topic.to_string()))
            .or_insert_with(TopicLog::new);
        Position {
            offset: log.head,
            epoch: log.epoch.clone(),
        }
    }

    pub fn store_position(&self, tenant: &str, subject: &str, topic: &str, position: &Position) {
        self.state().positions.insert(
            (tenant.to_string(), subject.to_string(), topic.to_string()),
            position.clone(),
        );
    }

    pub fn load_position(&self, tenant: &str, subject: &str, topic: &str) -> Option<Position> {
        self.state()
            .positions
            .get(&(tenant.to_string(), subject.to_string(), topic.to_string()))
            .cloned()
    }
}
