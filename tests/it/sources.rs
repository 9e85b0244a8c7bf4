//! Tests of the sources part: the registry, the KumoMTA poller against a kumod stand-in
//! that changes over time, one poller per cluster, the log hook, Prometheus targets and
//! probes.

mod kumomta;
mod log_hook;
mod one_poller;
mod registry;
mod targets;

use crate::common::{TestApp, eventually};
use serde_json::Value;
use std::time::Duration;

/// Creates a source as the test admin; panics unless 201.
pub async fn create_source(app: &TestApp, admin: &str, body: Value) -> Value {
    let created = app.post("/api/v1/sources", admin, body).await;
    assert_eq!(created.status, 201, "create source: {}", created.text);
    created.body
}

/// The data of every event on `topic` of tenant `default` so far, oldest first.
pub async fn events(app: &TestApp, topic: &str, event: &str) -> Vec<Value> {
    let history = app
        .state
        .bus
        .history("default", topic, 0, 10_000)
        .await
        .expect("topic history");
    history
        .events
        .iter()
        .filter(|e| e.event == event)
        .map(|e| serde_json::from_str(e.data.get()).expect("event data is JSON"))
        .collect()
}

/// Every stored value of the series named `name` of tenant `default` whose labels include
/// `labels`, oldest first.
pub async fn series_values(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    let now = chrono::Utc::now();
    let all = lookout::store::samples::read_range(
        &app.state.store,
        "default",
        &[name.to_string()],
        now - chrono::Duration::hours(1),
        now + chrono::Duration::minutes(5),
    )
    .await
    .expect("read series");
    all.into_iter()
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .flat_map(|s| s.samples.into_iter().map(|(_, v)| v))
        .collect()
}

/// Waits until `GET /api/v1/queues` satisfies `check`; returns the body.
pub async fn queues_until(
    app: &TestApp,
    token: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(Duration::from_secs(15), what, || async {
        let queues = app.get("/api/v1/queues", token).await;
        (queues.status == 200 && check(&queues.body)).then_some(queues.body)
    })
    .await
}
