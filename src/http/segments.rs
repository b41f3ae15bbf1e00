//! Handlers of the segment routes.

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{parse_body, uuid_param};
use super::response::{json, no_content, ApiResponse};
use crate::app::App;
use crate::error::Result;
use crate::segment::{store, NewSegment, Rule, SegmentPatch};

const READ_ONLY: &[&str] = &[
    "id",
    "member_count",
    "refreshed_at",
    "created_at",
    "updated_at",
    "audiences",
];

pub async fn list(app: &App) -> Result<ApiResponse> {
    let db = app.pool.get().await?;
    let segments = store::list(&**db).await?;
    Ok(json(StatusCode::OK, &json!({ "segments": segments })))
}

pub async fn create(app: &App, body: &Bytes) -> Result<ApiResponse> {
    let input: NewSegment = parse_body(body, READ_ONLY)?;
    let mut db = app.pool.get().await?;
    let tx = db.transaction().await?;
    let created = store::create(&*tx, input).await?;
    tx.commit().await?;
    Ok(json(StatusCode::CREATED, &created))
}

pub async fn get(app: &App, id: &str) -> Result<ApiResponse> {
    let id = uuid_param("id", id)?;
    let db = app.pool.get().await?;
    Ok(json(StatusCode::OK, &store::get(&**db, id).await?))
}

pub async fn update(app: &App, id: &str, body: &Bytes) -> Result<ApiResponse> {
    let id = uuid_param("id", id)?;
    let patch: SegmentPatch = parse_body(body, READ_ONLY)?;
    let mut db = app.pool.get().await?;
    let tx = db.transaction().await?;
    let updated = store::update(&*tx, id, patch).await?;
    tx.commit().await?;
    Ok(json(StatusCode::OK, &updated))
}

pub async fn delete(app: &App, id: &str) -> Result<ApiResponse> {
    let id = uuid_param("id", id)?;
    let db = app.pool.get().await?;
    store::delete(&**db, id).await?;
    Ok(no_content())
}

pub async fn refresh(app: &App, id: &str) -> Result<ApiResponse> {
    let id = uuid_param("id", id)?;
    let db = app.pool.get().await?;
    store::refresh(&**db, id).await?;
    Ok(json(StatusCode::OK, &store::get(&**db, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    rule: Value,
}

pub async fn preview(app: &App, body: &Bytes) -> Result<ApiResponse> {
    let req: PreviewRequest = parse_body(body, &[])?;
    let rule = Rule::parse("rule", &req.rule)?;
    let db = app.pool.get().await?;
    Ok(json(StatusCode::OK, &store::preview(&**db, &rule).await?))
}
