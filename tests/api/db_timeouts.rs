//! Nothing waits or runs without bound in the database: every pooled session carries a
//! statement, lock and idle-in-transaction timeout, and a request that runs into one says so.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{self, spawn_app_configured};

#[tokio::test]
async fn pooled_sessions_carry_the_timeouts() {
    let t = spawn_app_configured(|c| c.db_statement_timeout = Duration::from_secs(7)).await;
    let conn = audience_sync::db::get(&t.app.pool).await.unwrap();
    let show = |name: &'static str| {
        let conn = &conn;
        async move {
            let row = conn.query_one(&format!("SHOW {name}"), &[]).await.unwrap();
            row.get::<_, String>(0)
        }
    };
    assert_eq!(show("statement_timeout").await, "7s");
    assert_eq!(show("lock_timeout").await, "10s");
    assert_eq!(show("idle_in_transaction_session_timeout").await, "1min");
}

#[tokio::test]
async fn a_request_stuck_behind_a_lock_answers_503_once_its_statement_times_out() {
    let t = spawn_app_configured(|c| c.db_statement_timeout = Duration::from_secs(1)).await;
    // Another session holds the audience table, as a long migration or a stray psql would.
    let mut other = support::connect(&t.db_url).await;
    let tx = other.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE custom_audience IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let (status, body) = t.get("/api/audiences").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "database_timeout", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered at the statement timeout, not after the lock was released"
    );
    tx.rollback().await.unwrap();
    let (status, _) = t.get("/api/audiences").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the pool's connection is fine afterwards"
    );
}
