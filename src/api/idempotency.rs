//! `Idempotency-Key` for mutations (api.md, "Conventions"): replaying the same key
//! returns the first answer instead of doing the work again.
//!
//! Keys are scoped to the caller (tenant and subject). The first request with a key
//! claims it (a row with no status); its answer is stored when it completes, unless it
//! is a 5xx, which frees the key for a retry. A second request with the same key gets
//! the stored answer (`Idempotent-Replayed: true`), 409 while the first is still
//! running, or 422 `idempotency_key_reused` when its method, path or body differ.
//! Keys expire after 24 hours.

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::{Caller, bearer_token};
use crate::sql;
use crate::store::{DbTime, Store};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use sha2::{Digest, Sha256};

pub const HEADER: &str = "idempotency-key";
const KEEP: Duration = Duration::hours(24);
/// Stored answers larger than this are not kept (mutations answer small documents).
const MAX_STORED_BODY: usize = 1024 * 1024;

pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mutating = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let Some(key) = request.headers().get(HEADER).cloned() else {
        return next.run(request).await;
    };
    if !mutating {
        return next.run(request).await;
    }
    let key = match key
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
    {
        Some(key) => key.to_string(),
        None => {
            return ApiError::BadRequest(
                "Idempotency-Key must be 1-255 visible ASCII characters".into(),
            )
            .into_response();
        }
    };
    // The key belongs to the caller, so the token is verified here; the handler reuses
    // the result. Without a token the handler answers 401 itself.
    let Some(token) = bearer_token(request.headers()).map(str::to_string) else {
        return next.run(request).await;
    };
    let caller = match state.auth.verify(&token).await {
        Ok(identity) => Caller(identity),
        Err(e) => return ApiError::from(e).into_response(),
    };
    match with_key(&state, caller, key, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn with_key(
    state: &AppState,
    caller: Caller,
    key: String,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let limit = state.config.server.body_limit_bytes;
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit })?;
    let hash = request_hash(
        &parts.method,
        parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""),
        &body,
    );
    let scope = Scope {
        tenant: caller.tenant.clone(),
        subject: caller.sub.clone(),
        key,
    };
    let stale_after =
        Duration::from_std(state.config.server.request_timeout * 2).unwrap_or(Duration::minutes(1));
    match claim(&state.store, &scope, &hash, stale_after).await? {
        Claimed::New => {}
        Claimed::Replay {
            status,
            content_type,
            body,
        } => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = axum::http::StatusCode::from_u16(status as u16)
                .unwrap_or(axum::http::StatusCode::OK);
            if let Some(content_type) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        Claimed::InProgress => {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still being processed".into(),
            ));
        }
        Claimed::Mismatch => {
            return Err(ApiError::Unprocessable {
                code: "idempotency_key_reused",
                detail: "this Idempotency-Key was used for a different request".into(),
            });
        }
    }

    parts.extensions.insert(caller);
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, MAX_STORED_BODY).await {
        Ok(body) => body,
        Err(_) => {
            release(&state.store, &scope).await?;
            return Err(ApiError::Internal(anyhow::anyhow!(
                "response too large to keep for idempotency"
            )));
        }
    };
    if parts.status.is_server_error() {
        release(&state.store, &scope).await?;
    } else {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        complete(
            &state.store,
            &scope,
            parts.status.as_u16() as i16,
            content_type,
            &body,
        )
        .await?;
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

fn request_hash(method: &Method, path_and_query: &str, body: &Bytes) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(path_and_query.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Scope {
    tenant: String,
    subject: String,
    key: String,
}

enum Claimed {
    New,
    Replay {
        status: i16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    InProgress,
    Mismatch,
}

type Existing = (
    String,
    Option<i16>,
    Option<String>,
    Option<Vec<u8>>,
    DbTime,
    DbTime,
);

async fn claim(
    store: &Store,
    scope: &Scope,
    hash: &str,
    stale_after: Duration,
) -> Result<Claimed, ApiError> {
    let now = Utc::now();
    let mut tx = store.begin().await?;
    let inserted = sql!(
        tx.db(),
        exec,
        "INSERT INTO idempotency_keys (tenant, subject, key, request_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant, subject, key) DO NOTHING",
        &scope.tenant,
        &scope.subject,
        &scope.key,
        hash,
        DbTime(now),
        DbTime(now + KEEP)
    )?;
    if inserted == 1 {
        tx.commit().await?;
        return Ok(Claimed::New);
    }
    let (stored_hash, status, content_type, body, created_at, expires_at): Existing = sql!(
        tx.db(),
        one Existing,
        "SELECT request_hash, status, content_type, body, created_at, expires_at
         FROM idempotency_keys WHERE tenant = $1 AND subject = $2 AND key = $3",
        &scope.tenant,
        &scope.subject,
        &scope.key
    )?;
    let expired = expires_at.0 <= now;
    let abandoned = status.is_none() && created_at.0 + stale_after <= now;
    let outcome = if expired || abandoned {
        // An expired key is free again; a claim whose request never finished (its replica
        // died) is taken over.
        sql!(
            tx.db(),
            exec,
            "UPDATE idempotency_keys SET request_hash = $4, status = NULL, content_type = NULL,
                    body = NULL, created_at = $5, expires_at = $6
             WHERE tenant = $1 AND subject = $2 AND key = $3",
            &scope.tenant,
            &scope.subject,
            &scope.key,
            hash,
            DbTime(now),
            DbTime(now + KEEP)
        )?;
        Claimed::New
    } else if stored_hash != hash {
        Claimed::Mismatch
    } else {
        match status {
            None => Claimed::InProgress,
            Some(status) => Claimed::Replay {
                status,
                content_type,
                body: body.unwrap_or_default(),
            },
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

async fn complete(
    store: &Store,
    scope: &Scope,
    status: i16,
    content_type: Option<String>,
    body: &[u8],
) -> Result<(), ApiError> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        exec,
        "UPDATE idempotency_keys SET status = $4, content_type = $5, body = $6
         WHERE tenant = $1 AND subject = $2 AND key = $3",
        &scope.tenant,
        &scope.subject,
        &scope.key,
        status,
        content_type,
        body.to_vec()
    )?;
    Ok(())
}

async fn release(store: &Store, scope: &Scope) -> Result<(), ApiError> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        exec,
        "DELETE FROM idempotency_keys WHERE tenant = $1 AND subject = $2 AND key = $3 AND status IS NULL",
        &scope.tenant,
        &scope.subject,
        &scope.key
    )?;
    Ok(())
}
