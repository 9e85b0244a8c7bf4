//! Tests of the real-time gateway (`/ws` and `/api/v1/topics`), against real replicas on
//! port 0, real PostgreSQL/Redis (cluster) or SQLite (embedded), and real WebSockets.

pub(crate) mod client;
mod limits;
mod replicas;

use crate::both_modes;
use crate::common::{TestApp, TestEnv, token_for};
use client::{Auth, Ws};
use lookout::auth::Role;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Publishes through the HTTP API as an admin of `tenant`; returns the offset.
pub async fn publish(app: &TestApp, env: &TestEnv, tenant: &str, topic: &str, data: Value) -> u64 {
    let admin = env.token(Role::Admin, tenant, "publisher");
    let r = app
        .post(
            &format!("/api/v1/topics/{topic}/events"),
            &admin,
            json!({"event": "test:event", "data": data}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["offset"].as_u64().expect("offset")
}

/// Reads frames until an `event` comes; returns it.
pub async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let frame = ws.next().await;
        if frame["type"] == "event" {
            return frame;
        }
    }
}

async fn three_ways_to_authenticate(env: TestEnv) {
    let app = env.spawn().await;
    let token = env.token(Role::Operator, "acme", "alice");

    // 1. Header.
    let (_ws, hello) = Ws::open(&app, &token).await;
    let p = &hello["payload"];
    assert_eq!(p["sub"], "alice");
    assert_eq!(p["role"], "operator");
    assert_eq!(p["tenant"], "acme");
    assert_eq!(p["server"], app.replica_id());
    assert_eq!(p["heartbeat_interval_ms"], 30000);
    assert!(p["connection_id"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(p["expires_at"].as_str().is_some());
    assert!(hello["ts"].as_str().is_some_and(|t| t.ends_with('Z')));

    // 2. Query parameter.
    let mut ws = Ws::try_connect(&app, Auth::Query(&token), None)
        .await
        .expect("query token");
    assert_eq!(ws.expect("auth_success").await["payload"]["sub"], "alice");

    // 3. First frame, with its id echoed.
    let mut ws = Ws::try_connect(&app, Auth::None, None).await.unwrap();
    ws.send(json!({"type": "auth", "id": "c1", "payload": {"token": token}}))
        .await;
    let hello = ws.expect("auth_success").await;
    assert_eq!(hello["id"], "c1");
    ws.send(json!({"type": "ping", "id": "c3"})).await;
    assert_eq!(ws.expect("pong").await["id"], "c3");

    // A bad token in the header or the query: 401 problem+json, no upgrade.
    for auth in [Auth::Header("nope"), Auth::Query("nope")] {
        match Ws::try_connect(&app, auth, None).await {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), 401);
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["status"], 401);
            }
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }

    // A bad token in the first frame: auth_error, then 4001.
    let mut ws = Ws::try_connect(&app, Auth::None, None).await.unwrap();
    ws.send(json!({"type": "auth", "id": "c1", "payload": {"token": "nope"}}))
        .await;
    assert_eq!(ws.expect("auth_error").await["id"], "c1");
    assert_eq!(ws.expect_close().await.0, 4001);

    // An agent token may not open a dashboard session: 4003.
    let agent = env.token(Role::Agent, "acme", "agent-1");
    let mut ws = Ws::try_connect(&app, Auth::Header(&agent), None)
        .await
        .unwrap();
    assert_eq!(ws.expect_close().await, (4003, "forbidden_role".into()));
}

async fn silence_after_the_upgrade_times_out_with_4001(env: TestEnv) {
    let app = env
        .spawn_with(|c| c.realtime.auth_timeout = Duration::from_millis(300))
        .await;
    let mut ws = Ws::try_connect(&app, Auth::None, None).await.unwrap();
    assert_eq!(ws.expect_close().await, (4001, "auth_timeout".into()));
}

async fn a_refreshed_token_extends_the_session_and_expiry_closes_4002(env: TestEnv) {
    let app = env.spawn().await;
    let short = |sub: &str| {
        token_for(
            &app.config,
            Role::Viewer,
            "acme",
            sub,
            Duration::from_secs(2),
        )
    };
    let (mut refreshed, _) = Ws::open(&app, &short("alice")).await;
    let (mut expiring, _) = Ws::open(&app, &short("bob")).await;
    let fresh = env.token(Role::Viewer, "acme", "alice");
    refreshed
        .send(json!({"type": "auth", "id": "r1", "payload": {"token": fresh}}))
        .await;
    let renewed = refreshed.expect("auth_success").await;
    assert_eq!(renewed["id"], "r1");
    // Another subject's token does not extend this session.
    let other = env.token(Role::Viewer, "acme", "mallory");
    refreshed
        .send(json!({"type": "auth", "id": "r2", "payload": {"token": other}}))
        .await;
    assert_eq!(
        refreshed.expect("error").await["payload"]["code"],
        "forbidden"
    );

    assert_eq!(
        expiring.expect_close().await,
        (4002, "token_expired".into())
    );
    // The refreshed one lives on past the first token's expiry.
    refreshed
        .send(json!({"type": "heartbeat", "id": "h", "payload": {"metrics": {}}}))
        .await;
    let ack = refreshed.expect("heartbeat_ack").await;
    assert_eq!(ack["payload"]["next_heartbeat_ms"], 30000);
}

async fn subscriptions_reply_replay_and_recover(env: TestEnv) {
    let app = env.spawn_with(|c| c.bus.history_len = 30).await;
    // Redis trims histories approximately (whole blocks of ~100 entries): publish
    // enough that the oldest are surely gone.
    for i in 1..=300 {
        app.state
            .bus
            .publish_json("acme", "alerts", "test:event", &json!({"i": i}))
            .await
            .unwrap();
    }
    let token = env.token(Role::Viewer, "acme", "alice");
    let (mut ws, _) = Ws::open(&app, &token).await;
    let head = app.state.bus.head("acme", "alerts").await.unwrap();

    // `since` within the history: replays 291..=300, recovered.
    let replies = ws
        .subscribe(
            &["alerts"],
            json!({"since": {"alerts": {"offset": 290, "epoch": head.epoch}}}),
        )
        .await;
    let reply = &replies[0]["payload"];
    assert_eq!(reply["topic"], "alerts");
    assert_eq!(reply["offset"], 300);
    assert_eq!(reply["epoch"], head.epoch.as_str());
    assert_eq!(reply["recovered"], true);
    assert_eq!(reply["replayed"], 10);
    for offset in 291..=300 {
        let event = next_event(&mut ws).await;
        assert_eq!(event["offset"], offset);
        assert_eq!(event["topic"], "alerts");
        assert_eq!(event["event"], "test:event");
        assert_eq!(event["data"]["i"], offset);
    }
    assert_eq!(
        publish(&app, &env, "acme", "alerts", json!({"i": 301})).await,
        301
    );
    assert_eq!(next_event(&mut ws).await["offset"], 301);

    // Too far back (history keeps 30) or another epoch: recovered false, no replay.
    let (mut ws, _) = Ws::open(&app, &token).await;
    let reply = ws
        .subscribe(
            &["alerts"],
            json!({"since": {"alerts": {"offset": 2, "epoch": head.epoch}}}),
        )
        .await;
    assert_eq!(reply[0]["payload"]["recovered"], false);
    assert_eq!(reply[0]["payload"]["replayed"], 0);
    assert_eq!(reply[0]["payload"]["offset"], 301);
    let (mut ws, _) = Ws::open(&app, &token).await;
    let reply = ws
        .subscribe(
            &["alerts"],
            json!({"since": {"alerts": {"offset": 295, "epoch": "another"}}}),
        )
        .await;
    assert_eq!(reply[0]["payload"]["recovered"], false);

    // Unsubscribe, and errors that leave the connection open.
    ws.send(json!({"type": "unsubscribe", "id": "u", "payload": {"topics": ["alerts"]}}))
        .await;
    let gone = ws.expect("unsubscribed").await;
    assert_eq!(gone["payload"]["topic"], "alerts");
    assert_eq!(gone["id"], "u");
    ws.send(json!({"type": "subscribe", "id": "b", "payload": {"topics": ["Bad Topic"]}}))
        .await;
    assert_eq!(ws.expect("error").await["payload"]["code"], "bad_request");
    ws.send(json!({"type": "subscribe", "id": "b", "payload": {"topics": ["_internal"]}}))
        .await;
    assert_eq!(ws.expect("error").await["payload"]["code"], "bad_request");
    ws.send(json!({"type": "what", "id": "w"})).await;
    let unknown = ws.expect("error").await;
    assert_eq!(unknown["payload"]["code"], "unknown_type");
    assert_eq!(unknown["id"], "w");
    ws.send(json!({"type": "ping", "id": "p"})).await;
    ws.expect("pong").await;
}

/// Replay and live events meet with no gap and no duplicate while events keep coming.
async fn replay_meets_live_without_gap_or_duplicate(env: TestEnv) {
    let app = env.spawn().await;
    let bus = app.state.bus.clone();
    for i in 1..=200 {
        bus.publish_json("acme", "queues:a", "queue:update", &json!({"i": i}))
            .await
            .unwrap();
    }
    let head = bus.head("acme", "queues:a").await.unwrap();
    let publisher = tokio::spawn(async move {
        for i in 201..=1000 {
            bus.publish_json("acme", "queues:a", "queue:update", &json!({"i": i}))
                .await
                .unwrap();
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let token = env.token(Role::Viewer, "acme", "alice");
    let (mut ws, _) = Ws::open(&app, &token).await;
    // Through a pattern, with `since` naming the concrete topic.
    let reply = ws
        .subscribe(
            &["queues:*"],
            json!({"since": {"queues:a": {"offset": 100, "epoch": head.epoch}}}),
        )
        .await;
    assert_eq!(reply[0]["payload"]["recovered"], true);
    let mut offsets = Vec::new();
    while offsets.last() != Some(&1000) {
        let event = next_event(&mut ws).await;
        offsets.push(event["offset"].as_u64().unwrap());
    }
    publisher.await.unwrap();
    let expected: Vec<u64> = (101..=1000).collect();
    assert_eq!(offsets, expected, "every offset once, in order");
}

async fn durable_positions_resume_where_the_subject_acked(env: TestEnv) {
    let app = env.spawn().await;
    let token = env.token(Role::Viewer, "acme", "alice");
    let (mut ws, _) = Ws::open(&app, &token).await;
    ws.subscribe(&["alerts"], json!({"durable": true})).await;
    for i in 1..=5 {
        publish(&app, &env, "acme", "alerts", json!({"i": i})).await;
    }
    for _ in 1..=5 {
        next_event(&mut ws).await;
    }
    ws.send(json!({"type": "ack", "payload": {"topic": "alerts", "offset": 3}}))
        .await;
    // An invalid ack is answered with an error; a valid one is not answered.
    ws.send(json!({"type": "ack", "id": "a", "payload": {"topic": "alerts"}}))
        .await;
    assert_eq!(ws.expect("error").await["payload"]["code"], "bad_request");
    drop(ws);
    publish(&app, &env, "acme", "alerts", json!({"i": 6})).await;

    let (mut ws, _) = Ws::open(&app, &token).await;
    let reply = ws.subscribe(&["alerts"], json!({"durable": true})).await;
    assert_eq!(reply[0]["payload"]["recovered"], true);
    assert_eq!(reply[0]["payload"]["replayed"], 3);
    for offset in 4..=6 {
        assert_eq!(next_event(&mut ws).await["offset"], offset);
    }
}

async fn a_tenant_never_sees_another_tenants_events(env: TestEnv) {
    let app = env.spawn().await;
    let x = env.token(Role::Admin, "tenant-x", "xavier");
    let mut clients = Vec::new();
    for patterns in [
        vec!["*"],
        vec!["alerts"],
        vec!["queues:*"],
        vec!["custom.orders"],
    ] {
        let (mut ws, _) = Ws::open(&app, &x).await;
        ws.subscribe(&patterns, json!({})).await;
        clients.push(ws);
    }
    for topic in ["alerts", "queues:a", "queues:a:b", "custom.orders"] {
        publish(&app, &env, "tenant-y", topic, json!({"secret": true})).await;
    }
    // Markers of X's own, one per client, sent after Y's events.
    for topic in ["alerts", "alerts", "queues:a", "custom.orders"] {
        publish(&app, &env, "tenant-x", topic, json!({"marker": true})).await;
    }
    for ws in &mut clients {
        loop {
            let event = next_event(ws).await;
            assert_ne!(
                event["data"]["secret"], true,
                "tenant Y's event leaked: {event}"
            );
            if event["data"]["marker"] == true {
                break;
            }
        }
    }
    // HTTP history is tenant-scoped too.
    let r = app.get("/api/v1/topics/alerts/events?since=0", &x).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for event in r.body["events"].as_array().unwrap() {
        assert_ne!(event["data"]["secret"], true);
    }
}

async fn roles_are_checked_per_topic(env: TestEnv) {
    let app = env.spawn().await;
    let viewer = env.token(Role::Viewer, "acme", "vera");
    let (mut ws, _) = Ws::open(&app, &viewer).await;
    ws.send(json!({"type": "subscribe", "id": "s",
        "payload": {"topics": ["custom.admin.audit", "alerts", "*"]}}))
        .await;
    let denied = ws.expect("error").await;
    assert_eq!(denied["payload"]["code"], "forbidden");
    assert_eq!(denied["id"], "s");
    assert_eq!(ws.expect("subscribed").await["payload"]["topic"], "alerts");
    assert_eq!(ws.expect("subscribed").await["payload"]["topic"], "*");
    let admin = env.token(Role::Admin, "acme", "ada");
    let (mut admin_ws, _) = Ws::open(&app, &admin).await;
    admin_ws.subscribe(&["*"], json!({})).await;

    publish(
        &app,
        &env,
        "acme",
        "custom.admin.audit",
        json!({"private": true}),
    )
    .await;
    publish(&app, &env, "acme", "alerts", json!({"marker": true})).await;
    let first = next_event(&mut ws).await;
    assert_eq!(
        first["topic"], "alerts",
        "the viewer's `*` skips admin topics"
    );
    assert_eq!(
        next_event(&mut admin_ws).await["topic"],
        "custom.admin.audit"
    );
    // Received once although both `alerts` and `*` match.
    ws.send(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(ws.expect("pong").await["id"], "p");
}

async fn topics_over_http(env: TestEnv) {
    let app = env.spawn().await;
    let admin = env.admin();
    let viewer = env.token(Role::Viewer, "default", "vera");
    let r = app
        .post(
            "/api/v1/topics/custom.orders/events",
            &admin,
            json!({"event": "order:created", "data": {"id": 1}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["offset"], 1);
    let epoch = r.body["epoch"].as_str().unwrap().to_string();
    let r = app
        .post(
            "/api/v1/topics/custom.orders/events",
            &viewer,
            json!({"event": "order:created", "data": {}}),
        )
        .await;
    r.assert_problem(403, "forbidden");
    let r = app
        .post(
            "/api/v1/topics/_internal/events",
            &admin,
            json!({"event": "x", "data": {}}),
        )
        .await;
    r.assert_problem(422, "validation");
    let r = app
        .post(
            "/api/v1/topics/alerts/events",
            &admin,
            json!({"event": "bad name!", "data": {}}),
        )
        .await;
    r.assert_problem(422, "validation");
    app.post(
        "/api/v1/topics/custom.orders/events",
        &admin,
        json!({"event": "order:created", "data": {"id": 2}}),
    )
    .await;

    let r = app
        .get("/api/v1/topics/custom.orders/events?since=1", &viewer)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["offset"], 2);
    assert_eq!(r.body["epoch"], epoch.as_str());
    assert_eq!(r.body["complete"], true);
    let events = r.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "event");
    assert_eq!(events[0]["offset"], 2);
    assert_eq!(events[0]["data"]["id"], 2);
    let r = app
        .get("/api/v1/topics/custom.orders/events?limit=0", &viewer)
        .await;
    r.assert_problem(422, "validation");
    let r = app
        .call(
            reqwest::Method::GET,
            "/api/v1/topics/alerts/events",
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 401);

    let spec = app
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    let path = &spec.body["paths"]["/api/v1/topics/{topic}/events"];
    assert!(
        path["get"].is_object() && path["post"].is_object(),
        "{path}"
    );
}

both_modes!(
    three_ways_to_authenticate,
    silence_after_the_upgrade_times_out_with_4001,
    a_refreshed_token_extends_the_session_and_expiry_closes_4002,
    subscriptions_reply_replay_and_recover,
    replay_meets_live_without_gap_or_duplicate,
    durable_positions_resume_where_the_subject_acked,
    a_tenant_never_sees_another_tenants_events,
    roles_are_checked_per_topic,
    topics_over_http,
);
