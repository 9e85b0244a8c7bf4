//! Export of a large range streams: the memory of the process stays bounded while a
//! million samples go through.

use super::{metric, post_batch, tokens};
use crate::cluster_only;
use crate::common::TestEnv;
use chrono::Utc;
use futures_util::StreamExt;
use serde_json::json;

/// Resident memory of this process (the replica runs inside it).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

const ROWS: i64 = 1_000_000;

async fn a_million_samples_export_with_bounded_memory(env: TestEnv) {
    let app = env.spawn().await;
    let t = tokens(&env, "acme");
    let now = Utc::now();
    // Long labels make every exported row ~170 bytes: the whole export is ~170 MB, far
    // above what the bound below allows if the server held the range.
    let labels = [
        ("host", "export-test-host-000001.mail.example.com"),
        ("region", "eu-west-1"),
        ("service", "kumomta-delivery"),
    ];
    let created = post_batch(
        &app,
        &t.agent,
        json!({"metrics": [metric("delivered_total", &labels, 0.0, now.timestamp_millis())]}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text);

    // A million samples one millisecond apart, loaded in SQL (the HTTP path is
    // tested elsewhere; this test is about the read side).
    let start = now - chrono::Duration::minutes(20);
    let end = start + chrono::Duration::milliseconds(ROWS);
    {
        let mut tx = app.state.store.begin().await.unwrap();
        app.state
            .ingest
            .partitions()
            .ensure(&mut tx, [start.date_naive(), end.date_naive()])
            .await
            .unwrap();
        let lookout::store::Db::Postgres(conn) = tx.db() else {
            unreachable!("cluster mode")
        };
        sqlx::query(
            "INSERT INTO samples (series_id, ts, value)
             SELECT (SELECT id FROM series WHERE name = 'delivered_total'),
                    $1::timestamptz + i * interval '1 millisecond', i
             FROM generate_series(0, $2 - 1) AS i",
        )
        .bind(start)
        .bind(ROWS)
        .execute(&mut *conn)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    let baseline = rss_bytes();
    let response = app
        .request(
            reqwest::Method::GET,
            &format!(
                "/api/v1/metrics/export?format=json&name=delivered_total&from={}&to={}",
                start.timestamp_millis(),
                end.timestamp_millis()
            ),
            Some(&t.viewer),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let (mut bytes, mut braces, mut peak) = (0usize, 0usize, baseline);
    let mut last = Vec::new();
    let mut chunks = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("body chunk");
        bytes += chunk.len();
        braces += chunk.iter().filter(|&&b| b == b'}').count();
        chunks += 1;
        if chunks.is_multiple_of(64) {
            peak = peak.max(rss_bytes());
        }
        last = chunk.to_vec();
    }
    peak = peak.max(rss_bytes());
    // Each row closes its labels and itself.
    assert_eq!(braces / 2, ROWS as usize, "every row exported once");
    assert!(last.ends_with(b"]\n"), "the array is closed");
    assert!(bytes > 150_000_000, "export is {bytes} bytes");
    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < 64 * 1024 * 1024,
        "memory grew by {} MiB while streaming {} MiB",
        growth / 1048576,
        bytes / 1048576
    );
}

cluster_only!(a_million_samples_export_with_bounded_memory);
