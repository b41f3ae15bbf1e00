//! The Lambda path: the sample API Gateway v2 events in `events/` (the files `sam local invoke
//! -e` uses) turned into the `lambda_http` requests the binaries receive, handed to the same
//! handler function the binaries pass to the runtime: the audience functions first, then the
//! "segments" function (`events/segments-*.json`, `events/persons-*.json`).

use audience_sync::http::Group;
use serde_json::json;
use uuid::Uuid;

use crate::support::lambda::invoke;
use crate::support::spawn_app;

#[tokio::test]
async fn every_route_through_its_lambda_event() {
    let t = spawn_app().await;
    let seg = t.segment("Lambda segment").await;
    t.people_in_segment(seg, "lambda", 7).await;

    let (s, created) = invoke(&t, Group::Audiences, "audiences-create", None).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["name"], "High Engagers for Upsell");
    let id = created["id"].as_str().unwrap().to_string();
    // The event's audience has no segment; give it one so the sync has members.
    t.put(&format!("/api/audiences/{id}"), &json!({"segment_id": seg}))
        .await;

    let (s, list) = invoke(&t, Group::Audiences, "audiences-list", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["audiences"][0]["id"], id.as_str());

    let (s, synced) = invoke(&t, Group::Sync, "sync-one", Some(&id)).await;
    assert_eq!(s, 200, "{synced}");
    assert_eq!(synced["status"], "completed");
    assert_eq!(synced["synced_count"], 7);

    let (s, all) = invoke(&t, Group::Sync, "sync-all", None).await;
    assert_eq!(s, 200, "{all}");
    assert_eq!(all["total_audiences"], 1);

    let (s, got) = invoke(&t, Group::Audience, "audience-get", Some(&id)).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["metrics"]["synced_count"], 7);
    assert_eq!(got["members"].as_array().unwrap().len(), 7);
    assert_eq!(got["sync_logs"].as_array().unwrap().len(), 2);

    let (s, history) = invoke(&t, Group::Audience, "audience-history", Some(&id)).await;
    assert_eq!(s, 200, "{history}");
    assert_eq!(history["history"].as_array().unwrap().len(), 2);
    let (s, health) = invoke(&t, Group::Audiences, "health", None).await;
    assert_eq!(s, 200, "{health}");
    assert_eq!(health["database"]["migrations_current"], true);

    let (s, updated) = invoke(&t, Group::Audience, "audience-update", Some(&id)).await;
    assert_eq!(s, 200, "{updated}");
    assert_eq!(updated["sync_interval_hours"], 12);
    assert_eq!(updated["description"], "Updated description");

    let (s, _) = invoke(&t, Group::Audience, "audience-delete", Some(&id)).await;
    assert_eq!(s, 204);
    let (s, _) = invoke(&t, Group::Audience, "audience-get", Some(&id)).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn invalid_events_get_the_error_shape() {
    let t = spawn_app().await;
    let a = t.create_audience(json!({"name": "Target"})).await;
    let id = a["id"].as_str().unwrap();
    for (group, event, want, field) in [
        (
            Group::Audiences,
            "audiences-create-invalid",
            400,
            Some("sync_interval_hours"),
        ),
        (Group::Audiences, "audiences-create-malformed", 400, None),
        (Group::Audience, "audience-get-bad-id", 400, Some("id")),
        (
            Group::Audience,
            "audience-update-invalid",
            400,
            Some("lookalike_percentage"),
        ),
        (Group::Sync, "sync-invalid", 400, Some("sync_type")),
    ] {
        let (s, body) = invoke(&t, group, event, Some(id)).await;
        assert_eq!(s, want, "{event}: {body}");
        assert_eq!(body["error"]["field"].as_str(), field, "{event}: {body}");
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn a_function_serves_only_its_own_routes() {
    let t = spawn_app().await;
    let (s, body) = invoke(&t, Group::Sync, "audiences-list", None).await;
    assert_eq!(s, 404, "{body}");
    let (s, _) = invoke(&t, Group::Audiences, "sync-all", None).await;
    assert_eq!(s, 404);
}

// The "segments" function.

#[tokio::test]
async fn every_segment_and_person_route_through_its_lambda_event() {
    let t = spawn_app().await;

    let (s, imported) = invoke(&t, Group::Segments, "persons-upsert", None).await;
    assert_eq!(s, 200, "{imported}");
    assert_eq!(imported["upserted"], 2);
    assert_eq!(imported["errors"][0]["index"], 2);
    assert_eq!(imported["errors"][0]["field"], "email");

    let (s, preview) = invoke(&t, Group::Segments, "segments-preview", None).await;
    assert_eq!(s, 200, "{preview}");
    assert_eq!(preview["count"], 1, "user-1: 7 renders, US");

    let (s, created) = invoke(&t, Group::Segments, "segments-create", None).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["name"], "High Engagers");
    assert_eq!(created["member_count"], 1);
    let id = created["id"].as_str().unwrap().to_string();

    let (s, list) = invoke(&t, Group::Segments, "segments-list", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["segments"][0]["id"], id.as_str());

    let (s, got) = invoke(&t, Group::Segments, "segments-get", Some(&id)).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["audiences"], serde_json::json!([]));

    let (s, updated) = invoke(&t, Group::Segments, "segments-update", Some(&id)).await;
    assert_eq!(s, 200, "{updated}");
    assert_eq!(updated["member_count"], 0, "nobody has 10+ renders");
    assert_eq!(updated["description"], "Users with 10+ video renders");

    let (s, refreshed) = invoke(&t, Group::Segments, "segments-refresh", Some(&id)).await;
    assert_eq!(s, 200, "{refreshed}");
    assert!(refreshed["refreshed_at"].is_string());

    let (s, _) = invoke(&t, Group::Segments, "segments-delete", Some(&id)).await;
    assert_eq!(s, 204);
    let (s, _) = invoke(&t, Group::Segments, "segments-get", Some(&id)).await;
    assert_eq!(s, 404);

    let person: Uuid =
        t.db.query_one("SELECT id FROM person WHERE external_id = 'user-1'", &[])
            .await
            .unwrap()
            .get(0);
    let person = person.to_string();
    let (s, patched) = invoke(&t, Group::Segments, "persons-patch", Some(&person)).await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["marketing_opt_out"], true);

    let (s, _) = invoke(&t, Group::Segments, "persons-delete", Some(&person)).await;
    assert_eq!(s, 204);
    let (s, _) = invoke(&t, Group::Segments, "persons-delete", Some(&person)).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn invalid_events_get_the_error_shape_with_the_path_into_the_rule() {
    let t = spawn_app().await;
    let id = Uuid::new_v4().to_string();
    for (event, want, field) in [
        (
            "segments-create-invalid",
            400,
            Some("rule.rules[1].operator"),
        ),
        ("persons-patch-invalid", 400, Some("email")),
        ("segments-get", 404, None),
    ] {
        let (s, body) = invoke(&t, Group::Segments, event, Some(&id)).await;
        assert_eq!(s, want, "{event}: {body}");
        assert_eq!(body["error"]["field"].as_str(), field, "{event}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    let (_, body) = invoke(&t, Group::Segments, "segments-create-invalid", None).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("rule.rules[1].operator: \"≥\" is not an operator"),
        "{message}"
    );
}

#[tokio::test]
async fn the_segments_function_serves_only_its_own_routes() {
    let t = spawn_app().await;
    let (s, _) = invoke(&t, Group::Segments, "audiences-list", None).await;
    assert_eq!(s, 404);
    let (s, _) = invoke(&t, Group::Audiences, "segments-list", None).await;
    assert_eq!(s, 404);
    let (s, _) = invoke(&t, Group::Audience, "persons-delete", None).await;
    assert_eq!(s, 404);
}
