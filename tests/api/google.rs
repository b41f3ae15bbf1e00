//! Syncs to Google Customer Match against the strict fake Data Manager API: what the list holds
//! after every sync type (joiners, leavers, opt-outs, erasures, changed identifiers), requests
//! of at most 10,000 members, throttling, credentials (a bad token, the refresh flow), a list
//! deleted in Google Ads, and Google not configured.
//!
//! Until the API takes `"destination": "google"` (the wiring helper's change), audiences are
//! created through the API and switched to Google with SQL (`google_audience`); the lead turns
//! this into the request field after merging.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use audience_sync::destinations::settings::{Consent, GoogleAuth, GoogleConfig};
use audience_sync::destinations::token::SecretToken;
use audience_sync::sync::scheduler::{tick, TickOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::fake_google::{expect, FakeGoogle, GoogleFault, FAKE_CUSTOMER};
use crate::support::{spawn_app_configured, TestApp};

async fn app_with(google: Option<GoogleConfig>) -> TestApp {
    spawn_app_configured(|c| {
        c.db_pool_size = 8;
        c.google = google;
    })
    .await
}

async fn setup() -> (FakeGoogle, TestApp) {
    let fake = FakeGoogle::start().await;
    let t = app_with(Some(fake.google_config())).await;
    (fake, t)
}

/// A custom-list audience on `seg` whose destination is Google.
async fn google_audience(t: &TestApp, seg: Uuid, name: &str) -> String {
    let a = t
        .create_audience(json!({
            "name": name, "description": "from tests", "segment_id": seg, "destination": "google",
        }))
        .await;
    assert_eq!(a["destination"], "google", "{a}");
    a["id"].as_str().unwrap().to_string()
}

async fn list_id(t: &TestApp, id: &str) -> String {
    let id = Uuid::parse_str(id).unwrap();
    t.db.query_one(
        "SELECT destination_audience_id FROM custom_audience WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .get::<_, Option<String>>(0)
    .expect("the user list id is recorded")
}

/// A person tagged `tag` (external id) with an email `<tag>@Example.com`, in `seg`.
async fn person(t: &TestApp, seg: Uuid, tag: &str) -> Uuid {
    person_with(t, seg, tag, Some(&format!("{tag}@Example.com")), None, None).await
}

async fn person_with(
    t: &TestApp,
    seg: Uuid,
    tag: &str,
    email: Option<&str>,
    phone: Option<&str>,
    address: Option<(&str, &str, &str)>,
) -> Uuid {
    let (first, last, zip) =
        address.map_or((None, None, None), |(f, l, z)| (Some(f), Some(l), Some(z)));
    let id: Uuid =
        t.db.query_one(
            "INSERT INTO person (external_id, email, phone, first_name, last_name, zip, country) \
             VALUES ($1, $2, $3, $4, $5, $6, 'US') RETURNING id",
            &[&tag, &email, &phone, &first, &last, &zip],
        )
        .await
        .unwrap()
        .get(0);
    t.add_to_segment(seg, id).await;
    id
}

fn emails(tags: impl IntoIterator<Item = String>) -> HashSet<String> {
    tags.into_iter()
        .map(|t| expect::email(&format!("{t}@example.com")))
        .collect()
}

fn tags(prefix: &str, range: std::ops::RangeInclusive<i32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

async fn leave_segment(t: &TestApp, seg: Uuid, tag: &str) {
    t.db.execute(
        "DELETE FROM segment_member WHERE segment_id = $1 AND person_id = \
         (SELECT id FROM person WHERE external_id = $2)",
        &[&seg, &tag],
    )
    .await
    .unwrap();
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

fn calls_to<'a>(
    fake: &'a FakeGoogle,
    suffix: &'a str,
) -> Vec<crate::support::fake_google::GoogleCall> {
    fake.calls()
        .into_iter()
        .filter(|c| c.path.ends_with(suffix))
        .collect()
}

#[tokio::test]
async fn full_incremental_and_update_syncs_leave_the_list_equal_to_the_segment() {
    let (fake, t) = setup().await;
    let seg = t.segment("G").await;
    for tag in tags("g", 1..=30) {
        person(&t, seg, &tag).await;
    }
    person_with(&t, seg, "nobody", None, None, None).await;
    let id = google_audience(&t, seg, "Google Full").await;

    // First sync (full): the list is created and holds exactly the members.
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 30, "{r}");
    assert_eq!(r["failed_count"], 1, "no identifier: {r}");
    let list = list_id(&t, &id).await;
    let created = fake.list(&list).expect("the list exists in Google");
    assert_eq!(created.display_name, format!("Google Full [{id}]"));
    assert_eq!(created.account, FAKE_CUSTOMER);
    assert_eq!(created.membership_duration, "46656000s");
    assert_eq!(created.upload_key_types, vec!["CONTACT_ID"]);
    assert_eq!(fake.members(&list), emails(tags("g", 1..=30)));
    let ingest = &calls_to(&fake, ":ingest")[0];
    assert_eq!(ingest.body["encoding"], "HEX");
    assert_eq!(
        ingest.body["termsOfService"]["customerMatchTermsOfServiceStatus"],
        "ACCEPTED"
    );
    assert_eq!(ingest.body["consent"]["adUserData"], "CONSENT_GRANTED");
    assert_eq!(
        ingest.body["consent"]["adPersonalization"],
        "CONSENT_GRANTED"
    );
    let dest = &ingest.body["destinations"][0];
    assert_eq!(dest["operatingAccount"]["accountId"], FAKE_CUSTOMER);
    assert_eq!(dest["productDestinationId"], list.as_str());
    assert!(
        dest.get("loginAccount").is_none(),
        "no manager account configured"
    );
    let (_, got) = t.get(&format!("/api/audiences/{id}?include=metrics")).await;
    assert_eq!(got["metrics"]["display_network_members_count"], 30, "{got}");
    assert_eq!(got["metrics"]["membership_status"], "OPEN", "{got}");
    assert_eq!(got["metrics"]["match_rate_percentage"], 62, "{got}");

    // Incremental: joiners ingested, leavers removed (no consent nor terms on :remove: the
    // fake refuses unknown fields, as Google does).
    for tag in tags("h", 1..=5) {
        person(&t, seg, &tag).await;
    }
    for tag in tags("g", 1..=5) {
        leave_segment(&t, seg, &tag).await;
    }
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    let mut want = emails(tags("g", 6..=30));
    want.extend(emails(tags("h", 1..=5)));
    assert_eq!(fake.members(&list), want);
    let removes = calls_to(&fake, ":remove");
    assert_eq!(removes.len(), 1);
    assert_eq!(removes[0].members, 5);
    assert!(
        removes[0].body.get("consent").is_none() && removes[0].body.get("termsOfService").is_none()
    );

    // Update: a changed email replaces the old one.
    t.db.execute(
        "UPDATE person SET email = 'changed7@example.com', updated_at = now() WHERE external_id = 'g7'",
        &[],
    )
    .await
    .unwrap();
    let r = t.sync(&id, "update").await;
    assert_eq!(r["status"], "completed", "{r}");
    want.remove(&expect::email("g7@example.com"));
    want.insert(expect::email("changed7@example.com"));
    assert_eq!(fake.members(&list), want);

    // Full again: a full diff (Google has no replace without an empty window): the leaver is
    // removed, every member is ingested again (renewing the 540-day membership).
    leave_segment(&t, seg, "g8").await;
    fake.clear_calls();
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    want.remove(&expect::email("g8@example.com"));
    assert_eq!(fake.members(&list), want);
    let ingested: usize = calls_to(&fake, ":ingest").iter().map(|c| c.members).sum();
    assert_eq!(ingested, want.len(), "every member is sent again");
    assert!(calls_to(&fake, ":removeAll").is_empty());
}

#[tokio::test]
async fn opt_outs_and_erasures_leave_the_list_at_the_next_sync_and_at_the_purge() {
    let (fake, t) = setup().await;
    let seg = t.segment("G").await;
    for tag in tags("p", 1..=6) {
        person(&t, seg, &tag).await;
    }
    let id = google_audience(&t, seg, "Google Consent").await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    let list = list_id(&t, &id).await;

    // p1 opts out and p2 is erased: the next sync removes them.
    let p1 = person_id(&t, "p1").await;
    let p2 = person_id(&t, "p2").await;
    let (s, body) = t
        .request(
            "PATCH",
            &format!("/api/persons/{p1}"),
            Some(r#"{"marketing_opt_out": true}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        t.delete(&format!("/api/persons/{p2}")).await.0,
        StatusCode::NO_CONTENT
    );
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(fake.members(&list), emails(tags("p", 3..=6)));

    // p3 opts out and p4 is erased: a scheduler pass's purge removes them without a sync.
    let p3 = person_id(&t, "p3").await;
    let p4 = person_id(&t, "p4").await;
    let (s, _) = t
        .request(
            "PATCH",
            &format!("/api/persons/{p3}"),
            Some(r#"{"marketing_opt_out": true}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        t.delete(&format!("/api/persons/{p4}")).await.0,
        StatusCode::NO_CONTENT
    );
    t.db.execute("UPDATE custom_audience SET auto_sync = false", &[])
        .await
        .unwrap();
    let summary = tick(
        &t.app,
        TickOptions {
            deadline: Instant::now() + Duration::from_secs(60),
            reserve: Duration::from_secs(1),
            lease: Duration::from_secs(1),
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.purged, 2, "{summary:?}");
    assert_eq!(fake.members(&list), emails(tags("p", 5..=6)));
}

async fn person_id(t: &TestApp, tag: &str) -> Uuid {
    t.db.query_one("SELECT id FROM person WHERE external_id = $1", &[&tag])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn phones_and_addresses_are_sent_the_google_way() {
    let (fake, t) = setup().await;
    let seg = t.segment("G").await;
    person_with(
        &t,
        seg,
        "a",
        Some(" Cloudy.SanFrancisco+shopping@GMAIL.com "),
        Some("(800) 555-0100"),
        None,
    )
    .await;
    person_with(
        &t,
        seg,
        "b",
        None,
        None,
        Some(("  GivenName  ", " FamilyName ", "94045-1234")),
    )
    .await;
    person_with(&t, seg, "c", None, None, Some(("Ann", "Lee", ""))).await;
    let id = google_audience(&t, seg, "Google Shapes").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["synced_count"], 2, "{r}");
    assert_eq!(
        r["failed_count"], 1,
        "an address without a postal code is not sent: {r}"
    );
    let want: HashSet<String> = [
        expect::email("cloudysanfrancisco@gmail.com"),
        expect::phone("+18005550100"),
        expect::address("givenname", "familyname", "US", "94045"),
    ]
    .into();
    assert_eq!(fake.members(&list_id(&t, &id).await), want);
}

#[tokio::test]
async fn more_than_10000_members_go_in_requests_of_at_most_10000() {
    let (fake, t) = setup().await;
    let seg = t.segment("Big").await;
    t.people_in_segment(seg, "big", 10_050).await;
    let id = google_audience(&t, seg, "Google Big").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 10_050, "{r}");
    let sizes: Vec<usize> = calls_to(&fake, ":ingest")
        .iter()
        .map(|c| c.members)
        .collect();
    assert_eq!(sizes, vec![10_000, 50]);
    assert_eq!(fake.members(&list_id(&t, &id).await).len(), 10_050);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_to_success() {
    let (fake, t) = setup().await;
    let seg = t.segment("G").await;
    for tag in tags("r", 1..=3) {
        person(&t, seg, &tag).await;
    }
    let id = google_audience(&t, seg, "Google Retry").await;
    fake.inject("POST", ":ingest", GoogleFault::RateLimited, 2);
    fake.inject("POST", "/userLists", GoogleFault::Unavailable, 1);
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    let statuses: Vec<u16> = calls_to(&fake, ":ingest")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![429, 429, 200]);
    assert_eq!(fake.lists().len(), 1, "one list despite the retried create");
    assert_eq!(
        fake.members(&list_id(&t, &id).await),
        emails(tags("r", 1..=3))
    );

    // Throttled past every attempt: the sync fails saying so, nothing marked synced.
    person(&t, seg, "r4").await;
    fake.inject("POST", ":ingest", GoogleFault::RateLimited, 10);
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "failed", "{r}");
    assert!(
        r["error_message"]
            .as_str()
            .unwrap()
            .contains("RESOURCE_EXHAUSTED"),
        "{r}"
    );
    assert_eq!(t.member_ids(&id, "is_synced").await.len(), 3);
}

#[tokio::test]
async fn a_bad_token_fails_the_sync_clearly_and_no_token_shows() {
    let fake = FakeGoogle::start().await;
    let bad = "ya29.this-token-is-not-valid-anymore";
    let t = app_with(Some(
        fake.config_with(GoogleAuth::AccessToken(SecretToken::new(bad))),
    ))
    .await;
    let seg = t.segment("G").await;
    person(&t, seg, "x1").await;
    let id = google_audience(&t, seg, "Google Bad Token").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "failed", "{r}");
    let message = r["error_message"].as_str().unwrap();
    assert!(message.contains("renew"), "{message}");
    assert!(message.contains("GOOGLE_ACCESS_TOKEN"), "{message}");
    assert_eq!(fake.calls()[0].status, 401);
    let (status, error, response) = log_of(&t, &r).await;
    assert_eq!(status, "failed");
    let (_, audience) = t.get(&format!("/api/audiences/{id}")).await;
    for text in [
        r.to_string(),
        error.unwrap_or_default(),
        response.to_string(),
        audience.to_string(),
    ] {
        assert!(!text.contains(bad), "{text}");
        assert!(!text.contains("ya29."), "{text}");
    }
    assert!(t.member_ids(&id, "is_synced").await.is_empty());
}

#[tokio::test]
async fn access_tokens_are_refreshed_cached_and_renewed_after_a_401() {
    let fake = FakeGoogle::start_with(None).await;
    let t = app_with(Some(fake.refresh_config())).await;
    let seg = t.segment("G").await;
    for tag in tags("f", 1..=3) {
        person(&t, seg, &tag).await;
    }
    let id = google_audience(&t, seg, "Google Refresh").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(
        fake.refreshes(),
        1,
        "one token for the create, the ingest and the read-back"
    );
    assert!(fake
        .calls()
        .iter()
        .filter(|c| c.path != "/token")
        .all(|c| c.authorized));

    // Google revokes it early: the 401 is answered by one refresh, and the sync goes on.
    fake.expire_tokens();
    person(&t, seg, "f4").await;
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(fake.refreshes(), 2);
    assert_eq!(
        fake.members(&list_id(&t, &id).await),
        emails(tags("f", 1..=4))
    );
    for text in [r.to_string(), log_of(&t, &r).await.2.to_string()] {
        assert!(!text.contains("ya29.") && !text.contains("1//"), "{text}");
    }
}

#[tokio::test]
async fn a_refused_refresh_token_fails_the_sync_saying_to_renew_it() {
    let fake = FakeGoogle::start_with(None).await;
    let mut config = fake.refresh_config();
    config.auth = GoogleAuth::Refresh {
        client_id: crate::support::fake_google::FAKE_CLIENT_ID.into(),
        client_secret: SecretToken::new(crate::support::fake_google::FAKE_CLIENT_SECRET),
        refresh_token: SecretToken::new("1//revoked-refresh-token"),
    };
    let t = app_with(Some(config)).await;
    let seg = t.segment("G").await;
    person(&t, seg, "z1").await;
    let id = google_audience(&t, seg, "Google Revoked").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "failed", "{r}");
    let message = r["error_message"].as_str().unwrap();
    assert!(message.contains("renew"), "{message}");
    assert!(!message.contains("1//revoked"), "{message}");
    assert_eq!(fake.refreshes(), 0);
}

#[tokio::test]
async fn a_list_deleted_in_google_ads_is_reported_as_gone() {
    let (fake, t) = setup().await;
    let seg = t.segment("G").await;
    person(&t, seg, "d1").await;
    let id = google_audience(&t, seg, "Google Gone").await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    let list = list_id(&t, &id).await;
    fake.delete_outside(&list);
    person(&t, seg, "d2").await;
    let r = t.sync(&id, "incremental").await;
    assert_eq!(r["status"], "failed", "{r}");
    let message = r["error_message"].as_str().unwrap();
    assert!(message.contains("no longer exists"), "{message}");
    assert!(message.contains(&list), "{message}");
    assert!(message.contains("google"), "{message}");
}

#[tokio::test]
async fn an_unconfigured_google_syncs_the_database_side_and_says_so() {
    let t = app_with(None).await;
    let seg = t.segment("G").await;
    for tag in tags("n", 1..=4) {
        person(&t, seg, &tag).await;
    }
    let id = google_audience(&t, seg, "Google Off").await;
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["synced_count"], 4, "{r}");
    let (_, _, response) = log_of(&t, &r).await;
    assert_eq!(response, json!({"skipped": "google not configured"}));
}

#[tokio::test]
async fn a_manager_account_and_the_configured_consent_are_sent() {
    let fake = FakeGoogle::start().await;
    let mut config = fake.google_config();
    config.login_customer_id = Some("987-654-3210".into());
    config.ad_personalization_consent = Consent::Denied;
    let t = app_with(Some(config)).await;
    let seg = t.segment("G").await;
    person(&t, seg, "m1").await;
    let id = google_audience(&t, seg, "Google Manager").await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    let create = &calls_to(&fake, "/userLists")[0];
    assert_eq!(
        create.login_account.as_deref(),
        Some("accountTypes/GOOGLE_ADS/accounts/9876543210")
    );
    let ingest = &calls_to(&fake, ":ingest")[0];
    assert_eq!(
        ingest.body["destinations"][0]["loginAccount"],
        json!({"accountType": "GOOGLE_ADS", "accountId": "9876543210"})
    );
    assert_eq!(
        ingest.body["consent"],
        json!({"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_DENIED"}),
        "the configured consent, as asserted"
    );
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_uses_the_list_it_made() {
    let (fake, t) = setup().await;
    let seg = t.segment("G").await;
    person(&t, seg, "l1").await;
    let id = google_audience(&t, seg, "Google Lost Answer").await;
    fake.inject("POST", "/userLists", GoogleFault::AppliedThenUnavailable, 1);
    let r = t.sync(&id, "full").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(fake.lists().len(), 1, "no second list");
    let list = list_id(&t, &id).await;
    assert_eq!(fake.lists()[0].id, list);
    let creates: Vec<String> = calls_to(&fake, "/userLists")
        .iter()
        .map(|c| format!("{} {}", c.status, c.reason.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        creates,
        vec![
            "503 SERVICE_UNAVAILABLE",
            "400 DISPLAY_NAME_ALREADY_USED",
            "200 "
        ]
    );
    let (_, _, response) = log_of(&t, &r).await;
    assert_eq!(response["user_list"], "found by its name");
    assert_eq!(fake.members(&list), emails(["l1".to_string()]));
}

/// The fake refuses what Google documents as refused (DESTINATIONS.md §6), so a test passing
/// against it means the client sent what Google takes.
#[tokio::test]
async fn the_fake_refuses_what_google_refuses() {
    let fake = FakeGoogle::start().await;
    let http = reqwest::Client::new();
    let call = |method: &str, path: &str, body: Value, token: Option<&str>| {
        let mut req = http
            .request(method.parse().unwrap(), format!("{}{path}", fake.url()))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap();
            let reason = v["error"]["details"][0]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (status, reason, v)
        }
    };
    let token = Some(crate::support::fake_google::FAKE_ACCESS_TOKEN);
    let lists = format!("/accountTypes/GOOGLE_ADS/accounts/{FAKE_CUSTOMER}/userLists");
    let new_list = json!({"displayName": "L", "membershipDuration": "46656000s",
        "ingestedUserListInfo": {"uploadKeyTypes": ["CONTACT_ID"]}});
    let (s, reason, v) = call("POST", &lists, new_list.clone(), None).await;
    assert_eq!((s, reason.as_str()), (401, "ACCESS_TOKEN_EXPIRED"), "{v}");
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    let (s, _, v) = call("POST", &lists, new_list.clone(), token).await;
    assert_eq!(s, 200, "{v}");
    let list = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        v["sizeInfo"]["displayNetworkMembersCount"], "0",
        "int64 as a string"
    );
    let (s, reason, _) = call("POST", &lists, new_list.clone(), token).await;
    assert_eq!((s, reason.as_str()), (400, "DISPLAY_NAME_ALREADY_USED"));
    let mut odd = new_list.clone();
    odd["displayName"] = json!("M");
    odd["membershipDuration"] = json!("90000s");
    assert_eq!(call("POST", &lists, odd.clone(), token).await.0, 400);
    odd["membershipDuration"] = json!("46742400s");
    assert_eq!(
        call("POST", &lists, odd.clone(), token).await.1,
        "MEMBERSHIP_DURATION_TOO_LONG"
    );
    odd["membershipDuration"] = json!("86400s");
    odd["ingestedUserListInfo"]["uploadKeyTypes"] = json!(["CONTACT_ID", "USER_ID"]);
    assert_eq!(call("POST", &lists, odd, token).await.0, 400);

    let hash = expect::sha("a@example.com");
    let member = |h: &str| json!({"userData": {"userIdentifiers": [{"emailAddress": h}]}});
    let ingest = |members: Vec<Value>| {
        json!({
            "destinations": [{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": FAKE_CUSTOMER},
                              "productDestinationId": list}],
            "audienceMembers": members,
            "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
            "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
            "encoding": "HEX",
        })
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut b = ingest(vec![member(&hash)]);
                b.as_object_mut().unwrap().remove("encoding");
                b
            },
            "REQUIRED_FIELD_MISSING",
        ),
        (
            {
                let mut b = ingest(vec![member(&hash)]);
                b.as_object_mut().unwrap().remove("termsOfService");
                b
            },
            "TERMS_AND_CONDITIONS_NOT_SIGNED",
        ),
        // Fast-fail: one malformed hash fails the whole request.
        (
            ingest(vec![member(&hash), member("not-a-hash")]),
            "INVALID_HEX_ENCODING",
        ),
        (
            ingest(vec![member(&hash), member(&hash[..60])]),
            "INVALID_SHA256_FORMAT",
        ),
        (
            ingest(vec![member(&hash); 10_001]),
            "TOO_MANY_AUDIENCE_MEMBERS",
        ),
        (
            ingest(vec![
                json!({"userData": {"userIdentifiers": vec![json!({"emailAddress": hash}); 11]}}),
            ]),
            "TOO_MANY_USER_IDENTIFIERS",
        ),
        (
            ingest(vec![
                json!({"userData": {"userIdentifiers": [{"address": {"givenName": hash, "familyName": hash, "regionCode": "US"}}]}}),
            ]),
            "REQUIRED_FIELD_MISSING",
        ),
    ];
    for (body, want) in cases {
        let (s, reason, v) = call("POST", "/audienceMembers:ingest", body, token).await;
        assert_eq!((s, reason.as_str()), (400, want), "{v}");
    }
    assert!(
        fake.members(&list).is_empty(),
        "nothing of a refused request was applied"
    );
    let (s, _, v) = call(
        "POST",
        "/audienceMembers:ingest",
        ingest(vec![member(&hash)]),
        token,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["requestId"].is_string());
    assert_eq!(
        fake.members(&list),
        HashSet::from([expect::email("a@example.com")])
    );
    // :remove has no consent and no terms of service: Google refuses unknown fields.
    let (s, _, v) = call(
        "POST",
        "/audienceMembers:remove",
        ingest(vec![member(&hash)]),
        token,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown name"),
        "{v}"
    );
    let mut remove = ingest(vec![member(&hash)]);
    remove.as_object_mut().unwrap().remove("consent");
    remove.as_object_mut().unwrap().remove("termsOfService");
    assert_eq!(
        call("POST", "/audienceMembers:remove", remove.clone(), token)
            .await
            .0,
        200
    );
    assert!(fake.members(&list).is_empty());
    fake.delete_outside(&list);
    assert_eq!(
        call("GET", &format!("{lists}/{list}"), Value::Null, token)
            .await
            .0,
        404
    );
    let (s, reason, _) = call("POST", "/audienceMembers:remove", remove, token).await;
    assert_eq!((s, reason.as_str()), (400, "INVALID_USER_LIST_ID"));
    fake.set_per_minute_quota(0);
    let (s, _, v) = call(
        "POST",
        "/audienceMembers:ingest",
        ingest(vec![member(&hash)]),
        token,
    )
    .await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
}

#[tokio::test]
async fn deleting_the_audience_deletes_its_user_list() {
    let (fake, t) = setup().await;
    let seg = t.segment("G").await;
    person(&t, seg, "del1").await;
    let id = google_audience(&t, seg, "Google Delete").await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    let list = list_id(&t, &id).await;
    let (s, body) = t.delete(&format!("/api/audiences/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert!(fake.list(&list).unwrap().deleted);
    assert_eq!(
        t.get(&format!("/api/audiences/{id}")).await.0,
        StatusCode::NOT_FOUND
    );

    // A list already deleted in Google Ads counts as deleted.
    let id = google_audience(&t, seg, "Google Delete 2").await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    fake.delete_outside(&list_id(&t, &id).await);
    assert_eq!(
        t.delete(&format!("/api/audiences/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
}

/// The client's retries end with the sync's deadline: Google asks to wait 30 s, which would end
/// past the deadline's grace, so the first 429 stands; without a deadline it is retried.
#[tokio::test]
async fn retries_never_outlast_the_sync_deadline() {
    use audience_sync::destinations::deadline;
    use audience_sync::destinations::google::wire::{
        AudienceMember, IngestRequest, ProductAccount, TermsOfService, UserData, UserIdentifier,
        WireDestination,
    };
    use audience_sync::destinations::google::GoogleClient;

    let fake = FakeGoogle::start().await;
    let mut config = fake.google_config();
    config.retry.max_delay = Duration::from_secs(60);
    let client = GoogleClient::new(config).unwrap();
    let list = client
        .create_user_list(FAKE_CUSTOMER, "Deadline", "")
        .await
        .unwrap()
        .id;
    let destinations = [WireDestination {
        operating_account: ProductAccount::google_ads(FAKE_CUSTOMER),
        login_account: None,
        product_destination_id: list,
    }];
    let members = [AudienceMember {
        user_data: UserData {
            user_identifiers: vec![UserIdentifier::EmailAddress(expect::sha("a@example.com"))],
        },
    }];
    let request = IngestRequest {
        destinations: &destinations,
        audience_members: &members,
        consent: client.consent(),
        terms_of_service: TermsOfService {
            customer_match_terms_of_service_status: "ACCEPTED",
        },
        encoding: "HEX",
    };
    fake.set_retry_delay(Some(Duration::from_secs(30)));
    fake.inject("POST", ":ingest", GoogleFault::RateLimited, 1);
    let err = deadline::within(Some(Instant::now()), client.ingest(&request))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), Some(429), "{err}");
    assert_eq!(
        calls_to(&fake, ":ingest").len(),
        1,
        "no retry past the deadline"
    );

    // Without a deadline (and a short wait) the same 429 is retried to success.
    fake.set_retry_delay(Some(Duration::from_secs(0)));
    fake.inject("POST", ":ingest", GoogleFault::RateLimited, 1);
    client.ingest(&request).await.unwrap();
    let statuses: Vec<u16> = calls_to(&fake, ":ingest")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![429, 429, 200]);
}
