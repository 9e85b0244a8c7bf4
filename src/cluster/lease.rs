//! Leader leases with fencing tokens.
//!
//! A lease is held by one replica at a time for singleton work. In Redis it is a key
//! `…lease:<name>` whose value is `<replica>|<token>`, taken with `SET NX PX` and
//! renewed or released only by compare-and-set in Lua (so a replica can never extend
//! or delete a lease that has passed to another). The fencing token grows with every
//! acquisition; its counter lives in the database so that it stays monotonic when Redis
//! restarts empty.
//!
//! A holder renews every `renew_interval`. It learns at once that it lost the lease when
//! a renewal finds another value, and it gives the lease up on its own when renewals
//! have failed for long enough that the key could be about to expire: work stops
//! *before* the lease can pass to another replica. [`LeaseGuard::lost`] fires in both
//! cases.
//!
//! Embedded mode has one process, so its leases are always available to it; they are
//! still exclusive within the process so that the same conformance tests apply.

use crate::bus::redis::timed;
use crate::sql;
use crate::store::Store;
use ::redis::Script;
use ::redis::aio::ConnectionManager;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const RENEW_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

const RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// The outcome of one attempt to take a lease.
pub enum TryAcquire {
    Acquired(LeaseGuard),
    /// Another holder has it for about this long.
    Held {
        holder: String,
        remaining: Duration,
    },
}

/// Who holds a lease, as `/api/v1/cluster` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LeaseInfo {
    pub name: String,
    /// Replica id of the holder, or null when nobody holds it.
    pub holder: Option<String>,
    /// Fencing token of the current holding.
    pub token: Option<u64>,
    /// Time left before the lease expires unless renewed.
    pub expires_in_ms: Option<u64>,
}

#[derive(Clone)]
pub enum Leases {
    Local(Arc<LocalLeases>),
    Redis(Arc<RedisLeases>),
}

impl Leases {
    pub fn local(replica_id: &str) -> Leases {
        Leases::Local(Arc::new(LocalLeases {
            replica_id: replica_id.to_string(),
            held: Mutex::new(HashMap::new()),
            next_token: Mutex::new(0),
        }))
    }

    pub fn redis(
        connection: ConnectionManager,
        store: Store,
        prefix: &str,
        replica_id: &str,
        ttl: Duration,
        renew_interval: Duration,
    ) -> Leases {
        Leases::Redis(Arc::new(RedisLeases {
            connection,
            store,
            prefix: prefix.to_string(),
            replica_id: replica_id.to_string(),
            ttl,
            renew_interval,
            renew: Script::new(RENEW_LUA),
            release: Script::new(RELEASE_LUA),
        }))
    }

    /// Tries once to take the lease `name`.
    pub async fn try_acquire(&self, name: &str) -> anyhow::Result<TryAcquire> {
        match self {
            Leases::Local(local) => Ok(local.try_acquire(name)),
            Leases::Redis(redis) => redis.clone().try_acquire(name).await,
        }
    }

    /// Who holds each of `names` now.
    pub async fn holders(&self, names: &[&str]) -> anyhow::Result<Vec<LeaseInfo>> {
        match self {
            Leases::Local(local) => Ok(local.holders(names)),
            Leases::Redis(redis) => redis.holders(names).await,
        }
    }
}

/// A held lease. Dropping it stops renewing (the lease then expires after its TTL);
/// [`LeaseGuard::release`] gives it up at once.
pub struct LeaseGuard {
    name: String,
    token: u64,
    lost: CancellationToken,
    kind: GuardKind,
}

enum GuardKind {
    Local(Arc<LocalLeases>),
    Redis {
        leases: Arc<RedisLeases>,
        value: String,
        renewer: tokio::task::JoinHandle<()>,
    },
}

impl LeaseGuard {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token: strictly greater than any earlier holding's.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Cancelled when the lease is lost (or about to be, for lack of renewal).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    pub fn is_held(&self) -> bool {
        !self.lost.is_cancelled()
    }

    /// Gives the lease up so that another replica can take it at once.
    pub async fn release(self) {
        self.lost.cancel();
        if let GuardKind::Redis {
            leases,
            value,
            renewer,
        } = &self.kind
        {
            renewer.abort();
            let key = leases.key(&self.name);
            let mut connection = leases.connection.clone();
            let mut invocation = leases.release.key(key);
            invocation.arg(value.as_str());
            if let Err(e) = timed(invocation.invoke_async::<i64>(&mut connection)).await {
                tracing::warn!(lease = %self.name, error = %e, "could not release lease; it expires on its own");
            }
        }
        // Drop releases a local lease.
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.lost.cancel();
        match &self.kind {
            GuardKind::Local(local) => local.release(&self.name, self.token),
            GuardKind::Redis { renewer, .. } => renewer.abort(),
        }
    }
}

pub struct LocalLeases {
    replica_id: String,
    // std Mutex: only in-memory updates, never held across an await.
    held: Mutex<HashMap<String, u64>>,
    next_token: Mutex<u64>,
}

impl LocalLeases {
    fn try_acquire(self: &Arc<Self>, name: &str) -> TryAcquire {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.contains_key(name) {
            return TryAcquire::Held {
                holder: self.replica_id.clone(),
                remaining: Duration::from_millis(100),
            };
        }
        let token = {
            let mut next = self.next_token.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        held.insert(name.to_string(), token);
        TryAcquire::Acquired(LeaseGuard {
            name: name.to_string(),
            token,
            lost: CancellationToken::new(),
            kind: GuardKind::Local(self.clone()),
        })
    }

    fn release(&self, name: &str, token: u64) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.get(name) == Some(&token) {
            held.remove(name);
        }
    }

    fn holders(&self, names: &[&str]) -> Vec<LeaseInfo> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        names
            .iter()
            .map(|name| {
                let token = held.get(*name).copied();
                LeaseInfo {
                    name: name.to_string(),
                    holder: token.map(|_| self.replica_id.clone()),
                    token,
                    expires_in_ms: None,
                }
            })
            .collect()
    }
}

pub struct RedisLeases {
    connection: ConnectionManager,
    store: Store,
    prefix: String,
    replica_id: String,
    ttl: Duration,
    renew_interval: Duration,
    renew: Script,
    release: Script,
}

impl RedisLeases {
    fn key(&self, name: &str) -> String {
        format!("{}lease:{name}", self.prefix)
    }

    async fn try_acquire(self: Arc<Self>, name: &str) -> anyhow::Result<TryAcquire> {
        let key = self.key(name);
        let mut connection = self.connection.clone();
        // Look first, so that the common case (someone else holds it) costs no write.
        let (current, pttl): (Option<String>, i64) = timed(
            ::redis::pipe()
                .get(&key)
                .pttl(&key)
                .query_async(&mut connection),
        )
        .await?;
        if let Some(current) = current {
            return Ok(TryAcquire::Held {
                holder: current.split('|').next().unwrap_or_default().to_string(),
                remaining: Duration::from_millis(pttl.max(0) as u64),
            });
        }
        // Free: take a fencing token, then race for the key. A token taken by a loser is
        // skipped, which keeps tokens increasing.
        let token = next_fence(&self.store, name).await?;
        let value = format!("{}|{token}", self.replica_id);
        let ttl_ms = self.ttl.as_millis() as u64;
        let set: Option<String> = timed(
            ::redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut connection),
        )
        .await?;
        if set.is_none() {
            return Ok(TryAcquire::Held {
                holder: String::new(),
                remaining: self.ttl,
            });
        }
        let acquired_at = Instant::now();
        let lost = CancellationToken::new();
        let renewer = tokio::spawn(self.clone().renew_until_lost(
            name.to_string(),
            value.clone(),
            acquired_at,
            lost.clone(),
        ));
        tracing::info!(lease = name, token, "acquired lease");
        Ok(TryAcquire::Acquired(LeaseGuard {
            name: name.to_string(),
            token,
            lost,
            kind: GuardKind::Redis {
                leases: self,
                value,
                renewer,
            },
        }))
    }

    /// Renews every `renew_interval` until the lease is found taken, or renewals have
    /// failed for so long that the key may expire within one more interval.
    async fn renew_until_lost(
        self: Arc<Self>,
        name: String,
        value: String,
        acquired_at: Instant,
        lost: CancellationToken,
    ) {
        let key = self.key(&name);
        let ttl_ms = self.ttl.as_millis() as u64;
        // The key's expiry, as far as we can know it, is never later than `ttl` after we
        // sent the last successful command; stop one renew interval before that.
        let mut safe_until = acquired_at + self.ttl.saturating_sub(self.renew_interval);
        let mut next = acquired_at + self.renew_interval;
        loop {
            tokio::select! {
                _ = lost.cancelled() => return,
                _ = tokio::time::sleep_until(next.min(safe_until)) => {}
            }
            if Instant::now() >= safe_until {
                tracing::warn!(lease = %name, "could not renew lease in time; giving it up");
                lost.cancel();
                return;
            }
            let sent_at = Instant::now();
            let mut connection = self.connection.clone();
            let mut invocation = self.renew.key(&key);
            invocation.arg(&value).arg(ttl_ms);
            // A renewal that hangs (Redis unreachable) must not outlive the safe window.
            let renewed = tokio::select! {
                result = timed(invocation.invoke_async::<i64>(&mut connection)) => result,
                _ = tokio::time::sleep_until(safe_until) => {
                    tracing::warn!(lease = %name, "could not renew lease in time; giving it up");
                    lost.cancel();
                    return;
                }
            };
            match renewed {
                Ok(1) => {
                    safe_until = sent_at + self.ttl.saturating_sub(self.renew_interval);
                    next = sent_at + self.renew_interval;
                }
                Ok(_) => {
                    tracing::warn!(lease = %name, "lease was taken by another replica");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = %name, error = %e, "lease renewal failed; retrying");
                    next = Instant::now() + Duration::from_millis(500);
                }
            }
        }
    }

    async fn holders(&self, names: &[&str]) -> anyhow::Result<Vec<LeaseInfo>> {
        let mut pipe = ::redis::pipe();
        for name in names {
            let key = self.key(name);
            pipe.get(&key).pttl(key);
        }
        let mut connection = self.connection.clone();
        let values: Vec<(Option<String>, i64)> = {
            let flat: Vec<::redis::Value> = timed(pipe.query_async(&mut connection)).await?;
            flat.chunks(2)
                .map(|pair| {
                    let value = match &pair[0] {
                        ::redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                        ::redis::Value::SimpleString(s) => Some(s.clone()),
                        _ => None,
                    };
                    let pttl = match pair.get(1) {
                        Some(::redis::Value::Int(i)) => *i,
                        _ => -2,
                    };
                    (value, pttl)
                })
                .collect()
        };
        Ok(names
            .iter()
            .zip(values)
            .map(|(name, (value, pttl))| {
                let (holder, token) = match value.as_deref().and_then(|v| v.rsplit_once('|')) {
                    Some((holder, token)) => (Some(holder.to_string()), token.parse().ok()),
                    None => (None, None),
                };
                LeaseInfo {
                    name: name.to_string(),
                    holder,
                    token,
                    expires_in_ms: (pttl >= 0).then_some(pttl as u64),
                }
            })
            .collect())
    }
}

/// Increments and returns the fencing counter of lease `name`.
async fn next_fence(store: &Store, name: &str) -> anyhow::Result<u64> {
    let mut conn = store.write().await?;
    let fence: i64 = sql!(
        conn.db(),
        scalar i64,
        "INSERT INTO lease_fences (tenant, name, fence) VALUES ('*', $1, 1)
         ON CONFLICT (tenant, name) DO UPDATE SET fence = lease_fences.fence + 1
         RETURNING fence",
        name
    )?;
    Ok(fence as u64)
}

/// Runs singleton work while holding lease `name`, on whichever replica gets it.
///
/// Loops until `shutdown`: waits for the lease, then calls `work` with a token that is
/// cancelled when the lease is lost or the process stops; `work` must return soon after
/// that. The lease is then released so another replica can take over at once.
pub async fn run_under_lease<F, Fut>(
    leases: Leases,
    name: &'static str,
    shutdown: CancellationToken,
    mut work: F,
) where
    F: FnMut(LeaseContext) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let wait = match leases.try_acquire(name).await {
            Ok(TryAcquire::Acquired(guard)) => {
                let stop = shutdown.child_token();
                let lost = guard.lost();
                let context = LeaseContext {
                    token: guard.token(),
                    stop: stop.clone(),
                };
                let watcher = {
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        lost.cancelled().await;
                        stop.cancel();
                    })
                };
                work(context).await;
                watcher.abort();
                guard.release().await;
                Duration::from_millis(100)
            }
            // Poll at least every second, so a released lease is taken over at once and
            // an expired one within the TTL.
            Ok(TryAcquire::Held { remaining, .. }) => {
                (remaining + Duration::from_millis(5)).min(Duration::from_secs(1))
            }
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "cannot contend for lease");
                Duration::from_secs(1)
            }
        };
        let jitter = Duration::from_millis(rand::random::<u64>() % 50);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait + jitter) => {}
        }
    }
}

/// What singleton work gets while it holds its lease.
#[derive(Clone)]
pub struct LeaseContext {
    /// Fencing token of this holding.
    pub token: u64,
    /// Cancelled when the work must stop: lease lost, or shutdown.
    pub stop: CancellationToken,
}
