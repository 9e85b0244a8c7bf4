//! Which replicas are alive. Each replica announces itself every heartbeat interval
//! with a time-to-live of one lease TTL; one that stops (or is killed) drops out of
//! `GET /api/v1/cluster` within that time.
//!
//! Redis keeps a sorted set `…replicas` (member: replica id, score: expiry in ms, by
//! Redis' own clock so replicas' clocks need not agree) and one key per replica with its
//! details.

use crate::bus::redis::timed;
use ::redis::Script;
use ::redis::aio::ConnectionManager;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const HEARTBEAT_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return now
"#;

const LIST_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local out = {}
for _, id in ipairs(ids) do
  local info = redis.call('GET', ARGV[1] .. id)
  if info then table.insert(out, info) end
end
return out
"#;

/// One replica as the registry shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaInfo {
    pub id: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// Address the replica listens on.
    pub address: String,
    /// When it last announced itself.
    #[serde(default)]
    pub last_seen: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub enum Registry {
    Local(Arc<ReplicaInfo>),
    Redis(Arc<RedisRegistry>),
}

pub struct RedisRegistry {
    connection: ConnectionManager,
    prefix: String,
    me: ReplicaInfo,
    ttl: Duration,
    heartbeat: Script,
    list: Script,
}

impl Registry {
    pub fn local(me: ReplicaInfo) -> Registry {
        Registry::Local(Arc::new(me))
    }

    pub fn redis(
        connection: ConnectionManager,
        prefix: &str,
        me: ReplicaInfo,
        ttl: Duration,
    ) -> Registry {
        Registry::Redis(Arc::new(RedisRegistry {
            connection,
            prefix: prefix.to_string(),
            me,
            ttl,
            heartbeat: Script::new(HEARTBEAT_LUA),
            list: Script::new(LIST_LUA),
        }))
    }

    pub fn me(&self) -> &ReplicaInfo {
        match self {
            Registry::Local(me) => me,
            Registry::Redis(r) => &r.me,
        }
    }

    /// Announces this replica every `interval` until `shutdown`, then withdraws it.
    pub async fn run_heartbeat(self, interval: Duration, shutdown: CancellationToken) {
        let Registry::Redis(registry) = self else {
            return;
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {
                    if let Err(e) = registry.announce().await {
                        tracing::warn!(error = %e, "replica heartbeat failed");
                    }
                }
            }
        }
        if let Err(e) = registry.withdraw().await {
            tracing::warn!(error = %e, "could not withdraw replica from the registry");
        }
    }

    /// Replicas alive now, this one included.
    pub async fn replicas(&self) -> anyhow::Result<Vec<ReplicaInfo>> {
        match self {
            Registry::Local(me) => {
                let mut me = (**me).clone();
                me.last_seen = Some(Utc::now());
                Ok(vec![me])
            }
            Registry::Redis(registry) => registry.replicas().await,
        }
    }
}

impl RedisRegistry {
    fn set_key(&self) -> String {
        format!("{}replicas", self.prefix)
    }

    fn info_prefix(&self) -> String {
        format!("{}replica:", self.prefix)
    }

    async fn announce(&self) -> anyhow::Result<()> {
        let mut me = self.me.clone();
        me.last_seen = Some(Utc::now());
        let mut connection = self.connection.clone();
        let mut invocation = self.heartbeat.key(self.set_key());
        invocation
            .key(format!("{}{}", self.info_prefix(), me.id))
            .arg(&me.id)
            .arg(self.ttl.as_millis() as u64)
            .arg(serde_json::to_string(&me)?);
        timed(invocation.invoke_async::<i64>(&mut connection)).await?;
        Ok(())
    }

    async fn withdraw(&self) -> anyhow::Result<()> {
        let mut connection = self.connection.clone();
        timed(
            ::redis::pipe()
                .zrem(self.set_key(), &self.me.id)
                .del(format!("{}{}", self.info_prefix(), self.me.id))
                .query_async::<()>(&mut connection),
        )
        .await?;
        Ok(())
    }

    async fn replicas(&self) -> anyhow::Result<Vec<ReplicaInfo>> {
        let mut connection = self.connection.clone();
        let mut invocation = self.list.key(self.set_key());
        invocation.arg(self.info_prefix());
        let infos: Vec<String> = timed(invocation.invoke_async(&mut connection)).await?;
        let mut replicas: Vec<ReplicaInfo> = infos
            .iter()
            .filter_map(|info| serde_json::from_str(info).ok())
            .collect();
        replicas.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(replicas)
    }
}
