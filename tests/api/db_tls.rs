//! TLS to PostgreSQL: a local server with `ssl=on` and a certificate from a CA the tests make
//! (the shared test server, see `support::tls`), reached through the pool with that CA (the
//! connection is encrypted) and with another CA (refused). Plain TCP stays allowed to a local
//! server that is not asked for TLS.

use audience_sync::db::{self, CaSource, PoolOptions};

use crate::support::tls::{make_ca, server};

fn options(ca: CaSource) -> PoolOptions {
    PoolOptions {
        max_size: 2,
        ca,
        ..PoolOptions::default()
    }
}

async fn ssl_in_use(pool: &deadpool_postgres::Pool) -> bool {
    let conn = db::get(pool).await.expect("connection");
    conn.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn pool_connects_over_tls_with_the_right_ca() {
    let s = server();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!(
            "postgresql://postgres@{host}:{}/postgres?sslmode=require",
            s.port
        );
        let pool =
            db::pool(&url, &options(CaSource::Pem(s.ca_pem.clone().into_bytes()))).expect("pool");
        assert!(ssl_in_use(&pool).await, "TLS to {host}");
    }
}

#[tokio::test]
async fn ca_bundle_from_a_file() {
    let s = server();
    let path = std::env::temp_dir().join(format!("ca-{}.pem", uuid::Uuid::new_v4().simple()));
    // A bundle of several CAs, the right one among them, as the RDS bundle is.
    let other = make_ca("some other CA");
    std::fs::write(&path, format!("{}{}", other.pem(), s.ca_pem)).unwrap();
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=require",
        s.port
    );
    let pool = db::pool(&url, &options(CaSource::File(path.clone()))).expect("pool");
    assert!(ssl_in_use(&pool).await);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_wrong_ca_is_refused() {
    let s = server();
    let wrong = make_ca("not the server's CA");
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=require",
        s.port
    );
    let pool = db::pool(&url, &options(CaSource::Pem(wrong.pem().into_bytes()))).expect("pool");
    let Err(err) = db::get(&pool).await else {
        panic!("TLS with the wrong CA must fail");
    };
    let text = format!("{err} {:?}", err);
    assert!(
        text.contains("UnknownIssuer") || text.to_lowercase().contains("certificate"),
        "{text}"
    );
}

#[tokio::test]
async fn local_server_without_sslmode_require_is_plain_tcp() {
    let s = server();
    let url = format!("postgresql://postgres@127.0.0.1:{}/postgres", s.port);
    // No CA at all: none is needed for plain TCP to this machine.
    let pool = db::pool(&url, &options(CaSource::Pem(Vec::new()))).expect("pool");
    assert!(!ssl_in_use(&pool).await);
}

#[tokio::test]
async fn remote_hosts_never_get_plain_tcp() {
    let Err(err) = db::pool(
        "postgresql://app:pw@db.example.internal:5432/app?sslmode=disable",
        &options(CaSource::Pem(Vec::new())),
    ) else {
        panic!("plain TCP to a remote host must be refused");
    };
    assert!(err.to_string().contains("sslmode=disable"), "{err}");
    assert!(!err.to_string().contains("pw@"), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_connection_class_and_retried() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
    let pool = db::pool(&url, &options(CaSource::Pem(Vec::new()))).unwrap();
    let Err(err) = db::get(&pool).await else {
        panic!("nothing listens there");
    };
    assert!(db::is_connection_error(&err), "{err:?}");
}
