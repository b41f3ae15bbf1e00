//! Test support: a real PostgreSQL (the one at DATABASE_URL, or one this test binary starts from
//! the machine's server binaries, with TLS on), a fresh database per test, and the service on
//! loopback.
#![allow(dead_code)]

pub mod fake_google;
pub mod fake_linkedin;
pub mod fake_meta;
pub mod fake_tiktok;
pub mod lambda;
pub mod tls;
pub mod webhook;

use std::sync::OnceLock;

use audience_sync::config::Config;
use audience_sync::destinations::meta::MetaConfig;
use audience_sync::{db, server, App};
use reqwest::StatusCode;
use serde_json::Value;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// The server every test of this process uses.
struct TestServer {
    url: String,
    /// Set when this process started the server (no DATABASE_URL): it has TLS on.
    tls: Option<tls::TlsServer>,
}

fn test_server() -> &'static TestServer {
    static SERVER: OnceLock<Result<TestServer, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok(TestServer { url, tls: None }),
        _ => {
            // Leaked on purpose: the server lives as long as the test process and dies with it.
            let (pg, tls) = tls::start_local()?;
            let url = pg.url("postgres");
            std::mem::forget(pg);
            Ok(TestServer {
                url,
                tls: Some(tls),
            })
        }
    });
    server.as_ref().expect("test PostgreSQL server")
}

/// URL of database `name` on the test server.
fn server_url(name: &str) -> String {
    with_dbname(&test_server().url, name)
}

fn with_dbname(url: &str, name: &str) -> String {
    let (main, query) = url
        .split_once('?')
        .map_or((url, None), |(m, q)| (m, Some(q)));
    let host_start = main.find("://").map_or(0, |i| i + 3);
    let base = match main[host_start..].find('/') {
        Some(i) => &main[..host_start + i],
        None => main,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A new, migrated database; its URL.
pub async fn fresh_database() -> String {
    let name = format!("test_{}", Uuid::new_v4().simple());
    db::ensure_database(&server_url("postgres"), &name)
        .await
        .expect("create test database");
    let url = server_url(&name);
    db::migrate(&url, &db::CaSource::Embedded)
        .await
        .expect("migrate test database");
    url
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

pub struct TestApp {
    pub app: App,
    pub base: String,
    pub db_url: String,
    /// A connection of the test's own, for setting data up and looking at it.
    pub db: tokio_postgres::Client,
    http: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(None).await
}

/// The service against a fresh database, with Meta configured when `meta` is given.
pub async fn spawn_app_with(meta: Option<MetaConfig>) -> TestApp {
    spawn_app_configured(|config| {
        config.db_pool_size = 8;
        config.meta = meta;
    })
    .await
}

/// The configuration a test starts from: the defaults, as with an empty environment.
pub fn test_config() -> Config {
    Config::from_vars(&|_| None).expect("the defaults are a valid configuration")
}

/// The service against a fresh database, built and served as `main` does ([`App::build`],
/// [`server::run`]) from the default configuration as `configure` changes it. No in-process
/// scheduler unless `configure` sets `scheduler_interval`: tests run their passes themselves.
pub async fn spawn_app_configured(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_built(configure, |_| {}).await
}

/// As [`spawn_app_configured`], with `adjust` changing the built [`App`] before it serves (parts
/// the configuration cannot name, e.g. an SNS client pointed at moto).
pub async fn spawn_app_built(
    configure: impl FnOnce(&mut Config),
    adjust: impl FnOnce(&mut App),
) -> TestApp {
    let db_url = fresh_database().await;
    let mut config = test_config();
    config.database_url = Some(db_url.clone());
    config.scheduler_interval = None;
    configure(&mut config);
    let mut app = App::build(&config).await.expect("app");
    adjust(&mut app);
    let (listener, addr) = server::bind(0).await.expect("bind");
    tokio::spawn(server::run(
        app.clone(),
        listener,
        config.scheduler_interval,
        std::future::pending(),
    ));
    TestApp {
        app,
        base: format!("http://{addr}"),
        db: connect(&db_url).await,
        db_url,
        http: reqwest::Client::new(),
    }
}

impl TestApp {
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("response is not JSON: {text}"))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.request("POST", path, Some(&body.to_string())).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.request("PUT", path, Some(&body.to_string())).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request("DELETE", path, None).await
    }

    /// A segment with no rule (members managed by SQL, as the wider app would).
    pub async fn segment(&self, name: &str) -> Uuid {
        self.db
            .query_one(
                "INSERT INTO segment (name) VALUES ($1) RETURNING id",
                &[&name],
            )
            .await
            .expect("insert segment")
            .get(0)
    }

    /// `n` people with an email each (`{tag}{i}@example.com`), in `segment`.
    pub async fn people_in_segment(&self, segment: Uuid, tag: &str, n: i32) -> Vec<Uuid> {
        let rows = self
            .db
            .query(
                "WITH p AS (INSERT INTO person (email, first_name, country) \
                   SELECT $2 || i || '@Example.com', 'Person' || i, 'US' FROM generate_series(1, $3) i \
                   RETURNING id), \
                 m AS (INSERT INTO segment_member (segment_id, person_id) SELECT $1, id FROM p) \
                 SELECT id FROM p",
                &[&segment, &tag, &n],
            )
            .await
            .expect("insert people");
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// One person with the given contact columns, in `segment`.
    pub async fn person(&self, segment: Uuid, email: Option<&str>, phone: Option<&str>) -> Uuid {
        let id: Uuid = self
            .db
            .query_one(
                "INSERT INTO person (email, phone, country) VALUES ($1, $2, 'US') RETURNING id",
                &[&email, &phone],
            )
            .await
            .expect("insert person")
            .get(0);
        self.add_to_segment(segment, id).await;
        id
    }

    /// Adds an existing person to a segment, by plain SQL as an outside tool would.
    pub async fn add_to_segment(&self, segment: Uuid, person: Uuid) {
        self.db
            .execute(
                "INSERT INTO segment_member (segment_id, person_id) VALUES ($1, $2)",
                &[&segment, &person],
            )
            .await
            .expect("add member");
    }

    pub async fn create_audience(&self, body: Value) -> Value {
        let (status, json) = self.post("/api/audiences", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json
    }

    pub async fn sync(&self, audience_id: &str, sync_type: &str) -> Value {
        let (status, json) = self
            .post(
                "/api/audiences/sync",
                &serde_json::json!({"audience_id": audience_id, "sync_type": sync_type}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json
    }

    /// A sync forced past the removal guardrails (`"force": true`), answered 200.
    pub async fn sync_forced(&self, audience_id: &str, sync_type: &str) -> Value {
        let body = serde_json::json!({"audience_id": audience_id, "sync_type": sync_type,
                                      "force": true});
        let (status, json) = self.post("/api/audiences/sync", &body).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json
    }

    /// The platform's numbers as the last sync read them back (`custom_audience.meta_metrics`).
    pub async fn platform_metrics(&self, audience_id: &str) -> Value {
        let id = Uuid::parse_str(audience_id).unwrap();
        self.db
            .query_one(
                "SELECT meta_metrics FROM custom_audience WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Person ids of the audience's members in a state, straight from the table.
    pub async fn member_ids(&self, audience_id: &str, where_clause: &str) -> Vec<Uuid> {
        let id = Uuid::parse_str(audience_id).unwrap();
        let sql = format!(
            "SELECT person_id FROM audience_member_sync WHERE audience_id = $1 AND ({where_clause}) ORDER BY person_id"
        );
        column(&self.db, &sql, &[&id]).await
    }
}

/// One page of a list route: its items (`key`) and its `next_cursor`, after checking the shape.
pub async fn list_page(t: &TestApp, path: &str, key: &str) -> (Vec<Value>, Option<String>) {
    let (status, body) = t.get(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    let object = body.as_object().expect("a JSON object");
    assert_eq!(object.len(), 2, "only {key} and next_cursor: {body}");
    let next = match &body["next_cursor"] {
        Value::Null => None,
        Value::String(c) => Some(c.clone()),
        other => panic!("next_cursor is a string or null, not {other}"),
    };
    let items = body[key].as_array().expect("an array of items").clone();
    (items, next)
}

/// The first column of every row a query returns.
pub async fn column<T>(
    db: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<T>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    let rows = db
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    rows.iter().map(|r| r.get(0)).collect()
}

/// The count a `SELECT count(*) …` query returns.
pub async fn count(
    db: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    db.query_one(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// Host, port, user and database name of a test database URL.
pub struct UrlParts {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
}

pub fn url_parts(url: &str) -> UrlParts {
    let c: tokio_postgres::Config = url.parse().expect("database URL");
    let host = match &c.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    UrlParts {
        host,
        port: c.get_ports().first().copied().unwrap_or(5432),
        user: c.get_user().unwrap_or("postgres").to_string(),
        dbname: c.get_dbname().expect("database name").to_string(),
    }
}

/// `name` made unique, for secrets and other names tests share a server with.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", Uuid::new_v4().simple())
}

/// Asserts the JSON error shape, its status and the field it names.
pub fn assert_error(status: StatusCode, body: &Value, want: StatusCode, field: Option<&str>) {
    assert_eq!(status, want, "{body}");
    let err = &body["error"];
    assert!(err["code"].is_string(), "error.code missing: {body}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error.message missing: {body}"
    );
    assert_eq!(err["field"].as_str(), field, "{body}");
}

/// The `audiences` CLI run against `database_url`, with no Meta token or log filter of the
/// caller's environment.
pub fn audiences_cli(args: &[&str], database_url: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_audiences"));
    cmd.args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("META_ACCESS_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}
