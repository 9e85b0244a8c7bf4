//! Ingest: the one way in for samples, whoever sends them (HTTP batches, agents over
//! WebSocket, the pollers).
//!
//! A batch is validated sample by sample (bad ones are reported with their index and
//! reason, the good ones kept), its series are created or touched in one statement,
//! its samples written in one more, and, when it has a `batch_id`, the batch is
//! recorded in the same transaction: a resent batch is answered with the first
//! outcome and stored once.

mod announce;
pub mod api;
pub mod retention;
mod wire;

pub use announce::{BatchSummary, LatestSample};
pub use wire::{MetricBatch, MetricBatchRef, MetricIn, decode_metrics};

use crate::series::{self, Labels};
use crate::sql;
use crate::store::samples::{self as sample_store, Partitions, SampleRow, SeriesKey};
use crate::store::{DbTime, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// A sample as it arrives, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleIn {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds since the Unix epoch; `None` means "now".
    pub timestamp_ms: Option<i64>,
}

/// Why one sample of a batch was not stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rejection {
    /// Position of the sample in the batch.
    pub index: usize,
    pub reason: String,
}

/// What happened to a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IngestOutcome {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// Samples stored (for a duplicate batch: stored the first time).
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
    /// True when this batch id was seen before and nothing was stored now.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("a batch holds at most {max} samples, this one has {got}")]
    BatchTooLarge { max: usize, got: usize },
    #[error("batch_id must be 1-128 characters")]
    BadBatchId,
    /// Storing the batch would take the tenant past its limit of active series.
    #[error(
        "this batch would create {new} new series; the tenant has {active} active series and may have at most {limit}"
    )]
    SeriesLimit { limit: usize, active: i64, new: i64 },
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// Limits on what is accepted.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_batch: usize,
    /// Samples older than this are refused (they would be deleted at once).
    pub retention: Duration,
    /// Samples further in the future than this are refused.
    pub max_future: Duration,
    /// Active series a tenant may have; 0: no limit.
    pub max_active_series: usize,
    /// A series written within this window is active.
    pub active_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&crate::config::MetricsConfig::default())
    }
}

impl From<&crate::config::MetricsConfig> for Limits {
    fn from(config: &crate::config::MetricsConfig) -> Self {
        Limits {
            max_batch: 10_000,
            retention: config.retention,
            max_future: Duration::from_secs(600),
            max_active_series: config.max_active_series,
            active_window: config.active_series_window,
        }
    }
}

/// A series is marked as seen again at most this often (a write per series per batch
/// would double the cost of ingest).
const TOUCH_EVERY_MS: i64 = 5 * 60 * 1000;
/// Past this many cached series ids the cache starts over (memory bound).
const MAX_CACHED_SERIES: usize = 1_000_000;
/// Past this many cached fingerprints (each holds its series' name and labels, ~200
/// bytes) that cache starts over.
const MAX_CACHED_FINGERPRINTS: usize = 100_000;

/// Fingerprints of the series seen lately, by name and labels. A fingerprint is a
/// SHA-256 (it is stored, so it must not collide), and hashing every sample's series was
/// a quarter of the replica's ingest CPU on machines without SHA instructions
/// (docs/benchmarks/metrics.md); a monitored system sends the same series again and
/// again, and a hash-map lookup costs a fraction of it.
type FingerprintCache = HashMap<(String, Labels), i64>;

pub struct Ingest {
    store: Store,
    limits: Limits,
    /// When set, [`Ingest::write`] publishes each stored batch's `metrics:update` here.
    bus: Option<crate::bus::Bus>,
    partitions: Partitions,
    // std Mutex: in-memory maps, never held across an await.
    series_ids: Mutex<HashMap<(String, i64), CachedSeries>>,
    fingerprints: Mutex<FingerprintCache>,
}

#[derive(Debug, Clone, Copy)]
struct CachedSeries {
    id: i64,
    touched_ms: i64,
}

/// A sample that passed validation.
struct Valid {
    name: String,
    labels: Labels,
    fingerprint: i64,
    ts_ms: i64,
    value: f64,
}

impl Ingest {
    pub fn new(store: Store, limits: Limits) -> Ingest {
        Ingest {
            store,
            limits,
            bus: None,
            partitions: Partitions::default(),
            series_ids: Mutex::default(),
            fingerprints: Mutex::default(),
        }
    }

    /// Makes [`Ingest::write`] announce each stored batch on `bus`, so that every way
    /// in (HTTP, agents, pollers, the log hook) feeds live views.
    pub fn with_bus(mut self, bus: crate::bus::Bus) -> Ingest {
        self.bus = Some(bus);
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }

    /// Validates and stores a batch for `tenant`, counts it in the replica's metrics and
    /// publishes its `metrics:update` summary: the one way in for samples. A resent
    /// batch (same `batch_id`) is answered with the first outcome and announced only the
    /// first time. `undecodable` are the samples of the batch that could not even be
    /// read (their index is their place in the whole batch); `samples` are the others,
    /// in order.
    pub async fn write(
        &self,
        tenant: &str,
        batch_id: Option<&str>,
        samples: Vec<SampleIn>,
        undecodable: Vec<Rejection>,
        now: DateTime<Utc>,
    ) -> Result<IngestOutcome, IngestError> {
        let (outcome, summary) = self
            .store_batch(tenant, batch_id, samples, undecodable, now)
            .await?;
        if !outcome.duplicate {
            announce::count(&outcome);
        }
        if let (Some(bus), Some(summary)) = (&self.bus, summary) {
            announce::publish(bus, tenant, &summary).await;
        }
        Ok(outcome)
    }

    /// Validates and stores a batch; also returns what the live summary needs (nothing
    /// for a duplicate batch).
    async fn store_batch(
        &self,
        tenant: &str,
        batch_id: Option<&str>,
        samples: Vec<SampleIn>,
        undecodable: Vec<Rejection>,
        now: DateTime<Utc>,
    ) -> Result<(IngestOutcome, Option<BatchSummary>), IngestError> {
        let limits = &self.limits;
        let total = samples.len() + undecodable.len();
        if total > limits.max_batch {
            return Err(IngestError::BatchTooLarge {
                max: limits.max_batch,
                got: total,
            });
        }
        if let Some(id) = batch_id
            && (id.is_empty() || id.len() > 128)
        {
            return Err(IngestError::BadBatchId);
        }
        let now_ms = now.timestamp_millis();
        let (valid, mut rejected) = {
            let mut fingerprints = self.fingerprints.lock().unwrap_or_else(|p| p.into_inner());
            validate(limits, now_ms, samples, &mut fingerprints)
        };
        if !undecodable.is_empty() {
            rejected = merge_rejections(undecodable, rejected);
        }

        let mut tx = self.store.begin().await?;
        if let Some(id) = batch_id {
            let claimed = sql!(
                tx.db(),
                exec,
                "INSERT INTO ingest_batches (tenant, batch_id, accepted, rejected, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, batch_id) DO NOTHING",
                tenant,
                id,
                valid.len() as i32,
                Json(&rejected),
                DbTime(now)
            )?;
            if claimed == 0 {
                let (accepted, rejected): (i32, Json<Vec<Rejection>>) = sql!(
                    tx.db(),
                    one(i32, Json<Vec<Rejection>>),
                    "SELECT accepted, rejected FROM ingest_batches WHERE tenant = $1 AND batch_id = $2",
                    tenant,
                    id
                )?;
                let outcome = IngestOutcome {
                    batch_id: Some(id.to_string()),
                    accepted: accepted.max(0) as usize,
                    rejected: rejected.0,
                    duplicate: true,
                };
                return Ok((outcome, None));
            }
        }

        let ids = self
            .series_ids_for(&mut tx, limits, tenant, &valid, now)
            .await?;
        let rows: Vec<SampleRow> = valid
            .iter()
            .filter_map(|v| {
                ids.get(&v.fingerprint).map(|&id| SampleRow {
                    series_id: id,
                    ts_ms: v.ts_ms,
                    value: v.value,
                })
            })
            .collect();
        self.partitions
            .ensure(&mut tx, rows.iter().map(|r| sample_store::day_of(r.ts_ms)))
            .await?;
        let inserted = sample_store::insert_samples(&mut tx, &rows).await?;
        if !rows.is_empty() {
            sample_store::record_ingest(&mut tx, tenant, now, inserted).await?;
        }
        tx.commit().await?;
        let summary = BatchSummary::of(batch_id, valid.len(), rejected.len(), ids.len(), now, {
            valid
                .into_iter()
                .map(|v| (v.fingerprint, v.name, v.labels, v.ts_ms, v.value))
        });
        let outcome = IngestOutcome {
            batch_id: batch_id.map(str::to_string),
            accepted: summary.accepted,
            rejected,
            duplicate: false,
        };
        Ok((outcome, Some(summary)))
    }
}

/// Merges the rejections of samples that could not be decoded (indexed in the whole
/// batch) with those of validation (indexed among the decoded samples only).
fn merge_rejections(undecodable: Vec<Rejection>, validated: Vec<Rejection>) -> Vec<Rejection> {
    let mut skipped: Vec<usize> = undecodable.iter().map(|r| r.index).collect();
    skipped.sort_unstable();
    let mut all = undecodable;
    all.extend(validated.into_iter().map(|mut r| {
        // The n-th decoded sample sits at n plus the undecodable ones before it.
        let mut index = r.index;
        for &s in &skipped {
            if s <= index {
                index += 1;
            } else {
                break;
            }
        }
        r.index = index;
        r
    }));
    all.sort_by_key(|r| r.index);
    all
}

/// Splits a batch into valid samples (fingerprinted) and rejections.
fn validate(
    limits: &Limits,
    now_ms: i64,
    samples: Vec<SampleIn>,
    fingerprints: &mut FingerprintCache,
) -> (Vec<Valid>, Vec<Rejection>) {
    let oldest = now_ms - limits.retention.as_millis() as i64;
    let newest = now_ms + limits.max_future.as_millis() as i64;
    let mut valid = Vec::with_capacity(samples.len());
    let mut rejected = Vec::new();
    for (index, sample) in samples.into_iter().enumerate() {
        let ts_ms = sample.timestamp_ms.unwrap_or(now_ms);
        let problem = series::validate_metric_name(&sample.name)
            .and_then(|()| series::validate_labels(&sample.labels))
            .and_then(|()| {
                if sample.value.is_finite() {
                    Ok(())
                } else {
                    Err(format!("value {} is not a finite number", sample.value))
                }
            })
            .and_then(|()| {
                if ts_ms < oldest {
                    Err("timestamp is older than the retention period".to_string())
                } else if ts_ms > newest {
                    Err("timestamp is more than 10 minutes in the future".to_string())
                } else {
                    Ok(())
                }
            });
        match problem {
            Ok(()) => {
                // Looked up by the owned pair, moved in and out: no copy on a hit.
                let key = (sample.name, sample.labels);
                let fingerprint = match fingerprints.get(&key) {
                    Some(&fingerprint) => fingerprint,
                    None => {
                        let fingerprint = series::fingerprint(&key.0, &key.1);
                        if fingerprints.len() >= MAX_CACHED_FINGERPRINTS {
                            fingerprints.clear();
                        }
                        fingerprints.insert(key.clone(), fingerprint);
                        fingerprint
                    }
                };
                let (name, labels) = key;
                valid.push(Valid {
                    fingerprint,
                    name,
                    labels,
                    ts_ms,
                    value: sample.value,
                })
            }
            Err(reason) => rejected.push(Rejection { index, reason }),
        }
    }
    (valid, rejected)
}

impl Ingest {
    /// Series ids for every distinct series of the batch: from the cache when known and
    /// touched recently, else created or touched in one statement.
    async fn series_ids_for(
        &self,
        tx: &mut crate::store::Tx,
        limits: &Limits,
        tenant: &str,
        valid: &[Valid],
        now: DateTime<Utc>,
    ) -> Result<HashMap<i64, i64>, IngestError> {
        let now_ms = now.timestamp_millis();
        let mut ids = HashMap::new();
        let mut to_upsert: Vec<SeriesKey<'_>> = Vec::new();
        {
            let cache = self.series_ids.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = std::collections::HashSet::new();
            for v in valid {
                if !seen.insert(v.fingerprint) {
                    continue;
                }
                match cache.get(&(tenant.to_string(), v.fingerprint)) {
                    Some(cached) if now_ms - cached.touched_ms < TOUCH_EVERY_MS => {
                        ids.insert(v.fingerprint, cached.id);
                    }
                    _ => to_upsert.push(SeriesKey {
                        name: &v.name,
                        labels: &v.labels,
                        fingerprint: v.fingerprint,
                    }),
                }
            }
        }
        if to_upsert.is_empty() {
            return Ok(ids);
        }
        check_series_limit(tx, limits, tenant, &to_upsert, now).await?;
        let fresh = sample_store::upsert_series(tx, tenant, &to_upsert, now).await?;
        let mut cache = self.series_ids.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() + fresh.len() > MAX_CACHED_SERIES {
            cache.clear();
        }
        for (&fingerprint, &id) in &fresh {
            cache.insert(
                (tenant.to_string(), fingerprint),
                CachedSeries {
                    id,
                    touched_ms: now_ms,
                },
            );
        }
        ids.extend(fresh);
        Ok(ids)
    }
}

/// Refuses a batch whose series not active yet would take the tenant past its limit.
/// Only series missing from the cache get here, so a steady stream of known series
/// costs nothing. Replicas count without a lock between them: the limit can be
/// overshot by what concurrent batches create at the same instant, which is fine for
/// a guard against runaway cardinality.
async fn check_series_limit(
    tx: &mut crate::store::Tx,
    limits: &Limits,
    tenant: &str,
    candidates: &[SeriesKey<'_>],
    now: DateTime<Utc>,
) -> Result<(), IngestError> {
    if limits.max_active_series == 0 {
        return Ok(());
    }
    let since = now
        - chrono::Duration::from_std(limits.active_window).unwrap_or(chrono::Duration::hours(1));
    let fingerprints: Vec<i64> = candidates.iter().map(|c| c.fingerprint).collect();
    let already = sample_store::count_active_among(tx, tenant, &fingerprints, since).await?;
    let new = fingerprints.len() as i64 - already;
    if new <= 0 {
        return Ok(());
    }
    let active = sample_store::count_active(tx.db(), tenant, since).await?;
    if active + new > limits.max_active_series as i64 {
        return Err(IngestError::SeriesLimit {
            limit: limits.max_active_series,
            active,
            new,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, host: &str) -> SampleIn {
        SampleIn {
            name: name.into(),
            labels: Labels::from([("host".to_string(), host.to_string())]),
            value: 1.0,
            timestamp_ms: None,
        }
    }

    #[test]
    fn cached_fingerprints_are_the_series_own() {
        let mut cache = FingerprintCache::new();
        let batch = || vec![sample("up", "a"), sample("up", "b"), sample("down", "a")];
        let (first, _) = validate(&Limits::default(), 0, batch(), &mut cache);
        let (again, _) = validate(&Limits::default(), 0, batch(), &mut cache);
        assert_eq!(cache.len(), 3);
        for (v, w) in first.iter().zip(&again) {
            assert_eq!(v.fingerprint, series::fingerprint(&v.name, &v.labels));
            assert_eq!(w.fingerprint, v.fingerprint, "a cache hit gives the same");
        }
        let distinct: std::collections::HashSet<i64> =
            first.iter().map(|v| v.fingerprint).collect();
        assert_eq!(distinct.len(), 3);
    }
}
