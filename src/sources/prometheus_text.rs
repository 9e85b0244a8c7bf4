//! A lenient parser for the Prometheus text exposition format (`text/plain; version=0.0.4`).
//!
//! Used for every `/metrics` page Lookout scrapes: KumoMTA's kumod and generic `prometheus`
//! sources. It is pure (text in, samples out) and never fails as a whole: a line it cannot
//! read is reported in [`Exposition::errors`] and skipped, so one odd line from a target does
//! not hide all of its other metrics.
//!
//! Two dialects are supported through [`ParseOptions`]:
//! - standard targets escape `\\`, `\"` and `\n` inside label values
//!   ([`ParseOptions::PROMETHEUS`]);
//! - kumod writes label values verbatim, backslashes and all, and puts a space after each comma
//!   (`{provider="x", source="y"}`) ([`ParseOptions::KUMOD`]). Without escapes a value can only
//!   end at a `"` that is followed by optional blanks and then `,` or `}`.
//!
//! Every step moves forward through the line, so the work is linear in the size of the input
//! however long or hostile a line is.

use crate::series::Labels;
use regex::Regex;
use std::collections::HashMap;

/// At most this many bad lines are described in [`Exposition::errors`]; the rest are only
/// counted in [`Exposition::error_count`], so that a target serving garbage cannot make us hold
/// a message per line.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// How much of an offending piece of text an error message quotes.
const EXCERPT_CHARS: usize = 60;

/// Which dialect of the text format a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// True when label values use the standard escapes (`\\`, `\"`, `\n`); false for targets
    /// that write values verbatim, such as kumod.
    pub escaped_label_values: bool,
}

impl ParseOptions {
    /// Standard Prometheus targets.
    pub const PROMETHEUS: Self = Self {
        escaped_label_values: true,
    };
    /// KumoMTA's kumod: label values are not escaped.
    pub const KUMOD: Self = Self {
        escaped_label_values: false,
    };
}

/// The type a `# TYPE` line declares for a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    /// `untyped`, OpenMetrics' `unknown`, and any type this parser does not know.
    Untyped,
}

impl MetricType {
    fn from_keyword(keyword: &str) -> Self {
        match keyword {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            _ => Self::Untyped,
        }
    }
}

/// One sample line. Histogram and summary lines (`_bucket`, `_sum`, `_count`) are plain samples
/// that keep their full name.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
    /// The target's own timestamp in milliseconds since the epoch, when it wrote one.
    pub timestamp_ms: Option<i64>,
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

/// Everything read from one exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Samples in the order they appear.
    pub samples: Vec<Sample>,
    /// Metric family name → type, from `# TYPE` lines.
    pub types: HashMap<String, MetricType>,
    /// The first [`MAX_REPORTED_ERRORS`] bad lines.
    pub errors: Vec<LineError>,
    /// How many lines were bad in total (may exceed `errors.len()`).
    pub error_count: usize,
}

impl Exposition {
    /// The declared type of the family a sample belongs to: `x_bucket`, `x_sum` and `x_count`
    /// belong to a histogram or summary `x`, and `x_total` to a counter `x` (OpenMetrics style).
    pub fn metric_type(&self, sample_name: &str) -> MetricType {
        if let Some(declared) = self.types.get(sample_name) {
            return *declared;
        }
        for suffix in ["_bucket", "_sum", "_count", "_created"] {
            if let Some(base) = sample_name.strip_suffix(suffix)
                && let Some(declared @ (MetricType::Histogram | MetricType::Summary)) =
                    self.types.get(base)
            {
                return *declared;
            }
        }
        if let Some(base) = sample_name.strip_suffix("_total")
            && self.types.get(base) == Some(&MetricType::Counter)
        {
            return MetricType::Counter;
        }
        MetricType::Untyped
    }

    fn record_error(&mut self, line: usize, message: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(LineError { line, message });
        }
    }
}

/// Parses a whole exposition. Never fails: bad lines end up in [`Exposition::errors`].
pub fn parse(text: &str, options: ParseOptions) -> Exposition {
    let mut exposition = Exposition::default();
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() {
            continue;
        }
        let outcome = match line.strip_prefix('#') {
            Some(comment) => parse_comment(comment, &mut exposition.types),
            None => parse_sample(line, options).map(|sample| exposition.samples.push(sample)),
        };
        if let Err(message) = outcome {
            exposition.record_error(index + 1, message);
        }
    }
    exposition
}

/// Reads `# TYPE name type`; every other comment (HELP included) is ignored.
fn parse_comment(comment: &str, types: &mut HashMap<String, MetricType>) -> Result<(), String> {
    let mut words = comment.split_ascii_whitespace();
    if words.next() != Some("TYPE") {
        return Ok(());
    }
    match (words.next(), words.next()) {
        (Some(name), Some(keyword)) => {
            types.insert(name.to_string(), MetricType::from_keyword(keyword));
            Ok(())
        }
        _ => Err("'# TYPE' needs a metric name and a type".to_string()),
    }
}

fn parse_sample(line: &str, options: ParseOptions) -> Result<Sample, String> {
    let mut cursor = Cursor::new(line);

    let name = cursor.take_while(is_metric_name_byte);
    if name.is_empty() {
        return Err(format!(
            "expected a metric name at '{}'",
            excerpt(cursor.rest())
        ));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "metric name '{}' starts with a digit",
            excerpt(name)
        ));
    }

    let blanks = cursor.skip_blanks();
    let labels = if cursor.eat(b'{') {
        parse_labels(&mut cursor, options)
            .map_err(|message| format!("metric '{}': {message}", excerpt(name)))?
    } else {
        if blanks == 0 && !cursor.at_end() {
            return Err(format!(
                "unexpected character after metric name '{}' at '{}'",
                excerpt(name),
                excerpt(cursor.rest())
            ));
        }
        Labels::new()
    };

    cursor.skip_blanks();
    let value_token = cursor.take_while(|b| !is_blank(b));
    if value_token.is_empty() {
        return Err(format!("metric '{}' has no value", excerpt(name)));
    }
    let value = parse_value(value_token).ok_or_else(|| {
        format!(
            "metric '{}' has an invalid value '{}'",
            excerpt(name),
            excerpt(value_token)
        )
    })?;

    cursor.skip_blanks();
    let mut timestamp_ms = None;
    // A `#` after the value starts an OpenMetrics exemplar, which we do not use.
    if !cursor.at_end() && cursor.peek() != Some(b'#') {
        let token = cursor.take_while(|b| !is_blank(b));
        let parsed = token.parse::<i64>().map_err(|_| {
            format!(
                "metric '{}' has an invalid timestamp '{}' (expected integer milliseconds)",
                excerpt(name),
                excerpt(token)
            )
        })?;
        timestamp_ms = Some(parsed);
        cursor.skip_blanks();
        if !cursor.at_end() && cursor.peek() != Some(b'#') {
            return Err(format!(
                "metric '{}' has unexpected text after its timestamp: '{}'",
                excerpt(name),
                excerpt(cursor.rest())
            ));
        }
    }

    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses `a="x", b="y",}` (the opening `{` already consumed) up to and including the `}`.
fn parse_labels(cursor: &mut Cursor<'_>, options: ParseOptions) -> Result<Labels, String> {
    let mut labels = Labels::new();
    loop {
        cursor.skip_blanks();
        if cursor.eat(b'}') {
            return Ok(labels);
        }
        if cursor.at_end() {
            return Err("label set is not closed with '}'".to_string());
        }

        let label = cursor.take_while(is_label_name_byte);
        if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "expected a label name at '{}'",
                excerpt(cursor.rest())
            ));
        }
        cursor.skip_blanks();
        if !cursor.eat(b'=') {
            return Err(format!(
                "expected '=' after label name '{}'",
                excerpt(label)
            ));
        }
        cursor.skip_blanks();
        if !cursor.eat(b'"') {
            return Err(format!(
                "expected '\"' to open the value of label '{}'",
                excerpt(label)
            ));
        }
        let value = if options.escaped_label_values {
            read_escaped_value(cursor)
        } else {
            read_verbatim_value(cursor)
        }
        .ok_or_else(|| {
            format!(
                "the value of label '{}' is not closed with '\"'",
                excerpt(label)
            )
        })?;
        if labels.insert(label.to_string(), value).is_some() {
            return Err(format!("label '{}' appears twice", excerpt(label)));
        }

        cursor.skip_blanks();
        if cursor.eat(b',') {
            continue;
        }
        if cursor.eat(b'}') {
            return Ok(labels);
        }
        return Err(format!(
            "expected ',' or '}}' after the value of label '{}' at '{}'",
            excerpt(label),
            excerpt(cursor.rest())
        ));
    }
}

/// Reads a standard, escaped label value up to and including its closing quote.
fn read_escaped_value(cursor: &mut Cursor<'_>) -> Option<String> {
    let rest = cursor.rest();
    let mut value = String::new();
    let mut chars = rest.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => {
                cursor.advance(index + 1);
                return Some(value);
            }
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                // An unknown escape is kept as written rather than rejected.
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return None,
            },
            other => value.push(other),
        }
    }
    None
}

/// Reads a verbatim (kumod) label value: it ends at the first `"` followed by optional blanks
/// and then `,` or `}`. The blanks looked at after each candidate quote are never looked at
/// again for another quote, so this stays linear.
fn read_verbatim_value(cursor: &mut Cursor<'_>) -> Option<String> {
    let rest = cursor.rest();
    let bytes = rest.as_bytes();
    let mut search_from = 0;
    loop {
        let quote = search_from + rest.get(search_from..)?.find('"')?;
        let mut after = quote + 1;
        while bytes.get(after).copied().is_some_and(is_blank) {
            after += 1;
        }
        if matches!(bytes.get(after), Some(b',' | b'}')) {
            let value = rest.get(..quote)?.to_string();
            cursor.advance(quote + 1);
            return Some(value);
        }
        search_from = quote + 1;
    }
}

/// Integers, floats, exponents, `NaN`, `Inf`, `+Inf`, `-Inf` (any case).
fn parse_value(token: &str) -> Option<f64> {
    token.parse::<f64>().ok()
}

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn is_metric_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':'
}

fn is_label_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The start of `text`, cut at a character boundary, for error messages.
fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// A forward-only position in a line. Every stop is next to an ASCII byte (a delimiter such as
/// a blank, `{` or `"`) or at the end, so it always sits on a character boundary.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn advance(&mut self, bytes: usize) {
        self.pos = (self.pos + bytes).min(self.text.len());
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_blanks(&mut self) -> usize {
        self.take_while(is_blank).len()
    }

    /// Takes bytes while `keep` holds. Callers either keep only ASCII bytes or stop only at
    /// ASCII ones, so the cut falls on a character boundary; were it not to, nothing is taken.
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.bytes().take_while(|b| keep(*b)).count();
        let taken = rest.get(..len).unwrap_or("");
        self.pos += taken.len();
        taken
    }
}

/// Metric-name allow and deny lists for a `prometheus` source: each pattern is a regular
/// expression that must match the whole name.
#[derive(Debug, Clone)]
pub struct NameFilter {
    allow: Vec<Regex>,
    deny: Vec<Regex>,
}

impl NameFilter {
    /// Compiles the lists. An empty allow list allows every name; deny wins over allow.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, String> {
        Ok(Self {
            allow: compile_all("allow", allow)?,
            deny: compile_all("deny", deny)?,
        })
    }

    /// Whether samples named `name` are kept.
    pub fn allows(&self, name: &str) -> bool {
        let allowed = self.allow.is_empty() || self.allow.iter().any(|re| re.is_match(name));
        allowed && !self.deny.iter().any(|re| re.is_match(name))
    }

    /// Drops the samples this filter does not allow.
    pub fn retain(&self, samples: &mut Vec<Sample>) {
        samples.retain(|sample| self.allows(&sample.name));
    }
}

fn compile_all(list: &str, patterns: &[String]) -> Result<Vec<Regex>, String> {
    patterns
        .iter()
        .map(|pattern| {
            let invalid =
                |err: regex::Error| format!("invalid {list} pattern '{}': {err}", excerpt(pattern));
            // Compiled alone first, so that a pattern such as `a)|(b` cannot close our group
            // and escape the anchors.
            Regex::new(pattern).map_err(invalid)?;
            Regex::new(&format!("^(?:{pattern})$")).map_err(invalid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOCS_SAMPLE: &str = include_str!("../../tests/fixtures/kumomta/metrics-docs-sample.txt");
    const BUSY: &str = include_str!("../../tests/fixtures/kumomta/metrics-busy.txt");

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn one(line: &str, options: ParseOptions) -> Sample {
        let exposition = parse(line, options);
        assert!(
            exposition.errors.is_empty(),
            "{line}: {:?}",
            exposition.errors
        );
        assert_eq!(exposition.samples.len(), 1, "{line}");
        exposition.samples.into_iter().next().expect("one sample")
    }

    #[test]
    fn sample_lines_in_both_dialects() {
        /// line, name, labels, value, timestamp
        type Case = (
            &'static str,
            &'static str,
            &'static [(&'static str, &'static str)],
            f64,
            Option<i64>,
        );
        let cases: &[Case] = &[
            ("up 1", "up", &[], 1.0, None),
            ("up{} 1", "up", &[], 1.0, None),
            ("up {} 1", "up", &[], 1.0, None),
            ("  up\t2.5  ", "up", &[], 2.5, None),
            ("a:b_c 1e3", "a:b_c", &[], 1000.0, None),
            ("m -1.5E-2", "m", &[], -0.015, None),
            (
                "m{a=\"x\",b=\"y\"} 3 1700000000000",
                "m",
                &[("a", "x"), ("b", "y")],
                3.0,
                Some(1700000000000),
            ),
            (
                "m{a=\"x\", b=\"y\"} 3",
                "m",
                &[("a", "x"), ("b", "y")],
                3.0,
                None,
            ),
            ("m{a=\"x\",} 3", "m", &[("a", "x")], 3.0, None),
            ("m{a=\"x\", } 3", "m", &[("a", "x")], 3.0, None),
            ("m{ a = \"x\" } 3", "m", &[("a", "x")], 3.0, None),
            ("m{a=\"\"} 0", "m", &[("a", "")], 0.0, None),
            ("m{a=\"x\"}7", "m", &[("a", "x")], 7.0, None),
            (
                "m{a=\"x\"} 1 # {trace_id=\"1\"} 1",
                "m",
                &[("a", "x")],
                1.0,
                None,
            ),
            ("m{a=\"é ü\"} 1", "m", &[("a", "é ü")], 1.0, None),
            ("m 1 -5", "m", &[], 1.0, Some(-5)),
        ];
        for options in [ParseOptions::PROMETHEUS, ParseOptions::KUMOD] {
            for (line, name, pairs, value, ts) in cases {
                let sample = one(line, options);
                assert_eq!(sample.name, *name, "{line}");
                assert_eq!(sample.labels, labels(pairs), "{line}");
                assert_eq!(sample.value, *value, "{line}");
                assert_eq!(sample.timestamp_ms, *ts, "{line}");
            }
        }
    }

    #[test]
    fn special_values() {
        let cases = [
            ("NaN", f64::NAN),
            ("+Inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("Inf", f64::INFINITY),
        ];
        for (token, expected) in cases {
            let value = one(&format!("m {token}"), ParseOptions::PROMETHEUS).value;
            if expected.is_nan() {
                assert!(value.is_nan(), "{token}");
            } else {
                assert_eq!(value, expected, "{token}");
            }
        }
    }

    #[test]
    fn escaped_values_are_unescaped_only_in_prometheus_mode() {
        let line = r#"m{path="C:\\dir",quote="say \"hi\"",nl="a\nb",odd="\d"} 1"#;
        let sample = one(line, ParseOptions::PROMETHEUS);
        assert_eq!(
            sample.labels,
            labels(&[
                ("path", "C:\\dir"),
                ("quote", "say \"hi\""),
                ("nl", "a\nb"),
                ("odd", "\\d")
            ])
        );

        // kumod: backslashes are literal and a quote only ends a value before `,` or `}`.
        let line = r#"m{path="C:\dir\", q="say "hi" now", re="(a|b)?.x"} 1"#;
        let sample = one(line, ParseOptions::KUMOD);
        assert_eq!(
            sample.labels,
            labels(&[
                ("path", "C:\\dir\\"),
                ("q", "say \"hi\" now"),
                ("re", "(a|b)?.x")
            ])
        );
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let text = "ok 1\n\
                    9bad 1\n\
                    novalue\n\
                    m{a=\"x\" 1\n\
                    m{a=\"x\"} abc\n\
                    m{a=\"x\",a=\"y\"} 1\n\
                    m{=\"x\"} 1\n\
                    m{a\"x\"} 1\n\
                    m 1 1.5\n\
                    m 1 2 extra\n\
                    m{a=x} 1\n\
                    m-x 1\n\
                    # TYPE onlyname\n\
                    also_ok{b=\"2\"} 2\n";
        for options in [ParseOptions::PROMETHEUS, ParseOptions::KUMOD] {
            let exposition = parse(text, options);
            let names: Vec<_> = exposition.samples.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, ["ok", "also_ok"]);
            let lines: Vec<_> = exposition.errors.iter().map(|e| e.line).collect();
            assert_eq!(
                lines,
                (2..=13).collect::<Vec<_>>(),
                "{:#?}",
                exposition.errors
            );
            assert_eq!(exposition.error_count, 12);
        }
        let exposition = parse("m{a=\"x\"} abc", ParseOptions::KUMOD);
        assert_eq!(
            exposition.errors[0].message,
            "metric 'm' has an invalid value 'abc'"
        );
        let exposition = parse("m{a=\"x\",a=\"y\"} 1", ParseOptions::KUMOD);
        assert_eq!(
            exposition.errors[0].message,
            "metric 'm': label 'a' appears twice"
        );
    }

    #[test]
    fn comments_blank_lines_and_crlf() {
        let text = concat!(
            "# HELP m help text with \"quotes\"\r\n",
            "# TYPE m counter\r\n",
            "\r\n",
            "   \r\n",
            "# just a comment\r\n",
            "m{a=\"x\"} 1\r\n",
            "#\r\n",
        );
        let exposition = parse(text, ParseOptions::KUMOD);
        assert!(exposition.errors.is_empty(), "{:?}", exposition.errors);
        assert_eq!(exposition.samples.len(), 1);
        assert_eq!(exposition.samples[0].labels, labels(&[("a", "x")]));
        assert_eq!(exposition.types.get("m"), Some(&MetricType::Counter));
    }

    #[test]
    fn types_cover_histogram_and_summary_children() {
        let text = concat!(
            "# TYPE h histogram\n# TYPE s summary\n# TYPE c counter\n",
            "# TYPE g gauge\n# TYPE u untyped\n# TYPE i info\n",
        );
        let exposition = parse(text, ParseOptions::PROMETHEUS);
        let cases = [
            ("h_bucket", MetricType::Histogram),
            ("h_sum", MetricType::Histogram),
            ("h_count", MetricType::Histogram),
            ("s_count", MetricType::Summary),
            ("s", MetricType::Summary),
            ("c", MetricType::Counter),
            ("c_total", MetricType::Counter),
            ("g", MetricType::Gauge),
            ("g_count", MetricType::Untyped),
            ("u", MetricType::Untyped),
            ("i", MetricType::Untyped),
            ("unknown", MetricType::Untyped),
        ];
        for (name, expected) in cases {
            assert_eq!(exposition.metric_type(name), expected, "{name}");
        }
    }

    #[test]
    fn docs_sample_parses_without_errors() {
        let exposition = parse(DOCS_SAMPLE, ParseOptions::KUMOD);
        assert!(exposition.errors.is_empty(), "{:?}", exposition.errors);
        assert_eq!(exposition.samples.len(), 22);
        let disk = exposition
            .samples
            .iter()
            .find(|s| {
                s.name == "disk_free_bytes"
                    && s.labels.get("name").map(String::as_str) == Some("data spool")
            })
            .expect("disk_free_bytes for the data spool");
        assert_eq!(disk.value, 15658725376.0);
        let inf_bucket = exposition
            .samples
            .iter()
            .find(|s| s.labels.get("le").map(String::as_str) == Some("+Inf"))
            .expect("+Inf bucket");
        assert_eq!(inf_bucket.name, "deliver_message_latency_rollup_bucket");
        assert_eq!(
            inf_bucket.labels,
            labels(&[("service", "smtp_client"), ("le", "+Inf")])
        );
        assert_eq!(
            exposition.metric_type("deliver_message_latency_rollup_sum"),
            MetricType::Histogram
        );
        assert_eq!(exposition.metric_type("memory_usage"), MetricType::Gauge);
        // The same page read as a standard target gives the same result: it has no backslashes.
        assert_eq!(
            parse(DOCS_SAMPLE, ParseOptions::PROMETHEUS).samples,
            exposition.samples
        );
    }

    #[test]
    fn busy_fixture_keeps_regex_characters_and_spaced_separators() {
        let exposition = parse(BUSY, ParseOptions::KUMOD);
        assert!(exposition.errors.is_empty(), "{:?}", exposition.errors);
        let by_provider = exposition
            .samples
            .iter()
            .find(|s| s.name == "total_messages_delivered_by_provider_and_source")
            .expect("by-provider series");
        assert_eq!(
            by_provider.labels,
            labels(&[
                (
                    "provider",
                    "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com"
                ),
                ("source", "unspecified"),
                ("pool", "unspecified"),
            ])
        );
        assert_eq!(
            exposition.types.get("scheduled_count"),
            Some(&MetricType::Gauge)
        );
    }

    #[test]
    fn errors_are_capped_but_counted() {
        let text = "bad line!\n".repeat(MAX_REPORTED_ERRORS + 50);
        let exposition = parse(&text, ParseOptions::PROMETHEUS);
        assert_eq!(exposition.errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(exposition.error_count, MAX_REPORTED_ERRORS + 50);
    }

    #[test]
    fn long_hostile_lines_stay_linear() {
        // Many quotes each followed by blanks but never by `,` or `}`: a quadratic scan would
        // take minutes here.
        let hostile = format!("m{{a=\"{}", "\"   x".repeat(200_000));
        for options in [ParseOptions::KUMOD, ParseOptions::PROMETHEUS] {
            let exposition = parse(&hostile, options);
            assert_eq!(exposition.error_count, 1);
            assert!(exposition.errors[0].message.len() < 300);
        }
        let long_value = "v".repeat(1_000_000);
        let line = format!("m{{a=\"{long_value}\", b=\"x\"}} 1");
        assert_eq!(one(&line, ParseOptions::KUMOD).labels["a"].len(), 1_000_000);
        let many_labels: String = (0..50_000).map(|i| format!("l{i}=\"v\", ")).collect();
        let line = format!("m{{{many_labels}}} 1");
        assert_eq!(one(&line, ParseOptions::KUMOD).labels.len(), 50_000);
        let many_lines = "m{a=\"x\", b=\"y\"} 1\n".repeat(200_000);
        assert_eq!(
            parse(&many_lines, ParseOptions::KUMOD).samples.len(),
            200_000
        );
    }

    #[test]
    fn name_filter_anchors_patterns_and_deny_wins() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let filter = NameFilter::new(&strings(&["node_.*", "up"]), &strings(&["node_cpu.*"]))
            .expect("valid");
        let cases = [
            ("up", true),
            ("upx", false),
            ("xup", false),
            ("node_memory_bytes", true),
            ("node_cpu_seconds_total", false),
            ("go_gc", false),
        ];
        for (name, expected) in cases {
            assert_eq!(filter.allows(name), expected, "{name}");
        }
        let allow_all = NameFilter::new(&[], &strings(&["go_.*"])).expect("valid");
        assert!(allow_all.allows("anything"));
        assert!(!allow_all.allows("go_gc"));
        // An alternation must not escape the anchors.
        let alternation = NameFilter::new(&strings(&["a|b"]), &[]).expect("valid");
        assert!(!alternation.allows("ab"));
        assert!(alternation.allows("b"));

        let err = NameFilter::new(&strings(&["a)|(b"]), &[]).expect_err("unbalanced");
        assert!(err.starts_with("invalid allow pattern 'a)|(b'"), "{err}");
        let err = NameFilter::new(&[], &strings(&["("])).expect_err("invalid");
        assert!(err.starts_with("invalid deny pattern '('"), "{err}");

        let mut samples = parse("up 1\ngo_gc 2\n", ParseOptions::PROMETHEUS).samples;
        allow_all.retain(&mut samples);
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].name, "up");
    }

    fn label_value(escaped: bool) -> impl Strategy<Value = String> {
        if escaped {
            "[ -~\n]{0,12}".boxed()
        } else {
            // Verbatim values cannot contain `"` followed by `,` or `}`; kumod's never do.
            "[ -!#-~]{0,12}".boxed()
        }
    }

    fn format_value(value: &str, escaped: bool) -> String {
        if escaped {
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        } else {
            value.to_string()
        }
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            for options in [ParseOptions::KUMOD, ParseOptions::PROMETHEUS] {
                let exposition = parse(&text, options);
                prop_assert!(exposition.errors.len() <= exposition.error_count);
            }
        }

        #[test]
        fn never_panics_on_near_miss_lines(text in "[a-z{}=\",\\\\ #\t\r\n0-9.+-]{0,80}") {
            for options in [ParseOptions::KUMOD, ParseOptions::PROMETHEUS] {
                parse(&text, options);
            }
        }

        #[test]
        fn written_samples_read_back(
            escaped in any::<bool>(),
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
            pairs in proptest::collection::btree_map(
                "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
                "[ -~]{0,12}",
                0..5,
            ),
            value in -1e12f64..1e12,
            ts in proptest::option::of(any::<i64>()),
            spaced in any::<bool>(),
        ) {
            // Regenerate values that the verbatim dialect cannot carry.
            let pairs: Labels = pairs
                .into_iter()
                .map(|(k, v)| {
                    let v = if escaped { v } else { v.replace('"', "'") };
                    (k, v)
                })
                .collect();
            let separator = if spaced { ", " } else { "," };
            let body = pairs
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", format_value(v, escaped)))
                .collect::<Vec<_>>()
                .join(separator);
            let mut line = format!("{name}{{{body}}} {value}");
            if let Some(ts) = ts {
                line.push_str(&format!(" {ts}"));
            }
            let options = ParseOptions { escaped_label_values: escaped };
            let exposition = parse(&line, options);
            prop_assert!(exposition.errors.is_empty(), "{}: {:?}", line, exposition.errors);
            prop_assert_eq!(
                &exposition.samples,
                &vec![Sample { name: name.clone(), labels: pairs.clone(), value, timestamp_ms: ts }]
            );
        }

        #[test]
        fn label_values_round_trip(
            escaped in any::<bool>(),
            value in label_value(true),
            verbatim in label_value(false),
        ) {
            let value = if escaped { value } else { verbatim };
            let line = format!("m{{a=\"{}\", b=\"z\"}} 1", format_value(&value, escaped));
            let sample = one(&line, ParseOptions { escaped_label_values: escaped });
            prop_assert_eq!(&sample.labels["a"], &value);
        }
    }
}
