//! All SQL of `change_log` outside the diff and the refresh that read it (migrations/ V6): the
//! trim at the end of a scheduler pass.

use tokio_postgres::GenericClient;

use crate::error::Result;

/// Removes the change rows every consumer that may still read them has read (see
/// `change_log_trim`); returns how many.
pub async fn trim(db: &impl GenericClient) -> Result<i64> {
    Ok(db.query_one("SELECT change_log_trim()", &[]).await?.get(0))
}
