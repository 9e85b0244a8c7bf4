//! The source registry's model: what an admin sends (`SourceInput`), what is stored
//! ([`Settings`], [`Auth`]) and what the API shows ([`SourceView`]).
//!
//! One flat input shape serves every kind, so that a wrong field is reported by its name
//! (`expected_status: only for http_probe sources`) rather than by a failed untagged match.
//! Credentials are write-only: they are stored apart from the settings, never serialized
//! into a response and masked in `Debug`.

use crate::config::Secret;
use crate::sources::prometheus_text::NameFilter;
use crate::validation::FieldError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use uuid::Uuid;

/// Default time between two polls of a source.
pub const DEFAULT_INTERVAL_MS: u64 = 5_000;
/// Bounds of `interval_ms`.
pub const MIN_INTERVAL_MS: u64 = 500;
pub const MAX_INTERVAL_MS: u64 = 24 * 3600 * 1000;
/// Default time a poll may take; never more than the interval.
pub const DEFAULT_TIMEOUT_MS: u64 = 4_000;
pub const MIN_TIMEOUT_MS: u64 = 100;
const MAX_NAME_CHARS: usize = 100;
const MAX_URL_BYTES: usize = 2048;
const MAX_LIST_ITEMS: usize = 100;
const MAX_PATTERN_BYTES: usize = 512;
const MAX_LABELS: usize = 20;
const MIN_LOG_TOKEN_BYTES: usize = 16;
const MAX_SECRET_BYTES: usize = 1024;

/// The kinds of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A kumod node's HTTP listener.
    Kumomta,
    /// A Prometheus text `/metrics` page.
    Prometheus,
    /// An HTTP endpoint whose answer says whether a service is up.
    HttpProbe,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kumomta => "kumomta",
            Self::Prometheus => "prometheus",
            Self::HttpProbe => "http_probe",
        }
    }

    pub fn from_db(text: &str) -> Option<Self> {
        match text {
            "kumomta" => Some(Self::Kumomta),
            "prometheus" => Some(Self::Prometheus),
            "http_probe" => Some(Self::HttpProbe),
            _ => None,
        }
    }
}

/// The body of `POST /api/v1/sources` and `PUT /api/v1/sources/{id}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceInput {
    /// Unique within the tenant; 1-100 characters.
    pub name: String,
    pub kind: SourceKind,
    /// kumomta: the listener's base URL (`http://kumod:8000`); prometheus: the `/metrics`
    /// URL; http_probe: the URL to GET. http or https, without credentials in it.
    pub url: String,
    /// Time between polls, 500 ms to 24 h (default 5000).
    pub interval_ms: Option<u64>,
    /// Time a poll may take, at least 100 ms and at most the interval (default 4000, or
    /// the interval when shorter).
    pub timeout_ms: Option<u64>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Credentials for the target. Write-only. On PUT, leaving it out keeps the stored
    /// credentials; `{"type":"none"}` removes them.
    pub auth: Option<AuthInput>,
    /// kumomta: the bearer token kumod's log hook must send (at least 16 characters).
    /// Write-only. When a kumomta source is created without one, one is generated and
    /// returned once in the creation's answer.
    #[schema(value_type = Option<String>)]
    pub log_hook_token: Option<Secret>,
    /// prometheus: regular expressions; a metric is kept when its whole name matches one
    /// (all are kept when empty).
    pub allow: Option<Vec<String>>,
    /// prometheus: regular expressions; a metric whose name matches one is dropped.
    pub deny: Option<Vec<String>>,
    /// prometheus: labels added to every kept sample (they win over the target's own).
    pub labels: Option<BTreeMap<String, String>>,
    /// http_probe: the status that means up (default 200).
    pub expected_status: Option<u16>,
    /// http_probe: a regular expression the body must match to mean up.
    pub body_match: Option<String>,
}

/// Credentials as an admin sends them.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthInput {
    None,
    Bearer { token: String },
    Basic { username: String, password: String },
}

impl fmt::Debug for AuthInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Bearer { .. } => f.write_str("Bearer(********)"),
            Self::Basic { username, .. } => write!(f, "Basic({username}:********)"),
        }
    }
}

/// Stored credentials.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Auth {
    Bearer { token: String },
    Basic { username: String, password: String },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer { .. } => f.write_str("Bearer(********)"),
            Self::Basic { username, .. } => write!(f, "Basic({username}:********)"),
        }
    }
}

impl Auth {
    /// What the API may show of the credentials: their type, and a basic username.
    pub fn view(&self) -> AuthView {
        match self {
            Self::Bearer { .. } => AuthView {
                kind: "bearer".into(),
                username: None,
            },
            Self::Basic { username, .. } => AuthView {
                kind: "basic".into(),
                username: Some(username.clone()),
            },
        }
    }
}

/// The stored credentials as shown: never the secret itself.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuthView {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// The settings of a source that may be shown, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_match: Option<String>,
}

/// What to do with the stored credentials on a write.
#[derive(Debug, Clone)]
pub enum AuthChange {
    Keep,
    Set(Option<Auth>),
}

/// A validated input, ready to store.
#[derive(Debug, Clone)]
pub struct ValidSource {
    pub name: String,
    pub kind: SourceKind,
    pub settings: Settings,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub enabled: bool,
    pub auth: AuthChange,
    /// A new log-hook token, when one was given.
    pub log_hook_token: Option<Secret>,
}

impl SourceInput {
    /// Checks every field and answers all problems at once.
    pub fn validate(self) -> Result<ValidSource, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut problem =
            |field: &str, message: String| errors.push(FieldError::new(field, message));

        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            problem("name", format!("must be 1-{MAX_NAME_CHARS} characters"));
        } else if name.chars().any(char::is_control) {
            problem("name", "must not contain control characters".into());
        }
        if let Err(message) = check_url(&self.url) {
            problem("url", message);
        }
        let interval_ms = self.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS);
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&interval_ms) {
            problem(
                "interval_ms",
                format!("must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}"),
            );
        }
        let timeout_ms = self
            .timeout_ms
            .unwrap_or(DEFAULT_TIMEOUT_MS.min(interval_ms));
        if timeout_ms < MIN_TIMEOUT_MS || timeout_ms > interval_ms {
            problem(
                "timeout_ms",
                format!("must be at least {MIN_TIMEOUT_MS} and at most interval_ms"),
            );
        }

        let auth = match self.auth {
            None => AuthChange::Keep,
            Some(AuthInput::None) => AuthChange::Set(None),
            Some(AuthInput::Bearer { token }) => {
                if token.is_empty() || token.len() > MAX_SECRET_BYTES || !is_header_safe(&token) {
                    problem(
                        "auth.token",
                        format!("must be 1-{MAX_SECRET_BYTES} visible characters"),
                    );
                }
                AuthChange::Set(Some(Auth::Bearer { token }))
            }
            Some(AuthInput::Basic { username, password }) => {
                if username.is_empty() || username.len() > 256 || username.contains(':') {
                    problem(
                        "auth.username",
                        "must be 1-256 characters without ':'".into(),
                    );
                }
                if password.len() > MAX_SECRET_BYTES {
                    problem(
                        "auth.password",
                        format!("must be at most {MAX_SECRET_BYTES} bytes"),
                    );
                }
                AuthChange::Set(Some(Auth::Basic { username, password }))
            }
        };

        let only_for = |kind: SourceKind| format!("only for {} sources", kind.as_str());
        if let Some(token) = self.log_hook_token.as_ref().map(Secret::expose) {
            if self.kind != SourceKind::Kumomta {
                problem("log_hook_token", only_for(SourceKind::Kumomta));
            } else if token.len() < MIN_LOG_TOKEN_BYTES
                || token.len() > MAX_SECRET_BYTES
                || !is_header_safe(token)
            {
                problem(
                    "log_hook_token",
                    format!("must be {MIN_LOG_TOKEN_BYTES}-{MAX_SECRET_BYTES} visible characters"),
                );
            }
        }

        let mut settings = Settings {
            url: self.url.trim().to_string(),
            ..Settings::default()
        };
        let prometheus_only = [
            ("allow", self.allow.is_some()),
            ("deny", self.deny.is_some()),
            ("labels", self.labels.is_some()),
        ];
        let probe_only = [
            ("expected_status", self.expected_status.is_some()),
            ("body_match", self.body_match.is_some()),
        ];
        if self.kind != SourceKind::Prometheus {
            for (field, given) in prometheus_only {
                if given {
                    problem(field, only_for(SourceKind::Prometheus));
                }
            }
        }
        if self.kind != SourceKind::HttpProbe {
            for (field, given) in probe_only {
                if given {
                    problem(field, only_for(SourceKind::HttpProbe));
                }
            }
        }
        match self.kind {
            SourceKind::Kumomta => {}
            SourceKind::Prometheus => {
                let allow = self.allow.unwrap_or_default();
                let deny = self.deny.unwrap_or_default();
                for (field, list) in [("allow", &allow), ("deny", &deny)] {
                    if list.len() > MAX_LIST_ITEMS {
                        problem(field, format!("at most {MAX_LIST_ITEMS} patterns"));
                    }
                    for (index, pattern) in list.iter().enumerate() {
                        if pattern.is_empty() || pattern.len() > MAX_PATTERN_BYTES {
                            problem(
                                &format!("{field}[{index}]"),
                                format!("must be 1-{MAX_PATTERN_BYTES} bytes"),
                            );
                        }
                    }
                }
                if let Err(message) = NameFilter::new(&allow, &deny) {
                    problem("allow", message);
                }
                let labels = self.labels.unwrap_or_default();
                if labels.len() > MAX_LABELS {
                    problem("labels", format!("at most {MAX_LABELS} labels"));
                } else if let Err(message) = crate::series::validate_labels(&labels) {
                    problem("labels", message);
                }
                settings.allow = allow;
                settings.deny = deny;
                settings.labels = labels;
            }
            SourceKind::HttpProbe => {
                let expected = self.expected_status.unwrap_or(200);
                if !(100..=599).contains(&expected) {
                    problem("expected_status", "must be an HTTP status, 100-599".into());
                }
                if let Some(pattern) = &self.body_match {
                    if pattern.is_empty() || pattern.len() > MAX_PATTERN_BYTES {
                        problem("body_match", format!("must be 1-{MAX_PATTERN_BYTES} bytes"));
                    } else if let Err(e) = regex::Regex::new(pattern) {
                        problem("body_match", format!("not a regular expression: {e}"));
                    }
                }
                settings.expected_status = Some(expected);
                settings.body_match = self.body_match;
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ValidSource {
            name,
            kind: self.kind,
            settings,
            interval_ms,
            timeout_ms,
            enabled: self.enabled.unwrap_or(true),
            auth,
            log_hook_token: self.log_hook_token,
        })
    }
}

/// An http(s) URL without credentials (they belong in `auth`, where they are kept
/// secret: a URL is shown and may appear in error messages).
pub fn check_url(url: &str) -> Result<(), String> {
    let url = url.trim();
    if url.is_empty() || url.len() > MAX_URL_BYTES {
        return Err(format!("must be 1-{MAX_URL_BYTES} bytes"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be http:// or https://".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not hold credentials; use auth".into());
    }
    Ok(())
}

/// Visible ASCII only, so the value can go in an HTTP header as it is.
fn is_header_safe(value: &str) -> bool {
    value.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The last poll of a source.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Outcome {
    pub polled_at: DateTime<Utc>,
    /// How long the poll took.
    pub latency_ms: Option<f64>,
    /// True when the poll succeeded (a probe that found its target down is a success of
    /// the poll; its result is in the probe's series and health).
    pub ok: bool,
    /// Why the poll failed.
    pub error: Option<String>,
    /// Failures in a row; the poller backs off while this grows.
    pub consecutive_failures: i32,
}

/// A source as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    pub id: Uuid,
    pub name: String,
    pub kind: SourceKind,
    pub url: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub enabled: bool,
    /// The kind of stored credentials, never the secret; null when none.
    pub auth: Option<AuthView>,
    /// kumomta: whether the log hook can be used (a token is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_hook_token_set: Option<bool>,
    /// kumomta: where kumod's log hook should POST.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_hook_path: Option<String>,
    /// Only in the answer to the creation that generated it: keep it, it is not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_hook_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_match: Option<String>,
    /// `api`, or `config` for the default KumoMTA source made from `KUMOMTA_API_URL`.
    pub origin: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Null until first polled.
    pub last_outcome: Option<Outcome>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(value: serde_json::Value) -> SourceInput {
        serde_json::from_value(value).expect("input shape")
    }

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_and_kind_specific_fields() {
        let valid = input(json!({"name":"kumo","kind":"kumomta","url":"http://kumod:8000"}))
            .validate()
            .expect("valid");
        assert_eq!((valid.interval_ms, valid.timeout_ms), (5000, 4000));
        assert!(valid.enabled);

        let short =
            input(json!({"name":"p","kind":"http_probe","url":"https://x","interval_ms":1000}))
                .validate()
                .expect("valid");
        assert_eq!(
            (short.timeout_ms, short.settings.expected_status),
            (1000, Some(200))
        );

        let errors = input(json!({
            "name":"", "kind":"kumomta", "url":"ftp://x", "interval_ms": 10, "timeout_ms": 50,
            "allow":["a"], "expected_status": 200, "log_hook_token": "short"
        }))
        .validate()
        .expect_err("invalid");
        assert_eq!(
            fields(errors),
            [
                "name",
                "url",
                "interval_ms",
                "timeout_ms",
                "log_hook_token",
                "allow",
                "expected_status"
            ]
        );
    }

    #[test]
    fn urls_must_not_carry_credentials_and_patterns_must_compile() {
        let errors = input(json!({
            "name":"t", "kind":"prometheus", "url":"http://user:pw@host/metrics",
            "allow":["("], "labels": {"0bad": "x"}
        }))
        .validate()
        .expect_err("invalid");
        assert_eq!(fields(errors), ["url", "allow", "labels"]);
        let errors = input(json!({"name":"p","kind":"http_probe","url":"http://h","body_match":"(", "expected_status": 42}))
            .validate()
            .expect_err("invalid");
        assert_eq!(fields(errors), ["expected_status", "body_match"]);
    }

    #[test]
    fn secrets_are_masked_in_debug() {
        let auth = Auth::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
        let input = input(
            json!({"name":"k","kind":"kumomta","url":"http://k","auth":{"type":"bearer","token":"s3cret"}}),
        );
        assert!(!format!("{input:?}").contains("s3cret"));
    }
}
