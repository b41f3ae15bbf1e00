//! All SQL of `audience_sync_log`: one row per sync, pending → in_progress → completed |
//! failed | blocked. The transitions that also show on the audience (`status`, `last_synced_at`) update
//! both rows in one statement, so the two never disagree.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::SyncType;
use crate::error::Result;

#[derive(Debug, Clone, Serialize)]
pub struct SyncLog {
    pub id: Uuid,
    pub audience_id: Option<Uuid>,
    pub sync_type: String,
    pub synced_count: i32,
    pub failed_count: i32,
    pub status: String,
    pub error_message: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub meta_response: Option<Value>,
    pub details: Option<Value>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, audience_id, sync_type, synced_count, failed_count, status, \
    error_message, started_at, completed_at, meta_response, details, created_at";

impl SyncLog {
    fn from_row(r: &Row) -> Self {
        SyncLog {
            id: r.get("id"),
            audience_id: r.get("audience_id"),
            sync_type: r.get("sync_type"),
            synced_count: r.get("synced_count"),
            failed_count: r.get("failed_count"),
            status: r.get("status"),
            error_message: r.get("error_message"),
            started_at: r.get("started_at"),
            completed_at: r.get("completed_at"),
            meta_response: r.get("meta_response"),
            details: r.get("details"),
            created_at: r.get("created_at"),
        }
    }
}

pub async fn recent(
    db: &impl GenericClient,
    audience_id: Uuid,
    limit: i64,
) -> Result<Vec<SyncLog>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audience_sync_log WHERE audience_id = $1 \
         ORDER BY created_at DESC, id LIMIT $2"
    );
    let rows = db.query(&sql, &[&audience_id, &limit]).await?;
    Ok(rows.iter().map(SyncLog::from_row).collect())
}

pub async fn get(db: &impl GenericClient, id: Uuid) -> Result<Option<SyncLog>> {
    let sql = format!("SELECT {COLUMNS} FROM audience_sync_log WHERE id = $1");
    Ok(db
        .query_opt(&sql, &[&id])
        .await?
        .map(|r| SyncLog::from_row(&r)))
}

/// A finished sync as history and alerts read it: its outcome, and the platform's size after it
/// and after the audience's last completed sync before it that read one.
#[derive(Debug, Clone)]
pub struct Closed {
    pub audience_id: Uuid,
    pub audience_name: String,
    pub platform: String,
    pub status: String,
    pub error_message: Option<String>,
    pub size: (Option<i64>, Option<i64>),
    pub size_before: (Option<i64>, Option<i64>),
}

/// The sync `log_id` once finished (`None`: unknown, still running, or its audience deleted).
pub async fn closed(db: &impl GenericClient, log_id: Uuid) -> Result<Option<Closed>> {
    let row = db
        .query_opt(
            "SELECT l.audience_id, a.name, a.destination, l.status, l.error_message,                     l.approximate_count_lower_bound, l.approximate_count_upper_bound,                     p.approximate_count_lower_bound, p.approximate_count_upper_bound              FROM audience_sync_log l JOIN custom_audience a ON a.id = l.audience_id              LEFT JOIN LATERAL (                  SELECT approximate_count_lower_bound, approximate_count_upper_bound                  FROM audience_sync_log p                  WHERE p.audience_id = l.audience_id AND p.status = 'completed'                    AND (p.created_at, p.id) < (l.created_at, l.id)                    AND (p.approximate_count_lower_bound IS NOT NULL                         OR p.approximate_count_upper_bound IS NOT NULL)                  ORDER BY p.created_at DESC, p.id DESC LIMIT 1) p ON true              WHERE l.id = $1 AND l.status IN ('completed', 'failed', 'blocked')",
            &[&log_id],
        )
        .await?;
    Ok(row.map(|r| Closed {
        audience_id: r.get(0),
        audience_name: r.get(1),
        platform: r.get(2),
        status: r.get(3),
        error_message: r.get(4),
        size: (r.get(5), r.get(6)),
        size_before: (r.get(7), r.get(8)),
    }))
}

/// A page of the audience's history (`GET /api/audiences/{id}/history`): its finished syncs,
/// newest first.
pub async fn history_page(
    db: &impl GenericClient,
    audience_id: Uuid,
    page: &crate::input::PageRequest,
) -> Result<crate::input::Page<super::history::Point>> {
    let (after_at, after_id) = page.after_key();
    let rows = db
        .query(
            "SELECT id, created_at, coalesce(completed_at, created_at), synced_count,                     failed_count, removed_count, approximate_count_lower_bound,                     approximate_count_upper_bound, match_rate, operation_status, delivery_status              FROM audience_sync_log              WHERE audience_id = $1 AND status IN ('completed', 'failed', 'blocked')                AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))              ORDER BY created_at DESC, id DESC LIMIT $4",
            &[&audience_id, &after_at, &after_id, &page.fetch_limit()],
        )
        .await?;
    let points = rows
        .iter()
        .map(|r| {
            let created_at: DateTime<Utc> = r.get(1);
            (
                created_at,
                super::history::Point {
                    at: r.get(2),
                    sync_log_id: r.get(0),
                    sent: r.get(3),
                    failed: r.get(4),
                    removed: r.get(5),
                    approximate_count_lower_bound: r.get(6),
                    approximate_count_upper_bound: r.get(7),
                    match_rate: r.get(8),
                    operation_status: r.get(9),
                    delivery_status: r.get(10),
                },
            )
        })
        .collect();
    let keyed = page.page(points, |(created_at, p)| crate::input::Cursor {
        created_at: *created_at,
        id: p.sync_log_id,
    });
    Ok(crate::input::Page {
        items: keyed.items.into_iter().map(|(_, p)| p).collect(),
        next: keyed.next,
    })
}

/// When the audience's last completed full sync ended (`None`: it never had one), read from
/// `idx_audience_sync_log_full_completed`.
pub async fn last_full_sync(
    db: &impl GenericClient,
    audience_id: Uuid,
) -> Result<Option<DateTime<Utc>>> {
    let row = db
        .query_one(
            "SELECT max(completed_at) FROM audience_sync_log \
             WHERE audience_id = $1 AND sync_type = 'full' AND status = 'completed'",
            &[&audience_id],
        )
        .await?;
    Ok(row.get(0))
}

/// A new pending row.
pub async fn open(db: &impl GenericClient, audience_id: Uuid, sync_type: SyncType) -> Result<Uuid> {
    let row = db
        .query_one(
            "INSERT INTO audience_sync_log (audience_id, sync_type, status) \
             VALUES ($1, $2, 'pending') RETURNING id",
            &[&audience_id, &sync_type.as_str()],
        )
        .await?;
    Ok(row.get(0))
}

/// pending → in_progress, and the audience shows it is syncing. Returns when it started.
pub async fn start(
    db: &impl GenericClient,
    log_id: Uuid,
    audience_id: Uuid,
) -> Result<DateTime<Utc>> {
    let row = db
        .query_one(
            "WITH a AS (UPDATE custom_audience SET status = 'syncing', last_attempted_at = now(), \
                        updated_at = now() WHERE id = $2) \
             UPDATE audience_sync_log SET status = 'in_progress', started_at = now() \
             WHERE id = $1 RETURNING started_at",
            &[&log_id, &audience_id],
        )
        .await?;
    Ok(row.get(0))
}

/// An unfinished sync that left a checkpoint: picked up again rather than failed.
pub struct Resumable {
    pub log_id: Uuid,
    pub sync_type: SyncType,
    pub started_at: DateTime<Utc>,
    pub checkpoint: Value,
}

pub async fn find_resumable(
    db: &impl GenericClient,
    audience_id: Uuid,
) -> Result<Option<Resumable>> {
    let row = db
        .query_opt(
            "SELECT id, sync_type, started_at, checkpoint FROM audience_sync_log \
             WHERE audience_id = $1 AND status = 'in_progress' AND checkpoint IS NOT NULL \
               AND started_at IS NOT NULL \
             ORDER BY created_at DESC LIMIT 1",
            &[&audience_id],
        )
        .await?;
    Ok(row.and_then(|r| {
        Some(Resumable {
            log_id: r.get(0),
            sync_type: r.get::<_, String>(1).parse().ok()?,
            started_at: r.get(2),
            checkpoint: r.get(3),
        })
    }))
}

/// Picks a checkpointed sync up again.
pub async fn resume(db: &impl GenericClient, log_id: Uuid, audience_id: Uuid) -> Result<()> {
    db.execute(
        "WITH a AS (UPDATE custom_audience SET status = 'syncing', last_attempted_at = now(), \
                    updated_at = now() WHERE id = $2) \
         UPDATE audience_sync_log SET resumed_count = resumed_count + 1 WHERE id = $1",
        &[&log_id, &audience_id],
    )
    .await?;
    Ok(())
}

pub async fn save_checkpoint(
    db: &impl GenericClient,
    log_id: Uuid,
    checkpoint: &Value,
) -> Result<()> {
    db.execute(
        "UPDATE audience_sync_log SET checkpoint = $2 WHERE id = $1",
        &[&log_id, checkpoint],
    )
    .await?;
    Ok(())
}

/// A paused sync keeps `in_progress` and its checkpoint; what it did so far is visible.
pub async fn pause(db: &impl GenericClient, log_id: Uuid, o: &Outcome) -> Result<()> {
    db.execute(
        "UPDATE audience_sync_log SET synced_count = $2, failed_count = $3, meta_response = $4, \
                details = $5 WHERE id = $1",
        &[
            &log_id,
            &o.synced_count,
            &o.failed_count,
            &o.meta_response,
            &o.details,
        ],
    )
    .await?;
    Ok(())
}

/// What a finished sync reports.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// The audience's synced members after this sync.
    pub total_synced: i32,
    pub synced_count: i32,
    pub failed_count: i32,
    pub meta_response: Value,
    pub details: Value,
    /// Members removed from the platform (history).
    pub removed: i64,
    /// The platform's size read back after the sync (history; `None`: not read).
    pub size: Option<crate::destinations::PlatformSize>,
}

/// in_progress → completed (`error` is `None`: the audience is active, synced now) or failed
/// (the audience carries the message; members accepted before the failure stay synced and
/// count). Both rows in one statement. A failed row keeps its checkpoint: the replace session
/// it names may still be open at the platform ([`unfinished_replace`]).
pub async fn close(
    db: &impl GenericClient,
    log_id: Uuid,
    audience_id: Uuid,
    error: Option<&str>,
    o: &Outcome,
) -> Result<()> {
    let size = o.size.clone().unwrap_or_default();
    db.execute(
        "WITH l AS (UPDATE audience_sync_log \
                    SET status = CASE WHEN $3::text IS NULL THEN 'completed' ELSE 'failed' END, \
                        completed_at = now(), error_message = $3, \
                        checkpoint = CASE WHEN $3::text IS NULL THEN NULL ELSE checkpoint END, \
                        synced_count = $4, failed_count = $5, meta_response = $6, details = $7, \
                        removed_count = $9, members_held = $8, \
                        approximate_count_lower_bound = $10, approximate_count_upper_bound = $11, \
                        match_rate = $12, operation_status = $13, delivery_status = $14 \
                    WHERE id = $1) \
         UPDATE custom_audience \
         SET status = CASE WHEN $3::text IS NULL THEN 'active' ELSE 'failed' END, \
             last_synced_at = CASE WHEN $3::text IS NULL THEN now() ELSE last_synced_at END, \
             sync_error_message = $3, updated_at = now(), total_synced = $8 \
         WHERE id = $2",
        &[
            &log_id,
            &audience_id,
            &error,
            &o.synced_count,
            &o.failed_count,
            &o.meta_response,
            &o.details,
            &o.total_synced,
            &(o.removed.min(i64::from(i32::MAX)) as i32),
            &size.lower,
            &size.upper,
            &super::history::match_rate(&size, i64::from(o.total_synced)),
            &size.operation_status,
            &size.delivery_status,
        ],
    )
    .await?;
    Ok(())
}

/// in_progress → blocked (the removal guardrails stopped it before any platform call; its diff
/// was not kept): the row keeps the numbers in `details` and the message; the audience shows
/// the message, and `failed` as its status, so the scheduler retries it no sooner than a failed
/// sync (each retry is blocked again until the segment is fixed, the limit changed, or a sync
/// forced). Both rows in one statement; what was synced stays as it was.
pub async fn block(
    db: &impl GenericClient,
    log_id: Uuid,
    audience_id: Uuid,
    message: &str,
    details: &Value,
) -> Result<()> {
    db.execute(
        "WITH l AS (UPDATE audience_sync_log \
                    SET status = 'blocked', completed_at = now(), error_message = $3, \
                        checkpoint = NULL, details = $4 \
                    WHERE id = $1) \
         UPDATE custom_audience \
         SET status = 'failed', sync_error_message = $3, updated_at = now() \
         WHERE id = $2",
        &[&log_id, &audience_id, &message, details],
    )
    .await?;
    Ok(())
}

/// A sync whose worker stopped before it finished, as [`fail_abandoned`] found it.
pub struct Abandoned {
    pub log_id: Uuid,
    pub sync_type: String,
    /// `None` when it never started.
    pub started_at: Option<DateTime<Utc>>,
}

/// Why [`fail_abandoned`] failed a row: its worker died (or the sync was left past its replace
/// window), or the database connection running it was lost.
pub const ABANDONED: &str = "abandoned: the worker running this sync stopped before it \
    finished; the next sync carries on from what was accepted";
pub const CONNECTION_LOST: &str = "the database connection running this sync was lost; \
    the next sync carries on from what was accepted";

/// Rows of syncs whose worker died: only called while holding the audience's lock, so nothing
/// else can still be running them. `only` limits it to one row; `except` spares one (the
/// sync being resumed).
pub async fn fail_abandoned(
    db: &impl GenericClient,
    audience_id: Uuid,
    only: Option<Uuid>,
    except: Option<Uuid>,
    message: &str,
) -> Result<Vec<Abandoned>> {
    let rows = db
        .query(
            "WITH a AS (UPDATE custom_audience SET status = 'failed', sync_error_message = $4, \
                        updated_at = now() \
                        WHERE id = $1 AND status = 'syncing' AND $3::uuid IS NOT NULL) \
             UPDATE audience_sync_log SET status = 'failed', completed_at = now(), \
             error_message = $4 \
             WHERE audience_id = $1 AND status IN ('pending', 'in_progress') \
               AND ($3::uuid IS NULL OR id = $3) AND id IS DISTINCT FROM $2 \
             RETURNING id, sync_type, started_at",
            &[&audience_id, &except, &only, &message],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Abandoned {
            log_id: r.get(0),
            sync_type: r.get(1),
            started_at: r.get(2),
        })
        .collect())
}

/// Meta ends a replace session at most this long after its first batch.
const REPLACE_SESSION_LIFE: &str = "90 minutes";

/// The latest failed (or abandoned) sync whose checkpoint names a replace session that may
/// still be open at the platform: until it ends, the platform refuses every other update of the
/// audience. Its log row id and the checkpoint's destination part.
pub async fn unfinished_replace(
    db: &impl GenericClient,
    audience_id: Uuid,
) -> Result<Option<(Uuid, Value)>> {
    let row = db
        .query_opt(
            "SELECT id, checkpoint -> 'destination' FROM audience_sync_log \
             WHERE audience_id = $1 AND status = 'failed' AND checkpoint ->> 'pass' = 'replace' \
               AND started_at > now() - $2::text::interval \
             ORDER BY created_at DESC LIMIT 1",
            &[&audience_id, &REPLACE_SESSION_LIFE],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// The session a failed sync's checkpoint names is over: nothing left to close.
pub async fn clear_checkpoint(db: &impl GenericClient, log_id: Uuid) -> Result<()> {
    db.execute(
        "UPDATE audience_sync_log SET checkpoint = NULL WHERE id = $1",
        &[&log_id],
    )
    .await?;
    Ok(())
}

/// A full sync of the audience paused inside a platform replace session, or failed leaving one
/// ([`unfinished_replace`]), that may still be open: Meta takes no other change to the audience
/// while it is (META_API.md), and what the session received would come back when it ends. Past
/// the session's life a stale row does not matter.
pub async fn replace_may_be_open(db: &impl GenericClient, audience_id: Uuid) -> Result<bool> {
    let row = db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM audience_sync_log \
                            WHERE audience_id = $1 AND status IN ('in_progress', 'failed') \
                              AND checkpoint ->> 'pass' = 'replace' \
                              AND started_at > now() - $2::text::interval)",
            &[&audience_id, &REPLACE_SESSION_LIFE],
        )
        .await?;
    Ok(row.get(0))
}
