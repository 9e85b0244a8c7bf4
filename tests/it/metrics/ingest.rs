//! `POST /api/v1/metrics`: stored once, rejections one by one, limits, live events.

use super::{base_ms, metric, post_batch, tokens};
use crate::both_modes;
use crate::common::TestEnv;
use serde_json::json;

async fn a_batch_is_stored_once_and_each_rejection_reported(env: TestEnv) {
    let app = env.spawn().await;
    let t = tokens(&env, "acme");
    let base = base_ms();
    let batch = json!({
        "batch_id": "batch-1",
        "metrics": [
            metric("queue_size", &[("queue", "a")], 1.0, base),
            metric("bad.name", &[], 1.0, base),
            {"name": "queue_size", "value": "high", "labels": {"queue": "a"}},
            metric("queue_size", &[("queue", "a")], 2.0, base + 1000),
            metric("queue_size", &[("queue", "a")], 3.0, base + 3_600_000),
            metric("queue_size", &[("__x", "a")], 3.0, base),
        ]
    });
    let first = post_batch(&app, &t.agent, batch.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["accepted"], 2);
    assert_eq!(first.body["duplicate"], false);
    let rejected = first.body["rejected"].as_array().unwrap();
    let indexes: Vec<u64> = rejected
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, vec![1, 2, 4, 5], "{}", first.text);
    let reason = |i: usize| rejected[i]["reason"].as_str().unwrap().to_string();
    assert!(reason(0).contains("invalid metric name"), "{}", reason(0));
    assert!(reason(1).contains("invalid sample"), "{}", reason(1));
    assert!(reason(2).contains("future"), "{}", reason(2));
    assert!(reason(3).contains("reserved"), "{}", reason(3));

    // Resent (by an admin of the same tenant, as a retrying script would): the first
    // answer, nothing stored twice.
    let again = post_batch(&app, &t.admin, batch).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(again.body["accepted"], 2);
    assert_eq!(again.body["rejected"], first.body["rejected"]);

    let from = base - 1000;
    let stored = app
        .get(
            &format!("/api/v1/metrics?name=queue_size&from={from}&limit=100"),
            &t.viewer,
        )
        .await;
    assert_eq!(stored.status, 200, "{}", stored.text);
    let values: Vec<f64> = stored.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, vec![1.0, 2.0], "stored once: {}", stored.text);

    // One metrics:update per batch, none for the duplicate.
    let history = app
        .state
        .bus
        .history("acme", "metrics", 0, 10)
        .await
        .unwrap();
    assert_eq!(history.events.len(), 1);
    let event = &history.events[0];
    assert_eq!(event.event, "metrics:update");
    let data: serde_json::Value = serde_json::from_str(event.data.get()).unwrap();
    assert_eq!(data["accepted"], 2);
    assert_eq!(data["rejected"], 4);
    assert_eq!(data["batch_id"], "batch-1");
    assert_eq!(data["names"], json!(["queue_size"]));
    assert_eq!(data["latest"][0]["value"], 2.0);
    assert_eq!(data["latest"][0]["labels"]["queue"], "a");
}

async fn only_agents_and_admins_ingest_and_bad_batches_are_problems(env: TestEnv) {
    let app = env.spawn().await;
    let t = tokens(&env, "acme");
    let one = json!({"metrics": [metric("up", &[], 1.0, base_ms())]});
    post_batch(&app, &t.viewer, one.clone())
        .await
        .assert_problem(403, "forbidden");
    let operator = env.token(lookout::auth::Role::Operator, "acme", "op");
    post_batch(&app, &operator, one.clone())
        .await
        .assert_problem(403, "forbidden");
    app.call(reqwest::Method::POST, "/api/v1/metrics", None, Some(one))
        .await
        .assert_problem(401, "unauthorized");

    let too_many: Vec<_> = (0..10_001)
        .map(|i| metric("up", &[], i as f64, base_ms()))
        .collect();
    post_batch(&app, &t.agent, json!({ "metrics": too_many }))
        .await
        .assert_problem(422, "batch_too_large");
    post_batch(&app, &t.agent, json!({"metrics": {"name": "up"}}))
        .await
        .assert_problem(422, "validation");
    post_batch(
        &app,
        &t.agent,
        json!({"batch_id": "", "metrics": [metric("up", &[], 1.0, base_ms())]}),
    )
    .await
    .assert_problem(422, "validation");
    let malformed = app
        .request(reqwest::Method::POST, "/api/v1/metrics", Some(&t.agent))
        .header("content-type", "application/json")
        .body("{\"metrics\": [")
        .send()
        .await
        .unwrap();
    crate::common::Response::read(malformed)
        .await
        .assert_problem(400, "bad_request");

    // A full batch is larger than the default body limit of other routes.
    let big: Vec<_> = (0..10_000)
        .map(|i| {
            metric(
                "http_requests_total",
                &[
                    ("instance", "web-server-0001.example.com:9100"),
                    ("path", "/api/v1/things"),
                ],
                i as f64,
                base_ms() + i,
            )
        })
        .collect();
    let body = json!({ "metrics": big });
    assert!(body.to_string().len() > 1024 * 1024);
    let stored = post_batch(&app, &t.agent, body).await;
    assert_eq!(stored.status, 200, "{}", stored.text);
    assert_eq!(stored.body["accepted"], 10_000);
}

async fn the_active_series_limit_answers_429(env: TestEnv) {
    let app = env.spawn_with(|c| c.metrics.max_active_series = 3).await;
    let t = tokens(&env, "acme");
    let base = base_ms();
    let series = |names: &[&str], ts: i64| json!({"metrics": names.iter().map(|q| metric("queue_size", &[("queue", q)], 1.0, ts)).collect::<Vec<_>>()});
    let ok = post_batch(&app, &t.agent, series(&["a", "b", "c"], base)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let refused = post_batch(&app, &t.agent, series(&["a", "d"], base + 1000)).await;
    refused.assert_problem(429, "series_limit");
    assert!(refused.headers.contains_key("retry-after"));
    // Nothing of the refused batch was stored, known series still flow, other tenants
    // have their own limit.
    let known = post_batch(&app, &t.agent, series(&["a", "b"], base + 2000)).await;
    assert_eq!(known.status, 200, "{}", known.text);
    let a = app
        .get(
            &format!("/api/v1/metrics?name=queue_size&match=queue=a&from={base}"),
            &t.viewer,
        )
        .await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 2, "{}", a.text);
    let other = tokens(&env, "other");
    let theirs = post_batch(&app, &other.agent, series(&["x", "y", "z"], base)).await;
    assert_eq!(theirs.status, 200, "{}", theirs.text);
}

/// Callers of `Ingest::write` (pollers, agents) announce too once the instance has the
/// bus (`Ingest::with_bus`, wired in app.rs).
async fn write_with_a_bus_announces_each_batch(env: TestEnv) {
    let app = env.spawn().await;
    let ingest =
        lookout::ingest::Ingest::new(app.state.store.clone(), lookout::ingest::Limits::default())
            .with_bus(app.state.bus.clone());
    let now = chrono::Utc::now();
    let sample = lookout::ingest::SampleIn {
        name: "polled_total".into(),
        labels: Default::default(),
        value: 3.0,
        timestamp_ms: None,
    };
    let first = ingest
        .write("acme", Some("p-1"), vec![sample.clone()], Vec::new(), now)
        .await
        .unwrap();
    assert_eq!(first.accepted, 1);
    let again = ingest
        .write("acme", Some("p-1"), vec![sample], Vec::new(), now)
        .await
        .unwrap();
    assert!(again.duplicate);
    let history = app
        .state
        .bus
        .history("acme", "metrics", 0, 10)
        .await
        .unwrap();
    assert_eq!(history.events.len(), 1, "one event, none for the duplicate");
    assert_eq!(history.events[0].event, "metrics:update");
}

both_modes!(
    write_with_a_bus_announces_each_batch,
    a_batch_is_stored_once_and_each_rejection_reported,
    only_agents_and_admins_ingest_and_bad_batches_are_problems,
    the_active_series_limit_answers_429,
);
