//! The restaurants table: each restaurant's profile, and what an email reads of it.
//!
//! An email's payload is completed by the statement that queues it ([`queued_payload!`]),
//! so it carries the profile as it was in that transaction: a later change of the profile
//! rewrites no queued email.

use super::Result;
use crate::domain::{
    guest::Phone,
    restaurant::{Address, Restaurant, RestaurantName, TimeZoneName},
    values::RestaurantId,
};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

/// SQL for the payload `$payload` (a jsonb parameter) of an email about the booking
/// `$booking` (a uuid parameter), completed with what the database holds when the
/// statement runs: the restaurant's name, time zone and address (its id and UTC without
/// a profile), and the arrival time (`previous_start_us`, microseconds since the epoch)
/// and party size the current version changed from (null for a version 1).
macro_rules! queued_payload {
    ($payload:literal, $booking:literal) => {
        concat!(
            "(SELECT ",
            $payload,
            "::jsonb || jsonb_build_object(\
               'restaurant_name', COALESCE(r.name, b.restaurant_id::text), \
               'time_zone', COALESCE(r.time_zone, 'UTC'), \
               'address', COALESCE(r.address, ''), \
               'previous_start_us', (EXTRACT(EPOCH FROM b.previous_start_time) * 1000000)::int8, \
               'previous_party_size', b.previous_party_size::int4) \
             FROM booking.bookings b LEFT JOIN booking.restaurants r ON r.id = b.restaurant_id::text \
             WHERE b.id = ",
            $booking,
            ")"
        )
    };
}
pub(crate) use queued_payload;

fn restaurant_from_row(row: &Row) -> Result<Restaurant> {
    Ok(Restaurant {
        id: RestaurantId::from_stored(row.try_get(0)?),
        name: RestaurantName::from_stored(row.try_get(1)?),
        time_zone: TimeZoneName::from_stored(row.try_get(2)?),
        address: Address::from_stored(row.try_get(3)?),
        phone: Phone::from_stored(row.try_get(4)?),
    })
}

/// Creates or replaces a profile; returns it as stored.
pub async fn put(db: &impl GenericClient, r: &Restaurant) -> Result<Restaurant> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO booking.restaurants (id, name, time_zone, address, phone) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, time_zone = EXCLUDED.time_zone, \
               address = EXCLUDED.address, phone = EXCLUDED.phone, updated_at = now() \
             RETURNING id, name, time_zone, address, phone",
        )
        .await?;
    let row = db
        .query_one(
            &stmt,
            &[&r.id.as_str(), &r.name.as_str(), &r.time_zone.as_str(), &r.address.as_str(), &r.phone.as_str()],
        )
        .await?;
    restaurant_from_row(&row)
}

/// The stored profile, if any.
pub async fn get(db: &impl GenericClient, id: &RestaurantId) -> Result<Option<Restaurant>> {
    let stmt =
        db.prepare_cached("SELECT id, name, time_zone, address, phone FROM booking.restaurants WHERE id = $1").await?;
    db.query_opt(&stmt, &[&id.as_str()]).await?.as_ref().map(restaurant_from_row).transpose()
}
