//! The one error type of the HTTP edge, answered as `application/problem+json`
//! (RFC 9457) with a stable machine-readable `code` (api.md, "Conventions").
//!
//! Internal errors are logged with their cause chain and answered with an opaque 500:
//! no SQL, no Redis text, no secret ever reaches a response.

use crate::auth::AuthError;
use crate::bus::BusError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;

pub use crate::validation::FieldError;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `/problems/<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// Stable machine-readable code, e.g. `validation`, `not_found`.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Per-field problems (422).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A stable code other than `validation` for a 422 (e.g. `idempotency_key_reused`).
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    #[error("{detail}")]
    RateLimited {
        code: &'static str,
        detail: String,
        retry_after: Duration,
    },
    #[error("{what} is unavailable")]
    Unavailable {
        what: &'static str,
        retry_after: Duration,
    },
    #[error("internal error")]
    Internal(anyhow::Error),
}

impl ApiError {
    /// A 422 about one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(AuthError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) | ApiError::Unprocessable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(AuthError::Unavailable(_)) => "unavailable",
            ApiError::Unauthorized(AuthError::Expired) => "token_expired",
            ApiError::Unauthorized(AuthError::Revoked) => "token_revoked",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Validation(_) => "validation",
            ApiError::Unprocessable { code, .. } | ApiError::RateLimited { code, .. } => code,
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            ApiError::Internal(_) => None,
            ApiError::Unauthorized(AuthError::Unavailable(_)) => {
                Some("cannot check the token now; try again".into())
            }
            ApiError::Validation(errors) if errors.len() == 1 => {
                Some(format!("{}: {}", errors[0].field, errors[0].message))
            }
            ApiError::Validation(errors) => Some(format!("{} fields are invalid", errors.len())),
            other => Some(other.to_string()),
        }
    }
}

/// A problem+json response for `status` with `code` and `detail`; also used for errors
/// that do not come from a handler (unknown routes, timeouts, oversized bodies).
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: Option<String>,
    errors: Vec<FieldError>,
) -> Response {
    let problem = Problem {
        kind: format!("/problems/{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        status: status.as_u16(),
        code: code.to_string(),
        detail,
        errors,
    };
    let mut response = (status, Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "request failed");
        }
        let retry_after = match &self {
            ApiError::RateLimited { retry_after, .. }
            | ApiError::Unavailable { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            ApiError::Unauthorized(AuthError::Unavailable(_)) => Some(1),
            _ => None,
        };
        let detail = self.detail();
        let code = self.code();
        let errors = match self {
            ApiError::Validation(errors) => errors,
            _ => Vec::new(),
        };
        let mut response = problem_response(status, code, detail, errors);
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<anyhow::Error> for ApiError {
    /// Keeps the meaning of a store or bus error that travelled inside an `anyhow`.
    fn from(error: anyhow::Error) -> Self {
        let error = match error.downcast::<sqlx::Error>() {
            Ok(sqlx_error) => return ApiError::from(sqlx_error),
            Err(error) => error,
        };
        match error.downcast::<BusError>() {
            Ok(bus_error) => ApiError::from(bus_error),
            Err(error) => ApiError::Internal(error),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        ApiError::Unauthorized(error)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::store::is_unavailable(&error) {
            tracing::warn!(error = %error, "database unavailable");
            ApiError::Unavailable {
                what: "database",
                retry_after: Duration::from_secs(2),
            }
        } else if crate::store::is_unique_violation(&error) {
            ApiError::Conflict("an object with this identity already exists".into())
        } else if matches!(error, sqlx::Error::RowNotFound) {
            ApiError::NotFound
        } else {
            ApiError::Internal(anyhow::Error::new(error))
        }
    }
}

impl From<BusError> for ApiError {
    fn from(error: BusError) -> Self {
        match error {
            BusError::Unavailable(reason) => {
                tracing::warn!(error = %reason, "event bus unavailable");
                ApiError::Unavailable {
                    what: "event bus",
                    retry_after: Duration::from_secs(2),
                }
            }
            BusError::Invalid(message) => ApiError::BadRequest(message),
        }
    }
}
