//! A sync's diff, in a transaction of its own: the segment refreshed, the members reconciled
//! with it (joiners listed; synced leavers listed too on a change-driven diff, flagged
//! `removal_pending` otherwise), and what that leaves to do
//! counted. The sync commits it unless the removal guardrails block it; a dry run always rolls
//! it back. Either way a diff that is not kept leaves no trace: no segment change, no flag, no
//! joiner, the change log's horizons where they were (the next diff sees the same changes).

use tokio_postgres::Client;
use uuid::Uuid;

use super::member_store::{self, Diff, DiffCounts, Joiners};
use super::SyncType;
use crate::audience::Audience;
use crate::error::{Error, Result};

/// What a diff found.
#[derive(Debug, Clone, Copy)]
pub struct Made {
    pub diff: Diff,
    pub counts: DiffCounts,
    /// Members left without a person by an erasure, counted before the diff removed them from
    /// view.
    pub erased: u64,
    /// Where the pass finds the joiners.
    pub joiners: Joiners,
}

/// Opens the transaction the diff runs in, on the connection holding the audience's lock.
pub async fn begin(db: &Client) -> Result<()> {
    db.batch_execute("BEGIN").await?;
    Ok(())
}

/// Keeps the diff (`keep`) or undoes it.
pub async fn end(db: &Client, keep: bool) -> Result<()> {
    db.batch_execute(if keep { "COMMIT" } else { "ROLLBACK" })
        .await?;
    Ok(())
}

/// Makes the diff of `audience` in the transaction [`begin`] opened, joiners listed under
/// `list_id`; or, with `may_stream` (the pass reads on a connection of its own) and an audience
/// without member rows, no list: a first sync's joiners are every eligible person
/// ([`member_store::begin_first`]), none leaves, and the pass counts them. On an error the transaction is rolled back (an aborted transaction would refuse
/// the log row's outcome), and the error returned.
pub async fn make(
    db: &Client,
    audience: &Audience,
    list_id: Uuid,
    sync_type: SyncType,
    may_stream: bool,
) -> Result<Made> {
    let made = async {
        let Some(segment_id) = audience.segment_id else {
            return Err(Error::invalid(
                "segment_id",
                "the audience has no segment: set segment_id before syncing",
            ));
        };
        crate::segment::refresh(db, segment_id).await?;
        let erased = member_store::erased(db, audience.id).await?;
        if may_stream && member_store::begin_first(db, audience.id, sync_type).await? {
            return Ok(Made {
                diff: Diff::Full,
                counts: DiffCounts::default(),
                erased,
                joiners: Joiners::Eligible,
            });
        }
        let diff = member_store::reconcile(db, audience.id, list_id, sync_type).await?;
        let counts = member_store::diff_counts(db, audience.id, list_id).await?;
        Ok(Made {
            diff,
            counts,
            erased,
            joiners: Joiners::Listed(list_id),
        })
    }
    .await;
    if made.is_err() {
        if let Err(e) = end(db, false).await {
            tracing::warn!(error = %e, "could not roll the failed diff back");
        }
    }
    made
}
