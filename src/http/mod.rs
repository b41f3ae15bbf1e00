//! The REST API: one router for the local server and every Lambda, so what runs locally is what
//! runs in AWS.

pub mod audiences;
pub mod request;
pub mod response;

use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request};

use crate::app::App;
use response::{method_not_allowed, not_found_route, ApiResponse};

/// The Lambda functions of the API; each serves its own routes. `All` is the local server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// GET, POST /api/audiences
    Audiences,
    /// GET, PUT, DELETE /api/audiences/{id}
    Audience,
    /// POST /api/audiences/sync
    Sync,
    All,
}

enum Route<'a> {
    Audiences,
    Audience(&'a str),
    Sync,
}

impl Route<'_> {
    fn group(&self) -> Group {
        match self {
            Route::Audiences => Group::Audiences,
            Route::Audience(_) => Group::Audience,
            Route::Sync => Group::Sync,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Route::Audiences => "/api/audiences",
            Route::Audience(_) => "/api/audiences/{id}",
            Route::Sync => "/api/audiences/sync",
        }
    }
}

/// API Gateway may prefix the stage; everything from `/api/` on is ours.
fn route(path: &str) -> Option<Route<'_>> {
    let path = &path[path.find("/api/")?..];
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        ["api", "audiences"] => Some(Route::Audiences),
        ["api", "audiences", "sync"] => Some(Route::Sync),
        ["api", "audiences", id] => Some(Route::Audience(id)),
        _ => None,
    }
}

pub async fn handle(app: &App, group: Group, req: Request<Bytes>) -> ApiResponse {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let body = req.into_body();
    let found = route(&path).filter(|r| group == Group::All || r.group() == group);
    let route_name = found.as_ref().map_or("unknown", Route::name);
    let response = match found {
        None => not_found_route(),
        Some(r) => dispatch(app, &method, r, query.as_deref(), &body)
            .await
            .unwrap_or_else(ApiResponse::from),
    };
    tracing::info!(
        method = %method,
        route = route_name,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

async fn dispatch(
    app: &App,
    method: &Method,
    route: Route<'_>,
    query: Option<&str>,
    body: &Bytes,
) -> crate::error::Result<ApiResponse> {
    match (route, method) {
        (Route::Audiences, &Method::GET) => audiences::list(app, query).await,
        (Route::Audiences, &Method::POST) => audiences::create(app, body).await,
        (Route::Audiences, _) => Ok(method_not_allowed("GET, POST")),
        (Route::Sync, &Method::POST) => audiences::sync(app, body).await,
        (Route::Sync, _) => Ok(method_not_allowed("POST")),
        (Route::Audience(id), &Method::GET) => audiences::get(app, id, query).await,
        (Route::Audience(id), &Method::PUT) => audiences::update(app, id, body).await,
        (Route::Audience(id), &Method::DELETE) => audiences::delete(app, id, query).await,
        (Route::Audience(_), _) => Ok(method_not_allowed("GET, PUT, DELETE")),
    }
}
