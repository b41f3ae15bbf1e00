//! The segment engine against a real PostgreSQL: every operator and type, grouping and NOT,
//! bad rules and the paths their errors give, refresh (joiners and leavers), preview, CRUD, and
//! the seed's example end to end through the REST API alone.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{self, assert_error, spawn_app, TestApp};

fn cond(attribute: &str, operator: &str, value: Value) -> Value {
    json!({"type": "condition", "attribute": attribute, "operator": operator, "value": value})
}

fn exists(attribute: &str, operator: &str) -> Value {
    json!({"type": "condition", "attribute": attribute, "operator": operator})
}

async fn import(t: &TestApp, persons: Value) {
    let (s, body) = t.post("/api/persons", &json!({ "persons": persons })).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["errors"], json!([]), "{body}");
}

/// External ids of the people `rule` selects, through the preview (fixtures have < 10 people,
/// so the sample is everyone).
async fn selected(t: &TestApp, rule: &Value) -> BTreeSet<String> {
    let (s, body) = t
        .post("/api/segments/preview", &json!({ "rule": rule }))
        .await;
    assert_eq!(s, StatusCode::OK, "{rule}: {body}");
    let ids: Vec<Uuid> = body["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Uuid::parse_str(v.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(body["count"], ids.len(), "{body}");
    support::column::<String>(
        &t.db,
        "SELECT external_id FROM person WHERE id = ANY($1)",
        &[&ids],
    )
    .await
    .into_iter()
    .collect()
}

fn ts(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Five people whose traits cover every JSON type, and columns with and without values.
async fn fixture(t: &TestApp) {
    import(
        t,
        json!([
            {"external_id": "a", "email": "a@example.com", "country": "US", "city": "San Francisco",
             "date_of_birth": "1990-05-01", "gender": "f",
             "attributes": {"total_renders": 7, "plan": "pro", "beta": true,
                            "tags": ["vip", "early"], "score": 2.5,
                            "last_render": "2020-01-15T10:00:00Z"}},
            {"external_id": "b", "email": "b@example.com", "country": "DE", "city": "Berlin",
             "date_of_birth": "1985-12-31",
             "attributes": {"total_renders": 12, "plan": "free", "beta": false,
                            "tags": ["churn-risk"], "score": -1}},
            {"external_id": "c", "country": "us", "city": "Santa Cruz",
             "attributes": {"total_renders": "9", "plan": "Pro", "tags": "vip list",
                            "nothing": null}},
            {"external_id": "d", "phone": "+1 650 555 0100",
             "attributes": {"total_renders": 5, "tags": [5, "x"]}},
            {"external_id": "e", "email": "e@example.com", "country": "FR", "marketing_opt_out": true,
             "attributes": {}},
        ]),
    )
    .await;
    // As another tool may have loaded it: rules compare text exactly.
    t.db.execute(
        "UPDATE person SET country = 'us' WHERE external_id = 'c'",
        &[],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn every_operator_on_every_type() {
    let t = spawn_app().await;
    fixture(&t).await;
    // a days-ago trait for within_last_days, relative to the database's today
    t.db.execute(
        "UPDATE person SET attributes = attributes || jsonb_build_object('last_render', \
           to_char(current_date - 3, 'YYYY-MM-DD') || 'T08:00:00Z') WHERE external_id = 'b'",
        &[],
    )
    .await
    .unwrap();
    t.db.execute(
        "UPDATE person SET created_at = now() - interval '40 days' WHERE external_id IN ('a', 'b')",
        &[],
    )
    .await
    .unwrap();

    let cases: Vec<(Value, &[&str])> = vec![
        // numbers: compared as numbers, never as strings ("9" is not a number)
        (cond("total_renders", ">=", json!(5)), &["a", "b", "d"]),
        (cond("total_renders", ">", json!(7)), &["b"]),
        (cond("total_renders", "<", json!(7)), &["d"]),
        (cond("total_renders", "<=", json!(7)), &["a", "d"]),
        (cond("total_renders", "=", json!(7)), &["a"]),
        (cond("total_renders", "=", json!(7.0)), &["a"]),
        (cond("total_renders", "!=", json!(7)), &["b", "d"]),
        (cond("total_renders", "in", json!([5, 12])), &["b", "d"]),
        (cond("total_renders", "not_in", json!([5, 12])), &["a"]),
        (
            cond("total_renders", "between", json!([6, 12])),
            &["a", "b"],
        ),
        (cond("score", "between", json!([-1, 2.5])), &["a", "b"]),
        (cond("score", "<", json!(0)), &["b"]),
        // strings: as text, exact and case-sensitive
        (cond("total_renders", "=", json!("9")), &["c"]),
        (cond("plan", "=", json!("pro")), &["a"]),
        (cond("plan", "!=", json!("pro")), &["b", "c"]),
        (cond("plan", "in", json!(["Pro", "free"])), &["b", "c"]),
        (cond("plan", "not_in", json!(["Pro"])), &["a", "b"]),
        (cond("plan", ">", json!("Pro")), &["a", "b"]),
        (cond("plan", "between", json!(["a", "m"])), &["b"]),
        (cond("plan", "starts_with", json!("pr")), &["a"]),
        (cond("plan", "contains", json!("re")), &["b"]),
        // booleans
        (cond("beta", "=", json!(true)), &["a"]),
        (cond("beta", "!=", json!(true)), &["b"]),
        (cond("beta", "in", json!([true, false])), &["a", "b"]),
        // arrays: contains an element; a string trait: contains the substring
        (cond("tags", "contains", json!("vip")), &["a", "c"]),
        (cond("tags", "contains", json!(5)), &["d"]),
        (cond("tags", "contains", json!("churn")), &[]),
        (cond("tags", "=", json!("vip")), &[]),
        // exists: JSON null counts as absent
        (exists("beta", "exists"), &["a", "b"]),
        (exists("beta", "not_exists"), &["c", "d", "e"]),
        (exists("nothing", "exists"), &[]),
        (exists("nothing", "not_exists"), &["a", "b", "c", "d", "e"]),
        // date traits: ISO strings order as the days do
        (cond("last_render", "within_last_days", json!(7)), &["b"]),
        (cond("last_render", "within_last_days", json!(2)), &[]),
        (cond("last_render", "<", json!("2021-01-01")), &["a"]),
        // text columns
        (cond("country", "=", json!("US")), &["a"]),
        (cond("country", "!=", json!("US")), &["b", "c", "e"]),
        (cond("country", "in", json!(["US", "us"])), &["a", "c"]),
        (cond("country", "not_in", json!(["US", "DE"])), &["c", "e"]),
        (cond("city", "starts_with", json!("San")), &["a", "c"]),
        (cond("city", "contains", json!("an")), &["a", "c"]),
        (cond("city", ">=", json!("S")), &["a", "c"]),
        (cond("city", "between", json!(["B", "Berlin"])), &["b"]),
        (
            cond("email", "contains", json!("@example.com")),
            &["a", "b", "e"],
        ),
        (exists("email", "exists"), &["a", "b", "e"]),
        (exists("phone", "exists"), &["d"]),
        (exists("gender", "not_exists"), &["b", "c", "d", "e"]),
        (cond("external_id", "in", json!(["a", "e"])), &["a", "e"]),
        // boolean column
        (cond("marketing_opt_out", "=", json!(true)), &["e"]),
        (
            cond("marketing_opt_out", "!=", json!(true)),
            &["a", "b", "c", "d"],
        ),
        // date column
        (cond("date_of_birth", "<", json!("1990-01-01")), &["b"]),
        (cond("date_of_birth", "=", json!("1990-05-01")), &["a"]),
        (
            cond(
                "date_of_birth",
                "between",
                json!(["1985-12-31", "1990-05-01"]),
            ),
            &["a", "b"],
        ),
        (cond("date_of_birth", "in", json!(["1985-12-31"])), &["b"]),
        (exists("date_of_birth", "not_exists"), &["c", "d", "e"]),
        // timestamp columns: a day compares the UTC day, an RFC 3339 value the instant
        (
            cond("created_at", "within_last_days", json!(30)),
            &["c", "d", "e"],
        ),
        (
            cond("created_at", "within_last_days", json!(60)),
            &["a", "b", "c", "d", "e"],
        ),
        (
            cond("updated_at", "within_last_days", json!(1)),
            &["a", "b", "c", "d", "e"],
        ),
        (cond("created_at", "<", json!("2000-01-01")), &[]),
        (
            cond("created_at", ">", json!("2000-01-01T00:00:00Z")),
            &["a", "b", "c", "d", "e"],
        ),
        (
            cond("created_at", "!=", json!("2000-01-01")),
            &["a", "b", "c", "d", "e"],
        ),
    ];
    for (rule, want) in cases {
        assert_eq!(selected(&t, &rule).await, set(want), "{rule}");
    }
}

#[tokio::test]
async fn groups_nest_and_not_is_the_exact_complement() {
    let t = spawn_app().await;
    fixture(&t).await;
    let engaged = cond("total_renders", ">=", json!(5));
    let us = cond("country", "=", json!("US"));
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({"type": "and", "rules": [engaged, us]}), &["a"]),
        (
            json!({"type": "or", "rules": [engaged, us]}),
            &["a", "b", "d"],
        ),
        // NOT includes the people who lack the attribute: c's renders are a string, e has none
        (json!({"type": "not", "rule": engaged}), &["c", "e"]),
        (
            json!({"type": "not", "rule": {"type": "not", "rule": engaged}}),
            &["a", "b", "d"],
        ),
        (
            json!({"type": "and", "rules": [
                {"type": "or", "rules": [us, cond("country", "=", json!("DE"))]},
                {"type": "not", "rule": cond("beta", "=", json!(false))},
            ]}),
            &["a"],
        ),
        (
            json!({"type": "not", "rule": {"type": "or", "rules": [
                cond("plan", "=", json!("pro")),
                cond("tags", "contains", json!(5)),
            ]}}),
            &["b", "c", "e"],
        ),
    ];
    for (rule, want) in cases {
        assert_eq!(selected(&t, &rule).await, set(want), "{rule}");
    }
}

/// PostgreSQL stores no NUL character: one anywhere in a rule is a 400 naming its place.
#[tokio::test]
async fn a_nul_character_in_a_rule_is_a_400_naming_its_place() {
    let t = spawn_app().await;
    let rule = json!({"type": "and", "rules": [
        cond("total_renders", ">=", json!(5)), cond("plan", "=", json!("pro\u{0}"))]});
    for (path, body) in [
        ("/api/segments/preview", json!({ "rule": rule })),
        ("/api/segments", json!({"name": "Nul", "rule": rule})),
    ] {
        let (s, body) = t.post(path, &body).await;
        assert_error(
            s,
            &body,
            StatusCode::BAD_REQUEST,
            Some("rule.rules[1].value"),
        );
    }
    let (_, list) = t.get("/api/segments").await;
    assert_eq!(list["segments"], json!([]), "{list}");
}

#[tokio::test]
async fn bad_rules_are_400s_that_point_into_the_rule() {
    let t = spawn_app().await;
    let ok = cond("total_renders", ">=", json!(5));
    // Ten NOTs around a condition: the condition is the 11th level.
    let deep = (0..10).fold(ok.clone(), |r, _| json!({"type": "not", "rule": r}));
    let deep_path = format!("rule{}", ".rule".repeat(10));
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"type": "and", "rules": [ok, cond("total_renders", "≥", json!(5))]}),
            "rule.rules[1].operator",
            "\"≥\" is not an operator",
        ),
        (json!("total_renders >= 5"), "rule", "must be a JSON object"),
        (json!({"attribute": "x"}), "rule.type", "type is required"),
        (
            json!({"type": "xor", "rules": [ok]}),
            "rule.type",
            "not a rule type",
        ),
        (
            json!({"type": "and", "rules": []}),
            "rule.rules",
            "at least one rule",
        ),
        (json!({"type": "or"}), "rule.rules", "rules is required"),
        (json!({"type": "not"}), "rule.rule", "rule is required"),
        (
            json!({"type": "condition", "attribute": "a", "operator": "=", "value": 1, "extra": 1}),
            "rule.extra",
            "not a field of a condition",
        ),
        (
            json!({"type": "condition", "operator": "=", "value": 1}),
            "rule.attribute",
            "attribute is required",
        ),
        (
            json!({"type": "condition", "attribute": 5, "operator": "=", "value": 1}),
            "rule.attribute",
            "must be a string",
        ),
        (
            json!({"type": "condition", "attribute": "a", "value": 1}),
            "rule.operator",
            "operator is required",
        ),
        (cond("a", "=", json!(null)), "rule.value", "needs a value"),
        (
            cond("a", "=", json!({"x": 1})),
            "rule.value",
            "a number, a string or a boolean",
        ),
        (
            cond("a", "=", json!([1])),
            "rule.value",
            "a number, a string or a boolean",
        ),
        (cond("a", ">", json!(true)), "rule.value", "not a boolean"),
        (
            cond("a", "exists", json!(1)),
            "rule.value",
            "takes no value",
        ),
        (cond("a", "in", json!(5)), "rule.value", "takes a list"),
        (
            cond("a", "in", json!([])),
            "rule.value",
            "at least one value",
        ),
        (
            cond("a", "in", json!([1, "x"])),
            "rule.value[1]",
            "one type",
        ),
        (
            cond("a", "in", json!((0..1001).collect::<Vec<_>>())),
            "rule.value",
            "at most 1000 values",
        ),
        (
            cond("a", "between", json!([1])),
            "rule.value",
            "[low, high]",
        ),
        (
            cond("a", "between", json!([5, 1])),
            "rule.value",
            "low <= high",
        ),
        (
            cond("a", "between", json!([1, "z"])),
            "rule.value[1]",
            "one type",
        ),
        (
            cond("a", "starts_with", json!("")),
            "rule.value",
            "non-empty string",
        ),
        (
            cond("a", "starts_with", json!(5)),
            "rule.value",
            "non-empty string",
        ),
        (
            cond("a", "contains", json!("")),
            "rule.value",
            "non-empty string",
        ),
        (
            cond("a", "within_last_days", json!(0)),
            "rule.value",
            "from 1 to 36500",
        ),
        (
            cond("a", "within_last_days", json!(1.5)),
            "rule.value",
            "whole number",
        ),
        (
            cond("country", "=", json!(1)),
            "rule.value",
            "country is text",
        ),
        (
            cond("marketing_opt_out", "=", json!("yes")),
            "rule.value",
            "boolean",
        ),
        (
            cond("date_of_birth", ">", json!("05/01/1990")),
            "rule.value",
            "YYYY-MM-DD",
        ),
        (
            cond("created_at", ">", json!("yesterday")),
            "rule.value",
            "RFC 3339",
        ),
        (
            cond(
                "created_at",
                "in",
                json!(["2024-01-01", "2024-01-01T00:00:00Z"]),
            ),
            "rule.value[1]",
            "one type",
        ),
        (
            cond("date_of_birth", "contains", json!("19")),
            "rule.operator",
            "text columns",
        ),
        (
            cond("country", "within_last_days", json!(3)),
            "rule.operator",
            "dates",
        ),
        (deep, deep_path.as_str(), "10 levels"),
        (
            json!({"type": "or", "rules": vec![ok.clone(); 201]}),
            "rule.rules[200]",
            "at most 200 conditions",
        ),
        (
            json!({"type": "and", "rules": [ok, {"type": "not", "rule": {"type": "or", "rules": [
                ok, cond("a", "between", json!(["z", "a"]))]}}]}),
            "rule.rules[1].rule.rules[1].value",
            "low <= high",
        ),
    ];
    for (rule, field, fragment) in cases {
        let (s, body) = t
            .post("/api/segments/preview", &json!({ "rule": rule }))
            .await;
        assert_error(s, &body, StatusCode::BAD_REQUEST, Some(field));
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}: ")) && message.contains(fragment),
            "{rule}: {message}"
        );
        assert_eq!(body["error"]["code"], "invalid_rule");
        // The same rule is refused where segments are saved, at the same place.
        let (s, body) = t
            .post("/api/segments", &json!({"name": "Bad", "rule": rule}))
            .await;
        assert_error(s, &body, StatusCode::BAD_REQUEST, Some(field));
    }
    let (s, body) = t.post("/api/segments/preview", &json!({})).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("rule"));
    let count: i64 =
        t.db.query_one("SELECT count(*) FROM segment", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(count, 0);
}

#[tokio::test]
async fn attribute_names_and_values_cannot_escape_into_sql() {
    let t = spawn_app().await;
    import(
        &t,
        json!([{"external_id": "x", "attributes": {"x'); DROP TABLE person; --": "'; DELETE FROM person; --"}}]),
    )
    .await;
    let rule = cond(
        "x'); DROP TABLE person; --",
        "=",
        json!("'; DELETE FROM person; --"),
    );
    assert_eq!(selected(&t, &rule).await, set(&["x"]));
    let rule = cond("country", "in", json!(["' OR 1=1 --"]));
    assert_eq!(selected(&t, &rule).await, set(&[]));
    let n: i64 =
        t.db.query_one("SELECT count(*) FROM person", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 1);
}

async fn members(t: &TestApp, segment: &str) -> BTreeSet<String> {
    let id = Uuid::parse_str(segment).unwrap();
    t.db.query(
        "SELECT coalesce(p.external_id, p.id::text) FROM segment_member sm \
         JOIN person p ON p.id = sm.person_id WHERE sm.segment_id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn renders(external_id: &str, n: i64) -> Value {
    json!({"external_id": external_id, "email": format!("{external_id}@example.com"),
           "attributes": {"total_renders": n}})
}

#[tokio::test]
async fn refresh_brings_members_to_the_rule_joiners_in_leavers_out() {
    let t = spawn_app().await;
    import(
        &t,
        json!([
            renders("p1", 1),
            renders("p2", 5),
            renders("p3", 9),
            renders("p4", 2)
        ]),
    )
    .await;
    let (s, seg) = t
        .post(
            "/api/segments",
            &json!({"name": "High Engagers", "description": "5+ renders",
                    "rule": cond("total_renders", ">=", json!(5))}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{seg}");
    assert_eq!(
        seg["member_count"], 2,
        "a rule segment gets its members when created"
    );
    assert!(seg["refreshed_at"].is_string());
    let id = seg["id"].as_str().unwrap().to_string();
    assert_eq!(members(&t, &id).await, set(&["p2", "p3"]));
    let added_at: Vec<chrono::DateTime<chrono::Utc>> =
        t.db.query(
            "SELECT added_at FROM segment_member sm JOIN person p ON p.id = sm.person_id \
             WHERE p.external_id = 'p3'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    // p1 joins, p2 leaves, p3 stays (its row untouched), p5 is new and joins.
    import(
        &t,
        json!([renders("p1", 6), renders("p2", 4), renders("p5", 50)]),
    )
    .await;
    let (s, refreshed) = t
        .post(&format!("/api/segments/{id}/refresh"), &json!(null))
        .await;
    assert_eq!(s, StatusCode::OK, "{refreshed}");
    assert_eq!(refreshed["member_count"], 3);
    assert!(ts(&refreshed["refreshed_at"]) > ts(&seg["refreshed_at"]));
    assert_eq!(members(&t, &id).await, set(&["p1", "p3", "p5"]));
    let still: chrono::DateTime<chrono::Utc> =
        t.db.query_one(
            "SELECT added_at FROM segment_member sm JOIN person p ON p.id = sm.person_id \
             WHERE p.external_id = 'p3'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(added_at, vec![still], "a member who stays is not re-added");

    // A new rule applies at once.
    let (s, updated) = t
        .put(
            &format!("/api/segments/{id}"),
            &json!({"rule": cond("total_renders", "<", json!(5))}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["member_count"], 2);
    assert_eq!(members(&t, &id).await, set(&["p2", "p4"]));
    assert_eq!(
        updated["description"], "5+ renders",
        "absent fields unchanged"
    );

    // Erasure takes the person out of the segment and the count follows.
    let p2: Uuid =
        t.db.query_one("SELECT id FROM person WHERE external_id = 'p2'", &[])
            .await
            .unwrap()
            .get(0);
    let (s, _) = t.delete(&format!("/api/persons/{p2}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(members(&t, &id).await, set(&["p4"]));
    let (_, got) = t.get(&format!("/api/segments/{id}")).await;
    assert_eq!(got["member_count"], 1);
}

#[tokio::test]
async fn a_manual_segment_is_never_refreshed_only_recounted() {
    let t = spawn_app().await;
    let seg = t.segment("Manual").await;
    t.people_in_segment(seg, "man", 3).await;
    let (s, before) = t.get(&format!("/api/segments/{seg}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(before["rule"], Value::Null);
    assert_eq!(before["member_count"], 0, "put in by SQL, not counted yet");
    let (s, after) = t
        .post(&format!("/api/segments/{seg}/refresh"), &json!(null))
        .await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after["member_count"], 3);
    assert_eq!(after["refreshed_at"], Value::Null);
    assert_eq!(members(&t, &seg.to_string()).await.len(), 3);

    // Turning a rule segment manual keeps its members as they are.
    import(&t, json!([renders("r1", 9)])).await;
    let (_, ruled) = t
        .post(
            "/api/segments",
            &json!({"name": "Ruled", "rule": cond("total_renders", ">", json!(1))}),
        )
        .await;
    let id = ruled["id"].as_str().unwrap();
    let (s, manual) = t
        .put(&format!("/api/segments/{id}"), &json!({"rule": null}))
        .await;
    assert_eq!(s, StatusCode::OK, "{manual}");
    assert_eq!(manual["rule"], Value::Null);
    import(&t, json!([renders("r1", 0)])).await;
    t.post(&format!("/api/segments/{id}/refresh"), &json!(null))
        .await;
    assert_eq!(members(&t, id).await, set(&["r1"]));
}

#[tokio::test]
async fn a_manual_segments_count_follows_every_write_and_a_truncate_is_recounted() {
    let t = spawn_app().await;
    let seg = t.segment("Manual").await;
    let people = t.people_in_segment(seg, "cnt", 5).await;
    let count = |body: Value| body["member_count"].as_i64().unwrap();
    let path = format!("/api/segments/{seg}");
    let refresh = format!("/api/segments/{seg}/refresh");
    // The first refresh counts in full (no full pass on record); then the count is kept.
    assert_eq!(count(t.post(&refresh, &json!(null)).await.1), 5);

    // An outside tool's plain SQL.
    t.db.execute(
        "DELETE FROM segment_member WHERE segment_id = $1 AND person_id = ANY($2)",
        &[&seg, &&people[..2]],
    )
    .await
    .unwrap();
    assert_eq!(count(t.get(&path).await.1), 5, "moved by the next refresh");
    assert_eq!(count(t.post(&refresh, &json!(null)).await.1), 3);
    // A membership moved to another manual segment counts down here and up there.
    let other = t.segment("Other").await;
    let other_refresh = format!("/api/segments/{other}/refresh");
    assert_eq!(count(t.post(&other_refresh, &json!(null)).await.1), 0);
    t.db.execute(
        "UPDATE segment_member SET segment_id = $2 WHERE segment_id = $1 AND person_id = $3",
        &[&seg, &other, &people[2]],
    )
    .await
    .unwrap();
    assert_eq!(count(t.post(&refresh, &json!(null)).await.1), 2);
    assert_eq!(count(t.post(&other_refresh, &json!(null)).await.1), 1);
    // A writer's transaction still open neither blocks a refresh nor is lost by it.
    let open = support::connect(&t.db_url).await;
    open.batch_execute("BEGIN").await.unwrap();
    open.execute(
        "INSERT INTO segment_member (segment_id, person_id) VALUES ($1, $2)",
        &[&other, &people[0]],
    )
    .await
    .unwrap();
    assert_eq!(count(t.post(&other_refresh, &json!(null)).await.1), 1);
    open.batch_execute("COMMIT").await.unwrap();
    assert_eq!(count(t.post(&other_refresh, &json!(null)).await.1), 2);
    // A deleted person's memberships go by cascade and count down once; a rule segment it was
    // in counts down too (its own path), and nobody else's count moves.
    import(&t, json!([renders("ruled", 9)])).await;
    let (_, ruled) = t
        .post(
            "/api/segments",
            &json!({"name": "Ruled", "rule": cond("total_renders", ">", json!(1))}),
        )
        .await;
    let ruled_path = format!("/api/segments/{}", ruled["id"].as_str().unwrap());
    let ruled_person: Uuid =
        t.db.query_one("SELECT id FROM person WHERE external_id = 'ruled'", &[])
            .await
            .unwrap()
            .get(0);
    t.add_to_segment(seg, ruled_person).await;
    assert_eq!(count(t.post(&refresh, &json!(null)).await.1), 3);
    let (s, _) = t.delete(&format!("/api/persons/{ruled_person}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(count(t.get(&ruled_path).await.1), 0);
    assert_eq!(count(t.post(&refresh, &json!(null)).await.1), 2);

    // A TRUNCATE passes no rows to the triggers: the next refresh counts in full.
    t.db.batch_execute("TRUNCATE segment_member").await.unwrap();
    assert_eq!(count(t.get(&path).await.1), 2, "stale until counted");
    assert_eq!(count(t.post(&refresh, &json!(null)).await.1), 0);
}

#[tokio::test]
async fn preview_counts_and_samples_and_writes_nothing() {
    let t = spawn_app().await;
    let persons: Vec<Value> = (0..25).map(|i| renders(&format!("v{i:02}"), i)).collect();
    import(&t, json!(persons)).await;
    let (_, seg) = t
        .post(
            "/api/segments",
            &json!({"name": "Few", "rule": cond("total_renders", "<", json!(3))}),
        )
        .await;
    let snapshot = "SELECT (SELECT json_agg(s ORDER BY s.id)::text FROM segment s) || \
                    (SELECT coalesce(json_agg(m ORDER BY m.person_id), '[]')::text FROM segment_member m)";
    let before: String = t.db.query_one(snapshot, &[]).await.unwrap().get(0);

    let (s, body) = t
        .post(
            "/api/segments/preview",
            &json!({"rule": cond("total_renders", ">=", json!(5))}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 20);
    let sample: Vec<&str> = body["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(sample.len(), 10);
    let mut sorted = sample.clone();
    sorted.sort();
    assert_eq!(sample, sorted, "in id order");
    let after: String = t.db.query_one(snapshot, &[]).await.unwrap().get(0);
    assert_eq!(before, after);
    assert_eq!(seg["member_count"], 3);
}

#[tokio::test]
async fn segment_crud_and_the_audiences_using_it() {
    let t = spawn_app().await;
    let (s, a) = t.post("/api/segments", &json!({"name": "  First  "})).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(a["name"], "First");
    for key in [
        "id",
        "name",
        "description",
        "rule",
        "member_count",
        "refreshed_at",
        "created_at",
        "updated_at",
        "audiences",
    ] {
        assert!(a.get(key).is_some(), "{key} missing: {a}");
    }
    let id = a["id"].as_str().unwrap().to_string();

    let (s, body) = t.post("/api/segments", &json!({"name": "First"})).await;
    assert_error(s, &body, StatusCode::CONFLICT, None);
    let (s, body) = t.post("/api/segments", &json!({})).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("name"));
    let (s, body) = t
        .post("/api/segments", &json!({"name": "x".repeat(201)}))
        .await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("name"));
    let (s, body) = t
        .post("/api/segments", &json!({"name": "X", "member_count": 5}))
        .await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("member_count"));
    let (s, body) = t
        .post("/api/segments", &json!({"name": "X", "colour": "red"}))
        .await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("colour"));

    t.post("/api/segments", &json!({"name": "Second"})).await;
    let (s, list) = t.get("/api/segments").await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = list["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Second", "First"], "newest first");

    let audience = t
        .create_audience(json!({"name": "Built on First", "segment_id": id}))
        .await;
    let (s, got) = t.get(&format!("/api/segments/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        got["audiences"],
        json!([{"id": audience["id"], "name": "Built on First"}])
    );

    let (s, body) = t
        .put(&format!("/api/segments/{id}"), &json!({"name": "Second"}))
        .await;
    assert_error(s, &body, StatusCode::CONFLICT, None);
    let (s, body) = t
        .put(&format!("/api/segments/{id}"), &json!({"name": null}))
        .await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("name"));
    let (s, renamed) = t
        .put(
            &format!("/api/segments/{id}"),
            &json!({"name": "Renamed", "description": "now described"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "Renamed");
    assert!(ts(&renamed["updated_at"]) > ts(&a["updated_at"]));

    let (s, body) = t.delete(&format!("/api/segments/{id}")).await;
    assert_error(s, &body, StatusCode::CONFLICT, None);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Built on First"),
        "{body}"
    );
    let (s, _) = t
        .delete(&format!(
            "/api/audiences/{}",
            audience["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = t.delete(&format!("/api/segments/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let missing = Uuid::new_v4();
    for (method, path) in [
        ("GET", format!("/api/segments/{missing}")),
        ("DELETE", format!("/api/segments/{missing}")),
        ("POST", format!("/api/segments/{missing}/refresh")),
    ] {
        let (s, body) = t.request(method, &path, None).await;
        assert_error(s, &body, StatusCode::NOT_FOUND, None);
    }
    let (s, body) = t.get("/api/segments/not-a-uuid").await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("id"));
    let (s, body) = t.get("/api/segments/preview").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    let (s, _) = t.request("DELETE", "/api/segments", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn every_sync_refreshes_the_segment_first() {
    let t = spawn_app().await;
    import(&t, json!([renders("s1", 9), renders("s2", 1)])).await;
    let (_, seg) = t
        .post(
            "/api/segments",
            &json!({"name": "Engaged", "rule": cond("total_renders", ">=", json!(5))}),
        )
        .await;
    let audience = t
        .create_audience(json!({"name": "Engaged audience", "segment_id": seg["id"]}))
        .await;
    let id = audience["id"].as_str().unwrap();
    assert_eq!(t.sync(id, "full").await["synced_count"], 1);

    // No refresh call: the sync itself brings the segment to its rule.
    import(&t, json!([renders("s2", 7)])).await;
    let r = t.sync(id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    let (_, got) = t.get(&format!("/api/audiences/{id}?include=metrics")).await;
    assert_eq!(got["metrics"]["total_members"], 2, "{got}");
    assert_eq!(got["metrics"]["synced_count"], 2, "{got}");
    let (_, got) = t
        .get(&format!("/api/segments/{}", seg["id"].as_str().unwrap()))
        .await;
    assert_eq!(got["member_count"], 2);
}

/// The seed's example, through the REST API alone.
#[tokio::test]
async fn seed_example_end_to_end_through_rest() {
    let t = spawn_app().await;
    let (s, body) = t
        .post(
            "/api/persons",
            &json!({"persons": [
                {"external_id": "ann", "email": "ann@example.com", "phone": "(650) 555-0123",
                 "first_name": "Ann", "last_name": "Lee", "country": "US",
                 "attributes": {"total_renders": 7}},
                {"external_id": "bob", "email": "bob@example.com", "first_name": "Bob",
                 "country": "US", "attributes": {"total_renders": 12}},
                {"external_id": "cy", "email": "cy@example.com", "country": "US",
                 "attributes": {"total_renders": 3}},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["upserted"], 3);

    let (s, seg) = t
        .post(
            "/api/segments",
            &json!({"name": "High Engagers", "description": "users with 5+ renders",
                    "rule": {"type": "condition", "attribute": "total_renders",
                             "operator": ">=", "value": 5}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{seg}");
    let (s, audience) = t
        .post(
            "/api/audiences",
            &json!({"name": "High Engagers for Upsell", "segment_id": seg["id"], "auto_sync": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{audience}");
    let id = audience["id"].as_str().unwrap();

    let first = t.sync(id, "full").await;
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["synced_count"], 2);

    // Cy renders more, Ann's renders are corrected down: the audience follows at the next sync.
    let (s, body) = t
        .post(
            "/api/persons",
            &json!({"persons": [
                {"external_id": "cy", "attributes": {"total_renders": 5}},
                {"external_id": "ann", "attributes": {"total_renders": 4}},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let second = t.sync(id, "incremental").await;
    assert_eq!(second["status"], "completed", "{second}");
    let (_, got) = t
        .get(&format!("/api/audiences/{id}?include=members,metrics"))
        .await;
    assert_eq!(got["metrics"]["total_members"], 2, "{got}");
    assert_eq!(got["metrics"]["synced_count"], 2);
    let (_, seg) = t
        .get(&format!("/api/segments/{}", seg["id"].as_str().unwrap()))
        .await;
    assert_eq!(seg["member_count"], 2);
    assert_eq!(seg["audiences"][0]["name"], "High Engagers for Upsell");
    let (s, people) = t
        .post(
            "/api/segments/preview",
            &json!({"rule": {"type": "condition", "attribute": "total_renders", "operator": ">=", "value": 5}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let members: BTreeSet<String> = got["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["person_id"].as_str().unwrap().to_string())
        .collect();
    let rule_says: BTreeSet<String> = people["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        members, rule_says,
        "the audience is the rule's people: Bob and Cy"
    );
}

#[tokio::test]
async fn segment_list_pages_cover_every_segment_once_newest_first_across_inserts() {
    let t = spawn_app().await;
    // One statement, one created_at: the id orders them.
    t.db.execute(
        "INSERT INTO segment (name) SELECT 'bulk ' || i FROM generate_series(1, 9) i",
        &[],
    )
    .await
    .unwrap();
    for i in 0..3 {
        let (s, body) = t
            .post("/api/segments", &json!({"name": format!("api {i}")}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let before: Vec<String> = support::column::<Uuid>(
        &t.db,
        "SELECT id FROM segment ORDER BY created_at DESC, id DESC",
        &[],
    )
    .await
    .iter()
    .map(Uuid::to_string)
    .collect();
    let mut seen = Vec::new();
    let mut path = "/api/segments?limit=5".to_string();
    for page in 1.. {
        let (items, next) = support::list_page(&t, &path, "segments").await;
        seen.extend(items.iter().map(|s| s["id"].as_str().unwrap().to_string()));
        assert!(items.iter().all(|s| s["audiences"].is_array()), "{items:?}");
        // A segment created between pages is newer than the cursor: not on a later page.
        let (s, body) = t
            .post(
                "/api/segments",
                &json!({"name": format!("after page {page}")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        match next {
            Some(c) => path = format!("/api/segments?limit=5&cursor={c}"),
            None => {
                assert_eq!(page, 3, "12 segments in pages of 5");
                break;
            }
        }
    }
    assert_eq!(seen, before);
    let (items, next) = support::list_page(&t, "/api/segments", "segments").await;
    assert_eq!((items.len(), next), (15, None));
}
