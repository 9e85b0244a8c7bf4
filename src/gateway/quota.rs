//! Connection quotas per subject and per tenant, counted across replicas (4006).
//!
//! Cluster mode keeps one sorted set per subject and per tenant in Redis, each member a
//! connection with a lease expiry as its score: a replica renews its connections' leases
//! periodically, so the connections of a killed replica stop counting once their lease
//! runs out instead of holding the quota forever. Embedded mode counts in process.
//! If Redis does not answer, connections are let in (the quota protects capacity; it
//! must not take the dashboards down with Redis).

use crate::auth::Identity;
use crate::config::RealtimeConfig;
use redis::Script;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a connection counts without being renewed.
const LEASE: Duration = Duration::from_secs(30);
/// How often a replica renews its connections' leases.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

const ACQUIRE_LUA: &str = r#"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 2 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 0
"#;

/// Which quota refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Subject,
    Tenant,
}

pub enum Quotas {
    Local {
        max_subject: u32,
        max_tenant: u32,
        counts: Mutex<HashMap<String, u32>>,
    },
    Redis(Arc<RedisQuotas>),
}

pub struct RedisQuotas {
    url: String,
    prefix: String,
    max_subject: u32,
    max_tenant: u32,
    connection: OnceCell<ConnectionManager>,
    script: Script,
    /// This replica's connections: member → (subject key, tenant key).
    local: Mutex<HashMap<String, (String, String)>>,
}

/// Holds one connection's place in the quotas; released on drop.
pub struct QuotaGuard {
    quotas: Arc<Quotas>,
    keys: Vec<String>,
    member: String,
}

impl Quotas {
    pub fn local(config: &RealtimeConfig) -> Arc<Quotas> {
        Arc::new(Quotas::Local {
            max_subject: config.max_connections_per_subject,
            max_tenant: config.max_connections_per_tenant,
            counts: Mutex::new(HashMap::new()),
        })
    }

    pub fn redis(config: &RealtimeConfig, url: &str, prefix: &str) -> Arc<Quotas> {
        Arc::new(Quotas::Redis(Arc::new(RedisQuotas {
            url: url.to_string(),
            prefix: prefix.to_string(),
            max_subject: config.max_connections_per_subject,
            max_tenant: config.max_connections_per_tenant,
            connection: OnceCell::new(),
            script: Script::new(ACQUIRE_LUA),
            local: Mutex::new(HashMap::new()),
        })))
    }

    /// Counts one more connection of `identity`, unless a quota is full.
    pub async fn acquire(
        self: &Arc<Self>,
        identity: &Identity,
        member: &str,
    ) -> Result<QuotaGuard, Exceeded> {
        let subject_key = format!("s\u{1f}{}\u{1f}{}", identity.tenant, identity.sub);
        let tenant_key = format!("t\u{1f}{}", identity.tenant);
        match &**self {
            Quotas::Local {
                max_subject,
                max_tenant,
                counts,
            } => {
                let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
                if counts.get(&subject_key).copied().unwrap_or(0) >= *max_subject {
                    return Err(Exceeded::Subject);
                }
                if counts.get(&tenant_key).copied().unwrap_or(0) >= *max_tenant {
                    return Err(Exceeded::Tenant);
                }
                *counts.entry(subject_key.clone()).or_default() += 1;
                *counts.entry(tenant_key.clone()).or_default() += 1;
                Ok(QuotaGuard {
                    quotas: self.clone(),
                    keys: vec![subject_key, tenant_key],
                    member: member.to_string(),
                })
            }
            Quotas::Redis(redis) => {
                let (subject_key, tenant_key) = redis.keys(identity);
                let outcome = redis.try_acquire(&subject_key, &tenant_key, member).await;
                match outcome {
                    Ok(1) => return Err(Exceeded::Subject),
                    Ok(2) => return Err(Exceeded::Tenant),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "connection quotas unavailable; letting the connection in")
                    }
                }
                redis
                    .local
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        member.to_string(),
                        (subject_key.clone(), tenant_key.clone()),
                    );
                Ok(QuotaGuard {
                    quotas: self.clone(),
                    keys: vec![subject_key, tenant_key],
                    member: member.to_string(),
                })
            }
        }
    }

    /// Renews this replica's connection leases until `shutdown` (cluster mode).
    pub async fn run_renewal(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let Quotas::Redis(redis) = &*self else {
            return;
        };
        let mut tick = tokio::time::interval(RENEW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = redis.renew().await {
                tracing::warn!(error = %e, "cannot renew connection quota leases");
            }
        }
    }
}

impl RedisQuotas {
    fn keys(&self, identity: &Identity) -> (String, String) {
        // One hash tag per tenant so that both keys live on one Redis Cluster slot.
        let tag = format!("{}rt:quota:{{{}}}", self.prefix, identity.tenant);
        (
            format!("{tag}:subject:{}", identity.sub),
            format!("{tag}:tenant"),
        )
    }

    async fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        self.connection
            .get_or_try_init(|| async {
                let client = redis::Client::open(self.url.as_str())?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                redis::aio::ConnectionManager::new_with_config(client, config).await
            })
            .await
            .cloned()
    }

    async fn try_acquire(
        &self,
        subject_key: &str,
        tenant_key: &str,
        member: &str,
    ) -> Result<i64, redis::RedisError> {
        let mut connection = self.connection().await?;
        let now = chrono::Utc::now().timestamp_millis();
        self.script
            .key(subject_key)
            .key(tenant_key)
            .arg(now)
            .arg(now + LEASE.as_millis() as i64)
            .arg(member)
            .arg(self.max_subject)
            .arg(self.max_tenant)
            .arg(LEASE.as_millis() as i64 * 2)
            .invoke_async(&mut connection)
            .await
    }

    async fn renew(&self) -> Result<(), redis::RedisError> {
        let members: Vec<(String, (String, String))> = self
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(m, k)| (m.clone(), k.clone()))
            .collect();
        if members.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let expiry = chrono::Utc::now().timestamp_millis() + LEASE.as_millis() as i64;
        for chunk in members.chunks(1000) {
            let mut pipe = redis::pipe();
            for (member, (subject_key, tenant_key)) in chunk {
                // Re-adding (not XX) also restores the counts after Redis restarted empty.
                pipe.zadd(subject_key, member, expiry).ignore();
                pipe.zadd(tenant_key, member, expiry).ignore();
                pipe.pexpire(subject_key, LEASE.as_millis() as i64 * 2)
                    .ignore();
                pipe.pexpire(tenant_key, LEASE.as_millis() as i64 * 2)
                    .ignore();
            }
            pipe.query_async::<()>(&mut connection).await?;
        }
        Ok(())
    }

    async fn release(&self, keys: &[String], member: &str) -> Result<(), redis::RedisError> {
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(member);
        let mut connection = self.connection().await?;
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.zrem(key, member).ignore();
        }
        pipe.query_async::<()>(&mut connection).await
    }
}

impl Drop for QuotaGuard {
    fn drop(&mut self) {
        match &*self.quotas {
            Quotas::Local { counts, .. } => {
                let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
                for key in &self.keys {
                    if let Some(count) = counts.get_mut(key) {
                        *count = count.saturating_sub(1);
                        if *count == 0 {
                            counts.remove(key);
                        }
                    }
                }
            }
            Quotas::Redis(redis) => {
                let redis = redis.clone();
                let keys = std::mem::take(&mut self.keys);
                let member = std::mem::take(&mut self.member);
                // Without a runtime (process ending) the lease expires on its own.
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        if let Err(e) = redis.release(&keys, &member).await {
                            tracing::debug!(error = %e, "cannot release a connection quota");
                        }
                    });
                }
            }
        }
    }
}
