//! The Lambda side: build the shared state once per instance (secrets included), then hand each
//! API Gateway request to the same router the local server uses.

use std::sync::Arc;

use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{service_fn, Body, Request, RequestExt, Response};
use tracing::Instrument;

use crate::app::App;
use crate::config::Config;
use crate::db::{CaSource, PoolOptions};
use crate::destinations::meta::client::MetaClient;
use crate::http::{handle, Group};

/// Turns a Lambda request into the router's request and back. Every log line of the request
/// carries its `request_id` (the Lambda invocation's, else API Gateway's).
pub async fn handle_request(app: &App, group: Group, req: Request) -> Response<Body> {
    let span = tracing::info_span!("request", request_id = %request_id(&req));
    async move {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::copy_from_slice(body.as_ref());
        let response = handle(app, group, http::Request::from_parts(parts, bytes)).await;
        response.map(Body::Text)
    }
    .instrument(span)
    .await
}

/// The id that Lambda's own log lines (START, END, REPORT) carry; API Gateway's request id when
/// the request did not come through the runtime (tests).
pub fn request_id(req: &Request) -> String {
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

/// The shared state from a resolved configuration: pool and Meta client, built once.
pub async fn build_app(config: &Config) -> anyhow::Result<App> {
    let url = config
        .database_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL or DB_SECRET_ARN must be set"))?;
    let pool = crate::db::pool_with(
        url,
        &PoolOptions {
            max_size: config.db_pool_size,
            ca: CaSource::from_path(config.db_ca_bundle.as_deref()),
            ..PoolOptions::default()
        },
    )?;
    let meta = match &config.meta {
        Some(m) => Some(Arc::new(MetaClient::new(m.clone())?)),
        None => None,
    };
    Ok(App { pool, meta })
}

/// The cold start of every function: configuration from the environment, the secrets it
/// points at (fetched concurrently, once), then the shared state.
pub async fn cold_start() -> anyhow::Result<App> {
    let config = Config::resolve_from_env().await?;
    build_app(&config).await
}

/// [`cold_start`], or one log line naming what is wrong and exit status 1 (Lambda reports the
/// init failure and retries on the next request).
pub async fn cold_start_or_exit() -> App {
    match cold_start().await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            std::process::exit(1);
        }
    }
}

/// What a REST function's `main` calls.
pub async fn run_http(group: Group) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let app = cold_start_or_exit().await;
    lambda_http::run(service_fn(move |req: Request| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(handle_request(&app, group, req).await) }
    }))
    .await
}

/// The scheduled function: one scheduler pass per EventBridge event, within the invocation's
/// remaining time. Returns the pass's summary.
pub async fn scheduled_handler(
    app: &App,
    event: lambda_http::LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_http::Error> {
    let left = time_left(event.context.deadline(), std::time::SystemTime::now());
    let summary = crate::scheduler::tick(app, &crate::scheduler::TickOptions::with_time_left(left))
        .await
        .map_err(|e| lambda_http::Error::from(e.to_string()))?;
    Ok(serde_json::to_value(summary)?)
}

/// Lambda's hard limit on one invocation.
const MAX_INVOCATION: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The invocation's remaining time. A deadline that cannot be real (local emulators such as
/// `cargo lambda watch` send a fixed one in 1970) is treated as Lambda's longest invocation
/// rather than as no time at all.
fn time_left(deadline: std::time::SystemTime, now: std::time::SystemTime) -> std::time::Duration {
    match deadline.duration_since(now) {
        Ok(left) => left.min(MAX_INVOCATION),
        Err(past) if past.duration() > MAX_INVOCATION => MAX_INVOCATION,
        Err(_) => std::time::Duration::ZERO,
    }
}

/// What the scheduled function's `main` calls.
pub async fn run_scheduled() -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let app = cold_start_or_exit().await;
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
