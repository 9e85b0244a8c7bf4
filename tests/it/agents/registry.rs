//! The registry over REST, configuration pushes and presence across replicas.

use super::client::Agent;
use crate::common::{TestEnv, eventually};
use crate::{both_modes, cluster_only};
use lookout::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

async fn the_registry_filters_pages_and_keeps_tenants_apart(env: TestEnv) {
    let app = env.spawn().await;
    let token = |id: &str| env.token(Role::Agent, "default", id);
    let (_a, _) = Agent::register(&app, &token("a"), "a", Some("aws"), Some("eu-1")).await;
    let (_b, _) = Agent::register(&app, &token("b"), "b", Some("gcp"), Some("eu-1")).await;
    let (c, _) = Agent::register(&app, &token("c"), "c", Some("aws"), Some("us-1")).await;
    drop(c);
    let viewer = env.token(Role::Viewer, "default", "v");
    eventually(Duration::from_secs(5), "c disconnected", || async {
        let c = app.get("/api/v1/agents/c", &viewer).await;
        (c.body["status"] == "disconnected").then_some(())
    })
    .await;

    let all = app.get("/api/v1/agents", &viewer).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(ids(&all.body), ["a", "b", "c"]);
    let connected = app.get("/api/v1/agents?status=connected", &viewer).await;
    assert_eq!(ids(&connected.body), ["a", "b"]);
    let aws = app.get("/api/v1/agents?provider=aws", &viewer).await;
    assert_eq!(ids(&aws.body), ["a", "c"]);
    let eu_aws = app
        .get("/api/v1/agents?provider=aws&region=eu-1", &viewer)
        .await;
    assert_eq!(ids(&eu_aws.body), ["a"]);
    app.get("/api/v1/agents?status=sleeping", &viewer)
        .await
        .assert_problem(422, "validation");

    // Paging.
    let first = app.get("/api/v1/agents?limit=2", &viewer).await;
    assert_eq!(ids(&first.body), ["a", "b"]);
    let cursor = first.body["next_cursor"].as_str().expect("a next page");
    let second = app
        .get(&format!("/api/v1/agents?limit=2&cursor={cursor}"), &viewer)
        .await;
    assert_eq!(ids(&second.body), ["c"]);
    assert!(second.body["next_cursor"].is_null());

    let summary = app.get("/api/v1/agents/summary/stats", &viewer).await;
    assert_eq!(summary.status, 200, "{}", summary.text);
    assert_eq!(summary.body["total"], 3);
    assert_eq!(summary.body["connected"], 2);
    assert_eq!(summary.body["disconnected"], 1);
    assert_eq!(summary.body["by_provider"], json!({"aws": 2, "gcp": 1}));
    assert_eq!(summary.body["by_region"], json!({"eu-1": 2, "us-1": 1}));

    // Another tenant sees none of it, and cannot reach it by id.
    let other = env.token(Role::Admin, "other", "root");
    assert_eq!(
        ids(&app.get("/api/v1/agents", &other).await.body),
        Vec::<String>::new()
    );
    app.get("/api/v1/agents/a", &other)
        .await
        .assert_problem(404, "not_found");
    app.call(Method::DELETE, "/api/v1/agents/a", Some(&other), None)
        .await
        .assert_problem(404, "not_found");
    app.call(
        Method::PUT,
        "/api/v1/agents/a/config",
        Some(&other),
        Some(json!({"x": 1})),
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(
        app.get("/api/v1/agents/summary/stats", &other).await.body["total"],
        0
    );

    // Roles: no token 401, an agent's token 403, a viewer may not delete or configure.
    app.call(Method::GET, "/api/v1/agents", None, None)
        .await
        .assert_problem(401, "unauthorized");
    app.get("/api/v1/agents", &token("a"))
        .await
        .assert_problem(403, "forbidden");
    app.call(Method::DELETE, "/api/v1/agents/a", Some(&viewer), None)
        .await
        .assert_problem(403, "forbidden");
    app.call(Method::GET, "/api/v1/agents/a/config", Some(&viewer), None)
        .await
        .assert_problem(403, "forbidden");
    app.get("/api/v1/agents/nobody", &viewer)
        .await
        .assert_problem(404, "not_found");
}

async fn deleting_a_connected_agent_closes_its_socket(env: TestEnv) {
    let app = env.spawn().await;
    let (mut agent, _) = Agent::register(
        &app,
        &env.token(Role::Agent, "default", "gone"),
        "gone",
        None,
        None,
    )
    .await;
    let deleted = app
        .call(
            Method::DELETE,
            "/api/v1/agents/gone",
            Some(&env.admin()),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(agent.closed().await, (1000, "deleted".to_string()));
    app.get("/api/v1/agents/gone", &env.admin())
        .await
        .assert_problem(404, "not_found");
    let history = app
        .state
        .bus
        .history("default", "agents", 0, 100)
        .await
        .unwrap();
    assert!(history.events.iter().any(|e| e.event == "agent:deleted"));
}

async fn config_is_sent_at_registration_and_pushed_on_change(env: TestEnv) {
    let app = env.spawn().await;
    let token = env.token(Role::Agent, "default", "cfg");
    let (mut agent, registered) = Agent::register(&app, &token, "cfg", None, None).await;
    assert_eq!(registered["config"], json!({}));
    let put = app
        .call(
            Method::PUT,
            "/api/v1/agents/cfg/config",
            Some(&env.admin()),
            Some(json!({"interval_s": 15})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["version"], 1);
    assert_eq!(put.body["connected"], true);
    let pushed = agent.expect("config").await;
    assert_eq!(pushed["data"], json!({"interval_s": 15}));
    app.call(
        Method::PUT,
        "/api/v1/agents/cfg/config",
        Some(&env.admin()),
        Some(json!([1, 2])),
    )
    .await
    .assert_problem(422, "validation");
    // A reconnecting agent gets the stored configuration in `registered`.
    drop(agent);
    let (_agent, registered) = Agent::register(&app, &token, "cfg", None, None).await;
    assert_eq!(registered["config"], json!({"interval_s": 15}));
    let read = app.get("/api/v1/agents/cfg/config", &env.admin()).await;
    assert_eq!(read.body["config"], json!({"interval_s": 15}));
}

/// Presence short enough that a killed replica's agents turn over quickly.
fn fast_presence(config: &mut lookout::config::Config) {
    config.agents.presence_ttl = Duration::from_millis(900);
}

async fn config_put_on_replica_b_reaches_the_agent_on_replica_a(env: TestEnv) {
    let a = env.spawn_with(fast_presence).await;
    let b = env.spawn_with(fast_presence).await;
    let (mut agent, _) = Agent::register(
        &a,
        &env.token(Role::Agent, "default", "far"),
        "far",
        None,
        None,
    )
    .await;
    let seen_on_b = b.get("/api/v1/agents/far", &env.admin()).await;
    assert_eq!(seen_on_b.body["status"], "connected");
    assert_eq!(seen_on_b.body["replica"], a.replica_id());
    let put = b
        .call(
            Method::PUT,
            "/api/v1/agents/far/config",
            Some(&env.admin()),
            Some(json!({"scrape": ["cpu"]})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let pushed = agent.expect("config").await;
    assert_eq!(pushed["data"], json!({"scrape": ["cpu"]}));
}

async fn killing_the_holding_replica_marks_the_agent_disconnected(env: TestEnv) {
    let a = env.spawn_with(fast_presence).await;
    let b = env.spawn_with(fast_presence).await;
    let (agent, _) = Agent::register(
        &a,
        &env.token(Role::Agent, "default", "orphan"),
        "orphan",
        None,
        None,
    )
    .await;
    let admin = env.admin();
    assert_eq!(
        b.get("/api/v1/agents/orphan", &admin).await.body["status"],
        "connected"
    );
    let killed_at = std::time::Instant::now();
    a.kill();
    // Within the TTL (plus one sweep interval of B and some slack for a busy machine).
    eventually(
        Duration::from_secs(4),
        "the agent to turn disconnected",
        || async {
            let seen = b.get("/api/v1/agents/orphan", &admin).await;
            (seen.body["status"] == "disconnected").then_some(())
        },
    )
    .await;
    let took = killed_at.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "not before the TTL could run out: {took:?}"
    );
    let history = b
        .state
        .bus
        .history("default", "agents", 0, 100)
        .await
        .unwrap();
    assert!(
        history
            .events
            .iter()
            .any(|e| e.event == "agent:disconnected"),
        "agent:disconnected published"
    );
    drop(agent);
}

async fn a_reconnect_to_another_replica_takes_the_agent_over(env: TestEnv) {
    let a = env.spawn_with(fast_presence).await;
    let b = env.spawn_with(fast_presence).await;
    let token = env.token(Role::Agent, "default", "mover");
    let (mut old, _) = Agent::register(&a, &token, "mover", None, None).await;
    let (_new, _) = Agent::register(&b, &token, "mover", None, None).await;
    // The old socket is closed as replaced, and the agent stays connected, on B.
    assert_eq!(old.closed().await, (1000, "replaced".to_string()));
    let admin = env.admin();
    // Past several presence rounds: still connected.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = a.get("/api/v1/agents/mover", &admin).await;
    assert_eq!(seen.body["status"], "connected", "{}", seen.text);
    assert_eq!(seen.body["replica"], b.replica_id());
}

both_modes!(
    the_registry_filters_pages_and_keeps_tenants_apart,
    deleting_a_connected_agent_closes_its_socket,
    config_is_sent_at_registration_and_pushed_on_change,
);
cluster_only!(
    config_put_on_replica_b_reaches_the_agent_on_replica_a,
    killing_the_holding_replica_marks_the_agent_disconnected,
    a_reconnect_to_another_replica_takes_the_agent_over,
);
