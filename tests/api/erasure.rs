//! Erasure and opt-out reaching Meta at every scheduler pass, for every audience whatever its
//! `auto_sync` and `is_active` say (DESIGN §8.2), and a paused sync never sending, once resumed,
//! someone who opted out meanwhile.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use audience_sync::sync::scheduler::{tick, TickOptions};
use audience_sync::sync::{run, AudienceLock, NoProgress, SyncStatus, SyncType, Tally};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::fake_meta::{call_counts, FakeMeta, Fault, FaultMatch, DEFAULT_FAKE_TOKEN};
use crate::support::{self, spawn_app, spawn_app_with, TestApp};

fn opts() -> TickOptions {
    TickOptions {
        deadline: Instant::now() + Duration::from_secs(60),
        reserve: Duration::from_secs(1),
        lease: Duration::from_secs(1),
    }
}

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn email(tag: &str) -> String {
    format!("{tag}@example.com")
}

/// The people (by tag) whose email hash Meta holds in an audience.
fn held_by_meta(fake: &FakeMeta, meta_id: &str, tags: &[&str]) -> BTreeSet<String> {
    let rows = fake.members(meta_id);
    tags.iter()
        .filter(|tag| rows.iter().any(|row| row[0] == sha(&email(tag))))
        .map(|tag| tag.to_string())
        .collect()
}

fn set(tags: &[&str]) -> BTreeSet<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

/// People imported with `external_id` = tag and an email, all in one new manual segment.
async fn people(t: &TestApp, tags: &[&str]) -> Uuid {
    let seg = t.segment(&support::unique("erasure")).await;
    add_people(t, seg, tags).await;
    seg
}

/// People imported with `external_id` = tag and an email, into `seg`.
async fn add_people(t: &TestApp, seg: Uuid, tags: &[&str]) {
    let persons: Vec<Value> = tags
        .iter()
        .map(|tag| json!({"external_id": tag, "email": email(tag), "country": "US"}))
        .collect();
    let (s, body) = t.post("/api/persons", &json!({ "persons": persons })).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["upserted"].as_u64(), Some(tags.len() as u64), "{body}");
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    t.db.execute(
        "INSERT INTO segment_member (segment_id, person_id) \
         SELECT $1, id FROM person WHERE external_id = ANY($2)",
        &[&seg, &tags],
    )
    .await
    .unwrap();
}

async fn person_id(t: &TestApp, tag: &str) -> Uuid {
    t.db.query_one("SELECT id FROM person WHERE external_id = $1", &[&tag])
        .await
        .unwrap()
        .get(0)
}

async fn erase(t: &TestApp, tag: &str) {
    erase_id(t, person_id(t, tag).await).await
}

async fn erase_id(t: &TestApp, id: Uuid) {
    let (s, _) = t.delete(&format!("/api/persons/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

async fn opt_out(t: &TestApp, tag: &str) {
    opt_out_id(t, person_id(t, tag).await).await
}

async fn opt_out_id(t: &TestApp, id: Uuid) {
    let (s, body) = t
        .request(
            "PATCH",
            &format!("/api/persons/{id}"),
            Some(r#"{"marketing_opt_out": true}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

/// An audience on `seg` with `fields`, synced (full) through the API, and its Meta audience id.
async fn synced_audience(t: &TestApp, seg: Uuid, fields: Value) -> (String, String) {
    let mut body = json!({"name": support::unique("erasure"), "segment_id": seg});
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let a = t.create_audience(body).await;
    let id = a["id"].as_str().unwrap().to_string();
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    let meta = a["meta_audience_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (id, meta)
}

/// The member rows of an audience, as (external_id or "erased", is_synced, removal_pending,
/// has hashes).
async fn member_rows(t: &TestApp, audience_id: &str) -> Vec<(String, bool, bool, bool)> {
    let id = Uuid::parse_str(audience_id).unwrap();
    t.db.query(
        "SELECT coalesce(p.external_id, 'erased'), m.is_synced, m.removal_pending, \
                m.hashes IS NOT NULL \
         FROM audience_member_sync m LEFT JOIN person p ON p.id = m.person_id \
         WHERE m.audience_id = $1 ORDER BY 1",
        &[&id],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

fn synced_rows(tags: &[&str]) -> Vec<(String, bool, bool, bool)> {
    tags.iter()
        .map(|t| (t.to_string(), true, false, true))
        .collect()
}

async fn queued(t: &TestApp) -> i64 {
    support::count(&t.db, "SELECT count(*) FROM audience_member_purge", &[]).await
}

fn purge_counts(summary: &Tally) -> (usize, usize, usize) {
    (summary.claimed, summary.purged, summary.purge_waiting)
}

#[tokio::test]
async fn one_pass_removes_erased_and_opted_out_people_from_audiences_the_scheduler_never_syncs() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config_with(DEFAULT_FAKE_TOKEN, 2))).await;
    let all = ["p1", "p2", "p3", "p4", "p5", "p6"];
    let seg = people(&t, &all).await;
    // Neither is ever claimed by a pass: one without auto_sync, one inactive.
    let (manual, manual_meta) = synced_audience(&t, seg, json!({"auto_sync": false})).await;
    let (inactive, inactive_meta) =
        synced_audience(&t, seg, json!({"auto_sync": true, "is_active": false})).await;
    for meta in [&manual_meta, &inactive_meta] {
        assert_eq!(held_by_meta(&fake, meta, &all), set(&all));
    }

    // p2 is erased, p3 opts out through the consent route, p6 through an import.
    erase(&t, "p2").await;
    opt_out(&t, "p3").await;
    let (s, body) = t
        .post(
            "/api/persons",
            &json!({"persons": [{"external_id": "p6", "marketing_opt_out": true}]}),
        )
        .await;
    assert_eq!(
        (s, body["upserted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    fake.clear_calls();

    let summary = tick(&t.app, opts()).await.unwrap();
    assert_eq!(purge_counts(&summary), (0, 6, 0), "{summary:?}");
    let stay = ["p1", "p4", "p5"];
    for (id, meta) in [(&manual, &manual_meta), (&inactive, &inactive_meta)] {
        assert_eq!(
            held_by_meta(&fake, meta, &all),
            set(&stay),
            "Meta, audience {id}"
        );
        assert_eq!(fake.member_count(meta), 3, "nothing else held either");
        assert_eq!(
            member_rows(&t, id).await,
            synced_rows(&stay),
            "rows of {id}"
        );
    }
    // One removal request per audience, carrying exactly the three: nothing else was called.
    let calls = fake.calls();
    let counts = call_counts(&calls);
    assert_eq!(counts.values().sum::<usize>(), 2, "{counts:?}");
    for meta in [&manual_meta, &inactive_meta] {
        assert_eq!(
            counts.get(&format!("DELETE /{meta}/users")),
            Some(&1),
            "{counts:?}"
        );
    }
    assert!(
        calls.iter().all(|c| c.rows == 3 && c.status == 200),
        "{calls:?}"
    );
    assert_eq!(queued(&t).await, 0, "the queue is settled");

    // Nothing changed since: the next pass calls nobody and removes nothing.
    fake.clear_calls();
    let summary = tick(&t.app, opts()).await.unwrap();
    assert_eq!(purge_counts(&summary), (0, 0, 0), "{summary:?}");
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn an_audience_a_sync_holds_is_purged_by_a_later_pass_and_nothing_is_lost() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config_with(DEFAULT_FAKE_TOKEN, 2))).await;
    let all = ["q1", "q2", "q3"];
    let seg = people(&t, &all).await;
    let (id, meta) = synced_audience(&t, seg, json!({})).await;
    erase(&t, "q1").await;
    opt_out(&t, "q2").await;

    // A sync elsewhere holds the audience for the whole pass.
    let conn = t.app.pool.get().await.unwrap();
    let audience_id = Uuid::parse_str(&id).unwrap();
    let lock = AudienceLock::try_acquire(conn, audience_id)
        .await
        .unwrap()
        .expect("the lock is free");
    let summary = tick(&t.app, opts()).await.unwrap();
    assert_eq!(purge_counts(&summary), (0, 0, 1), "{summary:?}");
    assert_eq!(
        held_by_meta(&fake, &meta, &all),
        set(&all),
        "untouched while held"
    );
    assert_eq!(queued(&t).await, 1, "q2 stays queued");
    assert_eq!(
        member_rows(&t, &id).await,
        vec![
            ("erased".into(), true, false, true),
            ("q2".into(), true, false, true),
            ("q3".into(), true, false, true)
        ]
    );

    lock.release().await.unwrap();
    let summary = tick(&t.app, opts()).await.unwrap();
    assert_eq!(purge_counts(&summary), (0, 2, 0), "{summary:?}");
    assert_eq!(held_by_meta(&fake, &meta, &all), set(&["q3"]));
    assert_eq!(member_rows(&t, &id).await, synced_rows(&["q3"]));
    assert_eq!(queued(&t).await, 0);
}

#[tokio::test]
async fn without_meta_a_pass_settles_the_member_rows_alone() {
    let t = spawn_app().await;
    let all = ["r1", "r2", "r3", "r4"];
    let seg = people(&t, &all).await;
    let (id, meta) = synced_audience(&t, seg, json!({"is_active": false})).await;
    assert_eq!(meta, "", "no Meta audience");
    // r4 never had a usable identifier: its row carries no hashes, and goes all the same.
    t.db.execute(
        "UPDATE audience_member_sync m SET hashes = NULL, is_synced = false, \
                failure_reason = 'no identifier' \
         FROM person p WHERE p.id = m.person_id AND p.external_id = 'r4'",
        &[],
    )
    .await
    .unwrap();
    erase(&t, "r1").await;
    opt_out(&t, "r2").await;
    opt_out(&t, "r4").await;

    let summary = tick(&t.app, opts()).await.unwrap();
    assert_eq!(purge_counts(&summary), (0, 2, 0), "{summary:?}");
    assert_eq!(member_rows(&t, &id).await, synced_rows(&["r3"]));
    assert_eq!(queued(&t).await, 0);
}

/// A sync paused at its checkpoint is resumed without a new diff: the page read itself must
/// leave out whoever opted out since.
#[tokio::test]
async fn a_paused_sync_resumed_by_a_pass_never_sends_who_opted_out_meanwhile() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config_with(DEFAULT_FAKE_TOKEN, 2))).await;
    let seg = people(&t, &["s1", "s2", "s3"]).await;
    let a = t
        .create_audience(json!({"name": "paused", "segment_id": seg, "auto_sync": true}))
        .await;
    let id = Uuid::parse_str(a["id"].as_str().unwrap()).unwrap();

    // A full sync out of time at once: paused before its first batch, its joiners listed.
    let first = run(
        &t.app,
        id,
        Some(SyncType::Full),
        &NoProgress,
        Some(Instant::now()),
    )
    .await
    .unwrap();
    assert_eq!(first.status, SyncStatus::Paused, "{first:?}");
    opt_out(&t, "s2").await;
    let summary = tick(&t.app, opts()).await.unwrap();
    assert_eq!((summary.resumed, summary.completed), (1, 1), "{summary:?}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    let meta = a["meta_audience_id"].as_str().unwrap().to_string();
    assert_eq!(
        held_by_meta(&fake, &meta, &["s1", "s2", "s3"]),
        set(&["s1", "s3"])
    );
    assert_eq!(fake.member_count(&meta), 2);
    // Never sent (and so never removed either): the replace carried the two others alone.
    let sent: Vec<(String, usize)> = fake
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/usersreplace") || c.path.ends_with("/users"))
        .map(|c| (c.method.clone(), c.rows))
        .collect();
    assert_eq!(sent, [("POST".to_string(), 2)]);
    assert_eq!(
        member_rows(&t, &id.to_string()).await,
        synced_rows(&["s1", "s3"])
    );

    // An incremental sync paused the same way, with two joiners, one of whom opts out.
    add_people(&t, seg, &["s4", "s5"]).await;
    let second = run(
        &t.app,
        id,
        Some(SyncType::Incremental),
        &NoProgress,
        Some(Instant::now()),
    )
    .await
    .unwrap();
    assert_eq!(second.status, SyncStatus::Paused, "{second:?}");
    opt_out(&t, "s4").await;
    fake.clear_calls();
    let summary = tick(&t.app, opts()).await.unwrap();
    assert_eq!((summary.resumed, summary.completed), (1, 1), "{summary:?}");
    let all = ["s1", "s2", "s3", "s4", "s5"];
    assert_eq!(held_by_meta(&fake, &meta, &all), set(&["s1", "s3", "s5"]));
    let adds: Vec<usize> = fake
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/users"))
        .map(|c| c.rows)
        .collect();
    assert_eq!(adds, [1], "s5 alone was sent");
    assert_eq!(
        member_rows(&t, &id.to_string()).await,
        synced_rows(&["s1", "s3", "s5"])
    );
    assert_eq!(queued(&t).await, 0);
}

/// A full sync paused inside its replace session (Meta takes no other change to the audience
/// until the session closes): the pass's purge waits for the pass to resume and finish it, then
/// removes what the session received before the pause, in the same pass.
#[tokio::test]
async fn a_purge_waits_for_a_paused_replace_session_and_loses_nothing() {
    let fake = FakeMeta::start().await;
    let mut meta = fake.meta_config_with(DEFAULT_FAKE_TOKEN, 3);
    meta.timeout = Duration::from_secs(60);
    let t = spawn_app_with(Some(meta)).await;
    let seg = t.segment("Big").await;
    // Three pages: the first batch goes out while the second page is read, the deadline passes
    // during it (slow), the second batch is sent at the pause and the third page waits.
    t.people_in_segment(seg, "big", 21_000).await;
    let a = t
        .create_audience(json!({"name": "big", "segment_id": seg, "auto_sync": true}))
        .await;
    let id = Uuid::parse_str(a["id"].as_str().unwrap()).unwrap();
    fake.inject(Fault::delay(
        FaultMatch::route("POST", "/usersreplace"),
        1,
        Duration::from_secs(15),
    ));
    let deadline = Instant::now() + Duration::from_secs(8);
    let first = run(
        &t.app,
        id,
        Some(SyncType::Full),
        &NoProgress,
        Some(deadline),
    )
    .await
    .unwrap();
    assert_eq!(first.status, SyncStatus::Paused, "{first:?}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    let meta_id = a["meta_audience_id"].as_str().unwrap().to_string();
    assert!(fake.replace_in_progress(&meta_id));

    // Two people the session received, one it has not yet.
    let sent: Vec<Uuid> = support::column(
        &t.db,
        "SELECT person_id FROM audience_member_sync WHERE audience_id = $1 AND is_synced \
         ORDER BY person_id LIMIT 2",
        &[&id],
    )
    .await;
    // (A first sync lists no joiners: its people are those without a member row.)
    let waiting: Vec<Uuid> = support::column(
        &t.db,
        "SELECT sm.person_id FROM segment_member sm WHERE sm.segment_id = $2 \
           AND NOT EXISTS (SELECT 1 FROM audience_member_sync m \
                           WHERE m.audience_id = $1 AND m.person_id = sm.person_id) LIMIT 1",
        &[&id, &seg],
    )
    .await;
    let emails: Vec<String> = support::column(
        &t.db,
        "SELECT lower(email) FROM person WHERE id = ANY($1) ORDER BY id",
        &[&[sent[0], sent[1], waiting[0]].to_vec()],
    )
    .await;
    opt_out_id(&t, sent[0]).await;
    erase_id(&t, sent[1]).await;
    opt_out_id(&t, waiting[0]).await;

    let summary = tick(&t.app, opts()).await.unwrap();
    assert_eq!((summary.resumed, summary.completed), (1, 1), "{summary:?}");
    assert_eq!(purge_counts(&summary), (1, 2, 0), "{summary:?}");
    let held: BTreeSet<String> = fake
        .members(&meta_id)
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    for email in &emails {
        assert!(!held.contains(&sha(email)), "Meta no longer holds {email}");
    }
    assert_eq!(fake.member_count(&meta_id), 21_000 - 3);
    // Every call answered: no removal was sent into the open session; the one removal came
    // after the session's last batch.
    let calls = fake.calls();
    assert!(
        calls.iter().all(|c| c.status == 200),
        "{:?}",
        calls.iter().filter(|c| c.status != 200).collect::<Vec<_>>()
    );
    let members_calls: Vec<(String, usize, bool)> = calls
        .iter()
        .filter(|c| c.path.ends_with("/usersreplace") || c.path.ends_with("/users"))
        .map(|c| {
            (
                c.method.clone(),
                c.rows,
                c.session.is_some_and(|s| s.last_batch_flag),
            )
        })
        .collect();
    assert_eq!(
        members_calls,
        [
            ("POST".to_string(), 10_000, false),
            ("POST".to_string(), 10_000, false),
            ("POST".to_string(), 999, true),
            ("DELETE".to_string(), 2, false),
        ]
    );
    let rows = support::count(
        &t.db,
        "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1 AND is_synced \
           AND person_id IS NOT NULL AND NOT removal_pending",
        &[&id],
    )
    .await;
    assert_eq!(rows, 21_000 - 3);
    let others = support::count(
        &t.db,
        "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1 \
           AND NOT (is_synced AND person_id IS NOT NULL AND NOT removal_pending)",
        &[&id],
    )
    .await;
    assert_eq!(others, 0);
    assert_eq!(queued(&t).await, 0);
}

/// A purge finding the Meta audience deleted outside the service: nothing is left to remove
/// there, the pass does not wait on it, the id is cleared and no member stays marked synced.
#[tokio::test]
async fn a_purge_of_an_audience_deleted_in_meta_clears_it_and_waits_for_nothing() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config_with(DEFAULT_FAKE_TOKEN, 2))).await;
    let all = ["d1", "d2", "d3"];
    let seg = people(&t, &all).await;
    let (id, meta) = synced_audience(&t, seg, json!({"auto_sync": false})).await;
    fake.delete_outside(&meta);
    erase(&t, "d2").await;

    let summary = tick(&t.app, opts()).await.unwrap();
    assert_eq!(summary.purge_waiting, 0, "{summary:?}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert!(a["meta_audience_id"].is_null(), "{a}");
    let rows = member_rows(&t, &id).await;
    assert!(rows.iter().all(|(_, synced, _, _)| !synced), "{rows:?}");
    assert!(rows.iter().all(|(tag, ..)| tag != "erased"), "{rows:?}");
    assert_eq!(queued(&t).await, 0, "the queue is settled");
}
