//! Topic names and subscription patterns (protocol.md, "Topics").
//!
//! A topic is a base name (`alerts`, `queues`, `custom.orders`) optionally narrowed by
//! `:`-separated segments (`queues:example.com`, `health:host-1`). In a pattern, `*`
//! matches one whole segment, or, as the last segment, the whole rest (one or more
//! segments): `queues:*` matches `queues:a` and `queues:a:b` but not `queues`; `*`
//! matches every topic a client may see. Topics starting with `_` are internal
//! (replica-to-replica signals): clients can neither name nor match them.

const MAX_TOPIC_BYTES: usize = 256;

/// Checks a topic name (internal ones included).
pub fn validate_topic(topic: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid topic '{}': {why}",
            topic.chars().take(80).collect::<String>()
        ))
    };
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return bad("must be 1-256 bytes");
    }
    if topic
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '*')
    {
        return bad("must not contain spaces, control characters or '*'");
    }
    let base = topic.split(':').next().unwrap_or_default();
    let base_ok = base
        .trim_start_matches('_')
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase())
        && base
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if !base_ok {
        return bad("the name before the first ':' must be lowercase a-z, 0-9, '_', '.', '-'");
    }
    if topic.split(':').any(str::is_empty) {
        return bad("segments between ':' must not be empty");
    }
    Ok(())
}

/// Checks a topic name a client may publish to or read.
pub fn validate_client_topic(topic: &str) -> Result<(), String> {
    validate_topic(topic)?;
    if is_internal_topic(topic) {
        return Err(format!("topic '{topic}' is reserved"));
    }
    Ok(())
}

/// Whether a topic is internal (starts with `_`).
pub fn is_internal_topic(topic: &str) -> bool {
    topic.starts_with('_')
}

/// A parsed subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Exact(String),
    Any,
}

impl TopicPattern {
    /// Parses a client's pattern: a topic name where whole segments may be `*`.
    pub fn parse(text: &str) -> Result<TopicPattern, String> {
        if text.is_empty() || text.len() > MAX_TOPIC_BYTES {
            return Err("a topic pattern must be 1-256 bytes".into());
        }
        let segments: Vec<Segment> = text
            .split(':')
            .map(|s| {
                if s == "*" {
                    Segment::Any
                } else {
                    Segment::Exact(s.to_string())
                }
            })
            .collect();
        // Validate the pattern as a topic, with each `*` standing for a valid segment.
        let stand_in: Vec<&str> = segments
            .iter()
            .map(|s| match s {
                Segment::Any => "x",
                Segment::Exact(e) => e.as_str(),
            })
            .collect();
        validate_client_topic(&stand_in.join(":"))
            .map_err(|e| e.replace("'x", &format!("'{text}")))?;
        Ok(TopicPattern {
            text: text.to_string(),
            segments,
        })
    }

    /// A pattern matching exactly one topic.
    pub fn exact(topic: &str) -> TopicPattern {
        TopicPattern {
            text: topic.to_string(),
            segments: topic
                .split(':')
                .map(|s| Segment::Exact(s.to_string()))
                .collect(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this pattern has no `*`.
    pub fn is_exact(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Exact(_)))
    }

    pub fn matches(&self, topic: &str) -> bool {
        if is_internal_topic(topic) && !self.text.starts_with('_') {
            return false;
        }
        let mut parts = topic.split(':');
        let last = self.segments.len() - 1;
        for (i, segment) in self.segments.iter().enumerate() {
            match (segment, parts.next()) {
                (_, None) => return false,
                (Segment::Any, Some(_)) if i == last => return true,
                (Segment::Any, Some(_)) => {}
                (Segment::Exact(e), Some(p)) if e == p => {}
                (Segment::Exact(_), Some(_)) => return false,
            }
        }
        parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in [
            "alerts",
            "queues:example.com",
            "custom.orders",
            "queues:c:t@d!r",
            "_agents",
        ] {
            assert!(validate_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Alerts", "a b", "a:*", "queues:", ":x", "a::b", "9x"] {
            assert!(validate_topic(bad).is_err(), "{bad}");
        }
        assert!(validate_client_topic("_agents").is_err());
    }

    #[test]
    fn patterns_match_whole_segments_and_trailing_rest() {
        let p = |s: &str| TopicPattern::parse(s).unwrap();
        assert!(p("alerts").matches("alerts"));
        assert!(!p("alerts").matches("alerts:x"));
        assert!(p("queues:*").matches("queues:a"));
        assert!(p("queues:*").matches("queues:a:b"));
        assert!(!p("queues:*").matches("queues"));
        assert!(!p("queues:*").matches("queuesx:a"));
        assert!(p("*").matches("alerts"));
        assert!(p("*").matches("queues:a:b"));
        assert!(p("health:*:cpu").matches("health:h1:cpu"));
        assert!(!p("health:*:cpu").matches("health:h1:mem"));
        assert!(!p("health:*:cpu").matches("health:h1:cpu:x"));
        // Internal topics are invisible to client patterns.
        assert!(!p("*").matches("_agents"));
        assert!(TopicPattern::parse("_agents").is_err());
        assert!(TopicPattern::parse("que*").is_err());
        assert!(TopicPattern::parse("").is_err());
    }
}
