//! PostgreSQL: the connection pool, migrations, and (for local runs and tests) a throwaway server.

#[cfg(test)]
mod landed;
pub mod local;
pub mod tls;

use std::time::Duration;

/// `ToSql` for an enum stored as its `as_str()` text (a TEXT column with a CHECK of the values).
macro_rules! text_enum_to_sql {
    ($t:ty) => {
        impl tokio_postgres::types::ToSql for $t {
            fn to_sql(
                &self,
                ty: &tokio_postgres::types::Type,
                out: &mut bytes::BytesMut,
            ) -> std::result::Result<
                tokio_postgres::types::IsNull,
                Box<dyn std::error::Error + Sync + Send>,
            > {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <&str as tokio_postgres::types::ToSql>::accepts(ty)
            }

            tokio_postgres::types::to_sql_checked!();
        }
    };
}
pub(crate) use text_enum_to_sql;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

pub use tls::CaSource;
use tls::Connector;

mod embedded {
    refinery::embed_migrations!("migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {}", pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
}

impl DbError {
    /// The SQLSTATE, when PostgreSQL itself answered.
    pub fn sqlstate(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            DbError::Postgres(e) => e.code(),
            DbError::Pool(deadpool_postgres::PoolError::Backend(e)) => e.code(),
            _ => None,
        }
    }

    /// The constraint a violation names, when it is one.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            DbError::Postgres(e) => e.as_db_error().and_then(|d| d.constraint()),
            DbError::Pool(deadpool_postgres::PoolError::Backend(e)) => {
                e.as_db_error().and_then(|d| d.constraint())
            }
            _ => None,
        }
    }
}

/// tokio-postgres says only "db error" for what the server reported; the server's words are in
/// the source.
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// How the pool connects. `Default`: 4 connections, the embedded RDS CA bundle, 5 s connect
/// timeout, no statement timeout.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_size: usize,
    /// The CAs trusted for TLS (used only when TLS is: a remote server, or `sslmode=require`).
    pub ca: CaSource,
    /// Used when the URL sets no `connect_timeout`.
    pub connect_timeout: Duration,
    /// The session's `statement_timeout` (zero: none). Migrations and admin connections have
    /// none: an index build on a large table may take long, and runs once.
    pub statement_timeout: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 4,
            ca: CaSource::Embedded,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: None,
        }
    }
}

/// Parses `url` and settles TLS, timeouts and keepalives. Errors name `DATABASE_URL` (the
/// password never appears: tokio-postgres does not echo it).
fn prepare(
    url: &str,
    ca: &CaSource,
    connect_timeout: Duration,
    statement_timeout: Option<Duration>,
) -> Result<(tokio_postgres::Config, Connector), DbError> {
    let mut pg: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| DbError::Config(format!("DATABASE_URL: {e}")))?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(connect_timeout);
    }
    let options = session_options(statement_timeout, pg.get_options());
    pg.options(&options);
    // A NAT or a frozen Lambda instance silently drops idle connections; keepalives notice.
    pg.keepalives(true);
    if pg.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        pg.keepalives_idle(Duration::from_secs(30));
        pg.keepalives_interval(Duration::from_secs(10));
        pg.keepalives_retries(3);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("audience-sync");
    }
    let connector = tls::connector(&mut pg, ca)?;
    Ok((pg, connector))
}

/// How long a statement waits for a row or table lock before it fails (`lock_timeout`), and how
/// long a session may sit idle inside a transaction (a Lambda frozen mid-transaction, a killed
/// client) before the server ends it and frees its locks.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The session settings every connection starts with: nothing waits or runs without bound (a
/// heavy preview would otherwise outlive its Lambda and keep its backend busy). No JIT: our
/// statements are index probes and short scans whose estimates (a change log's, a temporary
/// table's) can be far too high; JIT then compiled for ~150 ms to save nothing (measured at
/// 1,000,000 people: a change-driven segment refresh with nothing to do spent 153 ms of its 270
/// in JIT). Options the URL sets come last, so they win.
fn session_options(statement_timeout: Option<Duration>, url_options: Option<&str>) -> String {
    let ms = |d: Duration| d.as_millis();
    let mut options = format!(
        "-c jit=off -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
        ms(LOCK_TIMEOUT),
        ms(IDLE_IN_TRANSACTION_TIMEOUT)
    );
    if let Some(t) = statement_timeout {
        options.push_str(&format!(" -c statement_timeout={}", ms(t)));
    }
    if let Some(extra) = url_options.filter(|o| !o.trim().is_empty()) {
        options.push(' ');
        options.push_str(extra);
    }
    options
}

/// How long a caller waits for a pooled connection when all are in use.
pub const POOL_WAIT: Duration = Duration::from_secs(30);

/// A pool over `url`. `max_size` stays small in Lambda (one request at a time per instance).
pub fn pool(url: &str, options: &PoolOptions) -> Result<Pool, DbError> {
    let (pg_config, connector) = prepare(
        url,
        &options.ca,
        options.connect_timeout,
        options.statement_timeout,
    )?;
    let config = ManagerConfig {
        recycling_method: RecyclingMethod::Verified,
    };
    let manager = match connector {
        Connector::Plain => Manager::from_config(pg_config, NoTls, config),
        Connector::Tls(tls) => Manager::from_config(pg_config, tls, config),
    };
    Pool::builder(manager)
        .max_size(options.max_size)
        // A caller that finds every connection busy fails after this instead of waiting
        // forever (a starved pool is a bug to see, not a hang).
        .wait_timeout(Some(POOL_WAIT))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

/// A connection from the pool, retried once when connecting failed for a connection-class
/// reason (after a Lambda freeze/thaw the network may need a moment; stale pooled connections
/// are already replaced by the pool's verified recycling).
pub async fn get(pool: &Pool) -> Result<Object, PoolError> {
    match pool.get().await {
        Err(e) if is_connection_error(&e) => {
            tracing::warn!(error = %e, "database connection failed; retrying once");
            pool.get().await
        }
        other => other,
    }
}

/// A pool error worth one retry: the connection could not be made or was lost.
pub fn is_connection_error(e: &PoolError) -> bool {
    use deadpool_postgres::TimeoutType;
    match e {
        PoolError::Backend(e) => is_connection_class(e),
        PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => true,
        _ => false,
    }
}

/// A PostgreSQL error of the connection class: closed, I/O, SQLSTATE class 08, or the server
/// shutting down / starting up.
pub fn is_connection_class(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// One connection outside the pool (migrations, admin), with the pool's TLS rules; the
/// connection task runs until the client is dropped.
pub async fn connect(
    url: &str,
    ca: &CaSource,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), DbError> {
    let defaults = PoolOptions::default();
    let (pg, connector) = prepare(
        url,
        ca,
        defaults.connect_timeout,
        defaults.statement_timeout,
    )?;
    Ok(match connector {
        Connector::Plain => {
            let (client, conn) = pg.connect(NoTls).await?;
            (
                client,
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            )
        }
        Connector::Tls(tls) => {
            let (client, conn) = pg.connect(tls).await?;
            (
                client,
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            )
        }
    })
}

/// Applies pending migrations, each once, in order. An advisory lock keeps two instances that
/// start together from racing.
/// Whether every migration built into this binary is applied to the database, with the same
/// checksum (the health check): refinery's history table against the embedded list.
pub async fn migrations_current(db: &impl tokio_postgres::GenericClient) -> Result<bool, DbError> {
    let rows = db
        .query(
            "SELECT version::bigint, checksum FROM refinery_schema_history",
            &[],
        )
        .await?;
    let applied: std::collections::HashMap<i64, String> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(embedded::migrations::runner()
        .get_migrations()
        .iter()
        .all(|m| applied.get(&i64::from(m.version())) == Some(&m.checksum().to_string())))
}

pub async fn migrate(url: &str, ca: &CaSource) -> Result<usize, DbError> {
    let (mut client, task) = connect(url, ca).await?;
    client
        .execute("SELECT pg_advisory_lock(7300730073)", &[])
        .await?;
    let report = embedded::migrations::runner().run_async(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock(7300730073)", &[])
        .await?;
    drop(client);
    let _ = task.await;
    Ok(report?.applied_migrations().len())
}

/// Creates database `name` on the server at `admin_url` unless it exists (a local server: the
/// built-in CAs if it asks for TLS).
pub async fn ensure_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    let (client, task) = connect(admin_url, &CaSource::Embedded).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        // Identifiers cannot be bound as parameters; quote it as PostgreSQL would.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
        {
            Ok(()) => {}
            // Created meanwhile by a concurrent caller.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(client);
    let _ = task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_options_bound_every_wait_and_the_url_has_the_last_word() {
        let o = session_options(
            Some(Duration::from_secs(25)),
            Some("-c statement_timeout=0"),
        );
        assert_eq!(
            o,
            "-c jit=off -c lock_timeout=10000 -c idle_in_transaction_session_timeout=60000 \
             -c statement_timeout=25000 -c statement_timeout=0"
        );
        assert!(!session_options(None, None).contains("statement_timeout="));
    }
}
