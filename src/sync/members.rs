//! Moving members to their destination in batches: members are read from PostgreSQL a page at a
//! time (keyset pagination), hashed, sent, and marked batch by batch, so memory stays flat
//! whatever the audience's size, and a sync that stops half-way resumes from what was accepted.

use std::collections::HashSet;

use serde_json::Value;
use tokio_postgres::Client;
use uuid::Uuid;

use super::member_store::{self as store, Joiners, Leavers, Listing, Page, PageReader, Rows, Who};
use super::Progress;
use crate::destinations::{Destination, Removal, Row};
use crate::error::Result;

/// Rows per request to the destination (Meta's maximum), and our page size.
pub const BATCH: usize = store::PAGE;
/// A pass that examined this many members had a joiner list worth vacuuming once done.
const LONG_LIST: u64 = 100_000;

/// Which members a pass examines, and how it treats what Meta already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Every member, in one replace session: Meta ends up holding exactly what is sent.
    Replace,
    /// Members not yet synced (joiners and earlier failures).
    Add,
    /// Every member: unchanged ones skipped, changed ones removed (old hashes) and re-added.
    Update,
    /// A full sync to a platform without a replace ([`Destination::replaces`]): leavers and
    /// changed members' old hashes removed, every member sent again (which also renews a
    /// membership the platform lets expire).
    Refresh,
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Counters {
    pub examined: u64,
    pub sent: u64,
    pub accepted: u64,
    pub unchanged: u64,
    pub changed: u64,
    pub no_identifier: u64,
    pub rejected_by_meta: u64,
    /// Of those, the ones Meta quoted (mapped back to members and marked failed).
    pub rejected_quoted: u64,
    pub removed: u64,
    pub removal_deferred: u64,
    /// Members whose person was erased since the last sync (those Meta held are among `removed`).
    pub erased: u64,
    /// What the diff found: people listed to join, and members leaving whose rows the
    /// platform held (a dry run shows the same two numbers).
    pub joiners: u64,
    pub leavers: u64,
    /// The removal guardrails' block this sync was forced through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forced_past: Option<super::guard::Block>,
}

impl Counters {
    pub fn failed(&self) -> u64 {
        self.no_identifier + self.rejected_by_meta
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Where a pass starts (a fresh sync, or a checkpoint), when it must stop, and where it records
/// how far it got.
pub struct PassRun {
    pub pass: Pass,
    /// Members whose person ids sort up to here were handled by an earlier invocation.
    pub from: Uuid,
    pub counters: Counters,
    /// Stop (checkpointed) before reading another page after this instant.
    pub deadline: Option<std::time::Instant>,
    /// The sync log row the checkpoint is written to.
    pub log_id: Uuid,
    /// Where the joiners are: listed by the diff, or every eligible person (a first sync).
    pub joiners: Joiners,
    /// Read a first sync's people in one stream (`reader` is a connection of its own).
    pub stream: bool,
    /// Remove the leavers from the destination before any row is added ([`remove_leavers`]).
    pub remove_first: bool,
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassEnd {
    Done,
    /// Out of time: everything read was handled, the checkpoint says where to go on.
    Paused,
}

/// The checkpoint a pass leaves in its sync log row: enough to continue in another invocation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub pass: String,
    pub cursor: Uuid,
    pub counters: Counters,
    /// The destination's own state (Meta: the replace session and its next batch).
    pub destination: Value,
    /// A first sync: its joiners are the eligible people without a member row (no list).
    #[serde(default)]
    pub eligible: bool,
}

impl Pass {
    pub fn as_str(self) -> &'static str {
        match self {
            Pass::Replace => "replace",
            Pass::Add => "add",
            Pass::Update => "update",
            Pass::Refresh => "refresh",
        }
    }
}

async fn save_checkpoint<D: Destination>(
    db: &Client,
    run: &PassRun,
    cursor: Uuid,
    c: &Counters,
    dest: &D,
) -> Result<()> {
    let checkpoint = Checkpoint {
        pass: run.pass.as_str().into(),
        cursor,
        counters: c.clone(),
        destination: dest.checkpoint(),
        eligible: run.joiners == Joiners::Eligible,
    };
    super::log::save_checkpoint(
        db,
        run.log_id,
        &serde_json::to_value(&checkpoint).unwrap_or(Value::Null),
    )
    .await
}

/// Sends the members the pass selects to `dest`, a page at a time from `run.from` on.
///
/// Pages are read on `reader` while the page before is hashed, sent and marked on `db`: with a
/// second connection the two run side by side on the server (a sync spends about as long
/// reading pages as writing what was accepted). `reader` may be `db` itself; then the reads
/// queue behind the writes on one connection.
pub async fn push<D: Destination>(
    db: &Client,
    reader: &Client,
    audience_id: Uuid,
    run: PassRun,
    dest: &mut D,
    progress: &dyn Progress,
) -> Result<(Counters, PassEnd)> {
    let pages = match run.joiners {
        Joiners::Listed(list_id) => {
            PageReader::listed(reader, audience_id, list_id, run.pass == Pass::Add).await?
        }
        Joiners::Eligible if run.stream => PageReader::stream(reader, audience_id).await?,
        Joiners::Eligible => PageReader::unwritten(reader, audience_id).await?,
    };
    // Boxed: the pass's future, nested in the sync's, made too deep a type for the compiler
    // to lay out in the Lambda binaries.
    let shared = std::ptr::eq(db, reader);
    let pushed = Box::pin(push_pages(
        db,
        &pages,
        shared,
        audience_id,
        run,
        dest,
        progress,
    ))
    .await;
    let closed = pages.close().await;
    let pushed = pushed?;
    closed?;
    Ok(pushed)
}

async fn push_pages<D: Destination>(
    db: &Client,
    pages: &PageReader<'_>,
    // `pages` reads on `db`.
    shared: bool,
    audience_id: Uuid,
    mut run: PassRun,
    dest: &mut D,
    progress: &dyn Progress,
) -> Result<(Counters, PassEnd)> {
    let pass = run.pass;
    let mut c = std::mem::take(&mut run.counters);
    let mut outbox = Outbox::new(audience_id, run.joiners);
    // Each page is read, then hashed on a thread of the blocking pool, while the page before
    // is sent and written: hashing in turn with the writes left the database waiting for it
    // (a first sync of 1,000,000 members spent ~45 ms a page hashing, then ~55 ms writing).
    let read_and_examine = |after: Uuid, hasher: <D::Row as Row>::Hasher| async move {
        let page = pages.read(after).await?;
        Ok::<_, crate::error::Error>(off_task(move || examine::<D::Row>(page, pass, hasher)).await)
    };
    // Everything up to here has been handled. (A first sync resumed reads whoever is still
    // without a member row, from the start.)
    let mut cursor = match run.joiners {
        Joiners::Listed(_) => run.from,
        Joiners::Eligible => Uuid::nil(),
    };
    let first = read_and_examine(cursor, Default::default());
    let (mut examined, mut hasher) = if run.remove_first {
        let listed = run.joiners.list_id();
        let removed = remove_leavers(db, audience_id, listed, dest, false, &mut c);
        if shared {
            // One connection: the removals' statements first, then the page's.
            removed.await?;
            first.await?
        } else {
            // The first page is read and examined while the leavers are removed: no leaver's
            // row is among those a pass adds (they are synced, or flagged), and nothing is sent
            // before both are done, so removals still reach the destination before any add.
            let (first, removed) = tokio::join!(first, removed);
            removed?;
            first?
        }
    } else {
        first.await?
    };
    while let Some(end) = examined.end {
        if run.deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            // The page read ahead is simply read again by the invocation that resumes.
            outbox.flush(db, dest, &mut c, Flush::Drain, &run).await?;
            save_checkpoint(db, &run, cursor, &c, dest).await?;
            return Ok((c, PassEnd::Paused));
        }
        let len = examined.len;
        let handle = async {
            let failed = outbox.absorb(examined, &mut c);
            store::mark_failed(db, &outbox.list, &failed).await?;
            outbox.flush(db, dest, &mut c, Flush::Full, &run).await
        };
        let (next, handled) = tokio::join!(read_and_examine(end, hasher), handle);
        handled?;
        progress.advance(len as u64);
        cursor = end;
        (examined, hasher) = next?;
    }
    outbox.flush(db, dest, &mut c, Flush::Last, &run).await?;
    if dest.needs_closing() {
        close_session(db, audience_id, dest).await?;
    }
    match run.joiners {
        Joiners::Listed(list_id) => store::clear_list(db, list_id, c.examined >= LONG_LIST).await?,
        Joiners::Eligible => {
            // Not counted by the diff: every member a first sync examined joined.
            c.joiners = c.examined;
            store::first_done(db, audience_id).await?
        }
    }
    Ok((c, PassEnd::Done))
}

/// Runs `f` on a thread of the blocking pool, so that the CPU it takes overlaps the database's
/// work instead of holding up this task's other futures.
async fn off_task<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        // A panic in `f` goes on here, as if `f` had run on this task.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A page examined: its size and keyset end, the rows to add and the stored rows to remove
/// first, the members that cannot be sent, and the counts.
struct Examined<R> {
    len: usize,
    end: Option<Uuid>,
    adds: Vec<Pending<R>>,
    removals: Vec<(Uuid, Vec<u8>)>,
    failed: Rows<String>,
    examined: u64,
    unchanged: u64,
    changed: u64,
    no_identifier: u64,
}

impl<R> Examined<R> {
    fn count_into(&self, c: &mut Counters) {
        c.examined += self.examined;
        c.unchanged += self.unchanged;
        c.changed += self.changed;
        c.no_identifier += self.no_identifier;
    }
}

/// Hashes a page of members and sorts them: to add, to remove first, or failed (no usable
/// identifier). The hasher (its caches) comes back with the result.
fn examine<R: Row>(page: Page, pass: Pass, mut hasher: R::Hasher) -> (Examined<R>, R::Hasher) {
    let mut e = Examined {
        len: page.len(),
        end: page.end(),
        adds: Vec::with_capacity(page.len()),
        removals: Vec::new(),
        failed: Rows::default(),
        examined: 0,
        unchanged: 0,
        changed: 0,
        no_identifier: 0,
    };
    for line in page.lines() {
        e.examined += 1;
        let who = line.who();
        let old = line.stored();
        let row = match R::hash(&mut hasher, &line.person()) {
            Ok(row) => row,
            Err(reason) => {
                e.no_identifier += 1;
                e.failed.push(who, reason.to_string());
                if let (Some(old), Who::Member(id), true) = (old, who, pass != Pass::Replace) {
                    e.removals.push((id, old));
                }
                continue;
            }
        };
        let new = row.to_bytes();
        match old {
            Some(old) if pass == Pass::Update && line.is_synced() && old == new => {
                e.unchanged += 1;
                continue;
            }
            Some(old) if pass != Pass::Replace && old != new => {
                if let Who::Member(id) = who {
                    e.changed += 1;
                    e.removals.push((id, old));
                }
            }
            _ => {}
        }
        e.adds.push(Pending {
            who,
            key: line.person_id(),
            row,
            bytes: new,
        });
    }
    (e, hasher)
}

/// What a pass would do, found by a dry run: the pages the pass would read, examined as it
/// would examine them, nothing sent or written.
#[derive(Debug, Default)]
pub struct Rehearsal {
    pub counters: Counters,
    /// Members that cannot be sent, by reason.
    pub unsendable: std::collections::BTreeMap<String, u64>,
    /// Rows the pass would add, and stored rows it would remove first (changed members' old
    /// rows; those of members left without a usable identifier).
    pub adds: u64,
    pub removals: u64,
}

/// Reads and examines the members `pass` would send, on `db` (in the dry run's transaction,
/// which holds its diff), as [`push`] does.
pub async fn rehearse<R: Row>(
    db: &Client,
    audience_id: Uuid,
    list_id: Uuid,
    pass: Pass,
) -> Result<Rehearsal> {
    let mut r = Rehearsal::default();
    let mut hasher = R::Hasher::default();
    let pages = PageReader::listed(db, audience_id, list_id, pass == Pass::Add).await?;
    let mut cursor = Uuid::nil();
    loop {
        let examined;
        (examined, hasher) = examine::<R>(pages.read(cursor).await?, pass, hasher);
        let Some(end) = examined.end else { break };
        examined.count_into(&mut r.counters);
        for reason in examined.failed.values() {
            *r.unsendable.entry(reason.clone()).or_default() += 1;
        }
        r.adds += examined.adds.len() as u64;
        r.removals += examined.removals.len() as u64;
        cursor = end;
    }
    Ok(r)
}

/// A replace session left open by a paused invocation, when nothing was left to send: its last
/// batch re-sends one row already sent in it (harmless: a replace keeps the union of its rows).
async fn close_session<D: Destination>(db: &Client, audience_id: Uuid, dest: &mut D) -> Result<()> {
    let stored = store::last_synced_row(db, audience_id).await?;
    if let Some(row) = stored.as_deref().and_then(D::Row::from_bytes) {
        dest.send(&[&row], true).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Send whole batches, holding back at least one row for the last batch.
    Full,
    /// Send everything, none of it as the last batch (pausing).
    Drain,
    /// Send everything; the final batch closes a replace session.
    Last,
}

/// Rows waiting to go out. Adds are held back until more than a batch is waiting, so the last
/// batch of a replace session is known to be the last and is never empty.
/// A member on its way out: whose row, its keyset position (person id), its hashes.
struct Pending<R> {
    who: Who,
    key: Uuid,
    row: R,
    bytes: Vec<u8>,
}

struct Outbox<R> {
    list: Listing,
    adds: Vec<Pending<R>>,
    /// Member row ids with the hashes the destination holds for them.
    removals: Vec<(Uuid, Vec<u8>)>,
}

impl<R: Row> Outbox<R> {
    fn new(audience_id: Uuid, joiners: Joiners) -> Self {
        Outbox {
            list: Listing {
                audience_id,
                joiners,
            },
            adds: Vec::new(),
            removals: Vec::new(),
        }
    }

    /// Takes in a page examined; returns the members of it that cannot be sent.
    fn absorb(&mut self, e: Examined<R>, c: &mut Counters) -> Rows<String> {
        e.count_into(c);
        self.adds.extend(e.adds);
        self.removals.extend(e.removals);
        e.failed
    }

    async fn flush<D: Destination<Row = R>>(
        &mut self,
        db: &Client,
        dest: &mut D,
        c: &mut Counters,
        mode: Flush,
        run: &PassRun,
    ) -> Result<()> {
        // Old hashes go before new ones are added: Meta removes a person matched by any key,
        // so removing after adding could take out the re-added person.
        let removal_threshold = if mode == Flush::Full { BATCH } else { 1 };
        while self.removals.len() >= removal_threshold {
            let n = self.removals.len().min(BATCH);
            let batch: Vec<_> = self.removals.drain(..n).collect();
            if remove_batch(db, dest, &batch, false, c).await? == Removal::Deferred {
                // Their old hashes stay stored (and in Meta) until a later sync removes them;
                // adding the new ones now would lose track of the old.
                let kept: HashSet<Who> = batch.iter().map(|(id, _)| Who::Member(*id)).collect();
                self.adds.retain(|p| !kept.contains(&p.who));
            }
        }
        while !self.adds.is_empty() && (mode != Flush::Full || self.adds.len() > BATCH) {
            let n = self.adds.len().min(BATCH);
            let batch: Vec<_> = self.adds.drain(..n).collect();
            let is_last = mode == Flush::Last && self.adds.is_empty();
            add_batch(db, dest, &self.list, &batch, is_last, c).await?;
            let sent_up_to = batch.last().map_or(run.from, |p| p.key);
            save_checkpoint(db, run, sent_up_to, c, dest).await?;
        }
        Ok(())
    }
}

async fn add_batch<D: Destination>(
    db: &Client,
    dest: &mut D,
    list: &Listing,
    batch: &[Pending<D::Row>],
    last: bool,
    c: &mut Counters,
) -> Result<()> {
    let rows: Vec<&D::Row> = batch.iter().map(|p| &p.row).collect();
    c.sent += batch.len() as u64;
    let accepted = dest.send(&rows, last).await?;
    let mut synced = Rows::default();
    let mut rejected = Rows::default();
    for (i, p) in batch.iter().enumerate() {
        if accepted.invalid.contains(&i) {
            rejected.push(p.who, dest.rejected_reason().into());
        } else {
            synced.push(p.who, p.bytes.as_slice());
        }
    }
    // Members Meta counted as invalid without quoting them stay marked synced (the batch was
    // accepted) but are counted, so the log tells the truth.
    c.accepted += (synced.len() as u64).saturating_sub(accepted.unidentified);
    c.rejected_by_meta += rejected.len() as u64 + accepted.unidentified;
    c.rejected_quoted += rejected.len() as u64;
    store::mark_synced(db, list, &synced).await?;
    store::mark_failed(db, list, &rejected).await
}

/// Removes stored hashes from the destination; the rows of leavers (flagged, or all of them
/// with `leaving`) go, the others keep no hashes (the destination no longer holds them). Also
/// the purge's removal (`sync::purge`).
pub async fn remove_batch<D: Destination>(
    db: &Client,
    dest: &mut D,
    batch: &[(Uuid, Vec<u8>)],
    leaving: bool,
    c: &mut Counters,
) -> Result<Removal> {
    let rows: Vec<D::Row> = batch
        .iter()
        .filter_map(|(_, b)| D::Row::from_bytes(b))
        .collect();
    let outcome = dest.remove(&rows).await?;
    if outcome == Removal::Deferred {
        c.removal_deferred += batch.len() as u64;
        return Ok(outcome);
    }
    let ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
    store::mark_removed(db, &ids, leaving).await?;
    c.removed += batch.len() as u64;
    Ok(outcome)
}

/// Removes what leavers (left the segment, opted out, erased) left behind in the destination:
/// those listed under `listed` by this sync's diff, then those flagged. With `everything`,
/// every stored hash of the audience goes (a full sync of an empty segment).
pub async fn remove_leavers<D: Destination>(
    db: &Client,
    audience_id: Uuid,
    listed: Option<Uuid>,
    dest: &mut D,
    everything: bool,
    c: &mut Counters,
) -> Result<()> {
    let before = c.removal_deferred;
    let mut deferred = false;
    if let Some(list_id) = listed {
        deferred = remove_pages(db, audience_id, Leavers::Listed(list_id), dest, c).await?;
        if deferred {
            // Flagged as the others waiting are: a later sync removes them.
            store::defer_listed(db, list_id).await?;
        } else {
            store::clear_leavers(db, list_id).await?;
        }
    }
    if !deferred {
        deferred = remove_pages(db, audience_id, Leavers::Flagged { everything }, dest, c).await?;
    }
    if deferred {
        // Every flagged row the destination still holds waits for a later sync.
        c.removal_deferred = before + store::pending_removals(db, audience_id, everything).await?;
    }
    store::drop_unsent_leavers(db, audience_id).await
}

/// Removes the pages of `leavers` from the destination until none is left, or it defers them
/// (returns true).
async fn remove_pages<D: Destination>(
    db: &Client,
    audience_id: Uuid,
    leavers: Leavers,
    dest: &mut D,
    c: &mut Counters,
) -> Result<bool> {
    let leaving = matches!(leavers, Leavers::Listed(_));
    let mut cursor = Uuid::nil();
    loop {
        let batch = store::removal_page(db, audience_id, leavers, cursor).await?;
        let Some((last, _)) = batch.last() else {
            return Ok(false);
        };
        cursor = *last;
        if remove_batch(db, dest, &batch, leaving, c).await? == Removal::Deferred {
            return Ok(true);
        }
    }
}
