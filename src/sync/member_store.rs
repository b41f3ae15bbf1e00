//! All SQL of `audience_member_sync`, `audience_member_joiner` and `audience_member_purge`: the
//! diff, pages of members with their people, the batch writes after the destination answered,
//! and the purge of erased and opted-out people. Writes are set-based (`UNNEST` of a batch's ids
//! and values), never one statement per member.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, GenericClient, Row, Statement};
use uuid::Uuid;

use super::SyncType;
use crate::error::Result;
use crate::identity::PersonFields;

/// Members per page read, and the most rows of one batch write.
pub const PAGE: usize = 10_000;

/// How the diff was made: from the changes since the audience's horizon, or in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diff {
    /// Only the people changed since the last diff were compared; `unsynced` synced members
    /// were marked unsynced by it (leavers, and for `update` the changed people).
    Changes {
        unsynced: i64,
    },
    Full,
}

/// Where a pass finds its joiners (eligible people without a member row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joiners {
    /// Listed by the diff under this id (the sync's log row id).
    Listed(Uuid),
    /// Every eligible person: a first sync (the audience had no member row), which reads them
    /// straight from the segment instead of listing a million joiners and reading their people
    /// back one index probe at a time (see [`PageReader`]).
    Eligible,
}

impl Joiners {
    /// The diff's list id, under which it also listed its leavers (none for a first sync).
    pub fn list_id(self) -> Option<Uuid> {
        match self {
            Joiners::Listed(list_id) => Some(list_id),
            Joiners::Eligible => None,
        }
    }
}

/// The diff of a first sync, when the audience has no member row at all: every eligible person
/// joins and nobody leaves, so instead of the diff only the horizon is set, as a full diff
/// sets it (`audience_member_reconcile`). False (nothing done) when the audience has members:
/// then the diff runs. The caller holds the audience's lock, so no member row can appear
/// meanwhile; joiners an abandoned sync listed are dropped, as the diff would.
///
/// The re-hash horizon moves as the diff moves it: a `full` sync sends everyone's current row;
/// an `update` pass sets it once done ([`rehashed`]); an `incremental` one leaves it.
///
/// Until the pass has written everyone ([`first_done`]) the audience has no full diff on
/// record: a first sync abandoned half-way leaves its unwritten people on no list and in no
/// change, so the next diff must be a full one to find them.
pub async fn begin_first(db: &Client, audience_id: Uuid, sync_type: SyncType) -> Result<bool> {
    let n = db
        .execute(
            "UPDATE custom_audience \
             SET changes_from = pg_snapshot_xmin(pg_current_snapshot()), \
                 changes_seen = pg_current_snapshot(), full_diff_at = NULL, \
                 rehash_from = CASE WHEN $2 THEN pg_snapshot_xmin(pg_current_snapshot()) \
                                    ELSE rehash_from END, \
                 rehash_seen = CASE WHEN $2 THEN pg_current_snapshot() ELSE rehash_seen END \
             WHERE id = $1 \
               AND NOT EXISTS (SELECT 1 FROM audience_member_sync m WHERE m.audience_id = $1)",
            &[&audience_id, &(sync_type == SyncType::Full)],
        )
        .await?;
    if n == 0 {
        return Ok(false);
    }
    db.execute(
        "DELETE FROM audience_member_joiner WHERE audience_id = $1",
        &[&audience_id],
    )
    .await?;
    Ok(true)
}

/// A first sync's pass wrote every eligible person: from now on the changes tell the rest.
pub async fn first_done(db: &Client, audience_id: Uuid) -> Result<()> {
    db.execute(
        "UPDATE custom_audience SET full_diff_at = now() WHERE id = $1",
        &[&audience_id],
    )
    .await?;
    Ok(())
}

/// An eligible person `e` of audience `$1` (`audience_eligible_persons`) without a member row
/// yet.
const UNWRITTEN: &str = "NOT EXISTS (SELECT 1 FROM audience_member_sync m \
    WHERE m.audience_id = $1 AND m.person_id = e.person_id)";

/// The sync's diff (`sync_audience_members` without the counts it returns: the sync counts what
/// it does): joiners listed under `list_id` (the sync's log row id) in `audience_member_joiner`;
/// from the changes since the audience's last diff (leavers listed under `list_id` in
/// `audience_member_leaver`) unless `sync_type` is `full` or the daily full diff is due (leavers
/// flagged `removal_pending`). See `audience_member_reconcile` in migrations/ (V6, V13).
pub async fn reconcile(
    db: &Client,
    audience_id: Uuid,
    list_id: Uuid,
    sync_type: SyncType,
) -> Result<Diff> {
    let row = db
        .query_one(
            "SELECT diff, unsynced FROM audience_member_reconcile($1, $2, $3)",
            &[&audience_id, &list_id, &sync_type.as_str()],
        )
        .await?;
    Ok(match row.get::<_, &str>(0) {
        "changes" => Diff::Changes {
            unsynced: row.get(1),
        },
        _ => Diff::Full,
    })
}

/// What a diff left to do, counted in its transaction (see [`diff_counts`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffCounts {
    /// People listed to join.
    pub joiners: u64,
    /// Members leaving whose rows the platform holds (left the segment, opted out, erased).
    pub leavers: u64,
    /// Of those, the ones whose person is still there and has not opted out: what the removal
    /// guardrails count (DESIGN §8.4).
    pub guarded: u64,
}

/// The joiners the diff listed under `list_id`, and the audience's leavers whose rows the
/// platform holds: those it listed under `list_id`, and those flagged (by a full diff, or left
/// by a deferred removal), read along `idx_audience_member_sync_removal_pending`. What it costs
/// follows the churn, not the audience.
pub async fn diff_counts(db: &Client, audience_id: Uuid, list_id: Uuid) -> Result<DiffCounts> {
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM audience_member_joiner WHERE list_id = $2), \
                    count(*), \
                    count(*) FILTER (WHERE m.person_id IS NOT NULL \
                                       AND NOT EXISTS (SELECT 1 FROM person p \
                                                       WHERE p.id = m.person_id \
                                                         AND p.marketing_opt_out)) \
             FROM (SELECT m.person_id FROM audience_member_sync m \
                   WHERE m.audience_id = $1 AND m.removal_pending AND m.hashes IS NOT NULL \
                   UNION ALL \
                   SELECT l.person_id FROM audience_member_leaver l WHERE l.list_id = $2) m",
            &[&audience_id, &list_id],
        )
        .await?;
    let n = |i: usize| row.get::<_, i64>(i) as u64;
    Ok(DiffCounts {
        joiners: n(0),
        leavers: n(1),
        guarded: n(2),
    })
}

/// Members whose rows the platform holds (a scan of the audience: for a dry run only).
pub async fn held(db: &Client, audience_id: Uuid) -> Result<u64> {
    Ok(count_members(db, audience_id, "hashes IS NOT NULL").await? as u64)
}

/// The audience's member rows that meet `filter` (a fixed condition on their columns).
async fn count_members(db: &Client, audience_id: Uuid, filter: &str) -> Result<i64> {
    let sql =
        format!("SELECT count(*) FROM audience_member_sync WHERE audience_id = $1 AND {filter}");
    Ok(db.query_one(&sql, &[&audience_id]).await?.get(0))
}

/// A pass re-hashed every member: people changed since this sync's diff are what the next
/// `update` re-hashes (the diff's horizon becomes the re-hash horizon; see V6).
pub async fn rehashed(db: &Client, audience_id: Uuid) -> Result<()> {
    db.execute(
        "UPDATE custom_audience SET rehash_from = changes_from, rehash_seen = changes_seen \
         WHERE id = $1",
        &[&audience_id],
    )
    .await?;
    Ok(())
}

/// Members staying plus joiners: the seed a lookalike would be built from.
pub async fn staying(db: &Client, audience_id: Uuid, joiners: Joiners) -> Result<i64> {
    let members = count_members(db, audience_id, "NOT removal_pending").await?;
    let leaving = match joiners {
        Joiners::Listed(list_id) => db
            .query_one(
                "SELECT count(*) FROM audience_member_leaver WHERE list_id = $1",
                &[&list_id],
            )
            .await?
            .get(0),
        Joiners::Eligible => 0,
    };
    Ok(members - leaving + count_joiners(db, audience_id, joiners).await?)
}

async fn count_joiners(db: &Client, audience_id: Uuid, joiners: Joiners) -> Result<i64> {
    let row = match joiners {
        Joiners::Listed(list_id) => {
            db.query_one(
                "SELECT count(*) FROM audience_member_joiner WHERE list_id = $1",
                &[&list_id],
            )
            .await?
        }
        Joiners::Eligible => {
            let sql =
                format!("SELECT count(*) FROM audience_eligible_persons($1) e WHERE {UNWRITTEN}");
            db.query_one(&sql, &[&audience_id]).await?
        }
    };
    Ok(row.get(0))
}

/// Members left without a person by an erasure, before the diff reconciles them away.
pub async fn erased(db: &Client, audience_id: Uuid) -> Result<u64> {
    Ok(count_members(db, audience_id, "person_id IS NULL").await? as u64)
}

// ---- the purge of erased and opted-out people (sync::purge; the queue: migrations/V2) ----

/// The queued people of audience `$1` who are gone (erased) or opted out: an opt-in since they
/// were queued cancels their purge.
const PURGED_PERSONS: &str = "\
    SELECT q.person_id FROM audience_member_purge q \
    WHERE q.audience_id = $1 \
      AND NOT EXISTS (SELECT 1 FROM person p WHERE p.id = q.person_id AND NOT p.marketing_opt_out)";

/// Audiences with members to purge: people queued there, or erased members. Both sources are
/// empty unless something happened, so a pass with nothing to purge costs this one query.
pub async fn purge_due(db: &impl GenericClient) -> Result<Vec<Uuid>> {
    let rows = db
        .query(
            "SELECT audience_id FROM audience_member_purge \
             UNION SELECT audience_id FROM audience_member_sync WHERE person_id IS NULL",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Members to purge whose hashes were never accepted anywhere: nothing to tell the platform, the
/// rows simply go (as the next diff would drop them).
pub async fn drop_unsent_purged(db: &Client, audience_id: Uuid) -> Result<u64> {
    let sql = format!(
        "WITH t AS (SELECT m.id FROM audience_member_sync m \
                    WHERE m.audience_id = $1 AND m.person_id IS NULL \
                    UNION ALL \
                    SELECT m.id FROM audience_member_sync m \
                    WHERE m.audience_id = $1 AND m.person_id IN ({PURGED_PERSONS})) \
         DELETE FROM audience_member_sync m USING t WHERE m.id = t.id AND m.hashes IS NULL"
    );
    Ok(db.execute(&sql, &[&audience_id]).await?)
}

/// The next page (by member id, after `after`) of members to purge whose hashes the platform
/// holds, flagged in the same statement as the diff would flag them (leavers whose hashes are
/// still to be removed): removing them then deletes their rows ([`mark_removed`]), and a
/// failure leaves them as leavers that any later sync or pass removes.
pub async fn purge_page(
    db: &Client,
    audience_id: Uuid,
    after: Uuid,
) -> Result<Vec<(Uuid, Vec<u8>)>> {
    let sql = format!(
        "WITH t AS ((SELECT m.id FROM audience_member_sync m \
                     WHERE m.audience_id = $1 AND m.person_id IS NULL AND m.id > $2 \
                       AND m.hashes IS NOT NULL ORDER BY m.id LIMIT $3) \
                    UNION ALL \
                    (SELECT m.id FROM audience_member_sync m \
                     WHERE m.audience_id = $1 AND m.person_id IN ({PURGED_PERSONS}) AND m.id > $2 \
                       AND m.hashes IS NOT NULL ORDER BY m.id LIMIT $3) \
                    ORDER BY id LIMIT $3), \
              f AS (UPDATE audience_member_sync m \
                    SET removal_pending = true, is_synced = false, updated_at = now() \
                    FROM t WHERE m.id = t.id RETURNING m.id, m.hashes) \
         SELECT id, hashes FROM f ORDER BY id"
    );
    let rows = db
        .query(&sql, &[&audience_id, &after, &(PAGE as i64)])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Takes people off the audience's queue once nothing of theirs is left for the platform to
/// remove (removed, never sent, or opted in again); those whose removal failed or waits stay.
pub async fn settle_purge_queue(db: &Client, audience_id: Uuid) -> Result<()> {
    db.execute(
        "DELETE FROM audience_member_purge q WHERE q.audience_id = $1 \
         AND (NOT EXISTS (SELECT 1 FROM audience_member_sync m \
                          WHERE m.audience_id = $1 AND m.person_id = q.person_id \
                            AND m.hashes IS NOT NULL) \
              OR EXISTS (SELECT 1 FROM person p WHERE p.id = q.person_id AND NOT p.marketing_opt_out))",
        &[&audience_id],
    )
    .await?;
    Ok(())
}

/// Members a pass will examine (every staying member, or only the unsynced), plus the joiners.
pub async fn to_examine(
    db: &Client,
    audience_id: Uuid,
    joiners: Joiners,
    all: bool,
) -> Result<u64> {
    let row = db
        .query_one(
            "SELECT count(*) FROM audience_member_sync m \
             WHERE m.audience_id = $1 AND NOT m.removal_pending AND m.person_id IS NOT NULL \
               AND ($2 OR NOT m.is_synced)",
            &[&audience_id, &all],
        )
        .await?;
    let members: i64 = row.get(0);
    Ok((members + count_joiners(db, audience_id, joiners).await?) as u64)
}

/// One page of members (all, or only the unsynced) merged with the joiners, in person order:
/// see `audience_member_page` in migrations/.
const PAGE_SQL: &str =
    "SELECT id, person_id, hashes, is_synced FROM audience_member_page($1, $2, $3, $4, $5)";
/// The contact data of a page's people, in id order, with the value a value-based audience
/// sends: see `audience_page_people` in migrations/ (V10). (A LATERAL lookup per member cost
/// three times as much.)
const PERSONS_SQL: &str = "\
    SELECT id, email, phone, first_name, last_name, city, state, zip, country, date_of_birth, \
           gender, value \
    FROM audience_page_people($1, $2)";

/// A page of members and their people, both in person order; or (`persons` None) of
/// eligible people with their contact data on the same row, from column [`PERSON_AT`].
pub struct Page {
    members: Vec<Row>,
    persons: Option<Vec<Row>>,
}

/// Where a page line's contact data starts when it comes on the member's own row (after `id,
/// person_id, hashes, is_synced`): its columns are those of `audience_page_people` but the id.
const PERSON_AT: usize = 3;

/// Eligible people as page lines: no member row (NULL id and hashes), the person's contact
/// data as `audience_page_people` gives them (V10), from [`ELIGIBLE_FROM`]; then their value,
/// [`ELIGIBLE_VALUE`] or [`NO_VALUE`].
const ELIGIBLE_LINE: &str = "\
    NULL::UUID AS id, p.id AS person_id, NULL::BYTEA AS hashes, false AS is_synced, \
    p.email::TEXT, p.phone::TEXT, p.first_name::TEXT, p.last_name::TEXT, p.city::TEXT, \
    p.state::TEXT, p.zip::TEXT, p.country::TEXT, p.date_of_birth::DATE, p.gender::TEXT";

/// The value a value-based audience sends, as `audience_page_people` gives it.
const ELIGIBLE_VALUE: &str = "CASE WHEN v.value_attribute IS NOT NULL \
    THEN COALESCE(p.attributes ->> v.value_attribute, '') END AS value";

/// No value: an audience without a value attribute leaves the people's attributes (of any
/// size) out of what a first sync's stream joins and sorts.
const NO_VALUE: &str = "NULL::TEXT AS value";

/// The eligible people `e` of audience `$1`, their person `p`, and the audience's value
/// attribute `v`.
const ELIGIBLE_FROM: &str = "\
    audience_eligible_persons($1) e JOIN person p ON p.id = e.person_id \
    CROSS JOIN (SELECT a.value_attribute FROM custom_audience a WHERE a.id = $1) v";

/// The cursor a first sync streams its people through (see [`PageReader::stream`]).
const STREAM_CURSOR: &str = "audience_first_sync";

/// How pages are read.
enum Source {
    /// Keyset pages of members merged with listed joiners, then their people.
    Listed {
        members: Statement,
        persons: Statement,
        list_id: Uuid,
        unsynced_only: bool,
    },
    /// One pass over the eligible people through a cursor (a first sync).
    Stream(Statement),
    /// Keyset pages of the eligible people without a member row (a first sync resumed).
    Unwritten(Statement),
}

/// How a pass reads its pages, prepared once a pass.
pub struct PageReader<'a> {
    reader: &'a Client,
    audience_id: Uuid,
    source: Source,
}

impl<'a> PageReader<'a> {
    /// Pages of the audience's members (only the unsynced with `unsynced_only`) and of the
    /// joiners listed under `list_id`.
    pub async fn listed(
        reader: &'a Client,
        audience_id: Uuid,
        list_id: Uuid,
        unsynced_only: bool,
    ) -> Result<PageReader<'a>> {
        let source = Source::Listed {
            members: reader.prepare(PAGE_SQL).await?,
            persons: reader.prepare(PERSONS_SQL).await?,
            list_id,
            unsynced_only,
        };
        Ok(PageReader {
            reader,
            audience_id,
            source,
        })
    }

    /// A first sync's people in one read, in person order, through a cursor a page at a time
    /// (memory stays flat). The order is for the writes: member rows written in person order
    /// go to the end of the audience's range of the `(audience_id, person_id)` key, where in
    /// the tables' own order they landed all over it. Measured at 1,000,000 members on a
    /// 2-core machine: 100 inserts of 10,000 member rows took 4.4 s in person order against
    /// 10.6 s in random order (3.8 s without that key at all); a first sync, database only,
    /// 11.2–16.8 s in order against 16.6–34.3 s, interleaved in one run.
    ///
    /// For a segment of a quarter of everyone or more, the order comes from merge joins of two
    /// in-memory sorts, the segment's and every person's (at 1,000,000 of 1,000,000: 2.0 s in
    /// all, the first page after ~1.8 s; a hash join then a sort of what it found, which the
    /// planner prefers, 3.1 s; index probes into `person` at random places twice as long). A
    /// smaller segment is joined by hashing and only its people sorted, rather than sorting
    /// everyone. The cursor lives in a transaction on `reader`, which must therefore be a
    /// connection of its own, and be [`closed`](Self::close) once the pass ends.
    pub async fn stream(reader: &'a Client, audience_id: Uuid) -> Result<PageReader<'a>> {
        let row = reader
            .query_one(
                "SELECT s.member_count >= 0.25 * (SELECT c.reltuples FROM pg_class c \
                                                  WHERE c.oid = 'person'::regclass), \
                        a.value_attribute IS NOT NULL \
                 FROM custom_audience a JOIN segment s ON s.id = a.segment_id WHERE a.id = $1",
                &[&audience_id],
            )
            .await?;
        let (most, valued): (bool, bool) = (row.get(0), row.get(1));
        let value = if valued { ELIGIBLE_VALUE } else { NO_VALUE };
        // Room for the sorts (or the hash), no plan of index probes (the statistics of a
        // segment just filled may promise a few rows), and a plan for reading every row: for a
        // cursor the planner otherwise favours plans that start fast, here a walk of `person`
        // along its key that fetches each person at a random place (the whole read of
        // 1,000,000 in `psql`: 7.8 s that way, 4.7 s through the sorts).
        let join = if most {
            "enable_hashjoin"
        } else {
            "enable_mergejoin"
        };
        reader
            .batch_execute(&format!(
                "BEGIN READ ONLY; SET LOCAL work_mem = '256MB'; \
                 SET LOCAL enable_nestloop = off; SET LOCAL {join} = off; \
                 SET LOCAL cursor_tuple_fraction = 1"
            ))
            .await?;
        let declare = format!(
            "DECLARE {STREAM_CURSOR} NO SCROLL CURSOR FOR \
             SELECT {ELIGIBLE_LINE}, {value} FROM {ELIGIBLE_FROM} ORDER BY e.person_id"
        );
        let opened = async {
            reader.execute(&declare, &[&audience_id]).await?;
            let fetch = format!("FETCH {PAGE} FROM {STREAM_CURSOR}");
            reader.prepare(&fetch).await
        }
        .await;
        match opened {
            Ok(fetch) => Ok(PageReader {
                reader,
                audience_id,
                source: Source::Stream(fetch),
            }),
            Err(e) => {
                reader.batch_execute("ROLLBACK").await?;
                Err(e.into())
            }
        }
    }

    /// A first sync's eligible people still without a member row, in person order: how a
    /// first sync paused at its deadline goes on (on any connection, the cursor being gone).
    pub async fn unwritten(reader: &'a Client, audience_id: Uuid) -> Result<PageReader<'a>> {
        let sql = format!(
            "SELECT {ELIGIBLE_LINE}, {ELIGIBLE_VALUE} FROM {ELIGIBLE_FROM} \
             WHERE e.person_id > $2 AND {UNWRITTEN} ORDER BY e.person_id LIMIT $3"
        );
        Ok(PageReader {
            reader,
            audience_id,
            source: Source::Unwritten(reader.prepare(&sql).await?),
        })
    }

    /// Ends the read: the stream's transaction (and its cursor) ends with it.
    pub async fn close(&self) -> Result<()> {
        if let Source::Stream(_) = self.source {
            self.reader.batch_execute("ROLLBACK").await?;
        }
        Ok(())
    }

    /// The page after person id `after` (the stream's next page, whatever `after`).
    pub async fn read(&self, after: Uuid) -> std::result::Result<Page, tokio_postgres::Error> {
        let limit = PAGE as i32;
        let (members, persons) = match &self.source {
            Source::Stream(fetch) => (self.reader.query(fetch, &[]).await?, None),
            Source::Unwritten(page) => {
                // LIMIT takes a bigint.
                let params: [&(dyn ToSql + Sync); 3] =
                    [&self.audience_id, &after, &i64::from(limit)];
                (self.reader.query(page, &params).await?, None)
            }
            Source::Listed {
                members,
                persons,
                list_id,
                unsynced_only,
            } => {
                let params: [&(dyn ToSql + Sync); 5] =
                    [&self.audience_id, list_id, &after, &limit, unsynced_only];
                (self.reader.query(members, &params).await?, Some(persons))
            }
        };
        let persons = match persons {
            None => None,
            Some(_) if members.is_empty() => Some(Vec::new()),
            Some(statement) => {
                let ids: Vec<Uuid> = members.iter().map(|m| m.get(1)).collect();
                Some(
                    self.reader
                        .query(statement, &[&ids, &self.audience_id])
                        .await?,
                )
            }
        };
        Ok(Page { members, persons })
    }
}

/// One line of a page: a member (or joiner) and its person's contact data.
pub struct Line<'a> {
    member: &'a Row,
    person: &'a Row,
    /// The column before the person's contact data (its id's, on a row of its own).
    at: usize,
}

impl<'a> Line<'a> {
    pub fn who(&self) -> Who {
        match self.member.get::<_, Option<Uuid>>(0) {
            Some(id) => Who::Member(id),
            None => Who::Joiner(self.person_id()),
        }
    }

    /// The keyset position.
    pub fn person_id(&self) -> Uuid {
        self.member.get(1)
    }

    /// The row the destination holds for the member, as stored.
    pub fn stored(&self) -> Option<Vec<u8>> {
        self.member.get(2)
    }

    pub fn is_synced(&self) -> bool {
        self.member.get(3)
    }

    pub fn person(&self) -> PersonFields<'a> {
        let (r, at) = (self.person, self.at);
        PersonFields {
            email: r.get(at + 1),
            phone: r.get(at + 2),
            first_name: r.get(at + 3),
            last_name: r.get(at + 4),
            city: r.get(at + 5),
            state: r.get(at + 6),
            zip: r.get(at + 7),
            country: r.get(at + 8),
            date_of_birth: r.get(at + 9),
            gender: r.get(at + 10),
            value: r.get(at + 11),
        }
    }
}

impl Page {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The person id the page ends at: where the next one starts.
    pub fn end(&self) -> Option<Uuid> {
        self.members.last().map(|m| m.get(1))
    }

    /// Each member with its person. A member whose person was deleted since the page was chosen,
    /// or who opted out since (`audience_page_people` leaves them out: a resumed sync runs no
    /// diff), has none and is left out (the purge or the next diff deals with it).
    pub fn lines(&self) -> Box<dyn Iterator<Item = Line<'_>> + '_> {
        let Some(persons) = &self.persons else {
            return Box::new(self.members.iter().map(|row| Line {
                member: row,
                person: row,
                at: PERSON_AT,
            }));
        };
        let members: Vec<Uuid> = self.members.iter().map(|m| m.get(1)).collect();
        let ids: Vec<Uuid> = persons.iter().map(|p| p.get(0)).collect();
        Box::new(matched(&members, &ids).into_iter().map(|(m, p)| Line {
            member: &self.members[m],
            person: &persons[p],
            at: 0,
        }))
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
pub enum Who {
    Member(Uuid),
    Joiner(Uuid),
}

/// Where joiners' rows are written: their audience, and where the pass found them (a list the
/// diff made, whose rows each write takes off; or a first sync's eligible people: no list).
pub struct Listing {
    pub audience_id: Uuid,
    pub joiners: Joiners,
}

/// Rows to write after a page or a batch, each with a value (the destination's row, or why it
/// failed): members' rows are updated by id, joiners' rows inserted, once, and taken off the
/// joiner list in the same statement.
pub struct Rows<V> {
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

impl<V: ToSql + Sync> Rows<V> {
    pub fn push(&mut self, who: Who, value: V) {
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

    pub fn len(&self) -> usize {
        self.ids.len() + self.persons.len()
    }

    /// Every row's value, members' then joiners'.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.values.iter().chain(&self.joiner_values)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `update` sets members' rows from `UNNEST($1 ids, $2 values) AS u(id, v)`; joiners' rows
    /// are made as `outcome` says: inserted and taken off their list, or for a first sync
    /// copied in. The row ids are made here, time ordered (UUIDv7, as `audience_member_new_id`
    /// makes them): the column default computed per row cost 2.7 µs a member, a fifth of a
    /// member row's insert.
    async fn write(
        &self,
        db: &Client,
        list: &Listing,
        update: &str,
        outcome: &Outcome,
    ) -> Result<()> {
        if !self.ids.is_empty() {
            by_id(db, update, &[&self.ids, &self.values]).await?;
        }
        if self.persons.is_empty() {
            return Ok(());
        }
        let new_ids: Vec<Uuid> = self.persons.iter().map(|_| Uuid::now_v7()).collect();
        let Joiners::Listed(list_id) = list.joiners else {
            return self.copy(db, list.audience_id, &new_ids, outcome).await;
        };
        // Each joiner's list row found by one probe of the (list_id, person_id) key, then
        // deleted by its address: a join of the page with the list let the planner, with the
        // statistics of a list just written (one row, it believed), scan the page once per
        // listed row (16 s for a page of 10,000 at 1,000,000 members).
        let synced_at = if outcome.synced { "now()" } else { "NULL" };
        let sql = format!(
            "WITH listed AS (DELETE FROM audience_member_joiner j WHERE j.ctid = ANY(ARRAY( \
                 SELECT x.ctid FROM UNNEST($2::uuid[]) AS d(p) \
                 CROSS JOIN LATERAL (SELECT l.ctid FROM audience_member_joiner l \
                                     WHERE l.list_id = $5 AND l.person_id = d.p OFFSET 0) x))) \
             INSERT INTO audience_member_sync ({NEW_ROW}, {column}) \
             SELECT u.i, $1, u.p, {synced}, {synced_at}, u.v \
             FROM UNNEST($2::uuid[], $3::{kind}[], $4::uuid[]) AS u(p, v, i)",
            column = outcome.column,
            synced = outcome.synced,
            kind = outcome.column_type.name(),
        );
        let params: [&(dyn ToSql + Sync); 5] = [
            &list.audience_id,
            &self.persons,
            &self.joiner_values,
            &new_ids,
            &list_id,
        ];
        by_id(db, &sql, &params).await?;
        Ok(())
    }

    /// A first sync's new rows, copied in (binary `COPY`): no other row of the audience can
    /// exist for these people (the pass reads only people without one, under the audience's
    /// lock). Binding `INSERT`'s arrays of 10,000 rows took the server 10-30 ms a page.
    async fn copy(
        &self,
        db: &Client,
        audience_id: Uuid,
        new_ids: &[Uuid],
        outcome: &Outcome,
    ) -> Result<()> {
        // As `now()` in the insert would set it: the database's clock, not this process's.
        let now: DateTime<Utc> = db.query_one("SELECT now()", &[]).await?.get(0);
        let synced_at = outcome.synced.then_some(now);
        let sink = db
            .copy_in(&format!(
                "COPY audience_member_sync ({NEW_ROW}, {}) FROM STDIN BINARY",
                outcome.column
            ))
            .await?;
        let types = [
            Type::UUID,
            Type::UUID,
            Type::UUID,
            Type::BOOL,
            Type::TIMESTAMPTZ,
            outcome.column_type.clone(),
        ];
        let writer = BinaryCopyInWriter::new(sink, &types);
        futures_util::pin_mut!(writer);
        let rows = new_ids.iter().zip(&self.persons).zip(&self.joiner_values);
        for ((id, person), value) in rows {
            let row: [&(dyn ToSql + Sync); 6] =
                [id, &audience_id, person, &outcome.synced, &synced_at, value];
            writer.as_mut().write(&row).await?;
        }
        writer.finish().await?;
        Ok(())
    }
}

/// The columns a joiner's new member row is written with, before its value's.
const NEW_ROW: &str = "id, audience_id, person_id, is_synced, synced_at";

/// What a batch write records for each row: accepted (and the row the destination now holds),
/// or failed (and why).
struct Outcome {
    synced: bool,
    /// The member row's column the batch's values go to, and its type.
    column: &'static str,
    column_type: Type,
}

/// Members the destination accepted, with the rows it now holds for them.
pub async fn mark_synced(db: &Client, list: &Listing, rows: &Rows<&[u8]>) -> Result<()> {
    rows.write(
        db,
        list,
        "UPDATE audience_member_sync m SET is_synced = true, synced_at = now(), hashes = u.v, \
                failure_reason = NULL, updated_at = now() \
         FROM UNNEST($1::uuid[], $2::bytea[]) AS u(id, v) WHERE m.id = u.id",
        &Outcome {
            synced: true,
            column: "hashes",
            column_type: Type::BYTEA,
        },
    )
    .await
}

/// Members that could not be sent or were refused, with the reason.
pub async fn mark_failed(db: &Client, list: &Listing, rows: &Rows<String>) -> Result<()> {
    rows.write(
        db,
        list,
        "UPDATE audience_member_sync m SET is_synced = false, failure_reason = u.v, \
                updated_at = now() \
         FROM UNNEST($1::uuid[], $2::text[]) AS u(id, v) WHERE m.id = u.id",
        &Outcome {
            synced: false,
            column: "failure_reason",
            column_type: Type::TEXT,
        },
    )
    .await
}

/// Runs a batch write joined to a page of (member or person) ids as index lookups. With the
/// statistics of a table that a sync has just filled, the planner would rather hash (or filter)
/// the whole table for every batch, which makes a sync quadratic in the audience's size; and
/// with those of a table just emptied (the joiner list, analyzed between two first syncs), it
/// scanned the million rows listed since once per id of the page (a page's write outlived the
/// 300 s statement timeout at 1,000,000 members).
async fn by_id(db: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
    let plan = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; \
                SET LOCAL enable_seqscan = off";
    steered(db, plan, db.execute(sql, params)).await
}

/// Runs `statement` (not yet started) in a transaction of its own whose planner settings are
/// `plan` (`SET LOCAL …`): committed if it succeeds, rolled back if not.
async fn steered<T>(
    db: &Client,
    plan: &str,
    statement: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> Result<T> {
    db.batch_execute(&format!("BEGIN; {plan}")).await?;
    let result = statement.await;
    db.batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await?;
    Ok(result?)
}

/// The destination no longer holds these members' rows: leavers' rows go (flagged ones, or
/// all of them with `leaving`: listed leavers), the others keep no stored row.
pub async fn mark_removed(db: &Client, ids: &[Uuid], leaving: bool) -> Result<()> {
    db.execute(
        "WITH gone AS (DELETE FROM audience_member_sync \
                       WHERE id = ANY($1) AND ($2 OR removal_pending)) \
         UPDATE audience_member_sync SET hashes = NULL, is_synced = false, synced_at = NULL, \
                updated_at = now() \
         WHERE id = ANY($1) AND NOT ($2 OR removal_pending)",
        &[&ids, &leaving],
    )
    .await?;
    Ok(())
}

/// Where a sync finds the leavers whose rows it removes from the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leavers {
    /// Listed by this sync's diff (under its list id): their rows go once removed.
    Listed(Uuid),
    /// Flagged `removal_pending` (by a full diff, a deferred removal, a purge); with
    /// `everything`, every stored row of the audience.
    Flagged { everything: bool },
}

/// A page (by member id, after `after`) of stored rows to remove.
pub async fn removal_page(
    db: &Client,
    audience_id: Uuid,
    leavers: Leavers,
    after: Uuid,
) -> Result<Vec<(Uuid, Vec<u8>)>> {
    let rows = match leavers {
        Leavers::Listed(list_id) => {
            // Along the list's key, in its order, a page at a time: sorting what is left of a
            // long list for each page would make the pass quadratic.
            // Each member row found by its id (a LATERAL subquery the planner cannot flatten),
            // whatever the statistics of the list (always stale) say.
            let sql = "SELECT l.member_id, m.hashes FROM audience_member_leaver l \
                 CROSS JOIN LATERAL (SELECT m.hashes FROM audience_member_sync m \
                                     WHERE m.id = l.member_id AND m.audience_id = $1 \
                                       AND m.hashes IS NOT NULL OFFSET 0) m \
                 WHERE l.list_id = $2 AND l.member_id > $3 ORDER BY l.member_id LIMIT $4";
            let plan = "SET LOCAL enable_sort = off; SET LOCAL enable_seqscan = off; \
                        SET LOCAL enable_bitmapscan = off";
            let params: [&(dyn ToSql + Sync); 4] = [&audience_id, &list_id, &after, &(PAGE as i64)];
            steered(db, plan, db.query(sql, &params)).await?
        }
        Leavers::Flagged { everything } => {
            db.query(
                "SELECT id, hashes FROM audience_member_sync \
                 WHERE audience_id = $1 AND id > $2 AND hashes IS NOT NULL \
                   AND ($3 OR removal_pending) ORDER BY id LIMIT $4",
                &[&audience_id, &after, &everything, &(PAGE as i64)],
            )
            .await?
        }
    };
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The destination deferred the removal of the leavers listed under `list_id`: those still
/// there are flagged, for a later sync to remove, and the list goes.
pub async fn defer_listed(db: &Client, list_id: Uuid) -> Result<()> {
    db.execute(
        "UPDATE audience_member_sync SET removal_pending = true, is_synced = false, \
                updated_at = now() \
         WHERE id = ANY(ARRAY(SELECT member_id FROM audience_member_leaver WHERE list_id = $1))",
        &[&list_id],
    )
    .await?;
    clear_leavers(db, list_id).await
}

/// The leavers listed under `list_id` are settled (removed, or flagged).
pub async fn clear_leavers(db: &Client, list_id: Uuid) -> Result<()> {
    db.execute(
        "DELETE FROM audience_member_leaver WHERE list_id = $1",
        &[&list_id],
    )
    .await?;
    Ok(())
}

/// Flagged leavers (or with `everything` all members) whose rows the destination still holds.
pub async fn pending_removals(db: &Client, audience_id: Uuid, everything: bool) -> Result<u64> {
    let row = db
        .query_one(
            "SELECT count(*) FROM audience_member_sync \
             WHERE audience_id = $1 AND ($2 OR removal_pending) AND hashes IS NOT NULL",
            &[&audience_id, &everything],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Leavers never accepted anywhere carry no row and simply go.
pub async fn drop_unsent_leavers(db: &Client, audience_id: Uuid) -> Result<()> {
    db.execute(
        "DELETE FROM audience_member_sync WHERE audience_id = $1 AND removal_pending AND hashes IS NULL",
        &[&audience_id],
    )
    .await?;
    Ok(())
}

/// After a completed replace: the destination holds exactly what this sync sent, so leavers go
/// and members not sent in this sync no longer have anything there. Returns the leavers.
pub async fn settle_replace(db: &Client, audience_id: Uuid, started: DateTime<Utc>) -> Result<u64> {
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

/// After a replace that did not finish (failed, abandoned, or out of its session's time),
/// begun at `started`. Once the platform accepted a batch of it, the session ends holding what
/// it received (at its last batch, or when it times out), so leavers are gone from it. Either
/// way the members it did not re-send are marked to be sent again by the next sync, whatever
/// its type. Their stored rows stay: the platform may still hold them (the session never
/// started, or a batch's answer was lost), and a later sync removes them where they changed.
/// Returns the members marked.
pub async fn unsettle_replace(
    db: &Client,
    audience_id: Uuid,
    started: DateTime<Utc>,
) -> Result<u64> {
    Ok(db
        .execute(
            "WITH began AS (SELECT EXISTS (SELECT 1 FROM audience_member_sync \
                            WHERE audience_id = $1 AND is_synced AND synced_at >= $2) AS yes), \
                  gone AS (DELETE FROM audience_member_sync \
                           WHERE audience_id = $1 AND removal_pending AND (SELECT yes FROM began)) \
             UPDATE audience_member_sync SET is_synced = false, updated_at = now() \
             WHERE audience_id = $1 AND is_synced AND NOT removal_pending \
               AND (synced_at IS NULL OR synced_at < $2)",
            &[&audience_id, &started],
        )
        .await?)
}

/// A new platform audience holds nothing: what the database believed sent is forgotten.
pub async fn forget_sent(db: &Client, audience_id: Uuid) -> Result<()> {
    db.execute(
        "UPDATE audience_member_sync SET is_synced = false, hashes = NULL, synced_at = NULL, \
         updated_at = now() WHERE audience_id = $1 AND (is_synced OR hashes IS NOT NULL)",
        &[&audience_id],
    )
    .await?;
    db.execute(
        "DELETE FROM audience_member_sync WHERE audience_id = $1 AND removal_pending",
        &[&audience_id],
    )
    .await?;
    Ok(())
}

/// The stored row of the member synced last.
pub async fn last_synced_row(db: &Client, audience_id: Uuid) -> Result<Option<Vec<u8>>> {
    let row = db
        .query_opt(
            "SELECT hashes FROM audience_member_sync \
             WHERE audience_id = $1 AND is_synced AND hashes IS NOT NULL \
             ORDER BY synced_at DESC LIMIT 1",
            &[&audience_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Joiners whose person was deleted meanwhile were never read: nothing to keep them for.
/// After a pass over a long list (`long`: a first sync), its dead rows are vacuumed at once
/// rather than at autovacuum's next round: until then every diff's lookup of an audience's
/// abandoned joiners walks their index entries (220 ms of a sync with nothing to do, right
/// after a first sync of 1,000,000). `SKIP_LOCKED`: a vacuum already running does the work.
pub async fn clear_list(db: &Client, list_id: Uuid, long: bool) -> Result<()> {
    db.execute(
        "DELETE FROM audience_member_joiner WHERE list_id = $1",
        &[&list_id],
    )
    .await?;
    if long {
        db.batch_execute("VACUUM (SKIP_LOCKED) audience_member_joiner")
            .await?;
    }
    Ok(())
}

/// Members this sync (since `started`) got accepted, those it could not send, and all the
/// audience's synced members: one scan.
pub async fn counts(
    db: &impl GenericClient,
    audience_id: Uuid,
    started: DateTime<Utc>,
) -> Result<(i64, i64, i64)> {
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE is_synced AND synced_at >= $2), \
                    count(*) FILTER (WHERE NOT is_synced AND failure_reason IS NOT NULL \
                                     AND updated_at >= $2), \
                    count(*) FILTER (WHERE is_synced) \
             FROM audience_member_sync WHERE audience_id = $1 AND NOT removal_pending",
            &[&audience_id, &started],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// One member as the API shows it: state only, never contact data or hashes.
#[derive(Debug, Serialize)]
pub struct Member {
    pub id: Uuid,
    pub person_id: Option<Uuid>,
    pub is_synced: bool,
    pub synced_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub removal_pending: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The first `limit` members in person order (erased people's rows last), read along the
/// (audience_id, person_id) key: `include=members` reads `limit` rows whatever the audience's
/// size (ordering by creation sorted the whole audience, with no index to serve it).
pub const LIST_SQL: &str = "SELECT id, person_id, is_synced, synced_at, failure_reason, \
     removal_pending, created_at, updated_at FROM audience_member_sync \
     WHERE audience_id = $1 ORDER BY audience_id, person_id LIMIT $2";

/// Which of these members a sync listed as leavers (V13): one pass over the audience's lists (a
/// churn's worth of rows). Asked inside LIST_SQL for each member, the planner, whose statistics
/// call a list tiny, would scan every listed leaver once per member.
const LISTED_SQL: &str = "SELECT member_id FROM audience_member_leaver \
     WHERE audience_id = $1 AND member_id = ANY($2)";

/// The audience's first `limit` members: see [`LIST_SQL`]. A listed leaver waits for its
/// removal as a flagged one does, and shows so.
pub async fn list(db: &impl GenericClient, audience_id: Uuid, limit: i64) -> Result<Vec<Member>> {
    let rows = db.query(LIST_SQL, &[&audience_id, &limit]).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let listed: HashSet<Uuid> = db
        .query(LISTED_SQL, &[&audience_id, &ids])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(rows
        .iter()
        .map(|r| Member {
            id: r.get(0),
            person_id: r.get(1),
            is_synced: r.get(2),
            synced_at: r.get(3),
            failure_reason: r.get(4),
            removal_pending: r.get::<_, bool>(5) || listed.contains(&r.get(0)),
            created_at: r.get(6),
            updated_at: r.get(7),
        })
        .collect())
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
