//! Notification channels: what a channel of each type needs (e-mail through SMTP, a Slack
//! incoming webhook, a webhook, SMS through Twilio), how its input is checked, and how it
//! is stored.
//!
//! Secrets (SMTP password, the Slack webhook URL, the webhook signing secret and header
//! values, the Twilio auth token) are write-only: they are held in [`Secret`]s (whose
//! `Debug` and `Serialize` print a mask), stored in their own column, and never part of
//! what the API answers, which only says which secrets are set. On update, a secret left
//! out keeps its stored value; an empty string clears it.

use super::render::Templates;
use crate::config::{Config, Secret, SmtpTls};
use crate::sql;
use crate::store::{Db, DbTime, Store};
use crate::validation::FieldError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// Longest channel name.
pub const MAX_NAME_CHARS: usize = 100;
/// Most recipients of one e-mail or SMS channel.
pub const MAX_RECIPIENTS: usize = 50;
/// Most custom headers of one webhook channel.
pub const MAX_HEADERS: usize = 20;
/// Longest webhook timeout: it must stay below the workers' claim timeout.
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// Default webhook timeout.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Twilio's API, unless a channel says otherwise (tests and proxies).
pub const DEFAULT_TWILIO_BASE_URL: &str = "https://api.twilio.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    Email,
    Slack,
    Webhook,
    Sms,
}

impl ChannelType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Email => "email",
            ChannelType::Slack => "slack",
            ChannelType::Webhook => "webhook",
            ChannelType::Sms => "sms",
        }
    }

    fn parse(text: &str) -> Option<ChannelType> {
        [
            ChannelType::Email,
            ChannelType::Slack,
            ChannelType::Webhook,
            ChannelType::Sms,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// SMTP server.
    pub host: String,
    /// Default by `tls`: 587 (starttls), 465 (implicit), 25 (none).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    /// Sender, `alerts@example.com` or `Lookout <alerts@example.com>`.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// Incoming-webhook URL; write-only (its path is the credential).
    #[serde(default, skip_serializing)]
    pub webhook_url: Option<Secret>,
    /// Post to this channel instead of the webhook's own (legacy webhooks honour it).
    #[serde(default)]
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// Lookout's own JSON (`render::render_webhook_lookout`).
    #[default]
    Lookout,
    /// Alertmanager's webhook body, version 4.
    Alertmanager,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Per-request timeout (`"10s"`).
    #[serde(
        default = "default_webhook_timeout",
        with = "crate::config::duration::human"
    )]
    pub timeout: Duration,
    /// Standard Webhooks signing secret (`whsec_…`); write-only.
    #[serde(default, skip_serializing)]
    pub secret: Option<Secret>,
    /// Extra request headers; values are write-only (they often carry tokens).
    #[serde(default, skip_serializing)]
    pub headers: Option<BTreeMap<String, Secret>>,
    /// The names of the custom headers (answered instead of `headers`; ignored on input).
    #[serde(default)]
    pub header_names: Vec<String>,
}

fn default_webhook_timeout() -> Duration {
    DEFAULT_WEBHOOK_TIMEOUT
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    /// Twilio API base URL.
    #[serde(default = "default_twilio")]
    pub base_url: String,
    pub account_sid: String,
    #[serde(default, skip_serializing)]
    pub auth_token: Option<Secret>,
    /// Sender number (E.164) or messaging service id.
    pub from: String,
    /// Recipient numbers (E.164, `+14155550100`).
    pub to: Vec<String>,
}

fn default_twilio() -> String {
    DEFAULT_TWILIO_BASE_URL.to_string()
}

/// A channel's type-specific settings, secrets included.
#[derive(Debug, Clone)]
pub enum Settings {
    Email(EmailSettings),
    Slack(SlackSettings),
    Webhook(WebhookSettings),
    Sms(SmsSettings),
}

/// One channel as stored.
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub enabled: bool,
    pub settings: Settings,
    pub templates: Templates,
    pub origin: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the API answers about a channel: never a secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelType,
    pub enabled: bool,
    /// The type's settings without its secrets.
    pub settings: Value,
    /// Which write-only settings have a value (`password`, `webhook_url`, `secret`,
    /// `headers`, `auth_token`).
    pub secrets_set: Vec<String>,
    pub templates: Templates,
    /// `api`, or `config` for the default channels made from the environment.
    pub origin: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The body of `POST /channels` and `PUT /channels/{id}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelType,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Type-specific: email `{host, port, tls, username, password, from, to}`; slack
    /// `{webhook_url, channel}`; webhook `{url, format, timeout, secret, headers}`; sms
    /// `{base_url, account_sid, auth_token, from, to}`.
    #[schema(value_type = Object)]
    pub settings: Value,
    #[serde(default)]
    pub templates: Templates,
}

fn yes() -> bool {
    true
}

impl Settings {
    pub fn kind(&self) -> ChannelType {
        match self {
            Settings::Email(_) => ChannelType::Email,
            Settings::Slack(_) => ChannelType::Slack,
            Settings::Webhook(_) => ChannelType::Webhook,
            Settings::Sms(_) => ChannelType::Sms,
        }
    }

    /// Reads the settings of a `kind` channel; errors name the field (`settings.to`).
    pub fn parse(kind: ChannelType, value: Value) -> Result<Settings, FieldError> {
        fn read<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, FieldError> {
            serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                let mut field = if path == "." {
                    "settings".to_string()
                } else {
                    format!("settings.{path}")
                };
                // serde reports a missing field at its parent: name the field itself.
                if let Some(missing) = message
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split('`').next())
                {
                    field = format!("{field}.{missing}");
                }
                FieldError::new(field, message)
            })
        }
        Ok(match kind {
            ChannelType::Email => Settings::Email(read(value)?),
            ChannelType::Slack => Settings::Slack(read(value)?),
            ChannelType::Webhook => Settings::Webhook(read(value)?),
            ChannelType::Sms => Settings::Sms(read(value)?),
        })
    }

    /// The settings without secrets, as stored in `settings` and answered by the API.
    pub fn public_json(&self) -> Value {
        let value = match self {
            Settings::Email(s) => serde_json::to_value(s),
            Settings::Slack(s) => serde_json::to_value(s),
            Settings::Webhook(s) => {
                let mut s = s.clone();
                s.header_names = s
                    .headers
                    .as_ref()
                    .map(|h| h.keys().cloned().collect())
                    .unwrap_or_default();
                serde_json::to_value(s)
            }
            Settings::Sms(s) => serde_json::to_value(s),
        };
        value.unwrap_or(Value::Null)
    }

    /// The secrets, for the `secrets` column.
    fn secrets(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut put = |key: &str, secret: &Option<Secret>| {
            if let Some(secret) = secret {
                out.insert(key.to_string(), Value::from(secret.expose()));
            }
        };
        match self {
            Settings::Email(s) => put("password", &s.password),
            Settings::Slack(s) => put("webhook_url", &s.webhook_url),
            Settings::Webhook(s) => {
                put("secret", &s.secret);
                if let Some(headers) = &s.headers {
                    let headers: serde_json::Map<String, Value> = headers
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::from(v.expose())))
                        .collect();
                    out.insert("headers".into(), Value::Object(headers));
                }
            }
            Settings::Sms(s) => put("auth_token", &s.auth_token),
        }
        out
    }

    /// Puts stored secrets back into settings read from the `settings` column, or keeps
    /// the previous secrets where an update left them out.
    fn fill_secrets(&mut self, secrets: &BTreeMap<String, Value>) {
        let get = |key: &str| secrets.get(key).and_then(Value::as_str).map(Secret::new);
        match self {
            Settings::Email(s) => s.password = s.password.take().or_else(|| get("password")),
            Settings::Slack(s) => {
                s.webhook_url = s.webhook_url.take().or_else(|| get("webhook_url"))
            }
            Settings::Webhook(s) => {
                s.secret = s.secret.take().or_else(|| get("secret"));
                if s.headers.is_none()
                    && let Some(Value::Object(map)) = secrets.get("headers")
                {
                    s.headers = Some(
                        map.iter()
                            .filter_map(|(k, v)| Some((k.clone(), Secret::new(v.as_str()?))))
                            .collect(),
                    );
                }
            }
            Settings::Sms(s) => s.auth_token = s.auth_token.take().or_else(|| get("auth_token")),
        }
    }

    /// Drops secrets set to the empty string (the way to clear one).
    fn clear_empty_secrets(&mut self) {
        let clear = |secret: &mut Option<Secret>| {
            if secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
                *secret = None;
            }
        };
        match self {
            Settings::Email(s) => clear(&mut s.password),
            Settings::Slack(s) => clear(&mut s.webhook_url),
            Settings::Webhook(s) => clear(&mut s.secret),
            Settings::Sms(s) => clear(&mut s.auth_token),
        }
    }

    /// Problems with complete settings (secrets filled in).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, message: &str| {
            errors.push(FieldError::new(format!("settings.{field}"), message));
        };
        match self {
            Settings::Email(s) => {
                if s.host.trim().is_empty() || s.host.len() > 255 {
                    bad("host", "must be a host name of 1-255 characters");
                }
                if s.from.parse::<lettre::message::Mailbox>().is_err() {
                    bad("from", "must be an e-mail address");
                }
                if s.to.is_empty() || s.to.len() > MAX_RECIPIENTS {
                    bad("to", "must list 1-50 recipients");
                }
                for (i, to) in s.to.iter().enumerate() {
                    if to.parse::<lettre::message::Mailbox>().is_err() {
                        bad(&format!("to[{i}]"), "must be an e-mail address");
                    }
                }
                if s.password.is_some() && s.username.is_none() {
                    bad("username", "is required with a password");
                }
            }
            Settings::Slack(s) => match &s.webhook_url {
                None => bad("webhook_url", "is required"),
                Some(url) if !is_http_url(url.expose()) => {
                    bad("webhook_url", "must be an http(s) URL")
                }
                Some(_) => {}
            },
            Settings::Webhook(s) => {
                if !is_http_url(&s.url) {
                    bad("url", "must be an http(s) URL");
                }
                if s.timeout.is_zero() || s.timeout > MAX_WEBHOOK_TIMEOUT {
                    bad("timeout", "must be between 1ms and 60s");
                }
                if let Some(secret) = &s.secret
                    && let Err(e) = super::signing::WebhookSecret::parse(secret.expose())
                {
                    bad("secret", &e);
                }
                let headers = s.headers.as_ref();
                if headers.is_some_and(|h| h.len() > MAX_HEADERS) {
                    bad("headers", "at most 20 headers");
                }
                for (name, value) in headers.into_iter().flatten() {
                    let field = format!("headers.{name}");
                    match reqwest::header::HeaderName::from_bytes(name.as_bytes()) {
                        Err(_) => bad(&field, "is not a valid header name"),
                        Ok(header) if is_reserved_header(header.as_str()) => {
                            bad(&field, "is set by Lookout and cannot be overridden")
                        }
                        Ok(_) => {}
                    }
                    if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                        bad(&field, "is not a valid header value");
                    }
                }
            }
            Settings::Sms(s) => {
                if !is_http_url(&s.base_url) {
                    bad("base_url", "must be an http(s) URL");
                }
                if s.account_sid.is_empty()
                    || s.account_sid.len() > 64
                    || !s.account_sid.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    bad("account_sid", "must be 1-64 letters and digits");
                }
                if s.auth_token.is_none() {
                    bad("auth_token", "is required");
                }
                if s.from.trim().is_empty() || s.from.len() > 64 {
                    bad("from", "must be a number or messaging service id");
                }
                if s.to.is_empty() || s.to.len() > MAX_RECIPIENTS {
                    bad("to", "must list 1-50 numbers");
                }
                for (i, to) in s.to.iter().enumerate() {
                    if !is_e164(to) {
                        bad(
                            &format!("to[{i}]"),
                            "must be an E.164 number (+14155550100)",
                        );
                    }
                }
            }
        }
        errors
    }
}

fn is_http_url(text: &str) -> bool {
    text.len() <= 2048
        && reqwest::Url::parse(text)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

fn is_e164(text: &str) -> bool {
    let digits = text.strip_prefix('+').unwrap_or("");
    (7..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Headers Lookout sets itself on webhook requests.
fn is_reserved_header(name: &str) -> bool {
    matches!(
        name,
        "content-type" | "content-length" | "host" | "transfer-encoding" | "connection"
    ) || name.starts_with("webhook-")
}

impl Channel {
    pub fn kind(&self) -> ChannelType {
        self.settings.kind()
    }

    pub fn view(&self) -> ChannelView {
        ChannelView {
            id: self.id,
            name: self.name.clone(),
            kind: self.kind(),
            enabled: self.enabled,
            settings: self.settings.public_json(),
            secrets_set: self.settings.secrets().into_keys().collect(),
            templates: self.templates.clone(),
            origin: self.origin.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Checks an input; `previous` supplies the secrets an update leaves out.
pub fn settings_from_input(
    input: &ChannelInput,
    previous: Option<&Channel>,
) -> Result<Settings, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        errors.push(FieldError::new("name", "must be 1-100 characters"));
    } else if name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "name",
            "must not contain control characters",
        ));
    } else if Uuid::parse_str(name).is_ok() {
        // Rules name channels by id or name: a name that parses as an id would be ambiguous.
        errors.push(FieldError::new("name", "must not be a UUID"));
    }
    if let Err(e) = input.templates.validate() {
        let (field, message) = e.split_once(": ").unwrap_or(("templates", &e));
        errors.push(FieldError::new(field, message));
    }
    let mut settings = match Settings::parse(input.kind, input.settings.clone()) {
        Ok(settings) => settings,
        Err(e) => {
            errors.push(e);
            return Err(errors);
        }
    };
    if let Some(previous) = previous
        && previous.kind() == input.kind
    {
        settings.fill_secrets(&previous.settings.secrets());
    }
    settings.clear_empty_secrets();
    errors.extend(settings.validate());
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}

#[derive(sqlx::FromRow)]
struct ChannelRow {
    id: Uuid,
    tenant: String,
    name: String,
    #[sqlx(rename = "type")]
    kind: String,
    enabled: bool,
    settings: Json<Value>,
    secrets: Json<BTreeMap<String, Value>>,
    templates: Json<Templates>,
    origin: String,
    #[sqlx(try_from = "DbTime")]
    created_at: DateTime<Utc>,
    #[sqlx(try_from = "DbTime")]
    updated_at: DateTime<Utc>,
}

/// The columns a [`ChannelRow`] reads (a macro so that `concat!` builds static SQL).
macro_rules! channel_columns {
    () => {
        "id, tenant, name, type, enabled, settings, secrets, templates, origin, created_at, updated_at"
    };
}

impl ChannelRow {
    fn into_channel(self) -> Result<Channel, sqlx::Error> {
        let kind = ChannelType::parse(&self.kind).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown channel type {}", self.kind).into())
        })?;
        let mut settings = Settings::parse(kind, self.settings.0)
            .map_err(|e| sqlx::Error::Decode(format!("stored channel settings: {e}").into()))?;
        settings.fill_secrets(&self.secrets.0);
        Ok(Channel {
            id: self.id,
            tenant: self.tenant,
            name: self.name,
            enabled: self.enabled,
            settings,
            templates: self.templates.0,
            origin: self.origin,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Channels of a tenant after `after` (by id), at most `limit`.
pub async fn list(
    store: &Store,
    tenant: &str,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Channel>, sqlx::Error> {
    let mut conn = store.read().await?;
    let rows: Vec<ChannelRow> = sql!(
        conn.db(),
        all ChannelRow,
        concat!(
            "SELECT ", channel_columns!(),
            " FROM channels WHERE tenant = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
        ),
        tenant,
        after,
        limit
    )?;
    rows.into_iter().map(ChannelRow::into_channel).collect()
}

pub async fn get(store: &Store, tenant: &str, id: Uuid) -> Result<Option<Channel>, sqlx::Error> {
    let mut conn = store.read().await?;
    get_on(conn.db(), tenant, id).await
}

pub async fn get_on(db: Db<'_>, tenant: &str, id: Uuid) -> Result<Option<Channel>, sqlx::Error> {
    let row: Option<ChannelRow> = sql!(
        db,
        opt ChannelRow,
        concat!("SELECT ", channel_columns!(), " FROM channels WHERE tenant = $1 AND id = $2"),
        tenant,
        id
    )?;
    row.map(ChannelRow::into_channel).transpose()
}

/// The id of the channel a rule names by id or by name.
pub async fn resolve_ref(
    db: Db<'_>,
    tenant: &str,
    reference: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    match Uuid::parse_str(reference) {
        Ok(id) => {
            sql!(db, scalar_opt Uuid, "SELECT id FROM channels WHERE tenant = $1 AND id = $2", tenant, id)
        }
        Err(_) => {
            sql!(db, scalar_opt Uuid, "SELECT id FROM channels WHERE tenant = $1 AND name = $2", tenant, reference)
        }
    }
}

/// Inserts a channel; a duplicate name is a unique violation (409 at the edge).
pub async fn insert(store: &Store, channel: &Channel) -> Result<(), sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        exec,
        "INSERT INTO channels (id, tenant, name, type, enabled, settings, secrets, templates, origin, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        channel.id,
        &channel.tenant,
        &channel.name,
        channel.kind().as_str(),
        channel.enabled,
        Json(channel.settings.public_json()),
        Json(channel.settings.secrets()),
        Json(&channel.templates),
        &channel.origin,
        DbTime(channel.created_at),
        DbTime(channel.updated_at)
    )?;
    Ok(())
}

/// Replaces a channel's fields; false when it does not exist.
pub async fn update(store: &Store, channel: &Channel) -> Result<bool, sqlx::Error> {
    let mut conn = store.write().await?;
    let n = sql!(
        conn.db(),
        exec,
        "UPDATE channels SET name = $3, type = $4, enabled = $5, settings = $6, secrets = $7,
                templates = $8, updated_at = $9
         WHERE tenant = $1 AND id = $2",
        &channel.tenant,
        channel.id,
        &channel.name,
        channel.kind().as_str(),
        channel.enabled,
        Json(channel.settings.public_json()),
        Json(channel.settings.secrets()),
        Json(&channel.templates),
        DbTime(channel.updated_at)
    )?;
    Ok(n > 0)
}

pub async fn delete(store: &Store, tenant: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    let mut conn = store.write().await?;
    let n = sql!(
        conn.db(),
        exec,
        "DELETE FROM channels WHERE tenant = $1 AND id = $2",
        tenant,
        id
    )?;
    Ok(n > 0)
}

/// The default channels of the seed environment (`SMTP_*` + `ALERT_FROM_EMAIL`,
/// `SLACK_WEBHOOK_URL`, `WEBHOOK_URL`), named `email`, `slack` and `webhook` in the
/// `default` tenant as the seed rules name them.
pub fn defaults_from_config(config: &Config) -> Vec<(String, Settings)> {
    let mut out = Vec::new();
    if let (Some(host), Some(from)) = (&config.smtp.host, &config.smtp.from) {
        let to: Vec<String> = config
            .smtp
            .to
            .as_deref()
            .unwrap_or(from)
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        out.push((
            "email".to_string(),
            Settings::Email(EmailSettings {
                host: host.clone(),
                port: config.smtp.port,
                tls: config.smtp.tls,
                username: config.smtp.user.clone(),
                password: config.smtp.password.clone(),
                from: from.clone(),
                to,
            }),
        ));
    }
    if let Some(url) = &config.slack.webhook_url {
        out.push((
            "slack".to_string(),
            Settings::Slack(SlackSettings {
                webhook_url: Some(url.clone()),
                channel: None,
            }),
        ));
    }
    if let Some(url) = &config.webhook.url {
        out.push((
            "webhook".to_string(),
            Settings::Webhook(WebhookSettings {
                url: url.clone(),
                format: WebhookFormat::Lookout,
                timeout: DEFAULT_WEBHOOK_TIMEOUT,
                secret: config.webhook.secret.clone(),
                headers: None,
                header_names: Vec::new(),
            }),
        ));
    }
    out
}

/// Creates or refreshes the default channels. Every replica runs this at start-up: the
/// unique (tenant, name) makes concurrent inserts collapse into one row, and a channel
/// of the same name created through the API (origin `api`) is left alone.
pub async fn ensure_defaults(store: &Store, config: &Config) -> Result<usize, sqlx::Error> {
    let defaults = defaults_from_config(config);
    let now = Utc::now();
    let mut conn = store.write().await?;
    for (name, settings) in &defaults {
        for problem in settings.validate() {
            tracing::warn!(channel = %name, problem = %problem, "default channel setting looks wrong");
        }
        sql!(
            conn.db(),
            exec,
            "INSERT INTO channels (id, tenant, name, type, enabled, settings, secrets, templates, origin, created_at, updated_at)
             VALUES ($1, 'default', $2, $3, TRUE, $4, $5, $6, 'config', $7, $7)
             ON CONFLICT (tenant, name) DO UPDATE
               SET type = excluded.type, settings = excluded.settings, secrets = excluded.secrets,
                   updated_at = excluded.updated_at
               WHERE channels.origin = 'config'",
            Uuid::now_v7(),
            name,
            settings.kind().as_str(),
            Json(settings.public_json()),
            Json(settings.secrets()),
            Json(Templates::default()),
            DbTime(now)
        )?;
    }
    Ok(defaults.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(kind: ChannelType, settings: Value) -> ChannelInput {
        ChannelInput {
            name: "ops".into(),
            kind,
            enabled: true,
            settings,
            templates: Templates::default(),
        }
    }

    #[test]
    fn secrets_are_never_in_the_public_settings() {
        let settings = settings_from_input(
            &input(
                ChannelType::Webhook,
                json!({"url": "https://example.com/hook", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                       "headers": {"Authorization": "Bearer hunter2"}}),
            ),
            None,
        )
        .unwrap();
        let public = settings.public_json().to_string();
        assert!(!public.contains("hunter2"), "{public}");
        assert!(!public.contains("whsec_"), "{public}");
        assert!(public.contains("Authorization"), "{public}");
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert_eq!(
            settings.secrets().into_keys().collect::<Vec<_>>(),
            ["headers", "secret"]
        );
    }

    #[test]
    fn an_update_keeps_secrets_it_leaves_out_and_clears_empty_ones() {
        let first = settings_from_input(
            &input(
                ChannelType::Sms,
                json!({"account_sid": "AC1", "auth_token": "tok", "from": "+15550001", "to": ["+14155550100"]}),
            ),
            None,
        )
        .unwrap();
        let channel = Channel {
            id: Uuid::nil(),
            tenant: "t".into(),
            name: "ops".into(),
            enabled: true,
            settings: first,
            templates: Templates::default(),
            origin: "api".into(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        let kept = settings_from_input(
            &input(
                ChannelType::Sms,
                json!({"account_sid": "AC1", "from": "+15550001", "to": ["+14155550101"]}),
            ),
            Some(&channel),
        )
        .unwrap();
        assert_eq!(kept.secrets()["auth_token"], "tok");
        let errors = settings_from_input(
            &input(
                ChannelType::Sms,
                json!({"account_sid": "AC1", "auth_token": "", "from": "+15550001", "to": ["+14155550101"]}),
            ),
            Some(&channel),
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "settings.auth_token");
    }

    #[test]
    fn bad_settings_name_their_field() {
        let cases = [
            (
                ChannelType::Email,
                json!({"host": "smtp", "from": "nope", "to": ["a@b.c"]}),
                "settings.from",
            ),
            (
                ChannelType::Email,
                json!({"host": "smtp", "from": "a@b.c", "to": []}),
                "settings.to",
            ),
            (
                ChannelType::Email,
                json!({"host": "smtp", "from": "a@b.c"}),
                "settings.to",
            ),
            (ChannelType::Slack, json!({}), "settings.webhook_url"),
            (
                ChannelType::Webhook,
                json!({"url": "ftp://x"}),
                "settings.url",
            ),
            (
                ChannelType::Webhook,
                json!({"url": "http://x", "secret": "whsec_short"}),
                "settings.secret",
            ),
            (
                ChannelType::Webhook,
                json!({"url": "http://x", "headers": {"webhook-id": "1"}}),
                "settings.headers.webhook-id",
            ),
            (
                ChannelType::Webhook,
                json!({"url": "http://x", "timeout": "5m"}),
                "settings.timeout",
            ),
            (
                ChannelType::Webhook,
                json!({"url": "http://x", "bogus": 1}),
                "settings.bogus",
            ),
            (
                ChannelType::Sms,
                json!({"account_sid": "AC1", "auth_token": "t", "from": "+1", "to": ["555"]}),
                "settings.to[0]",
            ),
        ];
        for (kind, settings, field) in cases {
            let errors = settings_from_input(&input(kind, settings.clone()), None).unwrap_err();
            assert!(
                errors.iter().any(|e| e.field == field),
                "{settings}: expected {field}, got {errors:?}"
            );
        }
    }
}
