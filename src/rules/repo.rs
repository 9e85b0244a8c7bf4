//! Rules, alerts, their timeline and silences in the database: the rows, and the few
//! queries shared by the API, the engine and the send-time gate. Every query is scoped
//! by tenant except the engine's, which works for every tenant at once.

use super::model::{RuleSpec, default_rules};
use super::state::InstanceState;
use crate::notify::message::AlertSummary;
use crate::series::Labels;
use crate::sql;
use crate::store::{Db, DbTime, Store, Tx};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The states in which an alert is open (at most one open alert per instance).
pub const OPEN_STATES: [&str; 3] = ["pending", "firing", "no_data"];

/// A stored rule.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RuleRow {
    pub id: Uuid,
    pub tenant: String,
    pub spec: Json<RuleSpec>,
    pub is_default: bool,
    pub version: i64,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleView {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: RuleSpec,
    /// Created for the tenant on first start.
    pub is_default: bool,
    /// Grows with every change.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<RuleRow> for RuleView {
    fn from(row: RuleRow) -> Self {
        RuleView {
            id: row.id,
            spec: row.spec.0,
            is_default: row.is_default,
            version: row.version,
            created_at: row.created_at.0,
            updated_at: row.updated_at.0,
        }
    }
}

macro_rules! rule_columns {
    () => {
        "id, tenant, spec, is_default, version, created_at, updated_at"
    };
}

pub async fn insert_rule(
    tx: &mut Tx,
    tenant: &str,
    spec: &RuleSpec,
    is_default: bool,
    now: DateTime<Utc>,
) -> Result<RuleRow, sqlx::Error> {
    let id = Uuid::now_v7();
    sql!(
        tx.db(),
        exec,
        "INSERT INTO rules (id, tenant, name, enabled, severity, spec, is_default, version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)",
        id,
        tenant,
        &spec.name,
        spec.enabled,
        spec.severity.as_str(),
        Json(spec),
        is_default,
        DbTime(now)
    )?;
    Ok(RuleRow {
        id,
        tenant: tenant.to_string(),
        spec: Json(spec.clone()),
        is_default,
        version: 1,
        created_at: DbTime(now),
        updated_at: DbTime(now),
    })
}

pub async fn get_rule(
    store: &Store,
    tenant: &str,
    id: Uuid,
) -> Result<Option<RuleRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        opt RuleRow,
        concat!("SELECT ", rule_columns!(), " FROM rules WHERE tenant = $1 AND id = $2"),
        tenant,
        id
    )
}

/// Rules of a tenant after `after` (by id), at most `limit`.
pub async fn list_rules(
    store: &Store,
    tenant: &str,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<RuleRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all RuleRow,
        concat!(
            "SELECT ",
            rule_columns!(),
            " FROM rules WHERE tenant = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
        ),
        tenant,
        after,
        limit
    )
}

/// Every rule of every tenant (the engine's cache).
pub async fn all_rules(store: &Store) -> Result<Vec<RuleRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all RuleRow,
        concat!("SELECT ", rule_columns!(), " FROM rules ORDER BY id")
    )
}

/// Changes whenever a rule is added, changed or removed: lets the engine skip
/// reloading an unchanged rule set.
pub async fn rules_signature(store: &Store) -> Result<(i64, i64), sqlx::Error> {
    let mut conn = store.read().await?;
    let row: (i64, i64) = sql!(
        conn.db(),
        one(i64, i64),
        "SELECT COUNT(*), CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM rules"
    )?;
    Ok(row)
}

/// Replaces a rule's spec; `None` when it does not exist.
pub async fn update_rule(
    store: &Store,
    tenant: &str,
    id: Uuid,
    spec: &RuleSpec,
    now: DateTime<Utc>,
) -> Result<Option<RuleRow>, sqlx::Error> {
    let mut tx = store.begin().await?;
    let affected = sql!(
        tx.db(),
        exec,
        "UPDATE rules SET name = $3, enabled = $4, severity = $5, spec = $6, version = version + 1, updated_at = $7
         WHERE tenant = $1 AND id = $2",
        tenant,
        id,
        &spec.name,
        spec.enabled,
        spec.severity.as_str(),
        Json(spec),
        DbTime(now)
    )?;
    if affected == 0 {
        return Ok(None);
    }
    let row = sql!(
        tx.db(),
        one RuleRow,
        concat!("SELECT ", rule_columns!(), " FROM rules WHERE tenant = $1 AND id = $2"),
        tenant,
        id
    )?;
    tx.commit().await?;
    Ok(Some(row))
}

pub async fn delete_rule(store: &Store, tenant: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    let mut conn = store.write().await?;
    let affected = sql!(
        conn.db(),
        exec,
        "DELETE FROM rules WHERE tenant = $1 AND id = $2",
        tenant,
        id
    )?;
    Ok(affected > 0)
}

/// Creates the default rules of `tenant` unless they were created before (also when
/// the tenant deleted them since). Returns whether they were created now.
pub async fn ensure_default_rules(
    store: &Store,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let mut tx = store.begin().await?;
    let claimed = sql!(
        tx.db(),
        exec,
        "INSERT INTO rule_defaults (tenant, created_at) VALUES ($1, $2) ON CONFLICT (tenant) DO NOTHING",
        tenant,
        DbTime(now)
    )?;
    if claimed == 0 {
        return Ok(false);
    }
    for spec in default_rules() {
        insert_rule(&mut tx, tenant, &spec, true, now).await?;
    }
    tx.commit().await?;
    tracing::info!(tenant, "created the default alert rules");
    Ok(true)
}

/// Tenants that have series but no default rules yet.
pub async fn tenants_without_defaults(store: &Store) -> Result<Vec<String>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all(String,),
        "SELECT DISTINCT s.tenant FROM series s
         WHERE NOT EXISTS (SELECT 1 FROM rule_defaults d WHERE d.tenant = s.tenant)"
    )
    .map(|rows| rows.into_iter().map(|(t,)| t).collect())
}

// ---------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------

/// One alert episode.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertRow {
    pub id: Uuid,
    pub tenant: String,
    pub rule_id: Uuid,
    pub rule_name: String,
    pub severity: String,
    pub fingerprint: i64,
    pub labels: Json<Labels>,
    pub annotations: Json<BTreeMap<String, String>>,
    pub state: String,
    pub value: Option<f64>,
    pub threshold: f64,
    pub instance: Json<InstanceState>,
    pub version: i64,
    pub fence: i64,
    pub started_at: DbTime,
    pub fired_at: Option<DbTime>,
    pub resolved_at: Option<DbTime>,
    pub acknowledged_at: Option<DbTime>,
    pub acknowledged_by: Option<String>,
    pub ack_comment: Option<String>,
    pub first_acknowledged_at: Option<DbTime>,
    pub snoozed_until: Option<DbTime>,
    pub updated_at: DbTime,
}

/// The columns of [`AlertRow`], for `concat!` into queries.
#[macro_export]
macro_rules! alert_columns {
    () => {
        "id, tenant, rule_id, rule_name, severity, fingerprint, labels, annotations, state, value, threshold, instance, version, fence, started_at, fired_at, resolved_at, acknowledged_at, acknowledged_by, ack_comment, first_acknowledged_at, snoozed_until, updated_at"
    };
}

impl AlertRow {
    pub fn is_open(&self) -> bool {
        OPEN_STATES.contains(&self.state.as_str())
    }

    pub fn view(&self) -> AlertView {
        AlertView {
            id: self.id,
            rule_id: self.rule_id,
            rule_name: self.rule_name.clone(),
            severity: self.severity.clone(),
            state: self.state.clone(),
            labels: self.labels.0.clone(),
            annotations: self.annotations.0.clone(),
            value: self.value,
            threshold: self.threshold,
            started_at: self.started_at.0,
            fired_at: self.fired_at.map(|t| t.0),
            resolved_at: self.resolved_at.map(|t| t.0),
            acknowledged: self.acknowledged_at.is_some(),
            acknowledged_at: self.acknowledged_at.map(|t| t.0),
            acknowledged_by: self.acknowledged_by.clone(),
            ack_comment: self.ack_comment.clone(),
            snoozed_until: self.snoozed_until.map(|t| t.0),
            version: self.version,
            updated_at: self.updated_at.0,
        }
    }

    /// The alert as a notification shows it.
    pub fn summary(&self) -> AlertSummary {
        AlertSummary {
            id: self.id,
            rule_id: self.rule_id,
            rule_name: self.rule_name.clone(),
            severity: self.severity.clone(),
            state: self.state.clone(),
            value: self.value,
            threshold: Some(self.threshold),
            labels: self.labels.0.clone(),
            annotations: self.annotations.0.clone(),
            started_at: self.fired_at.unwrap_or(self.started_at).0,
            resolved_at: self.resolved_at.map(|t| t.0),
            acknowledged_by: self.acknowledged_by.clone(),
            url: None,
        }
    }
}

/// An alert as the REST API and the `alerts` topic show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    pub id: Uuid,
    pub rule_id: Uuid,
    pub rule_name: String,
    /// `info`, `warning`, `error` or `critical`.
    pub severity: String,
    /// `pending`, `firing`, `no_data` (open), `resolved` or `inactive` (a pending alert
    /// that cleared before it fired).
    pub state: String,
    #[schema(value_type = BTreeMap<String, String>)]
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    /// The value at the last transition.
    pub value: Option<f64>,
    pub threshold: f64,
    /// When the condition started to hold (pending since).
    pub started_at: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub acknowledged: bool,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub ack_comment: Option<String>,
    /// Notifications are held back until then.
    pub snoozed_until: Option<DateTime<Utc>>,
    /// Grows with every change of the alert.
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

pub async fn get_alert(
    db: Db<'_>,
    tenant: &str,
    id: Uuid,
) -> Result<Option<AlertRow>, sqlx::Error> {
    sql!(
        db,
        opt AlertRow,
        concat!("SELECT ", crate::alert_columns!(), " FROM alerts WHERE tenant = $1 AND id = $2"),
        tenant,
        id
    )
}

/// Every open alert of every tenant (the engine reads them at every tick: they hold the
/// instances' timers and the versions to compare-and-set on).
pub async fn open_alerts(store: &Store) -> Result<Vec<AlertRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all AlertRow,
        concat!(
            "SELECT ",
            crate::alert_columns!(),
            " FROM alerts WHERE state IN ('pending', 'firing', 'no_data')"
        )
    )
}

/// One timeline entry to write.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub tenant: &'a str,
    pub alert_id: Uuid,
    pub rule_id: Uuid,
    pub kind: &'a str,
    pub state: &'a str,
    pub value: Option<f64>,
    pub actor: Option<&'a str>,
    pub reason: &'a str,
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

pub async fn insert_event(tx: &mut Tx, event: &NewEvent<'_>) -> Result<(), sqlx::Error> {
    sql!(
        tx.db(),
        exec,
        "INSERT INTO alert_events (id, tenant, alert_id, rule_id, kind, state, value, actor, reason, detail, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        Uuid::now_v7(),
        event.tenant,
        event.alert_id,
        event.rule_id,
        event.kind,
        event.state,
        event.value,
        event.actor,
        event.reason,
        Json(&event.detail),
        DbTime(event.at)
    )?;
    Ok(())
}

/// One timeline entry as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: Uuid,
    pub kind: String,
    pub state: String,
    pub value: Option<f64>,
    pub actor: Option<String>,
    pub reason: String,
    pub detail: Json<serde_json::Value>,
    pub at: DbTime,
}

pub async fn alert_events(
    store: &Store,
    tenant: &str,
    alert_id: Uuid,
) -> Result<Vec<EventRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all EventRow,
        "SELECT id, kind, state, value, actor, reason, detail, at FROM alert_events
         WHERE tenant = $1 AND alert_id = $2 ORDER BY at, id",
        tenant,
        alert_id
    )
}
