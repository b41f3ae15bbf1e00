//! Safe syncs (DESIGN §8.4): a dry run shows what a sync would do and changes nothing (the
//! database as it was, no call to the fake Graph API); the removal guardrails stop a sync that
//! would take out too much before any platform call, keep nothing of its diff, and let it
//! through once with `force`; erased and opted-out people are never held back.

use std::time::{Duration, Instant};

use audience_sync::sync::scheduler::{tick, TickOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::fake_meta::{FakeMeta, RecordedCall, FAKE_AD_ACCOUNT};
use crate::support::{self, count, spawn_app, spawn_app_with, TestApp};

async fn setup() -> (FakeMeta, TestApp) {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config())).await;
    (fake, t)
}

async fn audience(t: &TestApp, seg: Uuid, extra: Value) -> String {
    let mut body = json!({"name": format!("guarded {}", Uuid::new_v4()), "segment_id": seg});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let a = t.create_audience(body).await;
    a["id"].as_str().unwrap().to_string()
}

async fn post_sync(t: &TestApp, body: Value) -> Value {
    let (status, answer) = t.post("/api/audiences/sync", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

async fn meta_id(t: &TestApp, id: &str) -> String {
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    a["meta_audience_id"]
        .as_str()
        .expect("meta_audience_id")
        .into()
}

/// Everything a sync or a dry run could write, as text: member rows, joiner lists, sync log
/// rows, segment memberships and rows, audience rows (their change-log horizons too), the
/// change log.
async fn snapshot(t: &TestApp) -> Vec<String> {
    let mut all = Vec::new();
    for table in [
        "audience_member_sync",
        "audience_member_joiner",
        "audience_member_purge",
        "audience_sync_log",
        "segment_member",
        "segment",
        "custom_audience",
        "change_log",
    ] {
        let sql = format!(
            "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {table} t"
        );
        let text: String = t.db.query_one(&sql, &[]).await.unwrap().get(0);
        all.push(format!("{table}:\n{text}"));
    }
    all
}

/// The calls that change the audience, as (method, path without the version, rows).
fn changes(calls: &[RecordedCall]) -> Vec<(String, String, u64)> {
    calls
        .iter()
        .filter(|c| c.method != "GET")
        .map(|c| {
            let trimmed = c.path.trim_start_matches('/');
            let path = trimmed.find('/').map_or("", |i| &trimmed[i..]);
            (c.method.clone(), path.to_string(), c.rows as u64)
        })
        .collect()
}

fn planned(dry: &Value) -> Vec<(String, String, u64)> {
    dry["destination_calls"]
        .as_array()
        .expect("destination_calls")
        .iter()
        .map(|c| {
            let method = c["method"].as_str().unwrap().to_string();
            (
                method,
                c["path"].as_str().unwrap().into(),
                c["rows"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn log_row(t: &TestApp, answer: &Value) -> (String, Option<String>, Value) {
    let id = Uuid::parse_str(answer["sync_log_id"].as_str().unwrap()).unwrap();
    let row =
        t.db.query_one(
            "SELECT status, error_message, details FROM audience_sync_log WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// The members of `people` leave the segment.
async fn leave(t: &TestApp, seg: Uuid, people: &[Uuid]) {
    t.db.execute(
        "DELETE FROM segment_member WHERE segment_id = $1 AND person_id = ANY($2)",
        &[&seg, &people],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_dry_run_shows_what_the_sync_then_does_and_changes_nothing() {
    let (fake, t) = setup().await;
    let seg = t.segment("dry").await;
    let people = t.people_in_segment(seg, "d", 30).await;
    let id = audience(&t, seg, json!({})).await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    let meta = meta_id(&t, &id).await;

    // 5 leave, 7 join, 2 join who cannot be sent, 3 change their email.
    leave(&t, seg, &people[..5]).await;
    t.people_in_segment(seg, "joiner", 7).await;
    t.person(seg, None, None).await;
    t.person(seg, None, None).await;
    t.db.execute(
        "UPDATE person SET email = 'new.' || email WHERE id = ANY($1)",
        &[&people[10..13].to_vec()],
    )
    .await
    .unwrap();

    let before = snapshot(&t).await;
    fake.clear_calls();
    let dry = post_sync(
        &t,
        json!({"audience_id": id, "sync_type": "update", "dry_run": true}),
    )
    .await;
    assert!(
        fake.calls().is_empty(),
        "no platform call: {:?}",
        fake.calls()
    );
    assert_eq!(snapshot(&t).await, before, "a dry run writes nothing");

    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["audience_id"], id.as_str());
    assert_eq!(dry["sync_type"], "update");
    assert_eq!(
        (&dry["joiners"], &dry["leavers"]),
        (&json!(9), &json!(5)),
        "{dry}"
    );
    assert_eq!(dry["changed"], 3, "{dry}");
    let unsendable = dry["unsendable"].as_object().expect("unsendable");
    assert_eq!(unsendable.len(), 1, "{dry}");
    assert_eq!(unsendable.values().next(), Some(&json!(2)), "{dry}");
    assert_eq!(
        dry["would_block"],
        Value::Null,
        "5 of 30 is within 50%: {dry}"
    );
    let users = format!("/{meta}/users");
    let expected = vec![
        ("DELETE".to_string(), users.clone(), 5),
        ("DELETE".to_string(), users.clone(), 3),
        ("POST".to_string(), users.clone(), 10),
    ];
    assert_eq!(planned(&dry), expected, "{dry}");

    // A second dry run sees the same: the first left nothing behind.
    let again = post_sync(
        &t,
        json!({"audience_id": id, "sync_type": "update", "dry_run": true}),
    )
    .await;
    assert_eq!(again, dry);

    // The real sync does what the dry run said, call for call.
    let r = t.sync(&id, "update").await;
    assert_eq!(r["status"], "completed", "{r}");
    let (_, _, details) = log_row(&t, &r).await;
    assert_eq!(details["joiners"], dry["joiners"], "{details}");
    assert_eq!(details["leavers"], dry["leavers"], "{details}");
    assert_eq!(details["changed"], dry["changed"], "{details}");
    assert_eq!(details["no_identifier"], 2, "{details}");
    assert_eq!(changes(&fake.calls()), expected);
    assert_eq!(fake.member_count(&meta), 30 - 5 + 7);
}

#[tokio::test]
async fn a_dry_run_of_a_new_audience_shows_its_create_call_and_creates_nothing() {
    let (fake, t) = setup().await;
    let seg = t.segment("new").await;
    t.people_in_segment(seg, "n", 12).await;
    let id = audience(&t, seg, json!({})).await;
    let before = snapshot(&t).await;
    let dry = post_sync(
        &t,
        json!({"audience_id": id, "sync_type": "full", "dry_run": true}),
    )
    .await;
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    assert!(fake.audiences().is_empty(), "nothing created");
    assert_eq!(snapshot(&t).await, before);
    assert_eq!(
        (&dry["joiners"], &dry["leavers"]),
        (&json!(12), &json!(0)),
        "{dry}"
    );
    let account = FAKE_AD_ACCOUNT.trim_start_matches("act_");
    assert_eq!(
        planned(&dry),
        [
            ("POST".into(), format!("/act_{account}/customaudiences"), 0),
            ("POST".into(), "/{new_audience_id}/usersreplace".into(), 12),
        ],
        "{dry}"
    );
    // Without a type, a dry run is of an incremental sync.
    let dry = post_sync(&t, json!({"audience_id": id, "dry_run": true})).await;
    assert_eq!(dry["sync_type"], "incremental", "{dry}");
    assert_eq!(planned(&dry)[1].1, "/{new_audience_id}/users", "{dry}");
}

#[tokio::test]
async fn a_dry_run_needs_an_audience_and_waits_for_no_running_sync() {
    let t = spawn_app().await;
    let (status, body) = t
        .post("/api/audiences/sync", &json!({"dry_run": true}))
        .await;
    support::assert_error(status, &body, StatusCode::BAD_REQUEST, Some("audience_id"));
    let (status, body) = t
        .post(
            "/api/audiences/sync",
            &json!({"dry_run": "yes", "audience_id": Uuid::new_v4()}),
        )
        .await;
    support::assert_error(status, &body, StatusCode::BAD_REQUEST, Some("dry_run"));
    let (status, body) = t
        .post(
            "/api/audiences/sync",
            &json!({"dry_run": true, "audience_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let seg = t.segment("busy").await;
    t.people_in_segment(seg, "b", 3).await;
    let id = audience(&t, seg, json!({})).await;
    // A sync holds the audience's lock (the engine's advisory lock, taken here by hand).
    let other = support::connect(&t.db_url).await;
    other
        .query_one(
            "SELECT pg_advisory_lock(hashtextextended($1::text, 7300))",
            &[&id],
        )
        .await
        .unwrap();
    let (status, dry) = t
        .post(
            "/api/audiences/sync",
            &json!({"audience_id": id, "dry_run": true}),
        )
        .await;
    let (_, sync) = t
        .post("/api/audiences/sync", &json!({"audience_id": id}))
        .await;
    support::assert_error(status, &dry, StatusCode::CONFLICT, None);
    assert_eq!(dry, sync, "the conflict a second sync gets");
}

#[tokio::test]
async fn an_emptied_segments_full_sync_is_blocked_until_forced() {
    let (fake, t) = setup().await;
    let seg = t.segment("emptied").await;
    t.people_in_segment(seg, "e", 40).await;
    let id = audience(&t, seg, json!({})).await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    let meta = meta_id(&t, &id).await;
    assert_eq!(fake.member_count(&meta), 40);

    t.db.execute("DELETE FROM segment_member WHERE segment_id = $1", &[&seg])
        .await
        .unwrap();
    fake.clear_calls();
    let before = snapshot(&t).await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "blocked", "{r}");
    assert_eq!(r["blocked_by"], "max_removal_percent", "{r}");
    assert_eq!(
        (&r["would_remove"], &r["holds"], &r["would_leave"]),
        (&json!(40), &json!(40), &json!(0)),
        "{r}"
    );
    assert!(
        fake.calls().is_empty(),
        "stopped before any call: {:?}",
        fake.calls()
    );
    assert_eq!(fake.member_count(&meta), 40, "Meta keeps everyone");

    let (status, message, details) = log_row(&t, &r).await;
    assert_eq!(status, "blocked");
    let message = message.expect("the log says why");
    assert!(
        message.contains("max_removal_percent") && message.contains("40"),
        "{message}"
    );
    assert_eq!(details["would_remove"], 40, "{details}");
    assert_eq!(details["blocked_by"], "max_removal_percent", "{details}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(a["sync_error_message"], message.as_str(), "{a}");
    assert_eq!(a["total_synced"], 40, "{a}");
    // Nothing of the diff was kept: members as they were, no flag left behind.
    let mut after = snapshot(&t).await;
    for (b, a) in before.iter().zip(after.iter_mut()) {
        if !b.starts_with("audience_sync_log") && !b.starts_with("custom_audience") {
            assert_eq!(a, b);
        }
    }
    let pending = count(
        &t.db,
        "SELECT count(*) FROM audience_member_sync WHERE removal_pending",
        &[],
    )
    .await;
    assert_eq!(pending, 0);

    // The next sync finds the same leavers, and a dry run says so too.
    let again = t.sync(&id, "full").await;
    assert_eq!(
        (&again["status"], &again["would_remove"]),
        (&json!("blocked"), &json!(40))
    );
    let dry = post_sync(
        &t,
        json!({"audience_id": id, "sync_type": "full", "dry_run": true}),
    )
    .await;
    assert_eq!(
        dry["would_block"]["blocked_by"], "max_removal_percent",
        "{dry}"
    );
    assert_eq!(dry["would_block"]["would_remove"], 40, "{dry}");
    let forced_dry = post_sync(
        &t,
        json!({"audience_id": id, "sync_type": "full", "dry_run": true, "force": true}),
    )
    .await;
    assert_eq!(forced_dry["would_block"], Value::Null, "{forced_dry}");
    assert_eq!(
        planned(&forced_dry),
        [("DELETE".into(), format!("/{meta}/users"), 40)],
        "a replace of nothing is a removal of everything: {forced_dry}"
    );
    assert!(fake.calls().is_empty());

    // Forced, once.
    let forced = post_sync(
        &t,
        json!({"audience_id": id, "sync_type": "full", "force": true}),
    )
    .await;
    assert_eq!(forced["status"], "completed", "{forced}");
    assert_eq!(fake.member_count(&meta), 0);
    let (_, _, details) = log_row(&t, &forced).await;
    assert_eq!(details["forced_past"]["would_remove"], 40, "{details}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(a["sync_error_message"], Value::Null, "{a}");
}

#[tokio::test]
async fn erased_and_opted_out_people_are_removed_whatever_the_limit() {
    let (fake, t) = setup().await;
    let seg = t.segment("gdpr").await;
    let people = t.people_in_segment(seg, "g", 10).await;
    let id = audience(&t, seg, json!({"min_members": 5})).await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    let meta = meta_id(&t, &id).await;

    // 4 erased and 3 opted out: 70% of the audience, down to 3 members, yet not counted.
    t.db.execute(
        "DELETE FROM person WHERE id = ANY($1)",
        &[&people[..4].to_vec()],
    )
    .await
    .unwrap();
    t.db.execute(
        "UPDATE person SET marketing_opt_out = true WHERE id = ANY($1)",
        &[&people[4..7].to_vec()],
    )
    .await
    .unwrap();
    let dry = post_sync(&t, json!({"audience_id": id, "dry_run": true})).await;
    assert_eq!(dry["would_block"], Value::Null, "{dry}");
    assert_eq!(dry["leavers"], 7, "{dry}");
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(fake.member_count(&meta), 3);

    // One of the 3 left leaving the segment is counted: 1 of 3 is within 50%, but it would
    // leave 2, fewer than min_members 5.
    leave(&t, seg, &people[7..8]).await;
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "blocked", "{r}");
    assert_eq!(r["blocked_by"], "min_members", "{r}");
    assert_eq!(
        (&r["would_remove"], &r["holds"], &r["would_leave"]),
        (&json!(1), &json!(3), &json!(2)),
        "{r}"
    );
    assert_eq!(fake.member_count(&meta), 3);
}

#[tokio::test]
async fn min_members_blocks_and_a_first_sync_is_never_blocked() {
    let (fake, t) = setup().await;
    let seg = t.segment("min").await;
    let people = t.people_in_segment(seg, "m", 10).await;
    // A first sync has nothing to protect: fewer members than min_members is no reason to stop.
    let id = audience(&t, seg, json!({"min_members": 100})).await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    let meta = meta_id(&t, &id).await;
    assert_eq!(fake.member_count(&meta), 10);
    // Joiners alone are never blocked either.
    t.people_in_segment(seg, "more", 2).await;
    assert_eq!(t.sync(&id, "incremental").await["status"], "completed");

    let (status, body) = t
        .put(&format!("/api/audiences/{id}"), &json!({"min_members": 10}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    leave(&t, seg, &people[..3]).await;
    let r = t.sync(&id, "incremental").await;
    assert_eq!(
        (&r["status"], &r["blocked_by"]),
        (&json!("blocked"), &json!("min_members")),
        "{r}"
    );
    assert_eq!(
        (&r["would_remove"], &r["holds"], &r["would_leave"]),
        (&json!(3), &json!(12), &json!(9)),
        "{r}"
    );
    assert!(
        r["error_message"]
            .as_str()
            .unwrap()
            .contains("min_members 10"),
        "{r}"
    );
    assert_eq!(fake.member_count(&meta), 12);

    let (status, body) = t
        .put(&format!("/api/audiences/{id}"), &json!({"min_members": 9}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.sync(&id, "incremental").await["status"], "completed");
    assert_eq!(fake.member_count(&meta), 9);
}

#[tokio::test]
async fn a_limit_of_null_turns_the_guardrail_off() {
    let (fake, t) = setup().await;
    let seg = t.segment("off").await;
    t.people_in_segment(seg, "o", 10).await;
    let id = audience(&t, seg, json!({"max_removal_percent": null})).await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    t.db.execute("DELETE FROM segment_member WHERE segment_id = $1", &[&seg])
        .await
        .unwrap();
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(fake.member_count(&meta_id(&t, &id).await), 0);
}

#[tokio::test]
async fn sync_all_and_the_scheduler_count_blocked_syncs_and_never_force() {
    let (fake, t) = setup().await;
    let (kept, emptied) = (t.segment("kept").await, t.segment("emptied").await);
    t.people_in_segment(kept, "k", 4).await;
    t.people_in_segment(emptied, "x", 6).await;
    let a = audience(&t, kept, json!({"auto_sync": true})).await;
    let b = audience(&t, emptied, json!({"auto_sync": true})).await;
    for id in [&a, &b] {
        assert_eq!(t.sync(id, "full").await["status"], "completed");
    }
    t.db.execute(
        "DELETE FROM segment_member WHERE segment_id = $1",
        &[&emptied],
    )
    .await
    .unwrap();
    // Both due again.
    t.db.execute(
        "UPDATE custom_audience SET last_synced_at = now() - interval '2 days'",
        &[],
    )
    .await
    .unwrap();
    let opts = TickOptions {
        deadline: Instant::now() + Duration::from_secs(60),
        reserve: Duration::from_secs(1),
        lease: Duration::from_secs(1),
    };
    let tally = tick(&t.app, opts).await.unwrap();
    assert_eq!(
        (tally.completed, tally.blocked, tally.failed),
        (1, 1, 0),
        "{tally:?}"
    );

    let (status, all) = t.request("POST", "/api/audiences/sync", None).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(
        (&all["synced"], &all["blocked"], &all["failed"]),
        (&json!(1), &json!(1), &json!(0)),
        "{all}"
    );
    let blocked: Vec<&Value> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "blocked")
        .collect();
    assert_eq!(blocked.len(), 1, "{all}");
    assert_eq!(blocked[0]["audience_id"], b.as_str());
    assert_eq!(blocked[0]["would_remove"], 6);
    assert_eq!(fake.member_count(&meta_id(&t, &b).await), 6);
}

/// The JSON the command prints as its last line.
async fn cli_json(t: &TestApp, args: &[&str]) -> Value {
    let out = support::audiences_cli(args, &t.db_url)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("JSON")
}

#[tokio::test]
async fn the_cli_dry_runs_and_forces() {
    // Meta is not configured for the command: the database side alone, guarded the same.
    let t = spawn_app().await;
    let seg = t.segment("cli").await;
    t.people_in_segment(seg, "c", 5).await;
    let id = audience(&t, seg, json!({})).await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    t.db.execute("DELETE FROM segment_member WHERE segment_id = $1", &[&seg])
        .await
        .unwrap();

    let before = snapshot(&t).await;
    let dry = cli_json(&t, &["sync", &id, "--type", "full", "--dry-run"]).await;
    assert_eq!(snapshot(&t).await, before);
    assert_eq!(
        (&dry["dry_run"], &dry["leavers"]),
        (&json!(true), &json!(5)),
        "{dry}"
    );
    assert_eq!(
        dry["would_block"]["blocked_by"], "max_removal_percent",
        "{dry}"
    );
    assert_eq!(dry["destination_calls"], json!([]), "no platform: {dry}");

    let blocked = cli_json(&t, &["sync", &id, "--type", "full"]).await;
    assert_eq!(blocked["status"], "blocked", "{blocked}");
    let forced = cli_json(&t, &["sync", &id, "--type", "full", "--force"]).await;
    assert_eq!(forced["status"], "completed", "{forced}");
    let left = count(
        &t.db,
        "SELECT count(*) FROM audience_member_sync WHERE hashes IS NOT NULL",
        &[],
    )
    .await;
    assert_eq!(left, 0);
}

/// Calls as (method, path, rows), GETs and the token endpoint left out (a dry run lists only
/// what changes the platform).
type Calls = Vec<(String, String, u64)>;

/// On `destination`: a first full sync, then 3 of 8 leave and 6 join; a dry run of a full
/// sync calls nothing and lists exactly the calls the real one then makes. `calls` reads what
/// the platform's fake received since `clear` last emptied it.
async fn plan_matches(
    t: &TestApp,
    destination: &str,
    calls: impl Fn() -> Calls,
    clear: impl Fn(),
) -> Calls {
    let seg = t.segment(destination).await;
    let people = t.people_in_segment(seg, destination, 8).await;
    let id = audience(t, seg, json!({"destination": destination})).await;
    let first = post_sync(
        t,
        json!({"audience_id": id, "sync_type": "full", "dry_run": true}),
    )
    .await;
    assert!(calls().is_empty(), "{:?}", calls());
    let create = planned(&first)[0].clone();
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    assert_eq!(calls()[0], create, "the create call as planned");

    leave(t, seg, &people[..3]).await;
    t.people_in_segment(seg, "joiner", 6).await;
    clear();
    let dry = post_sync(
        t,
        json!({"audience_id": id, "sync_type": "full", "dry_run": true}),
    )
    .await;
    assert!(calls().is_empty(), "{:?}", calls());
    assert_eq!(
        (&dry["joiners"], &dry["leavers"]),
        (&json!(6), &json!(3)),
        "{dry}"
    );
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(calls(), planned(&dry), "{dry}");
    planned(&dry)
}

/// `/v1/x` → `/x`.
fn unversioned(path: &str) -> String {
    let trimmed = path.trim_start_matches('/');
    trimmed
        .find('/')
        .map_or(String::new(), |i| trimmed[i..].to_string())
}

#[tokio::test]
async fn a_dry_run_lists_the_calls_google_linkedin_and_tiktok_then_receive() {
    use crate::support::{fake_google::FakeGoogle, fake_linkedin::FakeLinkedin};
    use crate::support::{fake_tiktok::FakeTiktok, spawn_app_configured};

    let google = FakeGoogle::start().await;
    let linkedin = FakeLinkedin::start().await;
    let tiktok = FakeTiktok::start().await;
    let (g, l, k) = (google.google_config(), linkedin.config(), tiktok.config());
    let t = spawn_app_configured(|c| {
        c.db_pool_size = 8;
        c.google = Some(g);
        c.linkedin = Some(l);
        c.tiktok = Some(k);
    })
    .await;

    let calls = || {
        let c = google.calls();
        c.iter()
            .filter(|c| c.method != "GET" && c.path != "/token")
            .map(|c| (c.method.clone(), unversioned(&c.path), c.members as u64))
            .collect()
    };
    let plan = plan_matches(&t, "google", calls, || google.clear_calls()).await;
    let kinds: Vec<&str> = plan.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        kinds,
        ["/audienceMembers:remove", "/audienceMembers:ingest"]
    );

    let calls = || {
        let c = linkedin.calls();
        c.iter()
            .filter(|c| c.method != "GET")
            .map(|c| (c.method.clone(), c.path.clone(), c.elements as u64))
            .collect()
    };
    let plan = plan_matches(&t, "linkedin", calls, || linkedin.clear_calls()).await;
    assert_eq!(plan.iter().map(|c| c.2).collect::<Vec<_>>(), [3, 11]);

    let calls = || {
        let c = tiktok.calls();
        c.iter()
            .filter(|c| c.method != "GET")
            .map(|c| (c.method.clone(), c.path.clone(), c.users as u64))
            .collect()
    };
    let plan = plan_matches(&t, "tiktok", calls, || tiktok.clear_calls()).await;
    assert_eq!(
        plan.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
        ["/segment/mapping/"; 2]
    );
}
