//! `GET /api/health` (DESIGN §8.4) against the strict fakes: all well; a bad Meta token (503,
//! a sentence saying what to do, never the token); Meta's Custom Audience Terms not accepted;
//! each other platform's refusal named; platforms not configured; the database's fields.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::fake_google::FakeGoogle;
use crate::support::fake_linkedin::FakeLinkedin;
use crate::support::fake_meta::{call_counts, FakeMeta};
use crate::support::fake_tiktok::FakeTiktok;
use crate::support::{spawn_app_configured, spawn_app_with};

const PLATFORMS: [&str; 4] = ["meta", "google", "linkedin", "tiktok"];

#[tokio::test]
async fn all_well_is_200_with_every_platform_checked_once_per_half_minute() {
    let (meta, google) = (FakeMeta::start().await, FakeGoogle::start().await);
    let (linkedin, tiktok) = (FakeLinkedin::start().await, FakeTiktok::start().await);
    let (m, g) = (meta.meta_config(), google.google_config());
    let (l, k) = (linkedin.config(), tiktok.config());
    let t = spawn_app_configured(|c| {
        c.meta = Some(m);
        c.google = Some(g);
        c.linkedin = Some(l);
        c.tiktok = Some(k);
    })
    .await;
    let (status, body) = t.get("/api/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"]["ok"], true);
    assert_eq!(body["database"]["migrations_current"], true);
    for p in PLATFORMS {
        let h = &body["destinations"][p];
        assert_eq!(
            (h["configured"].as_bool(), h["ok"].as_bool()),
            (Some(true), Some(true)),
            "{p}: {h}"
        );
    }
    let meta_message = body["destinations"]["meta"]["message"].as_str().unwrap();
    assert!(
        meta_message.contains("act_424242") && meta_message.contains("Terms are accepted"),
        "{meta_message}"
    );
    // One light call per platform: Meta read the ad account alone.
    let counts = call_counts(&meta.calls());
    assert_eq!(counts.get("GET /act_424242"), Some(&1), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 1, "{counts:?}");
    assert!(tiktok
        .calls()
        .iter()
        .any(|c| c.path.ends_with("/advertiser/info/") && c.code == 0));
    assert!(linkedin
        .calls()
        .iter()
        .any(|c| c.path == "/adAccounts/516848833" && c.status == 200));

    // Asked again at once: the report is reused, no platform is called again.
    let (status, again) = t.get("/api/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, body);
    assert_eq!(meta.calls().len(), 1);
}

#[tokio::test]
async fn a_bad_meta_token_is_503_saying_what_to_do_without_the_token() {
    let meta = FakeMeta::start().await;
    let token = "EAAB-not-the-right-token-9f8e7d";
    let t = spawn_app_with(Some(meta.meta_config_with(token, 1))).await;
    let (status, body) = t.get("/api/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "degraded");
    let h = &body["destinations"]["meta"];
    assert_eq!(
        (h["configured"].as_bool(), h["ok"].as_bool()),
        (Some(true), Some(false))
    );
    let message = h["message"].as_str().unwrap();
    assert!(
        message.contains("access token") && message.contains("META_ACCESS_TOKEN"),
        "{message}"
    );
    assert!(
        !body.to_string().contains(token),
        "the token leaked: {body}"
    );
    // The platforms not configured are not failures, and say how to configure them.
    for p in ["google", "linkedin", "tiktok"] {
        let h = &body["destinations"][p];
        assert_eq!(
            (h["configured"].as_bool(), h["ok"].as_bool()),
            (Some(false), Some(true)),
            "{p}"
        );
        assert!(
            h["message"]
                .as_str()
                .unwrap()
                .starts_with("not configured: set "),
            "{h}"
        );
    }
    assert_eq!(body["database"]["ok"], true);
}

#[tokio::test]
async fn custom_audience_terms_not_accepted_are_named_with_where_to_accept_them() {
    let meta = FakeMeta::start().await;
    meta.set_tos_accepted(false);
    let t = spawn_app_with(Some(meta.meta_config())).await;
    let (status, body) = t.get("/api/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["destinations"]["meta"]["message"].as_str().unwrap();
    assert!(
        message.contains("Custom Audience Terms are not accepted"),
        "{message}"
    );
    assert!(
        message.contains("customaudiences/tos/?act=424242"),
        "{message}"
    );

    // A disabled ad account is named too (another app: the report is cached per process).
    let meta = FakeMeta::start().await;
    meta.set_account_status(2);
    let t = spawn_app_with(Some(meta.meta_config())).await;
    let (status, body) = t.get("/api/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let message = body["destinations"]["meta"]["message"].as_str().unwrap();
    assert!(
        message.contains("not active (account_status 2)"),
        "{message}"
    );
}

#[tokio::test]
async fn each_other_platform_names_its_refusal() {
    let (google, linkedin, tiktok) = (
        FakeGoogle::start().await,
        FakeLinkedin::start().await,
        FakeTiktok::start().await,
    );
    let mut g = google.google_config();
    g.auth = audience_sync::destinations::settings::GoogleAuth::AccessToken(
        audience_sync::destinations::token::SecretToken::new("ya29.wrong-google-token"),
    );
    g.retry.max_attempts = 1;
    let mut l = linkedin.config();
    l.ad_account_id = Some("999000111".into());
    let k = tiktok.config_with("wrong-tiktok-token");
    let t = spawn_app_configured(|c| {
        c.google = Some(g);
        c.linkedin = Some(l);
        c.tiktok = Some(k);
    })
    .await;
    let (status, body) = t.get("/api/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = |p: &str| {
        body["destinations"][p]["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        message("google").contains("Google refused the credentials"),
        "{body}"
    );
    assert!(
        message("linkedin").contains("999000111 cannot be reached"),
        "{body}"
    );
    assert!(message("tiktok").contains("code 40105"), "{body}");
    assert_eq!(body["destinations"]["meta"]["configured"], false);
    for secret in ["ya29.wrong-google-token", "wrong-tiktok-token"] {
        assert!(
            !body.to_string().contains(secret),
            "{secret} leaked: {body}"
        );
    }
}

#[tokio::test]
async fn the_database_fields_say_whether_every_migration_is_applied() {
    let t = spawn_app_with(None).await;
    // A migration this binary embeds that the database does not show as applied.
    t.db
        .execute(
            "DELETE FROM refinery_schema_history WHERE version = (SELECT max(version) FROM refinery_schema_history)",
            &[],
        )
        .await
        .unwrap();
    let (status, body) = t.get("/api/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body["database"],
        serde_json::json!({"ok": true, "migrations_current": false})
    );
    for p in PLATFORMS {
        assert_eq!(body["destinations"][p]["ok"], Value::Bool(true), "{p}");
    }

    let fresh = spawn_app_with(None).await;
    let (status, body) = fresh.get("/api/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["database"],
        serde_json::json!({"ok": true, "migrations_current": true})
    );
}
