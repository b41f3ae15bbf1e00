//! `POST /api/audiences/sync` (Lambda "sync").

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use uuid::Uuid;

use super::error::{json, ApiResult};
use super::extract::{RawBody, SyncDeadline};
use crate::app::App;
use crate::error::Error;
use crate::input;
use crate::sync::{self, Batch, NoProgress, SyncAllResult, SyncType};

/// POST /api/audiences/sync
pub fn router() -> Router<App> {
    Router::new().route("/api/audiences/sync", post(run))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    audience_id: Option<Uuid>,
    sync_type: Option<SyncType>,
}

/// One audience with `{"audience_id", "sync_type"}` (the automatic type by default); every active
/// audience with no body.
/// In Lambda, a sync still running near the invocation's end pauses at its checkpoint and
/// answers `paused`; sync-all then starts no further audience.
async fn run(
    State(app): State<App>,
    SyncDeadline(deadline): SyncDeadline,
    RawBody(body): RawBody,
) -> ApiResult {
    if body.iter().all(u8::is_ascii_whitespace) {
        let all = sync::run_many(&app, &Batch::Active(deadline), &NoProgress).await?;
        return Ok(json(StatusCode::OK, &SyncAllResult::from(all)));
    }
    let req: SyncRequest = input::parse_body(&body, &[], &[])?;
    let audience_id = req.audience_id.ok_or_else(|| {
        Error::invalid(
            "audience_id",
            "audience_id is required (send no body to sync every active audience)",
        )
    })?;
    // Without a type, the automatic one (full the first time and when memberships need a
    // refresh, incremental otherwise), as the scheduler's.
    let result = sync::run(&app, audience_id, req.sync_type, &NoProgress, deadline).await?;
    Ok(json(StatusCode::OK, &result))
}
