//! All SQL of `custom_audience`: reads, writes, the platform ids a sync records, and the
//! scheduler's claim on due audiences.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{Audience, AudienceSpec, AudienceType};
use crate::db::DbError;
use crate::destinations::Platform;
use crate::error::{Error, Result};
use crate::input::{Cursor, Page, PageRequest};

const COLUMNS: &str = "id, name, description, meta_audience_id, meta_business_account_id, \
    segment_id, audience_type, lookalike_country, lookalike_percentage, rule, auto_sync, \
    sync_interval_hours, last_synced_at, is_active, status, total_synced, sync_error_message, \
    meta_seed_audience_id, created_at, updated_at, meta_metrics, realtime, destination, \
    destination_account_id, destination_audience_id, max_removal_percent, min_members, \
    value_attribute, holdout_percent";

impl Audience {
    fn from_row(row: &Row) -> Self {
        let destination = Platform::parse(row.get("destination")).unwrap_or(Platform::Meta);
        // Meta's ids live in their own columns (as before destinations); the API mirrors them.
        let (destination_account_id, destination_audience_id) = match destination {
            Platform::Meta => (
                row.get("meta_business_account_id"),
                row.get("meta_audience_id"),
            ),
            _ => (
                row.get("destination_account_id"),
                row.get("destination_audience_id"),
            ),
        };
        Audience {
            id: row.get("id"),
            name: row.get("name"),
            description: row.get("description"),
            meta_audience_id: row.get("meta_audience_id"),
            meta_business_account_id: row.get("meta_business_account_id"),
            segment_id: row.get("segment_id"),
            audience_type: AudienceType::from_db(row.get("audience_type")),
            lookalike_country: row.get("lookalike_country"),
            lookalike_percentage: row.get("lookalike_percentage"),
            rule: row.get("rule"),
            auto_sync: row.get("auto_sync"),
            realtime: row.get("realtime"),
            sync_interval_hours: row.get("sync_interval_hours"),
            last_synced_at: row.get("last_synced_at"),
            is_active: row.get("is_active"),
            status: row.get("status"),
            total_synced: row.get("total_synced"),
            sync_error_message: row.get("sync_error_message"),
            meta_seed_audience_id: row.get("meta_seed_audience_id"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            meta_metrics: row.get("meta_metrics"),
            max_removal_percent: row.get("max_removal_percent"),
            min_members: row.get("min_members"),
            value_attribute: row.get("value_attribute"),
            holdout_percent: row.get("holdout_percent"),
            destination,
            destination_account_id,
            destination_audience_id,
        }
    }
}

/// Maps the constraint violations a write can hit to the caller's mistake.
fn write_error(e: tokio_postgres::Error, segment_id: Option<Uuid>) -> Error {
    let e = DbError::from(e);
    match e.constraint() {
        Some("custom_audience_name_key") => {
            Error::Conflict("an audience with this name already exists".into())
        }
        Some("custom_audience_segment_id_fkey") => Error::invalid(
            "segment_id",
            format!(
                "segment {} does not exist",
                segment_id.map(|s| s.to_string()).unwrap_or_default()
            ),
        ),
        _ => Error::Db(e),
    }
}

/// Which audiences a list shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    pub is_active: Option<bool>,
    pub destination: Option<Platform>,
}

/// Every audience (`is_active` filters), newest first.
pub async fn list(db: &impl GenericClient, is_active: Option<bool>) -> Result<Vec<Audience>> {
    let filter = Filter {
        is_active,
        destination: None,
    };
    Ok(list_page(db, filter, &PageRequest::ALL).await?.items)
}

/// One page of the audiences (`filter`), newest first: keyset pagination on `(created_at, id)`,
/// served by `idx_custom_audience_created_at_id` (`idx_custom_audience_destination_order`
/// within one destination).
pub async fn list_page(
    db: &impl GenericClient,
    filter: Filter,
    page: &PageRequest,
) -> Result<Page<Audience>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM custom_audience \
         WHERE ($1::boolean IS NULL OR is_active = $1) \
           AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid)) \
           AND ($5::text IS NULL OR destination = $5) \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    );
    let (after_at, after_id) = page.after_key();
    let destination = filter.destination.map(Platform::as_str);
    let rows = db
        .query(
            &sql,
            &[
                &filter.is_active,
                &after_at,
                &after_id,
                &page.fetch_limit(),
                &destination,
            ],
        )
        .await?;
    let audiences = rows.iter().map(Audience::from_row).collect();
    Ok(page.page(audiences, |a: &Audience| Cursor {
        created_at: a.created_at,
        id: a.id,
    }))
}

pub async fn get(db: &impl GenericClient, id: Uuid) -> Result<Audience> {
    one(db, id, "").await
}

/// The audience, its row locked until the transaction ends.
pub async fn get_for_update(db: &impl GenericClient, id: Uuid) -> Result<Audience> {
    one(db, id, " FOR UPDATE").await
}

async fn one(db: &impl GenericClient, id: Uuid, lock: &str) -> Result<Audience> {
    let sql = format!("SELECT {COLUMNS} FROM custom_audience WHERE id = $1{lock}");
    let row = db.query_opt(&sql, &[&id]).await?;
    row.map(|r| Audience::from_row(&r))
        .ok_or_else(|| Error::not_found("audience", id))
}

/// The settable columns, in the order of `spec_params`.
const SPEC_COLUMNS: [&str; 19] = [
    "name",
    "description",
    "audience_type",
    "segment_id",
    "lookalike_country",
    "lookalike_percentage",
    "rule",
    "auto_sync",
    "realtime",
    "sync_interval_hours",
    "is_active",
    "meta_business_account_id",
    "meta_audience_id",
    "destination",
    "destination_account_id",
    "max_removal_percent",
    "min_members",
    "value_attribute",
    "holdout_percent",
];

/// What `destination_account_id` holds: Meta's account stays in `meta_business_account_id`
/// alone (the column is for the other platforms).
fn account_column(s: &AudienceSpec) -> Option<String> {
    match s.destination {
        Platform::Meta => None,
        _ => s.destination_account_id.clone(),
    }
}

fn spec_params<'a>(
    s: &'a AudienceSpec,
    account: &'a Option<String>,
) -> [&'a (dyn ToSql + Sync); 19] {
    [
        &s.name,
        &s.description,
        &s.audience_type,
        &s.segment_id,
        &s.lookalike_country,
        &s.lookalike_percentage,
        &s.rule,
        &s.auto_sync,
        &s.realtime,
        &s.sync_interval_hours,
        &s.is_active,
        &s.meta_business_account_id,
        &s.meta_audience_id,
        &s.destination,
        account,
        &s.max_removal_percent,
        &s.min_members,
        &s.value_attribute,
        &s.holdout_percent,
    ]
}

pub async fn insert(db: &impl GenericClient, spec: &AudienceSpec) -> Result<Audience> {
    let placeholders: Vec<String> = (1..=SPEC_COLUMNS.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO custom_audience ({}) VALUES ({}) RETURNING {COLUMNS}",
        SPEC_COLUMNS.join(", "),
        placeholders.join(", ")
    );
    let account = account_column(spec);
    let row = db
        .query_one(&sql, &spec_params(spec, &account))
        .await
        .map_err(|e| write_error(e, spec.segment_id))?;
    Ok(Audience::from_row(&row))
}

pub async fn update(db: &impl GenericClient, id: Uuid, spec: &AudienceSpec) -> Result<Audience> {
    let sets: Vec<String> = SPEC_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    // On the right of SET a column is its old value. A new holdout percentage (or segment)
    // moves people the change log never saw, so the next diff is a full one (no horizon); a
    // new value attribute changes every member's row, so the next `update` re-hashes them all
    // (no re-hash horizon).
    let param = |column: &str| {
        SPEC_COLUMNS
            .iter()
            .position(|c| *c == column)
            .map_or(0, |i| i + 1)
    };
    let sql = format!(
        "UPDATE custom_audience SET {}, updated_at = now(), \
             changes_from = CASE WHEN holdout_percent IS DISTINCT FROM ${} \
                                   OR segment_id IS DISTINCT FROM ${} \
                                 THEN NULL ELSE changes_from END, \
             rehash_from = CASE WHEN value_attribute IS DISTINCT FROM ${} \
                                THEN NULL ELSE rehash_from END \
         WHERE id = ${} RETURNING {COLUMNS}",
        sets.join(", "),
        param("holdout_percent"),
        param("segment_id"),
        param("value_attribute"),
        SPEC_COLUMNS.len() + 1
    );
    let account = account_column(spec);
    let mut params = spec_params(spec, &account).to_vec();
    params.push(&id);
    let row = db
        .query_one(&sql, &params)
        .await
        .map_err(|e| write_error(e, spec.segment_id))?;
    Ok(Audience::from_row(&row))
}

/// Up to `limit` people of the audience's holdout after person id `after`, in id order: the
/// members of `segment_id` who have not opted out and whose bucket is below `percent`, as
/// `audience_eligible_persons` (V10) leaves them out. The segment's (segment_id, person_id) key
/// is read in order and stops at the limit: about limit / percent members a page (22 ms for
/// 1,000 at 20% of a 500,000-member segment; joined to the audience row instead, the planner
/// sorted every held-out member first, 1.8 s).
pub async fn holdout_page(
    db: &impl GenericClient,
    audience: &Audience,
    segment_id: Uuid,
    after: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>> {
    let rows = db
        .query(
            "SELECT sm.person_id FROM segment_member sm \
             WHERE sm.segment_id = $1 AND sm.person_id > $2 \
               AND audience_holdout_bucket($3, sm.person_id) < $4 \
               AND NOT EXISTS (SELECT 1 FROM person p \
                               WHERE p.id = sm.person_id AND p.marketing_opt_out) \
             ORDER BY sm.person_id LIMIT $5",
            &[
                &segment_id,
                &after,
                &audience.id,
                &audience.holdout_percent,
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<()> {
    let n = db
        .execute("DELETE FROM custom_audience WHERE id = $1", &[&id])
        .await?;
    if n == 0 {
        return Err(Error::not_found("audience", id));
    }
    Ok(())
}

/// The platform's view of the audience, recorded after each sync.
pub async fn record_meta_metrics(db: &impl GenericClient, id: Uuid, metrics: &Value) -> Result<()> {
    db.execute(
        "UPDATE custom_audience SET meta_metrics = $2 WHERE id = $1",
        &[&id, metrics],
    )
    .await?;
    Ok(())
}

/// Which platform id a sync records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformId {
    /// The audience itself.
    Audience,
    /// The seed a lookalike is built from.
    LookalikeSeed,
}

/// Records the id the platform gave the audience (or its seed) when the sync created it.
pub async fn set_platform_id(
    db: &impl GenericClient,
    audience_id: Uuid,
    which: PlatformId,
    id: &str,
) -> Result<()> {
    let sql = match which {
        // Meta's id in its own column; the other platforms' in `destination_audience_id`.
        PlatformId::Audience => {
            "UPDATE custom_audience SET \
                 meta_audience_id = CASE WHEN destination = 'meta' THEN $2 END, \
                 destination_audience_id = CASE WHEN destination <> 'meta' THEN $2 END, \
                 updated_at = now() \
             WHERE id = $1"
        }
        PlatformId::LookalikeSeed => {
            "UPDATE custom_audience SET meta_seed_audience_id = $2, updated_at = now() WHERE id = $1"
        }
    };
    db.execute(sql, &[&audience_id, &id]).await?;
    Ok(())
}

/// Forgets a platform id the platform no longer has (DESIGN §8.1), so that the next sync
/// creates the audience anew: whichever column holds `gone`. A lookalike's seed takes the
/// lookalike with it (Meta deletes no seed while a lookalike is built on it).
pub async fn clear_platform_id(
    db: &impl GenericClient,
    audience_id: Uuid,
    gone: &str,
) -> Result<()> {
    db.execute(
        "UPDATE custom_audience SET \
             meta_audience_id = CASE WHEN meta_audience_id = $2 OR meta_seed_audience_id = $2 \
                                     THEN NULL ELSE meta_audience_id END, \
             meta_seed_audience_id = NULLIF(meta_seed_audience_id, $2), \
             destination_audience_id = CASE WHEN destination_audience_id = $2 \
                                                 OR meta_seed_audience_id = $2 \
                                            THEN NULL ELSE destination_audience_id END, \
             meta_metrics = NULL, updated_at = now() \
         WHERE id = $1",
        &[&audience_id, &gone],
    )
    .await?;
    Ok(())
}

/// `get_audience_metrics`: members, synced members, last sync and its status.
pub async fn member_metrics(db: &impl GenericClient, id: Uuid) -> Result<Value> {
    let row = db
        .query_one(
            "SELECT total_members, synced_count, last_sync_date, sync_status \
             FROM get_audience_metrics($1)",
            &[&id],
        )
        .await?;
    Ok(serde_json::json!({
        "total_members": row.get::<_, i32>(0),
        "synced_count": row.get::<_, i32>(1),
        "last_sync_date": row.get::<_, Option<DateTime<Utc>>>(2),
        "sync_status": row.get::<_, String>(3),
    }))
}

/// Due: a paused sync, whatever the audience's settings (one started through the API and out of
/// time is the scheduler's to finish); else active, and either auto-synced and never synced or
/// synced `sync_interval_hours` ago (a failed one is retried after at most an hour), or
/// real-time with changes its last diff did not see, for its segment or for a person (one of its
/// members, unless its segment has a rule, which any person may come to match) (a failed one
/// retried after a few minutes). With nothing to do, this is a scan of the (few) audiences plus
/// two probes of `idx_change_log_segment_xid` per real-time audience.
const CLAIM_NEXT: &str = "\
    WITH next AS ( \
        SELECT a.id FROM custom_audience a \
        WHERE a.id <> ALL($2) \
          AND (a.sync_claimed_until IS NULL OR a.sync_claimed_until < now()) \
          AND ( a.id IN (SELECT l.audience_id FROM audience_sync_log l \
                         WHERE l.status = 'in_progress' AND l.checkpoint IS NOT NULL) \
             OR a.is_active AND a.auto_sync \
              AND (a.last_synced_at IS NULL \
                   OR a.last_synced_at + make_interval(hours => a.sync_interval_hours) <= now()) \
              AND (a.status <> 'failed' OR a.last_attempted_at IS NULL \
                   OR a.last_attempted_at + LEAST(make_interval(hours => a.sync_interval_hours), \
                                                  interval '1 hour') <= now()) \
             OR ( a.is_active AND a.realtime AND a.segment_id IS NOT NULL \
              AND (a.changes_from IS NULL \
                   OR EXISTS (SELECT 1 FROM change_log c \
                              WHERE c.segment_id = a.segment_id AND c.xid >= a.changes_from \
                                AND NOT pg_visible_in_snapshot(c.xid, a.changes_seen)) \
                   OR EXISTS (SELECT 1 FROM change_log c \
                              WHERE c.segment_id IS NULL AND c.xid >= a.changes_from \
                                AND NOT pg_visible_in_snapshot(c.xid, a.changes_seen) \
                                AND (EXISTS (SELECT 1 FROM segment s \
                                             WHERE s.id = a.segment_id AND s.rule IS NOT NULL) \
                                  OR EXISTS (SELECT 1 FROM segment_member sm \
                                             WHERE sm.segment_id = a.segment_id \
                                               AND sm.person_id = c.person_id)))) \
              AND (a.status <> 'failed' OR a.last_attempted_at IS NULL \
                   OR a.last_attempted_at + interval '5 minutes' <= now()) ) ) \
        ORDER BY a.last_synced_at NULLS FIRST, a.id \
        LIMIT 1 FOR UPDATE SKIP LOCKED) \
    UPDATE custom_audience a SET sync_claimed_until = now() + make_interval(secs => $1) \
    FROM next WHERE a.id = next.id \
    RETURNING a.id";

/// Claims the next due audience but those in `except` for `lease` (`FOR UPDATE SKIP LOCKED`:
/// concurrent passes share the work).
pub async fn claim_next_due(
    db: &impl GenericClient,
    lease: Duration,
    except: &[Uuid],
) -> Result<Option<Uuid>> {
    let row = db
        .query_opt(CLAIM_NEXT, &[&lease.as_secs_f64(), &except])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Ends a claim.
pub async fn release_claim(db: &impl GenericClient, id: Uuid) -> Result<()> {
    db.execute(
        "UPDATE custom_audience SET sync_claimed_until = NULL WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}
