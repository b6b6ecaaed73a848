//! The release tasks table: one task per cancelled booking whose tables to free.
//!
//! The release worker claims them with a lease.

use super::{Carrier, Result, due_in, secs};
use deadpool_postgres::GenericClient;
use std::time::Duration;
use uuid::Uuid;

/// Channel woken when a release task is written.
pub const CHANNEL: &str = "booking_release";

/// Writes (or re-opens) the task that releases a cancelled booking's tables.
pub async fn enqueue(db: &impl GenericClient, booking_id: Uuid, carrier: &Carrier) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO booking.release_tasks (booking_id, trace_context) VALUES ($1, $2) \
             ON CONFLICT (booking_id) DO UPDATE SET state = 'OPEN', due_at = now(), locked_until = NULL, finished_at = NULL",
        )
        .await?;
    db.execute(&stmt, &[&booking_id, &carrier.to_json()]).await?;
    Ok(())
}

/// A release task claimed by this process.
pub struct ClaimedRelease {
    pub booking_id: Uuid,
    pub attempts: i32,
    pub carrier: Carrier,
}

/// Claims up to `limit` due release tasks for `lease`.
pub async fn claim(db: &impl GenericClient, limit: i64, lease: Duration) -> Result<Vec<ClaimedRelease>> {
    let stmt = db
        .prepare_cached(
            "WITH due AS ( \
               SELECT booking_id FROM booking.release_tasks \
               WHERE state = 'OPEN' AND due_at <= now() AND (locked_until IS NULL OR locked_until <= now()) \
               ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE booking.release_tasks r SET locked_until = now() + $2::float8 * interval '1 second', attempts = r.attempts + 1 \
             FROM due WHERE r.booking_id = due.booking_id RETURNING r.booking_id, r.attempts, r.trace_context",
        )
        .await?;
    let rows = db.query(&stmt, &[&limit, &secs(lease)]).await?;
    rows.iter()
        .map(|r| {
            Ok(ClaimedRelease {
                booking_id: r.try_get(0)?,
                attempts: r.try_get(1)?,
                carrier: Carrier::from_json(r.try_get(2)?),
            })
        })
        .collect()
}

/// Ends a release task in `state` (`DONE` or `FAILED`).
pub async fn finish(db: &impl GenericClient, booking_id: Uuid, state: &str, error: Option<&str>) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.release_tasks SET state = $2, finished_at = now(), locked_until = NULL, last_error = $3 \
             WHERE booking_id = $1 AND state = 'OPEN'",
        )
        .await?;
    db.execute(&stmt, &[&booking_id, &state, &error]).await?;
    Ok(())
}

/// Puts a release task back for another try after `delay`.
pub async fn retry(db: &impl GenericClient, booking_id: Uuid, delay: Duration, error: &str) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.release_tasks SET due_at = now() + $2::float8 * interval '1 second', locked_until = NULL, \
             last_error = $3 WHERE booking_id = $1 AND state = 'OPEN'",
        )
        .await?;
    db.execute(&stmt, &[&booking_id, &secs(delay), &error]).await?;
    Ok(())
}

/// How long until a release task can be claimed (`None`: none open).
pub async fn next_due(db: &impl GenericClient) -> Result<Option<Duration>> {
    let stmt = db
        .prepare_cached(
            "SELECT EXTRACT(EPOCH FROM min(GREATEST(due_at, COALESCE(locked_until, due_at))) - now())::float8 \
             FROM booking.release_tasks WHERE state = 'OPEN'",
        )
        .await?;
    let seconds: Option<f64> = db.query_one(&stmt, &[]).await?.try_get(0)?;
    Ok(due_in(seconds))
}
