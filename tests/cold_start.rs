//! The Lambda cold start against a local Secrets Manager (moto's server): the RDS-format
//! database secret and the Meta token secret become the configuration, and a missing or
//! malformed secret fails with an error that names the variable and never the value.
//!
//! Resolution takes its variables as a map (no process-wide environment changes); the one test
//! of the real environment path runs the `audiences` binary as a child process.

#[path = "support/moto.rs"]
mod moto;
mod support;

use std::collections::HashMap;
use std::process::Command;

use audience_sync::config::{Config, ConfigError};
use audience_sync::App;
use moto::Moto;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[tokio::test]
async fn secrets_become_a_working_configuration() {
    let moto = Moto::start();
    let db_url = support::fresh_database().await;
    let support::UrlParts {
        host, port, dbname, ..
    } = support::url_parts(&db_url);
    // The local test server trusts loopback connections, so the password is not checked; it
    // still has to travel through the URL intact.
    let db_secret = serde_json::json!({
        "engine": "postgres", "host": host, "port": port, "username": "postgres",
        "password": "p@ss:w/rd with space", "dbname": dbname,
        "dbInstanceIdentifier": "audiences-db"
    });
    let db_arn = moto
        .secret(&support::unique("db"), &db_secret.to_string())
        .await;
    let token_arn = moto
        .secret(&support::unique("token"), "EAABplainToken123")
        .await;

    let env = vars(&[
        ("AWS_LAMBDA_FUNCTION_NAME", "audiences"),
        ("DB_SECRET_ARN", &db_arn),
        ("META_TOKEN_SECRET_ARN", &token_arn),
        ("META_AD_ACCOUNT_ID", "act_42"),
    ]);
    let config = Config::resolve(&env, &moto.client())
        .await
        .expect("resolve");
    let url = config.database_url.clone().expect("database url");
    let parsed: tokio_postgres::Config = url.parse().unwrap();
    assert_eq!(parsed.get_user(), Some("postgres"));
    assert_eq!(
        parsed.get_password(),
        Some("p@ss:w/rd with space".as_bytes())
    );
    assert_eq!(parsed.get_dbname(), Some(dbname.as_str()));
    assert_eq!(parsed.get_ports(), &[port]);
    let meta = config.meta.clone().expect("meta configured");
    assert_eq!(meta.access_token.expose(), "EAABplainToken123");
    assert_eq!(meta.ad_account_id.as_deref(), Some("42"));
    assert_eq!(config.db_pool_size, 2, "Lambda default pool size");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("p@ss") && !debug.contains("EAAB"),
        "{debug}"
    );

    // And the state built from it reaches the database.
    let app = App::build(&config).await.expect("build app");
    let conn = audience_sync::db::get(&app.pool).await.expect("connection");
    let n: i64 = conn
        .query_one("SELECT count(*) FROM custom_audience", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn rds_managed_secret_and_json_token() {
    let moto = Moto::start();
    let db_arn = moto
        .secret(
            &support::unique("rds-managed"),
            r#"{"username":"app","password":"pw"}"#,
        )
        .await;
    let token_arn = moto
        .secret(
            &support::unique("token-json"),
            r#"{"access_token": "EAABjsonToken"}"#,
        )
        .await;
    let env = vars(&[
        ("DB_SECRET_ARN", &db_arn),
        (
            "DB_HOST",
            "audiences.cluster-abc.us-east-1.rds.amazonaws.com",
        ),
        ("DB_NAME", "audiences"),
        ("META_TOKEN_SECRET_ARN", &token_arn),
    ]);
    let config = Config::resolve(&env, &moto.client())
        .await
        .expect("resolve");
    assert_eq!(
        config.database_url.as_deref(),
        Some(
            "postgresql://app:pw@audiences.cluster-abc.us-east-1.rds.amazonaws.com:5432/audiences"
        )
    );
    assert_eq!(
        config.meta.expect("meta").access_token.expose(),
        "EAABjsonToken"
    );

    // Without DB_HOST the managed form is incomplete, and the error says what to set.
    let env = vars(&[("DB_SECRET_ARN", &db_arn)]);
    let err = Config::resolve(&env, &moto.client()).await.unwrap_err();
    assert_eq!(err.var(), "DB_SECRET_ARN");
    assert!(err.to_string().contains("DB_HOST"), "{err}");
}

#[tokio::test]
async fn plain_variables_win_over_secrets() {
    let moto = Moto::start();
    // The ARNs point nowhere: reading them would fail, so this also shows they are not read.
    let env = vars(&[
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x"),
        (
            "DB_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:none",
        ),
        ("META_ACCESS_TOKEN", "EAABfromEnv"),
        (
            "META_TOKEN_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope",
        ),
    ]);
    let config = Config::resolve(&env, &moto.client())
        .await
        .expect("resolve");
    assert_eq!(
        config.database_url.as_deref(),
        Some("postgresql://postgres@127.0.0.1:5432/x")
    );
    assert_eq!(config.meta.unwrap().access_token.expose(), "EAABfromEnv");
}

/// The Google, LinkedIn and TikTok secrets (DESIGN §8.1) at cold start, beside Meta's.
#[tokio::test]
async fn the_other_platforms_credentials_come_from_their_secrets() {
    use audience_sync::destinations::settings::{Consent, GoogleAuth};
    let moto = Moto::start();
    let google_arn = moto
        .secret(
            &support::unique("google"),
            r#"{"client_id": "123.apps.googleusercontent.com", "client_secret": "GOCSPX-s3cret",
                "refresh_token": "1//refresh-s3cret"}"#,
        )
        .await;
    let linkedin_arn = moto
        .secret(&support::unique("linkedin"), "AQVlinkedinToken")
        .await;
    let tiktok_arn = moto
        .secret(
            &support::unique("tiktok"),
            r#"{"access_token": "ttTiktokToken"}"#,
        )
        .await;
    let env = vars(&[
        ("GOOGLE_CREDENTIALS_SECRET_ARN", &google_arn),
        ("GOOGLE_CUSTOMER_ID", "123-456-7890"),
        ("GOOGLE_AD_PERSONALIZATION_CONSENT", "CONSENT_DENIED"),
        ("LINKEDIN_TOKEN_SECRET_ARN", &linkedin_arn),
        ("LINKEDIN_AD_ACCOUNT_ID", "urn:li:sponsoredAccount:512"),
        ("TIKTOK_TOKEN_SECRET_ARN", &tiktok_arn),
        ("TIKTOK_ADVERTISER_ID", "7001"),
    ]);
    let config = Config::resolve(&env, &moto.client())
        .await
        .expect("resolve");
    let google = config.google.clone().expect("google configured");
    match &google.auth {
        GoogleAuth::Refresh {
            client_id,
            client_secret,
            refresh_token,
        } => {
            assert_eq!(client_id, "123.apps.googleusercontent.com");
            assert_eq!(client_secret.expose(), "GOCSPX-s3cret");
            assert_eq!(refresh_token.expose(), "1//refresh-s3cret");
        }
        other => panic!("expected refresh credentials, got {other:?}"),
    }
    assert_eq!(google.customer_id.as_deref(), Some("1234567890"));
    assert_eq!(google.ad_user_data_consent, Consent::Granted);
    assert_eq!(google.ad_personalization_consent, Consent::Denied);
    let linkedin = config.linkedin.clone().expect("linkedin configured");
    assert_eq!(linkedin.access_token.expose(), "AQVlinkedinToken");
    assert_eq!(linkedin.ad_account_id.as_deref(), Some("512"));
    let tiktok = config.tiktok.clone().expect("tiktok configured");
    assert_eq!(tiktok.access_token.expose(), "ttTiktokToken");
    assert_eq!(tiktok.advertiser_id.as_deref(), Some("7001"));
    assert!(config.meta.is_none(), "Meta stays unconfigured");
    let debug = format!("{config:?}");
    for secret in ["s3cret", "AQVlinkedin", "ttTiktok"] {
        assert!(!debug.contains(secret), "{debug}");
    }

    // Malformed: the variable is named, the value never.
    for (var, value) in [
        (
            "GOOGLE_CREDENTIALS_SECRET_ARN",
            r#"{"client_id": "c", "client_secret": "hunter2"}"#,
        ),
        ("GOOGLE_CREDENTIALS_SECRET_ARN", "hunter2"),
        ("LINKEDIN_TOKEN_SECRET_ARN", r#"{"token": "hunter2"}"#),
        ("TIKTOK_TOKEN_SECRET_ARN", "hunter2 hunter2"),
    ] {
        let arn = moto.secret(&support::unique("bad"), value).await;
        let err = resolve_err(&moto, &[(var, &arn)]).await;
        assert_eq!(err.var(), var, "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }
}

async fn resolve_err(moto: &Moto, env: &[(&str, &str)]) -> ConfigError {
    Config::resolve(&vars(env), &moto.client())
        .await
        .expect_err("resolution should fail")
}

#[tokio::test]
async fn missing_or_malformed_secrets_name_the_variable_never_the_value() {
    let moto = Moto::start();
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf";
    let err = resolve_err(&moto, &[("DB_SECRET_ARN", missing)]).await;
    assert_eq!(err.var(), "DB_SECRET_ARN");
    assert!(
        err.to_string().contains("ResourceNotFoundException"),
        "{err}"
    );
    let err = resolve_err(&moto, &[("META_TOKEN_SECRET_ARN", missing)]).await;
    assert_eq!(err.var(), "META_TOKEN_SECRET_ARN");

    for (var, value) in [
        ("DB_SECRET_ARN", "hunter2-is-not-json"),
        (
            "DB_SECRET_ARN",
            r#"{"username":"app","password":"hunter2"}"#,
        ),
        (
            "DB_SECRET_ARN",
            r#"{"username":"app","password":"hunter2","host":"h","port":"hunter2","dbname":"d"}"#,
        ),
        ("META_TOKEN_SECRET_ARN", r#"{"token":"hunter2"}"#),
        ("META_TOKEN_SECRET_ARN", r#"{"access_token":"hunter2""#),
        ("META_TOKEN_SECRET_ARN", "hunter2 hunter2"),
    ] {
        let arn = moto.secret(&support::unique("bad"), value).await;
        let err = resolve_err(&moto, &[(var, &arn)]).await;
        let text = err.to_string();
        assert_eq!(err.var(), var, "{text}");
        assert!(text.starts_with(&format!("{var}: ")), "{text}");
        assert!(
            !text.contains("hunter2"),
            "the error quotes the secret: {text}"
        );
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }

    // Both broken at once: whichever fails first is reported; still no value.
    let db = moto.secret(&support::unique("bad-db"), "hunter2").await;
    let token = moto.secret(&support::unique("bad-token"), "{hunter2").await;
    let err = resolve_err(
        &moto,
        &[("DB_SECRET_ARN", &db), ("META_TOKEN_SECRET_ARN", &token)],
    )
    .await;
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// The real environment path (`AWS_ENDPOINT_URL_SECRETS_MANAGER` honoured by the AWS
/// configuration chain), in a child process: `audiences migrate` with only `DB_SECRET_ARN`
/// migrates the database the secret names; with a broken secret it fails naming the variable.
#[tokio::test]
async fn the_binary_reads_secrets_through_the_standard_aws_environment() {
    let moto = Moto::start();
    let template = support::fresh_database().await;
    let support::UrlParts { host, port, .. } = support::url_parts(&template);
    let dbname = format!("coldstart_{}", uuid::Uuid::new_v4().simple());
    let admin = format!("postgresql://postgres@{host}:{port}/postgres");
    audience_sync::db::ensure_database(&admin, &dbname)
        .await
        .unwrap();
    let secret = serde_json::json!({
        "host": host, "port": port, "username": "postgres", "password": "pw", "dbname": dbname
    });
    let arn = moto
        .secret(&support::unique("cli-db"), &secret.to_string())
        .await;

    let run = |arn: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_audiences"));
        cmd.arg("migrate")
            .env_remove("DATABASE_URL")
            .env_remove("META_ACCESS_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("DB_SECRET_ARN", arn)
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("RUST_LOG", "info");
        for (k, v) in moto.env() {
            cmd.env(k, v);
        }
        cmd.output().expect("run audiences")
    };
    let out = run(&arn);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "audiences migrate failed: {stderr}");
    let url = format!("postgresql://postgres@{host}:{port}/{dbname}");
    let client = support::connect(&url).await;
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('custom_audience', 'person')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 2, "the secret's database was migrated");

    let bad = moto.secret(&support::unique("cli-bad"), "hunter2").await;
    let out = run(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("DB_SECRET_ARN"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
