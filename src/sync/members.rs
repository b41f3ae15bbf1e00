//! Moving members to their destination in batches: members are read from PostgreSQL a page at a
//! time (keyset pagination), hashed, sent, and marked batch by batch, so memory stays flat
//! whatever the audience's size, and a sync that stops half-way resumes from what was accepted.

use std::collections::HashSet;

use serde_json::Value;
use tokio_postgres::{Client, Row};
use uuid::Uuid;

use super::destination::{Destination, Removal};
use super::Progress;
use crate::error::Result;
use crate::meta::normalize::{unsendable_reason, HashedRow, Hasher, PersonFields};

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

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counters {
    pub examined: u64,
    pub sent: u64,
    pub accepted: u64,
    pub unchanged: u64,
    pub changed: u64,
    pub no_identifier: u64,
    pub rejected_by_meta: u64,
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

const PAGE_SQL: &str = "\
    SELECT m.id, m.hashes, m.is_synced, p.email, p.phone, p.first_name, p.last_name, p.city, \
           p.state, p.zip, p.country, p.date_of_birth, p.gender \
    FROM audience_member_sync m JOIN person p ON p.id = m.person_id \
    WHERE m.audience_id = $1 AND m.id > $2 AND NOT m.removal_pending AND ($3 OR NOT m.is_synced) \
    ORDER BY m.id LIMIT $4";

fn person_fields(r: &Row) -> PersonFields<'_> {
    PersonFields {
        email: r.get(3),
        phone: r.get(4),
        first_name: r.get(5),
        last_name: r.get(6),
        city: r.get(7),
        state: r.get(8),
        zip: r.get(9),
        country: r.get(10),
        date_of_birth: r.get(11),
        gender: r.get(12),
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
pub async fn count(db: &Client, audience_id: Uuid, pass: Pass) -> Result<u64> {
    let all = pass != Pass::Add;
    let row = db
        .query_one(
            "SELECT count(*) FROM audience_member_sync m \
             WHERE m.audience_id = $1 AND NOT m.removal_pending AND m.person_id IS NOT NULL \
               AND ($2 OR NOT m.is_synced)",
            &[&audience_id, &all],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Sends the members `pass` selects to `dest`.
pub async fn push<D: Destination>(
    db: &Client,
    audience_id: Uuid,
    pass: Pass,
    dest: &mut D,
    progress: &dyn Progress,
) -> Result<Counters> {
    let mut c = Counters::default();
    let mut hasher = Hasher::new();
    let mut outbox = Outbox::default();
    let mut cursor = Uuid::nil();
    let all = pass != Pass::Add;
    loop {
        let rows = db
            .query(PAGE_SQL, &[&audience_id, &cursor, &all, &(BATCH as i64)])
            .await?;
        let Some(last) = rows.last() else { break };
        cursor = last.get(0);
        let mut failed = Failures::default();
        for r in &rows {
            c.examined += 1;
            let id: Uuid = r.get(0);
            let old: Option<Vec<u8>> = r.get(1);
            let fields = person_fields(r);
            let hashed = hasher.hash_person(&fields);
            if !hashed.is_sendable() {
                c.no_identifier += 1;
                let reason = unsendable_reason(&fields)
                    .unwrap_or("no usable email or phone")
                    .to_string();
                failed.push(id, reason);
                if let (Some(old), true) = (old, pass != Pass::Replace) {
                    outbox.removals.push((id, old));
                }
                continue;
            }
            let new = hashed.to_bytes();
            match old {
                Some(old) if pass == Pass::Update && r.get::<_, bool>(2) && old == new => {
                    c.unchanged += 1;
                    continue;
                }
                Some(old) if pass != Pass::Replace && old != new => {
                    c.changed += 1;
                    outbox.removals.push((id, old));
                }
                _ => {}
            }
            outbox.adds.push((id, hashed, new));
        }
        failed.write(db).await?;
        while outbox.adds.len() > BATCH || outbox.removals.len() >= BATCH {
            outbox.flush(db, dest, &mut c, false).await?;
        }
        progress.advance(rows.len() as u64);
    }
    outbox.flush(db, dest, &mut c, true).await?;
    Ok(c)
}

/// Rows waiting to go out. Adds are held back until more than a batch is waiting, so the last
/// batch of a replace session is known to be the last and is never empty.
#[derive(Default)]
struct Outbox {
    adds: Vec<(Uuid, HashedRow, Vec<u8>)>,
    removals: Vec<(Uuid, Vec<u8>)>,
}

impl Outbox {
    async fn flush<D: Destination>(
        &mut self,
        db: &Client,
        dest: &mut D,
        c: &mut Counters,
        last: bool,
    ) -> Result<()> {
        // Old hashes go before new ones are added: Meta removes a person matched by any key,
        // so removing after adding could take out the re-added person.
        while !self.removals.is_empty() {
            let n = self.removals.len().min(BATCH);
            let batch: Vec<_> = self.removals.drain(..n).collect();
            if remove_batch(db, dest, &batch, c).await? == Removal::Deferred {
                // Their old hashes stay stored (and in Meta) until a later sync removes them;
                // adding the new ones now would lose track of the old.
                let kept: HashSet<Uuid> = batch.iter().map(|(id, _)| *id).collect();
                self.adds.retain(|(id, _, _)| !kept.contains(id));
            }
        }
        while !self.adds.is_empty() && (last || self.adds.len() > BATCH) {
            let n = self.adds.len().min(BATCH);
            let batch: Vec<_> = self.adds.drain(..n).collect();
            let is_last = last && self.adds.is_empty();
            add_batch(db, dest, &batch, is_last, c).await?;
        }
        Ok(())
    }
}

async fn add_batch<D: Destination>(
    db: &Client,
    dest: &mut D,
    batch: &[(Uuid, HashedRow, Vec<u8>)],
    last: bool,
    c: &mut Counters,
) -> Result<()> {
    let rows: Vec<&HashedRow> = batch.iter().map(|(_, h, _)| h).collect();
    c.sent += batch.len() as u64;
    let accepted = dest.send(&rows, last).await?;
    let mut ids = Vec::with_capacity(batch.len());
    let mut hashes = Vec::with_capacity(batch.len());
    let mut rejected = Failures::default();
    for (i, (id, _, bytes)) in batch.iter().enumerate() {
        if accepted.invalid.contains(&i) {
            rejected.push(
                *id,
                "Meta rejected this member's identifiers as invalid".into(),
            );
        } else {
            ids.push(*id);
            hashes.push(bytes.as_slice());
        }
    }
    // Members Meta counted as invalid without quoting them stay marked synced (the batch was
    // accepted) but are counted, so the log tells the truth.
    c.accepted += (ids.len() as u64).saturating_sub(accepted.unidentified);
    c.rejected_by_meta += rejected.ids.len() as u64 + accepted.unidentified;
    db.execute(
        "UPDATE audience_member_sync m SET is_synced = true, synced_at = now(), hashes = u.h, \
                failure_reason = NULL, updated_at = now() \
         FROM UNNEST($1::uuid[], $2::bytea[]) AS u(id, h) WHERE m.id = u.id",
        &[&ids, &hashes],
    )
    .await?;
    rejected.write(db).await
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

/// Members that cannot be sent, and why: written a page at a time.
#[derive(Default)]
struct Failures {
    ids: Vec<Uuid>,
    reasons: Vec<String>,
}

impl Failures {
    fn push(&mut self, id: Uuid, reason: String) {
        self.ids.push(id);
        self.reasons.push(reason);
    }

    async fn write(&self, db: &Client) -> Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        db.execute(
            "UPDATE audience_member_sync m SET is_synced = false, failure_reason = u.r, \
                    updated_at = now() \
             FROM UNNEST($1::uuid[], $2::text[]) AS u(id, r) WHERE m.id = u.id",
            &[&self.ids, &self.reasons],
        )
        .await?;
        Ok(())
    }
}

/// What the sync log keeps of the passes.
pub fn details(c: &Counters, extra: Value) -> Value {
    let mut v = c.to_json();
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}
