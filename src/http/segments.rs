//! `/api/segments…` (Lambda "segments", with the person routes).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

use super::error::{self as response, json, no_content, ApiResult};
use super::extract::{Id, Json, Params, Payload};
use crate::app::App;
use crate::segment::{self, store, NewSegment, OverlapRequest, Rule, SegmentPatch};

pub fn router() -> Router<App> {
    Router::new()
        .route("/api/segments", get(list).post(create))
        .route("/api/segments/preview", post(preview))
        .route("/api/segments/overlap", post(overlap))
        .route("/api/segments/{id}", get(show).put(update).delete(delete))
        .route("/api/segments/{id}/refresh", post(refresh))
}

impl Payload for NewSegment {
    const READ_ONLY: &'static [&'static str] = READ_ONLY;
}

impl Payload for SegmentPatch {
    const READ_ONLY: &'static [&'static str] = READ_ONLY;
}

const READ_ONLY: &[&str] = &[
    "id",
    "member_count",
    "refreshed_at",
    "created_at",
    "updated_at",
    "audiences",
];

async fn list(State(app): State<App>, params: Params) -> ApiResult {
    let page = params.page()?;
    let db = crate::db::get(&app.pool).await?;
    Ok(response::page("segments", store::list(&**db, &page).await?))
}

async fn create(State(app): State<App>, Json(input): Json<NewSegment>) -> ApiResult {
    let mut db = crate::db::get(&app.pool).await?;
    let tx = db.transaction().await?;
    let created = segment::create(&*tx, input).await?;
    tx.commit().await?;
    Ok(json(StatusCode::CREATED, &created))
}

async fn show(State(app): State<App>, Id(id): Id) -> ApiResult {
    let db = crate::db::get(&app.pool).await?;
    Ok(json(StatusCode::OK, &store::get(&**db, id).await?))
}

async fn update(State(app): State<App>, Id(id): Id, Json(patch): Json<SegmentPatch>) -> ApiResult {
    let mut db = crate::db::get(&app.pool).await?;
    let tx = db.transaction().await?;
    let updated = segment::update(&*tx, id, patch).await?;
    tx.commit().await?;
    Ok(json(StatusCode::OK, &updated))
}

async fn delete(State(app): State<App>, Id(id): Id) -> ApiResult {
    let db = crate::db::get(&app.pool).await?;
    segment::delete(&**db, id).await?;
    Ok(no_content())
}

async fn refresh(State(app): State<App>, Id(id): Id) -> ApiResult {
    let db = crate::db::get(&app.pool).await?;
    segment::refresh(&**db, id).await?;
    Ok(json(StatusCode::OK, &store::get(&**db, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    rule: Value,
}

impl Payload for PreviewRequest {}

async fn preview(State(app): State<App>, Json(req): Json<PreviewRequest>) -> ApiResult {
    let rule = Rule::parse("rule", &req.rule)?;
    let db = crate::db::get(&app.pool).await?;
    Ok(json(StatusCode::OK, &segment::preview(&**db, &rule).await?))
}

impl Payload for OverlapRequest {}

async fn overlap(State(app): State<App>, Json(req): Json<OverlapRequest>) -> ApiResult {
    let db = crate::db::get(&app.pool).await?;
    Ok(json(StatusCode::OK, &segment::overlap(&**db, &req).await?))
}
