//! The notification figures of docs/benchmarks/notify.md: three cluster replicas deliver
//! to a local webhook receiver. Ignored by default; run with
//! `cargo nextest run --release -E 'test(/notify::bench::/)' --run-ignored only --no-capture`.

use super::receiver::Receiver;
use super::webhook_channel;
use crate::common::{Backend, TestEnv};
use chrono::Utc;
use lookout::notify::outbox::{OutboxKind, Transition, enqueue_transition};
use lookout::notify::policy::NotifyPolicy;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Writes `count` transitions, `per_second` at most (0: as fast as possible), and returns
/// each alert's commit instant.
async fn write(
    store: &lookout::store::Store,
    count: usize,
    per_second: u32,
) -> HashMap<String, Instant> {
    let channels = vec!["hook".to_string()];
    let policy = NotifyPolicy::default();
    let mut committed = HashMap::new();
    let pace = (per_second > 0).then(|| Duration::from_secs(1) / per_second);
    let started = Instant::now();
    for i in 0..count {
        if let Some(pace) = pace {
            let due = started + pace * i as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let rule_id = Uuid::now_v7();
        let alert_id = Uuid::now_v7();
        let summary = super::alert(
            rule_id,
            alert_id,
            "critical",
            "firing",
            &[("queue", "gmail.com")],
        );
        let mut tx = store.begin().await.unwrap();
        super::write_alert_row(&mut tx, "default", &summary).await;
        enqueue_transition(
            &mut tx,
            &Transition {
                tenant: "default",
                alert_id,
                rule_id,
                kind: OutboxKind::Firing,
                channels: &channels,
                policy: &policy,
                throttle: None,
                alert: &summary,
                group_key: rule_id.to_string(),
                at: Utc::now(),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        committed.insert(alert_id.to_string(), Instant::now());
    }
    committed
}

async fn measure(
    receiver: &Receiver,
    committed: &HashMap<String, Instant>,
    skip: usize,
) -> (Vec<Duration>, Instant) {
    let got = receiver
        .wait_for(skip + committed.len(), Duration::from_secs(300))
        .await;
    let mut latencies = Vec::new();
    let mut last = None;
    for request in &got[skip..] {
        let body = request.json();
        let id = body["alerts"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(at) = committed.get(&id) {
            latencies.push(request.at.saturating_duration_since(*at));
            last = Some(last.map_or(request.at, |l: Instant| l.max(request.at)));
        }
    }
    latencies.sort();
    (latencies, last.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn three_replicas_to_a_webhook() {
    let count: usize = std::env::var("NOTIFY_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let env = TestEnv::new(Backend::Cluster).await;
    let receiver = Receiver::start().await;
    let apps = [
        env.spawn_with(|c| c.rules.engine_enabled = false).await,
        env.spawn_with(|c| c.rules.engine_enabled = false).await,
        env.spawn_with(|c| c.rules.engine_enabled = false).await,
    ];
    let admin = env.admin();
    webhook_channel(&apps[0], &admin, "hook", &receiver, serde_json::json!({})).await;
    let store = super::test_store(&apps[0]).await;

    // Latency: transitions at a steady 50/s; commit → receipt.
    let paced = write(&store, 500, 50).await;
    let (latencies, _) = measure(&receiver, &paced, 0).await;
    println!(
        "paced 50/s, 500 notifications: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );

    // Throughput: 8 writers commit as fast as they can; measured from
    // the first commit to the last receipt.
    let started = Instant::now();
    let writers = 8;
    let parts =
        futures_util::future::join_all((0..writers).map(|_| write(&store, count / writers, 0)))
            .await;
    let burst: HashMap<String, Instant> = parts.into_iter().flatten().collect();
    let count = burst.len();
    let written = started.elapsed();
    let (latencies, last) = measure(&receiver, &burst, 500).await;
    let elapsed = last.saturating_duration_since(started);
    println!(
        "burst of {count}: written in {written:?}, all received after {elapsed:?} = {:.0} notifications/s; latency p50 {:?}, p99 {:?}",
        count as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
}

/// Delivery capacity without the writers in the way: a backlog written while no worker
/// runs, then drained by three replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn three_replicas_drain_a_backlog() {
    let count: usize = std::env::var("NOTIFY_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let env = TestEnv::new(Backend::Cluster).await;
    let receiver = Receiver::start().await;
    let idle = env
        .spawn_with(|c| {
            c.notify.workers = false;
            c.rules.engine_enabled = false;
        })
        .await;
    let admin = env.admin();
    webhook_channel(&idle, &admin, "hook", &receiver, serde_json::json!({})).await;
    let store = super::test_store(&idle).await;
    let writers = 8;
    futures_util::future::join_all((0..writers).map(|_| write(&store, count / writers, 0))).await;
    let started = Instant::now();
    let _apps = [
        env.spawn_with(|c| c.rules.engine_enabled = false).await,
        env.spawn_with(|c| c.rules.engine_enabled = false).await,
        env.spawn_with(|c| c.rules.engine_enabled = false).await,
    ];
    let got = receiver
        .wait_for(count / writers * writers, Duration::from_secs(300))
        .await;
    let first = got.iter().map(|r| r.at).min().unwrap();
    let last = got.iter().map(|r| r.at).max().unwrap();
    let elapsed = last.saturating_duration_since(started);
    let sending = last.saturating_duration_since(first);
    println!(
        "backlog of {} drained by 3 replicas in {elapsed:?} with start-up = {:.0}/s; \
         first to last receipt {sending:?} = {:.0} notifications/s",
        got.len(),
        got.len() as f64 / elapsed.as_secs_f64(),
        got.len() as f64 / sending.as_secs_f64()
    );
}
