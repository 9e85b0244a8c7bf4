//! Axum extractors: a handler that takes [`Caller`] (any role) or a role extractor
//! ([`Viewer`], [`Operator`], [`Admin`]) cannot run without a valid token of that role.
//! A missing or bad token is 401, a role too low 403: never an anonymous call.

use super::{AuthError, Identity, Role};
use crate::api::error::ApiError;
use crate::app::AppState;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use std::ops::Deref;

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// An authenticated caller of any role.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl Deref for Caller {
    type Target = Identity;
    fn deref(&self) -> &Identity {
        &self.0
    }
}

impl Caller {
    /// 403 unless the caller's role allows `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role.allows(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this requires the {role} role (token has {})",
                self.role
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Middleware (idempotency) may have verified the token already.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let token =
            bearer_token(&parts.headers).ok_or(ApiError::Unauthorized(AuthError::Missing))?;
        let identity = state.auth.verify(token).await?;
        state
            .auth
            .admit(&identity)
            .map_err(|wait| ApiError::RateLimited {
                code: "rate_limited",
                detail: "too many requests from this caller; slow down".into(),
                retry_after: wait,
            })?;
        let caller = Caller(identity);
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Caller);

        impl Deref for $name {
            type Target = Identity;
            fn deref(&self) -> &Identity {
                &self.0.0
            }
        }

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
                let caller = Caller::from_request_parts(parts, state).await?;
                caller.require($role)?;
                Ok($name(caller))
            }
        }
    };
}

role_extractor!(
    /// A caller with at least the viewer role (not an agent).
    Viewer,
    Role::Viewer
);
role_extractor!(
    /// A caller with at least the operator role.
    Operator,
    Role::Operator
);
role_extractor!(
    /// A caller with the admin role.
    Admin,
    Role::Admin
);
