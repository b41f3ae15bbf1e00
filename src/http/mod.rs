//! The REST API: an axum `Router` per resource. The local server serves them all merged; each
//! Lambda serves its own group (`lambda_http::run` on the same `Router`), so what runs locally
//! is what runs in AWS. Handlers only read the request, call the domain, and shape the answer;
//! errors become the API's error shape in one place (`error`).

pub mod audiences;
pub mod browser;
pub mod error;
pub mod extract;
pub mod persons;
pub mod segments;
pub mod sync;

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tracing::Instrument;

use crate::app::App;

/// The Lambda functions of the API, each serving its own routes. `All` is the local server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// GET, POST /api/audiences; GET /api/health
    Audiences,
    /// GET, PUT, DELETE /api/audiences/{id}; GET /api/audiences/{id}/holdout and /history
    Audience,
    /// POST /api/audiences/sync
    Sync,
    /// /api/segments[/{id}[/refresh]], /api/segments/preview, /api/segments/overlap,
    /// /api/persons[/{id}]
    Segments,
    All,
}

/// The routes of `group`, without state.
pub fn routes(group: Group) -> Router<App> {
    match group {
        Group::Audiences => audiences::collection(),
        Group::Audience => audiences::item(),
        Group::Sync => sync::router(),
        Group::Segments => segments::router().merge(persons::router()),
        Group::All => [
            Group::Audiences,
            Group::Audience,
            Group::Sync,
            Group::Segments,
        ]
        .into_iter()
        .fold(Router::new(), |all, g| all.merge(routes(g))),
    }
}

/// What a Lambda or the local server serves: `group`'s routes over `app`, with the error shape
/// for unknown routes and methods, and a log line per request.
pub fn router(group: Group, app: App) -> Router {
    routes(group)
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .with_state(app)
}

/// One line per request, naming the route (never the path, which may carry ids) inside a span
/// carrying the request id, as do all lines the request writes.
async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unknown".to_string(), |p| p.as_str().to_string());
    let span = tracing::info_span!("request", request_id = %crate::lambda::request_id(&req));
    let response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            route,
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_millis() as u64,
            "request"
        )
    });
    response
}
