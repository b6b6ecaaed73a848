//! The changes table: the change feed's source, one row per change of a booking's state.
//!
//! A change is recorded by the statement or transaction that makes it, always after that
//! one has written the booking's row (so the transaction has an id, and the row lock
//! orders one booking's changes), with the booking's state as the change left it. The
//! feed reads rows by position only: the reader's passes, which also tell how far
//! positions are final (see `feed::sequencer`), and the pages a watcher catches up with.

use super::Result;
use crate::domain::{
    Booking, BookingStatus,
    changes::{Change, ChangeType},
    guest::{GuestEmail, GuestName, Notes, Phone},
    values::{BookingDuration, BookingId, PartySize, RestaurantId, StartTime, Version},
};
use crate::error::Error;
use deadpool_postgres::GenericClient;
use platform::{db::Prepared, params};
use serde_json::Value;
use std::time::{Duration, SystemTime};
use tokio_postgres::Row;
use uuid::Uuid;

/// Channel woken when changes were committed.
pub const CHANNEL: &str = "booking_changes";

/// The columns of a change row that hold the booking's state after the change, named as
/// in `booking.bookings`.
macro_rules! state_columns {
    () => {
        "version, status, party_size, start_time, duration_s, notes, table_ids, updated_at"
    };
}

/// The statement, as one data-modifying CTE of a caller's statement, recording a change
/// of each booking row that `$source` (an earlier CTE) returned with `id` and the state
/// columns, of type `$kind` and fields `$changes` (placeholders of the caller's
/// statement, text and jsonb).
macro_rules! record_from {
    ($source:literal, $kind:literal, $changes:literal, $actor:literal) => {
        concat!(
            "INSERT INTO booking.changes (booking_id, type, changes, actor, ",
            $crate::store::changes::state_columns!(),
            ") SELECT id, ",
            $kind,
            "::text, ",
            $changes,
            "::jsonb, ",
            $actor,
            "::text, ",
            $crate::store::changes::state_columns!(),
            " FROM ",
            $source
        )
    };
}
pub(crate) use {record_from, state_columns};

/// The stored form of a change's fields.
pub fn fields_json(change: &Change) -> Result<Value> {
    serde_json::to_value(&change.fields).map_err(|e| Error::corrupt(format!("change fields: {e}")))
}

/// The statement recording `change` of a booking, with the state its row has now (in the
/// caller's transaction, after the writes that made the change).
pub async fn record_statement(db: &impl GenericClient, booking_id: Uuid, change: &Change) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(concat!(
            "INSERT INTO booking.changes (booking_id, type, changes, actor, ",
            state_columns!(),
            ") SELECT id, $2::text, $3::jsonb, $4::text, ",
            state_columns!(),
            " FROM booking.bookings WHERE id = $1"
        ))
        .await?;
    Ok(Prepared::new(stmt, params![booking_id, change.kind.as_str(), fields_json(change)?, change.actor.clone()]))
}

/// Records `change` of a booking (as [`record_statement`], run now).
pub async fn record(db: &impl GenericClient, booking_id: Uuid, change: &Change) -> Result<()> {
    record_statement(db, booking_id, change).await?.query(db).await?;
    Ok(())
}

/// A stored change with the booking as it left it.
#[derive(Clone, Debug)]
pub struct StoredChange {
    /// Its position in the feed.
    pub position: i64,
    pub kind: ChangeType,
    /// The fields it altered.
    pub fields: Vec<StoredField>,
    pub actor: String,
    pub at: SystemTime,
    pub booking: Booking,
}

/// One field a stored change altered, as stored.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct StoredField {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

/// The columns [`change_from_row`] reads, from `changes c` joined to `bookings b`.
macro_rules! read_columns {
    () => {
        "c.id, c.type, c.changes, c.actor, c.at, b.id, b.restaurant_id, b.guest_name, b.guest_email, \
         b.guest_phone, c.party_size, c.start_time, c.duration_s, c.notes, c.status, c.version, c.table_ids, \
         b.created_at, c.updated_at"
    };
}

/// A change from the columns of [`read_columns`] starting at `at` (`None` when they are
/// NULL: the empty side of an outer join).
fn change_from_row(row: &Row, at: usize) -> Result<Option<StoredChange>> {
    let Some(position) = row.try_get::<_, Option<i64>>(at)? else { return Ok(None) };
    let kind: String = row.try_get(at + 1)?;
    let status: String = row.try_get(at + 14)?;
    let duration_s: i32 = row.try_get(at + 12)?;
    let duration = Duration::from_secs(u64::try_from(duration_s).map_err(|_| Error::corrupt("negative duration"))?);
    let booking = Booking {
        id: BookingId::from_uuid(row.try_get(at + 5)?),
        restaurant_id: RestaurantId::from_stored(row.try_get(at + 6)?),
        guest_name: GuestName::from_stored(row.try_get(at + 7)?),
        guest_email: GuestEmail::from_stored(row.try_get(at + 8)?),
        guest_phone: Phone::from_stored(row.try_get(at + 9)?),
        party_size: PartySize::from_stored(row.try_get(at + 10)?),
        start_time: StartTime::from_stored(row.try_get(at + 11)?),
        duration: BookingDuration::from_stored(duration),
        notes: Notes::from_stored(row.try_get(at + 13)?),
        status: BookingStatus::from_stored(&status).ok_or_else(|| Error::corrupt("unknown booking status"))?,
        version: Version::from_stored(row.try_get(at + 15)?),
        table_ids: row.try_get(at + 16)?,
        created_at: row.try_get(at + 17)?,
        updated_at: row.try_get(at + 18)?,
    };
    Ok(Some(StoredChange {
        position,
        kind: ChangeType::from_stored(&kind).ok_or_else(|| Error::corrupt("unknown change type"))?,
        fields: serde_json::from_value(row.try_get(at + 2)?)
            .map_err(|e| Error::corrupt(format!("change fields: {e}")))?,
        actor: row.try_get(at + 3)?,
        at: row.try_get(at + 4)?,
        booking,
    }))
}

/// What one pass of the feed's reader saw, all under one snapshot.
pub struct Pass {
    /// The oldest transaction id still running when the snapshot was taken (every older
    /// one had ended).
    pub xmin: i64,
    /// A transaction id taken after the snapshot: larger than that of every transaction
    /// that had one before it.
    pub fence: i64,
    /// The committed changes from the position asked, in position order.
    pub changes: Vec<StoredChange>,
}

/// The reader's pass: up to `limit` committed changes from position `from` on, with the
/// snapshot's `xmin` and a fence. Runs as its own transaction (the fence is its id). The
/// positions are limited before the join, so however the plan estimates `from`, a pass
/// reads the table's tail by its key and looks up only those bookings.
pub async fn pass(db: &impl GenericClient, from: i64, limit: i64) -> Result<Pass> {
    let stmt = db
        .prepare_cached(concat!(
            "WITH horizon AS MATERIALIZED ( \
               SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8 AS xmin, \
                      pg_current_xact_id()::text::int8 AS fence), \
             tail AS MATERIALIZED (SELECT * FROM booking.changes WHERE id >= $1 ORDER BY id LIMIT $2) \
             SELECT h.xmin, h.fence, r.* FROM horizon h LEFT JOIN LATERAL ( \
               SELECT ",
            read_columns!(),
            " FROM tail c JOIN booking.bookings b ON b.id = c.booking_id ORDER BY c.id) r ON true"
        ))
        .await?;
    let rows = db.query(&stmt, &[&from, &limit]).await?;
    let first = rows.first().ok_or_else(|| Error::corrupt("the feed's pass answered no row"))?;
    let (xmin, fence) = (first.try_get(0)?, first.try_get(1)?);
    let mut changes = Vec::with_capacity(rows.len());
    for row in &rows {
        changes.extend(change_from_row(row, 2)?);
    }
    Ok(Pass { xmin, fence, changes })
}

/// Up to `limit` changes at positions in `[from, until)`, of one restaurant's bookings or
/// all, in position order (for a watcher catching up: every position below `until` is
/// final).
pub async fn page(
    db: &impl GenericClient,
    from: i64,
    until: i64,
    restaurant: Option<&RestaurantId>,
    limit: i64,
) -> Result<Vec<StoredChange>> {
    let stmt = db
        .prepare_cached(concat!(
            "SELECT ",
            read_columns!(),
            " FROM booking.changes c JOIN booking.bookings b ON b.id = c.booking_id \
             WHERE c.id >= $1 AND c.id < $2 AND ($3::text IS NULL OR b.restaurant_id = $3::text) \
             ORDER BY c.id LIMIT $4"
        ))
        .await?;
    let restaurant = restaurant.map(RestaurantId::as_str);
    let rows = db.query(&stmt, &[&from, &until, &restaurant, &limit]).await?;
    let mut changes = Vec::with_capacity(rows.len());
    for row in &rows {
        changes.extend(change_from_row(row, 0)?);
    }
    Ok(changes)
}

/// The last position handed out so far (0 when none was), committed or not.
pub async fn last_issued(db: &impl GenericClient) -> Result<i64> {
    let stmt =
        db.prepare_cached("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM booking.change_position").await?;
    Ok(db.query_one(&stmt, &[]).await?.try_get(0)?)
}

/// A fence: a new transaction id, larger than that of every transaction that had one
/// before this call.
pub async fn fence(db: &impl GenericClient) -> Result<i64> {
    let stmt = db.prepare_cached("SELECT pg_current_xact_id()::text::int8").await?;
    Ok(db.query_one(&stmt, &[]).await?.try_get(0)?)
}

/// The oldest transaction id still running (every older one has ended).
pub async fn xmin(db: &impl GenericClient) -> Result<i64> {
    let stmt = db.prepare_cached("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8").await?;
    Ok(db.query_one(&stmt, &[]).await?.try_get(0)?)
}
