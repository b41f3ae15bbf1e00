//! One sync of one audience, on the connection that holds its lock: the diff, the member
//! passes to its destination, and the log row's outcome.

use std::time::Instant;

use tokio_postgres::Client;
use uuid::Uuid;

use super::guard::{self, Block};
use super::members::{self, Checkpoint, Counters, Pass, PassEnd};
use super::{diff, log, member_store, AudienceLock, Progress, SyncResult, SyncStatus, SyncType};
use crate::app::App;
use crate::audience::{Audience, AudienceType};
use crate::destinations::{deadline, Destination, Opening, PlatformSize};
use crate::error::{Error, Result};

/// Evaluates `$body` with `$dest` bound to the destination of `$audience` (an `&Audience`):
/// its platform's client, or without the platform's credentials the database side alone. The
/// one place a platform is chosen, for a sync and for a dry run.
macro_rules! with_destination {
    ($app:expr, $audience:expr, |$dest:ident| $body:expr) => {{
        use $crate::destinations::{google, linkedin, meta, tiktok, DatabaseOnly, Platform};
        match $audience.destination {
            Platform::Google => match $app.google.as_deref() {
                Some(client) => {
                    let $dest = google::GoogleDestination::new(client, $audience);
                    $body
                }
                None => {
                    let $dest = DatabaseOnly::<google::GoogleRow>::new("google");
                    $body
                }
            },
            Platform::Linkedin => match $app.linkedin.as_deref() {
                Some(client) => {
                    let $dest = linkedin::LinkedinDestination::new(client, $audience);
                    $body
                }
                None => {
                    let $dest = DatabaseOnly::<linkedin::LinkedinRow>::new("linkedin");
                    $body
                }
            },
            Platform::Tiktok => match $app.tiktok.as_deref() {
                Some(client) => {
                    let $dest = tiktok::TiktokDestination::new(client, $audience);
                    $body
                }
                None => {
                    let $dest = DatabaseOnly::<tiktok::TiktokRow>::new("tiktok");
                    $body
                }
            },
            Platform::Meta => match $app.meta.as_deref() {
                Some(client) => {
                    let $dest = meta::MetaDestination::new(client, $audience);
                    $body
                }
                None => {
                    let $dest = DatabaseOnly::<meta::MetaRow>::new("meta");
                    $body
                }
            },
        }
    }};
}
pub(super) use with_destination;

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

/// The lookalike seed Meta needs, at the least.
pub const LOOKALIKE_MIN_SEED: i64 = 100;

/// Runs the sync of `audience` on `db` (which holds the audience's lock): picks up a paused
/// sync where it stopped, or starts one of `sync_type` (`force`: past the removal guardrails).
pub(super) async fn locked(
    app: &App,
    db: &Client,
    audience: Audience,
    sync_type: SyncType,
    force: bool,
    progress: &dyn Progress,
    deadline: Option<Instant>,
) -> Result<SyncResult> {
    let resumable = log::find_resumable(db, audience.id).await?.filter(|r| {
        let replace = r.checkpoint["pass"] == "replace";
        !replace || chrono::Utc::now() - r.started_at < REPLACE_WINDOW
    });
    let resuming = resumable.as_ref().map(|r| r.log_id);
    let unsettled = settle_abandoned(db, audience.id, None, resuming, log::ABANDONED).await?;
    let (log_id, sync_type, started, checkpoint) = match resumable {
        Some(r) => {
            log::resume(db, r.log_id, audience.id).await?;
            let checkpoint = serde_json::from_value::<Checkpoint>(r.checkpoint).ok();
            (r.log_id, r.sync_type, r.started_at, checkpoint)
        }
        None => {
            let log_id = log::open(db, audience.id, sync_type).await?;
            let started = log::start(db, log_id, audience.id).await?;
            (log_id, sync_type, started, None)
        }
    };
    let resumed = checkpoint.is_some();
    // An `update` read from the changes runs as a pass over the unsynced members (the diff
    // marked the changed ones unsynced): resumed as it began.
    let changes_only = checkpoint
        .as_ref()
        .is_some_and(|cp| cp.pass == Pass::Add.as_str());
    let joiners = match &checkpoint {
        Some(cp) if cp.eligible => member_store::Joiners::Eligible,
        _ => member_store::Joiners::Listed(log_id),
    };
    let spare = spare_connection(&app.pool).await;
    let platform_before = platform_ids(&audience);
    let mut run = Run {
        db,
        reader: spare.as_ref().map_or(db, |c| &***c),
        own_reader: spare.is_some(),
        joiners,
        audience,
        sync_type,
        log_id,
        started,
        deadline,
        checkpoint,
        counters: Counters::default(),
        end: PassEnd::Done,
        progress,
        replacing: false,
        diff: None,
        changes_only,
        // Members unsynced before the diff, or a new platform audience (whose creation forgets
        // what was sent): the stored total is stale, the counts scan.
        total_known: unsettled == 0,
        platform_before,
        replaces: true,
        force,
        blocked: None,
        size: None,
    };
    // Its calls (and their retries) end in time for the sync to pause at its deadline.
    let (result, response) = deadline::within(deadline, async {
        with_destination!(app, &run.audience, |dest| drive(&mut run, dest).await)
    })
    .await;
    // Every sync's final outcome (completed, failed, blocked, paused) is written by
    // `Run::finish` (or, its connection lost, by `connection_lost`) and returned here.
    match run.finish(result, response, resumed).await {
        Err(Error::Db(e)) => connection_lost(app, run.audience.id, log_id, run.started, e).await,
        outcome => outcome,
    }
}

/// Runs the sync's passes against one destination, and keeps what it answered.
async fn drive<D: Destination>(run: &mut Run<'_>, mut dest: D) -> (Result<()>, serde_json::Value) {
    let result = run.with(&mut dest).await;
    run.size = dest.size();
    (result, dest.response())
}

/// Fails the log rows of syncs of the audience that stopped unfinished (`only` one, or all but
/// `except`), as their worker can no longer do. A full sync among them that did not finish its
/// replace leaves the members it did not re-send to be sent again: see
/// [`member_store::unsettle_replace`]. Called holding the audience's lock.
async fn settle_abandoned(
    db: &Client,
    audience_id: Uuid,
    only: Option<Uuid>,
    except: Option<Uuid>,
    message: &str,
) -> Result<u64> {
    let mut unsettled = 0;
    for a in log::fail_abandoned(db, audience_id, only, except, message).await? {
        if let (true, Some(started)) = (a.sync_type == SyncType::Full.as_str(), a.started_at) {
            let marked = member_store::unsettle_replace(db, audience_id, started).await?;
            tracing::warn!(%audience_id, sync_log_id = %a.log_id, marked,
                "an unfinished replace: members it did not re-send are marked to be sent again");
            unsettled += marked;
        }
    }
    Ok(unsettled)
}

/// The connection running the sync (and holding its lock) failed before the outcome was
/// written. On another connection, once the lock is free (it ended with the lost session), the
/// log row is failed saying so, as the next sync would do; if another sync has taken the
/// audience over meanwhile, that one does it.
async fn connection_lost(
    app: &App,
    audience_id: Uuid,
    log_id: Uuid,
    started: chrono::DateTime<chrono::Utc>,
    lost: crate::db::DbError,
) -> Result<SyncResult> {
    tracing::warn!(%audience_id, error = %lost, "the sync's database connection failed");
    let conn = crate::db::get(&app.pool).await?;
    let Some(lock) = AudienceLock::try_acquire(conn, audience_id).await? else {
        return Err(lost.into());
    };
    let db = lock.client();
    let settled = async {
        settle_abandoned(db, audience_id, Some(log_id), None, log::CONNECTION_LOST).await?;
        member_store::counts(db, audience_id, started).await
    }
    .await;
    lock.release().await?;
    let (synced, failed, _) = settled?;
    Ok(SyncResult {
        audience_id,
        synced_count: synced as i32,
        failed_count: failed as i32,
        sync_log_id: log_id,
        status: SyncStatus::Failed,
        error_message: Some(log::CONNECTION_LOST.into()),
        resumed: false,
        blocked: None,
    })
}

/// One sync in progress.
struct Run<'a> {
    db: &'a Client,
    /// Where pages of members are read (a second connection when the pool has one to spare).
    reader: &'a Client,
    /// `reader` is a connection of its own.
    own_reader: bool,
    /// Where the pass finds its joiners (listed by the diff, or a first sync's eligible people).
    joiners: member_store::Joiners,
    audience: Audience,
    sync_type: SyncType,
    log_id: uuid::Uuid,
    started: chrono::DateTime<chrono::Utc>,
    deadline: Option<Instant>,
    /// Where an earlier invocation of this sync stopped.
    checkpoint: Option<Checkpoint>,
    counters: Counters,
    end: PassEnd,
    progress: &'a dyn Progress,
    /// A replace session may have begun: the pass is under way (a failure must not leave
    /// members marked synced that the session will not hold).
    replacing: bool,
    /// How this invocation's diff was made (`None`: resumed, no diff).
    diff: Option<member_store::Diff>,
    /// The pass looks only at unsynced members, whatever the sync type.
    changes_only: bool,
    /// The audience's stored `total_synced` was true when the sync began.
    total_known: bool,
    /// The platform ids at the start (a new platform audience forgets what was sent).
    platform_before: (Option<String>, Option<String>, Option<String>),
    /// The destination replaces its audience in a full sync ([`Destination::replaces`]).
    replaces: bool,
    /// Past the removal guardrails, this once.
    force: bool,
    /// The guardrails stopped the sync before any platform call (its diff was not kept).
    blocked: Option<Block>,
    /// The platform's size read back after the members ([`Destination::size`]).
    size: Option<PlatformSize>,
}

/// The pass a sync of `sync_type` makes: see [`Pass`]. `changes_only`: its diff was made from
/// the changes (or it resumes a pass over the unsynced members).
pub(super) fn pass_for(sync_type: SyncType, replaces: bool, changes_only: bool) -> Pass {
    match sync_type {
        SyncType::Full if replaces => Pass::Replace,
        SyncType::Full => Pass::Refresh,
        SyncType::Update if !changes_only => Pass::Update,
        SyncType::Incremental | SyncType::Update => Pass::Add,
    }
}

fn platform_ids(a: &Audience) -> (Option<String>, Option<String>, Option<String>) {
    (
        a.meta_audience_id.clone(),
        a.meta_seed_audience_id.clone(),
        a.destination_audience_id.clone(),
    )
}

impl Run<'_> {
    fn pass(&self) -> Pass {
        pass_for(self.sync_type, self.replaces, self.changes_only)
    }

    /// Brings membership to the segment in the database (set-based, in one transaction), and
    /// keeps it unless the removal guardrails block the sync (then nothing of it is kept, and
    /// the next sync finds the same leavers); checks the audience can have members.
    async fn reconcile(&mut self) -> Result<()> {
        diff::begin(self.db).await?;
        // A first sync streams its people from the segment (on a connection of its own).
        let made = diff::make(
            self.db,
            &self.audience,
            self.log_id,
            self.sync_type,
            self.own_reader,
        )
        .await?;
        self.joiners = made.joiners;
        let block = guard::check(&self.audience, &made.counts);
        let keep = block.is_none() || self.force;
        diff::end(self.db, keep).await?;
        self.counters.erased = made.erased;
        self.counters.joiners = made.counts.joiners;
        self.counters.leavers = made.counts.leavers;
        if !keep {
            self.blocked = block;
            return Ok(());
        }
        if let Some(b) = block {
            tracing::warn!(audience_id = %self.audience.id, blocked_by = %b.blocked_by,
                would_remove = b.would_remove, holds = b.holds,
                "removal guardrails overridden by force");
            self.counters.forced_past = Some(b);
        }
        self.changes_only = matches!(made.diff, member_store::Diff::Changes { .. });
        self.diff = Some(made.diff);
        if self.audience.audience_type == AudienceType::Lookalike {
            let eligible = member_store::staying(self.db, self.audience.id, self.joiners).await?;
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

    /// The whole sync to `dest`: the diff, the destination's audience, the members, and what
    /// the platform builds afterwards.
    async fn with<D: Destination>(&mut self, dest: &mut D) -> Result<()> {
        self.replaces = dest.replaces();
        // An engagement audience is built by the platform from pixel events: no members.
        if self.audience.audience_type != AudienceType::Engagement {
            let resume = self.checkpoint.as_ref().map(|cp| cp.destination.clone());
            if resume.is_none() {
                self.reconcile().await?;
                if self.blocked.is_some() {
                    return Ok(());
                }
            }
            let replace_total = match (&resume, self.pass(), dest.wants_total()) {
                (None, Pass::Replace, true) => Some(
                    member_store::to_examine(self.db, self.audience.id, self.joiners, true).await?,
                ),
                _ => None,
            };
            let unfinished = match resume {
                None => log::unfinished_replace(self.db, self.audience.id).await?,
                Some(_) => None,
            };
            let opening = Opening {
                replace_total,
                resume: resume.as_ref(),
                unfinished: unfinished.as_ref().map(|(_, cp)| cp),
            };
            dest.open(self.db, &mut self.audience, opening).await?;
            if let Some((log_id, _)) = unfinished {
                log::clear_checkpoint(self.db, log_id).await?;
            }
            self.replacing = self.pass() == Pass::Replace;
            self.push(dest).await?;
        }
        if self.end == PassEnd::Paused {
            return Ok(());
        }
        dest.finish(self.db, &mut self.audience).await
    }

    async fn push<D: Destination>(&mut self, dest: &mut D) -> Result<()> {
        let (db, id, pass) = (self.db, self.audience.id, self.pass());
        let fresh = self.checkpoint.is_none();
        let (from, counters) = match self.checkpoint.take() {
            Some(cp) => (cp.cursor, cp.counters),
            // What the diff counted (erasures, before it removed them from view; joiners,
            // leavers), and nothing done yet.
            None => (uuid::Uuid::nil(), self.counters.clone()),
        };
        // Counting scans the audience: only for someone watching a progress bar.
        if self.progress.shows_total() {
            let all = pass != Pass::Add;
            let total = member_store::to_examine(db, id, self.joiners, all).await?;
            self.progress.begin("members", total);
        }
        let run = members::PassRun {
            pass,
            from,
            counters,
            deadline: self.deadline,
            log_id: self.log_id,
            joiners: self.joiners,
            stream: fresh && self.own_reader,
            // A replace takes leavers out with everything it does not send again.
            remove_first: fresh && pass != Pass::Replace,
        };
        let (mut c, end) = members::push(db, self.reader, id, run, dest, self.progress).await?;
        self.end = end;
        if end == PassEnd::Done && matches!(pass, Pass::Update | Pass::Refresh) {
            member_store::rehashed(db, id).await?;
        }
        if end == PassEnd::Done && pass == Pass::Replace {
            if c.sent == 0 {
                // A replace cannot carry zero rows: take out what the destination holds instead.
                let listed = self.joiners.list_id();
                members::remove_leavers(db, id, listed, dest, true, &mut c).await?;
            } else {
                c.removed += member_store::settle_replace(db, id, self.started).await?;
            }
        }
        self.counters = c;
        Ok(())
    }

    /// The counts [`member_store::counts`] would find, from what this sync did, when it did all
    /// of it from a diff of the changes: then every member it marked synced was unsynced before
    /// (a pass over unsynced members), and only the diff unsynced synced members, so the
    /// audience's total moves by exactly those. A scan of the audience otherwise (a full diff,
    /// a resumed or failed sync), which also puts right any drift at least daily.
    fn counted(&self, result: &Result<()>) -> Option<(i64, i64, i64)> {
        let Some(member_store::Diff::Changes { unsynced }) = self.diff else {
            return None;
        };
        let stale = !self.total_known || platform_ids(&self.audience) != self.platform_before;
        if stale || result.is_err() || self.pass() != Pass::Add {
            return None;
        }
        let c = &self.counters;
        let unquoted = c.rejected_by_meta.saturating_sub(c.rejected_quoted);
        let synced = (c.accepted + unquoted) as i64;
        let failed = (c.no_identifier + c.rejected_quoted) as i64;
        let total = i64::from(self.audience.total_synced) - unsynced + synced;
        Some((synced, failed, total.max(0)))
    }

    /// Writes the outcome to the log row and the audience: blocked, paused, completed or
    /// failed.
    async fn finish(
        &self,
        result: Result<()>,
        response: serde_json::Value,
        resumed: bool,
    ) -> Result<SyncResult> {
        if let Some(block) = &self.blocked {
            return self.block(block).await;
        }
        let (db, audience_id, log_id) = (self.db, self.audience.id, self.log_id);
        let sync_type = self.sync_type.as_str();
        let c = &self.counters;
        if result.is_err() && self.replacing {
            member_store::unsettle_replace(db, audience_id, self.started).await?;
        }
        if let Err(Error::PlatformAudienceGone {
            platform_audience_id,
            ..
        }) = &result
        {
            platform_audience_gone(db, &self.audience, platform_audience_id).await?;
        }
        let (synced, failed, total_synced) = match self.counted(&result) {
            Some(counts) => counts,
            None => member_store::counts(db, audience_id, self.started).await?,
        };
        // The platform counted some entries invalid without quoting them: accepted rows, yet
        // not matched.
        let unquoted = c.rejected_by_meta.saturating_sub(c.rejected_quoted);
        let outcome = log::Outcome {
            total_synced: total_synced as i32,
            synced_count: (synced as u64).saturating_sub(unquoted) as i32,
            failed_count: (failed as u64 + unquoted) as i32,
            meta_response: response,
            details: c.to_json(),
            removed: c.removed as i64,
            size: self.size.clone(),
        };
        let (status, error_message) = match (result, self.end) {
            (Ok(()), PassEnd::Paused) => {
                log::pause(db, log_id, &outcome).await?;
                tracing::info!(%audience_id, sync_type, synced = outcome.synced_count,
                    "sync paused at its checkpoint; the next run resumes it");
                (SyncStatus::Paused, None)
            }
            (Ok(()), PassEnd::Done) => {
                log::close(db, log_id, audience_id, None, &outcome).await?;
                tracing::info!(%audience_id, sync_type, synced = outcome.synced_count,
                    failed = outcome.failed_count, removed = c.removed, resumed, "sync completed");
                (SyncStatus::Completed, None)
            }
            (Err(e), _) => {
                let message = failure_message(&e);
                tracing::warn!(%audience_id, sync_type, error = %e, "sync failed");
                log::close(db, log_id, audience_id, Some(&message), &outcome).await?;
                (SyncStatus::Failed, Some(message))
            }
        };
        Ok(SyncResult {
            audience_id,
            synced_count: outcome.synced_count,
            failed_count: outcome.failed_count,
            sync_log_id: log_id,
            status,
            error_message,
            resumed,
            blocked: None,
        })
    }

    /// The guardrails stopped the sync before any platform call: the log row is `blocked`
    /// with the numbers in its details, the audience carries the message.
    async fn block(&self, block: &Block) -> Result<SyncResult> {
        let message = block.message(&self.audience);
        let mut details = self.counters.to_json();
        if let (Some(d), serde_json::Value::Object(b)) =
            (details.as_object_mut(), serde_json::json!(block))
        {
            d.extend(b);
        }
        let (audience_id, log_id) = (self.audience.id, self.log_id);
        log::block(self.db, log_id, audience_id, &message, &details).await?;
        tracing::warn!(%audience_id, blocked_by = %block.blocked_by,
            would_remove = block.would_remove, holds = block.holds,
            would_leave = block.would_leave, "sync blocked by the removal guardrails");
        Ok(SyncResult {
            audience_id,
            synced_count: 0,
            failed_count: 0,
            sync_log_id: log_id,
            status: SyncStatus::Blocked,
            error_message: Some(message),
            resumed: false,
            blocked: Some(block.clone()),
        })
    }
}

/// The platform no longer has the audience (deleted outside the service, or expired): its id
/// is cleared so that the next sync creates it anew, and, unless only a lookalike built on a
/// seed that is still there went, what the database believed sent is forgotten (the platform
/// holds none of it; the next sync sends every member).
pub(super) async fn platform_audience_gone(
    db: &Client,
    audience: &Audience,
    gone: &str,
) -> Result<()> {
    crate::audience::store::clear_platform_id(db, audience.id, gone).await?;
    let seed_stays = audience
        .meta_seed_audience_id
        .as_deref()
        .is_some_and(|seed| seed != gone);
    if !seed_stays {
        member_store::forget_sent(db, audience.id).await?;
    }
    tracing::warn!(audience_id = %audience.id, platform = %audience.destination,
        "the platform audience no longer exists: its id is cleared, the next sync creates it");
    Ok(())
}

/// What a marketer reads in the log and on the audience: specific, free of secrets, and without
/// internal details (those go to the service's log).
pub(super) fn failure_message(e: &Error) -> String {
    match e {
        Error::Invalid { message, .. } | Error::NotFound(message) | Error::Conflict(message) => {
            message.clone()
        }
        Error::Meta(m) => m.user_message(),
        Error::Google(g) => g.user_message(),
        Error::Linkedin(e) => e.user_message(),
        Error::Tiktok(e) => e.user_message(),
        e @ Error::PlatformAudienceGone { .. } => e.to_string(),
        Error::Db(_) => {
            "the database failed during the sync; the next sync carries on from what was accepted"
                .into()
        }
    }
}
