//! The sync engine: one audience brought to its segment, in the database and on its platform.
//! The same engine runs a single sync (`POST /api/audiences/sync`, `audiences sync`), "sync
//! all" (the same route without a body) and a scheduler pass (the scheduled Lambda,
//! `audiences tick`): see [`run`] and [`run_many`]. A dry run ([`dry_run`]) makes a sync's
//! diff and rolls it back; the removal guardrails ([`guard`]) block a sync that would take out
//! too much.
//!
//! One sync per audience at a time ([`AudienceLock`]); the whole sync runs on the connection
//! that holds the lock, which is all a Lambda instance needs.

pub mod change_log;
mod diff;
pub mod dry_run;
pub mod guard;
pub mod history;
pub mod lock;
pub mod log;
pub mod member_store;
pub mod members;
pub mod purge;
mod run;
pub mod scheduler;

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::App;
use crate::audience::store as audiences;
use crate::audience::Audience;
use crate::error::{Error, Result};
pub use dry_run::{dry_run, DryRun};
pub use lock::AudienceLock;
pub use run::LOOKALIKE_MIN_SEED;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncType {
    Full,
    Incremental,
    Update,
}

impl SyncType {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncType::Full => "full",
            SyncType::Incremental => "incremental",
            SyncType::Update => "update",
        }
    }
}

impl FromStr for SyncType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "full" => Ok(SyncType::Full),
            "incremental" => Ok(SyncType::Incremental),
            "update" => Ok(SyncType::Update),
            other => Err(format!(
                "sync_type must be full, incremental or update, not {other:?}"
            )),
        }
    }
}

/// A sync log row's status (`audience_sync_log.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Pending,
    /// Running, or paused at a checkpoint for a later run to resume.
    InProgress,
    Completed,
    Failed,
    /// A sync's answer only (its log row stays `in_progress`): out of time, stopped at its
    /// checkpoint; the next run of the audience (the scheduler's, or any sync) resumes it.
    Paused,
    /// Stopped by the removal guardrails before any platform call ([`guard`]).
    Blocked,
}

/// Progress of a sync, for a terminal's progress bar.
pub trait Progress: Send + Sync {
    /// Whether `begin` wants the total (computing it costs a scan of the audience).
    fn shows_total(&self) -> bool {
        false
    }
    fn begin(&self, _stage: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// The answer of `POST /api/audiences/sync` for one audience.
#[derive(Debug, Clone, Serialize)]
pub struct SyncResult {
    pub audience_id: Uuid,
    pub synced_count: i32,
    pub failed_count: i32,
    pub sync_log_id: Uuid,
    /// `completed`, `failed`, `paused` (out of time at a checkpoint) or `blocked`.
    pub status: SyncStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// It carried on a sync an earlier run had started.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
    /// A blocked sync's limit and numbers (`blocked_by`, `would_remove`, `holds`,
    /// `would_leave`), beside the other fields.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<guard::Block>,
}

/// What a sync is asked to do beyond its type.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// `None`: the [`automatic`] type.
    pub sync_type: Option<SyncType>,
    /// Past the removal guardrails, this once (never the scheduler's).
    pub force: bool,
}

/// The audience's lock, or the conflict a second sync (or a dry run during a sync) gets.
async fn lock(app: &App, audience_id: Uuid) -> Result<AudienceLock> {
    let conn = crate::db::get(&app.pool).await?;
    AudienceLock::try_acquire(conn, audience_id)
        .await?
        .ok_or_else(|| {
            Error::Conflict(format!(
                "a sync of audience {audience_id} is already running; try again when it has finished"
            ))
        })
}

/// Runs one sync of one audience: of `sync_type`, or when `None` the [`automatic`] type. A paused sync of the audience is resumed as it was instead. With a
/// `deadline`, the sync stops there with a checkpoint (status `paused`) when it is not
/// done; the next run picks it up.
///
/// A failed sync is an `Ok` whose status is `failed` and whose log says why; `Err` is for a
/// request that could not start (unknown audience, sync running).
pub async fn run(
    app: &App,
    audience_id: Uuid,
    sync_type: Option<SyncType>,
    progress: &dyn Progress,
    deadline: Option<Instant>,
) -> Result<SyncResult> {
    let options = SyncOptions {
        sync_type,
        force: false,
    };
    run_with(app, audience_id, options, progress, deadline).await
}

/// [`run`] with every option (`force`: past the removal guardrails, this once).
pub async fn run_with(
    app: &App,
    audience_id: Uuid,
    options: SyncOptions,
    progress: &dyn Progress,
    deadline: Option<Instant>,
) -> Result<SyncResult> {
    // The lock first, then the audience: read before, it could be changed or deleted by the
    // time the lock is ours, and the sync would work from a stale copy.
    let lock = lock(app, audience_id).await?;
    let result = match audiences::get(lock.client(), audience_id).await {
        Ok(audience) => {
            let sync_type = match options.sync_type {
                Some(t) => Ok(t),
                None => automatic(lock.client(), &audience).await,
            };
            match sync_type {
                Ok(t) => {
                    let db = lock.client();
                    let force = options.force;
                    run::locked(app, db, audience, t, force, progress, deadline).await
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    if let Ok(r) = &result {
        // The outcome is committed: the alerts it calls for (failed, blocked, a size drop).
        crate::alerts::after_sync(app, lock.client(), r.sync_log_id).await;
    }
    lock.release().await?;
    result
}

/// The type of an automatic sync (the scheduler's, or one asked for without a type): `full`
/// the first time, and when the platform's memberships would lapse before the next refresh
/// ([`Platform::resend_every`](crate::destinations::Platform::resend_every): every member is
/// sent again); `incremental` otherwise. Without a full sync yet, the memberships date from the
/// audience's creation at the earliest.
async fn automatic(db: &tokio_postgres::Client, audience: &Audience) -> Result<SyncType> {
    if audience.last_synced_at.is_none() {
        return Ok(SyncType::Full);
    }
    let Some(every) = audience.destination.resend_every() else {
        return Ok(SyncType::Incremental);
    };
    let refreshed = log::last_full_sync(db, audience.id)
        .await?
        .unwrap_or(audience.created_at);
    let age = (chrono::Utc::now() - refreshed)
        .to_std()
        .unwrap_or_default();
    Ok(match age >= every {
        true => {
            tracing::info!(audience_id = %audience.id, platform = %audience.destination,
                days = age.as_secs() / 86_400, "memberships due for a refresh: a full sync");
            SyncType::Full
        }
        false => SyncType::Incremental,
    })
}

/// Which audiences [`run_many`] syncs.
pub enum Batch {
    /// Every active audience, one after another (`POST /api/audiences/sync` without a body);
    /// none is started past the deadline, and one running then pauses at its checkpoint.
    Active(Option<Instant>),
    /// The due ones, claimed one at a time until the time runs short (a scheduler pass).
    Due(scheduler::TickOptions),
}

/// What [`run_many`] did.
#[derive(Debug, Default, Serialize)]
pub struct Tally {
    pub claimed: usize,
    pub completed: usize,
    pub failed: usize,
    /// Syncs picked up from a checkpoint.
    pub resumed: usize,
    /// Syncs that ran out of time and will be resumed.
    pub paused: usize,
    /// Syncs the removal guardrails stopped (the scheduler never forces one).
    pub blocked: usize,
    /// A sync of it was already running elsewhere.
    pub skipped: usize,
    /// Scheduler passes: members removed from their platform because their person was erased
    /// or opted out (see [`purge`]).
    pub purged: usize,
    /// Scheduler passes: audiences whose erased or opted-out members wait for a later pass
    /// (busy with a sync, a replace session open, refused or failed; the service's log says).
    pub purge_waiting: usize,
    pub results: Vec<Value>,
}

impl Tally {
    fn add(&mut self, audience_id: Uuid, outcome: Result<SyncResult>) {
        match outcome {
            Ok(r) => {
                self.resumed += usize::from(r.resumed);
                match r.status {
                    SyncStatus::Completed => self.completed += 1,
                    SyncStatus::InProgress | SyncStatus::Paused => self.paused += 1,
                    SyncStatus::Blocked => self.blocked += 1,
                    SyncStatus::Pending | SyncStatus::Failed => self.failed += 1,
                }
                self.results
                    .push(serde_json::to_value(&r).unwrap_or(Value::Null));
            }
            // Busy with a sync elsewhere, or deleted since the batch was listed.
            Err(Error::Conflict(message) | Error::NotFound(message)) => {
                self.skipped += 1;
                self.results.push(
                    json!({"audience_id": audience_id, "status": "skipped", "error_message": message}),
                );
            }
            Err(e) => {
                // The audience's own failures are in its log; this is the sync not starting
                // (the database).
                tracing::error!(%audience_id, error = %e, "sync could not run");
                self.failed += 1;
                self.results.push(json!({
                    "audience_id": audience_id, "status": "failed",
                    "error_message": run::failure_message(&e),
                }));
            }
        }
    }
}

/// Syncs audiences one after another, each as [`run`] with no type given (`full` the first
/// time, `incremental` after; a paused sync resumes). One already syncing elsewhere is skipped,
/// not waited for.
pub async fn run_many(app: &App, batch: &Batch, progress: &dyn Progress) -> Result<Tally> {
    let mut tally = Tally::default();
    match batch {
        Batch::Active(deadline) => {
            let active: VecDeque<Uuid> = {
                let db = crate::db::get(&app.pool).await?;
                audiences::list(&**db, Some(true)).await?
            }
            .into_iter()
            .map(|a| a.id)
            .collect();
            for id in active {
                tally.claimed += 1;
                let outcome = match deadline {
                    Some(d) if Instant::now() >= *d => Err(Error::Conflict(
                        "not started: the request ran out of time; sync it again or let the scheduler"
                            .into(),
                    )),
                    _ => run(app, id, None, progress, *deadline).await,
                };
                tally.add(id, outcome);
            }
        }
        Batch::Due(opts) => scheduler::pass(app, opts, &mut tally).await?,
    }
    Ok(tally)
}

/// `POST /api/audiences/sync` without a body.
#[derive(Debug, Serialize)]
pub struct SyncAllResult {
    pub total_audiences: usize,
    pub synced: usize,
    pub failed: usize,
    /// Stopped by the removal guardrails (each one's answer in `results` says why).
    pub blocked: usize,
    pub skipped: usize,
    pub results: Vec<Value>,
}

impl From<Tally> for SyncAllResult {
    fn from(t: Tally) -> Self {
        SyncAllResult {
            total_audiences: t.claimed,
            synced: t.completed,
            failed: t.failed + t.paused,
            blocked: t.blocked,
            skipped: t.skipped,
            results: t.results,
        }
    }
}
