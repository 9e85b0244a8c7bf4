//! Revoked tokens (`jti`), refused on every replica from the moment the revocation is
//! answered.
//!
//! The database is the truth. Cluster mode also writes each revocation to Redis
//! (`…revoked:<tenant>:<jti>`, expiring with the token), and every authenticated request
//! checks Redis, so a revocation made through one replica holds on all of them at once.
//! A marker key records that Redis holds the full list; when it is missing (Redis
//! restarted empty), the check falls back to the database and the list is loaded again.
//! Embedded mode keeps the list in memory, loaded from SQLite at start-up.

use crate::bus::redis::timed;
use crate::sql;
use crate::store::{DbTime, Store};
use ::redis::aio::ConnectionManager;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct Revocations {
    store: Store,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    // std RwLock: in-memory only, never held across an await.
    Local(Arc<RwLock<HashSet<(String, String)>>>),
    Redis {
        connection: ConnectionManager,
        prefix: String,
    },
}

impl Revocations {
    pub fn local(store: Store) -> Revocations {
        Revocations {
            store,
            backend: Backend::Local(Arc::default()),
        }
    }

    pub fn redis(store: Store, connection: ConnectionManager, prefix: &str) -> Revocations {
        Revocations {
            store,
            backend: Backend::Redis {
                connection,
                prefix: prefix.to_string(),
            },
        }
    }

    fn key(prefix: &str, tenant: &str, jti: &str) -> String {
        format!("{prefix}revoked:{tenant}:{jti}")
    }

    fn marker(prefix: &str) -> String {
        format!("{prefix}revoked:loaded")
    }

    /// Records a revocation durably, then in the fast path.
    pub async fn revoke(
        &self,
        tenant: &str,
        jti: &str,
        revoked_by: &str,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        let mut conn = self.store.write().await?;
        sql!(
            conn.db(),
            exec,
            "INSERT INTO revoked_tokens (tenant, jti, revoked_by, revoked_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant, jti) DO UPDATE SET expires_at = excluded.expires_at",
            tenant,
            jti,
            revoked_by,
            DbTime(now),
            DbTime(expires_at)
        )?;
        drop(conn);
        match &self.backend {
            Backend::Local(set) => {
                set.write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((tenant.to_string(), jti.to_string()));
            }
            Backend::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let ttl_ms = (expires_at - now).num_milliseconds().max(1000);
                timed(
                    ::redis::cmd("SET")
                        .arg(Self::key(prefix, tenant, jti))
                        .arg(1)
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async::<()>(&mut connection),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Whether `jti` of `tenant` is revoked.
    pub async fn is_revoked(&self, tenant: &str, jti: &str) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Local(set) => Ok(set
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&(tenant.to_string(), jti.to_string()))),
            Backend::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let answer: Result<(bool, bool), _> = timed(
                    ::redis::pipe()
                        .exists(Self::marker(prefix))
                        .exists(Self::key(prefix, tenant, jti))
                        .query_async(&mut connection),
                )
                .await;
                match answer {
                    Ok((true, revoked)) => Ok(revoked),
                    Ok((false, _)) => {
                        // Redis lost the list: answer from the database, and reload it.
                        let this = self.clone();
                        tokio::spawn(async move {
                            if let Err(e) = this.load().await {
                                tracing::warn!(error = %e, "could not reload revocations into Redis");
                            }
                        });
                        self.is_revoked_in_store(tenant, jti).await
                    }
                    Err(_) => self.is_revoked_in_store(tenant, jti).await,
                }
            }
        }
    }

    async fn is_revoked_in_store(&self, tenant: &str, jti: &str) -> anyhow::Result<bool> {
        let mut conn = self.store.read().await?;
        let found: Option<i64> = sql!(
            conn.db(),
            scalar_opt i64,
            "SELECT 1 FROM revoked_tokens WHERE tenant = $1 AND jti = $2 AND expires_at > $3",
            tenant,
            jti,
            DbTime(Utc::now())
        )?;
        Ok(found.is_some())
    }

    /// Loads every unexpired revocation from the database into the fast path.
    pub async fn load(&self) -> anyhow::Result<()> {
        let now = Utc::now();
        let mut conn = self.store.read().await?;
        let rows: Vec<(String, String, DbTime)> = sql!(
            conn.db(),
            all(String, String, DbTime),
            "SELECT tenant, jti, expires_at FROM revoked_tokens WHERE expires_at > $1",
            DbTime(now)
        )?;
        drop(conn);
        match &self.backend {
            Backend::Local(set) => {
                let mut set = set.write().unwrap_or_else(|p| p.into_inner());
                set.extend(rows.into_iter().map(|(tenant, jti, _)| (tenant, jti)));
            }
            Backend::Redis { connection, prefix } => {
                let mut pipe = ::redis::pipe();
                for (tenant, jti, expires_at) in &rows {
                    let ttl_ms = (expires_at.0 - now).num_milliseconds().max(1000);
                    pipe.cmd("SET")
                        .arg(Self::key(prefix, tenant, jti))
                        .arg(1)
                        .arg("PX")
                        .arg(ttl_ms)
                        .ignore();
                }
                pipe.cmd("SET").arg(Self::marker(prefix)).arg(1).ignore();
                let mut connection = connection.clone();
                timed(pipe.query_async::<()>(&mut connection)).await?;
            }
        }
        Ok(())
    }

    /// Deletes revocations of tokens that have expired anyway.
    pub async fn purge_expired(&self) -> anyhow::Result<u64> {
        let mut conn = self.store.write().await?;
        Ok(sql!(
            conn.db(),
            exec,
            "DELETE FROM revoked_tokens WHERE expires_at <= $1",
            DbTime(Utc::now())
        )?)
    }
}
