//! All SQL of `alert_outbox` and `alert_health_state`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::error::Result;

/// An event to deliver, as [`enqueue`] records it.
pub struct NewEvent<'a> {
    pub key: &'a str,
    pub kind: &'a str,
    pub audience_id: Option<Uuid>,
    pub message: &'a Value,
}

/// Records the event unless one with its key exists (each event once). Whether it was new.
pub async fn enqueue(
    db: &impl GenericClient,
    event: &NewEvent<'_>,
    webhook: bool,
    sns: bool,
) -> Result<bool> {
    let n = db
        .execute(
            "INSERT INTO alert_outbox (event_key, kind, audience_id, message, webhook_pending, \
                                       sns_pending) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_key) DO NOTHING",
            &[
                &event.key,
                &event.kind,
                &event.audience_id,
                event.message,
                &webhook,
                &sns,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Failed or blocked syncs that ended in the last `within_seconds` without their alert recorded
/// (its key, as `sync_events` makes it: `sync_failed:` or `sync_blocked:` and the log row's
/// id): the process died between the outcome's commit and the alert, its connection was lost,
/// or the sync was abandoned and a later one failed its row. At most `limit`, oldest first.
pub async fn unalerted_failures(
    db: &impl GenericClient,
    within_seconds: f64,
    limit: i64,
) -> Result<Vec<Uuid>> {
    let rows = db
        .query(
            "SELECT l.id FROM audience_sync_log l \
             WHERE l.status IN ('failed', 'blocked') \
               AND l.completed_at > now() - make_interval(secs => $1::float8) \
               AND NOT EXISTS (SELECT 1 FROM alert_outbox o \
                               WHERE o.event_key = CASE l.status WHEN 'blocked' THEN 'sync_blocked:' \
                                                                 ELSE 'sync_failed:' END || l.id) \
             ORDER BY l.completed_at LIMIT $2",
            &[&within_seconds, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// An event claimed for one delivery attempt.
pub struct Due {
    pub id: i64,
    pub key: String,
    pub message: Value,
    pub webhook_pending: bool,
    pub sns_pending: bool,
}

/// Claims up to `limit` events due now, keeping other deliverers off them for `lease_seconds`
/// (a deliverer that dies leaves them to be tried again after it).
pub async fn claim_due(
    db: &impl GenericClient,
    lease_seconds: f64,
    limit: i64,
) -> Result<Vec<Due>> {
    let rows = db
        .query(
            "UPDATE alert_outbox SET next_attempt_at = now() + make_interval(secs => $1::float8) \
             WHERE id IN (SELECT id FROM alert_outbox WHERE next_attempt_at <= now() \
                          ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, event_key, message, webhook_pending, sns_pending",
            &[&lease_seconds, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Due {
            id: r.get(0),
            key: r.get(1),
            message: r.get(2),
            webhook_pending: r.get(3),
            sns_pending: r.get(4),
        })
        .collect())
}

/// After an attempt: the channels still pending. All done: delivered. Otherwise the next try
/// waits `base_seconds` doubled per attempt (at most an hour); after `max_attempts` it stops.
pub async fn settle(
    db: &impl GenericClient,
    id: i64,
    webhook_pending: bool,
    sns_pending: bool,
    error: Option<&str>,
    base_seconds: f64,
    max_attempts: i32,
) -> Result<()> {
    db.execute(
        "UPDATE alert_outbox SET webhook_pending = $2, sns_pending = $3, attempts = attempts + 1, \
                last_error = $4, \
                delivered_at = CASE WHEN NOT ($2 OR $3) THEN now() END, \
                next_attempt_at = CASE \
                    WHEN NOT ($2 OR $3) OR attempts + 1 >= $6 THEN NULL \
                    ELSE now() + make_interval(secs => least(3600, $5::float8 * power(2, attempts))) END \
         WHERE id = $1",
        &[
            &id,
            &webhook_pending,
            &sns_pending,
            &error,
            &base_seconds,
            &max_attempts,
        ],
    )
    .await?;
    Ok(())
}

/// Forgets events delivered (or given up) more than 30 days ago.
pub async fn trim(db: &impl GenericClient) -> Result<u64> {
    Ok(db
        .execute(
            "DELETE FROM alert_outbox WHERE next_attempt_at IS NULL \
               AND created_at < now() - interval '30 days'",
            &[],
        )
        .await?)
}

/// Records the health the scheduler saw. When it just turned from ok to bad: since when (the
/// key of that turn's one alert).
pub async fn health_turned_bad(db: &impl GenericClient, ok: bool) -> Result<Option<DateTime<Utc>>> {
    let row = db
        .query_one(
            "UPDATE alert_health_state s \
             SET ok = $1, since = CASE WHEN s.ok = $1 THEN s.since ELSE now() END \
             FROM (SELECT ok FROM alert_health_state FOR UPDATE) was \
             RETURNING was.ok, s.since",
            &[&ok],
        )
        .await?;
    let (was_ok, since): (bool, DateTime<Utc>) = (row.get(0), row.get(1));
    Ok((was_ok && !ok).then_some(since))
}
