//! Applying one update of the Reassign stream.
//!
//! The update is recorded in the history and its decision carried out, in one transaction
//! under the booking's row lock. ASSIGNED for the current version confirms the booking and
//! queues the confirmation email; whatever the number of replicas or repeated updates,
//! that happens once.

use super::Dispatcher;
use crate::{
    crash::CrashPoint,
    domain::{
        Detail, EmailKind, Event,
        changes::{Change, ChangeType},
        history::Confirmation,
        reassign::{Decision, UpdateState, decide},
        values::truncate_to_micros,
    },
    error::Error,
    outbox::queue_email,
    store::{self, Carrier},
};
use platform::{
    proto::{
        assign::v1::{ReassignResponse, ReassignState},
        system_time,
    },
    telemetry::link_to_carrier,
};
use std::time::SystemTime;
use tracing::Instrument;
use uuid::Uuid;

impl Dispatcher {
    /// Records one update and applies its decision in one transaction.
    pub(super) async fn on_update(&mut self, update: ReassignResponse) {
        let Ok(booking_id) = Uuid::parse_str(&update.booking_id) else {
            tracing::warn!(booking.id = %update.booking_id, "Reassign update with a malformed booking id");
            return;
        };
        let Some(tracked) = self.tracked.get(&booking_id) else {
            tracing::debug!(booking.id = %booking_id, "Reassign update for a job this process does not track");
            return;
        };
        let state = match ReassignState::try_from(update.state) {
            Ok(ReassignState::Retrying) => {
                UpdateState::Retrying { next_attempt_at: update.next_attempt_at.as_ref().and_then(system_time) }
            }
            Ok(ReassignState::Assigned) => UpdateState::Assigned {
                table_ids: update.assignment.as_ref().map(|a| a.table_ids.clone()).unwrap_or_default(),
            },
            Ok(ReassignState::Superseded) => UpdateState::Superseded,
            Ok(ReassignState::GaveUp) => UpdateState::GaveUp,
            _ => {
                tracing::warn!(booking.id = %booking_id, state = update.state, "Reassign update with an unknown state");
                return;
            }
        };
        if matches!(state, UpdateState::Assigned { .. }) {
            self.crash.reached(CrashPoint::ReassignAfterUpdate);
        }
        let span = tracing::info_span!(
            parent: None,
            "reassign.update",
            booking.id = %booking_id,
            booking.version = update.version,
            reassign.state = state.as_str(),
            reassign.attempt = update.attempt,
            decision = tracing::field::Empty,
        );
        link_to_carrier(&span, &tracked.carrier);
        link_to_carrier(&span, &update.trace_context);
        let tracked_version = tracked.version;
        let (created_at, carrier) = (tracked.created_at, tracked.carrier.clone());
        let result = self.apply_update(booking_id, &update, &state, created_at, &carrier).instrument(span).await;
        match result {
            Ok(decision) => {
                let finished = !matches!(decision, Decision::RecordAttempt);
                if let Some(t) = self.tracked.get_mut(&booking_id) {
                    t.attempts = t.attempts.max(update.attempt);
                }
                if finished && update.version >= tracked_version {
                    self.tracked.remove(&booking_id);
                }
                if matches!(decision, Decision::Confirm { .. }) {
                    self.crash.reached(CrashPoint::ReassignAfterConfirm);
                }
            }
            Err(error) => {
                // Not recorded: the job stays open and leased; assign-svc answers again on
                // the next resubmit (ASSIGNED at once when assigned meanwhile).
                tracing::warn!(booking.id = %booking_id, %error, "recording a Reassign update failed");
            }
        }
    }

    async fn apply_update(
        &self,
        booking_id: Uuid,
        update: &ReassignResponse,
        state: &UpdateState,
        created_at: SystemTime,
        carrier: &Carrier,
    ) -> Result<Decision, Error> {
        let now = truncate_to_micros(SystemTime::now());
        let version = update.version;
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let Some(booking) = store::bookings::lock(&tx, booking_id).await? else { return Ok(Decision::Stale) };
        let job = store::jobs::get(&tx, booking_id, version).await?;
        let job_open = job.as_ref().is_some_and(|j| j.open);
        let decision = decide(state, version, booking.version.get(), booking.status, job_open);
        tracing::Span::current().record("decision", tracing::field::debug(&decision));
        let detail =
            Detail::reassign_update(state, update.attempt, &update.last_error, &decision, booking.version.get());
        let mut events = vec![Event::new(version, detail)];
        let mut channels = vec![];
        let suppress = job.as_ref().is_some_and(|j| j.suppress_emails);
        let attempts = job.as_ref().map_or(update.attempt, |j| j.attempts.max(update.attempt));
        match &decision {
            Decision::Confirm { table_ids } => {
                let (confirmed, requested_at) = store::bookings::set_status(
                    &tx,
                    booking_id,
                    crate::domain::BookingStatus::Confirmed,
                    table_ids,
                    now,
                )
                .await?;
                store::jobs::close(&tx, booking_id, version, crate::domain::reassign::JobState::Assigned).await?;
                store::changes::record(&tx, booking_id, &Change::between(ChangeType::Confirmed, &booking, &confirmed))
                    .await?;
                channels.push(store::changes::CHANNEL);
                store::jobs::record_attempt(&tx, booking_id, version, attempts, None, "").await?;
                let confirmation = Confirmation::Background { table_ids: table_ids.clone(), attempts };
                events.push(Event::new(version, Detail::Confirmed(confirmation)));
                queue_email(
                    &tx,
                    &confirmed,
                    EmailKind::confirmation(version),
                    suppress,
                    carrier,
                    &mut events,
                    &mut channels,
                )
                .await?;
                self.metrics.confirmed("background", now.duration_since(requested_at).unwrap_or_default());
            }
            Decision::RecordAttempt => {
                let next = match state {
                    UpdateState::Retrying { next_attempt_at } => *next_attempt_at,
                    _ => None,
                };
                store::jobs::record_attempt(&tx, booking_id, version, update.attempt, next, &update.last_error).await?;
            }
            Decision::Close(job_state) => {
                store::jobs::close(&tx, booking_id, version, *job_state).await?;
                store::jobs::record_attempt(&tx, booking_id, version, attempts, None, &update.last_error).await?;
            }
            Decision::Stale => {}
        }
        store::history::append(&tx, booking_id, &events).await?;
        tx.commit().await?;
        for channel in channels {
            self.db.wake(channel);
        }
        if !matches!(decision, Decision::RecordAttempt | Decision::Stale) {
            let outcome = match &decision {
                Decision::Confirm { .. } => "confirmed",
                Decision::Close(s) => s.as_str(),
                _ => "",
            };
            tracing::info!(
                booking.id = %booking_id,
                booking.version = version,
                attempts,
                total_wait_ms = now.duration_since(created_at).unwrap_or_default().as_millis() as u64,
                outcome,
                "auto-assign finished"
            );
        }
        Ok(decision)
    }
}
