//! The Graph API's behaviour behind the wire: version, token and `appsecret_proof` checks, then
//! audiences (create, read, delete; lookalikes block their origin's delete), users added and
//! removed, replace sessions (batches, timeout, closing) and invalid entries.

use std::collections::HashSet;
use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::wire::{
    account_of, json_bool, json_param, json_u64, param_str, parse_payload, parse_session,
    usage_header, FakeAnswer, Req,
};
use super::{
    FakeAudience, FakeState, ReplaceState, Shared, FAKE_TOKEN_USER, FAKE_VERSION,
    MIN_SUPPORTED_VERSION,
};

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
    "is_value_based",
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

/// The Graph API's answer to a request.
pub(super) fn process(shared: &Shared, req: &Req) -> FakeAnswer {
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
        ("GET", [account, "customaudiences"]) if account.starts_with("act_") => {
            list_audiences(&mut st, &account[4..], &req.params)
        }
        ("GET", ["me"]) => FakeAnswer::json(200, json!({"id": FAKE_TOKEN_USER})),
        ("GET", [account]) if account.starts_with("act_") => {
            get_ad_account(&mut st, account, &req.params)
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
        is_value_based: false,
        origin_audience_id: None,
        lookalike_spec: None,
        rule: None,
        retention_days: None,
        prefill: params.get("prefill").and_then(json_bool),
        flagged: false,
        created: unix_now(),
    };
    // Meta refuses customer lists until the Custom Audience Terms are accepted.
    if subtype.as_deref() == Some("CUSTOM") && !st.tos_accepted {
        return st.error(
            400,
            200,
            Some(1870090),
            "(#200) You must accept the Custom Audience Terms of Service before creating a \
             customer list custom audience",
        );
    }
    // Value-based lookalikes' seeds: customer lists created with is_value_based=1.
    let value_based = match params.get("is_value_based") {
        None => false,
        Some(v) => match json_bool(v).or_else(|| v.as_u64().filter(|n| *n <= 1).map(|n| n == 1)) {
            Some(b) => b,
            None => return st.invalid("Param is_value_based must be a boolean"),
        },
    };
    if value_based && subtype.as_deref() != Some("CUSTOM") {
        return st.invalid("is_value_based applies only to customer list custom audiences");
    }
    audience.is_value_based = value_based;
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

/// The `fields` a read asks for (`id` alone by default), or the error naming an unknown one.
fn requested_fields(
    st: &mut FakeState,
    params: &Map<String, Value>,
) -> Result<Vec<String>, FakeAnswer> {
    let fields: Vec<String> = match param_str(params, "fields") {
        Some(f) => f
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => vec!["id".to_string()],
    };
    match fields
        .iter()
        .find(|f| !AUDIENCE_FIELDS.contains(&f.as_str()))
    {
        Some(bad) => {
            let bad = bad.clone();
            Err(st.invalid(&format!(
                "Tried accessing nonexisting field ({bad}) on node type (CustomAudience)"
            )))
        }
        None => Ok(fields),
    }
}

fn get_audience(st: &mut FakeState, id: &str, params: &Map<String, Value>) -> FakeAnswer {
    let Some(idx) = st.audience_index(id) else {
        return st.no_object("GET", id);
    };
    match requested_fields(st, params) {
        Ok(fields) => FakeAnswer::json(200, render_audience(st, idx, &fields)),
        Err(answer) => answer,
    }
}

/// Fields of an ad account the fake knows.
const AD_ACCOUNT_FIELDS: &[&str] = &["id", "account_id", "name", "account_status", "tos_accepted"];

/// `GET /act_{id}?fields=…`: any ad account of digits exists; its status and whether the Custom
/// Audience Terms are accepted come from the fake's settings. Like Graph, a field with nothing
/// in it (`tos_accepted` with no terms accepted) is left out of the answer.
fn get_ad_account(st: &mut FakeState, account: &str, params: &Map<String, Value>) -> FakeAnswer {
    let digits = &account[4..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return st.no_object("GET", account);
    }
    let fields: Vec<&str> = param_str(params, "fields")
        .unwrap_or("id")
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    if let Some(bad) = fields.iter().find(|f| !AD_ACCOUNT_FIELDS.contains(f)) {
        let message = format!("Tried accessing nonexisting field ({bad}) on node type (AdAccount)");
        return st.invalid(&message);
    }
    let mut out = Map::new();
    for f in fields {
        let value = match f {
            "id" => json!(account),
            "account_id" => json!(digits),
            "name" => json!(format!("Ad account {digits}")),
            "account_status" => json!(st.account_status),
            _ if st.tos_accepted => json!({"custom_audience_tos": 1}),
            _ => continue,
        };
        out.insert(f.to_string(), value);
    }
    FakeAnswer::json(200, Value::Object(out))
}

/// `GET /act_{id}/customaudiences`: the account's audiences, filtered by name (`EQUAL` or
/// `CONTAIN`) when `filtering` says so; one page.
fn list_audiences(st: &mut FakeState, account: &str, params: &Map<String, Value>) -> FakeAnswer {
    let fields = match requested_fields(st, params) {
        Ok(f) => f,
        Err(answer) => return answer,
    };
    let mut filters = Vec::new();
    if let Some(f) = params.get("filtering") {
        let Some(Value::Array(list)) = json_param(f) else {
            return st.invalid("(#100) param filtering must be an array.");
        };
        for item in list {
            let field = item["field"].as_str().unwrap_or_default();
            let op = item["operator"].as_str().unwrap_or_default();
            let (Some(value), "name", "EQUAL" | "CONTAIN") = (item["value"].as_str(), field, op)
            else {
                return st.invalid(&format!(
                    "(#100) Filtering field {field} with operation {op} is not supported"
                ));
            };
            filters.push((op.to_string(), value.to_string()));
        }
    }
    let matching: Vec<usize> = (0..st.audiences.len())
        .filter(|&i| st.audiences[i].account_id == account)
        .filter(|&i| {
            let name = &st.audiences[i].name;
            filters.iter().all(|(op, v)| match op.as_str() {
                "EQUAL" => name == v,
                _ => name.contains(v.as_str()),
            })
        })
        .collect();
    let data: Vec<Value> = matching
        .into_iter()
        .map(|i| render_audience(st, i, &fields))
        .collect();
    FakeAnswer::json(200, json!({"data": data, "paging": {}}))
}

/// Audience `idx` with `fields`, as Meta reads it.
fn render_audience(st: &mut FakeState, idx: usize, fields: &[String]) -> Value {
    let id = st.audiences[idx].id.clone();
    expire_replace(st, &id);
    let a = st.audiences[idx].clone();
    let n = st.members.get(&id).map_or(0, |m| m.len()) as i64;
    let replacing = st.replaces.contains_key(&id);
    let updated = st.updated.get(&id).copied().unwrap_or(0);
    let mut out = Map::new();
    for f in fields {
        let v = match f.as_str() {
            "id" => json!(a.id),
            "name" => json!(a.name),
            "description" => json!(a.description),
            "subtype" => json!(a.subtype),
            "account_id" => json!(a.account_id),
            "customer_file_source" => json!(a.customer_file_source),
            "is_value_based" => json!(a.is_value_based),
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
            "time_content_updated" => json!(updated),
            "time_created" => json!(a.created),
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
    Value::Object(out)
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

/// Close a replace session that ran past the timeout (later batches get 1870158). What the
/// session received stands: the audience now holds exactly its rows (Meta: "finish with adds").
pub(super) fn expire_replace(st: &mut FakeState, audience_id: &str) {
    let timeout = st.replace_timeout;
    if st
        .replaces
        .get(audience_id)
        .is_some_and(|r| r.started.elapsed() > timeout)
    {
        let r = st.replaces.remove(audience_id).expect("replace state");
        st.members.insert(audience_id.to_string(), r.rows);
        st.closed_sessions
            .insert((format!("timeout:{audience_id}"), r.session_id));
        st.touch(audience_id);
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
    // Meta's value-based lists: the value column on those, and only on those.
    let has_value = payload.schema.iter().any(|k| k == "LOOKALIKE_VALUE");
    if audience.is_value_based && !has_value {
        return st
            .invalid("The schema of a value-based custom audience must include LOOKALIKE_VALUE");
    }
    if !audience.is_value_based && has_value {
        return st.invalid(
            "LOOKALIKE_VALUE can only be used with a value-based custom audience (is_value_based)",
        );
    }
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

/// Meta's `time_created` unit: Unix seconds.
pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl FakeState {
    fn audience_index(&self, id: &str) -> Option<usize> {
        self.audiences.iter().position(|a| a.id == id)
    }

    fn touch(&mut self, id: &str) {
        self.clock += 1;
        let t = self.clock;
        self.updated.insert(id.to_string(), t);
    }
}
