//! TLS to PostgreSQL: a local server with `ssl=on` and a certificate from a CA the test makes,
//! reached through the pool with that CA (the connection is encrypted) and with another CA
//! (refused). Plain TCP stays allowed to a local server that is not asked for TLS.

use std::sync::OnceLock;

use audience_sync::db::local::{LocalOptions, LocalPostgres};
use audience_sync::db::{self, CaSource, PoolOptions};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

struct TlsServer {
    port: u16,
    ca_pem: String,
}

/// One TLS-enabled server for this test binary (it dies with the process).
fn server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let ca = make_ca("audience-sync test CA");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let options = LocalOptions::default()
            .file("server.crt", cert.pem())
            .file("server.key", key.serialize_pem())
            .setting("ssl", "on")
            .setting("ssl_cert_file", "server.crt")
            .setting("ssl_key_file", "server.key");
        let pg = LocalPostgres::start_ephemeral_with(&options).expect("start PostgreSQL with TLS");
        let port = pg.port();
        std::mem::forget(pg);
        TlsServer {
            port,
            ca_pem: ca.pem(),
        }
    })
}

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
        let pool = db::pool_with(&url, &options(CaSource::Pem(s.ca_pem.clone().into_bytes())))
            .expect("pool");
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
    let pool = db::pool_with(&url, &options(CaSource::File(path.clone()))).expect("pool");
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
    let pool =
        db::pool_with(&url, &options(CaSource::Pem(wrong.pem().into_bytes()))).expect("pool");
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
    let pool = db::pool_with(&url, &options(CaSource::Pem(Vec::new()))).expect("pool");
    assert!(!ssl_in_use(&pool).await);
}

#[tokio::test]
async fn remote_hosts_never_get_plain_tcp() {
    let Err(err) = db::pool_with(
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
    let pool = db::pool_with(&url, &options(CaSource::Pem(Vec::new()))).unwrap();
    let Err(err) = db::get(&pool).await else {
        panic!("nothing listens there");
    };
    assert!(db::is_connection_error(&err), "{err:?}");
}
