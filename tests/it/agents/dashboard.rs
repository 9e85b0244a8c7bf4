//! Dashboard data: overview, health and activity, and who may read them.

use super::client::Agent;
use crate::both_modes;
use crate::common::{TestEnv, eventually};
use lookout::auth::Role;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

async fn the_overview_counts_agents_and_the_ingest_rate(env: TestEnv) {
    let app = env.spawn().await;
    let viewer = env.token(Role::Viewer, "default", "v");
    let empty = app.get("/api/v1/dashboard/overview", &viewer).await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.body["agents"]["total"], 0);
    assert_eq!(empty.body["ingest"]["samples"], 0);
    // Sections of parts with nothing to say are left out.
    assert!(empty.body.get("alerts").is_none(), "{}", empty.text);
    assert!(empty.body.get("queues").is_none(), "{}", empty.text);

    let (mut one, _) = Agent::register(
        &app,
        &env.token(Role::Agent, "default", "one"),
        "one",
        None,
        None,
    )
    .await;
    let (two, _) = Agent::register(
        &app,
        &env.token(Role::Agent, "default", "two"),
        "two",
        None,
        None,
    )
    .await;
    drop(two);
    one.send("status", json!({"status": "ok"})).await;
    let metrics: Vec<_> = (0..30)
        .map(|i| json!({"name": "load", "value": i, "labels": {"n": i.to_string()}}))
        .collect();
    one.batch("batch-1", json!(metrics)).await;
    let overview = eventually(Duration::from_secs(5), "two disconnected", || async {
        let o = app.get("/api/v1/dashboard/overview", &viewer).await;
        (o.body["agents"]["disconnected"] == 1 && o.body["agents"]["by_health"]["ok"] == 1)
            .then_some(o)
    })
    .await;
    assert_eq!(overview.body["agents"]["total"], 2, "{}", overview.text);
    assert_eq!(overview.body["agents"]["connected"], 1);
    assert_eq!(overview.body["ingest"]["batches"], 1);
    assert_eq!(overview.body["ingest"]["samples"], 30);
    assert_eq!(overview.body["ingest"]["samples_per_second"], 0.5);

    // Another tenant's overview is its own.
    let other = env.token(Role::Viewer, "other", "v");
    let theirs = app.get("/api/v1/dashboard/overview", &other).await;
    assert_eq!(theirs.body["agents"]["total"], 0);
    assert_eq!(theirs.body["ingest"]["samples"], 0);
}

async fn health_lists_store_bus_and_replicas(env: TestEnv) {
    let app = env.spawn().await;
    let viewer = env.token(Role::Viewer, "default", "v");
    let health = app.get("/api/v1/dashboard/health", &viewer).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.body["status"], "up", "{}", health.text);
    assert_eq!(health.body["replica"], app.replica_id());
    let components = health.body["components"].as_array().unwrap();
    let find = |kind: &str| {
        components
            .iter()
            .find(|c| c["kind"] == kind)
            .unwrap_or_else(|| panic!("a {kind} component in {}", health.text))
    };
    assert_eq!(find("store")["status"], "up");
    assert!(find("store")["response_time_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(find("bus")["status"], "up");
    assert!(find("bus")["response_time_ms"].is_number());
    // The replica list comes from the registry (cluster: after the first heartbeat).
    eventually(Duration::from_secs(5), "this replica listed", || async {
        let h = app.get("/api/v1/dashboard/health", &viewer).await;
        h.body["components"]
            .as_array()?
            .iter()
            .any(|c| c["kind"] == "replica" && c["name"] == app.replica_id().as_str())
            .then_some(())
    })
    .await;
}

async fn activity_is_newest_first_and_paged(env: TestEnv) {
    let app = env.spawn().await;
    for i in 0..5 {
        let published = app
            .state
            .bus
            .publish_json("default", "alerts", "alert:triggered", &json!({"n": i}))
            .await
            .unwrap();
        assert_eq!(published.offset, i + 1);
    }
    app.state
        .bus
        .publish_json("default", "agents", "agent:connected", &json!({"id": "x"}))
        .await
        .unwrap();
    app.state
        .bus
        .publish_json(
            "other",
            "alerts",
            "alert:triggered",
            &json!({"secret": true}),
        )
        .await
        .unwrap();
    let viewer = env.token(Role::Viewer, "default", "v");
    let page = app.get("/api/v1/dashboard/activity?limit=4", &viewer).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let items = page.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    // Newest first: times never increase down the page.
    let times: Vec<String> = items
        .iter()
        .map(|i| i["ts"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    let cursor = page.body["next_cursor"].as_str().expect("more pages");
    let rest = app
        .get(
            &format!("/api/v1/dashboard/activity?limit=4&cursor={cursor}"),
            &viewer,
        )
        .await;
    let rest_items = rest.body["items"].as_array().unwrap();
    assert_eq!(rest_items.len(), 2, "{}", rest.text);
    assert!(rest.body["next_cursor"].is_null());
    let mut alerts: Vec<u64> = items
        .iter()
        .chain(rest_items)
        .filter(|i| i["topic"] == "alerts")
        .map(|i| i["data"]["n"].as_u64().unwrap())
        .collect();
    // Every alert once, none of the other tenant's.
    alerts.sort();
    assert_eq!(alerts, [0, 1, 2, 3, 4]);
    let only_agents = app
        .get("/api/v1/dashboard/activity?topics=agents", &viewer)
        .await;
    assert_eq!(only_agents.body["items"].as_array().unwrap().len(), 1);
    app.get("/api/v1/dashboard/activity?topics=_agents", &viewer)
        .await
        .assert_problem(422, "validation");
}

async fn dashboard_routes_need_a_viewer(env: TestEnv) {
    let app = env.spawn().await;
    let agent = env.token(Role::Agent, "default", "a");
    for path in [
        "/api/v1/dashboard/overview",
        "/api/v1/dashboard/health",
        "/api/v1/dashboard/activity",
    ] {
        app.call(Method::GET, path, None, None)
            .await
            .assert_problem(401, "unauthorized");
        app.call(Method::GET, path, Some("not-a-token"), None)
            .await
            .assert_problem(401, "unauthorized");
        app.get(path, &agent).await.assert_problem(403, "forbidden");
    }
}

both_modes!(
    the_overview_counts_agents_and_the_ingest_rate,
    health_lists_store_bus_and_replicas,
    activity_is_newest_first_and_paged,
    dashboard_routes_need_a_viewer,
);
