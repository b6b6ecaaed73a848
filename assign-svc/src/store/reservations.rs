//! The `assign.reservations` table: which tables a booking holds, over which time range.
//!
//! An exclusion constraint (`EXCLUDE (table_id WITH =, during WITH &&)`) makes two
//! overlapping reservations of one table impossible; a conflicting insert fails with
//! 23P01 and the caller retries. It must never choose the tables: best fit is the
//! domain's.

use super::{
    notify::notify_jobs_from,
    rows::{stored, table_ids_of},
};
use crate::{
    domain::{
        AssignRequest, BookingId, CombineGroup, LiveAssignment, PartySize, RestaurantId, Seats, Slot, TableId,
        TableState,
    },
    error::Error,
};
use deadpool_postgres::{ClientWrapper, Transaction};
use platform::{db::Prepared, params};
use tokio_postgres::Row;

/// The tables of a restaurant's plan, each with whether another booking holds it during
/// the request's slot (read them with [`tables_of`]). None when the restaurant has no plan.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn tables_for(client: &ClientWrapper, request: &AssignRequest) -> Result<Prepared, Error> {
    let statement = client
        .prepare_cached(
            "SELECT t.table_id, t.seats, t.combine_group, (busy.table_id IS NOT NULL) AS busy \
             FROM assign.tables t \
             LEFT JOIN (SELECT DISTINCT r.table_id FROM assign.reservations r \
                        WHERE r.restaurant_id = $1 AND r.during && tstzrange($3, $4) AND r.booking_id <> $2) busy \
               ON busy.table_id = t.table_id \
             WHERE t.restaurant_id = $1",
        )
        .await?;
    Ok(Prepared::new(
        statement,
        params![
            request.restaurant_id.as_str().to_string(),
            request.booking_id.uuid(),
            request.slot.start(),
            request.slot.end()
        ],
    ))
}

/// The tables from the rows of [`tables_for`].
pub fn tables_of(rows: &[Row]) -> Result<Vec<TableState>, Error> {
    rows.iter()
        .map(|row| {
            Ok(TableState {
                id: stored("table id", TableId::parse(row.try_get("table_id")?))?,
                seats: stored("seats", Seats::parse(row.try_get("seats")?))?,
                group: stored("combine group", CombineGroup::parse(row.try_get("combine_group")?))?,
                free: !row.try_get::<_, bool>("busy")?,
            })
        })
        .collect()
}

/// Reserves `table_ids` for the request and records them as the booking's assignment,
/// finishes its waiting jobs of this version (`assigned`, counting the attempt when
/// `by_job`) and of older versions (`superseded`), and notifies their updates. With
/// `replaces` (where the booking's previous tables were: restaurant and slot), first
/// deletes those reservations, in the same statement, and answers (see
/// [`freed_capacity_wanted`]) whether jobs wait for capacity there. Fails with an
/// exclusion violation (23P01) when another transaction holds one of the tables.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn record_assignment(
    client: &ClientWrapper,
    request: &AssignRequest,
    table_ids: &[TableId],
    by_job: bool,
    replaces: Option<(&RestaurantId, Slot)>,
) -> Result<Prepared, Error> {
    // The old reservations are deleted before any new one is inserted (the insert waits
    // for the count of deleted rows), so a new table overlapping the booking's own old
    // one is no conflict.
    let statement = client
        .prepare_cached(concat!(
            "WITH freed AS ( \
               DELETE FROM assign.reservations WHERE booking_id = $1 AND $9::text IS NOT NULL RETURNING 1), \
             reserved AS ( \
               INSERT INTO assign.reservations (restaurant_id, table_id, booking_id, version, during) \
               SELECT $3, t, $1, $2, tstzrange($5, $6) FROM unnest($7::text[]) AS t \
               WHERE (SELECT count(*) FROM freed) >= 0 RETURNING 1), \
             booking AS ( \
               UPDATE assign.bookings SET newest_version = GREATEST(newest_version, $2), assigned_version = $2, \
                 restaurant_id = $3, party_size = $4, during = tstzrange($5, $6), table_ids = $7, assigned_at = now() \
               WHERE booking_id = $1 RETURNING 1), \
             finished AS ( \
               UPDATE assign.jobs SET state = CASE WHEN version = $2 THEN 'assigned' ELSE 'superseded' END, \
                 attempts = attempts + CASE WHEN $8 AND version = $2 THEN 1 ELSE 0 END, \
                 last_error = CASE WHEN version = $2 THEN NULL ELSE last_error END, \
                 finished_at = now(), lease_id = NULL, locked_until = NULL \
               WHERE booking_id = $1 AND state = 'waiting' AND version <= $2 \
               RETURNING booking_id, version, state, attempts, next_attempt_at, last_error, attempt_trace_context), \
             notified AS (",
            notify_jobs_from!("finished"),
            ") \
             SELECT (SELECT count(*) FROM notified) AS notified, (SELECT count(*) FROM reserved) AS reserved, \
               EXISTS (SELECT 1 FROM assign.jobs WHERE $9::text IS NOT NULL AND restaurant_id = $9 \
                         AND state = 'waiting' AND booking_id <> $1 AND during && tstzrange($10, $11)) AS wanted"
        ))
        .await?;
    let ids: Vec<String> = table_ids.iter().map(|id| id.as_str().to_string()).collect();
    let (old_restaurant, old_start, old_end) = match replaces {
        Some((restaurant, slot)) => (Some(restaurant.as_str().to_string()), Some(slot.start()), Some(slot.end())),
        None => (None, None, None),
    };
    Ok(Prepared::new(
        statement,
        params![
            request.booking_id.uuid(),
            request.version.get(),
            request.restaurant_id.as_str().to_string(),
            request.party_size.get() as i32,
            request.slot.start(),
            request.slot.end(),
            ids,
            by_job,
            old_restaurant,
            old_start,
            old_end,
        ],
    ))
}

/// From the rows of [`record_assignment`]: whether jobs wait where the booking's previous
/// tables were freed (then they should be woken once the transaction committed).
pub fn freed_capacity_wanted(rows: &[Row]) -> Result<bool, Error> {
    match rows.first() {
        Some(row) => Ok(row.try_get("wanted")?),
        None => Ok(false),
    }
}

/// The live (not yet ended) assignments of a restaurant, found by their reservations.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn live_assignments(
    tx: &Transaction<'_>,
    restaurant_id: &RestaurantId,
) -> Result<Vec<LiveAssignment>, Error> {
    let statement = tx
        .prepare_cached(
            "SELECT b.booking_id, b.party_size, b.table_ids FROM assign.bookings b \
             WHERE b.assigned_version IS NOT NULL AND b.booking_id IN ( \
               SELECT r.booking_id FROM assign.reservations r \
               WHERE r.restaurant_id = $1 AND r.during && tstzrange(now(), NULL))",
        )
        .await?;
    let rows = tx.query(&statement, &[&restaurant_id.as_str()]).await?;
    rows.iter()
        .map(|row| {
            Ok(LiveAssignment {
                booking_id: BookingId::from_uuid(row.try_get("booking_id")?),
                party_size: stored("party size", PartySize::parse(row.try_get("party_size")?))?,
                table_ids: table_ids_of(row.try_get("table_ids")?)?,
            })
        })
        .collect()
}
