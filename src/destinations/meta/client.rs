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
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::error::{scrub, ErrorKind, MetaError};
use super::wire::{
    validate_payload, AudienceInfo, IdAnswer, Session, SuccessAnswer, UsersBody, UsersPayload,
    UsersResponse,
};
use crate::destinations::deadline::hard_stop;
use crate::destinations::retry::RetryPolicy;
use crate::destinations::token::SecretToken;

/// The largest answer read from Meta: its answers are a few kilobytes (100 invalid-entry
/// samples at most); anything bigger is not Meta's, and is not buffered.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// How long ago (by Meta's clock) an audience found by name may have been made and still be
/// taken as the one our unanswered create made.
const CREATE_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The pinned Graph API version used when `META_GRAPH_URL` is unset.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com/v25.0";

/// Fields read by [`MetaClient::get_audience`].
pub const AUDIENCE_FIELDS: &str = "id,name,approximate_count_lower_bound,\
approximate_count_upper_bound,operation_status,delivery_status,time_content_updated";

/// Longest retention Meta accepts for `retention_days` on a website audience.
pub const MAX_RETENTION_DAYS: u32 = 180;

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

/// Hex HMAC-SHA256 of the access token keyed with the app secret.
pub fn appsecret_proof(access_token: &str, app_secret: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(access_token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `act_123` or `123` → `123`; anything but digits is refused.
/// Where an ad account's audiences are created (customer lists, lookalikes, pixel audiences).
pub fn customaudiences_path(account: &str) -> String {
    format!("/act_{account}/customaudiences")
}

/// An audience's members edge: `users` (add, remove) or `usersreplace`.
pub fn users_path(audience_id: &str, edge: &str) -> String {
    format!("/{audience_id}/{edge}")
}

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
        // The token travels in every request's headers: plain HTTP only to this machine (a
        // local fake or proxy), never across a network.
        if parsed.scheme() == "http" && !crate::destinations::is_loopback(&parsed) {
            return Err(MetaError::InvalidRequest(
                "META_GRAPH_URL must use https (plain http only to localhost or 127.0.0.1, e.g. a local fake)"
                    .to_string(),
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
                    "no Meta ad account: the audience names none (destination_account_id, \
                     alias meta_business_account_id) and META_AD_ACCOUNT_ID is not set"
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
        self.create_customer_list(ad_account, name, description, false)
            .await
    }

    /// Create a customer list, value-based (`is_value_based`) or not: a value-based list's
    /// rows carry `LOOKALIKE_VALUE`, and a lookalike built on it weighs people by that value
    /// (the ad account must have accepted the value-based lookalike terms). Returns its id.
    pub async fn create_customer_list(
        &self,
        ad_account: &str,
        name: &str,
        description: &str,
        value_based: bool,
    ) -> Result<String, MetaError> {
        let mut body = Map::new();
        body.insert("name".into(), json!(name));
        body.insert("description".into(), json!(description));
        body.insert("subtype".into(), json!("CUSTOM"));
        body.insert("customer_file_source".into(), json!("USER_PROVIDED_ONLY"));
        if value_based {
            body.insert("is_value_based".into(), json!(1));
        }
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

    /// Create a website (engagement) audience from a pixel `rule` (see
    /// [`pixel_rule`](super::wire::pixel_rule));
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
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let call = Call {
            op,
            method: Method::POST,
            path: customaudiences_path(&account),
            query: Vec::new(),
            body: Some(encode(&Value::Object(body))?),
        };
        let since = std::time::SystemTime::now() - CREATE_CLOCK_SKEW;
        let mut attempt = 1;
        let (status, value) = loop {
            match self.send_once(&call).await {
                Ok(answer) => break answer,
                Err(err) => {
                    // Unanswered is not undone: Meta may have made the audience. Another
                    // create would make a second one; look for the first instead.
                    let maybe_made = err.may_have_been_applied();
                    self.wait_to_retry(op, err, attempt).await?;
                    attempt += 1;
                    if maybe_made {
                        if let Some(id) = self.find_created(&account, &name, since).await? {
                            tracing::info!(
                                op,
                                "an unanswered create had been carried out: using that audience"
                            );
                            return Ok(id);
                        }
                    }
                }
            }
        };
        let answer: IdAnswer = parse_answer(op, status, value)?;
        if answer.id.is_empty() {
            return Err(MetaError::UnexpectedResponse {
                status: 200,
                detail: "no audience id in Meta's answer".to_string(),
            });
        }
        Ok(answer.id)
    }

    /// The audience named `name` in ad account `account` made since `since`, if any: what a
    /// create that got no answer may have made.
    async fn find_created(
        &self,
        account: &str,
        name: &str,
        since: std::time::SystemTime,
    ) -> Result<Option<String>, MetaError> {
        let filtering = json!([{"field": "name", "operator": "EQUAL", "value": name}]);
        let mut query = vec![
            ("fields", "id,name,time_created".to_string()),
            ("filtering", filtering.to_string()),
            ("limit", "100".to_string()),
        ];
        if let Some(proof) = &self.proof {
            query.push(("appsecret_proof", proof.clone()));
        }
        let call = Call {
            op: "find_audience_by_name",
            method: Method::GET,
            path: format!("/act_{account}/customaudiences"),
            query,
            body: None,
        };
        let found: AudienceList = self.execute_typed(&call).await?;
        let since = since
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(found
            .data
            .into_iter()
            .filter(|a| a.name == name && a.time_created >= since)
            .max_by_key(|a| a.time_created)
            .map(|a| a.id))
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
            path: users_path(audience_id, edge),
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

    /// `GET /{path}?fields=…`: one read of a Graph object (the health check's ad account and
    /// token owner).
    pub(super) async fn read_object(
        &self,
        op: &'static str,
        path: String,
        fields: &str,
    ) -> Result<Value, MetaError> {
        let mut query = vec![("fields", fields.to_string())];
        if let Some(proof) = &self.proof {
            query.push(("appsecret_proof", proof.clone()));
        }
        let call = Call {
            op,
            method: Method::GET,
            path,
            query,
            body: None,
        };
        self.execute_typed(&call).await
    }

    /// Whether Meta no longer has the audience (deleted in Ads Manager, or by Meta). Meta answers
    /// 100/33 alike for an audience that does not exist and for one this token may not read;
    /// when the token reads the ad account's audiences, the audience is not hidden: it is gone.
    /// An error of the second read is returned (nothing is concluded).
    pub async fn audience_vanished(
        &self,
        ad_account: &str,
        audience_id: &str,
    ) -> Result<bool, MetaError> {
        match self.get_audience(audience_id).await {
            Ok(_) => return Ok(false),
            Err(e) if e.is_missing_object() => {}
            Err(e) => return Err(e),
        }
        let mut query = vec![("fields", "id".to_string()), ("limit", "1".to_string())];
        if let Some(proof) = &self.proof {
            query.push(("appsecret_proof", proof.clone()));
        }
        let call = Call {
            op: "list_audiences",
            method: Method::GET,
            path: format!("/act_{ad_account}/customaudiences"),
            query,
            body: None,
        };
        let _: Value = self.execute_typed(&call).await?;
        Ok(true)
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
        parse_answer(call.op, status, value)
    }

    /// Send with retries on transient errors.
    async fn execute(&self, call: &Call) -> Result<(u16, Value), MetaError> {
        let mut attempt = 1;
        loop {
            match self.send_once(call).await {
                Ok(answer) => return Ok(answer),
                Err(err) => {
                    self.wait_to_retry(call.op, err, attempt).await?;
                    attempt += 1;
                }
            }
        }
    }

    /// After failed attempt number `attempt`: waits the backoff when the error is transient,
    /// attempts are left and the retry can finish before the sync's deadline (see [`within`]);
    /// otherwise gives `err` back.
    async fn wait_to_retry(&self, op: &str, err: MetaError, attempt: u32) -> Result<(), MetaError> {
        let max_attempts = self.retry.max_attempts.max(1);
        let transient = err.kind() == ErrorKind::Transient;
        let delay = self.retry.delay(attempt, err.retry_after());
        // One more attempt needs the wait and at least a second to be answered.
        let out_of_time =
            hard_stop().is_some_and(|stop| Instant::now() + delay + Duration::from_secs(1) > stop);
        if !transient || attempt >= max_attempts || out_of_time {
            if transient {
                tracing::warn!(
                    op,
                    attempts = attempt,
                    out_of_time,
                    code = ?err.code(),
                    subcode = ?err.subcode(),
                    fbtrace_id = ?err.fbtrace_id(),
                    "Meta call still failing; giving up"
                );
            }
            return Err(err);
        }
        tracing::warn!(
            op,
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
        Ok(())
    }

    /// One attempt's timeout: the configured one, cut short by the sync's deadline.
    fn attempt_timeout(&self) -> Duration {
        match hard_stop() {
            Some(stop) => {
                let left = stop.saturating_duration_since(Instant::now());
                self.timeout.min(left.max(Duration::from_secs(1)))
            }
            None => self.timeout,
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
            .timeout(self.attempt_timeout());
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
        let bytes = self.read_capped(resp, status).await?;
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

    /// The answer's body, refused past [`MAX_ANSWER_BYTES`] without reading the rest.
    async fn read_capped(
        &self,
        mut resp: reqwest::Response,
        status: u16,
    ) -> Result<Vec<u8>, MetaError> {
        let too_big = || MetaError::UnexpectedResponse {
            status,
            detail: format!("an answer larger than {MAX_ANSWER_BYTES} bytes; not read"),
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(e))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport_error(&self, e: reqwest::Error) -> MetaError {
        let timeout = e.is_timeout();
        let connect = e.is_connect();
        let detail = if timeout {
            format!("no answer within {} ms", self.attempt_timeout().as_millis())
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

fn parse_answer<T: DeserializeOwned>(op: &str, status: u16, value: Value) -> Result<T, MetaError> {
    serde_json::from_value(value).map_err(|e| MetaError::UnexpectedResponse {
        status,
        detail: format!("could not read Meta's answer to {op}: {e}"),
    })
}

/// `GET /act_{id}/customaudiences` (one page: a name matches few).
#[derive(serde::Deserialize)]
struct AudienceList {
    #[serde(default)]
    data: Vec<ListedAudience>,
}

#[derive(serde::Deserialize)]
struct ListedAudience {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    time_created: i64,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, MetaError> {
    serde_json::to_vec(value)
        .map_err(|e| MetaError::InvalidRequest(format!("could not encode the request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_and_client_debug_are_redacted() {
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
    fn plain_http_only_to_this_machine() {
        let with_url = |url: &str| {
            let mut cfg = MetaConfig::new("t");
            cfg.graph_url = url.to_string();
            MetaClient::new(cfg)
        };
        for url in [
            "http://graph.facebook.com/v25.0",
            "http://10.0.0.5:8080/v25.0",
            "http://example.com/v25.0",
        ] {
            let err = with_url(url).unwrap_err().to_string();
            assert!(err.contains("https"), "{url}: {err}");
        }
        for url in [
            "https://graph.facebook.com/v25.0",
            "http://127.0.0.1:4000/v25.0",
            "http://localhost:4000/v25.0",
            "http://[::1]:4000/v25.0",
        ] {
            assert!(with_url(url).is_ok(), "{url}");
        }
    }
}
