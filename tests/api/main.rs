//! The integration tests that run inside the test process, as one binary: the crate is linked
//! once, and one PostgreSQL server (support's, started on first use unless DATABASE_URL names
//! one) serves every test, each in a fresh database. `cargo test --test api`; one module:
//! `cargo test --test api sync_meta::`.
//!
//! Nothing here changes process-wide state: no test sets environment variables (child
//! processes get theirs on their `Command`), `lambda_logs` captures logs with a subscriber
//! scoped to its own thread, and `db_tls` uses the shared server, which this process starts
//! with TLS on (local clients still get plain TCP unless they ask for `sslmode=require`).
//!
//! The tests that start processes of their own (`cargo lambda watch`, moto's server, the real
//! Lambda binaries) stay binaries of their own: `tests/cold_start.rs`, `tests/lambda_smoke.rs`.

#[path = "../support/mod.rs"]
mod support;

mod alerts;
mod audiences;
mod browser;
mod changes;
mod cli;
mod db_timeouts;
mod db_tls;
mod destinations;
mod erasure;
mod faults;
mod google;
mod guard;
mod health;
mod history;
mod holdout;
mod lambda_events;
mod lambda_logs;
mod linkedin;
mod meta_client;
mod openapi;
mod overlap;
mod persons;
mod scheduler;
mod segment_props;
mod segments;
mod serve_scheduler;
mod sql_functions;
mod sync_db;
mod sync_meta;
mod tiktok;
mod value_based;
