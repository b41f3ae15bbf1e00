//! The scheduler pass: due audiences claimed once across concurrent passes, the scheduled
//! Lambda's event, and syncs that pause or die half-way resuming at the next pass.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audience_sync::sync::scheduler::{tick, TickOptions};
use audience_sync::sync::{run, NoProgress, SyncStatus, SyncType};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::fake_meta::{FakeMeta, Fault, FaultMatch, DEFAULT_FAKE_TOKEN};
use crate::support::{self, spawn_app, spawn_app_with, TestApp};

fn opts(secs: u64) -> TickOptions {
    TickOptions {
        deadline: Instant::now() + Duration::from_secs(secs),
        reserve: Duration::from_secs(1),
        lease: Duration::from_secs(1),
    }
}

async fn due_audiences(t: &TestApp, seg: Uuid, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let name = format!("due {}", Uuid::new_v4());
        let a = t
            .create_audience(json!({"name": name, "segment_id": seg, "auto_sync": true}))
            .await;
        ids.push(a["id"].as_str().unwrap().to_string());
    }
    ids
}

/// `audiences tick` as a process of its own, against the test's database.
fn tick_process(t: &TestApp, extra_env: &[(&str, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_audiences"));
    cmd.arg("tick")
        .env("DATABASE_URL", &t.db_url)
        .env("RUST_LOG", "warn")
        .env_remove("META_ACCESS_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd
}

async fn log_statuses(t: &TestApp, audience_id: Uuid) -> Vec<String> {
    support::column(
        &t.db,
        "SELECT status FROM audience_sync_log WHERE audience_id = $1",
        &[&audience_id],
    )
    .await
}

fn last_json_line(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().unwrap_or_else(|| panic!("no output"));
    serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))
}

#[tokio::test]
async fn two_tick_processes_at_once_sync_each_due_audience_exactly_once() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "due", 3_000).await;
    let ids = due_audiences(&t, seg, 20).await;

    let (a, b) = tokio::join!(
        tick_process(&t, &[]).output(),
        tick_process(&t, &[]).output()
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let (sa, sb) = (last_json_line(&a.stdout), last_json_line(&b.stdout));
    let completed = sa["completed"].as_u64().unwrap() + sb["completed"].as_u64().unwrap();
    assert_eq!(completed, 20, "{sa} {sb}");
    assert_eq!(
        sa["failed"].as_u64().unwrap() + sb["failed"].as_u64().unwrap(),
        0
    );

    for id in &ids {
        let logs = log_statuses(&t, Uuid::parse_str(id).unwrap()).await;
        assert_eq!(logs, ["completed"], "audience {id} synced exactly once");
    }
    // Nothing is due any more.
    let again = tick_process(&t, &[]).output().await.unwrap();
    assert_eq!(last_json_line(&again.stdout)["claimed"], 0);
}

/// A sync of it running elsewhere (here: the test holds the audience's sync lock) makes the
/// pass skip the audience once and go on, instead of claiming it again and again until its
/// deadline.
#[tokio::test]
async fn an_audience_busy_elsewhere_is_passed_over_for_the_rest_of_the_pass() {
    let t = spawn_app().await;
    let seg = t.segment("Busy").await;
    t.people_in_segment(seg, "b", 3).await;
    let busy = due_audiences(&t, seg, 1).await;
    let free = due_audiences(&t, seg, 1).await;
    let locked: bool =
        t.db.query_one(
            "SELECT pg_try_advisory_lock(hashtextextended($1::text, 7300))",
            &[&busy[0]],
        )
        .await
        .unwrap()
        .get(0);
    assert!(locked);
    let summary = tick(&t.app, opts(5)).await.unwrap();
    assert_eq!(
        (summary.claimed, summary.skipped, summary.completed),
        (2, 1, 1),
        "{summary:?}"
    );
    let skipped = summary
        .results
        .iter()
        .find(|r| r["status"] == "skipped")
        .unwrap();
    assert_eq!(skipped["audience_id"], busy[0].as_str(), "{summary:?}");
    assert_eq!(
        log_statuses(&t, Uuid::parse_str(&free[0]).unwrap()).await,
        ["completed"]
    );
}

/// A scheduled Lambda may run with `DB_POOL_SIZE=1`: the pass holds no connection while the
/// sync it started needs one.
#[tokio::test]
async fn a_pass_with_a_pool_of_one_connection_syncs_the_due_audiences() {
    let t = support::spawn_app_configured(|c| c.db_pool_size = 1).await;
    let seg = t.segment("One").await;
    t.people_in_segment(seg, "o", 5).await;
    let due = due_audiences(&t, seg, 2).await;
    let summary = tick(&t.app, opts(60)).await.unwrap();
    assert_eq!((summary.claimed, summary.completed), (2, 2), "{summary:?}");
    for id in &due {
        assert_eq!(
            log_statuses(&t, Uuid::parse_str(id).unwrap()).await,
            ["completed"]
        );
    }
}

#[tokio::test]
async fn only_due_audiences_are_claimed() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "x", 2).await;
    let due = due_audiences(&t, seg, 1).await;
    t.create_audience(json!({"name": "manual", "segment_id": seg}))
        .await;
    t.create_audience(
        json!({"name": "inactive", "segment_id": seg, "auto_sync": true, "is_active": false}),
    )
    .await;
    let recent = due_audiences(&t, seg, 1).await;
    t.sync(&recent[0], "full").await;
    let stale = t
        .create_audience(json!({"name": "stale", "segment_id": seg, "auto_sync": true, "sync_interval_hours": 2}))
        .await;
    let stale_id = stale["id"].as_str().unwrap();
    t.sync(stale_id, "full").await;
    t.db.execute(
        "UPDATE custom_audience SET last_synced_at = now() - interval '3 hours' WHERE id = $1",
        &[&Uuid::parse_str(stale_id).unwrap()],
    )
    .await
    .unwrap();

    let summary = tick(&t.app, opts(30)).await.unwrap();
    assert_eq!(summary.claimed, 2, "{summary:?}");
    let synced: Vec<&str> = summary
        .results
        .iter()
        .map(|r| r["audience_id"].as_str().unwrap())
        .collect();
    assert!(synced.contains(&due[0].as_str()) && synced.contains(&stale_id));
    let types: Vec<String> = support::column(
        &t.db,
        "SELECT sync_type FROM audience_sync_log WHERE audience_id = $1 ORDER BY created_at",
        &[&Uuid::parse_str(stale_id).unwrap()],
    )
    .await;
    assert_eq!(
        types,
        ["full", "incremental"],
        "incremental once synced before"
    );
}

#[tokio::test]
async fn the_scheduled_lambda_runs_a_pass_from_its_eventbridge_event() {
    let t = spawn_app().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "ev", 5).await;
    due_audiences(&t, seg, 3).await;
    let path = format!("{}/events/scheduled-sync.json", env!("CARGO_MANIFEST_DIR"));
    let event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut ctx = lambda_http::Context::default();
    let deadline = std::time::SystemTime::now() + Duration::from_secs(120);
    ctx.deadline = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let summary =
        audience_sync::lambda::scheduled_handler(&t.app, lambda_http::LambdaEvent::new(event, ctx))
            .await
            .unwrap();
    assert_eq!(summary["claimed"], 3, "{summary}");
    assert_eq!(summary["completed"], 3);
    assert!(summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["synced_count"] == 5));
}

/// The service with Meta at the fake: 60 s a request (the slow batches below take 20–30 s), the
/// ad account the tick process is given.
async fn spawn_app_with_fake(fake: &FakeMeta) -> TestApp {
    let mut meta = fake.meta_config_with(DEFAULT_FAKE_TOKEN, 3);
    meta.ad_account_id = Some("act_77".into());
    meta.timeout = Duration::from_secs(60);
    spawn_app_with(Some(meta)).await
}

async fn replace_batches(fake: &FakeMeta) -> Vec<(u64, u64, bool, usize)> {
    fake.calls()
        .iter()
        .filter(|c| c.path.ends_with("/usersreplace") && c.status == 200)
        .map(|c| {
            let s = c.session.unwrap();
            (s.session_id, s.batch_seq, s.last_batch_flag, c.rows)
        })
        .collect()
}

/// A due audience of 25,000 whose first (full) sync ran out of time: its first batch is slow,
/// so the deadline passes during it (the margins are wide: the pages before it must be read and
/// hashed in time even on a loaded machine).
async fn paused_first_sync(
    tag: &str,
) -> (FakeMeta, TestApp, Uuid, audience_sync::sync::SyncResult) {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with_fake(&fake).await;
    let seg = t.segment("Big").await;
    t.people_in_segment(seg, tag, 25_000).await;
    let id = Uuid::parse_str(&due_audiences(&t, seg, 1).await[0]).unwrap();
    fake.inject(Fault::delay(
        FaultMatch::route("POST", "/usersreplace"),
        1,
        Duration::from_secs(20),
    ));
    let first = run(
        &t.app,
        id,
        Some(SyncType::Full),
        &NoProgress,
        Some(Instant::now() + Duration::from_secs(10)),
    )
    .await
    .unwrap();
    assert_eq!(first.status, SyncStatus::Paused, "{first:?}");
    (fake, t, id, first)
}

#[tokio::test]
async fn a_sync_out_of_time_pauses_and_the_next_pass_resumes_its_replace_session() {
    let (fake, t, id, first) = paused_first_sync("p").await;
    let checkpoint: Option<Value> =
        t.db.query_one(
            "SELECT checkpoint FROM audience_sync_log WHERE id = $1",
            &[&first.sync_log_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(checkpoint.unwrap()["pass"], "replace");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    let meta = a["meta_audience_id"].as_str().unwrap().to_string();
    assert!(fake.replace_in_progress(&meta), "{:?}", fake.calls());
    assert_eq!(
        fake.member_count(&meta),
        0,
        "a replace shows only once complete"
    );
    // A first sync writes each member's row once, when accepted: the rest are the segment's
    // people still without one (a first sync lists no joiners).
    let counts = |sql: &'static str| {
        let db = &t.db;
        async move { support::count(db, sql, &[&id]).await }
    };
    let waiting = counts(
        "SELECT count(*) FROM segment_member sm JOIN custom_audience a ON a.segment_id = sm.segment_id \
         WHERE a.id = $1 AND NOT EXISTS (SELECT 1 FROM audience_member_sync m \
                                         WHERE m.audience_id = a.id AND m.person_id = sm.person_id)",
    )
    .await;
    let written = counts("SELECT count(*) FROM audience_member_sync WHERE audience_id = $1").await;
    assert!(waiting > 0, "a paused first sync has joiners left");
    assert_eq!(waiting + written, 25_000, "each member in one place");

    let summary = tick(&t.app, opts(60)).await.unwrap();
    assert_eq!((summary.resumed, summary.completed), (1, 1), "{summary:?}");
    assert_eq!(fake.member_count(&meta), 25_000);
    assert_eq!(
        counts("SELECT count(*) FROM audience_member_joiner WHERE audience_id = $1").await,
        0
    );
    assert_eq!(
        counts("SELECT count(*) FROM audience_member_sync WHERE audience_id = $1 AND is_synced")
            .await,
        25_000
    );
    let batches = replace_batches(&fake).await;
    assert_eq!(
        batches.iter().map(|b| b.1).collect::<Vec<_>>(),
        [1, 2, 3],
        "{batches:?}"
    );
    assert!(
        batches.iter().all(|b| b.0 == batches[0].0),
        "one session across both passes"
    );
    assert_eq!(
        batches.iter().map(|b| b.2).collect::<Vec<_>>(),
        [false, false, true]
    );
    let log = t
        .db
        .query_one(
            "SELECT status, synced_count, resumed_count, checkpoint IS NULL FROM audience_sync_log WHERE audience_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(log.get::<_, String>(0), "completed");
    assert_eq!(
        log.get::<_, i32>(1),
        25_000,
        "counted once across the pause"
    );
    assert_eq!(log.get::<_, i32>(2), 1);
    assert!(log.get::<_, bool>(3), "checkpoint cleared");
}

#[tokio::test]
async fn an_api_sync_near_its_invocations_end_answers_paused_and_the_next_pass_finishes_it() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with_fake(&fake).await;
    let seg = t.segment("Big").await;
    t.people_in_segment(seg, "api", 25_000).await;
    // Not auto-synced: the scheduler finishes a paused sync whatever the audience's settings.
    let a = t
        .create_audience(json!({"name": "api paused", "segment_id": seg, "auto_sync": false}))
        .await;
    let id = Uuid::parse_str(a["id"].as_str().unwrap()).unwrap();
    // 8 s left: the reserve is 4 s (at most half), and the sync pauses half of it before the
    // end; the first batch takes 7 s, so the time is up when it returns.
    fake.inject(Fault::delay(
        FaultMatch::route("POST", "/usersreplace"),
        1,
        Duration::from_secs(7),
    ));
    let body = json!({"audience_id": id, "sync_type": "full"});
    let (status, answer) = support::lambda::post_within(
        &t,
        audience_sync::http::Group::Sync,
        "/api/audiences/sync",
        &body,
        Duration::from_secs(8),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "paused", "{answer}");
    let log_id = Uuid::parse_str(answer["sync_log_id"].as_str().unwrap()).unwrap();
    let row =
        t.db.query_one(
            "SELECT status, checkpoint IS NOT NULL FROM audience_sync_log WHERE id = $1",
            &[&log_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "in_progress");
    assert!(row.get::<_, bool>(1), "a checkpoint to resume from");

    let summary = tick(&t.app, opts(60)).await.unwrap();
    assert_eq!((summary.resumed, summary.completed), (1, 1), "{summary:?}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(
        fake.member_count(a["meta_audience_id"].as_str().unwrap()),
        25_000
    );
    assert_eq!(
        log_statuses(&t, id).await,
        ["completed"],
        "the same sync, resumed"
    );
}

#[tokio::test]
async fn a_tick_process_killed_mid_sync_is_resumed_by_the_next_pass() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with_fake(&fake).await;
    let seg = t.segment("Big").await;
    t.people_in_segment(seg, "k", 25_000).await;
    let id = Uuid::parse_str(&due_audiences(&t, seg, 1).await[0]).unwrap();
    // The second batch hangs: the process is killed while it waits.
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    fake.inject(Fault::delay(
        FaultMatch::when(move |m, p| {
            m == "POST"
                && p.ends_with("/usersreplace")
                && counter.fetch_add(1, Ordering::SeqCst) == 1
        }),
        1,
        Duration::from_secs(30),
    ));
    let env = [
        ("META_ACCESS_TOKEN", DEFAULT_FAKE_TOKEN.to_string()),
        ("META_GRAPH_URL", fake.url()),
        ("META_AD_ACCOUNT_ID", "77".to_string()),
        ("SYNC_LEASE_SECONDS", "1".to_string()),
    ];
    let mut child = tick_process(&t, &env).spawn().unwrap();
    let started = Instant::now();
    while seen.load(Ordering::SeqCst) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second batch never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap();
    let _ = child.wait().await;
    tokio::time::sleep(Duration::from_millis(1_200)).await; // the claim's lease runs out

    let summary = tick(&t.app, opts(60)).await.unwrap();
    assert_eq!((summary.resumed, summary.completed), (1, 1), "{summary:?}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    let meta = a["meta_audience_id"].as_str().unwrap();
    assert_eq!(fake.member_count(meta), 25_000);
    let got: std::collections::HashSet<String> = fake
        .members(meta)
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(got.len(), 25_000);
    let batches = replace_batches(&fake).await;
    assert!(
        batches.iter().all(|b| b.0 == batches[0].0),
        "the same session: {batches:?}"
    );
    assert!(batches.last().unwrap().2, "the session was closed");
    let statuses = log_statuses(&t, id).await;
    assert_eq!(
        statuses,
        ["completed"],
        "one sync, resumed, not a second one"
    );
}

#[tokio::test]
async fn an_api_sync_and_two_scheduler_passes_racing_sync_each_audience_once_at_a_time() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with_fake(&fake).await;
    let seg = t.segment("Race").await;
    t.people_in_segment(seg, "race", 12_000).await;
    let ids = due_audiences(&t, seg, 4).await;
    // Slow batches keep the syncs long enough to meet.
    fake.inject(Fault::delay(
        FaultMatch::route("POST", "/usersreplace"),
        4,
        Duration::from_millis(400),
    ));
    let api = {
        let t = &t;
        let id = ids[0].clone();
        async move {
            t.post(
                "/api/audiences/sync",
                &json!({"audience_id": id, "sync_type": "full"}),
            )
            .await
        }
    };
    let (a, b, (status, answer)) =
        tokio::join!(tick(&t.app, opts(60)), tick(&t.app, opts(60)), api);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        status == StatusCode::OK && answer["status"] == "completed"
            || status == StatusCode::CONFLICT,
        "{status} {answer}"
    );
    assert_eq!(
        a.failed + b.failed,
        0,
        "no pass failed on a busy audience: {a:?} {b:?}"
    );
    for id in &ids {
        let id = Uuid::parse_str(id).unwrap();
        // Each sync of the audience ran alone: no two log rows' spans overlap.
        let spans =
            t.db.query(
                "SELECT started_at, completed_at, status FROM audience_sync_log \
                 WHERE audience_id = $1 ORDER BY started_at",
                &[&id],
            )
            .await
            .unwrap();
        assert!(!spans.is_empty(), "audience {id} synced");
        for pair in spans.windows(2) {
            let ended: chrono::DateTime<chrono::Utc> = pair[0].get(1);
            let next: chrono::DateTime<chrono::Utc> = pair[1].get(0);
            assert!(ended <= next, "two syncs of {id} overlapped");
        }
        assert!(spans.iter().all(|r| r.get::<_, String>(2) == "completed"));
        let (_, aud) = t.get(&format!("/api/audiences/{id}")).await;
        let meta = aud["meta_audience_id"].as_str().unwrap();
        assert_eq!(
            fake.member_count(meta),
            12_000,
            "audience {id} exact in Meta"
        );
    }
    let made = fake.audiences().len();
    assert_eq!(made, 4, "one Meta audience per audience, none made twice");
}
