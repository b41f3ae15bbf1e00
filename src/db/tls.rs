//! TLS to PostgreSQL with rustls (*ring*), verifying the server's certificate chain and host
//! name against a CA bundle: the RDS bundle built into the binary, or a PEM file given at run
//! time (`DB_CA_BUNDLE`). Plain TCP is allowed only to a server on this machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use tokio_postgres::config::{Host, SslMode};

use super::DbError;

/// The Amazon RDS CAs (every region) and the Amazon Trust Services roots RDS Proxy chains to,
/// built into the binary so a Lambda package needs no certificate file; `certs/refresh` rebuilds
/// it (see `certs/README.md`).
const EMBEDDED_BUNDLE: &[u8] = include_bytes!("../../certs/rds-global-bundle.pem");

/// Which CAs a TLS connection to the database trusts.
#[derive(Clone, Default)]
pub enum CaSource {
    /// The RDS bundle built into the binary.
    #[default]
    Embedded,
    /// A PEM file read at run time (`DB_CA_BUNDLE`).
    File(PathBuf),
    /// PEM text given directly (tests).
    Pem(Vec<u8>),
}

impl std::fmt::Debug for CaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaSource::Embedded => f.write_str("Embedded"),
            CaSource::File(p) => f.debug_tuple("File").field(p).finish(),
            CaSource::Pem(p) => write!(f, "Pem({} bytes)", p.len()),
        }
    }
}

impl CaSource {
    /// `DB_CA_BUNDLE` when set, else the embedded bundle.
    pub fn from_path(path: Option<&Path>) -> Self {
        match path {
            Some(p) => CaSource::File(p.to_path_buf()),
            None => CaSource::Embedded,
        }
    }

    fn roots(&self) -> Result<RootCertStore, DbError> {
        let (what, pem): (String, std::borrow::Cow<'_, [u8]>) = match self {
            CaSource::Embedded => ("the built-in RDS CA bundle".into(), EMBEDDED_BUNDLE.into()),
            CaSource::File(p) => (
                format!("DB_CA_BUNDLE ({})", p.display()),
                std::fs::read(p)
                    .map_err(|e| {
                        DbError::Config(format!("DB_CA_BUNDLE: cannot read {}: {e}", p.display()))
                    })?
                    .into(),
            ),
            CaSource::Pem(b) => ("the given CA certificates".into(), b.as_slice().into()),
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| DbError::Config(format!("{what}: not a PEM bundle: {e:?}")))?;
            roots
                .add(cert)
                .map_err(|e| DbError::Config(format!("{what}: bad certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(DbError::Config(format!("{what}: no certificate in it")));
        }
        Ok(roots)
    }
}

/// How to reach the server: plain TCP (local only) or verified TLS.
#[derive(Clone)]
pub enum Connector {
    Plain,
    Tls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// Whether every host of `config` is this machine: localhost, a loopback address, or a unix
/// socket.
pub fn is_local(config: &tokio_postgres::Config) -> bool {
    let hosts_local = config.get_hosts().iter().all(|h| match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    });
    let addrs_local = config.get_hostaddrs().iter().all(|a| a.is_loopback());
    hosts_local && addrs_local && !config.get_hosts().is_empty()
}

/// Decides TLS for `config` (and adjusts its `sslmode`): a remote server always gets verified
/// TLS (`sslmode=require` here means verify-full: chain and host name are checked); a local one
/// gets TLS only when the URL asks for `sslmode=require`, else plain TCP.
pub fn connector(config: &mut tokio_postgres::Config, ca: &CaSource) -> Result<Connector, DbError> {
    let local = is_local(config);
    let wants_tls = !local || config.get_ssl_mode() == SslMode::Require;
    if !wants_tls {
        config.ssl_mode(SslMode::Disable);
        return Ok(Connector::Plain);
    }
    if !local && config.get_ssl_mode() == SslMode::Disable {
        return Err(DbError::Config(
            "sslmode=disable is allowed only for a server on this machine (localhost, \
             127.0.0.1, ::1, a unix socket); remote servers need TLS"
                .into(),
        ));
    }
    config.ssl_mode(SslMode::Require);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Config(format!("TLS: {e}")))?
        .with_root_certificates(ca.roots()?)
        .with_no_client_auth();
    Ok(Connector::Tls(
        tokio_postgres_rustls::MakeRustlsConnect::new(tls),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> tokio_postgres::Config {
        url.parse().unwrap()
    }

    #[test]
    fn local_hosts() {
        for url in [
            "postgresql://u@localhost/d",
            "postgresql://u@127.0.0.1:5432/d",
            "postgresql://u@[::1]:5432/d",
            "host=/var/run/postgresql user=u",
        ] {
            assert!(is_local(&cfg(url)), "{url}");
        }
        for url in [
            "postgresql://u@db.example.internal/d",
            "postgresql://u@10.0.0.5/d",
            "postgresql://u@localhost,db.example/d",
        ] {
            assert!(!is_local(&cfg(url)), "{url}");
        }
    }

    #[test]
    fn remote_requires_tls_and_a_bundle() {
        let mut c = cfg("postgresql://u@db.example/d?sslmode=disable");
        let err = connector(&mut c, &CaSource::Pem(Vec::new())).err().unwrap();
        assert!(err.to_string().contains("sslmode=disable"), "{err}");

        let mut c = cfg("postgresql://u@db.example/d");
        let err = connector(&mut c, &CaSource::Pem(b"not pem".to_vec()))
            .err()
            .unwrap();
        assert!(err.to_string().contains("no certificate"), "{err}");

        let mut c = cfg("postgresql://u@db.example/d");
        let missing = CaSource::File("/nonexistent/bundle.pem".into());
        let err = connector(&mut c, &missing).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("database configuration: DB_CA_BUNDLE"),
            "{err}"
        );
    }

    #[test]
    fn built_in_bundle_holds_every_certificate_of_the_file() {
        let pem = std::str::from_utf8(EMBEDDED_BUNDLE).unwrap();
        let in_file = pem.matches("-----BEGIN CERTIFICATE-----").count();
        let roots = CaSource::Embedded
            .roots()
            .expect("the built-in bundle parses");
        assert_eq!(roots.len(), in_file);
        // Each region's three current-generation roots, and RDS Proxy's Amazon roots.
        for region in ["us-east-1", "eu-west-1", "ap-southeast-2"] {
            for kind in ["RSA2048 G1", "RSA4096 G1", "ECC384 G1"] {
                let name = format!("Amazon RDS {region} Root CA {kind}");
                assert!(pem.contains(&name), "{name} missing");
            }
        }
        assert!(
            pem.contains("# Amazon Root CA 1 "),
            "RDS Proxy's root missing"
        );
        let mut c = cfg("postgresql://u@mydb.abc123.eu-west-1.rds.amazonaws.com/d");
        assert!(matches!(
            connector(&mut c, &CaSource::default()).unwrap(),
            Connector::Tls(_)
        ));
    }

    #[test]
    fn local_is_plain_unless_required() {
        let mut c = cfg("postgresql://u@127.0.0.1/d");
        assert!(matches!(
            connector(&mut c, &CaSource::Pem(Vec::new())).unwrap(),
            Connector::Plain
        ));
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        let mut c = cfg("postgresql://u@127.0.0.1/d?sslmode=require");
        assert!(connector(&mut c, &CaSource::Pem(Vec::new())).is_err());
    }
}
