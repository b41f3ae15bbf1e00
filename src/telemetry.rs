//! Logging: to stderr, JSON when Lambda's log format is JSON (`AWS_LAMBDA_LOG_FORMAT=JSON`),
//! human-readable otherwise. Filter from `RUST_LOG`, default `info`, with the crates that would
//! print statement parameters or HTTP bodies capped at `info` whatever it says.
//!
//! In JSON, each line carries the fields of the span it was written in: every line of a Lambda
//! request has `span.request_id` (see `http::router`). Nothing logs tokens or contact
//! data: secrets redact themselves, and request lines name the route, not the path.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// `json` as `Config::log_json` says; `directives` from `RUST_LOG` (`Config::log_filter`).
pub fn init(json: bool, directives: Option<&str>) {
    let filter = filter(directives);
    if json {
        let _ = json_subscriber(filter, std::io::stderr).try_init();
    } else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Crates whose debug lines carry data we must never log, and the most they may say:
/// tokio-postgres logs every statement's parameters (contact data, hashes) at debug; the HTTP
/// stack's debug and trace lines carry headers and bodies (the Meta token, hashed rows).
const CAPPED: [&str; 7] = [
    "tokio_postgres=info",
    "hyper=info",
    "hyper_util=info",
    "h2=info",
    "reqwest=info",
    "rustls=info",
    "aws_smithy_runtime=info",
];

/// The log filter: `directives` (`RUST_LOG` syntax; default `info`), with [`CAPPED`] applied
/// whatever they say, so that no log level prints contact data or a secret.
pub fn filter(directives: Option<&str>) -> EnvFilter {
    let base = directives
        .and_then(|d| EnvFilter::try_new(d).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    CAPPED.iter().fold(base, |f, cap| {
        f.add_directive(cap.parse().expect("static directive"))
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn enabled_under(directives: &str, target_is_postgres: bool) -> bool {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter(Some(directives)))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            if target_is_postgres {
                tracing::enabled!(target: "tokio_postgres::query", Level::DEBUG)
            } else {
                tracing::enabled!(target: "audience_sync::sync", Level::DEBUG)
            }
        })
    }

    #[test]
    fn statement_parameters_stay_out_of_the_log_at_any_level() {
        for directives in [
            "debug",
            "trace",
            "tokio_postgres=trace",
            "debug,tokio_postgres=debug",
        ] {
            assert!(!enabled_under(directives, true), "{directives}");
        }
        assert!(enabled_under("debug", false));
        assert!(!enabled_under("info", false));
    }
}
