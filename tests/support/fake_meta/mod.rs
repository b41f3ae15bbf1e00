//! A strict fake of the Meta Graph API (custom audiences), for tests and benches.
//!
//! It listens on 127.0.0.1 (random port) and answers like the documented API: Meta's error
//! envelope and codes, 10,000 rows a request, SHA-256 hex values, replace sessions, lookalikes
//! blocking deletes. Test hooks read its state (`members`, `audiences`, `calls`) and inject
//! faults (`inject`).
//!
//! - this file: the [`FakeMeta`] handle (start, recorded calls, state inspection) and the state
//!   it shares with the server;
//! - `faults`: fault injection (which requests, what they answer);
//! - `wire`: request parsing, payload and hash validation, answers and errors in Graph's shape;
//! - `graph`: the Graph API's behaviour (audiences, users add/remove, replace sessions,
//!   lookalikes).
//!
//! The server depends only on axum, tokio, serde_json, url, hmac, sha2 and hex, never on the
//! crate under test; the one thing here that names the crate is the client configuration
//! [`FakeMeta::meta_config`] builds. Any test or bench of this package can include it as a
//! module (`#[path = "…/fake_meta/mod.rs"]`).
#![allow(dead_code)]

mod faults;
mod graph;
mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{Map, Value};

// The only place the tests name the client's configuration types: they get theirs from
// `FakeMeta::meta_config`.
use audience_sync::destinations::{
    meta::{MetaConfig, SecretToken},
    retry::RetryPolicy,
};

// The fault API, as the tests name it (`fake_meta::Fault`); not every user names every part.
#[allow(unused_imports)]
pub use faults::{Fault, FaultMatch, FaultPredicate, FaultResponse};

/// Version segment the fake serves by default.
pub const FAKE_VERSION: &str = "v25.0";
/// Token the fake expects when started with [`FakeMeta::start`].
pub const DEFAULT_FAKE_TOKEN: &str = "fake-meta-test-token";
/// Versions below this answer error 2635.
pub const MIN_SUPPORTED_VERSION: u32 = 24;
/// Meta's maximum rows a request.
pub const FAKE_MAX_ROWS: usize = 10_000;
/// The id `GET /me` answers (the token's system user).
pub const FAKE_TOKEN_USER: &str = "100000000000042";
/// Default ad account of the configurations [`FakeMeta::meta_config`] builds.
pub const FAKE_AD_ACCOUNT: &str = "act_424242";

/// An audience as the fake holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeAudience {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub description: Option<String>,
    /// `CUSTOM`, `LOOKALIKE` or `WEBSITE`.
    pub subtype: String,
    pub customer_file_source: Option<String>,
    /// A value-based customer list (`is_value_based`): its rows carry `LOOKALIKE_VALUE`.
    pub is_value_based: bool,
    pub origin_audience_id: Option<String>,
    pub lookalike_spec: Option<Value>,
    pub rule: Option<Value>,
    pub retention_days: Option<u64>,
    pub prefill: Option<bool>,
    pub flagged: bool,
    /// `time_created`: Unix seconds.
    pub created: i64,
}

/// The session object of a `/users` or `/usersreplace` call, as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedSession {
    pub session_id: u64,
    pub batch_seq: u64,
    pub last_batch_flag: bool,
    pub estimated_num_total: Option<u64>,
}

/// One request the fake received (faulted ones included).
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub method: String,
    /// Path with the version segment, e.g. `/v25.0/123/users`.
    pub path: String,
    /// Raw query string ("" when none).
    pub query: String,
    /// Rows in the payload (0 when none or unreadable).
    pub rows: usize,
    pub schema: Option<Vec<String>>,
    pub session: Option<RecordedSession>,
    /// `appsecret_proof` as received (body or query).
    pub appsecret_proof: Option<String>,
    /// The token came in an `Authorization: Bearer` header.
    pub bearer: bool,
    /// An `access_token` parameter was present in the query string.
    pub token_in_query: bool,
    /// Other parameters (body and query), without `payload`, `session`, `access_token`.
    pub params: Map<String, Value>,
    /// HTTP status answered (0 while the answer is pending, e.g. a delayed call).
    pub status: u16,
    /// Meta error code answered, if any.
    pub error_code: Option<i64>,
}

/// How the fake is started.
#[derive(Debug, Clone)]
pub struct FakeMetaOptions {
    pub token: String,
    /// When set, every call must carry a correct `appsecret_proof`.
    pub app_secret: Option<String>,
    /// Version segment of [`FakeMeta::url`].
    pub version: String,
}

impl Default for FakeMetaOptions {
    fn default() -> Self {
        FakeMetaOptions {
            token: DEFAULT_FAKE_TOKEN.to_string(),
            app_secret: None,
            version: FAKE_VERSION.to_string(),
        }
    }
}

/// A replace session open on an audience.
struct ReplaceState {
    session_id: u64,
    schema: Vec<String>,
    rows: HashSet<Vec<String>>,
    started: Instant,
    batches: HashSet<u64>,
}

/// Everything the fake holds: audiences and members, replace sessions, the calls it received
/// and the faults waiting to be applied.
struct FakeState {
    next_id: u64,
    audiences: Vec<FakeAudience>,
    members: HashMap<String, HashSet<Vec<String>>>,
    updated: HashMap<String, u64>,
    replaces: HashMap<String, ReplaceState>,
    closed_sessions: HashSet<(String, u64)>,
    calls: Vec<RecordedCall>,
    faults: Vec<Fault>,
    invalid_hashes: HashSet<String>,
    replace_timeout: Duration,
    trace_counter: u64,
    clock: u64,
    /// The Custom Audience Terms are accepted (every ad account): customer lists may be made.
    tos_accepted: bool,
    /// Every ad account's `account_status` (1: active).
    account_status: i64,
}

struct Shared {
    options: FakeMetaOptions,
    state: Mutex<FakeState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The fake Graph API server. Stops when dropped.
pub struct FakeMeta {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeMeta {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeMeta {
    /// Start with [`DEFAULT_FAKE_TOKEN`].
    pub async fn start() -> Self {
        Self::start_with(FakeMetaOptions::default()).await
    }

    /// Start expecting `token` as the Bearer token.
    pub async fn start_with_token(token: &str) -> Self {
        Self::start_with(FakeMetaOptions {
            token: token.to_string(),
            ..FakeMetaOptions::default()
        })
        .await
    }

    pub async fn start_with(options: FakeMetaOptions) -> Self {
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(FakeState {
                next_id: 23_850_000_000_001,
                audiences: Vec::new(),
                members: HashMap::new(),
                updated: HashMap::new(),
                replaces: HashMap::new(),
                closed_sessions: HashSet::new(),
                calls: Vec::new(),
                faults: Vec::new(),
                invalid_hashes: HashSet::new(),
                replace_timeout: Duration::from_secs(90 * 60),
                trace_counter: 0,
                clock: 1_767_225_600,
                tos_accepted: true,
                account_status: 1,
            }),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Meta on 127.0.0.1");
        let addr = listener.local_addr().expect("fake Meta address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeMeta { addr, shared, task }
    }

    /// Base URL with the version segment, e.g. `http://127.0.0.1:41234/v25.0`.
    pub fn url(&self) -> String {
        format!("http://{}/{}", self.addr, self.shared.options.version)
    }

    /// Base URL with another version segment (e.g. to provoke 2635).
    pub fn url_with_version(&self, version: &str) -> String {
        format!("http://{}/{}", self.addr, version)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token(&self) -> &str {
        &self.shared.options.token
    }

    /// The Meta client's configuration pointed at this fake, with the token it expects: ad
    /// account [`FAKE_AD_ACCOUNT`], 10 s a request, 4 attempts with 5–40 ms backoff (retries
    /// stay quick). Tests change a field where they need another value.
    pub fn meta_config(&self) -> MetaConfig {
        self.meta_config_with(self.token(), 4)
    }

    /// As [`FakeMeta::meta_config`], sending `token` (one the fake does not expect gets 190)
    /// and making `attempts` attempts a call (1: no retry).
    pub fn meta_config_with(&self, token: &str, attempts: u32) -> MetaConfig {
        MetaConfig {
            graph_url: self.url(),
            access_token: SecretToken::new(token),
            app_secret: None,
            ad_account_id: Some(FAKE_AD_ACCOUNT.to_string()),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: attempts,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(40),
            },
        }
    }

    /// Current members of an audience (each row as sent, schema order).
    pub fn members(&self, audience_id: &str) -> HashSet<Vec<String>> {
        self.shared
            .lock()
            .members
            .get(audience_id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn member_count(&self, audience_id: &str) -> usize {
        self.shared
            .lock()
            .members
            .get(audience_id)
            .map_or(0, |m| m.len())
    }

    /// Existing audiences, in creation order.
    pub fn audiences(&self) -> Vec<FakeAudience> {
        self.shared.lock().audiences.clone()
    }

    pub fn audience(&self, id: &str) -> Option<FakeAudience> {
        self.shared
            .lock()
            .audiences
            .iter()
            .find(|a| a.id == id)
            .cloned()
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Add a fault (faults are tried in the order they were injected).
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Values (hashes) Meta treats as invalid: rows holding one are reported in
    /// `num_invalid_entries` / `invalid_entry_samples` and not applied.
    pub fn set_invalid_hashes<I, S>(&self, hashes: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.shared.lock().invalid_hashes = hashes.into_iter().map(Into::into).collect();
    }

    /// Flag an audience (operation status 471): membership changes fail with 100/1713230.
    pub fn set_flagged(&self, audience_id: &str, flagged: bool) {
        if let Some(a) = self
            .shared
            .lock()
            .audiences
            .iter_mut()
            .find(|a| a.id == audience_id)
        {
            a.flagged = flagged;
        }
    }

    /// Whether the Custom Audience Terms are accepted (default yes): without them, ad accounts
    /// show no `tos_accepted` and customer lists are refused with 200/1870090.
    pub fn set_tos_accepted(&self, accepted: bool) {
        self.shared.lock().tos_accepted = accepted;
    }

    /// Every ad account's `account_status` (1 active, 2 disabled, 3 unsettled, …).
    pub fn set_account_status(&self, status: i64) {
        self.shared.lock().account_status = status;
    }

    /// How long a replace session stays open after its first batch (Meta: 90 minutes). When it
    /// runs out, the audience holds exactly what the session received.
    pub fn set_replace_timeout(&self, timeout: Duration) {
        self.shared.lock().replace_timeout = timeout;
    }

    /// Whether a replace session is open on the audience.
    pub fn replace_in_progress(&self, audience_id: &str) -> bool {
        let mut st = self.shared.lock();
        graph::expire_replace(&mut st, audience_id);
        st.replaces.contains_key(audience_id)
    }

    /// Delete an audience "outside" the service, as a user in Ads Manager would (no call
    /// recorded, lookalikes ignored): it and its members are gone, and every later call naming
    /// it gets what Graph answers for a missing object (100/33).
    pub fn delete_outside(&self, audience_id: &str) {
        let mut st = self.shared.lock();
        st.audiences.retain(|a| a.id != audience_id);
        st.members.remove(audience_id);
        st.replaces.remove(audience_id);
    }

    /// Create an audience directly (no call recorded); returns its id.
    pub fn seed_audience(&self, account_id: &str, name: &str) -> String {
        let mut st = self.shared.lock();
        let id = st.next_id.to_string();
        st.next_id += 1;
        st.audiences.push(FakeAudience {
            id: id.clone(),
            account_id: account_id.trim_start_matches("act_").to_string(),
            name: name.to_string(),
            description: None,
            subtype: "CUSTOM".to_string(),
            customer_file_source: Some("USER_PROVIDED_ONLY".to_string()),
            is_value_based: false,
            origin_audience_id: None,
            lookalike_spec: None,
            rule: None,
            retention_days: None,
            prefill: None,
            flagged: false,
            created: graph::unix_now(),
        });
        st.members.insert(id.clone(), HashSet::new());
        id
    }

    /// Put rows into an audience directly (no call recorded).
    pub fn seed_members(&self, audience_id: &str, rows: impl IntoIterator<Item = Vec<String>>) {
        self.shared
            .lock()
            .members
            .entry(audience_id.to_string())
            .or_default()
            .extend(rows);
    }
}

// ---------------------------------------------------------------------------------------------
// request handling

/// Every request: recorded, then answered by the first matching fault or by the Graph API.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = wire::parse_request(&method, &uri, &headers, &body);
    let call = wire::recorded_call(&req);
    let (index, fault) = {
        let mut st = shared.lock();
        st.calls.push(call);
        let index = st.calls.len() - 1;
        let fault = faults::take(&mut st.faults, &req.method, &req.rest);
        (index, fault)
    };

    let answer = match fault {
        Some(FaultResponse::Delay(d)) => {
            tokio::time::sleep(d).await;
            graph::process(&shared, &req)
        }
        Some(FaultResponse::AnswerLate(d)) => {
            let answer = graph::process(&shared, &req);
            tokio::time::sleep(d).await;
            answer
        }
        Some(fault) => faults::answer(&shared, fault, &req),
        None => graph::process(&shared, &req),
    };
    {
        let mut st = shared.lock();
        if let Some(c) = st.calls.get_mut(index) {
            c.status = answer.status;
            c.error_code = answer.error_code;
        }
    }
    answer.into_response()
}

/// Rows of `n` distinct fake hashes for schema `[EMAIL]` (handy for tests and benches).
pub fn hashed_rows(start: u64, n: usize) -> Vec<Vec<String>> {
    (start..start + n as u64)
        .map(|i| vec![format!("{i:064x}")])
        .collect()
}

/// Map counting calls by "METHOD /path-without-version".
pub fn call_counts(calls: &[RecordedCall]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in calls {
        let trimmed = c.path.trim_start_matches('/');
        let rest = trimmed.find('/').map_or("", |i| &trimmed[i..]);
        *out.entry(format!("{} {}", c.method, rest)).or_insert(0) += 1;
    }
    out
}
