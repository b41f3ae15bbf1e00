//! audience-sync: keeps ad-platform audiences (Meta Custom Audiences today) in sync with
//! segments of your own customer database. The Lambda binaries in `functions/` and the
//! `audiences` CLI are thin shells around this library; README "Layout" maps the modules.

pub mod alerts;
pub mod app;
pub mod audience;
pub mod config;
pub mod db;
pub mod destinations;
pub mod error;
pub mod health;
pub mod http;
pub mod identity;
pub mod input;
pub mod lambda;
pub mod person;
pub mod secrets;
pub mod segment;
pub mod server;
pub mod sync;
pub mod telemetry;

pub use app::App;
pub use error::{Error, Result};
