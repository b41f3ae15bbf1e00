//! Fault tests: syncs that do not finish (a replace failing, abandoned or timed out after its
//! first batch, a worker killed with SIGKILL, the database connection terminated, Meta failing
//! for a while), each followed by the sync that must put things right. Every test ends by
//! checking that the fake Graph API holds exactly the segment's eligible members and that the
//! member rows say exactly that.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audience_sync::destinations::meta::hashing::HashedRow;
use audience_sync::sync::scheduler::{tick, TickOptions};
use audience_sync::sync::{self, NoProgress, SyncType};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::fake_meta::{FakeMeta, Fault, FaultMatch, FAKE_AD_ACCOUNT};
use crate::support::{self, spawn_app_with, TestApp};

/// Enough members for a full sync of two replace batches (Meta's 10,000 rows, then the rest).
const MEMBERS: i32 = 10_600;

/// Meta's replace session timeout, restored after a test shortened it for one session.
const META_REPLACE_TIMEOUT: Duration = Duration::from_secs(90 * 60);

/// An audience already in Meta: its first full sync is done and Meta holds its members.
struct Case {
    fake: FakeMeta,
    t: TestApp,
    seg: Uuid,
    id: String,
    audience: Uuid,
    meta: String,
}

async fn synced_case(members: i32) -> Case {
    let fake = FakeMeta::start().await;
    let t = spawn_app_with(Some(fake.meta_config())).await;
    synced_case_on(fake, t, members).await
}

async fn synced_case_on(fake: FakeMeta, t: TestApp, members: i32) -> Case {
    let seg = t.segment("Faults").await;
    t.people_in_segment(seg, "f", members).await;
    let a = t
        .create_audience(json!({"name": "Faults", "segment_id": seg}))
        .await;
    let id = a["id"].as_str().unwrap().to_string();
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    let (_, a) = t.get(&format!("/api/audiences/{id}")).await;
    let meta = a["meta_audience_id"].as_str().unwrap().to_string();
    assert_eq!(fake.member_count(&meta), members as usize);
    // The calls a test looks at are its own.
    fake.clear_calls();
    Case {
        audience: Uuid::parse_str(&id).unwrap(),
        fake,
        t,
        seg,
        id,
        meta,
    }
}

impl Case {
    /// Changes since the last sync: 150 leave the segment, 40 opt out, 80 change their email,
    /// 120 join.
    async fn churn(&self) {
        let db = &self.t.db;
        let some = |n: i64, skip: i64| async move {
            support::column::<Uuid>(
                db,
                "SELECT person_id FROM segment_member WHERE segment_id = $1 \
                 ORDER BY person_id LIMIT $2 OFFSET $3",
                &[&self.seg, &n, &skip],
            )
            .await
        };
        let leavers = some(150, 0).await;
        db.execute(
            "DELETE FROM segment_member WHERE segment_id = $1 AND person_id = ANY($2)",
            &[&self.seg, &leavers],
        )
        .await
        .unwrap();
        let opted = some(40, 5_000).await;
        db.execute(
            "UPDATE person SET marketing_opt_out = true WHERE id = ANY($1)",
            &[&opted],
        )
        .await
        .unwrap();
        let changed = some(80, 9_000).await;
        db.execute(
            "UPDATE person SET email = 'changed.' || email WHERE id = ANY($1)",
            &[&changed],
        )
        .await
        .unwrap();
        self.t.people_in_segment(self.seg, "joiner", 120).await;
    }

    /// The EMAIL hashes of the segment's eligible members (the test emails are already trimmed;
    /// normalizing them is lowercasing).
    async fn eligible(&self) -> HashSet<String> {
        let emails: Vec<String> = support::column(
            &self.t.db,
            "SELECT lower(p.email) FROM segment_member s JOIN person p ON p.id = s.person_id \
             WHERE s.segment_id = $1 AND NOT p.marketing_opt_out",
            &[&self.seg],
        )
        .await;
        emails.iter().map(|e| sha(e)).collect()
    }

    fn held_emails(&self) -> HashSet<String> {
        self.fake
            .members(&self.meta)
            .into_iter()
            .map(|row| row[0].clone())
            .collect()
    }

    /// The rows the member table says Meta holds (synced members' stored rows).
    async fn stored_rows(&self) -> HashSet<Vec<String>> {
        let stored: Vec<Vec<u8>> = support::column(
            &self.t.db,
            "SELECT hashes FROM audience_member_sync \
             WHERE audience_id = $1 AND is_synced AND NOT removal_pending",
            &[&self.audience],
        )
        .await;
        stored
            .iter()
            .map(|b| {
                HashedRow::from_bytes(b)
                    .expect("a stored Meta row")
                    .hex_fields()
                    .to_vec()
            })
            .collect()
    }

    async fn member_rows(&self, filter: &str) -> i64 {
        support::count(
            &self.t.db,
            &format!(
                "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1 AND ({filter})"
            ),
            &[&self.audience],
        )
        .await
    }

    /// Meta holds exactly the eligible members, and the member rows say exactly what it holds:
    /// one synced row per eligible member, no leaver left, nothing waiting.
    async fn assert_exact(&self, when: &str) {
        let want = self.eligible().await;
        let held = self.held_emails();
        assert_eq!(
            self.fake.member_count(&self.meta),
            want.len(),
            "{when}: rows Meta holds"
        );
        assert_eq!(
            held.difference(&want).count(),
            0,
            "{when}: Meta holds people who are not eligible members"
        );
        assert_eq!(
            want.difference(&held).count(),
            0,
            "{when}: eligible members missing from Meta"
        );
        assert_eq!(
            self.stored_rows().await,
            self.fake.members(&self.meta),
            "{when}: the stored rows are what Meta holds"
        );
        assert_eq!(self.member_rows("true").await, want.len() as i64, "{when}");
        assert_eq!(
            self.member_rows("NOT is_synced OR removal_pending").await,
            0,
            "{when}: nothing left waiting"
        );
    }

    /// No member is marked synced with a row Meta does not hold (or will not hold once an open
    /// replace session ends).
    async fn assert_no_false_synced(&self, meta_holds: &HashSet<Vec<String>>, when: &str) {
        let stored = self.stored_rows().await;
        assert_eq!(
            stored.difference(meta_holds).count(),
            0,
            "{when}: members marked synced with rows Meta does not hold"
        );
    }

    async fn sync(&self, sync_type: &str) -> Value {
        self.t.sync(&self.id, sync_type).await
    }

    async fn log_row(&self, r: &Value) -> (String, Option<String>) {
        let id = Uuid::parse_str(r["sync_log_id"].as_str().unwrap()).unwrap();
        let row = self
            .t
            .db
            .query_one(
                "SELECT status, error_message FROM audience_sync_log WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    fn replace_calls(&self) -> Vec<(u64, bool, u16)> {
        self.fake
            .calls()
            .into_iter()
            .filter(|c| c.path.ends_with("/usersreplace"))
            .map(|c| {
                let s = c.session.expect("a replace call has a session");
                (s.batch_seq, s.last_batch_flag, c.status)
            })
            .collect()
    }

    /// Waits until the fake has received `n` replace calls (the last may still be held).
    async fn wait_for_replace_calls(&self, n: usize) {
        wait_until(|| self.replace_calls().len() >= n, "replace calls").await;
    }
}

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Polls `done` every 20 ms for at most 60 s (a bound, not a speed check).
async fn wait_until(done: impl Fn() -> bool, what: &str) {
    for _ in 0..3_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Matches the `n`-th `POST …/usersreplace` from now on and every later one (1-based).
fn replace_from(n: usize) -> FaultMatch {
    let seen = Arc::new(AtomicUsize::new(0));
    FaultMatch::when(move |method, path| {
        method == "POST"
            && path.ends_with("/usersreplace")
            && seen.fetch_add(1, Ordering::SeqCst) + 1 >= n
    })
}

/// Matches only the `n`-th `POST …/usersreplace` from now on (1-based).
fn nth_replace(n: usize) -> FaultMatch {
    let seen = Arc::new(AtomicUsize::new(0));
    FaultMatch::when(move |method, path| {
        method == "POST"
            && path.ends_with("/usersreplace")
            && seen.fetch_add(1, Ordering::SeqCst) + 1 == n
    })
}

/// The rows the latest sync got accepted (marked synced since it started): after a session
/// that received only its first batch, batch 1's 10,000 members.
async fn first_batch_rows(c: &Case) -> HashSet<Vec<String>> {
    let stored: Vec<Vec<u8>> = support::column(
        &c.t.db,
        "SELECT hashes FROM audience_member_sync WHERE audience_id = $1 AND is_synced \
           AND synced_at >= (SELECT started_at FROM audience_sync_log WHERE audience_id = $1 \
                             ORDER BY created_at DESC LIMIT 1)",
        &[&c.audience],
    )
    .await;
    let rows: HashSet<Vec<String>> = stored
        .iter()
        .map(|b| HashedRow::from_bytes(b).unwrap().hex_fields().to_vec())
        .collect();
    assert_eq!(rows.len(), 10_000, "batch 1's members synced by this sync");
    rows
}

/// A full sync whose second replace batch is refused for good (the token expired after batch
/// 1): Meta ends the session at its timeout holding batch 1 only. The next sync of `next`'s type
/// restores Meta exactly.
async fn replace_fails_after_batch_1_then(next: &str) {
    let c = synced_case(MEMBERS).await;
    c.churn().await;
    c.fake.set_replace_timeout(Duration::from_millis(300));
    c.fake
        .inject(Fault::meta_error(nth_replace(2), 1, 400, 190, Some(463)));
    let r = c.sync("full").await;
    assert_eq!(r["status"], "failed", "{r}");
    let (status, message) = c.log_row(&r).await;
    assert_eq!(status, "failed");
    assert!(message.unwrap_or_default().contains("token"), "{r}");
    let batch_1 = first_batch_rows(&c).await;
    assert_eq!(
        c.member_rows("removal_pending").await,
        0,
        "leavers: the session holds none of them"
    );

    wait_until(|| !c.fake.replace_in_progress(&c.meta), "the session's end").await;
    c.fake.set_replace_timeout(META_REPLACE_TIMEOUT);
    assert_eq!(
        c.fake.members(&c.meta),
        batch_1,
        "Meta holds what the session received"
    );
    c.assert_no_false_synced(&batch_1, "after the failure")
        .await;
    assert!(
        c.member_rows("NOT is_synced").await > 0,
        "the members batch 1 did not carry are to be sent again"
    );

    let r = c.sync(next).await;
    assert_eq!(r["status"], "completed", "{r}");
    c.assert_exact(&format!("{next} after a failed replace"))
        .await;
}

#[tokio::test]
async fn a_replace_failing_after_batch_1_then_incremental_restores_meta() {
    replace_fails_after_batch_1_then("incremental").await;
}

#[tokio::test]
async fn a_replace_failing_after_batch_1_then_update_restores_meta() {
    replace_fails_after_batch_1_then("update").await;
}

#[tokio::test]
async fn a_replace_failing_after_batch_1_then_full_restores_meta() {
    replace_fails_after_batch_1_then("full").await;
}

/// A full sync whose second batch Meta answers 500 beyond the retries, and at once (Meta still
/// holds the session open, refusing other updates with 1870145) a sync of `next`'s type: it
/// closes that session first (Meta then holds batch 1), then restores Meta exactly.
async fn replace_fails_then_at_once(next: &str) {
    let c = synced_case(MEMBERS).await;
    c.churn().await;
    // Batch 2 and its retries (4 attempts) answered 500.
    c.fake
        .inject(Fault::meta_error(replace_from(2), 4, 500, 2, None));
    let r = c.sync("full").await;
    assert_eq!(r["status"], "failed", "{r}");
    assert!(c.fake.replace_in_progress(&c.meta));
    let batch_1 = first_batch_rows(&c).await;
    c.assert_no_false_synced(&batch_1, "after the failure")
        .await;
    let session = c.replace_calls().len();

    let r = c.sync(next).await;
    assert_eq!(r["status"], "completed", "{r}");
    let calls = c.replace_calls();
    assert_eq!(
        (calls[session].0, calls[session].1, calls[session].2),
        (2, true, 200),
        "the open session was closed with its next batch: {calls:?}"
    );
    let id = Uuid::parse_str(r["sync_log_id"].as_str().unwrap()).unwrap();
    let response: Value =
        c.t.db
            .query_one(
                "SELECT meta_response FROM audience_sync_log WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
    assert!(
        response["closed_unfinished_session_id"].is_string(),
        "{response}"
    );
    c.assert_exact(&format!("{next} while the failed replace was open"))
        .await;
}

#[tokio::test]
async fn a_replace_failing_then_incremental_at_once_closes_its_session_and_restores_meta() {
    replace_fails_then_at_once("incremental").await;
}

#[tokio::test]
async fn a_replace_failing_then_full_at_once_closes_its_session_and_restores_meta() {
    replace_fails_then_at_once("full").await;
}

/// A full sync whose worker dies while Meta holds its second batch (the task is dropped, as a
/// Lambda timeout would), found only after the checkpoint window (the log row and the member
/// rows are aged two hours), when Meta has timed the session out holding batch 1. The next sync
/// of `next`'s type fails the abandoned row and restores Meta exactly.
async fn replace_abandoned_after_batch_1_then(next: &str) {
    let c = synced_case(MEMBERS).await;
    c.churn().await;
    abandon_full_sync_past_its_window(&c).await;

    let r = c.sync(next).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert!(
        r.get("resumed").is_none(),
        "past its window it is not resumed: {r}"
    );
    let abandoned: Vec<String> = support::column(
        &c.t.db,
        "SELECT error_message FROM audience_sync_log \
         WHERE audience_id = $1 AND sync_type = 'full' AND status = 'failed'",
        &[&c.audience],
    )
    .await;
    assert_eq!(abandoned.len(), 1);
    assert!(abandoned[0].starts_with("abandoned"), "{abandoned:?}");
    c.assert_exact(&format!("{next} after an abandoned replace"))
        .await;
}

/// A full sync whose worker dies while Meta holds its second batch (the task is dropped, as a
/// Lambda timeout would), then two hours pass: past the checkpoint window (the log and member
/// rows are aged), and past Meta's session timeout, so Meta holds batch 1 only.
async fn abandon_full_sync_past_its_window(c: &Case) {
    c.fake
        .inject(Fault::delay(nth_replace(2), 1, Duration::from_secs(120)));
    let app = c.t.app.clone();
    let audience = c.audience;
    let worker = tokio::spawn(async move {
        sync::run(&app, audience, Some(SyncType::Full), &NoProgress, None).await
    });
    c.wait_for_replace_calls(2).await;
    worker.abort();
    assert!(worker.await.unwrap_err().is_cancelled());
    let batch_1 = first_batch_rows(c).await;

    for sql in [
        "UPDATE audience_sync_log SET created_at = created_at - interval '2 hours', \
         started_at = started_at - interval '2 hours', \
         completed_at = completed_at - interval '2 hours' WHERE audience_id = $1",
        "UPDATE audience_member_sync SET created_at = created_at - interval '2 hours', \
         updated_at = updated_at - interval '2 hours', \
         synced_at = synced_at - interval '2 hours' WHERE audience_id = $1",
        "UPDATE custom_audience SET last_synced_at = last_synced_at - interval '2 hours' \
         WHERE id = $1",
    ] {
        c.t.db.execute(sql, &[&c.audience]).await.unwrap();
    }
    c.fake.set_replace_timeout(Duration::from_millis(1));
    wait_until(|| !c.fake.replace_in_progress(&c.meta), "the session's end").await;
    c.fake.set_replace_timeout(META_REPLACE_TIMEOUT);
    assert_eq!(c.fake.members(&c.meta), batch_1);
}

/// The same found by a scheduler pass (the audience is due: `auto_sync`, synced over a day
/// ago): it fails the abandoned row and its incremental sync restores Meta exactly.
#[tokio::test]
async fn a_scheduler_pass_after_a_replace_abandoned_past_its_window_restores_meta() {
    let c = synced_case(MEMBERS).await;
    c.churn().await;
    abandon_full_sync_past_its_window(&c).await;
    c.t.db
        .execute(
            "UPDATE custom_audience SET auto_sync = true, \
             last_synced_at = now() - interval '25 hours' WHERE id = $1",
            &[&c.audience],
        )
        .await
        .unwrap();
    let pass = TickOptions {
        deadline: Instant::now() + Duration::from_secs(600),
        reserve: Duration::from_secs(1),
        lease: Duration::from_secs(1),
    };
    let tally = tick(&c.t.app, pass).await.unwrap();
    assert_eq!(
        (tally.claimed, tally.completed, tally.resumed),
        (1, 1, 0),
        "{tally:?}"
    );
    c.assert_exact("a scheduler pass after an abandoned replace")
        .await;
}

#[tokio::test]
async fn a_replace_abandoned_after_batch_1_then_incremental_restores_meta() {
    replace_abandoned_after_batch_1_then("incremental").await;
}

#[tokio::test]
async fn a_replace_abandoned_after_batch_1_then_update_restores_meta() {
    replace_abandoned_after_batch_1_then("update").await;
}

#[tokio::test]
async fn a_replace_abandoned_after_batch_1_then_full_restores_meta() {
    replace_abandoned_after_batch_1_then("full").await;
}

/// Meta times the session out between batch 1 and batch 2 (the second batch arrives late):
/// batch 2 is answered 1870158, the rest are added to what the session received, and the sync
/// completes with Meta exact. The next sync of `next`'s type keeps it so.
async fn replace_timed_out_after_batch_1_then(next: &str) {
    let c = synced_case(MEMBERS).await;
    c.churn().await;
    c.fake.set_replace_timeout(Duration::from_millis(200));
    c.fake
        .inject(Fault::delay(nth_replace(2), 1, Duration::from_millis(600)));
    let r = c.sync("full").await;
    let calls = c.replace_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].2, 400, "batch 2 answered 1870158: {calls:?}");
    assert_eq!(r["status"], "completed", "{r}");
    c.assert_exact("the timed-out replace, finished with adds")
        .await;

    // And nothing is lost for the next sync either.
    c.fake.set_replace_timeout(META_REPLACE_TIMEOUT);
    c.t.people_in_segment(c.seg, "later", 5).await;
    let r = c.sync(next).await;
    assert_eq!(r["status"], "completed", "{r}");
    c.assert_exact(&format!("{next} after a timed-out replace"))
        .await;
}

#[tokio::test]
async fn a_replace_timed_out_after_batch_1_then_incremental_is_exact() {
    replace_timed_out_after_batch_1_then("incremental").await;
}

#[tokio::test]
async fn a_replace_timed_out_after_batch_1_then_update_is_exact() {
    replace_timed_out_after_batch_1_then("update").await;
}

#[tokio::test]
async fn a_replace_timed_out_after_batch_1_then_full_is_exact() {
    replace_timed_out_after_batch_1_then("full").await;
}

/// A resumed replace whose session Meta timed out meanwhile finishes with adds too.
#[tokio::test]
async fn a_resumed_replace_whose_session_timed_out_finishes_with_adds() {
    let c = synced_case(MEMBERS).await;
    c.churn().await;
    c.fake
        .inject(Fault::delay(nth_replace(2), 1, Duration::from_secs(120)));
    let app = c.t.app.clone();
    let audience = c.audience;
    let worker = tokio::spawn(async move {
        sync::run(&app, audience, Some(SyncType::Full), &NoProgress, None).await
    });
    c.wait_for_replace_calls(2).await;
    worker.abort();
    let _ = worker.await;
    c.fake.set_replace_timeout(Duration::from_millis(1));
    c.fake.clear_faults();

    // Within the checkpoint window: the sync is resumed, whatever type is asked for.
    let r = c.sync("incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["resumed"], true, "{r}");
    c.assert_exact("a resumed replace after Meta's timeout")
        .await;
}

// ---------------------------------------------------------------------------------------------
// SIGKILL

/// Runs `audiences sync <id> [extra…]` against the test database and the fake; the child.
fn audiences_sync(c: &Case, extra: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_audiences"))
        .args(["sync", &c.id])
        .args(extra)
        .env_clear()
        .env("DATABASE_URL", &c.t.db_url)
        .env("META_ACCESS_TOKEN", c.fake.token())
        .env("META_GRAPH_URL", c.fake.url())
        .env("META_AD_ACCOUNT_ID", FAKE_AD_ACCOUNT)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the audiences binary")
}

#[tokio::test]
async fn sigkill_mid_upload_then_a_rerun_leaves_meta_and_the_database_exact() {
    let c = synced_case(MEMBERS).await;
    c.churn().await;
    // The second replace batch is slow: the process is killed while Meta holds it.
    c.fake
        .inject(Fault::delay(nth_replace(2), 1, Duration::from_secs(120)));
    let mut child = audiences_sync(&c, &["--type", "full"]);
    for _ in 0..3_000 {
        if c.replace_calls().len() >= 2 {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().await.unwrap();
            panic!("the sync ended before its second batch: {out:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.replace_calls().len(), 2, "{:?}", c.fake.calls());
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status:?}"
    );
    let (status, checkpoint): (String, Option<Value>) = {
        let row =
            c.t.db
                .query_one(
                    "SELECT status, checkpoint FROM audience_sync_log \
                 WHERE audience_id = $1 ORDER BY created_at DESC LIMIT 1",
                    &[&c.audience],
                )
                .await
                .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(status, "in_progress", "the killed sync left its row");
    assert_eq!(checkpoint.unwrap()["pass"], "replace");
    let batch_1 = first_batch_rows(&c).await;
    assert!(c.fake.replace_in_progress(&c.meta));
    assert_ne!(
        c.fake.members(&c.meta),
        batch_1,
        "the session is still open"
    );

    // The re-run (the CLI's default type, incremental) takes the audience over and resumes the
    // killed full sync where its checkpoint says, closing the session.
    let out = audiences_sync(&c, &[]).wait_with_output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["resumed"], true, "{result}");
    let calls = c.replace_calls();
    let last = calls.last().unwrap();
    assert!(last.1 && last.2 == 200, "the session was closed: {calls:?}");
    c.assert_exact("after SIGKILL and a re-run").await;
}

// ---------------------------------------------------------------------------------------------
// The database connection terminated mid-sync

/// Terminates every backend of the test database but the test's own connection.
async fn terminate_backends(t: &TestApp) -> i64 {
    support::count(
        &t.db,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
        &[],
    )
    .await
}

#[tokio::test]
async fn the_database_terminated_while_meta_holds_a_batch_fails_cleanly_then_the_next_sync_is_exact(
) {
    let c = synced_case(MEMBERS).await;
    c.churn().await;
    c.fake
        .inject(Fault::delay(nth_replace(2), 1, Duration::from_secs(5)));
    let base = c.t.base.clone();
    let body = json!({"audience_id": c.id, "sync_type": "full"});
    let request = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(format!("{base}/api/audiences/sync"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap())
    });
    c.wait_for_replace_calls(2).await;
    assert!(terminate_backends(&c.t).await >= 1);
    let (status, r) = request.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "failed", "{r}");
    let (log_status, message) = c.log_row(&r).await;
    assert_eq!(log_status, "failed");
    assert!(
        message.unwrap_or_default().contains("database connection"),
        "the log says what failed"
    );
    // Meta accepted batch 2 (the last), so it holds everyone sent; the member rows claim no
    // more than that.
    wait_until(|| !c.fake.replace_in_progress(&c.meta), "the session's end").await;
    c.assert_no_false_synced(&c.fake.members(&c.meta), "after the database failed")
        .await;
    let (_, a) = c.t.get(&format!("/api/audiences/{}", c.id)).await;
    assert_eq!(a["status"], "failed", "{a}");

    let r = c.sync("incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    c.assert_exact("the sync after the database failed").await;
}

// ---------------------------------------------------------------------------------------------
// Meta failing for a while

/// A client that gives up on a request after 1 s and tries 4 times.
async fn quick_giving_up() -> (FakeMeta, TestApp) {
    let fake = FakeMeta::start().await;
    let mut config = fake.meta_config();
    config.timeout = Duration::from_secs(1);
    let t = spawn_app_with(Some(config)).await;
    (fake, t)
}

#[tokio::test]
async fn meta_answering_5xx_html_and_timeouts_for_a_while_is_retried_to_success() {
    let (fake, t) = quick_giving_up().await;
    let c = synced_case_on(fake, t, 50).await;
    c.churn_small().await;
    let users = || FaultMatch::route("POST", "/users");
    c.fake.inject(Fault::html500(users(), 1));
    c.fake.inject(Fault::meta_error(users(), 1, 500, 2, None));
    c.fake
        .inject(Fault::delay(users(), 1, Duration::from_secs(120)));
    // `update`: the changed emails are replaced too, so Meta can be exact after it.
    let r = c.sync("update").await;
    assert_eq!(r["status"], "completed", "{r}");
    let adds: Vec<u16> = c
        .fake
        .calls()
        .iter()
        .filter(|x| x.method == "POST" && x.path.ends_with("/users"))
        .map(|x| x.status)
        .collect();
    // The delayed one is still held when the client has given up on it and retried.
    assert_eq!(adds.len(), 4, "three failures, then success: {adds:?}");
    assert_eq!((adds[0], adds[1], adds[3]), (500, 500, 200), "{adds:?}");
    c.assert_exact("after Meta recovered").await;
}

#[tokio::test]
async fn meta_failing_beyond_the_retries_fails_the_sync_cleanly_and_the_next_one_is_exact() {
    let (fake, t) = quick_giving_up().await;
    let c = synced_case_on(fake, t, 50).await;
    c.churn_small().await;
    // More failures than attempts: 5xx, HTML and a request that never answers in time.
    let replace = || FaultMatch::route("POST", "/usersreplace");
    c.fake.inject(Fault::html500(replace(), 2));
    c.fake.inject(Fault::meta_error(replace(), 1, 503, 2, None));
    c.fake
        .inject(Fault::delay(replace(), 1, Duration::from_secs(120)));
    let r = tokio::time::timeout(Duration::from_secs(60), c.sync("full"))
        .await
        .expect("the sync gives up within its retries");
    assert_eq!(r["status"], "failed", "{r}");
    let (_, message) = c.log_row(&r).await;
    let message = message.unwrap_or_default();
    assert!(message.contains("Meta"), "{message}");
    assert_eq!(
        c.replace_calls().len(),
        4,
        "bounded: the configured 4 attempts"
    );
    // Nothing reached Meta: it holds what it held, and no member claims otherwise.
    let before = c.fake.members(&c.meta);
    c.assert_no_false_synced(&before, "after Meta failed").await;

    let r = c.sync("incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    c.assert_exact("the sync after Meta recovered").await;
}

#[tokio::test]
async fn removals_failing_beyond_the_retries_fail_the_sync_and_the_next_one_removes_the_leavers() {
    let (fake, t) = quick_giving_up().await;
    let c = synced_case_on(fake, t, 50).await;
    c.churn_small().await;
    let removals = || FaultMatch::route("DELETE", "/users");
    c.fake.inject(Fault::html500(removals(), 2));
    c.fake
        .inject(Fault::meta_error(removals(), 2, 503, 2, None));
    let r = c.sync("incremental").await;
    assert_eq!(r["status"], "failed", "{r}");
    // The leavers the diff listed are still in Meta, and their rows say so: none was deleted,
    // none marked unsynced, none flagged.
    let before = c.fake.members(&c.meta);
    assert_eq!(before.len(), 50, "nothing was removed");
    assert_eq!(
        c.stored_rows().await,
        before,
        "the rows still say what Meta holds"
    );
    assert_eq!(c.member_rows("removal_pending").await, 0);
    // The API shows them waiting for their removal (5 left the segment, 2 opted out).
    let (_, a) =
        c.t.get(&format!("/api/audiences/{}?include=members", c.id))
            .await;
    let waiting = a["members"].as_array().unwrap().iter();
    assert_eq!(
        waiting.filter(|m| m["removal_pending"] == true).count(),
        7,
        "{a}"
    );
    // One of those leavers rejoins before the next sync, which must keep them in Meta.
    let back: Uuid =
        c.t.db
            .query_one(
                "SELECT person_id FROM audience_member_sync m WHERE audience_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM segment_member s \
                             WHERE s.segment_id = $2 AND s.person_id = m.person_id) \
             ORDER BY person_id LIMIT 1",
                &[&c.audience, &c.seg],
            )
            .await
            .unwrap()
            .get(0);
    c.t.add_to_segment(c.seg, back).await;

    // `update`: the changed emails are replaced too, so Meta can be exact after it.
    let r = c.sync("update").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(log_of_removed(&c, &r).await, 4 + 2 + 3, "{r}");
    c.assert_exact("the sync after Meta recovered").await;
    let listed = support::count(&c.t.db, "SELECT count(*) FROM audience_member_leaver", &[]).await;
    assert_eq!(listed, 0, "no list outlives its sync");
}

/// A sync made from the changes removes two kinds of leavers: synced ones, which its diff
/// lists, and ones a failed replace left unsynced with their rows stored, which it flags. The
/// pass reads unsynced members while the removals run: none of those leavers may be re-added.
#[tokio::test]
async fn leavers_synced_and_left_unsynced_by_a_failed_replace_all_leave_meta() {
    let c = synced_case(MEMBERS).await;
    c.fake.set_replace_timeout(Duration::from_millis(300));
    c.fake
        .inject(Fault::meta_error(nth_replace(2), 1, 400, 190, Some(463)));
    let r = c.sync("full").await;
    assert_eq!(r["status"], "failed", "{r}");
    wait_until(|| !c.fake.replace_in_progress(&c.meta), "the session's end").await;
    c.fake.set_replace_timeout(META_REPLACE_TIMEOUT);
    // Batch 1 carried the first 10,000 in person order: the 50 first are synced, the 50 last
    // are to be sent again, their rows still stored.
    let leavers: Vec<Uuid> = support::column(
        &c.t.db,
        "(SELECT person_id FROM segment_member WHERE segment_id = $1 ORDER BY person_id LIMIT 50) \
         UNION ALL \
         (SELECT person_id FROM segment_member WHERE segment_id = $1 \
          ORDER BY person_id DESC LIMIT 50)",
        &[&c.seg],
    )
    .await;
    let ids = leavers
        .iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let stored = format!("hashes IS NOT NULL AND person_id = ANY('{{{ids}}}'::uuid[])");
    let synced = c.member_rows(&format!("{stored} AND is_synced")).await;
    let unsynced = c.member_rows(&format!("{stored} AND NOT is_synced")).await;
    assert_eq!((synced, unsynced), (50, 50));
    c.t.db
        .execute(
            "DELETE FROM segment_member WHERE segment_id = $1 AND person_id = ANY($2)",
            &[&c.seg, &leavers],
        )
        .await
        .unwrap();

    let r = c.sync("incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    c.assert_exact("after leavers of both kinds").await;
}

/// The `removed` count of a sync's log row.
async fn log_of_removed(c: &Case, r: &Value) -> i64 {
    let id = Uuid::parse_str(r["sync_log_id"].as_str().unwrap()).unwrap();
    c.t.db
        .query_one(
            "SELECT (details->>'removed')::bigint FROM audience_sync_log WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

impl Case {
    /// A small audience's churn: 5 leave, 2 opt out, 3 change their email, 4 join.
    async fn churn_small(&self) {
        let db = &self.t.db;
        let ids: Vec<Uuid> = support::column(
            db,
            "SELECT person_id FROM segment_member WHERE segment_id = $1 ORDER BY person_id LIMIT 10",
            &[&self.seg],
        )
        .await;
        db.execute(
            "DELETE FROM segment_member WHERE segment_id = $1 AND person_id = ANY($2)",
            &[&self.seg, &&ids[..5]],
        )
        .await
        .unwrap();
        db.execute(
            "UPDATE person SET marketing_opt_out = true WHERE id = ANY($1)",
            &[&&ids[5..7]],
        )
        .await
        .unwrap();
        db.execute(
            "UPDATE person SET email = 'changed.' || email WHERE id = ANY($1)",
            &[&&ids[7..10]],
        )
        .await
        .unwrap();
        self.t.people_in_segment(self.seg, "joiner", 4).await;
    }
}
