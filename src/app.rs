//! The state every handler shares, built once per process (per Lambda instance).

use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::destinations::meta::client::MetaClient;

#[derive(Clone)]
pub struct App {
    pub pool: Pool,
    /// `None` when Meta is not configured: syncs do the database side only.
    pub meta: Option<Arc<MetaClient>>,
}
