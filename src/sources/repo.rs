//! The `sources` tables: the registry, the poller's claims and outcomes, and the KumoMTA
//! log hook's dedup keys and counts. Every query that serves a caller is scoped to its
//! tenant; the poller works for every tenant (it is one per cluster) and reaches rows by id.

use super::model::{Auth, AuthChange, Outcome, Settings, SourceKind, SourceView, ValidSource};
use crate::sql;
use crate::store::{Db, DbTime, Store};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use uuid::Uuid;

macro_rules! source_columns {
    () => {
        "id, tenant, name, kind, settings, auth, log_token_sha256, interval_ms, timeout_ms, \
         enabled, origin, version, created_at, updated_at, last_polled_at, last_latency_ms, \
         last_error, consecutive_failures, poll_slot, state"
    };
}

/// One row of `sources`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SourceRow {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub kind: String,
    pub settings: Json<Settings>,
    pub auth: Option<Json<Auth>>,
    pub log_token_sha256: Option<String>,
    pub interval_ms: i64,
    pub timeout_ms: i64,
    pub enabled: bool,
    pub origin: String,
    pub version: i64,
    pub created_at: DbTime,
    pub updated_at: DbTime,
    pub last_polled_at: Option<DbTime>,
    pub last_latency_ms: Option<f64>,
    pub last_error: Option<String>,
    pub consecutive_failures: i32,
    pub poll_slot: i64,
    pub state: Option<Json<serde_json::Value>>,
}

impl SourceRow {
    pub fn kind(&self) -> Option<SourceKind> {
        SourceKind::from_db(&self.kind)
    }

    /// The API's view: settings and outcome, never a secret.
    pub fn view(&self) -> SourceView {
        let kind = self.kind().unwrap_or(SourceKind::HttpProbe);
        let settings = &self.settings.0;
        let is = |k: SourceKind| kind == k;
        SourceView {
            id: self.id,
            name: self.name.clone(),
            kind,
            url: settings.url.clone(),
            interval_ms: self.interval_ms.max(0) as u64,
            timeout_ms: self.timeout_ms.max(0) as u64,
            enabled: self.enabled,
            auth: self.auth.as_ref().map(|auth| auth.0.view()),
            log_hook_token_set: is(SourceKind::Kumomta).then(|| self.log_token_sha256.is_some()),
            log_hook_path: is(SourceKind::Kumomta)
                .then(|| format!("/api/v1/sources/{}/kumomta/logs", self.id)),
            log_hook_token: None,
            allow: is(SourceKind::Prometheus).then(|| settings.allow.clone()),
            deny: is(SourceKind::Prometheus).then(|| settings.deny.clone()),
            labels: is(SourceKind::Prometheus).then(|| settings.labels.clone()),
            expected_status: settings
                .expected_status
                .filter(|_| is(SourceKind::HttpProbe)),
            body_match: settings
                .body_match
                .clone()
                .filter(|_| is(SourceKind::HttpProbe)),
            origin: self.origin.clone(),
            version: self.version,
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
            last_outcome: self.last_polled_at.map(|at| Outcome {
                polled_at: at.0,
                latency_ms: self.last_latency_ms,
                ok: self.last_error.is_none(),
                error: self.last_error.clone(),
                consecutive_failures: self.consecutive_failures,
            }),
        }
    }
}

/// SHA-256 of a log-hook token, hex: only this is stored.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

pub async fn insert(
    store: &Store,
    tenant: &str,
    id: Uuid,
    source: &ValidSource,
    log_token_sha256: Option<&str>,
    origin: &str,
    now: DateTime<Utc>,
) -> Result<SourceRow, sqlx::Error> {
    let auth = match &source.auth {
        AuthChange::Keep | AuthChange::Set(None) => None,
        AuthChange::Set(Some(auth)) => Some(Json(auth.clone())),
    };
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        one SourceRow,
        concat!(
            "INSERT INTO sources (id, tenant, name, kind, settings, auth, log_token_sha256, \
             interval_ms, timeout_ms, enabled, origin, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $12) RETURNING ",
            source_columns!()
        ),
        id,
        tenant,
        &source.name,
        source.kind.as_str(),
        Json(&source.settings),
        auth,
        log_token_sha256,
        source.interval_ms as i64,
        source.timeout_ms as i64,
        source.enabled,
        origin,
        DbTime(now)
    )
}

/// A page of the tenant's sources, by id, after `after`.
pub async fn list(
    store: &Store,
    tenant: &str,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<SourceRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all SourceRow,
        concat!(
            "SELECT ",
            source_columns!(),
            " FROM sources WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3"
        ),
        tenant,
        after.unwrap_or(Uuid::nil()),
        i64::from(limit)
    )
}

pub async fn get(store: &Store, tenant: &str, id: Uuid) -> Result<Option<SourceRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        opt SourceRow,
        concat!(
            "SELECT ",
            source_columns!(),
            " FROM sources WHERE tenant = $1 AND id = $2"
        ),
        tenant,
        id
    )
}

/// Replaces a source's settings (the kind cannot change: its state would not fit).
/// `log_token_sha256` `None` keeps the stored token.
pub async fn update(
    store: &Store,
    tenant: &str,
    id: Uuid,
    source: &ValidSource,
    log_token_sha256: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<SourceRow>, sqlx::Error> {
    let (keep_auth, auth) = match &source.auth {
        AuthChange::Keep => (true, None),
        AuthChange::Set(auth) => (false, auth.clone().map(Json)),
    };
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        opt SourceRow,
        concat!(
            "UPDATE sources SET name = $3, settings = $4, \
             auth = CASE WHEN $5 THEN auth ELSE $6 END, \
             log_token_sha256 = COALESCE($7, log_token_sha256), \
             interval_ms = $8, timeout_ms = $9, enabled = $10, version = version + 1, \
             updated_at = $11, origin = 'api' \
             WHERE tenant = $1 AND id = $2 AND kind = $12 RETURNING ",
            source_columns!()
        ),
        tenant,
        id,
        &source.name,
        Json(&source.settings),
        keep_auth,
        auth,
        log_token_sha256,
        source.interval_ms as i64,
        source.timeout_ms as i64,
        source.enabled,
        DbTime(now),
        source.kind.as_str()
    )
}

/// Deletes a source and what its log hook stored. True when it existed.
pub async fn delete(store: &Store, tenant: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = store.begin().await?;
    let deleted = sql!(
        tx.db(),
        exec,
        "DELETE FROM sources WHERE tenant = $1 AND id = $2",
        tenant,
        id
    )?;
    sql!(
        tx.db(),
        exec,
        "DELETE FROM kumomta_log_seen WHERE tenant = $1 AND source_id = $2",
        tenant,
        id
    )?;
    sql!(
        tx.db(),
        exec,
        "DELETE FROM kumomta_log_counts WHERE tenant = $1 AND source_id = $2",
        tenant,
        id
    )?;
    tx.commit().await?;
    Ok(deleted > 0)
}

/// Creates, or brings up to date, the default KumoMTA source of the configuration
/// (`KUMOMTA_API_URL`), in tenant `default`. Every replica runs this at start-up; the
/// unique name makes it one row, and a source an admin has since edited (origin `api`)
/// is left alone.
pub async fn upsert_config_source(
    store: &Store,
    source: &ValidSource,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let auth = match &source.auth {
        AuthChange::Set(Some(auth)) => Some(Json(auth.clone())),
        _ => None,
    };
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        exec,
        "INSERT INTO sources (id, tenant, name, kind, settings, auth, interval_ms, timeout_ms, \
         enabled, origin, version, created_at, updated_at) \
         VALUES ($1, 'default', $2, 'kumomta', $3, $4, $5, $6, TRUE, 'config', 1, $7, $7) \
         ON CONFLICT (tenant, name) DO UPDATE SET settings = excluded.settings, \
         auth = excluded.auth, version = sources.version + 1, updated_at = excluded.updated_at \
         WHERE sources.origin = 'config' AND sources.kind = 'kumomta' \
         AND (sources.settings IS DISTINCT FROM excluded.settings \
              OR sources.auth IS DISTINCT FROM excluded.auth)",
        Uuid::now_v7(),
        &source.name,
        Json(&source.settings),
        auth,
        source.interval_ms as i64,
        source.timeout_ms as i64,
        DbTime(now)
    )?;
    Ok(())
}

/// `(id, version)` of every enabled source of every tenant: what the poller compares
/// with what it runs.
pub async fn enabled_versions(store: &Store) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all(Uuid, i64),
        "SELECT id, version FROM sources WHERE enabled = TRUE"
    )
}

/// A source by id, whatever its tenant (for the poller).
pub async fn get_by_id(store: &Store, id: Uuid) -> Result<Option<SourceRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        opt SourceRow,
        concat!("SELECT ", source_columns!(), " FROM sources WHERE id = $1"),
        id
    )
}

/// Claims interval `slot` of a source for the holder of fencing token `fence`. False when
/// that interval (or a later one) was already claimed, or a newer leaseholder has claimed
/// any: so an interval is polled at most once, even if two replicas briefly both believe
/// they hold the lease.
pub async fn claim_slot(
    store: &Store,
    id: Uuid,
    slot: i64,
    fence: i64,
) -> Result<bool, sqlx::Error> {
    let mut conn = store.write().await?;
    let claimed = sql!(
        conn.db(),
        exec,
        "UPDATE sources SET poll_slot = $2, poll_fence = $3 \
         WHERE id = $1 AND poll_slot < $2 AND poll_fence <= $3",
        id,
        slot,
        fence
    )?;
    Ok(claimed == 1)
}

/// What one poll leaves behind.
pub struct PollRecord<'a> {
    pub polled_at: DateTime<Utc>,
    pub latency_ms: f64,
    pub error: Option<&'a str>,
    pub consecutive_failures: i32,
    /// The kind's new state; `None` keeps the stored one.
    pub state: Option<serde_json::Value>,
}

/// Stores a poll's outcome, unless a newer leaseholder has taken the source over.
pub async fn record_poll(
    store: &Store,
    id: Uuid,
    fence: i64,
    record: PollRecord<'_>,
) -> Result<(), sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        exec,
        "UPDATE sources SET last_polled_at = $3, last_latency_ms = $4, last_error = $5, \
         consecutive_failures = $6, state = COALESCE($7, state) \
         WHERE id = $1 AND poll_fence = $2",
        id,
        fence,
        DbTime(record.polled_at),
        record.latency_ms,
        record.error,
        record.consecutive_failures,
        record.state.map(Json)
    )?;
    Ok(())
}

/// `(id, name, state)` of the tenant's KumoMTA sources.
pub async fn kumomta_states(
    store: &Store,
    tenant: &str,
) -> Result<Vec<(Uuid, String, Option<Json<serde_json::Value>>)>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all(Uuid, String, Option<Json<serde_json::Value>>),
        "SELECT id, name, state FROM sources WHERE tenant = $1 AND kind = 'kumomta' ORDER BY name",
        tenant
    )
}

/// Every source of a tenant, for the dashboard's health (bounded: a tenant has few).
pub async fn all_of_tenant(store: &Store, tenant: &str) -> Result<Vec<SourceRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all SourceRow,
        concat!(
            "SELECT ",
            source_columns!(),
            " FROM sources WHERE tenant = $1 ORDER BY name LIMIT 1000"
        ),
        tenant
    )
}

/// What the log hook needs to authenticate a request: tenant, name, kind, token digest.
pub async fn log_hook_target(
    store: &Store,
    id: Uuid,
) -> Result<Option<(String, String, String, Option<String>)>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        opt(String, String, String, Option<String>),
        "SELECT tenant, name, kind, log_token_sha256 FROM sources WHERE id = $1",
        id
    )
}

/// One log record to count: its dedup key, and the counter it adds to.
pub struct LogCount<'a> {
    pub dedup_key: &'a str,
    pub metric: Option<&'static str>,
    pub queue: &'a str,
}

/// Records log records in one transaction: each key seen for the first time is kept and
/// adds one to its counter. Returns, per record, whether it was new, and the new value
/// of every counter that moved as `(metric, queue, count)`.
pub async fn count_log_records(
    store: &Store,
    tenant: &str,
    source_id: Uuid,
    records: &[LogCount<'_>],
    now: DateTime<Utc>,
) -> Result<(Vec<bool>, Vec<(String, String, i64)>), sqlx::Error> {
    let mut tx = store.begin().await?;
    let new_keys: std::collections::HashSet<String> = match tx.db() {
        Db::Postgres(conn) => {
            let keys: Vec<&str> = records.iter().map(|r| r.dedup_key).collect();
            sqlx::query_scalar::<_, String>(
                "INSERT INTO kumomta_log_seen (tenant, source_id, dedup_key, seen_at) \
                 SELECT $1, $2, k, $4 FROM UNNEST($3::text[]) AS t(k) \
                 ON CONFLICT DO NOTHING RETURNING dedup_key",
            )
            .bind(tenant)
            .bind(source_id)
            .bind(&keys)
            .bind(now)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect()
        }
        Db::Sqlite(conn) => {
            // One writer in-process: a statement per record costs no round trip.
            let mut new = std::collections::HashSet::new();
            for record in records {
                let inserted = sqlx::query(
                    "INSERT OR IGNORE INTO kumomta_log_seen (tenant, source_id, dedup_key, seen_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(tenant)
                .bind(source_id)
                .bind(record.dedup_key)
                .bind(DbTime(now))
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if inserted == 1 {
                    new.insert(record.dedup_key.to_string());
                }
            }
            new
        }
    };

    // A key repeated inside one body is new only the first time.
    let mut first_seen = std::collections::HashSet::new();
    let fresh: Vec<bool> = records
        .iter()
        .map(|r| new_keys.contains(r.dedup_key) && first_seen.insert(r.dedup_key))
        .collect();
    let mut increments: std::collections::BTreeMap<(&str, &str), i64> = Default::default();
    for (record, is_new) in records.iter().zip(&fresh) {
        if let (true, Some(metric)) = (*is_new, record.metric) {
            *increments.entry((metric, record.queue)).or_default() += 1;
        }
    }
    let mut counts = Vec::with_capacity(increments.len());
    for ((metric, queue), by) in increments {
        let count: i64 = sql!(
            tx.db(),
            scalar i64,
            "INSERT INTO kumomta_log_counts (tenant, source_id, metric, queue, count) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant, source_id, metric, queue) \
             DO UPDATE SET count = kumomta_log_counts.count + excluded.count RETURNING count",
            tenant,
            source_id,
            metric,
            queue,
            by
        )?;
        counts.push((metric.to_string(), queue.to_string(), count));
    }
    tx.commit().await?;
    Ok((fresh, counts))
}
