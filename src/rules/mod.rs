//! Alert rules: the rule model and its validation, a pure evaluator (windows of samples
//! → a value per alert instance), the per-instance state machine (inactive → pending →
//! firing → resolved), annotation templates, and around them the engine that runs the
//! state machine under the `rules` lease, the alerts' storage and timeline, silences
//! and maintenance windows, and the HTTP routes.

pub mod api;
pub mod engine;
pub mod evaluator;
pub mod gate;
pub mod model;
pub mod repo;
pub mod silence;
pub mod state;
pub mod template;

use crate::app::AppState;
use crate::cluster::{lease_names, run_under_lease};
use crate::sql;
use chrono::Utc;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;

/// The `/api/v1/rules`, `/api/v1/alerts` and `/api/v1/silences` routes.
pub fn router() -> OpenApiRouter<AppState> {
    api::router()
}

/// How often the leaseholder looks for tenants that have data but no default rules.
const DEFAULTS_EVERY: Duration = Duration::from_secs(60);

/// Starts the rule engine (it evaluates only while this replica holds the `rules` lease).
pub fn start(state: &AppState) {
    if !state.config.rules.engine_enabled {
        return;
    }
    let state = state.clone();
    state.tasks.clone().spawn(async move {
        let leases = state.leases.clone();
        let shutdown = state.shutdown.clone();
        run_under_lease(leases, lease_names::RULES, shutdown, move |lease| {
            let state = state.clone();
            async move { run_engine(state, lease).await }
        })
        .await;
    });
}

/// The engine loop of one holding of the lease.
async fn run_engine(state: AppState, lease: crate::cluster::lease::LeaseContext) {
    let mut engine = engine::Engine::new(state.store.clone(), state.bus.clone(), lease.token);
    tracing::info!(fence = lease.token, "rule engine started");
    let mut ticker = tokio::time::interval(state.config.rules.tick_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_defaults: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = lease.stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if state.config.rules.create_default_rules
            && last_defaults.is_none_or(|t| t.elapsed() >= DEFAULTS_EVERY)
        {
            last_defaults = Some(tokio::time::Instant::now());
            if let Err(e) = create_missing_defaults(&state).await {
                tracing::warn!(error = %e, "cannot create default rules");
            }
        }
        // The tick is not cancelled half-way: each transition is its own transaction,
        // and the fencing token refuses a late write once another holder has written.
        match engine.tick(Utc::now()).await {
            Ok(report) if report.transitions > 0 || report.conflicts > 0 => {
                tracing::debug!(?report, "rule tick");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "rule tick failed"),
        }
    }
    tracing::info!(fence = lease.token, "rule engine stopped");
}

/// Default rules for the default tenant and for every tenant that has series.
async fn create_missing_defaults(state: &AppState) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    repo::ensure_default_rules(&state.store, crate::auth::DEFAULT_TENANT, now).await?;
    for tenant in repo::tenants_without_defaults(&state.store).await? {
        repo::ensure_default_rules(&state.store, &tenant, now).await?;
    }
    Ok(())
}

/// Open alerts of `tenant` by severity, for the dashboard overview; `None` when the
/// tenant has no alerts at all.
pub async fn alert_counts(
    state: &AppState,
    tenant: &str,
) -> anyhow::Result<Option<std::collections::BTreeMap<String, i64>>> {
    let mut conn = state.store.read().await?;
    let any: Option<i64> = sql!(
        conn.db(),
        scalar_opt i64,
        "SELECT 1 FROM alerts WHERE tenant = $1 LIMIT 1",
        tenant
    )?;
    if any.is_none() {
        return Ok(None);
    }
    let rows: Vec<(String, i64)> = sql!(
        conn.db(),
        all(String, i64),
        "SELECT severity, COUNT(*) FROM alerts
         WHERE tenant = $1 AND state IN ('pending', 'firing', 'no_data')
         GROUP BY severity",
        tenant
    )?;
    Ok(Some(rows.into_iter().collect()))
}
