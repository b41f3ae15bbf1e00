//! `/api/audiences` (Lambda "audiences") and `/api/audiences/{id}` (Lambda "audience").

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::error::{self as response, json, no_content, ApiResult};
use super::extract::{Id, Json, Params, Payload};
use crate::app::App;
use crate::audience::{self, store, AudiencePatch, NewAudience};
use crate::destinations::Platform;
use crate::error::Error;
use crate::sync::{log, member_store};

/// GET, POST /api/audiences; GET /api/health
pub fn collection() -> Router<App> {
    Router::new()
        .route("/api/audiences", get(list).post(create))
        .route("/api/health", get(health))
}

/// GET, PUT, DELETE /api/audiences/{id}; GET /api/audiences/{id}/holdout and /history
pub fn item() -> Router<App> {
    Router::new()
        .route("/api/audiences/{id}", get(show).put(update).delete(delete))
        .route("/api/audiences/{id}/holdout", get(holdout))
        .route("/api/audiences/{id}/history", get(history))
}

/// 200 when the database and every configured platform are fine, 503 otherwise (DESIGN §8.4).
async fn health(State(app): State<App>) -> ApiResult {
    let report = crate::health::check(&app).await;
    let status = match report.is_ok() {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    Ok(json(status, &report))
}

/// One point per finished sync, newest first, paged.
async fn history(State(app): State<App>, Id(id): Id, params: Params) -> ApiResult {
    let page = params.page()?;
    let db = crate::db::get(&app.pool).await?;
    // An unknown audience is a 404, not an empty history.
    store::get(&**db, id).await?;
    Ok(response::page(
        "history",
        log::history_page(&**db, id, &page).await?,
    ))
}

/// Fields the server sets. `meta_audience_id` among them: pointing an audience at another Meta
/// audience would let a full sync replace, or a DELETE delete, any audience the token reaches.
const SERVER_SET: &[&str] = &[
    "id",
    "status",
    "total_synced",
    "last_synced_at",
    "sync_error_message",
    "meta_audience_id",
    "meta_seed_audience_id",
    "destination_audience_id",
    "created_at",
    "updated_at",
];

impl Payload for NewAudience {
    const READ_ONLY: &'static [&'static str] = SERVER_SET;
}

impl Payload for AudiencePatch {
    const READ_ONLY: &'static [&'static str] = SERVER_SET;
}

async fn list(State(app): State<App>, params: Params) -> ApiResult {
    let filter = store::Filter {
        is_active: params.bool("is_active")?,
        destination: destination_param(&params)?,
    };
    let page = params.page()?;
    let db = crate::db::get(&app.pool).await?;
    Ok(response::page(
        "audiences",
        store::list_page(&**db, filter, &page).await?,
    ))
}

/// `?destination=` names a platform.
fn destination_param(params: &Params) -> Result<Option<Platform>, Error> {
    let Some(raw) = params.get("destination") else {
        return Ok(None);
    };
    Platform::parse(raw).map(Some).ok_or_else(|| {
        let allowed: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
        Error::invalid(
            "destination",
            format!("destination must be one of {}", allowed.join(", ")),
        )
    })
}

async fn create(State(app): State<App>, Json(input): Json<NewAudience>) -> ApiResult {
    let db = crate::db::get(&app.pool).await?;
    let created = audience::create(&**db, input).await?;
    Ok(json(StatusCode::CREATED, &created))
}

const INCLUDES: [&str; 3] = ["members", "metrics", "sync_logs"];

async fn show(State(app): State<App>, Id(id): Id, params: Params) -> ApiResult {
    let include = params.list("include");
    if let Some(part) = include.iter().find(|p| !INCLUDES.contains(p)) {
        return Err(Error::invalid(
            "include",
            format!("include takes members, metrics and sync_logs, not {part:?}"),
        )
        .into());
    }
    let members_limit = params.int("members_limit", 1, 1000)?.unwrap_or(100);
    let db = crate::db::get(&app.pool).await?;
    let a = store::get(&**db, id).await?;
    let mut body = serde_json::to_value(&a).unwrap_or(Value::Null);
    if include.contains(&"members") {
        body["members"] = json!(member_store::list(&**db, id, members_limit).await?);
    }
    if include.contains(&"metrics") {
        body["metrics"] = audience::metrics(&**db, &a).await?;
    }
    if include.contains(&"sync_logs") {
        body["sync_logs"] = json!(log::recent(&**db, id, 50).await?);
    }
    Ok(json(StatusCode::OK, &body))
}

async fn update(State(app): State<App>, Id(id): Id, Json(patch): Json<AudiencePatch>) -> ApiResult {
    let mut db = crate::db::get(&app.pool).await?;
    let updated = audience::update(&mut db, id, patch).await?;
    Ok(json(StatusCode::OK, &updated))
}

/// `keep_in_meta=true` deletes only the record here.
async fn delete(State(app): State<App>, Id(id): Id, params: Params) -> ApiResult {
    let keep = params.bool("keep_in_meta")?.unwrap_or(false);
    audience::delete(&app, id, keep).await?;
    Ok(no_content())
}

/// `GET /api/audiences/{id}/holdout?limit=&cursor=`: the held-out people, by person id.
async fn holdout(State(app): State<App>, Id(id): Id, params: Params) -> ApiResult {
    let limit = params
        .int("limit", 1, crate::input::PAGE_MAX)?
        .unwrap_or(crate::input::PAGE_DEFAULT);
    let after = params
        .get("cursor")
        .map(crate::input::IdCursor::decode)
        .transpose()?;
    let db = crate::db::get(&app.pool).await?;
    let (ids, next) = audience::holdout(&**db, id, after, limit).await?;
    Ok(response::page_of(
        "person_ids",
        ids,
        next.map(|c| c.encode()),
    ))
}
