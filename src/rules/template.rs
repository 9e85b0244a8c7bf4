//! Annotation templates (and, reused by notifications, message templates), rendered with
//! minijinja.
//!
//! An annotation such as `"Queue {{ labels.queue }} holds {{ value | humanize }} messages"`
//! sees:
//!
//! | name | what |
//! |---|---|
//! | `value` | the instance's value; undefined when there is no data |
//! | `threshold` | the condition's threshold |
//! | `labels` | the alert's labels (map) |
//! | `rule.name`, `rule.severity` | the rule |
//!
//! Whole numbers are passed as integers so that `{{ value }}` prints `12000`, not
//! `12000.0`. Undefined names, attributes and items render as nothing (never an error),
//! so a template stays usable when a label or the value is missing.
//!
//! Filters besides minijinja's built-ins: `humanize` (`12345` → `12.35k`), `humanize_duration`
//! (seconds → `5m 30s`), and a `round` that leaves missing values missing instead of failing.
//!
//! Templates are at most [`MAX_TEMPLATE_BYTES`] and their output at most
//! [`MAX_OUTPUT_BYTES`]. They are checked once when a rule is validated ([`check`]).

use super::model::Severity;
use crate::series::Labels;
use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use std::io;
use std::sync::OnceLock;
use std::time::Duration;

/// The longest template accepted.
pub const MAX_TEMPLATE_BYTES: usize = 4096;
/// The longest rendered text: a template with loops must not produce megabytes.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// What an annotation template can use.
#[derive(Debug, Clone, Copy)]
pub struct TemplateContext<'a> {
    /// `None` when the instance has no data; `value` is then undefined.
    pub value: Option<f64>,
    pub threshold: f64,
    pub labels: &'a Labels,
    pub rule_name: &'a str,
    pub severity: Severity,
}

/// A template environment with Lookout's settings and filters: undefined renders empty,
/// no auto-escaping (annotations are plain text; an HTML email template should set its
/// own escaping), and the filters listed in the module documentation.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.add_filter("humanize", humanize);
    env.add_filter("humanize_duration", humanize_duration);
    env.add_filter("round", round);
    // Bounds the work of one render: a loop that prints nothing would otherwise spin
    // without ever reaching the output limit.
    env.set_fuel(Some(MAX_FUEL));
    env
}

/// Instructions one render may execute; ample for any sensible template.
const MAX_FUEL: u64 = 200_000;

fn shared() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(environment)
}

/// Checks that a template is small enough, compiles, and uses only known filters,
/// tests and functions (found by rendering it once with sample values).
pub fn check(template: &str) -> Result<(), String> {
    if template.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "template is {} bytes, at most {MAX_TEMPLATE_BYTES} are allowed",
            template.len()
        ));
    }
    let compiled = shared().template_from_str(template).map_err(describe)?;
    let labels = Labels::new();
    let sample = TemplateContext {
        value: Some(1.0),
        threshold: 1.0,
        labels: &labels,
        rule_name: "rule",
        severity: Severity::Warning,
    };
    let mut out = LimitedWriter::default();
    match compiled.render_captured_to(context(&sample), &mut out) {
        // Other errors can depend on the values (a division by zero, a label that is not
        // a number) and are reported when rendering, not refused here.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnknownFilter | ErrorKind::UnknownTest | ErrorKind::UnknownFunction
            ) =>
        {
            Err(describe(e))
        }
        _ => Ok(()),
    }
}

/// Renders a template; the error is a message for the alert's timeline or the API.
pub fn render(template: &str, ctx: &TemplateContext<'_>) -> Result<String, String> {
    if template.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "template is {} bytes, at most {MAX_TEMPLATE_BYTES} are allowed",
            template.len()
        ));
    }
    let compiled = shared().template_from_str(template).map_err(describe)?;
    let mut out = LimitedWriter::default();
    match compiled.render_captured_to(context(ctx), &mut out) {
        Ok(_) => Ok(String::from_utf8_lossy(&out.buffer).into_owned()),
        Err(_) if out.overflowed => Err(format!(
            "rendered text is longer than {MAX_OUTPUT_BYTES} bytes"
        )),
        Err(e) => Err(describe(e)),
    }
}

fn context(ctx: &TemplateContext<'_>) -> Value {
    let rule = minijinja::context! { name => ctx.rule_name, severity => ctx.severity.as_str() };
    let base = minijinja::context! {
        threshold => number(ctx.threshold),
        labels => Value::from_serialize(ctx.labels),
        rule => rule,
    };
    match ctx.value {
        // Left out, not `none`, so that no data renders as nothing.
        None => base,
        Some(value) => minijinja::context! { value => number(value), ..base },
    }
}

/// Whole numbers as integers so they print without `.0`.
fn number(value: f64) -> Value {
    // 2^53: above it not every integer is representable, so keep the float.
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        Value::from(value as i64)
    } else {
        Value::from(value)
    }
}

/// Compact display of a number: `1234` → `1.23k`, `2500000` → `2.5M`, `0.5` → `0.5`.
/// Missing values render empty and non-numbers unchanged.
fn humanize(value: Value) -> String {
    let Some(number) = as_number(&value) else {
        return display(&value);
    };
    if !number.is_finite() {
        return number.to_string();
    }
    const UNITS: [&str; 6] = ["k", "M", "G", "T", "P", "E"];
    let mut scaled = number;
    let mut unit = "";
    for next in UNITS {
        if scaled.abs() < 1000.0 {
            break;
        }
        scaled /= 1000.0;
        unit = next;
    }
    if scaled != 0.0 && scaled.abs() < 0.001 {
        return format!("{scaled:.2e}");
    }
    let digits = if unit.is_empty() && scaled.abs() < 1.0 {
        4
    } else {
        2
    };
    format!("{}{unit}", trim_zeros(&format!("{scaled:.digits$}")))
}

/// A number of seconds as a duration: `330` → `5m 30s`. Sub-second parts are dropped
/// above one minute.
fn humanize_duration(value: Value) -> String {
    let Some(seconds) = as_number(&value) else {
        return display(&value);
    };
    if !seconds.is_finite() || !(0.0..1e12).contains(&seconds) {
        return seconds.to_string();
    }
    let seconds = if seconds >= 60.0 {
        seconds.round()
    } else {
        (seconds * 1000.0).round() / 1000.0
    };
    humantime::format_duration(Duration::from_secs_f64(seconds)).to_string()
}

/// minijinja's `round`, except that a missing value stays missing (renders empty) and
/// a result without decimals prints as a whole number.
fn round(value: Value, precision: Option<i32>) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => Ok(value),
        ValueKind::Number if value.as_i64().is_some() => Ok(value),
        ValueKind::Number => {
            let unrounded = as_number(&value).unwrap_or(f64::NAN);
            let digits = precision.unwrap_or(0).clamp(-300, 300);
            let factor = 10f64.powi(digits);
            let rounded = (unrounded * factor).round() / factor;
            Ok(if digits <= 0 {
                number(rounded)
            } else {
                Value::from(rounded)
            })
        }
        kind => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot round a value of type {kind}"),
        )),
    }
}

fn as_number(value: &Value) -> Option<f64> {
    if value.kind() != ValueKind::Number {
        return None;
    }
    f64::try_from(value.clone()).ok()
}

fn display(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => String::new(),
        _ => value.to_string(),
    }
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

fn describe(error: Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Collects rendered output and fails once it exceeds [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
struct LimitedWriter {
    buffer: Vec<u8>,
    overflowed: bool,
}

impl io::Write for LimitedWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + bytes.len() > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(io::Error::other("rendered text too long"));
        }
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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

    fn ctx<'a>(value: Option<f64>, labels: &'a Labels) -> TemplateContext<'a> {
        TemplateContext {
            value,
            threshold: 10_000.0,
            labels,
            rule_name: "Critical queue depth",
            severity: Severity::Critical,
        }
    }

    #[test]
    fn renders_values_labels_and_rule() {
        let l = labels(&[("queue", "gmail.com")]);
        let cases: &[(&str, Option<f64>, &str)] = &[
            (
                "Queue {{ labels.queue }} holds {{ value }} messages",
                Some(12000.0),
                "Queue gmail.com holds 12000 messages",
            ),
            ("{{ value }} > {{ threshold }}", Some(0.5), "0.5 > 10000"),
            ("{{ value | round(2) }}", Some(1.23456), "1.23"),
            ("{{ value | round }}", Some(2.6), "3"),
            ("{{ value | round(1) }}", Some(7.0), "7"),
            ("{{ value | humanize }}", Some(12345.0), "12.35k"),
            ("{{ value | humanize }}", Some(2_500_000.0), "2.5M"),
            ("{{ value | humanize }}", Some(999.0), "999"),
            ("{{ value | humanize }}", Some(-1500.0), "-1.5k"),
            ("{{ value | humanize }}", Some(0.25), "0.25"),
            ("{{ value | humanize }}", Some(0.00001234), "1.23e-5"),
            ("{{ value | humanize_duration }}", Some(330.0), "5m 30s"),
            ("{{ value | humanize_duration }}", Some(1.5), "1s 500ms"),
            (
                "{{ rule.name }} ({{ rule.severity }})",
                Some(1.0),
                "Critical queue depth (critical)",
            ),
            (
                "{% if value > threshold %}high{% else %}ok{% endif %}",
                Some(20000.0),
                "high",
            ),
            // Missing things render as nothing.
            ("[{{ labels.missing }}]", Some(1.0), "[]"),
            ("[{{ nothing.deeper.still }}]", Some(1.0), "[]"),
            ("[{{ value }}]", None, "[]"),
            ("[{{ value | round(2) }}]", None, "[]"),
            ("[{{ value | humanize }}]", None, "[]"),
            ("[{{ value | humanize_duration }}]", None, "[]"),
        ];
        for (template, value, expected) in cases {
            assert_eq!(
                render(template, &ctx(*value, &l)).as_deref(),
                Ok(*expected),
                "{template}"
            );
            assert!(check(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn bad_templates_are_refused_with_a_message() {
        for template in [
            "{{ value ",
            "{% if %}",
            "{{ value | nosuchfilter }}",
            "{{ nosuchfn() }}",
            "{% for %}",
        ] {
            let err = check(template).unwrap_err();
            assert!(!err.is_empty(), "{template}");
        }
        let err = check("{{ value | nosuchfilter }}").unwrap_err();
        assert!(err.contains("unknown filter"), "{err}");
        assert!(
            check(&"x".repeat(MAX_TEMPLATE_BYTES + 1))
                .unwrap_err()
                .contains("at most 4096")
        );
        assert!(check(&"x".repeat(MAX_TEMPLATE_BYTES)).is_ok());
    }

    #[test]
    fn rendering_errors_are_messages_not_panics() {
        let l = labels(&[("queue", "a")]);
        let err = render("{{ labels.queue | round }}", &ctx(Some(1.0), &l)).unwrap_err();
        assert!(err.contains("cannot round"), "{err}");
        let err = render("{{ 1 // 0 }}", &ctx(Some(1.0), &l)).unwrap_err();
        assert!(!err.is_empty());
        let err = render(
            "{% for i in range(100000) %}xxxxxxxxxx{% endfor %}",
            &ctx(Some(1.0), &l),
        )
        .unwrap_err();
        assert!(err.contains("longer than"), "{err}");
    }

    #[test]
    fn the_environment_is_reusable() {
        let env = environment();
        let out = env
            .render_str("{{ n | humanize }}", minijinja::context! { n => 1_000_000 })
            .unwrap();
        assert_eq!(out, "1M");
    }
}
