//! Start-up wiring: from a [`Config`] and a bound listener to a running replica.
//!
//! [`App::build`] is what `lookout serve` and the tests both call, so tests run the
//! production wiring on port 0. The mode is decided here, once: the rest of the code
//! receives a [`Store`], a [`Bus`] and [`Leases`] and never asks which mode it is in.

use crate::auth::{Auth, CallerLimiter, Keys};
use crate::bus::{Bus, BusMessage, memory::MemoryBus, redis::RedisBus};
use crate::cluster::{Leases, Registry, ReplicaInfo, Revocations};
use crate::config::{Config, Mode, Secret};
use crate::store::Store;
use crate::{api, maintenance, telemetry};
use anyhow::Context;
use axum::serve::ListenerExt;
use chrono::Utc;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything a request handler or background task needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub config: Config,
    pub mode: &'static str,
    pub store: Store,
    pub bus: Bus,
    pub leases: Leases,
    pub registry: Registry,
    pub auth: Auth,
    /// The one way in for samples.
    pub ingest: crate::ingest::Ingest,
    /// The `/ws` sessions of this replica and their fan-out.
    pub gateway: Arc<crate::gateway::Gateway>,
    /// The agent sockets this replica holds.
    pub agents: Arc<crate::agents::hub::Hub>,
    pub metrics: PrometheusHandle,
    /// Cancelled when the process is stopping; every task listens to it.
    pub shutdown: CancellationToken,
    /// Background tasks, awaited (with a deadline) at shutdown.
    pub tasks: TaskTracker,
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    pub fn replica_id(&self) -> &str {
        &self.registry.me().id
    }
}

/// A replica, built and bound, not yet serving.
pub struct App {
    state: AppState,
    listener: TcpListener,
    router: axum::Router,
}

impl App {
    /// Connects the backends of the configured mode, migrates the database, starts the
    /// background tasks and prepares the HTTP router on `listener`.
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<App> {
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mode = config.mode();
        let address = listener.local_addr()?;
        let replica = ReplicaInfo {
            id: replica_id(&config),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: Utc::now(),
            address: address.to_string(),
            last_seen: None,
        };

        let store = Store::connect(&mode, &config.database).await?;
        store.migrate().await.context("database migration failed")?;

        let (bus, leases, registry, revocations, generated_secret) = match &mode {
            Mode::Embedded { .. } => {
                let bus = Bus::Memory(Arc::new(MemoryBus::new(
                    config.bus.history_len,
                    config.bus.history_retention,
                )));
                let secret = match (&config.auth.jwt_secret, config.auth.algorithm) {
                    (None, crate::config::JwtAlgorithm::HS256) => {
                        Some(embedded_secret(&config.database.data_dir)?)
                    }
                    _ => None,
                };
                (
                    bus,
                    Leases::local(&replica.id),
                    Registry::local(replica),
                    Revocations::local(store.clone()),
                    secret,
                )
            }
            Mode::Cluster { redis_url, .. } => {
                let client = ::redis::Client::open(redis_url.as_str())
                    .context("REDIS_URL is not a valid Redis URL")?;
                let manager_config = ::redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                let connection = ::redis::aio::ConnectionManager::new_with_config(
                    client.clone(),
                    manager_config,
                )
                .await
                .context("cannot connect to Redis (REDIS_URL)")?;
                let prefix = &config.redis.prefix;
                let bus = RedisBus::connect(
                    client,
                    connection.clone(),
                    prefix,
                    &config.bus,
                    shutdown.clone(),
                )
                .await?;
                (
                    Bus::Redis(bus),
                    Leases::redis(
                        connection.clone(),
                        store.clone(),
                        prefix,
                        &replica.id,
                        config.cluster.lease_ttl,
                        config.cluster.lease_renew_interval,
                    ),
                    Registry::redis(
                        connection.clone(),
                        prefix,
                        replica,
                        config.cluster.lease_ttl,
                    ),
                    Revocations::redis(store.clone(), connection, prefix),
                    None,
                )
            }
        };
        revocations
            .load()
            .await
            .context("cannot load revoked tokens")?;
        let keys = Keys::from_config(&config.auth, generated_secret.as_ref())?;
        let limiter = CallerLimiter::new(
            config.server.rate_limit_per_sec,
            config.server.rate_limit_burst,
        );

        // Every way in (HTTP, agents, pollers, the log hook) gets the configured limits
        // and announces each stored batch on the `metrics` topic.
        let ingest =
            crate::ingest::Ingest::new(store.clone(), crate::ingest::Limits::from(&config.metrics))
                .with_bus(bus.clone());
        let gateway = crate::gateway::Gateway::new(&config, &bus);
        let state = AppState(Arc::new(AppInner {
            mode: mode.name(),
            config,
            store: store.clone(),
            bus,
            leases,
            registry,
            auth: Auth::new(keys, revocations, limiter),
            ingest,
            agents: Arc::default(),
            gateway,
            metrics: telemetry::metrics_handle(),
            shutdown,
            tasks,
        }));
        telemetry::record_build_info(state.mode);
        spawn_background(&state);
        let router = api::router(state.clone());
        Ok(App {
            state,
            listener,
            router,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `stop` resolves, then shuts down gracefully: stops taking
    /// connections, lets background work give up its leases, finishes in-flight
    /// requests, and returns once everything is done or the shutdown timeout passed.
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let App {
            state,
            listener,
            router,
        } = self;
        let shutdown = state.shutdown.clone();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                stop.await;
                shutdown.cancel();
            }
        });
        tracing::info!(
            address = %listener.local_addr()?,
            mode = state.mode,
            replica = state.replica_id(),
            "lookout is serving"
        );
        // With Nagle's algorithm a small frame written while the previous one waits for
        // a delayed ACK waits too: tens of milliseconds on a live event stream.
        let nodelay = state.config.server.tcp_nodelay;
        let listener = listener.tap_io(move |stream| {
            if let Err(e) = stream.set_nodelay(nodelay) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
            }
        });
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let deadline = state.config.server.shutdown_timeout;
        // The deadline starts at the shutdown signal, not at start-up.
        let served = async {
            let serving = tokio::spawn(served.into_future());
            shutdown.cancelled().await;
            tokio::time::timeout(deadline, serving).await
        };
        match served.await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server error"),
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => {
                tracing::warn!("in-flight requests did not finish before the shutdown timeout")
            }
        }
        state.tasks.close();
        if tokio::time::timeout(deadline, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not finish before the shutdown timeout");
        }
        state.store.close().await;
        tracing::info!("lookout stopped");
        Ok(())
    }
}

/// Starts the tasks every replica runs for the whole life of the process.
fn spawn_background(state: &AppState) {
    let shutdown = state.shutdown.clone();
    state.tasks.spawn(
        state
            .registry
            .clone()
            .run_heartbeat(state.config.cluster.heartbeat_interval, shutdown.clone()),
    );
    state.tasks.spawn(maintenance::run(state.clone()));
    crate::gateway::start(state);
    crate::agents::start(state);
    crate::sources::start(state);
    crate::rules::start(state);
    crate::notify::start(state);
    // When the bus reconnects, Redis may have restarted empty: reload what lives there.
    let resync_state = state.clone();
    state.tasks.spawn(async move {
        let mut receiver = resync_state.bus.receiver();
        loop {
            let message = tokio::select! {
                _ = resync_state.shutdown.cancelled() => return,
                message = receiver.recv() => message,
            };
            match message {
                Ok(BusMessage::Resync)
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Err(e) = resync_state.auth.revocations().load().await {
                        tracing::warn!(error = %e, "could not reload revocations");
                    }
                }
                Ok(BusMessage::Event(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// The configured replica id, or the host name with a random suffix (so that several
/// replicas on one host, or a restarted pod, are told apart).
fn replica_id(config: &Config) -> String {
    if let Some(id) = &config.cluster.replica_id {
        return id.clone();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "lookout".to_string());
    format!("{host}-{:04x}", rand::random::<u16>())
}

/// Embedded mode without a configured key: a random secret kept in the data folder
/// (mode 0600), created on first start.
fn embedded_secret(data_dir: &Path) -> anyhow::Result<Secret> {
    let path = data_dir.join("jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(Secret::new(existing));
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data folder {}", data_dir.display()))?;
    use base64::Engine;
    let bytes: [u8; 48] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, &secret)?;
    tracing::warn!(
        path = %path.display(),
        "no JWT_SECRET set: generated a signing key for this embedded instance. \
         Get a token with: lookout token issue --sub <you> --role admin"
    );
    Ok(Secret::new(secret))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// The signing secret embedded mode uses, for `lookout token issue` (the same file the
/// server reads).
pub fn embedded_secret_for_cli(config: &Config) -> anyhow::Result<Option<Secret>> {
    match (
        &config.auth.jwt_secret,
        config.auth.algorithm,
        config.mode(),
    ) {
        (None, crate::config::JwtAlgorithm::HS256, Mode::Embedded { .. }) => {
            embedded_secret(&config.database.data_dir).map(Some)
        }
        _ => Ok(None),
    }
}
