//! Logging: to stderr, JSON in Lambda (or when `AWS_LAMBDA_LOG_FORMAT=JSON`), human-readable
//! on a terminal. Filter from `RUST_LOG`, default `info`.
//!
//! In JSON, each line carries the fields of the span it was written in: every line of a Lambda
//! request has `span.request_id` (see `lambda::handle_request`). Nothing logs tokens or contact
//! data: secrets redact themselves, and request lines name the route, not the path.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .map(|f| f.eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    if json {
        let _ = json_subscriber(filter, std::io::stderr).try_init();
    } else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// The JSON subscriber Lambda uses, writing to `writer` (tests capture it).
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .json()
        .with_current_span(true)
        .flatten_event(true)
        .finish()
}
