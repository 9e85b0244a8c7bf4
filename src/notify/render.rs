//! Turning a [`Notification`] into what each channel type sends: an e-mail (subject, plain
//! text, HTML), a Slack Block Kit message, a webhook body (Lookout's own JSON or the
//! Alertmanager v4 shape) and a short SMS.
//!
//! The human-readable parts come from minijinja templates. Each channel type has a default
//! here, and a channel may override any of them ([`Templates`]); overrides are checked with
//! [`check_template`] when the channel is saved. Templates see:
//!
//! * `notification`: `id`, `kind` (`firing`, `resolved`, `escalation`, `test`), `status`
//!   (`firing` unless every alert resolved), `tenant`, `group_labels`, `external_url`;
//! * `alerts`: the list of alerts (fields of [`AlertSummary`]; times as RFC 3339 strings);
//! * `alert`: the first alert; `count`: how many alerts the notification has; `omitted`:
//!   how many of them `alerts` leaves out (non-zero only when the full list would render
//!   more than [`MAX_OUTPUT_BYTES`]; label and annotation values are also cut to
//!   [`MAX_CONTEXT_VALUE_CHARS`] characters);
//! * filters `format_value` (12000, 0.25, 1.5e-7), `labels` (`a=b, c=d`; `labels(' ')` for
//!   another separator), `datetime` (`2025-01-02 03:04:05 UTC`), `severity_color` (hex
//!   colour), `http_url` (the value if it is an http(s) URL, else empty), and the function
//!   `compare(value, threshold)` (`>`, `<` or `=`).
//!
//! Labels and annotations are user-controlled (they come from metrics and rule authors), so
//! every medium escapes them: HTML templates (`.html`) auto-escape, Slack text escapes
//! `&`, `<` and `>` in interpolated values (so a label cannot `@channel` anyone or smuggle a
//! link) while keeping the template's own markup, and e-mail subjects lose line breaks.
//! Undefined variables render as nothing rather than failing, so a template written for
//! one rule does not break on another rule's alerts.

use chrono::{DateTime, SecondsFormat, Utc};
use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, State, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::io;
use std::sync::OnceLock;
use uuid::Uuid;

use super::message::{AlertSummary, Notification, NotificationKind};
use crate::series::{Labels, labels_fingerprint};

/// Largest template source accepted, per template.
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
/// Largest rendered output, per template: bounds what a runaway loop can allocate.
pub const MAX_OUTPUT_BYTES: usize = 512 * 1024;
/// Label and annotation values longer than this are cut in what templates see.
pub const MAX_CONTEXT_VALUE_CHARS: usize = 4096;
/// Longest e-mail subject; longer ones are cut with an ellipsis.
pub const MAX_SUBJECT_CHARS: usize = 250;
/// Longest SMS: two concatenated segments.
pub const MAX_SMS_CHARS: usize = 320;

/// Slack's documented Block Kit limits.
const SLACK_MAX_BLOCKS: usize = 50;
const SLACK_HEADER_MAX: usize = 150;
const SLACK_TEXT_MAX: usize = 3000;
const SLACK_FIELD_MAX: usize = 2000;
const SLACK_BUTTON_TEXT_MAX: usize = 75;
const SLACK_URL_MAX: usize = 3000;

/// The escape mode of Slack templates: see [`formatter`].
const SLACK_ESCAPE: AutoEscape = AutoEscape::Custom("slack");

/// The severity colours of e-mails (and anything else that wants them).
pub fn severity_color(severity: &str) -> &'static str {
    match severity.to_ascii_lowercase().as_str() {
        "critical" => "#d32f2f",
        "error" => "#f57c00",
        "warning" => "#fbc02d",
        "info" => "#1976d2",
        _ => "#616161",
    }
}

/// A channel's own templates; `None` keeps the default. Stored with the channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Templates {
    /// E-mail subject (one line; line breaks become spaces).
    pub subject: Option<String>,
    /// E-mail plain-text body.
    pub text: Option<String>,
    /// E-mail HTML body (auto-escaped).
    pub html: Option<String>,
    /// Slack `text`: the notification and fallback line (Slack mrkdwn).
    pub slack_text: Option<String>,
    /// SMS body (whitespace collapsed, cut at 320 characters).
    pub sms: Option<String>,
}

impl Templates {
    /// Checks every template that is set, naming the first bad one (`templates.html: ...`).
    pub fn validate(&self) -> Result<(), String> {
        let fields = [
            ("subject", &self.subject),
            ("text", &self.text),
            ("html", &self.html),
            ("slack_text", &self.slack_text),
            ("sms", &self.sms),
        ];
        for (field, template) in fields {
            if let Some(template) = template {
                check_template(template).map_err(|err| format!("templates.{field}: {err}"))?;
            }
        }
        Ok(())
    }
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailBody {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A template that could not be rendered. `field` names the template (`subject`, `html`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} template: {message}")]
pub struct RenderError {
    pub field: &'static str,
    pub message: String,
}

/// Checks a template when a channel is saved: size, syntax, and a trial render against a
/// sample notification (which catches unknown filters and functions). The error says what
/// is wrong and where (`syntax error: unexpected end of input (in template:1)`).
pub fn check_template(template: &str) -> Result<(), String> {
    let sample = Notification::sample("tenant", Uuid::nil(), DateTime::<Utc>::UNIX_EPOCH);
    render_notification("template", "template", template, &sample)
        .map(|_| ())
        .map_err(|err| err.message)
}

/// Renders an e-mail: subject, plain text and HTML, each from the channel's template or the
/// default.
pub fn render_email(n: &Notification, overrides: &Templates) -> Result<EmailBody, RenderError> {
    let subject = render_notification(
        "subject",
        "subject.txt",
        overrides.subject.as_deref().unwrap_or(DEFAULT_SUBJECT),
        n,
    )?;
    let text = render_notification(
        "text",
        "text.txt",
        overrides.text.as_deref().unwrap_or(DEFAULT_TEXT),
        n,
    )?;
    let html = render_notification(
        "html",
        "html.html",
        overrides.html.as_deref().unwrap_or(DEFAULT_HTML),
        n,
    )?;
    Ok(EmailBody {
        subject: truncate_chars(&collapse_whitespace(&subject), MAX_SUBJECT_CHARS, "…"),
        text,
        html,
    })
}

/// Renders an SMS: one line of at most 320 characters. The default reads
/// `[CRITICAL] Critical queue depth firing: queue=gmail.com value=12000 > 10000`.
pub fn render_sms(n: &Notification, overrides: &Templates) -> Result<String, RenderError> {
    let sms = render_notification(
        "sms",
        "sms.txt",
        overrides.sms.as_deref().unwrap_or(DEFAULT_SMS),
        n,
    )?;
    // "..." rather than "…": one non-GSM character would switch the whole SMS to UCS-2 and
    // cut a segment from 160 to 70 characters.
    Ok(truncate_chars(
        &collapse_whitespace(&sms),
        MAX_SMS_CHARS,
        "...",
    ))
}

/// Renders a Slack incoming-webhook message (Block Kit): a header with a severity emoji and
/// the rule name; per alert a section with severity, state, value, threshold and start time,
/// the summary and description, the labels as a context block, and buttons to the alert
/// and its runbook; `text` as the notification/fallback line (from the `slack_text`
/// template); and `channel` when the channel overrides the webhook's default. (Webhooks of
/// newer Slack apps ignore `channel`; legacy ones honour it.)
///
/// Slack rejects a whole message that breaks a limit, so every text is cut to its limit
/// with an ellipsis, URLs that are not http(s) or too long are left out, and when the
/// alerts need more than 50 blocks the rest are summarized in a last "… and N more" block.
pub fn render_slack(
    n: &Notification,
    overrides: &Templates,
    channel_override: Option<&str>,
) -> Result<serde_json::Value, RenderError> {
    let text = render_notification(
        "slack_text",
        "slack_text.slack",
        overrides
            .slack_text
            .as_deref()
            .unwrap_or(DEFAULT_SLACK_TEXT),
        n,
    )?;
    let mut text = truncate_mrkdwn(text.trim(), SLACK_TEXT_MAX);
    if text.is_empty() {
        text = slack_escape(&slack_title(n));
    }

    let mut blocks = vec![json!({
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": truncate_slack(&format!("{} {}", slack_emoji(n), slack_title(n)), SLACK_HEADER_MAX),
            "emoji": true,
        },
    })];
    // One block stays free for the "… and N more" note.
    let budget = SLACK_MAX_BLOCKS - 1;
    let mut shown = 0;
    for (index, alert) in n.alerts.iter().enumerate() {
        let mut alert_blocks = slack_alert_blocks(alert, index);
        if index > 0 {
            alert_blocks.insert(0, json!({ "type": "divider" }));
        }
        if blocks.len() + alert_blocks.len() > budget {
            break;
        }
        blocks.extend(alert_blocks);
        shown += 1;
    }
    let hidden = n.alerts.len() - shown;
    if hidden > 0 {
        let mut note = format!(
            "… and {hidden} more alert{}",
            if hidden == 1 { "" } else { "s" }
        );
        if let Some(url) = n.external_url.as_deref().filter(|u| is_http_url(u)) {
            note = format!("{note}: <{}|open Lookout>", slack_escape(url));
        }
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": note }],
        }));
    }

    let mut message = json!({ "text": text, "blocks": blocks });
    if let Some(channel) = channel_override.map(str::trim).filter(|c| !c.is_empty()) {
        message["channel"] = json!(channel);
    }
    Ok(message)
}

/// Lookout's own webhook body (`version` `"1"`):
///
/// ```json
/// {
///   "version": "1",
///   "id": "…uuid, same as the webhook-id header, stable across retries…",
///   "kind": "firing" | "resolved" | "escalation" | "test",
///   "status": "firing" | "resolved",
///   "tenant": "acme",
///   "group_labels": { "queue": "gmail.com" },
///   "alerts": [{ "id", "rule_id", "rule_name", "severity", "state", "value", "threshold",
///                "labels", "annotations", "started_at", "resolved_at", "acknowledged_by",
///                "url" }],
///   "external_url": "https://lookout.example.com" | null
/// }
/// ```
///
/// Times are RFC 3339 in UTC; `value`/`threshold` are numbers or null. Fields may be added
/// within a version; removing or changing one bumps `version`.
pub fn render_webhook_lookout(n: &Notification) -> serde_json::Value {
    json!({
        "version": "1",
        "id": n.id,
        "kind": n.kind,
        "status": n.status(),
        "tenant": n.tenant,
        "group_labels": n.group_labels,
        "alerts": n.alerts,
        "external_url": n.external_url,
    })
}

/// The body Alertmanager's webhook receiver sends (version 4), so receivers written for
/// Alertmanager work unchanged. `receiver` is the channel's name. Each alert's labels get
/// `alertname` (the rule name) and `severity`, as Prometheus alerting rules conventionally
/// have them; `endsAt` is Go's zero time while firing; `fingerprint` is 16 hex digits
/// identifying the label set.
pub fn render_webhook_alertmanager(n: &Notification, receiver: &str) -> serde_json::Value {
    let alerts: Vec<(Labels, &AlertSummary)> = n
        .alerts
        .iter()
        .map(|a| (alertmanager_labels(a), a))
        .collect();
    let common_labels = common_entries(alerts.iter().map(|(labels, _)| labels));
    let common_annotations = common_entries(alerts.iter().map(|(_, a)| &a.annotations));
    let alerts_json: Vec<serde_json::Value> = alerts
        .iter()
        .map(|(labels, a)| {
            let status = if a.is_resolved() {
                "resolved"
            } else {
                "firing"
            };
            let ends_at = match (status, a.resolved_at) {
                ("resolved", Some(at)) => rfc3339(at),
                _ => "0001-01-01T00:00:00Z".to_string(),
            };
            json!({
                "status": status,
                "labels": labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.started_at),
                "endsAt": ends_at,
                "generatorURL": a.url.clone().unwrap_or_default(),
                // Go's model.Fingerprint prints as 16 hex digits; the bits are ours.
                "fingerprint": format!("{:016x}", labels_fingerprint(labels).cast_unsigned()),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": format!(
            "{{}}/{{tenant={}}}:{}",
            go_quote(&n.tenant),
            label_set_string(&n.group_labels)
        ),
        "truncatedAlerts": 0,
        "status": n.status(),
        "receiver": receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": n.external_url.clone().unwrap_or_default(),
        "alerts": alerts_json,
    })
}

/// Formats a sample value for people: integers without decimals, others with up to four,
/// very large or small ones in scientific notation; NaN and infinities as Prometheus does.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if value == 0.0 {
        return "0".into();
    }
    let magnitude = value.abs();
    if !(1e-3..1e15).contains(&magnitude) {
        return format!("{value:.3e}");
    }
    if value.fract() == 0.0 {
        return format!("{value:.0}");
    }
    let fixed = format!("{value:.4}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        "0".into()
    } else {
        trimmed.into()
    }
}

// ---------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------

const DEFAULT_SUBJECT: &str = "[{{ notification.kind|upper }}{{ (':' ~ count) if count > 1 }}] \
{{ alert.rule_name }}{{ (' (' ~ notification.group_labels|labels ~ ')') if notification.group_labels }}";

const DEFAULT_SLACK_TEXT: &str = "[{{ notification.kind|upper }}{{ (':' ~ count) if count > 1 }}] \
{{ alert.rule_name }}{% if count == 1 %} ({{ alert.severity }}\
{{ (', value ' ~ alert.value|format_value) if alert.value is not none }}){% endif %}";

const DEFAULT_SMS: &str = "[{{ alert.severity|upper }}] {{ alert.rule_name }} {{ alert.state }}:\
{{ (' ' ~ alert.labels|labels(' ')) if alert.labels }}\
{% if alert.value is not none %} value={{ alert.value|format_value }}\
{{ (' ' ~ compare(alert.value, alert.threshold) ~ ' ' ~ alert.threshold|format_value) if alert.threshold is not none }}\
{% endif %}{{ (' (+' ~ (count - 1) ~ ' more)') if count > 1 }}";

const DEFAULT_TEXT: &str = r#"{{ notification.kind|upper }}: {{ count }} alert{{ 's' if count != 1 }}{{ (' for ' ~ notification.group_labels|labels) if notification.group_labels }}
{% for a in alerts %}

[{{ a.severity|upper }}] {{ a.rule_name }} is {{ a.state }}
{% if a.annotations.summary %}
{{ a.annotations.summary }}
{% endif %}
{% if a.value is not none %}
Value: {{ a.value|format_value }}{{ (' (' ~ compare(a.value, a.threshold) ~ ' threshold ' ~ a.threshold|format_value ~ ')') if a.threshold is not none }}
{% endif %}
Started: {{ a.started_at|datetime }}
{% if a.resolved_at %}
Resolved: {{ a.resolved_at|datetime }}
{% endif %}
{% if a.acknowledged_by %}
Acknowledged by: {{ a.acknowledged_by }}
{% endif %}
{% if a.labels %}
Labels: {{ a.labels|labels }}
{% endif %}
{% if a.annotations.description %}

{{ a.annotations.description }}
{% endif %}
{% if a.url %}
Details: {{ a.url }}
{% endif %}
{% endfor %}
{% if omitted %}

... and {{ omitted }} more alert{{ 's' if omitted != 1 }} not shown here.
{% endif %}
{% if notification.external_url %}

Lookout: {{ notification.external_url }}
{% endif %}
"#;

const DEFAULT_HTML: &str = r#"<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ alert.rule_name }}</title>
</head>
<body style="margin:0;padding:0;background:#f4f5f7;font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#212121;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="background:#f4f5f7;">
<tr><td align="center" style="padding:24px 12px;">
<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" style="width:100%;max-width:600px;background:#ffffff;border:1px solid #e0e0e0;">
<tr><td style="padding:16px 24px;border-bottom:1px solid #e0e0e0;">
<div style="font-size:12px;letter-spacing:1px;color:#757575;">{{ notification.kind|upper }} &middot; {{ count }} ALERT{{ 'S' if count != 1 }}</div>
{% if notification.group_labels %}
<div style="font-size:13px;color:#616161;margin-top:4px;">{{ notification.group_labels|labels }}</div>
{% endif %}
</td></tr>
{% for a in alerts %}
<tr><td style="padding:16px 24px 0 24px;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">
<tr>
<td width="6" style="width:6px;background:{{ a.severity|severity_color }};">&nbsp;</td>
<td style="padding:12px 16px;background:#fafafa;">
<div style="font-size:16px;font-weight:bold;">
{% if a.url|http_url %}
<a href="{{ a.url|http_url }}" style="color:#212121;">{{ a.rule_name }}</a>
{% else %}
{{ a.rule_name }}
{% endif %}
</div>
<div style="font-size:13px;margin-top:4px;color:#616161;"><span style="color:{{ a.severity|severity_color }};font-weight:bold;">{{ a.severity|upper }}</span> &middot; {{ a.state }} &middot; since {{ a.started_at|datetime }}{% if a.resolved_at %} &middot; resolved {{ a.resolved_at|datetime }}{% endif %}</div>
{% if a.annotations.summary %}
<div style="font-size:14px;margin-top:12px;font-weight:bold;">{{ a.annotations.summary }}</div>
{% endif %}
{% if a.annotations.description %}
<div style="font-size:14px;margin-top:6px;white-space:pre-wrap;">{{ a.annotations.description }}</div>
{% endif %}
<table role="presentation" cellpadding="0" cellspacing="0" border="0" style="margin-top:12px;font-size:13px;">
{% if a.value is not none %}
<tr><td style="padding:2px 12px 2px 0;color:#757575;">Value</td><td style="padding:2px 0;font-weight:bold;">{{ a.value|format_value }}</td></tr>
{% endif %}
{% if a.threshold is not none %}
<tr><td style="padding:2px 12px 2px 0;color:#757575;">Threshold</td><td style="padding:2px 0;">{{ compare(a.value, a.threshold) }} {{ a.threshold|format_value }}</td></tr>
{% endif %}
{% if a.acknowledged_by %}
<tr><td style="padding:2px 12px 2px 0;color:#757575;">Acknowledged by</td><td style="padding:2px 0;">{{ a.acknowledged_by }}</td></tr>
{% endif %}
{% for name, value in a.labels|items %}
<tr><td style="padding:2px 12px 2px 0;color:#757575;">{{ name }}</td><td style="padding:2px 0;font-family:Menlo,Consolas,monospace;">{{ value }}</td></tr>
{% endfor %}
</table>
{% if a.annotations.runbook_url|http_url %}
<div style="font-size:13px;margin-top:12px;"><a href="{{ a.annotations.runbook_url|http_url }}" style="color:#1976d2;">Runbook</a></div>
{% endif %}
</td>
</tr>
</table>
</td></tr>
{% endfor %}
{% if omitted %}
<tr><td style="padding:16px 24px 0 24px;font-size:14px;">&hellip; and {{ omitted }} more alert{{ 's' if omitted != 1 }} not shown here.</td></tr>
{% endif %}
<tr><td style="padding:16px 24px;font-size:12px;color:#9e9e9e;">
{% if notification.external_url|http_url %}
Sent by <a href="{{ notification.external_url|http_url }}" style="color:#9e9e9e;">Lookout</a>
{% else %}
Sent by Lookout
{% endif %}
</td></tr>
</table>
</td></tr>
</table>
</body>
</html>
"#;

/// The template environment, built once: Jinja syntax with blocks trimmed (so `{% if %}`
/// lines leave no blank lines), lenient undefined values, escaping by template name, and our
/// filters.
fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(build_environment)
}

fn build_environment() -> Environment<'static> {
    // The rule annotations' environment (filters, fuel, undefined handling), with this
    // module's escaping and formatting on top.
    let mut env = crate::rules::template::environment();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else if name.ends_with(".slack") {
            SLACK_ESCAPE
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(formatter);
    env.add_filter("format_value", |value: Value| -> String {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => String::new(),
            _ => match f64::try_from(value.clone()) {
                Ok(number) if value.kind() == ValueKind::Number => format_value(number),
                _ => value.to_string(),
            },
        }
    });
    env.add_filter("severity_color", |severity: Value| -> String {
        severity_color(value_str(&severity).as_str()).to_string()
    });
    env.add_filter("http_url", |url: Value| -> String {
        let url = value_str(&url);
        if is_http_url(&url) {
            url
        } else {
            String::new()
        }
    });
    env.add_filter("datetime", |at: Value| -> String {
        let text = value_str(&at);
        match DateTime::parse_from_rfc3339(&text) {
            Ok(at) => at
                .with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            Err(_) => text,
        }
    });
    env.add_filter(
        "labels",
        |labels: Value, separator: Option<String>| -> String {
            if labels.kind() != ValueKind::Map {
                return String::new();
            }
            let Ok(names) = labels.try_iter() else {
                return String::new();
            };
            names
                .map(|name| {
                    let value = labels.get_item(&name).unwrap_or_default();
                    format!("{}={}", value_str(&name), value_str(&value))
                })
                .collect::<Vec<_>>()
                .join(separator.as_deref().unwrap_or(", "))
        },
    );
    env.add_function("compare", |value: Value, threshold: Value| -> String {
        match (f64::try_from(value), f64::try_from(threshold)) {
            (Ok(v), Ok(t)) if v > t => ">".into(),
            (Ok(v), Ok(t)) if v < t => "<".into(),
            (Ok(v), Ok(t)) if v == t => "=".into(),
            _ => String::new(),
        }
    });
    env
}

/// Prints values: `none` as nothing (an absent value is not the word "none"), and in Slack
/// templates escapes the three characters Slack treats as markup. Text the template itself
/// contains is not touched, so a template can still write `<https://…|a link>`.
fn formatter(
    out: &mut minijinja::Output,
    state: &State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if value.is_none() {
        return Ok(());
    }
    if state.auto_escape() == SLACK_ESCAPE {
        let text = if value.is_safe() {
            value.to_string()
        } else {
            slack_escape(&value.to_string())
        };
        return out.write_str(&text).map_err(minijinja::Error::from);
    }
    minijinja::escape_formatter(out, state, value)
}

/// The template context (see the module doc) with the first `shown` alerts. Label and
/// annotation values are cut to [`MAX_CONTEXT_VALUE_CHARS`]: a message is for reading, and
/// the full text is one click away.
fn context(n: &Notification, shown: usize) -> Value {
    #[derive(Serialize)]
    struct NotificationContext<'a> {
        id: Uuid,
        kind: &'static str,
        status: &'static str,
        tenant: &'a str,
        group_labels: &'a Labels,
        external_url: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Context<'a> {
        notification: NotificationContext<'a>,
        alerts: &'a [AlertSummary],
        alert: Option<&'a AlertSummary>,
        count: usize,
        omitted: usize,
    }
    let bound = |value: &String| truncate_chars(value, MAX_CONTEXT_VALUE_CHARS, "…");
    let alerts: Vec<AlertSummary> = n
        .alerts
        .iter()
        .take(shown)
        .map(|a| AlertSummary {
            rule_name: bound(&a.rule_name),
            labels: a
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), bound(v)))
                .collect(),
            annotations: a
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), bound(v)))
                .collect(),
            ..a.clone()
        })
        .collect();
    Value::from_serialize(Context {
        notification: NotificationContext {
            id: n.id,
            kind: n.kind.as_str(),
            status: n.status(),
            tenant: &n.tenant,
            group_labels: &n.group_labels,
            external_url: n.external_url.as_deref(),
        },
        alerts: &alerts,
        alert: alerts.first(),
        count: n.alerts.len(),
        omitted: n.alerts.len() - alerts.len(),
    })
}

/// Renders one template for `n`. When the output would pass [`MAX_OUTPUT_BYTES`] (a large
/// group with long descriptions), it renders again with half as many alerts, down to one:
/// a shortened message beats no message. Templates learn how many were left out from
/// `omitted`.
fn render_notification(
    field: &'static str,
    name: &str,
    source: &str,
    n: &Notification,
) -> Result<String, RenderError> {
    let mut shown = n.alerts.len();
    loop {
        match render_template(field, name, source, &context(n, shown)) {
            Err(Failure::TooLarge(_)) if shown > 1 => shown /= 2,
            Ok(output) => return Ok(output),
            Err(Failure::TooLarge(err) | Failure::Invalid(err)) => return Err(err),
        }
    }
}

enum Failure {
    /// The output passed [`MAX_OUTPUT_BYTES`].
    TooLarge(RenderError),
    /// Anything else: syntax, unknown filter, a failed operation.
    Invalid(RenderError),
}

/// Compiles and renders one template, bounding its source and output sizes.
fn render_template(
    field: &'static str,
    name: &str,
    source: &str,
    ctx: &Value,
) -> Result<String, Failure> {
    let fail = |message: String| RenderError { field, message };
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(Failure::Invalid(fail(format!(
            "template is {} bytes, at most {MAX_TEMPLATE_BYTES} are allowed",
            source.len()
        ))));
    }
    let template = environment()
        .template_from_named_str(name, source)
        .map_err(|err| Failure::Invalid(fail(err.to_string())))?;
    let mut out = CappedWriter {
        buf: Vec::new(),
        overflowed: false,
    };
    match template.render_captured_to(ctx, &mut out) {
        Ok(_) => Ok(String::from_utf8_lossy(&out.buf).into_owned()),
        Err(_) if out.overflowed => Err(Failure::TooLarge(fail(format!(
            "output is larger than {} KiB",
            MAX_OUTPUT_BYTES / 1024
        )))),
        Err(err) => Err(Failure::Invalid(fail(err.to_string()))),
    }
}

/// Collects template output and refuses to grow past [`MAX_OUTPUT_BYTES`], which stops the
/// render with an error instead of exhausting memory.
struct CappedWriter {
    buf: Vec<u8>,
    overflowed: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(io::Error::other("template output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn value_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => String::new(),
        _ => value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string),
    }
}

// ---------------------------------------------------------------------------------------
// Slack
// ---------------------------------------------------------------------------------------

/// `Firing: Critical queue depth`, `Resolved: 3 alerts`, ...
fn slack_title(n: &Notification) -> String {
    let kind = match n.kind {
        NotificationKind::Firing => "Firing",
        NotificationKind::Resolved => "Resolved",
        NotificationKind::Escalation => "Escalation",
        NotificationKind::Test => "Test",
    };
    let first = n.alerts.first().map_or("", |a| a.rule_name.as_str());
    let same_rule = n.alerts.iter().all(|a| a.rule_name == first);
    match n.alerts.len() {
        0 => kind.to_string(),
        1 => format!("{kind}: {first}"),
        count if same_rule => format!("{kind}: {first} ({count} alerts)"),
        count => format!("{kind}: {count} alerts"),
    }
}

/// ✅ when everything resolved, else the colour of the worst severity.
fn slack_emoji(n: &Notification) -> &'static str {
    if n.status() == "resolved" {
        return "✅";
    }
    let rank = |severity: &str| match severity.to_ascii_lowercase().as_str() {
        "critical" => 3,
        "error" => 2,
        "warning" => 1,
        _ => 0,
    };
    match n
        .alerts
        .iter()
        .map(|a| rank(&a.severity))
        .max()
        .unwrap_or(0)
    {
        3 => "🔴",
        2 => "🟠",
        1 => "🟡",
        _ => "🔵",
    }
}

/// One alert's blocks: facts, annotations, labels, buttons (the last three when present).
fn slack_alert_blocks(a: &AlertSummary, index: usize) -> Vec<serde_json::Value> {
    let field = |name: &str, value: &str| {
        json!({
            "type": "mrkdwn",
            "text": truncate_mrkdwn(&format!("*{name}*\n{}", slack_escape(value)), SLACK_FIELD_MAX),
        })
    };
    let mut fields = vec![field("Severity", &a.severity), field("State", &a.state)];
    if let Some(value) = a.value {
        fields.push(field("Value", &format_value(value)));
    }
    if let Some(threshold) = a.threshold {
        fields.push(field("Threshold", &format_value(threshold)));
    }
    fields.push(field(
        "Started",
        &a.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    ));
    if let Some(at) = a.resolved_at {
        fields.push(field(
            "Resolved",
            &at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ));
    }
    if let Some(who) = &a.acknowledged_by {
        fields.push(field("Acknowledged by", who));
    }
    let title = match a.url.as_deref().filter(|u| slack_url_ok(u)) {
        Some(url) => format!("*<{}|{}>*", slack_escape(url), slack_escape(&a.rule_name)),
        None => format!("*{}*", slack_escape(&a.rule_name)),
    };
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": truncate_mrkdwn(&title, SLACK_TEXT_MAX) },
        "fields": fields,
    })];

    let summary = a
        .annotations
        .get("summary")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty());
    let description = a
        .annotations
        .get("description")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty());
    let annotation_text = match (summary, description) {
        (Some(s), Some(d)) => Some(format!("*{}*\n{}", slack_escape(s), slack_escape(d))),
        (Some(s), None) => Some(format!("*{}*", slack_escape(s))),
        (None, Some(d)) => Some(slack_escape(d)),
        (None, None) => None,
    };
    if let Some(text) = annotation_text {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": truncate_mrkdwn(&text, SLACK_TEXT_MAX) },
        }));
    }

    if !a.labels.is_empty() {
        let labels = a
            .labels
            .iter()
            // A backtick would end the code span early.
            .map(|(k, v)| slack_escape(&format!("`{k}={v}`", v = v.replace('`', "'"))))
            .collect::<Vec<_>>()
            .join("  ");
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": truncate_mrkdwn(&labels, SLACK_TEXT_MAX) }],
        }));
    }

    let mut buttons = Vec::new();
    if let Some(url) = a.url.as_deref().filter(|u| slack_url_ok(u)) {
        buttons.push(slack_button(
            "View alert",
            url,
            &format!("view_alert_{index}"),
        ));
    }
    if let Some(url) = a
        .annotations
        .get("runbook_url")
        .map(|u| u.trim())
        .filter(|u| slack_url_ok(u))
    {
        buttons.push(slack_button("Runbook", url, &format!("runbook_{index}")));
    }
    if !buttons.is_empty() {
        blocks.push(json!({ "type": "actions", "elements": buttons }));
    }
    blocks
}

fn slack_button(label: &str, url: &str, action_id: &str) -> serde_json::Value {
    json!({
        "type": "button",
        "text": { "type": "plain_text", "text": truncate_slack(label, SLACK_BUTTON_TEXT_MAX) },
        "url": url,
        "action_id": action_id,
    })
}

/// Slack rejects the whole message over one bad URL, so only plain http(s) URLs of
/// acceptable length are used.
fn slack_url_ok(url: &str) -> bool {
    is_http_url(url) && url.len() <= SLACK_URL_MAX
}

/// Escapes the characters Slack's mrkdwn treats as control sequences (`<!channel>`,
/// `<url|text>`); everything else is shown as typed.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts mrkdwn to `max` characters without leaving half an entity (`&am…`) or half a link
/// (`<https://…`) behind.
fn truncate_mrkdwn(text: &str, max: usize) -> String {
    let truncated = truncate_slack(text, max);
    if truncated == text {
        return truncated;
    }
    // A prefix of `text` followed by the ellipsis; back up further if the prefix ends
    // inside an entity or a link.
    let cut = truncated.strip_suffix('…').unwrap_or(&truncated);
    let mut end = cut.len();
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        end = amp;
    }
    if let Some(open) = cut[..end].rfind('<')
        && !cut[open..end].contains('>')
    {
        end = open;
    }
    format!("{}…", &cut[..end])
}

// ---------------------------------------------------------------------------------------
// Alertmanager
// ---------------------------------------------------------------------------------------

fn alertmanager_labels(a: &AlertSummary) -> Labels {
    let mut labels = a.labels.clone();
    labels.insert("alertname".into(), a.rule_name.clone());
    labels.insert("severity".into(), a.severity.clone());
    labels
}

/// The entries every map shares (same key, same value); empty when there are no maps.
fn common_entries<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut common = first.clone();
    for map in maps {
        common.retain(|k, v| map.get(k) == Some(v));
    }
    common
}

/// `{a="b", c="d"}`, as Prometheus prints a label set.
fn label_set_string(labels: &Labels) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

// ---------------------------------------------------------------------------------------
// Text helpers
// ---------------------------------------------------------------------------------------

fn is_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && url.len() > "http://".len()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Replaces every run of whitespace (line breaks included) by one space and trims.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts `text` to at most `max` characters, ending with `ellipsis` when cut.
fn truncate_chars(text: &str, max: usize, ellipsis: &str) -> String {
    truncate_by(text, max, ellipsis, |_| 1)
}

/// Cuts `text` to at most `max` UTF-16 code units. Slack's limits are in characters, but
/// which characters (an emoji is one char, two UTF-16 units) is not documented; counting
/// UTF-16 units is never more than Slack's count either way.
fn truncate_slack(text: &str, max: usize) -> String {
    truncate_by(text, max, "…", char::len_utf16)
}

fn truncate_by(text: &str, max: usize, ellipsis: &str, width: fn(char) -> usize) -> String {
    let total: usize = text.chars().map(width).sum();
    if total <= max {
        return text.to_string();
    }
    let budget = max.saturating_sub(ellipsis.chars().map(width).sum());
    let mut used = 0;
    let mut out: String = text
        .chars()
        .take_while(|&c| {
            used += width(c);
            used <= budget
        })
        .collect();
    out.push_str(ellipsis);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, h, m, 0).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn alert(queue: &str) -> AlertSummary {
        AlertSummary {
            id: Uuid::from_u128(1),
            rule_id: Uuid::from_u128(2),
            rule_name: "Critical queue depth".into(),
            severity: "critical".into(),
            state: "firing".into(),
            value: Some(12000.0),
            threshold: Some(10000.0),
            labels: labels(&[("queue", queue)]),
            annotations: [
                ("summary", format!("Queue {queue} is deep")),
                (
                    "description",
                    "Ready queue above 10000 for 5m.\nCheck the MX.".to_string(),
                ),
                ("runbook_url", "https://wiki.example.com/queues".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            started_at: at(10, 0),
            resolved_at: None,
            acknowledged_by: None,
            url: Some(format!("https://lookout.example.com/alerts/{queue}")),
        }
    }

    fn firing() -> Notification {
        Notification {
            id: Uuid::from_u128(99),
            kind: NotificationKind::Firing,
            tenant: "acme".into(),
            group_labels: labels(&[("queue", "gmail.com")]),
            alerts: vec![alert("gmail.com")],
            external_url: Some("https://lookout.example.com".into()),
        }
    }

    fn resolved() -> Notification {
        let mut n = firing();
        n.kind = NotificationKind::Resolved;
        n.alerts[0].state = "resolved".into();
        n.alerts[0].resolved_at = Some(at(10, 30));
        n.alerts[0].acknowledged_by = Some("ops@example.com".into());
        n
    }

    fn grouped(count: usize) -> Notification {
        let mut n = firing();
        n.group_labels = Labels::new();
        n.alerts = (0..count)
            .map(|i| alert(&format!("q{i}.example")))
            .collect();
        n
    }

    fn hostile() -> Notification {
        let mut n = firing();
        let a = &mut n.alerts[0];
        a.rule_name = "Depth <b>bold</b>".into();
        a.labels
            .insert("queue".into(), "<script>alert(1)</script>".into());
        a.annotations.insert(
            "summary".into(),
            "<!channel> & <https://evil.example|click>".into(),
        );
        a.annotations
            .insert("runbook_url".into(), "javascript:alert(1)".into());
        a.url = Some("javascript:alert(1)".into());
        n.group_labels
            .insert("queue".into(), "x\r\nBcc: victim@example.com".into());
        n
    }

    #[test]
    fn email_defaults_for_firing_resolved_and_grouped() {
        let email = render_email(&firing(), &Templates::default()).unwrap();
        assert_eq!(
            email.subject,
            "[FIRING] Critical queue depth (queue=gmail.com)"
        );
        let expected_text = "\
FIRING: 1 alert for queue=gmail.com

[CRITICAL] Critical queue depth is firing
Queue gmail.com is deep
Value: 12000 (> threshold 10000)
Started: 2025-03-04 10:00:00 UTC
Labels: queue=gmail.com

Ready queue above 10000 for 5m.
Check the MX.
Details: https://lookout.example.com/alerts/gmail.com

Lookout: https://lookout.example.com
";
        assert_eq!(email.text, expected_text);
        assert!(email.html.contains("background:#d32f2f"), "{}", email.html);
        assert!(email.html.contains("Queue gmail.com is deep"));
        assert!(
            email
                .html
                .contains(r#"href="https:&#x2f;&#x2f;wiki.example.com&#x2f;queues""#)
        );

        let email = render_email(&resolved(), &Templates::default()).unwrap();
        assert_eq!(
            email.subject,
            "[RESOLVED] Critical queue depth (queue=gmail.com)"
        );
        assert!(email.text.contains("is resolved\n"), "{}", email.text);
        assert!(email.text.contains("Resolved: 2025-03-04 10:30:00 UTC\n"));
        assert!(email.text.contains("Acknowledged by: ops@example.com\n"));
        assert!(email.html.contains("resolved 2025-03-04 10:30:00 UTC"));

        let email = render_email(&grouped(3), &Templates::default()).unwrap();
        assert_eq!(email.subject, "[FIRING:3] Critical queue depth");
        assert!(email.text.starts_with("FIRING: 3 alerts\n"));
        for i in 0..3 {
            assert!(
                email
                    .text
                    .contains(&format!("Labels: queue=q{i}.example\n"))
            );
            assert!(email.html.contains(&format!("q{i}.example")));
        }
    }

    #[test]
    fn email_colours_follow_severity() {
        for (severity, colour) in [
            ("critical", "#d32f2f"),
            ("error", "#f57c00"),
            ("warning", "#fbc02d"),
            ("info", "#1976d2"),
            ("mystery", "#616161"),
        ] {
            let mut n = firing();
            n.alerts[0].severity = severity.into();
            let html = render_email(&n, &Templates::default()).unwrap().html;
            assert!(
                html.contains(&format!("background:{colour};")),
                "{severity}"
            );
        }
    }

    #[test]
    fn user_text_is_escaped_in_html_and_subjects_stay_one_line() {
        let email = render_email(&hostile(), &Templates::default()).unwrap();
        assert!(!email.html.contains("<script>"), "{}", email.html);
        assert!(
            email
                .html
                .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;")
        );
        assert!(!email.html.contains("<b>bold"));
        assert!(
            !email.html.contains("javascript:"),
            "unsafe URLs are dropped"
        );
        assert!(!email.subject.contains('\n') && !email.subject.contains('\r'));
        assert!(
            email.subject.contains("x Bcc: victim@example.com"),
            "{}",
            email.subject
        );

        // Escaping also applies to overridden HTML templates.
        let overrides = Templates {
            html: Some("<p>{{ alert.labels.queue }}</p>".into()),
            ..Templates::default()
        };
        let html = render_email(&hostile(), &overrides).unwrap().html;
        assert_eq!(html, "<p>&lt;script&gt;alert(1)&lt;&#x2f;script&gt;</p>");
    }

    #[test]
    fn huge_groups_shrink_instead_of_failing() {
        let mut n = grouped(100);
        for a in &mut n.alerts {
            a.annotations
                .insert("description".into(), "&".repeat(10_000));
        }
        let email = render_email(&n, &Templates::default()).unwrap();
        assert!(email.html.len() <= MAX_OUTPUT_BYTES);
        let shown = (0..100)
            .filter(|i| email.html.contains(&format!(">q{i}.example<")))
            .count();
        assert!((1..100).contains(&shown), "{shown} alerts shown");
        assert!(
            email.html.contains(&format!(
                "&hellip; and {} more alerts not shown here.",
                100 - shown
            )),
            "the e-mail says how many alerts it left out"
        );
        // Values are cut for templates: 4096 characters of "&", escaped, per alert.
        assert!(
            !email
                .html
                .contains(&"&amp;".repeat(MAX_CONTEXT_VALUE_CHARS))
        );
        assert!(
            email
                .html
                .contains(&"&amp;".repeat(MAX_CONTEXT_VALUE_CHARS - 1))
        );
    }

    #[test]
    fn slack_message_has_the_documented_blocks() {
        let message = render_slack(&firing(), &Templates::default(), Some("#oncall")).unwrap();
        assert_eq!(message["channel"], "#oncall");
        assert_eq!(
            message["text"],
            "[FIRING] Critical queue depth (critical, value 12000)"
        );
        let blocks = message["blocks"].as_array().unwrap();
        let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["header", "section", "section", "context", "actions"]
        );
        assert_eq!(blocks[0]["text"]["text"], "🔴 Firing: Critical queue depth");
        assert_eq!(
            blocks[1]["text"]["text"],
            "*<https://lookout.example.com/alerts/gmail.com|Critical queue depth>*"
        );
        let fields: Vec<&str> = blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "*Severity*\ncritical",
                "*State*\nfiring",
                "*Value*\n12000",
                "*Threshold*\n10000",
                "*Started*\n2025-03-04 10:00:00 UTC"
            ]
        );
        assert_eq!(
            blocks[2]["text"]["text"],
            "*Queue gmail.com is deep*\nReady queue above 10000 for 5m.\nCheck the MX."
        );
        assert_eq!(blocks[3]["elements"][0]["text"], "`queue=gmail.com`");
        assert_eq!(
            blocks[4]["elements"][0]["url"],
            "https://lookout.example.com/alerts/gmail.com"
        );
        assert_eq!(
            blocks[4]["elements"][1]["url"],
            "https://wiki.example.com/queues"
        );

        let message = render_slack(&resolved(), &Templates::default(), None).unwrap();
        assert!(message.get("channel").is_none());
        assert_eq!(
            message["blocks"][0]["text"]["text"],
            "✅ Resolved: Critical queue depth"
        );
        let message = render_slack(&grouped(2), &Templates::default(), Some("  ")).unwrap();
        assert!(
            message.get("channel").is_none(),
            "a blank override is no override"
        );
        assert_eq!(message["text"], "[FIRING:2] Critical queue depth");
        assert_eq!(
            message["blocks"][0]["text"]["text"],
            "🔴 Firing: Critical queue depth (2 alerts)"
        );
        assert_eq!(message["blocks"][5]["type"], "divider");
    }

    #[test]
    fn slack_escapes_user_text_and_drops_unsafe_links() {
        let message = render_slack(&hostile(), &Templates::default(), None).unwrap();
        let blocks = message["blocks"].as_array().unwrap();
        assert_eq!(blocks[1]["text"]["text"], "*Depth &lt;b&gt;bold&lt;/b&gt;*");
        assert_eq!(
            blocks[2]["text"]["text"],
            "*&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;*\nReady queue above 10000 for 5m.\nCheck the MX."
        );
        assert!(
            blocks.iter().all(|b| b["type"] != "actions"),
            "javascript: URLs are no buttons"
        );
        // Overridden text: the template's own link stays, interpolated values are escaped.
        let overrides = Templates {
            slack_text: Some("<https://x.example|{{ alert.annotations.summary }}>".into()),
            ..Templates::default()
        };
        let message = render_slack(&hostile(), &overrides, None).unwrap();
        assert_eq!(
            message["text"],
            "<https://x.example|&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;>"
        );
    }

    #[test]
    fn slack_respects_its_limits() {
        let mut n = grouped(30);
        for a in &mut n.alerts {
            a.rule_name = "R".repeat(400);
        }
        n.alerts[0]
            .annotations
            .insert("description".into(), "&".repeat(5000));
        n.alerts[0].labels.insert("big".into(), "v".repeat(4000));
        let message = render_slack(&n, &Templates::default(), None).unwrap();
        let blocks = message["blocks"].as_array().unwrap();
        assert!(blocks.len() <= SLACK_MAX_BLOCKS, "{}", blocks.len());
        let header = blocks[0]["text"]["text"].as_str().unwrap();
        // Counted in UTF-16 units: the emoji counts twice.
        assert_eq!(header.encode_utf16().count(), SLACK_HEADER_MAX);
        assert!(header.starts_with("🔴 Firing: RRR"));
        assert!(header.ends_with('…'));
        let description = blocks[2]["text"]["text"].as_str().unwrap();
        assert!(description.chars().count() <= SLACK_TEXT_MAX);
        assert!(
            description.ends_with("&amp;…"),
            "no half entity: {}",
            &description[description.len() - 20..]
        );
        let context = blocks[3]["elements"][0]["text"].as_str().unwrap();
        assert!(context.chars().count() <= SLACK_TEXT_MAX);
        assert!(message["text"].as_str().unwrap().chars().count() <= SLACK_TEXT_MAX);
        let last = blocks.last().unwrap();
        assert_eq!(last["type"], "context");
        let shown = blocks.iter().filter(|b| b["type"] == "actions").count();
        let note = last["elements"][0]["text"].as_str().unwrap();
        assert_eq!(
            note,
            format!(
                "… and {} more alerts: <https://lookout.example.com|open Lookout>",
                30 - shown
            )
        );

        assert_eq!(truncate_mrkdwn("ab<https://x|y> tail", 6), "ab…");
        assert_eq!(truncate_mrkdwn("short", 6), "short");
    }

    #[test]
    fn lookout_webhook_shape() {
        let body = render_webhook_lookout(&resolved());
        assert_eq!(body["version"], "1");
        assert_eq!(body["id"], Uuid::from_u128(99).to_string());
        assert_eq!(body["kind"], "resolved");
        assert_eq!(body["status"], "resolved");
        assert_eq!(body["tenant"], "acme");
        assert_eq!(body["group_labels"], json!({ "queue": "gmail.com" }));
        assert_eq!(body["external_url"], "https://lookout.example.com");
        let alert = &body["alerts"][0];
        assert_eq!(alert["rule_name"], "Critical queue depth");
        assert_eq!(alert["value"], 12000.0);
        assert_eq!(alert["started_at"], "2025-03-04T10:00:00Z");
        assert_eq!(alert["resolved_at"], "2025-03-04T10:30:00Z");
        assert_eq!(alert["acknowledged_by"], "ops@example.com");
        let back: Vec<AlertSummary> = serde_json::from_value(body["alerts"].clone()).unwrap();
        assert_eq!(back, resolved().alerts);
    }

    #[test]
    fn alertmanager_webhook_uses_alertmanagers_field_names() {
        let mut n = grouped(2);
        n.group_labels = labels(&[("team", "mail")]);
        for a in &mut n.alerts {
            a.labels.insert("team".into(), "mail".into());
        }
        n.alerts[1].state = "resolved".into();
        n.alerts[1].resolved_at = Some(at(11, 0));
        n.alerts[1].started_at = Utc.with_ymd_and_hms(2025, 3, 4, 10, 0, 0).unwrap()
            + chrono::Duration::milliseconds(250);
        let body = render_webhook_alertmanager(&n, "mail-team");
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "version",
            "groupKey",
            "truncatedAlerts",
            "status",
            "receiver",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "alerts",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(body["version"], "4");
        assert_eq!(body["groupKey"], r#"{}/{tenant="acme"}:{team="mail"}"#);
        assert_eq!(body["truncatedAlerts"], 0);
        assert_eq!(body["status"], "firing");
        assert_eq!(body["receiver"], "mail-team");
        assert_eq!(body["groupLabels"], json!({ "team": "mail" }));
        assert_eq!(
            body["commonLabels"],
            json!({ "alertname": "Critical queue depth", "severity": "critical", "team": "mail" })
        );
        assert_eq!(
            body["commonAnnotations"],
            json!({ "runbook_url": "https://wiki.example.com/queues",
                    "description": "Ready queue above 10000 for 5m.\nCheck the MX." })
        );
        assert_eq!(body["externalURL"], "https://lookout.example.com");

        let first = &body["alerts"][0];
        let keys: Vec<&str> = first
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(first["status"], "firing");
        assert_eq!(first["labels"]["alertname"], "Critical queue depth");
        assert_eq!(first["labels"]["severity"], "critical");
        assert_eq!(first["labels"]["queue"], "q0.example");
        assert_eq!(first["startsAt"], "2025-03-04T10:00:00Z");
        assert_eq!(first["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(
            first["generatorURL"],
            "https://lookout.example.com/alerts/q0.example"
        );
        let fingerprint = first["fingerprint"].as_str().unwrap();
        assert_eq!(fingerprint.len(), 16);
        assert!(fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(
            fingerprint,
            body["alerts"][1]["fingerprint"].as_str().unwrap()
        );

        let second = &body["alerts"][1];
        assert_eq!(second["status"], "resolved");
        assert_eq!(second["startsAt"], "2025-03-04T10:00:00.250Z");
        assert_eq!(second["endsAt"], "2025-03-04T11:00:00Z");

        let body = render_webhook_alertmanager(&resolved(), "r");
        assert_eq!(body["status"], "resolved");
        let body = render_webhook_alertmanager(
            &Notification {
                alerts: vec![],
                external_url: None,
                ..firing()
            },
            "r",
        );
        assert_eq!(body["commonLabels"], json!({}));
        assert_eq!(body["externalURL"], "");
    }

    #[test]
    fn sms_is_short_and_plain() {
        let sms = render_sms(&firing(), &Templates::default()).unwrap();
        assert_eq!(
            sms,
            "[CRITICAL] Critical queue depth firing: queue=gmail.com value=12000 > 10000"
        );
        let sms = render_sms(&resolved(), &Templates::default()).unwrap();
        assert_eq!(
            sms,
            "[CRITICAL] Critical queue depth resolved: queue=gmail.com value=12000 > 10000"
        );
        let sms = render_sms(&grouped(4), &Templates::default()).unwrap();
        assert!(sms.ends_with("value=12000 > 10000 (+3 more)"), "{sms}");

        let mut n = firing();
        n.alerts[0]
            .labels
            .insert("detail".into(), "word ".repeat(200));
        let sms = render_sms(&n, &Templates::default()).unwrap();
        assert_eq!(sms.chars().count(), MAX_SMS_CHARS);
        assert!(sms.ends_with("...") && sms.is_ascii());
        let overrides = Templates {
            sms: Some("{{ alert.rule_name }}\n\n  {{ count }}".into()),
            ..Templates::default()
        };
        assert_eq!(
            render_sms(&n, &overrides).unwrap(),
            "Critical queue depth 1"
        );
    }

    #[test]
    fn overrides_replace_defaults_and_see_the_documented_context() {
        let overrides = Templates {
            subject: Some("{{ notification.tenant }}/{{ notification.kind }}/{{ notification.status }}: {{ count }} {{ alert.rule_name }}".into()),
            text: Some("{% for a in alerts %}{{ a.labels|labels }} {{ a.value|format_value }}{{ compare(a.value, a.threshold) }}{{ a.threshold|format_value }};{% endfor %}".into()),
            html: Some("<i>{{ alert.severity|severity_color }} {{ notification.external_url|http_url }}</i>".into()),
            ..Templates::default()
        };
        let email = render_email(&grouped(2), &overrides).unwrap();
        assert_eq!(email.subject, "acme/firing/firing: 2 Critical queue depth");
        assert_eq!(
            email.text,
            "queue=q0.example 12000>10000;queue=q1.example 12000>10000;"
        );
        assert_eq!(
            email.html,
            "<i>#d32f2f https:&#x2f;&#x2f;lookout.example.com</i>"
        );
    }

    #[test]
    fn undefined_and_missing_values_render_as_nothing() {
        let overrides = Templates {
            text: Some("[{{ nothing }}][{{ nothing.deeper.still }}][{{ alert.resolved_at }}][{{ alert.annotations.nope }}][{{ alert.value|format_value }}]".into()),
            ..Templates::default()
        };
        let mut n = firing();
        n.alerts[0].value = None;
        assert_eq!(render_email(&n, &overrides).unwrap().text, "[][][][][]");
        // An empty notification renders without panicking.
        let empty = Notification {
            alerts: vec![],
            ..firing()
        };
        render_email(&empty, &Templates::default()).unwrap();
        render_slack(&empty, &Templates::default(), None).unwrap();
        render_sms(&empty, &Templates::default()).unwrap();
    }

    #[test]
    fn broken_templates_are_reported_with_their_field() {
        let table: &[(&str, &str)] = &[
            ("{{ alert.rule_name", "syntax error"),
            ("{% for a in alerts %}", "syntax error"),
            ("{{ alert|no_such_filter }}", "unknown filter"),
            ("{{ no_such_function() }}", "unknown function"),
            ("{{ 1 // 0 }}", "invalid operation"),
        ];
        for &(template, needle) in table {
            let err = check_template(template).unwrap_err();
            assert!(err.contains(needle), "{template}: {err}");
            let overrides = Templates {
                html: Some(template.into()),
                ..Templates::default()
            };
            let err = render_email(&firing(), &overrides).unwrap_err();
            assert_eq!(err.field, "html");
            assert!(err.to_string().starts_with("html template: "), "{err}");
        }
        let too_big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(
            check_template(&too_big)
                .unwrap_err()
                .contains("at most 16384")
        );
        let runaway = "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}";
        assert!(
            check_template(runaway)
                .unwrap_err()
                .contains("larger than 512 KiB")
        );

        let templates = Templates {
            sms: Some("{{ oops".into()),
            ..Templates::default()
        };
        assert!(
            templates
                .validate()
                .unwrap_err()
                .starts_with("templates.sms: syntax error")
        );
        assert_eq!(Templates::default().validate(), Ok(()));
        for default in [
            DEFAULT_SUBJECT,
            DEFAULT_TEXT,
            DEFAULT_HTML,
            DEFAULT_SLACK_TEXT,
            DEFAULT_SMS,
        ] {
            check_template(default).unwrap();
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever users put in labels and annotations, rendering never panics, HTML never
        /// contains their markup, and Slack and SMS limits hold.
        #[test]
        fn arbitrary_user_text_is_contained(
            name in "\\PC{0,300}",
            value in "\\PC{0,3500}",
            text in "(\\PC|[<>&`\n])*",
            count in 1usize..60,
        ) {
            let mut n = grouped(count);
            for a in &mut n.alerts {
                a.rule_name = name.clone();
                a.labels.insert("user".into(), format!("<x{value}"));
                a.annotations.insert("description".into(), text.clone());
                a.annotations.insert("runbook_url".into(), value.clone());
                a.url = Some(text.clone());
            }
            let email = render_email(&n, &Templates::default()).unwrap();
            proptest::prop_assert!(!email.html.contains("<x"));
            proptest::prop_assert!(email.html.len() <= MAX_OUTPUT_BYTES);
            proptest::prop_assert!(!email.subject.contains('\n'));
            proptest::prop_assert!(email.subject.chars().count() <= MAX_SUBJECT_CHARS);
            let sms = render_sms(&n, &Templates::default()).unwrap();
            proptest::prop_assert!(sms.chars().count() <= MAX_SMS_CHARS);
            let slack = render_slack(&n, &Templates::default(), None).unwrap();
            let blocks = slack["blocks"].as_array().unwrap();
            proptest::prop_assert!(blocks.len() <= SLACK_MAX_BLOCKS);
            let units = |v: &serde_json::Value| v.as_str().unwrap_or("").encode_utf16().count();
            proptest::prop_assert!(units(&blocks[0]["text"]["text"]) <= SLACK_HEADER_MAX);
            for block in blocks {
                proptest::prop_assert!(units(&block["text"]["text"]) <= SLACK_TEXT_MAX);
                for field in block["fields"].as_array().into_iter().flatten() {
                    proptest::prop_assert!(units(&field["text"]) <= SLACK_FIELD_MAX);
                }
            }
            render_webhook_alertmanager(&n, "r");
        }
    }

    #[test]
    fn values_are_formatted_for_people() {
        let table: &[(f64, &str)] = &[
            (12000.0, "12000"),
            (0.0, "0"),
            (-0.0, "0"),
            (-3.0, "-3"),
            (0.25, "0.25"),
            (0.1 + 0.2, "0.3"),
            (99.999_99, "100"),
            (-0.000_01, "-1.000e-5"),
            (1.5e-7, "1.500e-7"),
            (2e20, "2.000e20"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for &(value, expected) in table {
            assert_eq!(format_value(value), expected, "{value}");
        }
    }
}
