//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>) for webhook channels.
//!
//! A receiver verifies that a request came from us and was not replayed by recomputing
//! `HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")` and checking the timestamp
//! against its clock. The three headers are:
//!
//! * `webhook-id`: the notification id, stable across retries so receivers can deduplicate;
//! * `webhook-timestamp`: Unix seconds of *this attempt* (a retry gets a fresh one, or it
//!   would fall outside the receiver's tolerance window);
//! * `webhook-signature`: `v1,<base64 signature>`; the spec allows a space-separated list
//!   (for key rotation), which [`verify`] accepts.
//!
//! Secrets are written `whsec_<base64 of 24..=64 random bytes>`, as the spec and the
//! official libraries present them.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// The prefix that marks a symmetric Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest key the spec allows (192 bits).
pub const MIN_KEY_BYTES: usize = 24;
/// Longest key the spec allows (512 bits).
pub const MAX_KEY_BYTES: usize = 64;
/// Header names, exactly as the spec spells them.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// The replay window the official libraries use; receivers of ours may pick their own.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Base64 that accepts secrets with or without `=` padding, since people paste both.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A webhook signing key. Its `Debug` output never shows the key, so it can sit in
/// structs that get logged.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`. The prefix is optional, as in the official libraries, so a
    /// secret copied from a receiver that shows the bare base64 also works; either way the
    /// decoded key must be 24 to 64 bytes long, as the spec requires.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        if encoded.is_empty() {
            return Err("webhook secret is empty: expected whsec_<base64>".into());
        }
        let key = LENIENT_BASE64.decode(encoded).map_err(|_| {
            "webhook secret is not valid base64: expected whsec_<base64>".to_string()
        })?;
        Self::from_bytes(key)
    }

    /// Uses raw key bytes (24 to 64 of them).
    pub fn from_bytes(key: Vec<u8>) -> Result<Self, String> {
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(format!(
                "webhook secret decodes to {} bytes; Standard Webhooks keys are \
                 {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes",
                key.len()
            ));
        }
        Ok(WebhookSecret { key })
    }

    /// A fresh random 32-byte key, for a channel created without a secret of its own.
    pub fn generate(rng: &mut impl rand::CryptoRng) -> Self {
        let mut key = vec![0u8; 32];
        rng.fill_bytes(&mut key);
        WebhookSecret { key }
    }

    /// The `whsec_…` form, to store the secret and to show it to its owner once.
    pub fn to_whsec_string(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, msg_id: &str, timestamp_s: i64, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_s.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

/// The `webhook-signature` value: `v1,<base64(HMAC-SHA256(key, "{msg_id}.{timestamp_s}.{body}"))>`.
///
/// `msg_id` must not contain `.` (the spec's warning against ambiguous signed content);
/// ours are UUIDs. `body` must be the exact bytes sent.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp_s: i64, body: &[u8]) -> String {
    let signature = secret
        .mac(msg_id, timestamp_s, body)
        .finalize()
        .into_bytes();
    format!("v1,{}", STANDARD.encode(signature))
}

/// The three Standard Webhooks headers for one attempt, as `(name, value)` pairs.
pub fn headers(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp_s: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    [
        (HEADER_ID, msg_id.to_string()),
        (HEADER_TIMESTAMP, timestamp_s.to_string()),
        (HEADER_SIGNATURE, sign(secret, msg_id, timestamp_s, body)),
    ]
}

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("webhook-timestamp is not an integer number of seconds")]
    InvalidTimestamp,
    #[error("webhook-timestamp is {skew_s} s away from now, outside the tolerance")]
    OutsideTolerance { skew_s: i64 },
    #[error("no v1 signature in webhook-signature matches")]
    NoMatchingSignature,
}

/// Checks a received request the way a Standard Webhooks receiver does: the timestamp must
/// be within `tolerance` of `now_s` (either side), and one of the space-separated `v1,…`
/// signatures must match, compared in constant time.
pub fn verify(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_s: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let timestamp_s: i64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    let skew_s = now_s.saturating_sub(timestamp_s);
    let tolerance_s = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if skew_s.unsigned_abs() > tolerance_s.unsigned_abs() {
        return Err(VerifyError::OutsideTolerance { skew_s });
    }
    let expected = secret.mac(msg_id, timestamp_s, body);
    let matches = signature_header
        .split(' ')
        .filter_map(|candidate| candidate.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, encoded)| STANDARD.decode(encoded).ok())
        // `verify_slice` compares in constant time.
        .any(|candidate| expected.clone().verify_slice(&candidate).is_ok());
    if matches {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published in the Standard Webhooks reference libraries' test suites (Go and Rust).
    const VECTORS: &[(&str, &str, i64, &str, &str)] = &[
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        (
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ),
    ];

    #[test]
    fn matches_the_published_test_vectors() {
        for (secret, id, ts, body, expected) in VECTORS {
            let secret = WebhookSecret::parse(secret).unwrap();
            assert_eq!(sign(&secret, id, *ts, body.as_bytes()), *expected, "{id}");
            verify(
                &secret,
                id,
                &ts.to_string(),
                expected,
                body.as_bytes(),
                *ts,
                DEFAULT_TOLERANCE,
            )
            .unwrap();
        }
    }

    #[test]
    fn matches_an_independent_hmac_computation() {
        // HMAC-SHA256 from its definition (RFC 2104) on top of plain SHA-256, so that a
        // mistake in how `sign` drives the hmac crate would show.
        fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
            use sha2::Digest;
            let mut block = [0u8; 64];
            if key.len() > 64 {
                block[..32].copy_from_slice(&Sha256::digest(key));
            } else {
                block[..key.len()].copy_from_slice(key);
            }
            let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
            let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
            let inner = Sha256::digest([ipad.as_slice(), message].concat());
            Sha256::digest([opad.as_slice(), inner.as_slice()].concat()).to_vec()
        }
        let key: Vec<u8> = (0u8..40).collect();
        let secret = WebhookSecret::from_bytes(key.clone()).unwrap();
        let id = "0192f0c1-0000-7000-8000-000000000001";
        let body = br#"{"version":"1","alerts":[]}"#;
        let expected = format!(
            "v1,{}",
            STANDARD.encode(hmac_sha256(
                &key,
                format!("{id}.1700000000.{{\"version\":\"1\",\"alerts\":[]}}").as_bytes()
            ))
        );
        assert_eq!(sign(&secret, id, 1_700_000_000, body), expected);
    }

    #[test]
    fn headers_carry_id_timestamp_and_signature() {
        let secret = WebhookSecret::parse(VECTORS[0].0).unwrap();
        let [id, ts, sig] = headers(&secret, "abc", 1614265330, b"{}");
        assert_eq!(id, ("webhook-id", "abc".to_string()));
        assert_eq!(ts, ("webhook-timestamp", "1614265330".to_string()));
        assert_eq!(sig.0, "webhook-signature");
        assert_eq!(sig.1, sign(&secret, "abc", 1614265330, b"{}"));
    }

    #[test]
    fn verify_rejects_tampering_and_replays_and_accepts_rotation_lists() {
        let secret = WebhookSecret::parse(VECTORS[0].0).unwrap();
        let other = WebhookSecret::parse(VECTORS[1].0).unwrap();
        let ts = 1_700_000_000;
        let good = sign(&secret, "id1", ts, b"body");
        let stale = sign(&other, "id1", ts, b"body");
        let check = |id: &str, ts_header: &str, sig: &str, body: &[u8], now: i64| {
            verify(&secret, id, ts_header, sig, body, now, DEFAULT_TOLERANCE)
        };
        let ts_s = ts.to_string();
        assert_eq!(check("id1", &ts_s, &good, b"body", ts), Ok(()));
        assert_eq!(check("id1", &ts_s, &good, b"body", ts + 300), Ok(()));
        assert_eq!(check("id1", &ts_s, &good, b"body", ts - 300), Ok(()));
        assert_eq!(
            check(
                "id1",
                &ts_s,
                &format!("{stale} v1a,xyz {good}"),
                b"body",
                ts
            ),
            Ok(())
        );
        let no_match = Err(VerifyError::NoMatchingSignature);
        assert_eq!(check("id1", &ts_s, &good, b"bodY", ts), no_match);
        assert_eq!(check("id2", &ts_s, &good, b"body", ts), no_match);
        assert_eq!(check("id1", &ts_s, &stale, b"body", ts), no_match);
        assert_eq!(check("id1", &ts_s, "v1,!!!", b"body", ts), no_match);
        assert_eq!(
            check("id1", &ts_s, &good.replace("v1,", "v2,"), b"body", ts),
            no_match
        );
        assert_eq!(check("id1", &ts_s, "", b"body", ts), no_match);
        assert_eq!(
            check("id1", &ts_s, &good, b"body", ts + 301),
            Err(VerifyError::OutsideTolerance { skew_s: 301 })
        );
        assert_eq!(
            check("id1", &ts_s, &good, b"body", ts - 301),
            Err(VerifyError::OutsideTolerance { skew_s: -301 })
        );
        assert_eq!(
            check("id1", "soon", &good, b"body", ts),
            Err(VerifyError::InvalidTimestamp)
        );
        // Extreme values neither overflow nor panic.
        assert!(check("id1", &i64::MIN.to_string(), &good, b"body", i64::MAX).is_err());
    }

    #[test]
    fn parse_accepts_spec_secrets_and_explains_bad_ones() {
        let bare = WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let prefixed = WebhookSecret::parse(" whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        assert_eq!(bare, prefixed);
        assert_eq!(
            prefixed.to_whsec_string(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        );
        // Unpadded base64 of a 25-byte key.
        let unpadded = STANDARD.encode([7u8; 25]).trim_end_matches('=').to_string();
        assert!(WebhookSecret::parse(&unpadded).is_ok());

        for (bad, needle) in [
            ("", "empty"),
            ("whsec_", "empty"),
            ("whsec_not base64!", "base64"),
            ("whsec_c2hvcnQ=", "5 bytes"),
        ] {
            let err = WebhookSecret::parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
        assert!(WebhookSecret::from_bytes(vec![0; 65]).is_err());
        assert!(WebhookSecret::from_bytes(vec![0; 64]).is_ok());
    }

    #[test]
    fn debug_hides_the_key_and_generate_makes_usable_keys() {
        let secret = WebhookSecret::parse(VECTORS[0].0).unwrap();
        let printed = format!("{secret:?}");
        assert!(!printed.contains("MfKQ"), "{printed}");
        assert_eq!(printed, "WebhookSecret(redacted)");

        let generated = WebhookSecret::generate(&mut rand::rng());
        let round_trip = WebhookSecret::parse(&generated.to_whsec_string()).unwrap();
        assert_eq!(round_trip, generated);
        assert_ne!(generated, WebhookSecret::generate(&mut rand::rng()));
    }
}
