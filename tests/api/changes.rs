//! Change tracking (issue 11): the change log filled by the database's triggers from plain SQL,
//! the horizon that misses no late commit, segment refreshes and sync diffs read from the
//! changes (and equal to the full ones), the full-diff safety net, real-time audiences in the
//! scheduler pass, and the trim.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use audience_sync::sync::scheduler::{tick, TickOptions};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::fake_meta::FakeMeta;
use crate::support::{self, spawn_app, spawn_app_with, TestApp};

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn opts() -> TickOptions {
    TickOptions {
        deadline: Instant::now() + Duration::from_secs(60),
        reserve: Duration::from_secs(1),
        lease: Duration::from_secs(1),
    }
}

/// The change rows after the test's own marker, as (person, segment) pairs.
/// `sql` (a plain SQL write, as another tool would make it) with the person's id as `$1`.
async fn on_person(t: &TestApp, sql: &str, person: Uuid) {
    t.db.execute(sql, &[&person]).await.unwrap();
}

async fn change_rows(t: &TestApp) -> Vec<(Uuid, Option<Uuid>)> {
    t.db.query("SELECT person_id, segment_id FROM change_log", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn clear_change_log(t: &TestApp) {
    t.db.execute("DELETE FROM change_log", &[]).await.unwrap();
}

async fn audience(t: &TestApp, body: Value) -> String {
    t.create_audience(body).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn full_diff_at(t: &TestApp, id: &str) -> Option<DateTime<Utc>> {
    let id = Uuid::parse_str(id).unwrap();
    t.db.query_one(
        "SELECT full_diff_at FROM custom_audience WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

async fn meta_id(t: &TestApp, id: &str) -> String {
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    a["meta_audience_id"].as_str().unwrap().to_string()
}

/// The EMAIL hashes Meta holds.
fn meta_emails(fake: &FakeMeta, meta: &str) -> BTreeSet<String> {
    fake.members(meta)
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

/// The EMAIL hashes of the audience's eligible people (segment members not opted out), as the
/// database says today.
async fn eligible_emails(t: &TestApp, seg: Uuid) -> BTreeSet<String> {
    let emails: Vec<String> = support::column(
        &t.db,
        "SELECT lower(trim(p.email)) FROM segment_member sm JOIN person p ON p.id = sm.person_id \
         WHERE sm.segment_id = $1 AND NOT p.marketing_opt_out",
        &[&seg],
    )
    .await;
    emails.iter().map(|e| sha(e)).collect()
}

/// The database side is exact: one synced member row per eligible person, no other row, and
/// the audience's total agrees.
async fn assert_members_exact(t: &TestApp, id: &str) {
    let aid = Uuid::parse_str(id).unwrap();
    let members: BTreeSet<Uuid> = t
        .member_ids(id, "is_synced AND NOT removal_pending")
        .await
        .into_iter()
        .collect();
    let all = support::count(
        &t.db,
        "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1",
        &[&aid],
    )
    .await;
    let eligible: BTreeSet<Uuid> = support::column(
        &t.db,
        "SELECT person_id FROM audience_eligible_persons($1)",
        &[&aid],
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(members, eligible);
    assert_eq!(all as usize, eligible.len(), "no other member rows");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(a["total_synced"], eligible.len(), "{a}");
}

#[tokio::test]
async fn plain_sql_writes_leave_change_rows_for_what_rules_and_hashes_read() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    let p: Uuid =
        t.db.query_one(
            "INSERT INTO person (email) VALUES ('a@example.com') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(change_rows(&t).await, [(p, None)]);

    clear_change_log(&t).await;
    // Nothing a rule or a hash reads: updated_at alone, and attributes rewritten unchanged.
    t.db.execute(
        "UPDATE person SET updated_at = now() + interval '1 hour', attributes = attributes || '{}' \
         WHERE id = $1",
        &[&p],
    )
    .await
    .unwrap();
    assert_eq!(change_rows(&t).await, []);
    for change in [
        "UPDATE person SET email = 'b@example.com' WHERE id = $1",
        "UPDATE person SET attributes = '{\"total_renders\": 3}' WHERE id = $1",
        "UPDATE person SET marketing_opt_out = true WHERE id = $1",
    ] {
        clear_change_log(&t).await;
        t.db.execute(change, &[&p]).await.unwrap();
        assert_eq!(change_rows(&t).await, [(p, None)], "{change}");
    }

    clear_change_log(&t).await;
    t.add_to_segment(seg, p).await;
    assert_eq!(change_rows(&t).await, [(p, Some(seg))]);
    clear_change_log(&t).await;
    t.db.execute("DELETE FROM segment_member WHERE person_id = $1", &[&p])
        .await
        .unwrap();
    assert_eq!(change_rows(&t).await, [(p, Some(seg))]);

    clear_change_log(&t).await;
    t.db.execute("DELETE FROM person WHERE id = $1", &[&p])
        .await
        .unwrap();
    assert_eq!(change_rows(&t).await, [(p, None)]);
}

#[tokio::test]
async fn a_change_committed_late_by_a_transaction_begun_before_a_sync_is_not_missed() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "early", 3).await;
    let id = audience(&t, json!({"name": "Late", "segment_id": seg})).await;
    t.sync(&id, "full").await;

    // A transaction writes a member before the next sync starts and commits after it ended;
    // another one, begun and committed in between, writes change rows after it.
    let late = support::connect(&t.db_url).await;
    late.batch_execute("BEGIN").await.unwrap();
    let slow: Uuid = late
        .query_one(
            "WITH p AS (INSERT INTO person (email) VALUES ('slow@example.com') RETURNING id), \
             m AS (INSERT INTO segment_member (segment_id, person_id) SELECT $1, id FROM p) \
             SELECT id FROM p",
            &[&seg],
        )
        .await
        .unwrap()
        .get(0);
    t.people_in_segment(seg, "quick", 1).await;
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["synced_count"], 1, "{r}");
    late.batch_execute("COMMIT").await.unwrap();

    let before = full_diff_at(&t, &id).await;
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["synced_count"], 1, "the late member is found: {r}");
    assert_eq!(
        t.member_ids(&id, &format!("person_id = '{slow}' AND is_synced"))
            .await,
        [slow]
    );
    assert_eq!(
        full_diff_at(&t, &id).await,
        before,
        "read from the changes, not in full"
    );
    assert_members_exact(&t, &id).await;
}

/// A tiny deterministic generator (the test must be reproducible).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

async fn segment_members(t: &TestApp, seg: Uuid) -> BTreeSet<Uuid> {
    support::column(
        &t.db,
        "SELECT person_id FROM segment_member WHERE segment_id = $1",
        &[&seg],
    )
    .await
    .into_iter()
    .collect()
}

#[tokio::test]
async fn a_refresh_from_the_changes_equals_a_full_one_on_random_changes() {
    let t = spawn_app().await;
    t.db.execute(
        "INSERT INTO person (email, country, attributes) \
         SELECT 'r' || i || '@example.com', (ARRAY['US', 'DE', 'FR'])[1 + i % 3], \
                jsonb_build_object('total_renders', i % 10) \
         FROM generate_series(1, 300) i",
        &[],
    )
    .await
    .unwrap();
    let rule = json!({"type": "and", "rules": [
        {"type": "condition", "attribute": "total_renders", "operator": ">=", "value": 5},
        {"type": "condition", "attribute": "country", "operator": "in", "value": ["US", "DE"]},
        {"type": "condition", "attribute": "marketing_opt_out", "operator": "=", "value": false}]});
    let mut ids = Vec::new();
    for name in ["changes", "full"] {
        let (status, s) = t
            .post("/api/segments", &json!({"name": name, "rule": rule}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{s}");
        ids.push(Uuid::parse_str(s["id"].as_str().unwrap()).unwrap());
    }
    let (incremental, full) = (ids[0], ids[1]);
    let first_full: Option<DateTime<Utc>> =
        t.db.query_one(
            "SELECT full_refresh_at FROM segment WHERE id = $1",
            &[&incremental],
        )
        .await
        .unwrap()
        .get(0);
    let mut rng = Lcg(11);
    for round in 0..8 {
        for _ in 0..25 {
            let n = rng.next(300) as i64 + 1;
            let value = rng.next(10) as i64;
            let sql = match rng.next(5) {
                0 => "UPDATE person SET attributes = jsonb_build_object('total_renders', $2::bigint) \
                      WHERE email = 'r' || $1::bigint || '@example.com'",
                1 => "UPDATE person SET country = (ARRAY['US', 'DE', 'FR'])[1 + $2::bigint % 3] \
                      WHERE email = 'r' || $1::bigint || '@example.com'",
                2 => "UPDATE person SET marketing_opt_out = ($2::bigint % 2 = 0) \
                      WHERE email = 'r' || $1::bigint || '@example.com'",
                3 => "DELETE FROM person WHERE email = 'r' || $1::bigint || '@example.com' AND $2::bigint >= 0",
                _ => "INSERT INTO person (email, country, attributes) \
                      VALUES ('new' || $1::bigint || '-' || $2::bigint || '@example.com', 'US', \
                              jsonb_build_object('total_renders', $2::bigint))",
            };
            t.db.execute(sql, &[&n, &value]).await.unwrap();
        }
        // One refreshed from its changes, the other made to refresh in full.
        t.db.execute(
            "UPDATE segment SET changes_from = NULL WHERE id = $1",
            &[&full],
        )
        .await
        .unwrap();
        let mut counts = Vec::new();
        for seg in [incremental, full] {
            let (status, s) = t
                .post(&format!("/api/segments/{seg}/refresh"), &json!(null))
                .await;
            assert_eq!(status, StatusCode::OK, "{s}");
            counts.push(s["member_count"].clone());
        }
        assert_eq!(
            segment_members(&t, incremental).await,
            segment_members(&t, full).await,
            "round {round}"
        );
        assert_eq!(counts[0], counts[1], "round {round}");
        assert_eq!(counts[0], segment_members(&t, full).await.len());
    }
    let still: Option<DateTime<Utc>> =
        t.db.query_one(
            "SELECT full_refresh_at FROM segment WHERE id = $1",
            &[&incremental],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        still, first_full,
        "every refresh after the first read the changes"
    );
}

#[tokio::test]
async fn syncs_from_the_changes_leave_meta_exactly_the_segment() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config())).await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "m", 12).await;
    let id = audience(&t, json!({"name": "Changes", "segment_id": seg})).await;
    t.sync(&id, "full").await;
    let meta = meta_id(&t, &id).await;
    let full_at = full_diff_at(&t, &id).await;
    assert!(full_at.is_some());
    assert_eq!(meta_emails(&fake, &meta), eligible_emails(&t, seg).await);

    // Joiners, a leaver, an opt-out, an erasure.
    t.people_in_segment(seg, "joiner", 3).await;
    on_person(
        &t,
        "DELETE FROM segment_member WHERE person_id = $1",
        people[0],
    )
    .await;
    on_person(
        &t,
        "UPDATE person SET marketing_opt_out = true WHERE id = $1",
        people[1],
    )
    .await;
    t.db.execute("DELETE FROM person WHERE id = $1", &[&people[2]])
        .await
        .unwrap();
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["synced_count"], 3, "{r}");
    assert_eq!(meta_emails(&fake, &meta), eligible_emails(&t, seg).await);
    assert_members_exact(&t, &id).await;

    // Changed identifiers, with `update`: the old hash goes, the new one comes; an opted-out
    // person coming back is sent again.
    on_person(
        &t,
        "UPDATE person SET email = 'renamed@example.com' WHERE id = $1",
        people[3],
    )
    .await;
    on_person(
        &t,
        "UPDATE person SET marketing_opt_out = false WHERE id = $1",
        people[1],
    )
    .await;
    let r = t.sync(&id, "update").await;
    // The people changed since the last re-hash (the full sync): the two, and the three joiners
    // (inserted since; sent again unchanged, harmless).
    assert_eq!(r["synced_count"], 5, "{r}");
    let held = meta_emails(&fake, &meta);
    assert!(held.contains(&sha("renamed@example.com")));
    assert!(!held.contains(&sha("m4@example.com")));
    assert_eq!(held, eligible_emails(&t, seg).await);
    assert_members_exact(&t, &id).await;

    // Nothing changed: nothing sent, still exact.
    fake.clear_calls();
    let r = t.sync(&id, "update").await;
    assert_eq!(r["synced_count"], 0, "{r}");
    assert!(fake.calls().iter().all(|c| !c.path.ends_with("/users")));
    assert_eq!(
        full_diff_at(&t, &id).await,
        full_at,
        "every diff after the first read changes"
    );
    assert_members_exact(&t, &id).await;
}

#[tokio::test]
async fn a_full_sync_restores_meta_and_the_database_after_changes_behind_the_triggers_back() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config())).await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "h", 10).await;
    let id = audience(&t, json!({"name": "Hidden", "segment_id": seg})).await;
    t.sync(&id, "full").await;
    let meta = meta_id(&t, &id).await;

    t.db.batch_execute(
        "ALTER TABLE person DISABLE TRIGGER person_change_log_insert; \
         ALTER TABLE person DISABLE TRIGGER person_change_log_update; \
         ALTER TABLE segment_member DISABLE TRIGGER segment_member_change_log_insert; \
         ALTER TABLE segment_member DISABLE TRIGGER segment_member_change_log_delete",
    )
    .await
    .unwrap();
    t.people_in_segment(seg, "hidden", 2).await;
    on_person(
        &t,
        "DELETE FROM segment_member WHERE person_id = $1",
        people[0],
    )
    .await;
    on_person(
        &t,
        "UPDATE person SET marketing_opt_out = true WHERE id = $1",
        people[1],
    )
    .await;
    on_person(
        &t,
        "UPDATE person SET email = 'moved@example.com' WHERE id = $1",
        people[2],
    )
    .await;

    // Read from the (empty) change log, an incremental sync cannot see them...
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["synced_count"], 0, "{r}");
    assert_ne!(meta_emails(&fake, &meta), eligible_emails(&t, seg).await);
    // ...the full sync, the safety net, puts everything right.
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(meta_emails(&fake, &meta), eligible_emails(&t, seg).await);
    assert!(meta_emails(&fake, &meta).contains(&sha("moved@example.com")));
    assert_members_exact(&t, &id).await;
}

#[tokio::test]
async fn the_scheduler_syncs_a_realtime_audience_with_changes_and_skips_one_without() {
    let t = spawn_app().await;
    let (sa, sb) = (t.segment("A").await, t.segment("B").await);
    t.people_in_segment(sa, "a", 2).await;
    t.people_in_segment(sb, "b", 2).await;
    let a = audience(
        &t,
        json!({"name": "RA", "segment_id": sa, "realtime": true}),
    )
    .await;
    let b = audience(
        &t,
        json!({"name": "RB", "segment_id": sb, "realtime": true}),
    )
    .await;
    let quiet = audience(&t, json!({"name": "not realtime", "segment_id": sa})).await;

    // Never synced: both real-time ones (and not the other, which is neither auto nor
    // real-time).
    let first = tick(&t.app, opts()).await.unwrap();
    assert_eq!(first.claimed, 2, "{:?}", first.results);
    assert_eq!(first.completed, 2);
    let idle = tick(&t.app, opts()).await.unwrap();
    assert_eq!(idle.claimed, 0, "nothing changed: {:?}", idle.results);

    let joiner = t.person(sa, Some("new@example.com"), None).await;
    let pass = tick(&t.app, opts()).await.unwrap();
    assert_eq!(pass.claimed, 1, "{:?}", pass.results);
    assert_eq!(pass.results[0]["audience_id"], a.as_str());
    assert_eq!(t.member_ids(&a, "is_synced").await.len(), 3);
    assert!(
        t.member_ids(&a, &format!("person_id = '{joiner}'"))
            .await
            .len()
            == 1
    );
    assert!(t.member_ids(&b, "true").await.len() == 2);
    assert!(t.member_ids(&quiet, "true").await.is_empty());
    assert_eq!(tick(&t.app, opts()).await.unwrap().claimed, 0);

    // A PUT can turn it off: then changes wait for its interval.
    let (status, body) = t
        .put(&format!("/api/audiences/{a}"), &json!({"realtime": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["realtime"], false);
    t.person(sa, Some("later@example.com"), None).await;
    assert_eq!(tick(&t.app, opts()).await.unwrap().claimed, 0);
}

#[tokio::test]
async fn realtime_is_a_boolean_defaulting_to_false() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    let a = t
        .create_audience(json!({"name": "Plain", "segment_id": seg}))
        .await;
    assert_eq!(a["realtime"], false);
    let b = t
        .create_audience(json!({"name": "Live", "segment_id": seg, "realtime": true}))
        .await;
    assert_eq!(b["realtime"], true);
    let id = a["id"].as_str().unwrap();
    for bad in [json!({"realtime": "yes"}), json!({"realtime": null})] {
        let (status, body) = t.put(&format!("/api/audiences/{id}"), &bad).await;
        support::assert_error(status, &body, StatusCode::BAD_REQUEST, Some("realtime"));
    }
    let (status, body) = t
        .post("/api/audiences", &json!({"name": "Bad", "realtime": 1}))
        .await;
    support::assert_error(status, &body, StatusCode::BAD_REQUEST, Some("realtime"));
}

#[tokio::test]
async fn a_pass_trims_what_every_consumer_read_and_a_trimmed_horizon_means_a_full_diff() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "t", 5).await;
    let id = audience(
        &t,
        json!({"name": "Trim", "segment_id": seg, "realtime": true}),
    )
    .await;
    // Rows below every consumer's horizon (the audience's diff, its segment's recount).
    let below_horizons = "SELECT count(*) FROM change_log WHERE xid < least(\
        (SELECT min(changes_from) FROM custom_audience), (SELECT min(changes_from) FROM segment))";
    assert!(!change_rows(&t).await.is_empty());
    tick(&t.app, opts()).await.unwrap();
    let horizon_set = support::count(
        &t.db,
        "SELECT count(*) FROM custom_audience WHERE changes_from IS NOT NULL AND id = $1",
        &[&Uuid::parse_str(&id).unwrap()],
    )
    .await;
    assert_eq!(horizon_set, 1);
    // (Other tests' transactions on the shared server may hold the horizons back, so which rows
    // are below them is for the database to say.)
    assert_eq!(support::count(&t.db, below_horizons, &[]).await, 0);

    // Changes nobody read yet stay.
    let p = t.person(seg, Some("kept@example.com"), None).await;
    let aid = Uuid::parse_str(&id).unwrap();
    t.db.execute(
        "UPDATE custom_audience SET is_active = false WHERE id = $1",
        &[&aid],
    )
    .await
    .unwrap();
    tick(&t.app, opts()).await.unwrap();
    let kept: HashSet<Uuid> = change_rows(&t).await.into_iter().map(|(p, _)| p).collect();
    assert!(kept.contains(&p), "not read by the segment yet: kept");
    assert_eq!(support::count(&t.db, below_horizons, &[]).await, 0);

    // A horizon the log no longer covers (trimmed past it): the next diff is a full one.
    t.db.execute(
        "UPDATE change_log_floor SET below = pg_snapshot_xmax(pg_current_snapshot())",
        &[],
    )
    .await
    .unwrap();
    let before = full_diff_at(&t, &id).await;
    t.sync(&id, "incremental").await;
    assert!(full_diff_at(&t, &id).await > before);
    assert_members_exact(&t, &id).await;
}
