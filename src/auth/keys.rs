//! Signing and verification keys, loaded once at start-up.

use super::{AuthError, Claims, Role};
use crate::config::{AuthConfig, JwtAlgorithm, Secret};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Config(String),
    #[error("cannot sign tokens: {0}")]
    Sign(String),
}

/// Verification keys (one, or a JWKS chosen by `kid`), the validation rules, and the
/// signing key when there is one.
pub struct Keys {
    algorithm: Algorithm,
    verify: Verify,
    sign: Option<EncodingKey>,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

enum Verify {
    One(DecodingKey),
    ByKid(HashMap<String, DecodingKey>),
}

impl Keys {
    /// Builds the keys from the configuration. `generated_secret` is embedded mode's own
    /// HS256 secret, used when no key is configured.
    pub fn from_config(
        config: &AuthConfig,
        generated_secret: Option<&Secret>,
    ) -> Result<Keys, KeyError> {
        let algorithm = match config.algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        };
        let (verify, sign) = match config.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = config
                    .jwt_secret
                    .as_ref()
                    .or(generated_secret)
                    .ok_or_else(|| KeyError::Config("JWT_SECRET is not set".into()))?;
                let bytes = secret.expose().as_bytes();
                (
                    Verify::One(DecodingKey::from_secret(bytes)),
                    Some(EncodingKey::from_secret(bytes)),
                )
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => {
                let verify = if let Some(path) = &config.jwks_file {
                    Verify::ByKid(load_jwks(path, algorithm)?)
                } else if let Some(path) = &config.public_key_file {
                    let pem = read(path)?;
                    let key = if algorithm == Algorithm::RS256 {
                        DecodingKey::from_rsa_pem(&pem)
                    } else {
                        DecodingKey::from_ed_pem(&pem)
                    }
                    .map_err(|e| {
                        KeyError::Config(format!("{}: not a valid public key: {e}", path.display()))
                    })?;
                    Verify::One(key)
                } else {
                    return Err(KeyError::Config(
                        "LOOKOUT_AUTH__PUBLIC_KEY_FILE or LOOKOUT_AUTH__JWKS_FILE is required"
                            .into(),
                    ));
                };
                let sign = match &config.private_key_file {
                    Some(path) => {
                        let pem = read(path)?;
                        Some(
                            if algorithm == Algorithm::RS256 {
                                EncodingKey::from_rsa_pem(&pem)
                            } else {
                                EncodingKey::from_ed_pem(&pem)
                            }
                            .map_err(|e| {
                                KeyError::Config(format!(
                                    "{}: not a valid private key: {e}",
                                    path.display()
                                ))
                            })?,
                        )
                    }
                    None => None,
                };
                (verify, sign)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway.as_secs();
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_aud = config.audience.is_some();
        if let Some(aud) = &config.audience {
            validation.set_audience(&[aud]);
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(Keys {
            algorithm,
            verify,
            sign,
            validation,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        })
    }

    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    pub fn can_sign(&self) -> bool {
        self.sign.is_some()
    }

    pub(super) fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        // Checked before jsonwebtoken sees the token so that the error names the problem.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed token or unsupported algorithm".into()))?;
        if header.alg != self.algorithm {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted (this server uses {:?})",
                header.alg, self.algorithm
            )));
        }
        let key = match &self.verify {
            Verify::One(key) => key,
            Verify::ByKid(keys) => header
                .kid
                .as_ref()
                .and_then(|kid| keys.get(kid))
                .ok_or_else(|| AuthError::Invalid("unknown key id (kid)".into()))?,
        };
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm not accepted".into()),
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("missing claim '{claim}'"))
                }
                ErrorKind::Json(e) => AuthError::Invalid(format!("bad claims: {e}")),
                _ => AuthError::Invalid("malformed token".into()),
            })
    }

    /// Signs a token for `sub` with a fresh `jti`, valid for `ttl`.
    pub fn issue(
        &self,
        sub: &str,
        role: Role,
        tenant: &str,
        ttl: Duration,
    ) -> Result<String, KeyError> {
        super::validate_tenant(tenant).map_err(KeyError::Config)?;
        if sub.is_empty() || sub.len() > 256 {
            return Err(KeyError::Config("sub must be 1-256 characters".into()));
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_string(),
            exp: now + ttl.as_secs() as i64,
            role,
            tenant: tenant.to_string(),
            jti: Some(uuid::Uuid::now_v7().to_string()),
            iat: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        self.encode(&claims)
    }

    pub(super) fn encode(&self, claims: &Claims) -> Result<String, KeyError> {
        let key = self.sign.as_ref().ok_or_else(|| {
            KeyError::Sign("no signing key: set LOOKOUT_AUTH__PRIVATE_KEY_FILE".into())
        })?;
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, key)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path)
        .map_err(|e| KeyError::Config(format!("cannot read {}: {e}", path.display())))
}

fn load_jwks(path: &Path, algorithm: Algorithm) -> Result<HashMap<String, DecodingKey>, KeyError> {
    let text = read(path)?;
    let set: JwkSet = serde_json::from_slice(&text)
        .map_err(|e| KeyError::Config(format!("{}: not a JWKS: {e}", path.display())))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if let Some(alg) = jwk.common.key_algorithm
            && alg.to_string() != format!("{algorithm:?}")
        {
            continue;
        }
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| KeyError::Config(format!("{}: key {kid}: {e}", path.display())))?;
        keys.insert(kid, key);
    }
    if keys.is_empty() {
        return Err(KeyError::Config(format!(
            "{}: no key with a kid for {algorithm:?}",
            path.display()
        )));
    }
    Ok(keys)
}
