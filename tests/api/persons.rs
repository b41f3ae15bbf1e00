//! People through the REST API: bulk import with per-row errors, upsert semantics, limits,
//! consent, and erasure flowing through to what Meta (the fake Graph API) is told.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::fake_meta::{call_counts, FakeMeta, DEFAULT_FAKE_TOKEN};
use crate::support::{self, assert_error, spawn_app, spawn_app_with, TestApp};

async fn person_row(t: &TestApp, external_id: &str) -> Option<tokio_postgres::Row> {
    t.db.query_opt(
        "SELECT id, email, phone, country, date_of_birth, attributes, marketing_opt_out, \
                created_at, updated_at FROM person WHERE external_id = $1",
        &[&external_id],
    )
    .await
    .unwrap()
}

async fn person_id(t: &TestApp, external_id: &str) -> Uuid {
    person_row(t, external_id).await.expect("person").get(0)
}

#[tokio::test]
async fn a_bulk_import_writes_the_good_rows_and_reports_each_bad_one() {
    let t = spawn_app().await;
    let (s, body) = t
        .post(
            "/api/persons",
            &json!({"persons": [
                {"external_id": "ok-1", "email": "one@example.com", "attributes": {"total_renders": 3}},
                {"external_id": "bad-email", "email": "not-an-email"},
                {"email": "no-id@example.com"},
                {"external_id": "bad-country-and-date", "country": "USA", "date_of_birth": "1990-13-01"},
                {"external_id": "bad-attributes", "attributes": [1, 2]},
                {"external_id": "unknown-field", "nickname": "Al"},
                {"external_id": "wrong-type", "email": 5},
                "not an object",
                {"external_id": "ok-1", "email": "again@example.com"},
                {"external_id": " ok-2 ", "email": " Ann@Example.COM ", "country": " gb ",
                 "date_of_birth": "1990-04-01", "marketing_opt_out": true},
                {"external_id": "   "},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["upserted"], 2, "{body}");
    let errors: Vec<(u64, Option<&str>)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            (e["index"].as_u64().unwrap(), e["field"].as_str())
        })
        .collect();
    assert_eq!(
        errors,
        [
            (1, Some("email")),
            (2, Some("external_id")),
            (3, Some("country")),
            (3, Some("date_of_birth")),
            (4, Some("attributes")),
            (5, Some("nickname")),
            (6, Some("email")),
            (7, None),
            (8, Some("external_id")),
            (10, Some("external_id")),
        ]
    );
    let stored: Vec<String> = support::column(
        &t.db,
        "SELECT external_id FROM person ORDER BY external_id",
        &[],
    )
    .await;
    assert_eq!(
        stored,
        ["ok-1", "ok-2"],
        "nothing of a rejected row is written"
    );

    let first = person_row(&t, "ok-1").await.unwrap();
    assert_eq!(
        first.get::<_, Option<String>>(1).as_deref(),
        Some("one@example.com"),
        "the duplicate later in the request wrote nothing"
    );
    let second = person_row(&t, "ok-2").await.unwrap();
    assert_eq!(
        second.get::<_, Option<String>>(1).as_deref(),
        Some("Ann@Example.COM")
    );
    assert_eq!(second.get::<_, Option<String>>(3).as_deref(), Some("GB"));
    assert_eq!(
        second.get::<_, Option<chrono::NaiveDate>>(4),
        chrono::NaiveDate::from_ymd_opt(1990, 4, 1)
    );
    assert!(second.get::<_, bool>(6));
}

#[tokio::test]
async fn an_upsert_updates_what_it_carries_and_never_undoes_an_opt_out() {
    let t = spawn_app().await;
    let post = |persons: Value| {
        let t = &t;
        async move {
            let (s, body) = t.post("/api/persons", &json!({ "persons": persons })).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            assert_eq!(body["errors"], json!([]), "{body}");
            body
        }
    };
    post(
        json!([{"external_id": "x", "email": "a@example.com", "phone": "+1 650 555 0100",
                  "attributes": {"total_renders": 1, "plan": "free"}}]),
    )
    .await;
    let before = person_row(&t, "x").await.unwrap();
    let body = post(
        json!([{"external_id": "x", "email": "b@example.com", "marketing_opt_out": true,
                            "attributes": {"total_renders": 2, "beta": null}}]),
    )
    .await;
    assert_eq!(body["upserted"], 1);
    let after = person_row(&t, "x").await.unwrap();
    assert_eq!(
        before.get::<_, Uuid>(0),
        after.get::<_, Uuid>(0),
        "same person"
    );
    assert_eq!(
        after.get::<_, Option<String>>(1).as_deref(),
        Some("b@example.com")
    );
    assert_eq!(
        after.get::<_, Option<String>>(2).as_deref(),
        Some("+1 650 555 0100"),
        "absent fields keep their value"
    );
    assert_eq!(
        after.get::<_, Value>(5),
        json!({"total_renders": 2, "plan": "free", "beta": null}),
        "traits merged key by key"
    );
    assert!(after.get::<_, bool>(6));
    assert_eq!(
        before.get::<_, chrono::DateTime<chrono::Utc>>(7),
        after.get::<_, chrono::DateTime<chrono::Utc>>(7)
    );
    assert!(
        after.get::<_, chrono::DateTime<chrono::Utc>>(8)
            > before.get::<_, chrono::DateTime<chrono::Utc>>(8)
    );

    post(json!([{"external_id": "x", "marketing_opt_out": false}])).await;
    assert!(
        person_row(&t, "x").await.unwrap().get::<_, bool>(6),
        "only PATCH /api/persons/{{id}} opts back in"
    );
}

#[tokio::test]
async fn an_import_takes_10000_rows_and_refuses_more() {
    let t = spawn_app().await;
    let rows = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| {
                json!({"external_id": format!("bulk-{i}"), "email": format!("bulk{i}@example.com"),
                            "attributes": {"total_renders": i % 10}})
            })
            .collect()
    };
    let (s, body) = t
        .post("/api/persons", &json!({ "persons": rows(10_001) }))
        .await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("persons"));
    let (s, body) = t
        .post("/api/persons", &json!({ "persons": rows(10_000) }))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["upserted"], 10_000);
    // Again: every row is an update now.
    let (s, body) = t
        .post("/api/persons", &json!({ "persons": rows(10_000) }))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["upserted"], 10_000);
    let n: i64 =
        t.db.query_one("SELECT count(*) FROM person", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 10_000);

    for (bad, field) in [
        (json!({}), Some("persons")),
        (json!({"persons": "x"}), Some("persons")),
        (json!({"persons": [], "extra": 1}), Some("extra")),
    ] {
        let (s, body) = t.post("/api/persons", &bad).await;
        assert_error(s, &body, StatusCode::BAD_REQUEST, field);
    }
    let (s, body) = t.request("POST", "/api/persons", Some("{")).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, None);
}

#[tokio::test]
async fn consent_is_patched_alone() {
    let t = spawn_app().await;
    let (_, _) = t
        .post(
            "/api/persons",
            &json!({"persons": [{"external_id": "c1", "email": "c1@example.com"}]}),
        )
        .await;
    let id = person_id(&t, "c1").await;
    let path = format!("/api/persons/{id}");
    let (s, person) = t
        .request("PATCH", &path, Some(r#"{"marketing_opt_out": true}"#))
        .await;
    assert_eq!(s, StatusCode::OK, "{person}");
    assert_eq!(person["id"], id.to_string());
    assert_eq!(person["marketing_opt_out"], true);
    assert_eq!(person["external_id"], "c1");
    let (s, person) = t
        .request("PATCH", &path, Some(r#"{"marketing_opt_out": false}"#))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(person["marketing_opt_out"], false);

    for (body, field) in [
        (
            r#"{"marketing_opt_out": true, "email": "x@example.com"}"#,
            Some("email"),
        ),
        (r#"{}"#, Some("marketing_opt_out")),
        (r#"{"marketing_opt_out": "yes"}"#, Some("marketing_opt_out")),
        (r#"{"marketing_opt_out": null}"#, Some("marketing_opt_out")),
        (r#"[true]"#, None),
    ] {
        let (s, err) = t.request("PATCH", &path, Some(body)).await;
        assert_error(s, &err, StatusCode::BAD_REQUEST, field);
    }
    let (s, err) = t
        .request(
            "PATCH",
            &format!("/api/persons/{}", Uuid::new_v4()),
            Some(r#"{"marketing_opt_out": true}"#),
        )
        .await;
    assert_error(s, &err, StatusCode::NOT_FOUND, None);
    let (s, err) = t
        .request(
            "PATCH",
            "/api/persons/42",
            Some(r#"{"marketing_opt_out": true}"#),
        )
        .await;
    assert_error(s, &err, StatusCode::BAD_REQUEST, Some("id"));
    let (s, _) = t.get(&path).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, err) = t.delete(&format!("/api/persons/{}", Uuid::new_v4())).await;
    assert_error(s, &err, StatusCode::NOT_FOUND, None);
}

// ---- consent and erasure as Meta sees them ----

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every hashed field Meta holds for the audience.
fn meta_hashes(fake: &FakeMeta, meta_id: &str) -> Vec<String> {
    fake.members(meta_id).into_iter().flatten().collect()
}

/// Member rows left without a person (hashes kept to tell Meta).
async fn erased_members(t: &TestApp, audience_id: &str) -> i64 {
    let id = Uuid::parse_str(audience_id).unwrap();
    t.db.query_one(
        "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1 AND person_id IS NULL",
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

async fn sync_log_details(t: &TestApp, r: &Value) -> Value {
    let id = Uuid::parse_str(r["sync_log_id"].as_str().unwrap()).unwrap();
    t.db.query_one(
        "SELECT details FROM audience_sync_log WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn erasure_and_opt_out_reach_meta_at_the_next_sync() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config_with(DEFAULT_FAKE_TOKEN, 2))).await;
    let people: Vec<Value> = (1..=5)
        .map(|i| {
            json!({"external_id": format!("m{i}"), "email": format!("m{i}@example.com"),
                        "phone": format!("+1 650 555 010{i}"), "country": "US",
                        "attributes": {"total_renders": 10}})
        })
        .collect();
    t.post("/api/persons", &json!({ "persons": people })).await;
    let (_, seg) = t
        .post(
            "/api/segments",
            &json!({"name": "Engaged", "rule": {"type": "condition", "attribute": "total_renders",
                                                "operator": ">=", "value": 5}}),
        )
        .await;
    let audience = t
        .create_audience(json!({"name": "Engaged in Meta", "segment_id": seg["id"]}))
        .await;
    let id = audience["id"].as_str().unwrap();
    let first = t.sync(id, "full").await;
    assert_eq!(first["synced_count"], 5, "{first}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    let meta = a["meta_audience_id"].as_str().unwrap().to_string();
    let held = meta_hashes(&fake, &meta);
    for i in 1..=5 {
        assert!(held.contains(&sha(&format!("m{i}@example.com"))));
        assert!(
            held.contains(&sha(&format!("1650555010{i}"))),
            "PHONE of m{i}"
        );
    }

    // m2 is erased: gone from the database at once, its hashes kept only to tell Meta.
    let m2 = person_id(&t, "m2").await;
    let (s, _) = t.delete(&format!("/api/persons/{m2}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(person_row(&t, "m2").await.is_none());
    let in_segment: i64 =
        t.db.query_one(
            "SELECT count(*) FROM segment_member WHERE person_id = $1",
            &[&m2],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_segment, 0);
    assert_eq!(erased_members(&t, id).await, 1);

    fake.clear_calls();
    let r = t.sync(id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    let calls = fake.calls();
    let counts = call_counts(&calls);
    assert_eq!(
        counts.get(&format!("DELETE /{meta}/users")),
        Some(&1),
        "{counts:?}"
    );
    let delete = calls
        .iter()
        .find(|c| c.method == "DELETE" && c.path.ends_with("/users"))
        .unwrap();
    assert_eq!(delete.rows, 1, "exactly the erased person's row");
    let held = meta_hashes(&fake, &meta);
    assert!(
        !held.contains(&sha("m2@example.com")),
        "Meta no longer holds m2's email"
    );
    assert!(!held.contains(&sha("16505550102")), "nor m2's phone");
    assert_eq!(fake.member_count(&meta), 4);
    let details = sync_log_details(&t, &r).await;
    assert_eq!(details["erased"], 1, "{details}");
    assert_eq!(details["removed"], 1, "{details}");
    assert_eq!(erased_members(&t, id).await, 0);

    // m3 opts out: removed from Meta at the next sync, not erased.
    let m3 = person_id(&t, "m3").await;
    let (s, _) = t
        .request(
            "PATCH",
            &format!("/api/persons/{m3}"),
            Some(r#"{"marketing_opt_out": true}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = t.sync(id, "incremental").await;
    let held = meta_hashes(&fake, &meta);
    assert!(!held.contains(&sha("m3@example.com")));
    assert_eq!(fake.member_count(&meta), 3);
    let details = sync_log_details(&t, &r).await;
    assert_eq!(details["erased"], 0, "{details}");
    assert_eq!(details["removed"], 1, "{details}");
    let (_, got) = t.get(&format!("/api/audiences/{id}?include=metrics")).await;
    assert_eq!(got["metrics"]["total_members"], 3);
}

/// PostgreSQL stores no NUL character: one in a row is that row's error, naming the field, and
/// the other rows are written.
#[tokio::test]
async fn a_nul_character_is_a_row_error_naming_the_field() {
    let t = spawn_app().await;
    let (s, body) = t
        .post(
            "/api/persons",
            &json!({"persons": [
                {"external_id": "good", "email": "good@example.com"},
                {"external_id": "nul-email", "email": "a\u{0}@example.com"},
                {"external_id": "nul-trait", "attributes": {"plan": "pro\u{0}"}},
                {"external_id": "nul-key", "attributes": {"pl\u{0}an": "pro"}},
                {"external_id": "nul\u{0}id"},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["upserted"], 1, "{body}");
    let errors: Vec<(u64, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            (1, "email"),
            (2, "attributes.plan"),
            (3, "attributes"),
            (4, "external_id")
        ],
        "{body}"
    );
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("NUL"));
    assert!(person_row(&t, "good").await.is_some());
}
