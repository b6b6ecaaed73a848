//! The `assign.jobs` table: the queue of reassign jobs, one per booking.
//!
//! A stream's submit puts or reopens a booking's job; the scheduler claims due jobs
//! under a lease (`FOR UPDATE SKIP LOCKED`), and every statement that changes a job's
//! state publishes the update in the same statement. It must never decide when to retry:
//! the retry policy is the domain's.

use super::{
    notify::{JobPayload, notify_jobs_from},
    rows::{slot_of, stored},
};
use crate::{
    domain::{AssignRequest, BookingId, JobState, JobView, PartySize, RestaurantId, Slot, Version},
    error::Error,
};
use deadpool_postgres::{ClientWrapper, GenericClient, Transaction};
use platform::{db::Prepared, params, telemetry::Carrier};
use std::collections::HashMap;
use std::time::SystemTime;
use tokio_postgres::Row;
use uuid::Uuid;

/// A job claimed by this process under a lease.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    /// What to assign.
    pub request: AssignRequest,
    /// Attempts before this one.
    pub attempts: i32,
    /// Wake-up counter at claim time.
    pub wakes: i64,
    /// The lease.
    pub lease_id: Uuid,
    /// W3C trace context of the request that submitted the job.
    pub trace_context: Carrier,
}

/// Whether this process still holds a claimed job's lease and the job still waits (a row
/// when it does). Takes no lock (job rows are only locked by the last statements of a
/// transaction, so wake-ups never wait in a cycle); the recording statements check the
/// lease again.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn job_still_leased(
    client: &ClientWrapper,
    booking_id: BookingId,
    version: Version,
    lease_id: Uuid,
) -> Result<Prepared, Error> {
    let statement = client
        .prepare_cached(
            "SELECT 1 FROM assign.jobs WHERE booking_id = $1 AND version = $2 AND lease_id = $3 AND state = 'waiting'",
        )
        .await?;
    Ok(Prepared::new(statement, params![booking_id.uuid(), version.get(), lease_id]))
}

/// Records a failed attempt of a leased job: one more attempt, `last_error`, and either
/// the next attempt at `retry_at` (or now, when freed capacity woke the job since it was
/// claimed) or, with `retry_at` None, `gave_up`. Notifies the update. False when the
/// lease was lost meanwhile.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn record_job_failure(
    tx: &Transaction<'_>,
    job: &ClaimedJob,
    retry_at: Option<SystemTime>,
    last_error: &str,
) -> Result<bool, Error> {
    let rows = record_job_failure_statement(tx, job, retry_at, last_error).await?.query(tx).await?;
    Ok(!rows.is_empty())
}

/// The statement of [`record_job_failure`] (a row when it was recorded).
pub async fn record_job_failure_statement(
    client: &impl GenericClient,
    job: &ClaimedJob,
    retry_at: Option<SystemTime>,
    last_error: &str,
) -> Result<Prepared, Error> {
    let statement = client
        .prepare_cached(concat!(
            "WITH failed AS ( \
               UPDATE assign.jobs SET attempts = attempts + 1, last_error = $4, \
                 state = CASE WHEN $5::timestamptz IS NULL THEN 'gave_up' ELSE 'waiting' END, \
                 next_attempt_at = CASE WHEN $5::timestamptz IS NULL THEN next_attempt_at \
                                        WHEN wakes <> $6 THEN now() ELSE $5 END, \
                 finished_at = CASE WHEN $5::timestamptz IS NULL THEN now() END, \
                 lease_id = NULL, locked_until = NULL \
               WHERE booking_id = $1 AND version = $2 AND lease_id = $3 AND state = 'waiting' \
               RETURNING booking_id, version, state, attempts, next_attempt_at, last_error, attempt_trace_context) ",
            notify_jobs_from!("failed")
        ))
        .await?;
    Ok(Prepared::new(
        statement,
        params![
            job.request.booking_id.uuid(),
            job.request.version.get(),
            job.lease_id,
            last_error.to_string(),
            retry_at,
            job.wakes
        ],
    ))
}

/// Ends a leased job in a final state without counting an attempt (e.g. `superseded`
/// when a newer version turned up), notifying the update.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn finish_job(client: &ClientWrapper, job: &ClaimedJob, state: JobState) -> Result<Prepared, Error> {
    let statement = client
        .prepare_cached(concat!(
            "WITH finished AS ( \
               UPDATE assign.jobs SET state = $4, finished_at = now(), lease_id = NULL, locked_until = NULL \
               WHERE booking_id = $1 AND version = $2 AND lease_id = $3 AND state = 'waiting' \
               RETURNING booking_id, version, state, attempts, next_attempt_at, last_error, attempt_trace_context) ",
            notify_jobs_from!("finished")
        ))
        .await?;
    Ok(Prepared::new(
        statement,
        params![job.request.booking_id.uuid(), job.request.version.get(), job.lease_id, state.as_str()],
    ))
}

/// Makes the waiting jobs of a restaurant due now (only those overlapping `slot`, when
/// given), bumping their wake-up counter, and wakes the schedulers of every replica when
/// there were any.
/// Locks the jobs in booking order and must run outside other transactions.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn wake_jobs(client: &ClientWrapper, restaurant_id: &RestaurantId, slot: Option<Slot>) -> Result<u64, Error> {
    let statement = client
        .prepare_cached(
            "WITH woken AS ( \
               UPDATE assign.jobs SET next_attempt_at = LEAST(next_attempt_at, now()), wakes = wakes + 1 \
               WHERE booking_id IN ( \
                 SELECT booking_id FROM assign.jobs \
                 WHERE restaurant_id = $1 AND state = 'waiting' \
                   AND ($2::timestamptz IS NULL OR during && tstzrange($2, $3)) \
                 ORDER BY booking_id FOR UPDATE) \
               RETURNING 1) \
             SELECT count(*) AS woken FROM woken",
        )
        .await?;
    let (start, end) = (slot.map(|s| s.start()), slot.map(|s| s.end()));
    let row = client.query_one(&statement, &[&restaurant_id.as_str(), &start, &end]).await?;
    let woken = row.try_get::<_, i64>("woken")?.max(0) as u64;
    if woken > 0 {
        let notify = client.prepare_cached("SELECT pg_notify('assign_wake', $1)").await?;
        client.query_one(&notify, &[&restaurant_id.as_str()]).await?;
    }
    Ok(woken)
}

fn claimed_job(row: &Row) -> Result<ClaimedJob, Error> {
    let start: SystemTime = row.try_get("start_time")?;
    let end: SystemTime = row.try_get("end_time")?;
    Ok(ClaimedJob {
        request: AssignRequest {
            booking_id: BookingId::from_uuid(row.try_get("booking_id")?),
            version: stored("version", Version::parse(row.try_get("version")?))?,
            restaurant_id: stored("restaurant id", RestaurantId::parse(row.try_get("restaurant_id")?))?,
            party_size: stored("party size", PartySize::parse(row.try_get("party_size")?))?,
            slot: slot_of(start, end)?,
        },
        attempts: row.try_get("attempts")?,
        wakes: row.try_get("wakes")?,
        lease_id: row.try_get("lease_id")?,
        trace_context: Carrier::from_json(row.try_get("trace_context")?),
    })
}

/// Remembers the trace context of the attempt a leased job is making, so the update it
/// publishes carries it.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_attempt_context(client: &ClientWrapper, job: &ClaimedJob, carrier: &Carrier) -> Result<(), Error> {
    let statement = client
        .prepare_cached("UPDATE assign.jobs SET attempt_trace_context = $3 WHERE booking_id = $1 AND lease_id = $2")
        .await?;
    client.execute(&statement, &[&job.request.booking_id.uuid(), &job.lease_id, &carrier.to_json()]).await?;
    Ok(())
}

/// Claims up to `limit` due jobs whose lease is free (skipping rows other replicas are
/// claiming), leasing them to this process for `lease_ms`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn claim_due_jobs(client: &ClientWrapper, limit: i64, lease_ms: i64) -> Result<Vec<ClaimedJob>, Error> {
    let statement = client
        .prepare_cached(
            "WITH due AS ( \
               SELECT booking_id FROM assign.jobs \
               WHERE state = 'waiting' AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now()) \
               ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE assign.jobs j SET lease_id = gen_random_uuid(), locked_until = now() + $2 * interval '1 millisecond' \
             FROM due WHERE j.booking_id = due.booking_id \
             RETURNING j.booking_id, j.version, j.restaurant_id, j.party_size, lower(j.during) AS start_time, \
                       upper(j.during) AS end_time, j.attempts, j.wakes, j.lease_id, j.trace_context",
        )
        .await?;
    let rows = client.query(&statement, &[&limit, &(lease_ms as f64)]).await?;
    rows.iter().map(claimed_job).collect()
}

/// How many jobs wait, and in how many seconds the earliest of them is due (lease expiry
/// included; negative when overdue; `None` when no job waits), by the database's clock.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn waiting_jobs(client: &ClientWrapper) -> Result<(i64, Option<f64>), Error> {
    // No GREATEST(0, …) around the minimum: GREATEST ignores NULL, which would turn "no
    // job waits" into "one is due now" and make an idle scheduler spin.
    let statement = client
        .prepare_cached(
            "SELECT count(*) AS waiting, \
               extract(epoch FROM min(GREATEST(next_attempt_at, COALESCE(locked_until, next_attempt_at))) \
                                  - clock_timestamp())::float8 AS due_in \
             FROM assign.jobs WHERE state = 'waiting'",
        )
        .await?;
    let row = client.query_one(&statement, &[]).await?;
    Ok((row.try_get("waiting")?, row.try_get("due_in")?))
}

fn job_view(row: &Row) -> Result<JobView, Error> {
    let state: String = row.try_get("state")?;
    Ok(JobView {
        version: row.try_get("version")?,
        state: JobState::parse(&state).ok_or_else(|| Error::Stored(format!("job state '{state}'")))?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
    })
}

/// A booking's job as an update payload (to resend after missed notifications).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn job_payload(client: &ClientWrapper, booking_id: BookingId) -> Result<Option<JobPayload>, Error> {
    let statement = client
        .prepare_cached(
            "SELECT version, state, attempts, (extract(epoch FROM next_attempt_at) * 1000000)::bigint AS next_us, \
                    last_error, attempt_trace_context FROM assign.jobs WHERE booking_id = $1",
        )
        .await?;
    let Some(row) = client.query_opt(&statement, &[&booking_id.uuid()]).await? else { return Ok(None) };
    Ok(Some(JobPayload {
        b: booking_id.uuid(),
        v: row.try_get("version")?,
        s: row.try_get("state")?,
        a: row.try_get("attempts")?,
        n: row.try_get("next_us")?,
        e: row.try_get("last_error")?,
        t: Carrier::from_json(row.try_get("attempt_trace_context")?).into(),
    }))
}

/// Locks and reads a booking's job, if it has one.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn lock_job(tx: &Transaction<'_>, booking_id: BookingId) -> Result<Option<JobView>, Error> {
    let statement = tx
        .prepare_cached(
            "SELECT version, state, attempts, next_attempt_at, last_error FROM assign.jobs WHERE booking_id = $1 \
             FOR UPDATE",
        )
        .await?;
    tx.query_opt(&statement, &[&booking_id.uuid()]).await?.as_ref().map(job_view).transpose()
}

/// Creates or replaces the booking's job with a fresh one for the request, due now, and
/// records its version as the newest seen.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn put_job(
    tx: &Transaction<'_>,
    request: &AssignRequest,
    trace_context: &HashMap<String, String>,
) -> Result<(), Error> {
    let statement = tx
        .prepare_cached(
            "WITH booking AS ( \
               UPDATE assign.bookings SET newest_version = GREATEST(newest_version, $2) WHERE booking_id = $1 \
               RETURNING 1) \
             INSERT INTO assign.jobs AS j (booking_id, version, restaurant_id, party_size, during, state, attempts, \
                                          next_attempt_at, last_error, wakes, lease_id, locked_until, submitted_at, \
                                          finished_at, trace_context, attempt_trace_context) \
             VALUES ($1, $2, $3, $4, tstzrange($5, $6), 'waiting', 0, now(), NULL, 0, NULL, NULL, now(), NULL, $7, '{}') \
             ON CONFLICT (booking_id) DO UPDATE SET version = EXCLUDED.version, restaurant_id = EXCLUDED.restaurant_id, \
               party_size = EXCLUDED.party_size, during = EXCLUDED.during, state = 'waiting', attempts = 0, \
               next_attempt_at = now(), last_error = NULL, lease_id = NULL, locked_until = NULL, \
               submitted_at = now(), finished_at = NULL, trace_context = EXCLUDED.trace_context, \
               attempt_trace_context = '{}'",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &request.booking_id.uuid(),
            &request.version.get(),
            &request.restaurant_id.as_str(),
            &(request.party_size.get() as i32),
            &request.slot.start(),
            &request.slot.end(),
            &Carrier::from(trace_context.clone()).to_json(),
        ],
    )
    .await?;
    Ok(())
}

/// Puts a cancelled job of this version back to waiting, due now, attempts kept.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn reopen_job(tx: &Transaction<'_>, booking_id: BookingId, version: Version) -> Result<(), Error> {
    let statement = tx
        .prepare_cached(
            "UPDATE assign.jobs SET state = 'waiting', next_attempt_at = now(), finished_at = NULL, lease_id = NULL, \
               locked_until = NULL WHERE booking_id = $1 AND version = $2",
        )
        .await?;
    tx.execute(&statement, &[&booking_id.uuid(), &version.get()]).await?;
    Ok(())
}

/// Ends the booking's waiting job (the stream's client stopped caring); its tables stay.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn cancel_job(client: &ClientWrapper, booking_id: BookingId) -> Result<bool, Error> {
    let statement = client
        .prepare_cached(
            "UPDATE assign.jobs SET state = 'cancelled', finished_at = now(), lease_id = NULL, locked_until = NULL \
             WHERE booking_id = $1 AND state = 'waiting'",
        )
        .await?;
    Ok(client.execute(&statement, &[&booking_id.uuid()]).await? > 0)
}
