//! `openapi.yaml` is kept true: its operations are exactly the routes the code declares, the
//! real server serves each of them and answers 405 to every other method, and the answers of
//! real requests match the schemas the spec gives for their status.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, TestApp};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("openapi.yaml at the repository root");
    serde_yaml_ng::from_str(&text).expect("openapi.yaml is YAML")
}

/// (method, path) of every operation of the spec.
fn spec_operations(spec: &Value) -> BTreeSet<(String, String)> {
    let paths = spec["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .filter(|k| METHODS.contains(&k.to_uppercase().as_str()))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect()
}

/// (method, path) of every `.route(path, method(handler)…)` in src/http: the router is built
/// from these alone, and axum keeps no list to ask it for.
fn declared_routes() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("src/http") {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (start, _) in source.match_indices(".route(") {
            let call = balanced(&source[start + ".route".len()..]);
            let path = call.split('"').nth(1).expect("a route's path literal");
            let handlers = &call[call.find(',').expect("a route's handlers")..];
            for method in METHODS {
                let name = method.to_lowercase();
                let called = handlers
                    .match_indices(&format!("{name}("))
                    .any(|(i, _)| i == 0 || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric());
                if called {
                    routes.insert((method.to_string(), path.to_string()));
                }
            }
        }
    }
    routes
}

/// The parenthesized text `text` starts with.
fn balanced(text: &str) -> &str {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..=i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced route call: {text}")
}

#[test]
fn the_spec_has_exactly_the_routes_the_code_declares() {
    let declared = declared_routes();
    for known in [
        ("GET", "/api/audiences"),
        ("POST", "/api/audiences/sync"),
        ("DELETE", "/api/persons/{id}"),
        ("POST", "/api/segments/{id}/refresh"),
    ] {
        assert!(
            declared.contains(&(known.0.to_string(), known.1.to_string())),
            "the route scan misses {known:?}: {declared:?}"
        );
    }
    assert!(declared.len() >= 16, "{declared:?}");
    let documented = spec_operations(&spec());
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&declared).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "routes missing from openapi.yaml: {undocumented:?}; in openapi.yaml but not in src/http: {unserved:?}"
    );
}

async fn send(
    t: &TestApp,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", t.base));
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, headers, json)
}

fn is_no_route(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::NOT_FOUND && body["error"]["message"] == "no such route"
}

#[tokio::test]
async fn the_server_serves_every_spec_operation_and_refuses_other_methods_with_405() {
    let t = spawn_app().await;
    let spec = spec();
    // The fallback the checks below tell apart from a served route.
    let (status, _, body) = send(&t, "GET", "/api/not-a-route", None).await;
    assert!(is_no_route(status, &body), "{status} {body}");

    let operations = spec_operations(&spec);
    let paths: BTreeSet<&String> = operations.iter().map(|(_, p)| p).collect();
    for path in paths {
        let real = path.replace("{id}", &Uuid::new_v4().to_string());
        let documented: BTreeSet<&str> = METHODS
            .into_iter()
            .filter(|m| operations.contains(&(m.to_string(), path.clone())))
            .collect();
        for method in METHODS {
            let body = matches!(method, "POST" | "PUT" | "PATCH").then(|| json!({}));
            let (status, headers, answer) = send(&t, method, &real, body.as_ref()).await;
            if documented.contains(method) {
                assert!(
                    status != StatusCode::METHOD_NOT_ALLOWED && !is_no_route(status, &answer),
                    "{method} {path} is in openapi.yaml but not served: {status} {answer}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not in openapi.yaml but answered {answer}"
                );
                assert_eq!(answer["error"]["code"], "method_not_allowed");
                let allow: BTreeSet<&str> = headers["allow"]
                    .to_str()
                    .unwrap()
                    .split(',')
                    .map(str::trim)
                    .filter(|m| *m != "HEAD")
                    .collect();
                assert_eq!(allow, documented, "Allow of {path}");
            }
        }
    }
}

/// Checks `value` against a JSON Schema of the spec: the keywords openapi.yaml uses (`$ref`,
/// `type`, `enum`, `const`, `oneOf`, `anyOf`, `required`, `properties`,
/// `additionalProperties: false`, `items`, `minItems`, `maxItems`, `minLength`, `maxLength`,
/// `minimum`, `maximum`, and the formats `uuid`, `date-time`, `date`).
fn validate(spec: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let fail = |why: String| Err(format!("{at}: {why} (value {value})"));
    if let Some(Value::String(r)) = schema.get("$ref") {
        let target = spec
            .pointer(r.trim_start_matches('#'))
            .ok_or_else(|| format!("{at}: no {r} in the spec"))?;
        validate(spec, target, value, at)?;
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = |t: &&str| match *t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_i64() || value.is_u64(),
            _ => false,
        };
        if !types.iter().any(fits) {
            return fail(format!("not of type {types:?}"));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            return fail(format!("not one of {allowed:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            return fail(format!("not {c}"));
        }
    }
    for (keyword, wanted) in [("oneOf", 1..=1), ("anyOf", 1..=usize::MAX)] {
        if let Some(Value::Array(options)) = schema.get(keyword) {
            let errors: Vec<String> = options
                .iter()
                .filter_map(|o| validate(spec, o, value, at).err())
                .collect();
            if !wanted.contains(&(options.len() - errors.len())) {
                return fail(format!("{keyword}: {errors:?}"));
            }
        }
    }
    if let Value::Object(object) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema["required"].as_array().into_iter().flatten() {
            if !object.contains_key(name.as_str().unwrap()) {
                return fail(format!("required {name} is missing"));
            }
        }
        for (key, item) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(s) => validate(spec, s, item, &format!("{at}.{key}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return fail(format!("{key} is not in the schema"))
                }
                None => {}
            }
        }
    }
    if let Value::Array(items) = value {
        let n = items.len() as u64;
        if schema["minItems"].as_u64().is_some_and(|min| n < min)
            || schema["maxItems"].as_u64().is_some_and(|max| n > max)
        {
            return fail(format!("{n} items"));
        }
        if let Some(s) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(spec, s, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Value::String(text) = value {
        let n = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| n < min)
            || schema["maxLength"].as_u64().is_some_and(|max| n > max)
        {
            return fail(format!("{n} characters"));
        }
        let formatted = match schema["format"].as_str() {
            Some("uuid") => Uuid::parse_str(text).is_ok(),
            Some("date-time") => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            Some("date") => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
            _ => true,
        };
        if !formatted {
            return fail(format!("not a {}", schema["format"]));
        }
    }
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min)
            || schema["maximum"].as_f64().is_some_and(|max| n > max)
        {
            return fail("out of range".into());
        }
    }
    Ok(())
}

/// Sends a request and checks its answer against what openapi.yaml says of `spec_path` (the
/// path as written there), `method` and the status it got: the status must be documented, and
/// the body must match the schema given for it (no body when none is given).
struct Checker<'a> {
    t: &'a TestApp,
    spec: Value,
}

impl Checker<'_> {
    async fn call(
        &self,
        method: &str,
        spec_path: &str,
        path: &str,
        body: Option<&Value>,
        want: u16,
    ) -> Value {
        let (status, _, answer) = send(self.t, method, path, body).await;
        assert_eq!(status.as_u16(), want, "{method} {path}: {answer}");
        self.conforms(method, spec_path, status, &answer);
        answer
    }

    fn conforms(&self, method: &str, spec_path: &str, status: StatusCode, answer: &Value) {
        let path = spec_path.replace('~', "~0").replace('/', "~1");
        let pointer = format!(
            "/paths/{path}/{}/responses/{}",
            method.to_lowercase(),
            status.as_u16()
        );
        let mut response = self
            .spec
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("{status} of {method} {spec_path} is not in openapi.yaml"));
        if let Some(r) = response.get("$ref").and_then(Value::as_str) {
            response = self.spec.pointer(r.trim_start_matches('#')).unwrap();
        }
        match response.pointer("/content/application~1json/schema") {
            Some(schema) => {
                let at = format!("{method} {spec_path} {status}");
                validate(&self.spec, schema, answer, &at).unwrap_or_else(|e| panic!("{e}"));
            }
            None => assert!(
                answer.is_null(),
                "{method} {spec_path}: no body is documented"
            ),
        }
    }
}

#[test]
fn the_schema_check_catches_what_it_should() {
    let spec = spec();
    let audience = json!({"$ref": "#/components/schemas/Audience"});
    let error = json!({"$ref": "#/components/schemas/Error"});
    let ok = json!({"error": {"code": "not_found", "message": "no such route"}});
    assert_eq!(validate(&spec, &error, &ok, "ok"), Ok(()));
    for bad in [
        json!({"error": {"code": "not_found"}}),
        json!({"error": {"code": "not_found", "message": "x", "extra": 1}}),
        json!({"error": {"code": 7, "message": "x"}}),
        json!({"error": {"code": "x", "message": ""}}),
        json!([]),
    ] {
        assert!(validate(&spec, &error, &bad, "bad").is_err(), "{bad}");
    }
    assert!(validate(&spec, &audience, &json!({"id": "x"}), "a").is_err());
    let page = json!({"$ref": "#/components/schemas/SegmentPage"});
    assert!(validate(&spec, &page, &json!({"segments": []}), "p").is_err());
    assert!(validate(
        &spec,
        &page,
        &json!({"segments": [], "next_cursor": 1}),
        "p"
    )
    .is_err());
    assert_eq!(
        validate(
            &spec,
            &page,
            &json!({"segments": [], "next_cursor": null}),
            "p"
        ),
        Ok(())
    );
}

#[tokio::test]
async fn real_answers_match_the_spec_for_their_status() {
    let t = spawn_app().await;
    let c = Checker {
        t: &t,
        spec: spec(),
    };

    // People, a segment with a rule, and its preview.
    let persons = json!({"persons": [
        {"external_id": "u1", "email": "ann@example.com", "country": "us", "attributes": {"renders": 7}},
        {"external_id": "u2", "phone": "(650) 555-0123", "country": "US", "date_of_birth": "1990-02-03",
         "attributes": {"renders": 9}},
        {"external_id": "u3", "email": "not an email", "attributes": {"renders": 1}},
    ]});
    let result = c
        .call("POST", "/api/persons", "/api/persons", Some(&persons), 200)
        .await;
    assert_eq!(result["upserted"], 2);
    let rule = json!({"type": "and", "rules": [
        {"type": "condition", "attribute": "renders", "operator": ">=", "value": 5},
        {"type": "not", "rule": {"type": "condition", "attribute": "email", "operator": "not_exists"}}]});
    let segment = c
        .call(
            "POST",
            "/api/segments",
            "/api/segments",
            Some(&json!({"name": "Engaged", "rule": rule})),
            201,
        )
        .await;
    let seg_id = segment["id"].as_str().unwrap().to_string();
    let seg_path = format!("/api/segments/{seg_id}");
    c.call(
        "POST",
        "/api/segments/preview",
        "/api/segments/preview",
        Some(&json!({ "rule": rule })),
        200,
    )
    .await;
    c.call(
        "POST",
        "/api/segments",
        "/api/segments",
        Some(&json!({"name": "Manual", "description": "by SQL"})),
        201,
    )
    .await;
    let page = c
        .call("GET", "/api/segments", "/api/segments?limit=1", None, 200)
        .await;
    assert!(page["next_cursor"].is_string(), "{page}");
    c.call(
        "PUT",
        "/api/segments/{id}",
        &seg_path,
        Some(&json!({"description": null})),
        200,
    )
    .await;
    c.call(
        "POST",
        "/api/segments/{id}/refresh",
        &format!("{seg_path}/refresh"),
        None,
        200,
    )
    .await;

    // Audiences of each type, a sync of one and of all, the detail with everything included.
    let audience = c
        .call(
            "POST",
            "/api/audiences",
            "/api/audiences",
            Some(&json!({"name": "List", "segment_id": seg_id, "auto_sync": true})),
            201,
        )
        .await;
    let id = audience["id"].as_str().unwrap().to_string();
    let path = format!("/api/audiences/{id}");
    for body in [
        json!({"name": "Lookalike", "audience_type": "lookalike", "segment_id": seg_id,
               "lookalike_country": "us", "lookalike_percentage": 3}),
        json!({"name": "Pixel", "audience_type": "engagement",
               "rule": {"pixel_id": "123", "event": "ViewContent", "retention_days": 30}}),
    ] {
        c.call("POST", "/api/audiences", "/api/audiences", Some(&body), 201)
            .await;
    }
    let synced = c
        .call(
            "POST",
            "/api/audiences/sync",
            "/api/audiences/sync",
            Some(&json!({"audience_id": id, "sync_type": "full"})),
            200,
        )
        .await;
    assert_eq!(synced["status"], "completed", "{synced}");
    let dry = c
        .call(
            "POST",
            "/api/audiences/sync",
            "/api/audiences/sync",
            Some(&json!({"audience_id": id, "sync_type": "full", "dry_run": true})),
            200,
        )
        .await;
    assert_eq!(dry["dry_run"], true, "{dry}");
    let all = c
        .call(
            "POST",
            "/api/audiences/sync",
            "/api/audiences/sync",
            None,
            200,
        )
        .await;
    assert_eq!(all["total_audiences"], 3, "{all}");
    let detail = c
        .call(
            "GET",
            "/api/audiences/{id}",
            &format!("{path}?include=members,metrics,sync_logs"),
            None,
            200,
        )
        .await;
    assert!(
        !detail["members"].as_array().unwrap().is_empty(),
        "{detail}"
    );
    assert!(
        !detail["sync_logs"].as_array().unwrap().is_empty(),
        "{detail}"
    );
    let page = c
        .call(
            "GET",
            "/api/audiences",
            "/api/audiences?is_active=true&limit=2",
            None,
            200,
        )
        .await;
    let next = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let last = c
        .call(
            "GET",
            "/api/audiences",
            &format!("/api/audiences?is_active=true&limit=2&cursor={next}"),
            None,
            200,
        )
        .await;
    assert!(last["next_cursor"].is_null(), "{last}");
    c.call(
        "PUT",
        "/api/audiences/{id}",
        &path,
        Some(&json!({"sync_interval_hours": 12})),
        200,
    )
    .await;
    // Its history (two points: its own sync and sync-all's) and the service's health.
    let history = c
        .call(
            "GET",
            "/api/audiences/{id}/history",
            &format!("{path}/history?limit=10"),
            None,
            200,
        )
        .await;
    assert_eq!(history["history"].as_array().unwrap().len(), 2, "{history}");
    let health = c.call("GET", "/api/health", "/api/health", None, 200).await;
    assert_eq!(health["status"], "ok", "{health}");

    // The errors: each status as the spec documents it.
    let unknown = format!("/api/audiences/{}", Uuid::new_v4());
    c.call("GET", "/api/audiences/{id}", &unknown, None, 404)
        .await;
    c.call(
        "GET",
        "/api/audiences/{id}",
        "/api/audiences/nope",
        None,
        400,
    )
    .await;
    c.call("GET", "/api/audiences", "/api/audiences?limit=0", None, 400)
        .await;
    c.call(
        "POST",
        "/api/audiences",
        "/api/audiences",
        Some(&json!({"name": "List"})),
        409,
    )
    .await;
    c.call(
        "POST",
        "/api/audiences",
        "/api/audiences",
        Some(&json!({"name": "x", "status": "active"})),
        400,
    )
    .await;
    c.call(
        "POST",
        "/api/audiences/sync",
        "/api/audiences/sync",
        Some(&json!({})),
        400,
    )
    .await;
    c.call("DELETE", "/api/segments/{id}", &seg_path, None, 409)
        .await;
    let huge = json!({"persons": [{"external_id": "x".repeat(7 * 1024 * 1024)}]});
    c.call("POST", "/api/persons", "/api/persons", Some(&huge), 413)
        .await;
    // The local server's refusals of what a web page could send (403, 415, 421).
    let http = reqwest::Client::new();
    let url = format!("{}/api/audiences", t.base);
    for (req, method, want) in [
        (
            http.get(&url).header("origin", "https://evil.example"),
            "GET",
            403,
        ),
        (
            http.post(&url)
                .header("content-type", "text/plain")
                .body("{}"),
            "POST",
            415,
        ),
        (http.get(&url).header("host", "evil.example"), "GET", 421),
    ] {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        assert_eq!(status.as_u16(), want);
        let answer: Value = resp.json().await.unwrap();
        c.conforms(method, "/api/audiences", status, &answer);
    }
    let (status, _, answer) = send(&t, "PATCH", "/api/audiences", Some(&json!({}))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let error = json!({"$ref": "#/components/schemas/Error"});
    assert_eq!(validate(&c.spec, &error, &answer, "405"), Ok(()));

    // Consent and erasure, then the deletes.
    let person: Uuid =
        t.db.query_one("SELECT id FROM person WHERE external_id = 'u1'", &[])
            .await
            .unwrap()
            .get(0);
    let person_path = format!("/api/persons/{person}");
    let consented = c
        .call(
            "PATCH",
            "/api/persons/{id}",
            &person_path,
            Some(&json!({"marketing_opt_out": true})),
            200,
        )
        .await;
    assert_eq!(consented["marketing_opt_out"], true);
    c.call("DELETE", "/api/persons/{id}", &person_path, None, 204)
        .await;
    c.call("DELETE", "/api/persons/{id}", &person_path, None, 404)
        .await;
    let (_, _, list) = send(&t, "GET", "/api/audiences?limit=1000", None).await;
    for a in list["audiences"].as_array().unwrap() {
        let p = format!("/api/audiences/{}", a["id"].as_str().unwrap());
        c.call("DELETE", "/api/audiences/{id}", &p, None, 204).await;
    }
    c.call("DELETE", "/api/segments/{id}", &seg_path, None, 204)
        .await;
}
