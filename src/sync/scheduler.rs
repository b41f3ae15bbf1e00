//! The scheduler pass, shared by the `scheduled-sync` Lambda and `audiences tick`: claim due
//! audiences one at a time (`FOR UPDATE SKIP LOCKED`, so concurrent passes share the work),
//! sync each through the engine, and stop claiming when the invocation's time runs short. A
//! sync that does not fit pauses at a checkpoint; a later pass resumes it.

use std::time::{Duration, Instant};

use super::{Batch, NoProgress, Tally};
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
    let tally = super::run_many(app, &Batch::Due(opts), &NoProgress).await?;
    tracing::info!(
        claimed = tally.claimed,
        completed = tally.completed,
        failed = tally.failed,
        resumed = tally.resumed,
        paused = tally.paused,
        skipped = tally.skipped,
        "scheduler pass done"
    );
    Ok(tally)
}

/// Claims and syncs due audiences until none is left or the time runs short. An audience this
/// pass already tried (synced, failed, or busy with a sync elsewhere) is not claimed again by
/// it. Each claim takes a connection only for its statement, so a pool of one connection is
/// enough for the pass and the sync it runs.
pub(super) async fn pass(app: &App, opts: &TickOptions, tally: &mut Tally) -> Result<()> {
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
