//! A sync: one audience brought to its segment, in the database and (when configured) in Meta.
//!
//! One sync per audience at a time, enforced by a PostgreSQL advisory lock held by the session
//! that runs it: the claim dies with its holder, so a crashed worker frees the audience at once.
//! The whole sync runs on that one connection, which is all a Lambda instance needs.

pub mod destination;
pub mod log;
pub mod members;
pub mod meta;

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::app::App;
use crate::audience::{self, Audience, AudienceType};
use crate::destinations::meta::MetaClient;
use crate::error::{Error, Result};
use destination::{DatabaseOnly, Destination};
use members::{Counters, Pass, PassEnd};
use std::time::Instant;

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
    /// The sync log's final status: `completed` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// It carried on a sync an earlier run had started.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

/// The claim on one audience: a session-level advisory lock on a connection kept out of the
/// pool's hands for the sync's duration.
pub struct AudienceLock {
    conn: Option<deadpool_postgres::Object>,
    audience_id: Uuid,
}

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended($1::text, 7300))";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtextextended($1::text, 7300))";

impl AudienceLock {
    pub async fn try_acquire(
        conn: deadpool_postgres::Object,
        audience_id: Uuid,
    ) -> Result<Option<Self>> {
        let got: bool = conn
            .query_one(TRY_LOCK, &[&audience_id.to_string()])
            .await?
            .get(0);
        Ok(got.then_some(AudienceLock {
            conn: Some(conn),
            audience_id,
        }))
    }

    pub fn client(&self) -> &Client {
        self.conn.as_ref().expect("held until released")
    }

    pub async fn release(mut self) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            conn.query_one(UNLOCK, &[&self.audience_id.to_string()])
                .await?;
        }
        Ok(())
    }
}

impl Drop for AudienceLock {
    fn drop(&mut self) {
        // Not released (error or cancelled): close the connection instead of returning it to the
        // pool, which ends the session and with it the lock.
        if let Some(conn) = self.conn.take() {
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}

/// Runs one sync of one audience. A failed sync is an `Ok` whose status is `failed` and whose
/// log says why; `Err` is for a request that could not start (unknown audience, sync running).
pub async fn run(
    app: &App,
    audience_id: Uuid,
    sync_type: SyncType,
    progress: &dyn Progress,
) -> Result<SyncResult> {
    run_until(app, audience_id, sync_type, progress, None).await
}

/// [`run`], stopping at `deadline` with a checkpoint (status `in_progress`) when the sync is not
/// done by then; the next run of the audience picks it up where it stopped.
pub async fn run_until(
    app: &App,
    audience_id: Uuid,
    sync_type: SyncType,
    progress: &dyn Progress,
    deadline: Option<Instant>,
) -> Result<SyncResult> {
    let conn = crate::db::get(&app.pool).await?;
    let audience = audience::get(&**conn, audience_id).await?;
    let lock = AudienceLock::try_acquire(conn, audience_id)
        .await?
        .ok_or_else(|| {
            Error::Conflict(format!(
                "a sync of audience {audience_id} is already running; try again when it has finished"
            ))
        })?;
    let result = run_locked(app, lock.client(), audience, sync_type, progress, deadline).await;
    lock.release().await?;
    result
}

/// A second connection, when the pool has one idle or room for one: never waited for, since
/// another task (a scheduler pass, a request) may hold the rest.
async fn spare_connection(pool: &deadpool_postgres::Pool) -> Option<deadpool_postgres::Object> {
    let status = pool.status();
    if status.available == 0 && status.size >= status.max_size {
        return None;
    }
    tokio::time::timeout(std::time::Duration::from_secs(2), pool.get())
        .await
        .ok()?
        .ok()
}

/// Meta closes a replace session 90 minutes after its first batch; past this, start afresh.
const REPLACE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(80);

async fn run_locked(
    app: &App,
    db: &Client,
    audience: Audience,
    sync_type: SyncType,
    progress: &dyn Progress,
    deadline: Option<Instant>,
) -> Result<SyncResult> {
    let resumable = log::find_resumable(db, audience.id).await?.filter(|r| {
        let replace = r.checkpoint["pass"] == "replace";
        !replace || chrono::Utc::now() - r.started_at < REPLACE_WINDOW
    });
    log::fail_abandoned(db, audience.id, resumable.as_ref().map(|r| r.log_id)).await?;
    let (log_id, sync_type, started, checkpoint) = match resumable {
        Some(r) => {
            log::resume(db, r.log_id, audience.id).await?;
            let checkpoint = serde_json::from_value::<members::Checkpoint>(r.checkpoint).ok();
            (r.log_id, r.sync_type, r.started_at, checkpoint)
        }
        None => {
            let log_id = log::open(db, audience.id, sync_type).await?;
            (
                log_id,
                sync_type,
                log::start(db, log_id, audience.id).await?,
                None,
            )
        }
    };
    let resumed = checkpoint.is_some();
    let spare = spare_connection(&app.pool).await;
    let mut run = Run {
        db,
        reader: spare.as_ref().map_or(db, |c| &***c),
        audience,
        sync_type,
        log_id,
        started,
        deadline,
        checkpoint,
        counters: Counters::default(),
        end: PassEnd::Done,
        progress,
    };
    let (result, meta_response) = match app.meta.as_deref() {
        None => {
            let mut dest = DatabaseOnly;
            (run.members(&mut dest).await, dest.response())
        }
        Some(client) => run.with_meta(client).await,
    };
    let audience_id = run.audience.id;
    let c = &run.counters;
    let (synced, failed, total_synced) = log::member_counts(db, audience_id, started).await?;
    // Meta counted some entries invalid without quoting them: accepted rows, yet not matched.
    let unquoted = c.rejected_by_meta.saturating_sub(c.rejected_quoted);
    let outcome = log::Outcome {
        total_synced: total_synced as i32,
        synced_count: (synced as u64).saturating_sub(unquoted) as i32,
        failed_count: (failed as u64 + unquoted) as i32,
        meta_response,
        details: c.to_json(),
    };
    let (status, error_message) = match (result, run.end) {
        (Ok(()), PassEnd::Paused) => {
            log::pause(db, log_id, &outcome).await?;
            tracing::info!(%audience_id, sync_type = sync_type.as_str(),
                synced = outcome.synced_count, "sync paused at its checkpoint; the next run resumes it");
            ("in_progress", None)
        }
        (Ok(()), PassEnd::Done) => {
            log::complete(db, log_id, audience_id, &outcome).await?;
            tracing::info!(%audience_id, sync_type = sync_type.as_str(),
                synced = outcome.synced_count, failed = outcome.failed_count,
                removed = c.removed, resumed, "sync completed");
            ("completed", None)
        }
        (Err(e), _) => {
            let message = failure_message(&e);
            tracing::warn!(%audience_id, sync_type = sync_type.as_str(),
                error = %e, "sync failed");
            log::fail(db, log_id, audience_id, &message, &outcome).await?;
            ("failed", Some(message))
        }
    };
    Ok(SyncResult {
        audience_id,
        synced_count: outcome.synced_count,
        failed_count: outcome.failed_count,
        sync_log_id: log_id,
        status: status.into(),
        error_message,
        resumed,
    })
}

/// What a marketer reads in the log and on the audience: specific, free of secrets, and without
/// internal details (those go to the service's log).
fn failure_message(e: &Error) -> String {
    match e {
        Error::Invalid { message, .. } | Error::NotFound(message) | Error::Conflict(message) => {
            message.clone()
        }
        Error::Meta(m) => m.user_message(),
        Error::Db(_) => {
            "the database failed during the sync; the next sync carries on from what was accepted"
                .into()
        }
    }
}

/// The lookalike seed Meta needs, at the least.
pub const LOOKALIKE_MIN_SEED: i64 = 100;

/// One sync in progress.
struct Run<'a> {
    db: &'a Client,
    /// Where pages of members are read (a second connection when the pool has one to spare).
    reader: &'a Client,
    audience: Audience,
    sync_type: SyncType,
    log_id: Uuid,
    started: chrono::DateTime<chrono::Utc>,
    deadline: Option<Instant>,
    /// Where an earlier invocation of this sync stopped.
    checkpoint: Option<members::Checkpoint>,
    counters: Counters,
    end: PassEnd,
    progress: &'a dyn Progress,
}

impl Run<'_> {
    fn pass(&self) -> Pass {
        match self.sync_type {
            SyncType::Full => Pass::Replace,
            SyncType::Incremental => Pass::Add,
            SyncType::Update => Pass::Update,
        }
    }

    /// Brings membership to the segment in the database (set-based) and checks the audience
    /// can have members.
    async fn reconcile(&mut self) -> Result<()> {
        let Some(segment_id) = self.audience.segment_id else {
            return Err(Error::invalid(
                "segment_id",
                "the audience has no segment: set segment_id before syncing",
            ));
        };
        crate::segment::store::refresh(self.db, segment_id).await?;
        self.counters.erased = members::erased(self.db, self.audience.id).await?;
        // sync_audience_members without the counts it returns (this sync counts what it does).
        self.db
            .execute(
                "SELECT audience_member_reconcile($1, $2)",
                &[&self.audience.id, &self.log_id],
            )
            .await?;
        if self.audience.audience_type == AudienceType::Lookalike {
            let eligible: i64 = self
                .db
                .query_one(
                    "SELECT (SELECT count(*) FROM audience_member_sync \
                             WHERE audience_id = $1 AND NOT removal_pending) \
                          + (SELECT count(*) FROM audience_member_joiner WHERE list_id = $2)",
                    &[&self.audience.id, &self.log_id],
                )
                .await?
                .get(0);
            if eligible < LOOKALIKE_MIN_SEED {
                return Err(Error::invalid(
                    "segment_id",
                    format!(
                        "a lookalike's seed needs at least {LOOKALIKE_MIN_SEED} members; the segment has {eligible} eligible (not opted out)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The database side and the member upload, to `dest`.
    async fn members<D: Destination>(&mut self, dest: &mut D) -> Result<()> {
        if self.audience.audience_type == AudienceType::Engagement {
            // Built by Meta from pixel events: there are no members to send.
            return Ok(());
        }
        if self.checkpoint.is_none() {
            self.reconcile().await?;
        }
        self.push(dest).await
    }

    async fn push<D: Destination>(&mut self, dest: &mut D) -> Result<()> {
        let (db, id, pass) = (self.db, self.audience.id, self.pass());
        let (from, counters) = match self.checkpoint.take() {
            Some(cp) => (cp.cursor, cp.counters),
            None => {
                // Erasures were counted before reconciling removed them from view.
                let mut c = Counters {
                    erased: self.counters.erased,
                    ..Counters::default()
                };
                if pass != Pass::Replace {
                    members::remove_leavers(db, id, dest, false, &mut c).await?;
                }
                (Uuid::nil(), c)
            }
        };
        // Counting scans the audience: only for someone watching a progress bar.
        if self.progress.shows_total() {
            self.progress
                .begin("members", members::count(db, id, self.log_id, pass).await?);
        }
        let run = members::PassRun {
            pass,
            from,
            counters,
            deadline: self.deadline,
            log_id: self.log_id,
        };
        let (mut c, end) = members::push(db, self.reader, id, run, dest, self.progress).await?;
        self.end = end;
        if end == PassEnd::Done && pass == Pass::Replace {
            if c.sent == 0 {
                // A replace cannot carry zero rows: take out what the destination holds instead.
                members::remove_leavers(db, id, dest, true, &mut c).await?;
            } else {
                c.removed += members::settle_replace(db, id, self.started).await?;
            }
        }
        self.counters = c;
        Ok(())
    }

    /// With Meta: create what is missing, upload, let Meta build lookalikes, read Meta's view.
    async fn with_meta(&mut self, client: &MetaClient) -> (Result<()>, Value) {
        let mut response = json!({});
        let result = self.meta_steps(client, &mut response).await;
        if let Some(id) = &self.audience.meta_audience_id {
            response["meta_audience_id"] = json!(id);
        }
        if let Some(id) = &self.audience.meta_seed_audience_id {
            response["meta_seed_audience_id"] = json!(id);
        }
        (result, response)
    }

    async fn meta_steps(&mut self, client: &MetaClient, response: &mut Value) -> Result<()> {
        if self.audience.audience_type != AudienceType::Engagement {
            let mut dest = match &self.checkpoint {
                Some(cp) => {
                    let target = meta::member_target(self.db, client, &mut self.audience).await?;
                    meta::MetaDestination::resume(client, target, &cp.destination)
                }
                None => {
                    self.reconcile().await?;
                    let target = meta::member_target(self.db, client, &mut self.audience).await?;
                    let replace_total = match self.pass() {
                        Pass::Replace => Some(
                            members::count(self.db, self.audience.id, self.log_id, Pass::Replace)
                                .await?,
                        ),
                        _ => None,
                    };
                    meta::MetaDestination::new(client, target, replace_total)
                }
            };
            let pushed = self.push(&mut dest).await;
            *response = dest.response();
            pushed?;
        }
        if self.end == PassEnd::Paused {
            return Ok(());
        }
        meta::ensure_built_by_meta(self.db, client, &mut self.audience).await?;
        meta::refresh_metrics(self.db, client, &self.audience).await;
        Ok(())
    }
}

/// `POST /api/audiences/sync` without a body.
#[derive(Debug, Serialize)]
pub struct SyncAllResult {
    pub total_audiences: usize,
    pub synced: usize,
    pub failed: usize,
    pub skipped: usize,
    pub results: Vec<Value>,
}

/// Syncs every active audience in turn: `full` the first time, `incremental` after. One that is
/// already syncing elsewhere is skipped, not waited for.
pub async fn run_all(app: &App, progress: &dyn Progress) -> Result<SyncAllResult> {
    let audiences = {
        let db = crate::db::get(&app.pool).await?;
        audience::list(&**db, Some(true)).await?
    };
    let mut all = SyncAllResult {
        total_audiences: audiences.len(),
        synced: 0,
        failed: 0,
        skipped: 0,
        results: Vec::with_capacity(audiences.len()),
    };
    for a in audiences {
        let sync_type = if a.last_synced_at.is_none() {
            SyncType::Full
        } else {
            SyncType::Incremental
        };
        match run(app, a.id, sync_type, progress).await {
            Ok(r) => {
                if r.status == "completed" {
                    all.synced += 1;
                } else {
                    all.failed += 1;
                }
                all.results
                    .push(serde_json::to_value(&r).unwrap_or(Value::Null));
            }
            Err(Error::Conflict(message)) => {
                all.skipped += 1;
                all.results.push(
                    json!({"audience_id": a.id, "status": "skipped", "error_message": message}),
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(all)
}
