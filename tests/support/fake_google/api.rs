//! The Data Manager API's behaviour as the fake serves it, and every check it makes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, Uri};
use serde_json::{json, Map, Value};

use super::{
    FakeList, GoogleCall, GoogleFault, Shared, FAKE_CLIENT_ID, FAKE_CLIENT_SECRET,
    FAKE_REFRESH_TOKEN,
};

pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Value,
}

/// A refusal, in Google's shape: `{"error": {code, message, status, details: [ErrorInfo,
/// RequestInfo]}}`.
fn error(status: u16, grpc: &str, reason: &str, message: &str) -> Answer {
    Answer {
        status,
        body: json!({"error": {
            "code": status,
            "message": message,
            "status": grpc,
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                 "domain": "datamanager.googleapis.com"},
                {"@type": "type.googleapis.com/google.rpc.RequestInfo",
                 "requestId": format!("fake-{}", uuid::Uuid::new_v4().simple())},
            ]
        }}),
    }
}

fn invalid(reason: &str, message: &str) -> Answer {
    error(400, "INVALID_ARGUMENT", reason, message)
}

fn ok(body: Value) -> Answer {
    Answer { status: 200, body }
}

pub(super) fn process(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    let path = uri.path().to_string();
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let bearer =
        header("authorization").and_then(|h| h.strip_prefix("Bearer ").map(str::to_string));
    let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut st = shared.lock();
    let authorized = bearer.as_deref().is_some_and(|t| {
        shared.static_token.as_deref() == Some(t)
            || st
                .issued
                .get(t)
                .is_some_and(|until| Instant::now() < *until)
    });
    let members = json_body["audienceMembers"].as_array().map_or(0, Vec::len);
    st.calls.push(GoogleCall {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or_default().to_string(),
        login_account: header("login-account"),
        authorized,
        body: if path == "/token" {
            Value::Null
        } else {
            json_body.clone()
        },
        members,
        status: 0,
        reason: None,
    });
    let index = st.calls.len() - 1;
    let answer = if path == "/token" {
        token(&mut st, method, body)
    } else if let Some(fault) = take_fault(&mut st.faults, method.as_str(), &path) {
        if fault == GoogleFault::AppliedThenUnavailable && authorized {
            let query = uri.query().unwrap_or_default();
            route(
                &mut st,
                method,
                &path,
                query,
                header("login-account"),
                body,
                json_body,
            );
        }
        fault_answer(fault, st.retry_delay)
    } else if !authorized {
        error(
            401,
            "UNAUTHENTICATED",
            "ACCESS_TOKEN_EXPIRED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential.",
        )
    } else {
        route(
            &mut st,
            method,
            &path,
            uri.query().unwrap_or_default(),
            header("login-account"),
            body,
            json_body,
        )
    };
    let call = &mut st.calls[index];
    call.status = answer.status;
    call.reason = answer.body["error"]["details"][0]["reason"]
        .as_str()
        .map(str::to_string);
    answer
}

fn take_fault(faults: &mut Vec<super::FaultRule>, method: &str, path: &str) -> Option<GoogleFault> {
    let i = faults.iter().position(|f| {
        f.remaining > 0 && f.method.eq_ignore_ascii_case(method) && path.ends_with(&f.path_suffix)
    })?;
    faults[i].remaining -= 1;
    let fault = faults[i].fault;
    if faults[i].remaining == 0 {
        faults.remove(i);
    }
    Some(fault)
}

fn fault_answer(fault: GoogleFault, retry_delay: Option<Duration>) -> Answer {
    match fault {
        GoogleFault::RateLimited => rate_limited(retry_delay),
        GoogleFault::Unavailable | GoogleFault::AppliedThenUnavailable => error(
            503,
            "UNAVAILABLE",
            "SERVICE_UNAVAILABLE",
            "The service is currently unavailable.",
        ),
        GoogleFault::Internal => error(
            500,
            "INTERNAL",
            "INTERNAL_ERROR",
            "Internal error encountered.",
        ),
        GoogleFault::Unauthenticated => error(
            401,
            "UNAUTHENTICATED",
            "ACCESS_TOKEN_EXPIRED",
            "Request had invalid authentication credentials.",
        ),
    }
}

fn rate_limited(retry_delay: Option<Duration>) -> Answer {
    let mut answer = error(
        429,
        "RESOURCE_EXHAUSTED",
        "RATE_LIMIT_EXCEEDED",
        "Quota exceeded for quota metric 'Ingestion requests' and limit 'Ingestion requests per minute'.",
    );
    if let (Some(d), Some(details)) = (retry_delay, answer.body["error"]["details"].as_array_mut())
    {
        details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": format!("{}s", d.as_secs())}));
    }
    answer
}

/// `POST /token`, `grant_type=refresh_token`: a new access token (counted).
fn token(st: &mut super::FakeState, method: &Method, body: &[u8]) -> Answer {
    if method != Method::POST {
        return Answer {
            status: 405,
            body: json!({"error": "invalid_request"}),
        };
    }
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str);
    if get("grant_type") != Some("refresh_token") {
        return Answer {
            status: 400,
            body: json!({"error": "unsupported_grant_type"}),
        };
    }
    if get("client_id") != Some(FAKE_CLIENT_ID) || get("client_secret") != Some(FAKE_CLIENT_SECRET)
    {
        return Answer {
            status: 401,
            body: json!({"error": "invalid_client", "error_description": "Unauthorized"}),
        };
    }
    if get("refresh_token") != Some(FAKE_REFRESH_TOKEN) {
        return Answer {
            status: 400,
            body: json!({"error": "invalid_grant", "error_description": "Bad Request"}),
        };
    }
    st.refreshes += 1;
    st.counter += 1;
    let token = format!(
        "ya29.fake-issued-{}-{}",
        st.counter,
        uuid::Uuid::new_v4().simple()
    );
    let lifetime = st.token_lifetime;
    st.issued.insert(token.clone(), Instant::now() + lifetime);
    ok(json!({
        "access_token": token,
        "expires_in": lifetime.as_secs(),
        "scope": "https://www.googleapis.com/auth/datamanager",
        "token_type": "Bearer",
    }))
}

fn route(
    st: &mut super::FakeState,
    method: &Method,
    path: &str,
    query: &str,
    login: Option<String>,
    raw: &[u8],
    body: Value,
) -> Answer {
    let Some(rest) = path.strip_prefix("/v1") else {
        return error(
            404,
            "NOT_FOUND",
            "NOT_FOUND",
            "The requested URL was not found.",
        );
    };
    if rest == "/audienceMembers:ingest" || rest == "/audienceMembers:remove" {
        if method != Method::POST {
            return error(
                405,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
                "Method not allowed.",
            );
        }
        if !quota_left(st) {
            return rate_limited(st.retry_delay);
        }
        if body.is_null() && !raw.is_empty() {
            return invalid("INVALID_ARGUMENT", "Invalid JSON payload received.");
        }
        return members(st, rest.ends_with(":ingest"), &body);
    }
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let ["accountTypes", "GOOGLE_ADS", "accounts", account, "userLists", tail @ ..] =
        parts.as_slice()
    else {
        return error(
            404,
            "NOT_FOUND",
            "NOT_FOUND",
            "The requested URL was not found.",
        );
    };
    if !is_digits(account) {
        return invalid("INVALID_ARGUMENT", "The account id must be digits.");
    }
    if let Some(l) = &login {
        let ok = l
            .strip_prefix("accountTypes/GOOGLE_ADS/accounts/")
            .is_some_and(is_digits);
        if !ok {
            return invalid(
                "INVALID_ARGUMENT",
                "The login-account header must be accountTypes/GOOGLE_ADS/accounts/{id}.",
            );
        }
    }
    match (method.as_str(), tail) {
        ("POST", []) => create_list(st, account, &body),
        ("GET", []) => list_lists(st, account, query),
        ("GET", [id]) => match live_list(st, account, id) {
            Some(l) => ok(list_json(l)),
            None => list_not_found(),
        },
        ("DELETE", [id]) => match st
            .lists
            .iter_mut()
            .find(|l| l.account == *account && l.id == *id && !l.deleted)
        {
            Some(l) => {
                l.deleted = true;
                ok(json!({}))
            }
            None => list_not_found(),
        },
        _ => error(
            404,
            "NOT_FOUND",
            "NOT_FOUND",
            "The requested URL was not found.",
        ),
    }
}

fn quota_left(st: &mut super::FakeState) -> bool {
    let now = Instant::now();
    while st
        .recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        st.recent.pop_front();
    }
    if st.recent.len() >= st.per_minute {
        return false;
    }
    st.recent.push_back(now);
    true
}

fn list_not_found() -> Answer {
    error(
        404,
        "NOT_FOUND",
        "NOT_FOUND",
        "Requested entity was not found.",
    )
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn live_list<'a>(st: &'a super::FakeState, account: &str, id: &str) -> Option<&'a FakeList> {
    st.lists
        .iter()
        .find(|l| l.account == account && l.id == id && !l.deleted)
}

fn list_json(l: &FakeList) -> Value {
    let n = l.members.len().to_string();
    json!({
        "name": format!("accountTypes/GOOGLE_ADS/accounts/{}/userLists/{}", l.account, l.id),
        "id": l.id,
        "readOnly": false,
        "displayName": l.display_name,
        "description": l.description,
        "membershipStatus": "OPEN",
        "membershipDuration": l.membership_duration,
        "accessReason": "OWNED",
        "accountAccessStatus": "ENABLED",
        "sizeInfo": {"displayNetworkMembersCount": n, "searchNetworkMembersCount": n},
        "targetNetworkInfo": {"eligibleForDisplay": l.members.len() >= 100, "eligibleForSearch": l.members.len() >= 100},
        "ingestedUserListInfo": {
            "uploadKeyTypes": l.upload_key_types,
            "contactIdInfo": {"dataSourceType": "DATA_SOURCE_TYPE_FIRST_PARTY",
                              "matchRatePercentage": if l.members.is_empty() { 0 } else { 62 }}
        }
    })
}

fn unknown_fields(body: &Value, allowed: &[&str]) -> Option<Answer> {
    let obj = body.as_object()?;
    obj.keys()
        .find(|k| !allowed.contains(&k.as_str()))
        .map(|k| {
            invalid(
                "INVALID_ARGUMENT",
                &format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."),
            )
        })
}

fn create_list(st: &mut super::FakeState, account: &str, body: &Value) -> Answer {
    if let Some(a) = unknown_fields(
        body,
        &[
            "displayName",
            "description",
            "membershipStatus",
            "membershipDuration",
            "integrationCode",
            "ingestedUserListInfo",
        ],
    ) {
        return a;
    }
    let name = body["displayName"].as_str().unwrap_or_default();
    if name.trim().is_empty() {
        return invalid("REQUIRED_FIELD_MISSING", "displayName is required.");
    }
    if st
        .lists
        .iter()
        .any(|l| l.account == account && !l.deleted && l.display_name == name)
    {
        return invalid(
            "DISPLAY_NAME_ALREADY_USED",
            "The display name is already used by another list.",
        );
    }
    let duration = body["membershipDuration"].as_str().unwrap_or("46656000s");
    let Some(secs) = duration
        .strip_suffix('s')
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return invalid(
            "INVALID_ARGUMENT",
            "membershipDuration must be a duration in seconds.",
        );
    };
    if secs % 86_400 != 0 {
        return invalid(
            "INVALID_ARGUMENT",
            "membershipDuration must be a whole number of days.",
        );
    }
    if secs > 540 * 86_400 {
        return invalid(
            "MEMBERSHIP_DURATION_TOO_LONG",
            "membershipDuration is longer than 540 days.",
        );
    }
    let keys: Vec<String> = body["ingestedUserListInfo"]["uploadKeyTypes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if keys.len() != 1 {
        return invalid(
            "INVALID_ARGUMENT",
            "uploadKeyTypes must contain exactly one entry.",
        );
    }
    let id = st.next_id.to_string();
    st.next_id += 1;
    let list = FakeList {
        id,
        account: account.to_string(),
        display_name: name.to_string(),
        description: body["description"].as_str().unwrap_or_default().to_string(),
        membership_duration: format!("{secs}s"),
        upload_key_types: keys,
        members: HashSet::new(),
        deleted: false,
    };
    let answer = list_json(&list);
    st.lists.push(list);
    ok(answer)
}

fn list_lists(st: &super::FakeState, account: &str, query: &str) -> Answer {
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
    let size = params
        .get("pageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let start = params
        .get("pageToken")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let lists: Vec<&FakeList> = st
        .lists
        .iter()
        .filter(|l| l.account == account && !l.deleted)
        .collect();
    let page: Vec<Value> = lists
        .iter()
        .skip(start)
        .take(size)
        .map(|l| list_json(l))
        .collect();
    let mut body = json!({"userLists": page});
    if start + size < lists.len() {
        body["nextPageToken"] = json!((start + size).to_string());
    }
    ok(body)
}

/// `audienceMembers:ingest` / `:remove`: every check first (one bad record fails all), then
/// the identifiers added to or removed from each destination list.
fn members(st: &mut super::FakeState, ingest: bool, body: &Value) -> Answer {
    let allowed: &[&str] = if ingest {
        &[
            "destinations",
            "audienceMembers",
            "consent",
            "termsOfService",
            "encoding",
            "validateOnly",
            "encryptionInfo",
        ]
    } else {
        // No consent and no terms of service on RemoveAudienceMembersRequest.
        &[
            "destinations",
            "audienceMembers",
            "encoding",
            "validateOnly",
            "encryptionInfo",
        ]
    };
    if !body.is_object() {
        return invalid("INVALID_ARGUMENT", "Invalid JSON payload received.");
    }
    if let Some(a) = unknown_fields(body, allowed) {
        return a;
    }
    let lists = match destinations(st, body) {
        Ok(l) => l,
        Err(a) => return a,
    };
    let members = body["audienceMembers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if members.is_empty() {
        return invalid("REQUIRED_FIELD_MISSING", "audienceMembers is required.");
    }
    if members.len() > 10_000 {
        return invalid(
            "TOO_MANY_AUDIENCE_MEMBERS",
            "Too many audience members in the request (at most 10000).",
        );
    }
    let encoding = body["encoding"].as_str();
    match encoding {
        None => {
            return invalid(
                "REQUIRED_FIELD_MISSING",
                "encoding is required for UserData.",
            )
        }
        Some("HEX") | Some("BASE64") => {}
        Some(_) => return invalid("INVALID_ARGUMENT", "Invalid value for encoding."),
    }
    if ingest {
        if body["termsOfService"]["customerMatchTermsOfServiceStatus"] != "ACCEPTED" {
            return invalid(
                "TERMS_AND_CONDITIONS_NOT_SIGNED",
                "The Customer Match terms of service must be accepted.",
            );
        }
        for key in ["adUserData", "adPersonalization"] {
            let v = &body["consent"][key];
            if !v.is_null()
                && !matches!(
                    v.as_str(),
                    Some("CONSENT_GRANTED" | "CONSENT_DENIED" | "CONSENT_STATUS_UNSPECIFIED")
                )
            {
                return invalid(
                    "INVALID_ARGUMENT",
                    &format!("Invalid value at 'consent.{key}'."),
                );
            }
        }
    }
    let mut keys = Vec::new();
    for (i, m) in members.iter().enumerate() {
        match member_keys(m, encoding == Some("HEX")) {
            Ok(k) => keys.extend(k),
            Err((reason, what)) => {
                return invalid(reason, &format!("audience_members[{i}]: {what}"));
            }
        }
    }
    if body["validateOnly"] != true {
        for l in st.lists.iter_mut().filter(|l| lists.contains(&l.id)) {
            for k in &keys {
                if ingest {
                    l.members.insert(k.clone());
                } else {
                    l.members.remove(k);
                }
            }
        }
    }
    st.counter += 1;
    ok(json!({"requestId": format!("fake-request-{}", st.counter)}))
}

/// The lists the request's destinations name (each must exist in its operating account).
fn destinations(st: &super::FakeState, body: &Value) -> Result<Vec<String>, Answer> {
    let ds = body["destinations"].as_array().cloned().unwrap_or_default();
    if ds.is_empty() {
        return Err(invalid(
            "REQUIRED_FIELD_MISSING",
            "destinations is required.",
        ));
    }
    if ds.len() > 10 {
        return Err(invalid(
            "TOO_MANY_DESTINATIONS",
            "Too many destinations (at most 10).",
        ));
    }
    let mut ids = Vec::new();
    for d in &ds {
        if let Some(a) = unknown_fields(
            d,
            &[
                "reference",
                "operatingAccount",
                "loginAccount",
                "linkedAccount",
                "productDestinationId",
            ],
        ) {
            return Err(a);
        }
        let account_ok = |a: &Value| {
            a["accountType"] == "GOOGLE_ADS" && a["accountId"].as_str().is_some_and(is_digits)
        };
        if !account_ok(&d["operatingAccount"]) {
            return Err(invalid(
                "INVALID_DESTINATION",
                "operatingAccount must be a GOOGLE_ADS account id.",
            ));
        }
        if !d["loginAccount"].is_null() && !account_ok(&d["loginAccount"]) {
            return Err(invalid(
                "INVALID_DESTINATION",
                "loginAccount must be a GOOGLE_ADS account id.",
            ));
        }
        let account = d["operatingAccount"]["accountId"]
            .as_str()
            .unwrap_or_default();
        let id = d["productDestinationId"].as_str().unwrap_or_default();
        if live_list(st, account, id).is_none() {
            return Err(invalid(
                "INVALID_USER_LIST_ID",
                "The user list does not exist in the operating account.",
            ));
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

type Refusal = (&'static str, &'static str);

/// A member's identifier keys, or why Google refuses it.
fn member_keys(m: &Value, hex: bool) -> Result<Vec<String>, Refusal> {
    let Some(obj) = m.as_object() else {
        return Err(("INVALID_AUDIENCE_MEMBER", "not an object"));
    };
    let data: Vec<&String> = obj
        .keys()
        .filter(|k| *k != "consent" && *k != "destinationReferences")
        .collect();
    if data.len() != 1 || data[0] != "userData" {
        return Err((
            "INVALID_AUDIENCE_MEMBER",
            "exactly one data type, userData, is supported here",
        ));
    }
    let ids = m["userData"]["userIdentifiers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(("REQUIRED_FIELD_MISSING", "userIdentifiers is required"));
    }
    if ids.len() > 10 {
        return Err(("TOO_MANY_USER_IDENTIFIERS", "more than 10 user identifiers"));
    }
    let hashed = |v: &Value| -> Result<String, Refusal> {
        let s = v.as_str().unwrap_or_default();
        let ok = if hex {
            s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
        } else {
            s.len() == 44
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        };
        if ok {
            Ok(s.to_ascii_lowercase())
        } else if hex && !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Err(("INVALID_HEX_ENCODING", "a value that is not hex"))
        } else {
            Err((
                "INVALID_SHA256_FORMAT",
                "a value that is not a SHA-256 digest",
            ))
        }
    };
    let mut keys = Vec::new();
    for id in &ids {
        let Some(o) = id.as_object().filter(|o| o.len() == 1) else {
            return Err((
                "INVALID_ARGUMENT",
                "a user identifier must set exactly one of emailAddress, phoneNumber, address",
            ));
        };
        let (k, v) = o.iter().next().expect("one entry");
        keys.push(match k.as_str() {
            "emailAddress" => format!("email:{}", hashed(v)?),
            "phoneNumber" => format!("phone:{}", hashed(v)?),
            "address" => address_key(v, &hashed)?,
            _ => return Err(("INVALID_ARGUMENT", "unknown user identifier")),
        });
    }
    Ok(keys)
}

fn address_key(
    v: &Value,
    hashed: &dyn Fn(&Value) -> Result<String, Refusal>,
) -> Result<String, Refusal> {
    let fields: &Map<String, Value> = v
        .as_object()
        .ok_or(("INVALID_ARGUMENT", "address must be an object"))?;
    if fields
        .keys()
        .any(|k| !["givenName", "familyName", "regionCode", "postalCode"].contains(&k.as_str()))
    {
        return Err(("INVALID_ARGUMENT", "unknown address field"));
    }
    let region = v["regionCode"].as_str().unwrap_or_default();
    let postal = v["postalCode"].as_str().unwrap_or_default();
    if v["givenName"].is_null()
        || v["familyName"].is_null()
        || region.is_empty()
        || postal.is_empty()
    {
        return Err((
            "REQUIRED_FIELD_MISSING",
            "an address needs givenName, familyName, regionCode and postalCode",
        ));
    }
    if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err((
            "INVALID_FORMAT",
            "regionCode must be an ISO 3166-1 alpha-2 code",
        ));
    }
    if postal.trim() != postal {
        return Err(("INVALID_POSTAL_CODE", "postalCode is not trimmed"));
    }
    Ok(format!(
        "address:{}|{}|{region}|{postal}",
        hashed(&v["givenName"])?,
        hashed(&v["familyName"])?
    ))
}
