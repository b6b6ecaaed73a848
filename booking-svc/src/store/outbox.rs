//! The outbox table: the emails to send, one per (booking, kind, version).
//!
//! A leased queue ([`platform::queue`]): the outbox worker claims emails with a lease and
//! ends them with their history events. The claim also reads the booking's current
//! version and status; the end of a batch is this queue's own statement, since it appends
//! the history events of the whole batch with it. A payload is completed with the
//! restaurant's profile by the statement that queues it.

use super::{Carrier, Result, detail_json, restaurants::queued_payload};
use crate::domain::{BookingStatus, EmailKind, Event, emails::EmailPayload};
use crate::error::Error;
use deadpool_postgres::GenericClient;
use platform::{
    db::Prepared,
    params,
    queue::{LeasedQueue, QueueTable},
};
use serde_json::Value;
use std::{sync::LazyLock, time::Duration};
use uuid::Uuid;

/// Channel woken when an email becomes due.
pub const CHANNEL: &str = "booking_outbox";

/// The queue's statements; a claim returns the email and its booking's version and status.
static QUEUE: LazyLock<LeasedQueue> = LazyLock::new(|| {
    LeasedQueue::new(QueueTable {
        table: "booking.outbox",
        key: &["id"],
        state: "state",
        open: "QUEUED",
        due: "due_at",
        returning: "q.id, q.booking_id, q.version, q.kind, q.payload, q.attempts, q.trace_context, b.version, b.status",
        join: Some(("booking.bookings b", "b.id = q.booking_id")),
    })
});

/// The stored form of an email's payload.
pub(super) fn payload_json(payload: &EmailPayload) -> Result<Value> {
    serde_json::to_value(payload).map_err(|e| Error::corrupt(format!("email payload: {e}")))
}

/// Queues one email unless its (booking, kind, version) is already queued, its payload
/// completed as [`queued_payload!`] says; returns whether it was new.
pub async fn enqueue(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    kind: EmailKind,
    payload: &EmailPayload,
    carrier: &Carrier,
) -> Result<bool> {
    let stmt = db
        .prepare_cached(concat!(
            "INSERT INTO booking.outbox (booking_id, version, kind, payload, trace_context) VALUES ($1, $2, $3, ",
            queued_payload!("$4", "$1"),
            ", $5) ON CONFLICT (booking_id, kind, version) DO NOTHING",
        ))
        .await?;
    let payload = payload_json(payload)?;
    Ok(db.execute(&stmt, &[&booking_id, &version, &kind.as_str(), &payload, &carrier.to_json()]).await? == 1)
}

/// Queues one email unless its (booking, kind, version) is already queued, and when it
/// was new appends `event` (the EMAIL_QUEUED event) to the history, in one statement.
pub async fn enqueue_statement(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    kind: EmailKind,
    payload: &EmailPayload,
    carrier: &Carrier,
    event: &Event,
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(concat!(
            "WITH queued AS ( \
               INSERT INTO booking.outbox (booking_id, version, kind, payload, trace_context) VALUES ($1, $2, $3, ",
            queued_payload!("$4", "$1"),
            ", $5) ON CONFLICT (booking_id, kind, version) DO NOTHING RETURNING booking_id) \
             INSERT INTO booking.history (booking_id, type, version, detail) SELECT booking_id, $6, $7, $8 FROM queued",
        ))
        .await?;
    let payload = payload_json(payload)?;
    Ok(Prepared::new(
        stmt,
        params![
            booking_id,
            version,
            kind.as_str(),
            payload,
            carrier.to_json(),
            event.kind().as_str(),
            event.version,
            detail_json(event)?
        ],
    ))
}

/// An email claimed for dispatch, with the booking's state at claim time.
pub struct ClaimedEmail {
    pub id: i64,
    pub booking_id: Uuid,
    pub version: i64,
    pub kind: EmailKind,
    pub payload: EmailPayload,
    pub attempts: i32,
    pub carrier: Carrier,
    pub current_version: i64,
    pub current_status: BookingStatus,
}

/// Claims up to `limit` due emails for `lease` (`SKIP LOCKED`: replicas share the work).
pub async fn claim(db: &impl GenericClient, limit: i64, lease: Duration) -> Result<Vec<ClaimedEmail>> {
    let rows = QUEUE.claim(db, limit, lease).await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get(3)?;
            let status: String = r.try_get(8)?;
            Ok(ClaimedEmail {
                id: r.try_get(0)?,
                booking_id: r.try_get(1)?,
                version: r.try_get(2)?,
                kind: EmailKind::from_stored(&kind).ok_or_else(|| Error::corrupt("unknown email kind"))?,
                payload: serde_json::from_value(r.try_get(4)?)
                    .map_err(|e| Error::corrupt(format!("email payload: {e}")))?,
                attempts: r.try_get(5)?,
                carrier: Carrier::from_json(r.try_get(6)?),
                current_version: r.try_get(7)?,
                current_status: BookingStatus::from_stored(&status)
                    .ok_or_else(|| Error::corrupt("unknown booking status"))?,
            })
        })
        .collect()
}

/// A dispatched email's end: its final state and the history event that says so.
pub struct FinishedEmail {
    pub id: i64,
    pub booking_id: Uuid,
    pub state: &'static str,
    pub error: Option<String>,
    pub event: Event,
}

/// Ends the lives of dispatched emails in one statement: each row still queued gets its
/// final state (`DONE`, `DROPPED` or `FAILED`) and its event is appended to its booking's
/// history; rows no longer queued are left alone, without an event.
pub async fn finish(db: &impl GenericClient, finished: &[FinishedEmail]) -> Result<()> {
    if finished.is_empty() {
        return Ok(());
    }
    let stmt = db
        .prepare_cached(
            "WITH input AS ( \
               SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::jsonb[]) \
               WITH ORDINALITY AS i(id, booking_id, state, error, type, version, detail, n)), \
             done AS ( \
               UPDATE booking.outbox o SET state = input.state, finished_at = now(), locked_until = NULL, \
                 last_error = COALESCE(input.error, o.last_error) \
               FROM input WHERE o.id = input.id AND o.state = 'QUEUED' RETURNING o.id) \
             INSERT INTO booking.history (booking_id, type, version, detail) \
             SELECT input.booking_id, input.type, input.version, input.detail FROM input JOIN done USING (id) ORDER BY input.n",
        )
        .await?;
    let ids: Vec<i64> = finished.iter().map(|f| f.id).collect();
    let bookings: Vec<Uuid> = finished.iter().map(|f| f.booking_id).collect();
    let states: Vec<&str> = finished.iter().map(|f| f.state).collect();
    let errors: Vec<Option<&str>> = finished.iter().map(|f| f.error.as_deref()).collect();
    let types: Vec<&str> = finished.iter().map(|f| f.event.kind().as_str()).collect();
    let versions: Vec<i64> = finished.iter().map(|f| f.event.version).collect();
    let details: Vec<Value> = finished.iter().map(|f| detail_json(&f.event)).collect::<Result<_>>()?;
    db.execute(&stmt, &[&ids, &bookings, &states, &errors, &types, &versions, &details]).await?;
    Ok(())
}

/// Puts an email back for another try after `delay`.
pub async fn retry(db: &impl GenericClient, id: i64, delay: Duration, error: &str) -> Result<()> {
    QUEUE.retry(db, &[&id], delay, error).await?;
    Ok(())
}

/// How long until a queued email can be claimed (`None`: nothing queued).
pub async fn next_due(db: &impl GenericClient) -> Result<Option<Duration>> {
    Ok(QUEUE.next_due(db).await?)
}

/// Queued emails and the age of the oldest, in seconds.
pub async fn depth(db: &impl GenericClient) -> Result<(i64, f64)> {
    let stmt = db
        .prepare_cached(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) \
             FROM booking.outbox WHERE state = 'QUEUED'",
        )
        .await?;
    let row = db.query_one(&stmt, &[]).await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}
