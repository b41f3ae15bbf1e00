//! Moving members to their destination in batches: members are read from PostgreSQL a page at a
//! time (keyset pagination), hashed, sent, and marked batch by batch, so memory stays flat
//! whatever the audience's size, and a sync that stops half-way resumes from what was accepted.

use std::collections::HashSet;

use serde_json::Value;
use tokio_postgres::{Client, Row, Statement};
use uuid::Uuid;

use super::destination::{Destination, Removal};
use super::Progress;
use crate::destinations::meta::hashing::{unsendable_reason, HashedRow, Hasher};
use crate::error::Result;
use crate::identity::PersonFields;

/// Meta's maximum rows per request, and our page size.
pub const BATCH: usize = 10_000;

/// Which members a pass examines, and how it treats what Meta already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Every member, in one replace session: Meta ends up holding exactly what is sent.
    Replace,
    /// Members not yet synced (joiners and earlier failures).
    Add,
    /// Every member: unchanged ones skipped, changed ones removed (old hashes) and re-added.
    Update,
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
}

impl Counters {
    pub fn failed(&self) -> u64 {
        self.no_identifier + self.rejected_by_meta
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// One page of members (all, or only the unsynced) merged with the joiners, in person order:
/// see `audience_member_page` in migrations/V7.
const PAGE_SQL: &str =
    "SELECT id, person_id, hashes, is_synced FROM audience_member_page($1, $2, $3, $4, $5)";
/// The contact data of a page's people, in id order: see `audience_page_people` in
/// migrations/V7. (A LATERAL lookup per member cost three times as much.)
const PERSONS_SQL: &str = "\
    SELECT id, email, phone, first_name, last_name, city, state, zip, country, date_of_birth, \
           gender \
    FROM audience_page_people($1)";

/// A page of members and their people, both in person order.
struct Page {
    members: Vec<Row>,
    persons: Vec<Row>,
}

/// The two statements a page is read with, prepared once a pass.
struct PageReader<'a> {
    reader: &'a Client,
    members: Statement,
    persons: Statement,
    unsynced_only: bool,
}

impl<'a> PageReader<'a> {
    async fn new(reader: &'a Client, pass: Pass) -> Result<PageReader<'a>> {
        Ok(PageReader {
            reader,
            members: reader.prepare(PAGE_SQL).await?,
            persons: reader.prepare(PERSONS_SQL).await?,
            unsynced_only: pass == Pass::Add,
        })
    }

    async fn read(
        &self,
        audience_id: Uuid,
        list_id: Uuid,
        after: Uuid,
    ) -> std::result::Result<Page, tokio_postgres::Error> {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &audience_id,
            &list_id,
            &after,
            &(BATCH as i32),
            &self.unsynced_only,
        ];
        let members = self.reader.query(&self.members, &params).await?;
        let persons = if members.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<Uuid> = members.iter().map(|m| m.get(1)).collect();
            self.reader.query(&self.persons, &[&ids]).await?
        };
        Ok(Page { members, persons })
    }
}

impl Page {
    /// The person id the page ends at: where the next one starts.
    fn end(&self) -> Option<Uuid> {
        self.members.last().map(|m| m.get(1))
    }

    /// Each member with its person row. A member whose person was deleted since the page was
    /// chosen has none and is left out (the next diff deals with it).
    fn pairs(&self) -> impl Iterator<Item = (&Row, &Row)> {
        let members: Vec<Uuid> = self.members.iter().map(|m| m.get(1)).collect();
        let persons: Vec<Uuid> = self.persons.iter().map(|p| p.get(0)).collect();
        matched(&members, &persons)
            .into_iter()
            .map(|(m, p)| (&self.members[m], &self.persons[p]))
    }
}

/// Positions of equal keys in two ascending lists whose second is a subset of the first.
fn matched(members: &[Uuid], persons: &[Uuid]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::with_capacity(persons.len());
    let mut p = 0;
    for (m, key) in members.iter().enumerate() {
        while p < persons.len() && persons[p] < *key {
            p += 1;
        }
        if p < persons.len() && persons[p] == *key {
            pairs.push((m, p));
            p += 1;
        }
    }
    pairs
}

/// Whose row a page line is: a member's (its row id), or a joiner's (its person id; the row is
/// written once, when the sync knows what to put in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Member(Uuid),
    Joiner(Uuid),
}

impl Who {
    fn of(r: &Row) -> Who {
        match r.get::<_, Option<Uuid>>(0) {
            Some(id) => Who::Member(id),
            None => Who::Joiner(r.get(1)),
        }
    }
}

/// A row of [`PERSONS_SQL`].
fn person_fields(r: &Row) -> PersonFields<'_> {
    PersonFields {
        email: r.get(1),
        phone: r.get(2),
        first_name: r.get(3),
        last_name: r.get(4),
        city: r.get(5),
        state: r.get(6),
        zip: r.get(7),
        country: r.get(8),
        date_of_birth: r.get(9),
        gender: r.get(10),
    }
}

/// Members left without a person by an erasure, before this sync reconciles them away.
pub async fn erased(db: &Client, audience_id: Uuid) -> Result<u64> {
    let row = db
        .query_one(
            "SELECT count(*) FROM audience_member_sync WHERE audience_id = $1 AND person_id IS NULL",
            &[&audience_id],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// How many members a pass will examine (for progress).
/// `list_id`: the sync whose joiners count too.
pub async fn count(db: &Client, audience_id: Uuid, list_id: Uuid, pass: Pass) -> Result<u64> {
    let all = pass != Pass::Add;
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM audience_member_sync m \
                     WHERE m.audience_id = $1 AND NOT m.removal_pending AND m.person_id IS NOT NULL \
                       AND ($2 OR NOT m.is_synced)) \
                  + (SELECT count(*) FROM audience_member_joiner WHERE list_id = $3)",
            &[&audience_id, &all, &list_id],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
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
}

impl Pass {
    pub fn as_str(self) -> &'static str {
        match self {
            Pass::Replace => "replace",
            Pass::Add => "add",
            Pass::Update => "update",
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
    mut run: PassRun,
    dest: &mut D,
    progress: &dyn Progress,
) -> Result<(Counters, PassEnd)> {
    let pass = run.pass;
    let mut c = std::mem::take(&mut run.counters);
    let mut hasher = Hasher::new();
    // The diff listed this sync's joiners under its log row id.
    let list_id = run.log_id;
    let mut outbox = Outbox::new(audience_id, list_id);
    let pages = PageReader::new(reader, pass).await?;
    let fetch = |after: Uuid| pages.read(audience_id, list_id, after);
    // Everything up to here has been handled.
    let mut cursor = run.from;
    let mut page = fetch(cursor).await?;
    while let Some(end) = page.end() {
        if run.deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            // The page read ahead is simply read again by the invocation that resumes.
            outbox.flush(db, dest, &mut c, Flush::Drain, &run).await?;
            save_checkpoint(db, &run, cursor, &c, dest).await?;
            return Ok((c, PassEnd::Paused));
        }
        let handle = async {
            let failed = examine(&page, pass, &mut hasher, &mut outbox, &mut c);
            failed.write(db, &outbox.list).await?;
            outbox.flush(db, dest, &mut c, Flush::Full, &run).await
        };
        let (next, handled) = tokio::join!(fetch(end), handle);
        handled?;
        progress.advance(page.members.len() as u64);
        cursor = end;
        page = next?;
    }
    outbox.flush(db, dest, &mut c, Flush::Last, &run).await?;
    if dest.needs_closing() {
        close_session(db, audience_id, dest).await?;
    }
    // Joiners whose person was deleted meanwhile were never read: nothing to keep them for.
    db.execute(
        "DELETE FROM audience_member_joiner WHERE list_id = $1",
        &[&list_id],
    )
    .await?;
    Ok((c, PassEnd::Done))
}

/// Hashes a page of members and sorts them: into the outbox (to add, to remove first), or
/// among the failures returned (no usable identifier).
fn examine(
    page: &Page,
    pass: Pass,
    hasher: &mut Hasher,
    outbox: &mut Outbox,
    c: &mut Counters,
) -> Failures {
    let mut failed = Failures::default();
    for (m, person) in page.pairs() {
        c.examined += 1;
        let who = Who::of(m);
        let old: Option<Vec<u8>> = m.get(2);
        let fields = person_fields(person);
        let hashed = hasher.hash_person(&fields);
        if !hashed.is_sendable() {
            c.no_identifier += 1;
            let reason = unsendable_reason(&fields)
                .unwrap_or("no usable email or phone")
                .to_string();
            failed.push(who, reason);
            if let (Some(old), Who::Member(id), true) = (old, who, pass != Pass::Replace) {
                outbox.removals.push((id, old));
            }
            continue;
        }
        let new = hashed.to_bytes();
        match old {
            Some(old) if pass == Pass::Update && m.get::<_, bool>(3) && old == new => {
                c.unchanged += 1;
                continue;
            }
            Some(old) if pass != Pass::Replace && old != new => {
                if let Who::Member(id) = who {
                    c.changed += 1;
                    outbox.removals.push((id, old));
                }
            }
            _ => {}
        }
        outbox.adds.push(Pending {
            who,
            key: m.get(1),
            row: hashed,
            bytes: new,
        });
    }
    failed
}

/// A replace session left open by a paused invocation, when nothing was left to send: its last
/// batch re-sends one row already sent in it (harmless: a replace keeps the union of its rows).
async fn close_session<D: Destination>(db: &Client, audience_id: Uuid, dest: &mut D) -> Result<()> {
    let row = db
        .query_opt(
            "SELECT hashes FROM audience_member_sync \
             WHERE audience_id = $1 AND is_synced AND hashes IS NOT NULL \
             ORDER BY synced_at DESC LIMIT 1",
            &[&audience_id],
        )
        .await?;
    if let Some(h) = row.and_then(|r| HashedRow::from_bytes(&r.get::<_, Vec<u8>>(0))) {
        dest.send(&[&h], true).await?;
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
struct Pending {
    who: Who,
    key: Uuid,
    row: HashedRow,
    bytes: Vec<u8>,
}

struct Outbox {
    list: Listing,
    adds: Vec<Pending>,
    /// Member row ids with the hashes the destination holds for them.
    removals: Vec<(Uuid, Vec<u8>)>,
}

/// Where joiners' rows are written: their audience, and the list the diff put them on (the
/// sync's log row id).
struct Listing {
    audience_id: Uuid,
    list_id: Uuid,
}

impl Outbox {
    fn new(audience_id: Uuid, list_id: Uuid) -> Self {
        Outbox {
            list: Listing {
                audience_id,
                list_id,
            },
            adds: Vec::new(),
            removals: Vec::new(),
        }
    }

    async fn flush<D: Destination>(
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
            if remove_batch(db, dest, &batch, c).await? == Removal::Deferred {
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
    batch: &[Pending],
    last: bool,
    c: &mut Counters,
) -> Result<()> {
    let rows: Vec<&HashedRow> = batch.iter().map(|p| &p.row).collect();
    c.sent += batch.len() as u64;
    let accepted = dest.send(&rows, last).await?;
    let mut synced = Rows::default();
    let mut rejected = Failures::default();
    for (i, p) in batch.iter().enumerate() {
        if accepted.invalid.contains(&i) {
            rejected.push(
                p.who,
                "Meta rejected this member's identifiers as invalid".into(),
            );
        } else {
            synced.push(p.who, p.bytes.as_slice());
        }
    }
    // Members Meta counted as invalid without quoting them stay marked synced (the batch was
    // accepted) but are counted, so the log tells the truth.
    c.accepted += (synced.len() as u64).saturating_sub(accepted.unidentified);
    c.rejected_by_meta += rejected.0.len() as u64 + accepted.unidentified;
    c.rejected_quoted += rejected.0.len() as u64;
    synced
        .write(
            db,
            list,
            "UPDATE audience_member_sync m SET is_synced = true, synced_at = now(), hashes = u.v, \
                    failure_reason = NULL, updated_at = now() \
             FROM UNNEST($1::uuid[], $2::bytea[]) AS u(id, v) WHERE m.id = u.id",
            "INSERT INTO audience_member_sync (audience_id, person_id, is_synced, synced_at, hashes) \
             SELECT $1, u.p, true, now(), u.v FROM UNNEST($2::uuid[], $3::bytea[]) AS u(p, v)",
        )
        .await?;
    rejected.write(db, list).await
}

/// Removes stored hashes from the destination; the rows of leavers go, the others keep no
/// hashes (the destination no longer holds them).
async fn remove_batch<D: Destination>(
    db: &Client,
    dest: &mut D,
    batch: &[(Uuid, Vec<u8>)],
    c: &mut Counters,
) -> Result<Removal> {
    let rows: Vec<HashedRow> = batch
        .iter()
        .filter_map(|(_, b)| HashedRow::from_bytes(b))
        .collect();
    let outcome = dest.remove(&rows).await?;
    if outcome == Removal::Deferred {
        c.removal_deferred += batch.len() as u64;
        return Ok(outcome);
    }
    let ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
    db.execute(
        "WITH gone AS (DELETE FROM audience_member_sync WHERE id = ANY($1) AND removal_pending) \
         UPDATE audience_member_sync SET hashes = NULL, is_synced = false, synced_at = NULL, \
                updated_at = now() \
         WHERE id = ANY($1) AND NOT removal_pending",
        &[&ids],
    )
    .await?;
    c.removed += batch.len() as u64;
    Ok(outcome)
}

/// Removes what leavers (left the segment, opted out, erased) left behind in the destination.
/// With `everything`, every stored hash of the audience goes (a full sync of an empty segment).
pub async fn remove_leavers<D: Destination>(
    db: &Client,
    audience_id: Uuid,
    dest: &mut D,
    everything: bool,
    c: &mut Counters,
) -> Result<()> {
    let mut cursor = Uuid::nil();
    loop {
        let rows = db
            .query(
                "SELECT id, hashes FROM audience_member_sync \
                 WHERE audience_id = $1 AND id > $2 AND hashes IS NOT NULL \
                   AND ($3 OR removal_pending) ORDER BY id LIMIT $4",
                &[&audience_id, &cursor, &everything, &(BATCH as i64)],
            )
            .await?;
        let Some(last) = rows.last() else { break };
        cursor = last.get(0);
        let batch: Vec<(Uuid, Vec<u8>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if remove_batch(db, dest, &batch, c).await? == Removal::Deferred {
            c.removal_deferred += pending_removals(db, audience_id, cursor).await?;
            break;
        }
    }
    // Leavers that were never accepted anywhere carry no hashes and simply go.
    db.execute(
        "DELETE FROM audience_member_sync WHERE audience_id = $1 AND removal_pending AND hashes IS NULL",
        &[&audience_id],
    )
    .await?;
    Ok(())
}

async fn pending_removals(db: &Client, audience_id: Uuid, after: Uuid) -> Result<u64> {
    let row = db
        .query_one(
            "SELECT count(*) FROM audience_member_sync \
             WHERE audience_id = $1 AND id > $2 AND removal_pending AND hashes IS NOT NULL",
            &[&audience_id, &after],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// After a completed replace: Meta holds exactly what this sync sent, so leavers go and members
/// not sent in this sync no longer have anything in Meta.
pub async fn settle_replace(
    db: &Client,
    audience_id: Uuid,
    started: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    let removed = db
        .execute(
            "DELETE FROM audience_member_sync WHERE audience_id = $1 AND removal_pending",
            &[&audience_id],
        )
        .await?;
    db.execute(
        "UPDATE audience_member_sync SET hashes = NULL, is_synced = false, updated_at = now() \
         WHERE audience_id = $1 AND hashes IS NOT NULL AND (synced_at IS NULL OR synced_at < $2)",
        &[&audience_id, &started],
    )
    .await?;
    Ok(removed)
}

/// Runs a batch write joined to a page of (member or person) ids as index lookups. With the
/// statistics of a table that a sync has just filled, the planner would rather hash (or filter)
/// the whole table for every batch, which makes a sync quadratic in the audience's size.
async fn by_id(
    db: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64> {
    db.batch_execute("BEGIN; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
        .await?;
    match db.execute(sql, params).await {
        Ok(n) => {
            db.batch_execute("COMMIT").await?;
            Ok(n)
        }
        Err(e) => {
            db.batch_execute("ROLLBACK").await?;
            Err(e.into())
        }
    }
}

/// Rows to write after a page or a batch, each with a value (its hashes, or why it failed):
/// members' rows are updated by id, joiners' rows inserted, once, and taken off the joiner list
/// in the same statement.
struct Rows<V> {
    ids: Vec<Uuid>,
    values: Vec<V>,
    persons: Vec<Uuid>,
    joiner_values: Vec<V>,
}

impl<V> Default for Rows<V> {
    fn default() -> Self {
        Rows {
            ids: Vec::new(),
            values: Vec::new(),
            persons: Vec::new(),
            joiner_values: Vec::new(),
        }
    }
}

impl<V: tokio_postgres::types::ToSql + Sync> Rows<V> {
    fn push(&mut self, who: Who, value: V) {
        match who {
            Who::Member(id) => {
                self.ids.push(id);
                self.values.push(value);
            }
            Who::Joiner(person) => {
                self.persons.push(person);
                self.joiner_values.push(value);
            }
        }
    }

    fn len(&self) -> usize {
        self.ids.len() + self.persons.len()
    }

    /// `update` sets members' rows from `UNNEST($1 ids, $2 values) AS u(id, v)`; `insert` makes
    /// joiners' rows from `$1` (the audience) and `UNNEST($2 persons, $3 values) AS u(p, v)`
    /// (`$4` is the list they are taken off).
    async fn write(&self, db: &Client, list: &Listing, update: &str, insert: &str) -> Result<()> {
        if !self.ids.is_empty() {
            by_id(db, update, &[&self.ids, &self.values]).await?;
        }
        if !self.persons.is_empty() {
            let sql = format!(
                "WITH listed AS (DELETE FROM audience_member_joiner j USING UNNEST($2::uuid[]) AS d(p) \
                                 WHERE j.list_id = $4 AND j.person_id = d.p) {insert}"
            );
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
                &list.audience_id,
                &self.persons,
                &self.joiner_values,
                &list.list_id,
            ];
            by_id(db, &sql, &params).await?;
        }
        Ok(())
    }
}

/// Members that cannot be sent, and why: written a page at a time.
#[derive(Default)]
struct Failures(Rows<String>);

impl Failures {
    fn push(&mut self, who: Who, reason: String) {
        self.0.push(who, reason);
    }

    async fn write(&self, db: &Client, list: &Listing) -> Result<()> {
        self.0
            .write(
                db,
                list,
                "UPDATE audience_member_sync m SET is_synced = false, failure_reason = u.v, \
                        updated_at = now() \
                 FROM UNNEST($1::uuid[], $2::text[]) AS u(id, v) WHERE m.id = u.id",
                "INSERT INTO audience_member_sync (audience_id, person_id, failure_reason) \
                 SELECT $1, u.p, u.v FROM UNNEST($2::uuid[], $3::text[]) AS u(p, v)",
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_matched_to_their_people_and_those_without_one_left_out() {
        let ids: Vec<Uuid> = (1..=5u128).map(Uuid::from_u128).collect();
        // Persons 2 and 5 were deleted after the page was chosen.
        let persons = [ids[0], ids[2], ids[3]];
        assert_eq!(matched(&ids, &persons), [(0, 0), (2, 1), (3, 2)]);
        assert_eq!(matched(&ids, &[]), []);
        assert_eq!(matched(&ids, &ids).len(), 5);
    }
}
