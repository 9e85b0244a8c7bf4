//! The Lease seam's conformance suite, on local leases (embedded mode) and Redis leases
//! (cluster mode). Leases here use a short TTL (2 s, renewed every 500 ms) so that
//! expiry tests are quick; the defaults (15 s / 5 s) only scale these times.

use crate::both_modes;
use crate::cluster_only;
use crate::common::{TestEnv, redis_url};
use lookout::cluster::{LeaseGuard, Leases, TryAcquire, run_under_lease};
use lookout::config::Mode;
use lookout::store::Store;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TTL: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(500);

/// Lease managers of two replicas over one backend.
async fn contenders(env: &TestEnv) -> (Leases, Leases) {
    let config = env.config();
    let store = Store::connect(&config.mode(), &config.database)
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    match config.mode() {
        Mode::Embedded { .. } => {
            let leases = Leases::local("replica-a");
            (leases.clone(), leases)
        }
        Mode::Cluster { .. } => {
            let client = redis::Client::open(redis_url()).unwrap();
            let make = |id: &str, conn| {
                Leases::redis(conn, store.clone(), &env.redis_prefix, id, TTL, RENEW)
            };
            let a = make(
                "replica-a",
                redis::aio::ConnectionManager::new(client.clone())
                    .await
                    .unwrap(),
            );
            let b = make(
                "replica-b",
                redis::aio::ConnectionManager::new(client.clone())
                    .await
                    .unwrap(),
            );
            (a, b)
        }
    }
}

async fn acquire(leases: &Leases, name: &str) -> LeaseGuard {
    match leases.try_acquire(name).await.expect("contend") {
        TryAcquire::Acquired(guard) => guard,
        TryAcquire::Held { holder, .. } => panic!("lease {name} is held by {holder}"),
    }
}

async fn acquire_within(leases: &Leases, name: &str, within: Duration) -> (LeaseGuard, Duration) {
    let started = Instant::now();
    loop {
        if let TryAcquire::Acquired(guard) = leases.try_acquire(name).await.expect("contend") {
            return (guard, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "lease {name} not acquired within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn only_one_contender_holds_a_lease(env: TestEnv) {
    let (a, b) = contenders(&env).await;
    let held = acquire(&a, "rules").await;
    assert!(held.is_held());
    for _ in 0..5 {
        assert!(matches!(
            b.try_acquire("rules").await.unwrap(),
            TryAcquire::Held { .. }
        ));
    }
    // Another name is independent.
    let other = acquire(&b, "sources").await;
    assert!(other.is_held());
}

async fn a_released_lease_passes_at_once_with_a_higher_token(env: TestEnv) {
    let (a, b) = contenders(&env).await;
    let first = acquire(&a, "rules").await;
    let first_token = first.token();
    first.release().await;
    let (second, took) = acquire_within(&b, "rules", Duration::from_secs(1)).await;
    assert!(
        second.token() > first_token,
        "fencing tokens grow: {} then {}",
        first_token,
        second.token()
    );
    assert!(took < Duration::from_secs(1));
}

async fn a_holder_that_stops_renewing_loses_the_lease_within_the_ttl(env: TestEnv) {
    let (a, b) = contenders(&env).await;
    let first = acquire(&a, "rules").await;
    let first_token = first.token();
    let stopped_at = Instant::now();
    // Dropped without release: renewals stop, as when the holder's task is aborted.
    drop(first);
    let (second, _) = acquire_within(&b, "rules", TTL + Duration::from_millis(500)).await;
    assert!(stopped_at.elapsed() <= TTL + Duration::from_millis(500));
    assert!(second.token() > first_token);
}

both_modes!(
    only_one_contender_holds_a_lease,
    a_released_lease_passes_at_once_with_a_higher_token,
    a_holder_that_stops_renewing_loses_the_lease_within_the_ttl,
);

/// A holder whose lease is taken over (here: the key replaced, as after an expiry during
/// a network partition) learns it at its next renewal.
async fn a_holder_learns_at_once_that_it_lost_the_lease(env: TestEnv) {
    let (a, _) = contenders(&env).await;
    let held = acquire(&a, "rules").await;
    let lost = held.lost();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{}lease:rules", env.redis_prefix))
        .arg("replica-z|999")
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::timeout(RENEW + Duration::from_secs(1), lost.cancelled())
        .await
        .expect("lost fires at the next renewal");
    assert!(!held.is_held());
}

/// When Redis stops answering, the holder gives the lease up before it can expire and
/// pass to another replica.
async fn a_holder_that_cannot_renew_stops_before_the_lease_can_pass(env: TestEnv) {
    let mut server = crate::support::redis_server::RedisServer::start().await;
    let config = env.config();
    let store = Store::connect(&config.mode(), &config.database)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let leases = Leases::redis(conn, store, "p:", "replica-a", TTL, RENEW);
    let held = acquire(&leases, "rules").await;
    let acquired_at = Instant::now();
    server.stop();
    let lost = held.lost();
    tokio::time::timeout(TTL, lost.cancelled())
        .await
        .expect("gives up within the TTL");
    assert!(
        acquired_at.elapsed() < TTL,
        "gave up before the key could expire"
    );
}

/// Fencing tokens stay monotonic when Redis loses every key.
async fn fencing_tokens_survive_a_redis_wipe(env: TestEnv) {
    let (a, b) = contenders(&env).await;
    let first = acquire(&a, "sources").await;
    let token = first.token();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{}lease:sources", env.redis_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    let (second, _) = acquire_within(&b, "sources", Duration::from_secs(1)).await;
    assert!(second.token() > token);
}

cluster_only!(
    a_holder_learns_at_once_that_it_lost_the_lease,
    a_holder_that_cannot_renew_stops_before_the_lease_can_pass,
    fencing_tokens_survive_a_redis_wipe,
);

/// Two replicas run the same singleton work: never both at once, and when the worker's
/// task is aborted the other takes over within the TTL.
async fn singleton_work_runs_on_one_replica_and_fails_over(env: TestEnv) {
    let (a, b) = contenders(&env).await;
    let running = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let starts: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let shutdown = CancellationToken::new();

    /// Counts a running worker for as long as it lives, also when it is aborted.
    struct Running(Arc<AtomicUsize>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    let spawn_runner = |leases: Leases, id: &'static str| {
        let (running, overlaps, starts) = (running.clone(), overlaps.clone(), starts.clone());
        tokio::spawn(run_under_lease(
            leases,
            "sources",
            shutdown.clone(),
            move |lease| {
                let (running, overlaps, starts) =
                    (running.clone(), overlaps.clone(), starts.clone());
                async move {
                    starts.lock().unwrap().push(id);
                    if running.fetch_add(1, Ordering::SeqCst) > 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    let _running = Running(running);
                    lease.stop.cancelled().await;
                }
            },
        ))
    };
    let mut runners = vec![("a", spawn_runner(a, "a")), ("b", spawn_runner(b, "b"))];
    let started = |n: usize| {
        let starts = starts.clone();
        async move { (starts.lock().unwrap().len() >= n).then_some(()) }
    };
    crate::common::eventually(Duration::from_secs(5), "a runner to start", || started(1)).await;
    tokio::time::sleep(RENEW * 3).await;
    assert_eq!(
        starts.lock().unwrap().len(),
        1,
        "only one runner works while it holds the lease"
    );

    let holder = starts.lock().unwrap()[0];
    let index = runners.iter().position(|(id, _)| *id == holder).unwrap();
    let (_, task) = runners.remove(index);
    task.abort();
    let aborted_at = Instant::now();
    crate::common::eventually(
        TTL + Duration::from_secs(2),
        "the other runner to take over",
        || started(2),
    )
    .await;
    assert!(
        aborted_at.elapsed() <= TTL + Duration::from_secs(1),
        "took over within the TTL"
    );
    assert_ne!(
        starts.lock().unwrap()[1],
        holder,
        "the other replica took over"
    );
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "never two at once");
    shutdown.cancel();
}

both_modes!(singleton_work_runs_on_one_replica_and_fails_over);
