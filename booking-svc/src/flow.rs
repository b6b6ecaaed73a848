//! The create, edit and cancel flows of ARCHITECTURE.md, step by step: apply (version
//! check, no-op detection, the new version written and handed off durably, so that the
//! background takes it over if the request does not record in time; one write guarded on
//! the version read, or a transaction under the row lock), the inline `Assign` with a
//! bounded deadline, then record the result in one transaction with the right outbox row
//! (and the reassign job, when the booking stays PENDING), and answer. Also the reads. It
//! owns the transaction boundaries; it never holds a transaction or row lock across a
//! network call and never sends email (the outbox worker does).

use crate::{
    crash::{CrashHook, CrashPoint},
    domain::{
        Booking, BookingStatus, EmailKind, Event, EventType,
        booking::{
            CancelPlan, CancelRequest, EditPlan, EditRequest, FieldChange, NewBooking, Refusal, check_editable,
            plan_cancel, plan_edit,
        },
        emails::EmailPayload,
        inline::{InlineAttempt, InlineResult, Outcome, inline_deadline},
        paging::{ListQuery, encode_token},
        reassign::JobState,
        values::{BookingId, IdempotencyKey, truncate_to_micros},
    },
    error::Error,
    metrics::Metrics,
    reassign::DispatcherHandle,
    store::{self, Carrier},
};
use deadpool_postgres::GenericClient;
use platform::{
    db::Database,
    grpc::Channel,
    proto::{
        assign::v1::{AssignOutcome, AssignRequest, assign_service_client::AssignServiceClient},
        duration, timestamp,
    },
    telemetry::current_context_carrier,
};
use serde_json::json;
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use uuid::Uuid;

type Result<T> = std::result::Result<T, Error>;

const CREATE: &str = "CreateBooking";
const EDIT: &str = "EditBooking";
const CANCEL: &str = "CancelBooking";

/// Settings of the inline attempt.
#[derive(Clone, Copy, Debug)]
pub struct InlineSettings {
    pub enabled: bool,
    pub timeout: Duration,
    pub margin: Duration,
    pub record_grace: Duration,
}

/// What a create or edit answers.
#[derive(Clone, Debug)]
pub struct Answer {
    pub booking: Booking,
    pub outcome: Outcome,
    pub inline: InlineAttempt,
}

impl Answer {
    fn replay(booking: Booking) -> Self {
        Self { booking, outcome: Outcome::Unchanged, inline: InlineAttempt::skipped() }
    }
}

/// The flows, shared by all calls.
pub struct Flow {
    db: Database,
    assign: AssignServiceClient<Channel>,
    inline: InlineSettings,
    metrics: Arc<Metrics>,
    crash: CrashHook,
    dispatcher: DispatcherHandle,
}

impl Flow {
    pub fn new(
        db: Database,
        assign: AssignServiceClient<Channel>,
        inline: InlineSettings,
        metrics: Arc<Metrics>,
        crash: CrashHook,
        dispatcher: DispatcherHandle,
    ) -> Self {
        Self { db, assign, inline, metrics, crash, dispatcher }
    }

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
            let detail = json!({
                "restaurant_id": booking.restaurant_id,
                "party_size": booking.party_size,
                "start_time": crate::domain::booking::rfc3339(booking.start_time),
                "duration_s": booking.duration.as_secs(),
                "suppress_emails": request.suppress_emails,
            });
            let events = [Event::new(EventType::Created, 1, detail)];
            let due_in = window + self.inline.record_grace;
            let c = tx.client();
            // BEGIN, the inserts and COMMIT in one round trip.
            let statements = [
                store::bookings::insert(c, &booking, due_in, request.suppress_emails, &carrier).await?,
                store::history::statement(c, id.uuid(), &events).await?,
            ];
            tx.commit_with(&statements).await?;
        }
        self.crash.reached(CrashPoint::CreateAfterApply);
        let deadline = self.deadline(caller_deadline, started.elapsed());
        let attempt = self.attempt_inline(&booking, deadline).await;
        let key = request.idempotency_key.as_ref().map(|k| (CREATE, k));
        let answer = self.record(&booking, attempt, request.suppress_emails, key, &carrier).await?;
        tracing::Span::current().record("outcome", tracing::field::debug(answer.outcome));
        Ok(answer)
    }

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
                        tracing::Span::current().record("booking.version", current.version);
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
                        let events = edited_events(&next, changes, request.suppress_emails);
                        // The writes (one statement) and COMMIT in one round trip; under the
                        // lock the booking is at the version read.
                        let apply = store::bookings::apply_edit(
                            tx.client(),
                            current.version,
                            &next,
                            due_in,
                            request.suppress_emails,
                            &carrier,
                            &events,
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
        tracing::Span::current().record("booking.version", next.version);
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
                tracing::Span::current().record("booking.version", current.version);
                store::history::append(&client, id, &unchanged_events(&current)).await?;
                Ok(Some(Applied::Unchanged(current)))
            }
            EditPlan::Changed { next, changes } => {
                let events = edited_events(&next, changes, request.suppress_emails);
                let apply = store::bookings::apply_edit(
                    &client,
                    current.version,
                    &next,
                    due_in,
                    request.suppress_emails,
                    carrier,
                    &events,
                )
                .await?;
                let rows = apply.query(&client).await.map_err(db)?;
                Ok(store::bookings::written(&rows)?.then_some(Applied::Changed(*next)))
            }
        }
    }

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
                    store::jobs::close_open(&tx, id, JobState::Cancelled).await?;
                    store::releases::enqueue(&tx, id, &carrier).await?;
                    let mut events = vec![Event::new(
                        EventType::Cancelled,
                        booking.version,
                        json!({ "suppress_emails": request.suppress_emails }),
                    )];
                    let mut channels = vec![store::releases::CHANNEL];
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
            Some(last) if more => Some(encode_token(last.start_time, last.id, filter_hash)),
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

    /// The inline deadline for a call whose caller waits until `caller_deadline`, keeping
    /// back the configured margin, or twice as long as the apply step took if that is longer
    /// (recording costs about as much as applying, and both slow down together under load,
    /// so the apply step's time is the best forecast of the record step's).
    fn deadline(&self, caller_deadline: Option<Instant>, apply_took: Duration) -> Duration {
        let remaining = caller_deadline.map(|d| d.saturating_duration_since(Instant::now()));
        inline_deadline(self.inline.timeout, remaining, self.inline.margin.max(apply_took * 2))
    }

    /// The first answer to a create whose idempotency key was used before, if it was; reads
    /// only. For a retry that is no longer valid as a new request (its start time has passed
    /// since it was first made): the first answer still stands.
    pub async fn replay_create(&self, request: &NewBooking) -> Result<Option<Answer>> {
        self.replay_if_used(CREATE, request.idempotency_key.as_ref(), &request.fingerprint()).await
    }

    /// The first answer to an edit whose idempotency key was used before, if it was (as
    /// [`Flow::replay_create`]).
    pub async fn replay_edit(&self, request: &EditRequest) -> Result<Option<Answer>> {
        self.replay_if_used(EDIT, request.idempotency_key.as_ref(), &request.fingerprint()).await
    }

    async fn replay_if_used(
        &self,
        rpc: &str,
        key: Option<&IdempotencyKey>,
        fingerprint: &str,
    ) -> Result<Option<Answer>> {
        let Some(key) = key else { return Ok(None) };
        let client = self.db.client().await?;
        match store::idempotency::find(&client, rpc, key.as_str()).await? {
            Some(used) => self.replay(&client, used, fingerprint).await.map(Some),
            None => Ok(None),
        }
    }

    /// The answer to a request whose idempotency key was used before.
    async fn replay(
        &self,
        db: &impl GenericClient,
        used: store::idempotency::KeyUse,
        fingerprint: &str,
    ) -> Result<Answer> {
        if used.fingerprint != fingerprint {
            return Err(Error::KeyReused);
        }
        let booking = match used.response {
            Some(value) => serde_json::from_value(value).map_err(|e| Error::corrupt(format!("stored answer: {e}")))?,
            // The first request is still in flight, or was cut short after applying: its
            // effect is durable, so answer the booking as it is now.
            None => store::bookings::get(db, used.booking_id).await?.ok_or(Error::NotFound(used.booking_id))?,
        };
        tracing::info!(booking.id = %booking.id, "idempotent replay: answering the first result, doing nothing again");
        Ok(Answer::replay(booking))
    }

    /// Asks assign-svc for tables within `deadline`. Never fails: every failure is a result.
    #[tracing::instrument(skip_all, fields(booking.id = %booking.id, booking.version = booking.version, inline.result = tracing::field::Empty))]
    async fn attempt_inline(&self, booking: &Booking, deadline: Duration) -> InlineAttempt {
        let started = Instant::now();
        let result = if !self.inline.enabled {
            InlineResult::Disabled
        } else if deadline.is_zero() {
            InlineResult::Timeout
        } else {
            let mut request = tonic::Request::new(AssignRequest {
                booking_id: booking.id.to_string(),
                version: booking.version,
                restaurant_id: booking.restaurant_id.clone(),
                party_size: booking.party_size,
                start_time: Some(timestamp(booking.start_time)),
                duration: Some(duration(booking.duration)),
            });
            request.set_timeout(deadline);
            let mut client = self.assign.clone();
            match tokio::time::timeout(deadline, client.assign(request)).await {
                Err(_) => InlineResult::Timeout,
                Ok(Ok(response)) => {
                    let response = response.into_inner();
                    match (AssignOutcome::try_from(response.outcome), response.assignment) {
                        (Ok(AssignOutcome::Assigned), Some(a)) if a.version == booking.version => {
                            InlineResult::Assigned(a.table_ids)
                        }
                        (Ok(AssignOutcome::NoCapacity), _) => InlineResult::NoCapacity,
                        _ => InlineResult::Unavailable("unexpected answer from assign-svc".into()),
                    }
                }
                Ok(Err(status)) => match status.code() {
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => InlineResult::Timeout,
                    tonic::Code::NotFound | tonic::Code::FailedPrecondition => InlineResult::NoCapacity,
                    code => InlineResult::Unavailable(format!("{code:?}: {}", status.message())),
                },
            }
        };
        tracing::Span::current().record("inline.result", result.as_str());
        if result != InlineResult::Disabled {
            self.metrics.inline_attempt(result.as_str());
        }
        InlineAttempt { result, elapsed: started.elapsed() }
    }

    /// Records the inline result for `applied` in one transaction, guarded by the booking
    /// still being at that version and PENDING and not taken over by the background, and
    /// stores the answer for the key. The common case (assigned, no key) is one statement
    /// ([`Flow::confirm_inline`]); the others lock the row and decide in two or three
    /// round trips.
    #[tracing::instrument(skip_all, fields(booking.id = %applied.id, booking.version = applied.version))]
    async fn record(
        &self,
        applied: &Booking,
        attempt: InlineAttempt,
        suppress: bool,
        key: Option<(&str, &IdempotencyKey)>,
        carrier: &Carrier,
    ) -> Result<Answer> {
        let now = truncate_to_micros(SystemTime::now());
        let (id, version) = (applied.id, applied.version);
        let mut detail = json!({
            "result": attempt.result.as_str(),
            "elapsed_ms": attempt.elapsed.as_secs_f64() * 1000.0,
            "email_sent": false,
        });
        match &attempt.result {
            InlineResult::Unavailable(reason) => detail["error"] = json!(reason),
            InlineResult::Assigned(tables) => detail["table_ids"] = json!(tables),
            _ => {}
        }
        if let (InlineResult::Assigned(tables), None) = (&attempt.result, key)
            && let Some(booking) = self.confirm_inline(applied, tables, now, &detail, suppress, carrier).await?
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
        let still_current = current.version == version && current.status == BookingStatus::Pending;
        let (booking, outcome) = if !still_current || taken_over {
            if still_current {
                detail["taken_over"] = json!(true);
            } else {
                detail["stale"] = json!(true);
            }
            events.push(Event::new(EventType::InlineAttempt, version, detail));
            let outcome = if current.version == version && current.status == BookingStatus::Confirmed {
                Outcome::Confirmed
            } else {
                Outcome::Pending
            };
            (current, outcome)
        } else if let InlineResult::Assigned(tables) = &attempt.result {
            events.push(Event::new(EventType::InlineAttempt, version, detail));
            events.push(Event::new(EventType::Confirmed, version, json!({ "table_ids": tables, "via": "inline" })));
            let mut booking = current;
            booking.status = BookingStatus::Confirmed;
            booking.table_ids = tables.clone();
            booking.updated_at = now;
            let kind = EmailKind::confirmation(version);
            statements.push(store::bookings::set_status_statement(c, id, BookingStatus::Confirmed, tables, now).await?);
            statements.push(store::jobs::close_statement(c, id, version, JobState::Assigned).await?);
            if suppress {
                events.push(Event::new(EventType::EmailSuppressed, version, json!({ "kind": kind.as_str() })));
            } else {
                // After the history of `events`, so EMAIL_QUEUED comes last.
                let queued = Event::new(EventType::EmailQueued, version, json!({ "kind": kind.as_str() }));
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
            events.push(Event::new(EventType::InlineAttempt, version, detail));
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
    /// [`store::bookings::confirm_inline`]). `None` (nothing written) when the booking moved on or
    /// was taken over meanwhile: the caller then records the attempt the general way.
    async fn confirm_inline(
        &self,
        applied: &Booking,
        tables: &[String],
        now: SystemTime,
        detail: &serde_json::Value,
        suppress: bool,
        carrier: &Carrier,
    ) -> Result<Option<Booking>> {
        let version = applied.version;
        let mut booking = applied.clone();
        booking.status = BookingStatus::Confirmed;
        booking.table_ids = tables.to_vec();
        booking.updated_at = now;
        let kind = EmailKind::confirmation(version);
        let mut events = vec![
            Event::new(EventType::InlineAttempt, version, detail.clone()),
            Event::new(EventType::Confirmed, version, json!({ "table_ids": tables, "via": "inline" })),
        ];
        let payload = EmailPayload::for_booking(&booking);
        let queued = Event::new(EventType::EmailQueued, version, json!({ "kind": kind.as_str() }));
        let email = if suppress {
            events.push(Event::new(EventType::EmailSuppressed, version, json!({ "kind": kind.as_str() })));
            None
        } else {
            Some((kind, &payload, &queued))
        };
        let client = self.db.client().await?;
        let statement =
            store::bookings::confirm_inline(&client, booking.id, version, tables, now, &events, email, carrier).await?;
        let rows = statement.query(&client).await.map_err(db)?;
        if !store::bookings::written(&rows)? {
            return Ok(None);
        }
        if !suppress {
            self.db.wake(store::outbox::CHANNEL);
        }
        // The version was requested when it was applied.
        self.metrics.confirmed("inline", now.duration_since(applied.updated_at).unwrap_or_default());
        Ok(Some(booking))
    }

    /// Wakes the workers of `channels` after a commit made work due for them.
    fn wake(&self, channels: &[&'static str]) {
        for channel in channels {
            self.db.wake(channel);
        }
    }
}

/// Queues the email `kind` about `booking` (or records its suppression) and notes the
/// history event and the channel to wake.
pub async fn queue_email(
    db: &impl GenericClient,
    booking: &Booking,
    kind: EmailKind,
    suppress: bool,
    carrier: &Carrier,
    events: &mut Vec<Event>,
    channels: &mut Vec<&'static str>,
) -> Result<()> {
    if suppress {
        events.push(Event::new(EventType::EmailSuppressed, booking.version, json!({ "kind": kind.as_str() })));
        return Ok(());
    }
    let payload = EmailPayload::for_booking(booking);
    if store::outbox::enqueue(db, booking.id, booking.version, kind, &payload, carrier).await? {
        events.push(Event::new(EventType::EmailQueued, booking.version, json!({ "kind": kind.as_str() })));
        if !channels.contains(&store::outbox::CHANNEL) {
            channels.push(store::outbox::CHANNEL);
        }
    }
    Ok(())
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
    let detail = json!({ "reason": "every requested value equals the current one" });
    [Event::new(EventType::EditUnchanged, current.version, detail)]
}

/// The history of an edit that makes version `next`.
fn edited_events(next: &Booking, changes: Vec<FieldChange>, suppress_emails: bool) -> [Event; 1] {
    let changed: serde_json::Map<String, serde_json::Value> =
        changes.into_iter().map(|c| (c.field.to_string(), json!({ "from": c.from, "to": c.to }))).collect();
    let detail = json!({ "changes": changed, "suppress_emails": suppress_emails });
    [Event::new(EventType::Edited, next.version, detail)]
}

/// The stored form of an answered booking.
fn snapshot(booking: &Booking) -> Result<serde_json::Value> {
    serde_json::to_value(booking).map_err(|e| Error::corrupt(format!("answer snapshot: {e}")))
}

fn refused(refusal: Refusal, id: Uuid) -> Error {
    match refusal {
        Refusal::VersionMismatch { expected, current } => Error::VersionMismatch { expected, current },
        Refusal::Cancelled => Error::Cancelled(id),
    }
}

fn db(error: tokio_postgres::Error) -> Error {
    Error::from(error)
}
