//! A strict fake of TikTok's API for Business v1.3 audience endpoints, for tests.
//!
//! It listens on 127.0.0.1 (random port) under `/open_api/v1.3` and answers like the documented
//! API (shared/DESTINATIONS.md §4, checklist §6): HTTP 200 for everything with
//! `{code, message, request_id, data}`; the `Access-Token` header required (40105 otherwise);
//! the advertiser must be the one the token is authorized for (40001); `segment/mapping` with
//! `action` add|delete, every `batch_data` row as long as `id_schema`, 64-hex SHA-256 values,
//! known audience ids and at most 1,000 users (40002 otherwise); `dmp/custom_audience/get/` and
//! `delete/` with 1–100 ids; lookalikes from a seed of at least 100 users. Test hooks read each
//! audience's identifiers, inject faults (40100 throttling, 5xxxx, HTTP 5xx) and delete audiences
//! "outside" the service.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use audience_sync::destinations::retry::RetryPolicy;
use audience_sync::destinations::settings::TiktokConfig;
use audience_sync::destinations::token::SecretToken;

pub const FAKE_TOKEN: &str = "fake-tiktok-access-token";
pub const FAKE_ADVERTISER: &str = "7000000000000";
pub const MAX_USERS: usize = 1_000;
const SCHEMAS: &[&str] = &[
    "EMAIL_SHA256",
    "PHONE_SHA256",
    "IDFA_SHA256",
    "AAID_SHA256",
    "IDFA_MD5",
    "AAID_MD5",
];

#[derive(Debug, Clone)]
pub struct FakeAudience {
    pub id: String,
    pub advertiser_id: String,
    pub name: String,
    /// `SEGMENT` (partner audience) or `LOOKALIKE`.
    pub kind: String,
    pub lookalike_spec: Option<Value>,
    /// `"EMAIL_SHA256:<hex>"`, `"PHONE_SHA256:<hex>"`…
    pub ids: HashSet<String>,
}

#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub method: String,
    /// Path after `/open_api/v1.3`, e.g. `/segment/mapping/`.
    pub path: String,
    pub users: usize,
    /// `action` of a mapping call.
    pub action: Option<String>,
    pub code: i64,
}

#[derive(Debug, Clone)]
pub enum FaultResponse {
    /// HTTP 200 with this body `code`.
    Code(i64),
    /// This HTTP status with an HTML body.
    Http(u16),
}

#[derive(Debug, Clone)]
pub struct Fault {
    /// The path after `/open_api/v1.3` ends with this (e.g. `"/segment/mapping/"`).
    pub path_suffix: &'static str,
    pub times: usize,
    pub response: FaultResponse,
}

struct FakeState {
    next_id: u64,
    audiences: BTreeMap<String, FakeAudience>,
    calls: Vec<RecordedCall>,
    faults: Vec<Fault>,
    requests: u64,
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

pub struct FakeTiktok {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTiktok {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTiktok {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            token: FAKE_TOKEN.to_string(),
            state: Mutex::new(FakeState {
                next_id: 1_790_000_000_001,
                audiences: BTreeMap::new(),
                calls: Vec::new(),
                faults: Vec::new(),
                requests: 0,
            }),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake TikTok");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTiktok { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/open_api/v1.3", self.addr)
    }

    /// The client's settings pointed at this fake: advertiser [`FAKE_ADVERTISER`], 4 attempts
    /// a call with 5–40 ms backoff.
    pub fn config(&self) -> TiktokConfig {
        self.config_with(FAKE_TOKEN)
    }

    pub fn config_with(&self, token: &str) -> TiktokConfig {
        TiktokConfig {
            access_token: SecretToken::new(token),
            advertiser_id: Some(FAKE_ADVERTISER.to_string()),
            api_url: self.url(),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(40),
            },
        }
    }

    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    pub fn audience(&self, id: &str) -> Option<FakeAudience> {
        self.shared.lock().audiences.get(id).cloned()
    }

    pub fn audiences(&self) -> Vec<FakeAudience> {
        self.shared.lock().audiences.values().cloned().collect()
    }

    /// The values of one identifier type (`"EMAIL_SHA256"`, `"PHONE_SHA256"`) an audience holds.
    pub fn ids(&self, id: &str, schema: &str) -> HashSet<String> {
        let prefix = format!("{schema}:");
        self.audience(id)
            .map(|a| {
                a.ids
                    .iter()
                    .filter_map(|v| v.strip_prefix(&prefix).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// The audience deleted in TikTok's UI, outside the service.
    pub fn delete_outside(&self, id: &str) {
        self.shared.lock().audiences.remove(id);
    }
}

/// `(code, message, data)`: what the API answers in its envelope.
type Outcome = (i64, String, Value);

fn ok(data: Value) -> Outcome {
    (0, "OK".to_string(), data)
}

fn refuse(code: i64, message: &str) -> Outcome {
    (code, message.to_string(), json!({}))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/open_api/v1.3")
        .unwrap_or("")
        .to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let users = body["batch_data"].as_array().map_or(0, Vec::len);
    let action = body["action"].as_str().map(str::to_string);
    let mut st = shared.lock();
    st.requests += 1;
    let request_id = format!("2026113010{:010}", st.requests);
    let fault = st
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && path.ends_with(f.path_suffix))
        .map(|f| {
            f.times -= 1;
            f.response.clone()
        });
    let token = headers
        .get("access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (code, message, data) = match fault {
        Some(FaultResponse::Http(status)) => {
            st.calls.push(RecordedCall {
                method: method.to_string(),
                path,
                users,
                action,
                code: -1,
            });
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            return (status, "<html><body>Bad Gateway</body></html>").into_response();
        }
        Some(FaultResponse::Code(code)) => refuse(code, "injected fault"),
        None if token.is_empty() => {
            refuse(40105, "Access token is null, you should add it in header.")
        }
        None if token != shared.token => {
            refuse(40105, "The access token is invalid or has been revoked.")
        }
        None => route(&mut st, &method, &path, uri.query().unwrap_or(""), &body),
    };
    st.calls.push(RecordedCall {
        method: method.to_string(),
        path,
        users,
        action,
        code,
    });
    let envelope =
        json!({"code": code, "message": message, "request_id": request_id, "data": data});
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        envelope.to_string(),
    )
        .into_response()
}

fn route(st: &mut FakeState, method: &Method, path: &str, query: &str, body: &Value) -> Outcome {
    match (method.as_str(), path) {
        ("POST", "/segment/audience/") => create(st, body),
        ("POST", "/segment/mapping/") => mapping(st, body),
        ("GET", "/dmp/custom_audience/get/") => get(st, query),
        ("POST", "/dmp/custom_audience/delete/") => delete(st, body),
        ("POST", "/dmp/custom_audience/lookalike/create/") => lookalike(st, body),
        ("GET", "/advertiser/info/") => advertiser_info(query),
        _ => refuse(40002, "the requested API does not exist"),
    }
}

/// `GET /advertiser/info/?advertiser_ids=["…"]`: the token is authorized for
/// [`FAKE_ADVERTISER`] alone (40001 for any other, as TikTok answers).
fn advertiser_info(query: &str) -> Outcome {
    let ids = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "advertiser_ids")
        .and_then(|(_, v)| serde_json::from_str::<Vec<String>>(&v).ok());
    let Some(ids) = ids.filter(|ids| !ids.is_empty()) else {
        return refuse(
            40002,
            "advertiser_ids: must be a JSON list of advertiser ids",
        );
    };
    if let Some(other) = ids.iter().find(|id| *id != FAKE_ADVERTISER) {
        return refuse(
            40001,
            &format!("No permission to operate advertiser {other}"),
        );
    }
    ok(
        json!({"list": [{"advertiser_id": FAKE_ADVERTISER, "name": "Fake advertiser",
                        "status": "STATUS_ENABLE", "currency": "USD"}]}),
    )
}

fn authorized(advertiser: Option<&str>) -> Result<(), Outcome> {
    match advertiser {
        Some(FAKE_ADVERTISER) => Ok(()),
        Some(_) => Err(refuse(40001, "No permission to operate advertiser")),
        None => Err(refuse(
            40002,
            "advertiser_id: Missing data for required field.",
        )),
    }
}

fn new_id(st: &mut FakeState) -> String {
    st.next_id += 1;
    st.next_id.to_string()
}

fn create(st: &mut FakeState, body: &Value) -> Outcome {
    if let Err(o) = authorized(body["advertiser_id"].as_str()) {
        return o;
    }
    let name = body["custom_audience_name"].as_str().unwrap_or("");
    if body["action"] != "create" {
        return refuse(40002, "action: must be one of create, update, delete");
    }
    if name.is_empty() || name.chars().count() > 128 {
        return refuse(40002, "custom_audience_name: length must be 1 to 128");
    }
    let id = new_id(st);
    st.audiences.insert(
        id.clone(),
        FakeAudience {
            id: id.clone(),
            advertiser_id: FAKE_ADVERTISER.to_string(),
            name: name.to_string(),
            kind: "SEGMENT".to_string(),
            lookalike_spec: None,
            ids: HashSet::new(),
        },
    );
    ok(json!({"audience_id": id}))
}

fn mapping(st: &mut FakeState, body: &Value) -> Outcome {
    let advertisers = body["advertiser_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if advertisers.is_empty() {
        return refuse(40002, "advertiser_ids: Missing data for required field.");
    }
    for a in &advertisers {
        if let Err(o) = authorized(a.as_str()) {
            return o;
        }
    }
    let add = match body["action"].as_str() {
        Some("add") => true,
        Some("delete") => false,
        _ => return refuse(40002, "action: must be one of add, delete"),
    };
    let schema: Vec<&str> = body["id_schema"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let distinct: HashSet<&&str> = schema.iter().collect();
    if schema.is_empty()
        || distinct.len() != schema.len()
        || schema.iter().any(|s| !SCHEMAS.contains(s))
    {
        return refuse(40002, "id_schema: invalid or repeated identifier types");
    }
    let Some(rows) = body["batch_data"].as_array() else {
        return refuse(40002, "batch_data: Missing data for required field.");
    };
    if rows.is_empty() || rows.len() > MAX_USERS {
        return refuse(
            40002,
            &format!("batch_data: 1 to {MAX_USERS} users per request"),
        );
    }
    let mut changes = Vec::new();
    for row in rows {
        let Some(cells) = row.as_array().filter(|c| c.len() == schema.len()) else {
            return refuse(
                40002,
                "batch_data: every user must have one entry per id_schema item",
            );
        };
        for (cell, kind) in cells.iter().zip(&schema) {
            let Some(obj) = cell.as_object() else {
                return refuse(40002, "batch_data: entries must be objects");
            };
            if obj.is_empty() {
                continue;
            }
            let id = obj.get("id").and_then(Value::as_str).unwrap_or("");
            let len = if kind.ends_with("MD5") { 32 } else { 64 };
            if id.len() != len || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return refuse(
                    40002,
                    &format!("batch_data: {kind} must be a lowercase hex hash"),
                );
            }
            let targets = obj
                .get("audience_ids")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if targets.is_empty() {
                return refuse(40002, "batch_data: audience_ids is required");
            }
            for t in targets {
                let t = t.as_str().unwrap_or("").to_string();
                if st.audiences.get(&t).is_none_or(|a| a.kind != "SEGMENT") {
                    return refuse(40002, "batch_data: audience_ids: audience does not exist");
                }
                changes.push((t, format!("{kind}:{id}")));
            }
        }
    }
    // All or nothing: nothing is applied when any entry is refused.
    for (audience, id) in changes {
        let ids = &mut st.audiences.get_mut(&audience).expect("checked").ids;
        if add {
            ids.insert(id);
        } else {
            ids.remove(&id);
        }
    }
    ok(json!({}))
}

fn id_list(v: &Value) -> Result<Vec<String>, Outcome> {
    let ids: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() || ids.len() > 100 {
        return Err(refuse(40002, "custom_audience_ids: 1 to 100 ids"));
    }
    Ok(ids)
}

fn get(st: &FakeState, query: &str) -> Outcome {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Err(o) = authorized(param("advertiser_id")) {
        return o;
    }
    let parsed = serde_json::from_str::<Value>(param("custom_audience_ids").unwrap_or(""));
    let ids = match parsed
        .map_err(|_| refuse(40002, "custom_audience_ids: must be a JSON list"))
        .and_then(|v| id_list(&v))
    {
        Ok(ids) => ids,
        Err(o) => return o,
    };
    let list: Vec<Value> = ids
        .iter()
        .filter_map(|id| st.audiences.get(id))
        .map(|a| {
            json!({"audience_details": {
                "audience_id": a.id, "name": a.name, "cover_num": a.ids.len(),
                "is_valid": true, "is_expiring": false, "audience_type": a.kind,
            }})
        })
        .collect();
    ok(json!({"list": list}))
}

fn delete(st: &mut FakeState, body: &Value) -> Outcome {
    if let Err(o) = authorized(body["advertiser_id"].as_str()) {
        return o;
    }
    let ids = match id_list(&body["custom_audience_ids"]) {
        Ok(ids) => ids,
        Err(o) => return o,
    };
    if ids.iter().any(|id| !st.audiences.contains_key(id)) {
        return refuse(40002, "custom_audience_ids: audience does not exist");
    }
    for id in ids {
        st.audiences.remove(&id);
    }
    ok(json!({}))
}

fn lookalike(st: &mut FakeState, body: &Value) -> Outcome {
    if let Err(o) = authorized(body["advertiser_id"].as_str()) {
        return o;
    }
    let spec = &body["lookalike_spec"];
    let source = spec["source_audience_id"].as_str().unwrap_or("");
    let Some(seed) = st.audiences.get(source) else {
        return refuse(40002, "source_audience_id: audience does not exist");
    };
    if seed.kind == "LOOKALIKE" {
        return refuse(40002, "source_audience_id: cannot be a lookalike audience");
    }
    if seed.ids.len() < 100 {
        return refuse(
            40002,
            "source_audience_id: the source should be no less than 100",
        );
    }
    if !matches!(
        spec["audience_size"].as_str(),
        Some("NARROW" | "BALANCED" | "BROAD")
    ) {
        return refuse(
            40002,
            "audience_size: must be one of NARROW, BALANCED, BROAD",
        );
    }
    if spec["location_ids"].as_array().is_none_or(|l| l.is_empty())
        || !spec["include_source"].is_boolean()
    {
        return refuse(40002, "location_ids and include_source are required");
    }
    let name = body["custom_audience_name"].as_str().unwrap_or("");
    if name.is_empty() || name.chars().count() > 128 {
        return refuse(40002, "custom_audience_name: length must be 1 to 128");
    }
    let id = new_id(st);
    st.audiences.insert(
        id.clone(),
        FakeAudience {
            id: id.clone(),
            advertiser_id: FAKE_ADVERTISER.to_string(),
            name: name.to_string(),
            kind: "LOOKALIKE".to_string(),
            lookalike_spec: Some(spec.clone()),
            ids: HashSet::new(),
        },
    );
    ok(json!({"custom_audience_id": id}))
}
