//! Alerts to an SNS topic (DESIGN §8.4) against moto's server (a process of its own, hence a
//! test binary of its own): a failed sync's alert is published once, and moto's HTTP
//! subscription delivers it to a loopback receiver, PII-free.

#[path = "support/moto.rs"]
#[allow(dead_code)]
mod moto;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use audience_sync::alerts::{Alerts, SnsPublisher};
use audience_sync::config::AlertSettings;
use serde_json::{json, Value};

use support::fake_meta::FakeMeta;
use support::webhook::Receiver;

#[tokio::test]
async fn a_failed_syncs_alert_reaches_the_sns_topic_once() {
    let moto = moto::Moto::start();
    let receiver = Receiver::start(0).await;
    let admin = SnsPublisher::with_endpoint("", &moto.endpoint, moto::REGION, "test", "test");
    let topic = admin
        .sdk()
        .create_topic()
        .name("audience-sync-alerts")
        .send()
        .await
        .expect("create topic")
        .topic_arn()
        .expect("topic ARN")
        .to_string();
    admin
        .sdk()
        .subscribe()
        .topic_arn(&topic)
        .protocol("http")
        .endpoint(format!("http://{}/sns", receiver.addr))
        .send()
        .await
        .expect("subscribe");

    let meta = FakeMeta::start().await;
    let config = meta.meta_config_with("EAAB-revoked-token", 1);
    let settings = AlertSettings {
        topic_arn: Some(topic.clone()),
        ..AlertSettings::default()
    };
    let publisher =
        SnsPublisher::with_endpoint(&topic, &moto.endpoint, moto::REGION, "test", "test");
    let t = support::spawn_app_built(
        |c| {
            c.meta = Some(config);
            c.alerts = settings.clone();
        },
        |app| app.alerts = Arc::new(Alerts::new(settings.clone(), Some(publisher))),
    )
    .await;
    let seg = t.segment("Private people").await;
    t.person(seg, Some("dana.private@example.com"), Some("+16505550199"))
        .await;
    let a = t
        .create_audience(json!({"name": "Weekly buyers", "segment_id": seg}))
        .await;
    let result = t.sync(a["id"].as_str().unwrap(), "full").await;
    assert_eq!(result["status"], "failed", "{result}");

    // moto posts every notification to the subscribed endpoint.
    let until = Instant::now() + Duration::from_secs(30);
    let notifications = loop {
        let found: Vec<Value> = receiver
            .seen()
            .into_iter()
            .filter_map(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .filter(|v| v["Type"] == "Notification")
            .collect();
        if !found.is_empty() {
            break found;
        }
        assert!(
            Instant::now() < until,
            "no notification: {:?}",
            receiver.seen()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let n = &notifications[0];
    assert_eq!(n["TopicArn"], topic.as_str());
    assert_eq!(n["Subject"], "audience-sync: a sync failed");
    let message: Value = serde_json::from_str(n["Message"].as_str().unwrap()).unwrap();
    assert_eq!(message["event"], "sync_failed");
    assert_eq!(message["sync_log_id"], result["sync_log_id"]);
    assert!(message["text"].as_str().unwrap().contains("Weekly buyers"));
    let all = n.to_string();
    for pii in [
        "dana.private@example.com",
        "6505550199",
        "EAAB-revoked-token",
    ] {
        assert!(!all.contains(pii), "{pii} in {all}");
    }
    // Settled once: one attempt, delivered.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let row =
            t.db.query_one(
                "SELECT attempts, delivered_at IS NOT NULL FROM alert_outbox",
                &[],
            )
            .await
            .unwrap();
        if (row.get::<_, i32>(0), row.get::<_, bool>(1)) == (1, true) {
            break;
        }
        assert!(Instant::now() < until, "not settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(notifications.len(), 1);
}
