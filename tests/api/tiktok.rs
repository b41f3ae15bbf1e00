//! Syncs to TikTok (the audience segment API) against the strict fake: what the audience holds
//! after every sync type, batches of 1,000, the body `code` of throttling and system errors
//! retried, a bad token, an audience deleted outside, lookalikes, and TikTok not configured.

use std::collections::HashSet;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::fake_tiktok::{FakeTiktok, Fault, FaultResponse, FAKE_TOKEN};
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

async fn setup() -> (FakeTiktok, TestApp) {
    let fake = FakeTiktok::start().await;
    let config = fake.config();
    let t = spawn_app_configured(|c| {
        c.db_pool_size = 8;
        c.tiktok = Some(config);
    })
    .await;
    (fake, t)
}

/// A TikTok audience.
async fn audience(t: &TestApp, mut body: Value) -> String {
    body["destination"] = json!("tiktok");
    let a = t.create_audience(body).await;
    assert_eq!(a["destination"], "tiktok", "{a}");
    a["id"].as_str().unwrap().to_string()
}

async fn list(t: &TestApp, seg: Uuid, name: &str) -> String {
    audience(t, json!({"name": name, "segment_id": seg})).await
}

/// `destination_audience_id` and the lookalike seed's id.
async fn platform_ids(t: &TestApp, id: &str) -> (Option<String>, Option<String>) {
    let row = t
        .db
        .query_one(
            "SELECT destination_audience_id, meta_seed_audience_id FROM custom_audience WHERE id = $1",
            &[&Uuid::parse_str(id).unwrap()],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn tiktok_id(t: &TestApp, id: &str) -> String {
    platform_ids(t, id).await.0.expect("a TikTok audience id")
}

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

fn mapping_calls(fake: &FakeTiktok) -> Vec<(usize, i64)> {
    fake.calls()
        .iter()
        .filter(|c| c.path == "/segment/mapping/")
        .map(|c| (c.users, c.code))
        .collect()
}

#[tokio::test]
async fn first_full_sync_creates_the_audience_and_it_holds_exactly_the_members() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "tt", 20).await;
    // Phone only, in the national format of its country: digits with the country code.
    t.person(seg, None, Some("(657) 777-0000")).await;
    // TikTok's email rule: spaces and the +tag go.
    t.person(seg, Some(" Jane Doe+ads@Gmail.com "), Some("+37493828222"))
        .await;
    t.person(seg, None, None).await;
    let id = list(&t, seg, "TikTok Full").await;

    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 22);
    assert_eq!(r["failed_count"], 1);
    let tiktok = tiktok_id(&t, &id).await;
    let created = fake.audience(&tiktok).expect("the audience in TikTok");
    assert_eq!(created.name, "TikTok Full");
    let mut want = emails("tt", 1..=20);
    // TikTok's published example hash of janedoe@gmail.com.
    want.insert("d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69".into());
    assert_eq!(fake.ids(&tiktok, "EMAIL_SHA256"), want);
    assert_eq!(
        fake.ids(&tiktok, "PHONE_SHA256"),
        HashSet::from([
            "8d7bdaaf75196f351d22942fc0dd79304ffabc3eaf3339460ef9da0773e3aec2".to_string(),
            "65b7e6dcf6f4310f8d7cbfbd78289a753062fb054d6664fb9aaac5df66a422d4".to_string(),
        ])
    );
    let reasons: Vec<String> = crate::support::column(
        &t.db,
        "SELECT failure_reason FROM audience_member_sync WHERE audience_id = $1 AND NOT is_synced",
        &[&Uuid::parse_str(&id).unwrap()],
    )
    .await;
    assert_eq!(reasons, ["no email or phone"]);
    let (_, _, response) = log_of(&t, &r).await;
    assert_eq!(response["audience_id"], tiktok.as_str(), "{response}");
    assert_eq!(response["added"], 22);
    let metrics = t.platform_metrics(&id).await;
    assert_eq!(
        metrics["cover_num"], 23,
        "21 emails and 2 phones: {metrics}"
    );
}

#[tokio::test]
async fn incremental_update_and_full_syncs_keep_the_audience_equal_to_the_segment() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    let people = t.people_in_segment(seg, "inc", 10).await;
    let id = list(&t, seg, "TikTok Inc").await;
    t.sync(&id, "incremental").await;
    let tiktok = tiktok_id(&t, &id).await;
    assert_eq!(fake.ids(&tiktok, "EMAIL_SHA256"), emails("inc", 1..=10));

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
    assert_eq!(fake.ids(&tiktok, "EMAIL_SHA256"), want);

    // A changed email and a new phone: old identifiers leave, new ones come.
    t.db.execute(
        "UPDATE person SET email = 'renamed@example.com', phone = '+1 657 777 0000' WHERE id = $1",
        &[&people[5]],
    )
    .await
    .unwrap();
    let r = t.sync(&id, "update").await;
    assert_eq!(r["synced_count"], 1, "{r}");
    want.remove(&sha("inc6@example.com"));
    want.insert(sha("renamed@example.com"));
    assert_eq!(fake.ids(&tiktok, "EMAIL_SHA256"), want);
    assert_eq!(
        fake.ids(&tiktok, "PHONE_SHA256"),
        HashSet::from([sha("16577770000")])
    );

    // A full sync: leavers and changed identifiers removed, everyone sent again.
    t.db.execute(
        "DELETE FROM segment_member WHERE person_id = $1",
        &[&people[3]],
    )
    .await
    .unwrap();
    t.db.execute(
        "UPDATE person SET email = 'again@example.com', phone = NULL WHERE id = $1",
        &[&people[5]],
    )
    .await
    .unwrap();
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    want.remove(&sha("inc4@example.com"));
    want.remove(&sha("renamed@example.com"));
    want.insert(sha("again@example.com"));
    assert_eq!(fake.ids(&tiktok, "EMAIL_SHA256"), want);
    assert!(fake.ids(&tiktok, "PHONE_SHA256").is_empty());
    let actions: Vec<_> = fake
        .calls()
        .iter()
        .filter_map(|c| c.action.clone().map(|a| (a, c.users)))
        .collect();
    let tail = &actions[actions.len() - 3..];
    assert_eq!(
        tail,
        [
            ("delete".into(), 1),
            ("delete".into(), 1),
            ("add".into(), 8)
        ],
        "the leaver, the changed member's old identifiers, then everyone"
    );
}

#[tokio::test]
async fn members_go_in_requests_of_at_most_1000() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "big", 2_500).await;
    let id = list(&t, seg, "TikTok Big").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["synced_count"], 2_500, "{r}");
    assert_eq!(
        fake.ids(&tiktok_id(&t, &id).await, "EMAIL_SHA256").len(),
        2_500
    );
    let mut sizes: Vec<usize> = mapping_calls(&fake).iter().map(|c| c.0).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [500, 1_000, 1_000]);
}

#[tokio::test]
async fn throttling_and_system_errors_in_the_body_code_are_retried() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "th", 3).await;
    let id = list(&t, seg, "TikTok Throttled").await;
    let fault = |response, times| Fault {
        path_suffix: "/segment/mapping/",
        times,
        response,
    };
    fake.inject(fault(FaultResponse::Code(40100), 1));
    fake.inject(fault(FaultResponse::Code(50002), 1));
    fake.inject(fault(FaultResponse::Http(503), 1));
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(
        fake.ids(&tiktok_id(&t, &id).await, "EMAIL_SHA256"),
        emails("th", 1..=3)
    );
    assert_eq!(
        mapping_calls(&fake),
        [(3, 40100), (3, 50002), (3, -1), (3, 0)]
    );
}

#[tokio::test]
async fn a_parameter_error_fails_the_sync_without_retrying() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "bad", 2).await;
    let id = list(&t, seg, "TikTok 40002").await;
    fake.inject(Fault {
        path_suffix: "/segment/mapping/",
        times: 1,
        response: FaultResponse::Code(40002),
    });
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "failed", "{r}");
    let (_, message, _) = log_of(&t, &r).await;
    assert!(message.unwrap().contains("code 40002"));
    assert_eq!(mapping_calls(&fake).len(), 1);
    // Nothing was marked synced that TikTok does not hold.
    assert_eq!(
        crate::support::count(
            &t.db,
            "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1 AND is_synced",
            &[&Uuid::parse_str(&id).unwrap()],
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_bad_token_fails_the_sync_clearly_and_shows_no_token() {
    let fake = FakeTiktok::start().await;
    let bad = "tt-revoked-token-0123456789";
    let config = fake.config_with(bad);
    let t = spawn_app_configured(|c| c.tiktok = Some(config)).await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "tok", 2).await;
    let id = list(&t, seg, "TikTok Bad Token").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "failed", "{r}");
    let (_, message, response) = log_of(&t, &r).await;
    let message = message.unwrap();
    assert!(
        message.contains("40105") && message.contains("TIKTOK_ACCESS_TOKEN"),
        "{message}"
    );
    let (_, audience) = t.get(&format!("/api/audiences/{id}")).await;
    for text in [
        r.to_string(),
        message,
        response.to_string(),
        audience.to_string(),
    ] {
        assert!(!text.contains(bad) && !text.contains(FAKE_TOKEN), "{text}");
    }
    assert!(fake.audiences().is_empty());
    assert_eq!(fake.calls().len(), 1, "40105 is not retried");
}

#[tokio::test]
async fn an_audience_deleted_outside_fails_the_sync_saying_it_is_gone() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "gone", 3).await;
    let id = list(&t, seg, "TikTok Gone").await;
    t.sync(&id, "full").await;
    let tiktok = tiktok_id(&t, &id).await;
    fake.delete_outside(&tiktok);
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "failed", "{r}");
    let (_, message, _) = log_of(&t, &r).await;
    let message = message.unwrap();
    assert!(
        message.contains(&format!("tiktok audience {tiktok} no longer exists")),
        "{message}"
    );
    // The next sync makes a new audience and sends everyone to it.
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    let again = tiktok_id(&t, &id).await;
    assert_ne!(again, tiktok);
    assert_eq!(fake.ids(&again, "EMAIL_SHA256"), emails("gone", 1..=3));
}

#[tokio::test]
async fn a_lookalike_is_built_from_its_seed_with_the_size_and_country_asked() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "seed", 120).await;
    let id = audience(
        &t,
        json!({"name": "TikTok Lookalike", "segment_id": seg, "audience_type": "lookalike",
               "lookalike_country": "us", "lookalike_percentage": 5}),
    )
    .await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    let (lookalike, seed) = platform_ids(&t, &id).await;
    let (lookalike, seed) = (lookalike.unwrap(), seed.unwrap());
    assert_eq!(fake.ids(&seed, "EMAIL_SHA256"), emails("seed", 1..=120));
    let built = fake.audience(&lookalike).unwrap();
    assert_eq!(built.kind, "LOOKALIKE");
    let spec = built.lookalike_spec.unwrap();
    assert_eq!(spec["source_audience_id"], seed.as_str());
    assert_eq!(spec["audience_size"], "BALANCED");
    assert_eq!(spec["location_ids"], json!(["US"]));

    // The next sync feeds the seed; the lookalike is not made again.
    t.people_in_segment(seg, "more", 1).await;
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(fake.ids(&seed, "EMAIL_SHA256").len(), 121);
    assert_eq!(fake.audiences().len(), 2);
}

#[tokio::test]
async fn a_lookalike_whose_seed_was_deleted_outside_is_rebuilt_from_a_new_seed() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "reseed", 110).await;
    let id = audience(
        &t,
        json!({"name": "TikTok Reseeded", "segment_id": seg, "audience_type": "lookalike",
               "lookalike_country": "us", "lookalike_percentage": 2}),
    )
    .await;
    t.sync(&id, "full").await;
    let (lookalike, seed) = platform_ids(&t, &id).await;
    let (lookalike, seed) = (lookalike.unwrap(), seed.unwrap());
    fake.delete_outside(&seed);

    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "failed", "{r}");
    let (_, message, _) = log_of(&t, &r).await;
    assert!(
        message
            .unwrap()
            .contains(&format!("tiktok audience {seed} no longer exists")),
        "the sync says the seed is gone"
    );
    // A lookalike of a seed that no longer exists is built again with the new seed.
    assert_eq!(platform_ids(&t, &id).await, (None, None));

    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    let (new_lookalike, new_seed) = platform_ids(&t, &id).await;
    let (new_lookalike, new_seed) = (new_lookalike.unwrap(), new_seed.unwrap());
    assert_ne!(new_seed, seed);
    assert_ne!(new_lookalike, lookalike);
    assert_eq!(
        fake.ids(&new_seed, "EMAIL_SHA256"),
        emails("reseed", 1..=110)
    );
    let spec = fake
        .audience(&new_lookalike)
        .unwrap()
        .lookalike_spec
        .unwrap();
    assert_eq!(spec["source_audience_id"], new_seed.as_str());
    assert_eq!(spec["audience_size"], "NARROW");
}

#[tokio::test]
async fn without_tiktok_configured_the_sync_is_the_database_side_and_says_so() {
    let t = spawn_app_configured(|_| {}).await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "db", 4).await;
    let id = list(&t, seg, "TikTok Unconfigured").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 4);
    let (_, _, response) = log_of(&t, &r).await;
    assert_eq!(response, json!({"skipped": "tiktok not configured"}));
}

#[tokio::test]
async fn deleting_a_lookalike_deletes_it_and_its_seed_in_tiktok() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "del", 100).await;
    let id = audience(
        &t,
        json!({"name": "TikTok Delete", "segment_id": seg, "audience_type": "lookalike",
               "lookalike_country": "GB", "lookalike_percentage": 9}),
    )
    .await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(fake.audiences().len(), 2);
    let lookalike = fake.audiences().into_iter().find(|a| a.kind == "LOOKALIKE");
    assert_eq!(
        lookalike.unwrap().lookalike_spec.unwrap()["audience_size"],
        "BROAD"
    );
    let (status, body) = t.delete(&format!("/api/audiences/{id}")).await;
    assert_eq!(status, 204, "{body}");
    assert!(fake.audiences().is_empty());
}

#[tokio::test]
async fn a_full_sync_of_an_emptied_segment_empties_the_tiktok_audience() {
    let (fake, t) = setup().await;
    let seg = t.segment("S").await;
    t.people_in_segment(seg, "empty", 4).await;
    t.person(seg, None, Some("+1 657 777 0000")).await;
    let id = list(&t, seg, "TikTok Emptied").await;
    t.sync(&id, "full").await;
    let tiktok = tiktok_id(&t, &id).await;
    assert_eq!(fake.audience(&tiktok).unwrap().ids.len(), 5);
    t.db.execute("DELETE FROM segment_member", &[])
        .await
        .unwrap();
    // The removal guardrails block it (tests/api/guard.rs) until forced.
    let blocked = t.sync(&id, "full").await;
    assert_eq!(blocked["status"], "blocked", "{blocked}");
    assert_eq!(fake.audience(&tiktok).unwrap().ids.len(), 5);
    let r = t.sync_forced(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert!(fake.audience(&tiktok).unwrap().ids.is_empty());
}
