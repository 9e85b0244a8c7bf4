//! Query-string parsing for the read routes: repeated `match` parameters, times given
//! as RFC 3339 or epoch milliseconds, durations as `30s`/`5m`, and a 400 for a
//! parameter a route does not know (a typo must not silently widen a query).

use crate::api::ApiError;
use crate::series::{self, Matcher};
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The query string as name/value pairs, in order, repeated names kept.
pub struct Pairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Pairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))?;
        Ok(Pairs(pairs))
    }
}

/// Longest text accepted in one parameter.
const MAX_PARAM_BYTES: usize = 4096;
/// Most `match` parameters in one query.
const MAX_MATCHERS: usize = 20;

impl Pairs {
    /// 400 when a parameter is not one of `known`, or is too long; 422 when a
    /// single-valued one is given twice.
    pub fn check(&self, known: &[&str]) -> Result<(), ApiError> {
        for (i, (name, value)) in self.0.iter().enumerate() {
            if !known.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter '{}'; this route takes: {}",
                    name.chars().take(40).collect::<String>(),
                    known.join(", ")
                )));
            }
            if value.len() > MAX_PARAM_BYTES {
                return Err(ApiError::field(
                    name.clone(),
                    format!("is longer than {MAX_PARAM_BYTES} bytes"),
                ));
            }
            if name != "match" && self.0[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::field(name.clone(), "is given more than once"));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// `name`, when given, must be a valid metric name.
    pub fn metric_name(&self) -> Result<Option<String>, ApiError> {
        self.get("name")
            .map(|name| {
                series::validate_metric_name(name)
                    .map(|()| name.to_string())
                    .map_err(|e| ApiError::field("name", e))
            })
            .transpose()
    }

    /// Every `match` parameter: `label=value`, `label!=value`, `label=~regex`,
    /// `label!~regex`.
    pub fn matchers(&self) -> Result<Vec<Matcher>, ApiError> {
        let texts: Vec<&str> = self
            .0
            .iter()
            .filter(|(n, _)| n == "match")
            .map(|(_, v)| v.as_str())
            .collect();
        if texts.len() > MAX_MATCHERS {
            return Err(ApiError::field(
                "match",
                format!("at most {MAX_MATCHERS} matchers"),
            ));
        }
        texts
            .into_iter()
            .map(|t| Matcher::parse(t).map_err(|e| ApiError::field("match", e.to_string())))
            .collect()
    }

    /// `from` and `to` (defaults: `to` = now, `from` = `to` − `default_span`); `from`
    /// must be before `to`.
    pub fn range(
        &self,
        now: DateTime<Utc>,
        default_span: Duration,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
        let to = self.time("to")?.unwrap_or(now);
        let span = chrono::Duration::from_std(default_span).unwrap_or(chrono::Duration::hours(1));
        let from = self.time("from")?.unwrap_or(to - span);
        if from >= to {
            return Err(ApiError::field("from", "must be before to"));
        }
        Ok((from, to))
    }

    fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        if let Ok(ms) = text.parse::<i64>() {
            // PostgreSQL's timestamptz covers 4713 BC to 294276 AD; keep well inside.
            if !(0..=253_402_300_799_000).contains(&ms) {
                return Err(ApiError::field(name, "is out of range"));
            }
            return Ok(Some(crate::store::DbTime::from_millis(ms).0));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                ApiError::field(
                    name,
                    "must be an RFC 3339 time (2026-11-21T10:00:00Z) or epoch milliseconds",
                )
            })
            .and_then(|t| match t {
                Some(t) if within_storable_years(&t) => Ok(Some(t)),
                _ => Err(ApiError::field(name, "is out of range")),
            })
    }

    /// A duration such as `30s`, `5m`, `1h`, or a number of seconds.
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let parsed = match text.parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs)),
            Err(_) => humantime::parse_duration(text),
        };
        parsed
            .map(Some)
            .map_err(|_| ApiError::field(name, "must be a duration such as 30s, 5m or 1h"))
    }

    /// `limit` between 1 and `max` (default `default`).
    pub fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::field(
                    "limit",
                    format!("must be between 1 and {max}"),
                )),
            },
        }
    }

    /// The decoded `cursor`.
    pub fn cursor<K: serde::de::DeserializeOwned>(&self) -> Result<Option<K>, ApiError> {
        crate::api::paging::PageParams {
            limit: None,
            cursor: self.get("cursor").map(str::to_string),
        }
        .after()
    }
}

/// Within what both engines store.
fn within_storable_years(t: &DateTime<Utc>) -> bool {
    use chrono::Datelike;
    (1970..=9999).contains(&t.year())
}
