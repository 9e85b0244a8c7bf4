//! Authentication and roles (api.md, "Auth").
//!
//! Every `/api` route and every WebSocket takes a JWT. The configured algorithm is the
//! only one accepted: a token that names another (`none`, or HS256 signed with an RSA
//! public key as the secret) is refused before its signature is looked at.

mod extract;
mod keys;
mod limit;

pub use extract::{Admin, Caller, Operator, Viewer, bearer_token};
pub use keys::{KeyError, Keys};
pub use limit::CallerLimiter;

use crate::cluster::Revocations;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// What a caller may do. Viewer < Operator < Admin; Agent is apart (it may only
/// connect as an agent and push its metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Agent,
}

impl Role {
    /// Whether this role may do what `required` may.
    pub fn allows(self, required: Role) -> bool {
        match (self, required) {
            (Role::Agent, Role::Agent) => true,
            (Role::Agent, _) | (_, Role::Agent) => false,
            (have, need) => have.rank() >= need.rank(),
        }
    }

    fn rank(self) -> u8 {
        match self {
            Role::Viewer => 1,
            Role::Operator => 2,
            Role::Admin => 3,
            Role::Agent => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            "agent" => Ok(Role::Agent),
            other => Err(format!(
                "unknown role '{other}': use viewer, operator, admin or agent"
            )),
        }
    }
}

/// The tenant of tokens that name none.
pub const DEFAULT_TENANT: &str = "default";

fn default_tenant() -> String {
    DEFAULT_TENANT.to_string()
}

/// The claims Lookout reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    pub role: Role,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Why a token was refused. The message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("cannot check the token now: {0}")]
    Unavailable(String),
}

/// Verifies tokens and, when a signing key is configured, issues them.
pub struct Auth {
    keys: Keys,
    revocations: Revocations,
    limiter: CallerLimiter,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub sub: String,
    pub role: Role,
    pub tenant: String,
    pub jti: Option<String>,
    pub expires_at: DateTime<Utc>,
}

impl Auth {
    pub fn new(keys: Keys, revocations: Revocations, limiter: CallerLimiter) -> Auth {
        Auth {
            keys,
            revocations,
            limiter,
        }
    }

    /// `Err(wait)` when this caller has used up its request rate on this replica.
    pub fn admit(&self, identity: &Identity) -> Result<(), Duration> {
        self.limiter.check(identity)
    }

    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Verifies signature, algorithm, expiry, issuer/audience (when configured), claims'
    /// shape and revocation.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let claims = self.keys.decode(token)?;
        validate_tenant(&claims.tenant).map_err(AuthError::Invalid)?;
        if claims.sub.is_empty() || claims.sub.len() > 256 {
            return Err(AuthError::Invalid("sub must be 1-256 characters".into()));
        }
        if let Some(jti) = &claims.jti {
            let revoked = self
                .revocations
                .is_revoked(&claims.tenant, jti)
                .await
                .map_err(|e| AuthError::Unavailable(e.to_string()))?;
            if revoked {
                return Err(AuthError::Revoked);
            }
        }
        Ok(Identity {
            sub: claims.sub,
            role: claims.role,
            tenant: claims.tenant,
            jti: claims.jti,
            expires_at: Utc
                .timestamp_opt(claims.exp, 0)
                .single()
                .unwrap_or_default(),
        })
    }

    /// Signs a new token (what `lookout token issue` prints).
    pub fn issue(
        &self,
        sub: &str,
        role: Role,
        tenant: &str,
        ttl: Duration,
    ) -> Result<String, KeyError> {
        self.keys.issue(sub, role, tenant, ttl)
    }
}

/// Tenants are short identifiers: `[A-Za-z0-9_.-]{1,64}`.
pub fn validate_tenant(tenant: &str) -> Result<(), String> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("tenant must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_order() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Agent.allows(Role::Viewer));
        assert!(!Role::Admin.allows(Role::Agent));
        assert!(Role::Agent.allows(Role::Agent));
    }
}
