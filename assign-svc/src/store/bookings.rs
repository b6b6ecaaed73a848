//! The `assign.bookings` table: what assign-svc knows about each booking.
//!
//! One row per booking: the newest version seen, the version released, and the
//! assignment it holds (restaurant, slot, tables). It must never decide anything: the
//! version rules are the domain's.

use super::{
    notify::notify_jobs_from,
    rows::{slot_of, stored, table_ids_of},
};
use crate::{
    domain::{Assignment, BookingId, BookingState, RestaurantId, Version},
    error::Error,
};
use deadpool_postgres::{ClientWrapper, Transaction};
use platform::{db::Prepared, params};
use tokio_postgres::Row;

/// A booking's state from a row of `assign.bookings`.
fn booking_state(booking_id: BookingId, row: &Row) -> Result<BookingState, Error> {
    let held = match row.try_get::<_, Option<i64>>("assigned_version")? {
        None => None,
        Some(version) => Some(Assignment {
            booking_id,
            version: stored("assigned version", Version::parse(version))?,
            table_ids: table_ids_of(row.try_get::<_, Option<Vec<String>>>("table_ids")?.unwrap_or_default())?,
            slot: match (row.try_get("start_time")?, row.try_get("end_time")?) {
                (Some(start), Some(end)) => slot_of(start, end)?,
                _ => return Err(Error::Stored("assignment without a time range".into())),
            },
        }),
    };
    let held_restaurant = match row.try_get::<_, Option<String>>("restaurant_id")? {
        Some(id) => Some(stored("restaurant id", RestaurantId::parse(&id))?),
        None => None,
    };
    Ok(BookingState {
        newest_version: row.try_get("newest_version")?,
        released_version: row.try_get("released_version")?,
        held,
        held_restaurant,
    })
}

/// Locks the booking's row (creating it when new) and reads its state.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn lock_booking(tx: &Transaction<'_>, booking_id: BookingId) -> Result<BookingState, Error> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO assign.bookings AS b (booking_id) VALUES ($1) \
             ON CONFLICT (booking_id) DO UPDATE SET booking_id = EXCLUDED.booking_id \
             RETURNING newest_version, released_version, assigned_version, restaurant_id, table_ids, \
                       lower(during) AS start_time, upper(during) AS end_time",
        )
        .await?;
    let row = tx.query_one(&statement, &[&booking_id.uuid()]).await?;
    booking_state(booking_id, &row)
}

/// The booking's state from the rows of [`start_assignment`].
///
/// [`start_assignment`]: super::locks::start_assignment
pub fn booking_state_of(booking_id: BookingId, rows: &[Row]) -> Result<BookingState, Error> {
    match rows.first() {
        Some(row) => booking_state(booking_id, row),
        None => Err(Error::Stored("starting an assignment returned no booking row".into())),
    }
}

/// Records `version` as the newest seen for the booking and supersedes its older waiting
/// job (notifying the update).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn record_newest_version(
    client: &ClientWrapper,
    booking_id: BookingId,
    version: Version,
) -> Result<Prepared, Error> {
    let statement = client
        .prepare_cached(concat!(
            "WITH booking AS ( \
               UPDATE assign.bookings SET newest_version = GREATEST(newest_version, $2) WHERE booking_id = $1 \
               RETURNING 1), \
             superseded AS ( \
               UPDATE assign.jobs SET state = 'superseded', finished_at = now(), lease_id = NULL, locked_until = NULL \
               WHERE booking_id = $1 AND state = 'waiting' AND version < $2 \
               RETURNING booking_id, version, state, attempts, next_attempt_at, last_error, attempt_trace_context) ",
            notify_jobs_from!("superseded")
        ))
        .await?;
    Ok(Prepared::new(statement, params![booking_id.uuid(), version.get()]))
}

/// Releases a booking: drops its reservations and assignment, records the newest version
/// seen as released, and ends its job. Returns the tables freed and where they were.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn release(tx: &Transaction<'_>, booking_id: BookingId) -> Result<u64, Error> {
    let statement = tx
        .prepare_cached(
            "WITH freed AS (DELETE FROM assign.reservations WHERE booking_id = $1 RETURNING 1), \
             booking AS ( \
               UPDATE assign.bookings SET released_version = newest_version, assigned_version = NULL, \
                 restaurant_id = NULL, party_size = NULL, during = NULL, table_ids = NULL, assigned_at = NULL \
               WHERE booking_id = $1 RETURNING 1), \
             job AS ( \
               UPDATE assign.jobs SET state = 'released', finished_at = now(), lease_id = NULL, locked_until = NULL \
               WHERE booking_id = $1 AND state = 'waiting' RETURNING 1) \
             SELECT (SELECT count(*) FROM freed) AS freed",
        )
        .await?;
    let row = tx.query_one(&statement, &[&booking_id.uuid()]).await?;
    Ok(row.try_get::<_, i64>("freed")?.max(0) as u64)
}

/// The assignment a booking holds, if any.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn assignment_of(client: &ClientWrapper, booking_id: BookingId) -> Result<Option<Assignment>, Error> {
    let statement = client
        .prepare_cached(
            "SELECT newest_version, released_version, assigned_version, restaurant_id, table_ids, \
                    lower(during) AS start_time, \
                    upper(during) AS end_time FROM assign.bookings WHERE booking_id = $1",
        )
        .await?;
    match client.query_opt(&statement, &[&booking_id.uuid()]).await? {
        Some(row) => Ok(booking_state(booking_id, &row)?.held),
        None => Ok(None),
    }
}
