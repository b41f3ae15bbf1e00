//! The Lambda side: build the shared state once per instance, then hand each API Gateway
//! request to the same router the local server uses.

use std::sync::Arc;

use bytes::Bytes;
use lambda_http::{service_fn, Body, Request, Response};

use crate::app::App;
use crate::config::Config;
use crate::http::{handle, Group};
use crate::meta::client::MetaClient;

/// Turns a Lambda request into the router's request and back.
pub async fn handle_request(app: &App, group: Group, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = Bytes::copy_from_slice(body.as_ref());
    let response = handle(app, group, http::Request::from_parts(parts, bytes)).await;
    response.map(Body::Text)
}

/// The shared state from the environment: pool and Meta client, built once.
pub async fn build_app(config: &Config) -> anyhow::Result<App> {
    let url = config
        .database_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is not set"))?;
    let pool = crate::db::pool(url, config.db_pool_size)?;
    let meta = match &config.meta {
        Some(m) => Some(Arc::new(MetaClient::new(m.clone())?)),
        None => None,
    };
    Ok(App { pool, meta })
}

/// What a REST function's `main` calls.
pub async fn run_http(group: Group) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let app = build_app(&config)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))
        .map_err(|e| lambda_http::Error::from(e.to_string()))?;
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
    let left = event
        .context
        .deadline()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let summary = crate::scheduler::tick(app, &crate::scheduler::TickOptions::with_time_left(left))
        .await
        .map_err(|e| lambda_http::Error::from(e.to_string()))?;
    Ok(serde_json::to_value(summary)?)
}

/// What the scheduled function's `main` calls.
pub async fn run_scheduled() -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let app = build_app(&config)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))
        .map_err(|e| lambda_http::Error::from(e.to_string()))?;
    lambda_http::lambda_runtime::run(lambda_http::service_fn(
        move |event: lambda_http::LambdaEvent<serde_json::Value>| {
            let app = app.clone();
            async move { scheduled_handler(&app, event).await }
        },
    ))
    .await
}
