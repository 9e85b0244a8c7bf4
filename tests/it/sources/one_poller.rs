//! One poller per cluster: with three replicas the kumod stand-in sees one poller, one poll
//! per interval; when that replica is killed another takes over, and no interval is
//! polled twice.

use super::create_source;
use crate::cluster_only;
use crate::common::{TestApp, TestEnv, eventually};
use crate::support::kumod::Kumod;
use lookout::auth::Role;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(1000);

/// A short lease, so that a killed holder's lease expires quickly.
fn fast_lease(config: &mut lookout::config::Config) {
    config.cluster.lease_ttl = Duration::from_secs(3);
    config.cluster.lease_renew_interval = Duration::from_millis(500);
    config.cluster.heartbeat_interval = Duration::from_millis(500);
    config.sources.reload_interval = Duration::from_millis(200);
}

/// The /metrics polls so far: (time, replica).
fn polls(kumod: &Kumod) -> Vec<(Instant, String)> {
    kumod
        .requests_to("/metrics")
        .into_iter()
        .map(|r| (r.at, r.replica.unwrap_or_default()))
        .collect()
}

/// No two polls fall in one interval: the poller polls a slot at most half an interval
/// late, so consecutive polls of distinct slots are at least about half an interval apart.
#[track_caller]
fn assert_one_poll_per_interval(polls: &[(Instant, String)]) {
    for pair in polls.windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0);
        assert!(
            gap >= INTERVAL.mul_f64(0.4),
            "two polls {gap:?} apart (by {} then {}): an interval polled twice",
            pair[0].1,
            pair[1].1
        );
    }
}

async fn three_replicas_poll_once_per_interval_and_hand_over_when_killed(env: TestEnv) {
    let kumod = Kumod::start().await;
    let mut replicas: Vec<TestApp> = Vec::new();
    for _ in 0..3 {
        replicas.push(env.spawn_with(fast_lease).await);
    }
    let admin = env.admin();
    create_source(
        &replicas[0],
        &admin,
        json!({"name": "node", "kind": "kumomta", "url": kumod.url(), "interval_ms": INTERVAL.as_millis() as u64}),
    )
    .await;

    let before_kill = eventually(Duration::from_secs(20), "six polls", || async {
        let polls = polls(&kumod);
        (polls.len() >= 6).then_some(polls)
    })
    .await;
    let pollers: BTreeSet<&str> = before_kill.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(pollers.len(), 1, "one poller: {pollers:?}");
    assert_one_poll_per_interval(&before_kill);
    let poller = pollers.into_iter().next().expect("poller").to_string();

    // /api/v1/cluster says who polls.
    let viewer = env.token(Role::Viewer, "default", "v");
    let cluster = replicas[1].get("/api/v1/cluster", &viewer).await;
    let sources_lease = cluster.body["leases"]
        .as_array()
        .expect("leases")
        .iter()
        .find(|l| l["name"] == "sources")
        .expect("sources lease")
        .clone();
    assert_eq!(sources_lease["holder"], poller.as_str());

    // Kill the poller like kill -9: its lease is not released, it just stops renewing.
    let position = replicas
        .iter()
        .position(|r| r.replica_id() == poller)
        .expect("the poller is one of ours");
    let killed_at = Instant::now();
    replicas.remove(position).kill();

    let taken_over = eventually(
        Duration::from_secs(15),
        "another replica to poll",
        || async {
            polls(&kumod)
                .into_iter()
                .find(|(at, replica)| *at > killed_at && *replica != poller)
        },
    )
    .await;
    assert!(taken_over.0.duration_since(killed_at) < Duration::from_secs(15));
    let successor = taken_over.1.clone();
    assert!(replicas.iter().any(|r| r.replica_id() == successor));

    // A few more intervals: still one poller, and over the whole run no interval twice.
    eventually(
        Duration::from_secs(10),
        "three polls by the successor",
        || async {
            (polls(&kumod)
                .iter()
                .filter(|(_, r)| *r == successor)
                .count()
                >= 3)
                .then_some(())
        },
    )
    .await;
    let all = polls(&kumod);
    let after: BTreeSet<&str> = all
        .iter()
        .filter(|(at, _)| *at > taken_over.0)
        .map(|(_, r)| r.as_str())
        .collect();
    assert_eq!(after, BTreeSet::from([successor.as_str()]));
    assert_one_poll_per_interval(&all);
}

cluster_only!(three_replicas_poll_once_per_interval_and_hand_over_when_killed);
