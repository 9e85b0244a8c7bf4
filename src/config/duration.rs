//! Serde forms of durations in settings: human strings (`30s`, `5m`, `7d`) everywhere,
//! plus bare numbers where the seed system used them (milliseconds for the `WS_*`
//! settings, seconds for `JWT_EXPIRES_IN`, as the Node.js libraries it used did).

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Number(u64),
    Text(String),
}

fn parse<'de, D: Deserializer<'de>>(
    deserializer: D,
    from_number: fn(u64) -> Duration,
) -> Result<Duration, D::Error> {
    match Raw::deserialize(deserializer)? {
        Raw::Number(n) => Ok(from_number(n)),
        Raw::Text(text) => {
            let text = text.trim();
            if let Ok(n) = text.parse::<u64>() {
                return Ok(from_number(n));
            }
            humantime::parse_duration(text).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration '{text}': {e} (use e.g. 500ms, 30s, 5m, 24h, 7d)"
                ))
            })
        }
    }
}

fn print<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

/// Human strings only (a bare number is read as seconds).
pub mod human {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        print(v, s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse(d, Duration::from_secs)
    }
}

/// Human strings, or a number of seconds.
pub mod human_or_secs {
    pub use super::human::*;
}

/// Human strings, or a number of milliseconds.
pub mod human_or_millis {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        print(v, s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse(d, Duration::from_millis)
    }
}
