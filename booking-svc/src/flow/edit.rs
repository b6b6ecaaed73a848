//! The edit flow.
//!
//! The apply step (version check, no-op detection, the new version written and handed
//! off), then the inline attempt, the record and the answer. Without an idempotency key
//! the apply is optimistic: read, plan, then one write guarded on the version read. A
//! concurrent change in between, or a key, sends it down the path that locks the booking's
//! row first.

use super::{Answer, EDIT, Flow, Result, db, refused, snapshot};
use crate::{
    crash::CrashPoint,
    domain::{
        Booking, Detail, Event,
        booking::{EditPlan, FieldChange, check_editable, plan_edit},
        changes::{Change, ChangeType},
        requests::EditRequest,
        values::truncate_to_micros,
    },
    error::Error,
    store::{self, Carrier},
};
use platform::telemetry::current_context_carrier;
use std::time::{Duration, Instant, SystemTime};

impl Flow {
    /// Edits a booking: apply (lock, version check, no-op detection, new version, job),
    /// inline attempt, record, answer.
    #[tracing::instrument(skip_all, fields(booking.id = %request.booking_id, booking.version = tracing::field::Empty, outcome = tracing::field::Empty))]
    pub async fn edit(&self, request: EditRequest, caller_deadline: Option<Instant>) -> Result<Answer> {
        let started = Instant::now();
        let now = truncate_to_micros(SystemTime::now());
        let id = request.booking_id.uuid();
        let fingerprint = request.fingerprint();
        let carrier = current_context_carrier();
        let window = self.deadline(caller_deadline, Duration::ZERO);
        let due_in = window + self.inline.record_grace;
        // Without a key, optimistically: read, plan, then write only if the booking is
        // still at the version read, each in one statement of its own (no transaction held
        // between them, no row lock taken to read). A concurrent change in between (rare:
        // edits of one booking race only when its clients race) sends the edit down the
        // locked path, as does a key (its claim and the edit commit together).
        let unlocked = match request.idempotency_key {
            None => self.apply_edit_unlocked(&request, now, due_in, &carrier).await?,
            Some(_) => None,
        };
        let next = match unlocked {
            Some(Applied::Changed(next)) => next,
            Some(Applied::Unchanged(current)) => {
                tracing::Span::current().record("outcome", "Unchanged");
                return Ok(Answer::replay(current));
            }
            None => {
                let tx = self.db.tx().await?;
                if let Some(key) = &request.idempotency_key
                    && let Some(used) =
                        tx.begin(store::idempotency::claim(tx.client(), EDIT, key.as_str(), &fingerprint, id)).await?
                {
                    return self.replay(tx.client(), used, &fingerprint).await;
                }
                // BEGIN and the row lock in one round trip.
                let current = tx.begin(store::bookings::lock(tx.client(), id)).await?.ok_or(Error::NotFound(id))?;
                check_editable(&current, request.expected_version).map_err(|r| refused(r, id))?;
                match plan_edit(&current, &request.changes, now) {
                    EditPlan::Unchanged => {
                        tracing::Span::current().record("booking.version", current.version.get());
                        let answer = snapshot(&current)?;
                        let mut statements =
                            vec![store::history::statement(tx.client(), id, &unchanged_events(&current)).await?];
                        if let Some(key) = &request.idempotency_key {
                            statements.push(
                                store::idempotency::response_statement(tx.client(), EDIT, key.as_str(), &answer)
                                    .await?,
                            );
                        }
                        tx.commit_with(&statements).await?;
                        tracing::Span::current().record("outcome", "Unchanged");
                        return Ok(Answer::replay(current));
                    }
                    EditPlan::Changed { next, changes } => {
                        let events = edited_events(&next, changes, request.suppress_emails, &request.actor);
                        let change = Change::between(ChangeType::Edited, &current, &next).by(&request.actor);
                        // The writes (one statement) and COMMIT in one round trip; under the
                        // lock the booking is at the version read.
                        let apply = store::bookings::apply_edit(
                            tx.client(),
                            current.version.get(),
                            &next,
                            due_in,
                            request.suppress_emails,
                            &carrier,
                            &events,
                            &change,
                        )
                        .await?;
                        let rows = tx.commit_with(&[apply]).await?;
                        if !store::bookings::written(rows.first().map_or(&[][..], Vec::as_slice))? {
                            return Err(Error::corrupt("an edit under the booking's lock was not applied"));
                        }
                        *next
                    }
                }
            }
        };
        tracing::Span::current().record("booking.version", next.version.get());
        self.db.wake(store::changes::CHANNEL);
        self.crash.reached(CrashPoint::EditAfterApply);
        let deadline = self.deadline(caller_deadline, started.elapsed());
        let attempt = self.attempt_inline(&next, deadline).await;
        self.crash.reached(CrashPoint::EditAfterInlineAssign);
        let key = request.idempotency_key.as_ref().map(|k| (EDIT, k));
        let answer = self.record(&next, attempt, request.suppress_emails, key, &carrier).await?;
        self.crash.reached(CrashPoint::EditAfterRecord);
        tracing::Span::current().record("outcome", tracing::field::debug(answer.outcome));
        Ok(answer)
    }

    /// The optimistic apply of an edit without a key: the booking read as stored (no lock),
    /// the version check and the plan, then the writes in one statement that applies only
    /// if the booking is still at the version read and not cancelled. `None` when it
    /// changed in between: nothing was written, and the caller applies under the lock.
    async fn apply_edit_unlocked(
        &self,
        request: &EditRequest,
        now: SystemTime,
        due_in: Duration,
        carrier: &Carrier,
    ) -> Result<Option<Applied>> {
        let id = request.booking_id.uuid();
        let client = self.db.client().await?;
        let current = store::bookings::get(&client, id).await?.ok_or(Error::NotFound(id))?;
        check_editable(&current, request.expected_version).map_err(|r| refused(r, id))?;
        match plan_edit(&current, &request.changes, now) {
            EditPlan::Unchanged => {
                tracing::Span::current().record("booking.version", current.version.get());
                store::history::append(&client, id, &unchanged_events(&current)).await?;
                Ok(Some(Applied::Unchanged(current)))
            }
            EditPlan::Changed { next, changes } => {
                let events = edited_events(&next, changes, request.suppress_emails, &request.actor);
                let change = Change::between(ChangeType::Edited, &current, &next).by(&request.actor);
                let apply = store::bookings::apply_edit(
                    &client,
                    current.version.get(),
                    &next,
                    due_in,
                    request.suppress_emails,
                    carrier,
                    &events,
                    &change,
                )
                .await?;
                let rows = apply.query(&client).await.map_err(db)?;
                Ok(store::bookings::written(&rows)?.then_some(Applied::Changed(*next)))
            }
        }
    }
}

/// What the apply step of an edit did.
enum Applied {
    /// Nothing to change: the booking as it is.
    Unchanged(Booking),
    /// The new version, stored and handed off.
    Changed(Booking),
}

/// The history of an edit that changes nothing.
fn unchanged_events(current: &Booking) -> [Event; 1] {
    [Event::new(current.version.get(), Detail::edit_unchanged())]
}

/// The history of an edit that makes version `next`.
fn edited_events(next: &Booking, changes: Vec<FieldChange>, suppress_emails: bool, actor: &str) -> [Event; 1] {
    [Event::new(next.version.get(), Detail::Edited { changes, suppress_emails, actor: actor.to_string() })]
}
