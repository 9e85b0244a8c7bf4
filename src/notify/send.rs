//! Sending one rendered notification through one channel, and classifying the result.
//!
//! Every channel carries the notification id so that receivers can drop the duplicates
//! that at-least-once delivery may produce: `webhook-id` on webhooks (signed per
//! Standard Webhooks when the channel has a secret), the `Message-ID` (and an
//! `X-Lookout-Notification-Id` header) on e-mail, and `X-Lookout-Notification-Id` on
//! Slack and Twilio requests.
//!
//! Errors are described without secrets: reqwest errors lose their URL (a Slack webhook
//! URL is a credential), SMTP errors never contain the password.

use super::channel::{Channel, EmailSettings, Settings, SmsSettings, WebhookFormat};
use super::message::Notification;
use super::render;
use super::retry::{Outcome, classify_http, classify_smtp, parse_retry_after};
use super::signing;
use crate::config::SmtpTls;
use chrono::Utc;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// The id header sent by every HTTP channel and e-mail.
pub const ID_HEADER: &str = "x-lookout-notification-id";

/// Sends notifications; one per process (it holds the HTTP connection pool).
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    /// Timeout of e-mail, Slack and SMS sends.
    timeout: Duration,
}

impl Sender {
    pub fn new(timeout: Duration) -> Sender {
        let http = reqwest::Client::builder()
            // A redirect would re-send a signed body to a URL nobody configured
            // (see retry::classify_http).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Lookout/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("the HTTP client builds with static settings");
        Sender { http, timeout }
    }

    /// The longest a send through `channel` may take.
    pub fn timeout_for(&self, channel: &Channel) -> Duration {
        match &channel.settings {
            Settings::Webhook(w) => w.timeout,
            _ => self.timeout,
        }
    }

    /// Sends `n` through `channel` once.
    pub async fn send(&self, channel: &Channel, n: &Notification) -> Outcome {
        let timeout = self.timeout_for(channel);
        let sending = async {
            match &channel.settings {
                Settings::Email(email) => self.send_email(email, channel, n, timeout).await,
                Settings::Slack(slack) => {
                    let body =
                        match render::render_slack(n, &channel.templates, slack.channel.as_deref())
                        {
                            Ok(body) => body,
                            Err(e) => return template_failure(e),
                        };
                    let Some(url) = &slack.webhook_url else {
                        return permanent("the channel has no webhook_url");
                    };
                    let request = self
                        .http
                        .post(url.expose())
                        .header(ID_HEADER, n.id.to_string())
                        .json(&body);
                    self.http_outcome(request, timeout).await
                }
                Settings::Webhook(webhook) => {
                    let body = match webhook.format {
                        WebhookFormat::Lookout => render::render_webhook_lookout(n),
                        WebhookFormat::Alertmanager => {
                            render::render_webhook_alertmanager(n, &channel.name)
                        }
                    };
                    let body = serde_json::to_vec(&body).unwrap_or_default();
                    let id = n.id.to_string();
                    let mut request = self
                        .http
                        .post(&webhook.url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .header(signing::HEADER_ID, &id);
                    for (name, value) in webhook.headers.iter().flatten() {
                        request = request.header(name.as_str(), value.expose());
                    }
                    if let Some(secret) = &webhook.secret {
                        let secret = match signing::WebhookSecret::parse(secret.expose()) {
                            Ok(secret) => secret,
                            Err(e) => return permanent(&format!("webhook secret: {e}")),
                        };
                        // A fresh timestamp per attempt: a retry an hour later must still
                        // be within the receiver's tolerance.
                        let now = Utc::now().timestamp();
                        for (name, value) in signing::headers(&secret, &id, now, &body) {
                            if name != signing::HEADER_ID {
                                request = request.header(name, value);
                            }
                        }
                    }
                    self.http_outcome(request.body(body), timeout).await
                }
                Settings::Sms(sms) => self.send_sms(sms, channel, n).await,
            }
        };
        // A margin over the transport's own timeout, for DNS and TLS set-up.
        match tokio::time::timeout(timeout + Duration::from_secs(1), sending).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::transport_error(format!("timed out after {timeout:?}")),
        }
    }

    async fn http_outcome(&self, request: reqwest::RequestBuilder, timeout: Duration) -> Outcome {
        match request.timeout(timeout).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, Utc::now()));
                let outcome = classify_http(status, retry_after);
                if outcome == Outcome::Delivered {
                    return outcome;
                }
                let body = response.text().await.unwrap_or_default();
                outcome.with_detail(&body)
            }
            Err(e) => Outcome::transport_error(describe_reqwest(e)),
        }
    }

    async fn send_email(
        &self,
        email: &EmailSettings,
        channel: &Channel,
        n: &Notification,
        timeout: Duration,
    ) -> Outcome {
        let body = match render::render_email(n, &channel.templates) {
            Ok(body) => body,
            Err(e) => return template_failure(e),
        };
        let from: Mailbox = match email.from.parse() {
            Ok(from) => from,
            Err(_) => return permanent("the channel's from address is invalid"),
        };
        let mut builder = Message::builder()
            .from(from)
            .subject(body.subject)
            // Stable across retries: mail clients and receivers can deduplicate on it.
            .message_id(Some(format!("<{}@lookout>", n.id)));
        if let Ok(name) = HeaderName::new_from_ascii("X-Lookout-Notification-Id".into()) {
            builder = builder.raw_header(HeaderValue::new(name, n.id.to_string()));
        }
        for to in &email.to {
            match to.parse::<Mailbox>() {
                Ok(to) => builder = builder.to(to),
                Err(_) => return permanent("a recipient address is invalid"),
            }
        }
        let message =
            match builder.multipart(MultiPart::alternative_plain_html(body.text, body.html)) {
                Ok(message) => message,
                Err(e) => return permanent(&format!("cannot build the e-mail: {e}")),
            };
        let transport = match email.tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&email.host),
            SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&email.host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &email.host,
            )),
        };
        let mut transport = match transport {
            Ok(t) => t,
            Err(e) => return Outcome::transport_error(format!("SMTP set-up: {e}")),
        };
        let port = email.port.unwrap_or(match email.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        });
        transport = transport.port(port).timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&email.username, &email.password) {
            transport = transport.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        match transport.build().send(message).await {
            Ok(response) => {
                let code = response.code().to_string().parse().unwrap_or(250);
                classify_smtp(code)
            }
            Err(e) => match e.status() {
                Some(code) => classify_smtp(code.to_string().parse().unwrap_or(451))
                    .with_detail(&e.to_string()),
                None => Outcome::transport_error(format!("SMTP: {e}")),
            },
        }
    }

    /// One Twilio Messages API request per recipient. A retry sends to every recipient
    /// again, with the same notification id header.
    async fn send_sms(&self, sms: &SmsSettings, channel: &Channel, n: &Notification) -> Outcome {
        let text = match render::render_sms(n, &channel.templates) {
            Ok(text) => text,
            Err(e) => return template_failure(e),
        };
        let Some(token) = &sms.auth_token else {
            return permanent("the channel has no auth_token");
        };
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            sms.base_url.trim_end_matches('/'),
            sms.account_sid
        );
        for to in &sms.to {
            let request = self
                .http
                .post(&url)
                .basic_auth(&sms.account_sid, Some(token.expose()))
                .header(ID_HEADER, n.id.to_string())
                .form(&[
                    ("To", to.as_str()),
                    ("From", sms.from.as_str()),
                    ("Body", text.as_str()),
                ]);
            let outcome = self.http_outcome(request, self.timeout).await;
            if outcome != Outcome::Delivered {
                return outcome;
            }
        }
        Outcome::Delivered
    }
}

fn permanent(reason: &str) -> Outcome {
    Outcome::Permanent {
        reason: reason.to_string(),
        status: None,
    }
}

fn template_failure(e: render::RenderError) -> Outcome {
    permanent(&format!("cannot render the message: {e}"))
}

/// A reqwest error without its URL (which may be a credential), with its causes.
fn describe_reqwest(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
