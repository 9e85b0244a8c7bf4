//! Several replicas on one PostgreSQL and Redis: events cross replicas, clients move
//! between them, quotas are counted across them, and Redis may restart.

use super::client::{Auth, Ws};
use super::{next_event, publish};
use crate::cluster_only;
use crate::common::{TestEnv, eventually};
use crate::support::redis_server::RedisServer;
use lookout::auth::Role;
use lookout::config::Secret;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

async fn an_event_published_through_c_reaches_a_and_b(env: TestEnv) {
    let a = env.spawn().await;
    let b = env.spawn().await;
    let c = env.spawn().await;
    let token = env.token(Role::Viewer, "acme", "alice");
    let (mut on_a, hello) = Ws::open(&a, &token).await;
    assert_eq!(hello["payload"]["server"], a.replica_id());
    let (mut on_b, _) = Ws::open(&b, &token).await;
    on_a.subscribe(&["alerts"], json!({})).await;
    on_b.subscribe(&["alerts:*", "alerts"], json!({})).await;
    let offset = publish(&c, &env, "acme", "alerts", json!({"from": "c"})).await;
    for ws in [&mut on_a, &mut on_b] {
        let event = next_event(ws).await;
        assert_eq!(event["offset"], offset);
        assert_eq!(event["data"]["from"], "c");
    }
}

/// A client whose replica dies resumes on another with `since`; across 10 000 events
/// published without pause it ends with every offset exactly once.
async fn a_client_of_a_killed_replica_resumes_elsewhere_with_every_offset_once(env: TestEnv) {
    const EVENTS: u64 = 10_000;
    let a = env.spawn_with(|c| c.bus.history_len = 20_000).await;
    let b = env.spawn_with(|c| c.bus.history_len = 20_000).await;
    let c = env.spawn_with(|c| c.bus.history_len = 20_000).await;
    let token = env.token(Role::Viewer, "acme", "alice");
    let (mut ws, _) = Ws::open(&a, &token).await;
    let reply = ws.subscribe(&["metrics"], json!({})).await;
    let epoch = reply[0]["payload"]["epoch"].as_str().unwrap().to_string();

    let bus = c.state.bus.clone();
    let publisher = tokio::spawn(async move {
        for i in 1..=EVENTS {
            bus.publish_json("acme", "metrics", "metrics:update", &json!({"i": i}))
                .await
                .expect("publish");
        }
    });
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    let mut last = 0;
    while last < 2_000 {
        let event = next_event(&mut ws).await;
        last = event["offset"].as_u64().unwrap();
        *counts.entry(last).or_default() += 1;
    }
    a.kill();
    // Whatever was still in flight from A is lost with it; resume on B from `last`.
    drop(ws);
    let (mut ws, _) = Ws::open(&b, &token).await;
    let reply = ws
        .subscribe(
            &["metrics"],
            json!({"since": {"metrics": {"offset": last, "epoch": epoch}}}),
        )
        .await;
    assert_eq!(reply[0]["payload"]["recovered"], true, "{}", reply[0]);
    while last < EVENTS {
        let event = next_event(&mut ws).await;
        last = event["offset"].as_u64().unwrap();
        *counts.entry(last).or_default() += 1;
    }
    publisher.await.unwrap();
    let missing: Vec<u64> = (1..=EVENTS).filter(|o| !counts.contains_key(o)).collect();
    let doubled: Vec<u64> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(o, _)| *o)
        .collect();
    assert!(missing.is_empty(), "missing offsets: {missing:?}");
    assert!(doubled.is_empty(), "offsets received twice: {doubled:?}");
}

async fn connection_quotas_count_across_replicas(env: TestEnv) {
    let limit = |c: &mut lookout::config::Config| c.realtime.max_connections_per_subject = 2;
    let a = env.spawn_with(limit).await;
    let b = env.spawn_with(limit).await;
    let c = env.spawn_with(limit).await;
    let token = env.token(Role::Viewer, "acme", "alice");
    let (on_a, _) = Ws::open(&a, &token).await;
    let (_on_b, _) = Ws::open(&b, &token).await;
    let mut refused = Ws::try_connect(&c, Auth::Header(&token), None)
        .await
        .unwrap();
    assert_eq!(
        refused.expect_close().await,
        (4006, "quota_exceeded".into())
    );
    drop(on_a);
    eventually(Duration::from_secs(10), "the freed place on C", || async {
        let mut ws = Ws::try_connect(&c, Auth::Header(&token), None).await.ok()?;
        (ws.next().await["type"] == "auth_success").then_some(())
    })
    .await;
}

/// After Redis restarts (empty), a connected client gets every event the new history
/// holds, including those published while its replica was resubscribing.
async fn after_redis_restarts_a_connected_client_misses_nothing(env: TestEnv) {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let a = env
        .spawn_with(|c| c.redis.url = Some(Secret::new(url.clone())))
        .await;
    let b = env
        .spawn_with(|c| c.redis.url = Some(Secret::new(url.clone())))
        .await;
    let token = env.token(Role::Viewer, "acme", "alice");
    let (mut ws, _) = Ws::open(&a, &token).await;
    let reply = ws.subscribe(&["alerts"], json!({})).await;
    let first_epoch = reply[0]["payload"]["epoch"].as_str().unwrap().to_string();
    for i in 1..=3 {
        publish(&b, &env, "acme", "alerts", json!({"i": i})).await;
    }
    for offset in 1..=3 {
        assert_eq!(next_event(&mut ws).await["offset"], offset);
    }

    redis.restart().await;
    // Published through B as soon as Redis takes commands again, while A may still be
    // resubscribing: A must fill the gap from the (new) history.
    let bus = b.state.bus.clone();
    for i in 1..=20 {
        eventually(
            Duration::from_secs(15),
            "a publish after the restart",
            || {
                let bus = bus.clone();
                async move {
                    bus.publish_json("acme", "alerts", "test:event", &json!({"after": i}))
                        .await
                        .ok()
                }
            },
        )
        .await;
    }
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let event = next_event(&mut ws).await;
        assert_ne!(event["epoch"], first_epoch.as_str(), "a new history");
        seen.push(event["data"]["after"].as_u64().unwrap());
    }
    assert_eq!(seen, (1..=20).collect::<Vec<_>>());
}

cluster_only!(
    an_event_published_through_c_reaches_a_and_b,
    a_client_of_a_killed_replica_resumes_elsewhere_with_every_offset_once,
    connection_quotas_count_across_replicas,
    after_redis_restarts_a_connected_client_misses_nothing,
);
