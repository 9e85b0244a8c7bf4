//! `ApiJson<T>`: Lookout's JSON body extractor and response wrapper.
//!
//! Unlike axum's `Json`, a body that is valid JSON of the wrong shape is answered 422
//! with the path of the offending field (`condition.threshold: invalid type: string,
//! expected f64`), malformed JSON is 400, an oversized body 413, and every answer is
//! problem+json.

use super::error::{ApiError, FieldError};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        check_content_type(request.headers())?;
        let limit = body_limit_of(&request);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit }
                } else {
                    ApiError::BadRequest(format!("cannot read the request body: {rejection}"))
                }
            })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body with the error mapping of [`ApiJson`]. `T` may borrow from `bytes`.
pub fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = strip_position(&inner.to_string());
                ApiError::Validation(vec![FieldError::new(field_path(&path, &message), message)])
            }
            _ => ApiError::BadRequest(format!("malformed JSON: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// The path of the field at fault. serde reports a missing field at its parent's path,
/// so the field's own name is taken from the message.
fn field_path(path: &str, message: &str) -> String {
    let parent = if path == "." { "" } else { path };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (parent, missing) {
        ("", Some(name)) => name.to_string(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        ("", None) => "body".to_string(),
        (parent, None) => parent.to_string(),
    }
}

/// serde_json appends " at line 1 column 42" to data errors; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(pos) => message[..pos].to_string(),
        None => message.to_string(),
    }
}

fn check_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        // Lenient: curl -d without -H still works.
        return Ok(());
    };
    let mime = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let is_json = mime.eq_ignore_ascii_case("application/json")
        || (mime.starts_with("application/") && mime.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "expected Content-Type: application/json, got '{mime}'"
        )))
    }
}

/// The body limit that applies to this request, to name it in a 413.
fn body_limit_of(request: &Request) -> usize {
    request
        .extensions()
        .get::<BodyLimit>()
        .map(|l| l.0)
        .unwrap_or(super::DEFAULT_BODY_LIMIT)
}

/// Request extension carrying the body limit configured for the route.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Rule {
        name: String,
        condition: Condition,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Condition {
        threshold: f64,
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        let err = parse::<Rule>(br#"{"name":"x","condition":{"threshold":"high"}}"#).unwrap_err();
        match err {
            ApiError::Validation(errors) => {
                assert_eq!(errors[0].field, "condition.threshold");
                assert!(
                    errors[0].message.contains("expected f64"),
                    "{}",
                    errors[0].message
                );
            }
            other => panic!("expected validation, got {other:?}"),
        }
        match parse::<Rule>(br#"{"name":"x","condition":{}}"#).unwrap_err() {
            ApiError::Validation(errors) => assert_eq!(errors[0].field, "condition.threshold"),
            other => panic!("expected validation, got {other:?}"),
        }
        match parse::<Rule>(br#"{"condition":{"threshold":1}}"#).unwrap_err() {
            ApiError::Validation(errors) => assert_eq!(errors[0].field, "name"),
            other => panic!("expected validation, got {other:?}"),
        }
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        assert!(matches!(
            parse::<Rule>(b"{\"name\":"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse::<Rule>(b"not json"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse::<Rule>(br#"{"name":"x","condition":{"threshold":1}} trailing"#),
            Err(ApiError::BadRequest(_))
        ));
    }
}
