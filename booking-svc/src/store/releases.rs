//! The release tasks table: one task per cancelled booking whose tables to free.
//!
//! A leased queue ([`platform::queue`]): the release worker claims tasks with a lease.

use super::{Carrier, Result};
use deadpool_postgres::GenericClient;
use platform::queue::{LeasedQueue, QueueTable};
use std::{sync::LazyLock, time::Duration};
use uuid::Uuid;

/// Channel woken when a release task is written.
pub const CHANNEL: &str = "booking_release";

/// The queue's statements.
static QUEUE: LazyLock<LeasedQueue> = LazyLock::new(|| {
    LeasedQueue::new(QueueTable {
        table: "booking.release_tasks",
        key: &["booking_id"],
        state: "state",
        open: "OPEN",
        due: "due_at",
        returning: "q.booking_id, q.attempts, q.trace_context",
        join: None,
    })
});

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
    let rows = QUEUE.claim(db, limit, lease).await?;
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
    QUEUE.finish(db, &[&booking_id], state, error).await?;
    Ok(())
}

/// Puts a release task back for another try after `delay`.
pub async fn retry(db: &impl GenericClient, booking_id: Uuid, delay: Duration, error: &str) -> Result<()> {
    QUEUE.retry(db, &[&booking_id], delay, error).await?;
    Ok(())
}

/// How long until a release task can be claimed (`None`: none open).
pub async fn next_due(db: &impl GenericClient) -> Result<Option<Duration>> {
    Ok(QUEUE.next_due(db).await?)
}
