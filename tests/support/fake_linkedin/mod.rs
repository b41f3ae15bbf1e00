//! A strict fake of LinkedIn's DMP segment API (Matched Audiences, streaming users), for tests.
//!
//! It listens on 127.0.0.1 (random port) under `/rest` and answers like the documented API
//! (shared/DESTINATIONS.md §3, checklist §6): the Bearer token, `LinkedIn-Version` and
//! `X-Restli-Protocol-Version: 2.0.0` required on every call and `X-RestLi-Method: BATCH_CREATE`
//! on `/users`; 201 with `x-restli-id` and `x-linkedin-id` on create; 404 for a while after a
//! segment's creation; at most 5,000 elements; 200 with a status per element (400 for a
//! malformed `idValue`); ADD of a present id and REMOVE of an absent one are 201; 429 past 500
//! `/users` requests a minute. Test hooks read its state, inject faults and delete segments
//! "outside" the service.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use audience_sync::destinations::retry::RetryPolicy;
use audience_sync::destinations::settings::LinkedinConfig;
use audience_sync::destinations::token::SecretToken;

pub const FAKE_TOKEN: &str = "fake-linkedin-token-AQV";
pub const FAKE_ACCOUNT: &str = "516848833";
pub const MAX_ELEMENTS: usize = 5_000;
pub const USERS_PER_MINUTE: usize = 500;

#[derive(Debug, Clone)]
pub struct FakeSegment {
    pub id: u64,
    pub account: String,
    pub name: String,
    pub source_platform: String,
    pub source_segment_id: Option<String>,
    pub created: Instant,
    /// The `SHA256_EMAIL` values it holds.
    pub members: HashSet<String>,
}

#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub method: String,
    /// Path after `/rest`, e.g. `/dmpSegments/1/users`.
    pub path: String,
    pub elements: usize,
    /// Element fields other than `action` and `userIds` (plain-text names, titles…).
    pub plain_fields: Vec<String>,
    pub status: u16,
}

/// What a fault answers in place of the API.
#[derive(Debug, Clone)]
pub enum FaultResponse {
    /// This status with LinkedIn's error body.
    Status(u16),
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub method: &'static str,
    /// The path after `/rest` ends with this.
    pub path_suffix: &'static str,
    pub times: usize,
    pub response: FaultResponse,
}

struct FakeState {
    next_id: u64,
    segments: BTreeMap<u64, FakeSegment>,
    calls: Vec<RecordedCall>,
    faults: Vec<Fault>,
    ready_after: Duration,
    invalid_hashes: HashSet<String>,
    users_calls: Vec<Instant>,
}

struct Shared {
    token: String,
    state: Mutex<FakeState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FakeLinkedin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLinkedin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLinkedin {
    /// Started with [`FAKE_TOKEN`]; a new segment answers 404 for its first 300 ms (LinkedIn:
    /// about 5 s; [`FakeLinkedin::set_ready_after`] changes it).
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            token: FAKE_TOKEN.to_string(),
            state: Mutex::new(FakeState {
                next_id: 1_000_001,
                segments: BTreeMap::new(),
                calls: Vec::new(),
                faults: Vec::new(),
                ready_after: Duration::from_millis(300),
                invalid_hashes: HashSet::new(),
                users_calls: Vec::new(),
            }),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake LinkedIn");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeLinkedin { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/rest", self.addr)
    }

    /// The client's settings pointed at this fake: account [`FAKE_ACCOUNT`], 4 attempts a call
    /// with 5–40 ms backoff.
    pub fn config(&self) -> LinkedinConfig {
        self.config_with(FAKE_TOKEN)
    }

    pub fn config_with(&self, token: &str) -> LinkedinConfig {
        LinkedinConfig {
            access_token: SecretToken::new(token),
            ad_account_id: Some(FAKE_ACCOUNT.to_string()),
            api_url: self.url(),
            version: "202604".to_string(),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(40),
            },
        }
    }

    pub fn set_ready_after(&self, d: Duration) {
        self.shared.lock().ready_after = d;
    }

    /// Hashes LinkedIn refuses element by element (status 400).
    pub fn set_invalid_hashes(&self, hashes: impl IntoIterator<Item = String>) {
        self.shared.lock().invalid_hashes = hashes.into_iter().collect();
    }

    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    pub fn members(&self, id: &str) -> HashSet<String> {
        let id: u64 = id.parse().expect("numeric segment id");
        self.shared
            .lock()
            .segments
            .get(&id)
            .map(|s| s.members.clone())
            .unwrap_or_default()
    }

    pub fn segments(&self) -> Vec<FakeSegment> {
        self.shared.lock().segments.values().cloned().collect()
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// The segment deleted in LinkedIn's UI, outside the service.
    pub fn delete_outside(&self, id: &str) {
        let id: u64 = id.parse().expect("numeric segment id");
        self.shared.lock().segments.remove(&id);
    }
}

struct Answer {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Answer {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    /// LinkedIn's error body.
    fn error(status: u16, code: &str, message: &str) -> Self {
        Answer::json(
            status,
            json!({"status": status, "code": code, "message": message}),
        )
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = match self.body {
            Some(b) => (status, b.to_string()).into_response(),
            None => status.into_response(),
        };
        if resp.status() != StatusCode::NO_CONTENT {
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
        }
        for (name, value) in self.headers {
            resp.headers_mut()
                .insert(name, HeaderValue::from_str(&value).expect("header"));
        }
        resp
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().strip_prefix("/rest").unwrap_or("").to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let elements = body["elements"].as_array().map_or(0, Vec::len);
    let plain_fields = body["elements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|e| {
            e.keys()
                .filter(|k| *k != "action" && *k != "userIds")
                .cloned()
        })
        .collect();
    let mut st = shared.lock();
    let fault = st
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && f.method == method.as_str() && path.ends_with(f.path_suffix))
        .map(|f| {
            f.times -= 1;
            f.response.clone()
        });
    let answer = match fault {
        Some(FaultResponse::Status(401)) => {
            Answer::error(401, "INVALID_ACCESS_TOKEN", "Invalid access token")
        }
        Some(FaultResponse::Status(s)) => Answer::error(s, "FAULT", "injected fault"),
        None => match check_headers(&shared.token, &headers, &method, &path) {
            Err(a) => a,
            Ok(()) => route(&mut st, &method, &path, uri.query().unwrap_or(""), &body),
        },
    };
    st.calls.push(RecordedCall {
        method: method.to_string(),
        path,
        elements,
        plain_fields,
        status: answer.status,
    });
    answer.into_response()
}

/// `GET /adAccounts/{id}`: the token's member has a role on [`FAKE_ACCOUNT`] alone; any other
/// account is refused as LinkedIn refuses one without a role (403 ACCESS_DENIED).
fn ad_account(id: &str) -> Answer {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Answer::error(400, "ILLEGAL_ARGUMENT", "Invalid ad account id");
    }
    if id != FAKE_ACCOUNT {
        return Answer::error(
            403,
            "ACCESS_DENIED",
            "Not enough permissions to access: adAccounts.GET.20260401",
        );
    }
    Answer::json(
        200,
        json!({"id": id.parse::<u64>().unwrap_or_default(), "name": "Fake ad account",
               "status": "ACTIVE", "type": "BUSINESS", "currency": "USD",
               "reference": "urn:li:organization:2414183"}),
    )
}

fn check_headers(token: &str, h: &HeaderMap, method: &Method, path: &str) -> Result<(), Answer> {
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if header("authorization") != format!("Bearer {token}") {
        return Err(Answer::error(
            401,
            "INVALID_ACCESS_TOKEN",
            "Invalid access token",
        ));
    }
    let version = header("linkedin-version");
    if version.len() != 6 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Answer::error(
            400,
            "VERSION_MISSING",
            "A version must be present. Please specify a version by adding the LinkedIn-Version header",
        ));
    }
    if header("x-restli-protocol-version") != "2.0.0" {
        return Err(Answer::error(
            400,
            "ILLEGAL_ARGUMENT",
            "X-Restli-Protocol-Version 2.0.0 is required",
        ));
    }
    if method == Method::POST
        && path.ends_with("/users")
        && header("x-restli-method") != "BATCH_CREATE"
    {
        return Err(Answer::error(
            400,
            "ILLEGAL_ARGUMENT",
            "X-RestLi-Method: BATCH_CREATE is required on a batch create",
        ));
    }
    Ok(())
}

fn route(st: &mut FakeState, method: &Method, path: &str, query: &str, body: &Value) -> Answer {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["dmpSegments"]) => create(st, body),
        ("GET", ["dmpSegments"]) => find(st, query),
        ("GET", ["dmpSegments", id]) => with_ready(st, id, |s| Answer::json(200, segment_json(s))),
        ("DELETE", ["dmpSegments", id]) => {
            match id.parse::<u64>().ok().and_then(|i| st.segments.remove(&i)) {
                Some(_) => Answer {
                    status: 204,
                    body: None,
                    headers: Vec::new(),
                },
                None => Answer::error(404, "NOT_FOUND", "Not found"),
            }
        }
        ("POST", ["dmpSegments", id, "users"]) => users(st, id, body),
        ("GET", ["adAccounts", id]) => ad_account(id),
        _ => Answer::error(404, "NOT_FOUND", "No resource found"),
    }
}

fn create(st: &mut FakeState, body: &Value) -> Answer {
    let Some(obj) = body.as_object() else {
        return Answer::error(400, "ILLEGAL_ARGUMENT", "the body must be a JSON object");
    };
    const KNOWN: &[&str] = &[
        "name",
        "sourcePlatform",
        "sourceSegmentId",
        "account",
        "type",
        "destinations",
        "description",
        "accessPolicy",
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Answer::error(
            400,
            "UNRECOGNIZED_FIELD",
            &format!("Unrecognized field: /{k}"),
        );
    }
    let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
    let platform = obj
        .get("sourcePlatform")
        .and_then(Value::as_str)
        .unwrap_or("");
    let account = obj.get("account").and_then(Value::as_str).unwrap_or("");
    let account = account
        .strip_prefix("urn:li:sponsoredAccount:")
        .unwrap_or("");
    let destinations_ok = obj.get("destinations") == Some(&json!([{"destination": "LINKEDIN"}]));
    if name.is_empty() || platform.is_empty() {
        return Answer::error(400, "FIELD_MISSING", "name and sourcePlatform are required");
    }
    if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Answer::error(
            400,
            "INVALID_VALUE",
            "account must be a sponsoredAccount URN",
        );
    }
    if !matches!(
        obj.get("type").and_then(Value::as_str),
        Some("USER" | "COMPANY")
    ) || !destinations_ok
    {
        return Answer::error(
            400,
            "INVALID_VALUE",
            "type USER|COMPANY and destinations [LINKEDIN] are required",
        );
    }
    let id = st.next_id;
    st.next_id += 1;
    st.segments.insert(
        id,
        FakeSegment {
            id,
            account: account.to_string(),
            name: name.to_string(),
            source_platform: platform.to_string(),
            source_segment_id: obj
                .get("sourceSegmentId")
                .and_then(Value::as_str)
                .map(str::to_string),
            created: Instant::now(),
            members: HashSet::new(),
        },
    );
    Answer {
        status: 201,
        body: None,
        headers: vec![
            ("x-restli-id", id.to_string()),
            ("x-linkedin-id", id.to_string()),
        ],
    }
}

fn find(st: &FakeState, query: &str) -> Answer {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("q") != Some("account") {
        return Answer::error(400, "ILLEGAL_ARGUMENT", "q=account is required");
    }
    let account = get("account")
        .and_then(|a| a.strip_prefix("urn:li:sponsoredAccount:"))
        .unwrap_or("");
    let elements: Vec<Value> = st
        .segments
        .values()
        .filter(|s| s.account == account)
        .filter(|s| {
            get("sourceSegmentId").is_none_or(|v| s.source_segment_id.as_deref() == Some(v))
        })
        .map(segment_json)
        .collect();
    let total = elements.len();
    Answer::json(
        200,
        json!({"elements": elements, "paging": {"start": 0, "count": 10, "total": total}}),
    )
}

fn segment_json(s: &FakeSegment) -> Value {
    let n = s.members.len();
    json!({
        "id": s.id, "name": s.name, "type": "USER",
        "account": format!("urn:li:sponsoredAccount:{}", s.account),
        "sourcePlatform": s.source_platform, "sourceSegmentId": s.source_segment_id,
        "destinations": [{"destination": "LINKEDIN", "status": if n >= 300 { "READY" } else { "BUILDING" }, "audienceSize": n}],
        "matchedCount": n, "inputCount": n,
    })
}

/// `f` on the segment, when it exists and is past its unavailable window.
fn with_ready(st: &mut FakeState, id: &str, f: impl FnOnce(&mut FakeSegment) -> Answer) -> Answer {
    let ready_after = st.ready_after;
    match id.parse::<u64>().ok().and_then(|i| st.segments.get_mut(&i)) {
        Some(s) if s.created.elapsed() >= ready_after => f(s),
        _ => Answer::error(404, "NOT_FOUND", "Not found"),
    }
}

fn users(st: &mut FakeState, id: &str, body: &Value) -> Answer {
    let now = Instant::now();
    st.users_calls
        .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
    if st.users_calls.len() >= USERS_PER_MINUTE {
        return Answer::error(
            429,
            "TOO_MANY_REQUESTS",
            "Resource level throttle limit reached",
        );
    }
    st.users_calls.push(now);
    let Some(elements) = body["elements"].as_array() else {
        return Answer::error(400, "ILLEGAL_ARGUMENT", "elements is required");
    };
    if elements.is_empty() || elements.len() > MAX_ELEMENTS {
        return Answer::error(
            400,
            "ILLEGAL_ARGUMENT",
            &format!(
                "a batch holds 1 to {MAX_ELEMENTS} elements, not {}",
                elements.len()
            ),
        );
    }
    let invalid = st.invalid_hashes.clone();
    with_ready(st, id, |s| {
        let statuses: Vec<Value> = elements
            .iter()
            .map(|e| match element(e, &invalid) {
                Ok((add, ids)) => {
                    for v in ids {
                        if add {
                            s.members.insert(v);
                        } else {
                            s.members.remove(&v);
                        }
                    }
                    json!({"status": 201})
                }
                Err(message) => json!({"status": 400, "error": {"message": message}}),
            })
            .collect();
        Answer::json(200, json!({"elements": statuses}))
    })
}

/// An element's action and the `SHA256_EMAIL` values it names, or why it is refused.
fn element(e: &Value, invalid: &HashSet<String>) -> Result<(bool, Vec<String>), String> {
    let add = match e["action"].as_str() {
        Some("ADD") => true,
        Some("REMOVE") => false,
        _ => return Err("action must be ADD or REMOVE".into()),
    };
    let ids = e["userIds"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("userIds is required")?;
    let mut emails = Vec::new();
    for id in ids {
        let value = id["idValue"].as_str().unwrap_or("");
        let hex = |n: usize| value.len() == n && value.bytes().all(|b| b.is_ascii_hexdigit());
        match id["idType"].as_str() {
            Some("SHA256_EMAIL") if hex(64) => emails.push(value.to_ascii_lowercase()),
            Some("SHA256_EMAIL") => {
                return Err("SHA256_EMAIL must be a HEX encoded string with length = 64".into())
            }
            Some("SHA512_EMAIL") if hex(128) => {}
            Some("SHA512_EMAIL") => {
                return Err("SHA512_EMAIL must be a HEX encoded string with length = 128".into())
            }
            Some("GOOGLE_AID") if !value.is_empty() => {}
            _ => return Err("unsupported idType".into()),
        }
    }
    if emails.iter().any(|v| invalid.contains(v)) {
        return Err("the user could not be processed".into());
    }
    Ok((add, emails))
}
