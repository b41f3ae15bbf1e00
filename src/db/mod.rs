//! PostgreSQL: the connection pool, migrations, and (for local runs and tests) a throwaway server.

pub mod local;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

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

/// A pool over `url`. `max_size` stays small in Lambda (one request at a time per instance).
pub fn pool(url: &str, max_size: usize) -> Result<Pool, DbError> {
    let pg_config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| DbError::Config(format!("DATABASE_URL: {e}")))?;
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

/// Applies pending migrations, each once, in order. An advisory lock keeps two instances that
/// start together from racing.
pub async fn migrate(url: &str) -> Result<usize, DbError> {
    let (mut client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let task = tokio::spawn(connection);
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

/// Creates database `name` on the server at `admin_url` unless it exists.
pub async fn ensure_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls).await?;
    let task = tokio::spawn(connection);
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
