//! Label matchers (`=`, `!=`, `=~`, `!~`) and series selectors, with Prometheus'
//! semantics: regular expressions are anchored at both ends, and a missing label
//! matches as the empty string.

use super::Labels;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "=~")]
    Re,
    #[serde(rename = "!~")]
    NotRe,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// Why a matcher could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("invalid matcher '{0}': expected name=value, name!=value, name=~regex or name!~regex")]
    Syntax(String),
    #[error("invalid regular expression for label '{label}': {message}")]
    Regex { label: String, message: String },
    #[error("regular expression for label '{0}' is longer than 1024 bytes")]
    RegexTooLong(String),
}

/// One label matcher. Serialized as `{"name":"queue","op":"=~","value":"gmail.*"}`.
/// In the OpenAPI description it appears as [`MatcherSpec`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "MatcherSpec", into = "MatcherSpec")]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// Compiled, anchored regex for `=~` and `!~`.
    regex: Option<Regex>,
}

/// The wire shape of a [`Matcher`].
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MatcherSpec {
    /// Label name.
    pub name: String,
    /// One of `=`, `!=`, `=~`, `!~`.
    pub op: MatchOp,
    /// Value, or regular expression for `=~` and `!~` (anchored at both ends).
    pub value: String,
}

impl TryFrom<MatcherSpec> for Matcher {
    type Error = MatcherError;
    fn try_from(spec: MatcherSpec) -> Result<Self, Self::Error> {
        Matcher::new(spec.name, spec.op, spec.value)
    }
}

impl From<Matcher> for MatcherSpec {
    fn from(m: Matcher) -> Self {
        MatcherSpec {
            name: m.name,
            op: m.op,
            value: m.value,
        }
    }
}

/// Regexes longer than this are refused: they are user input evaluated on hot paths.
const MAX_REGEX_BYTES: usize = 1024;

impl Matcher {
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::Eq | MatchOp::Ne => None,
            MatchOp::Re | MatchOp::NotRe => {
                if value.len() > MAX_REGEX_BYTES {
                    return Err(MatcherError::RegexTooLong(name));
                }
                let anchored = format!("^(?:{value})$");
                Some(
                    regex::RegexBuilder::new(&anchored)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| MatcherError::Regex {
                            label: name.clone(),
                            message: e.to_string(),
                        })?,
                )
            }
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    /// An equality matcher; cannot fail.
    pub fn eq(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            op: MatchOp::Eq,
            value: value.into(),
            regex: None,
        }
    }

    /// Parses `name=value`, `name!=value`, `name=~regex` or `name!~regex`. Surrounding
    /// double quotes on the value are removed, so `queue="a"` works as in PromQL.
    pub fn parse(text: &str) -> Result<Self, MatcherError> {
        let syntax = || MatcherError::Syntax(text.chars().take(80).collect());
        let pos = text.find(['=', '!']).ok_or_else(syntax)?;
        let (name, rest) = text.split_at(pos);
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchOp::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchOp::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchOp::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchOp::Eq, v)
        } else {
            return Err(syntax());
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(syntax());
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Matcher::new(name, op, value)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a label value (`None` when the label is absent) satisfies this matcher.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        let value = value.unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Eq, _) => value == self.value,
            (MatchOp::Ne, _) => value != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(value),
            (MatchOp::NotRe, Some(re)) => !re.is_match(value),
            (MatchOp::Re | MatchOp::NotRe, None) => unreachable!("regex compiled in new()"),
        }
    }

    /// Whether a label set satisfies this matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).map(String::as_str))
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

/// A metric name plus label matchers: which series a query or rule reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Selector {
    /// Metric name (exact).
    pub name: String,
    /// All must match.
    #[serde(default)]
    #[schema(value_type = Vec<MatcherSpec>)]
    pub matchers: Vec<Matcher>,
}

impl Selector {
    pub fn new(name: impl Into<String>) -> Self {
        Selector {
            name: name.into(),
            matchers: Vec::new(),
        }
    }

    pub fn with(mut self, matcher: Matcher) -> Self {
        self.matchers.push(matcher);
        self
    }

    /// Whether a series `(name, labels)` is selected.
    pub fn matches(&self, name: &str, labels: &Labels) -> bool {
        name == self.name && self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Whether a label set satisfies every matcher (the name is checked elsewhere).
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
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
    fn operators_have_prometheus_semantics() {
        let l = labels(&[("queue", "gmail.com"), ("env", "prod")]);
        assert!(Matcher::parse("queue=gmail.com").unwrap().matches(&l));
        assert!(!Matcher::parse("queue!=gmail.com").unwrap().matches(&l));
        assert!(Matcher::parse("queue=~gmail.*").unwrap().matches(&l));
        // Anchored: a partial match is no match.
        assert!(!Matcher::parse("queue=~gmail").unwrap().matches(&l));
        assert!(Matcher::parse("queue!~yahoo.*").unwrap().matches(&l));
        // A missing label is the empty string.
        assert!(Matcher::parse("missing=").unwrap().matches(&l));
        assert!(Matcher::parse("missing!=x").unwrap().matches(&l));
        assert!(Matcher::parse("missing=~.*").unwrap().matches(&l));
        assert!(Matcher::parse(r#"env="prod""#).unwrap().matches(&l));
    }

    #[test]
    fn bad_matchers_are_refused_with_a_reason() {
        assert!(matches!(
            Matcher::parse("queue"),
            Err(MatcherError::Syntax(_))
        ));
        assert!(matches!(Matcher::parse("=x"), Err(MatcherError::Syntax(_))));
        assert!(matches!(
            Matcher::parse("q=~("),
            Err(MatcherError::Regex { .. })
        ));
        let long = format!("q=~{}", "a".repeat(2000));
        assert!(matches!(
            Matcher::parse(&long),
            Err(MatcherError::RegexTooLong(_))
        ));
    }

    #[test]
    fn matchers_round_trip_through_json() {
        let m = Matcher::parse("queue=~g.*").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"name":"queue","op":"=~","value":"g.*"}"#);
        let back: Matcher = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<Matcher>(r#"{"name":"q","op":"=~","value":"("}"#).is_err());
    }

    #[test]
    fn selectors_check_name_and_all_matchers() {
        let s = Selector::new("ready_count").with(Matcher::eq("queue", "a"));
        assert!(s.matches("ready_count", &labels(&[("queue", "a")])));
        assert!(!s.matches("ready_count", &labels(&[("queue", "b")])));
        assert!(!s.matches("other", &labels(&[("queue", "a")])));
    }
}
