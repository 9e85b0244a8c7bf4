//! The `agents` table: registry, presence and ingest figures. Every statement that
//! serves a caller is scoped by tenant; the presence refresh and sweep are replica
//! housekeeping over all tenants (each row they touch keeps its tenant for the events).

use super::model::{Agent, AgentStats, AgentSummary, Presence};
use crate::sql;
use crate::store::{DbTime, Store};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use std::collections::BTreeMap;

/// The columns every query that returns agents selects, in [`AgentRow`]'s order.
macro_rules! columns {
    () => {
        "tenant, id, status, health, health_details, provider, region, hostname, version, \
         labels, capabilities, config, config_version, replica_id, session_id, connected_at, \
         disconnected_at, last_seen_at, registered_at, created_at, batches_total, \
         samples_total, rejected_total, last_batch_at"
    };
}

/// One row of `agents`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentRow {
    pub tenant: String,
    pub id: String,
    pub status: String,
    pub health: Option<String>,
    pub health_details: Option<Json<Value>>,
    pub provider: Option<String>,
    pub region: Option<String>,
    pub hostname: Option<String>,
    pub version: Option<String>,
    pub labels: Json<BTreeMap<String, String>>,
    pub capabilities: Json<Vec<String>>,
    pub config: Json<Value>,
    pub config_version: i64,
    pub replica_id: Option<String>,
    pub session_id: Option<String>,
    pub connected_at: Option<DbTime>,
    pub disconnected_at: Option<DbTime>,
    pub last_seen_at: Option<DbTime>,
    pub registered_at: Option<DbTime>,
    pub created_at: DbTime,
    pub batches_total: i64,
    pub samples_total: i64,
    pub rejected_total: i64,
    pub last_batch_at: Option<DbTime>,
}

fn time(t: Option<DbTime>) -> Option<DateTime<Utc>> {
    t.map(|t| t.0)
}

impl AgentRow {
    pub fn presence(&self) -> Presence {
        Presence::parse(&self.status).unwrap_or(Presence::Disconnected)
    }

    pub fn view(&self) -> Agent {
        let presence = self.presence();
        Agent {
            id: self.id.clone(),
            status: presence,
            health: self.health.clone(),
            health_details: self.health_details.as_ref().map(|d| d.0.clone()),
            provider: self.provider.clone(),
            region: self.region.clone(),
            hostname: self.hostname.clone(),
            version: self.version.clone(),
            labels: self.labels.0.clone(),
            capabilities: self.capabilities.0.clone(),
            config_version: self.config_version,
            replica: match presence {
                Presence::Connected => self.replica_id.clone(),
                Presence::Disconnected => None,
            },
            connected_at: time(self.connected_at),
            disconnected_at: time(self.disconnected_at),
            last_seen_at: time(self.last_seen_at),
            registered_at: time(self.registered_at),
            created_at: self.created_at.0,
        }
    }

    pub fn stats(&self, now: DateTime<Utc>) -> AgentStats {
        let presence = self.presence();
        AgentStats {
            agent_id: self.id.clone(),
            status: presence,
            health: self.health.clone(),
            batches_total: self.batches_total,
            samples_total: self.samples_total,
            rejected_total: self.rejected_total,
            last_batch_at: time(self.last_batch_at),
            connected_at: time(self.connected_at),
            uptime_seconds: match (presence, self.connected_at) {
                (Presence::Connected, Some(at)) => Some((now - at.0).num_seconds().max(0)),
                _ => None,
            },
            last_seen_at: time(self.last_seen_at),
        }
    }
}

/// A socket of `agent` opened on `replica` as `session`: the row is created or taken
/// over, and stays connected until `until` unless refreshed.
pub struct Connect<'a> {
    pub tenant: &'a str,
    pub agent_id: &'a str,
    pub provider: Option<&'a str>,
    pub region: Option<&'a str>,
    pub session_id: &'a str,
    pub replica_id: &'a str,
    pub until: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

pub async fn connect(store: &Store, c: Connect<'_>) -> Result<AgentRow, sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        one AgentRow,
        concat!(
            "INSERT INTO agents (tenant, id, provider, region, labels, capabilities, config, \
               status, session_id, replica_id, connected_until, connected_at, last_seen_at, \
               created_at)
             VALUES ($1, $2, $3, $4, '{}', '[]', '{}', 'connected', $5, $6, $7, $8, $8, $8)
             ON CONFLICT (tenant, id) DO UPDATE SET
               provider = COALESCE(excluded.provider, agents.provider),
               region = COALESCE(excluded.region, agents.region),
               status = 'connected', session_id = excluded.session_id,
               replica_id = excluded.replica_id, connected_until = excluded.connected_until,
               connected_at = excluded.connected_at, last_seen_at = excluded.last_seen_at,
               disconnected_at = NULL
             RETURNING ",
            columns!()
        ),
        c.tenant,
        c.agent_id,
        c.provider,
        c.region,
        c.session_id,
        c.replica_id,
        DbTime(c.until),
        DbTime(c.now)
    )
}

/// What an agent says about itself in its `registration` frame.
pub struct Registration<'a> {
    pub hostname: Option<&'a str>,
    pub version: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub region: Option<&'a str>,
    pub labels: &'a BTreeMap<String, String>,
    pub capabilities: &'a [String],
}

/// Stores a registration; `None` when `session` no longer owns the row (a newer socket
/// of the same agent took over, or the agent was deleted).
pub async fn register(
    store: &Store,
    tenant: &str,
    agent_id: &str,
    session_id: &str,
    r: Registration<'_>,
    now: DateTime<Utc>,
) -> Result<Option<AgentRow>, sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        opt AgentRow,
        concat!(
            "UPDATE agents SET hostname = $4, version = $5,
               provider = COALESCE($6, provider), region = COALESCE($7, region),
               labels = $8, capabilities = $9, registered_at = $10, last_seen_at = $10
             WHERE tenant = $1 AND id = $2 AND session_id = $3
             RETURNING ",
            columns!()
        ),
        tenant,
        agent_id,
        session_id,
        r.hostname,
        r.version,
        r.provider,
        r.region,
        Json(r.labels),
        Json(r.capabilities),
        DbTime(now)
    )
}

/// Stores what the agent reported in a `status` frame.
pub async fn set_health(
    store: &Store,
    tenant: &str,
    agent_id: &str,
    session_id: &str,
    health: &str,
    details: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<Option<AgentRow>, sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        opt AgentRow,
        concat!(
            "UPDATE agents SET health = $4, health_details = $5, last_seen_at = $6
             WHERE tenant = $1 AND id = $2 AND session_id = $3
             RETURNING ",
            columns!()
        ),
        tenant,
        agent_id,
        session_id,
        health,
        details.map(Json),
        DbTime(now)
    )
}

/// Counts a newly stored batch (not a resent one).
pub async fn record_batch(
    store: &Store,
    tenant: &str,
    agent_id: &str,
    accepted: usize,
    rejected: usize,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        exec,
        "UPDATE agents SET batches_total = batches_total + 1,
           samples_total = samples_total + $3, rejected_total = rejected_total + $4,
           last_batch_at = $5, last_seen_at = $5
         WHERE tenant = $1 AND id = $2",
        tenant,
        agent_id,
        accepted as i64,
        rejected as i64,
        DbTime(now)
    )?;
    Ok(())
}

/// The socket `session` closed: the agent is disconnected, unless another socket owns
/// the row by now. Returns the row when it changed.
pub async fn disconnect(
    store: &Store,
    tenant: &str,
    agent_id: &str,
    session_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<AgentRow>, sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        opt AgentRow,
        concat!(
            "UPDATE agents SET status = 'disconnected', replica_id = NULL, session_id = NULL,
               connected_until = NULL, disconnected_at = $4
             WHERE tenant = $1 AND id = $2 AND session_id = $3 AND status = 'connected'
             RETURNING ",
            columns!()
        ),
        tenant,
        agent_id,
        session_id,
        DbTime(now)
    )
}

/// Pushes the presence of every agent connected to `replica` to `until`; returns how
/// many rows it kept alive.
pub async fn refresh(
    store: &Store,
    replica_id: &str,
    until: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        exec,
        "UPDATE agents SET connected_until = $2 WHERE replica_id = $1 AND status = 'connected'",
        replica_id,
        DbTime(until)
    )
}

/// A socket that is still open here but whose row was swept (e.g. the database was
/// unreachable for a whole TTL) takes its row back. Returns the row when it changed.
pub async fn reclaim(
    store: &Store,
    tenant: &str,
    agent_id: &str,
    session_id: &str,
    replica_id: &str,
    until: DateTime<Utc>,
) -> Result<Option<AgentRow>, sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        opt AgentRow,
        concat!(
            "UPDATE agents SET status = 'connected', replica_id = $4, connected_until = $5,
               disconnected_at = NULL
             WHERE tenant = $1 AND id = $2 AND session_id = $3 AND status = 'disconnected'
             RETURNING ",
            columns!()
        ),
        tenant,
        agent_id,
        session_id,
        replica_id,
        DbTime(until)
    )
}

/// Marks disconnected every agent whose presence ran out (its replica died or lost the
/// database). The UPDATE claims each row once, so only one replica reports it.
pub async fn sweep(store: &Store, now: DateTime<Utc>) -> Result<Vec<AgentRow>, sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        all AgentRow,
        concat!(
            "UPDATE agents SET status = 'disconnected', replica_id = NULL,
               connected_until = NULL, disconnected_at = $1
             WHERE status = 'connected' AND connected_until < $1
             RETURNING ",
            columns!()
        ),
        DbTime(now)
    )
}

pub async fn get(
    store: &Store,
    tenant: &str,
    agent_id: &str,
) -> Result<Option<AgentRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        opt AgentRow,
        concat!("SELECT ", columns!(), " FROM agents WHERE tenant = $1 AND id = $2"),
        tenant,
        agent_id
    )
}

/// Filters of `GET /api/v1/agents`.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    pub status: Option<Presence>,
    pub provider: Option<&'a str>,
    pub region: Option<&'a str>,
    pub health: Option<&'a str>,
    /// Id of the last agent of the previous page.
    pub after: Option<&'a str>,
}

/// Up to `limit` agents in id order.
pub async fn list(
    store: &Store,
    tenant: &str,
    filter: &Filter<'_>,
    limit: u32,
) -> Result<Vec<AgentRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all AgentRow,
        concat!(
            "SELECT ",
            columns!(),
            " FROM agents WHERE tenant = $1
               AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR provider = $3)
               AND ($4 IS NULL OR region = $4) AND ($5 IS NULL OR health = $5)
               AND ($6 IS NULL OR id > $6)
             ORDER BY id LIMIT $7"
        ),
        tenant,
        filter.status.map(Presence::as_str),
        filter.provider,
        filter.region,
        filter.health,
        filter.after,
        i64::from(limit)
    )
}

/// Counts over the tenant's agents.
pub async fn summary(store: &Store, tenant: &str) -> Result<AgentSummary, sqlx::Error> {
    type Group = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        i64,
        i64,
        i64,
    );
    let mut conn = store.read().await?;
    let groups: Vec<Group> = sql!(
        conn.db(),
        all Group,
        "SELECT status, health, provider, region, count(*),
                CAST(COALESCE(sum(batches_total), 0) AS BIGINT),
                CAST(COALESCE(sum(samples_total), 0) AS BIGINT),
                CAST(COALESCE(sum(rejected_total), 0) AS BIGINT)
         FROM agents WHERE tenant = $1 GROUP BY status, health, provider, region",
        tenant
    )?;
    let mut summary = AgentSummary::default();
    let unknown = || "unknown".to_string();
    for (status, health, provider, region, count, batches, samples, rejected) in groups {
        summary.total += count;
        match Presence::parse(&status) {
            Some(Presence::Connected) => summary.connected += count,
            _ => summary.disconnected += count,
        }
        *summary
            .by_health
            .entry(health.unwrap_or_else(unknown))
            .or_default() += count;
        *summary
            .by_provider
            .entry(provider.unwrap_or_else(unknown))
            .or_default() += count;
        *summary
            .by_region
            .entry(region.unwrap_or_else(unknown))
            .or_default() += count;
        summary.batches_total += batches;
        summary.samples_total += samples;
        summary.rejected_total += rejected;
    }
    Ok(summary)
}

/// Replaces the agent's configuration and bumps its version.
pub async fn set_config(
    store: &Store,
    tenant: &str,
    agent_id: &str,
    config: &Value,
) -> Result<Option<AgentRow>, sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        opt AgentRow,
        concat!(
            "UPDATE agents SET config = $3, config_version = config_version + 1
             WHERE tenant = $1 AND id = $2
             RETURNING ",
            columns!()
        ),
        tenant,
        agent_id,
        Json(config)
    )
}

pub async fn delete(
    store: &Store,
    tenant: &str,
    agent_id: &str,
) -> Result<Option<AgentRow>, sqlx::Error> {
    let mut conn = store.write().await?;
    sql!(
        conn.db(),
        opt AgentRow,
        concat!(
            "DELETE FROM agents WHERE tenant = $1 AND id = $2 RETURNING ",
            columns!()
        ),
        tenant,
        agent_id
    )
}
