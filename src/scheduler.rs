//! The scheduler pass, shared by the `scheduled-sync` Lambda and `audiences tick`: claim due
//! audiences one at a time (`FOR UPDATE SKIP LOCKED`, so concurrent passes share the work),
//! sync each, and stop claiming when the invocation's time runs short. A sync that does not fit
//! pauses at a checkpoint; a later pass resumes it.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::app::App;
use crate::error::{Error, Result};
use crate::sync::{self, NoProgress, SyncType};

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
    /// From the time left; `SYNC_RESERVE_SECONDS` (default 60, at most half the time left) and
    /// `SYNC_LEASE_SECONDS` (default 60) from the environment.
    pub fn with_time_left(left: Duration) -> Self {
        let secs = |var: &str, default: u64| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let reserve = Duration::from_secs(secs("SYNC_RESERVE_SECONDS", 60)).min(left / 2);
        TickOptions {
            deadline: Instant::now() + left,
            reserve,
            lease: Duration::from_secs(secs("SYNC_LEASE_SECONDS", 60).max(1)),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct TickSummary {
    pub claimed: usize,
    pub completed: usize,
    pub failed: usize,
    /// Syncs picked up from a checkpoint.
    pub resumed: usize,
    /// Syncs that ran out of time and will be resumed.
    pub paused: usize,
    /// Claimed, but a sync of it was already running elsewhere.
    pub skipped: usize,
    pub results: Vec<Value>,
}

/// Due: active, auto-synced, and never synced or synced `sync_interval_hours` ago; a failed one
/// is retried after at most an hour; a paused one as soon as possible.
const CLAIM_NEXT: &str = "\
    WITH next AS ( \
        SELECT a.id FROM custom_audience a \
        WHERE a.is_active AND a.auto_sync \
          AND (a.sync_claimed_until IS NULL OR a.sync_claimed_until < now()) \
          AND ( EXISTS (SELECT 1 FROM audience_sync_log l WHERE l.audience_id = a.id \
                        AND l.status = 'in_progress' AND l.checkpoint IS NOT NULL) \
             OR ( (a.last_synced_at IS NULL \
                   OR a.last_synced_at + make_interval(hours => a.sync_interval_hours) <= now()) \
              AND (a.status <> 'failed' OR a.last_attempted_at IS NULL \
                   OR a.last_attempted_at + LEAST(make_interval(hours => a.sync_interval_hours), \
                                                  interval '1 hour') <= now()) ) ) \
        ORDER BY a.last_synced_at NULLS FIRST, a.id \
        LIMIT 1 FOR UPDATE SKIP LOCKED) \
    UPDATE custom_audience a SET sync_claimed_until = now() + make_interval(secs => $1) \
    FROM next WHERE a.id = next.id \
    RETURNING a.id, a.last_synced_at IS NULL";

async fn claim_next(db: &Client, lease: Duration) -> Result<Option<(Uuid, bool)>> {
    let row = db.query_opt(CLAIM_NEXT, &[&lease.as_secs_f64()]).await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

async fn release(db: &Client, id: Uuid) -> Result<()> {
    db.execute(
        "UPDATE custom_audience SET sync_claimed_until = NULL WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// One pass: `full` the first time, `incremental` after; a paused sync resumes as it was.
pub async fn tick(app: &App, opts: &TickOptions) -> Result<TickSummary> {
    let db = crate::db::get(&app.pool).await?;
    let mut summary = TickSummary::default();
    while Instant::now() + opts.reserve < opts.deadline {
        let Some((id, never_synced)) = claim_next(&db, opts.lease).await? else {
            break;
        };
        summary.claimed += 1;
        let sync_type = if never_synced {
            SyncType::Full
        } else {
            SyncType::Incremental
        };
        let sync_deadline = opts.deadline.checked_sub(opts.reserve / 2);
        let outcome = sync::run_until(app, id, sync_type, &NoProgress, sync_deadline).await;
        release(&db, id).await?;
        match outcome {
            Ok(r) => {
                summary.resumed += usize::from(r.resumed);
                match r.status.as_str() {
                    "completed" => summary.completed += 1,
                    "in_progress" => summary.paused += 1,
                    _ => summary.failed += 1,
                }
                summary
                    .results
                    .push(serde_json::to_value(&r).unwrap_or(Value::Null));
            }
            Err(Error::Conflict(_)) => summary.skipped += 1,
            Err(e) => {
                // The audience's own failure is in its log; this is the pass failing (database).
                tracing::error!(audience_id = %id, error = %e, "scheduled sync could not run");
                summary.failed += 1;
            }
        }
    }
    tracing::info!(
        claimed = summary.claimed,
        completed = summary.completed,
        failed = summary.failed,
        resumed = summary.resumed,
        paused = summary.paused,
        skipped = summary.skipped,
        "scheduler pass done"
    );
    Ok(summary)
}
