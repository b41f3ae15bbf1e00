//! Logging: to stderr, JSON when Lambda's log format is JSON (`AWS_LAMBDA_LOG_FORMAT=JSON`),
//! human-readable otherwise. Filter from `RUST_LOG`, default `info`.
//!
//! In JSON, each line carries the fields of the span it was written in: every line of a Lambda
//! request has `span.request_id` (see `http::router`). Nothing logs tokens or contact
//! data: secrets redact themselves, and request lines name the route, not the path.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// `json` as `Config::log_json` says. The filter comes from `RUST_LOG` (read by
/// tracing-subscriber's own `EnvFilter`).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
