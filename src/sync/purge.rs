//! Erasure and opt-out reaching the platforms: every scheduler pass first removes the members
//! whose person was erased or opted out from every audience whose platform audience holds them,
//! whatever `auto_sync` or `is_active` say (DESIGN §8.2), instead of leaving them there until
//! each audience's next sync, which an audience without `auto_sync` may never have.
//!
//! What to purge is found set-based (`member_store::purge_due`): erased members (a partial
//! index) and the people the opt-out trigger queued (migrations/V2), both empty when nothing
//! happened. Each audience is purged under its sync lock, through the sync's own removal path
//! (`members::remove_batch`); a member row goes only once the platform accepted its removal.
//! An audience that cannot be purged now keeps its queue and its erased rows, and a later pass
//! tries again: nothing is dropped on the way.

use std::time::Instant;

use tokio_postgres::Client;
use uuid::Uuid;

use super::members::{self, Counters};
use super::{log, member_store as store, AudienceLock};
use crate::app::App;
use crate::audience::store as audiences;
use crate::destinations::google::{GoogleDestination, GoogleRow};
use crate::destinations::linkedin::{LinkedinDestination, LinkedinRow};
use crate::destinations::meta::{MetaDestination, MetaRow};
use crate::destinations::tiktok::{TiktokDestination, TiktokRow};
use crate::destinations::{deadline, DatabaseOnly, Destination, Platform, Removal};
use crate::error::{Error, Result};

/// Why an audience's purge waits for a later pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A sync holds the audience's lock. When it read its pages after the opt-out or erasure,
    /// it never sent the person; whatever it did send stays queued for the next pass.
    Busy,
    /// A full sync's replace session (paused, or left by a failed sync until the next sync
    /// closes it) may be open on the platform, which takes no removals meanwhile, and what the
    /// session received would come back when it ends.
    ReplaceOpen,
    /// The platform refused the removal (Meta: the audience would become too small).
    Refused,
    /// The platform or the database failed (in the service's log).
    Failed,
    /// The pass ran out of time.
    OutOfTime,
}

impl Wait {
    /// The audience may be free again later in the same pass (its sync, or the pass's own
    /// resume of the paused sync, has finished).
    pub fn may_clear_within_pass(self) -> bool {
        matches!(self, Wait::Busy | Wait::ReplaceOpen)
    }
}

/// What a purge did.
#[derive(Debug, Default)]
pub struct Report {
    /// Members removed (from the platform when it is configured).
    pub removed: u64,
    /// Audiences left for a later pass, and why.
    pub waiting: Vec<(Uuid, Wait)>,
}

/// Purges every audience that has erased or opted-out members, until `until`.
pub async fn all(app: &App, until: Instant) -> Result<Report> {
    let due = {
        let db = crate::db::get(&app.pool).await?;
        store::purge_due(&**db).await?
    };
    Ok(these(app, until, due).await)
}

/// Purges the given audiences, until `until`.
pub async fn these(app: &App, until: Instant, audience_ids: Vec<Uuid>) -> Report {
    let mut report = Report::default();
    for audience_id in audience_ids {
        let (removed, wait) = if Instant::now() >= until {
            (0, Some(Wait::OutOfTime))
        } else {
            match one(app, audience_id, until).await {
                Ok(done) => done,
                Err(e) => {
                    tracing::warn!(%audience_id, error = %e,
                        "purge of erased and opted-out members failed; the next pass retries");
                    (0, Some(Wait::Failed))
                }
            }
        };
        if removed > 0 {
            tracing::info!(%audience_id, removed, "erased and opted-out members removed");
        }
        report.removed += removed;
        if let Some(wait) = wait {
            report.waiting.push((audience_id, wait));
        }
    }
    report
}

/// One audience, under its lock: members removed, and why the rest waits (if it does).
async fn one(app: &App, audience_id: Uuid, until: Instant) -> Result<(u64, Option<Wait>)> {
    let conn = crate::db::get(&app.pool).await?;
    let Some(lock) = AudienceLock::try_acquire(conn, audience_id).await? else {
        return Ok((0, Some(Wait::Busy)));
    };
    let result = locked(app, lock.client(), audience_id, until).await;
    lock.release().await?;
    result
}

async fn locked(
    app: &App,
    db: &Client,
    audience_id: Uuid,
    until: Instant,
) -> Result<(u64, Option<Wait>)> {
    if log::replace_may_be_open(db, audience_id).await? {
        return Ok((0, Some(Wait::ReplaceOpen)));
    }
    store::drop_unsent_purged(db, audience_id).await?;
    let first = store::purge_page(db, audience_id, Uuid::nil()).await?;
    let outcome = if first.is_empty() {
        Ok((0, None))
    } else {
        // The destination as the sync chooses it; one that never received the audience's
        // members (no platform audience yet) holds none of them: the database side alone.
        // Its calls, retries included, end in time for the pass (as a sync's do).
        let audience = audiences::get(db, audience_id).await?;
        let (linkedin, tiktok) = (app.linkedin.as_deref(), app.tiktok.as_deref());
        deadline::within(Some(until), async {
            match audience.destination {
                Platform::Meta => {
                    match app
                        .meta
                        .as_deref()
                        .and_then(|c| MetaDestination::existing(c, &audience))
                    {
                        Some(mut dest) => {
                            remove_all(db, audience_id, &mut dest, first, until).await
                        }
                        None => {
                            let mut dest = DatabaseOnly::<MetaRow>::new("meta");
                            remove_all(db, audience_id, &mut dest, first, until).await
                        }
                    }
                }
                Platform::Google => {
                    let existing = match app.google.as_deref() {
                        Some(client) => GoogleDestination::existing(client, &audience)?,
                        None => None,
                    };
                    match existing {
                        Some(mut dest) => {
                            remove_all(db, audience_id, &mut dest, first, until).await
                        }
                        None => {
                            let mut dest = DatabaseOnly::<GoogleRow>::new("google");
                            remove_all(db, audience_id, &mut dest, first, until).await
                        }
                    }
                }
                Platform::Linkedin => {
                    match linkedin.and_then(|c| LinkedinDestination::existing(c, &audience)) {
                        Some(mut dest) => {
                            remove_all(db, audience_id, &mut dest, first, until).await
                        }
                        None => {
                            let mut dest = DatabaseOnly::<LinkedinRow>::new("linkedin");
                            remove_all(db, audience_id, &mut dest, first, until).await
                        }
                    }
                }
                Platform::Tiktok => {
                    match tiktok.and_then(|c| TiktokDestination::existing(c, &audience)) {
                        Some(mut dest) => {
                            remove_all(db, audience_id, &mut dest, first, until).await
                        }
                        None => {
                            let mut dest = DatabaseOnly::<TiktokRow>::new("tiktok");
                            remove_all(db, audience_id, &mut dest, first, until).await
                        }
                    }
                }
            }
        })
        .await
    };
    // An audience the platform no longer has holds nobody: nothing is left to remove there.
    let outcome = match outcome {
        Err(Error::PlatformAudienceGone {
            platform_audience_id,
            ..
        }) => {
            let audience = audiences::get(db, audience_id).await?;
            super::run::platform_audience_gone(db, &audience, &platform_audience_id).await?;
            store::drop_unsent_purged(db, audience_id).await?;
            Ok((0, None))
        }
        other => other,
    };
    // Whatever happened, people with nothing left on the platform leave the queue.
    store::settle_purge_queue(db, audience_id).await?;
    outcome
}

/// Removes the pages of members to purge, from `batch` on, a platform request each.
async fn remove_all<D: Destination>(
    db: &Client,
    audience_id: Uuid,
    dest: &mut D,
    mut batch: Vec<(Uuid, Vec<u8>)>,
    until: Instant,
) -> Result<(u64, Option<Wait>)> {
    let mut c = Counters::default();
    while let Some(&(last, _)) = batch.last() {
        if members::remove_batch(db, dest, &batch, false, &mut c).await? == Removal::Deferred {
            return Ok((c.removed, Some(Wait::Refused)));
        }
        if batch.len() < store::PAGE {
            break;
        }
        if Instant::now() >= until {
            return Ok((c.removed, Some(Wait::OutOfTime)));
        }
        batch = store::purge_page(db, audience_id, last).await?;
    }
    Ok((c.removed, None))
}
