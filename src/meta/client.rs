//! Meta Marketing API client: custom audiences and their members.
//!
//! The access token travels only in the `Authorization: Bearer` header, never in a URL. With an
//! app secret, each call carries `appsecret_proof` (a body field; a query parameter on GET,
//! which has no body). Payloads always travel in the JSON body, never in the query string.
//! Transient failures are retried with exponential backoff and full jitter.

use std::fmt;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use reqwest::Method;
use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::error::{scrub, ErrorKind, MetaError};

/// The pinned Graph API version used when `META_GRAPH_URL` is unset.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com/v25.0";

/// Meta's maximum number of rows in one `/users` or `/usersreplace` request.
pub const MAX_ROWS: usize = 10_000;

/// Fields read by [`MetaClient::get_audience`].
pub const AUDIENCE_FIELDS: &str = "id,name,approximate_count_lower_bound,\
approximate_count_upper_bound,operation_status,delivery_status,time_content_updated";

/// Longest retention Meta accepts for `retention_days` on a website audience.
pub const MAX_RETENTION_DAYS: u32 = 180;

/// A secret string (access token, app secret). `Debug` and `Display` print `[redacted]`.
#[derive(Clone, Default)]
pub struct SecretToken(String);

impl SecretToken {
    pub fn new(value: impl Into<String>) -> Self {
        SecretToken(value.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for SecretToken {
    fn from(value: String) -> Self {
        SecretToken(value)
    }
}

impl From<&str> for SecretToken {
    fn from(value: &str) -> Self {
        SecretToken(value.to_string())
    }
}

/// Retry schedule for transient errors: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first one included (0 is treated as 1).
    pub max_attempts: u32,
    /// Ceiling of the first retry's delay; doubles on every retry.
    pub base_delay: Duration,
    /// Cap of any delay, including Meta's `estimated_time_to_regain_access`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Upper bound of the delay before retry number `retry` (1 = the first retry).
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let ceiling = self.base_delay.saturating_mul(1u32 << exp);
        ceiling.min(self.max_delay)
    }

    /// The delay before retry number `retry`: uniform in `[0, ceiling]` (full jitter), at least
    /// Meta's requested wait when given, never more than `max_delay`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.backoff_ceiling(retry).as_micros() as u64;
        let jittered = Duration::from_micros(if ceiling == 0 {
            0
        } else {
            rand::random_range(0..=ceiling)
        });
        match retry_after {
            Some(wait) => jittered.max(wait).min(self.max_delay),
            None => jittered,
        }
    }
}

/// What the client needs to talk to Meta.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    /// Base URL including the version segment, e.g. `https://graph.facebook.com/v25.0`.
    pub graph_url: String,
    pub access_token: SecretToken,
    /// When set, every call carries `appsecret_proof`.
    pub app_secret: Option<SecretToken>,
    /// Default ad account: digits, `act_` prefix accepted.
    pub ad_account_id: Option<String>,
    /// Timeout of one HTTP request (each attempt).
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl MetaConfig {
    /// Defaults: [`DEFAULT_GRAPH_URL`], no app secret, no ad account, 60 s timeout, default retries.
    pub fn new(access_token: impl Into<SecretToken>) -> Self {
        MetaConfig {
            graph_url: DEFAULT_GRAPH_URL.to_string(),
            access_token: access_token.into(),
            app_secret: None,
            ad_account_id: None,
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

/// A member payload: rows of values in schema order, `""` for unknown values.
#[derive(Clone, Copy, Serialize)]
pub struct UsersPayload<'a> {
    pub schema: &'a [&'a str],
    pub data: &'a [Vec<String>],
}

impl fmt::Debug for UsersPayload<'_> {
    // Never prints the data, only its shape.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsersPayload")
            .field("schema", &self.schema)
            .field("rows", &self.data.len())
            .finish()
    }
}

/// An upload session (optional on `/users`, required on `/usersreplace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Positive int64, unique in the ad account.
    pub session_id: u64,
    /// 1, 2, 3, …; 1 starts a replace.
    pub batch_seq: u32,
    /// True on the last batch.
    pub last_batch_flag: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_num_total: Option<u64>,
}

/// Meta's answer to `/users` and `/usersreplace`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct UsersResponse {
    #[serde(default, deserialize_with = "de_string_or_number")]
    pub audience_id: String,
    #[serde(default, deserialize_with = "de_string_or_number")]
    pub session_id: String,
    #[serde(default, deserialize_with = "de_u64_lenient")]
    pub num_received: u64,
    #[serde(default, deserialize_with = "de_u64_lenient")]
    pub num_invalid_entries: u64,
    /// As Meta sends it (a map or a list).
    #[serde(default)]
    pub invalid_entry_samples: Value,
}

/// `operation_status` / `delivery_status` of an audience.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceStatus {
    #[serde(default, deserialize_with = "de_opt_i64_lenient")]
    pub code: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
}

/// What [`MetaClient::get_audience`] reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudienceInfo {
    #[serde(default, deserialize_with = "de_opt_string_or_number")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64_lenient")]
    pub approximate_count_lower_bound: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64_lenient")]
    pub approximate_count_upper_bound: Option<i64>,
    #[serde(default)]
    pub operation_status: Option<AudienceStatus>,
    #[serde(default)]
    pub delivery_status: Option<AudienceStatus>,
    #[serde(default)]
    pub time_content_updated: Option<Value>,
}

impl AudienceInfo {
    /// Operation status 471: flagged for integrity, no edits allowed.
    pub fn is_flagged(&self) -> bool {
        self.operation_code() == Some(471)
    }

    /// Operation status 414: a replace is running.
    pub fn replace_in_progress(&self) -> bool {
        self.operation_code() == Some(414)
    }

    pub fn operation_code(&self) -> Option<i64> {
        self.operation_status.as_ref().and_then(|s| s.code)
    }

    /// `Err(MetaError::Flagged)` when the audience is flagged (kind `AudienceFlagged`).
    pub fn ensure_not_flagged(&self, audience_id: &str) -> Result<(), MetaError> {
        if self.is_flagged() {
            Err(MetaError::Flagged {
                audience_id: audience_id.to_string(),
                description: self
                    .operation_status
                    .as_ref()
                    .and_then(|s| s.description.clone()),
            })
        } else {
            Ok(())
        }
    }
}

/// Rule of a website (pixel) audience: people who fired `event` on `pixel_id` within
/// `retention_days`.
pub fn pixel_rule(pixel_id: &str, event: &str, retention_days: u32) -> Value {
    json!({
        "inclusions": {
            "operator": "or",
            "rules": [{
                "event_sources": [{"id": pixel_id, "type": "pixel"}],
                "retention_seconds": u64::from(retention_days) * 86_400,
                "filter": {
                    "operator": "and",
                    "filters": [{"field": "event", "operator": "eq", "value": event}]
                }
            }]
        }
    })
}

/// Hex HMAC-SHA256 of the access token keyed with the app secret.
pub fn appsecret_proof(access_token: &str, app_secret: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(access_token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `act_123` or `123` → `123`; anything but digits is refused.
pub fn normalize_ad_account_id(value: &str) -> Result<String, MetaError> {
    let v = value.trim();
    let digits = v.strip_prefix("act_").unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MetaError::InvalidRequest(
            "the ad account id must be digits, optionally prefixed with act_ (check \
             META_AD_ACCOUNT_ID or the audience's business account id)"
                .to_string(),
        ));
    }
    Ok(digits.to_string())
}

fn check_object_id(what: &str, id: &str) -> Result<(), MetaError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MetaError::InvalidRequest(format!(
            "the {what} must be a numeric Meta id"
        )));
    }
    Ok(())
}

/// Client of the Meta Marketing API (custom audiences). Cheap to clone.
#[derive(Clone)]
pub struct MetaClient {
    http: reqwest::Client,
    base: String,
    token: SecretToken,
    app_secret: Option<SecretToken>,
    proof: Option<String>,
    ad_account_id: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for MetaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaClient")
            .field("graph_url", &self.base)
            .field("access_token", &self.token)
            .field(
                "app_secret",
                &self.app_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("ad_account_id", &self.ad_account_id)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// One request, replayable across retries.
struct Call {
    op: &'static str,
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

#[derive(Serialize)]
struct UsersBody<'a> {
    payload: UsersPayload<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a Session>,
    #[serde(skip_serializing_if = "Option::is_none")]
    appsecret_proof: Option<&'a str>,
}

#[derive(Deserialize)]
struct IdAnswer {
    #[serde(deserialize_with = "de_string_or_number")]
    id: String,
}

#[derive(Deserialize)]
struct SuccessAnswer {
    #[serde(default)]
    success: bool,
}

impl MetaClient {
    pub fn new(config: MetaConfig) -> Result<Self, MetaError> {
        if config.access_token.is_empty() {
            return Err(MetaError::InvalidRequest(
                "the Meta access token is empty (set META_ACCESS_TOKEN or the token secret)"
                    .to_string(),
            ));
        }
        let base = config.graph_url.trim().trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base).map_err(|_| {
            MetaError::InvalidRequest("META_GRAPH_URL is not a valid URL".to_string())
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
            return Err(MetaError::InvalidRequest(
                "META_GRAPH_URL must be an http(s) URL without a query string".to_string(),
            ));
        }
        let ad_account_id = match config.ad_account_id.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => Some(normalize_ad_account_id(s)?),
            _ => None,
        };
        let app_secret = config.app_secret.filter(|s| !s.is_empty());
        let proof = app_secret
            .as_ref()
            .map(|s| appsecret_proof(config.access_token.expose(), s.expose()));
        let timeout = if config.timeout.is_zero() {
            Duration::from_secs(60)
        } else {
            config.timeout
        };
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .build()
            .map_err(|e| MetaError::InvalidRequest(format!("HTTP client setup failed: {e}")))?;
        Ok(MetaClient {
            http,
            base,
            token: config.access_token,
            app_secret,
            proof,
            ad_account_id,
            timeout,
            retry: config.retry,
        })
    }

    /// The base URL (with version) in use.
    pub fn graph_url(&self) -> &str {
        &self.base
    }

    /// The configured default ad account (digits), if any.
    pub fn ad_account_id(&self) -> Option<&str> {
        self.ad_account_id.as_deref()
    }

    /// The audience's own account when given, else the configured default (digits).
    pub fn resolve_ad_account(&self, account: Option<&str>) -> Result<String, MetaError> {
        match account.map(str::trim).filter(|s| !s.is_empty()) {
            Some(a) => normalize_ad_account_id(a),
            None => self.ad_account_id.clone().ok_or_else(|| {
                MetaError::InvalidRequest(
                    "no Meta ad account: set META_AD_ACCOUNT_ID or the audience's business \
                     account id"
                        .to_string(),
                )
            }),
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Create a customer-list audience; returns its id.
    pub async fn create_custom_audience(
        &self,
        ad_account: &str,
        name: &str,
        description: &str,
    ) -> Result<String, MetaError> {
        let mut body = Map::new();
        body.insert("name".into(), json!(name));
        body.insert("description".into(), json!(description));
        body.insert("subtype".into(), json!("CUSTOM"));
        body.insert("customer_file_source".into(), json!("USER_PROVIDED_ONLY"));
        self.create(ad_account, "create_custom_audience", body)
            .await
    }

    /// Create a lookalike of `origin_audience_id` in `country` (ISO alpha-2) with `ratio`
    /// 0.01–0.20 (percent / 100); returns its id.
    pub async fn create_lookalike(
        &self,
        ad_account: &str,
        name: &str,
        description: &str,
        origin_audience_id: &str,
        country: &str,
        ratio: f64,
    ) -> Result<String, MetaError> {
        check_object_id("origin audience id", origin_audience_id)?;
        let country = country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(MetaError::InvalidRequest(
                "the lookalike country must be an ISO 3166-1 alpha-2 code".to_string(),
            ));
        }
        let ratio = (ratio * 100.0).round() / 100.0;
        if !(0.01..=0.20).contains(&ratio) {
            return Err(MetaError::InvalidRequest(
                "the lookalike ratio must be between 0.01 and 0.20 (1% to 20%)".to_string(),
            ));
        }
        let spec = json!({"country": country, "ratio": ratio}).to_string();
        let mut body = Map::new();
        body.insert("name".into(), json!(name));
        body.insert("description".into(), json!(description));
        body.insert("subtype".into(), json!("LOOKALIKE"));
        body.insert("origin_audience_id".into(), json!(origin_audience_id));
        body.insert("lookalike_spec".into(), json!(spec));
        self.create(ad_account, "create_lookalike", body).await
    }

    /// Create a website (engagement) audience from a pixel `rule` (see [`pixel_rule`]);
    /// returns its id.
    pub async fn create_engagement(
        &self,
        ad_account: &str,
        name: &str,
        description: &str,
        rule: &Value,
        retention_days: u32,
    ) -> Result<String, MetaError> {
        if !(1..=MAX_RETENTION_DAYS).contains(&retention_days) {
            return Err(MetaError::InvalidRequest(format!(
                "retention days must be between 1 and {MAX_RETENTION_DAYS}"
            )));
        }
        if !rule.is_object() {
            return Err(MetaError::InvalidRequest(
                "the audience rule must be a JSON object".to_string(),
            ));
        }
        let mut body = Map::new();
        body.insert("name".into(), json!(name));
        body.insert("description".into(), json!(description));
        body.insert("rule".into(), json!(rule.to_string()));
        body.insert("retention_days".into(), json!(retention_days));
        body.insert("prefill".into(), json!(true));
        self.create(ad_account, "create_engagement", body).await
    }

    async fn create(
        &self,
        ad_account: &str,
        op: &'static str,
        mut body: Map<String, Value>,
    ) -> Result<String, MetaError> {
        let account = normalize_ad_account_id(ad_account)?;
        if let Some(proof) = &self.proof {
            body.insert("appsecret_proof".into(), json!(proof));
        }
        let call = Call {
            op,
            method: Method::POST,
            path: format!("/act_{account}/customaudiences"),
            query: Vec::new(),
            body: Some(encode(&Value::Object(body))?),
        };
        let answer: IdAnswer = self.execute_typed(&call).await?;
        if answer.id.is_empty() {
            return Err(MetaError::UnexpectedResponse {
                status: 200,
                detail: "no audience id in Meta's answer".to_string(),
            });
        }
        Ok(answer.id)
    }

    /// Add members: `POST /{audience_id}/users`.
    pub async fn add_users(
        &self,
        audience_id: &str,
        payload: &UsersPayload<'_>,
        session: Option<Session>,
    ) -> Result<UsersResponse, MetaError> {
        self.users_call(
            "add_users",
            Method::POST,
            audience_id,
            "users",
            payload,
            session,
        )
        .await
    }

    /// Remove members: `DELETE /{audience_id}/users`, payload in the body.
    pub async fn remove_users(
        &self,
        audience_id: &str,
        payload: &UsersPayload<'_>,
        session: Option<Session>,
    ) -> Result<UsersResponse, MetaError> {
        self.users_call(
            "remove_users",
            Method::DELETE,
            audience_id,
            "users",
            payload,
            session,
        )
        .await
    }

    /// One batch of a full replace: `POST /{audience_id}/usersreplace`.
    pub async fn replace_users(
        &self,
        audience_id: &str,
        payload: &UsersPayload<'_>,
        session: Session,
    ) -> Result<UsersResponse, MetaError> {
        self.users_call(
            "replace_users",
            Method::POST,
            audience_id,
            "usersreplace",
            payload,
            Some(session),
        )
        .await
    }

    async fn users_call(
        &self,
        op: &'static str,
        method: Method,
        audience_id: &str,
        edge: &str,
        payload: &UsersPayload<'_>,
        session: Option<Session>,
    ) -> Result<UsersResponse, MetaError> {
        check_object_id("audience id", audience_id)?;
        validate_payload(payload)?;
        if let Some(s) = &session {
            if s.session_id == 0 || s.session_id > i64::MAX as u64 {
                return Err(MetaError::InvalidRequest(
                    "the session id must be a positive 64-bit integer".to_string(),
                ));
            }
            if s.batch_seq == 0 {
                return Err(MetaError::InvalidRequest(
                    "batch_seq starts at 1".to_string(),
                ));
            }
        }
        let body = UsersBody {
            payload: *payload,
            session: session.as_ref(),
            appsecret_proof: self.proof.as_deref(),
        };
        let call = Call {
            op,
            method,
            path: format!("/{audience_id}/{edge}"),
            query: Vec::new(),
            body: Some(encode(&body)?),
        };
        let mut answer: UsersResponse = self.execute_typed(&call).await?;
        if answer.audience_id.is_empty() {
            answer.audience_id = audience_id.to_string();
        }
        if answer.session_id.is_empty() {
            if let Some(s) = session {
                answer.session_id = s.session_id.to_string();
            }
        }
        Ok(answer)
    }

    /// Read counts and statuses of an audience.
    pub async fn get_audience(&self, audience_id: &str) -> Result<AudienceInfo, MetaError> {
        check_object_id("audience id", audience_id)?;
        let mut query = vec![("fields", AUDIENCE_FIELDS.to_string())];
        if let Some(proof) = &self.proof {
            query.push(("appsecret_proof", proof.clone()));
        }
        let call = Call {
            op: "get_audience",
            method: Method::GET,
            path: format!("/{audience_id}"),
            query,
            body: None,
        };
        self.execute_typed(&call).await
    }

    /// Delete an audience (fails with `DeleteBlockedByLookalikes` while lookalikes use it).
    pub async fn delete_audience(&self, audience_id: &str) -> Result<(), MetaError> {
        check_object_id("audience id", audience_id)?;
        let mut body = Map::new();
        if let Some(proof) = &self.proof {
            body.insert("appsecret_proof".into(), json!(proof));
        }
        let call = Call {
            op: "delete_audience",
            method: Method::DELETE,
            path: format!("/{audience_id}"),
            query: Vec::new(),
            body: if body.is_empty() {
                None
            } else {
                Some(encode(&Value::Object(body))?)
            },
        };
        let answer: SuccessAnswer = self.execute_typed(&call).await?;
        if !answer.success {
            return Err(MetaError::UnexpectedResponse {
                status: 200,
                detail: "Meta did not confirm the deletion (success is not true)".to_string(),
            });
        }
        Ok(())
    }

    async fn execute_typed<T: DeserializeOwned>(&self, call: &Call) -> Result<T, MetaError> {
        let (status, value) = self.execute(call).await?;
        serde_json::from_value(value).map_err(|e| MetaError::UnexpectedResponse {
            status,
            detail: format!("could not read Meta's answer to {}: {e}", call.op),
        })
    }

    /// Send with retries on transient errors.
    async fn execute(&self, call: &Call) -> Result<(u16, Value), MetaError> {
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.send_once(call).await {
                Ok(answer) => return Ok(answer),
                Err(err) => {
                    let kind = err.kind();
                    if kind != ErrorKind::Transient || attempt >= max_attempts {
                        if kind == ErrorKind::Transient {
                            tracing::warn!(
                                op = call.op,
                                attempts = attempt,
                                code = ?err.code(),
                                subcode = ?err.subcode(),
                                fbtrace_id = ?err.fbtrace_id(),
                                "Meta call still failing after the last attempt"
                            );
                        }
                        return Err(err);
                    }
                    let delay = self.retry.delay(attempt, err.retry_after());
                    tracing::warn!(
                        op = call.op,
                        attempt,
                        max_attempts,
                        code = ?err.code(),
                        subcode = ?err.subcode(),
                        http_status = ?err.http_status(),
                        timeout = err.is_timeout(),
                        delay_ms = delay.as_millis() as u64,
                        fbtrace_id = ?err.fbtrace_id(),
                        "transient Meta error; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    fn secrets(&self) -> Vec<&str> {
        let mut s = vec![self.token.expose()];
        if let Some(secret) = &self.app_secret {
            s.push(secret.expose());
        }
        s
    }

    async fn send_once(&self, call: &Call) -> Result<(u16, Value), MetaError> {
        let url = format!("{}{}", self.base, call.path);
        let started = Instant::now();
        let mut rb = self
            .http
            .request(call.method.clone(), &url)
            .bearer_auth(self.token.expose())
            .header(
                USER_AGENT,
                concat!("audience-sync/", env!("CARGO_PKG_VERSION")),
            )
            .timeout(self.timeout);
        if !call.query.is_empty() {
            rb = rb.query(&call.query);
        }
        if let Some(body) = &call.body {
            rb = rb
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let resp = rb.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        tracing::debug!(
            op = call.op,
            method = %call.method,
            path = %call.path,
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Meta call"
        );
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let content_type = header("content-type");
        let usage = header("x-business-use-case-usage");
        if (200..300).contains(&status) {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) if v.get("error").is_some_and(|e| e.is_object()) => Err(
                    MetaError::from_response(status, content_type, usage, &bytes, &self.secrets()),
                ),
                Ok(v) => Ok((status, v)),
                Err(_) => {
                    let err = MetaError::from_response(
                        status,
                        content_type,
                        usage,
                        &bytes,
                        &self.secrets(),
                    );
                    match err {
                        MetaError::NonJson { html: true, .. } => Err(err),
                        _ => Err(MetaError::UnexpectedResponse {
                            status,
                            detail: format!("{} bytes that are not JSON", bytes.len()),
                        }),
                    }
                }
            }
        } else {
            Err(MetaError::from_response(
                status,
                content_type,
                usage,
                &bytes,
                &self.secrets(),
            ))
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> MetaError {
        let timeout = e.is_timeout();
        let connect = e.is_connect();
        let detail = if timeout {
            format!("no answer within {} ms", self.timeout.as_millis())
        } else {
            let mut chain = String::new();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                source = s.source();
            }
            let text = format!("{}{chain}", e.without_url());
            if connect {
                format!("connection failed: {text}")
            } else {
                text
            }
        };
        MetaError::Transport {
            timeout,
            connect,
            detail: scrub(&detail, &self.secrets()),
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, MetaError> {
    serde_json::to_vec(value)
        .map_err(|e| MetaError::InvalidRequest(format!("could not encode the request: {e}")))
}

fn validate_payload(payload: &UsersPayload<'_>) -> Result<(), MetaError> {
    if payload.schema.is_empty() {
        return Err(MetaError::InvalidRequest(
            "the payload schema is empty".to_string(),
        ));
    }
    if payload.data.is_empty() {
        return Err(MetaError::InvalidRequest(
            "the payload has no rows".to_string(),
        ));
    }
    if payload.data.len() > MAX_ROWS {
        return Err(MetaError::InvalidRequest(format!(
            "{} rows in one request; Meta accepts at most {MAX_ROWS}",
            payload.data.len()
        )));
    }
    if let Some(i) = payload
        .data
        .iter()
        .position(|row| row.len() != payload.schema.len())
    {
        return Err(MetaError::InvalidRequest(format!(
            "row {i} has {} values but the schema has {} keys",
            payload.data[i].len(),
            payload.schema.len()
        )));
    }
    Ok(())
}

fn de_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(de_opt_string_or_number(d)?.unwrap_or_default())
}

fn de_opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(de::Error::custom("expected a string or a number")),
    }
}

fn de_opt_i64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom("expected an integer")),
        Some(_) => Err(de::Error::custom("expected an integer")),
    }
}

fn de_u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(de_opt_i64_lenient(d)?.unwrap_or(0).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_token_is_redacted() {
        let t = SecretToken::new("EAAverysecret");
        assert_eq!(format!("{t}"), "[redacted]");
        assert_eq!(format!("{t:?}"), "[redacted]");
        assert_eq!(t.expose(), "EAAverysecret");
        let mut cfg = MetaConfig::new("EAAverysecret");
        cfg.app_secret = Some("appsecretvalue".into());
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("EAAverysecret") && !dbg.contains("appsecretvalue"));
        let client = MetaClient::new(cfg).unwrap();
        let dbg = format!("{client:?}");
        assert!(!dbg.contains("EAAverysecret") && !dbg.contains("appsecretvalue"));
    }

    #[test]
    fn appsecret_proof_matches_reference_vector() {
        // Computed independently: HMAC-SHA256(key="app-secret-123", msg="EAAtoken456").
        assert_eq!(
            appsecret_proof("EAAtoken456", "app-secret-123"),
            "89fb73c555174d0a5d68cda3f774a5c839ed601f8673323b63300338bbc641e3"
        );
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ceiling(1), Duration::from_secs(1));
        assert_eq!(p.backoff_ceiling(3), Duration::from_secs(4));
        assert_eq!(p.backoff_ceiling(10), Duration::from_secs(60));
        assert_eq!(p.backoff_ceiling(1000), Duration::from_secs(60));
        for retry in 1..8 {
            assert!(p.delay(retry, None) <= p.backoff_ceiling(retry));
        }
        let waited = p.delay(1, Some(Duration::from_secs(300)));
        assert_eq!(waited, Duration::from_secs(60));
        let waited = p.delay(1, Some(Duration::from_secs(30)));
        assert!(waited >= Duration::from_secs(30) && waited <= Duration::from_secs(60));
    }

    #[test]
    fn ad_account_ids() {
        assert_eq!(normalize_ad_account_id("act_123").unwrap(), "123");
        assert_eq!(normalize_ad_account_id(" 456 ").unwrap(), "456");
        assert!(normalize_ad_account_id("act_").is_err());
        assert!(normalize_ad_account_id("12a").is_err());
        let mut cfg = MetaConfig::new("t");
        cfg.ad_account_id = Some("act_789".into());
        let c = MetaClient::new(cfg).unwrap();
        assert_eq!(c.ad_account_id(), Some("789"));
        assert_eq!(c.resolve_ad_account(None).unwrap(), "789");
        assert_eq!(c.resolve_ad_account(Some("act_1")).unwrap(), "1");
        assert!(MetaClient::new(MetaConfig::new(""))
            .unwrap_err()
            .to_string()
            .contains("token"));
    }

    #[test]
    fn pixel_rule_shape() {
        let r = pixel_rule("1234", "Purchase", 30);
        let rule = &r["inclusions"]["rules"][0];
        assert_eq!(r["inclusions"]["operator"], "or");
        assert_eq!(rule["event_sources"][0]["id"], "1234");
        assert_eq!(rule["event_sources"][0]["type"], "pixel");
        assert_eq!(rule["retention_seconds"], 2_592_000);
        assert_eq!(rule["filter"]["filters"][0]["value"], "Purchase");
        assert_eq!(rule["filter"]["filters"][0]["field"], "event");
    }

    #[test]
    fn users_response_is_lenient() {
        let r: UsersResponse = serde_json::from_str(
            r#"{"audience_id": 123, "session_id": "456", "num_received": "10", "num_invalid_entries": 1, "invalid_entry_samples": {"x": "y"}}"#,
        )
        .unwrap();
        assert_eq!(r.audience_id, "123");
        assert_eq!(r.session_id, "456");
        assert_eq!(r.num_received, 10);
        assert_eq!(r.num_invalid_entries, 1);
        assert!(r.invalid_entry_samples.is_object());
        let payload = UsersPayload {
            schema: &["EMAIL"],
            data: &[vec!["secretvalue".to_string()]],
        };
        assert!(!format!("{payload:?}").contains("secretvalue"));
    }
}
