//! The agent sockets of this replica, and the work that keeps the registry right
//! across replicas:
//!
//! - **Pushes.** A change made over REST on any replica is published on the internal
//!   topic [`INTERNAL_TOPIC`]; every replica's listener hands it to the sockets of that
//!   agent it holds. Delivery never awaits a socket: a frame goes into the session's
//!   bounded queue, and a session whose queue is full is closed as a slow consumer.
//!   The bus may drop events (a Redis reconnect): on `Resync` each local session
//!   re-reads its configuration version and is sent the newer one.
//! - **Presence.** Every third of the presence TTL this replica pushes `connected_until`
//!   of the agents it holds, and sweeps rows whose time ran out (a dead replica's
//!   agents), publishing `agent:disconnected` for each.

use super::repo::{self, AgentRow};
use crate::app::AppState;
use crate::bus::BusMessage;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Replica-to-replica signals about agents (clients can neither see nor publish it).
pub const INTERNAL_TOPIC: &str = "_agents";
/// The public topic of `agent:*` events.
pub const TOPIC: &str = "agents";

/// What a session's writer sends.
#[derive(Debug)]
pub enum Outgoing {
    /// A serialized frame.
    Text(String),
    /// A close frame, after the frames queued before it.
    Close(u16, &'static str),
}

/// The handle through which anyone may reach or close one socket.
pub struct SessionControl {
    pub tenant: String,
    pub agent_id: String,
    pub session_id: String,
    outbox: mpsc::Sender<Outgoing>,
    cancel: CancellationToken,
    close: OnceLock<(u16, &'static str)>,
    /// The configuration version the agent was last sent.
    config_version: AtomicI64,
}

impl SessionControl {
    pub fn new(
        tenant: &str,
        agent_id: &str,
        session_id: &str,
        outbox: mpsc::Sender<Outgoing>,
    ) -> SessionControl {
        SessionControl {
            tenant: tenant.to_string(),
            agent_id: agent_id.to_string(),
            session_id: session_id.to_string(),
            outbox,
            cancel: CancellationToken::new(),
            close: OnceLock::new(),
            config_version: AtomicI64::new(-1),
        }
    }

    /// Queues a frame; a full queue closes the session as a slow consumer (4005).
    pub fn send(&self, frame: String) -> bool {
        match self.outbox.try_send(Outgoing::Text(frame)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close_now(4005, "slow_consumer");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Closes the socket at once with `code`; frames still queued are dropped.
    pub fn close_now(&self, code: u16, reason: &'static str) {
        let _ = self.close.set((code, reason));
        self.cancel.cancel();
    }

    /// Why the session was closed through [`close_now`](Self::close_now).
    pub fn close_reason(&self) -> (u16, &'static str) {
        self.close.get().copied().unwrap_or((1000, "closed"))
    }

    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Sends `config` unless the agent already has this version or a newer one.
    pub fn push_config(&self, version: i64, config: &serde_json::Value) {
        let previous = self.config_version.fetch_max(version, Ordering::SeqCst);
        if previous < version {
            self.send(super::socket::frame("config", config));
        }
    }

    /// Records that `version` went out in `registered`.
    pub fn config_sent(&self, version: i64) {
        self.config_version.fetch_max(version, Ordering::SeqCst);
    }
}

/// (tenant, agent id).
type AgentKey = (String, String);

/// The agent sockets of one replica.
#[derive(Default)]
pub struct Hub {
    // std Mutex: a map lookup, never held across an await.
    sessions: Mutex<HashMap<AgentKey, Vec<Arc<SessionControl>>>>,
}

/// The hubs of the replicas of this process (one, except in tests that run several),
/// by replica. AppState has no slot for the agents' part, so it lives here; see
/// [`Hub::of`].
static HUBS: LazyLock<Mutex<HashMap<String, Arc<Hub>>>> = LazyLock::new(Default::default);

fn hub_key(state: &AppState) -> String {
    let me = state.registry.me();
    format!(
        "{}@{}",
        me.id,
        me.started_at.timestamp_nanos_opt().unwrap_or_default()
    )
}

impl Hub {
    /// The hub of the replica `state` belongs to.
    pub fn of(state: &AppState) -> Arc<Hub> {
        let mut hubs = HUBS.lock().unwrap_or_else(|p| p.into_inner());
        hubs.entry(hub_key(state)).or_default().clone()
    }

    fn forget(state: &AppState) {
        let mut hubs = HUBS.lock().unwrap_or_else(|p| p.into_inner());
        hubs.remove(&hub_key(state));
    }

    pub fn add(&self, session: Arc<SessionControl>) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .entry((session.tenant.clone(), session.agent_id.clone()))
            .or_default()
            .push(session);
    }

    pub fn remove(&self, session: &SessionControl) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let key = (session.tenant.clone(), session.agent_id.clone());
        if let Some(list) = sessions.get_mut(&key) {
            list.retain(|s| s.session_id != session.session_id);
            if list.is_empty() {
                sessions.remove(&key);
            }
        }
    }

    /// The local sessions of one agent.
    pub fn sessions_of(&self, tenant: &str, agent_id: &str) -> Vec<Arc<SessionControl>> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(&(tenant.to_string(), agent_id.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    pub fn all(&self) -> Vec<Arc<SessionControl>> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.values().flatten().cloned().collect()
    }

    pub fn len(&self) -> usize {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Acts on a signal from another (or this) replica.
    fn deliver(&self, tenant: &str, signal: Signal) {
        match signal {
            Signal::Config {
                agent_id,
                version,
                config,
            } => {
                for session in self.sessions_of(tenant, &agent_id) {
                    session.push_config(version, &config);
                }
            }
            Signal::Deleted { agent_id } => {
                for session in self.sessions_of(tenant, &agent_id) {
                    session.close_now(1000, "deleted");
                }
            }
            Signal::Session {
                agent_id,
                session_id,
            } => {
                // The agent opened a new socket (maybe on another replica): older ones
                // are stale, and only the newest owns the registry row.
                for session in self.sessions_of(tenant, &agent_id) {
                    if session.session_id != session_id {
                        session.close_now(1000, "replaced");
                    }
                }
            }
        }
    }
}

/// The data of events on [`INTERNAL_TOPIC`]; the event name is the variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Signal {
    Config {
        agent_id: String,
        version: i64,
        config: serde_json::Value,
    },
    Deleted {
        agent_id: String,
    },
    Session {
        agent_id: String,
        session_id: String,
    },
}

/// Publishes a signal to every replica (this one included, through the bus).
pub async fn signal(state: &AppState, tenant: &str, signal: &Signal) {
    if let Err(e) = state
        .bus
        .publish_json(tenant, INTERNAL_TOPIC, "agent:signal", signal)
        .await
    {
        // The REST change is stored; the agent gets it on its next (re)registration.
        tracing::warn!(error = %e, tenant, "could not publish an agent signal");
    }
}

/// Publishes a public `agent:*` event with the agent as the REST API shows it.
pub async fn announce(state: &AppState, event: &str, row: &AgentRow) {
    if let Err(e) = state
        .bus
        .publish_json(&row.tenant, TOPIC, event, &row.view())
        .await
    {
        tracing::warn!(error = %e, tenant = %row.tenant, agent = %row.id, event, "could not publish an agent event");
    }
}

/// Starts the listener of internal signals and the presence loop.
pub fn start(state: &AppState) {
    let hub = Hub::of(state);
    state.tasks.spawn(listen(state.clone(), hub.clone()));
    state.tasks.spawn(presence(state.clone(), hub));
    let forget = state.clone();
    state.tasks.spawn(async move {
        forget.shutdown.cancelled().await;
        Hub::forget(&forget);
    });
}

async fn listen(state: AppState, hub: Arc<Hub>) {
    let mut receiver = state.bus.receiver();
    loop {
        let message = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            message = receiver.recv() => message,
        };
        match message {
            Ok(BusMessage::Event(event)) if event.topic == INTERNAL_TOPIC => {
                match serde_json::from_str::<Signal>(event.data.get()) {
                    Ok(signal) => hub.deliver(&event.tenant, signal),
                    Err(e) => tracing::warn!(error = %e, "unreadable agent signal"),
                }
            }
            Ok(BusMessage::Event(_)) => {}
            Ok(BusMessage::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                resend_configs(&state, &hub).await;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Signals may have been missed: each local agent gets its configuration again if it
/// changed meanwhile.
async fn resend_configs(state: &AppState, hub: &Hub) {
    for session in hub.all() {
        match repo::get(&state.store, &session.tenant, &session.agent_id).await {
            Ok(Some(row)) => session.push_config(row.config_version, &row.config.0),
            Ok(None) => session.close_now(1000, "deleted"),
            Err(e) => {
                tracing::warn!(error = %e, "could not re-read agent configurations");
                return;
            }
        }
    }
}

async fn presence(state: AppState, hub: Arc<Hub>) {
    let ttl = state.config.agents.presence_ttl;
    let mut ticker = tokio::time::interval(ttl / 3);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = presence_once(&state, &hub).await {
            tracing::warn!(error = %e, "agent presence refresh failed");
        }
    }
}

/// One round of the presence loop: vouch for the local agents, then sweep expired ones.
pub async fn presence_once(state: &AppState, hub: &Hub) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let until = now + state.config.agents.presence_ttl;
    let replica = state.replica_id();
    let kept = repo::refresh(&state.store, replica, until).await?;
    let local = hub.all();
    if (kept as usize) < local.len() {
        // Some rows were swept while their socket is still open here.
        for session in &local {
            if let Some(row) = repo::reclaim(
                &state.store,
                &session.tenant,
                &session.agent_id,
                &session.session_id,
                replica,
                until,
            )
            .await?
            {
                announce(state, "agent:connected", &row).await;
            }
        }
    }
    for row in repo::sweep(&state.store, now).await? {
        tracing::info!(tenant = %row.tenant, agent = %row.id, "agent presence expired");
        announce(state, "agent:disconnected", &row).await;
    }
    Ok(())
}
