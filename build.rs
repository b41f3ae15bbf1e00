//! Embeds the RDS CA bundle when `certs/rds-global-bundle.pem` exists (see certs/README.md).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(rds_ca_bundle)");
    // A directory: cargo re-runs this when any file under it changes (a missing *file* would
    // re-run it on every build).
    println!("cargo::rerun-if-changed=certs");
    if std::path::Path::new("certs/rds-global-bundle.pem").is_file() {
        println!("cargo::rustc-cfg=rds_ca_bundle");
    }
}
