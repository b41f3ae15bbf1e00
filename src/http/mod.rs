//! The REST API: one router for the local server and every Lambda, so what runs locally is what
//! runs in AWS.

pub mod audiences;
pub mod persons;
pub mod request;
pub mod response;
pub mod segments;

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
    /// /api/segments[/{id}[/refresh]], /api/segments/preview, /api/persons[/{id}]
    Segments,
    All,
}

enum Route<'a> {
    Audiences,
    Audience(&'a str),
    Sync,
    Segments,
    SegmentPreview,
    Segment(&'a str),
    SegmentRefresh(&'a str),
    Persons,
    Person(&'a str),
}

impl Route<'_> {
    fn group(&self) -> Group {
        match self {
            Route::Audiences => Group::Audiences,
            Route::Audience(_) => Group::Audience,
            Route::Sync => Group::Sync,
            Route::Segments
            | Route::SegmentPreview
            | Route::Segment(_)
            | Route::SegmentRefresh(_)
            | Route::Persons
            | Route::Person(_) => Group::Segments,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Route::Audiences => "/api/audiences",
            Route::Audience(_) => "/api/audiences/{id}",
            Route::Sync => "/api/audiences/sync",
            Route::Segments => "/api/segments",
            Route::SegmentPreview => "/api/segments/preview",
            Route::Segment(_) => "/api/segments/{id}",
            Route::SegmentRefresh(_) => "/api/segments/{id}/refresh",
            Route::Persons => "/api/persons",
            Route::Person(_) => "/api/persons/{id}",
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
        ["api", "segments"] => Some(Route::Segments),
        ["api", "segments", "preview"] => Some(Route::SegmentPreview),
        ["api", "segments", id] => Some(Route::Segment(id)),
        ["api", "segments", id, "refresh"] => Some(Route::SegmentRefresh(id)),
        ["api", "persons"] => Some(Route::Persons),
        ["api", "persons", id] => Some(Route::Person(id)),
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
        (Route::Segments, &Method::GET) => segments::list(app).await,
        (Route::Segments, &Method::POST) => segments::create(app, body).await,
        (Route::Segments, _) => Ok(method_not_allowed("GET, POST")),
        (Route::SegmentPreview, &Method::POST) => segments::preview(app, body).await,
        (Route::SegmentPreview, _) => Ok(method_not_allowed("POST")),
        (Route::Segment(id), &Method::GET) => segments::get(app, id).await,
        (Route::Segment(id), &Method::PUT) => segments::update(app, id, body).await,
        (Route::Segment(id), &Method::DELETE) => segments::delete(app, id).await,
        (Route::Segment(_), _) => Ok(method_not_allowed("GET, PUT, DELETE")),
        (Route::SegmentRefresh(id), &Method::POST) => segments::refresh(app, id).await,
        (Route::SegmentRefresh(_), _) => Ok(method_not_allowed("POST")),
        (Route::Persons, &Method::POST) => persons::upsert(app, body).await,
        (Route::Persons, _) => Ok(method_not_allowed("POST")),
        (Route::Person(id), &Method::PATCH) => persons::patch(app, id, body).await,
        (Route::Person(id), &Method::DELETE) => persons::delete(app, id).await,
        (Route::Person(_), _) => Ok(method_not_allowed("PATCH, DELETE")),
    }
}
