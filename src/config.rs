//! Configuration from the environment (DESIGN §3). Secrets never appear in `Debug` output.

use std::time::Duration;

use crate::meta::client::{MetaConfig, RetryPolicy, SecretToken, DEFAULT_GRAPH_URL};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: Option<String>,
    pub meta: Option<MetaConfig>,
    pub port: u16,
    pub db_pool_size: usize,
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    /// Everything from the environment; the Meta token from `META_ACCESS_TOKEN` (the secret
    /// variant is resolved by `lambda::cold_start`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let port = match var("PORT") {
            Some(p) => p.parse().map_err(|_| ConfigError::Invalid {
                var: "PORT",
                message: "must be a port number".into(),
            })?,
            None => 3000,
        };
        let db_pool_size = match var("DB_POOL_SIZE") {
            Some(n) => n
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or(ConfigError::Invalid {
                    var: "DB_POOL_SIZE",
                    message: "must be a positive integer".into(),
                })?,
            None => 4,
        };
        let meta = var("META_ACCESS_TOKEN").map(|t| meta_config(SecretToken::new(t)));
        Ok(Config {
            database_url: var("DATABASE_URL"),
            meta,
            port,
            db_pool_size,
        })
    }
}

/// Meta settings around a token, from the `META_*` variables.
pub fn meta_config(token: SecretToken) -> MetaConfig {
    MetaConfig {
        graph_url: var("META_GRAPH_URL")
            .unwrap_or_else(|| DEFAULT_GRAPH_URL.to_string())
            .trim_end_matches('/')
            .to_string(),
        access_token: token,
        app_secret: var("META_APP_SECRET").map(SecretToken::new),
        ad_account_id: var("META_AD_ACCOUNT_ID")
            .map(|a| a.trim().trim_start_matches("act_").to_string()),
        timeout: Duration::from_secs(60),
        retry: RetryPolicy::default(),
    }
}
