//! The create flow.
//!
//! Version 1 is applied and handed off, then come the inline attempt, the record and the
//! answer. The apply step inserts the booking (PENDING, handed off to the background
//! unless this request records its inline result in time) and its CREATED event in one
//! round trip, together with the idempotency key's claim when there is one.

use super::{Answer, CREATE, Flow, Result};
use crate::{
    crash::CrashPoint,
    domain::{
        Detail, Event,
        changes::Change,
        requests::NewBooking,
        values::{BookingId, truncate_to_micros},
    },
    store,
};
use platform::telemetry::current_context_carrier;
use std::time::{Duration, Instant, SystemTime};

impl Flow {
    /// Creates a booking: apply (version 1, PENDING, job), inline attempt, record, answer.
    /// `caller_deadline` is when the caller stops waiting (from `grpc-timeout`).
    #[tracing::instrument(skip_all, fields(booking.id = tracing::field::Empty, booking.version = 1, outcome = tracing::field::Empty))]
    pub async fn create(&self, request: NewBooking, caller_deadline: Option<Instant>) -> Result<Answer> {
        let started = Instant::now();
        let now = truncate_to_micros(SystemTime::now());
        let id = BookingId::generate();
        tracing::Span::current().record("booking.id", tracing::field::display(id));
        let fingerprint = request.fingerprint();
        let carrier = current_context_carrier();
        let window = self.deadline(caller_deadline, Duration::ZERO);
        let booking = request.into_booking(id, now);
        {
            let tx = self.db.tx().await?;
            if let Some(key) = &request.idempotency_key
                && let Some(used) = tx
                    .begin(store::idempotency::claim(tx.client(), CREATE, key.as_str(), &fingerprint, id.uuid()))
                    .await?
            {
                return self.replay(tx.client(), used, &fingerprint).await;
            }
            let events = [Event::new(1, Detail::created(&booking, request.suppress_emails, &request.actor))];
            let due_in = window + self.inline.record_grace;
            let c = tx.client();
            // BEGIN, the inserts and COMMIT in one round trip.
            let statements = [
                store::bookings::insert(c, &booking, due_in, request.suppress_emails, &carrier).await?,
                store::history::statement(c, id.uuid(), &events).await?,
                store::changes::record_statement(c, id.uuid(), &Change::created().by(&request.actor)).await?,
            ];
            tx.commit_with(&statements).await?;
        }
        self.db.wake(store::changes::CHANNEL);
        self.crash.reached(CrashPoint::CreateAfterApply);
        let deadline = self.deadline(caller_deadline, started.elapsed());
        let attempt = self.attempt_inline(&booking, deadline).await;
        let key = request.idempotency_key.as_ref().map(|k| (CREATE, k));
        let answer = self.record(&booking, attempt, request.suppress_emails, key, &carrier).await?;
        tracing::Span::current().record("outcome", tracing::field::debug(answer.outcome));
        Ok(answer)
    }
}
