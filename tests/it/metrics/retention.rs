//! Retention drops old samples (PostgreSQL: their day partitions) and forgotten series.

use super::{metric, post_batch, tokens};
use crate::both_modes;
use crate::common::{Backend, TestEnv};
use chrono::{Duration, Utc};
use lookout::ingest::SampleIn;
use serde_json::json;

async fn retention_drops_old_data(env: TestEnv) {
    let app = env.spawn().await;
    let t = tokens(&env, "acme");
    let now = Utc::now();
    // Written as if 40 days ago (validation is relative to the write's clock).
    let then = now - Duration::days(40);
    let old = app
        .state
        .ingest
        .write(
            "acme",
            Some("old-batch"),
            vec![SampleIn {
                name: "old_metric".into(),
                labels: Default::default(),
                value: 1.0,
                timestamp_ms: Some(then.timestamp_millis()),
            }],
            Vec::new(),
            then,
        )
        .await
        .unwrap();
    assert_eq!(old.accepted, 1);
    let recent = post_batch(
        &app,
        &t.agent,
        json!({"metrics": [metric("new_metric", &[], 2.0, now.timestamp_millis())]}),
    )
    .await;
    assert_eq!(recent.status, 200);
    let range = format!(
        "from={}&to={}",
        (then - Duration::days(1)).timestamp_millis(),
        (now + Duration::minutes(1)).timestamp_millis()
    );
    // The replica's own maintenance round may already have removed it (it runs at
    // start-up under the lease); this round must leave it removed either way.
    lookout::maintenance::run_once(&app.state).await.unwrap();

    let after = app
        .get(
            &format!("/api/v1/metrics?name=old_metric&{range}"),
            &t.viewer,
        )
        .await;
    assert_eq!(after.body["items"], json!([]), "{}", after.text);
    let kept = app
        .get(
            &format!("/api/v1/metrics?name=new_metric&{range}"),
            &t.viewer,
        )
        .await;
    assert_eq!(
        kept.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        kept.text
    );
    let names = app.get("/api/v1/metrics/names", &t.viewer).await;
    assert_eq!(
        names.body["items"],
        json!([{"name": "new_metric", "series": 1}])
    );

    if env.backend == Backend::Cluster {
        let lookout::store::Store::Postgres(pool) = &app.state.store else {
            unreachable!()
        };
        let partition = format!("samples_{}", then.format("%Y%m%d"));
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&partition)
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(!exists, "{partition} was dropped");
        let today = format!("samples_{}", now.format("%Y%m%d"));
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&today)
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(exists, "{today} is kept");
    }
    // Writing into the dropped day again is refused as too old, not failed.
    let again = post_batch(
        &app,
        &t.agent,
        json!({"metrics": [metric("old_metric", &[], 1.0, then.timestamp_millis())]}),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["accepted"], 0);
}

both_modes!(retention_drops_old_data);
