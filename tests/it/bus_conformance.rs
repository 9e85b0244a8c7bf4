//! The Bus seam's conformance suite: every test runs on the memory bus (embedded mode)
//! and on the Redis bus (cluster mode). "Two replicas" are two handles: the same memory
//! bus, or two Redis buses with their own connections on one prefix.

use crate::both_modes;
use crate::common::{Backend, TestEnv, redis_url};
use crate::support::redis_server::RedisServer;
use lookout::bus::memory::MemoryBus;
use lookout::bus::redis::RedisBus;
use lookout::bus::{Bus, BusMessage, Position, TopicPattern};
use lookout::config::BusConfig;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

struct Buses {
    a: Bus,
    b: Bus,
    _stop: tokio_util::sync::DropGuard,
}

async fn redis_bus(url: &str, prefix: &str, history_len: usize, stop: CancellationToken) -> Bus {
    let config = BusConfig {
        history_len,
        history_retention: RETENTION,
        ..BusConfig::default()
    };
    redis_bus_with(url, prefix, &config, stop).await
}

async fn redis_bus_with(
    url: &str,
    prefix: &str,
    config: &BusConfig,
    stop: CancellationToken,
) -> Bus {
    let client = redis::Client::open(url).expect("redis url");
    let connection = redis::aio::ConnectionManager::new(client.clone())
        .await
        .expect("redis");
    Bus::Redis(
        RedisBus::connect(client, connection, prefix, config, stop)
            .await
            .expect("redis bus"),
    )
}

/// Two replicas' buses over one backend.
async fn buses(env: &TestEnv, history_len: usize) -> Buses {
    let stop = CancellationToken::new();
    let (a, b) = match env.backend {
        Backend::Embedded => {
            let bus = Bus::Memory(Arc::new(MemoryBus::new(history_len, RETENTION)));
            (bus.clone(), bus)
        }
        Backend::Cluster => (
            redis_bus(&redis_url(), &env.redis_prefix, history_len, stop.clone()).await,
            redis_bus(&redis_url(), &env.redis_prefix, history_len, stop.clone()).await,
        ),
    };
    Buses {
        a,
        b,
        _stop: stop.drop_guard(),
    }
}

async fn next_event(sub: &mut lookout::bus::Subscription) -> Arc<lookout::bus::BusEvent> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            Ok(Some(BusMessage::Event(e))) => return e,
            Ok(Some(BusMessage::Resync)) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

async fn next_event_of(
    receiver: &mut tokio::sync::broadcast::Receiver<BusMessage>,
) -> Arc<lookout::bus::BusEvent> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), receiver.recv()).await {
            Ok(Ok(BusMessage::Event(e))) => return e,
            Ok(Ok(BusMessage::Resync)) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

async fn offsets_are_consecutive_per_topic_and_tenant(env: TestEnv) {
    let buses = buses(&env, 100).await;
    let first = buses
        .a
        .publish_json("t1", "alerts", "alert:triggered", &json!({"n": 1}))
        .await
        .unwrap();
    let second = buses
        .b
        .publish_json("t1", "alerts", "alert:triggered", &json!({"n": 2}))
        .await
        .unwrap();
    let other_topic = buses
        .a
        .publish_json("t1", "queues", "queue:update", &json!({}))
        .await
        .unwrap();
    let other_tenant = buses
        .a
        .publish_json("t2", "alerts", "alert:triggered", &json!({}))
        .await
        .unwrap();
    assert_eq!((first.offset, second.offset), (1, 2));
    assert_eq!(first.epoch, second.epoch, "one history, one epoch");
    assert_eq!(other_topic.offset, 1, "each topic has its own sequence");
    assert_eq!(other_tenant.offset, 1, "each tenant has its own sequence");
    let head = buses.b.head("t1", "alerts").await.unwrap();
    assert_eq!(
        head,
        Position {
            offset: 2,
            epoch: first.epoch.clone()
        }
    );
}

async fn an_event_published_on_one_replica_reaches_a_subscriber_on_another(env: TestEnv) {
    let buses = buses(&env, 100).await;
    let mut sub = buses
        .b
        .subscribe("acme", TopicPattern::parse("queues:*").unwrap());
    buses
        .a
        .publish_json("acme", "alerts", "alert:triggered", &json!({}))
        .await
        .unwrap();
    buses
        .a
        .publish_json("other", "queues:x", "queue:update", &json!({}))
        .await
        .unwrap();
    let published = buses
        .a
        .publish_json(
            "acme",
            "queues:gmail.com",
            "queue:update",
            &json!({"size": 3}),
        )
        .await
        .unwrap();
    let event = next_event(&mut sub).await;
    assert_eq!(event.tenant, "acme");
    assert_eq!(
        event.topic, "queues:gmail.com",
        "other topics and tenants are filtered out"
    );
    assert_eq!(event.offset, published.offset);
    assert_eq!(event.epoch, published.epoch);
    assert_eq!(event.event, "queue:update");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(event.data.get()).unwrap(),
        json!({"size": 3})
    );
}

async fn receivers_see_a_topics_events_in_offset_order(env: TestEnv) {
    let buses = buses(&env, 1000).await;
    let mut sub = buses.b.subscribe("acme", TopicPattern::exact("metrics"));
    let publisher = buses.a.clone();
    let publishing = tokio::spawn(async move {
        for i in 0..200 {
            publisher
                .publish_json("acme", "metrics", "metrics:update", &json!({ "i": i }))
                .await
                .unwrap();
        }
    });
    for expected in 1..=200u64 {
        assert_eq!(next_event(&mut sub).await.offset, expected);
    }
    publishing.await.unwrap();
}

async fn history_since_an_offset_returns_exactly_the_missing_events(env: TestEnv) {
    let buses = buses(&env, 1000).await;
    for i in 1..=10 {
        buses
            .a
            .publish_json("acme", "alerts", "alert:updated", &json!({ "i": i }))
            .await
            .unwrap();
    }
    let history = buses.b.history("acme", "alerts", 6, 100).await.unwrap();
    assert!(history.complete);
    assert_eq!(history.head.offset, 10);
    let offsets: Vec<u64> = history.events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![7, 8, 9, 10]);
    let data: Vec<serde_json::Value> = history
        .events
        .iter()
        .map(|e| serde_json::from_str(e.data.get()).unwrap())
        .collect();
    assert_eq!(data[0], json!({"i": 7}));

    let limited = buses.b.history("acme", "alerts", 0, 3).await.unwrap();
    assert_eq!(
        limited.events.iter().map(|e| e.offset).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        limited.complete,
        "a limit does not make the start incomplete"
    );

    let up_to_date = buses.b.history("acme", "alerts", 10, 100).await.unwrap();
    assert!(up_to_date.events.is_empty() && up_to_date.complete);

    let ahead = buses.b.history("acme", "alerts", 50, 100).await.unwrap();
    assert!(
        !ahead.complete,
        "an offset beyond the head is not from this history"
    );
}

async fn history_that_no_longer_reaches_back_is_incomplete(env: TestEnv) {
    // Redis trims approximately (MAXLEN ~), so publish well past the limit.
    let buses = buses(&env, 5).await;
    for _ in 0..300 {
        buses
            .a
            .publish_json("acme", "alerts", "alert:updated", &json!({}))
            .await
            .unwrap();
    }
    let history = buses.b.history("acme", "alerts", 1, 1000).await.unwrap();
    assert!(!history.complete, "offset 2 was trimmed away");
    assert!(history.events.len() >= 5 && history.events.len() < 299);
    assert_eq!(history.events.last().unwrap().offset, 300);
    let recent = buses.b.history("acme", "alerts", 297, 1000).await.unwrap();
    assert!(recent.complete);
}

async fn positions_are_stored_per_subject_and_topic(env: TestEnv) {
    let buses = buses(&env, 10).await;
    assert_eq!(
        buses
            .a
            .load_position("acme", "alice", "alerts")
            .await
            .unwrap(),
        None
    );
    let position = Position {
        offset: 42,
        epoch: "e1".into(),
    };
    buses
        .a
        .store_position("acme", "alice", "alerts", &position)
        .await
        .unwrap();
    assert_eq!(
        buses
            .b
            .load_position("acme", "alice", "alerts")
            .await
            .unwrap(),
        Some(position)
    );
    assert_eq!(
        buses
            .b
            .load_position("acme", "bob", "alerts")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        buses
            .b
            .load_position("other", "alice", "alerts")
            .await
            .unwrap(),
        None
    );
}

async fn bad_names_are_refused(env: TestEnv) {
    let buses = buses(&env, 10).await;
    assert!(
        buses
            .a
            .publish_json("acme", "Bad Topic", "e", &json!({}))
            .await
            .is_err()
    );
    assert!(
        buses
            .a
            .publish_json("acme", "alerts", "bad\nevent", &json!({}))
            .await
            .is_err()
    );
}

both_modes!(
    offsets_are_consecutive_per_topic_and_tenant,
    an_event_published_on_one_replica_reaches_a_subscriber_on_another,
    receivers_see_a_topics_events_in_offset_order,
    history_since_an_offset_returns_exactly_the_missing_events,
    history_that_no_longer_reaches_back_is_incomplete,
    positions_are_stored_per_subject_and_topic,
    bad_names_are_refused,
);

/// The subscriber's keep-alive pings must not cost it its subscription: each lost
/// subscription means a `Resync` (history reads on every replica) and events that wait
/// for it. Redis answers PING on a subscribed connection with `["pong", ""]`, which once
/// failed to parse and dropped the subscription at every ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_keeps_its_subscription_across_pings() {
    let env = TestEnv::new(Backend::Cluster).await;
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let config = BusConfig {
        subscriber_ping_interval: Duration::from_millis(50),
        ..BusConfig::default()
    };
    let bus = redis_bus_with(&redis_url(), &env.redis_prefix, &config, stop.clone()).await;
    let mut receiver = bus.receiver();
    // The first subscription says `Resync` once; a first event comes after it.
    bus.publish_json("acme", "alerts", "alert:triggered", &json!({}))
        .await
        .unwrap();
    assert_eq!(next_event_of(&mut receiver).await.offset, 1);
    // Let ten pings go by, publishing meanwhile: nothing but the events may arrive.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(550);
    let mut published = 1u64;
    while tokio::time::Instant::now() < deadline {
        bus.publish_json("acme", "alerts", "alert:triggered", &json!({}))
            .await
            .unwrap();
        published += 1;
        match tokio::time::timeout(Duration::from_secs(5), receiver.recv()).await {
            Ok(Ok(BusMessage::Event(event))) => assert_eq!(event.offset, published),
            other => panic!("expected event {published}, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(bus.is_receiving(), "the subscription is still up");
    assert!(
        receiver.try_recv().is_err(),
        "no resync or stray message after the pings"
    );
}

/// Redis restarts empty: the subscriber reconnects by itself and says `Resync`, offsets
/// start again under a new epoch, and an offset from the old epoch is not recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_renews_the_epoch_and_the_subscriber_comes_back() {
    let mut server = RedisServer::start().await;
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let a = redis_bus(&server.url(), "t:", 100, stop.clone()).await;
    let b = redis_bus(&server.url(), "t:", 100, stop.clone()).await;
    let mut sub = b.subscribe("acme", TopicPattern::exact("alerts"));
    let before = a
        .publish_json("acme", "alerts", "alert:triggered", &json!({}))
        .await
        .unwrap();
    a.publish_json("acme", "alerts", "alert:triggered", &json!({}))
        .await
        .unwrap();
    assert_eq!(next_event(&mut sub).await.offset, 1);
    assert_eq!(next_event(&mut sub).await.offset, 2);

    server.restart().await;

    // Publishing works again once the command connection has reconnected.
    let after = loop {
        match a
            .publish_json("acme", "alerts", "alert:triggered", &json!({}))
            .await
        {
            Ok(published) => break published,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(
        after.offset, 1,
        "the history was lost, so offsets start again"
    );
    assert_ne!(after.epoch, before.epoch, "a lost history gets a new epoch");
    let old = b.history("acme", "alerts", 2, 100).await.unwrap();
    assert_ne!(old.head.epoch, before.epoch);

    // The subscriber reports the reconnect, then receives new events live.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut resynced = false;
    loop {
        let published = a
            .publish_json("acme", "alerts", "alert:triggered", &json!({}))
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            Ok(Some(BusMessage::Resync)) => resynced = true,
            Ok(Some(BusMessage::Event(e))) if e.epoch == published.epoch => {
                assert!(resynced, "a Resync precedes events after a reconnect");
                break;
            }
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriber did not come back"
        );
    }
}
