//! Helpers shared by the rules tests.

use crate::common::{TestApp, TestEnv};
use chrono::{DateTime, Utc};
use lookout::bus::{BusMessage, Subscription, TopicPattern};
use lookout::ingest::SampleIn;
use lookout::rules::engine::Engine;
use lookout::series::Labels;
use serde_json::Value;
use std::time::Duration;

/// A replica whose own engine does not run: the test drives ticks with its own clock.
pub async fn quiet_replica(env: &TestEnv) -> TestApp {
    env.spawn_with(|c| c.rules.engine_enabled = false).await
}

/// An engine on `app`'s store and bus with fencing token `fence`.
pub fn engine(app: &TestApp, fence: u64) -> Engine {
    Engine::new(app.state.store.clone(), app.state.bus.clone(), fence)
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes one sample through ingest, at `at`.
pub async fn sample(app: &TestApp, name: &str, l: &[(&str, &str)], value: f64, at: DateTime<Utc>) {
    let outcome = app
        .state
        .ingest
        .write(
            "default",
            None,
            vec![SampleIn {
                name: name.to_string(),
                labels: labels(l),
                value,
                timestamp_ms: Some(at.timestamp_millis()),
            }],
            Vec::new(),
            Utc::now(),
        )
        .await
        .expect("ingest");
    assert_eq!(outcome.accepted, 1, "{outcome:?}");
}

pub fn alerts_subscription(app: &TestApp) -> Subscription {
    app.state
        .bus
        .subscribe("default", TopicPattern::exact("alerts"))
}

/// The next `alert:*` event: (name, data).
pub async fn next_alert_event(sub: &mut Subscription) -> (String, Value) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("an alert event within 10 s")
            .expect("bus open");
        if let BusMessage::Event(event) = message {
            let data: Value = serde_json::from_str(event.data.get()).unwrap();
            return (event.event.clone(), data);
        }
    }
}

/// Creates a rule over REST as admin; returns its id.
pub async fn create_rule(app: &TestApp, env: &TestEnv, body: Value) -> String {
    ensure_ops_channel(app, env).await;
    let response = app.post("/api/v1/rules", &env.admin(), body).await;
    assert_eq!(response.status, 201, "{}", response.text);
    response.body["id"].as_str().unwrap().to_string()
}

/// The `ops` channel the test rules name: notify routes only to channels that exist.
/// Disabled, so its deliveries are recorded and suppressed rather than sent anywhere.
async fn ensure_ops_channel(app: &TestApp, env: &TestEnv) {
    let response = app
        .post(
            "/api/v1/channels",
            &env.admin(),
            serde_json::json!({"name": "ops", "type": "webhook", "enabled": false,
                               "settings": {"url": "http://127.0.0.1:9/hook"}}),
        )
        .await;
    assert!(
        response.status == 201 || response.status == 409,
        "{}",
        response.text
    );
}

/// A rule on `metric` by `queue`: `last > threshold`, firing after `for_`.
pub fn threshold_rule(metric: &str, threshold: f64, for_: &str, interval: &str) -> Value {
    serde_json::json!({
        "name": format!("{metric} above {threshold}"),
        "severity": "critical",
        "annotations": {"summary": "Queue {{ labels.queue }} holds {{ value }}"},
        "condition": {
            "expr": {"single": {"selector": {"name": metric}, "function": "last", "window": "5m"}},
            "operator": ">",
            "threshold": threshold,
            "group_by": ["queue"]
        },
        "for": for_,
        "evaluation_interval": interval,
        "channels": ["ops"]
    })
}

/// Counts rows of a query returning one integer, on either backend.
pub async fn count(app: &TestApp, query: &'static str, alert: Option<uuid::Uuid>) -> i64 {
    let mut conn = app.state.store.read().await.unwrap();
    match alert {
        Some(id) => lookout::sql!(conn.db(), scalar i64, query, id).unwrap(),
        None => lookout::sql!(conn.db(), scalar i64, query).unwrap(),
    }
}
