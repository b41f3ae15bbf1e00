//! The state every handler and sync shares, assembled in one place ([`App::build`]) from a
//! [`Config`]: by each Lambda's cold start, by the CLI and by the tests alike.

use std::sync::Arc;

use anyhow::Context;
use deadpool_postgres::Pool;

use crate::config::{Config, SyncSettings};
use crate::db::PoolOptions;
use crate::destinations::google::GoogleClient;
use crate::destinations::linkedin::LinkedinClient;
use crate::destinations::meta::client::MetaClient;
use crate::destinations::tiktok::TiktokClient;

#[derive(Clone)]
pub struct App {
    pub pool: Pool,
    /// `None` when Meta is not configured: syncs do the database side only.
    pub meta: Option<Arc<MetaClient>>,
    /// `None` when Google is not configured (DESIGN §8.1).
    pub google: Option<Arc<GoogleClient>>,
    /// `None` when LinkedIn is not configured.
    pub linkedin: Option<Arc<LinkedinClient>>,
    /// `None` when TikTok is not configured.
    pub tiktok: Option<Arc<TiktokClient>>,
    pub sync: SyncSettings,
    /// Where alerts go (DESIGN §8.4); nothing when no channel is configured.
    pub alerts: Arc<crate::alerts::Alerts>,
    /// The last health report, reused for a while (`GET /api/health`, the scheduler pass).
    pub health: crate::health::Cache,
}

impl App {
    /// The pool and the platform clients, built once per process (per Lambda instance).
    pub async fn build(config: &Config) -> anyhow::Result<App> {
        let url = config
            .database_url
            .as_deref()
            .context("DATABASE_URL or DB_SECRET_ARN must be set")?;
        let pool = crate::db::pool(
            url,
            &PoolOptions {
                max_size: config.db_pool_size,
                ca: config.db_ca(),
                statement_timeout: Some(config.db_statement_timeout),
                ..PoolOptions::default()
            },
        )?;
        let meta = match &config.meta {
            Some(m) => Some(Arc::new(MetaClient::new(m.clone())?)),
            None => None,
        };
        let google = match &config.google {
            Some(g) => Some(Arc::new(GoogleClient::new(g.clone())?)),
            None => None,
        };
        let linkedin = match &config.linkedin {
            Some(c) => Some(Arc::new(LinkedinClient::new(c.clone())?)),
            None => None,
        };
        let tiktok = match &config.tiktok {
            Some(c) => Some(Arc::new(TiktokClient::new(c.clone())?)),
            None => None,
        };
        Ok(App {
            pool,
            meta,
            google,
            linkedin,
            tiktok,
            sync: config.sync.clone(),
            alerts: Arc::new(crate::alerts::Alerts::build(&config.alerts).await),
            health: crate::health::Cache::default(),
        })
    }
}
