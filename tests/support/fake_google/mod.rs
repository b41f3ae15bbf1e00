//! A strict fake of Google's Data Manager API (Customer Match) and of Google's OAuth2 token
//! endpoint, for tests (DESTINATIONS.md §2, §6).
//!
//! It listens on 127.0.0.1 (random port) and answers as the documented API does: bearer token
//! required (401 `UNAUTHENTICATED` in Google's error shape otherwise), access tokens issued from
//! a refresh token (counted, expiring), user lists (unique `displayName`, whole-day
//! `membershipDuration` up to 540 days, one `uploadKeyTypes` entry, the `login-account` header
//! format), `audienceMembers:ingest` / `:remove` with Google's limits (10,000 members, 10
//! identifiers, 10 destinations), hex SHA-256 checks, `encoding` and the terms of service
//! required on ingest, unknown fields (consent or terms on `:remove`) refused, one bad record
//! failing the whole request, and a per-minute request quota (429 `RESOURCE_EXHAUSTED`). Each
//! list keeps its members as a set of identifiers (`email:<hex>`, `phone:<hex>`,
//! `address:<given>|<family>|<region>|<postal>`), so tests compare it with the segment.
//! Faults are injected per route (`inject`); a list can be deleted "outside" the service.
//!
//! - this file: the [`FakeGoogle`] handle, its state and the client configurations it builds;
//! - `api`: the API's behaviour and its checks.
#![allow(dead_code)]

mod api;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

use audience_sync::destinations::retry::RetryPolicy;
use audience_sync::destinations::settings::{Consent, GoogleAuth, GoogleConfig};
use audience_sync::destinations::token::SecretToken;

/// The operating account of the configurations the fake builds.
pub const FAKE_CUSTOMER: &str = "1234567890";
/// The access token the fake accepts without a refresh ([`FakeGoogle::google_config`]).
pub const FAKE_ACCESS_TOKEN: &str = "ya29.fake-google-static-access-token";
pub const FAKE_CLIENT_ID: &str = "fake-client-id.apps.googleusercontent.com";
pub const FAKE_CLIENT_SECRET: &str = "fake-google-client-secret";
pub const FAKE_REFRESH_TOKEN: &str = "1//fake-google-refresh-token";

/// A user list as the fake holds it.
#[derive(Debug, Clone)]
pub struct FakeList {
    pub id: String,
    pub account: String,
    pub display_name: String,
    pub description: String,
    pub membership_duration: String,
    pub upload_key_types: Vec<String>,
    /// The identifiers it holds.
    pub members: HashSet<String>,
    pub deleted: bool,
}

/// One request received.
#[derive(Debug, Clone)]
pub struct GoogleCall {
    pub method: String,
    /// Path after the host, e.g. `/v1/audienceMembers:ingest` or `/token`.
    pub path: String,
    pub query: String,
    pub login_account: Option<String>,
    /// The `Authorization` header's token was one the fake accepts.
    pub authorized: bool,
    /// JSON body (Null when none or not JSON; the token endpoint's form is not kept).
    pub body: Value,
    /// Members in an ingest or remove request.
    pub members: usize,
    pub status: u16,
    /// `ErrorInfo.reason` answered, if any.
    pub reason: Option<String>,
}

/// What an injected fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoogleFault {
    /// 429 `RESOURCE_EXHAUSTED`.
    RateLimited,
    /// 503 `UNAVAILABLE`.
    Unavailable,
    /// 500 `INTERNAL`.
    Internal,
    /// 401 `UNAUTHENTICATED`.
    Unauthenticated,
    /// The request is carried out, then the answer is a 503 (an answer lost on the way).
    AppliedThenUnavailable,
}

struct FaultRule {
    method: String,
    path_suffix: String,
    fault: GoogleFault,
    remaining: usize,
}

struct FakeState {
    next_id: u64,
    lists: Vec<FakeList>,
    calls: Vec<GoogleCall>,
    faults: Vec<FaultRule>,
    /// Issued access tokens and when they expire.
    issued: HashMap<String, Instant>,
    refreshes: u64,
    token_lifetime: Duration,
    /// Ingestion requests per minute before 429 (Google: 300 a project).
    per_minute: usize,
    recent: VecDeque<Instant>,
    counter: u64,
    /// `RetryInfo.retryDelay` of a 429, when set.
    retry_delay: Option<Duration>,
}

struct Shared {
    static_token: Option<String>,
    state: Mutex<FakeState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The fake Data Manager API and token endpoint. Stops when dropped.
pub struct FakeGoogle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGoogle {
    /// Accepts [`FAKE_ACCESS_TOKEN`] and the tokens it issues from [`FAKE_REFRESH_TOKEN`].
    pub async fn start() -> Self {
        Self::start_with(Some(FAKE_ACCESS_TOKEN)).await
    }

    /// `static_token`: an access token accepted without a refresh (`None`: only issued ones).
    pub async fn start_with(static_token: Option<&str>) -> Self {
        let shared = Arc::new(Shared {
            static_token: static_token.map(str::to_string),
            state: Mutex::new(FakeState {
                next_id: 5_550_001_111,
                lists: Vec::new(),
                calls: Vec::new(),
                faults: Vec::new(),
                issued: HashMap::new(),
                refreshes: 0,
                token_lifetime: Duration::from_secs(3599),
                per_minute: 300,
                recent: VecDeque::new(),
                counter: 0,
                retry_delay: None,
            }),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Google on 127.0.0.1");
        let addr = listener.local_addr().expect("fake Google address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGoogle { addr, shared, task }
    }

    /// The API base with its version, e.g. `http://127.0.0.1:41234/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The client's configuration pointed at this fake with `auth`: operating account
    /// [`FAKE_CUSTOMER`], 10 s a request, 4 attempts with 5–40 ms backoff.
    pub fn config_with(&self, auth: GoogleAuth) -> GoogleConfig {
        GoogleConfig {
            auth,
            token_url: self.token_url(),
            api_url: self.url(),
            customer_id: Some(FAKE_CUSTOMER.to_string()),
            login_customer_id: None,
            ad_user_data_consent: Consent::Granted,
            ad_personalization_consent: Consent::Granted,
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(40),
            },
        }
    }

    /// With the static access token.
    pub fn google_config(&self) -> GoogleConfig {
        self.config_with(GoogleAuth::AccessToken(SecretToken::new(FAKE_ACCESS_TOKEN)))
    }

    /// With the refresh credentials the token endpoint accepts.
    pub fn refresh_config(&self) -> GoogleConfig {
        self.config_with(GoogleAuth::Refresh {
            client_id: FAKE_CLIENT_ID.to_string(),
            client_secret: SecretToken::new(FAKE_CLIENT_SECRET),
            refresh_token: SecretToken::new(FAKE_REFRESH_TOKEN),
        })
    }

    pub fn lists(&self) -> Vec<FakeList> {
        self.shared.lock().lists.clone()
    }

    pub fn list(&self, id: &str) -> Option<FakeList> {
        self.shared
            .lock()
            .lists
            .iter()
            .find(|l| l.id == id)
            .cloned()
    }

    /// The identifiers a list holds.
    pub fn members(&self, id: &str) -> HashSet<String> {
        self.list(id).map(|l| l.members).unwrap_or_default()
    }

    pub fn calls(&self) -> Vec<GoogleCall> {
        self.shared.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Access tokens issued from the refresh token so far.
    pub fn refreshes(&self) -> u64 {
        self.shared.lock().refreshes
    }

    /// Every issued access token expires now (the static one stays valid).
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for until in self.shared.lock().issued.values_mut() {
            *until = now;
        }
    }

    /// How long issued tokens last (`expires_in`).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().token_lifetime = lifetime;
    }

    /// Ingestion requests allowed per minute before 429 `RESOURCE_EXHAUSTED`.
    pub fn set_per_minute_quota(&self, n: usize) {
        self.shared.lock().per_minute = n;
    }

    /// A 429 carries `RetryInfo.retryDelay` (Google's hint of how long to wait).
    pub fn set_retry_delay(&self, delay: Option<Duration>) {
        self.shared.lock().retry_delay = delay;
    }

    /// The next `times` requests whose path ends with `path_suffix` (and method matches)
    /// answer `fault`.
    pub fn inject(&self, method: &str, path_suffix: &str, fault: GoogleFault, times: usize) {
        self.shared.lock().faults.push(FaultRule {
            method: method.to_string(),
            path_suffix: path_suffix.to_string(),
            fault,
            remaining: times,
        });
    }

    /// The list is deleted as in Google Ads' UI: no call recorded, later calls get 404 /
    /// `INVALID_USER_LIST_ID`.
    pub fn delete_outside(&self, id: &str) {
        if let Some(l) = self.shared.lock().lists.iter_mut().find(|l| l.id == id) {
            l.deleted = true;
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = api::process(&shared, &method, &uri, &headers, &body);
    let mut resp = (
        axum::http::StatusCode::from_u16(answer.status).expect("status"),
        answer.body.to_string(),
    )
        .into_response();
    resp.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

/// The identifier keys the fake stores for an email, a phone (already normalized, hashed here)
/// and an address, for tests to build the expected contents of a list.
pub mod expect {
    use sha2::{Digest, Sha256};

    pub fn sha(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn email(normalized: &str) -> String {
        format!("email:{}", sha(normalized))
    }

    pub fn phone(e164: &str) -> String {
        format!("phone:{}", sha(e164))
    }

    pub fn address(given: &str, family: &str, region: &str, postal: &str) -> String {
        format!("address:{}|{}|{region}|{postal}", sha(given), sha(family))
    }
}
