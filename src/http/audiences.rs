//! Handlers of the audience routes.

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::request::{bool_param, int_param, parse_body, query_pairs, uuid_param};
use super::response::{json, no_content, ApiResponse};
use crate::app::App;
use crate::audience::{self, AudiencePatch, NewAudience};
use crate::error::{Error, Result};
use crate::sync::{self, log, NoProgress, SyncType};

const READ_ONLY: &[&str] = &[
    "id",
    "status",
    "total_synced",
    "last_synced_at",
    "sync_error_message",
    "meta_seed_audience_id",
    "created_at",
    "updated_at",
];

pub async fn list(app: &App, query: Option<&str>) -> Result<ApiResponse> {
    let mut is_active = None;
    for (k, v) in query_pairs(query) {
        if k == "is_active" {
            is_active = Some(bool_param("is_active", &v)?);
        }
    }
    let db = crate::db::get(&app.pool).await?;
    let audiences = audience::list(&**db, is_active).await?;
    Ok(json(StatusCode::OK, &json!({ "audiences": audiences })))
}

pub async fn create(app: &App, body: &Bytes) -> Result<ApiResponse> {
    let input: NewAudience = parse_body(body, &[READ_ONLY, &["meta_audience_id"]].concat())?;
    let db = crate::db::get(&app.pool).await?;
    let created = audience::create(&**db, input).await?;
    Ok(json(StatusCode::CREATED, &created))
}

pub async fn get(app: &App, id: &str, query: Option<&str>) -> Result<ApiResponse> {
    let id = uuid_param("id", id)?;
    let mut include: Vec<String> = Vec::new();
    let mut members_limit = 100;
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "include" => {
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    if !["members", "metrics", "sync_logs"].contains(&part) {
                        return Err(Error::invalid(
                            "include",
                            format!("include takes members, metrics and sync_logs, not {part:?}"),
                        ));
                    }
                    include.push(part.to_string());
                }
            }
            "members_limit" => members_limit = int_param("members_limit", &v, 1, 1000)?,
            _ => {}
        }
    }
    let db = crate::db::get(&app.pool).await?;
    let a = audience::get(&**db, id).await?;
    let mut body = serde_json::to_value(&a).unwrap_or(Value::Null);
    let wants = |what: &str| include.iter().any(|i| i == what);
    if wants("members") {
        body["members"] = json!(audience::members(&**db, id, members_limit).await?);
    }
    if wants("metrics") {
        body["metrics"] = audience::metrics(&**db, &a).await?;
    }
    if wants("sync_logs") {
        body["sync_logs"] = json!(log::recent(&**db, id, 50).await?);
    }
    Ok(json(StatusCode::OK, &body))
}

pub async fn update(app: &App, id: &str, body: &Bytes) -> Result<ApiResponse> {
    let id = uuid_param("id", id)?;
    let patch: AudiencePatch = parse_body(body, READ_ONLY)?;
    let mut db = crate::db::get(&app.pool).await?;
    let updated = audience::update(&mut db, id, patch).await?;
    Ok(json(StatusCode::OK, &updated))
}

/// Deletes in Meta first (when the audience is there), then here; a Meta failure deletes
/// nothing. `keep_in_meta=true` deletes only the record here.
pub async fn delete(app: &App, id: &str, query: Option<&str>) -> Result<ApiResponse> {
    let id = uuid_param("id", id)?;
    let mut keep_in_meta = false;
    for (k, v) in query_pairs(query) {
        if k == "keep_in_meta" {
            keep_in_meta = bool_param("keep_in_meta", &v)?;
        }
    }
    let conn = crate::db::get(&app.pool).await?;
    let a = audience::get(&**conn, id).await?;
    let lock = sync::AudienceLock::try_acquire(conn, id)
        .await?
        .ok_or_else(|| {
            Error::Conflict(
                "a sync of this audience is running; delete it when the sync has finished".into(),
            )
        })?;
    let in_meta = a.meta_audience_id.is_some() || a.meta_seed_audience_id.is_some();
    if in_meta && !keep_in_meta {
        let client = app.meta.as_deref().ok_or_else(|| {
            Error::Conflict(
                "the audience exists in Meta but Meta is not configured here: set META_ACCESS_TOKEN \
                 to delete it there too, or pass keep_in_meta=true to delete only this record"
                    .into(),
            )
        })?;
        sync::meta::delete_in_meta(client, &a).await?;
    }
    audience::delete(lock.client(), id).await?;
    lock.release().await?;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    audience_id: Option<Uuid>,
    sync_type: Option<SyncType>,
}

/// One audience with `{"audience_id", "sync_type"}`; every active audience with no body.
pub async fn sync(app: &App, body: &Bytes) -> Result<ApiResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        let all = sync::run_all(app, &NoProgress).await?;
        return Ok(json(StatusCode::OK, &all));
    }
    let req: SyncRequest = parse_body(body, &[])?;
    let audience_id = req.audience_id.ok_or_else(|| {
        Error::invalid(
            "audience_id",
            "audience_id is required (send no body to sync every active audience)",
        )
    })?;
    let sync_type = req.sync_type.unwrap_or(SyncType::Incremental);
    let result = sync::run(app, audience_id, sync_type, &NoProgress).await?;
    Ok(json(StatusCode::OK, &result))
}
