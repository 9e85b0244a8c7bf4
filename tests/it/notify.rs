//! Notifications end to end: channels over REST, deliveries to real receivers (SMTP sink,
//! HTTP receivers standing in for Slack, webhooks and Twilio), retries, dead letters,
//! noise control, several replicas.
//!
//! Transitions are written the way the rule engine writes them: `enqueue_transition`
//! inside a transaction, committed by the test.

mod bench;
mod receiver;

use crate::common::{TestApp, TestEnv, eventually};
use crate::support::smtp_sink::SmtpSink;
use crate::{both_modes, cluster_only};
use base64::Engine;
use chrono::Utc;
use hmac::{KeyInit, Mac};
use lookout::auth::Role;
use lookout::config::Config;
use lookout::notify::message::AlertSummary;
use lookout::notify::outbox::{OutboxKind, Transition, enqueue_transition};
use lookout::notify::policy::{EscalationStep, NotifyPolicy};
use lookout::rules::model::Throttle;
use lookout::store::Store;
use receiver::Receiver;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Quick retries so that tests see several attempts. The rule engine stays off: the
/// tests write transitions (and alert rows) themselves, for rules that do not exist,
/// and the engine would close such alerts as "the rule was deleted".
fn fast(config: &mut Config) {
    config.rules.engine_enabled = false;
    config.notify.poll_interval = Duration::from_millis(50);
    config.notify.retry_schedule = "0s, 100ms, 200ms".into();
    config.notify.send_timeout = Duration::from_secs(2);
    config.notify.claim_timeout = Duration::from_secs(3);
}

/// A store of the test's own (on the test's runtime), to write transitions with.
async fn test_store(app: &TestApp) -> Store {
    Store::connect(&app.config.mode(), &app.config.database)
        .await
        .expect("test store")
}

fn alert(
    rule_id: Uuid,
    alert_id: Uuid,
    severity: &str,
    state: &str,
    labels: &[(&str, &str)],
) -> AlertSummary {
    AlertSummary {
        id: alert_id,
        rule_id,
        rule_name: "Queue too deep".into(),
        severity: severity.into(),
        state: state.into(),
        value: Some(12000.0),
        threshold: Some(10000.0),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: [("summary".to_string(), "Queue gmail.com is deep".to_string())]
            .into_iter()
            .collect(),
        started_at: Utc::now(),
        resolved_at: (state == "resolved").then(Utc::now),
        acknowledged_by: None,
        url: Some("https://lookout.example.com/alerts/1".into()),
    }
}

/// One transition, committed.
#[allow(clippy::too_many_arguments)]
async fn transition(
    store: &Store,
    tenant: &str,
    rule_id: Uuid,
    alert_id: Uuid,
    kind: OutboxKind,
    channels: &[String],
    policy: &NotifyPolicy,
    throttle: Option<&Throttle>,
    group_key: &str,
) {
    let state = match kind {
        OutboxKind::Firing => "firing",
        OutboxKind::Resolved => "resolved",
    };
    let summary = alert(
        rule_id,
        alert_id,
        "critical",
        state,
        &[("queue", "gmail.com")],
    );
    let mut tx = store.begin().await.expect("begin");
    write_alert_row(&mut tx, tenant, &summary).await;
    enqueue_transition(
        &mut tx,
        &Transition {
            tenant,
            alert_id,
            rule_id,
            kind,
            channels,
            policy,
            throttle,
            alert: &summary,
            group_key: group_key.to_string(),
            at: Utc::now(),
        },
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
}

/// The alert row, as the rule engine writes it in the same transaction (the send-time
/// check reads it: acknowledged, snoozed, resolved, silenced by its labels).
pub async fn write_alert_row(tx: &mut lookout::store::Tx, tenant: &str, alert: &AlertSummary) {
    use lookout::store::DbTime;
    use sqlx::types::Json;
    let now = Utc::now();
    if alert.state == "resolved" {
        lookout::sql!(tx.db(), exec,
            "UPDATE alerts SET state = 'resolved', resolved_at = $3, updated_at = $3, version = version + 1
             WHERE tenant = $1 AND id = $2",
            tenant, alert.id, DbTime(now))
        .expect("resolve the alert row");
        return;
    }
    lookout::sql!(tx.db(), exec,
        "INSERT INTO alerts (id, tenant, rule_id, rule_name, severity, fingerprint, labels, annotations,
                             state, value, threshold, instance, version, fence, started_at, fired_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'firing', $9, $10, $11, 1, 0, $12, $12, $12)
         ON CONFLICT (id) DO NOTHING",
        alert.id, tenant, alert.rule_id, &alert.rule_name, &alert.severity,
        rand::random::<i64>(), Json(&alert.labels), Json(&alert.annotations),
        alert.value, alert.threshold.unwrap_or_default(), Json(serde_json::json!({})), DbTime(now))
    .expect("insert the alert row");
}

async fn fire(store: &Store, channels: &[&str], policy: &NotifyPolicy) -> (Uuid, Uuid) {
    let rule_id = Uuid::now_v7();
    let alert_id = Uuid::now_v7();
    let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
    transition(
        store,
        "default",
        rule_id,
        alert_id,
        OutboxKind::Firing,
        &channels,
        policy,
        None,
        &rule_id.to_string(),
    )
    .await;
    (rule_id, alert_id)
}

async fn create_channel(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post("/api/v1/channels", token, body).await;
    assert_eq!(response.status, 201, "{}", response.text);
    response.body
}

async fn webhook_channel(
    app: &TestApp,
    token: &str,
    name: &str,
    receiver: &Receiver,
    extra: Value,
) -> Value {
    let mut settings = json!({"url": receiver.url("/hook")});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            settings[k] = v;
        }
    }
    create_channel(
        app,
        token,
        json!({"name": name, "type": "webhook", "settings": settings}),
    )
    .await
}

/// Standard Webhooks verification written from the spec, independent of Lookout's code:
/// base64(HMAC-SHA256(base64-decoded key after `whsec_`, "{id}.{timestamp}.{body}")).
fn verify_standard_webhook(secret: &str, request: &receiver::Request) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let id = request.header("webhook-id").unwrap_or_default();
    let timestamp = request.header("webhook-timestamp").unwrap_or_default();
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if (Utc::now().timestamp() - ts).abs() > 300 {
        return false;
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&request.body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    request
        .header("webhook-signature")
        .unwrap_or_default()
        .split(' ')
        .any(|sig| sig == format!("v1,{expected}"))
}

async fn notification(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app.get(&format!("/api/v1/notifications/{id}"), token).await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.body
}

// ---------------------------------------------------------------------------------------
// Channels over REST

async fn channels_crud_keeps_secrets_write_only(env: TestEnv) {
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    let viewer = env.token(Role::Viewer, "default", "val");
    let receiver = Receiver::start().await;
    let created = webhook_channel(
        &app,
        &admin,
        "ops-hook",
        &receiver,
        json!({"secret": SECRET, "headers": {"Authorization": "Bearer hunter2"}, "format": "alertmanager"}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["type"], "webhook");
    assert_eq!(created["settings"]["format"], "alertmanager");
    assert_eq!(
        created["settings"]["header_names"],
        json!(["Authorization"])
    );
    assert_eq!(created["secrets_set"], json!(["headers", "secret"]));

    // No answer ever holds a secret.
    for path in [
        "/api/v1/channels".to_string(),
        format!("/api/v1/channels/{id}"),
    ] {
        let response = app.get(&path, &viewer).await;
        assert_eq!(response.status, 200, "{}", response.text);
        assert!(!response.text.contains("hunter2"), "{}", response.text);
        assert!(!response.text.contains("MfKQ9r8"), "{}", response.text);
    }

    // Viewers may not change channels.
    let response = app
        .post(
            "/api/v1/channels",
            &viewer,
            json!({"name": "x", "type": "slack", "settings": {"webhook_url": "http://x"}}),
        )
        .await;
    response.assert_problem(403, "forbidden");

    // Bad input names the field.
    let response = app
        .post("/api/v1/channels", &admin, json!({"name": "bad", "type": "email", "settings": {"host": "h", "from": "nope", "to": ["a@b.example"]}}))
        .await;
    response.assert_problem(422, "validation");
    assert_eq!(response.body["errors"][0]["field"], "settings.from");
    let response = app
        .post(
            "/api/v1/channels",
            &admin,
            json!({"name": "bad", "type": "pager", "settings": {}}),
        )
        .await;
    response.assert_problem(422, "validation");

    // A second channel of the same name conflicts.
    let response = app
        .post(
            "/api/v1/channels",
            &admin,
            json!({"name": "ops-hook", "type": "webhook", "settings": {"url": "http://x"}}),
        )
        .await;
    response.assert_problem(409, "conflict");

    // An update that leaves the secret out keeps it (the delivery is still signed).
    let response = app
        .call(
            Method::PUT,
            &format!("/api/v1/channels/{id}"),
            Some(&admin),
            Some(json!({"name": "ops-hook", "type": "webhook",
                "settings": {"url": receiver.url("/hook2"), "format": "alertmanager"}})),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["secrets_set"], json!(["headers", "secret"]));
    let test = app
        .post(&format!("/api/v1/channels/{id}/test"), &admin, json!({}))
        .await;
    assert_eq!(test.status, 200, "{}", test.text);
    assert_eq!(test.body["outcome"], "delivered", "{}", test.text);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].path, "/hook2");
    assert!(verify_standard_webhook(SECRET, &got[0]));
    assert_eq!(
        got[0].header("authorization").as_deref(),
        Some("Bearer hunter2")
    );
    assert_eq!(got[0].json()["version"], "4");

    // Another tenant sees nothing.
    let other = env.token(Role::Admin, "other", "eve");
    app.get(&format!("/api/v1/channels/{id}"), &other)
        .await
        .assert_problem(404, "not_found");
    let list = app.get("/api/v1/channels", &other).await;
    assert_eq!(list.body["items"], json!([]));
    app.get("/api/v1/channels/not-a-uuid", &admin)
        .await
        .assert_problem(404, "not_found");

    let response = app
        .call(
            Method::DELETE,
            &format!("/api/v1/channels/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(response.status, 204);
    app.get(&format!("/api/v1/channels/{id}"), &admin)
        .await
        .assert_problem(404, "not_found");
}

async fn default_channels_come_from_the_environment_once(env: TestEnv) {
    let sink = SmtpSink::start().await;
    let slack = Receiver::start().await;
    let hooks = Receiver::start().await;
    let seed = |config: &mut Config| {
        config.smtp.host = Some("127.0.0.1".into());
        config.smtp.port = Some(sink.port());
        config.smtp.tls = lookout::config::SmtpTls::None;
        config.smtp.user = Some("lookout".into());
        config.smtp.password = Some(lookout::config::Secret::new("smtp-pass-123"));
        config.smtp.from = Some("alerts@lookout.example".into());
        config.smtp.to = Some("ops@example.com, oncall@example.com".into());
        config.slack.webhook_url = Some(lookout::config::Secret::new(
            slack.url("/services/T0/B0/secretpath"),
        ));
        config.webhook.url = Some(hooks.url("/seed"));
        fast(config);
    };
    let first = env.spawn_with(seed).await;
    let second = env.spawn_with(seed).await;
    let admin = env.admin();
    let list = eventually(WAIT, "three default channels", || async {
        let list = second.get("/api/v1/channels", &admin).await;
        (list.body["items"].as_array().map_or(0, Vec::len) == 3).then_some(list)
    })
    .await;
    assert!(!list.text.contains("secretpath"), "{}", list.text);
    assert!(!list.text.contains("smtp-pass-123"), "{}", list.text);
    let names: BTreeSet<String> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["email".into(), "slack".into(), "webhook".into()])
    );

    // Seed rules name them by type: one transition reaches all three.
    let store = test_store(&first).await;
    fire(
        &store,
        &["email", "slack", "webhook"],
        &NotifyPolicy::default(),
    )
    .await;
    let mails = sink.wait_for(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["ops@example.com", "oncall@example.com"]);
    assert_eq!(
        mails[0].auth,
        Some(("lookout".into(), "smtp-pass-123".into()))
    );
    slack.wait_for(1, WAIT).await;
    hooks.wait_for(1, WAIT).await;
}

// ---------------------------------------------------------------------------------------
// Each channel type against a real receiver

async fn email_goes_through_smtp_with_html_text_and_a_stable_message_id(env: TestEnv) {
    let sink = SmtpSink::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    create_channel(
        &app,
        &admin,
        json!({"name": "mail", "type": "email", "settings": {
            "host": "127.0.0.1", "port": sink.port(), "tls": "none",
            "from": "Lookout <alerts@lookout.example>", "to": ["ops@example.com"]}}),
    )
    .await;
    // The sink refuses the first try with a transient reply: the retry reuses the id.
    sink.fail_next(1, 451, "4.3.0 try again later");
    let store = test_store(&app).await;
    let (_, alert_id) = fire(&store, &["mail"], &NotifyPolicy::default()).await;
    let mails = sink.wait_for(1, WAIT).await;
    assert_eq!(sink.refused(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "alerts@lookout.example");
    assert_eq!(mail.to, ["ops@example.com"]);
    assert!(mail.data.contains("multipart/alternative"), "{}", mail.data);
    assert!(mail.data.contains("text/html"));
    assert!(mail.data.contains("text/plain"));
    assert!(mail.data.contains("Queue too deep"));
    let list = app
        .get(
            &format!("/api/v1/notifications?alert_id={alert_id}"),
            &admin,
        )
        .await;
    let id = list.body["items"][0]["id"].as_str().unwrap().to_string();
    assert!(
        mail.data.contains(&format!("Message-ID: <{id}@lookout>")),
        "{}",
        mail.data
    );
    // The receiver may have the mail a moment before the outcome is recorded.
    let record = eventually(WAIT, "the delivered record", || async {
        let record = notification(&app, &admin, &id).await;
        (record["status"] == "delivered").then_some(record)
    })
    .await;
    assert_eq!(record["attempts"], 2);
    assert_eq!(record["attempt_log"][0]["outcome"], "retry");
    assert_eq!(record["attempt_log"][0]["status_code"], 451);
    assert_eq!(record["attempt_log"][1]["outcome"], "delivered");
}

async fn slack_and_twilio_receive_what_they_expect(env: TestEnv) {
    let slack = Receiver::start().await;
    let twilio = Receiver::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    create_channel(
        &app,
        &admin,
        json!({"name": "chat", "type": "slack",
        "settings": {"webhook_url": slack.url("/services/T/B/X"), "channel": "#ops"}}),
    )
    .await;
    create_channel(
        &app,
        &admin,
        json!({"name": "pager", "type": "sms", "settings": {
        "base_url": twilio.url(""), "account_sid": "AC123", "auth_token": "twilio-token",
        "from": "+15005550006", "to": ["+14155550100", "+14155550101"]}}),
    )
    .await;
    let store = test_store(&app).await;
    fire(&store, &["chat", "pager"], &NotifyPolicy::default()).await;

    let posted = slack.wait_for(1, WAIT).await;
    let message = posted[0].json();
    assert_eq!(message["channel"], "#ops");
    assert_eq!(message["blocks"][0]["type"], "header");
    let text = message.to_string();
    assert!(text.contains("Queue too deep"), "{text}");
    assert!(text.contains("12000") && text.contains("10000"), "{text}");
    assert!(text.contains("gmail.com"), "{text}");
    assert!(posted[0].header("x-lookout-notification-id").is_some());

    let sent = twilio.wait_for(2, WAIT).await;
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("AC123:twilio-token")
    );
    let mut to = BTreeSet::new();
    for request in &sent {
        assert_eq!(request.path, "/2010-04-01/Accounts/AC123/Messages.json");
        assert_eq!(
            request.header("authorization").as_deref(),
            Some(expected_auth.as_str())
        );
        let form: BTreeMap<String, String> = url_form(&request.body);
        assert_eq!(form["From"], "+15005550006");
        assert!(form["Body"].contains("CRITICAL"), "{form:?}");
        assert!(form["Body"].chars().count() <= 320);
        to.insert(form["To"].clone());
    }
    assert_eq!(
        to,
        BTreeSet::from(["+14155550100".into(), "+14155550101".into()])
    );
}

fn url_form(body: &[u8]) -> BTreeMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body)))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn webhooks_are_signed_and_retried_until_the_receiver_recovers(env: TestEnv) {
    let receiver = Receiver::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    webhook_channel(&app, &admin, "hook", &receiver, json!({"secret": SECRET})).await;
    // Down for a while, then back: delivered exactly once, with one id throughout.
    receiver.fail_next(3, 503, Some("0"));
    let store = test_store(&app).await;
    let (rule_id, alert_id) = fire(&store, &["hook"], &NotifyPolicy::default()).await;
    let got = receiver.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["version"], "1");
    assert_eq!(body["kind"], "firing");
    assert_eq!(body["alerts"][0]["id"], alert_id.to_string());
    assert_eq!(body["alerts"][0]["rule_id"], rule_id.to_string());
    assert!(
        verify_standard_webhook(SECRET, &got[0]),
        "signature verifies"
    );
    let id = got[0].header("webhook-id").unwrap();
    assert_eq!(body["id"], id.as_str());
    let record = eventually(WAIT, "the delivery record", || async {
        let record = notification(&app, &admin, &id).await;
        (record["status"] == "delivered").then_some(record)
    })
    .await;
    assert_eq!(record["attempts"], 4);
    let log = record["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 4);
    assert!(
        log[..3]
            .iter()
            .all(|a| a["outcome"] == "retry" && a["status_code"] == 503)
    );
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.accepted().len(), 1);
    assert_eq!(receiver.refused(), 3);

    // A tampered body fails the independent verifier.
    let mut tampered = got[0].clone();
    tampered.body = bytes::Bytes::from(format!("{} ", String::from_utf8_lossy(&got[0].body)));
    assert!(!verify_standard_webhook(SECRET, &tampered));
}

async fn a_permanent_refusal_is_dead_lettered_with_an_event(env: TestEnv) {
    let receiver = Receiver::start().await;
    let app = env
        .spawn_with(|config| {
            fast(config);
            config.notify.max_attempts = 4;
        })
        .await;
    let admin = env.admin();
    webhook_channel(&app, &admin, "hook", &receiver, json!({})).await;
    let mut events = app.state.bus.subscribe(
        "default",
        lookout::bus::TopicPattern::exact("notifications"),
    );
    receiver.fail_next(1, 400, None);
    let store = test_store(&app).await;
    let (_, alert_id) = fire(&store, &["hook"], &NotifyPolicy::default()).await;
    let event = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("a notification:failed event")
        .expect("bus open");
    let lookout::bus::BusMessage::Event(event) = event else {
        panic!("unexpected {event:?}")
    };
    assert_eq!(event.event, "notification:failed");
    let data: Value = serde_json::from_str(event.data.get()).unwrap();
    assert_eq!(data["alert_ids"], json!([alert_id]));
    assert!(data["error"].as_str().unwrap().contains("400"), "{data}");
    let list = app.get("/api/v1/notifications?status=failed", &admin).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.text
    );
    assert_eq!(list.body["items"][0]["attempts"], 1);
    assert_eq!(list.body["items"][0]["last_status_code"], 400);

    // The timeline says so too.
    let timeline = lookout::notify::events_for_alert(&store, "default", alert_id)
        .await
        .unwrap();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0].kind, "notification_failed");

    // 429 is worth a retry; after the last attempt, the dead letter.
    receiver.fail_next(4, 429, Some("0"));
    let (_, alert_id) = fire(&store, &["hook"], &NotifyPolicy::default()).await;
    let record = eventually(WAIT, "the dead letter", || async {
        let list = app
            .get(
                &format!("/api/v1/notifications?alert_id={alert_id}"),
                &admin,
            )
            .await;
        (list.body["items"][0]["status"] == "failed").then(|| list.body["items"][0].clone())
    })
    .await;
    assert_eq!(record["attempts"], 4);
    assert_eq!(receiver.refused(), 5);
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    assert!(
        metrics
            .text
            .contains("lookout_notifications_dead_lettered_total"),
        "metrics"
    );
    assert!(metrics.text.contains("lookout_notifications_retried_total"));
}

async fn the_test_endpoint_answers_the_outcome(env: TestEnv) {
    let receiver = Receiver::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    let channel = webhook_channel(&app, &admin, "hook", &receiver, json!({})).await;
    let id = channel["id"].as_str().unwrap();
    let ok = app
        .post(&format!("/api/v1/channels/{id}/test"), &admin, json!({}))
        .await;
    assert_eq!(ok.body["outcome"], "delivered", "{}", ok.text);
    assert_eq!(receiver.accepted()[0].json()["kind"], "test");
    receiver.fail_next(1, 500, None);
    let failed = app
        .post(&format!("/api/v1/channels/{id}/test"), &admin, json!({}))
        .await;
    assert_eq!(failed.body["outcome"], "failed", "{}", failed.text);
    assert_eq!(failed.body["status_code"], 500);
    let operator = env.token(Role::Operator, "default", "op");
    app.post(&format!("/api/v1/channels/{id}/test"), &operator, json!({}))
        .await
        .assert_problem(403, "forbidden");
    let list = app
        .get("/api/v1/notifications?kind=test&limit=1", &admin)
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert!(list.body["next_cursor"].is_string());
    let cursor = list.body["next_cursor"].as_str().unwrap();
    let next = app
        .get(
            &format!("/api/v1/notifications?kind=test&limit=1&cursor={cursor}"),
            &admin,
        )
        .await;
    assert_eq!(next.body["items"].as_array().unwrap().len(), 1);
    assert!(next.body["next_cursor"].is_null());
    assert_ne!(next.body["items"][0]["id"], list.body["items"][0]["id"]);
    app.get("/api/v1/notifications?status=lost", &admin)
        .await
        .assert_problem(422, "validation");
    app.get("/api/v1/notifications?alert_id=nope", &admin)
        .await
        .assert_problem(400, "bad_request");
}

async fn retry_after_is_honoured(env: TestEnv) {
    let receiver = Receiver::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    webhook_channel(&app, &admin, "hook", &receiver, json!({})).await;
    // Our own schedule would retry after 100 ms; the receiver asks for 2 s.
    receiver.fail_next(1, 429, Some("2"));
    let store = test_store(&app).await;
    let started = std::time::Instant::now();
    fire(&store, &["hook"], &NotifyPolicy::default()).await;
    let got = receiver.wait_for(1, WAIT).await;
    let waited = got[0].at.duration_since(started);
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert_eq!(receiver.refused(), 1);
}

/// A replica that claimed a delivery and died: once its claim lapses, another replica
/// sends the notification.
async fn a_dead_replicas_claim_is_taken_over(env: TestEnv) {
    let receiver = Receiver::start().await;
    let idle = env
        .spawn_with(|config| {
            fast(config);
            config.notify.workers = false;
        })
        .await;
    let admin = env.admin();
    webhook_channel(&idle, &admin, "hook", &receiver, json!({})).await;
    let store = test_store(&idle).await;
    fire(&store, &["hook"], &NotifyPolicy::default()).await;
    // The "dead" replica's claim, valid for 2 more seconds.
    let until = lookout::store::DbTime(Utc::now() + chrono::Duration::seconds(2));
    let mut conn = store.write().await.unwrap();
    let claimed = lookout::sql!(
        conn.db(),
        exec,
        "UPDATE deliveries SET claimed_by = 'ghost', claim_id = $1, claimed_until = $2",
        Uuid::now_v7(),
        until
    )
    .unwrap();
    assert_eq!(claimed, 1);
    drop(conn);
    let started = std::time::Instant::now();
    let _worker = env.spawn_with(fast).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert!(got[0].at.duration_since(started) >= Duration::from_millis(1500));
    let mut conn = store.read().await.unwrap();
    let (status, attempts): (String, i32) = eventually(WAIT, "the record", || async {
        let mut conn = store.read().await.ok()?;
        let row: (String, i32) = lookout::sql!(
            conn.db(),
            one(String, i32),
            "SELECT status, attempts FROM deliveries"
        )
        .ok()?;
        (row.0 == "delivered").then_some(row)
    })
    .await;
    assert_eq!((status.as_str(), attempts), ("delivered", 1));
    let replicas: Vec<(String,)> = lookout::sql!(
        conn.db(),
        all(String,),
        "SELECT replica FROM delivery_attempts"
    )
    .unwrap();
    assert_eq!(replicas.len(), 1);
    assert_ne!(replicas[0].0, "ghost");
}

/// The rule engine announces a transition on the `alerts` topic after its commit: that
/// wakes the workers at once, however long their poll interval.
async fn an_alert_event_wakes_the_workers(env: TestEnv) {
    let receiver = Receiver::start().await;
    let app = env
        .spawn_with(|config| {
            fast(config);
            config.notify.poll_interval = Duration::from_secs(30);
        })
        .await;
    let admin = env.admin();
    webhook_channel(&app, &admin, "hook", &receiver, json!({})).await;
    let store = test_store(&app).await;
    // Let the worker's first (empty) claim pass so that it is asleep.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    fire(&store, &["hook"], &NotifyPolicy::default()).await;
    app.state
        .bus
        .publish_json("default", "alerts", "alert:triggered", &json!({"id": "x"}))
        .await
        .unwrap();
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let waited = got[0].at.duration_since(started);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

/// A disabled channel's deliveries are recorded as suppressed, with the reason.
async fn a_disabled_channel_suppresses(env: TestEnv) {
    let receiver = Receiver::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    create_channel(
        &app,
        &admin,
        json!({"name": "off", "type": "webhook", "enabled": false,
        "settings": {"url": receiver.url("/")}}),
    )
    .await;
    let store = test_store(&app).await;
    let (_, alert_id) = fire(&store, &["off"], &NotifyPolicy::default()).await;
    let timeline = eventually(WAIT, "the suppression", || async {
        let events = lookout::notify::events_for_alert(&store, "default", alert_id)
            .await
            .ok()?;
        (events.first()?.kind == "notification_suppressed").then_some(events)
    })
    .await;
    assert_eq!(timeline[0].detail["reason"], "the channel is disabled");
    assert!(receiver.accepted().is_empty());
}

/// The send-time check (rules::gate): a silence mutes a notification; an acknowledgement
/// or a snooze holds back the escalation; each reason lands in the alert's timeline.
async fn silences_acks_and_snoozes_hold_notifications_back(env: TestEnv) {
    let team = Receiver::start().await;
    let manager = Receiver::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    let operator = env.token(Role::Operator, "default", "olga");
    webhook_channel(&app, &admin, "team", &team, json!({})).await;
    webhook_channel(&app, &admin, "manager", &manager, json!({})).await;
    let store = test_store(&app).await;
    let policy = NotifyPolicy {
        escalation: vec![EscalationStep {
            after: Duration::from_secs(3),
            channels: vec!["manager".into()],
        }],
        ..Default::default()
    };
    // Acknowledged and snoozed before their escalation is due.
    let (_, acked) = fire(&store, &["team"], &policy).await;
    let (_, snoozed) = fire(&store, &["team"], &policy).await;
    // Both firing messages went out before the people reacted.
    team.wait_for(2, WAIT).await;
    let response = app
        .post(
            &format!("/api/v1/alerts/{acked}/acknowledge"),
            &operator,
            json!({}),
        )
        .await;
    assert!(response.status.is_success(), "{}", response.text);
    let response = app
        .post(
            &format!("/api/v1/alerts/{snoozed}/snooze"),
            &operator,
            json!({"duration": "1h"}),
        )
        .await;
    assert!(response.status.is_success(), "{}", response.text);
    for (alert, reason) in [(acked, "acknowledged by olga"), (snoozed, "snoozed until")] {
        let timeline = eventually(WAIT, "the escalation held back", || async {
            let events = lookout::notify::events_for_alert(&store, "default", alert)
                .await
                .ok()?;
            events
                .iter()
                .any(|e| e.kind == "notification_suppressed")
                .then_some(events)
        })
        .await;
        let held = timeline
            .iter()
            .find(|e| e.kind == "notification_suppressed")
            .unwrap();
        assert!(
            held.detail["reason"].as_str().unwrap().contains(reason),
            "{held:?}"
        );
        assert_eq!(held.detail["delivery_kind"], "escalation");
    }
    assert!(manager.accepted().is_empty());
    assert_eq!(team.accepted().len(), 2);

    // A silence on the alert's labels mutes it.
    let response = app
        .post(
            "/api/v1/silences",
            &operator,
            json!({
            "matchers": [{"name": "queue", "op": "=", "value": "gmail.com"}],
            "duration": "1h", "comment": "maintenance"}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
    let (_, silenced) = fire(&store, &["team"], &NotifyPolicy::default()).await;
    let timeline = eventually(WAIT, "the silenced notification", || async {
        let events = lookout::notify::events_for_alert(&store, "default", silenced)
            .await
            .ok()?;
        (events.first()?.kind == "notification_suppressed").then_some(events)
    })
    .await;
    assert!(
        timeline[0].detail["reason"]
            .as_str()
            .unwrap()
            .contains("silenced"),
        "{timeline:?}"
    );
    assert_eq!(team.accepted().len(), 2);
}

/// Deliveries for a channel deleted meanwhile are dead-lettered, not retried forever.
async fn a_deleted_channels_deliveries_are_dead_lettered(env: TestEnv) {
    let receiver = Receiver::start().await;
    let idle = env
        .spawn_with(|config| {
            fast(config);
            config.notify.workers = false;
        })
        .await;
    let admin = env.admin();
    let channel = webhook_channel(&idle, &admin, "hook", &receiver, json!({})).await;
    let store = test_store(&idle).await;
    let (_, alert_id) = fire(&store, &["hook"], &NotifyPolicy::default()).await;
    let id = channel["id"].as_str().unwrap();
    let response = idle
        .call(
            Method::DELETE,
            &format!("/api/v1/channels/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(response.status, 204);
    let _worker = env.spawn_with(fast).await;
    let record = eventually(WAIT, "the dead letter", || async {
        let list = idle
            .get(
                &format!("/api/v1/notifications?alert_id={alert_id}"),
                &admin,
            )
            .await;
        (list.body["items"][0]["status"] == "failed").then(|| list.body["items"][0].clone())
    })
    .await;
    assert_eq!(record["last_error"], "the channel was deleted");
    assert!(receiver.accepted().is_empty());
}

// ---------------------------------------------------------------------------------------
// Noise control

async fn alerts_of_a_group_go_out_in_one_message(env: TestEnv) {
    let receiver = Receiver::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    webhook_channel(&app, &admin, "hook", &receiver, json!({})).await;
    let store = test_store(&app).await;
    let policy = NotifyPolicy {
        group_wait: Duration::from_secs(1),
        ..Default::default()
    };
    let rule_id = Uuid::now_v7();
    let channels = vec!["hook".to_string()];
    for _ in 0..3 {
        transition(
            &store,
            "default",
            rule_id,
            Uuid::now_v7(),
            OutboxKind::Firing,
            &channels,
            &policy,
            None,
            "group-a",
        )
        .await;
    }
    transition(
        &store,
        "default",
        rule_id,
        Uuid::now_v7(),
        OutboxKind::Firing,
        &channels,
        &policy,
        None,
        "group-b",
    )
    .await;
    let got = receiver.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_now = receiver.accepted();
    assert_eq!(got_now.len(), 2, "one message per group");
    let mut sizes: Vec<usize> = got
        .iter()
        .map(|r| r.json()["alerts"].as_array().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [1, 3]);
}

async fn a_throttle_caps_alerts_per_rule(env: TestEnv) {
    let receiver = Receiver::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    webhook_channel(&app, &admin, "hook", &receiver, json!({})).await;
    let store = test_store(&app).await;
    let throttle = Throttle {
        period: Duration::from_secs(3600),
        max_alerts: 2,
    };
    let rule_id = Uuid::now_v7();
    let channels = vec!["hook".to_string()];
    let policy = NotifyPolicy::default();
    let mut alerts = Vec::new();
    for i in 0..5 {
        let alert_id = Uuid::now_v7();
        alerts.push(alert_id);
        transition(
            &store,
            "default",
            rule_id,
            alert_id,
            OutboxKind::Firing,
            &channels,
            &policy,
            Some(&throttle),
            &format!("g{i}"),
        )
        .await;
    }
    receiver.wait_for(2, WAIT).await;
    let timeline = lookout::notify::events_for_alert(&store, "default", alerts[4])
        .await
        .unwrap();
    assert_eq!(timeline[0].kind, "notification_throttled");
    // A throttled alert's resolution is not announced either.
    transition(
        &store,
        "default",
        rule_id,
        alerts[4],
        OutboxKind::Resolved,
        &channels,
        &policy,
        Some(&throttle),
        "g4",
    )
    .await;
    // …but a notified one's is.
    transition(
        &store,
        "default",
        rule_id,
        alerts[0],
        OutboxKind::Resolved,
        &channels,
        &policy,
        Some(&throttle),
        "g0",
    )
    .await;
    let got = receiver.wait_for(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.accepted().len(), 3);
    assert_eq!(got[2].json()["kind"], "resolved");
    assert_eq!(got[2].json()["alerts"][0]["id"], alerts[0].to_string());
}

async fn a_firing_alert_is_repeated_until_it_resolves(env: TestEnv) {
    let receiver = Receiver::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    webhook_channel(&app, &admin, "hook", &receiver, json!({})).await;
    let store = test_store(&app).await;
    let policy = NotifyPolicy {
        repeat_interval: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let (rule_id, alert_id) = fire(&store, &["hook"], &policy).await;
    let got = receiver.wait_for(3, WAIT).await;
    let ids: BTreeSet<String> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "each reminder is its own notification");
    assert!(got.iter().all(|r| r.json()["kind"] == "firing"));
    let gap = got[2].at - got[1].at;
    assert!(gap >= Duration::from_millis(900), "{gap:?}");
    transition(
        &store,
        "default",
        rule_id,
        alert_id,
        OutboxKind::Resolved,
        &["hook".into()],
        &policy,
        None,
        &rule_id.to_string(),
    )
    .await;
    let resolved = eventually(WAIT, "the resolved message", || async {
        receiver
            .accepted()
            .into_iter()
            .find(|r| r.json()["kind"] == "resolved")
    })
    .await;
    assert_eq!(resolved.json()["status"], "resolved");
    let count = receiver.accepted().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        receiver.accepted().len(),
        count,
        "no reminder after the resolution"
    );
    let timeline = lookout::notify::events_for_alert(&store, "default", alert_id)
        .await
        .unwrap();
    assert!(
        timeline.iter().any(|e| e.kind == "notification_cancelled"),
        "{timeline:?}"
    );
}

async fn unacknowledged_alerts_escalate(env: TestEnv) {
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    webhook_channel(&app, &admin, "team", &first, json!({})).await;
    let manager = webhook_channel(&app, &admin, "manager", &second, json!({})).await;
    let store = test_store(&app).await;
    let policy = NotifyPolicy {
        // By id as well as by name.
        escalation: vec![EscalationStep {
            after: Duration::from_secs(2),
            channels: vec![manager["id"].as_str().unwrap().to_string()],
        }],
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let (_, escalated) = fire(&store, &["team"], &policy).await;
    // This one resolves before its step is due: no escalation.
    let (rule_id, quiet) = fire(&store, &["team"], &policy).await;
    // Both firing messages out first (the send-time check would hold back the firing
    // message of an alert that resolved before it was sent).
    first.wait_for(2, WAIT).await;
    transition(
        &store,
        "default",
        rule_id,
        quiet,
        OutboxKind::Resolved,
        &["team".into()],
        &policy,
        None,
        &rule_id.to_string(),
    )
    .await;
    let got = second.wait_for(1, WAIT).await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    let body = got[0].json();
    assert_eq!(body["kind"], "escalation");
    assert_eq!(body["alerts"][0]["id"], escalated.to_string());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(second.accepted().len(), 1);
    assert_eq!(first.wait_for(3, WAIT).await.len(), 3);
}

async fn severity_filters_pick_channels(env: TestEnv) {
    let all = Receiver::start().await;
    let critical_only = Receiver::start().await;
    let app = env.spawn_with(fast).await;
    let admin = env.admin();
    webhook_channel(&app, &admin, "all", &all, json!({})).await;
    webhook_channel(&app, &admin, "sms-ish", &critical_only, json!({})).await;
    let store = test_store(&app).await;
    let policy = NotifyPolicy {
        channel_severities: [("sms-ish".to_string(), vec!["warning".to_string()])].into(),
        ..Default::default()
    };
    // The helper fires critical alerts: "sms-ish" only wants warnings.
    fire(&store, &["all", "sms-ish"], &policy).await;
    all.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(critical_only.accepted().is_empty());
}

// ---------------------------------------------------------------------------------------
// Several replicas

/// Three replicas share 1 000 transitions; one is killed half-way. Every notification
/// reaches the receiver, counted once by its id (a duplicate of an id is allowed: the
/// killed replica may have sent before recording), and every record ends delivered.
async fn three_replicas_deliver_each_notification_once_by_id(env: TestEnv) {
    let receiver = Receiver::start().await;
    let apps = vec![
        env.spawn_with(fast).await,
        env.spawn_with(fast).await,
        env.spawn_with(fast).await,
    ];
    let admin = env.admin();
    webhook_channel(&apps[0], &admin, "hook", &receiver, json!({})).await;
    let store = test_store(&apps[0]).await;
    let channels = vec!["hook".to_string()];
    let policy = NotifyPolicy::default();
    let mut apps = apps;
    let mut killed = false;
    for i in 0..1000 {
        let rule_id = Uuid::now_v7();
        transition(
            &store,
            "default",
            rule_id,
            Uuid::now_v7(),
            OutboxKind::Firing,
            &channels,
            &policy,
            None,
            &rule_id.to_string(),
        )
        .await;
        if i == 500 && !killed {
            apps.remove(1).kill();
            killed = true;
        }
    }
    let got = eventually(
        Duration::from_secs(60),
        "1000 distinct notifications",
        || async {
            let got = receiver.accepted();
            let ids: BTreeSet<String> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
            (ids.len() >= 1000).then_some(got)
        },
    )
    .await;
    let ids: BTreeSet<String> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1000);
    let delivered = eventually(
        Duration::from_secs(30),
        "every record delivered",
        || async {
            let mut conn = store.read().await.ok()?;
            let n: i64 = lookout::sql!(conn.db(), scalar i64,
            "SELECT count(*) FROM deliveries WHERE status = 'delivered'")
            .ok()?;
            (n == 1000).then_some(n)
        },
    )
    .await;
    assert_eq!(delivered, 1000);
    // Both survivors took part.
    let mut conn = store.read().await.unwrap();
    let replicas: Vec<(String,)> = lookout::sql!(
        conn.db(),
        all(String,),
        "SELECT DISTINCT replica FROM delivery_attempts"
    )
    .unwrap();
    assert!(replicas.len() >= 2, "{replicas:?}");
    let duplicates = got.len() - ids.len();
    println!(
        "three replicas: {} requests for 1000 notifications ({duplicates} duplicates by id)",
        got.len()
    );
}

both_modes!(
    channels_crud_keeps_secrets_write_only,
    default_channels_come_from_the_environment_once,
    email_goes_through_smtp_with_html_text_and_a_stable_message_id,
    slack_and_twilio_receive_what_they_expect,
    webhooks_are_signed_and_retried_until_the_receiver_recovers,
    a_permanent_refusal_is_dead_lettered_with_an_event,
    the_test_endpoint_answers_the_outcome,
    retry_after_is_honoured,
    a_dead_replicas_claim_is_taken_over,
    a_deleted_channels_deliveries_are_dead_lettered,
    an_alert_event_wakes_the_workers,
    a_disabled_channel_suppresses,
    silences_acks_and_snoozes_hold_notifications_back,
    alerts_of_a_group_go_out_in_one_message,
    a_throttle_caps_alerts_per_rule,
    a_firing_alert_is_repeated_until_it_resolves,
    unacknowledged_alerts_escalate,
    severity_filters_pick_channels,
);

cluster_only!(three_replicas_deliver_each_notification_once_by_id);
