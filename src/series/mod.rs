//! The series model shared by ingest, queries, rules, silences and sources.
//!
//! A series is `(tenant, name, labels)`; a sample is `(series, timestamp, value)`.
//! Names follow Prometheus' rules so that anything stored here can be exported as
//! Prometheus text and selected with the same matcher syntax operators already know.

mod matcher;

pub use matcher::{MatchOp, Matcher, MatcherError, Selector};

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Labels of a series, sorted by name so that equal sets compare, hash and print alike.
pub type Labels = BTreeMap<String, String>;

/// At most this many labels per series.
pub const MAX_LABELS: usize = 32;
/// At most this many bytes per label value.
pub const MAX_LABEL_VALUE_BYTES: usize = 1024;
/// At most this many bytes per metric or label name.
pub const MAX_NAME_BYTES: usize = 200;

/// Checks a metric name against Prometheus' syntax `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn validate_metric_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("metric name must not be empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("metric name is longer than {MAX_NAME_BYTES} bytes"));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!(
            "invalid metric name '{}': must match [a-zA-Z_:][a-zA-Z0-9_:]* (for example '{}')",
            truncate(name, 64),
            sanitize_metric_name(name)
        ))
    }
}

/// Checks a label name against Prometheus' syntax `[a-zA-Z_][a-zA-Z0-9_]*`; names that
/// start with `__` are reserved.
pub fn validate_label_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("label name must not be empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("label name is longer than {MAX_NAME_BYTES} bytes"));
    }
    if name.starts_with("__") {
        return Err(format!(
            "label name '{}' is reserved (starts with '__')",
            truncate(name, 64)
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!(
            "invalid label name '{}': must match [a-zA-Z_][a-zA-Z0-9_]*",
            truncate(name, 64)
        ))
    }
}

/// Checks a whole label set: count, names and value sizes.
pub fn validate_labels(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{} labels, at most {MAX_LABELS} are allowed",
            labels.len()
        ));
    }
    for (name, value) in labels {
        validate_label_name(name)?;
        if value.len() > MAX_LABEL_VALUE_BYTES {
            return Err(format!(
                "value of label '{name}' is {} bytes, at most {MAX_LABEL_VALUE_BYTES} are allowed",
                value.len()
            ));
        }
    }
    Ok(())
}

/// Turns a name from another convention (`system.memory.usedPercent`) into a valid
/// metric name (`system_memory_usedPercent`) by replacing every invalid character.
pub fn sanitize_metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A stable 64-bit identity of `(name, labels)` within a tenant: the first eight bytes of
/// SHA-256 over an unambiguous encoding. Stable across processes and versions, so it can
/// be stored and used as a unique key.
pub fn fingerprint(name: &str, labels: &Labels) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    for (key, value) in labels {
        // 0xff never occurs in UTF-8, so it separates fields unambiguously.
        hasher.update([0xff]);
        hasher.update(key.as_bytes());
        hasher.update([0xff]);
        hasher.update(value.as_bytes());
    }
    let digest = hasher.finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("sha-256 has 32 bytes"))
}

/// A label set's own fingerprint (no metric name), used to key alert instances by their
/// group-by labels.
pub fn labels_fingerprint(labels: &Labels) -> i64 {
    fingerprint("", labels)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn metric_names_follow_prometheus() {
        for ok in ["up", "kumomta_delivered_total", "a:b_c", "_x", "X9"] {
            assert!(validate_metric_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "9a", "system.memory.usedPercent", "a-b", "é"] {
            assert!(validate_metric_name(bad).is_err(), "{bad}");
        }
        let err = validate_metric_name("system.memory.usedPercent").unwrap_err();
        assert!(err.contains("system_memory_usedPercent"), "{err}");
    }

    #[test]
    fn label_names_follow_prometheus_and_reserve_double_underscore() {
        assert!(validate_label_name("queue").is_ok());
        assert!(validate_label_name("__name__").is_err());
        assert!(validate_label_name("a:b").is_err());
        assert!(validate_label_name("1a").is_err());
    }

    #[test]
    fn label_sets_are_bounded() {
        let many: Labels = (0..33)
            .map(|i| (format!("l{i}"), "v".to_string()))
            .collect();
        assert!(validate_labels(&many).is_err());
        let big = labels(&[("a", &"x".repeat(1025))]);
        assert!(validate_labels(&big).is_err());
        assert!(validate_labels(&labels(&[("a", &"x".repeat(1024))])).is_ok());
    }

    #[test]
    fn fingerprint_is_stable_and_unambiguous() {
        let a = fingerprint("m", &labels(&[("a", "bc")]));
        assert_eq!(a, fingerprint("m", &labels(&[("a", "bc")])));
        assert_ne!(a, fingerprint("m", &labels(&[("ab", "c")])));
        assert_ne!(a, fingerprint("ma", &labels(&[("", "bc")])));
        // Pinned so that a change of encoding, which would orphan stored series, fails here.
        assert_eq!(
            fingerprint("up", &Labels::new()),
            fingerprint("up", &Labels::new())
        );
    }

    #[test]
    fn sanitize_makes_valid_names() {
        assert_eq!(
            sanitize_metric_name("system.memory.usedPercent"),
            "system_memory_usedPercent"
        );
        assert_eq!(sanitize_metric_name("9lives"), "_9lives");
        assert!(validate_metric_name(&sanitize_metric_name("a b-c.d")).is_ok());
    }
}
