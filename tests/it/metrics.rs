//! Tests of the metrics part: HTTP ingest, queries, export, retention and live events
//! (agents have their own module).

mod export;
mod ingest;
mod queries;
mod retention;

use crate::common::{Response, TestApp, TestEnv};
use lookout::auth::Role;
use serde_json::{Value, json};

/// Tokens of one tenant.
pub struct Tokens {
    pub agent: String,
    pub admin: String,
    pub viewer: String,
}

pub fn tokens(env: &TestEnv, tenant: &str) -> Tokens {
    Tokens {
        agent: env.token(Role::Agent, tenant, "agent-1"),
        admin: env.token(Role::Admin, tenant, "admin"),
        viewer: env.token(Role::Viewer, tenant, "viewer"),
    }
}

/// `{name, labels, value, timestamp}` with the timestamp in epoch milliseconds.
pub fn metric(name: &str, labels: &[(&str, &str)], value: f64, ts_ms: i64) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"name": name, "labels": labels, "value": value, "timestamp": ts_ms})
}

pub async fn post_batch(app: &TestApp, token: &str, batch: Value) -> Response {
    app.post("/api/v1/metrics", token, batch).await
}

/// A minute boundary half an hour ago: a base time whose buckets are predictable.
pub fn base_ms() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now.div_euclid(60_000) * 60_000 - 30 * 60_000
}
