//! The audience routes, called as a user would over HTTP.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{self, assert_error, list_page, spawn_app, TestApp};

#[tokio::test]
async fn create_applies_defaults_and_get_returns_it() {
    let t = spawn_app().await;
    let seg = t.segment("High Engagers").await;
    let a = t
        .create_audience(json!({
            "name": "High Value Customers",
            "description": "Users with 10+ renders",
            "segment_id": seg,
        }))
        .await;
    assert_eq!(a["audience_type"], "custom_list");
    assert_eq!(a["status"], "pending");
    assert_eq!(a["auto_sync"], false);
    assert_eq!(a["is_active"], true);
    assert_eq!(a["sync_interval_hours"], 24);
    assert_eq!(a["total_synced"], 0);
    assert_eq!(a["segment_id"], seg.to_string());
    assert!(a["last_synced_at"].is_null());

    let (status, got) = t
        .get(&format!("/api/audiences/{}", a["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, a);
}

#[tokio::test]
async fn list_is_newest_first_and_filters_on_is_active() {
    let t = spawn_app().await;
    for (name, active) in [("first", true), ("second", false), ("third", true)] {
        t.create_audience(json!({"name": name, "is_active": active}))
            .await;
    }
    let names = |v: &Value| -> Vec<String> {
        v["audiences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, all) = t.get("/api/audiences").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(names(&all), ["third", "second", "first"]);
    let (_, active) = t.get("/api/audiences?is_active=true").await;
    assert_eq!(names(&active), ["third", "first"]);
    let (_, inactive) = t.get("/api/audiences?is_active=false").await;
    assert_eq!(names(&inactive), ["second"]);
    let (s, body) = t.get("/api/audiences?is_active=yes").await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("is_active"));
}

#[tokio::test]
async fn lookalike_and_engagement_audiences_are_created_with_their_fields() {
    let t = spawn_app().await;
    let seg = t.segment("Pricing viewers").await;
    let look = t
        .create_audience(json!({
            "name": "Pricing Viewers Lookalike", "audience_type": "lookalike", "segment_id": seg,
            "lookalike_country": "us", "lookalike_percentage": 5, "auto_sync": true,
            "sync_interval_hours": 48,
        }))
        .await;
    assert_eq!(look["lookalike_country"], "US");
    assert_eq!(look["lookalike_percentage"], 5);
    let eng = t
        .create_audience(json!({
            "name": "Viewed content", "audience_type": "engagement",
            "rule": {"pixel_id": "123456789", "event": "ViewContent", "retention_days": 30},
        }))
        .await;
    assert_eq!(eng["rule"]["retention_days"], 30);
    assert_eq!(eng["audience_type"], "engagement");
}

/// Every create rule: the status, and the field the error names.
#[tokio::test]
async fn create_validation_names_the_field() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    let long = "x".repeat(201);
    let unknown_segment = uuid::Uuid::new_v4();
    let cases: Vec<(Value, Option<&str>)> = vec![
        (json!({}), Some("name")),
        (json!({"name": ""}), Some("name")),
        (json!({"name": "   "}), Some("name")),
        (json!({"name": long}), Some("name")),
        (json!({"name": 42}), Some("name")),
        (
            json!({"name": "a", "audience_type": "website"}),
            Some("audience_type"),
        ),
        (
            json!({"name": "a", "segment_id": "not-a-uuid"}),
            Some("segment_id"),
        ),
        (
            json!({"name": "a", "segment_id": unknown_segment}),
            Some("segment_id"),
        ),
        (
            json!({"name": "a", "sync_interval_hours": 0}),
            Some("sync_interval_hours"),
        ),
        (
            json!({"name": "a", "sync_interval_hours": 8761}),
            Some("sync_interval_hours"),
        ),
        (
            json!({"name": "a", "sync_interval_hours": 99999999999_i64}),
            Some("sync_interval_hours"),
        ),
        (
            json!({"name": "a", "sync_interval_hours": "24"}),
            Some("sync_interval_hours"),
        ),
        (json!({"name": "a", "auto_sync": "yes"}), Some("auto_sync")),
        (json!({"name": "a", "bogus": 1}), Some("bogus")),
        (json!({"name": "a\u{0}b"}), Some("name")),
        (
            json!({"name": "a", "description": "x\u{0}"}),
            Some("description"),
        ),
        (json!({"name": "a", "status": "active"}), Some("status")),
        (
            json!({"name": "a", "meta_audience_id": "123"}),
            Some("meta_audience_id"),
        ),
        (
            json!({"name": "a", "meta_business_account_id": "act_12x"}),
            Some("meta_business_account_id"),
        ),
        (
            json!({"name": "a", "audience_type": "lookalike", "lookalike_country": "US", "lookalike_percentage": 1}),
            Some("segment_id"),
        ),
        (
            json!({"name": "a", "audience_type": "lookalike", "segment_id": seg, "lookalike_percentage": 1}),
            Some("lookalike_country"),
        ),
        (
            json!({"name": "a", "audience_type": "lookalike", "segment_id": seg, "lookalike_country": "US"}),
            Some("lookalike_percentage"),
        ),
        (
            json!({"name": "a", "audience_type": "lookalike", "segment_id": seg, "lookalike_country": "USA", "lookalike_percentage": 1}),
            Some("lookalike_country"),
        ),
        (
            json!({"name": "a", "audience_type": "lookalike", "segment_id": seg, "lookalike_country": "US", "lookalike_percentage": 11}),
            Some("lookalike_percentage"),
        ),
        (
            json!({"name": "a", "audience_type": "lookalike", "segment_id": seg, "lookalike_country": "US", "lookalike_percentage": 0}),
            Some("lookalike_percentage"),
        ),
        (
            json!({"name": "a", "lookalike_percentage": 3}),
            Some("lookalike_percentage"),
        ),
        (
            json!({"name": "a", "audience_type": "engagement"}),
            Some("rule"),
        ),
        (
            json!({"name": "a", "audience_type": "engagement", "rule": {"pixel_id": "12", "event": "Lead", "retention_days": 181}}),
            Some("rule.retention_days"),
        ),
        (
            json!({"name": "a", "audience_type": "engagement", "rule": {"pixel_id": "12", "event": "Lead", "retention_days": 0}}),
            Some("rule.retention_days"),
        ),
        (
            json!({"name": "a", "audience_type": "engagement", "rule": {"pixel_id": "pix", "event": "Lead", "retention_days": 5}}),
            Some("rule.pixel_id"),
        ),
        (
            json!({"name": "a", "audience_type": "engagement", "rule": {"pixel_id": "12", "event": "", "retention_days": 5}}),
            Some("rule.event"),
        ),
        (
            json!({"name": "a", "audience_type": "engagement", "rule": {"pixel_id": "12", "retention_days": 5}}),
            Some("rule.event"),
        ),
        (
            json!({"name": "a", "audience_type": "engagement", "rule": {"pixel_id": "12", "event": "Lead", "retention_days": 5, "x": 1}}),
            Some("rule.x"),
        ),
        (
            json!({"name": "a", "rule": {"pixel_id": "12", "event": "Lead", "retention_days": 5}}),
            Some("rule"),
        ),
    ];
    for (body, field) in cases {
        let (status, err) = t.post("/api/audiences", &body).await;
        assert_error(status, &err, StatusCode::BAD_REQUEST, field);
    }
    let (_, list) = t.get("/api/audiences").await;
    assert_eq!(
        list["audiences"].as_array().unwrap().len(),
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn malformed_bodies_are_400_without_a_field() {
    let t = spawn_app().await;
    for body in ["{", "not json", "[1,2]", "\"name\"", ""] {
        let (status, err) = t.request("POST", "/api/audiences", Some(body)).await;
        assert_error(status, &err, StatusCode::BAD_REQUEST, None);
    }
}

#[tokio::test]
async fn a_duplicate_name_is_a_conflict() {
    let t = spawn_app().await;
    t.create_audience(json!({"name": "Dup"})).await;
    let (status, err) = t.post("/api/audiences", &json!({"name": "Dup"})).await;
    assert_error(status, &err, StatusCode::CONFLICT, None);
    let a = t.create_audience(json!({"name": "Other"})).await;
    let (status, err) = t
        .put(
            &format!("/api/audiences/{}", a["id"].as_str().unwrap()),
            &json!({"name": "Dup"}),
        )
        .await;
    assert_error(status, &err, StatusCode::CONFLICT, None);
}

#[tokio::test]
async fn put_changes_only_the_fields_sent_and_bumps_updated_at() {
    let t = spawn_app().await;
    let a = t
        .create_audience(json!({"name": "A", "description": "before", "sync_interval_hours": 24}))
        .await;
    let path = format!("/api/audiences/{}", a["id"].as_str().unwrap());
    let (status, b) = t.put(&path, &json!({"sync_interval_hours": 12})).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["sync_interval_hours"], 12);
    assert_eq!(b["description"], "before");
    assert_eq!(b["name"], "A");
    assert!(b["updated_at"].as_str().unwrap() > a["updated_at"].as_str().unwrap());
    assert_eq!(b["created_at"], a["created_at"]);

    let (_, c) = t.put(&path, &json!({"description": null})).await;
    assert!(c["description"].is_null());
    assert_eq!(c["sync_interval_hours"], 12);
}

#[tokio::test]
async fn put_validation() {
    let t = spawn_app().await;
    let a = t.create_audience(json!({"name": "A"})).await;
    let path = format!("/api/audiences/{}", a["id"].as_str().unwrap());
    let cases: Vec<(Value, Option<&str>)> = vec![
        (json!({"unknown": true}), Some("unknown")),
        (json!({"name": null}), Some("name")),
        (json!({"auto_sync": null}), Some("auto_sync")),
        (
            json!({"sync_interval_hours": -1}),
            Some("sync_interval_hours"),
        ),
        (json!({"status": "active"}), Some("status")),
        (json!({"total_synced": 5}), Some("total_synced")),
        // Read-only: a sync would otherwise replace, or a DELETE delete, that Meta audience.
        (
            json!({"meta_audience_id": "120210000000000"}),
            Some("meta_audience_id"),
        ),
        (json!({"meta_audience_id": null}), Some("meta_audience_id")),
        (json!({"audience_type": "lookalike"}), Some("segment_id")),
        (
            json!({"segment_id": uuid::Uuid::new_v4()}),
            Some("segment_id"),
        ),
    ];
    for (body, field) in cases {
        let (status, err) = t.put(&path, &body).await;
        assert_error(status, &err, StatusCode::BAD_REQUEST, field);
    }
    let (_, after) = t.get(&path).await;
    assert_eq!(after, a, "a rejected update changes nothing");
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let t = spawn_app().await;
    let missing = format!("/api/audiences/{}", uuid::Uuid::new_v4());
    for (method, body) in [
        ("GET", None),
        ("PUT", Some("{\"name\": \"x\"}")),
        ("DELETE", None),
    ] {
        let (status, err) = t.request(method, &missing, body).await;
        assert_error(status, &err, StatusCode::NOT_FOUND, None);
        let (status, err) = t.request(method, "/api/audiences/12345", body).await;
        assert_error(status, &err, StatusCode::BAD_REQUEST, Some("id"));
    }
    let (status, err) = t.get("/api/nothing-here").await;
    assert_error(status, &err, StatusCode::NOT_FOUND, None);
    let (status, err) = t.request("PATCH", "/api/audiences", Some("{}")).await;
    assert_error(status, &err, StatusCode::METHOD_NOT_ALLOWED, None);
    let (status, err) = t.get("/api/audiences/sync").await;
    assert_error(status, &err, StatusCode::METHOD_NOT_ALLOWED, None);
}

#[tokio::test]
async fn delete_removes_the_audience_and_its_members_but_keeps_the_audit_log() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "d", 3).await;
    let a = t
        .create_audience(json!({"name": "Gone", "segment_id": seg}))
        .await;
    let id = a["id"].as_str().unwrap();
    let synced = t.sync(id, "full").await;
    let (status, body) = t.delete(&format!("/api/audiences/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let members: i64 =
        t.db.query_one("SELECT count(*) FROM audience_member_sync", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(members, 0);
    let log_id = uuid::Uuid::parse_str(synced["sync_log_id"].as_str().unwrap()).unwrap();
    let log =
        t.db.query_one(
            "SELECT audience_id, status FROM audience_sync_log WHERE id = $1",
            &[&log_id],
        )
        .await
        .unwrap();
    assert_eq!(log.get::<_, Option<uuid::Uuid>>(0), None);
    assert_eq!(log.get::<_, String>(1), "completed");
}

#[tokio::test]
async fn include_members_metrics_and_sync_logs() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "inc", 5).await;
    let a = t
        .create_audience(json!({"name": "Inc", "segment_id": seg}))
        .await;
    let id = a["id"].as_str().unwrap();
    t.sync(id, "full").await;
    t.sync(id, "incremental").await;

    let (status, got) = t
        .get(&format!(
            "/api/audiences/{id}?include=members,metrics,sync_logs&members_limit=3"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let members = got["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(members
        .iter()
        .all(|m| m["is_synced"] == true && m.get("hashes").is_none()));
    assert_eq!(got["metrics"]["total_members"], 5);
    assert_eq!(got["metrics"]["synced_count"], 5);
    assert_eq!(got["metrics"]["sync_status"], "active");
    assert!(got["metrics"]["last_sync_date"].is_string());
    let logs = got["sync_logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0]["sync_type"], "incremental", "newest first");
    assert_eq!(logs[1]["sync_type"], "full");

    let (_, plain) = t.get(&format!("/api/audiences/{id}")).await;
    assert!(plain.get("members").is_none() && plain.get("metrics").is_none());

    for bad in [
        "include=everything",
        "members_limit=0",
        "members_limit=1001",
        "members_limit=ten",
    ] {
        let (status, err) = t.get(&format!("/api/audiences/{id}?{bad}")).await;
        let field = bad.split('=').next().unwrap();
        assert_error(status, &err, StatusCode::BAD_REQUEST, Some(field));
    }
}

/// Pages of `path` (which has a query string) with `limit`, following `next_cursor` to the end;
/// `between` runs after each page (to insert rows meanwhile). The ids, page by page.
async fn pages_of(
    t: &TestApp,
    path: &str,
    key: &str,
    limit: usize,
    mut between: impl FnMut(usize) -> Option<Value>,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let (items, next) = list_page(t, &url, key).await;
        assert!(items.len() <= limit, "{url}: {} items", items.len());
        let ids: Vec<String> = items
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        pages.push(ids);
        if let Some(body) = between(pages.len()) {
            t.create_audience(body).await;
        }
        match next {
            Some(c) => {
                assert_eq!(items.len(), limit, "only a full page has a next page");
                cursor = Some(c);
            }
            None => return pages,
        }
    }
}

#[tokio::test]
async fn list_pages_cover_every_audience_once_newest_first_across_inserts() {
    let t = spawn_app().await;
    // 23 audiences created in one statement share one created_at: the id breaks the tie.
    t.db.execute(
        "INSERT INTO custom_audience (name, is_active) \
         SELECT 'bulk ' || i, i % 3 <> 0 FROM generate_series(1, 23) i",
        &[],
    )
    .await
    .unwrap();
    for i in 0..4 {
        t.create_audience(json!({"name": format!("api {i}"), "is_active": i != 1}))
            .await;
    }
    let before: Vec<String> = support::column::<Uuid>(
        &t.db,
        "SELECT id FROM custom_audience ORDER BY created_at DESC, id DESC",
        &[],
    )
    .await
    .iter()
    .map(Uuid::to_string)
    .collect();
    assert_eq!(before.len(), 27);

    // New audiences created while paging sort before the cursor: they are not on later pages,
    // and the pages hold every audience that existed before, once, in order.
    let pages = pages_of(&t, "/api/audiences?", "audiences", 5, |n| {
        Some(json!({"name": format!("created after page {n}")}))
    })
    .await;
    assert_eq!(pages.len(), 6, "27 audiences in pages of 5: {pages:?}");
    assert_eq!(pages.concat(), before);

    // The filter holds across pages, with the same cursors.
    let active: Vec<String> = support::column::<Uuid>(
        &t.db,
        "SELECT id FROM custom_audience WHERE is_active ORDER BY created_at DESC, id DESC",
        &[],
    )
    .await
    .iter()
    .map(Uuid::to_string)
    .collect();
    let pages = pages_of(&t, "/api/audiences?is_active=true", "audiences", 4, |_| {
        None
    })
    .await;
    assert_eq!(pages.concat(), active);
    assert!(pages.len() > 2);

    // The default page is 100; exactly one full page has no next page.
    let (items, next) = list_page(&t, "/api/audiences", "audiences").await;
    assert_eq!((items.len(), next), (33, None));
    t.db.execute(
        "INSERT INTO custom_audience (name) SELECT 'more ' || i FROM generate_series(1, 67) i",
        &[],
    )
    .await
    .unwrap();
    let (items, next) = list_page(&t, "/api/audiences", "audiences").await;
    assert_eq!((items.len(), next), (100, None));
    t.create_audience(json!({"name": "the 101st"})).await;
    let (items, next) = list_page(&t, "/api/audiences", "audiences").await;
    assert_eq!(items.len(), 100);
    let (rest, last) = list_page(
        &t,
        &format!("/api/audiences?cursor={}", next.expect("a second page")),
        "audiences",
    )
    .await;
    assert_eq!((rest.len(), last), (1, None));
    let (items, _) = list_page(&t, "/api/audiences?limit=1000", "audiences").await;
    assert_eq!(items.len(), 101);
}

#[tokio::test]
async fn a_bad_limit_or_cursor_is_a_400_naming_it() {
    let t = spawn_app().await;
    for limit in ["0", "1001", "-1", "ten", "", "1.5"] {
        let (s, body) = t.get(&format!("/api/audiences?limit={limit}")).await;
        assert_error(s, &body, StatusCode::BAD_REQUEST, Some("limit"));
        let (s, body) = t.get(&format!("/api/segments?limit={limit}")).await;
        assert_error(s, &body, StatusCode::BAD_REQUEST, Some("limit"));
    }
    let short = "00".repeat(23);
    let long = "00".repeat(25);
    // Right length, but microseconds past any date chrono can hold.
    let far = format!("7fffffffffffffff{}", "00".repeat(16));
    // A date chrono holds but PostgreSQL does not (before 4713 BC): a 400, not a 500.
    let past = format!(
        "{:016x}{}",
        (-200_000_000_000_000_000i64) as u64,
        "00".repeat(16)
    );
    for cursor in ["", "zz", "not-a-cursor", &short, &long, &far, &past, "%00"] {
        for path in ["/api/audiences", "/api/segments"] {
            let (s, body) = t.get(&format!("{path}?cursor={cursor}")).await;
            assert_error(s, &body, StatusCode::BAD_REQUEST, Some("cursor"));
        }
    }
}

#[tokio::test]
async fn guardrail_holdout_and_value_settings_default_change_and_are_checked() {
    let t = spawn_app().await;
    let a = t.create_audience(json!({"name": "Safe"})).await;
    assert_eq!(a["max_removal_percent"], 50);
    assert_eq!(a["min_members"], 0);
    assert_eq!(a["holdout_percent"], 0);
    assert!(a["value_attribute"].is_null());
    let path = format!("/api/audiences/{}", a["id"].as_str().unwrap());

    let (s, b) = t
        .put(
            &path,
            &json!({"max_removal_percent": null, "min_members": 1000,
                    "holdout_percent": 10, "value_attribute": " lifetime_value "}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b["max_removal_percent"].is_null(),
        "null turns the limit off"
    );
    assert_eq!(b["min_members"], 1000);
    assert_eq!(b["holdout_percent"], 10);
    assert_eq!(b["value_attribute"], "lifetime_value");

    for (body, field) in [
        (json!({"max_removal_percent": 0}), "max_removal_percent"),
        (json!({"max_removal_percent": 101}), "max_removal_percent"),
        (json!({"min_members": -1}), "min_members"),
        (json!({"min_members": null}), "min_members"),
        (json!({"holdout_percent": 51}), "holdout_percent"),
        (json!({"holdout_percent": null}), "holdout_percent"),
        (json!({"value_attribute": " "}), "value_attribute"),
    ] {
        let (status, err) = t.put(&path, &body).await;
        assert_error(status, &err, StatusCode::BAD_REQUEST, Some(field));
    }
    let (s, err) = t
        .post(
            "/api/audiences",
            &json!({"name": "G", "destination": "google", "value_attribute": "ltv"}),
        )
        .await;
    assert_error(s, &err, StatusCode::BAD_REQUEST, Some("value_attribute"));
    let (s, b) = t
        .post(
            "/api/audiences",
            &json!({"name": "Off", "max_removal_percent": null}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(b["max_removal_percent"].is_null());
}
