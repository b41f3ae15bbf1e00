//! AWS Secrets Manager at cold start: the database credentials (RDS format) and the platforms'
//! credentials (Meta, LinkedIn and TikTok tokens, Google's OAuth2 client and refresh token),
//! each read once per instance. Errors name the variable that pointed at the secret and
//! never carry the secret's value.

use std::fmt;

use aws_sdk_secretsmanager::config::{
    BehaviorVersion, Credentials, Region, SharedCredentialsProvider,
};
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use serde_json::Value;

use crate::config::ConfigError;
use crate::destinations::settings::GoogleAuth;
use crate::destinations::token::SecretToken;

/// The HTTPS client the SDK uses: hyper + rustls on *ring*, the same TLS stack as the rest of
/// the service (no OpenSSL, no second crypto provider).
pub fn https_client() -> aws_sdk_secretsmanager::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The AWS configuration of an explicit endpoint, region and static credentials, for any of
/// the SDK's clients; reads no environment (tests point it at moto's server).
pub fn local_sdk_config(
    endpoint: &str,
    region: &str,
    access_key: &str,
    secret_key: &str,
) -> aws_config::SdkConfig {
    let credentials = Credentials::new(access_key, secret_key, None, None, "static");
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(https_client())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

/// A Secrets Manager client.
#[derive(Clone, Debug)]
pub struct SecretsClient {
    inner: aws_sdk_secretsmanager::Client,
}

impl SecretsClient {
    /// The standard AWS configuration chain (region, credentials from the Lambda role, and
    /// endpoint overrides such as `AWS_ENDPOINT_URL_SECRETS_MANAGER`).
    pub async fn from_env() -> Self {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .load()
            .await;
        SecretsClient {
            inner: aws_sdk_secretsmanager::Client::new(&sdk),
        }
    }

    /// A client for an explicit endpoint, region and static credentials; reads no environment
    /// (tests point it at a local Secrets Manager such as moto's server).
    pub fn with_endpoint(endpoint: &str, region: &str, access_key: &str, secret_key: &str) -> Self {
        let sdk = local_sdk_config(endpoint, region, access_key, secret_key);
        SecretsClient {
            inner: aws_sdk_secretsmanager::Client::new(&sdk),
        }
    }

    /// The SDK client itself (tests create secrets with it).
    pub fn sdk(&self) -> &aws_sdk_secretsmanager::Client {
        &self.inner
    }

    /// The secret string of `secret_id`; `var` names the variable that held the id, for errors.
    pub async fn secret_string(
        &self,
        var: &'static str,
        secret_id: &str,
    ) -> Result<SecretToken, ConfigError> {
        let out = self
            .inner
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                let message = match e.as_service_error() {
                    Some(service) => format!(
                        "could not read the secret: {}: {}",
                        service.code().unwrap_or("error"),
                        service.message().unwrap_or("no message")
                    ),
                    None => format!("could not read the secret: {}", DisplayErrorContext(&e)),
                };
                ConfigError::Invalid { var, message }
            })?;
        match out.secret_string() {
            Some(s) if !s.trim().is_empty() => Ok(SecretToken::new(s)),
            Some(_) => Err(ConfigError::Invalid {
                var,
                message: "the secret is empty".into(),
            }),
            None => Err(ConfigError::Invalid {
                var,
                message: "the secret has no string value (binary secrets are not supported)".into(),
            }),
        }
    }
}

/// Database credentials from an RDS-format secret. `Debug` redacts the password.
#[derive(Clone)]
pub struct DbCredentials {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: SecretToken,
    pub dbname: String,
}

impl fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbCredentials")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("dbname", &self.dbname)
            .finish()
    }
}

impl DbCredentials {
    /// A `postgresql://` URL; user and password percent-encoded.
    pub fn url(&self) -> String {
        let enc = |s: &str| -> String {
            url::form_urlencoded::byte_serialize(s.as_bytes())
                .collect::<String>()
                // form encoding turns spaces into '+', which a URL's userinfo reads literally.
                .replace('+', "%20")
        };
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "postgresql://{}:{}@{}:{}/{}",
            enc(&self.username),
            enc(self.password.expose()),
            host,
            self.port,
            enc(&self.dbname)
        )
    }
}

/// Fallbacks for fields an RDS-managed secret lacks (it holds only username and password):
/// `DB_HOST`, `DB_PORT`, `DB_NAME`.
#[derive(Debug, Clone, Default)]
pub struct DbDefaults {
    pub host: Option<String>,
    pub port: Option<String>,
    pub dbname: Option<String>,
}

/// Parses an RDS-format secret: JSON with `host`, `port`, `username`, `password`, `dbname`
/// (`dbInstanceIdentifier` and `engine` are ignored). Messages never quote the secret.
pub fn parse_db_secret(
    var: &'static str,
    secret: &SecretToken,
    defaults: &DbDefaults,
) -> Result<DbCredentials, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { var, message };
    let value: Value = serde_json::from_str(secret.expose()).map_err(|e| {
        invalid(format!(
            "the secret is not valid JSON (line {}, column {}); expected the RDS format \
             {{\"username\", \"password\", \"host\", \"port\", \"dbname\"}}",
            e.line(),
            e.column()
        ))
    })?;
    let obj = value.as_object().ok_or_else(|| {
        invalid("the secret is not a JSON object; expected the RDS format".to_string())
    })?;
    let text = |key: &str| -> Result<Option<String>, ConfigError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(format!("field `{key}` must be a string"))),
        }
    };
    let username =
        text("username")?.ok_or_else(|| invalid("field `username` is missing".to_string()))?;
    let password = match obj.get("password") {
        Some(Value::String(s)) if !s.is_empty() => SecretToken::new(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(invalid("field `password` is missing".to_string()))
        }
        Some(_) => return Err(invalid("field `password` must be a string".to_string())),
    };
    let host = match text("host")? {
        Some(h) => h.trim().to_string(),
        None => defaults
            .host
            .clone()
            .ok_or_else(|| invalid("field `host` is missing and DB_HOST is not set".to_string()))?,
    };
    let port = match obj.get("port") {
        None | Some(Value::Null) => match &defaults.port {
            Some(p) => p.trim().parse::<u16>().map_err(|_| ConfigError::Invalid {
                var: "DB_PORT",
                message: "must be a port number".into(),
            })?,
            None => 5432,
        },
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid("field `port` is not a port number".to_string()))?,
        Some(Value::String(s)) => s
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid("field `port` is not a port number".to_string()))?,
        Some(_) => return Err(invalid("field `port` is not a port number".to_string())),
    };
    let dbname = match text("dbname")? {
        Some(d) => d,
        None => defaults.dbname.clone().ok_or_else(|| {
            invalid("field `dbname` is missing and DB_NAME is not set".to_string())
        })?,
    };
    Ok(DbCredentials {
        host,
        port,
        username,
        password,
        dbname,
    })
}

/// The Meta token secret: a plain string, or JSON `{"access_token": "…"}`.
pub fn parse_token_secret(
    var: &'static str,
    secret: &SecretToken,
) -> Result<SecretToken, ConfigError> {
    let raw = secret.expose().trim();
    if raw.starts_with('{') {
        let value: Value = serde_json::from_str(raw).map_err(|e| ConfigError::Invalid {
            var,
            message: format!(
                "the secret looks like JSON but is not valid (line {}, column {}); expected a \
                 plain token or {{\"access_token\": \"…\"}}",
                e.line(),
                e.column()
            ),
        })?;
        return match value.get("access_token") {
            Some(Value::String(t)) if !t.trim().is_empty() => {
                Ok(SecretToken::new(t.trim().to_string()))
            }
            Some(Value::String(_)) | None | Some(Value::Null) => Err(ConfigError::Invalid {
                var,
                message: "the secret is JSON without an `access_token` field".into(),
            }),
            Some(_) => Err(ConfigError::Invalid {
                var,
                message: "field `access_token` must be a string".into(),
            }),
        };
    }
    if raw.is_empty() || raw.chars().any(char::is_whitespace) {
        return Err(ConfigError::Invalid {
            var,
            message: "the secret is neither a token nor {\"access_token\": \"…\"}".into(),
        });
    }
    Ok(SecretToken::new(raw.to_string()))
}

/// The Google credentials secret: JSON `{"client_id", "client_secret", "refresh_token"}` (an
/// OAuth2 client and a refresh token it issued; the service refreshes access tokens itself).
/// Messages never quote the secret.
pub fn parse_google_credentials(
    var: &'static str,
    secret: &SecretToken,
) -> Result<GoogleAuth, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { var, message };
    let value: Value = serde_json::from_str(secret.expose().trim()).map_err(|e| {
        invalid(format!(
            "the secret is not valid JSON (line {}, column {}); expected {{\"client_id\", \
             \"client_secret\", \"refresh_token\"}}",
            e.line(),
            e.column()
        ))
    })?;
    let field = |key: &str| match value.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(invalid(format!("field `{key}` is missing")))
        }
        Some(_) => Err(invalid(format!("field `{key}` must be a string"))),
    };
    if !value.is_object() {
        return Err(invalid(
            "the secret is not a JSON object; expected {\"client_id\", \"client_secret\", \
             \"refresh_token\"}"
                .into(),
        ));
    }
    Ok(GoogleAuth::Refresh {
        client_id: field("client_id")?,
        client_secret: SecretToken::new(field("client_secret")?),
        refresh_token: SecretToken::new(field("refresh_token")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretToken {
        SecretToken::new(s)
    }

    #[test]
    fn full_rds_secret() {
        let s = secret(
            r#"{"engine":"postgres","host":"db.example.internal","port":5433,
                "username":"app","password":"p@ss w/rd:x","dbname":"audiences"}"#,
        );
        let c = parse_db_secret("DB_SECRET_ARN", &s, &DbDefaults::default()).unwrap();
        assert_eq!(c.host, "db.example.internal");
        assert_eq!(c.port, 5433);
        assert_eq!(
            c.url(),
            "postgresql://app:p%40ss%20w%2Frd%3Ax@db.example.internal:5433/audiences"
        );
        let parsed: tokio_postgres::Config = c.url().parse().unwrap();
        assert_eq!(parsed.get_password(), Some("p@ss w/rd:x".as_bytes()));
        assert!(!format!("{c:?}").contains("p@ss"));
    }

    #[test]
    fn rds_managed_secret_takes_host_and_name_from_env() {
        let s = secret(r#"{"username":"app","password":"pw"}"#);
        let defaults = DbDefaults {
            host: Some("cluster.example".into()),
            port: Some("6432".into()),
            dbname: Some("prod".into()),
        };
        let c = parse_db_secret("DB_SECRET_ARN", &s, &defaults).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.dbname.as_str()),
            ("cluster.example", 6432, "prod")
        );
        let err = parse_db_secret("DB_SECRET_ARN", &s, &DbDefaults::default()).unwrap_err();
        assert!(err.to_string().contains("DB_HOST"), "{err}");
    }

    #[test]
    fn malformed_db_secrets_never_echo_the_value() {
        for bad in [
            "hunter2-not-json",
            r#"["hunter2"]"#,
            r#"{"username":"app"}"#,
            r#"{"username":"app","password":"hunter2","host":"h","dbname":"d","port":"hunter2"}"#,
            r#"{"username":"app","password":"hunter2","host":"h","dbname":"d","port":99999}"#,
            r#"{"username":7,"password":"hunter2","host":"h","dbname":"d"}"#,
        ] {
            let err = parse_db_secret("DB_SECRET_ARN", &secret(bad), &DbDefaults::default())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("DB_SECRET_ARN: "), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn google_credentials_secret() {
        let auth = parse_google_credentials(
            "GOOGLE_CREDENTIALS_SECRET_ARN",
            &secret(r#"{"client_id":"id","client_secret":"cs","refresh_token":"rt"}"#),
        )
        .unwrap();
        let GoogleAuth::Refresh {
            client_id,
            client_secret,
            refresh_token,
        } = auth
        else {
            panic!("refresh credentials expected");
        };
        assert_eq!(client_id, "id");
        assert_eq!(
            (client_secret.expose(), refresh_token.expose()),
            ("cs", "rt")
        );
        for bad in [
            r#"{"client_id":"id","client_secret":"hunter2"}"#,
            r#"{"client_id":"id","client_secret":"hunter2","refresh_token":7}"#,
            r#"["hunter2"]"#,
            "hunter2",
        ] {
            let err = parse_google_credentials("GOOGLE_CREDENTIALS_SECRET_ARN", &secret(bad))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("GOOGLE_CREDENTIALS_SECRET_ARN: "), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn token_secret_plain_or_json() {
        let t = parse_token_secret("META_TOKEN_SECRET_ARN", &secret(" EAAB123 \n")).unwrap();
        assert_eq!(t.expose(), "EAAB123");
        let t = parse_token_secret(
            "META_TOKEN_SECRET_ARN",
            &secret(r#"{"access_token":"EAAB9"}"#),
        )
        .unwrap();
        assert_eq!(t.expose(), "EAAB9");
        for bad in [
            r#"{"token":"EAABsecret"}"#,
            r#"{"access_token":"EAABsecret""#,
            "EAAB secret",
        ] {
            let err = parse_token_secret("META_TOKEN_SECRET_ARN", &secret(bad))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("META_TOKEN_SECRET_ARN: "), "{err}");
            assert!(!err.contains("EAAB"), "{err}");
        }
    }
}
