//! Data Manager API client (Customer Match): user lists and their members.
//!
//! OAuth2: a configured access token is used as is; with a refresh token the client asks the
//! token endpoint for access tokens itself, keeps each until shortly before it expires, and
//! refreshes once more when Google answers 401. Tokens travel only in the `Authorization`
//! header (and the refresh token only in the token request's form body), never in a URL or a
//! log line. Transient failures (429 `RESOURCE_EXHAUSTED`, 5xx, timeouts) are retried with
//! backoff and full jitter, within the sync's deadline.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::error::{scrub, ErrorKind, GoogleError};
use super::wire::{
    member_problem, AudienceMember, IngestRequest, NewContactIdInfo, NewIngestedInfo, NewUserList,
    RemoveRequest, RequestAnswer, TokenAnswer, UserList, UserListPage, GOOGLE_ADS, MAX_MEMBERS,
    MEMBERSHIP_DURATION,
};
use crate::destinations::deadline::hard_stop;
use crate::destinations::retry::RetryPolicy;
use crate::destinations::settings::{Consent, GoogleAuth, GoogleConfig};
use crate::destinations::token::SecretToken;

/// Adds members to user lists.
pub const INGEST_PATH: &str = "/audienceMembers:ingest";
/// Removes members from user lists.
pub const REMOVE_PATH: &str = "/audienceMembers:remove";

/// The largest answer read from Google (its answers are small JSON documents).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// An access token is replaced this long before Google says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Google's access tokens last an hour when the answer does not say.
const DEFAULT_TOKEN_LIFETIME: u64 = 3600;
/// Pages of user lists read when looking one up by name (100 lists a page).
const MAX_LIST_PAGES: usize = 20;

struct Cached {
    token: SecretToken,
    until: Instant,
}

/// Client of Google's Data Manager API. One per process (shared behind an `Arc`): it caches the
/// access token.
pub struct GoogleClient {
    http: reqwest::Client,
    base: String,
    token_url: String,
    auth: GoogleAuth,
    cached: tokio::sync::Mutex<Option<Cached>>,
    customer_id: Option<String>,
    login_customer_id: Option<String>,
    ad_user_data: Consent,
    ad_personalization: Consent,
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for GoogleClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleClient")
            .field("api_url", &self.base)
            .field("token_url", &self.token_url)
            .field("auth", &self.auth)
            .field("customer_id", &self.customer_id)
            .field("login_customer_id", &self.login_customer_id)
            .finish_non_exhaustive()
    }
}

/// One request, replayable across retries.
struct Call {
    op: &'static str,
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    /// A resource-management call (`userLists`): the manager account goes in the
    /// `login-account` header (ingestion ignores headers: it goes in the body there).
    login_header: bool,
}

/// `123-456-7890` or `1234567890` → `1234567890`; anything else is refused.
pub fn normalize_customer_id(value: &str, what: &str) -> Result<String, GoogleError> {
    let digits: String = value.trim().chars().filter(|c| *c != '-').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GoogleError::InvalidRequest(format!(
            "{what} must be a Google Ads customer id: digits, dashes allowed (e.g. 123-456-7890)"
        )));
    }
    Ok(digits)
}

fn check_url(value: &str, name: &str) -> Result<String, GoogleError> {
    let base = value.trim().trim_end_matches('/').to_string();
    let parsed = url::Url::parse(&base)
        .map_err(|_| GoogleError::InvalidRequest(format!("{name} is not a valid URL")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    // Tokens travel in these requests: plain HTTP only to this machine (a local fake).
    let ok = parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback);
    if !ok || parsed.query().is_some() {
        return Err(GoogleError::InvalidRequest(format!(
            "{name} must be an https URL without a query string (plain http only to localhost)"
        )));
    }
    Ok(base)
}

impl GoogleClient {
    pub fn new(config: GoogleConfig) -> Result<Self, GoogleError> {
        let empty = match &config.auth {
            GoogleAuth::AccessToken(t) => t.is_empty(),
            GoogleAuth::Refresh {
                client_id,
                client_secret,
                refresh_token,
            } => {
                client_id.trim().is_empty() || client_secret.is_empty() || refresh_token.is_empty()
            }
        };
        if empty {
            return Err(GoogleError::InvalidRequest(
                "the Google credentials are incomplete: GOOGLE_ACCESS_TOKEN, or the secret's \
                 client_id, client_secret and refresh_token"
                    .to_string(),
            ));
        }
        let optional_id = |v: &Option<String>, what| match v.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => normalize_customer_id(s, what).map(Some),
            _ => Ok(None),
        };
        let timeout = if config.request_timeout.is_zero() {
            Duration::from_secs(60)
        } else {
            config.request_timeout
        };
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .build()
            .map_err(|e| GoogleError::InvalidRequest(format!("HTTP client setup failed: {e}")))?;
        Ok(GoogleClient {
            http,
            base: check_url(&config.api_url, "GOOGLE_DATAMANAGER_URL")?,
            token_url: check_url(&config.token_url, "GOOGLE_TOKEN_URL")?,
            customer_id: optional_id(&config.customer_id, "GOOGLE_CUSTOMER_ID")?,
            login_customer_id: optional_id(&config.login_customer_id, "GOOGLE_LOGIN_CUSTOMER_ID")?,
            auth: config.auth,
            cached: tokio::sync::Mutex::new(None),
            ad_user_data: config.ad_user_data_consent,
            ad_personalization: config.ad_personalization_consent,
            timeout,
            retry: config.retry,
        })
    }

    /// The audience's own operating account when given, else `GOOGLE_CUSTOMER_ID`.
    pub fn resolve_account(&self, account: Option<&str>) -> Result<String, GoogleError> {
        match account.map(str::trim).filter(|s| !s.is_empty()) {
            Some(a) => normalize_customer_id(a, "the audience's destination_account_id"),
            None => self.customer_id.clone().ok_or_else(|| {
                GoogleError::InvalidRequest(
                    "no Google Ads customer to sync to: set the audience's \
                     destination_account_id or GOOGLE_CUSTOMER_ID"
                        .to_string(),
                )
            }),
        }
    }

    /// `GOOGLE_LOGIN_CUSTOMER_ID`, digits.
    pub fn login_customer_id(&self) -> Option<&str> {
        self.login_customer_id.as_deref()
    }

    /// The request-level consent every ingest asserts.
    pub fn consent(&self) -> super::wire::Consent {
        super::wire::Consent {
            ad_user_data: self.ad_user_data.as_str(),
            ad_personalization: self.ad_personalization.as_str(),
        }
    }

    pub fn user_lists_path(account: &str) -> String {
        format!("/accountTypes/{GOOGLE_ADS}/accounts/{account}/userLists")
    }

    /// Creates a Customer Match list of contact data (`uploadKeyTypes: [CONTACT_ID]`, first
    /// party, members kept 540 days).
    pub async fn create_user_list(
        &self,
        account: &str,
        display_name: &str,
        description: &str,
    ) -> Result<UserList, GoogleError> {
        let body = NewUserList {
            display_name,
            description,
            membership_duration: MEMBERSHIP_DURATION,
            ingested_user_list_info: NewIngestedInfo {
                upload_key_types: ["CONTACT_ID"],
                contact_id_info: NewContactIdInfo {
                    data_source_type: "DATA_SOURCE_TYPE_FIRST_PARTY",
                },
            },
        };
        let call = Call {
            op: "create_user_list",
            method: Method::POST,
            path: Self::user_lists_path(&normalize_customer_id(account, "the account")?),
            query: Vec::new(),
            body: Some(encode(&body)?),
            login_header: true,
        };
        let list: UserList = self.execute_typed(&call).await?;
        if list.id.is_empty() {
            return Err(GoogleError::UnexpectedResponse {
                status: 200,
                detail: "no user list id in Google's answer".to_string(),
            });
        }
        Ok(list)
    }

    pub async fn get_user_list(&self, account: &str, id: &str) -> Result<UserList, GoogleError> {
        let call = self.list_call("get_user_list", Method::GET, account, id)?;
        self.execute_typed(&call).await
    }

    pub async fn delete_user_list(&self, account: &str, id: &str) -> Result<(), GoogleError> {
        let call = self.list_call("delete_user_list", Method::DELETE, account, id)?;
        self.execute(&call).await.map(|_| ())
    }

    fn list_call(
        &self,
        op: &'static str,
        method: Method,
        account: &str,
        id: &str,
    ) -> Result<Call, GoogleError> {
        let id = normalize_customer_id(id, "the user list id")?;
        Ok(Call {
            op,
            method,
            path: format!(
                "{}/{id}",
                Self::user_lists_path(&normalize_customer_id(account, "the account")?)
            ),
            query: Vec::new(),
            body: None,
            login_header: true,
        })
    }

    /// The account's user list named `display_name`, if any: what a create whose answer was
    /// lost made (a second create is refused with `DISPLAY_NAME_ALREADY_USED`).
    pub async fn find_user_list(
        &self,
        account: &str,
        display_name: &str,
    ) -> Result<Option<UserList>, GoogleError> {
        let path = Self::user_lists_path(&normalize_customer_id(account, "the account")?);
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut query = vec![("pageSize", "100".to_string())];
            if let Some(t) = token.take() {
                query.push(("pageToken", t));
            }
            let call = Call {
                op: "list_user_lists",
                method: Method::GET,
                path: path.clone(),
                query,
                body: None,
                login_header: true,
            };
            let page: UserListPage = self.execute_typed(&call).await?;
            if let Some(found) = page
                .user_lists
                .into_iter()
                .find(|l| l.display_name == display_name)
            {
                return Ok(Some(found));
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// One user list of the account at most (`pageSize=1`): the health check's proof that the
    /// credentials work and reach the account.
    pub(super) async fn probe_account(&self, account: &str) -> Result<(), GoogleError> {
        let call = Call {
            op: "health_user_lists",
            method: Method::GET,
            path: Self::user_lists_path(&normalize_customer_id(account, "the account")?),
            query: vec![("pageSize", "1".to_string())],
            body: None,
            login_header: true,
        };
        let _: UserListPage = self.execute_typed(&call).await?;
        Ok(())
    }

    /// `POST /audienceMembers:ingest`.
    pub async fn ingest(&self, request: &IngestRequest<'_>) -> Result<RequestAnswer, GoogleError> {
        check_members(request.audience_members)?;
        self.members_call("ingest", INGEST_PATH, encode(request)?)
            .await
    }

    /// `POST /audienceMembers:remove`.
    pub async fn remove(&self, request: &RemoveRequest<'_>) -> Result<RequestAnswer, GoogleError> {
        check_members(request.audience_members)?;
        self.members_call("remove", REMOVE_PATH, encode(request)?)
            .await
    }

    async fn members_call(
        &self,
        op: &'static str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<RequestAnswer, GoogleError> {
        let call = Call {
            op,
            method: Method::POST,
            path: path.to_string(),
            query: Vec::new(),
            body: Some(body),
            login_header: false,
        };
        self.execute_typed(&call).await
    }

    async fn execute_typed<T: DeserializeOwned>(&self, call: &Call) -> Result<T, GoogleError> {
        let (status, value) = self.execute(call).await?;
        serde_json::from_value(value).map_err(|e| GoogleError::UnexpectedResponse {
            status,
            detail: format!("could not read Google's answer to {}: {e}", call.op),
        })
    }

    /// Sends with retries on transient errors, and one token refresh on a 401.
    async fn execute(&self, call: &Call) -> Result<(u16, Value), GoogleError> {
        let mut attempt = 1;
        let mut refreshed = false;
        loop {
            let outcome = match self.access_token().await {
                Ok(token) => self
                    .send_once(call, &token)
                    .await
                    .map_err(|e| (e, Some(token))),
                Err(e) => Err((e, None)),
            };
            match outcome {
                Ok(answer) => return Ok(answer),
                Err((e, Some(token)))
                    if e.kind() == ErrorKind::TokenInvalid
                        && !refreshed
                        && matches!(self.auth, GoogleAuth::Refresh { .. }) =>
                {
                    // Revoked or expired early: one new token, then the 401 stands.
                    tracing::info!(
                        op = call.op,
                        "Google answered 401; refreshing the access token"
                    );
                    refreshed = true;
                    self.forget_token(&token).await;
                }
                Err((e, _)) => {
                    self.wait_to_retry(call.op, e, attempt).await?;
                    attempt += 1;
                }
            }
        }
    }

    /// After failed attempt `attempt`: waits the backoff when the error is transient, attempts
    /// are left and the retry can end before the sync's deadline; else gives `err` back.
    async fn wait_to_retry(
        &self,
        op: &str,
        err: GoogleError,
        attempt: u32,
    ) -> Result<(), GoogleError> {
        let transient = err.kind() == ErrorKind::Transient;
        let delay = self.retry.delay(attempt, err.retry_after());
        let out_of_time =
            hard_stop().is_some_and(|stop| Instant::now() + delay + Duration::from_secs(1) > stop);
        if !transient || attempt >= self.retry.max_attempts.max(1) || out_of_time {
            if transient {
                tracing::warn!(op, attempts = attempt, out_of_time, http_status = ?err.http_status(),
                    "Google call still failing; giving up");
            }
            return Err(err);
        }
        tracing::warn!(op, attempt, http_status = ?err.http_status(), reason = ?err.reason(),
            delay_ms = delay.as_millis() as u64, "transient Google error; retrying");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    fn attempt_timeout(&self) -> Duration {
        match hard_stop() {
            Some(stop) => {
                let left = stop.saturating_duration_since(Instant::now());
                self.timeout.min(left.max(Duration::from_secs(1)))
            }
            None => self.timeout,
        }
    }

    /// The access token to send: the configured one, or a cached or newly refreshed one.
    async fn access_token(&self) -> Result<SecretToken, GoogleError> {
        let GoogleAuth::Refresh {
            client_id,
            client_secret,
            refresh_token,
        } = &self.auth
        else {
            let GoogleAuth::AccessToken(t) = &self.auth else {
                unreachable!("two variants")
            };
            return Ok(t.clone());
        };
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.until) {
            return Ok(c.token.clone());
        }
        let fresh = self
            .refresh(client_id, client_secret, refresh_token)
            .await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Drops `stale` from the cache (unless another call already replaced it).
    async fn forget_token(&self, stale: &SecretToken) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.token.expose() == stale.expose())
        {
            *cached = None;
        }
    }

    /// `POST token_url` with `grant_type=refresh_token` (form-encoded).
    async fn refresh(
        &self,
        client_id: &str,
        client_secret: &SecretToken,
        refresh_token: &SecretToken,
    ) -> Result<Cached, GoogleError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret.expose())
            .append_pair("refresh_token", refresh_token.expose())
            .finish();
        let resp = self
            .http
            .post(&self.token_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                USER_AGENT,
                concat!("audience-sync/", env!("CARGO_PKG_VERSION")),
            )
            .timeout(self.attempt_timeout())
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let bytes = self.read_capped(resp, status).await?;
        if !(200..300).contains(&status) {
            // OAuth2's error code only (`invalid_grant`, …): its description is not kept.
            let error = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .filter(|e| {
                    e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
                .unwrap_or_else(|| "no OAuth2 error code".to_string());
            return Err(GoogleError::Token { status, error });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|_| GoogleError::UnexpectedResponse {
                status,
                detail: "the token endpoint's answer has no access_token".to_string(),
            })?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME));
        tracing::info!(
            expires_in_s = lifetime.as_secs(),
            "Google access token refreshed"
        );
        Ok(Cached {
            token: SecretToken::new(answer.access_token),
            until: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        })
    }

    async fn send_once(
        &self,
        call: &Call,
        token: &SecretToken,
    ) -> Result<(u16, Value), GoogleError> {
        let url = format!("{}{}", self.base, call.path);
        let started = Instant::now();
        let mut rb = self
            .http
            .request(call.method.clone(), url)
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .header(
                USER_AGENT,
                concat!("audience-sync/", env!("CARGO_PKG_VERSION")),
            )
            .timeout(self.attempt_timeout());
        if call.login_header {
            if let Some(login) = &self.login_customer_id {
                rb = rb.header(
                    "login-account",
                    format!("accountTypes/{GOOGLE_ADS}/accounts/{login}"),
                );
            }
        }
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
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = self.read_capped(resp, status).await?;
        tracing::debug!(op = call.op, method = %call.method, status,
            elapsed_ms = started.elapsed().as_millis() as u64, "Google call");
        if !(200..300).contains(&status) {
            return Err(GoogleError::from_response(
                status,
                &bytes,
                retry_after,
                &self.secrets(),
            ));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((status, Value::Object(Default::default())));
        }
        serde_json::from_slice(&bytes)
            .map(|v| (status, v))
            .map_err(|_| GoogleError::UnexpectedResponse {
                status,
                detail: format!("{} bytes that are not JSON", bytes.len()),
            })
    }

    async fn read_capped(
        &self,
        mut resp: reqwest::Response,
        status: u16,
    ) -> Result<Vec<u8>, GoogleError> {
        let too_big = || GoogleError::UnexpectedResponse {
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

    fn secrets(&self) -> Vec<&str> {
        match &self.auth {
            GoogleAuth::AccessToken(t) => vec![t.expose()],
            GoogleAuth::Refresh {
                client_secret,
                refresh_token,
                ..
            } => vec![client_secret.expose(), refresh_token.expose()],
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> GoogleError {
        let (timeout, connect) = (e.is_timeout(), e.is_connect());
        let detail = if timeout {
            format!("no answer within {} ms", self.attempt_timeout().as_millis())
        } else {
            let mut chain = String::new();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain.push_str(&format!(": {s}"));
                source = s.source();
            }
            format!("{}{chain}", e.without_url())
        };
        GoogleError::Transport {
            timeout,
            connect,
            detail: scrub(&detail, &self.secrets()),
        }
    }
}

/// The request's members, as Google would take them: 1 to 10,000, each valid.
fn check_members(members: &[AudienceMember]) -> Result<(), GoogleError> {
    if members.is_empty() || members.len() > MAX_MEMBERS {
        return Err(GoogleError::InvalidRequest(format!(
            "a request carries 1 to {MAX_MEMBERS} members, not {}",
            members.len()
        )));
    }
    match members.iter().find_map(member_problem) {
        Some(problem) => Err(GoogleError::InvalidRequest(format!(
            "the request holds {problem}; Google would refuse all of it"
        ))),
        None => Ok(()),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, GoogleError> {
    serde_json::to_vec(value)
        .map_err(|e| GoogleError::InvalidRequest(format!("could not encode the request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destinations::settings::{DEFAULT_GOOGLE_DATAMANAGER_URL, DEFAULT_GOOGLE_TOKEN_URL};

    fn config(auth: GoogleAuth) -> GoogleConfig {
        GoogleConfig {
            auth,
            token_url: DEFAULT_GOOGLE_TOKEN_URL.to_string(),
            api_url: DEFAULT_GOOGLE_DATAMANAGER_URL.to_string(),
            customer_id: Some("123-456-7890".to_string()),
            login_customer_id: None,
            ad_user_data_consent: Consent::Granted,
            ad_personalization_consent: Consent::Granted,
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::none(),
        }
    }

    #[test]
    fn accounts_urls_and_redaction() {
        let c = GoogleClient::new(config(GoogleAuth::Refresh {
            client_id: "cid".into(),
            client_secret: "csecret".into(),
            refresh_token: "1//refresh".into(),
        }))
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("csecret") && !dbg.contains("1//refresh"),
            "{dbg}"
        );
        assert_eq!(c.resolve_account(None).unwrap(), "1234567890");
        assert_eq!(
            c.resolve_account(Some(" 111-222-3333 ")).unwrap(),
            "1112223333"
        );
        assert!(c.resolve_account(Some("12a")).is_err());
        let mut none = config(GoogleAuth::AccessToken("ya29.t".into()));
        none.customer_id = None;
        let err = GoogleClient::new(none)
            .unwrap()
            .resolve_account(None)
            .unwrap_err();
        assert!(err.user_message().contains("GOOGLE_CUSTOMER_ID"));
        assert!(err.user_message().contains("destination_account_id"));
        let mut plain = config(GoogleAuth::AccessToken("ya29.t".into()));
        plain.api_url = "http://datamanager.example.com/v1".into();
        assert!(GoogleClient::new(plain).is_err());
        let mut local = config(GoogleAuth::AccessToken("ya29.t".into()));
        local.api_url = "http://127.0.0.1:9/v1".into();
        assert!(GoogleClient::new(local).is_ok());
        assert!(GoogleClient::new(config(GoogleAuth::AccessToken("".into()))).is_err());
    }
}
