//! The SQL helper functions of the feature document, called directly as other tools would.

use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::{self, spawn_app, TestApp};

fn sha256_hex(s: &str) -> String {
    hex_lower(&Sha256::digest(s.as_bytes()))
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A new audience on `seg`, by its id.
async fn audience_on(t: &TestApp, seg: Uuid, name: &str) -> Uuid {
    let a = t
        .create_audience(json!({"name": name, "segment_id": seg}))
        .await;
    Uuid::parse_str(a["id"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn sync_audience_members_reconciles_membership_set_based() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "fn", 4).await;
    let id = audience_on(&t, seg, "Fn").await;

    let row =
        t.db.query_one(
            "SELECT synced_count, failed_count FROM sync_audience_members($1, 'full')",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, i32>(1)),
        (0, 0),
        "joiners start unsynced"
    );
    let n: i64 =
        t.db.query_one(
            "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1 AND NOT is_synced",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);

    // A leaver never accepted anywhere simply goes; one already synced waits for its removal.
    t.db.execute("UPDATE audience_member_sync SET is_synced = true, hashes = decode(repeat('ab', 320), 'hex') WHERE person_id = $1", &[&people[1]]).await.unwrap();
    t.db.execute(
        "DELETE FROM segment_member WHERE person_id = ANY($1)",
        &[&vec![people[0], people[1]]],
    )
    .await
    .unwrap();
    let row =
        t.db.query_one(
            "SELECT synced_count, failed_count FROM sync_audience_members($1, 'incremental')",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 0);
    let rows =
        t.db.query(
            "SELECT person_id, removal_pending FROM audience_member_sync WHERE audience_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let state: Vec<(Uuid, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(state.len(), 3);
    assert!(!state.iter().any(|(p, _)| *p == people[0]));
    assert!(state.contains(&(people[1], true)));

    // Back in the segment before the removal happened: unflagged.
    t.add_to_segment(seg, people[1]).await;
    t.db.query_one("SELECT * FROM sync_audience_members($1, 'update')", &[&id])
        .await
        .unwrap();
    let pending: bool =
        t.db.query_one(
            "SELECT removal_pending FROM audience_member_sync WHERE person_id = $1",
            &[&people[1]],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!pending);

    let err =
        t.db.query_one(
            "SELECT * FROM sync_audience_members($1, 'sometimes')",
            &[&id],
        )
        .await
        .unwrap_err();
    assert!(
        err.as_db_error().unwrap().message().contains("sync type"),
        "{err:?}"
    );
    let err =
        t.db.query_one(
            "SELECT * FROM sync_audience_members($1, 'full')",
            &[&Uuid::new_v4()],
        )
        .await
        .unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("does not exist"),
        "{err:?}"
    );
}

#[tokio::test]
async fn export_returns_the_hashes_meta_receives_and_metrics_count() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    let person = t
        .person(seg, Some("  Mary@Example.com "), Some("+1 (555) 987-6543"))
        .await;
    t.db.execute(
        "UPDATE person SET first_name = 'Mary', last_name = 'O''Brien', city = 'San Francisco', country = ' us ' WHERE id = $1",
        &[&person],
    )
    .await
    .unwrap();
    t.person(seg, None, None).await;
    let a = t
        .create_audience(json!({"name": "Export", "segment_id": seg}))
        .await;
    let id = a["id"].as_str().unwrap();
    t.sync(id, "full").await;
    let aid = Uuid::parse_str(id).unwrap();

    let rows = t
        .db
        .query("SELECT person_id, email, phone, first_name, last_name, country, city FROM get_audience_members_for_export($1)", &[&aid])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only synced members are exported");
    let r = &rows[0];
    assert_eq!(r.get::<_, Uuid>(0), person);
    assert_eq!(
        r.get::<_, String>(1),
        "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"
    );
    assert_eq!(
        r.get::<_, String>(2),
        "1ef970831d7963307784fa8688e8fce101a15685d62aa765fed23f3a2c576a4e"
    );
    assert_eq!(r.get::<_, String>(3), sha256_hex("mary"));
    assert_eq!(r.get::<_, String>(4), sha256_hex("obrien"));
    assert_eq!(r.get::<_, String>(5), sha256_hex("us"));
    assert_eq!(r.get::<_, String>(6), sha256_hex("sanfrancisco"));

    let m = t
        .db
        .query_one("SELECT total_members, synced_count, last_sync_date, sync_status FROM get_audience_metrics($1)", &[&aid])
        .await
        .unwrap();
    assert_eq!(m.get::<_, i32>(0), 2);
    assert_eq!(m.get::<_, i32>(1), 1);
    assert!(m
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>(2)
        .is_some());
    assert_eq!(m.get::<_, String>(3), "active");
}

#[tokio::test]
async fn empty_fields_export_as_empty_strings_not_hashes_of_nothing() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.person(seg, Some("solo@example.com"), None).await;
    let aid = audience_on(&t, seg, "Sparse").await;
    t.sync(&aid.to_string(), "full").await;
    let r =
        t.db.query_one(
            "SELECT email, phone, first_name FROM get_audience_members_for_export($1)",
            &[&aid],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), sha256_hex("solo@example.com"));
    assert_eq!(r.get::<_, String>(1), "");
    assert_eq!(r.get::<_, String>(2), "");
}

/// The member table's references are kept by triggers, not per-row foreign key checks: deleting
/// a person (by plain SQL, as the wider app might) leaves its member row holding only hashes;
/// deleting an audience takes its members with it. Member ids are time-ordered.
#[tokio::test]
async fn deletes_keep_member_references_and_member_ids_are_time_ordered() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "ref", 3).await;
    let id = audience_on(&t, seg, "Refs").await;
    t.db.query_one("SELECT * FROM sync_audience_members($1, 'full')", &[&id])
        .await
        .unwrap();
    let ids: Vec<Uuid> = support::column(
        &t.db,
        "SELECT id FROM audience_member_sync WHERE audience_id = $1 ORDER BY person_id",
        &[&id],
    )
    .await;
    assert_eq!(ids.len(), 3);
    for member in &ids {
        assert_eq!(member.get_version_num(), 7, "{member}");
    }
    let later: Uuid = support::column(&t.db, "SELECT audience_member_new_id()", &[]).await[0];
    assert!(ids.iter().all(|m| m < &later), "ids grow with time");

    t.db.execute("DELETE FROM person WHERE id = $1", &[&people[0]])
        .await
        .unwrap();
    let orphaned = support::count(
        &t.db,
        "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1 AND person_id IS NULL",
        &[&id],
    )
    .await;
    assert_eq!(
        orphaned, 1,
        "an erased person's row stays, without person_id"
    );

    t.db.execute("DELETE FROM custom_audience WHERE id = $1", &[&id])
        .await
        .unwrap();
    let left = support::count(
        &t.db,
        "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1",
        &[&id],
    )
    .await;
    assert_eq!(left, 0, "an audience's members go with it");
}

#[tokio::test]
async fn sync_audience_members_and_the_services_sync_exclude_each_other() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "lk", 3).await;
    let id = audience_on(&t, seg, "Locked").await;

    // While the service syncs the audience (it holds the audience's lock)...
    let conn = audience_sync::db::get(&t.app.pool).await.unwrap();
    let lock = audience_sync::sync::AudienceLock::try_acquire(conn, id)
        .await
        .unwrap()
        .expect("the audience is free");
    let err =
        t.db.query("SELECT * FROM sync_audience_members($1)", &[&id])
            .await
            .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE),
        "{err:?}"
    );
    let message = err.as_db_error().map(|e| e.message().to_string());
    assert!(message.is_some_and(|m| m.contains("is running")), "{err:?}");
    assert_eq!(
        support::count(
            &t.db,
            "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1",
            &[&id]
        )
        .await,
        0,
        "nothing written"
    );
    lock.release().await.unwrap();

    // ... and while another tool's call runs in a transaction, a sync of it is refused (409).
    let mut other = support::connect(&t.db_url).await;
    let tx = other.transaction().await.unwrap();
    tx.query("SELECT * FROM sync_audience_members($1)", &[&id])
        .await
        .unwrap();
    let (status, r) = t
        .post("/api/audiences/sync", &json!({"audience_id": id}))
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{r}");
    tx.commit().await.unwrap();
    let r = t.sync(&id.to_string(), "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 3, "{r}");
}
