//! The reassign jobs table: one job per booking version waiting for tables.
//!
//! A job is leased to the process that submits it on its Reassign stream. It is born from
//! a version's hand-off (in the booking row): when the request records that the booking
//! stays PENDING, or when the request died and the dispatcher adopts it.

use super::{Carrier, Result, due_in, secs};
use crate::domain::reassign::JobState;
use deadpool_postgres::GenericClient;
use platform::{db::Prepared, params};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Channel woken when a reassign job becomes due.
pub const CHANNEL: &str = "booking_reassign";

/// The request of `version` records that the booking stays PENDING: if the version is
/// still handed to it, the hand-off ends and the version's job is written, recorded and
/// due at once (with the hand-off's email and trace settings). Returns whether it was
/// (`false`: the background took the version over, or it is not current). Call with the
/// booking row locked.
pub async fn from_handoff(db: &impl GenericClient, booking_id: Uuid, version: i64) -> Result<bool> {
    let stmt = db
        .prepare_cached(
            "WITH ended AS ( \
               UPDATE booking.bookings SET handoff_due_at = NULL \
               WHERE id = $1 AND version = $2::int8 AND handoff_due_at IS NOT NULL \
               RETURNING id, version, handoff_suppress, handoff_trace) \
             INSERT INTO booking.reassign_jobs (booking_id, version, state, due_at, recorded, suppress_emails, trace_context) \
             SELECT id, version, 'OPEN', now(), true, handoff_suppress, handoff_trace FROM ended",
        )
        .await?;
    Ok(db.execute(&stmt, &[&booking_id, &version]).await? == 1)
}

/// Takes over up to `limit` hand-offs that came due (their requests died or stalled before
/// recording the inline result): each ends, and its version gets an open job, due at once
/// and not yet recorded, which the dispatcher then claims and recovers. `SKIP LOCKED`:
/// replicas, and requests recording right now, are not waited for. Returns how many.
pub async fn adopt_handoffs(db: &impl GenericClient, limit: i64) -> Result<u64> {
    let stmt = db
        .prepare_cached(
            "WITH due AS ( \
               SELECT id FROM booking.bookings WHERE handoff_due_at <= now() \
               ORDER BY handoff_due_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
             ended AS ( \
               UPDATE booking.bookings b SET handoff_due_at = NULL FROM due WHERE b.id = due.id \
               RETURNING b.id, b.version, b.handoff_suppress, b.handoff_trace) \
             INSERT INTO booking.reassign_jobs (booking_id, version, state, due_at, recorded, suppress_emails, trace_context) \
             SELECT id, version, 'OPEN', now(), false, handoff_suppress, handoff_trace FROM ended \
             ON CONFLICT (booking_id, version) DO NOTHING",
        )
        .await?;
    Ok(db.execute(&stmt, &[&limit]).await?)
}

/// Closes every open job of a booking; returns how many.
pub async fn close_open(db: &impl GenericClient, booking_id: Uuid, state: JobState) -> Result<u64> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET state = $2::text, closed_at = now(), lease_owner = NULL, lease_until = NULL \
             WHERE booking_id = $1 AND state = 'OPEN'",
        )
        .await?;
    Ok(db.execute(&stmt, &[&booking_id, &state.as_str()]).await?)
}

/// A job as the flow needs it.
pub struct Job {
    pub open: bool,
    pub recorded: bool,
    pub suppress_emails: bool,
    pub attempts: i32,
}

/// The job of one booking version (call with the booking row locked).
pub async fn get(db: &impl GenericClient, booking_id: Uuid, version: i64) -> Result<Option<Job>> {
    let stmt = db
        .prepare_cached(
            "SELECT state, recorded, suppress_emails, attempts FROM booking.reassign_jobs \
             WHERE booking_id = $1 AND version = $2",
        )
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&booking_id, &version]).await? else { return Ok(None) };
    let state: String = row.try_get(0)?;
    Ok(Some(Job {
        open: state == JobState::Open.as_str(),
        recorded: row.try_get(1)?,
        suppress_emails: row.try_get(2)?,
        attempts: row.try_get(3)?,
    }))
}

/// Closes the job of one version if it is open (statement form of [`close`]).
pub async fn close_statement(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    state: JobState,
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET state = $3::text, closed_at = now(), lease_owner = NULL, lease_until = NULL \
             WHERE booking_id = $1 AND version = $2 AND state = 'OPEN'",
        )
        .await?;
    Ok(Prepared::new(stmt, params![booking_id, version, state.as_str()]))
}

/// Closes the job of one version if it is open; returns whether it was.
pub async fn close(db: &impl GenericClient, booking_id: Uuid, version: i64, state: JobState) -> Result<bool> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET state = $3::text, closed_at = now(), lease_owner = NULL, lease_until = NULL \
             WHERE booking_id = $1 AND version = $2 AND state = 'OPEN'",
        )
        .await?;
    Ok(db.execute(&stmt, &[&booking_id, &version, &state.as_str()]).await? == 1)
}

/// Marks the job's inline result as recorded and, when `due_now`, makes it due at once;
/// returns whether it was recorded before (`None`: no open job). Call with the booking
/// row locked.
pub async fn mark_recorded(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    due_now: bool,
) -> Result<Option<bool>> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs j SET recorded = true, \
             due_at = CASE WHEN $3 THEN LEAST(j.due_at, now()) ELSE j.due_at END \
             FROM booking.reassign_jobs old \
             WHERE j.booking_id = $1 AND j.version = $2 AND j.state = 'OPEN' \
               AND old.booking_id = j.booking_id AND old.version = j.version \
             RETURNING old.recorded",
        )
        .await?;
    Ok(db.query_opt(&stmt, &[&booking_id, &version, &due_now]).await?.map(|r| r.try_get(0)).transpose()?)
}

/// Records a background attempt on the job.
pub async fn record_attempt(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    attempts: i32,
    next_attempt_at: Option<SystemTime>,
    last_error: &str,
) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET attempts = GREATEST(attempts, $3), next_attempt_at = $4, last_error = $5 \
             WHERE booking_id = $1 AND version = $2",
        )
        .await?;
    db.execute(&stmt, &[&booking_id, &version, &attempts, &next_attempt_at, &last_error]).await?;
    Ok(())
}

/// A job claimed by this process, with what a submit needs.
pub struct ClaimedJob {
    pub booking_id: Uuid,
    pub version: i64,
    pub recorded: bool,
    pub attempts: i32,
    pub created_at: SystemTime,
    pub carrier: Carrier,
    pub restaurant_id: String,
    pub party_size: i32,
    pub start_time: SystemTime,
    pub duration: Duration,
}

/// Claims up to `limit` due open jobs nobody holds (or whose lease ran out) for `owner`
/// for `lease`; `SKIP LOCKED` lets replicas claim side by side.
pub async fn claim(db: &impl GenericClient, owner: Uuid, limit: i64, lease: Duration) -> Result<Vec<ClaimedJob>> {
    let stmt = db
        .prepare_cached(
            "WITH due AS ( \
               SELECT booking_id, version FROM booking.reassign_jobs \
               WHERE state = 'OPEN' AND due_at <= now() AND (lease_until IS NULL OR lease_until <= now()) \
               ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE booking.reassign_jobs j SET lease_owner = $1, lease_until = now() + $3::float8 * interval '1 second' \
             FROM due, booking.bookings b \
             WHERE j.booking_id = due.booking_id AND j.version = due.version AND b.id = j.booking_id \
             RETURNING j.booking_id, j.version, j.recorded, j.attempts, j.created_at, j.trace_context, \
               b.restaurant_id, b.party_size, b.start_time, b.duration_s",
        )
        .await?;
    let rows = db.query(&stmt, &[&owner, &limit, &secs(lease)]).await?;
    rows.iter()
        .map(|r| {
            let duration_s: i32 = r.try_get(9)?;
            Ok(ClaimedJob {
                booking_id: r.try_get(0)?,
                version: r.try_get(1)?,
                recorded: r.try_get(2)?,
                attempts: r.try_get(3)?,
                created_at: r.try_get(4)?,
                carrier: Carrier::from_json(r.try_get(5)?),
                restaurant_id: r.try_get(6)?,
                party_size: r.try_get(7)?,
                start_time: r.try_get(8)?,
                duration: Duration::from_secs(u64::try_from(duration_s).unwrap_or(0)),
            })
        })
        .collect()
}

/// Extends every open job leased by `owner`; returns the jobs still held.
pub async fn renew(db: &impl GenericClient, owner: Uuid, lease: Duration) -> Result<Vec<(Uuid, i64)>> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET lease_until = now() + $2::float8 * interval '1 second' \
             WHERE lease_owner = $1 AND state = 'OPEN' RETURNING booking_id, version",
        )
        .await?;
    let rows = db.query(&stmt, &[&owner, &secs(lease)]).await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// Gives up every lease of `owner` (on shutdown), so another replica takes the jobs at once.
pub async fn drop_leases(db: &impl GenericClient, owner: Uuid) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 AND state = 'OPEN'",
        )
        .await?;
    db.execute(&stmt, &[&owner]).await?;
    Ok(())
}

/// How long until an open job not held by `owner` can be claimed, or a hand-off comes due
/// (`None`: neither waits).
pub async fn next_due(db: &impl GenericClient, owner: Uuid) -> Result<Option<Duration>> {
    let stmt = db
        .prepare_cached(
            "SELECT EXTRACT(EPOCH FROM LEAST( \
               (SELECT min(GREATEST(due_at, COALESCE(lease_until, due_at))) FROM booking.reassign_jobs \
                WHERE state = 'OPEN' AND lease_owner IS DISTINCT FROM $1), \
               (SELECT min(handoff_due_at) FROM booking.bookings WHERE handoff_due_at IS NOT NULL)) - now())::float8",
        )
        .await?;
    let seconds: Option<f64> = db.query_one(&stmt, &[&owner]).await?.try_get(0)?;
    Ok(due_in(seconds))
}

/// Open jobs (waiting for tables), and how long ago the oldest was opened in seconds (0
/// when none is open).
pub async fn count_open(db: &impl GenericClient) -> Result<(i64, f64)> {
    let stmt = db
        .prepare_cached(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) \
             FROM booking.reassign_jobs WHERE state = 'OPEN'",
        )
        .await?;
    let row = db.query_one(&stmt, &[]).await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}
