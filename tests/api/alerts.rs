//! Alerts (DESIGN §8.4): a failed sync, a size drop past `ALERT_SIZE_DROP_PERCENT` and health
//! turning bad each reach the webhook once, PII-free, retried after a failed delivery. (The SNS
//! topic: tests/alerts_sns.rs, with moto's server.)

use std::time::{Duration, Instant};

use audience_sync::alerts;
use audience_sync::config::AlertSettings;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::fake_meta::{FakeMeta, DEFAULT_FAKE_TOKEN};
use crate::support::webhook::Receiver;
use crate::support::{spawn_app_configured, TestApp};

fn webhook_settings(receiver: &Receiver) -> AlertSettings {
    AlertSettings {
        webhook_url: Some(receiver.url()),
        ..AlertSettings::default()
    }
}

/// An app whose alerts go to `settings`, Meta at `meta` (with `token`, one attempt a call).
async fn app(meta: &FakeMeta, token: &str, settings: AlertSettings) -> TestApp {
    let config = meta.meta_config_with(token, 1);
    spawn_app_configured(|c| {
        c.db_pool_size = 8;
        c.meta = Some(config);
        c.alerts = settings;
    })
    .await
}

/// Three people whose data must never reach an alert.
const PEOPLE: [(&str, &str, &str); 3] = [
    ("alice.private@example.com", "+16505550101", "Alicia"),
    ("bob.private@example.com", "+16505550102", "Roberto"),
    ("carol.private@example.com", "+16505550103", "Carolina"),
];

async fn audience_of_people(t: &TestApp) -> String {
    let seg = t.segment("Private people").await;
    for (email, phone, name) in PEOPLE {
        let id = t.person(seg, Some(email), Some(phone)).await;
        t.db.execute(
            "UPDATE person SET first_name = $2 WHERE id = $1",
            &[&id, &name],
        )
        .await
        .unwrap();
    }
    let a = t
        .create_audience(
            json!({"name": "Weekly buyers", "segment_id": seg, "max_removal_percent": null}),
        )
        .await;
    a["id"].as_str().unwrap().to_string()
}

fn assert_no_pii(body: &str) {
    for (email, phone, name) in PEOPLE {
        for secret in [email, phone, &phone[2..], name, "secretpart"] {
            assert!(!body.contains(secret), "{secret} in an alert: {body}");
        }
    }
}

async fn outbox(t: &TestApp) -> Vec<(String, i32, bool)> {
    t.db.query(
        "SELECT kind, attempts, delivered_at IS NOT NULL FROM alert_outbox ORDER BY id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test]
async fn a_failed_sync_reaches_the_webhook_once_after_a_failed_delivery_without_pii() {
    let meta = FakeMeta::start().await;
    let receiver = Receiver::start(1).await;
    let t = app(&meta, "EAAB-revoked-token", webhook_settings(&receiver)).await;
    let id = audience_of_people(&t).await;
    let result = t.sync(&id, "full").await;
    assert_eq!(result["status"], "failed", "{result}");

    // Delivered in the background after the sync's answer: the first try is refused.
    let seen = receiver.wait_for(1).await;
    assert_eq!(seen[0].0, 500);
    let until = Instant::now() + Duration::from_secs(20);
    while outbox(&t).await != vec![("sync_failed".to_string(), 1, false)] {
        assert!(Instant::now() < until, "{:?}", outbox(&t).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Not due yet: its retry waits (30 s, doubling).
    let nothing = alerts::deliver_due(&t.app).await.unwrap();
    assert_eq!(nothing, alerts::Delivery::default());
    // Time passes (the retry is due), a pass delivers it.
    t.db.execute("UPDATE alert_outbox SET next_attempt_at = now()", &[])
        .await
        .unwrap();
    let done = alerts::deliver_due(&t.app).await.unwrap();
    assert_eq!(
        done,
        alerts::Delivery {
            delivered: 1,
            failed: 0
        }
    );
    assert_eq!(outbox(&t).await, vec![("sync_failed".to_string(), 2, true)]);
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].0, 200);
    let message: Value = serde_json::from_str(&seen[1].1).unwrap();
    assert_eq!(message["event"], "sync_failed");
    assert_eq!(message["audience_id"], id.as_str());
    assert_eq!(message["sync_log_id"], result["sync_log_id"]);
    assert_eq!(message["audience_name"], "Weekly buyers");
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains("Weekly buyers") && text.contains("access token"),
        "{text}"
    );
    for (_, body) in &seen {
        assert_no_pii(body);
        assert!(!body.contains("EAAB-revoked-token"), "{body}");
    }

    // Once: the same sync's hook again, and later passes, add and send nothing.
    let log_id = Uuid::parse_str(result["sync_log_id"].as_str().unwrap()).unwrap();
    alerts::after_sync(&t.app, &t.db, log_id).await;
    t.db.execute(
        "UPDATE alert_outbox SET next_attempt_at = now() WHERE delivered_at IS NULL",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        alerts::deliver_due(&t.app).await.unwrap(),
        alerts::Delivery::default()
    );
    assert_eq!(outbox(&t).await.len(), 1);
    assert_eq!(receiver.seen().len(), 2);
}

#[tokio::test]
async fn a_size_drop_past_the_threshold_and_health_turning_bad_are_alerts() {
    let meta = FakeMeta::start().await;
    let receiver = Receiver::start(0).await;
    let t = app(&meta, meta.token(), webhook_settings(&receiver)).await;
    let seg = t.segment("Buyers").await;
    let people = t.people_in_segment(seg, "buyer", 50).await;
    let a = t
        .create_audience(json!({"name": "Buyers", "segment_id": seg, "max_removal_percent": null}))
        .await;
    let id = a["id"].as_str().unwrap();
    assert_eq!(t.sync(id, "full").await["status"], "completed");
    // 10 of 50 leave: 20 % less, not more than the threshold (20).
    t.db.execute(
        "DELETE FROM segment_member WHERE person_id = ANY($1)",
        &[&people[..10].to_vec()],
    )
    .await
    .unwrap();
    assert_eq!(t.sync(id, "incremental").await["status"], "completed");
    assert!(outbox(&t).await.is_empty(), "{:?}", outbox(&t).await);
    // 25 of the 40 left go: 62.5 % less.
    t.db.execute(
        "DELETE FROM segment_member WHERE person_id = ANY($1)",
        &[&people[10..35].to_vec()],
    )
    .await
    .unwrap();
    assert_eq!(t.sync(id, "incremental").await["status"], "completed");
    let seen = receiver.wait_for(1).await;
    let message: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(message["event"], "size_drop", "{message}");
    assert_eq!(
        (message["size_before"].as_f64(), message["size"].as_f64()),
        (Some(40.0), Some(15.0))
    );
    assert_eq!(message["drop_percent"], 62.5);
    assert_eq!(message["threshold_percent"], 20);

    // Health: ok at the first pass, bad at the next (terms withdrawn): one alert, not one a pass.
    alerts::scheduler_pass(&t.app).await;
    assert_eq!(outbox(&t).await.len(), 1);
    meta.set_tos_accepted(false);
    // The next check (the cached report forgotten, as after its 30 s) sees the terms withdrawn.
    t.app.health.forget().await;
    alerts::scheduler_pass(&t.app).await;
    alerts::scheduler_pass(&t.app).await;
    let kinds: Vec<String> = outbox(&t).await.into_iter().map(|(k, _, _)| k).collect();
    assert_eq!(kinds, ["size_drop", "health_degraded"]);
    let seen = receiver.wait_for(2).await;
    let health: Value = serde_json::from_str(&seen[1].1).unwrap();
    assert_eq!(health["event"], "health_degraded");
    assert!(
        health["text"]
            .as_str()
            .unwrap()
            .contains("Custom Audience Terms"),
        "{health}"
    );
    assert_eq!(receiver.seen().len(), 2);
}

/// A sync the removal guardrails block is an alert like a failed one: it names the limit and
/// the numbers, never the people.
#[tokio::test]
async fn a_blocked_sync_reaches_the_webhook_naming_the_limit() {
    let meta = FakeMeta::start().await;
    let receiver = Receiver::start(0).await;
    let t = app(&meta, DEFAULT_FAKE_TOKEN, webhook_settings(&receiver)).await;
    let id = audience_of_people(&t).await;
    let limit = json!({"max_removal_percent": 50});
    let (status, _) = t.put(&format!("/api/audiences/{id}"), &limit).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    // The segment emptied upstream: the full sync would remove all three.
    t.db.execute(
        "DELETE FROM segment_member WHERE segment_id = \
         (SELECT segment_id FROM custom_audience WHERE id = $1)",
        &[&Uuid::parse_str(&id).unwrap()],
    )
    .await
    .unwrap();
    let result = t.sync(&id, "full").await;
    assert_eq!(result["status"], "blocked", "{result}");

    let seen = receiver.wait_for(1).await;
    assert_eq!(seen[0].0, 200);
    let message: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(message["event"], "sync_blocked");
    assert_eq!(message["sync_log_id"], result["sync_log_id"]);
    let text = message["text"].as_str().unwrap();
    assert!(text.contains("max_removal_percent"), "{text}");
    assert_no_pii(&seen[0].1);
}

/// A sync whose worker died (a Lambda's time ran out) raises no alert itself: the next sync of
/// its audience fails its row, and the next scheduler pass alerts it, once. A failure that
/// ended over an hour ago is not alerted late.
#[tokio::test]
async fn an_abandoned_sync_is_alerted_once_by_the_next_scheduler_pass() {
    let meta = FakeMeta::start().await;
    let receiver = Receiver::start(0).await;
    let t = app(&meta, meta.token(), webhook_settings(&receiver)).await;
    let id = audience_of_people(&t).await;
    let aid = Uuid::parse_str(&id).unwrap();
    let log_row = |status: &'static str, ended: Option<&'static str>| {
        let t = &t;
        async move {
            let id: Uuid =
                t.db.query_one(
                    "INSERT INTO audience_sync_log (audience_id, sync_type, status, started_at, \
                                                completed_at, error_message) \
                 VALUES ($1, 'incremental', $2, now() - interval '3 hours', \
                         now() - $3::text::interval, $4) RETURNING id",
                    &[&aid, &status, &ended, &ended.map(|_| "an old failure")],
                )
                .await
                .unwrap()
                .get(0);
            id
        }
    };
    log_row("failed", Some("2 hours")).await;
    let dead = log_row("in_progress", None).await;
    assert_eq!(t.sync(&id, "full").await["status"], "completed");
    // The sync failed the dead row; its own hook alerts only its own outcome (none).
    assert!(outbox(&t).await.is_empty(), "{:?}", outbox(&t).await);

    alerts::scheduler_pass(&t.app).await;
    // One alert, the dead sync's: not the old failure's, which ended 2 hours ago.
    assert_eq!(outbox(&t).await, vec![("sync_failed".to_string(), 1, true)]);
    let seen = receiver.wait_for(1).await;
    let message: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(message["event"], "sync_failed");
    assert_eq!(message["sync_log_id"], dead.to_string());
    let text = message["text"].as_str().unwrap();
    assert!(text.contains("abandoned"), "{text}");
    assert_no_pii(&seen[0].1);

    // Once: later passes find nothing missing.
    alerts::scheduler_pass(&t.app).await;
    assert_eq!(outbox(&t).await.len(), 1);
    assert_eq!(receiver.seen().len(), 1);
}
