//! The wire: requests parsed as Graph reads them (query string, JSON or form body, Bearer
//! token), payloads and hashes validated, answers and errors in Graph's shape.

use std::collections::HashSet;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{FakeState, RecordedCall, RecordedSession, FAKE_MAX_ROWS};

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

/// An answer: status, body and headers (and the Meta error code, if any, for the recorded call).
pub(super) struct FakeAnswer {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
    pub(super) content_type: &'static str,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) error_code: Option<i64>,
}

impl FakeAnswer {
    pub(super) fn json(status: u16, v: Value) -> Self {
        FakeAnswer {
            status,
            body: serde_json::to_vec(&v).unwrap_or_default(),
            content_type: "application/json; charset=UTF-8",
            headers: Vec::new(),
            error_code: v["error"]["code"].as_i64(),
        }
    }

    pub(super) fn into_response(self) -> Response {
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

/// `X-Business-Use-Case-Usage` for the account, asking to wait `minutes` (0: no throttling).
pub(super) fn usage_header(account: &str, minutes: u64) -> String {
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

/// Errors in Graph's envelope (`error.message`, `type`, `code`, `error_subcode`, `is_transient`,
/// `fbtrace_id`).
impl FakeState {
    fn trace_id(&mut self) -> String {
        self.trace_counter += 1;
        format!("FakeTrace{:06}", self.trace_counter)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn error_full(
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

    pub(super) fn error(
        &mut self,
        status: u16,
        code: i64,
        subcode: Option<i64>,
        message: &str,
    ) -> FakeAnswer {
        let transient = matches!(subcode, Some(1870145 | 1870148));
        self.error_full(status, code, subcode, message, None, None, transient)
    }

    pub(super) fn invalid(&mut self, message: &str) -> FakeAnswer {
        self.error(400, 100, None, &format!("(#100) {message}"))
    }

    pub(super) fn no_object(&mut self, method: &str, id: &str) -> FakeAnswer {
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
}

/// The parsed request.
pub(super) struct Req {
    pub(super) method: String,
    pub(super) path: String,
    /// Path without the version segment.
    pub(super) rest: String,
    pub(super) version: Option<u32>,
    pub(super) query: String,
    pub(super) params: Map<String, Value>,
    pub(super) query_keys: Vec<String>,
    pub(super) bearer: Option<String>,
    pub(super) body_error: Option<String>,
}

/// The request as [`FakeMeta::calls`](super::FakeMeta::calls) shows it, before it is answered.
pub(super) fn recorded_call(req: &Req) -> RecordedCall {
    let payload_shape = peek_payload(&req.params);
    RecordedCall {
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
    }
}

pub(super) fn account_of(rest: &str) -> String {
    rest.trim_start_matches('/')
        .split('/')
        .next()
        .and_then(|s| s.strip_prefix("act_"))
        .unwrap_or("")
        .to_string()
}

pub(super) fn parse_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Req {
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
pub(super) fn json_param(v: &Value) -> Option<Value> {
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

pub(super) fn json_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn json_bool(v: &Value) -> Option<bool> {
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

pub(super) fn param_str<'a>(params: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    params.get(key).and_then(|v| v.as_str())
}

pub(super) struct Payload {
    pub(super) schema: Vec<String>,
    pub(super) rows: Vec<Vec<String>>,
}

pub(super) fn parse_payload(params: &Map<String, Value>) -> Result<Payload, String> {
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
                // Not hashed: a number, integer or float, at least 0.
                Value::Number(n)
                    if key == "LOOKALIKE_VALUE" && n.as_f64().is_some_and(|v| v >= 0.0) =>
                {
                    n.to_string()
                }
                _ if key == "LOOKALIKE_VALUE" => {
                    return Err(format!(
                        "payload.data[{i}] LOOKALIKE_VALUE: must be a non-negative number (integer \
                         or float), not hashed"
                    ))
                }
                Value::String(s) => s.clone(),
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

pub(super) fn parse_session(
    params: &Map<String, Value>,
) -> Result<Option<RecordedSession>, String> {
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
