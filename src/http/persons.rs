//! Handlers of the person routes: bulk upsert, consent, erasure.

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::request::{parse_body, uuid_param};
use super::response::{json, no_content, ApiResponse};
use crate::app::App;
use crate::error::Result;
use crate::person::{self, ConsentPatch};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertRequest {
    persons: Vec<Value>,
}

pub async fn upsert(app: &App, body: &Bytes) -> Result<ApiResponse> {
    let req: UpsertRequest = parse_body(body, &[])?;
    let db = app.pool.get().await?;
    let result = person::upsert(&**db, req.persons).await?;
    Ok(json(StatusCode::OK, &result))
}

pub async fn patch(app: &App, id: &str, body: &Bytes) -> Result<ApiResponse> {
    let id = uuid_param("id", id)?;
    let patch: ConsentPatch = parse_body(body, &[])?;
    let db = app.pool.get().await?;
    Ok(json(
        StatusCode::OK,
        &person::set_consent(&**db, id, patch).await?,
    ))
}

pub async fn delete(app: &App, id: &str) -> Result<ApiResponse> {
    let id = uuid_param("id", id)?;
    let db = app.pool.get().await?;
    person::erase(&**db, id).await?;
    Ok(no_content())
}
