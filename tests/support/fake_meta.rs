//! A strict fake of the Meta Graph API (custom audiences), for tests and benches.
//!
//! It listens on 127.0.0.1 (random port) and answers like the documented API: Meta's error
//! envelope and codes, 10,000 rows a request, SHA-256 hex values, replace sessions, lookalikes
//! blocking deletes. Test hooks read its state (`members`, `audiences`, `calls`) and inject
//! faults (`inject`). It depends only on axum, tokio, serde_json, url, hmac, sha2 and hex, and
//! never on the crate under test, so any test or bench can include it as a module.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

/// Version segment the fake serves by default.
pub const FAKE_VERSION: &str = "v25.0";
/// Token the fake expects when started with [`FakeMeta::start`].
pub const DEFAULT_FAKE_TOKEN: &str = "fake-meta-test-token";
/// Versions below this answer error 2635.
pub const MIN_SUPPORTED_VERSION: u32 = 24;
/// Meta's maximum rows a request.
pub const FAKE_MAX_ROWS: usize = 10_000;

const KNOWN_KEYS: &[&str] = &[
    "EXTERN_ID",
    "EMAIL",
    "PHONE",
    "GEN",
    "DOBY",
    "DOBM",
    "DOBD",
    "LN",
    "FN",
    "FI",
    "CT",
    "ST",
    "ZIP",
    "MADID",
    "COUNTRY",
    "LOOKALIKE_VALUE",
    "EMAIL_SHA256",
    "PHONE_SHA256",
    "MOBILE_ADVERTISER_ID",
];
/// Keys whose values are sent unhashed.
const UNHASHED_KEYS: &[&str] = &[
    "EXTERN_ID",
    "MADID",
    "MOBILE_ADVERTISER_ID",
    "LOOKALIKE_VALUE",
];
const CUSTOMER_FILE_SOURCES: &[&str] = &[
    "USER_PROVIDED_ONLY",
    "PARTNER_PROVIDED_ONLY",
    "BOTH_USER_AND_PARTNER_PROVIDED",
];
const AUDIENCE_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "subtype",
    "account_id",
    "customer_file_source",
    "approximate_count_lower_bound",
    "approximate_count_upper_bound",
    "operation_status",
    "delivery_status",
    "time_content_updated",
    "time_created",
    "lookalike_spec",
    "origin_audience_id",
    "rule",
    "retention_days",
];

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
    pub origin_audience_id: Option<String>,
    pub lookalike_spec: Option<Value>,
    pub rule: Option<Value>,
    pub retention_days: Option<u64>,
    pub prefill: Option<bool>,
    pub flagged: bool,
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

/// Predicate over (method, path without version).
pub type FaultPredicate = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Which requests a fault applies to.
#[derive(Clone)]
pub enum FaultMatch {
    Any,
    /// Method (case-insensitive) and the path without version ending with `path_suffix`
    /// (e.g. `"/users"`, `"/usersreplace"`, `"/customaudiences"`; `""` matches every path).
    Route {
        method: String,
        path_suffix: String,
    },
    /// Any predicate over (method, path without version, e.g. `/123/users`).
    Custom(FaultPredicate),
}

impl FaultMatch {
    pub fn route(method: &str, path_suffix: &str) -> Self {
        FaultMatch::Route {
            method: method.to_string(),
            path_suffix: path_suffix.to_string(),
        }
    }

    pub fn when(f: impl Fn(&str, &str) -> bool + Send + Sync + 'static) -> Self {
        FaultMatch::Custom(Arc::new(f))
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        match self {
            FaultMatch::Any => true,
            FaultMatch::Route {
                method: m,
                path_suffix,
            } => m.eq_ignore_ascii_case(method) && path.ends_with(path_suffix.as_str()),
            FaultMatch::Custom(f) => f(method, path),
        }
    }
}

impl fmt::Debug for FaultMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultMatch::Any => f.write_str("Any"),
            FaultMatch::Route {
                method,
                path_suffix,
            } => write!(f, "Route({method} *{path_suffix})"),
            FaultMatch::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// What a fault answers.
#[derive(Debug, Clone)]
pub enum FaultResponse {
    /// Meta's JSON error envelope.
    MetaError {
        status: u16,
        code: i64,
        subcode: Option<i64>,
        /// Default: a Meta-like message for the code.
        message: Option<String>,
        is_transient: bool,
        /// Sends `X-Business-Use-Case-Usage` with this `estimated_time_to_regain_access`.
        regain_access_minutes: Option<u64>,
    },
    /// HTTP 500 with an HTML page.
    Html500,
    /// Waits, then handles the request normally.
    Delay(Duration),
}

/// A fault applied to the next `times` matching requests.
#[derive(Debug, Clone)]
pub struct Fault {
    pub matching: FaultMatch,
    pub times: usize,
    pub response: FaultResponse,
}

impl Fault {
    /// Meta error `code`/`subcode` with HTTP `status`.
    pub fn meta_error(
        matching: FaultMatch,
        times: usize,
        status: u16,
        code: i64,
        subcode: Option<i64>,
    ) -> Self {
        let is_transient = matches!(
            code,
            1 | 2 | 4 | 17 | 32 | 341 | 613 | 80000 | 80003 | 80004 | 80014
        ) || matches!(subcode, Some(1870145 | 1870148));
        Fault {
            matching,
            times,
            response: FaultResponse::MetaError {
                status,
                code,
                subcode,
                message: None,
                is_transient,
                regain_access_minutes: None,
            },
        }
    }

    pub fn html500(matching: FaultMatch, times: usize) -> Self {
        Fault {
            matching,
            times,
            response: FaultResponse::Html500,
        }
    }

    pub fn delay(matching: FaultMatch, times: usize, delay: Duration) -> Self {
        Fault {
            matching,
            times,
            response: FaultResponse::Delay(delay),
        }
    }

    /// Override the error message (Meta error faults only).
    pub fn with_message(mut self, text: &str) -> Self {
        if let FaultResponse::MetaError { message, .. } = &mut self.response {
            *message = Some(text.to_string());
        }
        self
    }

    /// Send `X-Business-Use-Case-Usage` with `estimated_time_to_regain_access` = `minutes`.
    pub fn with_regain_access_minutes(mut self, minutes: u64) -> Self {
        if let FaultResponse::MetaError {
            regain_access_minutes,
            ..
        } = &mut self.response
        {
            *regain_access_minutes = Some(minutes);
        }
        self
    }
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

struct ReplaceState {
    session_id: u64,
    schema: Vec<String>,
    rows: HashSet<Vec<String>>,
    started: Instant,
    batches: HashSet<u64>,
}

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

    /// How long a replace session stays open after its first batch (Meta: 90 minutes).
    pub fn set_replace_timeout(&self, timeout: Duration) {
        self.shared.lock().replace_timeout = timeout;
    }

    /// Whether a replace session is open on the audience.
    pub fn replace_in_progress(&self, audience_id: &str) -> bool {
        let mut st = self.shared.lock();
        expire_replace(&mut st, audience_id);
        st.replaces.contains_key(audience_id)
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
            origin_audience_id: None,
            lookalike_spec: None,
            rule: None,
            retention_days: None,
            prefill: None,
            flagged: false,
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

struct FakeAnswer {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    error_code: Option<i64>,
}

impl FakeAnswer {
    fn json(status: u16, v: Value) -> Self {
        FakeAnswer {
            status,
            body: serde_json::to_vec(&v).unwrap_or_default(),
            content_type: "application/json; charset=UTF-8",
            headers: Vec::new(),
            error_code: v["error"]["code"].as_i64(),
        }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, self.body).into_response();
        let h = resp.headers_mut();
        h.insert("content-type", HeaderValue::from_static(self.content_type));
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}

fn default_message(code: i64, subcode: Option<i64>) -> String {
    match (code, subcode) {
        (1, _) => "An unknown error occurred".into(),
        (2, _) => "An unexpected error has occurred. Please retry your request later.".into(),
        (4, _) => "(#4) Application request limit reached".into(),
        (17, _) => "(#17) User request limit reached".into(),
        (32, _) => "(#32) Page request limit reached".into(),
        (341, _) => "(#341) Application limit reached".into(),
        (613, _) => "(#613) Calls to this api have exceeded the rate limit.".into(),
        (80003, _) => "(#80003) There have been too many calls to this ad-account. Wait a bit \
                       and try again."
            .into(),
        (c, _) if (80000..=80014).contains(&c) => {
            format!("(#{c}) There have been too many calls for this business use case.")
        }
        (190, Some(463)) => "Error validating access token: Session has expired.".into(),
        (190, _) => "Invalid OAuth access token - Cannot parse access token".into(),
        (200, Some(1870047)) => "(#200) Removing these users would make the audience too \
                                 small."
            .into(),
        (200, Some(1870034)) | (200, Some(1870090)) => {
            "(#200) You must accept the Custom Audience Terms before using this feature.".into()
        }
        (10, _) | (200..=299, _) => format!("(#{code}) Permission error"),
        (2635, _) => "(#2635) You are calling a deprecated version of the Ads API. Please \
                      update to the latest version."
            .into(),
        (2650, Some(1870145)) => "(#2650) Another update is in progress for this audience.".into(),
        (2650, _) => "(#2650) Failed to update the custom audience".into(),
        (2656, _) => "(#2656) This audience cannot be deleted because lookalike audiences \
                      were created from it."
            .into(),
        (100, _) => "(#100) Invalid parameter".into(),
        (c, _) => format!("(#{c}) Error"),
    }
}

fn usage_header(account: &str, minutes: u64) -> String {
    json!({
        (if account.is_empty() { "1" } else { account }): [{
            "type": "custom_audience",
            "call_count": if minutes > 0 { 100 } else { 1 },
            "total_cputime": if minutes > 0 { 100 } else { 1 },
            "total_time": if minutes > 0 { 100 } else { 1 },
            "estimated_time_to_regain_access": minutes
        }]
    })
    .to_string()
}

impl FakeState {
    fn trace_id(&mut self) -> String {
        self.trace_counter += 1;
        format!("FakeTrace{:06}", self.trace_counter)
    }

    #[allow(clippy::too_many_arguments)]
    fn error_full(
        &mut self,
        status: u16,
        code: i64,
        subcode: Option<i64>,
        message: &str,
        user_title: Option<&str>,
        user_msg: Option<&str>,
        is_transient: bool,
    ) -> FakeAnswer {
        let mut err = Map::new();
        err.insert("message".into(), json!(message));
        err.insert("type".into(), json!("OAuthException"));
        err.insert("code".into(), json!(code));
        if let Some(s) = subcode {
            err.insert("error_subcode".into(), json!(s));
        }
        err.insert("is_transient".into(), json!(is_transient));
        if let Some(t) = user_title {
            err.insert("error_user_title".into(), json!(t));
        }
        if let Some(m) = user_msg {
            err.insert("error_user_msg".into(), json!(m));
        }
        err.insert("fbtrace_id".into(), json!(self.trace_id()));
        FakeAnswer::json(status, json!({ "error": err }))
    }

    fn error(&mut self, status: u16, code: i64, subcode: Option<i64>, message: &str) -> FakeAnswer {
        let transient = matches!(subcode, Some(1870145 | 1870148));
        self.error_full(status, code, subcode, message, None, None, transient)
    }

    fn invalid(&mut self, message: &str) -> FakeAnswer {
        self.error(400, 100, None, &format!("(#100) {message}"))
    }

    fn no_object(&mut self, method: &str, id: &str) -> FakeAnswer {
        self.error(
            400,
            100,
            Some(33),
            &format!(
                "Unsupported {} request. Object with ID '{id}' does not exist, cannot be loaded \
                 due to missing permissions, or does not support this operation.",
                method.to_ascii_lowercase()
            ),
        )
    }

    fn audience_index(&self, id: &str) -> Option<usize> {
        self.audiences.iter().position(|a| a.id == id)
    }

    fn touch(&mut self, id: &str) {
        self.clock += 1;
        let t = self.clock;
        self.updated.insert(id.to_string(), t);
    }
}

/// The parsed request.
struct Req {
    method: String,
    path: String,
    /// Path without the version segment.
    rest: String,
    version: Option<u32>,
    query: String,
    params: Map<String, Value>,
    query_keys: Vec<String>,
    bearer: Option<String>,
    body_error: Option<String>,
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = parse_request(&method, &uri, &headers, &body);
    let payload_shape = peek_payload(&req.params);
    let call = RecordedCall {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        rows: payload_shape.as_ref().map_or(0, |p| p.1),
        schema: payload_shape.map(|p| p.0),
        session: req.params.get("session").and_then(read_session_loose),
        appsecret_proof: req
            .params
            .get("appsecret_proof")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        bearer: req.bearer.is_some(),
        token_in_query: req.query_keys.iter().any(|k| k == "access_token"),
        params: req
            .params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "payload" | "session" | "access_token"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        status: 0,
        error_code: None,
    };
    let (index, fault) = {
        let mut st = shared.lock();
        st.calls.push(call);
        let index = st.calls.len() - 1;
        let mut fault = None;
        if let Some(pos) = st
            .faults
            .iter()
            .position(|f| f.times > 0 && f.matching.matches(&req.method, &req.rest))
        {
            fault = Some(st.faults[pos].response.clone());
            st.faults[pos].times -= 1;
            if st.faults[pos].times == 0 {
                st.faults.remove(pos);
            }
        }
        (index, fault)
    };

    let answer = match fault {
        Some(FaultResponse::Delay(d)) => {
            tokio::time::sleep(d).await;
            process(&shared, &req)
        }
        Some(FaultResponse::Html500) => FakeAnswer {
            status: 500,
            body: b"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Sorry, \
                    something went wrong.</h1><p>We're working on it.</p></body></html>"
                .to_vec(),
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
            error_code: None,
        },
        Some(FaultResponse::MetaError {
            status,
            code,
            subcode,
            message,
            is_transient,
            regain_access_minutes,
        }) => {
            let mut st = shared.lock();
            let text = message.unwrap_or_else(|| default_message(code, subcode));
            let (title, user_msg) = if subcode == Some(1713230) {
                (
                    Some("Audience Upload Blocked"),
                    Some("Before updating user memberships, you must resolve integrity restrictions on this Data File Custom Audience."),
                )
            } else {
                (None, None)
            };
            let mut a = st.error_full(status, code, subcode, &text, title, user_msg, is_transient);
            if let Some(m) = regain_access_minutes {
                let account = account_of(&req.rest);
                a.headers
                    .push(("x-business-use-case-usage", usage_header(&account, m)));
            }
            a
        }
        None => process(&shared, &req),
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

fn account_of(rest: &str) -> String {
    rest.trim_start_matches('/')
        .split('/')
        .next()
        .and_then(|s| s.strip_prefix("act_"))
        .unwrap_or("")
        .to_string()
}

fn parse_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Req {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let trimmed = path.trim_start_matches('/');
    let (first, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, ""),
    };
    let version = first
        .strip_prefix('v')
        .and_then(|v| v.strip_suffix(".0"))
        .and_then(|v| v.parse::<u32>().ok());
    let mut params = Map::new();
    let mut query_keys = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        query_keys.push(k.to_string());
        params.insert(k.to_string(), Value::String(v.to_string()));
    }
    let mut body_error = None;
    if !body.is_empty() {
        let ctype = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ctype.starts_with("application/json") {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => params.extend(map),
                Ok(_) => body_error = Some("the JSON body must be an object".to_string()),
                Err(_) => body_error = Some("could not parse the JSON body".to_string()),
            }
        } else if ctype.starts_with("application/x-www-form-urlencoded") {
            for (k, v) in url::form_urlencoded::parse(body) {
                params.insert(k.to_string(), Value::String(v.to_string()));
            }
        } else {
            body_error = Some(format!("unsupported content type '{ctype}'"));
        }
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    Req {
        method: method.as_str().to_string(),
        path: path.clone(),
        rest: if version.is_some() {
            rest.to_string()
        } else {
            path
        },
        version,
        query,
        params,
        query_keys,
        bearer,
        body_error,
    }
}

/// A JSON value that may arrive as a JSON-encoded string (form bodies).
fn json_param(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => serde_json::from_str(s).ok(),
        other => Some(other.clone()),
    }
}

fn peek_payload(params: &Map<String, Value>) -> Option<(Vec<String>, usize)> {
    let p = json_param(params.get("payload")?)?;
    let schema = match p.get("schema")? {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect(),
        _ => return None,
    };
    let rows = p
        .get("data")
        .and_then(|d| d.as_array())
        .map_or(0, |d| d.len());
    Some((schema, rows))
}

fn json_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn json_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" || s == "1" => Some(true),
        Value::String(s) if s == "false" || s == "0" => Some(false),
        _ => None,
    }
}

fn read_session_loose(v: &Value) -> Option<RecordedSession> {
    let s = json_param(v)?;
    Some(RecordedSession {
        session_id: json_u64(s.get("session_id")?)?,
        batch_seq: s.get("batch_seq").and_then(json_u64).unwrap_or(0),
        last_batch_flag: s
            .get("last_batch_flag")
            .and_then(json_bool)
            .unwrap_or(false),
        estimated_num_total: s.get("estimated_num_total").and_then(json_u64),
    })
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn process(shared: &Shared, req: &Req) -> FakeAnswer {
    let mut st = shared.lock();
    let opts = &shared.options;

    // Version.
    let version = match req.version {
        Some(v) => v,
        None => {
            return st.error(
                400,
                100,
                None,
                "Unknown path components: the path must start with a version such as /v25.0",
            )
        }
    };
    if version < MIN_SUPPORTED_VERSION {
        return st.error(
            400,
            2635,
            None,
            &format!(
                "(#2635) You are calling a deprecated version of the Ads API. Please update to \
                 the latest version: {FAKE_VERSION}."
            ),
        );
    }
    if let Some(e) = &req.body_error {
        return st.invalid(e);
    }
    // Payload in the query string: refused.
    if let Some(k) = req
        .query_keys
        .iter()
        .find(|k| matches!(k.as_str(), "payload" | "session" | "schema" | "data"))
    {
        return st.invalid(&format!(
            "The parameter {k} must be sent in the request body, not in the query string"
        ));
    }
    // Token.
    let token = req.bearer.clone().or_else(|| {
        req.params
            .get("access_token")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    });
    match token {
        None => {
            return st.error(
                400,
                190,
                None,
                "An active access token must be used to query information about this resource.",
            )
        }
        Some(t) if t != opts.token => {
            return st.error(
                400,
                190,
                Some(467),
                "Invalid OAuth access token - Cannot parse access token",
            )
        }
        Some(_) => {}
    }
    // appsecret_proof.
    if let Some(secret) = &opts.app_secret {
        let proof = req.params.get("appsecret_proof").and_then(|v| v.as_str());
        match proof {
            None => {
                return st.invalid("API calls from the server require an appsecret_proof argument")
            }
            Some(p) => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
                    .expect("any key length");
                mac.update(opts.token.as_bytes());
                let expected = hex::encode(mac.finalize().into_bytes());
                if p != expected {
                    return st.invalid("Invalid appsecret_proof provided in the API argument");
                }
            }
        }
    }

    let segments: Vec<&str> = req
        .rest
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = req.method.as_str();
    let mut answer = match (method, segments.as_slice()) {
        ("POST", [account, "customaudiences"]) if account.starts_with("act_") => {
            let digits = &account[4..];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                st.no_object(method, account)
            } else {
                create_audience(&mut st, digits, &req.params)
            }
        }
        ("GET", [id]) => get_audience(&mut st, id, &req.params),
        ("DELETE", [id]) => delete_audience(&mut st, id),
        ("POST", [id, "users"]) => users(&mut st, id, &req.params, Mode::Add),
        ("DELETE", [id, "users"]) => users(&mut st, id, &req.params, Mode::Remove),
        ("POST", [id, "usersreplace"]) => users(&mut st, id, &req.params, Mode::Replace),
        (_, [id, ..]) => st.no_object(method, id),
        (_, []) => st.invalid("Unsupported request"),
    };
    if answer.status < 400 {
        let account = account_of(&req.rest);
        answer
            .headers
            .push(("x-business-use-case-usage", usage_header(&account, 0)));
    }
    answer
}

fn param_str<'a>(params: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    params.get(key).and_then(|v| v.as_str())
}

fn create_audience(st: &mut FakeState, account: &str, params: &Map<String, Value>) -> FakeAnswer {
    let name = match param_str(params, "name").map(str::trim) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => return st.invalid("The parameter name is required"),
    };
    let description = param_str(params, "description").map(str::to_string);
    let subtype = param_str(params, "subtype").map(|s| s.to_ascii_uppercase());
    let has_rule = params.contains_key("rule");
    let mut audience = FakeAudience {
        id: String::new(),
        account_id: account.to_string(),
        name,
        description,
        subtype: String::new(),
        customer_file_source: None,
        origin_audience_id: None,
        lookalike_spec: None,
        rule: None,
        retention_days: None,
        prefill: params.get("prefill").and_then(json_bool),
        flagged: false,
    };
    match (subtype.as_deref(), has_rule) {
        (Some("CUSTOM"), false) => {
            match param_str(params, "customer_file_source") {
                Some(s) if CUSTOMER_FILE_SOURCES.contains(&s) => {
                    audience.customer_file_source = Some(s.to_string())
                }
                Some(_) => return st.invalid("Invalid customer_file_source"),
                None => {
                    return st.invalid(
                        "The parameter customer_file_source is required for customer list \
                         custom audiences",
                    )
                }
            }
            audience.subtype = "CUSTOM".into();
        }
        (Some("LOOKALIKE"), false) => {
            let origin = match params.get("origin_audience_id").and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }) {
                Some(o) => o,
                None => return st.invalid("The parameter origin_audience_id is required"),
            };
            if st.audience_index(&origin).is_none() {
                return st.error(
                    400,
                    2654,
                    None,
                    &format!(
                        "(#2654) Failed to create lookalike custom audience: the origin audience \
                         {origin} does not exist"
                    ),
                );
            }
            // Meta takes lookalike_spec as a JSON-encoded string.
            let spec = match params.get("lookalike_spec") {
                Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => return st.invalid("Param lookalike_spec must be a JSON encoded object"),
                },
                Some(_) => return st.invalid("Param lookalike_spec must be a JSON encoded string"),
                None => return st.invalid("The parameter lookalike_spec is required"),
            };
            let country_ok = match spec.get("country") {
                Some(Value::String(c)) => c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()),
                Some(Value::Array(list)) => {
                    !list.is_empty()
                        && list.iter().all(|c| {
                            c.as_str().is_some_and(|c| {
                                c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())
                            })
                        })
                }
                _ => false,
            };
            if !country_ok {
                return st.invalid("lookalike_spec.country must be an ISO country code such as US");
            }
            match (spec.get("ratio").and_then(|r| r.as_f64()), spec.get("type")) {
                (Some(r), _) => {
                    let steps = (r * 100.0).round();
                    if !(0.01..=0.20).contains(&r) || (r * 100.0 - steps).abs() > 1e-6 {
                        return st.invalid(
                            "lookalike_spec.ratio must be between 0.01 and 0.20 in steps of 0.01",
                        );
                    }
                }
                (None, Some(Value::String(t))) if t == "similarity" || t == "reach" => {}
                _ => return st.invalid("lookalike_spec needs a ratio or a type"),
            }
            audience.subtype = "LOOKALIKE".into();
            audience.origin_audience_id = Some(origin);
            audience.lookalike_spec = Some(spec);
        }
        (None | Some("WEBSITE"), true) => {
            let rule = match params.get("rule").and_then(json_param) {
                Some(r @ Value::Object(_)) => r,
                _ => return st.invalid("Param rule must be a JSON encoded object"),
            };
            if let Err(e) = validate_rule(&rule) {
                return st.invalid(&e);
            }
            if let Some(v) = params.get("retention_days") {
                match json_u64(v) {
                    Some(d) if (1..=180).contains(&d) => audience.retention_days = Some(d),
                    _ => return st.invalid("retention_days must be between 1 and 180"),
                }
            }
            audience.subtype = "WEBSITE".into();
            audience.rule = Some(rule);
        }
        (Some(other), _) if !matches!(other, "CUSTOM" | "LOOKALIKE" | "WEBSITE") => {
            return st.invalid(&format!("Invalid subtype {other}"))
        }
        (_, true) => {
            return st.invalid("The parameter rule cannot be used with this subtype");
        }
        (_, false) => return st.invalid("Either subtype or rule is required"),
    }
    let id = st.next_id.to_string();
    st.next_id += 1;
    audience.id = id.clone();
    st.audiences.push(audience);
    st.members.insert(id.clone(), HashSet::new());
    st.touch(&id);
    FakeAnswer::json(200, json!({ "id": id }))
}

fn validate_rule(rule: &Value) -> Result<(), String> {
    let inclusions = rule
        .get("inclusions")
        .ok_or("rule.inclusions is required")?;
    match inclusions.get("operator").and_then(|o| o.as_str()) {
        Some("or") | Some("and") => {}
        _ => return Err("rule.inclusions.operator must be 'or' or 'and'".into()),
    }
    let rules = inclusions
        .get("rules")
        .and_then(|r| r.as_array())
        .filter(|r| !r.is_empty())
        .ok_or("rule.inclusions.rules must be a non-empty list")?;
    if rules.len() > 10 {
        return Err("a rule may have at most 10 inclusion rules".into());
    }
    for (i, r) in rules.iter().enumerate() {
        let sources = r
            .get("event_sources")
            .and_then(|s| s.as_array())
            .filter(|s| !s.is_empty())
            .ok_or(format!("rules[{i}].event_sources is required"))?;
        for s in sources {
            let id_ok = s.get("id").is_some_and(|id| match id {
                Value::String(s) => !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
                Value::Number(_) => true,
                _ => false,
            });
            if !id_ok || s.get("type").and_then(|t| t.as_str()) != Some("pixel") {
                return Err(format!(
                    "rules[{i}].event_sources entries need a numeric pixel id and type 'pixel'"
                ));
            }
        }
        let retention = r
            .get("retention_seconds")
            .and_then(json_u64)
            .ok_or(format!("rules[{i}].retention_seconds is required"))?;
        if retention == 0 || retention > 365 * 86_400 {
            return Err(format!("rules[{i}].retention_seconds is out of range"));
        }
        if let Some(filter) = r.get("filter") {
            let filters = filter
                .get("filters")
                .and_then(|f| f.as_array())
                .ok_or(format!("rules[{i}].filter.filters must be a list"))?;
            if filters.len() > 100 {
                return Err(format!("rules[{i}] has more than 100 filters"));
            }
            for f in filters {
                if f.get("field").and_then(|v| v.as_str()).is_none()
                    || f.get("operator").and_then(|v| v.as_str()).is_none()
                {
                    return Err(format!("rules[{i}].filter entries need field and operator"));
                }
            }
        }
    }
    Ok(())
}

fn status_json(code: i64, description: &str) -> Value {
    json!({"code": code, "description": description})
}

fn get_audience(st: &mut FakeState, id: &str, params: &Map<String, Value>) -> FakeAnswer {
    let Some(idx) = st.audience_index(id) else {
        return st.no_object("GET", id);
    };
    let fields: Vec<String> = match param_str(params, "fields") {
        Some(f) => f
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => vec!["id".to_string()],
    };
    if let Some(bad) = fields
        .iter()
        .find(|f| !AUDIENCE_FIELDS.contains(&f.as_str()))
    {
        let bad = bad.clone();
        return st.invalid(&format!(
            "Tried accessing nonexisting field ({bad}) on node type (CustomAudience)"
        ));
    }
    expire_replace(st, id);
    let a = st.audiences[idx].clone();
    let n = st.members.get(id).map_or(0, |m| m.len()) as i64;
    let replacing = st.replaces.contains_key(id);
    let updated = st.updated.get(id).copied().unwrap_or(0);
    let mut out = Map::new();
    for f in &fields {
        let v = match f.as_str() {
            "id" => json!(a.id),
            "name" => json!(a.name),
            "description" => json!(a.description),
            "subtype" => json!(a.subtype),
            "account_id" => json!(a.account_id),
            "customer_file_source" => json!(a.customer_file_source),
            "approximate_count_lower_bound" => json!(n - n / 10),
            "approximate_count_upper_bound" => json!(n + n / 10),
            "operation_status" => {
                if a.flagged {
                    status_json(
                        471,
                        "This audience has been flagged for integrity restrictions.",
                    )
                } else if replacing {
                    status_json(414, "Replace in progress")
                } else {
                    status_json(200, "Normal")
                }
            }
            "delivery_status" => {
                if n < 100 {
                    status_json(300, "This audience is too small to deliver ads.")
                } else {
                    status_json(200, "This audience is ready for use.")
                }
            }
            "time_content_updated" | "time_created" => json!(updated),
            "lookalike_spec" => json!(a.lookalike_spec),
            "origin_audience_id" => json!(a.origin_audience_id),
            "rule" => json!(a.rule.as_ref().map(|r| r.to_string())),
            "retention_days" => json!(a.retention_days),
            _ => Value::Null,
        };
        if !v.is_null() {
            out.insert(f.clone(), v);
        }
    }
    out.insert("id".into(), json!(a.id));
    FakeAnswer::json(200, Value::Object(out))
}

fn delete_audience(st: &mut FakeState, id: &str) -> FakeAnswer {
    let Some(idx) = st.audience_index(id) else {
        return st.no_object("DELETE", id);
    };
    if st
        .audiences
        .iter()
        .any(|a| a.origin_audience_id.as_deref() == Some(id))
    {
        return st.error(
            400,
            2656,
            None,
            "(#2656) This audience cannot be deleted because lookalike audiences were created \
             from it. Delete the lookalike audiences first.",
        );
    }
    st.audiences.remove(idx);
    st.members.remove(id);
    st.replaces.remove(id);
    FakeAnswer::json(200, json!({"success": true}))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Add,
    Remove,
    Replace,
}

struct Payload {
    schema: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn parse_payload(params: &Map<String, Value>) -> Result<Payload, String> {
    let raw = params
        .get("payload")
        .ok_or("The parameter payload is required")?;
    let p = json_param(raw).ok_or("Param payload must be a JSON object")?;
    let p = p.as_object().ok_or("Param payload must be a JSON object")?;
    let schema: Vec<String> = match p.get("schema") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or("payload.schema must be a list of key names")?,
        _ => return Err("payload.schema is required".into()),
    };
    if schema.is_empty() {
        return Err("payload.schema must not be empty".into());
    }
    let mut seen = HashSet::new();
    for k in &schema {
        if !KNOWN_KEYS.contains(&k.as_str()) {
            return Err(format!("Invalid schema key {k} in payload.schema"));
        }
        if !seen.insert(k.as_str()) {
            return Err(format!("Duplicate schema key {k} in payload.schema"));
        }
    }
    let data = p
        .get("data")
        .and_then(|d| d.as_array())
        .ok_or("payload.data must be a list of rows")?;
    if data.is_empty() {
        return Err("payload.data must not be empty".into());
    }
    if data.len() > FAKE_MAX_ROWS {
        return Err(format!(
            "Too many entries in payload.data ({}): the maximum is {FAKE_MAX_ROWS} a request",
            data.len()
        ));
    }
    let mut rows = Vec::with_capacity(data.len());
    for (i, row) in data.iter().enumerate() {
        let cells: Vec<&Value> = match row {
            Value::Array(a) => a.iter().collect(),
            v @ Value::String(_) if schema.len() == 1 => vec![v],
            _ => return Err(format!("payload.data[{i}] must be a list")),
        };
        if cells.len() != schema.len() {
            return Err(format!(
                "payload.data[{i}] has {} values but the schema has {} keys",
                cells.len(),
                schema.len()
            ));
        }
        let mut out = Vec::with_capacity(cells.len());
        for (key, cell) in schema.iter().zip(cells) {
            let value = match cell {
                Value::String(s) => s.clone(),
                Value::Number(n) if key == "LOOKALIKE_VALUE" => n.to_string(),
                _ => return Err(format!("payload.data[{i}] {key}: values must be strings")),
            };
            if !value.is_empty() && !UNHASHED_KEYS.contains(&key.as_str()) && !is_sha256_hex(&value)
            {
                return Err(format!(
                    "payload.data[{i}] {key}: values must be SHA-256 hashes (64 lowercase hex \
                     characters) or empty"
                ));
            }
            out.push(value);
        }
        rows.push(out);
    }
    Ok(Payload { schema, rows })
}

fn parse_session(params: &Map<String, Value>) -> Result<Option<RecordedSession>, String> {
    let Some(raw) = params.get("session") else {
        return Ok(None);
    };
    let s = json_param(raw).ok_or("Param session must be a JSON object")?;
    if !s.is_object() {
        return Err("Param session must be a JSON object".into());
    }
    let session_id = s
        .get("session_id")
        .and_then(json_u64)
        .filter(|id| *id > 0 && *id <= i64::MAX as u64)
        .ok_or("session.session_id must be a positive 64-bit integer")?;
    let batch_seq = s
        .get("batch_seq")
        .and_then(json_u64)
        .filter(|b| *b >= 1)
        .ok_or("session.batch_seq must be an integer starting at 1")?;
    let last_batch_flag = match s.get("last_batch_flag") {
        None => false,
        Some(v) => json_bool(v).ok_or("session.last_batch_flag must be a boolean")?,
    };
    let estimated_num_total = match s.get("estimated_num_total") {
        None | Some(Value::Null) => None,
        Some(v) => Some(json_u64(v).ok_or("session.estimated_num_total must be an integer")?),
    };
    Ok(Some(RecordedSession {
        session_id,
        batch_seq,
        last_batch_flag,
        estimated_num_total,
    }))
}

/// Close a replace session that ran past the timeout (later batches get 1870158).
fn expire_replace(st: &mut FakeState, audience_id: &str) {
    let timeout = st.replace_timeout;
    if let Some(r) = st.replaces.get(audience_id) {
        if r.started.elapsed() > timeout {
            let sid = r.session_id;
            st.replaces.remove(audience_id);
            st.closed_sessions
                .insert((format!("timeout:{audience_id}"), sid));
        }
    }
}

fn users(st: &mut FakeState, id: &str, params: &Map<String, Value>, mode: Mode) -> FakeAnswer {
    let method = if mode == Mode::Remove {
        "DELETE"
    } else {
        "POST"
    };
    let Some(idx) = st.audience_index(id) else {
        return st.no_object(method, id);
    };
    let audience = st.audiences[idx].clone();
    if audience.subtype != "CUSTOM" {
        return st.invalid(&format!(
            "Users can only be changed in customer list custom audiences (this one is {})",
            audience.subtype
        ));
    }
    if audience.flagged {
        return st.error_full(
            400,
            100,
            Some(1713230),
            "Invalid parameter",
            Some("Audience Upload Blocked"),
            Some(
                "Before updating user memberships, you must resolve integrity restrictions on \
                 this Data File Custom Audience. Go to Audience Manager to appeal the \
                 restrictions or create a new audience with updated data",
            ),
            false,
        );
    }
    let payload = match parse_payload(params) {
        Ok(p) => p,
        Err(e) => return st.invalid(&e),
    };
    let session = match parse_session(params) {
        Ok(s) => s,
        Err(e) => return st.invalid(&e),
    };

    // Invalid entries: rows holding a configured invalid hash, or with every value empty.
    let mut samples = Map::new();
    let mut valid = Vec::with_capacity(payload.rows.len());
    let mut invalid_count = 0u64;
    for row in payload.rows {
        let bad = row.iter().find(|v| st.invalid_hashes.contains(*v)).cloned();
        if let Some(bad) = bad {
            invalid_count += 1;
            if samples.len() < 100 {
                samples.insert(bad, json!("Invalid or unmatched hash"));
            }
        } else if row.iter().all(|v| v.is_empty()) {
            invalid_count += 1;
            if samples.len() < 100 {
                samples.insert(String::new(), json!("Empty entry"));
            }
        } else {
            valid.push(row);
        }
    }
    let received = (valid.len() as u64) + invalid_count;

    expire_replace(st, id);
    let session_id = match mode {
        Mode::Add | Mode::Remove => {
            if st.replaces.contains_key(id) {
                return st.error(
                    400,
                    2650,
                    Some(1870145),
                    "(#2650) Failed to update the custom audience: another update (a replace) is \
                     in progress for this audience. Wait and retry.",
                );
            }
            let members = st.members.entry(id.to_string()).or_default();
            for row in valid {
                if mode == Mode::Add {
                    members.insert(row);
                } else {
                    members.remove(&row);
                }
            }
            st.touch(id);
            session
                .map(|s| s.session_id)
                .unwrap_or_else(|| 1_000_000 + st.clock)
        }
        Mode::Replace => {
            let Some(s) = session else {
                return st.invalid("The parameter session is required for usersreplace");
            };
            let account = audience.account_id.clone();
            if st
                .closed_sessions
                .contains(&(format!("timeout:{id}"), s.session_id))
            {
                return st.error(
                    400,
                    2650,
                    Some(1870158),
                    "(#2650) The replace session timed out: it must finish within 90 minutes of \
                     its first batch. Send the remaining users with /users.",
                );
            }
            if st
                .closed_sessions
                .contains(&(account.clone(), s.session_id))
            {
                return st.error(
                    400,
                    2650,
                    Some(1870159),
                    "(#2650) This replace session is already closed.",
                );
            }
            match st.replaces.get(id).map(|r| r.session_id) {
                Some(running) if running != s.session_id => {
                    return st.error(
                        400,
                        2650,
                        Some(1870145),
                        "(#2650) Failed to update the custom audience: another replace is in \
                         progress for this audience. Wait and retry.",
                    );
                }
                Some(_) => {}
                None => {
                    if s.batch_seq != 1 {
                        return st.error(
                            400,
                            2650,
                            Some(1870147),
                            "(#2650) The replace session has no first batch: batch_seq 1 must \
                             start the session.",
                        );
                    }
                    st.replaces.insert(
                        id.to_string(),
                        ReplaceState {
                            session_id: s.session_id,
                            schema: payload.schema.clone(),
                            rows: HashSet::new(),
                            started: Instant::now(),
                            batches: HashSet::new(),
                        },
                    );
                }
            }
            let r = st.replaces.get_mut(id).expect("replace state");
            if r.schema != payload.schema {
                return st
                    .invalid("The schema must not change within a replace session (usersreplace)");
            }
            r.batches.insert(s.batch_seq);
            r.rows.extend(valid);
            if s.last_batch_flag {
                let r = st.replaces.remove(id).expect("replace state");
                st.members.insert(id.to_string(), r.rows);
                st.closed_sessions.insert((account, s.session_id));
            }
            st.touch(id);
            s.session_id
        }
    };
    FakeAnswer::json(
        200,
        json!({
            "audience_id": id,
            "session_id": session_id.to_string(),
            "num_received": received,
            "num_invalid_entries": invalid_count,
            "invalid_entry_samples": Value::Object(samples),
        }),
    )
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
