//! The Store seam: durable state, in SQLite (embedded mode) or PostgreSQL (cluster mode).
//!
//! Most queries are written once, in SQL that both engines accept (`$1` placeholders,
//! `ON CONFLICT … DO UPDATE`, `RETURNING`), and run through the [`sql!`](crate::sql)
//! macro, which sends the same text and bindings to whichever pool this process has.
//! Values whose natural column type differs between the engines go through a type that
//! maps itself: [`DbTime`] is `timestamptz` in PostgreSQL and integer milliseconds in
//! SQLite (SQLite has no time type, and integer milliseconds compare and index well).
//! Where the engines really differ (bulk loads, `FOR UPDATE SKIP LOCKED`, partitions),
//! the repository matches on [`Db`] itself; nothing outside `store`, `bus` and `cluster`
//! asks which mode it runs in.
//!
//! SQLite gets one writer connection and a few readers: SQLite serialises writers anyway,
//! and one writer means a transaction never waits on another connection of ours for the
//! database lock (WAL lets the readers go on meanwhile).

pub mod samples;
mod time;

pub use time::DbTime;

use crate::config::{DatabaseConfig, Mode};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{
    Connection, PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction,
};
use std::str::FromStr;
use std::time::Duration;

static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Handle to the database; cheap to clone (pools are reference-counted).
#[derive(Clone, Debug)]
pub enum Store {
    Postgres(PgPool),
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
}

/// A connection taken from the pool for a few statements.
pub enum Conn {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

/// A transaction: commit it, or it rolls back when dropped.
pub enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// A borrowed connection of either engine: what [`sql!`](crate::sql) runs statements on.
pub enum Db<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

impl Conn {
    pub fn db(&mut self) -> Db<'_> {
        match self {
            Conn::Postgres(c) => Db::Postgres(c),
            Conn::Sqlite(c) => Db::Sqlite(c),
        }
    }
}

impl Tx {
    pub fn db(&mut self) -> Db<'_> {
        match self {
            Tx::Postgres(t) => Db::Postgres(t),
            Tx::Sqlite(t) => Db::Sqlite(t),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(t) => t.commit().await,
            Tx::Sqlite(t) => t.commit().await,
        }
    }
}

impl Store {
    /// Opens the pools for `mode`. Embedded mode creates the SQLite file (and its folder)
    /// when missing.
    pub async fn connect(mode: &Mode, config: &DatabaseConfig) -> anyhow::Result<Store> {
        match mode {
            Mode::Cluster { postgres_url, .. } => {
                let options = PgConnectOptions::from_str(postgres_url)?.application_name("lookout");
                let pool = PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .min_connections(1)
                    .acquire_timeout(config.acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
                Ok(Store::Postgres(pool))
            }
            Mode::Embedded { sqlite_path } => {
                if let Some(dir) = sqlite_path.parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        anyhow::anyhow!("cannot create data folder {}: {e}", dir.display())
                    })?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(sqlite_path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true);
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(config.acquire_timeout)
                    .connect_with(options.clone())
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("cannot open SQLite file {}: {e}", sqlite_path.display())
                    })?;
                let reader = SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(config.acquire_timeout)
                    .connect_lazy_with(options.read_only(true));
                Ok(Store::Sqlite { writer, reader })
            }
        }
    }

    /// Brings the schema up to date. Safe to run from several replicas at once: the
    /// PostgreSQL migrator serialises them with an advisory lock.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Store::Postgres(pool) => PG_MIGRATIONS.run(pool).await,
            Store::Sqlite { writer, .. } => SQLITE_MIGRATIONS.run(writer).await,
        }
    }

    /// A connection for reading.
    pub async fn read(&self) -> Result<Conn, sqlx::Error> {
        match self {
            Store::Postgres(pool) => pool.acquire().await.map(Conn::Postgres),
            Store::Sqlite { reader, .. } => reader.acquire().await.map(Conn::Sqlite),
        }
    }

    /// A connection for writing outside a transaction. Do not hold it while taking another
    /// write connection or transaction: in embedded mode there is only one.
    pub async fn write(&self) -> Result<Conn, sqlx::Error> {
        match self {
            Store::Postgres(pool) => pool.acquire().await.map(Conn::Postgres),
            Store::Sqlite { writer, .. } => writer.acquire().await.map(Conn::Sqlite),
        }
    }

    /// Starts a transaction. SQLite's takes the write lock at once (`BEGIN IMMEDIATE`),
    /// so a transaction that reads and then writes never fails half-way on a lock upgrade.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self {
            Store::Postgres(pool) => pool.begin().await.map(Tx::Postgres),
            Store::Sqlite { writer, .. } => {
                writer.begin_with("BEGIN IMMEDIATE").await.map(Tx::Sqlite)
            }
        }
    }

    /// Answers when the database does; used by `/readyz`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Store::Postgres(pool) => pool.acquire().await?.ping().await,
            Store::Sqlite { writer, .. } => writer.acquire().await?.ping().await,
        }
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match self {
            Store::Postgres(pool) => pool.close().await,
            Store::Sqlite { writer, reader } => {
                reader.close().await;
                writer.close().await;
            }
        }
    }
}

/// Whether an error means the database could not be reached (as opposed to a statement
/// that failed): such errors become 503 at the HTTP edge.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// Whether an error is a unique-constraint violation, on either engine.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// Runs one SQL statement, written once, on whichever engine `$db` (a [`Db`]) is.
///
/// ```ignore
/// let rows: Vec<Row> = sql!(conn.db(), all Row, "SELECT … WHERE tenant = $1", tenant)?;
/// let row: Option<Row> = sql!(conn.db(), opt Row, "…", a, b)?;
/// let row: Row = sql!(tx.db(), one Row, "…")?;
/// let n: i64 = sql!(conn.db(), scalar i64, "SELECT count(*) …")?;
/// let n: Option<i64> = sql!(conn.db(), scalar_opt i64, "…")?;
/// let affected: u64 = sql!(tx.db(), exec, "UPDATE …", a)?;
/// ```
/// Each binding must encode on both engines (text, integers, floats, bools, `Uuid`,
/// `sqlx::types::Json`, [`DbTime`], and `Option`s of these).
#[macro_export]
macro_rules! sql {
    ($db:expr, all $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::sql!(@rows $db, fetch_all, $ty, $sql $(, $arg)*)
    };
    ($db:expr, one $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::sql!(@rows $db, fetch_one, $ty, $sql $(, $arg)*)
    };
    ($db:expr, opt $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::sql!(@rows $db, fetch_optional, $ty, $sql $(, $arg)*)
    };
    ($db:expr, scalar $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::sql!(@scalar $db, fetch_one, $ty, $sql $(, $arg)*)
    };
    ($db:expr, scalar_opt $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::sql!(@scalar $db, fetch_optional, $ty, $sql $(, $arg)*)
    };
    ($db:expr, exec, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $db {
            $crate::store::Db::Postgres(conn) => ::sqlx::query($sql)$(.bind($arg))*
                .execute(&mut *conn).await.map(|r| r.rows_affected()),
            $crate::store::Db::Sqlite(conn) => ::sqlx::query($sql)$(.bind($arg))*
                .execute(&mut *conn).await.map(|r| r.rows_affected()),
        }
    };
    (@rows $db:expr, $method:ident, $ty:ty, $sql:expr $(, $arg:expr)*) => {
        match $db {
            $crate::store::Db::Postgres(conn) => ::sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*
                .$method(&mut *conn).await,
            $crate::store::Db::Sqlite(conn) => ::sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*
                .$method(&mut *conn).await,
        }
    };
    (@scalar $db:expr, $method:ident, $ty:ty, $sql:expr $(, $arg:expr)*) => {
        match $db {
            $crate::store::Db::Postgres(conn) => ::sqlx::query_scalar::<_, $ty>($sql)$(.bind($arg))*
                .$method(&mut *conn).await,
            $crate::store::Db::Sqlite(conn) => ::sqlx::query_scalar::<_, $ty>($sql)$(.bind($arg))*
                .$method(&mut *conn).await,
        }
    };
}
