//! The cancel flow.
//!
//! The booking is cancelled, its open jobs closed, a durable release task and the
//! BOOKING_CANCELLED email written, in one transaction; then the Reassign stream is told.

use super::{CANCEL, Flow, Result, db, refused, snapshot};
use crate::{
    crash::CrashPoint,
    domain::{
        Booking, BookingStatus, Detail, EmailKind, Event,
        booking::{CancelPlan, plan_cancel},
        changes::{Change, ChangeType},
        reassign::JobState,
        requests::CancelRequest,
        values::truncate_to_micros,
    },
    error::Error,
    outbox::queue_email,
    store,
};
use deadpool_postgres::GenericClient;
use platform::telemetry::current_context_carrier;
use std::time::SystemTime;

impl Flow {
    /// Cancels a booking: status CANCELLED, open jobs closed, a durable release task and
    /// the BOOKING_CANCELLED email, in one transaction; then tells the Reassign stream.
    #[tracing::instrument(skip_all, fields(booking.id = %request.booking_id))]
    pub async fn cancel(&self, request: CancelRequest) -> Result<Booking> {
        let now = truncate_to_micros(SystemTime::now());
        let id = request.booking_id.uuid();
        let fingerprint = request.fingerprint();
        let carrier = current_context_carrier();
        let mut wake = vec![];
        let booking = {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await.map_err(db)?;
            if let Some(key) = &request.idempotency_key
                && let Some(used) = store::idempotency::claim(&tx, CANCEL, key.as_str(), &fingerprint, id).await?
            {
                drop(tx);
                return Ok(self.replay(&client, used, &fingerprint).await?.booking);
            }
            let current = store::bookings::lock(&tx, id).await?.ok_or(Error::NotFound(id))?;
            let booking = match plan_cancel(&current, request.expected_version, now).map_err(|r| refused(r, id))? {
                CancelPlan::AlreadyCancelled => current,
                CancelPlan::Cancel(_) => {
                    let (booking, _) = store::bookings::set_status(&tx, id, BookingStatus::Cancelled, &[], now).await?;
                    store::changes::record(
                        &tx,
                        id,
                        &Change::between(ChangeType::Cancelled, &current, &booking).by(&request.actor),
                    )
                    .await?;
                    store::jobs::close_open(&tx, id, JobState::Cancelled).await?;
                    store::releases::enqueue(&tx, id, &carrier).await?;
                    let cancelled =
                        Detail::Cancelled { suppress_emails: request.suppress_emails, actor: request.actor.clone() };
                    let mut events = vec![Event::new(booking.version.get(), cancelled)];
                    let mut channels = vec![store::releases::CHANNEL, store::changes::CHANNEL];
                    queue_email(
                        &tx,
                        &booking,
                        EmailKind::BookingCancelled,
                        request.suppress_emails,
                        &carrier,
                        &mut events,
                        &mut channels,
                    )
                    .await?;
                    store::history::append(&tx, id, &events).await?;
                    wake = channels;
                    booking
                }
            };
            if let Some(key) = &request.idempotency_key {
                store::idempotency::save_response(&tx, CANCEL, key.as_str(), &snapshot(&booking)?).await?;
            }
            tx.commit().await.map_err(db)?;
            booking
        };
        self.wake(&wake);
        self.crash.reached(CrashPoint::CancelAfterApply);
        self.dispatcher.cancel(id);
        Ok(booking)
    }
}
