//! Configuration from the environment (DESIGN §3). Secrets never appear in `Debug` output.
//!
//! Two steps: [`Config::from_env`] reads plain variables (what the CLI and the tests use), and
//! [`Config::resolve_from_env`] additionally reads the secrets that `DB_SECRET_ARN`,
//! `META_TOKEN_SECRET_ARN`, `GOOGLE_CREDENTIALS_SECRET_ARN`, `LINKEDIN_TOKEN_SECRET_ARN` and
//! `TIKTOK_TOKEN_SECRET_ARN` point at (the Lambda cold start). `DATABASE_URL` and the plain
//! `*_ACCESS_TOKEN` variables, when set, win over the secrets.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::destinations::meta::client::{MetaConfig, DEFAULT_GRAPH_URL};
use crate::destinations::retry::RetryPolicy;
use crate::destinations::settings::{
    Consent, GoogleAuth, GoogleConfig, LinkedinConfig, TiktokConfig,
    DEFAULT_GOOGLE_DATAMANAGER_URL, DEFAULT_GOOGLE_TOKEN_URL, DEFAULT_LINKEDIN_API_URL,
    DEFAULT_LINKEDIN_VERSION, DEFAULT_TIKTOK_API_URL,
};
use crate::destinations::token::SecretToken;
use crate::destinations::{is_loopback, Platform};
use crate::secrets::{
    parse_db_secret, parse_google_credentials, parse_token_secret, DbDefaults, SecretsClient,
};

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

/// Where alerts go and when a size drop is one (DESIGN §8.4).
#[derive(Clone)]
pub struct AlertSettings {
    /// `ALERT_WEBHOOK_URL`: a Slack-compatible incoming webhook (`{"text": …}`). A webhook URL is
    /// a credential: it never appears in `Debug` output, logs or errors.
    pub webhook_url: Option<url::Url>,
    /// `ALERT_TOPIC_ARN`: an SNS topic (the template's `AlertTopicArn`).
    pub topic_arn: Option<String>,
    /// `ALERT_SIZE_DROP_PERCENT` (default 20, 1 to 100): a platform size falling by more than
    /// this share between syncs is an alert.
    pub size_drop_percent: u32,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhook_url: None,
            topic_arn: None,
            size_drop_percent: 20,
        }
    }
}

impl fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertSettings")
            .field(
                "webhook_url",
                &self.webhook_url.as_ref().map(|_| "[redacted]"),
            )
            .field("topic_arn", &self.topic_arn)
            .field("size_drop_percent", &self.size_drop_percent)
            .finish()
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
    pub alerts: AlertSettings,
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
            .field("alerts", &self.alerts)
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
            google: get(vars, "GOOGLE_ACCESS_TOKEN")
                .map(|t| google_config_from(vars, GoogleAuth::AccessToken(plain_token(t))))
                .transpose()?,
            linkedin: get(vars, "LINKEDIN_ACCESS_TOKEN")
                .map(|t| linkedin_config_from(vars, plain_token(t)))
                .transpose()?,
            tiktok: get(vars, "TIKTOK_ACCESS_TOKEN")
                .map(|t| tiktok_config_from(vars, plain_token(t)))
                .transpose()?,
            port,
            db_pool_size,
            db_ca_bundle: get(vars, "DB_CA_BUNDLE").map(PathBuf::from),
            db_statement_timeout: seconds("DB_STATEMENT_TIMEOUT_SECONDS", statement_timeout)?,
            sync: SyncSettings {
                reserve: seconds("SYNC_RESERVE_SECONDS", defaults.reserve)?,
                lease: seconds("SYNC_LEASE_SECONDS", defaults.lease)?,
            },
            alerts: alert_settings(vars)?,
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
            || (self.google.is_none() && get(vars, "GOOGLE_CREDENTIALS_SECRET_ARN").is_some())
            || (self.linkedin.is_none() && get(vars, "LINKEDIN_TOKEN_SECRET_ARN").is_some())
            || (self.tiktok.is_none() && get(vars, "TIKTOK_TOKEN_SECRET_ARN").is_some())
    }

    /// Fills `database_url` and the platforms' credentials from their secrets where the plain
    /// variables are unset. The secrets are fetched concurrently (one round trip of cold start).
    pub async fn with_secrets(
        mut self,
        vars: Vars<'_>,
        secrets: &SecretsClient,
    ) -> Result<Self, ConfigError> {
        let arn = |var: &'static str, unset: bool| get(vars, var).filter(|_| unset);
        let db_arn = arn("DB_SECRET_ARN", self.database_url.is_none());
        let meta_arn = arn("META_TOKEN_SECRET_ARN", self.meta.is_none());
        let google_arn = arn("GOOGLE_CREDENTIALS_SECRET_ARN", self.google.is_none());
        let linkedin_arn = arn("LINKEDIN_TOKEN_SECRET_ARN", self.linkedin.is_none());
        let tiktok_arn = arn("TIKTOK_TOKEN_SECRET_ARN", self.tiktok.is_none());
        let defaults = DbDefaults {
            host: get(vars, "DB_HOST"),
            port: get(vars, "DB_PORT"),
            dbname: get(vars, "DB_NAME"),
        };
        let fetch = |var: &'static str, arn: Option<String>| async move {
            match arn {
                None => Ok(None),
                Some(arn) => secrets.secret_string(var, arn.trim()).await.map(Some),
            }
        };
        let token = |var: &'static str, arn: Option<String>| async move {
            match fetch(var, arn).await? {
                None => Ok(None),
                Some(secret) => parse_token_secret(var, &secret).map(Some),
            }
        };
        let db = async {
            match fetch("DB_SECRET_ARN", db_arn).await? {
                None => Ok(None),
                Some(secret) => parse_db_secret("DB_SECRET_ARN", &secret, &defaults).map(Some),
            }
        };
        let google = async {
            let var = "GOOGLE_CREDENTIALS_SECRET_ARN";
            match fetch(var, google_arn).await? {
                None => Ok(None),
                Some(secret) => parse_google_credentials(var, &secret).map(Some),
            }
        };
        let (db, meta, google, linkedin, tiktok) = tokio::try_join!(
            db,
            token("META_TOKEN_SECRET_ARN", meta_arn),
            google,
            token("LINKEDIN_TOKEN_SECRET_ARN", linkedin_arn),
            token("TIKTOK_TOKEN_SECRET_ARN", tiktok_arn),
        )?;
        if let Some(creds) = db {
            self.database_url = Some(creds.url());
        }
        if let Some(token) = meta {
            self.meta = Some(meta_config_from(vars, token));
        }
        if let Some(auth) = google {
            self.google = Some(google_config_from(vars, auth)?);
        }
        if let Some(token) = linkedin {
            self.linkedin = Some(linkedin_config_from(vars, token)?);
        }
        if let Some(token) = tiktok {
            self.tiktok = Some(tiktok_config_from(vars, token)?);
        }
        Ok(self)
    }
}

fn alert_settings(vars: Vars<'_>) -> Result<AlertSettings, ConfigError> {
    let webhook_url = match get(vars, "ALERT_WEBHOOK_URL") {
        Some(_) => Some(
            api_url(vars, "ALERT_WEBHOOK_URL", "")?
                .parse()
                .map_err(|_| ConfigError::Invalid {
                    var: "ALERT_WEBHOOK_URL",
                    message: "must be an absolute URL".into(),
                })?,
        ),
        None => None,
    };
    let topic_arn = get(vars, "ALERT_TOPIC_ARN").map(|a| a.trim().to_string());
    if let Some(arn) = &topic_arn {
        if !arn.starts_with("arn:") || arn.split(':').count() != 6 {
            return Err(ConfigError::Invalid {
                var: "ALERT_TOPIC_ARN",
                message: "must be an SNS topic ARN, arn:aws:sns:<region>:<account>:<name>".into(),
            });
        }
    }
    let size_drop_percent = match get(vars, "ALERT_SIZE_DROP_PERCENT") {
        Some(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or(ConfigError::Invalid {
                var: "ALERT_SIZE_DROP_PERCENT",
                message: "must be a whole number from 1 to 100".into(),
            })?,
        None => AlertSettings::default().size_drop_percent,
    };
    Ok(AlertSettings {
        webhook_url,
        topic_arn,
        size_drop_percent,
    })
}

/// A token from a plain variable.
fn plain_token(t: String) -> SecretToken {
    SecretToken::new(t.trim().to_string())
}

/// A platform's API base URL from `var` (else `default`): `https`, or plain `http` to this
/// machine only (a local fake); without a trailing slash.
fn api_url(vars: Vars<'_>, var: &'static str, default: &str) -> Result<String, ConfigError> {
    let raw = get(vars, var).unwrap_or_else(|| default.to_string());
    let raw = raw.trim().trim_end_matches('/');
    let invalid = |message: &str| ConfigError::Invalid {
        var,
        message: message.to_string(),
    };
    let parsed = url::Url::parse(raw).map_err(|_| invalid("must be an absolute URL"))?;
    match parsed.scheme() {
        "https" => Ok(raw.to_string()),
        "http" if is_loopback(&parsed) => Ok(raw.to_string()),
        _ => Err(invalid(
            "must use https (plain http only to localhost or 127.0.0.1, e.g. a local fake)",
        )),
    }
}

/// An account id on `platform` from `var`, in its one spelling.
fn account_var(
    vars: Vars<'_>,
    var: &'static str,
    platform: Platform,
) -> Result<Option<String>, ConfigError> {
    get(vars, var)
        .map(|raw| {
            platform
                .account_id(&raw)
                .map_err(|rule| ConfigError::Invalid {
                    var,
                    message: format!("must be {rule}"),
                })
        })
        .transpose()
}

/// `CONSENT_GRANTED` (the default: the advertiser asserts it) or `CONSENT_DENIED`.
fn consent_var(vars: Vars<'_>, var: &'static str) -> Result<Consent, ConfigError> {
    match get(vars, var) {
        None => Ok(Consent::Granted),
        Some(v) => Consent::parse(&v).ok_or(ConfigError::Invalid {
            var,
            message: "must be CONSENT_GRANTED or CONSENT_DENIED".into(),
        }),
    }
}

/// Google settings around its credentials, from the `GOOGLE_*` variables in `vars`.
pub fn google_config_from(vars: Vars<'_>, auth: GoogleAuth) -> Result<GoogleConfig, ConfigError> {
    Ok(GoogleConfig {
        auth,
        token_url: api_url(vars, "GOOGLE_TOKEN_URL", DEFAULT_GOOGLE_TOKEN_URL)?,
        api_url: api_url(
            vars,
            "GOOGLE_DATAMANAGER_URL",
            DEFAULT_GOOGLE_DATAMANAGER_URL,
        )?,
        customer_id: account_var(vars, "GOOGLE_CUSTOMER_ID", Platform::Google)?,
        login_customer_id: account_var(vars, "GOOGLE_LOGIN_CUSTOMER_ID", Platform::Google)?,
        ad_user_data_consent: consent_var(vars, "GOOGLE_AD_USER_DATA_CONSENT")?,
        ad_personalization_consent: consent_var(vars, "GOOGLE_AD_PERSONALIZATION_CONSENT")?,
        request_timeout: Duration::from_secs(60),
        retry: RetryPolicy::default(),
    })
}

/// LinkedIn settings around a token, from the `LINKEDIN_*` variables in `vars`.
pub fn linkedin_config_from(
    vars: Vars<'_>,
    token: SecretToken,
) -> Result<LinkedinConfig, ConfigError> {
    let version = get(vars, "LINKEDIN_VERSION")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| DEFAULT_LINKEDIN_VERSION.to_string());
    // YYYYMM, or YYYYMM.RR for a revision, as LinkedIn names its monthly versions.
    let (month, revision) = version.split_once('.').unwrap_or((&version, "00"));
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(month, 6) || !digits(revision, 2) {
        return Err(ConfigError::Invalid {
            var: "LINKEDIN_VERSION",
            message: "must be a LinkedIn API version such as 202604 (YYYYMM)".into(),
        });
    }
    Ok(LinkedinConfig {
        access_token: token,
        ad_account_id: account_var(vars, "LINKEDIN_AD_ACCOUNT_ID", Platform::Linkedin)?,
        api_url: api_url(vars, "LINKEDIN_API_URL", DEFAULT_LINKEDIN_API_URL)?,
        version,
        request_timeout: Duration::from_secs(60),
        retry: RetryPolicy::default(),
    })
}

/// TikTok settings around a token, from the `TIKTOK_*` variables in `vars`.
pub fn tiktok_config_from(vars: Vars<'_>, token: SecretToken) -> Result<TiktokConfig, ConfigError> {
    Ok(TiktokConfig {
        access_token: token,
        advertiser_id: account_var(vars, "TIKTOK_ADVERTISER_ID", Platform::Tiktok)?,
        api_url: api_url(vars, "TIKTOK_API_URL", DEFAULT_TIKTOK_API_URL)?,
        request_timeout: Duration::from_secs(60),
        retry: RetryPolicy::default(),
    })
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
    fn platforms_are_configured_by_their_tokens_alone() {
        let c = Config::from_vars(&vars(&[
            ("GOOGLE_CUSTOMER_ID", "1234567890"),
            ("LINKEDIN_AD_ACCOUNT_ID", "5"),
            ("TIKTOK_ADVERTISER_ID", "6"),
        ]))
        .unwrap();
        assert!(c.google.is_none() && c.linkedin.is_none() && c.tiktok.is_none());
        let c = Config::from_vars(&vars(&[
            ("GOOGLE_ACCESS_TOKEN", "ya29.token"),
            ("GOOGLE_LOGIN_CUSTOMER_ID", "111-222-3333"),
            ("GOOGLE_DATAMANAGER_URL", "http://127.0.0.1:9000/v1/"),
            ("LINKEDIN_ACCESS_TOKEN", "AQVtoken"),
            ("LINKEDIN_VERSION", "202601"),
            ("TIKTOK_ACCESS_TOKEN", "tttoken"),
        ]))
        .unwrap();
        let g = c.google.as_ref().unwrap();
        assert!(matches!(&g.auth, GoogleAuth::AccessToken(t) if t.expose() == "ya29.token"));
        assert_eq!(g.login_customer_id.as_deref(), Some("1112223333"));
        assert_eq!(g.customer_id, None);
        assert_eq!(g.api_url, "http://127.0.0.1:9000/v1");
        assert_eq!(g.token_url, DEFAULT_GOOGLE_TOKEN_URL);
        assert_eq!(g.ad_user_data_consent, Consent::Granted);
        let l = c.linkedin.as_ref().unwrap();
        assert_eq!(
            (l.version.as_str(), l.api_url.as_str()),
            ("202601", DEFAULT_LINKEDIN_API_URL)
        );
        assert_eq!(c.tiktok.as_ref().unwrap().api_url, DEFAULT_TIKTOK_API_URL);
        let debug = format!("{c:?}");
        for token in ["ya29.token", "AQVtoken", "tttoken"] {
            assert!(!debug.contains(token), "{debug}");
        }
    }

    #[test]
    fn bad_platform_settings_name_their_variable() {
        for (token_var, var, value) in [
            (
                "GOOGLE_ACCESS_TOKEN",
                "GOOGLE_AD_USER_DATA_CONSENT",
                "GRANTED",
            ),
            (
                "GOOGLE_ACCESS_TOKEN",
                "GOOGLE_AD_PERSONALIZATION_CONSENT",
                "yes",
            ),
            ("GOOGLE_ACCESS_TOKEN", "GOOGLE_CUSTOMER_ID", "123-456"),
            (
                "GOOGLE_ACCESS_TOKEN",
                "GOOGLE_LOGIN_CUSTOMER_ID",
                "act_1234567890",
            ),
            (
                "GOOGLE_ACCESS_TOKEN",
                "GOOGLE_TOKEN_URL",
                "http://oauth.example/token",
            ),
            ("GOOGLE_ACCESS_TOKEN", "GOOGLE_DATAMANAGER_URL", "not a url"),
            ("LINKEDIN_ACCESS_TOKEN", "LINKEDIN_VERSION", "2026-04"),
            (
                "LINKEDIN_ACCESS_TOKEN",
                "LINKEDIN_AD_ACCOUNT_ID",
                "urn:li:organization:5",
            ),
            (
                "LINKEDIN_ACCESS_TOKEN",
                "LINKEDIN_API_URL",
                "ftp://api.linkedin.com",
            ),
            ("TIKTOK_ACCESS_TOKEN", "TIKTOK_ADVERTISER_ID", "adv1"),
            (
                "TIKTOK_ACCESS_TOKEN",
                "TIKTOK_API_URL",
                "http://business-api.tiktok.com",
            ),
        ] {
            let err =
                Config::from_vars(&vars(&[(token_var, "s3cret"), (var, value)])).expect_err(var);
            assert_eq!(err.var(), var, "{err}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn alert_settings_are_checked_and_the_webhook_never_shows() {
        let hook = "https://hooks.slack.com/services/T0/B0/very-secret-part";
        let config = Config::from_vars(&vars(&[
            ("ALERT_WEBHOOK_URL", hook),
            (
                "ALERT_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
        ]))
        .unwrap();
        assert_eq!(
            config.alerts.webhook_url.as_ref().map(|u| u.as_str()),
            Some(hook)
        );
        assert_eq!(config.alerts.size_drop_percent, 20);
        assert!(!format!("{config:?}").contains("very-secret-part"));
        for (var, value) in [
            ("ALERT_WEBHOOK_URL", "http://hooks.example/x"),
            ("ALERT_TOPIC_ARN", "alerts"),
            ("ALERT_SIZE_DROP_PERCENT", "0"),
            ("ALERT_SIZE_DROP_PERCENT", "twenty"),
        ] {
            let Err(e) = Config::from_vars(&vars(&[(var, value)])) else {
                panic!("{var}={value} accepted");
            };
            assert_eq!(e.var(), var);
            assert!(!e.to_string().contains("hooks.example"), "{e}");
        }
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
