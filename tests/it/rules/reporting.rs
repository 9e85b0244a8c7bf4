//! The SQL reporting queries of docs/sql-reporting.md, read from the page and run on
//! both backends against a known history.

use super::support::quiet_replica;
use crate::both_modes;
use crate::common::{Backend, TestEnv};
use chrono::{DateTime, Datelike, Duration as ChronoDuration, TimeZone, Utc};
use lookout::store::DbTime;
use uuid::Uuid;

both_modes!(the_documented_reporting_queries_answer_on_both_backends);

const PAGE: &str = include_str!("../../../docs/sql-reporting.md");

/// The page's queries for one backend, in order.
fn queries(backend: Backend) -> Vec<&'static str> {
    let fence = match backend {
        Backend::Cluster => "```sql postgres\n",
        Backend::Embedded => "```sql sqlite\n",
    };
    PAGE.split(fence)
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().trim())
        .collect()
}

async fn insert_alert(
    app: &crate::common::TestApp,
    rule: &str,
    severity: &str,
    fired_at: DateTime<Utc>,
    acked_after_secs: Option<i64>,
) {
    let mut conn = app.state.store.write().await.unwrap();
    let id = Uuid::now_v7();
    let acked = acked_after_secs.map(|s| DbTime(fired_at + ChronoDuration::seconds(s)));
    lookout::sql!(
        conn.db(),
        exec,
        "INSERT INTO alerts (id, tenant, rule_id, rule_name, severity, fingerprint, labels, annotations,
            state, value, threshold, instance, version, fence, started_at, fired_at, resolved_at,
            first_acknowledged_at, updated_at)
         VALUES ($1, 'default', $2, $3, $4, $5, '{}', '{}', 'resolved', 1.0, 0.0, '{}', 1, 0, $6, $6, $7, $8, $7)",
        id,
        Uuid::now_v7(),
        rule,
        severity,
        rand::random::<i64>(),
        DbTime(fired_at),
        DbTime(fired_at + ChronoDuration::minutes(30)),
        acked
    )
    .unwrap();
    lookout::sql!(
        conn.db(),
        exec,
        "INSERT INTO alert_events (id, tenant, alert_id, rule_id, kind, state, value, actor, reason, detail, at)
         VALUES ($1, 'default', $2, $2, 'firing', 'firing', 1.0, NULL, 'condition met', '{}', $3)",
        Uuid::now_v7(),
        id,
        DbTime(fired_at)
    )
    .unwrap();
}

async fn the_documented_reporting_queries_answer_on_both_backends(env: TestEnv) {
    let app = quiet_replica(&env).await;
    let now = Utc::now();
    let this_month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    let last_month = (this_month - ChronoDuration::days(1)).with_day(1).unwrap();
    let mid_last_month = last_month + ChronoDuration::days(10);
    for _ in 0..3 {
        insert_alert(
            &app,
            "Critical queue depth",
            "critical",
            mid_last_month,
            None,
        )
        .await;
    }
    insert_alert(&app, "High bounce rate", "error", mid_last_month, None).await;
    // Not last month: too old, and this month.
    insert_alert(
        &app,
        "High bounce rate",
        "error",
        last_month - ChronoDuration::days(40),
        None,
    )
    .await;
    insert_alert(
        &app,
        "Low delivery rate",
        "warning",
        now - ChronoDuration::minutes(5),
        Some(60),
    )
    .await;
    insert_alert(
        &app,
        "Low delivery rate",
        "warning",
        now - ChronoDuration::minutes(10),
        Some(180),
    )
    .await;
    insert_alert(
        &app,
        "Critical queue depth",
        "critical",
        now - ChronoDuration::hours(2),
        Some(30),
    )
    .await;

    let queries = queries(env.backend);
    assert_eq!(queries.len(), 3, "{queries:?}");
    let mut conn = app.state.store.read().await.unwrap();

    let fired_most: Vec<(String, i64)> =
        lookout::sql!(conn.db(), all(String, i64), queries[0]).unwrap();
    assert_eq!(
        fired_most,
        [
            ("Critical queue depth".to_string(), 3),
            ("High bounce rate".to_string(), 1)
        ]
    );

    let time_to_ack: Vec<(String, i64, f64)> =
        lookout::sql!(conn.db(), all(String, i64, f64), queries[1]).unwrap();
    assert_eq!(
        time_to_ack,
        [
            ("critical".to_string(), 1, 30.0),
            ("warning".to_string(), 2, 120.0)
        ]
    );

    let by_kind: Vec<(String, i64)> =
        lookout::sql!(conn.db(), all(String, i64), queries[2]).unwrap();
    assert_eq!(by_kind, [("firing".to_string(), 3)]);
}
