//! The sample storage core in both modes: batches validated sample by sample, stored
//! once per batch id, read back by name and window.

use crate::both_modes;
use crate::common::TestEnv;
use chrono::{Duration, Utc};
use lookout::ingest::SampleIn;
use lookout::series::Labels;
use lookout::store::samples::read_range;

fn sample(name: &str, labels: &[(&str, &str)], value: f64, ts_ms: i64) -> SampleIn {
    SampleIn {
        name: name.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Labels>(),
        value,
        timestamp_ms: Some(ts_ms),
    }
}

async fn batches_are_validated_stored_once_and_read_back(env: TestEnv) {
    let app = env.spawn().await;
    let ingest = &app.state.ingest;
    let now = Utc::now();
    let t = now.timestamp_millis();
    let yesterday = (now - Duration::days(1)).timestamp_millis();
    let batch = vec![
        sample("queue_size", &[("queue", "a")], 1.0, yesterday),
        sample("queue_size", &[("queue", "a")], 2.0, t - 1000),
        sample("bad.name", &[], 1.0, t),
        sample("queue_size", &[("queue", "b")], f64::NAN, t),
        sample("queue_size", &[("queue", "b")], 5.0, t + 3_600_000),
        sample("queue_size", &[("queue", "b")], 7.0, t),
        sample("queue_size", &[("__reserved", "x")], 1.0, t),
    ];
    let outcome = ingest
        .write("acme", Some("b-1"), batch.clone(), Vec::new(), now)
        .await
        .unwrap();
    assert_eq!(outcome.accepted, 3);
    assert!(!outcome.duplicate);
    let rejected: Vec<usize> = outcome.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, vec![2, 3, 4, 6]);
    assert!(outcome.rejected[0].reason.contains("invalid metric name"));
    assert!(outcome.rejected[1].reason.contains("finite"));
    assert!(outcome.rejected[2].reason.contains("future"));

    let again = ingest
        .write("acme", Some("b-1"), batch, Vec::new(), now)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.accepted, 3);
    assert_eq!(again.rejected, outcome.rejected);

    let series = read_range(
        &app.state.store,
        "acme",
        &["queue_size".to_string()],
        now - Duration::days(2),
        now,
    )
    .await
    .unwrap();
    assert_eq!(series.len(), 2);
    let a = series.iter().find(|s| s.labels["queue"] == "a").unwrap();
    assert_eq!(
        a.samples,
        vec![(yesterday, 1.0), (t - 1000, 2.0)],
        "stored once, in time order, across days"
    );
    let b = series.iter().find(|s| s.labels["queue"] == "b").unwrap();
    assert_eq!(b.samples, vec![(t, 7.0)]);

    // Windows are (from, to]; other tenants see nothing.
    let recent = read_range(
        &app.state.store,
        "acme",
        &["queue_size".to_string()],
        now - Duration::hours(1),
        now,
    )
    .await
    .unwrap();
    assert_eq!(recent.iter().map(|s| s.samples.len()).sum::<usize>(), 2);
    let other = read_range(
        &app.state.store,
        "other",
        &["queue_size".to_string()],
        now - Duration::days(2),
        now,
    )
    .await
    .unwrap();
    assert!(other.is_empty());
}

async fn oversized_batches_are_refused_whole(env: TestEnv) {
    let app = env.spawn().await;
    let t = Utc::now().timestamp_millis();
    let batch: Vec<SampleIn> = (0..10_001).map(|i| sample("x", &[], i as f64, t)).collect();
    let err = app
        .state
        .ingest
        .write("acme", None, batch, Vec::new(), Utc::now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 10000"), "{err}");
}

both_modes!(
    batches_are_validated_stored_once_and_read_back,
    oversized_batches_are_refused_whole,
    samples_resent_without_a_batch_id_are_stored_once
);

/// PostgreSQL writes samples with COPY and falls back to an insert that skips duplicates
/// when a sample is already stored: a resend without a batch id keeps the first values
/// and stores what is new.
async fn samples_resent_without_a_batch_id_are_stored_once(env: TestEnv) {
    let app = env.spawn().await;
    let ingest = &app.state.ingest;
    let now = Utc::now();
    let t = now.timestamp_millis();
    let first = vec![
        sample("depth", &[("queue", "a")], 1.0, t - 2000),
        sample("depth", &[("queue", "a")], 2.0, t - 1000),
    ];
    assert_eq!(
        ingest
            .write("acme", None, first, Vec::new(), now)
            .await
            .unwrap()
            .accepted,
        2
    );
    let resent = vec![
        sample("depth", &[("queue", "a")], 9.0, t - 1000),
        sample("depth", &[("queue", "a")], 3.0, t),
    ];
    let outcome = ingest
        .write("acme", None, resent, Vec::new(), now)
        .await
        .unwrap();
    assert!(outcome.rejected.is_empty(), "{outcome:?}");
    let series = read_range(
        &app.state.store,
        "acme",
        &["depth".to_string()],
        now - Duration::hours(1),
        now,
    )
    .await
    .unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(
        series[0].samples,
        vec![(t - 2000, 1.0), (t - 1000, 2.0), (t, 3.0)],
        "the first value of a resent sample is kept, the new one stored"
    );
}
