//! One sync per audience at a time: a PostgreSQL advisory lock held by the session that runs
//! it. The claim dies with its holder, so a crashed worker frees the audience at once.

use tokio_postgres::Client;
use uuid::Uuid;

use crate::error::Result;

/// The claim on one audience: a session-level advisory lock on a connection kept out of the
/// pool's hands for the sync's duration.
pub struct AudienceLock {
    conn: Option<deadpool_postgres::Object>,
    audience_id: Uuid,
}

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended($1::text, 7300))";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtextextended($1::text, 7300))";

impl AudienceLock {
    pub async fn try_acquire(
        conn: deadpool_postgres::Object,
        audience_id: Uuid,
    ) -> Result<Option<Self>> {
        let got: bool = conn
            .query_one(TRY_LOCK, &[&audience_id.to_string()])
            .await?
            .get(0);
        Ok(got.then_some(AudienceLock {
            conn: Some(conn),
            audience_id,
        }))
    }

    pub fn client(&self) -> &Client {
        self.conn.as_ref().expect("held until released")
    }

    /// Unlocks and returns the connection to the pool. A connection lost meanwhile took the
    /// lock with it: nothing to release then.
    pub async fn release(mut self) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            if let Err(e) = conn
                .query_one(UNLOCK, &[&self.audience_id.to_string()])
                .await
            {
                let lost = conn.is_closed();
                drop(deadpool_postgres::Object::take(conn));
                if !lost {
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }
}

impl Drop for AudienceLock {
    fn drop(&mut self) {
        // Not released (error or cancelled): close the connection instead of returning it to the
        // pool, which ends the session and with it the lock.
        if let Some(conn) = self.conn.take() {
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}
