//! Series and samples: the hot path of ingest and the windows rules read.
//!
//! The engines differ enough here that each has its own SQL. PostgreSQL writes a whole
//! batch with one `UNNEST` statement per table (no per-row round trips) into daily
//! partitions it creates on demand; SQLite writes row by row inside one transaction,
//! which for SQLite is as fast as it gets.

use super::{Db, DbTime, Store, Tx};
use crate::series::Labels;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use sqlx::types::Json;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

/// A series to create or touch: its identity within a tenant.
#[derive(Debug, Clone)]
pub struct SeriesKey<'a> {
    pub name: &'a str,
    pub labels: &'a Labels,
    pub fingerprint: i64,
}

/// A sample of a known series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRow {
    pub series_id: i64,
    pub ts_ms: i64,
    pub value: f64,
}

/// One series with its samples in a time range, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub id: i64,
    pub name: String,
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// Creates the series that do not exist yet and marks them all as seen at `now`;
/// returns each fingerprint's series id. Fingerprints must be distinct.
pub async fn upsert_series(
    tx: &mut Tx,
    tenant: &str,
    series: &[SeriesKey<'_>],
    now: DateTime<Utc>,
) -> Result<HashMap<i64, i64>, sqlx::Error> {
    let mut ids = HashMap::with_capacity(series.len());
    if series.is_empty() {
        return Ok(ids);
    }
    match tx.db() {
        Db::Postgres(conn) => {
            let names: Vec<&str> = series.iter().map(|s| s.name).collect();
            let labels: Vec<String> = series
                .iter()
                .map(|s| serde_json::to_string(s.labels).unwrap_or_else(|_| "{}".into()))
                .collect();
            let fingerprints: Vec<i64> = series.iter().map(|s| s.fingerprint).collect();
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "INSERT INTO series (tenant, name, labels, fingerprint, created_at, last_seen_at)
                 SELECT $1, n, l::jsonb, f, $5, $5 FROM UNNEST($2::text[], $3::text[], $4::bigint[]) AS t(n, l, f)
                 ON CONFLICT (tenant, fingerprint) DO UPDATE SET last_seen_at = excluded.last_seen_at
                 RETURNING fingerprint, id",
            )
            .bind(tenant)
            .bind(&names)
            .bind(&labels)
            .bind(&fingerprints)
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
            ids.extend(rows);
        }
        Db::Sqlite(conn) => {
            for key in series {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO series (tenant, name, labels, fingerprint, created_at, last_seen_at)
                     VALUES ($1, $2, $3, $4, $5, $5)
                     ON CONFLICT (tenant, fingerprint) DO UPDATE SET last_seen_at = excluded.last_seen_at
                     RETURNING id",
                )
                .bind(tenant)
                .bind(key.name)
                .bind(Json(key.labels))
                .bind(key.fingerprint)
                .bind(DbTime(now))
                .fetch_one(&mut *conn)
                .await?;
                ids.insert(key.fingerprint, id);
            }
        }
    }
    Ok(ids)
}

/// Daily partitions of `samples` known to exist (PostgreSQL), so that each is created
/// once per process.
#[derive(Default)]
pub struct Partitions {
    // std Mutex: in-memory set, never held across an await.
    known: Mutex<HashSet<NaiveDate>>,
}

impl Partitions {
    /// Makes sure the day partitions holding `timestamps` exist.
    pub async fn ensure(
        &self,
        tx: &mut Tx,
        days: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<(), sqlx::Error> {
        let Db::Postgres(conn) = tx.db() else {
            return Ok(());
        };
        let missing: BTreeSet<NaiveDate> = {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            days.into_iter().filter(|d| !known.contains(d)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        // Replicas may create the same partition at once; the lock serialises them.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('lookout.samples.partitions'))")
            .execute(&mut *conn)
            .await?;
        for day in &missing {
            let next = day.succ_opt().unwrap_or(*day);
            // Built from dates only (digits and dashes), never from user text.
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS samples_{} PARTITION OF samples \
                 FOR VALUES FROM ('{} 00:00:00+00') TO ('{} 00:00:00+00')",
                day.format("%Y%m%d"),
                day.format("%Y-%m-%d"),
                next.format("%Y-%m-%d"),
            );
            sqlx::query(sqlx::AssertSqlSafe(ddl))
                .execute(&mut *conn)
                .await?;
        }
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(missing);
        Ok(())
    }

    /// Forgets a dropped partition.
    pub fn forget(&self, day: NaiveDate) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&day);
    }
}

/// The UTC day of a timestamp in milliseconds.
pub fn day_of(ts_ms: i64) -> NaiveDate {
    Utc.timestamp_millis_opt(ts_ms)
        .single()
        .unwrap_or_default()
        .date_naive()
}

/// Inserts samples; a sample whose series already has one at that instant is skipped.
/// Returns how many were inserted.
pub async fn insert_samples(tx: &mut Tx, samples: &[SampleRow]) -> Result<u64, sqlx::Error> {
    if samples.is_empty() {
        return Ok(0);
    }
    match tx.db() {
        Db::Postgres(conn) => {
            let ids: Vec<i64> = samples.iter().map(|s| s.series_id).collect();
            let times: Vec<DateTime<Utc>> = samples
                .iter()
                .map(|s| DbTime::from_millis(s.ts_ms).0)
                .collect();
            let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
            let result = sqlx::query(
                "INSERT INTO samples (series_id, ts, value)
                 SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::float8[])
                 ON CONFLICT (series_id, ts) DO NOTHING",
            )
            .bind(&ids)
            .bind(&times)
            .bind(&values)
            .execute(&mut *conn)
            .await?;
            Ok(result.rows_affected())
        }
        Db::Sqlite(conn) => {
            let mut inserted = 0;
            for sample in samples {
                inserted += sqlx::query(
                    "INSERT OR IGNORE INTO samples (series_id, ts, value) VALUES ($1, $2, $3)",
                )
                .bind(sample.series_id)
                .bind(sample.ts_ms)
                .bind(sample.value)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            }
            Ok(inserted)
        }
    }
}

type WindowRow = (i64, String, Json<Labels>, DbTime, f64);

/// Every series of `tenant` named one of `names` that has samples in `(from, to]`, with
/// those samples, in one query (the rule engine reads all its rules' data this way).
pub async fn read_range(
    store: &Store,
    tenant: &str,
    names: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<SeriesSamples>, sqlx::Error> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = store.read().await?;
    let rows: Vec<WindowRow> = match conn.db() {
        Db::Postgres(conn) => {
            sqlx::query_as(
                "SELECT s.id, s.name, s.labels, p.ts, p.value
                 FROM series s JOIN samples p ON p.series_id = s.id
                 WHERE s.tenant = $1 AND s.name = ANY($2) AND p.ts > $3 AND p.ts <= $4
                 ORDER BY s.id, p.ts",
            )
            .bind(tenant)
            .bind(names)
            .bind(from)
            .bind(to)
            .fetch_all(&mut *conn)
            .await?
        }
        Db::Sqlite(conn) => {
            sqlx::query_as(
                "SELECT s.id, s.name, s.labels, p.ts, p.value
                 FROM series s JOIN samples p ON p.series_id = s.id
                 WHERE s.tenant = $1 AND s.name IN (SELECT value FROM json_each($2))
                   AND p.ts > $3 AND p.ts <= $4
                 ORDER BY s.id, p.ts",
            )
            .bind(tenant)
            .bind(Json(names))
            .bind(DbTime(from))
            .bind(DbTime(to))
            .fetch_all(&mut *conn)
            .await?
        }
    };
    let mut out: Vec<SeriesSamples> = Vec::new();
    for (id, name, labels, ts, value) in rows {
        match out.last_mut() {
            Some(last) if last.id == id => last.samples.push((ts.millis(), value)),
            _ => out.push(SeriesSamples {
                id,
                name,
                labels: labels.0,
                samples: vec![(ts.millis(), value)],
            }),
        }
    }
    Ok(out)
}
