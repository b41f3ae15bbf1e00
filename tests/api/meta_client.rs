//! The Meta client against the strict fake Graph API.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use audience_sync::destinations::meta::client::{self, appsecret_proof, MetaClient};
use audience_sync::destinations::meta::error::ErrorKind;
use audience_sync::destinations::meta::wire::{pixel_rule, Session, UsersPayload, MAX_ROWS};

use crate::support::fake_meta::{
    call_counts, hashed_rows, FakeMeta, FakeMetaOptions, Fault, FaultMatch, FAKE_VERSION,
};

/// Distinctive, so a leak anywhere is easy to spot.
const TOKEN: &str = "EAAtestTOKENdoNotLeak0123456789zyxwvuQ";
const APP_SECRET: &str = "app-secret-ShouldNeverAppear-42";
const ACCOUNT: &str = "act_1234567";

async fn setup(attempts: u32) -> (FakeMeta, MetaClient) {
    let fake = FakeMeta::start_with_token(TOKEN).await;
    let client = MetaClient::new(fake.meta_config_with(TOKEN, attempts)).unwrap();
    (fake, client)
}

const SCHEMA: &[&str] = &["EMAIL", "PHONE", "COUNTRY"];

/// Rows for `SCHEMA`: distinct email hashes, some phones unknown (""), country hash.
fn rows(start: u64, n: usize) -> Vec<Vec<String>> {
    (start..start + n as u64)
        .map(|i| {
            vec![
                format!("{i:064x}"),
                if i % 3 == 0 {
                    String::new()
                } else {
                    format!("{:064x}", i + 1_000_000_000)
                },
                "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621".to_string(),
            ]
        })
        .collect()
}

fn set(rows: &[Vec<String>]) -> HashSet<Vec<String>> {
    rows.iter().cloned().collect()
}

fn payload(data: &[Vec<String>]) -> UsersPayload<'_> {
    UsersPayload {
        schema: SCHEMA,
        data,
        values: None,
    }
}

#[tokio::test]
async fn creates_custom_lookalike_and_engagement_audiences() {
    let (fake, client) = setup(1).await;

    let custom = client
        .create_custom_audience(ACCOUNT, "Power users", "From the CRM")
        .await
        .unwrap();
    let lookalike = client
        .create_lookalike("1234567", "Power users LAL 5%", "lal", &custom, "us", 0.05)
        .await
        .unwrap();
    let rule = pixel_rule("998877665544", "Purchase", 30);
    let engagement = client
        .create_engagement(ACCOUNT, "Buyers 30d", "pixel", &rule, 30)
        .await
        .unwrap();

    let ids: Vec<u64> = [&custom, &lookalike, &engagement]
        .iter()
        .map(|id| id.parse().unwrap())
        .collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "ids increase: {ids:?}");

    let audiences = fake.audiences();
    assert_eq!(audiences.len(), 3);
    let c = &audiences[0];
    assert_eq!(
        (c.id.as_str(), c.subtype.as_str()),
        (custom.as_str(), "CUSTOM")
    );
    assert_eq!(c.account_id, "1234567");
    assert_eq!(c.name, "Power users");
    assert_eq!(c.description.as_deref(), Some("From the CRM"));
    assert_eq!(
        c.customer_file_source.as_deref(),
        Some("USER_PROVIDED_ONLY")
    );

    let l = &audiences[1];
    assert_eq!(l.subtype, "LOOKALIKE");
    assert_eq!(l.origin_audience_id.as_deref(), Some(custom.as_str()));
    let spec = l.lookalike_spec.as_ref().unwrap();
    assert_eq!(spec["country"], "US");
    assert_eq!(spec["ratio"].as_f64(), Some(0.05));

    let e = &audiences[2];
    assert_eq!(e.subtype, "WEBSITE");
    assert_eq!(e.retention_days, Some(30));
    let r = &e.rule.as_ref().unwrap()["inclusions"]["rules"][0];
    assert_eq!(r["event_sources"][0]["id"], "998877665544");
    assert_eq!(r["retention_seconds"], 30 * 86_400);
    assert_eq!(r["filter"]["filters"][0]["value"], "Purchase");

    // A lookalike of an audience that does not exist is refused by Meta, not retried.
    let err = client
        .create_lookalike(ACCOUNT, "x", "", "999", "US", 0.01)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(2654));
    assert_ne!(err.kind(), ErrorKind::Transient);
    // Out-of-range ratio: refused client-side.
    let before = fake.calls().len();
    let err = client
        .create_lookalike(ACCOUNT, "x", "", &custom, "US", 0.5)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert_eq!(fake.calls().len(), before);
}

#[tokio::test]
async fn add_then_remove_leaves_exact_membership() {
    let (fake, client) = setup(1).await;
    let id = client
        .create_custom_audience(ACCOUNT, "a", "")
        .await
        .unwrap();
    let batch = rows(0, 500);
    let resp = client.add_users(&id, &payload(&batch), None).await.unwrap();
    assert_eq!(resp.audience_id, id);
    assert_eq!(resp.num_received, 500);
    assert_eq!(resp.num_invalid_entries, 0);
    assert_eq!(fake.members(&id), set(&batch));

    let leavers = &batch[100..250];
    let session = Session {
        session_id: 42,
        batch_seq: 1,
        last_batch_flag: true,
        estimated_num_total: Some(150),
    };
    let resp = client
        .remove_users(&id, &payload(leavers), Some(session))
        .await
        .unwrap();
    assert_eq!(resp.num_received, 150);
    assert_eq!(resp.session_id, "42");
    let mut expected = set(&batch[..100]);
    expected.extend(batch[250..].iter().cloned());
    assert_eq!(fake.members(&id), expected);

    let calls = fake.calls();
    let delete = calls.iter().find(|c| c.method == "DELETE").unwrap();
    assert_eq!(delete.path, format!("/{FAKE_VERSION}/{id}/users"));
    assert_eq!(delete.rows, 150);
    assert_eq!(delete.session.unwrap().session_id, 42);
    assert!(delete.bearer && !delete.token_in_query);

    let info = client.get_audience(&id).await.unwrap();
    assert_eq!(info.id.as_deref(), Some(id.as_str()));
    let (lo, hi) = (
        info.approximate_count_lower_bound.unwrap(),
        info.approximate_count_upper_bound.unwrap(),
    );
    assert!(lo <= 350 && 350 <= hi, "{lo}..{hi}");
    assert_eq!(info.operation_status.unwrap().code, Some(200));
    assert_eq!(info.delivery_status.unwrap().code, Some(200));
}

#[tokio::test]
async fn replace_in_three_batches_leaves_exactly_those_rows() {
    let (fake, client) = setup(1).await;
    let id = client
        .create_custom_audience(ACCOUNT, "full", "")
        .await
        .unwrap();
    // Members that must disappear.
    let old = rows(900_000, 700);
    client.add_users(&id, &payload(&old), None).await.unwrap();

    let all = rows(0, 25_000);
    let batches = [&all[..10_000], &all[10_000..20_000], &all[20_000..]];
    let session_id = 7_000_000_001u64;
    for (i, batch) in batches.iter().enumerate() {
        let last = i == batches.len() - 1;
        let resp = client
            .replace_users(
                &id,
                &payload(batch),
                Session {
                    session_id,
                    batch_seq: i as u32 + 1,
                    last_batch_flag: last,
                    estimated_num_total: Some(25_000),
                },
            )
            .await
            .unwrap();
        assert_eq!(resp.num_received, batch.len() as u64);
        assert_eq!(resp.session_id, session_id.to_string());
        if !last {
            assert!(fake.replace_in_progress(&id));
            let info = client.get_audience(&id).await.unwrap();
            assert!(
                info.replace_in_progress(),
                "operation_status 414 during replace"
            );
            // Old members are still there until the last batch.
            assert_eq!(fake.member_count(&id), 700);
        }
    }
    assert!(!fake.replace_in_progress(&id));
    let members = fake.members(&id);
    assert_eq!(members.len(), 25_000);
    assert_eq!(members, set(&all));

    let replace_calls: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/usersreplace"))
        .collect();
    assert_eq!(replace_calls.len(), 3);
    let seqs: Vec<_> = replace_calls
        .iter()
        .map(|c| {
            let s = c.session.unwrap();
            (c.rows, s.batch_seq, s.last_batch_flag)
        })
        .collect();
    assert_eq!(
        seqs,
        vec![(10_000, 1, false), (10_000, 2, false), (5_000, 3, true)]
    );
    assert_eq!(
        client.get_audience(&id).await.unwrap().operation_code(),
        Some(200)
    );

    // The session is closed: reusing it is refused.
    let err = client
        .replace_users(
            &id,
            &payload(&all[..10]),
            Session {
                session_id,
                batch_seq: 1,
                last_batch_flag: true,
                estimated_num_total: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.subcode()), (Some(2650), Some(1870159)));
}

#[tokio::test]
async fn replace_session_rules() {
    let (fake, client) = setup(1).await;
    let id = client
        .create_custom_audience(ACCOUNT, "r", "")
        .await
        .unwrap();
    let data = rows(0, 10);
    let s = |session_id, batch_seq, last| Session {
        session_id,
        batch_seq,
        last_batch_flag: last,
        estimated_num_total: None,
    };
    // A new session must start at batch 1.
    let err = client
        .replace_users(&id, &payload(&data), s(11, 2, false))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReplaceBatchMissing);

    client
        .replace_users(&id, &payload(&data), s(12, 1, false))
        .await
        .unwrap();
    // A second replace on the same audience while one runs: in progress (transient).
    let err = client
        .replace_users(&id, &payload(&data), s(13, 1, false))
        .await
        .unwrap_err();
    assert_eq!(err.subcode(), Some(1870145));
    assert_eq!(err.kind(), ErrorKind::Transient);
    // The schema must not change within a session.
    let other = [vec![format!("{:064x}", 5)]];
    let err = client
        .replace_users(
            &id,
            &UsersPayload {
                schema: &["EMAIL"],
                data: &other,
                values: None,
            },
            s(12, 2, false),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);

    // After the 90-minute window (shortened here) the session is timed out.
    fake.set_replace_timeout(Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let err = client
        .replace_users(&id, &payload(&data), s(12, 2, true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReplaceSessionTimedOut);
    assert!(err.user_message().contains("incremental sync"));
}

#[tokio::test]
async fn more_than_max_rows_is_refused_without_a_call() {
    let (fake, client) = setup(3).await;
    let id = fake.seed_audience(ACCOUNT, "big");
    let data = rows(0, MAX_ROWS + 1);
    let session = Session {
        session_id: 1,
        batch_seq: 1,
        last_batch_flag: true,
        estimated_num_total: None,
    };
    for err in [
        client
            .add_users(&id, &payload(&data), None)
            .await
            .unwrap_err(),
        client
            .remove_users(&id, &payload(&data), None)
            .await
            .unwrap_err(),
        client
            .replace_users(&id, &payload(&data), session)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.to_string().contains("10000"), "{err}");
    }
    assert!(fake.calls().is_empty(), "nothing may reach Meta");
    // Exactly 10,000 is fine.
    let resp = client
        .add_users(&id, &payload(&data[..MAX_ROWS]), None)
        .await
        .unwrap();
    assert_eq!(resp.num_received, 10_000);
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn transient_faults_are_retried_until_success() {
    let cases = [
        (
            "80003",
            Fault::meta_error(
                FaultMatch::route("POST", "/users"),
                2,
                400,
                80003,
                Some(2446079),
            ),
        ),
        (
            "17",
            Fault::meta_error(
                FaultMatch::route("POST", "/users"),
                2,
                400,
                17,
                Some(2446079),
            ),
        ),
        (
            "html500",
            Fault::html500(FaultMatch::route("POST", "/users"), 2),
        ),
        (
            "1 unknown",
            Fault::meta_error(FaultMatch::Any, 2, 500, 1, None),
        ),
    ];
    for (name, fault) in cases {
        let (fake, client) = setup(4).await;
        let id = fake.seed_audience(ACCOUNT, name);
        fake.inject(fault);
        let data = rows(0, 20);
        let resp = client.add_users(&id, &payload(&data), None).await;
        let resp = resp.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(resp.num_received, 20, "{name}");
        let calls = fake.calls();
        assert_eq!(calls.len(), 3, "{name}: two failures then a success");
        assert!(
            calls[0].status >= 400 && calls[1].status == calls[0].status,
            "{name}"
        );
        assert_eq!(calls[2].status, 200, "{name}");
        assert_eq!(fake.members(&id), set(&data), "{name}");
    }
}

#[tokio::test]
async fn transient_errors_give_up_after_max_attempts() {
    let (fake, client) = setup(3).await;
    let id = fake.seed_audience(ACCOUNT, "x");
    fake.inject(Fault::meta_error(FaultMatch::Any, 10, 400, 80003, None));
    let err = client
        .add_users(&id, &payload(&rows(0, 1)), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(err.code(), Some(80003));
    assert_eq!(fake.calls().len(), 3);
    assert!(
        err.user_message().contains("rate-limiting"),
        "{}",
        err.user_message()
    );
    assert!(err.user_message().contains("fbtrace_id: FakeTrace"));
}

#[tokio::test]
async fn throttling_honours_estimated_time_to_regain_access() {
    let fake = FakeMeta::start_with_token(TOKEN).await;
    let mut cfg = fake.meta_config_with(TOKEN, 2);
    // Jitter alone would stay under 1 ms; the header asks for minutes, capped at max_delay.
    cfg.retry.base_delay = Duration::from_millis(1);
    cfg.retry.max_delay = Duration::from_millis(300);
    let client = MetaClient::new(cfg).unwrap();
    let id = fake.seed_audience(ACCOUNT, "x");
    fake.inject(
        Fault::meta_error(
            FaultMatch::route("POST", "/users"),
            1,
            400,
            80003,
            Some(2446079),
        )
        .with_regain_access_minutes(2),
    );
    let started = Instant::now();
    client
        .add_users(&id, &payload(&rows(0, 5)), None)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "waited {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "capped: {elapsed:?}");
    assert_eq!(fake.calls().len(), 2);

    // The hint is exposed on the error itself.
    let client = MetaClient::new(fake.meta_config_with(TOKEN, 1)).unwrap();
    fake.inject(
        Fault::meta_error(FaultMatch::Any, 1, 400, 80003, None).with_regain_access_minutes(7),
    );
    let err = client.get_audience(&id).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7 * 60)));
}

#[tokio::test]
async fn invalid_token_fails_at_once_without_leaking_it() {
    // The token Meta does not accept: the fake expects another one.
    let fake = FakeMeta::start_with_token("the-only-valid-token").await;
    let client = MetaClient::new(fake.meta_config_with(TOKEN, 5)).unwrap();
    let err = client
        .create_custom_audience(ACCOUNT, "x", "")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenInvalid);
    assert_eq!(err.code(), Some(190));
    assert_eq!(fake.calls().len(), 1, "190 is not retried");

    // Meta echoing the token in its message: scrubbed everywhere.
    let (fake, client) = setup(5).await;
    let id = fake.seed_audience(ACCOUNT, "x");
    fake.inject(
        Fault::meta_error(FaultMatch::Any, 1, 400, 190, Some(463)).with_message(&format!(
            "Error validating access token {TOKEN}: Session has expired"
        )),
    );
    let data = rows(0, 3);
    let err = client
        .add_users(&id, &payload(&data), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenInvalid);
    assert_eq!(fake.calls().len(), 1);
    let msg = err.user_message();
    assert!(msg.contains("META_ACCESS_TOKEN"), "{msg}");
    assert!(msg.contains("system-user token"), "{msg}");
    assert!(msg.contains("expired"), "{msg}");
    assert!(msg.contains("fbtrace_id"), "{msg}");
    for text in [
        err.to_string(),
        format!("{err:?}"),
        msg,
        format!("{client:?}"),
    ] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
        assert!(!text.contains("EAAtestTOKEN"), "token leaked: {text}");
        for row in &data {
            for v in row.iter().filter(|v| !v.is_empty()) {
                assert!(!text.contains(v.as_str()), "payload leaked: {text}");
            }
        }
    }
}

#[tokio::test]
async fn removal_too_small_is_reported_and_not_retried() {
    let (fake, client) = setup(5).await;
    let id = fake.seed_audience(ACCOUNT, "x");
    let data = rows(0, 10);
    fake.seed_members(&id, data.clone());
    fake.inject(Fault::meta_error(
        FaultMatch::route("DELETE", "/users"),
        1,
        400,
        200,
        Some(1870047),
    ));
    let err = client
        .remove_users(&id, &payload(&data[..5]), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RemovalTooSmall);
    assert!(err.user_message().contains("too small"));
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(fake.member_count(&id), 10, "nothing removed");
}

#[tokio::test]
async fn delete_is_blocked_by_lookalikes() {
    let (fake, client) = setup(5).await;
    let seed = client
        .create_custom_audience(ACCOUNT, "seed", "")
        .await
        .unwrap();
    let lal = client
        .create_lookalike(ACCOUNT, "lal", "", &seed, "FR", 0.03)
        .await
        .unwrap();
    let before = fake.calls().len();
    let err = client.delete_audience(&seed).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeleteBlockedByLookalikes);
    assert_eq!(err.code(), Some(2656));
    assert!(err.user_message().contains("lookalike"));
    assert_eq!(fake.calls().len(), before + 1, "not retried");
    assert_eq!(fake.audiences().len(), 2);

    client.delete_audience(&lal).await.unwrap();
    client.delete_audience(&seed).await.unwrap();
    assert!(fake.audiences().is_empty());
    // Gone: reading it is an invalid request (100/33), not a transient error.
    let err = client.get_audience(&seed).await.unwrap_err();
    assert_eq!((err.code(), err.subcode()), (Some(100), Some(33)));
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
}

#[tokio::test]
async fn replace_in_progress_blocks_users_calls() {
    let (fake, client) = setup(3).await;
    let id = client
        .create_custom_audience(ACCOUNT, "x", "")
        .await
        .unwrap();
    let first = rows(0, 10);
    let session = Session {
        session_id: 99,
        batch_seq: 1,
        last_batch_flag: false,
        estimated_num_total: Some(20),
    };
    client
        .replace_users(&id, &payload(&first), session)
        .await
        .unwrap();
    fake.clear_calls();
    let extra = rows(1000, 5);
    let err = client
        .add_users(&id, &payload(&extra), None)
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.subcode()), (Some(2650), Some(1870145)));
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(fake.calls().len(), 3, "retried up to max_attempts");
    assert!(err.user_message().contains("replace"));

    // Finish the replace; then adds go through.
    let second = rows(10, 10);
    client
        .replace_users(
            &id,
            &payload(&second),
            Session {
                batch_seq: 2,
                last_batch_flag: true,
                ..session
            },
        )
        .await
        .unwrap();
    client.add_users(&id, &payload(&extra), None).await.unwrap();
    let mut expected = set(&first);
    expected.extend(second);
    expected.extend(extra);
    assert_eq!(fake.members(&id), expected);
}

#[tokio::test]
async fn slow_answer_is_a_transient_timeout() {
    let fake = FakeMeta::start_with_token(TOKEN).await;
    let mut cfg = fake.meta_config_with(TOKEN, 1);
    cfg.timeout = Duration::from_millis(200);
    let client = MetaClient::new(cfg.clone()).unwrap();
    let id = fake.seed_audience(ACCOUNT, "x");
    fake.inject(Fault::delay(FaultMatch::Any, 1, Duration::from_secs(3)));
    let started = Instant::now();
    let err = client.get_audience(&id).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeout honoured"
    );
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(!err.to_string().contains(TOKEN));

    // With retries, the second attempt succeeds.
    cfg.retry.max_attempts = 2;
    let client = MetaClient::new(cfg).unwrap();
    fake.clear_calls();
    fake.inject(Fault::delay(FaultMatch::Any, 1, Duration::from_secs(3)));
    let info = client.get_audience(&id).await.unwrap();
    assert_eq!(info.id.as_deref(), Some(id.as_str()));
    assert_eq!(fake.calls().len(), 2);
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let fake = FakeMeta::start_with_token(TOKEN).await;
    let cfg = fake.meta_config_with(TOKEN, 2);
    drop(fake);
    // Give the aborted server a moment to release the port.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let client = MetaClient::new(cfg).unwrap();
    let err = client.get_audience("123").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(!err.to_string().contains(TOKEN));
    assert!(err.user_message().contains("graph.facebook.com"));
}

#[tokio::test]
async fn appsecret_proof_is_sent_and_correct() {
    let fake = FakeMeta::start_with(FakeMetaOptions {
        token: TOKEN.to_string(),
        app_secret: Some(APP_SECRET.to_string()),
        ..FakeMetaOptions::default()
    })
    .await;
    // Without the proof the fake (like Meta with "require app secret") refuses.
    let no_proof = MetaClient::new(fake.meta_config_with(TOKEN, 1)).unwrap();
    let err = no_proof
        .create_custom_audience(ACCOUNT, "x", "")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.to_string().contains("appsecret_proof"));

    let mut cfg = fake.meta_config_with(TOKEN, 1);
    cfg.app_secret = Some(APP_SECRET.into());
    let client = MetaClient::new(cfg).unwrap();
    let id = client
        .create_custom_audience(ACCOUNT, "x", "")
        .await
        .unwrap();
    client
        .add_users(&id, &payload(&rows(0, 3)), None)
        .await
        .unwrap();
    client
        .remove_users(&id, &payload(&rows(0, 1)), None)
        .await
        .unwrap();
    client.get_audience(&id).await.unwrap();
    client.delete_audience(&id).await.unwrap();

    let expected = appsecret_proof(TOKEN, APP_SECRET);
    assert_eq!(expected.len(), 64);
    let calls = fake.calls();
    assert_eq!(calls.len(), 6);
    for c in &calls[1..] {
        assert_eq!(c.status, 200, "{} {}", c.method, c.path);
        assert_eq!(c.appsecret_proof.as_deref(), Some(expected.as_str()));
    }
    for text in [
        format!("{client:?}"),
        format!("{err:?}"),
        err.user_message(),
    ] {
        assert!(
            !text.contains(APP_SECRET) && !text.contains(TOKEN),
            "{text}"
        );
    }

    // A wrong secret gives a wrong proof, which the fake rejects.
    let mut cfg = fake.meta_config_with(TOKEN, 1);
    cfg.app_secret = Some("not-the-secret".into());
    let err = MetaClient::new(cfg)
        .unwrap()
        .get_audience("1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Invalid appsecret_proof"), "{err}");
}

#[tokio::test]
async fn payload_and_token_never_travel_in_the_query_string() {
    let (fake, client) = setup(1).await;
    let id = client
        .create_custom_audience(ACCOUNT, "x", "")
        .await
        .unwrap();
    let data = rows(0, 300);
    let session = Session {
        session_id: 5,
        batch_seq: 1,
        last_batch_flag: true,
        estimated_num_total: None,
    };
    client.add_users(&id, &payload(&data), None).await.unwrap();
    client
        .remove_users(&id, &payload(&data[..200]), Some(session))
        .await
        .unwrap();
    client
        .replace_users(
            &id,
            &payload(&data),
            Session {
                session_id: 6,
                ..session
            },
        )
        .await
        .unwrap();
    client.get_audience(&id).await.unwrap();
    let calls = fake.calls();
    assert_eq!(calls.len(), 5);
    for c in &calls {
        assert!(c.bearer, "Bearer header on {} {}", c.method, c.path);
        assert!(!c.token_in_query);
        for needle in [
            "payload",
            "schema",
            "data",
            "session",
            "access_token",
            TOKEN,
            &data[0][0],
        ] {
            assert!(
                !c.query.contains(needle),
                "{needle} in query of {} {}",
                c.method,
                c.path
            );
        }
    }
    let users_calls: Vec<_> = calls.iter().filter(|c| c.path.contains("users")).collect();
    assert_eq!(
        users_calls.iter().map(|c| c.rows).collect::<Vec<_>>(),
        vec![300, 200, 300],
        "payload read from the body"
    );
    let counts = call_counts(&calls);
    assert_eq!(counts.get(&format!("DELETE /{id}/users")), Some(&1));
}

#[tokio::test]
async fn fake_is_strict_about_payloads() {
    let (fake, _client) = setup(1).await;
    let id = fake.seed_audience(ACCOUNT, "strict");
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        http.post(format!("{}/{id}/users", fake.url()))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let code_of = |v: &serde_json::Value| v["error"]["code"].as_i64();

    let hash = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79".to_string();
    let cases = vec![
        (
            "unhashed email",
            serde_json::json!({"payload": {"schema": ["EMAIL"], "data": [["ann@example.com"]]}}),
        ),
        (
            "uppercase hex",
            serde_json::json!({"payload": {"schema": ["EMAIL"], "data": [[hash.to_uppercase()]]}}),
        ),
        (
            "unknown key",
            serde_json::json!({"payload": {"schema": ["EMAIL", "SHOE_SIZE"], "data": [[hash, ""]]}}),
        ),
        (
            "short row",
            serde_json::json!({"payload": {"schema": ["EMAIL", "PHONE"], "data": [[hash]]}}),
        ),
        (
            "no payload",
            serde_json::json!({"session": {"session_id": 1, "batch_seq": 1}}),
        ),
        (
            "too many rows",
            serde_json::json!({"payload": {"schema": ["EMAIL"], "data": hashed_rows(0, 10_001)}}),
        ),
    ];
    for (name, body) in cases {
        let resp = post(body).await.unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{name}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(code_of(&v), Some(100), "{name}: {v}");
        assert!(v["error"]["fbtrace_id"].is_string());
    }
    assert!(fake.members(&id).is_empty());

    // EXTERN_ID is not hashed; "" means unknown.
    let ok = serde_json::json!({"payload": {"schema": ["EXTERN_ID", "EMAIL"], "data": [["crm-42", ""], ["", hash]]}});
    assert_eq!(post(ok).await.unwrap().status().as_u16(), 200);
    assert_eq!(fake.member_count(&id), 2);

    // The payload in the query string is refused.
    let resp = http
        .delete(format!("{}/{id}/users", fake.url()))
        .bearer_auth(TOKEN)
        .query(&[("payload", r#"{"schema":["EMAIL"],"data":[["x"]]}"#)])
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(code_of(&v), Some(100), "{v}");
    assert_eq!(fake.member_count(&id), 2);

    // No token: 190.
    let resp = http
        .get(format!("{}/{id}", fake.url()))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(code_of(&v), Some(190));
}

#[tokio::test]
async fn invalid_entries_are_reported_and_not_added() {
    let (fake, client) = setup(1).await;
    let id = fake.seed_audience(ACCOUNT, "x");
    let data = rows(0, 50);
    let bad: Vec<String> = vec![data[3][0].clone(), data[7][0].clone()];
    fake.set_invalid_hashes(bad.clone());
    let mut with_empty = data.clone();
    with_empty.push(vec![String::new(), String::new(), String::new()]);
    let resp = client
        .add_users(&id, &payload(&with_empty), None)
        .await
        .unwrap();
    assert_eq!(resp.num_received, 51);
    assert_eq!(resp.num_invalid_entries, 3);
    let samples = resp.invalid_entry_samples.as_object().unwrap();
    assert!(samples.contains_key(&bad[0]) && samples.contains_key(&bad[1]));
    assert_eq!(fake.member_count(&id), 48);
    assert!(!fake.members(&id).contains(&data[3]));
}

#[tokio::test]
async fn flagged_audience_and_deprecated_version() {
    let (fake, client) = setup(3).await;
    let id = fake.seed_audience(ACCOUNT, "health conditions");
    fake.set_flagged(&id, true);
    let info = client.get_audience(&id).await.unwrap();
    assert!(info.is_flagged());
    let flagged = info.ensure_not_flagged(&id).unwrap_err();
    assert_eq!(flagged.kind(), ErrorKind::AudienceFlagged);
    fake.clear_calls();
    let err = client
        .add_users(&id, &payload(&rows(0, 2)), None)
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.subcode()), (Some(100), Some(1713230)));
    assert_eq!(err.kind(), ErrorKind::AudienceFlagged);
    assert!(err.user_message().contains("Audience Manager"));
    assert_eq!(fake.calls().len(), 1);

    let mut cfg = fake.meta_config_with(TOKEN, 3);
    cfg.graph_url = fake.url_with_version("v19.0");
    let old = MetaClient::new(cfg).unwrap();
    let err = old
        .create_custom_audience(ACCOUNT, "x", "")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::VersionDeprecated);
    assert!(err.user_message().contains("META_GRAPH_URL"));
}

#[tokio::test]
async fn non_transient_errors_are_not_retried() {
    let (fake, client) = setup(6).await;
    let id = fake.seed_audience(ACCOUNT, "x");
    for (code, subcode, kind) in [
        (100, None, ErrorKind::InvalidRequest),
        (10, None, ErrorKind::Permission),
        (200, Some(1870034), ErrorKind::TermsNotAccepted),
        (2635, None, ErrorKind::VersionDeprecated),
    ] {
        fake.clear_calls();
        fake.inject(Fault::meta_error(FaultMatch::Any, 1, 400, code, subcode));
        let err = client
            .add_users(&id, &payload(&rows(0, 1)), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "code {code}");
        assert_eq!(fake.calls().len(), 1, "code {code} not retried");
        assert!(
            err.user_message().ends_with(')'),
            "ends with the fbtrace_id"
        );
    }
}

#[tokio::test]
async fn a_create_answered_too_late_is_found_by_name_not_made_twice() {
    let fake = FakeMeta::start_with_token(TOKEN).await;
    let mut cfg = fake.meta_config_with(TOKEN, 3);
    cfg.timeout = Duration::from_millis(300);
    let client = MetaClient::new(cfg).unwrap();
    let _other_account = fake.seed_audience("act_999", "Power users");
    // Meta makes the audience, but its answer comes after the client gave up waiting.
    fake.inject(Fault::answer_late(
        FaultMatch::route("POST", "/customaudiences"),
        1,
        Duration::from_secs(2),
    ));
    let id = client
        .create_custom_audience(ACCOUNT, "Power users", "From the CRM")
        .await
        .unwrap();
    let made: Vec<_> = fake
        .audiences()
        .into_iter()
        .filter(|a| a.account_id == ACCOUNT[4..] && a.name == "Power users")
        .collect();
    assert_eq!(made.len(), 1, "one audience, not two");
    assert_eq!(made[0].id, id, "the one the unanswered create made");
    let counts = call_counts(&fake.calls());
    assert_eq!(
        counts.get("POST /act_1234567/customaudiences"),
        Some(&1),
        "{counts:?}"
    );
    assert_eq!(
        counts.get("GET /act_1234567/customaudiences"),
        Some(&1),
        "{counts:?}"
    );
}

#[tokio::test]
async fn a_create_refused_outright_is_simply_retried() {
    let (fake, client) = setup(3).await;
    // A rate limit means nothing was made: no lookup, another create.
    fake.inject(Fault::meta_error(
        FaultMatch::route("POST", "/customaudiences"),
        1,
        400,
        80003,
        None,
    ));
    let id = client
        .create_custom_audience(ACCOUNT, "Refused once", "")
        .await
        .unwrap();
    assert_eq!(fake.audience(&id).unwrap().name, "Refused once");
    let counts = call_counts(&fake.calls());
    assert_eq!(
        counts.get("POST /act_1234567/customaudiences"),
        Some(&2),
        "{counts:?}"
    );
    assert_eq!(
        counts.get("GET /act_1234567/customaudiences"),
        None,
        "{counts:?}"
    );
}

#[tokio::test]
async fn retries_stop_at_the_syncs_deadline_however_many_attempts_are_left() {
    let fake = FakeMeta::start_with_token(TOKEN).await;
    let mut cfg = fake.meta_config_with(TOKEN, 1_000);
    cfg.retry.base_delay = Duration::from_millis(300);
    cfg.retry.max_delay = Duration::from_millis(300);
    let client = MetaClient::new(cfg).unwrap();
    let id = fake.seed_audience(ACCOUNT, "x");
    fake.inject(Fault::html500(FaultMatch::Any, 1_000));
    // Calls may run DEADLINE_GRACE past a sync's deadline: this one leaves them about 2 s.
    let deadline = Instant::now() + Duration::from_secs(2)
        - audience_sync::destinations::deadline::DEADLINE_GRACE;
    let err =
        audience_sync::destinations::deadline::within(Some(deadline), client.get_audience(&id))
            .await
            .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    let attempts = fake.calls().len();
    assert!(
        (2..=12).contains(&attempts),
        "a few attempts in ~2 s at ≤300 ms apart, not a thousand: {attempts}"
    );
}

#[tokio::test]
async fn an_oversized_answer_is_refused_unread() {
    let (fake, client) = setup(1).await;
    let id = fake.seed_audience(ACCOUNT, "x");
    let huge = "x".repeat(client::MAX_ANSWER_BYTES + 1);
    fake.inject(Fault::meta_error(FaultMatch::Any, 1, 400, 100, None).with_message(&huge));
    let err = client.get_audience(&id).await.unwrap_err();
    assert!(
        err.to_string().contains("larger than"),
        "{}",
        &err.to_string()[..200.min(err.to_string().len())]
    );
}
