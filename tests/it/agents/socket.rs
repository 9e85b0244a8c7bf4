//! The agent socket: batches stored once, acknowledgements after storage, bad input
//! answered with its error frame or close code, authentication, liveness.

use super::client::{Agent, Frame, connect_path, try_connect};
use crate::both_modes;
use crate::common::{TestApp, TestEnv};
use futures_util::SinkExt;
use lookout::auth::Role;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn agent_token(env: &TestEnv, agent_id: &str) -> String {
    env.token(Role::Agent, "default", agent_id)
}

async fn stored_samples(app: &TestApp, name: &str) -> i64 {
    let mut conn = app.state.store.read().await.expect("a connection");
    lookout::sql!(
        conn.db(),
        scalar i64,
        "SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id
         WHERE r.tenant = 'default' AND r.name = $1",
        name
    )
    .expect("count samples")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn a_batch_is_stored_once_and_acknowledged_again_when_resent(env: TestEnv) {
    let app = env.spawn().await;
    let (mut agent, registered) = Agent::register(
        &app,
        &agent_token(&env, "host-1"),
        "host-1",
        Some("aws"),
        None,
    )
    .await;
    assert_eq!(registered["config"], json!({}));
    let t = now_ms();
    let batch = json!([
        {"name": "cpu_usage", "value": 0.5, "labels": {"core": "0"}, "timestamp": t - 2000},
        {"name": "bad name", "value": 1.0, "labels": {}, "timestamp": t},
        {"name": "cpu_usage", "value": 0.7, "labels": {"core": "0"},
         "timestamp": chrono::Utc::now().to_rfc3339()},
        {"name": "cpu_usage", "value": "high"},
    ]);
    let ack = agent.batch("b-1", batch.clone()).await;
    assert_eq!(ack["accepted"], 2, "{ack}");
    let rejected = ack["rejected"].as_array().expect("rejections");
    assert_eq!(
        rejected
            .iter()
            .map(|r| r["index"].as_u64())
            .collect::<Vec<_>>(),
        vec![Some(1), Some(3)],
        "{ack}"
    );
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("metric name"),
        "{ack}"
    );
    // The ack came after the commit: the samples are there now.
    assert_eq!(stored_samples(&app, "cpu_usage").await, 2);

    // Resent (the agent did not get the ack): the same answer, nothing stored twice.
    let again = agent.batch("b-1", batch).await;
    assert_eq!(again, ack);
    assert_eq!(stored_samples(&app, "cpu_usage").await, 2);

    // Resent over a new socket, as after a reconnect.
    drop(agent);
    let (mut agent, _) =
        Agent::register(&app, &agent_token(&env, "host-1"), "host-1", None, None).await;
    let third = agent
        .batch(
            "b-1",
            json!([{"name": "cpu_usage", "value": 9.0, "timestamp": t}]),
        )
        .await;
    assert_eq!(third["accepted"], 2);
    assert_eq!(stored_samples(&app, "cpu_usage").await, 2);

    let stats = app.get("/api/v1/agents/host-1/stats", &env.admin()).await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    assert_eq!(stats.body["batches_total"], 1, "{}", stats.text);
    assert_eq!(stats.body["samples_total"], 2);
    assert_eq!(stats.body["rejected_total"], 2);
    assert_eq!(stats.body["status"], "connected");
    let one = app.get("/api/v1/agents/host-1", &env.admin()).await;
    assert_eq!(one.body["provider"], "aws", "{}", one.text);
    assert_eq!(one.body["hostname"], "host-1.example");
    assert_eq!(one.body["labels"], json!({"env": "test"}));
}

async fn bad_frames_get_their_error_or_close_code(env: TestEnv) {
    let app = env
        .spawn_with(|c| {
            c.agents.max_frame_bytes = 4096;
        })
        .await;
    let token = agent_token(&env, "a1");
    let (mut agent, _) = Agent::register(&app, &token, "a1", None, None).await;

    agent.send("telepathy", json!({})).await;
    let error = agent.expect("error").await;
    assert_eq!(error["data"]["code"], "unknown_type", "{error}");

    agent.send("metrics", json!({"metrics": []})).await;
    let error = agent.expect("error").await;
    assert_eq!(error["data"]["code"], "bad_request", "{error}");

    agent
        .send("metrics", json!({"batch_id": "", "metrics": []}))
        .await;
    let error = agent.expect("error").await;
    assert_eq!(error["data"]["code"], "bad_request", "{error}");

    agent.send("status", json!({"status": "on fire!"})).await;
    let error = agent.expect("error").await;
    assert_eq!(error["data"]["code"], "bad_request", "{error}");

    agent
        .send("registration", json!({"labels": {"bad-label": "x"}}))
        .await;
    let error = agent.expect("error").await;
    assert_eq!(error["data"]["code"], "bad_request", "{error}");

    // Still usable after every one of those.
    agent.send("status", json!({"status": "ok"})).await;
    agent.send("ping", json!({})).await;
    agent.expect("pong").await;

    // Not JSON: error, then 4000.
    agent.send_raw("{not json".into()).await;
    let error = agent.expect("error").await;
    assert_eq!(error["data"]["code"], "bad_request");
    assert_eq!(agent.closed().await.0, 4000);

    // No `type`: 4000.
    let (mut agent, _) = Agent::register(&app, &token, "a1", None, None).await;
    agent.send_raw(json!({"data": {}}).to_string()).await;
    assert_eq!(agent.closed().await.0, 4000);

    // Binary: 4000.
    let (mut agent, _) = Agent::register(&app, &token, "a1", None, None).await;
    agent
        .ws
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(agent.closed().await.0, 4000);

    // Larger than the frame limit: 1009.
    let (mut agent, _) = Agent::register(&app, &token, "a1", None, None).await;
    agent
        .send(
            "status",
            json!({"status": "ok", "details": {"x": "y".repeat(8192)}}),
        )
        .await;
    assert_eq!(agent.closed().await.0, 1009);
}

async fn a_batch_over_the_limit_is_refused_whole(env: TestEnv) {
    let app = env.spawn().await;
    let (mut agent, _) = Agent::register(&app, &agent_token(&env, "big"), "big", None, None).await;
    let metrics: Vec<Value> = (0..10_001)
        .map(|i| json!({"name": "m", "value": i}))
        .collect();
    agent
        .send("metrics", json!({"batch_id": "huge", "metrics": metrics}))
        .await;
    let error = agent.expect("error").await;
    assert_eq!(error["data"]["code"], "bad_request", "{error}");
    assert_eq!(error["data"]["batch_id"], "huge");
    assert_eq!(stored_samples(&app, "m").await, 0);
}

async fn a_flood_gets_rate_limit_then_4008(env: TestEnv) {
    let app = env
        .spawn_with(|c| {
            c.agents.rate_limit_per_sec = 1;
            c.agents.rate_limit_burst = 3;
        })
        .await;
    let (mut agent, _) =
        Agent::register(&app, &agent_token(&env, "noisy"), "noisy", None, None).await;
    for _ in 0..20 {
        agent.send("pong", json!({})).await;
    }
    let limited = agent.expect("rate_limit").await;
    assert!(limited["data"]["retry_after_ms"].as_u64().unwrap() > 0);
    assert_eq!(agent.closed().await.0, 4008);
}

async fn authentication_and_roles(env: TestEnv) {
    let app = env
        .spawn_with(|c| c.agents.auth_timeout = Duration::from_millis(300))
        .await;
    let path = connect_path("h1", None, None);
    // Bad token in the header: 401 before the upgrade; wrong role or agent: 403.
    assert_eq!(
        try_connect(&app, &path, Some("nope")).await.err(),
        Some(401)
    );
    let viewer = env.token(Role::Viewer, "default", "h1");
    assert_eq!(
        try_connect(&app, &path, Some(&viewer)).await.err(),
        Some(403)
    );
    let other = agent_token(&env, "h2");
    assert_eq!(
        try_connect(&app, &path, Some(&other)).await.err(),
        Some(403)
    );
    // A missing agent_id is a 422.
    let missing = app
        .get("/api/v1/agents/connect", &agent_token(&env, "h1"))
        .await;
    missing.assert_problem(422, "validation");
    // Not an upgrade request: 400.
    let plain = app.get(&path, &agent_token(&env, "h1")).await;
    plain.assert_problem(400, "bad_request");

    // Token in the query string.
    let query = format!("{path}&token={}", agent_token(&env, "h1"));
    let ws = try_connect(&app, &query, None)
        .await
        .expect("query token accepted");
    let mut agent = Agent { ws };
    agent.send("registration", json!({})).await;
    agent.expect("registered").await;
    drop(agent);

    // Token in the first frame; an admin may connect as any agent.
    let ws = try_connect(&app, &path, None)
        .await
        .expect("upgrade without a token");
    let mut agent = Agent { ws };
    agent
        .send_raw(json!({"type": "auth", "data": {"token": env.admin()}}).to_string())
        .await;
    agent.expect("auth_success").await;
    agent.send("registration", json!({})).await;
    agent.expect("registered").await;

    // A bad first-frame token: auth_error and 4001; a viewer's: 4003; none: 4001.
    let ws = try_connect(&app, &path, None).await.unwrap();
    let mut agent = Agent { ws };
    agent
        .send_raw(json!({"type": "auth", "data": {"token": "bad"}}).to_string())
        .await;
    agent.expect("auth_error").await;
    assert_eq!(agent.closed().await.0, 4001);
    let ws = try_connect(&app, &path, None).await.unwrap();
    let mut agent = Agent { ws };
    agent
        .send_raw(json!({"type": "auth", "data": {"token": viewer}}).to_string())
        .await;
    agent.expect("auth_error").await;
    assert_eq!(agent.closed().await.0, 4003);
    let ws = try_connect(&app, &path, None).await.unwrap();
    let mut agent = Agent { ws };
    assert_eq!(agent.closed().await, (4001, "auth_timeout".to_string()));
}

async fn a_silent_agent_is_pinged_then_closed_with_4004(env: TestEnv) {
    let app = env
        .spawn_with(|c| c.agents.ping_interval = Duration::from_millis(150))
        .await;
    let (mut agent, _) =
        Agent::register(&app, &agent_token(&env, "quiet"), "quiet", None, None).await;
    // Read raw frames: pings arrive, and after three silent intervals the close.
    let mut pings = 0;
    loop {
        let message = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::StreamExt::next(&mut agent.ws),
        )
        .await
        .expect("a frame in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["type"] == "ping" {
                    pings += 1;
                }
            }
            Some(Ok(Message::Close(Some(close)))) => {
                assert_eq!(u16::from(close.code), 4004);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 2, "{pings} pings");
    let agent = app.get("/api/v1/agents/quiet", &env.admin()).await;
    crate::common::eventually(Duration::from_secs(5), "disconnected", || async {
        let agent = app.get("/api/v1/agents/quiet", &env.admin()).await;
        (agent.body["status"] == "disconnected").then_some(())
    })
    .await;
    let _ = agent;
}

async fn status_frames_are_stored_and_announced(env: TestEnv) {
    let app = env.spawn().await;
    let (mut agent, _) = Agent::register(&app, &agent_token(&env, "s1"), "s1", None, None).await;
    agent
        .send(
            "status",
            json!({"status": "degraded", "details": {"disk": "90%"}}),
        )
        .await;
    crate::common::eventually(Duration::from_secs(5), "health stored", || async {
        let a = app.get("/api/v1/agents/s1", &env.admin()).await;
        (a.body["health"] == "degraded" && a.body["health_details"]["disk"] == "90%").then_some(())
    })
    .await;
    let history = app
        .state
        .bus
        .history("default", "agents", 0, 100)
        .await
        .unwrap();
    let events: Vec<&str> = history.events.iter().map(|e| e.event.as_str()).collect();
    assert!(events.contains(&"agent:connected"), "{events:?}");
    assert!(events.contains(&"agent:updated"), "{events:?}");
    assert!(events.contains(&"agent:status"), "{events:?}");
    let _ = Frame::Closed(None);
}

both_modes!(
    a_batch_is_stored_once_and_acknowledged_again_when_resent,
    bad_frames_get_their_error_or_close_code,
    a_batch_over_the_limit_is_refused_whole,
    a_flood_gets_rate_limit_then_4008,
    authentication_and_roles,
    a_silent_agent_is_pinged_then_closed_with_4004,
    status_frames_are_stored_and_announced,
);
