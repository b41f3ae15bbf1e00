//! Syncs against the strict fake Graph API: what Meta holds after every sync type, throttling,
//! fatal errors, invalid entries, lookalikes, engagement audiences and deletes.

use std::collections::HashSet;

use audience_sync::sync::SyncStatus;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::fake_meta::{call_counts, FakeMeta, Fault, FaultMatch};
use crate::support::{self, spawn_app_with, TestApp};

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn setup() -> (FakeMeta, TestApp) {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config())).await;
    (fake, t)
}

/// The EMAIL column of what Meta holds for an audience.
fn meta_emails(fake: &FakeMeta, meta_id: &str) -> HashSet<String> {
    fake.members(meta_id)
        .into_iter()
        .map(|row| row[0].clone())
        .collect()
}

fn emails(tag: &str, range: std::ops::RangeInclusive<i32>) -> HashSet<String> {
    range
        .map(|i| sha(&format!("{tag}{i}@example.com")))
        .collect()
}

async fn meta_id(t: &TestApp, id: &str) -> String {
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    a["meta_audience_id"]
        .as_str()
        .expect("meta_audience_id")
        .to_string()
}

async fn audience(t: &TestApp, seg: Uuid, name: &str) -> String {
    let a = t
        .create_audience(json!({"name": name, "description": "from tests", "segment_id": seg}))
        .await;
    a["id"].as_str().unwrap().to_string()
}

async fn log_of(t: &TestApp, r: &Value) -> (String, Option<String>, Value, Value) {
    let id = Uuid::parse_str(r["sync_log_id"].as_str().unwrap()).unwrap();
    let row = t
        .db
        .query_one(
            "SELECT status, error_message, meta_response, details FROM audience_sync_log WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test]
async fn first_full_sync_creates_the_audience_and_meta_holds_exactly_the_members() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "m", 30).await;
    t.person(seg, None, None).await;
    let id = audience(&t, seg, "Meta Full").await;

    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 30);
    assert_eq!(r["failed_count"], 1);
    let meta = meta_id(&t, &id).await;
    let created = fake.audience(&meta).expect("audience in Meta");
    assert_eq!(created.subtype, "CUSTOM");
    assert_eq!(created.name, "Meta Full");
    assert_eq!(created.description.as_deref(), Some("from tests"));
    assert_eq!(created.account_id, "424242"); // FAKE_AD_ACCOUNT, the config's
    assert_eq!(meta_emails(&fake, &meta), emails("m", 1..=30));
    let row = fake
        .members(&meta)
        .into_iter()
        .find(|r| r[0] == sha("m7@example.com"))
        .unwrap();
    assert_eq!(row[2], sha("person"), "FN: letters only, digits dropped");
    assert_eq!(row[7], sha("us"), "COUNTRY");
    assert_eq!(row[1], "", "no phone: empty, not the hash of nothing");

    let (_, _, meta_response, _) = log_of(&t, &r).await;
    assert_eq!(meta_response["audience_id"], meta.as_str());
    assert_eq!(meta_response["num_received"], 30);
    assert_eq!(meta_response["replace_batches"], 1);
    let (_, got) = t.get(&format!("/api/audiences/{id}?include=metrics")).await;
    assert!(
        got["metrics"]["approximate_count_lower_bound"].is_number(),
        "{got}"
    );
    assert_eq!(got["metrics"]["operation_status"]["code"], 200);
}

/// A first sync streams its people in person order: a segment of a quarter of everyone or
/// more from merge joins of two sorts, a smaller one from a hash join and a sort of its people.
/// Either way Meta holds exactly the segment, and the member rows copied in carry the
/// database's time of the write.
#[tokio::test]
async fn a_first_sync_streams_a_small_segment_and_a_large_one_alike() {
    let (fake, t) = setup().await;
    let small = t.segment("Small").await;
    t.people_in_segment(small, "s", 30).await;
    let large = t.segment("Large").await;
    t.people_in_segment(large, "l", 200).await;
    // The stream weighs the segment against the people the statistics count (230).
    t.db.batch_execute("ANALYZE person").await.unwrap();
    for (seg, tag, n) in [(small, "s", 30), (large, "l", 200)] {
        let id = audience(&t, seg, tag).await;
        let r = t.sync(&id, "full").await;
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["synced_count"], n);
        assert_eq!(
            meta_emails(&fake, &meta_id(&t, &id).await),
            emails(tag, 1..=n)
        );
        let log = Uuid::parse_str(r["sync_log_id"].as_str().unwrap()).unwrap();
        let rows =
            t.db.query_one(
                "SELECT count(*) FILTER (WHERE m.is_synced AND m.synced_at >= l.started_at \
                                           AND m.synced_at <= l.completed_at), count(*) \
                 FROM audience_member_sync m JOIN audience_sync_log l ON l.id = $2 \
                 WHERE m.audience_id = $1",
                &[&Uuid::parse_str(&id).unwrap(), &log],
            )
            .await
            .unwrap();
        let (in_time, all): (i64, i64) = (rows.get(0), rows.get(1));
        assert_eq!((in_time, all), (i64::from(n), i64::from(n)), "{tag}");
    }
}

#[tokio::test]
async fn a_25000_member_full_sync_is_one_replace_session_in_three_batches() {
    let (fake, t) = setup().await;
    let seg = t.segment("Big").await;
    t.people_in_segment(seg, "big", 25_000).await;
    let id = audience(&t, seg, "Big").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["synced_count"], 25_000, "{r}");
    let meta = meta_id(&t, &id).await;
    assert_eq!(fake.member_count(&meta), 25_000);
    let replaces: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/usersreplace"))
        .collect();
    assert_eq!(
        replaces.iter().map(|c| c.rows).collect::<Vec<_>>(),
        [10_000, 10_000, 5_000]
    );
    let sessions: Vec<_> = replaces
        .iter()
        .map(|c| c.session.expect("session"))
        .collect();
    assert_eq!(
        sessions.iter().map(|s| s.batch_seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        sessions
            .iter()
            .map(|s| s.last_batch_flag)
            .collect::<Vec<_>>(),
        [false, false, true]
    );
    assert!(sessions
        .iter()
        .all(|s| s.session_id == sessions[0].session_id));
    assert!(sessions
        .iter()
        .all(|s| s.estimated_num_total == Some(25_000)));
    assert!(replaces.iter().all(|c| !c.query.contains("payload")));

    // A second full sync replaces again: Meta holds the same, nothing doubled.
    t.sync(&id, "full").await;
    assert_eq!(fake.member_count(&meta), 25_000);
}

/// In Lambda a scheduled pass holds one of the pool's two connections, so the sync has no spare one
/// to read ahead on: pages are then read on its own connection, between its writes.
#[tokio::test]
async fn a_sync_with_a_single_database_connection_sends_everyone_once() {
    let (fake, t) = setup().await;
    let seg = t.segment("One").await;
    t.people_in_segment(seg, "one", 25_000).await;
    let id = audience(&t, seg, "One").await;
    // The same database and fake Meta, with a pool of one connection.
    let mut config = support::test_config();
    config.database_url = Some(t.db_url.clone());
    config.db_pool_size = 1;
    config.meta = Some(fake.meta_config());
    let app = audience_sync::App::build(&config).await.unwrap();
    let audience_id = Uuid::parse_str(&id).unwrap();
    let run = |sync_type| {
        audience_sync::sync::run(
            &app,
            audience_id,
            Some(sync_type),
            &audience_sync::sync::NoProgress,
            None,
        )
    };
    let full = run(audience_sync::sync::SyncType::Full).await.unwrap();
    assert_eq!(
        (full.status, full.synced_count),
        (SyncStatus::Completed, 25_000)
    );
    // 15,000 joiners: two pages of them, read and written on the one connection.
    t.people_in_segment(seg, "two", 15_000).await;
    let inc = run(audience_sync::sync::SyncType::Incremental)
        .await
        .unwrap();
    assert_eq!(
        (inc.status, inc.synced_count),
        (SyncStatus::Completed, 15_000)
    );
    let meta = meta_id(&t, &id).await;
    assert_eq!(fake.member_count(&meta), 40_000);
    let synced = support::count(
        &t.db,
        "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1 AND is_synced",
        &[&audience_id],
    )
    .await;
    assert_eq!(synced, 40_000);
}

#[tokio::test]
async fn incremental_adds_joiners_and_removes_leavers_opt_outs_and_erasures() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "inc", 10).await;
    let id = audience(&t, seg, "Inc").await;
    t.sync(&id, "incremental").await;
    let meta = meta_id(&t, &id).await;
    assert_eq!(meta_emails(&fake, &meta), emails("inc", 1..=10));
    fake.clear_calls();

    t.people_in_segment(seg, "joiner", 2).await;
    t.db.execute(
        "DELETE FROM segment_member WHERE person_id = $1",
        &[&people[0]],
    )
    .await
    .unwrap();
    t.db.execute(
        "UPDATE person SET marketing_opt_out = true WHERE id = $1",
        &[&people[1]],
    )
    .await
    .unwrap();
    t.db.execute("DELETE FROM person WHERE id = $1", &[&people[2]])
        .await
        .unwrap();
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["synced_count"], 2, "{r}");
    let mut want = emails("inc", 4..=10);
    want.extend(emails("joiner", 1..=2));
    assert_eq!(meta_emails(&fake, &meta), want);
    let counts = call_counts(&fake.calls());
    assert_eq!(
        counts.get(&format!("POST /{meta}/users")),
        Some(&1),
        "{counts:?}"
    );
    assert_eq!(
        counts.get(&format!("DELETE /{meta}/users")),
        Some(&1),
        "{counts:?}"
    );
    assert!(!counts.keys().any(|k| k.ends_with("/usersreplace")));
    let (_, _, _, details) = log_of(&t, &r).await;
    assert_eq!(details["removed"], 3);

    // No change: no upload at all.
    fake.clear_calls();
    let again = t.sync(&id, "incremental").await;
    assert_eq!(again["synced_count"], 0);
    assert!(fake.calls().iter().all(|c| !c.path.ends_with("/users")));
}

#[tokio::test]
async fn update_removes_old_hashes_before_adding_new_ones() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "u", 5).await;
    let id = audience(&t, seg, "Upd").await;
    t.sync(&id, "full").await;
    let meta = meta_id(&t, &id).await;
    fake.clear_calls();
    t.db.execute(
        "UPDATE person SET email = 'renamed@example.com' WHERE id = $1",
        &[&people[3]],
    )
    .await
    .unwrap();
    let r = t.sync(&id, "update").await;
    assert_eq!(r["synced_count"], 1, "{r}");
    let mut want = emails("u", 1..=5);
    want.remove(&sha("u4@example.com"));
    want.insert(sha("renamed@example.com"));
    assert_eq!(meta_emails(&fake, &meta), want);
    let order: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/users"))
        .map(|c| c.method.clone())
        .collect();
    assert_eq!(order, ["DELETE", "POST"]);
}

#[tokio::test]
async fn a_full_sync_of_an_emptied_segment_empties_the_meta_audience() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "gone", 4).await;
    let id = audience(&t, seg, "Emptied").await;
    t.sync(&id, "full").await;
    let meta = meta_id(&t, &id).await;
    t.db.execute("DELETE FROM segment_member", &[])
        .await
        .unwrap();
    // Forced past the removal guardrails, which block it otherwise (tests/api/guard.rs).
    let r = t.sync_forced(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(fake.member_count(&meta), 0);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_the_sync_completes() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "th", 3).await;
    let id = audience(&t, seg, "Throttled").await;
    fake.inject(
        Fault::meta_error(
            FaultMatch::route("POST", "/usersreplace"),
            1,
            400,
            80003,
            None,
        )
        .with_regain_access_minutes(1),
    );
    fake.inject(Fault::meta_error(
        FaultMatch::route("POST", "/usersreplace"),
        1,
        400,
        17,
        None,
    ));
    fake.inject(Fault::html500(
        FaultMatch::route("POST", "/customaudiences"),
        1,
    ));
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    let meta = meta_id(&t, &id).await;
    assert_eq!(meta_emails(&fake, &meta), emails("th", 1..=3));
    let counts = call_counts(&fake.calls());
    assert_eq!(
        counts.get(&format!("POST /{meta}/usersreplace")),
        Some(&3),
        "{counts:?}"
    );
    assert_eq!(
        fake.audiences().len(),
        1,
        "the retried create made one audience"
    );
}

#[tokio::test]
async fn replace_in_progress_waits_and_retries() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "rp", 3).await;
    let id = audience(&t, seg, "Replace busy").await;
    fake.inject(Fault::meta_error(
        FaultMatch::route("POST", "/usersreplace"),
        2,
        400,
        2650,
        Some(1870145),
    ));
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(fake.member_count(&meta_id(&t, &id).await), 3);
}

#[tokio::test]
async fn an_invalid_token_fails_the_sync_with_an_actionable_message_and_never_leaks() {
    let fake = FakeMeta::start().await;
    let secret = "EAAGsecretTOKENvalue1234567890abcdefXYZ";
    let t = spawn_app_with(Some(fake.meta_config_with(secret, 4))).await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "tok", 2).await;
    let id = audience(&t, seg, "Token").await;
    let (status, r) = t
        .post(
            "/api/audiences/sync",
            &json!({"audience_id": id, "sync_type": "full"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["status"], "failed");
    let msg = r["error_message"].as_str().unwrap();
    assert!(msg.to_lowercase().contains("token"), "{msg}");
    let (_, err, meta_response, _) = log_of(&t, &r).await;
    let (_, a) = t
        .get(&format!(
            "/api/audiences/{id}?include=sync_logs,metrics,members"
        ))
        .await;
    for text in [
        r.to_string(),
        err.unwrap_or_default(),
        meta_response.to_string(),
        a.to_string(),
    ] {
        assert!(!text.contains(secret), "token leaked: {text}");
    }
    let dump: String = t
        .db
        .query_one("SELECT (SELECT json_agg(l)::text FROM audience_sync_log l) || (SELECT json_agg(c)::text FROM custom_audience c)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!dump.contains(secret));
    assert_eq!(fake.calls().len(), 1, "190 is not retried");
}

#[tokio::test]
async fn removals_refused_for_size_are_kept_for_a_later_sync() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "small", 5).await;
    let id = audience(&t, seg, "Small").await;
    t.sync(&id, "full").await;
    let meta = meta_id(&t, &id).await;
    t.db.execute(
        "DELETE FROM segment_member WHERE person_id = $1",
        &[&people[0]],
    )
    .await
    .unwrap();
    fake.inject(Fault::meta_error(
        FaultMatch::route("DELETE", "/users"),
        1,
        400,
        200,
        Some(1870047),
    ));
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    let (_, _, meta_response, details) = log_of(&t, &r).await;
    assert!(
        meta_response["removals_deferred"].is_string(),
        "{meta_response}"
    );
    assert_eq!(details["removal_deferred"], 1);
    assert_eq!(t.member_ids(&id, "removal_pending").await.len(), 1);
    assert!(meta_emails(&fake, &meta).contains(&sha("small1@example.com")));

    let r = t.sync(&id, "incremental").await;
    assert_eq!(log_of(&t, &r).await.3["removed"], 1);
    assert!(!meta_emails(&fake, &meta).contains(&sha("small1@example.com")));
    assert!(t
        .member_ids(&id, "true")
        .await
        .iter()
        .all(|p| *p != people[0]));
}

#[tokio::test]
async fn invalid_entries_reported_by_meta_are_mapped_back_to_members() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "inv", 4).await;
    let id = audience(&t, seg, "Invalid").await;
    fake.set_invalid_hashes([sha("inv2@example.com")]);
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "completed");
    assert_eq!(r["failed_count"], 1, "{r}");
    assert_eq!(r["synced_count"], 3);
    let (_, _, meta_response, _) = log_of(&t, &r).await;
    assert_eq!(meta_response["num_invalid_entries"], 1);
    assert!(meta_response["invalid_entry_samples"]
        .to_string()
        .contains(&sha("inv2@example.com")));
    let reason: Option<String> =
        t.db.query_one(
            "SELECT failure_reason FROM audience_member_sync WHERE person_id = $1",
            &[&people[1]],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reason.unwrap().contains("Meta"));
    assert_eq!(t.member_ids(&id, "NOT is_synced").await, vec![people[1]]);
}

#[tokio::test]
async fn a_lookalike_needs_a_seed_of_100_then_is_built_from_it() {
    let (fake, t) = setup().await;
    let seg = t.segment("Seed").await;
    t.people_in_segment(seg, "seed", 99).await;
    let a = t
        .create_audience(json!({
            "name": "Look", "audience_type": "lookalike", "segment_id": seg,
            "lookalike_country": "US", "lookalike_percentage": 5,
        }))
        .await;
    let id = a["id"].as_str().unwrap();
    let r = t.sync(id, "full").await;
    assert_eq!(r["status"], "failed");
    let msg = r["error_message"].as_str().unwrap();
    assert!(msg.contains("100") && msg.contains("99"), "{msg}");
    assert!(fake.audiences().is_empty(), "nothing created in Meta");

    t.people_in_segment(seg, "more", 21).await;
    let r = t.sync(id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    let seed = a["meta_seed_audience_id"].as_str().unwrap();
    let look = a["meta_audience_id"].as_str().unwrap();
    assert_eq!(fake.audience(seed).unwrap().subtype, "CUSTOM");
    assert_eq!(fake.member_count(seed), 120);
    let l = fake.audience(look).unwrap();
    assert_eq!(l.subtype, "LOOKALIKE");
    assert_eq!(l.origin_audience_id.as_deref(), Some(seed));
    assert_eq!(
        l.lookalike_spec,
        Some(json!({"country": "US", "ratio": 0.05}))
    );

    // Deleting it removes both in Meta.
    let (status, _) = t.delete(&format!("/api/audiences/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(fake.audiences().is_empty());
}

#[tokio::test]
async fn an_engagement_audience_is_created_from_its_pixel_rule() {
    let (fake, t) = setup().await;
    let a = t
        .create_audience(json!({
            "name": "Viewed pricing", "audience_type": "engagement",
            "rule": {"pixel_id": "998877", "event": "ViewContent", "retention_days": 30},
        }))
        .await;
    let r = t.sync(a["id"].as_str().unwrap(), "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    let created = &fake.audiences()[0];
    assert_eq!(created.subtype, "WEBSITE");
    let rule = created.rule.as_ref().unwrap().to_string();
    assert!(
        rule.contains("998877") && rule.contains("ViewContent") && rule.contains("2592000"),
        "{rule}"
    );
}

#[tokio::test]
async fn delete_goes_to_meta_first_and_a_meta_refusal_deletes_nothing() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "del", 2).await;
    let id = audience(&t, seg, "Delete me").await;
    t.sync(&id, "full").await;
    let meta = meta_id(&t, &id).await;
    let path = format!("/api/audiences/{id}");

    fake.inject(Fault::meta_error(
        FaultMatch::route("DELETE", &format!("/{meta}")),
        1,
        400,
        2656,
        None,
    ));
    let (status, err) = t.delete(&path).await;
    support::assert_error(status, &err, StatusCode::CONFLICT, None);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("lookalike"));

    fake.inject(Fault::html500(
        FaultMatch::route("DELETE", &format!("/{meta}")),
        10,
    ));
    let (status, err) = t.delete(&path).await;
    support::assert_error(status, &err, StatusCode::BAD_GATEWAY, None);
    assert!(fake.audience(&meta).is_some());
    let (status, _) = t.get(&path).await;
    assert_eq!(status, StatusCode::OK, "still here after Meta failed");

    fake.clear_faults();
    let (status, _) = t.delete(&path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(fake.audience(&meta).is_none());
}

#[tokio::test]
async fn sync_all_passes_over_an_audience_deleted_while_it_runs() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "gone", 3).await;
    // Listed newest first: `first` syncs first, slowly, while `second` is deleted.
    let second = audience(&t, seg, "second").await;
    let first = audience(&t, seg, "first").await;
    fake.inject(Fault::delay(
        FaultMatch::route("POST", "/usersreplace"),
        1,
        std::time::Duration::from_secs(3),
    ));
    let all = {
        let t = &t;
        async move { t.request("POST", "/api/audiences/sync", None).await }
    };
    let delete = async {
        while !fake
            .calls()
            .iter()
            .any(|c| c.path.ends_with("/usersreplace"))
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        t.delete(&format!("/api/audiences/{second}")).await
    };
    let ((status, r), (deleted, _)) = tokio::join!(all, delete);
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (
            &r["total_audiences"],
            &r["synced"],
            &r["failed"],
            &r["skipped"]
        ),
        (&json!(2), &json!(1), &json!(0), &json!(1)),
        "{r}"
    );
    let results = r["results"].as_array().unwrap();
    assert_eq!(results[0]["audience_id"], first.as_str());
    assert_eq!(results[0]["status"], "completed");
    assert_eq!(results[1]["audience_id"], second.as_str());
    assert_eq!(results[1]["status"], "skipped");
}

/// The audience is deleted in Ads Manager between syncs: the next sync fails saying so and
/// clears the id (no member stays marked synced), and the one after creates a new audience in
/// Meta holding every member.
#[tokio::test]
async fn an_audience_deleted_in_meta_is_recreated_and_refilled_by_the_next_sync() {
    let (fake, t) = setup().await;
    let seg = t.segment("Gone").await;
    t.people_in_segment(seg, "g", 12).await;
    let id = audience(&t, seg, "Deleted outside").await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    let first = meta_id(&t, &id).await;
    fake.delete_outside(&first);

    t.people_in_segment(seg, "late", 3).await;
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "failed", "{r}");
    let message = r["error_message"].as_str().unwrap();
    assert!(
        message.contains(&first) && message.contains("no longer exists"),
        "{message}"
    );
    let (status, error, _, _) = log_of(&t, &r).await;
    assert_eq!(status, "failed");
    assert_eq!(error.as_deref(), Some(message));
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert!(a["meta_audience_id"].is_null(), "{a}");
    assert!(a["destination_audience_id"].is_null(), "{a}");
    assert_eq!(a["status"], "failed");
    assert_eq!(a["sync_error_message"], message);
    assert_eq!(a["total_synced"], 0, "Meta holds none of them now");
    assert!(t.member_ids(&id, "is_synced").await.is_empty());

    // An incremental sync is enough: every member goes to the new audience.
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 15);
    let second = meta_id(&t, &id).await;
    assert_ne!(second, first);
    let mut want = emails("g", 1..=12);
    want.extend(emails("late", 1..=3));
    assert_eq!(meta_emails(&fake, &second), want);
    assert_eq!(fake.audiences().len(), 1);
}

/// Meta answers 100/33 alike for a deleted audience and for one the token may not read: when
/// the ad account cannot be read either, nothing is concluded and the ids stay.
#[tokio::test]
async fn a_missing_object_answer_without_proof_of_deletion_keeps_the_audience() {
    let (fake, t) = setup().await;
    let seg = t.segment("Hidden").await;
    t.people_in_segment(seg, "h", 5).await;
    let id = audience(&t, seg, "Not shared").await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    let meta = meta_id(&t, &id).await;
    fake.delete_outside(&meta);
    // The token cannot read the ad account either (not assigned to it).
    fake.inject(Fault::meta_error(
        FaultMatch::route("GET", "/customaudiences"),
        10,
        400,
        100,
        Some(33),
    ));
    t.people_in_segment(seg, "h2-", 1).await;
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "failed", "{r}");
    let message = r["error_message"].as_str().unwrap();
    assert!(!message.contains("no longer exists"), "{message}");
    assert_eq!(meta_id(&t, &id).await, meta, "the id stays");
}

/// A lookalike deleted in Meta while its seed stays: the seed keeps its members and the next
/// sync builds a new lookalike from it.
#[tokio::test]
async fn a_lookalike_deleted_in_meta_is_built_again_from_its_seed() {
    let (fake, t) = setup().await;
    let seg = t.segment("Seed").await;
    t.people_in_segment(seg, "seed", 100).await;
    let a = t
        .create_audience(json!({
            "name": "Look", "audience_type": "lookalike", "segment_id": seg,
            "lookalike_country": "US", "lookalike_percentage": 2,
        }))
        .await;
    let id = a["id"].as_str().unwrap();
    assert_eq!(t.sync(id, "full").await["status"], "completed");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    let (seed, look) = (
        a["meta_seed_audience_id"].as_str().unwrap().to_string(),
        a["meta_audience_id"].as_str().unwrap().to_string(),
    );
    fake.delete_outside(&look);
    let r = t.sync(id, "incremental").await;
    assert_eq!(r["status"], "failed", "{r}");
    assert!(r["error_message"].as_str().unwrap().contains(&look));
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert!(a["meta_audience_id"].is_null());
    assert_eq!(a["meta_seed_audience_id"], seed.as_str());
    assert_eq!(
        t.member_ids(id, "is_synced").await.len(),
        100,
        "the seed holds them"
    );

    assert_eq!(t.sync(id, "incremental").await["status"], "completed");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    let rebuilt = a["meta_audience_id"].as_str().unwrap();
    assert_ne!(rebuilt, look);
    assert_eq!(
        fake.audience(rebuilt)
            .unwrap()
            .origin_audience_id
            .as_deref(),
        Some(seed.as_str())
    );
    assert_eq!(fake.member_count(&seed), 100);
}
