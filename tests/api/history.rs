//! `GET /api/audiences/{id}/history` (DESIGN §8.4): a point per finished sync, newest first and
//! paged, with the platform's size read back after it (Meta's approximate bounds, also kept on
//! the audience's metrics) and the estimated match rate; nulls where the platform gives none.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::fake_meta::FakeMeta;
use crate::support::{list_page, spawn_app_with};

#[tokio::test]
async fn each_sync_records_a_point_with_metas_size_read_back() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config())).await;
    let seg = t.segment("Buyers").await;
    let people = t.people_in_segment(seg, "buyer", 40).await;
    let a = t
        .create_audience(json!({"name": "Buyers", "segment_id": seg, "max_removal_percent": null}))
        .await;
    let id = a["id"].as_str().unwrap().to_string();
    let first = t.sync(&id, "full").await;
    assert_eq!(first["status"], "completed", "{first}");

    // Ten people leave; the next sync removes them.
    let gone: Vec<Uuid> = people[..10].to_vec();
    t.db.execute(
        "DELETE FROM segment_member WHERE person_id = ANY($1)",
        &[&gone],
    )
    .await
    .unwrap();
    let second = t.sync(&id, "incremental").await;
    assert_eq!(second["status"], "completed", "{second}");

    let (status, body) = t.get(&format!("/api/audiences/{id}/history")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let points = body["history"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{body}");
    assert_eq!(body["next_cursor"], Value::Null);
    let (newest, oldest) = (&points[0], &points[1]);
    assert_eq!(newest["sync_log_id"], second["sync_log_id"]);
    assert_eq!(oldest["sync_log_id"], first["sync_log_id"]);

    // The fake answers its member count ± 10 % as Meta's bounds.
    assert_eq!(oldest["sent"], 40);
    assert_eq!(oldest["failed"], 0);
    assert_eq!(oldest["removed"], 0);
    assert_eq!(oldest["approximate_count_lower_bound"], 36);
    assert_eq!(oldest["approximate_count_upper_bound"], 44);
    assert_eq!(oldest["match_rate"], 1.0);
    assert_eq!(oldest["operation_status"]["code"], 200, "{oldest}");
    assert!(oldest["delivery_status"].is_object(), "{oldest}");
    assert_eq!(newest["removed"], 10);
    assert_eq!(newest["approximate_count_lower_bound"], 27);
    assert_eq!(newest["approximate_count_upper_bound"], 33);
    // Midpoint 30 over the 30 members Meta should hold.
    assert_eq!(newest["match_rate"], 1.0);
    assert!(newest["at"].as_str().unwrap() >= oldest["at"].as_str().unwrap());

    // The same numbers the audience's metrics show.
    let metrics = t.platform_metrics(&id).await;
    assert_eq!(
        metrics["approximate_count_lower_bound"],
        newest["approximate_count_lower_bound"]
    );
    assert_eq!(
        metrics["approximate_count_upper_bound"],
        newest["approximate_count_upper_bound"]
    );

    // Paged like every list: one a page, the cursor leads to the older point.
    let (page, next) = list_page(
        &t,
        &format!("/api/audiences/{id}/history?limit=1"),
        "history",
    )
    .await;
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["sync_log_id"], second["sync_log_id"]);
    let cursor = next.expect("a second page");
    let (page, next) = list_page(
        &t,
        &format!("/api/audiences/{id}/history?limit=1&cursor={cursor}"),
        "history",
    )
    .await;
    assert_eq!(page[0]["sync_log_id"], first["sync_log_id"]);
    assert_eq!(next, None);
}

#[tokio::test]
async fn without_a_platform_size_the_figures_are_null_and_bad_requests_are_named() {
    let t = spawn_app_with(None).await;
    let seg = t.segment("Everyone").await;
    t.people_in_segment(seg, "p", 5).await;
    let a = t
        .create_audience(json!({"name": "Everyone", "segment_id": seg}))
        .await;
    let id = a["id"].as_str().unwrap();
    t.sync(id, "full").await;
    let (status, body) = t.get(&format!("/api/audiences/{id}/history")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let point = &body["history"][0];
    assert_eq!(point["sent"], 5);
    for field in [
        "approximate_count_lower_bound",
        "approximate_count_upper_bound",
        "match_rate",
        "operation_status",
        "delivery_status",
    ] {
        assert_eq!(point[field], Value::Null, "{field}: {point}");
    }

    let (status, body) = t.get(&format!("/api/audiences/{id}/history?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "limit");
    let (status, body) = t
        .get(&format!("/api/audiences/{id}/history?cursor=zz"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "cursor");
    let unknown = Uuid::new_v4();
    let (status, _) = t.get(&format!("/api/audiences/{unknown}/history")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
