//! Retention: samples older than `metrics.retention` go (PostgreSQL drops whole day
//! partitions, SQLite deletes rows), with the series not written since, the batch ids
//! past their time to live and the old ingest counters. Runs in the maintenance round,
//! so under the `maintenance` lease: one replica does it for the cluster.

use crate::app::AppState;
use crate::store::samples::{self, Removed};
use chrono::{DateTime, Utc};

/// One retention round as of `now`.
pub async fn run(state: &AppState, now: DateTime<Utc>) -> Result<Removed, sqlx::Error> {
    let config = &state.config.metrics;
    let retention =
        chrono::Duration::from_std(config.retention).unwrap_or(chrono::Duration::days(30));
    let cutoff = now - retention;
    // A series lives a day longer than its last sample could (samples may be stamped
    // up to 10 minutes ahead of the write that touched the series).
    let series_cutoff = cutoff - chrono::Duration::days(1);
    let batches_cutoff =
        now - chrono::Duration::from_std(config.batch_id_ttl).unwrap_or(chrono::Duration::days(1));
    let removed = samples::apply_retention(
        &state.store,
        state.ingest.partitions(),
        cutoff,
        series_cutoff,
        batches_cutoff,
    )
    .await?;
    if removed != Removed::default() {
        tracing::info!(
            partitions = removed.partitions,
            samples = removed.samples,
            series = removed.series,
            batches = removed.batches,
            "metrics retention removed old data"
        );
    }
    Ok(removed)
}
