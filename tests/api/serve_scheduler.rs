//! The scheduler `audiences serve` runs in-process (`SCHEDULER_INTERVAL_SECONDS`,
//! `--no-scheduler`): due auto-synced audiences reach the fake Graph API with nobody calling a
//! sync, nothing is synced with the scheduler off, a pass held up by Meta does not hold up the
//! HTTP server, and Ctrl-C stops the server with a sync in progress left for the next run.

use std::process::Stdio;
use std::time::Duration;

use audience_sync::sync::scheduler::{tick, TickOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use uuid::Uuid;

use crate::support::fake_meta::{FakeMeta, Fault, FaultMatch, FAKE_AD_ACCOUNT};
use crate::support::{self, spawn_app, spawn_app_configured, spawn_app_with, TestApp};

/// The interval the tests' schedulers run at.
const EVERY: Duration = Duration::from_secs(1);

/// The service with Meta at `fake` and the in-process scheduler at [`EVERY`].
async fn scheduled_app(fake: &FakeMeta) -> TestApp {
    spawn_app_configured(|c| {
        c.db_pool_size = 8;
        c.meta = Some(fake.meta_config());
        c.scheduler_interval = Some(EVERY);
    })
    .await
}

/// An audience on a new segment of `n` people; its id.
async fn audience(t: &TestApp, name: &str, n: i32, auto_sync: bool) -> Uuid {
    let seg = t.segment(name).await;
    t.people_in_segment(seg, name, n).await;
    let a = t
        .create_audience(json!({"name": name, "segment_id": seg, "auto_sync": auto_sync}))
        .await;
    Uuid::parse_str(a["id"].as_str().unwrap()).unwrap()
}

/// The audience's sync log statuses, oldest first.
async fn log_statuses(t: &TestApp, id: Uuid) -> Vec<String> {
    support::column(
        &t.db,
        "SELECT status FROM audience_sync_log WHERE audience_id = $1 ORDER BY created_at",
        &[&id],
    )
    .await
}

/// How many sync log rows of the audience are `completed`.
async fn completed_syncs(t: &TestApp, id: Uuid) -> usize {
    log_statuses(t, id)
        .await
        .iter()
        .filter(|s| *s == "completed")
        .count()
}

/// Polls the database every 50 ms until the audience has `n` completed syncs, for at most
/// 60 s (a bound, not a speed check).
async fn wait_for_completed(t: &TestApp, id: Uuid, n: usize) {
    for _ in 0..1_200 {
        if completed_syncs(t, id).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "audience {id}: {n} completed sync(s) expected, log: {:?}",
        log_statuses(t, id).await
    );
}

/// Polls `done` every 20 ms for at most 60 s.
async fn wait_until(done: impl Fn() -> bool, what: &str) {
    for _ in 0..3_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The audience's Meta id, once a sync created it.
async fn meta_id(t: &TestApp, id: Uuid) -> String {
    let (status, a) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    a["meta_audience_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no meta_audience_id: {a}"))
        .to_string()
}

#[tokio::test]
async fn due_auto_sync_audiences_are_synced_by_the_in_process_scheduler_and_others_are_not() {
    let fake = FakeMeta::start().await;
    let t = scheduled_app(&fake).await;
    let due = audience(&t, "Due", 25, true).await;
    let manual = audience(&t, "Manual", 7, false).await;

    // Never synced: due at once. Nobody calls a sync.
    wait_for_completed(&t, due, 1).await;
    let meta = meta_id(&t, due).await;
    assert_eq!(fake.member_count(&meta), 25);

    // Its interval comes due (as if synced a day ago), with 5 people more: the next pass
    // sends them.
    t.people_in_segment(
        t.db.query_one(
            "SELECT segment_id FROM custom_audience WHERE id = $1",
            &[&due],
        )
        .await
        .unwrap()
        .get(0),
        "later",
        5,
    )
    .await;
    t.db.execute(
        "UPDATE custom_audience SET last_synced_at = now() - interval '25 hours' WHERE id = $1",
        &[&due],
    )
    .await
    .unwrap();
    wait_for_completed(&t, due, 2).await;
    assert_eq!(fake.member_count(&meta), 30);
    let types: Vec<String> = support::column(
        &t.db,
        "SELECT sync_type FROM audience_sync_log WHERE audience_id = $1 ORDER BY created_at",
        &[&due],
    )
    .await;
    assert_eq!(types, ["full", "incremental"]);

    // Passes ran all along; the audience without auto_sync was never touched.
    assert!(log_statuses(&t, manual).await.is_empty());
    assert_eq!(fake.audiences().len(), 1, "only the auto-synced audience");
}

#[tokio::test]
async fn with_the_scheduler_off_a_due_audience_waits_for_someone_to_sync_it() {
    let fake = FakeMeta::start().await;
    let on = scheduled_app(&fake).await;
    let off = spawn_app_with(Some(fake.meta_config())).await;
    let synced = audience(&on, "On", 10, true).await;
    let waiting = audience(&off, "Off", 10, true).await;

    // The scheduled app's first pass has run, then at least three more intervals go by.
    wait_for_completed(&on, synced, 1).await;
    tokio::time::sleep(3 * EVERY).await;
    assert!(log_statuses(&off, waiting).await.is_empty());
    assert_eq!(
        fake.audiences().len(),
        1,
        "only the scheduled app's audience"
    );

    // It was due all along: a pass run by hand syncs it.
    let tally = tick(
        &off.app,
        TickOptions::new(Duration::from_secs(60), &off.app.sync),
    )
    .await
    .unwrap();
    assert_eq!((tally.claimed, tally.completed), (1, 1), "{tally:?}");
    assert_eq!(fake.member_count(&meta_id(&off, waiting).await), 10);
}

#[tokio::test]
async fn a_pass_held_up_by_meta_does_not_hold_up_the_http_server() {
    let fake = FakeMeta::start().await;
    // Meta holds the first upload for two minutes (longer than any bound below).
    fake.inject(Fault::delay(
        FaultMatch::route("POST", "/usersreplace"),
        1,
        Duration::from_secs(120),
    ));
    let t = scheduled_app(&fake).await;
    let id = audience(&t, "Held", 10, true).await;
    let held = || {
        fake.calls()
            .iter()
            .any(|c| c.path.ends_with("/usersreplace"))
    };
    wait_until(held, "the pass's first upload").await;

    // The server answers while the pass waits on Meta.
    let (status, body) = t.get(&format!("/api/audiences/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["status"], "syncing",
        "the pass is still in its sync: {body}"
    );
    let (status, body) = t.get("/api/audiences").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Passes do not overlap: one sync, still running, however many intervals went by.
    assert_eq!(log_statuses(&t, id).await, ["in_progress"]);
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// `audiences serve --port 0 [extra…]` against the test's database and the fake, the scheduler
/// every second; the child and the lines of its stderr.
fn serve(
    t: &TestApp,
    fake: &FakeMeta,
    extra: &[&str],
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_audiences"))
        .args(["serve", "--port", "0"])
        .args(extra)
        .env_clear()
        .env("DATABASE_URL", &t.db_url)
        .env("META_ACCESS_TOKEN", fake.token())
        .env("META_GRAPH_URL", fake.url())
        .env("META_AD_ACCOUNT_ID", FAKE_AD_ACCOUNT)
        .env("SCHEDULER_INTERVAL_SECONDS", "1")
        .env("SYNC_LEASE_SECONDS", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the audiences binary");
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

/// Reads stderr until a line starting with `prefix` (at most 60 s); every line read so far.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    prefix: &str,
    seen: &mut Vec<String>,
) {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.starts_with(prefix);
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "no line starting with {prefix:?}: {seen:#?}");
}

/// A log line without its colours (ANSI escape sequences).
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters… final letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Ctrl-C (SIGINT), then the process must end by itself within 30 s; its stdout.
async fn interrupt(mut child: tokio::process::Child) -> (std::process::ExitStatus, Value) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("serve stops within 30 s of Ctrl-C")
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let last = out.lines().last().unwrap_or_default();
    (
        status,
        serde_json::from_str(last).unwrap_or_else(|_| panic!("not JSON: {out}")),
    )
}

#[tokio::test]
async fn audiences_serve_syncs_a_due_audience_by_itself_unless_told_not_to() {
    let fake = FakeMeta::start().await;
    // Only the test's database and connection: no scheduler of its own.
    let t = spawn_app().await;
    let id = audience(&t, "Binary", 12, true).await;

    let (child, mut lines) = serve(&t, &fake, &["--no-scheduler"]);
    let mut seen = Vec::new();
    // Printed once it listens.
    read_until(&mut lines, "scheduler: off", &mut seen).await;
    tokio::time::sleep(3 * EVERY).await;
    assert!(log_statuses(&t, id).await.is_empty(), "{seen:#?}");
    let (status, out) = interrupt(child).await;
    assert!(status.success(), "{status:?}");
    assert!(out["stopped"].is_string(), "{out}");
    assert!(fake.audiences().is_empty());

    let (child, mut lines) = serve(&t, &fake, &[]);
    let mut seen = Vec::new();
    read_until(&mut lines, "scheduler: a pass every 1 s", &mut seen).await;
    wait_for_completed(&t, id, 1).await;
    assert_eq!(fake.member_count(&meta_id(&t, id).await), 12);
    // The pass logs its summary as the scheduled Lambda does.
    let summary = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line = plain(&line);
            if line.contains("scheduler pass done") && line.contains("completed=1") {
                return Some(line);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    assert!(summary.is_some(), "no summary line of the pass that synced");
    let (status, out) = interrupt(child).await;
    assert!(status.success(), "{status:?}");
    assert!(out["stopped"].is_string(), "{out}");
}

#[tokio::test]
async fn ctrl_c_during_a_scheduled_sync_stops_serve_and_the_next_pass_finishes_the_sync() {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config())).await;
    // Two replace batches (Meta's 10,000 rows, then the rest): the second is held by Meta
    // when Ctrl-C comes, after the first was checkpointed.
    let id = audience(&t, "Interrupted", 10_300, true).await;
    let second = {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        FaultMatch::when(move |method, path| {
            method == "POST"
                && path.ends_with("/usersreplace")
                && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
        })
    };
    fake.inject(Fault::delay(second, 1, Duration::from_secs(120)));

    let (child, mut lines) = serve(&t, &fake, &[]);
    let mut seen = Vec::new();
    read_until(&mut lines, "scheduler: a pass every 1 s", &mut seen).await;
    let replaces = || {
        fake.calls()
            .iter()
            .filter(|c| c.path.ends_with("/usersreplace"))
            .count()
    };
    wait_until(|| replaces() >= 2, "the second upload").await;
    let (status, out) = interrupt(child).await;
    assert!(status.success(), "{status:?}");
    assert!(out["stopped"].is_string(), "{out}");

    // Left as a Lambda that died leaves it: in progress, at its checkpoint after batch 1.
    let row =
        t.db.query_one(
            "SELECT status, checkpoint FROM audience_sync_log WHERE audience_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (status, checkpoint): (String, Option<Value>) = (row.get(0), row.get(1));
    assert_eq!(status, "in_progress");
    assert_eq!(checkpoint.expect("a checkpoint")["pass"], "replace");

    // The next pass (its claim expired: SYNC_LEASE_SECONDS=1) resumes it to the end.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let tally = tick(
        &t.app,
        TickOptions::new(Duration::from_secs(60), &t.app.sync),
    )
    .await
    .unwrap();
    assert_eq!(
        (tally.claimed, tally.completed, tally.resumed),
        (1, 1, 1),
        "{tally:?}"
    );
    assert_eq!(log_statuses(&t, id).await, ["completed"]);
    assert_eq!(fake.member_count(&meta_id(&t, id).await), 10_300);
}

/// Polls the fake's emails of `meta_id` every 100 ms until `want(emails)`, for at most
/// `within`; how long it took.
async fn wait_for_meta(
    fake: &FakeMeta,
    t: &TestApp,
    id: Uuid,
    want: impl Fn(&std::collections::HashSet<String>) -> bool,
    within: Duration,
    what: &str,
) -> Duration {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
        if let Some(meta) = a["meta_audience_id"].as_str() {
            let emails: std::collections::HashSet<String> = fake
                .members(meta)
                .into_iter()
                .map(|r| r[0].clone())
                .collect();
            if want(&emails) {
                return started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not in Meta within {within:?}");
}

fn sha_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_realtime_audience_follows_an_import_and_an_opt_out_with_nobody_calling_a_sync() {
    let fake = FakeMeta::start().await;
    // As `SCHEDULER_INTERVAL_SECONDS=5 audiences serve`.
    let t = spawn_app_configured(|c| {
        c.db_pool_size = 8;
        c.meta = Some(fake.meta_config());
        c.scheduler_interval = Some(Duration::from_secs(5));
    })
    .await;
    let rule =
        json!({"type": "condition", "attribute": "total_renders", "operator": ">=", "value": 5});
    let (status, seg) = t
        .post(
            "/api/segments",
            &json!({"name": "Power renderers", "rule": rule}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{seg}");
    let import = |id: &str, renders: i32| {
        json!({"persons": [{"external_id": id, "email": format!("{id}@example.com"),
                            "attributes": {"total_renders": renders}}]})
    };
    let (status, r) = t.post("/api/persons", &import("early", 9)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    // Real-time, and never due by its interval: only its changes get it synced.
    let a = t
        .create_audience(
            json!({"name": "Live", "segment_id": seg["id"], "realtime": true,
                                "auto_sync": false}),
        )
        .await;
    let id = Uuid::parse_str(a["id"].as_str().unwrap()).unwrap();
    let early = sha_hex("early@example.com");
    let took = wait_for_meta(
        &fake,
        &t,
        id,
        |e| e.contains(&early),
        Duration::from_secs(20),
        "the first member",
    )
    .await;
    eprintln!("first member in Meta after {took:?}");

    // A person imported who matches the rule reaches Meta; one who does not, never.
    let (status, r) = t.post("/api/persons", &import("joiner", 7)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (status, r) = t.post("/api/persons", &import("casual", 1)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let joiner = sha_hex("joiner@example.com");
    let took = wait_for_meta(
        &fake,
        &t,
        id,
        |e| e.contains(&joiner),
        Duration::from_secs(20),
        "the imported person",
    )
    .await;
    eprintln!("imported person in Meta after {took:?}");

    // One who opts out leaves Meta.
    let person: Uuid =
        t.db.query_one("SELECT id FROM person WHERE external_id = 'joiner'", &[])
            .await
            .unwrap()
            .get(0);
    let (status, r) = t
        .request(
            "PATCH",
            &format!("/api/persons/{person}"),
            Some(&json!({"marketing_opt_out": true}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let took = wait_for_meta(
        &fake,
        &t,
        id,
        |e| !e.contains(&joiner),
        Duration::from_secs(20),
        "the opt-out's removal",
    )
    .await;
    eprintln!("opted-out person out of Meta after {took:?}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    let emails: std::collections::HashSet<String> = fake
        .members(a["meta_audience_id"].as_str().unwrap())
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(
        emails,
        [early].into_iter().collect(),
        "exactly the segment's eligible people"
    );
}
