//! The reads: a booking, a page of bookings, a booking's history.

use super::{Flow, Result};
use crate::{
    domain::{
        Booking,
        paging::{ListQuery, encode_token},
        values::BookingId,
    },
    error::Error,
    store,
};

impl Flow {
    /// The booking as stored.
    #[tracing::instrument(skip_all, fields(booking.id = %id))]
    pub async fn get(&self, id: BookingId) -> Result<Booking> {
        let client = self.db.client().await?;
        store::bookings::get(&client, id.uuid()).await?.ok_or(Error::NotFound(id.uuid()))
    }

    /// One page of bookings and the token of the next page, if any.
    #[tracing::instrument(skip_all, fields(restaurant.id = %query.restaurant_id.as_str()))]
    pub async fn list(&self, query: &ListQuery, filter_hash: u64) -> Result<(Vec<Booking>, Option<String>)> {
        let client = self.db.client().await?;
        let mut bookings = store::bookings::list(&client, query).await?;
        let more = bookings.len() as i64 > query.page_size;
        bookings.truncate(query.page_size.max(0) as usize);
        let token = match bookings.last() {
            Some(last) if more => Some(encode_token(last.start_time.get(), last.id.uuid(), filter_hash)),
            _ => None,
        };
        Ok((bookings, token))
    }

    /// The booking's history, oldest first.
    #[tracing::instrument(skip_all, fields(booking.id = %id))]
    pub async fn history(&self, id: BookingId) -> Result<Vec<store::history::StoredEvent>> {
        let client = self.db.client().await?;
        if store::bookings::get(&client, id.uuid()).await?.is_none() {
            return Err(Error::NotFound(id.uuid()));
        }
        store::history::read(&client, id.uuid()).await
    }
}
