//! Transaction timeouts and the advisory locks that make writers take turns.
//!
//! A restaurant's lock (exclusive for a floor plan replacement, shared for assignments)
//! and the locks of its days (assignments whose slots overlap share one) are taken in
//! one order (restaurant, days ascending, booking), so no transaction waits on another
//! in a cycle. It must never decide anything: the exclusion constraint stays the
//! guarantee.

use crate::{
    domain::{BookingId, RestaurantId},
    error::Error,
};
use deadpool_postgres::{ClientWrapper, Transaction};
use platform::{
    db::{IDLE_IN_TRANSACTION_TIMEOUT, Prepared},
    params,
};

/// Starts the work of a transaction: sets its lock and statement timeouts to `millis`,
/// so PostgreSQL itself stops a statement that would outlive the caller's deadline, and
/// its idle timeout to the same, at most [`IDLE_IN_TRANSACTION_TIMEOUT`], so PostgreSQL
/// ends the session of a transaction left idle that long (its process frozen or stalled
/// between two round trips: what it holds is freed for the others, and it could not
/// commit in time anyway). With a restaurant, it also takes that restaurant's exclusive
/// lock until the end of the transaction (a floor plan replacement: it waits for the
/// assignments under way there, and they wait for it; see [`start_assignment`]).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn begin_work(tx: &Transaction<'_>, millis: u64, restaurant_id: Option<&RestaurantId>) -> Result<(), Error> {
    let (millis, idle) = timeouts(millis);
    match restaurant_id {
        Some(restaurant_id) => {
            let statement = tx
                .prepare_cached(
                    "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true), \
                            set_config('idle_in_transaction_session_timeout', $3, true), \
                            pg_advisory_xact_lock(hashtextextended('assign.restaurant:' || $2, 0))",
                )
                .await?;
            tx.query_one(&statement, &[&millis, &restaurant_id.as_str(), &idle]).await?;
        }
        None => {
            let statement = tx
                .prepare_cached(
                    "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true), \
                            set_config('idle_in_transaction_session_timeout', $2, true)",
                )
                .await?;
            tx.query_one(&statement, &[&millis, &idle]).await?;
        }
    }
    Ok(())
}

/// The lock and statement timeout (`millis`, at least 1) and the idle timeout (the same,
/// at most [`IDLE_IN_TRANSACTION_TIMEOUT`]) of a transaction, as PostgreSQL settings.
fn timeouts(millis: u64) -> (String, String) {
    let millis = millis.max(1);
    let idle = millis.min(u64::try_from(IDLE_IN_TRANSACTION_TIMEOUT.as_millis()).unwrap_or(u64::MAX));
    (millis.to_string(), idle.to_string())
}

/// Starts an assignment transaction in one statement: the timeouts of [`begin_work`], the
/// restaurant's lock shared (so a floor plan replacement, which takes it exclusively,
/// waits for the assignments under way and they for it), then the exclusive lock of each
/// day the slot touches in that restaurant (`days`, first and last: [`Slot::days`]), then
/// [`lock_booking`]; read its row with [`booking_state_of`].
///
/// [`lock_booking`]: super::bookings::lock_booking
/// [`booking_state_of`]: super::bookings::booking_state_of
/// [`Slot::days`]: crate::domain::Slot::days
///
/// Assignments whose slots overlap share a day, so they take turns: each reads what the
/// previous one committed, and the deterministic best fit never sends two of them racing
/// for the same table. Assignments on other days of the restaurant go on meanwhile. Every
/// transaction takes its locks in the same order (restaurant, days ascending, booking),
/// so none waits on another in a cycle; the exclusion constraint stays the guarantee.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn start_assignment(
    client: &ClientWrapper,
    millis: u64,
    restaurant_id: &RestaurantId,
    days: (i64, i64),
    booking_id: BookingId,
) -> Result<Prepared, Error> {
    // The day keys have a prefix of their own, so no restaurant id can name a day's lock.
    let statement = client
        .prepare_cached(
            "WITH work AS ( \
               SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true), \
                      set_config('idle_in_transaction_session_timeout', $6, true), \
                      pg_advisory_xact_lock_shared(hashtextextended('assign.restaurant:' || $2, 0)), \
                      pg_advisory_xact_lock(hashtextextended('assign.restaurant-day:' || $4::int8 || ':' || $2, 0)), \
                      pg_advisory_xact_lock(hashtextextended('assign.restaurant-day:' || $5::int8 || ':' || $2, 0))) \
             INSERT INTO assign.bookings AS b (booking_id) SELECT $3 FROM work \
             ON CONFLICT (booking_id) DO UPDATE SET booking_id = EXCLUDED.booking_id \
             RETURNING newest_version, released_version, assigned_version, restaurant_id, table_ids, \
                       lower(during) AS start_time, upper(during) AS end_time",
        )
        .await?;
    let (first_day, last_day) = days;
    let (millis, idle) = timeouts(millis);
    Ok(Prepared::new(
        statement,
        params![millis, restaurant_id.as_str().to_string(), booking_id.uuid(), first_day, last_day, idle],
    ))
}
