//! Rebuilds the crate when a migration is added: `refinery::embed_migrations!` reads the
//! `migrations` folder at compile time, and cargo does not watch a folder by itself.

fn main() {
    println!("cargo::rerun-if-changed=migrations");
}
