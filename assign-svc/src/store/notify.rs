//! The NOTIFY channels that carry job updates and wake-ups to every replica.
//!
//! A job update (`assign_updates`) is published by the statement that changed the job,
//! so it goes out exactly when its transaction commits; a wake-up (`assign_wake`) tells
//! the schedulers that capacity freed. It must never change a job.

use crate::{
    domain::{BookingId, RestaurantId},
    error::Error,
};
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use uuid::Uuid;

/// NOTIFY channel of job updates; the payload is a [`JobPayload`] in JSON.
pub const UPDATES_CHANNEL: &str = "assign_updates";
/// NOTIFY channel that wakes schedulers (payload: the restaurant id).
pub const WAKE_CHANNEL: &str = "assign_wake";

/// Selects one `pg_notify` per row of the CTE named `$cte` (job rows), with the update as
/// JSON: booking `b`, version `v`, state `s`, attempts `a`, next attempt `n` (µs since the
/// epoch), last error `e` and the trace context `t` of the latest attempt.
macro_rules! notify_jobs_from {
    ($cte:literal) => {
        concat!(
            "SELECT pg_notify('assign_updates', json_build_object('b', booking_id, 'v', version, 's', state, ",
            "'a', attempts, 'n', (extract(epoch FROM next_attempt_at) * 1000000)::bigint, ",
            "'e', left(last_error, 1000), 't', attempt_trace_context)::text) FROM ",
            $cte
        )
    };
}
pub(super) use notify_jobs_from;

/// A job update as carried by NOTIFY.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct JobPayload {
    /// Booking id.
    pub b: Uuid,
    /// Version.
    pub v: i64,
    /// Stored job state.
    pub s: String,
    /// Attempts so far.
    pub a: i32,
    /// Next attempt, µs since the epoch.
    pub n: Option<i64>,
    /// Last error.
    pub e: Option<String>,
    /// W3C trace context of the attempt that produced the update.
    #[serde(default)]
    pub t: HashMap<String, String>,
}

/// Notifies a `superseded` update for a job version that a submit just replaced.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn notify_superseded(
    tx: &Transaction<'_>,
    booking_id: BookingId,
    version: i64,
    attempts: i32,
) -> Result<(), Error> {
    let statement = tx
        .prepare_cached(
            "SELECT pg_notify('assign_updates', json_build_object('b', $1::uuid, 'v', $2::bigint, 's', 'superseded', \
               'a', $3::int, 'n', NULL, 'e', NULL)::text)",
        )
        .await?;
    tx.query_one(&statement, &[&booking_id.uuid(), &version, &attempts]).await?;
    Ok(())
}

/// Wakes the schedulers of every replica (on commit).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn notify_wake(tx: &Transaction<'_>, restaurant_id: &RestaurantId) -> Result<(), Error> {
    let statement = tx.prepare_cached("SELECT pg_notify('assign_wake', $1)").await?;
    tx.query_one(&statement, &[&restaurant_id.as_str()]).await?;
    Ok(())
}
