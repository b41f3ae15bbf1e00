//! Syncs to LinkedIn (DMP segments) against the strict fake: what the segment holds after every
//! sync type, per-element rejects mapped back to members, batches of 5,000, throttling, a bad
//! token, a segment deleted outside, and LinkedIn not configured.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::fake_linkedin::{FakeLinkedin, Fault, FaultResponse, FAKE_ACCOUNT, FAKE_TOKEN};
use crate::support::{spawn_app_configured, TestApp};

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn emails(tag: &str, range: std::ops::RangeInclusive<i32>) -> HashSet<String> {
    range
        .map(|i| sha(&format!("{tag}{i}@example.com")))
        .collect()
}

async fn setup() -> (FakeLinkedin, TestApp) {
    let fake = FakeLinkedin::start().await;
    let config = fake.config();
    let t = spawn_app_configured(|c| {
        c.db_pool_size = 8;
        c.linkedin = Some(config);
    })
    .await;
    (fake, t)
}

/// A LinkedIn audience of `seg`.
async fn audience(t: &TestApp, seg: Uuid, name: &str) -> String {
    let a = t
        .create_audience(json!({"name": name, "segment_id": seg, "destination": "linkedin"}))
        .await;
    assert_eq!(a["destination"], "linkedin", "{a}");
    a["id"].as_str().unwrap().to_string()
}

async fn segment_id(t: &TestApp, id: &str) -> String {
    let row =
        t.db.query_one(
            "SELECT destination_audience_id FROM custom_audience WHERE id = $1",
            &[&Uuid::parse_str(id).unwrap()],
        )
        .await
        .unwrap();
    row.get::<_, Option<String>>(0)
        .expect("a LinkedIn segment id")
}

/// Status, error message and platform response of the sync's log row.
async fn log_of(t: &TestApp, r: &Value) -> (String, Option<String>, Value) {
    let id = Uuid::parse_str(r["sync_log_id"].as_str().unwrap()).unwrap();
    let row =
        t.db.query_one(
            "SELECT status, error_message, meta_response FROM audience_sync_log WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn failure_reasons(t: &TestApp, id: &str) -> Vec<String> {
    crate::support::column(
        &t.db,
        "SELECT failure_reason FROM audience_member_sync WHERE audience_id = $1 \
         AND failure_reason IS NOT NULL ORDER BY failure_reason",
        &[&Uuid::parse_str(id).unwrap()],
    )
    .await
}

#[tokio::test]
async fn first_full_sync_creates_the_segment_and_it_holds_exactly_the_members() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "li", 30).await;
    // A phone is no LinkedIn identifier: this member cannot be sent, and says why.
    t.person(seg, None, Some("+1 650 555 0123")).await;
    let id = audience(&t, seg, "LinkedIn Full").await;

    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 30);
    assert_eq!(r["failed_count"], 1);
    let segment = segment_id(&t, &id).await;
    assert_eq!(fake.members(&segment), emails("li", 1..=30));
    let created = &fake.segments()[0];
    assert_eq!(created.name, "LinkedIn Full");
    assert_eq!(created.account, FAKE_ACCOUNT);
    assert_eq!(created.source_segment_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        failure_reasons(&t, &id).await,
        ["no email (LinkedIn matches people on their email only)"]
    );
    let calls = fake.calls();
    // The new segment answered 404 for a while: the members went only once it was available.
    let first_users = calls
        .iter()
        .position(|c| c.path.ends_with("/users"))
        .unwrap();
    assert!(
        calls[..first_users].iter().any(|c| c.status == 404),
        "{calls:?}"
    );
    assert!(calls.iter().all(|c| c.status != 404 || c.method == "GET"));
    // Nothing but hashes: no plain-text names, titles or companies.
    assert!(calls.iter().all(|c| c.plain_fields.is_empty()), "{calls:?}");

    let (_, _, response) = log_of(&t, &r).await;
    assert_eq!(response["segment_id"], segment.as_str(), "{response}");
    assert_eq!(response["added"], 30);
    let (_, got) = t.get(&format!("/api/audiences/{id}?include=metrics")).await;
    assert_eq!(got["status"], "active", "{got}");
}

#[tokio::test]
async fn incremental_update_and_full_syncs_keep_the_segment_equal_to_the_segment_members() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "inc", 10).await;
    let id = audience(&t, seg, "LinkedIn Inc").await;
    t.sync(&id, "incremental").await;
    let segment = segment_id(&t, &id).await;
    assert_eq!(fake.members(&segment), emails("inc", 1..=10));

    // Joiners, a leaver, an opt-out, an erasure.
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
    assert_eq!(r["status"], "completed", "{r}");
    let mut want = emails("inc", 4..=10);
    want.extend(emails("joiner", 1..=2));
    assert_eq!(fake.members(&segment), want);

    // A changed email: the old hash leaves, the new one comes.
    t.db.execute(
        "UPDATE person SET email = 'renamed@example.com' WHERE id = $1",
        &[&people[5]],
    )
    .await
    .unwrap();
    let r = t.sync(&id, "update").await;
    assert_eq!(r["synced_count"], 1, "{r}");
    want.remove(&sha("inc6@example.com"));
    want.insert(sha("renamed@example.com"));
    assert_eq!(fake.members(&segment), want);

    // A full sync: no replace on LinkedIn, so leavers and changed emails are removed and
    // everyone is sent again.
    t.db.execute(
        "DELETE FROM segment_member WHERE person_id = $1",
        &[&people[3]],
    )
    .await
    .unwrap();
    t.db.execute(
        "UPDATE person SET email = 'again@example.com' WHERE id = $1",
        &[&people[4]],
    )
    .await
    .unwrap();
    fake.clear_calls();
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    want.remove(&sha("inc4@example.com"));
    want.remove(&sha("inc5@example.com"));
    want.insert(sha("again@example.com"));
    assert_eq!(fake.members(&segment), want);
    let sent: usize = fake
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/users"))
        .map(|c| c.elements)
        .sum();
    assert_eq!(
        sent,
        want.len() + 2,
        "everyone re-sent, two old hashes removed"
    );
}

#[tokio::test]
async fn elements_linkedin_refuses_are_failed_members_and_the_rest_synced() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "rej", 6).await;
    fake.set_invalid_hashes([sha("rej2@example.com"), sha("rej5@example.com")]);
    let id = audience(&t, seg, "LinkedIn Rejects").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 4, "{r}");
    assert_eq!(r["failed_count"], 2, "{r}");
    let segment = segment_id(&t, &id).await;
    let mut want = emails("rej", 1..=6);
    want.remove(&sha("rej2@example.com"));
    want.remove(&sha("rej5@example.com"));
    assert_eq!(fake.members(&segment), want);
    let refused: Vec<String> = crate::support::column(
        &t.db,
        "SELECT p.email FROM audience_member_sync m JOIN person p ON p.id = m.person_id \
         WHERE m.audience_id = $1 AND NOT m.is_synced ORDER BY p.email",
        &[&Uuid::parse_str(&id).unwrap()],
    )
    .await;
    assert_eq!(refused, ["rej2@Example.com", "rej5@Example.com"]);
    let (_, _, response) = log_of(&t, &r).await;
    assert_eq!(response["rejected"], 2, "{response}");
    let reasons = failure_reasons(&t, &id).await;
    assert_eq!(
        reasons,
        ["LinkedIn refused this member's email hash (its element of the batch failed)"; 2]
    );
}

#[tokio::test]
async fn twelve_thousand_members_go_in_batches_of_at_most_5000() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "big", 12_000).await;
    let id = audience(&t, seg, "LinkedIn Big").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 12_000);
    let segment = segment_id(&t, &id).await;
    assert_eq!(fake.members(&segment).len(), 12_000);
    let mut sizes: Vec<usize> = fake
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/users"))
        .map(|c| c.elements)
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [2_000, 5_000, 5_000]);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_the_sync_completes() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "th", 3).await;
    let id = audience(&t, seg, "LinkedIn Throttled").await;
    let fault = |path_suffix, status, times| Fault {
        method: "POST",
        path_suffix,
        times,
        response: FaultResponse::Status(status),
    };
    fake.inject(fault("/dmpSegments", 503, 1));
    fake.inject(fault("/users", 429, 2));
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(
        fake.members(&segment_id(&t, &id).await),
        emails("th", 1..=3)
    );
    assert_eq!(
        fake.segments().len(),
        1,
        "the retried create made one segment"
    );
    let users: Vec<u16> = fake
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/users"))
        .map(|c| c.status)
        .collect();
    assert_eq!(users, [429, 429, 200]);
}

#[tokio::test]
async fn a_bad_token_fails_the_sync_saying_to_renew_it_and_shows_no_token() {
    let fake = FakeLinkedin::start().await;
    let bad = "AQV-expired-token-0123456789";
    let config = fake.config_with(bad);
    let t = spawn_app_configured(|c| c.linkedin = Some(config)).await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "tok", 2).await;
    let id = audience(&t, seg, "LinkedIn Bad Token").await;
    let (status, body) = t
        .post(
            "/api/audiences/sync",
            &json!({"audience_id": id, "sync_type": "full"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    let (log_status, message, response) = log_of(&t, &body).await;
    assert_eq!(log_status, "failed");
    let message = message.unwrap();
    assert!(
        message.contains("renew") && message.contains("60 days"),
        "{message}"
    );
    let (_, audience) = t.get(&format!("/api/audiences/{id}")).await;
    for text in [
        body.to_string(),
        message,
        response.to_string(),
        audience.to_string(),
    ] {
        assert!(!text.contains(bad) && !text.contains(FAKE_TOKEN), "{text}");
    }
    assert!(fake.segments().is_empty());
    // One attempt: a 401 is not retried.
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn a_segment_deleted_outside_fails_the_sync_saying_it_is_gone() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "gone", 3).await;
    let id = audience(&t, seg, "LinkedIn Gone").await;
    t.sync(&id, "full").await;
    let segment = segment_id(&t, &id).await;
    fake.delete_outside(&segment);
    t.people_in_segment(seg, "late", 1).await;
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "failed", "{r}");
    let (_, message, _) = log_of(&t, &r).await;
    let message = message.unwrap();
    assert!(
        message.contains(&format!("linkedin audience {segment} no longer exists")),
        "{message}"
    );
    // The next sync makes a new segment and sends everyone to it.
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    let again = segment_id(&t, &id).await;
    assert_ne!(again, segment);
    let mut want = emails("gone", 1..=3);
    want.extend(emails("late", 1..=1));
    assert_eq!(fake.members(&again), want);
}

#[tokio::test]
async fn without_linkedin_configured_the_sync_is_the_database_side_and_says_so() {
    let t = spawn_app_configured(|_| {}).await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "db", 4).await;
    let id = audience(&t, seg, "LinkedIn Unconfigured").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 4);
    let (_, _, response) = log_of(&t, &r).await;
    assert_eq!(response, json!({"skipped": "linkedin not configured"}));
}

#[tokio::test]
async fn a_new_segment_that_stays_unavailable_fails_the_sync_and_the_next_one_fills_it() {
    let (fake, t) = setup().await;
    fake.set_ready_after(Duration::from_secs(3600));
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "slow", 2).await;
    let id = audience(&t, seg, "LinkedIn Slow").await;
    // The sync's deadline bounds the wait (as a scheduler pass or a Lambda's time would).
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let result = audience_sync::sync::run(
        &t.app,
        Uuid::parse_str(&id).unwrap(),
        Some(audience_sync::sync::SyncType::Full),
        &audience_sync::sync::NoProgress,
        Some(deadline),
    )
    .await;
    let failed = match result {
        Ok(r) => r.status == audience_sync::sync::SyncStatus::Failed,
        Err(_) => true,
    };
    assert!(failed);
    let segment = segment_id(&t, &id).await;
    fake.set_ready_after(Duration::ZERO);
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(fake.members(&segment), emails("slow", 1..=2));
    assert_eq!(fake.segments().len(), 1);
}

#[tokio::test]
async fn deleting_the_audience_deletes_its_segment_in_linkedin() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "del", 2).await;
    let id = audience(&t, seg, "LinkedIn Delete").await;
    t.sync(&id, "full").await;
    assert_eq!(fake.segments().len(), 1);
    let (status, body) = t.delete(&format!("/api/audiences/{id}")).await;
    assert_eq!(status, 204, "{body}");
    assert!(fake.segments().is_empty());
    let deletes = fake.calls().iter().filter(|c| c.method == "DELETE").count();
    assert_eq!(deletes, 1);
}

#[tokio::test]
async fn a_full_sync_of_an_emptied_segment_empties_the_linkedin_segment() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "empty", 4).await;
    let id = audience(&t, seg, "LinkedIn Emptied").await;
    t.sync(&id, "full").await;
    let segment = segment_id(&t, &id).await;
    assert_eq!(fake.members(&segment).len(), 4);
    t.db.execute("DELETE FROM segment_member", &[])
        .await
        .unwrap();
    // The removal guardrails block it (tests/api/guard.rs) until forced.
    let blocked = t.sync(&id, "full").await;
    assert_eq!(blocked["status"], "blocked", "{blocked}");
    assert_eq!(fake.members(&segment).len(), 4);
    let r = t.sync_forced(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert!(fake.members(&segment).is_empty());
}
