//! The KumoMTA log hook: fixture records singly and batched, the source's own token,
//! malformed bodies refused whole, records sent twice counted once.

use super::{create_source, events, series_values};
use crate::both_modes;
use crate::common::TestEnv;
use lookout::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

const RECORDS: &str = include_str!("../../fixtures/kumomta/log-records.jsonl");
const TOKEN: &str = "log-hook-token-0123456789";

fn fixture_records() -> Vec<Value> {
    RECORDS
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("fixture record"))
        .collect()
}

async fn post_logs(
    app: &crate::common::TestApp,
    id: &str,
    token: Option<&str>,
    body: Value,
) -> crate::common::Response {
    app.call(
        Method::POST,
        &format!("/api/v1/sources/{id}/kumomta/logs"),
        token,
        Some(body),
    )
    .await
}

async fn the_log_hook_counts_each_record_once(env: TestEnv) {
    let app = env.spawn().await;
    let admin = env.admin();
    let source = create_source(
        &app,
        &admin,
        json!({"name": "mta", "kind": "kumomta", "url": "http://127.0.0.1:1", "enabled": false, "log_hook_token": TOKEN}),
    )
    .await;
    assert!(
        source.get("log_hook_token").is_none(),
        "a given token is not echoed"
    );
    let id = source["id"].as_str().expect("id");
    let records = fixture_records();
    let (reception, transient) = (records[0].clone(), records[1].clone());

    // Authentication: the source's token only (not a user's JWT, not another token).
    post_logs(&app, id, None, reception.clone())
        .await
        .assert_problem(401, "unauthorized");
    post_logs(&app, id, Some("wrong-token-wrong-token"), reception.clone())
        .await
        .assert_problem(401, "unauthorized");
    post_logs(&app, id, Some(&admin), reception.clone())
        .await
        .assert_problem(401, "unauthorized");
    post_logs(
        &app,
        "00000000-0000-0000-0000-000000000000",
        Some(TOKEN),
        reception.clone(),
    )
    .await
    .assert_problem(401, "unauthorized");

    // Malformed: refused whole, with the element and field at fault; nothing stored.
    let mut bad = transient.clone();
    bad["timestamp"] = json!("yesterday");
    let refused = post_logs(&app, id, Some(TOKEN), json!([reception.clone(), bad])).await;
    refused.assert_problem(422, "validation");
    assert_eq!(refused.body["errors"][0]["field"], "[1].timestamp");
    post_logs(&app, id, Some(TOKEN), json!(42))
        .await
        .assert_problem(422, "validation");
    assert!(events(&app, "messages", "message:status").await.is_empty());
    assert!(
        series_values(&app, "kumomta_log_received_total", &[])
            .await
            .is_empty()
    );

    // One record (webhook hook).
    let single = post_logs(&app, id, Some(TOKEN), reception.clone()).await;
    assert_eq!(single.status, 200, "{}", single.text);
    assert_eq!(
        single.body,
        json!({"received": 1, "accepted": 1, "duplicates": 0})
    );

    // A batch holding it again and a new one: the repeat is acknowledged, not counted.
    let batch = post_logs(
        &app,
        id,
        Some(TOKEN),
        json!([reception.clone(), transient.clone()]),
    )
    .await;
    assert_eq!(
        batch.body,
        json!({"received": 2, "accepted": 1, "duplicates": 1})
    );
    let again = post_logs(&app, id, Some(TOKEN), json!([transient.clone(), transient])).await;
    assert_eq!(
        again.body,
        json!({"received": 2, "accepted": 0, "duplicates": 2})
    );

    let statuses = events(&app, "messages", "message:status").await;
    let summary: Vec<(&str, &str)> = statuses
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap_or(""),
                e["queue"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("received", "example.com"), ("deferred", "something")]
    );
    assert_eq!(
        statuses[1]["message_id"],
        "1d98076abbbc11ed940250ebf67f93bd"
    );
    assert_eq!(
        series_values(
            &app,
            "kumomta_log_received_total",
            &[("queue", "example.com"), ("source", "mta")]
        )
        .await,
        [1.0]
    );
    assert_eq!(
        series_values(
            &app,
            "kumomta_log_deferred_total",
            &[("queue", "something")]
        )
        .await,
        [1.0]
    );

    // A viewer cannot change the token; an admin can, and the old one stops working.
    let viewer = env.token(Role::Viewer, "default", "v");
    app.call(
        Method::PUT,
        &format!("/api/v1/sources/{id}"),
        Some(&viewer),
        Some(json!({})),
    )
    .await
    .assert_problem(403, "forbidden");
    let rotated = app
        .call(
            Method::PUT,
            &format!("/api/v1/sources/{id}"),
            Some(&admin),
            Some(json!({"name": "mta", "kind": "kumomta", "url": "http://127.0.0.1:1", "enabled": false, "log_hook_token": "another-token-0123456789"})),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    post_logs(&app, id, Some(TOKEN), reception)
        .await
        .assert_problem(401, "unauthorized");
}

both_modes!(the_log_hook_counts_each_record_once);
