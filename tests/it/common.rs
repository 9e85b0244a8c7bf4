//! The test harness: real PostgreSQL and Redis, one database and one Redis key prefix per
//! test, replicas on port 0.
//!
//! Each replica runs on its own Tokio runtime, so [`TestApp::kill`] can drop it
//! abruptly, like `kill -9`: no graceful shutdown, leases not released, sockets reset.
//!
//! `DATABASE_URL` (a server's admin database, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `REDIS_URL` (default
//! `redis://127.0.0.1:6379`) say where the services are.

#![allow(dead_code)]

use lookout::app::{App, AppState};
use lookout::auth::{Keys, Role};
use lookout::config::{Config, Secret};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::Connection;
use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

pub const JWT_SECRET: &str = "test-secret-0123456789-0123456789-abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Cluster,
}

pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Logs of the code under test, when `TEST_LOG` is set (e.g. `TEST_LOG=lookout=debug`).
fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}

/// One test's backing services: its own database (cluster) or data folder (embedded),
/// and its own Redis prefix. Dropped at the end of the test.
pub struct TestEnv {
    pub backend: Backend,
    pub data_dir: TempDir,
    pub database: Option<String>,
    pub database_url: Option<String>,
    pub redis_prefix: String,
}

impl TestEnv {
    pub async fn new(backend: Backend) -> TestEnv {
        init_logging();
        let data_dir = tempfile::tempdir().expect("temp dir");
        let suffix = random_suffix();
        let redis_prefix = format!("test-{suffix}:");
        let (database, database_url) = match backend {
            Backend::Embedded => (None, None),
            Backend::Cluster => {
                let name = format!("lookout_test_{suffix}");
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL at {admin} is needed for cluster tests: {e}")
                    });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let mut url = reqwest::Url::parse(&admin).expect("DATABASE_URL is a URL");
                url.set_path(&name);
                (Some(name), Some(url.to_string()))
            }
        };
        TestEnv {
            backend,
            data_dir,
            database,
            database_url,
            redis_prefix,
        }
    }

    /// The configuration of one replica of this environment.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.server.host = [127, 0, 0, 1].into();
        config.server.port = 0;
        config.server.shutdown_timeout = Duration::from_secs(10);
        config.database.data_dir = self.data_dir.path().to_path_buf();
        config.database.max_connections = 5;
        config.auth.jwt_secret = Some(Secret::new(JWT_SECRET));
        config.redis.prefix = self.redis_prefix.clone();
        if self.backend == Backend::Cluster {
            config.database.url = self.database_url.clone().map(Secret::new);
            config.redis.url = Some(Secret::new(redis_url()));
        }
        config.validate().expect("test configuration is valid");
        config
    }

    /// Starts a replica with this environment's configuration.
    pub async fn spawn(&self) -> TestApp {
        self.spawn_with(|_| {}).await
    }

    /// Starts a replica after `adjust` changed its configuration.
    pub async fn spawn_with(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config();
        adjust(&mut config);
        TestApp::start(config).await
    }

    /// A token signed with the test key.
    pub fn token(&self, role: Role, tenant: &str, sub: &str) -> String {
        token_for(&self.config(), role, tenant, sub, Duration::from_secs(3600))
    }

    pub fn admin(&self) -> String {
        self.token(Role::Admin, "default", "admin")
    }
}

pub fn token_for(config: &Config, role: Role, tenant: &str, sub: &str, ttl: Duration) -> String {
    Keys::from_config(&config.auth, None)
        .expect("keys")
        .issue(sub, role, tenant, ttl)
        .expect("token")
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let database = self.database.take();
        let prefix = self.redis_prefix.clone();
        let cluster = self.backend == Backend::Cluster;
        // Drop runs inside the test's runtime, where blocking is not allowed: clean up
        // from a thread with its own runtime.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                if let Some(name) = database {
                    let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
                        .await
                        .ok()?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                }
                if cluster {
                    let client = redis::Client::open(redis_url()).ok()?;
                    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{prefix}*"))
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                    if !keys.is_empty() {
                        let _: () = redis::cmd("DEL")
                            .arg(keys)
                            .query_async(&mut conn)
                            .await
                            .ok()?;
                    }
                }
                Some(())
            })
        });
        let _ = cleanup.join();
    }
}

/// A running replica.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub config: Config,
    runtime: Option<tokio::runtime::Runtime>,
    stop: CancellationToken,
    finished: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    client: reqwest::Client,
}

impl TestApp {
    pub async fn start(config: Config) -> TestApp {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("replica runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let build_config = config.clone();
        let run_stop = stop.clone();
        let finished = runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let app = App::build(build_config, listener).await?;
            let _ = ready_tx.send(app.state().clone());
            app.run(run_stop.cancelled_owned()).await
        });
        let state = match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
            Ok(Ok(state)) => state,
            _ => {
                let outcome = tokio::time::timeout(Duration::from_secs(5), finished).await;
                panic!("replica did not start: {outcome:?}");
            }
        };
        TestApp {
            addr,
            state,
            config,
            runtime: Some(runtime),
            stop,
            finished: Some(finished),
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub fn replica_id(&self) -> String {
        self.state.replica_id().to_string()
    }

    /// A request to this replica with an optional bearer token.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends a JSON request; returns status, body as JSON (Null when empty or not JSON)
    /// and headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut builder = self.request(method, path, token);
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        Response::read(builder.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Stops gracefully and waits until the replica has finished.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(finished) = self.finished.take() {
            let outcome = tokio::time::timeout(Duration::from_secs(30), finished).await;
            assert!(
                matches!(outcome, Ok(Ok(Ok(())))),
                "replica did not stop cleanly: {outcome:?}"
            );
        }
    }

    /// Stops abruptly: every task of the replica is dropped where it stands.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A response read in full.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Response {
    pub async fn read(response: reqwest::Response) -> Response {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {}", self.text);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "content type of {}",
            self.text
        );
        assert_eq!(self.body["code"], code, "code of {}", self.text);
        assert_eq!(self.body["status"], status, "status field of {}", self.text);
    }
}

/// Waits until `check` returns `Some`, polling every 20 ms, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs an `async fn name(env: TestEnv)` once per backend, as `name::embedded` and
/// `name::cluster`.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    super::$name($crate::common::TestEnv::new($crate::common::Backend::Embedded).await).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn cluster() {
                    super::$name($crate::common::TestEnv::new($crate::common::Backend::Cluster).await).await
                }
            }
        )*
    };
}

/// Runs an `async fn name(env: TestEnv)` in cluster mode only, as `name::cluster`.
#[macro_export]
macro_rules! cluster_only {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn cluster() {
                    super::$name($crate::common::TestEnv::new($crate::common::Backend::Cluster).await).await
                }
            }
        )*
    };
}
