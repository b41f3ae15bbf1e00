//! Logging: to stderr, JSON in Lambda (or when `AWS_LAMBDA_LOG_FORMAT=JSON`), human-readable
//! on a terminal. Filter from `RUST_LOG`, default `info`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .map(|f| f.eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .flatten_event(true)
            .try_init()
    } else {
        builder.try_init()
    };
}
