//! Recovering a create or edit whose request died between apply and record.
//!
//! The dispatcher records for it what an inline timeout would have: the version stays
//! PENDING and its pending email is queued.

use super::Dispatcher;
use crate::{
    domain::{Detail, EmailKind, Event, changes::Change},
    error::Error,
    outbox::queue_email,
    store,
};
use platform::telemetry::link_to_carrier;
use tracing::Instrument;

impl Dispatcher {
    /// Records the pending state of a job whose request died between apply and record
    /// (a crash): the same email an inline timeout would have queued.
    pub(super) async fn recover(&self, job: &store::jobs::ClaimedJob) -> Result<(), Error> {
        let span = tracing::info_span!(parent: None, "reassign.recover", booking.id = %job.booking_id, booking.version = job.version);
        link_to_carrier(&span, &job.carrier);
        async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let Some(booking) = store::bookings::lock(&tx, job.booking_id).await? else { return Ok(()) };
            let Some(current) = store::jobs::get(&tx, job.booking_id, job.version).await? else { return Ok(()) };
            if !current.open || current.recorded {
                return Ok(());
            }
            let mut events = vec![Event::new(job.version, Detail::interrupted())];
            let mut channels = vec![];
            if booking.version.get() == job.version && booking.status == crate::domain::BookingStatus::Pending {
                let kind = EmailKind::pending(job.version);
                queue_email(&tx, &booking, kind, current.suppress_emails, &job.carrier, &mut events, &mut channels).await?;
                store::changes::record(&tx, job.booking_id, &Change::pending()).await?;
                channels.push(store::changes::CHANNEL);
            }
            store::jobs::mark_recorded(&tx, job.booking_id, job.version, true).await?;
            store::history::append(&tx, job.booking_id, &events).await?;
            tx.commit().await?;
            for channel in channels {
                self.db.wake(channel);
            }
            tracing::warn!(booking.id = %job.booking_id, booking.version = job.version, "recovered an interrupted create/edit");
            Ok(())
        }
        .instrument(span)
        .await
    }
}
