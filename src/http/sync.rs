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
use crate::sync::{self, Batch, NoProgress, SyncAllResult, SyncOptions, SyncType};

/// POST /api/audiences/sync
pub fn router() -> Router<App> {
    Router::new().route("/api/audiences/sync", post(run))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    audience_id: Option<Uuid>,
    sync_type: Option<SyncType>,
    /// Show what the sync would do; do nothing (DESIGN §8.4).
    #[serde(default)]
    dry_run: bool,
    /// Past the removal guardrails, this once.
    #[serde(default)]
    force: bool,
}

/// One audience with `{"audience_id", "sync_type", "force", "dry_run"}` (the automatic type by
/// default; a dry run's default is `incremental`); every active audience with no body.
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
            "audience_id is required (send no body to sync every active audience; a dry run \
             or a forced sync is of one audience)",
        )
    })?;
    let options = SyncOptions {
        sync_type: req.sync_type,
        force: req.force,
    };
    if req.dry_run {
        let dry = sync::dry_run(&app, audience_id, options).await?;
        return Ok(json(StatusCode::OK, &dry));
    }
    // Without a type, the automatic one (full the first time and when memberships need a
    // refresh, incremental otherwise), as the scheduler's.
    let result = sync::run_with(&app, audience_id, options, &NoProgress, deadline).await?;
    Ok(json(StatusCode::OK, &result))
}
