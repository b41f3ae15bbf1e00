//! The Lambda path: the sample API Gateway v2 events in `events/` (the files `sam local invoke
//! -e` uses) turned into the `lambda_http` requests the binaries receive, handed to the same
//! handler function the binaries pass to the runtime.

use audience_sync::http::Group;
use serde_json::json;

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
