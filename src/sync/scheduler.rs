//! The scheduler pass, shared by the `scheduled-sync` Lambda, `audiences tick` and `audiences
//! serve` (in-process at an interval: [`run_every`]): remove erased and opted-out people from
//! every audience's platform ([`purge`]), then claim due audiences one at a time (`FOR UPDATE
//! SKIP LOCKED`, so concurrent passes share the work), sync each through the engine, and stop
//! claiming when the invocation's time runs short. A sync that does not fit pauses at a
//! checkpoint; a later pass resumes it.

use std::time::{Duration, Instant};

use super::{purge, Batch, NoProgress, Tally};
use crate::app::App;
use crate::audience::store as audiences;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct TickOptions {
    /// When the invocation must be done.
    pub deadline: Instant,
    /// No new audience is claimed with less than this left; a running sync pauses this long
    /// before the deadline.
    pub reserve: Duration,
    /// How long a claim keeps other passes off an audience. The sync itself is protected by its
    /// own lock; the claim only spares other passes a wasted attempt, and expires on its own if
    /// this pass dies.
    pub lease: Duration,
}

impl TickOptions {
    /// A pass with `left` to run: the configured reserve (at most half of `left`) and lease.
    pub fn new(left: Duration, settings: &crate::config::SyncSettings) -> Self {
        TickOptions {
            deadline: Instant::now() + left,
            reserve: settings.reserve_within(left),
            lease: settings.lease.max(Duration::from_secs(1)),
        }
    }
}

/// One pass: what [`super::run_many`] does with [`Batch::Due`], summarized in the log.
pub async fn tick(app: &App, opts: TickOptions) -> Result<Tally> {
    let started = Instant::now();
    let tally = super::run_many(app, &Batch::Due(opts), &NoProgress).await?;
    // What a pass costs shows in the log: one with nothing to do should take milliseconds.
    let elapsed_ms = (started.elapsed().as_secs_f64() * 1e5).round() / 100.0;
    tracing::info!(
        elapsed_ms,
        claimed = tally.claimed,
        completed = tally.completed,
        failed = tally.failed,
        resumed = tally.resumed,
        paused = tally.paused,
        blocked = tally.blocked,
        skipped = tally.skipped,
        purged = tally.purged,
        purge_waiting = tally.purge_waiting,
        "scheduler pass done"
    );
    Ok(tally)
}

/// Purges erased and opted-out people from every audience's platform, then syncs the due
/// audiences; audiences whose purge had to wait for a sync (or for a paused full sync this pass
/// resumed) are tried once more at the end.
pub(super) async fn pass(app: &App, opts: &TickOptions, tally: &mut Tally) -> Result<()> {
    let until = opts
        .deadline
        .checked_sub(opts.reserve)
        .unwrap_or_else(Instant::now);
    let first = purge::all(app, until).await?;
    sync_due(app, opts, tally).await?;
    let (again, waiting): (Vec<_>, Vec<_>) = first
        .waiting
        .into_iter()
        .partition(|(_, wait)| wait.may_clear_within_pass());
    let second = purge::these(app, until, again.into_iter().map(|(id, _)| id).collect()).await;
    tally.purged = (first.removed + second.removed) as usize;
    tally.purge_waiting = waiting.len() + second.waiting.len();
    // Health turning bad is an alert; what is still undelivered goes out (never fails the pass).
    crate::alerts::scheduler_pass(app).await;
    Ok(())
}

/// The least time an in-process pass gets: a local process has no invocation limit, so a
/// pass is not cut to a short interval (a sync paused and resumed every few seconds would
/// redo its setup each time); a pass that runs past the interval delays the next one.
const MIN_SERVE_PASS: Duration = Duration::from_secs(5 * 60);

/// `audiences serve`'s scheduler: a pass at once, then one every `interval`, for ever (the
/// caller stops it by dropping or aborting the task). One pass at a time: a pass that runs
/// longer than the interval delays the next, which then starts as soon as it ends. A pass that
/// fails (the database unreachable) is logged and the next one tries again.
///
/// Dropped mid-pass (Ctrl-C), the sync in progress stops where it is, as when a Lambda dies:
/// its lock's connection is closed (see [`super::AudienceLock`]), its log row stays
/// `in_progress` with the checkpoint of its last finished batch, and once its claim expires
/// (`SYNC_LEASE_SECONDS`) the next pass or sync resumes it from there (one that had not
/// reached a checkpoint yet is failed as abandoned and started again).
pub async fn run_every(app: App, interval: Duration) {
    let mut passes = tokio::time::interval(interval);
    passes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        passes.tick().await;
        let opts = TickOptions::new(interval.max(MIN_SERVE_PASS), &app.sync);
        if let Err(e) = tick(&app, opts).await {
            tracing::error!(error = %e, "scheduler pass failed");
        }
    }
}

/// Claims and syncs due audiences until none is left or the time runs short. An audience this
/// pass already tried (synced, failed, or busy with a sync elsewhere) is not claimed again by
/// it. Each claim takes a connection only for its statement, so a pool of one connection is
/// enough for the pass and the sync it runs.
async fn sync_due(app: &App, opts: &TickOptions, tally: &mut Tally) -> Result<()> {
    let mut tried = Vec::new();
    while Instant::now() + opts.reserve < opts.deadline {
        let claimed = {
            let db = crate::db::get(&app.pool).await?;
            audiences::claim_next_due(&**db, opts.lease, &tried).await?
        };
        let Some(id) = claimed else { break };
        tried.push(id);
        tally.claimed += 1;
        let sync_deadline = opts.deadline.checked_sub(opts.reserve / 2);
        let outcome = super::run(app, id, None, &NoProgress, sync_deadline).await;
        let db = crate::db::get(&app.pool).await?;
        audiences::release_claim(&**db, id).await?;
        tally.add(id, outcome);
    }
    // What every consumer has read goes; a pass with nothing to do deletes nothing (an index
    // probe).
    let db = crate::db::get(&app.pool).await?;
    let trimmed = super::change_log::trim(&**db).await?;
    if trimmed > 0 {
        tracing::info!(trimmed, "change log trimmed");
    }
    Ok(())
}
