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
