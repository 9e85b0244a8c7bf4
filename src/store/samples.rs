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
            // COPY is PostgreSQL's fastest way in, but it cannot skip a sample that is
            // already stored (a batch resent without a batch id). So it runs inside a
            // savepoint, and a unique violation falls back to the insert that skips
            // duplicates: the common case pays for COPY only.
            sqlx::query("SAVEPOINT samples_copy")
                .execute(&mut *conn)
                .await?;
            match copy_samples(conn, samples).await {
                Ok(copied) => {
                    sqlx::query("RELEASE SAVEPOINT samples_copy")
                        .execute(&mut *conn)
                        .await?;
                    Ok(copied)
                }
                Err(e) if is_unique_violation(&e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT samples_copy")
                        .execute(&mut *conn)
                        .await?;
                    insert_skipping_duplicates(conn, samples).await
                }
                Err(e) => Err(e),
            }
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

/// `COPY samples FROM STDIN` in PostgreSQL's binary format; the number of rows copied.
async fn copy_samples(
    conn: &mut sqlx::PgConnection,
    samples: &[SampleRow],
) -> Result<u64, sqlx::Error> {
    let data = encode_copy_binary(samples);
    let mut copy = conn.copy_in_raw(COPY_SAMPLES_BINARY).await?;
    if let Err(e) = copy.send(data).await {
        let _ = copy.abort("could not send the samples").await;
        return Err(e);
    }
    copy.finish().await
}

/// The statement [`encode_copy_binary`]'s output is for.
pub const COPY_SAMPLES_BINARY: &str =
    "COPY samples (series_id, ts, value) FROM STDIN (FORMAT binary)";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Encodes rows for [`COPY_SAMPLES_BINARY`]: PostgreSQL reads `bigint`, `timestamptz`
/// and `float8` from 8 bytes each instead of parsing text, and we format no text either
/// (measured in docs/benchmarks/metrics.md). Public for the ingest benchmark, whose
/// raw-COPY baseline sends the very same bytes.
pub fn encode_copy_binary(samples: &[SampleRow]) -> Vec<u8> {
    // Header, then per row: field count, and (length, value) for each of the 3 fields.
    const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
    let mut data = Vec::with_capacity(HEADER.len() + samples.len() * 38 + 2);
    data.extend_from_slice(HEADER);
    for sample in samples {
        data.extend_from_slice(&3i16.to_be_bytes());
        data.extend_from_slice(&8i32.to_be_bytes());
        data.extend_from_slice(&sample.series_id.to_be_bytes());
        data.extend_from_slice(&8i32.to_be_bytes());
        let micros = sample.ts_ms.saturating_mul(1000) - PG_EPOCH_OFFSET_US;
        data.extend_from_slice(&micros.to_be_bytes());
        data.extend_from_slice(&8i32.to_be_bytes());
        data.extend_from_slice(&sample.value.to_bits().to_be_bytes());
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    data
}

async fn insert_skipping_duplicates(
    conn: &mut sqlx::PgConnection,
    samples: &[SampleRow],
) -> Result<u64, sqlx::Error> {
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

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("23505"))
}

type SeriesRow = (i64, String, Json<Labels>);
type PointRow = (i64, DbTime, f64);

/// Every series of `tenant` named one of `names` that has samples in `(from, to]`, with
/// those samples (the rule engine reads all its rules' data this way). Two queries:
/// the series, then their samples; decoding each series' labels once rather than once
/// per sample row is most of the cost of a large read.
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
    let series: Vec<SeriesRow> = match conn.db() {
        Db::Postgres(conn) => {
            sqlx::query_as(
                "SELECT id, name, labels FROM series
                 WHERE tenant = $1 AND name = ANY($2) ORDER BY id",
            )
            .bind(tenant)
            .bind(names)
            .fetch_all(&mut *conn)
            .await?
        }
        Db::Sqlite(conn) => {
            sqlx::query_as(
                "SELECT id, name, labels FROM series
                 WHERE tenant = $1 AND name IN (SELECT value FROM json_each($2)) ORDER BY id",
            )
            .bind(tenant)
            .bind(Json(names))
            .fetch_all(&mut *conn)
            .await?
        }
    };
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = series.iter().map(|(id, _, _)| *id).collect();
    let points: Vec<PointRow> = match conn.db() {
        Db::Postgres(conn) => {
            sqlx::query_as(
                "SELECT series_id, ts, value FROM samples
                 WHERE series_id = ANY($1) AND ts > $2 AND ts <= $3
                 ORDER BY series_id, ts",
            )
            .bind(&ids)
            .bind(from)
            .bind(to)
            .fetch_all(&mut *conn)
            .await?
        }
        Db::Sqlite(conn) => {
            sqlx::query_as(
                "SELECT series_id, ts, value FROM samples
                 WHERE series_id IN (SELECT value FROM json_each($1)) AND ts > $2 AND ts <= $3
                 ORDER BY series_id, ts",
            )
            .bind(Json(&ids))
            .bind(DbTime(from))
            .bind(DbTime(to))
            .fetch_all(&mut *conn)
            .await?
        }
    };
    // Both lists are ordered by series id: walk them together.
    let mut out: Vec<SeriesSamples> = Vec::new();
    let mut series = series.into_iter().peekable();
    for (series_id, ts, value) in points {
        if out.last().is_some_and(|last| last.id == series_id) {
            if let Some(last) = out.last_mut() {
                last.samples.push((ts.millis(), value));
            }
            continue;
        }
        while series.peek().is_some_and(|(id, _, _)| *id < series_id) {
            series.next();
        }
        if let Some((id, name, labels)) = series.next_if(|(id, _, _)| *id == series_id) {
            out.push(SeriesSamples {
                id,
                name,
                labels: labels.0,
                samples: vec![(ts.millis(), value)],
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Ingest bookkeeping: the active-series limit and the per-minute ingest counters.
// ---------------------------------------------------------------------------------

/// How many of `fingerprints` are series of `tenant` seen since `since` (active).
pub async fn count_active_among(
    tx: &mut Tx,
    tenant: &str,
    fingerprints: &[i64],
    since: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    match tx.db() {
        Db::Postgres(conn) => {
            sqlx::query_scalar(
                "SELECT count(*) FROM series
                 WHERE tenant = $1 AND fingerprint = ANY($2) AND last_seen_at >= $3",
            )
            .bind(tenant)
            .bind(fingerprints)
            .bind(since)
            .fetch_one(&mut *conn)
            .await
        }
        Db::Sqlite(conn) => {
            sqlx::query_scalar(
                "SELECT count(*) FROM series
                 WHERE tenant = $1 AND fingerprint IN (SELECT value FROM json_each($2))
                   AND last_seen_at >= $3",
            )
            .bind(tenant)
            .bind(Json(fingerprints))
            .bind(DbTime(since))
            .fetch_one(&mut *conn)
            .await
        }
    }
}

/// Series of `tenant` seen since `since`.
pub async fn count_active(
    db: Db<'_>,
    tenant: &str,
    since: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    crate::sql!(
        db,
        scalar i64,
        "SELECT count(*) FROM series WHERE tenant = $1 AND last_seen_at >= $2",
        tenant,
        DbTime(since)
    )
}

/// Adds a batch to the tenant's counter of the minute `now` falls in.
pub async fn record_ingest(
    tx: &mut Tx,
    tenant: &str,
    now: DateTime<Utc>,
    samples: u64,
) -> Result<(), sqlx::Error> {
    let minute = DbTime::from_millis(now.timestamp_millis().div_euclid(60_000) * 60_000);
    crate::sql!(
        tx.db(),
        exec,
        "INSERT INTO ingest_stats (tenant, minute, samples, batches) VALUES ($1, $2, $3, 1)
         ON CONFLICT (tenant, minute) DO UPDATE
         SET samples = ingest_stats.samples + excluded.samples,
             batches = ingest_stats.batches + 1",
        tenant,
        minute,
        samples as i64
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------
// Reads for the query API.
// ---------------------------------------------------------------------------------

/// A series' identity, without samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    pub id: i64,
    pub name: String,
    pub labels: Labels,
}

/// Series of `tenant` named `name` (any name when `None`), oldest first, at most
/// `limit`. Label matchers are applied by the caller: they are regular expressions with
/// Rust's syntax, which neither engine speaks.
pub async fn series_named(
    store: &Store,
    tenant: &str,
    name: Option<&str>,
    limit: usize,
) -> Result<Vec<SeriesInfo>, sqlx::Error> {
    let mut conn = store.read().await?;
    let rows: Vec<(i64, String, Json<Labels>)> = crate::sql!(
        conn.db(),
        all(i64, String, Json<Labels>),
        "SELECT id, name, labels FROM series
         WHERE tenant = $1 AND ($2 IS NULL OR name = $2)
         ORDER BY id LIMIT $3",
        tenant,
        name,
        limit as i64
    )?;
    Ok(rows
        .into_iter()
        .map(|(id, name, labels)| SeriesInfo {
            id,
            name,
            labels: labels.0,
        })
        .collect())
}

/// Runs `sink` on every sample of the series `ids` with `from <= ts < to`, ordered by
/// series then time, until it returns `false` or `limit` rows were read. Rows are
/// streamed from the database, never collected here: the caller decides what to keep.
/// `after` resumes after a `(series id, ts ms)` position (paging).
pub async fn for_each_sample<F, Fut>(
    store: &Store,
    ids: &[i64],
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    after: Option<(i64, i64)>,
    limit: u64,
    mut sink: F,
) -> Result<(), sqlx::Error>
where
    F: FnMut(SampleRow) -> Fut,
    Fut: Future<Output = bool>,
{
    use futures_util::TryStreamExt;
    if ids.is_empty() || limit == 0 {
        return Ok(());
    }
    // Without a position, (i64::MIN, from) is before every row.
    let (after_id, after_ts) = after.unwrap_or((i64::MIN, from.timestamp_millis()));
    let mut conn = store.read().await?;
    match conn.db() {
        Db::Postgres(conn) => {
            let after_ts = DbTime::from_millis(after_ts).0;
            let mut rows = sqlx::query_as::<_, (i64, DateTime<Utc>, f64)>(
                "SELECT series_id, ts, value FROM samples
                 WHERE series_id = ANY($1) AND ts >= $2 AND ts < $3
                   AND (series_id, ts) > ($4, $5)
                 ORDER BY series_id, ts LIMIT $6",
            )
            .bind(ids)
            .bind(from)
            .bind(to)
            .bind(after_id)
            .bind(after_ts)
            .bind(limit.min(i64::MAX as u64) as i64)
            .fetch(&mut *conn);
            while let Some((series_id, ts, value)) = rows.try_next().await? {
                let row = SampleRow {
                    series_id,
                    ts_ms: ts.timestamp_millis(),
                    value,
                };
                if !sink(row).await {
                    break;
                }
            }
        }
        Db::Sqlite(conn) => {
            let mut rows = sqlx::query_as::<_, (i64, i64, f64)>(
                "SELECT series_id, ts, value FROM samples
                 WHERE series_id IN (SELECT value FROM json_each($1)) AND ts >= $2 AND ts < $3
                   AND (series_id, ts) > ($4, $5)
                 ORDER BY series_id, ts LIMIT $6",
            )
            .bind(Json(ids))
            .bind(DbTime(from))
            .bind(DbTime(to))
            .bind(after_id)
            .bind(after_ts)
            .bind(limit.min(i64::MAX as u64) as i64)
            .fetch(&mut *conn);
            while let Some((series_id, ts_ms, value)) = rows.try_next().await? {
                if !sink(SampleRow {
                    series_id,
                    ts_ms,
                    value,
                })
                .await
                {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The sample of each series `ids` just before `before` (at most `lookback` earlier):
/// the baseline a counter's increase over a window starts from.
pub async fn samples_before(
    store: &Store,
    ids: &[i64],
    before: DateTime<Utc>,
    lookback: chrono::Duration,
) -> Result<HashMap<i64, (i64, f64)>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let since = before - lookback;
    let mut conn = store.read().await?;
    let rows: Vec<(i64, DbTime, f64)> = match conn.db() {
        Db::Postgres(conn) => {
            sqlx::query_as(
                "SELECT DISTINCT ON (series_id) series_id, ts, value FROM samples
                 WHERE series_id = ANY($1) AND ts >= $2 AND ts < $3
                 ORDER BY series_id, ts DESC",
            )
            .bind(ids)
            .bind(since)
            .bind(before)
            .fetch_all(&mut *conn)
            .await?
        }
        Db::Sqlite(conn) => {
            // SQLite returns the other columns of the row holding max(ts).
            sqlx::query_as(
                "SELECT series_id, max(ts), value FROM samples
                 WHERE series_id IN (SELECT value FROM json_each($1)) AND ts >= $2 AND ts < $3
                 GROUP BY series_id",
            )
            .bind(Json(ids))
            .bind(DbTime(since))
            .bind(DbTime(before))
            .fetch_all(&mut *conn)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(id, ts, value)| (id, (ts.millis(), value)))
        .collect())
}

/// Distinct metric names of `tenant` after `after` in name order (paging), optionally
/// containing `search` (case-insensitive), at most `limit`, with their series counts.
pub async fn names(
    store: &Store,
    tenant: &str,
    search: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    // LIKE's wildcards in the search text are matched literally.
    let pattern = search.map(|q| {
        let escaped = q
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let mut conn = store.read().await?;
    crate::sql!(
        conn.db(),
        all(String, i64),
        "SELECT name, count(*) FROM series
         WHERE tenant = $1 AND ($2 IS NULL OR lower(name) LIKE $2 ESCAPE '\\')
           AND ($3 IS NULL OR name > $3)
         GROUP BY name ORDER BY name LIMIT $4",
        tenant,
        pattern,
        after,
        limit as i64
    )
}

/// Counts for `/stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantStats {
    pub series: i64,
    pub active_series: i64,
    pub names: i64,
    /// Samples ingested since `since` (counted at ingest).
    pub samples: i64,
    /// Samples ingested in the last `rate_window`.
    pub recent_samples: i64,
}

pub async fn tenant_stats(
    store: &Store,
    tenant: &str,
    active_since: DateTime<Utc>,
    samples_since: DateTime<Utc>,
    recent_since: DateTime<Utc>,
) -> Result<TenantStats, sqlx::Error> {
    let mut conn = store.read().await?;
    let (series, names): (i64, i64) = crate::sql!(
        conn.db(),
        one(i64, i64),
        "SELECT count(*), count(DISTINCT name) FROM series WHERE tenant = $1",
        tenant
    )?;
    let active_series = count_active(conn.db(), tenant, active_since).await?;
    let (samples, recent_samples): (Option<i64>, Option<i64>) = crate::sql!(
        conn.db(),
        one(Option<i64>, Option<i64>),
        "SELECT CAST(sum(samples) AS BIGINT),
                CAST(sum(CASE WHEN minute >= $3 THEN samples ELSE 0 END) AS BIGINT)
         FROM ingest_stats WHERE tenant = $1 AND minute >= $2",
        tenant,
        DbTime(samples_since),
        DbTime(recent_since)
    )?;
    Ok(TenantStats {
        series,
        active_series,
        names,
        samples: samples.unwrap_or(0),
        recent_samples: recent_samples.unwrap_or(0),
    })
}

// ---------------------------------------------------------------------------------
// Retention.
// ---------------------------------------------------------------------------------

/// What one retention round removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// PostgreSQL: day partitions dropped.
    pub partitions: u64,
    /// SQLite: sample rows deleted.
    pub samples: u64,
    pub series: u64,
    pub batches: u64,
}

/// SQLite deletes in slices of this many rows, so that the single writer is never held
/// for long and ingest goes on between slices.
const DELETE_SLICE: i64 = 20_000;

/// Removes samples older than `cutoff` (PostgreSQL: whole day partitions that end at or
/// before it; SQLite: rows), series not seen since `series_cutoff`, batch ids recorded
/// before `batches_cutoff`, and ingest counters older than `cutoff`.
pub async fn apply_retention(
    store: &Store,
    partitions: &Partitions,
    cutoff: DateTime<Utc>,
    series_cutoff: DateTime<Utc>,
    batches_cutoff: DateTime<Utc>,
) -> Result<Removed, sqlx::Error> {
    let mut removed = Removed::default();
    let mut conn = store.write().await?;
    match conn.db() {
        Db::Postgres(conn) => {
            let children: Vec<String> = sqlx::query_scalar(
                "SELECT c.relname::text FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid
                 JOIN pg_class p ON p.oid = i.inhparent
                 WHERE p.relname = 'samples' AND p.relnamespace = current_schema()::regnamespace",
            )
            .fetch_all(&mut *conn)
            .await?;
            let cutoff_day = cutoff.date_naive();
            for child in children {
                let Some(day) = child
                    .strip_prefix("samples_")
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
                else {
                    continue;
                };
                // The partition holds [day, day + 1): drop it once all of it is older.
                if day.succ_opt().is_some_and(|end| end <= cutoff_day) {
                    // Rebuilt from the parsed date: never a name read back verbatim.
                    let ddl = format!("DROP TABLE IF EXISTS samples_{}", day.format("%Y%m%d"));
                    sqlx::query(sqlx::AssertSqlSafe(ddl))
                        .execute(&mut *conn)
                        .await?;
                    partitions.forget(day);
                    removed.partitions += 1;
                }
            }
        }
        Db::Sqlite(conn) => loop {
            let deleted = sqlx::query(
                "DELETE FROM samples WHERE (series_id, ts) IN
                   (SELECT series_id, ts FROM samples WHERE ts < $1 LIMIT $2)",
            )
            .bind(DbTime(cutoff))
            .bind(DELETE_SLICE)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            removed.samples += deleted;
            if deleted < DELETE_SLICE as u64 {
                break;
            }
        },
    }
    removed.series = crate::sql!(
        conn.db(),
        exec,
        "DELETE FROM series WHERE last_seen_at < $1",
        DbTime(series_cutoff)
    )?;
    removed.batches = crate::sql!(
        conn.db(),
        exec,
        "DELETE FROM ingest_batches WHERE created_at < $1",
        DbTime(batches_cutoff)
    )?;
    crate::sql!(
        conn.db(),
        exec,
        "DELETE FROM ingest_stats WHERE minute < $1",
        DbTime(cutoff)
    )?;
    Ok(removed)
}
