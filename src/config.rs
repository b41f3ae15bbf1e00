//! Configuration from the environment (DESIGN §3). Secrets never appear in `Debug` output.
//!
//! Two steps: [`Config::from_env`] reads plain variables (what the CLI and the tests use), and
//! [`Config::resolve_from_env`] additionally reads the secrets that `DB_SECRET_ARN` and
//! `META_TOKEN_SECRET_ARN` point at (the Lambda cold start). `DATABASE_URL` and
//! `META_ACCESS_TOKEN`, when set, win over the secrets.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::destinations::meta::client::{MetaConfig, DEFAULT_GRAPH_URL};
use crate::destinations::retry::RetryPolicy;
use crate::destinations::settings::{GoogleConfig, LinkedinConfig, TiktokConfig};
use crate::destinations::token::SecretToken;
use crate::secrets::{parse_db_secret, parse_token_secret, DbDefaults, SecretsClient};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
}

impl ConfigError {
    /// The variable at fault.
    pub fn var(&self) -> &'static str {
        match self {
            ConfigError::Missing(v) => v,
            ConfigError::Invalid { var, .. } => var,
        }
    }
}

/// How scheduled syncs share an invocation's time.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// `SYNC_RESERVE_SECONDS` (default 60): no new audience is claimed with less than this left,
    /// and a running sync pauses this long before the deadline.
    pub reserve: Duration,
    /// `SYNC_LEASE_SECONDS` (default 60): how long a scheduler's claim keeps other passes off
    /// an audience.
    pub lease: Duration,
}

impl SyncSettings {
    /// The reserve a run with `left` to go keeps: the configured one, at most half of `left`.
    pub fn reserve_within(&self, left: Duration) -> Duration {
        self.reserve.min(left / 2)
    }
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            reserve: Duration::from_secs(60),
            lease: Duration::from_secs(60),
        }
    }
}

/// How often `audiences serve` runs a scheduler pass unless told otherwise: as often as the
/// template's schedule starts the scheduled Lambda.
pub const DEFAULT_SCHEDULER_INTERVAL: Duration = Duration::from_secs(60);

/// Every setting of the service. Nothing else reads the environment.
#[derive(Clone)]
pub struct Config {
    pub database_url: Option<String>,
    pub meta: Option<MetaConfig>,
    /// The other platforms (DESIGN §8.1); `None`: not configured.
    pub google: Option<GoogleConfig>,
    pub linkedin: Option<LinkedinConfig>,
    pub tiktok: Option<TiktokConfig>,
    /// `PORT`: where `audiences serve` listens (default 3000).
    pub port: u16,
    pub db_pool_size: usize,
    /// `DB_CA_BUNDLE`: PEM file of the CAs trusted for TLS to the database; unset: the RDS
    /// bundle built into the binary (see `certs/README.md`).
    pub db_ca_bundle: Option<PathBuf>,
    /// `DB_STATEMENT_TIMEOUT_SECONDS`: the longest one statement may run (0: no limit). Default
    /// 25 s in Lambda (under API Gateway's 30 s; the template raises it for the sync functions),
    /// 300 s elsewhere.
    pub db_statement_timeout: Duration,
    pub sync: SyncSettings,
    /// `SCHEDULER_INTERVAL_SECONDS` (default 60; 0: off): how often `audiences serve` runs a
    /// scheduler pass in-process. `None`: no pass (`serve --no-scheduler`); unused in Lambda,
    /// where EventBridge starts the passes.
    pub scheduler_interval: Option<Duration>,
    /// JSON log lines: in Lambda, or when `AWS_LAMBDA_LOG_FORMAT=JSON`.
    pub log_json: bool,
    /// `RUST_LOG`: the log filter (default `info`).
    pub log_filter: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("meta", &self.meta)
            .field("google", &self.google)
            .field("linkedin", &self.linkedin)
            .field("tiktok", &self.tiktok)
            .field("port", &self.port)
            .field("db_pool_size", &self.db_pool_size)
            .field("db_ca_bundle", &self.db_ca_bundle)
            .field("db_statement_timeout", &self.db_statement_timeout)
            .field("sync", &self.sync)
            .field("scheduler_interval", &self.scheduler_interval)
            .field("log_json", &self.log_json)
            .field("log_filter", &self.log_filter)
            .finish()
    }
}

/// A connection URL with its password replaced by `[redacted]` (also a `password=` keyword).
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:[redacted]{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        // A password may also travel as a query parameter.
        if let Some(q) = url.find('?') {
            let query: Vec<String> = url[q + 1..]
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                        format!("{k}=[redacted]")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            return format!("{}?{}", &url[..q], query.join("&"));
        }
        return url.to_string();
    }
    // key=value form
    url.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=[redacted]"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where variables come from: the process environment, or a map in tests.
pub type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn get(vars: Vars<'_>, name: &str) -> Option<String> {
    vars(name).filter(|v| !v.trim().is_empty())
}

/// Whether this process runs in AWS Lambda.
pub fn in_lambda(vars: Vars<'_>) -> bool {
    get(vars, "AWS_LAMBDA_FUNCTION_NAME").is_some()
}

impl Config {
    /// Everything from the environment; the Meta token from `META_ACCESS_TOKEN` (the secret
    /// variants are resolved by [`Config::resolve_from_env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&process_env)
    }

    /// As [`Config::from_env`], from `vars`.
    pub fn from_vars(vars: Vars<'_>) -> Result<Self, ConfigError> {
        let port = match get(vars, "PORT") {
            Some(p) => p.trim().parse().map_err(|_| ConfigError::Invalid {
                var: "PORT",
                message: "must be a port number".into(),
            })?,
            None => 3000,
        };
        let db_pool_size = match get(vars, "DB_POOL_SIZE") {
            Some(n) => n
                .trim()
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or(ConfigError::Invalid {
                    var: "DB_POOL_SIZE",
                    message: "must be a positive integer".into(),
                })?,
            // One request at a time per Lambda instance: two connections cover a request and
            // the sync it may start.
            None if in_lambda(vars) => 2,
            None => 4,
        };
        let meta = get(vars, "META_ACCESS_TOKEN")
            .map(|t| meta_config_from(vars, SecretToken::new(t.trim().to_string())));
        let seconds = |var: &'static str, default: Duration| match get(vars, var) {
            None => Ok(default),
            Some(v) => {
                v.trim()
                    .parse()
                    .map(Duration::from_secs)
                    .map_err(|_| ConfigError::Invalid {
                        var,
                        message: "must be a whole number of seconds".into(),
                    })
            }
        };
        let defaults = SyncSettings::default();
        let statement_timeout = Duration::from_secs(if in_lambda(vars) { 25 } else { 300 });
        Ok(Config {
            database_url: get(vars, "DATABASE_URL"),
            meta,
            // Filled from the DESIGN §8.1 variables by the destinations' wiring (issue 12).
            google: None,
            linkedin: None,
            tiktok: None,
            port,
            db_pool_size,
            db_ca_bundle: get(vars, "DB_CA_BUNDLE").map(PathBuf::from),
            db_statement_timeout: seconds("DB_STATEMENT_TIMEOUT_SECONDS", statement_timeout)?,
            sync: SyncSettings {
                reserve: seconds("SYNC_RESERVE_SECONDS", defaults.reserve)?,
                lease: seconds("SYNC_LEASE_SECONDS", defaults.lease)?,
            },
            scheduler_interval: Some(seconds(
                "SCHEDULER_INTERVAL_SECONDS",
                DEFAULT_SCHEDULER_INTERVAL,
            )?)
            .filter(|i| !i.is_zero()),
            log_json: get(vars, "AWS_LAMBDA_LOG_FORMAT")
                .is_some_and(|f| f.trim().eq_ignore_ascii_case("json")),
            log_filter: get(vars, "RUST_LOG"),
        })
    }

    /// The CAs trusted for TLS to the database.
    pub fn db_ca(&self) -> crate::db::CaSource {
        crate::db::CaSource::from_path(self.db_ca_bundle.as_deref())
    }

    /// The Lambda cold start: [`Config::from_env`], then the secrets `DB_SECRET_ARN` and
    /// `META_TOKEN_SECRET_ARN` point at (fetched concurrently, only where the plain variable
    /// is unset), through the standard AWS configuration chain (which honours
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER`).
    pub async fn resolve_from_env() -> Result<Self, ConfigError> {
        Self::from_env()?.resolve_secrets().await
    }

    /// The secrets step of [`Config::resolve_from_env`], for a configuration read already.
    pub async fn resolve_secrets(self) -> Result<Self, ConfigError> {
        if !self.needs_secrets(&process_env) {
            return Ok(self);
        }
        let client = SecretsClient::from_env().await;
        self.with_secrets(&process_env, &client).await
    }

    /// As [`Config::resolve_from_env`], from `vars` and with the given Secrets Manager client.
    pub async fn resolve(vars: Vars<'_>, secrets: &SecretsClient) -> Result<Self, ConfigError> {
        Self::from_vars(vars)?.with_secrets(vars, secrets).await
    }

    fn needs_secrets(&self, vars: Vars<'_>) -> bool {
        (self.database_url.is_none() && get(vars, "DB_SECRET_ARN").is_some())
            || (self.meta.is_none() && get(vars, "META_TOKEN_SECRET_ARN").is_some())
    }

    /// Fills `database_url` and `meta` from their secrets where the plain variables are unset.
    pub async fn with_secrets(
        mut self,
        vars: Vars<'_>,
        secrets: &SecretsClient,
    ) -> Result<Self, ConfigError> {
        let db_arn = get(vars, "DB_SECRET_ARN").filter(|_| self.database_url.is_none());
        let token_arn = get(vars, "META_TOKEN_SECRET_ARN").filter(|_| self.meta.is_none());
        let defaults = DbDefaults {
            host: get(vars, "DB_HOST"),
            port: get(vars, "DB_PORT"),
            dbname: get(vars, "DB_NAME"),
        };
        let db = async {
            match &db_arn {
                None => Ok(None),
                Some(arn) => {
                    let secret = secrets.secret_string("DB_SECRET_ARN", arn.trim()).await?;
                    parse_db_secret("DB_SECRET_ARN", &secret, &defaults).map(Some)
                }
            }
        };
        let token = async {
            match &token_arn {
                None => Ok(None),
                Some(arn) => {
                    let secret = secrets
                        .secret_string("META_TOKEN_SECRET_ARN", arn.trim())
                        .await?;
                    parse_token_secret("META_TOKEN_SECRET_ARN", &secret).map(Some)
                }
            }
        };
        let (db, token) = tokio::try_join!(db, token)?;
        if let Some(creds) = db {
            self.database_url = Some(creds.url());
        }
        if let Some(token) = token {
            self.meta = Some(meta_config_from(vars, token));
        }
        Ok(self)
    }
}

/// Meta settings around a token, from the `META_*` variables in `vars`.
pub fn meta_config_from(vars: Vars<'_>, token: SecretToken) -> MetaConfig {
    MetaConfig {
        graph_url: get(vars, "META_GRAPH_URL")
            .unwrap_or_else(|| DEFAULT_GRAPH_URL.to_string())
            .trim_end_matches('/')
            .to_string(),
        access_token: token,
        app_secret: get(vars, "META_APP_SECRET").map(SecretToken::new),
        ad_account_id: get(vars, "META_AD_ACCOUNT_ID")
            .map(|a| a.trim().trim_start_matches("act_").to_string()),
        timeout: Duration::from_secs(60),
        retry: RetryPolicy::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn pool_size_defaults_to_two_in_lambda() {
        let c = Config::from_vars(&vars(&[("AWS_LAMBDA_FUNCTION_NAME", "f")])).unwrap();
        assert_eq!(c.db_pool_size, 2);
        let c = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.db_pool_size, 4);
        let c = Config::from_vars(&vars(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ("DB_POOL_SIZE", "1"),
        ]))
        .unwrap();
        assert_eq!(c.db_pool_size, 1);
        let err = Config::from_vars(&vars(&[("DB_POOL_SIZE", "0")])).unwrap_err();
        assert_eq!(err.var(), "DB_POOL_SIZE");
    }

    #[test]
    fn scheduler_interval_defaults_to_a_minute_and_zero_turns_it_off() {
        let c = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.scheduler_interval, Some(Duration::from_secs(60)));
        let c = Config::from_vars(&vars(&[("SCHEDULER_INTERVAL_SECONDS", "5")])).unwrap();
        assert_eq!(c.scheduler_interval, Some(Duration::from_secs(5)));
        let c = Config::from_vars(&vars(&[("SCHEDULER_INTERVAL_SECONDS", "0")])).unwrap();
        assert_eq!(c.scheduler_interval, None);
        let err = Config::from_vars(&vars(&[("SCHEDULER_INTERVAL_SECONDS", "-1")])).unwrap_err();
        assert_eq!(err.var(), "SCHEDULER_INTERVAL_SECONDS");
    }

    #[test]
    fn debug_redacts_the_database_password_and_token() {
        let c = Config::from_vars(&vars(&[
            (
                "DATABASE_URL",
                "postgresql://app:s3cret@db.example:5432/x?sslmode=require",
            ),
            ("META_ACCESS_TOKEN", "EAABtoken"),
        ]))
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(!debug.contains("EAABtoken"), "{debug}");
        assert!(
            debug.contains("postgresql://app:[redacted]@db.example:5432/x"),
            "{debug}"
        );
    }

    #[test]
    fn redact_url_forms() {
        assert_eq!(
            redact_url("postgres://u:p@h/d"),
            "postgres://u:[redacted]@h/d"
        );
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(
            redact_url("postgres://u@h/d?password=p&sslmode=require"),
            "postgres://u@h/d?password=[redacted]&sslmode=require"
        );
        assert_eq!(
            redact_url("host=h user=u password=p"),
            "host=h user=u password=[redacted]"
        );
    }
}
