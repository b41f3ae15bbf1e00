//! A dry run (DESIGN §8.4): what a sync of one audience would do, found by doing its diff and
//! reading its pass, in one transaction that is always rolled back, under the audience's lock
//! (a dry run during a sync gets the conflict a second sync gets). It writes nothing (no sync
//! log row, no member state, no segment change, the change log's horizons untouched) and calls
//! no platform: each destination lists the calls it would make ([`Destination::plan`]).

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::Client;
use uuid::Uuid;

use super::guard::{self, Block};
use super::member_store::{self, Diff, PAGE};
use super::members::{self, Pass, BATCH};
use super::run::{pass_for, with_destination};
use super::{diff, log, SyncOptions, SyncType};
use crate::app::App;
use crate::audience::store as audiences;
use crate::audience::{Audience, AudienceType};
use crate::destinations::{Destination, PlannedCall, Step};
use crate::error::{Error, Result};

/// The answer of a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub dry_run: bool,
    pub audience_id: Uuid,
    pub sync_type: SyncType,
    /// People who would join, members who would leave (of those the platform holds), and
    /// members whose rows would be replaced by new ones.
    pub joiners: u64,
    pub leavers: u64,
    pub changed: u64,
    /// Members that could not be sent, by reason.
    pub unsendable: BTreeMap<String, u64>,
    /// What would stop the sync (`null`: nothing, or `force` was given).
    pub would_block: Option<Block>,
    /// The calls that change the platform, grouped in the order the sync makes them.
    pub destination_calls: Vec<PlannedCall>,
}

/// A dry run of a sync of `audience_id` as `options` ask (`sync_type` by default
/// `incremental`).
pub async fn dry_run(app: &App, audience_id: Uuid, options: SyncOptions) -> Result<DryRun> {
    let lock = super::lock(app, audience_id).await?;
    let result = locked(app, lock.client(), audience_id, options).await;
    lock.release().await?;
    result
}

async fn locked(app: &App, db: &Client, id: Uuid, options: SyncOptions) -> Result<DryRun> {
    let audience = audiences::get(db, id).await?;
    // The next sync would carry that one on, without a diff: there is nothing to show yet.
    if let Some(paused) = log::find_resumable(db, id).await? {
        return Err(Error::Conflict(format!(
            "a sync of audience {id} is paused at a checkpoint (sync log {}); the next sync \
             resumes it rather than starting anew: dry-run again once it has finished",
            paused.log_id
        )));
    }
    let sync_type = options.sync_type.unwrap_or(SyncType::Incremental);
    diff::begin(db).await?;
    let planned = async {
        // The id a sync's joiner list is kept under (its log row's): rolled back with the rest.
        let list_id = log::open(db, id, sync_type).await?;
        with_destination!(app, &audience, |dest| {
            plan(db, &audience, list_id, sync_type, &dest).await
        })
    }
    .await;
    // Never kept. (A failed diff rolled back already; a second ROLLBACK only warns.)
    let undone = diff::end(db, false).await;
    let (mut dry, counts) = planned?;
    undone?;
    dry.would_block = guard::check(&audience, &counts).filter(|_| !options.force);
    Ok(dry)
}

/// The diff, the pass read, and the calls `dest` would make, in the open transaction.
async fn plan<D: Destination>(
    db: &Client,
    audience: &Audience,
    list_id: Uuid,
    sync_type: SyncType,
    dest: &D,
) -> Result<(DryRun, member_store::DiffCounts)> {
    let mut dry = DryRun {
        dry_run: true,
        audience_id: audience.id,
        sync_type,
        joiners: 0,
        leavers: 0,
        changed: 0,
        unsendable: BTreeMap::new(),
        would_block: None,
        destination_calls: Vec::new(),
    };
    // An engagement audience is built by the platform from pixel events: no members.
    if audience.audience_type == AudienceType::Engagement {
        dry.destination_calls = dest.plan(audience, Step::Finish);
        return Ok((dry, member_store::DiffCounts::default()));
    }
    let made = diff::make(db, audience, list_id, sync_type, false).await?;
    let mut calls = dest.plan(audience, Step::Open);
    // A new platform audience holds nothing: as the sync does, what was sent is forgotten
    // (leavers' rows with it).
    let creates = !calls.is_empty();
    if creates {
        member_store::forget_sent(db, audience.id).await?;
    }
    let changes_only = matches!(made.diff, Diff::Changes { .. });
    let pass = pass_for(sync_type, dest.replaces(), changes_only);
    let r = members::rehearse::<D::Row>(db, audience.id, list_id, pass).await?;
    let mut remove = |rows: u64, size: usize| {
        for batch in batches(rows, size) {
            calls.extend(dest.plan(audience, Step::Remove { rows: batch }));
        }
    };
    // A replace takes leavers out with everything not sent again.
    if pass != Pass::Replace && !creates {
        remove(made.counts.leavers, PAGE);
    }
    remove(r.removals, BATCH);
    for rows in batches(r.adds, BATCH) {
        let replace = pass == Pass::Replace;
        calls.extend(dest.plan(audience, Step::Send { rows, replace }));
    }
    if pass == Pass::Replace && r.adds == 0 {
        // A replace cannot carry zero rows: the sync removes every stored row instead.
        let held = member_store::held(db, audience.id).await?;
        for rows in batches(held, PAGE) {
            calls.extend(dest.plan(audience, Step::Remove { rows }));
        }
    }
    calls.extend(dest.plan(audience, Step::Finish));
    dry.joiners = made.counts.joiners;
    dry.leavers = made.counts.leavers;
    dry.changed = r.counters.changed;
    dry.unsendable = r.unsendable;
    dry.destination_calls = calls;
    Ok((dry, made.counts))
}

/// `rows` in batches of at most `size`, as the sync hands them to its destination.
fn batches(rows: u64, size: usize) -> impl Iterator<Item = u64> {
    let size = size.max(1) as u64;
    (0..rows.div_ceil(size)).map(move |i| size.min(rows - i * size))
}

#[cfg(test)]
mod tests {
    use super::batches;

    #[test]
    fn rows_are_cut_into_batches_the_last_one_short() {
        assert_eq!(batches(0, 10).count(), 0);
        assert_eq!(batches(25, 10).collect::<Vec<_>>(), [10, 10, 5]);
        assert_eq!(batches(20, 10).collect::<Vec<_>>(), [10, 10]);
    }
}
