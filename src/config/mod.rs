//! Configuration: built-in defaults, then an optional `lookout.toml`, then the environment.
//!
//! Two families of environment names are read. The seed system's names (`PORT`,
//! `DATABASE_URL`, `JWT_SECRET`, …) keep existing deployments working unchanged; every
//! other setting has a `LOOKOUT_<SECTION>__<KEY>` name (double underscore between levels,
//! e.g. `LOOKOUT_REALTIME__SEND_QUEUE_LEN`). When both are set, the `LOOKOUT_` name wins.
//!
//! [`Config::load`] validates the result, so a bad setting stops the process at start-up
//! with a message that names the setting, rather than failing later in a request.

pub(crate) mod duration;
mod secret;

// One file per part for the parts' own settings, so each part changes only its file.
mod agents;
mod metrics;
mod notify;
mod rules;
mod sources;

pub use self::agents::AgentsConfig;
pub use self::metrics::MetricsConfig;
pub use self::notify::NotifyConfig;
pub use self::rules::RulesConfig;
pub use self::sources::SourcesConfig;

pub use secret::Secret;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment names of the seed system and the setting each one sets.
const SEED_ENV: &[(&str, &str)] = &[
    ("PORT", "server.port"),
    ("CORS_ORIGIN", "server.cors_origin"),
    ("JWT_SECRET", "auth.jwt_secret"),
    ("JWT_EXPIRES_IN", "auth.expires_in"),
    ("LOG_LEVEL", "log.level"),
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("KUMOMTA_API_URL", "kumomta.api_url"),
    ("KUMOMTA_API_TOKEN", "kumomta.api_token"),
    ("SMTP_HOST", "smtp.host"),
    ("SMTP_PORT", "smtp.port"),
    ("SMTP_USER", "smtp.user"),
    ("SMTP_PASS", "smtp.password"),
    ("ALERT_FROM_EMAIL", "smtp.from"),
    ("SLACK_WEBHOOK_URL", "slack.webhook_url"),
    ("WEBHOOK_URL", "webhook.url"),
    ("WS_HEARTBEAT_INTERVAL", "realtime.heartbeat_interval"),
    ("WS_AUTH_TIMEOUT", "realtime.auth_timeout"),
];

/// `LOOKOUT_` variables that are not settings (read by the CLI or the tests).
const NON_SETTING_ENV: &[&str] = &["LOOKOUT_CONFIG", "LOOKOUT_TEST_MODE"];

/// Every setting of a Lookout process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub realtime: RealtimeConfig,
    pub bus: BusConfig,
    pub cluster: ClusterConfig,
    pub kumomta: KumoMtaConfig,
    pub smtp: SmtpConfig,
    pub slack: SlackConfig,
    pub webhook: WebhookConfig,
    pub metrics: MetricsConfig,
    pub agents: AgentsConfig,
    pub sources: SourcesConfig,
    pub rules: RulesConfig,
    pub notify: NotifyConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port to listen on (`PORT`).
    pub port: u16,
    /// Origins allowed by CORS, comma-separated, or `*` (`CORS_ORIGIN`). Empty: no CORS.
    pub cors_origin: String,
    /// Largest request body accepted.
    pub body_limit_bytes: usize,
    /// A request that takes longer is answered 503.
    #[serde(with = "duration::human")]
    pub request_timeout: Duration,
    /// How long a graceful shutdown may take before the process exits anyway.
    #[serde(with = "duration::human")]
    pub shutdown_timeout: Duration,
    /// Base URL under which users reach Lookout, used in links sent in notifications.
    pub public_url: Option<String>,
    /// API requests per second one caller (tenant + subject) may make to one replica on
    /// average; 0 disables the limit.
    pub rate_limit_per_sec: u32,
    /// …and at once.
    pub rate_limit_burst: u32,
    /// Sets TCP_NODELAY on accepted connections: each WebSocket frame leaves at once
    /// instead of waiting (Nagle's algorithm) for the previous one's acknowledgement.
    /// Off, frames written close together share TCP segments, which costs less CPU per
    /// event under heavy fan-out (docs/benchmarks/realtime.md).
    pub tcp_nodelay: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 3000,
            cors_origin: String::new(),
            body_limit_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            public_url: None,
            rate_limit_per_sec: 100,
            rate_limit_burst: 200,
            tcp_nodelay: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`info`) or a full filter (`info,lookout=debug`) (`LOG_LEVEL`).
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Plain,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://…` runs in cluster mode; `sqlite://…` or unset runs embedded
    /// (`DATABASE_URL`). The URL may hold a password, so it is masked when printed.
    pub url: Option<Secret>,
    /// Where embedded mode keeps its SQLite file and generated key.
    pub data_dir: PathBuf,
    /// Connections in the PostgreSQL pool of each replica.
    pub max_connections: u32,
    /// How long a request waits for a free connection before it is answered 503.
    #[serde(with = "duration::human")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            data_dir: PathBuf::from("./data"),
            max_connections: 20,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://…` (`REDIS_URL`); required in cluster mode.
    pub url: Option<Secret>,
    /// Prefix of every key and channel, so that several deployments (or tests) can
    /// share one Redis.
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            prefix: "lookout:".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    EdDSA,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub algorithm: JwtAlgorithm,
    /// HS256 shared secret (`JWT_SECRET`).
    pub jwt_secret: Option<Secret>,
    /// RS256/EdDSA: PEM public key that verifies tokens.
    pub public_key_file: Option<PathBuf>,
    /// RS256/EdDSA: a JWKS file whose keys verify tokens (chosen by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// RS256/EdDSA: PEM private key, only needed by `lookout token issue`.
    pub private_key_file: Option<PathBuf>,
    /// Lifetime of tokens made by `lookout token issue` without `--ttl` (`JWT_EXPIRES_IN`;
    /// `24h`, `7d`, or a number of seconds).
    #[serde(with = "duration::human_or_secs")]
    pub expires_in: Duration,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// Clock skew tolerated when checking `exp`.
    #[serde(with = "duration::human")]
    pub leeway: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            algorithm: JwtAlgorithm::HS256,
            jwt_secret: None,
            public_key_file: None,
            jwks_file: None,
            private_key_file: None,
            expires_in: Duration::from_secs(24 * 3600),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Interval of server pings; a client silent for 3 intervals is closed
    /// (`WS_HEARTBEAT_INTERVAL`; `30s`, or a number of milliseconds).
    #[serde(with = "duration::human_or_millis")]
    pub heartbeat_interval: Duration,
    /// Time allowed for the first `auth` frame (`WS_AUTH_TIMEOUT`; `10s` or milliseconds).
    #[serde(with = "duration::human_or_millis")]
    pub auth_timeout: Duration,
    /// Largest frame accepted from a client; larger ones close the socket with 1009.
    pub max_frame_bytes: usize,
    /// Frames per second a client may send on average…
    pub rate_limit_per_sec: u32,
    /// …and in a burst.
    pub rate_limit_burst: u32,
    /// Frames queued for one client before it is closed as a slow consumer (4005).
    pub send_queue_len: usize,
    /// Concurrent connections of one subject (JWT `sub`) across all replicas.
    pub max_connections_per_subject: u32,
    /// Concurrent connections of one tenant across all replicas.
    pub max_connections_per_tenant: u32,
    /// Concurrent connections on one replica; beyond it new ones get 1013.
    pub max_connections_per_replica: u32,
    /// Size of each socket's read buffer. Small buffers keep idle connections cheap.
    pub read_buffer_bytes: usize,
    /// Bytes of outgoing frames gathered before a write to the socket (a flush after each
    /// batch writes the rest), so that a burst of events costs few system calls.
    pub write_buffer_bytes: usize,
    /// At shutdown, clients are told to come back after a random delay up to this, so
    /// that they do not all reconnect to the other replicas at once.
    #[serde(with = "duration::human_or_millis")]
    pub reconnect_spread: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            heartbeat_interval: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(10),
            max_frame_bytes: 64 * 1024,
            rate_limit_per_sec: 50,
            rate_limit_burst: 100,
            send_queue_len: 1024,
            max_connections_per_subject: 100,
            max_connections_per_tenant: 20_000,
            max_connections_per_replica: 50_000,
            read_buffer_bytes: 2048,
            write_buffer_bytes: 8 * 1024,
            reconnect_spread: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// Events kept per topic for `since` replay.
    pub history_len: usize,
    /// Longest time an event is kept for replay.
    #[serde(with = "duration::human")]
    pub history_retention: Duration,
    /// Cluster mode: how often the Redis subscriber connection pings, so that a
    /// silently dead peer (a dropped NAT entry, a proxy's idle timeout) is noticed.
    #[serde(with = "duration::human")]
    pub subscriber_ping_interval: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            history_len: 1000,
            history_retention: Duration::from_secs(7 * 24 * 3600),
            subscriber_ping_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This replica's name in `/api/v1/cluster` and logs. Default: host name plus a
    /// random suffix (the pod name on Kubernetes).
    pub replica_id: Option<String>,
    /// Lease time-to-live: a holder that stops renewing loses its lease after this.
    #[serde(with = "duration::human")]
    pub lease_ttl: Duration,
    /// How often a holder renews its leases.
    #[serde(with = "duration::human")]
    pub lease_renew_interval: Duration,
    /// How often a replica announces itself in the registry.
    #[serde(with = "duration::human")]
    pub heartbeat_interval: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            replica_id: None,
            lease_ttl: Duration::from_secs(15),
            lease_renew_interval: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KumoMtaConfig {
    /// Base URL of a kumod HTTP listener polled by default (`KUMOMTA_API_URL`).
    pub api_url: Option<String>,
    /// Bearer token for that listener (`KUMOMTA_API_TOKEN`).
    pub api_token: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS (a local relay).
    None,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// SMTP relay for the default email channel (`SMTP_HOST`).
    pub host: Option<String>,
    /// `SMTP_PORT`; default by TLS mode (587, 465 or 25).
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub tls: SmtpTls,
    /// Sender address (`ALERT_FROM_EMAIL`).
    pub from: Option<String>,
    /// Recipients of the default email channel, comma-separated.
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackConfig {
    /// Incoming-webhook URL of the default Slack channel (`SLACK_WEBHOOK_URL`); it holds
    /// a secret path, so it is masked when printed.
    pub webhook_url: Option<Secret>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// URL of the default webhook channel (`WEBHOOK_URL`).
    pub url: Option<String>,
    /// `whsec_…` signing secret for it.
    pub secret: Option<Secret>,
}

/// Which backends this process runs on, decided once from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One process: SQLite, in-process bus and leases.
    Embedded { sqlite_path: PathBuf },
    /// N replicas: PostgreSQL and Redis.
    Cluster {
        postgres_url: String,
        redis_url: String,
    },
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Embedded { .. } => "embedded",
            Mode::Cluster { .. } => "cluster",
        }
    }
}

/// A setting that is missing, malformed or inconsistent with another.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(Box<figment::Error>),
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Loads defaults, then the TOML file (`LOOKOUT_CONFIG`, else `./lookout.toml` when it
    /// exists), then the environment; validates the result.
    pub fn load() -> Result<Config, ConfigError> {
        let file = std::env::var_os("LOOKOUT_CONFIG").map(PathBuf::from);
        let config = Self::figment(file.as_deref())
            .extract::<Config>()
            .map_err(|e| ConfigError::Load(Box::new(e)))?
            .with_verbatim_env_secrets();
        config.validate()?;
        Ok(config)
    }

    fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => figment = figment.merge(Toml::file("lookout.toml")),
        }
        let seed_names: Vec<&str> = SEED_ENV.iter().map(|(name, _)| *name).collect();
        figment
            .merge(Env::raw().only(&seed_names).map(|key| {
                let key = key.as_str();
                SEED_ENV
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(key))
                    .map(|(_, path)| (*path).into())
                    .unwrap_or_else(|| key.to_string().into())
            }))
            .merge(
                Env::prefixed("LOOKOUT_")
                    .ignore(&strip_prefix(NON_SETTING_ENV))
                    .split("__"),
            )
    }

    /// Figment parses environment values, so `JWT_SECRET=123` would arrive as a number
    /// and `SMTP_PASS=[x]` as a list. Secrets are therefore re-read verbatim.
    fn with_verbatim_env_secrets(mut self) -> Config {
        let verbatim = |seed: &str, lookout: &str| {
            std::env::var(lookout)
                .ok()
                .or_else(|| std::env::var(seed).ok())
                .map(Secret::new)
        };
        let pairs: [(&str, &str, &mut Option<Secret>); 6] = [
            (
                "JWT_SECRET",
                "LOOKOUT_AUTH__JWT_SECRET",
                &mut self.auth.jwt_secret,
            ),
            (
                "DATABASE_URL",
                "LOOKOUT_DATABASE__URL",
                &mut self.database.url,
            ),
            ("REDIS_URL", "LOOKOUT_REDIS__URL", &mut self.redis.url),
            (
                "KUMOMTA_API_TOKEN",
                "LOOKOUT_KUMOMTA__API_TOKEN",
                &mut self.kumomta.api_token,
            ),
            (
                "SMTP_PASS",
                "LOOKOUT_SMTP__PASSWORD",
                &mut self.smtp.password,
            ),
            (
                "SLACK_WEBHOOK_URL",
                "LOOKOUT_SLACK__WEBHOOK_URL",
                &mut self.slack.webhook_url,
            ),
        ];
        for (seed, lookout, slot) in pairs {
            if let Some(value) = verbatim(seed, lookout) {
                *slot = Some(value);
            }
        }
        self
    }

    /// Which mode these settings select. Call after [`Config::validate`].
    pub fn mode(&self) -> Mode {
        match (&self.database.url, &self.redis.url) {
            (Some(db), Some(redis)) if is_postgres_url(db.expose()) => Mode::Cluster {
                postgres_url: db.expose().to_string(),
                redis_url: redis.expose().to_string(),
            },
            (Some(db), _) if db.expose().starts_with("sqlite:") => Mode::Embedded {
                sqlite_path: PathBuf::from(
                    db.expose()
                        .trim_start_matches("sqlite://")
                        .trim_start_matches("sqlite:"),
                ),
            },
            _ => Mode::Embedded {
                sqlite_path: self.database.data_dir.join("lookout.db"),
            },
        }
    }

    /// Every problem at once, each naming the setting to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let db_url = self.database.url.as_ref().map(|s| s.expose());
        let postgres = db_url.is_some_and(is_postgres_url);
        if let Some(url) = db_url
            && !postgres
            && !url.starts_with("sqlite:")
        {
            problems.push(
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite:".to_string(),
            );
        }
        match (&self.redis.url, postgres) {
            (None, true) => problems.push(
                "REDIS_URL is required when DATABASE_URL is PostgreSQL (cluster mode needs both)"
                    .into(),
            ),
            (Some(url), _)
                if !url.expose().starts_with("redis://")
                    && !url.expose().starts_with("rediss://") =>
            {
                problems.push("REDIS_URL must start with redis:// or rediss://".into())
            }
            (Some(_), false) => problems.push(
                "REDIS_URL is set but DATABASE_URL is not PostgreSQL: cluster mode needs both, \
                 embedded mode neither"
                    .into(),
            ),
            _ => {}
        }
        if self.redis.prefix.is_empty() || self.redis.prefix.contains(char::is_whitespace) {
            problems.push("LOOKOUT_REDIS__PREFIX must be non-empty and without spaces".into());
        }
        match self.auth.algorithm {
            JwtAlgorithm::HS256 => {
                if postgres && self.auth.jwt_secret.is_none() {
                    problems.push(
                        "JWT_SECRET is required in cluster mode: every replica must verify \
                         the same tokens (or set LOOKOUT_AUTH__ALGORITHM=RS256/EdDSA with \
                         LOOKOUT_AUTH__PUBLIC_KEY_FILE or LOOKOUT_AUTH__JWKS_FILE)"
                            .into(),
                    );
                }
                if let Some(secret) = &self.auth.jwt_secret
                    && secret.expose().len() < 32
                {
                    problems.push("JWT_SECRET must be at least 32 bytes long".into());
                }
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => {
                if self.auth.public_key_file.is_none() && self.auth.jwks_file.is_none() {
                    problems.push(format!(
                        "LOOKOUT_AUTH__ALGORITHM={:?} needs LOOKOUT_AUTH__PUBLIC_KEY_FILE or \
                         LOOKOUT_AUTH__JWKS_FILE",
                        self.auth.algorithm
                    ));
                }
            }
        }
        if self.auth.expires_in.is_zero() {
            problems.push("JWT_EXPIRES_IN must be positive".into());
        }
        if self.server.body_limit_bytes == 0 {
            problems.push("LOOKOUT_SERVER__BODY_LIMIT_BYTES must be positive".into());
        }
        if self.server.rate_limit_per_sec > 0
            && self.server.rate_limit_burst < self.server.rate_limit_per_sec
        {
            problems.push(
                "LOOKOUT_SERVER__RATE_LIMIT_BURST must be at least LOOKOUT_SERVER__RATE_LIMIT_PER_SEC".into(),
            );
        }
        if self.server.request_timeout.is_zero() {
            problems.push("LOOKOUT_SERVER__REQUEST_TIMEOUT must be positive".into());
        }
        let rt = &self.realtime;
        if rt.heartbeat_interval < Duration::from_secs(1) {
            problems.push("WS_HEARTBEAT_INTERVAL must be at least 1s".into());
        }
        if rt.auth_timeout.is_zero() {
            problems.push("WS_AUTH_TIMEOUT must be positive".into());
        }
        if rt.max_frame_bytes < 1024 {
            problems.push("LOOKOUT_REALTIME__MAX_FRAME_BYTES must be at least 1024".into());
        }
        if rt.rate_limit_per_sec == 0 || rt.rate_limit_burst < rt.rate_limit_per_sec {
            problems.push(
                "LOOKOUT_REALTIME__RATE_LIMIT_PER_SEC must be positive and not above \
                 LOOKOUT_REALTIME__RATE_LIMIT_BURST"
                    .into(),
            );
        }
        if rt.send_queue_len == 0 {
            problems.push("LOOKOUT_REALTIME__SEND_QUEUE_LEN must be positive".into());
        }
        if !(256..=1 << 20).contains(&rt.read_buffer_bytes) {
            problems
                .push("LOOKOUT_REALTIME__READ_BUFFER_BYTES must be between 256 and 1 MiB".into());
        }
        if !(1024..=1 << 20).contains(&rt.write_buffer_bytes) {
            problems.push(
                "LOOKOUT_REALTIME__WRITE_BUFFER_BYTES must be between 1 KiB and 1 MiB".into(),
            );
        }
        if self.bus.history_len == 0 {
            problems.push("LOOKOUT_BUS__HISTORY_LEN must be positive".into());
        }
        if self.bus.subscriber_ping_interval < Duration::from_millis(10) {
            problems.push("LOOKOUT_BUS__SUBSCRIBER_PING_INTERVAL must be at least 10ms".into());
        }
        let cl = &self.cluster;
        if cl.lease_renew_interval.is_zero() || cl.lease_renew_interval * 2 > cl.lease_ttl {
            problems.push(
                "LOOKOUT_CLUSTER__LEASE_RENEW_INTERVAL must be positive and at most half of \
                 LOOKOUT_CLUSTER__LEASE_TTL, so that one failed renewal does not lose a lease"
                    .into(),
            );
        }
        if cl.heartbeat_interval.is_zero() || cl.heartbeat_interval * 2 > cl.lease_ttl {
            problems.push(
                "LOOKOUT_CLUSTER__HEARTBEAT_INTERVAL must be positive and at most half of \
                 LOOKOUT_CLUSTER__LEASE_TTL"
                    .into(),
            );
        }
        if let Some(id) = &cl.replica_id
            && (id.is_empty() || id.len() > 64 || id.contains(char::is_whitespace))
        {
            problems
                .push("LOOKOUT_CLUSTER__REPLICA_ID must be 1-64 characters without spaces".into());
        }
        for (name, url) in [
            ("KUMOMTA_API_URL", self.kumomta.api_url.as_deref()),
            ("WEBHOOK_URL", self.webhook.url.as_deref()),
            (
                "SLACK_WEBHOOK_URL",
                self.slack.webhook_url.as_ref().map(|s| s.expose()),
            ),
            (
                "LOOKOUT_SERVER__PUBLIC_URL",
                self.server.public_url.as_deref(),
            ),
        ] {
            if let Some(url) = url
                && !matches!(
                    reqwest::Url::parse(url)
                        .map(|u| u.scheme().to_string())
                        .as_deref(),
                    Ok("http" | "https")
                )
            {
                problems.push(format!("{name} must be an http:// or https:// URL"));
            }
        }
        if self.smtp.host.is_some() && self.smtp.from.is_none() {
            problems.push("ALERT_FROM_EMAIL is required when SMTP_HOST is set".into());
        }
        self.metrics.validate(&mut problems);
        self.agents.validate(&mut problems);
        self.sources.validate(&mut problems);
        self.rules.validate(&mut problems);
        self.notify.validate(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The effective configuration as TOML, secrets masked: what `lookout check-config`
    /// prints.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }

    /// Settings that work but are risky, to be logged as warnings at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.server.cors_origin.trim() == "*" {
            warnings.push(
                "CORS_ORIGIN=* lets any web page call this API with a user's token".to_string(),
            );
        }
        if let Some(Ok(url)) = self
            .redis
            .url
            .as_ref()
            .map(|u| reqwest::Url::parse(u.expose()))
            && url.scheme() == "redis"
            && !matches!(
                url.host_str(),
                Some("127.0.0.1" | "localhost" | "::1" | "[::1]")
            )
        {
            warnings
                .push("REDIS_URL uses plain redis:// to a remote host; prefer rediss://".into());
        }
        warnings
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn strip_prefix(names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .map(|n| n.trim_start_matches("LOOKOUT_"))
        .collect()
}

#[cfg(test)]
// figment's Jail closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in(jail: &Jail) -> Result<Config, ConfigError> {
        let _ = jail;
        let config = Config::figment(None)
            .extract::<Config>()
            .map_err(|e| ConfigError::Load(Box::new(e)))?
            .with_verbatim_env_secrets();
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn no_settings_is_embedded_under_data() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let config = load_in(jail).expect("defaults are valid");
            assert_eq!(
                config.mode(),
                Mode::Embedded {
                    sqlite_path: PathBuf::from("./data/lookout.db")
                }
            );
            assert_eq!(config.server.port, 3000);
            Ok(())
        });
    }

    #[test]
    fn seed_names_and_lookout_names_layer_over_the_file() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "lookout.toml",
                "[server]\nport = 4000\ncors_origin = \"https://a.example\"\n[realtime]\nsend_queue_len = 7\n",
            )?;
            jail.set_env("PORT", "5000");
            jail.set_env("WS_HEARTBEAT_INTERVAL", "15000");
            jail.set_env("JWT_EXPIRES_IN", "7d");
            jail.set_env("LOOKOUT_REALTIME__SEND_QUEUE_LEN", "9");
            jail.set_env("JWT_SECRET", "12345678901234567890123456789012");
            let config = load_in(jail).expect("valid");
            assert_eq!(config.server.port, 5000, "environment wins over the file");
            assert_eq!(
                config.server.cors_origin, "https://a.example",
                "file wins over defaults"
            );
            assert_eq!(config.realtime.heartbeat_interval, Duration::from_secs(15));
            assert_eq!(config.auth.expires_in, Duration::from_secs(7 * 24 * 3600));
            assert_eq!(config.realtime.send_queue_len, 9);
            // A numeric secret stays the exact string.
            assert_eq!(
                config.auth.jwt_secret.as_ref().map(|s| s.expose()),
                Some("12345678901234567890123456789012")
            );
            Ok(())
        });
    }

    #[test]
    fn cluster_mode_needs_redis_and_a_key() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://postgres@127.0.0.1/test");
            let err = load_in(jail).unwrap_err().to_string();
            assert!(
                err.contains("REDIS_URL is required when DATABASE_URL is PostgreSQL"),
                "{err}"
            );
            assert!(
                err.contains("JWT_SECRET is required in cluster mode"),
                "{err}"
            );
            jail.set_env("REDIS_URL", "redis://127.0.0.1:6379");
            jail.set_env("JWT_SECRET", "x".repeat(32));
            let config = load_in(jail).expect("valid");
            assert!(matches!(config.mode(), Mode::Cluster { .. }));
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_named() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("REDIS_URL", "redis://127.0.0.1");
            jail.set_env("KUMOMTA_API_URL", "ftp://x");
            jail.set_env("LOOKOUT_CLUSTER__LEASE_RENEW_INTERVAL", "10s");
            let err = load_in(jail).unwrap_err().to_string();
            assert!(
                err.contains("REDIS_URL is set but DATABASE_URL is not PostgreSQL"),
                "{err}"
            );
            assert!(err.contains("KUMOMTA_API_URL must be an http"), "{err}");
            assert!(err.contains("LEASE_RENEW_INTERVAL"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_lookout_variables_are_refused() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("LOOKOUT_SERVER__PROT", "1");
            let err = load_in(jail).unwrap_err().to_string();
            assert!(err.contains("prot"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn printed_config_masks_secrets() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("JWT_SECRET", "super-secret-value-that-is-long-enough");
            jail.set_env(
                "SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T/B/XYZ",
            );
            let printed = load_in(jail).expect("valid").to_masked_toml();
            assert!(!printed.contains("super-secret"), "{printed}");
            assert!(!printed.contains("XYZ"), "{printed}");
            assert!(printed.contains("jwt_secret = \"********\""), "{printed}");
            Ok(())
        });
    }
}
