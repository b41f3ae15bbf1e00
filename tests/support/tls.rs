//! TLS for the test server: a CA made here and a certificate it signs for `localhost` and
//! `127.0.0.1`. The server a test process starts has TLS on with it, so the TLS tests share it
//! with every other test: clients on this machine still get plain TCP unless their URL asks
//! for `sslmode=require`.

use std::sync::OnceLock;

use audience_sync::db::local::{LocalOptions, LocalPostgres};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A local server with TLS on: its port, and the CA (PEM) its certificate is from.
pub struct TlsServer {
    pub port: u16,
    pub ca_pem: String,
}

/// A new CA named `name`, able to sign certificates.
pub fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
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

/// Starts a throwaway local server with `ssl=on` and a certificate for `localhost` and
/// `127.0.0.1` from a CA made for it.
pub(super) fn start_local() -> Result<(LocalPostgres, TlsServer), String> {
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
    let pg = LocalPostgres::start_ephemeral_with(&options).map_err(|e| e.to_string())?;
    let tls = TlsServer {
        port: pg.port(),
        ca_pem: ca.pem(),
    };
    Ok((pg, tls))
}

/// A local server with TLS on: the test server when this process started it; when
/// DATABASE_URL names the test server instead, one started here once (it dies with the process).
pub fn server() -> &'static TlsServer {
    if let Some(tls) = &super::test_server().tls {
        return tls;
    }
    static OWN: OnceLock<TlsServer> = OnceLock::new();
    OWN.get_or_init(|| {
        let (pg, tls) = start_local().expect("start PostgreSQL with TLS");
        std::mem::forget(pg);
        tls
    })
}
