//! `/api/persons…` (Lambda "segments"): bulk upsert, consent, erasure.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{patch, post};
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

use super::error::{json, no_content, ApiResult};
use super::extract::{Id, Json, Payload};
use crate::app::App;
use crate::person::{self, ConsentPatch};

pub fn router() -> Router<App> {
    Router::new()
        .route("/api/persons", post(upsert))
        .route("/api/persons/{id}", patch(consent).delete(erase))
}

/// Rows stay `Value`s here so that one malformed row cannot reject the others.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertRequest {
    persons: Vec<Value>,
}

impl Payload for UpsertRequest {
    /// Each person is checked on its own: a bad one is a row error, the others are written.
    const ROWS: &'static [&'static str] = &["persons"];
}
impl Payload for ConsentPatch {}

async fn upsert(State(app): State<App>, Json(req): Json<UpsertRequest>) -> ApiResult {
    let db = crate::db::get(&app.pool).await?;
    let result = person::upsert(&**db, req.persons).await?;
    Ok(json(StatusCode::OK, &result))
}

async fn consent(State(app): State<App>, Id(id): Id, Json(patch): Json<ConsentPatch>) -> ApiResult {
    let db = crate::db::get(&app.pool).await?;
    Ok(json(
        StatusCode::OK,
        &person::set_consent(&**db, id, patch).await?,
    ))
}

async fn erase(State(app): State<App>, Id(id): Id) -> ApiResult {
    let db = crate::db::get(&app.pool).await?;
    person::erase(&**db, id).await?;
    Ok(no_content())
}
