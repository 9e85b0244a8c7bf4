//! Clean-up that one replica does for the whole cluster, under the `maintenance` lease:
//! expired idempotency keys and revocations of tokens that have expired anyway. Later
//! parts add their retention work here.

use crate::app::AppState;
use crate::cluster::{lease_names, run_under_lease};
use crate::sql;
use crate::store::DbTime;
use std::time::Duration;

/// How often the maintenance leaseholder runs its clean-up.
const INTERVAL: Duration = Duration::from_secs(60);

pub async fn run(state: AppState) {
    let leases = state.leases.clone();
    let shutdown = state.shutdown.clone();
    run_under_lease(leases, lease_names::MAINTENANCE, shutdown, move |lease| {
        let state = state.clone();
        async move {
            loop {
                if let Err(e) = run_once(&state).await {
                    tracing::warn!(error = format!("{e:#}"), "maintenance failed");
                }
                tokio::select! {
                    _ = lease.stop.cancelled() => return,
                    _ = tokio::time::sleep(INTERVAL) => {}
                }
            }
        }
    })
    .await;
}

/// One round of clean-up.
pub async fn run_once(state: &AppState) -> anyhow::Result<()> {
    let now = DbTime(chrono::Utc::now());
    let mut conn = state.store.write().await?;
    let keys = sql!(
        conn.db(),
        exec,
        "DELETE FROM idempotency_keys WHERE expires_at <= $1",
        now
    )?;
    drop(conn);
    let revocations = state.auth.revocations().purge_expired().await?;
    crate::ingest::retention::run(state, chrono::Utc::now()).await?;
    if keys + revocations > 0 {
        tracing::debug!(
            idempotency_keys = keys,
            revocations,
            "maintenance removed expired rows"
        );
    }
    Ok(())
}
