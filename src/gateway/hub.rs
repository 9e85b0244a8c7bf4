//! The fan-out hub of one replica: one bus receiver, one serialization per event, and a
//! non-blocking hand-off to every local subscriber's [`SendQueue`].
//!
//! The hub keeps each topic's stream gap-free: it remembers the last offset it delivered
//! per (tenant, topic) and, when the bus skips offsets (it is at-most-once, e.g. across a
//! Redis reconnect) or says `Resync`, it reads the missing events from the history before
//! it delivers later ones. It never awaits a socket: a subscriber whose queue is full is
//! marked as overflowed, and its own session closes it with 4005.

use super::metrics as m;
use super::topics::role_may_read;
use crate::auth::Role;
use crate::bus::{Bus, BusEvent, BusMessage, TopicPattern};
use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// One `event` frame, serialized once and shared by every subscriber that receives it.
#[derive(Debug)]
pub struct EventFrame {
    pub topic: String,
    pub offset: u64,
    pub epoch: String,
    pub text: Utf8Bytes,
}

#[derive(Serialize)]
struct EventOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    topic: &'a str,
    offset: u64,
    epoch: &'a str,
    event: &'a str,
    ts: String,
    data: &'a RawValue,
}

impl EventFrame {
    pub fn new(event: &BusEvent) -> EventFrame {
        let out = EventOut {
            kind: "event",
            topic: &event.topic,
            offset: event.offset,
            epoch: &event.epoch,
            event: &event.event,
            ts: super::frames::ts_of_millis(event.ts_ms),
            data: &event.data,
        };
        // Serializing strings, integers and already-valid raw JSON cannot fail.
        let text = serde_json::to_string(&out).unwrap_or_default();
        EventFrame {
            topic: event.topic.clone(),
            offset: event.offset,
            epoch: event.epoch.clone(),
            text: Utf8Bytes::from(text),
        }
    }
}

/// A connection's bounded queue of outgoing events. The hub only ever `try_send`s into it;
/// when it is full the connection is a slow consumer and gets closed (4005).
pub struct SendQueue {
    sender: mpsc::Sender<Arc<EventFrame>>,
    capacity: usize,
    overflowed: AtomicBool,
    overflow: Notify,
}

impl SendQueue {
    pub fn new(capacity: usize) -> (Arc<SendQueue>, mpsc::Receiver<Arc<EventFrame>>) {
        let (sender, receiver) = mpsc::channel(capacity);
        let queue = Arc::new(SendQueue {
            sender,
            capacity,
            overflowed: AtomicBool::new(false),
            overflow: Notify::new(),
        });
        (queue, receiver)
    }

    /// Queues a frame without waiting; returns the queue length after it.
    fn push(&self, frame: Arc<EventFrame>) -> Option<usize> {
        if self.overflowed.load(Ordering::SeqCst) {
            m::frame_dropped("slow_consumer");
            return None;
        }
        match self.sender.try_send(frame) {
            Ok(()) => Some(self.capacity - self.sender.capacity()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                m::frame_dropped("slow_consumer");
                if !self.overflowed.swap(true, Ordering::SeqCst) {
                    // Every watcher: the session's loop and, while it writes, its write.
                    self.overflow.notify_waiters();
                }
                None
            }
            // The session is gone; it unregisters itself.
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    /// Resolves once the queue overflowed.
    pub async fn overflowed(&self) {
        // Registered before the flag is read, so an overflow in between still wakes us
        // (`notify_waiters` only wakes waiters that are registered).
        let notified = self.overflow.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.overflowed.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

/// A local subscriber as the hub sees it.
#[derive(Clone)]
pub struct Subscriber {
    pub id: u64,
    pub role: Role,
    pub queue: Arc<SendQueue>,
}

#[derive(Default)]
struct TenantIndex {
    exact: HashMap<String, Vec<Subscriber>>,
    patterns: Vec<(TopicPattern, Subscriber)>,
}

impl TenantIndex {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }
}

pub struct Hub {
    bus: Bus,
    history_len: usize,
    index: RwLock<HashMap<String, TenantIndex>>,
    /// Last (epoch, offset) delivered per (tenant, topic).
    seen: Mutex<HashMap<(String, String), (String, u64)>>,
    high_water: AtomicUsize,
}

/// Above this many tracked topics, those without local subscribers are forgotten.
const SEEN_PRUNE_ABOVE: usize = 100_000;

impl Hub {
    pub fn new(bus: Bus, history_len: usize) -> Arc<Hub> {
        Arc::new(Hub {
            bus,
            history_len,
            index: RwLock::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            high_water: AtomicUsize::new(0),
        })
    }

    /// Receives the bus until `shutdown`; spawned once per replica.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut receiver = self.bus.receiver();
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = receiver.recv() => message,
            };
            match message {
                Ok(BusMessage::Event(event)) => self.on_event(&event).await,
                Ok(BusMessage::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.resync().await
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    pub fn add(&self, tenant: &str, pattern: &TopicPattern, subscriber: Subscriber) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let tenant_index = index.entry(tenant.to_string()).or_default();
        if pattern.is_exact() {
            tenant_index
                .exact
                .entry(pattern.as_str().to_string())
                .or_default()
                .push(subscriber);
        } else {
            tenant_index.patterns.push((pattern.clone(), subscriber));
        }
        m::subscriptions(1.0);
    }

    pub fn remove(&self, tenant: &str, pattern: &TopicPattern, id: u64) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let Some(tenant_index) = index.get_mut(tenant) else {
            return;
        };
        let before =
            tenant_index.exact.values().map(Vec::len).sum::<usize>() + tenant_index.patterns.len();
        if pattern.is_exact() {
            if let Some(list) = tenant_index.exact.get_mut(pattern.as_str()) {
                list.retain(|s| s.id != id);
                if list.is_empty() {
                    tenant_index.exact.remove(pattern.as_str());
                }
            }
        } else {
            tenant_index
                .patterns
                .retain(|(p, s)| !(s.id == id && p == pattern));
        }
        let after =
            tenant_index.exact.values().map(Vec::len).sum::<usize>() + tenant_index.patterns.len();
        m::subscriptions(after as f64 - before as f64);
        if tenant_index.is_empty() {
            index.remove(tenant);
        }
    }

    /// Tells the hub where a new subscriber starts, so that a gap the hub has not seen
    /// yet (the bus lost events before any subscriber was here) is still filled.
    pub fn note_position(&self, tenant: &str, topic: &str, epoch: &str, offset: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen
            .entry((tenant.to_string(), topic.to_string()))
            .or_insert_with(|| (epoch.to_string(), offset));
        if entry.0 != epoch {
            *entry = (epoch.to_string(), offset);
        }
    }

    /// The local subscribers of a tenant's topic, each once, allowed to read it.
    fn targets(&self, tenant: &str, topic: &str) -> Vec<Subscriber> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let Some(tenant_index) = index.get(tenant) else {
            return Vec::new();
        };
        let mut targets: Vec<Subscriber> =
            tenant_index.exact.get(topic).cloned().unwrap_or_default();
        let exact_count = targets.len();
        targets.extend(
            tenant_index
                .patterns
                .iter()
                .filter(|(p, _)| p.matches(topic))
                .map(|(_, s)| s.clone()),
        );
        if targets.len() > exact_count || exact_count > 1 {
            // A connection may follow a topic through several patterns: once is enough.
            targets.sort_unstable_by_key(|s| s.id);
            targets.dedup_by_key(|s| s.id);
        }
        targets.retain(|s| role_may_read(s.role, topic));
        targets
    }

    async fn on_event(&self, event: &Arc<BusEvent>) {
        let targets = self.targets(&event.tenant, &event.topic);
        let key = (event.tenant.clone(), event.topic.clone());
        let previous = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let fill_after = match previous {
            Some((epoch, last)) if epoch == event.epoch => {
                if event.offset <= last {
                    return; // Already delivered (by a gap fill).
                }
                (event.offset > last + 1).then_some(last)
            }
            // A new history (e.g. Redis restarted empty): deliver it from its start.
            Some(_) => (event.offset > 1).then_some(0),
            None => None,
        };
        if let Some(after) = fill_after
            && !targets.is_empty()
        {
            self.fill(
                &event.tenant,
                &event.topic,
                &event.epoch,
                after,
                event.offset,
                &targets,
            )
            .await;
        }
        self.deliver(&key, event, &targets);
    }

    /// Delivers the history's events of `epoch` with `after < offset < before`.
    async fn fill(
        &self,
        tenant: &str,
        topic: &str,
        epoch: &str,
        after: u64,
        before: u64,
        targets: &[Subscriber],
    ) {
        let key = (tenant.to_string(), topic.to_string());
        match self
            .bus
            .history(tenant, topic, after, self.history_len)
            .await
        {
            Ok(history) => {
                m::gap_filled();
                for missed in history
                    .events
                    .iter()
                    .filter(|e| e.epoch == epoch && e.offset < before)
                {
                    self.deliver(&key, missed, targets);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, tenant, topic, "cannot fill a gap from the history")
            }
        }
    }

    fn deliver(&self, key: &(String, String), event: &BusEvent, targets: &[Subscriber]) {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() > SEEN_PRUNE_ABOVE {
                let index = self.index.read().unwrap_or_else(|p| p.into_inner());
                seen.retain(|(tenant, _), _| index.contains_key(tenant));
            }
            seen.insert(key.clone(), (event.epoch.clone(), event.offset));
        }
        if targets.is_empty() {
            return;
        }
        let frame = Arc::new(EventFrame::new(event));
        let mut delivered = 0u64;
        let mut longest = 0usize;
        for target in targets {
            if let Some(len) = target.queue.push(frame.clone()) {
                delivered += 1;
                longest = longest.max(len);
            }
        }
        m::fanned_out(delivered);
        if longest > self.high_water.load(Ordering::Relaxed) {
            self.high_water.fetch_max(longest, Ordering::Relaxed);
            m::send_queue_high_water(longest);
        }
    }

    /// The bus may have dropped events: check every followed topic against its history.
    async fn resync(&self) {
        let followed: Vec<((String, String), (String, u64))> = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ((tenant, topic), (epoch, last)) in followed {
            let targets = self.targets(&tenant, &topic);
            if targets.is_empty() {
                continue;
            }
            let key = (tenant.clone(), topic.clone());
            let history = match self
                .bus
                .history(&tenant, &topic, last, self.history_len)
                .await
            {
                Ok(h) if h.head.epoch == epoch => h,
                // Another history: deliver it from its start.
                Ok(_) => match self.bus.history(&tenant, &topic, 0, self.history_len).await {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(error = %e, "resync: cannot read the history");
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "resync: cannot read the history");
                    continue;
                }
            };
            for event in &history.events {
                self.deliver(&key, event, &targets);
            }
            if history.events.is_empty() && history.head.epoch != epoch {
                let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                seen.insert(key, (history.head.epoch.clone(), history.head.offset));
            }
        }
    }
}
