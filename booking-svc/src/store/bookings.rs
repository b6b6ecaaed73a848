//! The bookings table: each booking's current version and its hand-off.
//!
//! A hand-off (`handoff_due_at`) marks a version still owned by the request that wrote it;
//! [`super::jobs`] turns it into a reassign job when the request records a PENDING result
//! or dies before recording.

use super::{Carrier, Result, changes, detail_json, duration_s, history, outbox, restaurants::queued_payload, secs};
use crate::domain::{
    Booking, BookingStatus, EmailKind, Event,
    changes::Change,
    emails::EmailPayload,
    guest::{GuestEmail, GuestName, Notes, Phone},
    paging::ListQuery,
    values::{BookingDuration, BookingId, PartySize, RestaurantId, StartTime, Version},
};
use crate::error::Error;
use deadpool_postgres::GenericClient;
use platform::{db::Prepared, params};
use std::time::{Duration, SystemTime};
use tokio_postgres::Row;
use uuid::Uuid;

macro_rules! booking_columns {
    () => {
        "id, restaurant_id, guest_name, guest_email, guest_phone, party_size, start_time, duration_s, notes, \
         status, version, table_ids, created_at, updated_at"
    };
}

fn booking_from_row(row: &Row) -> Result<Booking> {
    let status: String = row.try_get(9)?;
    let duration_s: i32 = row.try_get(7)?;
    let duration = Duration::from_secs(u64::try_from(duration_s).map_err(|_| Error::corrupt("negative duration"))?);
    Ok(Booking {
        id: BookingId::from_uuid(row.try_get(0)?),
        restaurant_id: RestaurantId::from_stored(row.try_get(1)?),
        guest_name: GuestName::from_stored(row.try_get(2)?),
        guest_email: GuestEmail::from_stored(row.try_get(3)?),
        guest_phone: Phone::from_stored(row.try_get(4)?),
        party_size: PartySize::from_stored(row.try_get(5)?),
        start_time: StartTime::from_stored(row.try_get(6)?),
        duration: BookingDuration::from_stored(duration),
        notes: Notes::from_stored(row.try_get(8)?),
        status: BookingStatus::from_stored(&status).ok_or_else(|| Error::corrupt("unknown booking status"))?,
        version: Version::from_stored(row.try_get(10)?),
        table_ids: row.try_get(11)?,
        created_at: row.try_get(12)?,
        updated_at: row.try_get(13)?,
    })
}

/// The booking, locked `FOR UPDATE` until the transaction ends.
pub async fn lock(db: &impl GenericClient, id: Uuid) -> Result<Option<Booking>> {
    let stmt = db
        .prepare_cached(concat!("SELECT ", booking_columns!(), " FROM booking.bookings WHERE id = $1 FOR UPDATE"))
        .await?;
    db.query_opt(&stmt, &[&id]).await?.as_ref().map(booking_from_row).transpose()
}

/// The booking as stored now.
pub async fn get(db: &impl GenericClient, id: Uuid) -> Result<Option<Booking>> {
    let stmt =
        db.prepare_cached(concat!("SELECT ", booking_columns!(), " FROM booking.bookings WHERE id = $1")).await?;
    db.query_opt(&stmt, &[&id]).await?.as_ref().map(booking_from_row).transpose()
}

/// Inserts a new booking (its version requested at `updated_at`), handed off to the
/// background after `due_in` unless its request records the inline result first.
pub async fn insert(
    db: &impl GenericClient,
    b: &Booking,
    due_in: Duration,
    suppress_emails: bool,
    carrier: &Carrier,
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(concat!(
            "INSERT INTO booking.bookings (",
            booking_columns!(),
            ", version_at, handoff_due_at, handoff_suppress, handoff_trace) VALUES ($1, $2::text, $3, $4, $5, $6::int4, \
             $7, $8::int4, $9::text, $10::text, $11::int8, $12, $13, $14, $14, now() + $15::float8 * interval '1 second', $16, $17)"
        ))
        .await?;
    Ok(Prepared::new(
        stmt,
        params![
            b.id.uuid(),
            b.restaurant_id.as_str().to_string(),
            b.guest_name.as_str().to_string(),
            b.guest_email.as_str().to_string(),
            b.guest_phone.as_str().to_string(),
            b.party_size.get(),
            b.start_time.get(),
            duration_s(b.duration.get())?,
            b.notes.as_str().to_string(),
            b.status.as_str(),
            b.version.get(),
            b.table_ids.clone(),
            b.created_at,
            b.updated_at,
            secs(due_in),
            suppress_emails,
            carrier.to_json(),
        ],
    ))
}

/// Applies an edit in one statement, atomic on its own, if the booking is still at
/// `read_version` and not cancelled (always so when the row is locked; otherwise a
/// concurrent change is seen, the statement re-checking the row once it gets it): stores
/// the new version `b` (requested at `updated_at`), handed off to the background after
/// `due_in` unless its request records the inline result first, keeps the arrival time
/// and party size it replaces for the modification emails, closes the booking's open
/// jobs of older versions as superseded, appends `events` (at least one) to the history,
/// in order, and records `change` for the feed. Returns one row: 1 when it applied, 0
/// when not ([`written`]).
#[allow(clippy::too_many_arguments)]
pub async fn apply_edit(
    db: &impl GenericClient,
    read_version: i64,
    b: &Booking,
    due_in: Duration,
    suppress_emails: bool,
    carrier: &Carrier,
    events: &[Event],
    change: &Change,
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(concat!(
            "WITH updated AS ( \
               UPDATE booking.bookings SET previous_start_time = start_time, previous_party_size = party_size, \
                 party_size = $2::int4, start_time = $3, duration_s = $4::int4, notes = $5::text, \
                 status = $6::text, version = $7::int8, table_ids = $8, updated_at = $9, version_at = $9, \
                 handoff_due_at = now() + $10::float8 * interval '1 second', handoff_suppress = $11, handoff_trace = $12 \
               WHERE id = $1 AND version = $17::int8 AND status <> 'CANCELLED' \
               RETURNING id, ",
            changes::state_columns!(),
            "), \
             superseded AS ( \
               UPDATE booking.reassign_jobs j SET state = 'SUPERSEDED', closed_at = now(), lease_owner = NULL, lease_until = NULL \
               FROM updated WHERE j.booking_id = updated.id AND j.state = 'OPEN' AND j.version < $7), \
             events AS ( \
               INSERT INTO booking.history (booking_id, type, version, detail, later) \
               SELECT id, $13, $14, $15, $16 FROM updated), \
             changed AS (",
            changes::record_from!("updated", "$18", "$19", "$20"),
            ") SELECT count(*) FROM updated",
        ))
        .await?;
    let (kind, version, detail, later) = history::row(events)?;
    Ok(Prepared::new(
        stmt,
        params![
            b.id.uuid(),
            b.party_size.get(),
            b.start_time.get(),
            duration_s(b.duration.get())?,
            b.notes.as_str().to_string(),
            b.status.as_str(),
            b.version.get(),
            b.table_ids.clone(),
            b.updated_at,
            secs(due_in),
            suppress_emails,
            carrier.to_json(),
            kind,
            version,
            detail,
            later,
            read_version,
            change.kind.as_str(),
            changes::fields_json(change)?,
            change.actor.clone(),
        ],
    ))
}

/// Records an inline confirmation in one statement (atomic on its own), if the booking is
/// still PENDING at `version` and still handed to its request (the background has not
/// taken it over: `handoff_due_at` set, so the version has no job); otherwise nothing
/// changes. Every condition is on the booking's row, which the update locks: a concurrent
/// edit, cancel or takeover that commits first is seen, the statement re-checking the row
/// once it gets it. Status CONFIRMED with `table_ids`, the hand-off cleared, `events`
/// appended to the history and, with `email`, the email queued unless queued before (its
/// EMAIL_QUEUED event then follows `events`), and `change` recorded for the feed. Returns
/// one row: 1 when it confirmed, 0 when not ([`written`]).
#[allow(clippy::too_many_arguments)]
pub async fn confirm_inline(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    table_ids: &[String],
    now: SystemTime,
    events: &[Event],
    email: Option<(EmailKind, &EmailPayload, &Event)>,
    carrier: &Carrier,
    change: &Change,
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(concat!(
            "WITH confirmed AS ( \
               UPDATE booking.bookings SET status = 'CONFIRMED', table_ids = $3, updated_at = $4, handoff_due_at = NULL \
               WHERE id = $1 AND version = $2::int8 AND status = 'PENDING' AND handoff_due_at IS NOT NULL \
               RETURNING id, ",
            changes::state_columns!(),
            "), \
             queued AS ( \
               INSERT INTO booking.outbox (booking_id, version, kind, payload, trace_context) \
               SELECT id, version, $8::text, ",
            queued_payload!("$9", "$1"),
            ", $10::jsonb FROM confirmed WHERE $8::text IS NOT NULL \
               ON CONFLICT (booking_id, kind, version) DO NOTHING RETURNING booking_id), \
             events AS ( \
               INSERT INTO booking.history (booking_id, type, version, detail, later) \
               SELECT $1, $5::text, $6::int8, $7::jsonb, $13::jsonb || COALESCE( \
                 (SELECT jsonb_agg(jsonb_build_object('type', $11::text, 'version', $2::bigint, 'detail', $12::jsonb)) \
                  FROM queued), '[]') \
               FROM confirmed), \
             changed AS (",
            changes::record_from!("confirmed", "$14", "$15", "''"),
            ") SELECT count(*) FROM confirmed",
        ))
        .await?;
    let (first_kind, first_version, first_detail, later) = history::row(events)?;
    let (kind, payload, queued_type, queued_detail) = match email {
        Some((kind, payload, event)) => (
            Some(kind.as_str()),
            Some(outbox::payload_json(payload)?),
            Some(event.kind().as_str()),
            Some(detail_json(event)?),
        ),
        None => (None, None, None, None),
    };
    Ok(Prepared::new(
        stmt,
        params![
            booking_id,
            version,
            table_ids.to_vec(),
            now,
            first_kind,
            first_version,
            first_detail,
            kind,
            payload,
            carrier.to_json(),
            queued_type,
            queued_detail,
            later,
            change.kind.as_str(),
            changes::fields_json(change)?,
        ],
    ))
}

/// Whether a guarded write ([`apply_edit`], [`confirm_inline`]) was made, from its rows
/// (one row, the count of the booking rows it wrote).
pub fn written(rows: &[Row]) -> Result<bool> {
    match rows.first() {
        Some(row) => Ok(row.try_get::<_, i64>(0)? == 1),
        None => Ok(false),
    }
}

/// Sets status and tables of the current version (confirm or cancel), which ends its
/// hand-off; returns the booking as stored and the time its version was requested.
pub async fn set_status(
    db: &impl GenericClient,
    id: Uuid,
    status: BookingStatus,
    table_ids: &[String],
    now: SystemTime,
) -> Result<(Booking, SystemTime)> {
    let stmt = db
        .prepare_cached(concat!(
            "UPDATE booking.bookings SET status = $2::text, table_ids = $3, updated_at = $4, handoff_due_at = NULL \
             WHERE id = $1 RETURNING ",
            booking_columns!(),
            ", version_at"
        ))
        .await?;
    let row = db.query_one(&stmt, &[&id, &status.as_str(), &table_ids, &now]).await?;
    Ok((booking_from_row(&row)?, row.try_get(14)?))
}

/// Sets status and tables of the current version (statement form of [`set_status`]).
pub async fn set_status_statement(
    db: &impl GenericClient,
    id: Uuid,
    status: BookingStatus,
    table_ids: &[String],
    now: SystemTime,
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.bookings SET status = $2::text, table_ids = $3, updated_at = $4, handoff_due_at = NULL \
             WHERE id = $1",
        )
        .await?;
    Ok(Prepared::new(stmt, params![id, status.as_str(), table_ids.to_vec(), now]))
}

/// One page of a restaurant's bookings (one more than the page size, to know if more follow).
pub async fn list(db: &impl GenericClient, q: &ListQuery) -> Result<Vec<Booking>> {
    let stmt = db
        .prepare_cached(concat!(
            "SELECT ",
            booking_columns!(),
            " FROM booking.bookings WHERE restaurant_id = $1::text \
             AND ($2::timestamptz IS NULL OR start_time >= $2) \
             AND ($3::timestamptz IS NULL OR start_time < $3) \
             AND ($4::text IS NULL OR status = $4) \
             AND ($5::timestamptz IS NULL OR (start_time, id) > ($5, $6::uuid)) \
             ORDER BY start_time, id LIMIT $7"
        ))
        .await?;
    let status = q.status.map(|s| s.as_str());
    let (after_time, after_id) = match q.after {
        Some((t, id)) => (Some(t), Some(id)),
        None => (None, None),
    };
    let rows = db
        .query(&stmt, &[&q.restaurant_id.as_str(), &q.from, &q.to, &status, &after_time, &after_id, &(q.page_size + 1)])
        .await?;
    rows.iter().map(booking_from_row).collect()
}
