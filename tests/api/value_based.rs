//! Value-based audiences (DESIGN §8.4) against the strict fake Graph API: the customer list is
//! created value-based, each row carries LOOKALIKE_VALUE from the person's trait (a number, not
//! hashed), people without a usable value are skipped with a reason, a value change reaches
//! Meta at the next `update`, and a lookalike gets a value-based seed.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::fake_meta::FakeMeta;
use crate::support::{spawn_app_with, TestApp};

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A person `{email}` in `segment` with `attributes`.
async fn person(t: &TestApp, segment: Uuid, email: &str, attributes: Value) -> Uuid {
    let id: Uuid =
        t.db.query_one(
            "INSERT INTO person (email, country, attributes) VALUES ($1, 'US', $2) RETURNING id",
            &[&email, &attributes],
        )
        .await
        .unwrap()
        .get(0);
    t.add_to_segment(segment, id).await;
    id
}

/// What Meta holds: the value (last column) by hashed email (first column).
fn values_by_email(fake: &FakeMeta, meta_id: &str) -> HashMap<String, String> {
    fake.members(meta_id)
        .into_iter()
        .map(|row| (row[0].clone(), row.last().unwrap().clone()))
        .collect()
}

async fn audience(t: &TestApp, id: &str) -> Value {
    let (s, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    a
}

async fn failure_reason(t: &TestApp, person: Uuid) -> Option<String> {
    t.db.query_one(
        "SELECT failure_reason FROM audience_member_sync WHERE person_id = $1",
        &[&person],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn a_value_based_list_carries_each_members_value_and_skips_those_without_one() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config())).await;
    let seg = t.segment("Buyers").await;
    person(&t, seg, "int@example.com", json!({"ltv": 140})).await;
    person(&t, seg, "float@example.com", json!({"ltv": 44.5})).await;
    person(&t, seg, "text@example.com", json!({"ltv": " 12 "})).await;
    person(&t, seg, "zero@example.com", json!({"ltv": 0})).await;
    let missing = person(&t, seg, "missing@example.com", json!({"other": 1})).await;
    let negative = person(&t, seg, "negative@example.com", json!({"ltv": -5})).await;
    let word = person(&t, seg, "word@example.com", json!({"ltv": "lots"})).await;
    let a = t
        .create_audience(json!({"name": "By value", "segment_id": seg, "value_attribute": "ltv"}))
        .await;
    let id = a["id"].as_str().unwrap();

    let r = t.sync(id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    let meta_id = audience(&t, id).await["meta_audience_id"]
        .as_str()
        .unwrap()
        .to_string();
    let list = fake.audience(&meta_id).unwrap();
    assert!(list.is_value_based, "created with is_value_based");
    assert_eq!(list.subtype, "CUSTOM");
    assert!(list.customer_file_source.is_some());
    let schema = fake
        .calls()
        .into_iter()
        .find_map(|c| c.schema)
        .expect("a members call");
    assert_eq!(schema.last().map(String::as_str), Some("LOOKALIKE_VALUE"));
    assert_eq!(schema[0], "EMAIL");

    let held = values_by_email(&fake, &meta_id);
    let want: HashMap<String, String> = [
        ("int@example.com", "140.0"),
        ("float@example.com", "44.5"),
        ("text@example.com", "12.0"),
        ("zero@example.com", "0.0"),
    ]
    .into_iter()
    .map(|(e, v)| (sha(e), v.to_string()))
    .collect();
    assert_eq!(held, want, "the four with a usable value, each with it");
    for p in [missing, negative, word] {
        let reason = failure_reason(&t, p).await.expect("a failure reason");
        assert!(reason.contains("value_attribute"), "{reason}");
    }

    // A value changes: an incremental sync sends only the unsynced; the next `update` sync
    // replaces the row with the new value. A fixed value sends the skipped member.
    t.db.execute(
        "UPDATE person SET attributes = '{\"ltv\": 150}' WHERE email = 'int@example.com'",
        &[],
    )
    .await
    .unwrap();
    t.db.execute(
        "UPDATE person SET attributes = '{\"ltv\": \"7.25\"}' WHERE id = $1",
        &[&word],
    )
    .await
    .unwrap();
    let r = t.sync(id, "update").await;
    assert_eq!(r["status"], "completed", "{r}");
    let held = values_by_email(&fake, &meta_id);
    assert_eq!(
        held.get(&sha("int@example.com")).map(String::as_str),
        Some("150.0")
    );
    assert_eq!(
        held.get(&sha("word@example.com")).map(String::as_str),
        Some("7.25")
    );
    assert_eq!(held.len(), 5, "the old row went: {held:?}");
    assert_eq!(failure_reason(&t, word).await, None);

    // Meta fixes is_value_based at creation.
    let (s, err) = t
        .put(
            &format!("/api/audiences/{id}"),
            &json!({"value_attribute": null}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    // Another trait is fine: every row is re-sent with its new value at the next update.
    let (s, b) = t
        .put(
            &format!("/api/audiences/{id}"),
            &json!({"value_attribute": "other"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let r = t.sync(id, "update").await;
    assert_eq!(r["status"], "completed", "{r}");
    let held = values_by_email(&fake, &meta_id);
    assert_eq!(
        held,
        HashMap::from([(sha("missing@example.com"), "1.0".to_string())]),
        "only the one person with that trait"
    );
}

#[tokio::test]
async fn a_value_based_lookalike_is_built_on_a_value_based_seed() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config())).await;
    let seg = t.segment("Seed").await;
    for i in 0..100 {
        person(&t, seg, &format!("s{i}@example.com"), json!({"ltv": i})).await;
    }
    let a = t
        .create_audience(json!({
            "name": "Look by value", "audience_type": "lookalike", "segment_id": seg,
            "lookalike_country": "US", "lookalike_percentage": 3, "value_attribute": "ltv",
        }))
        .await;
    let id = a["id"].as_str().unwrap();
    let r = t.sync(id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    let a = audience(&t, id).await;
    let seed = fake
        .audience(a["meta_seed_audience_id"].as_str().unwrap())
        .unwrap();
    assert!(seed.is_value_based);
    let look = fake
        .audience(a["meta_audience_id"].as_str().unwrap())
        .unwrap();
    assert_eq!(look.subtype, "LOOKALIKE");
    assert_eq!(look.origin_audience_id.as_deref(), Some(seed.id.as_str()));
    let held = values_by_email(&fake, &seed.id);
    assert_eq!(held.len(), 100);
    assert_eq!(held[&sha("s42@example.com")], "42.0");
}

/// The fake checks Meta's rules on its own: the value column only on value-based lists, a
/// number of at least 0, not hashed.
#[tokio::test]
async fn the_fake_graph_api_holds_value_rows_to_metas_rules() {
    let fake = FakeMeta::start().await;
    let http = reqwest::Client::new();
    let call = |path: String, body: Value| {
        let req = http
            .post(format!("{}{path}", fake.url()))
            .bearer_auth(fake.token())
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let create = |value_based: bool| {
        let mut body = json!({"name": "x", "subtype": "CUSTOM",
                              "customer_file_source": "USER_PROVIDED_ONLY"});
        if value_based {
            body["is_value_based"] = json!(1);
        }
        call("/act_424242/customaudiences".to_string(), body)
    };
    let (_, plain) = create(false).await;
    let (_, valued) = create(true).await;
    let users = |id: &Value| format!("/{}/users", id["id"].as_str().unwrap());
    let hash = sha("a@example.com");
    let with_value = |v: Value| json!({"payload": {"schema": ["EMAIL", "LOOKALIKE_VALUE"], "data": [[hash, v]]}});

    let (s, _) = call(users(&valued), with_value(json!(44.5))).await;
    assert_eq!(s, StatusCode::OK);
    for bad in [json!(-1), json!("44.5"), json!(sha("44.5")), json!(null)] {
        let (s, body) = call(users(&valued), with_value(bad.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], 100);
    }
    let (s, _) = call(
        users(&valued),
        json!({"payload": {"schema": ["EMAIL"], "data": [[hash]]}}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a value-based list needs the value"
    );
    let (s, _) = call(users(&plain), with_value(json!(1))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "no value on a plain list");
    let (s, _) = call(
        "/act_424242/customaudiences".to_string(),
        json!({"name": "l", "subtype": "LOOKALIKE", "is_value_based": 1,
               "origin_audience_id": valued["id"],
               "lookalike_spec": "{\"country\": \"US\", \"ratio\": 0.01}"}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "is_value_based is for customer lists"
    );
}
