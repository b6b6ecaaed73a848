//! The record step of a create or edit.
//!
//! The inline result is written in one transaction, guarded by the version still being
//! current and still handed to this request. Assigned: CONFIRMED with the confirmation
//! email queued. Anything else: the version's reassign job becomes due at once and the
//! pending email is queued. A version the background took over meanwhile keeps the
//! background's decision.

use super::{Answer, Flow, Result, db, snapshot};
use crate::{
    domain::{
        Booking, BookingStatus, Detail, EmailKind, Event,
        changes::{Change, ChangeType},
        emails::EmailPayload,
        history::{Confirmation, Late},
        inline::{InlineAttempt, InlineResult, Outcome},
        reassign::JobState,
        values::{IdempotencyKey, truncate_to_micros},
    },
    error::Error,
    outbox::queue_email,
    store::{self, Carrier},
};
use std::time::SystemTime;

impl Flow {
    /// Records the inline result for `applied` in one transaction, guarded by the booking
    /// still being at that version and PENDING and not taken over by the background, and
    /// stores the answer for the key. The common case (assigned, no key) is one statement
    /// ([`Flow::confirm_inline`]); the others lock the row and decide in two or three
    /// round trips.
    #[tracing::instrument(skip_all, fields(booking.id = %applied.id, booking.version = applied.version.get()))]
    pub(super) async fn record(
        &self,
        applied: &Booking,
        attempt: InlineAttempt,
        suppress: bool,
        key: Option<(&str, &IdempotencyKey)>,
        carrier: &Carrier,
    ) -> Result<Answer> {
        let now = truncate_to_micros(SystemTime::now());
        let (id, version) = (applied.id.uuid(), applied.version.get());
        if let (InlineResult::Assigned(tables), None) = (&attempt.result, key)
            && let Some(booking) = self.confirm_inline(applied, &attempt, tables, now, suppress, carrier).await?
        {
            return Ok(Answer { booking, outcome: Outcome::Confirmed, inline: attempt });
        }
        let tx = self.db.tx().await?;
        // BEGIN and the row lock in one round trip.
        let current = tx.begin(store::bookings::lock(tx.client(), id)).await?.ok_or(Error::NotFound(id))?;
        let c = tx.client();
        // Whether the background took this version over meanwhile (this request outlived the
        // grace period and looked dead): that decision stands, so a late result neither
        // confirms nor queues a second email. Read under the row lock, hence after it.
        let taken_over = store::jobs::get(c, id, version).await?.is_some_and(|j| j.recorded);
        let mut events = vec![];
        let mut channels = vec![];
        // Written after the history of `events`, with COMMIT, in one round trip.
        let mut statements = vec![];
        let still_current = current.version.get() == version && current.status == BookingStatus::Pending;
        let (booking, outcome) = if !still_current || taken_over {
            let late = if still_current { Late::TakenOver } else { Late::Stale };
            events.push(Event::new(version, Detail::inline_attempt(&attempt, Some(late))));
            let outcome = if current.version.get() == version && current.status == BookingStatus::Confirmed {
                Outcome::Confirmed
            } else {
                Outcome::Pending
            };
            (current, outcome)
        } else if let InlineResult::Assigned(tables) = &attempt.result {
            events.push(Event::new(version, Detail::inline_attempt(&attempt, None)));
            events.push(Event::new(version, Detail::Confirmed(Confirmation::Inline { table_ids: tables.clone() })));
            let mut booking = current.clone();
            booking.status = BookingStatus::Confirmed;
            booking.table_ids = tables.clone();
            booking.updated_at = now;
            let kind = EmailKind::confirmation(version);
            statements.push(store::bookings::set_status_statement(c, id, BookingStatus::Confirmed, tables, now).await?);
            let change = Change::between(ChangeType::Confirmed, &current, &booking);
            statements.push(store::changes::record_statement(c, id, &change).await?);
            channels.push(store::changes::CHANNEL);
            statements.push(store::jobs::close_statement(c, id, version, JobState::Assigned).await?);
            if suppress {
                events.push(Event::new(version, Detail::EmailSuppressed { kind }));
            } else {
                // After the history of `events`, so EMAIL_QUEUED comes last.
                let queued = Event::new(version, Detail::EmailQueued { kind });
                let payload = EmailPayload::for_booking(&booking);
                let email = store::outbox::enqueue_statement(c, id, version, kind, &payload, carrier, &queued).await?;
                channels.push(store::outbox::CHANNEL);
                statements.push(store::history::statement(c, id, &events).await?);
                events.clear();
                statements.push(email);
            }
            // The version was requested when the booking was last updated (apply).
            self.metrics.confirmed("inline", now.duration_since(applied.updated_at).unwrap_or_default());
            (booking, Outcome::Confirmed)
        } else {
            events.push(Event::new(version, Detail::inline_attempt(&attempt, None)));
            // The version's job: written now from the hand-off, or, when the background
            // adopted the hand-off meanwhile (this request outlived the grace period) but has
            // not recorded its job yet, marked recorded. A job already recorded was taken
            // over by the background: its pending email is queued already.
            let recorded_before = if store::jobs::from_handoff(c, id, version).await? {
                Some(false)
            } else {
                store::jobs::mark_recorded(c, id, version, true).await?
            };
            if recorded_before != Some(true) {
                let kind = EmailKind::pending(version);
                queue_email(c, &current, kind, suppress, carrier, &mut events, &mut channels).await?;
                statements.push(store::changes::record_statement(c, id, &Change::pending()).await?);
                channels.push(store::changes::CHANNEL);
            }
            channels.push(store::jobs::CHANNEL);
            (current, Outcome::Pending)
        };
        if !events.is_empty() {
            statements.insert(0, store::history::statement(c, id, &events).await?);
        }
        if let Some((rpc, key)) = key {
            statements.push(store::idempotency::response_statement(c, rpc, key.as_str(), &snapshot(&booking)?).await?);
        }
        tx.commit_with(&statements).await?;
        self.wake(&channels);
        Ok(Answer { booking, outcome, inline: attempt })
    }

    /// The common case of recording: the inline attempt assigned `tables`, the booking is
    /// still PENDING at the applied version and still handed to this request. Confirms it,
    /// ends the hand-off, writes the history and queues the confirmation email in one
    /// statement, atomic on its own and guarded by the booking's row (see
    /// [`store::bookings::confirm_inline`]). `None` (nothing written) when the booking
    /// moved on or was taken over meanwhile: the caller then records the attempt the
    /// general way.
    async fn confirm_inline(
        &self,
        applied: &Booking,
        attempt: &InlineAttempt,
        tables: &[String],
        now: SystemTime,
        suppress: bool,
        carrier: &Carrier,
    ) -> Result<Option<Booking>> {
        let version = applied.version.get();
        let mut booking = applied.clone();
        booking.status = BookingStatus::Confirmed;
        booking.table_ids = tables.to_vec();
        booking.updated_at = now;
        let kind = EmailKind::confirmation(version);
        let mut events = vec![
            Event::new(version, Detail::inline_attempt(attempt, None)),
            Event::new(version, Detail::Confirmed(Confirmation::Inline { table_ids: tables.to_vec() })),
        ];
        let payload = EmailPayload::for_booking(&booking);
        let queued = Event::new(version, Detail::EmailQueued { kind });
        let email = if suppress {
            events.push(Event::new(version, Detail::EmailSuppressed { kind }));
            None
        } else {
            Some((kind, &payload, &queued))
        };
        let change = Change::between(ChangeType::Confirmed, applied, &booking);
        let client = self.db.client().await?;
        let statement = store::bookings::confirm_inline(
            &client,
            booking.id.uuid(),
            version,
            tables,
            now,
            &events,
            email,
            carrier,
            &change,
        )
        .await?;
        let rows = statement.query(&client).await.map_err(db)?;
        if !store::bookings::written(&rows)? {
            return Ok(None);
        }
        self.db.wake(store::changes::CHANNEL);
        if !suppress {
            self.db.wake(store::outbox::CHANNEL);
        }
        // The version was requested when it was applied.
        self.metrics.confirmed("inline", now.duration_since(applied.updated_at).unwrap_or_default());
        Ok(Some(booking))
    }
}
