//! The destination of an audience (DESIGN §8.1) through the REST API: the fields, their rules,
//! and the list filter.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{assert_error, list_page, spawn_app};

#[tokio::test]
async fn destination_defaults_to_meta_and_every_answer_carries_the_three_fields() {
    let t = spawn_app().await;
    let a = t
        .create_audience(json!({"name": "plain", "meta_business_account_id": "act_123"}))
        .await;
    assert_eq!(a["destination"], "meta");
    // On Meta the account and audience ids mirror the Meta fields.
    assert_eq!(a["destination_account_id"], "123");
    assert_eq!(a["meta_business_account_id"], "123");
    assert!(a["destination_audience_id"].is_null());
    let (s, listed) = t.get("/api/audiences").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed["audiences"][0]["destination"], "meta");
    assert_eq!(listed["audiences"][0]["destination_account_id"], "123");
    assert!(listed["audiences"][0]
        .as_object()
        .unwrap()
        .contains_key("destination_audience_id"));
}

#[tokio::test]
async fn account_ids_are_checked_and_normalized_per_platform() {
    let t = spawn_app().await;
    let seg = t.segment("s").await;
    for (i, (destination, given, stored)) in [
        ("google", "123-456-7890", "1234567890"),
        ("linkedin", "urn:li:sponsoredAccount:5123", "5123"),
        ("linkedin", "5124", "5124"),
        ("tiktok", "7012345678901234567", "7012345678901234567"),
        ("meta", "act_99", "99"),
    ]
    .into_iter()
    .enumerate()
    {
        let a = t
            .create_audience(json!({
                "name": format!("a{i}"), "segment_id": seg,
                "destination": destination, "destination_account_id": given,
            }))
            .await;
        assert_eq!(a["destination"], destination);
        assert_eq!(a["destination_account_id"], stored, "{destination} {given}");
    }
    for (destination, bad) in [
        ("google", "123-456-789"),
        ("google", "12345678901"),
        ("google", "abc4567890"),
        ("linkedin", "urn:li:organization:5"),
        ("tiktok", "adv-1"),
        ("meta", "x1"),
    ] {
        let (s, body) = t
            .post(
                "/api/audiences",
                &json!({"name": "bad", "destination": destination, "destination_account_id": bad}),
            )
            .await;
        assert_error(
            s,
            &body,
            StatusCode::BAD_REQUEST,
            Some("destination_account_id"),
        );
    }
}

#[tokio::test]
async fn an_unknown_destination_is_refused_listing_the_allowed_values() {
    let t = spawn_app().await;
    let (s, body) = t
        .post(
            "/api/audiences",
            &json!({"name": "a", "destination": "snapchat"}),
        )
        .await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("destination"));
    let message = body["error"]["message"].as_str().unwrap();
    for p in ["meta", "google", "linkedin", "tiktok"] {
        assert!(message.contains(p), "{message}");
    }
    let (s, body) = t.get("/api/audiences?destination=snapchat").await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("destination"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tiktok"));
}

#[tokio::test]
async fn meta_takes_either_account_field_but_not_two_different_ones() {
    let t = spawn_app().await;
    let a = t
        .create_audience(json!({"name": "a", "destination_account_id": "act_7"}))
        .await;
    assert_eq!(a["meta_business_account_id"], "7");
    let a = t
        .create_audience(json!({"name": "b", "destination_account_id": "7",
            "meta_business_account_id": "act_7"}))
        .await;
    assert_eq!(a["destination_account_id"], "7");
    let (s, body) = t
        .post(
            "/api/audiences",
            &json!({"name": "c", "destination_account_id": "7", "meta_business_account_id": "8"}),
        )
        .await;
    assert_error(
        s,
        &body,
        StatusCode::BAD_REQUEST,
        Some("destination_account_id"),
    );
    // The Meta field makes no sense elsewhere.
    let (s, body) = t
        .post(
            "/api/audiences",
            &json!({"name": "d", "destination": "tiktok", "meta_business_account_id": "8"}),
        )
        .await;
    assert_error(
        s,
        &body,
        StatusCode::BAD_REQUEST,
        Some("meta_business_account_id"),
    );
}

#[tokio::test]
async fn destination_and_its_account_are_fixed_at_create() {
    let t = spawn_app().await;
    let a = t
        .create_audience(json!({"name": "a", "destination": "linkedin",
            "destination_account_id": "5123"}))
        .await;
    let path = format!("/api/audiences/{}", a["id"].as_str().unwrap());
    let (s, body) = t.put(&path, &json!({"destination": "google"})).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("destination"));
    let (s, body) = t.put(&path, &json!({"destination": null})).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("destination"));
    let (s, body) = t
        .put(&path, &json!({"destination_account_id": "5124"}))
        .await;
    assert_error(
        s,
        &body,
        StatusCode::BAD_REQUEST,
        Some("destination_account_id"),
    );
    let (s, body) = t.put(&path, &json!({"destination_account_id": null})).await;
    assert_error(
        s,
        &body,
        StatusCode::BAD_REQUEST,
        Some("destination_account_id"),
    );
    // The current values, in any accepted spelling, are fine.
    let (s, body) = t
        .put(
            &path,
            &json!({"destination": "linkedin",
                "destination_account_id": "urn:li:sponsoredAccount:5123", "name": "renamed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "renamed");
    assert_eq!(body["destination_account_id"], "5123");
    // Read-only, like meta_audience_id.
    for body in [
        json!({"name": "x", "destination_audience_id": "1"}),
        json!({"destination_audience_id": "1"}),
    ] {
        let (s, answer) = if body.get("name").is_some() {
            t.post("/api/audiences", &body).await
        } else {
            t.put(&path, &body).await
        };
        assert_error(
            s,
            &answer,
            StatusCode::BAD_REQUEST,
            Some("destination_audience_id"),
        );
    }
}

#[tokio::test]
async fn audience_types_follow_what_each_platform_can_build() {
    let t = spawn_app().await;
    let seg = t.segment("s").await;
    let lookalike = |name: &str, destination: &str| {
        json!({"name": name, "destination": destination, "audience_type": "lookalike",
            "segment_id": seg, "lookalike_country": "US", "lookalike_percentage": 5})
    };
    let why = |body: &Value| body["error"]["message"].as_str().unwrap().to_string();
    let (s, body) = t.post("/api/audiences", &lookalike("g", "google")).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("audience_type"));
    assert!(
        why(&body).contains("similar segments were retired in 2023"),
        "{body}"
    );
    let (s, body) = t.post("/api/audiences", &lookalike("l", "linkedin")).await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("audience_type"));
    assert!(why(&body).contains("LinkedIn"), "{body}");
    let a = t.create_audience(lookalike("t", "tiktok")).await;
    assert_eq!(a["audience_type"], "lookalike");
    // TikTok's lookalike needs its country and size as Meta's does.
    let (s, body) = t
        .post(
            "/api/audiences",
            &json!({"name": "t2", "destination": "tiktok", "audience_type": "lookalike",
                "segment_id": seg, "lookalike_percentage": 5}),
        )
        .await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("lookalike_country"));
    let engagement = |destination: &str| {
        json!({"name": format!("e-{destination}"), "destination": destination,
            "audience_type": "engagement",
            "rule": {"pixel_id": "1", "event": "ViewContent", "retention_days": 30}})
    };
    for destination in ["google", "linkedin", "tiktok"] {
        let (s, body) = t.post("/api/audiences", &engagement(destination)).await;
        assert_error(s, &body, StatusCode::BAD_REQUEST, Some("audience_type"));
        assert!(why(&body).contains("Meta only"), "{body}");
    }
    t.create_audience(engagement("meta")).await;
    // A custom list goes anywhere; a PUT cannot turn one into what its platform cannot build.
    let c = t
        .create_audience(json!({"name": "c", "destination": "google", "segment_id": seg}))
        .await;
    let (s, body) = t
        .put(
            &format!("/api/audiences/{}", c["id"].as_str().unwrap()),
            &json!({"audience_type": "lookalike", "lookalike_country": "US",
                "lookalike_percentage": 1}),
        )
        .await;
    assert_error(s, &body, StatusCode::BAD_REQUEST, Some("audience_type"));
}

#[tokio::test]
async fn the_list_filters_on_destination_and_keeps_paging() {
    let t = spawn_app().await;
    for i in 0..5 {
        for destination in ["meta", "tiktok"] {
            t.create_audience(json!({"name": format!("{destination}-{i}"),
                "destination": destination}))
                .await;
        }
    }
    let mut names = Vec::new();
    let mut path = "/api/audiences?destination=tiktok&limit=2".to_string();
    loop {
        let (items, next) = list_page(&t, &path, "audiences").await;
        assert!(items.len() <= 2);
        names.extend(items.iter().map(|a| {
            assert_eq!(a["destination"], "tiktok");
            a["name"].as_str().unwrap().to_string()
        }));
        match next {
            Some(c) => path = format!("/api/audiences?destination=tiktok&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        names,
        ["tiktok-4", "tiktok-3", "tiktok-2", "tiktok-1", "tiktok-0"]
    );
    let (_, all) = t.get("/api/audiences?limit=100").await;
    assert_eq!(all["audiences"].as_array().unwrap().len(), 10);
}

/// The type of each sync the audience had, oldest first.
async fn sync_types(t: &crate::support::TestApp, id: &str) -> Vec<String> {
    let id = uuid::Uuid::parse_str(id).unwrap();
    crate::support::column(
        &t.db,
        "SELECT sync_type FROM audience_sync_log WHERE audience_id = $1 ORDER BY created_at",
        &[&id],
    )
    .await
}

/// Ages the audience's completed full syncs (and its creation) by `days`.
async fn age_full_syncs(t: &crate::support::TestApp, id: &str, days: i32) {
    let id = uuid::Uuid::parse_str(id).unwrap();
    t.db.execute(
        "UPDATE audience_sync_log SET completed_at = completed_at - make_interval(days => $2) \
         WHERE audience_id = $1 AND sync_type = 'full'",
        &[&id, &days],
    )
    .await
    .unwrap();
    t.db.execute(
        "UPDATE custom_audience SET created_at = created_at - make_interval(days => $2) \
         WHERE id = $1",
        &[&id, &days],
    )
    .await
    .unwrap();
}

/// Google and TikTok memberships lapse unless re-sent (540 and 365 days): an automatic sync
/// (no type asked, or the scheduler's) re-sends everyone when the last full sync is older
/// than the platform's refresh period; Meta's memberships do not lapse.
#[tokio::test]
async fn an_automatic_sync_refreshes_memberships_before_the_platform_lets_them_lapse() {
    use audience_sync::sync::scheduler::{tick, TickOptions};
    use std::time::{Duration, Instant};
    let t = spawn_app().await;
    let seg = t.segment("s").await;
    t.people_in_segment(seg, "p", 3).await;
    let mut ids = Vec::new();
    for destination in ["tiktok", "google", "meta"] {
        let a = t
            .create_audience(json!({"name": destination, "destination": destination,
                "segment_id": seg, "auto_sync": true}))
            .await;
        ids.push(a["id"].as_str().unwrap().to_string());
    }
    let auto = |id: &str| json!({"audience_id": id});
    for id in &ids {
        // First sync full, then incremental while the last full one is recent.
        for _ in 0..2 {
            let (s, r) = t.post("/api/audiences/sync", &auto(id)).await;
            assert_eq!(
                (s, &r["status"]),
                (StatusCode::OK, &json!("completed")),
                "{r}"
            );
        }
        assert_eq!(sync_types(&t, id).await, ["full", "incremental"]);
    }
    let [tiktok, google, meta] = [&ids[0], &ids[1], &ids[2]];
    // TikTok: refreshed 305 days on, not at 304.
    age_full_syncs(&t, tiktok, 304).await;
    t.post("/api/audiences/sync", &auto(tiktok)).await;
    assert_eq!(sync_types(&t, tiktok).await.last().unwrap(), "incremental");
    age_full_syncs(&t, tiktok, 1).await;
    // An explicit type is kept as asked.
    t.sync(tiktok, "incremental").await;
    assert_eq!(sync_types(&t, tiktok).await.last().unwrap(), "incremental");
    t.post("/api/audiences/sync", &auto(tiktok)).await;
    assert_eq!(sync_types(&t, tiktok).await.last().unwrap(), "full");
    // Google at 480 days; Meta never.
    age_full_syncs(&t, google, 479).await;
    t.post("/api/audiences/sync", &auto(google)).await;
    assert_eq!(sync_types(&t, google).await.last().unwrap(), "incremental");
    age_full_syncs(&t, meta, 2000).await;
    t.post("/api/audiences/sync", &auto(meta)).await;
    assert_eq!(sync_types(&t, meta).await.last().unwrap(), "incremental");

    // The scheduler's syncs follow the same rule.
    age_full_syncs(&t, google, 1).await;
    t.db.execute(
        "UPDATE custom_audience SET last_synced_at = now() - interval '2 days'",
        &[],
    )
    .await
    .unwrap();
    let options = TickOptions {
        deadline: Instant::now() + Duration::from_secs(60),
        reserve: Duration::from_secs(1),
        lease: Duration::from_secs(1),
    };
    tick(&t.app, options).await.unwrap();
    assert_eq!(sync_types(&t, google).await.last().unwrap(), "full");
    assert_eq!(sync_types(&t, tiktok).await.last().unwrap(), "incremental");
    assert_eq!(sync_types(&t, meta).await.last().unwrap(), "incremental");
}
