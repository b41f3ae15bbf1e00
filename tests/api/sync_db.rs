//! Syncs with Meta not configured: the database side of every sync type.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{self, assert_error, spawn_app, TestApp};

async fn audience_on(t: &TestApp, seg: Uuid, name: &str) -> String {
    let a = t
        .create_audience(json!({"name": name, "segment_id": seg}))
        .await;
    a["id"].as_str().unwrap().to_string()
}

async fn log_row(t: &TestApp, result: &Value) -> tokio_postgres::Row {
    let id = Uuid::parse_str(result["sync_log_id"].as_str().unwrap()).unwrap();
    t.db.query_one(
        "SELECT status, synced_count, failed_count, meta_response, details, started_at, completed_at, error_message \
         FROM audience_sync_log WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn full_sync_marks_every_member_and_logs_it() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "full", 25).await;
    let id = audience_on(&t, seg, "Full").await;

    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed");
    assert_eq!(r["synced_count"], 25);
    assert_eq!(r["failed_count"], 0);
    assert_eq!(r["audience_id"], id);

    let log = log_row(&t, &r).await;
    assert_eq!(log.get::<_, String>("status"), "completed");
    assert_eq!(log.get::<_, i32>("synced_count"), 25);
    assert_eq!(
        log.get::<_, Value>("meta_response"),
        json!({"skipped": "meta not configured"})
    );
    assert!(log
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>("started_at")
        .is_some());
    assert!(log
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>("completed_at")
        .is_some());

    let mut synced = t.member_ids(&id, "is_synced AND hashes IS NOT NULL").await;
    let mut want = people.clone();
    synced.sort();
    want.sort();
    assert_eq!(synced, want);
    let waiting = support::count(&t.db, "SELECT count(*) FROM audience_member_joiner", &[]).await;
    assert_eq!(waiting, 0, "every joiner got its member row");

    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(a["status"], "active");
    assert_eq!(a["total_synced"], 25);
    assert!(a["last_synced_at"].is_string());
    assert!(a["sync_error_message"].is_null());
}

#[tokio::test]
async fn incremental_adds_joiners_removes_leavers_and_skips_the_unchanged() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "inc", 10).await;
    let id = audience_on(&t, seg, "Inc").await;
    t.sync(&id, "incremental").await;

    // No change: nothing to send.
    let again = t.sync(&id, "incremental").await;
    assert_eq!(
        (
            again["synced_count"].as_i64(),
            again["failed_count"].as_i64()
        ),
        (Some(0), Some(0))
    );

    let joiners = t.people_in_segment(seg, "new", 3).await;
    let leaver = people[0];
    t.db.execute(
        "DELETE FROM segment_member WHERE person_id = $1",
        &[&leaver],
    )
    .await
    .unwrap();
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["synced_count"], 3, "only the joiners were sent: {r}");
    let log = log_row(&t, &r).await;
    assert_eq!(log.get::<_, Value>("details")["removed"], 1);

    let members = t.member_ids(&id, "true").await;
    assert_eq!(members.len(), 12);
    assert!(!members.contains(&leaver));
    assert!(joiners.iter().all(|j| members.contains(j)));
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(a["total_synced"], 12);
}

#[tokio::test]
async fn opted_out_people_are_never_members_and_opting_out_makes_a_leaver() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "opt", 4).await;
    t.db.execute(
        "UPDATE person SET marketing_opt_out = true WHERE id = $1",
        &[&people[0]],
    )
    .await
    .unwrap();
    let id = audience_on(&t, seg, "Opt").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["synced_count"], 3);
    assert!(!t.member_ids(&id, "true").await.contains(&people[0]));

    t.db.execute(
        "UPDATE person SET marketing_opt_out = true WHERE id = $1",
        &[&people[1]],
    )
    .await
    .unwrap();
    t.sync(&id, "incremental").await;
    let members = t.member_ids(&id, "true").await;
    assert_eq!(members.len(), 2);
    assert!(!members.contains(&people[1]));
}

#[tokio::test]
async fn members_without_a_usable_identifier_count_as_failed_and_are_retried() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "ok", 2).await;
    let no_email = t.person(seg, Some("not-an-address"), None).await;
    let nothing = t.person(seg, None, None).await;
    let phone_only = t.person(seg, None, Some("(650) 555-0123")).await;
    let id = audience_on(&t, seg, "Ids").await;

    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed");
    assert_eq!(r["synced_count"], 3, "{r}");
    assert_eq!(r["failed_count"], 2);
    let failed = t
        .member_ids(&id, "NOT is_synced AND failure_reason IS NOT NULL")
        .await;
    let mut want = vec![no_email, nothing];
    want.sort();
    assert_eq!(failed, want);
    assert!(t.member_ids(&id, "is_synced").await.contains(&phone_only));
    let reason: String =
        t.db.query_one(
            "SELECT failure_reason FROM audience_member_sync WHERE person_id = $1",
            &[&no_email],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !reason.contains("not-an-address"),
        "no PII in the reason: {reason}"
    );

    // Failures are retried: once fixed, the next incremental sends them.
    t.db.execute(
        "UPDATE person SET email = 'fixed@example.com' WHERE id = $1",
        &[&no_email],
    )
    .await
    .unwrap();
    let r = t.sync(&id, "incremental").await;
    assert_eq!(
        (r["synced_count"].as_i64(), r["failed_count"].as_i64()),
        (Some(1), Some(1))
    );
    let (_, a) = t.get(&format!("/api/audiences/{id}?include=metrics")).await;
    assert_eq!(a["metrics"]["total_members"], 5);
    assert_eq!(a["metrics"]["synced_count"], 4);
}

#[tokio::test]
async fn update_resends_members_whose_identifiers_changed() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "upd", 6).await;
    let id = audience_on(&t, seg, "Upd").await;
    t.sync(&id, "full").await;
    let before: Vec<u8> =
        t.db.query_one(
            "SELECT hashes FROM audience_member_sync WHERE person_id = $1",
            &[&people[2]],
        )
        .await
        .unwrap()
        .get(0);

    t.db.execute(
        "UPDATE person SET email = 'changed@example.com' WHERE id = $1",
        &[&people[2]],
    )
    .await
    .unwrap();
    let inc = t.sync(&id, "incremental").await;
    assert_eq!(
        inc["synced_count"], 0,
        "incremental does not look at changed members"
    );

    let upd = t.sync(&id, "update").await;
    assert_eq!(upd["synced_count"], 1, "{upd}");
    let details = log_row(&t, &upd).await.get::<_, Value>("details");
    assert_eq!(details["changed"], 1);
    // Read from the change log: only the changed person is re-hashed, not the other five.
    assert_eq!(details["examined"], 1, "{details}");
    let after: Vec<u8> =
        t.db.query_one(
            "SELECT hashes FROM audience_member_sync WHERE person_id = $1",
            &[&people[2]],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(before, after);
    let again = t.sync(&id, "update").await;
    assert_eq!(again["synced_count"], 0);
}

#[tokio::test]
async fn full_sync_of_an_emptied_segment_leaves_no_members() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "e", 5).await;
    let id = audience_on(&t, seg, "Empty").await;
    t.sync(&id, "full").await;
    t.db.execute("DELETE FROM segment_member WHERE segment_id = $1", &[&seg])
        .await
        .unwrap();
    // The removal guardrails block it (tests/api/guard.rs) until forced.
    let blocked = t.sync(&id, "full").await;
    assert_eq!(blocked["status"], "blocked", "{blocked}");
    assert_eq!(t.member_ids(&id, "true").await.len(), 5);
    let r = t.sync_forced(&id, "full").await;
    assert_eq!(r["status"], "completed");
    assert_eq!(t.member_ids(&id, "true").await.len(), 0);
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(a["total_synced"], 0);
}

#[tokio::test]
async fn an_erased_person_leaves_the_audience() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "er", 3).await;
    let id = audience_on(&t, seg, "Erase").await;
    t.sync(&id, "full").await;
    t.db.execute("DELETE FROM person WHERE id = $1", &[&people[0]])
        .await
        .unwrap();
    let orphan: i64 = t
        .db
        .query_one("SELECT count(*) FROM audience_member_sync WHERE person_id IS NULL AND hashes IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        orphan, 1,
        "the hashes to remove survive the erasure until the next sync"
    );
    let r = t.sync(&id, "incremental").await;
    assert_eq!(
        log_row(&t, &r).await.get::<_, Value>("details")["removed"],
        1
    );
    let left: i64 =
        t.db.query_one("SELECT count(*) FROM audience_member_sync", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(left, 2);
}

#[tokio::test]
async fn a_sync_that_cannot_run_fails_with_a_log_that_says_why() {
    let t = spawn_app().await;
    let a = t.create_audience(json!({"name": "No segment"})).await;
    let id = a["id"].as_str().unwrap();
    let r = t.sync(id, "full").await;
    assert_eq!(r["status"], "failed");
    let log = log_row(&t, &r).await;
    assert_eq!(log.get::<_, String>("status"), "failed");
    assert!(log.get::<_, String>("error_message").contains("segment"));
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(a["status"], "failed");
    assert!(a["sync_error_message"]
        .as_str()
        .unwrap()
        .contains("segment"));
}

#[tokio::test]
async fn a_second_sync_while_one_runs_is_a_conflict() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "c", 2).await;
    let id = audience_on(&t, seg, "Busy").await;
    // Another worker's session holds this audience's sync lock.
    let other = support::connect(&t.db_url).await;
    let held: bool = other
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended($1::text, 7300))",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(held);
    let body = json!({"audience_id": id, "sync_type": "full"});
    let (status, err) = t.post("/api/audiences/sync", &body).await;
    assert_error(status, &err, StatusCode::CONFLICT, None);
    let (status, err) = t.delete(&format!("/api/audiences/{id}")).await;
    assert_error(status, &err, StatusCode::CONFLICT, None);
    let logs: i64 =
        t.db.query_one("SELECT count(*) FROM audience_sync_log", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(logs, 0, "a refused sync writes no log row");

    // The claim dies with its holder's session.
    drop(other);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed");
}

#[tokio::test]
async fn concurrent_syncs_of_one_audience_never_both_run() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "race", 20_000).await;
    let id = audience_on(&t, seg, "Race").await;
    let body = json!({"audience_id": id, "sync_type": "full"});
    let (a, b) = tokio::join!(
        t.post("/api/audiences/sync", &body),
        t.post("/api/audiences/sync", &body)
    );
    let statuses = [a.0, b.0];
    let completed: i64 =
        t.db.query_one(
            "SELECT count(*) FROM audience_sync_log WHERE status = 'completed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let oks = statuses.iter().filter(|s| **s == StatusCode::OK).count() as i64;
    assert_eq!(
        oks, completed,
        "every accepted sync completed: {statuses:?}"
    );
    if oks == 1 {
        assert!(statuses.contains(&StatusCode::CONFLICT));
    }
    let members = t.member_ids(&id, "is_synced").await.len();
    assert_eq!(members, 20_000);
}

#[tokio::test]
async fn an_abandoned_sync_log_is_marked_failed_by_the_next_sync() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "ab", 2).await;
    let id = audience_on(&t, seg, "Abandoned").await;
    let aid = Uuid::parse_str(&id).unwrap();
    let dead: Uuid =
        t.db.query_one(
            "INSERT INTO audience_sync_log (audience_id, sync_type, status, started_at) \
             VALUES ($1, 'full', 'in_progress', now() - interval '1 hour') RETURNING id",
            &[&aid],
        )
        .await
        .unwrap()
        .get(0);
    t.sync(&id, "incremental").await;
    let row =
        t.db.query_one(
            "SELECT status, error_message FROM audience_sync_log WHERE id = $1",
            &[&dead],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert!(row.get::<_, String>(1).contains("abandoned"));
}

#[tokio::test]
async fn sync_all_covers_every_active_audience() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "all", 4).await;
    let a = audience_on(&t, seg, "A").await;
    let b = audience_on(&t, seg, "B").await;
    let off = t
        .create_audience(json!({"name": "Off", "segment_id": seg, "is_active": false}))
        .await;
    let (status, r) = t.request("POST", "/api/audiences/sync", None).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["total_audiences"], 2);
    assert_eq!(r["synced"], 2);
    assert_eq!(r["failed"], 0);
    let ids: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["audience_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&a.as_str()) && ids.contains(&b.as_str()));
    assert!(!ids.contains(&off["id"].as_str().unwrap()));
    assert!(r["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["synced_count"] == 4));
}

#[tokio::test]
async fn sync_request_validation() {
    let t = spawn_app().await;
    let missing = Uuid::new_v4();
    let cases: Vec<(Value, StatusCode, Option<&str>)> = vec![
        (
            json!({"audience_id": "nope"}),
            StatusCode::BAD_REQUEST,
            Some("audience_id"),
        ),
        (
            json!({"sync_type": "full"}),
            StatusCode::BAD_REQUEST,
            Some("audience_id"),
        ),
        (
            json!({"audience_id": missing, "sync_type": "everything"}),
            StatusCode::BAD_REQUEST,
            Some("sync_type"),
        ),
        (
            json!({"audience_id": missing, "extra": 1}),
            StatusCode::BAD_REQUEST,
            Some("extra"),
        ),
        (
            json!({"audience_id": missing, "sync_type": "full"}),
            StatusCode::NOT_FOUND,
            None,
        ),
    ];
    for (body, want, field) in cases {
        let (status, err) = t.post("/api/audiences/sync", &body).await;
        assert_error(status, &err, want, field);
    }
}

#[tokio::test]
async fn include_members_reads_along_an_index_not_a_sort_of_the_audience() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "ix", 20_000).await;
    let id = audience_on(&t, seg, "Indexed").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["synced_count"], 20_000, "{r}");
    t.db.batch_execute("ANALYZE audience_member_sync")
        .await
        .unwrap();
    let audience = Uuid::parse_str(&id).unwrap();
    let plan: Value =
        t.db.query_one(
            &format!(
                "EXPLAIN (FORMAT JSON) {}",
                audience_sync::sync::member_store::LIST_SQL
            ),
            &[&audience, &100i64],
        )
        .await
        .unwrap()
        .get(0);
    let text = plan.to_string();
    assert!(!text.contains("\"Sort\""), "sorts the audience: {text}");
    assert!(text.contains("Index Scan"), "{text}");

    let (_, a) = t
        .get(&format!(
            "/api/audiences/{id}?include=members&members_limit=5"
        ))
        .await;
    let ids: Vec<&str> = a["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["person_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        (ids.len(), &ids),
        (5, &sorted),
        "the first five in person order"
    );
}
