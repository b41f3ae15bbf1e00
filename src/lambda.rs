//! The Lambda side: build the shared state once per instance (secrets included). A REST
//! function then serves its group's router (`lambda_http::run(http::router(group, app))` in its
//! `main`); the scheduled function runs scheduler passes.

use lambda_http::request::RequestContext;
use lambda_http::RequestExt;

use crate::app::App;
use crate::config::Config;
use crate::sync::scheduler::{self, TickOptions};

/// The id that Lambda's own log lines (START, END, REPORT) carry; API Gateway's request id when
/// the request did not come through the runtime (tests).
pub fn request_id<B>(req: &http::Request<B>) -> String {
    if let Some(ctx) = req.lambda_context_ref() {
        if !ctx.request_id.is_empty() {
            return ctx.request_id.clone();
        }
    }
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// The cold start of every function: logging, configuration from the environment, the secrets
/// it points at (fetched concurrently, once), then the shared state. On failure, one log line
/// naming what is wrong and exit status 1 (Lambda reports the init failure and retries on the
/// next request).
pub async fn cold_start() -> App {
    let config = Config::from_env();
    crate::telemetry::init(
        config.as_ref().is_ok_and(|c| c.log_json),
        config.as_ref().ok().and_then(|c| c.log_filter.as_deref()),
    );
    let built = async move { App::build(&config?.resolve_secrets().await?).await };
    match built.await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            std::process::exit(1);
        }
    }
}

/// The scheduled function: one scheduler pass per EventBridge event, within the invocation's
/// remaining time. Returns the pass's summary.
pub async fn scheduled_handler(
    app: &App,
    event: lambda_http::LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_http::Error> {
    let left = time_left(event.context.deadline(), std::time::SystemTime::now());
    let opts = TickOptions::new(left, &app.sync);
    let summary = scheduler::tick(app, opts)
        .await
        .map_err(|e| lambda_http::Error::from(e.to_string()))?;
    Ok(serde_json::to_value(summary)?)
}

/// Lambda's hard limit on one invocation.
const MAX_INVOCATION: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The invocation's remaining time. A deadline that cannot be real (local emulators such as
/// `cargo lambda watch` send a fixed one in 1970) is treated as Lambda's longest invocation
/// rather than as no time at all.
pub fn time_left(
    deadline: std::time::SystemTime,
    now: std::time::SystemTime,
) -> std::time::Duration {
    match deadline.duration_since(now) {
        Ok(left) => left.min(MAX_INVOCATION),
        Err(past) if past.duration() > MAX_INVOCATION => MAX_INVOCATION,
        Err(_) => std::time::Duration::ZERO,
    }
}

/// When a sync started by an API request must pause at its checkpoint: the invocation's
/// deadline (`lambda_http` puts its context in the request's extensions) less half the reserve. The
/// local server has no invocation deadline, hence none.
pub fn sync_deadline(extensions: &http::Extensions, app: &App) -> Option<std::time::Instant> {
    let ctx = extensions.get::<lambda_http::Context>()?;
    let left = time_left(ctx.deadline(), std::time::SystemTime::now());
    // As a scheduler pass's syncs: half the reserve is left to write the checkpoint and answer.
    Some(std::time::Instant::now() + left - app.sync.reserve_within(left) / 2)
}

/// What the scheduled function's `main` calls.
pub async fn run_scheduled() -> Result<(), lambda_http::Error> {
    let app = cold_start().await;
    lambda_http::lambda_runtime::run(lambda_http::service_fn(
        move |event: lambda_http::LambdaEvent<serde_json::Value>| {
            let app = app.clone();
            async move { scheduled_handler(&app, event).await }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn time_left_from_the_deadline() {
        let now = SystemTime::now();
        assert_eq!(
            time_left(now + Duration::from_secs(90), now),
            Duration::from_secs(90)
        );
        assert_eq!(time_left(now - Duration::from_secs(1), now), Duration::ZERO);
        assert_eq!(
            time_left(UNIX_EPOCH + Duration::from_secs(600), now),
            MAX_INVOCATION
        );
        assert_eq!(
            time_left(now + Duration::from_secs(3600), now),
            MAX_INVOCATION
        );
    }
}
