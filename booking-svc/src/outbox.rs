//! The outbox: queueing a booking's emails, and the worker that sends them.
//!
//! The worker is the ONLY caller of notify-svc. It claims a batch of due emails with
//! `FOR UPDATE SKIP LOCKED` and a lease (committed before any call), drops emails about a
//! version that is no longer current, calls `SendOnce` with a deadline for the others,
//! then marks the batch's rows done with their history events in one statement, and
//! retries failures with capped exponential backoff. It runs on the shared worker loop
//! ([`platform::worker`]), woken in-process by the flows that queue emails, by
//! `NOTIFY booking_outbox` from other replicas, and by a timer for the next due row.
//! `SendOnce` is idempotent per (booking, kind, version), so a retry after a crash sends
//! nothing twice.

use crate::{
    crash::{CrashHook, CrashPoint},
    domain::{
        Booking, Detail, EmailKind, Event,
        emails::{EmailPayload, Staleness, staleness},
    },
    error::Error,
    metrics::Metrics,
    store::{
        self, Carrier,
        outbox::{ClaimedEmail, FinishedEmail},
    },
};
use deadpool_postgres::GenericClient;
use platform::{
    backoff::Backoff,
    db::Database,
    grpc::Channel,
    proto::{
        duration,
        notify::v1::{self as pb, notify_service_client::NotifyServiceClient},
        timestamp,
    },
    telemetry::link_to_carrier,
    worker::{self, Outcome, Schedule},
};
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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
) -> Result<(), Error> {
    if suppress {
        events.push(Event::new(booking.version.get(), Detail::EmailSuppressed { kind }));
        return Ok(());
    }
    let payload = EmailPayload::for_booking(booking);
    if store::outbox::enqueue(db, booking.id.uuid(), booking.version.get(), kind, &payload, carrier).await? {
        events.push(Event::new(booking.version.get(), Detail::EmailQueued { kind }));
        if !channels.contains(&store::outbox::CHANNEL) {
            channels.push(store::outbox::CHANNEL);
        }
    }
    Ok(())
}

/// Settings of the outbox worker.
#[derive(Clone, Copy, Debug)]
pub struct OutboxSettings {
    pub lease: Duration,
    pub backoff: Backoff,
    pub send_timeout: Duration,
    pub poll: Duration,
    pub batch: i64,
}

/// The outbox worker; run with [`OutboxWorker::run`].
#[derive(Clone)]
pub struct OutboxWorker {
    db: Database,
    notify: NotifyServiceClient<Channel>,
    settings: OutboxSettings,
    metrics: Arc<Metrics>,
    crash: CrashHook,
}

impl OutboxWorker {
    pub fn new(
        db: Database,
        notify: NotifyServiceClient<Channel>,
        settings: OutboxSettings,
        metrics: Arc<Metrics>,
        crash: CrashHook,
    ) -> Self {
        Self { db, notify, settings, metrics, crash }
    }

    /// Dispatches due emails until `shutdown`; the batch in hand is finished first. The
    /// queue's gauges are refreshed every second.
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.db.listen(store::outbox::CHANNEL, shutdown.clone());
        let schedule =
            Schedule::new(self.settings.poll, self.settings.backoff).with_housekeeping_every(Duration::from_secs(1));
        worker::run(&self, schedule, &wake, &shutdown).await;
    }
}

impl worker::Worker for OutboxWorker {
    type Error = Error;
    const NAME: &'static str = "outbox";

    /// Claims one batch and dispatches it.
    async fn pass(&self) -> Result<Outcome, Error> {
        let claimed = {
            let client = self.db.client().await?;
            store::outbox::claim(&client, self.settings.batch, self.settings.lease).await?
        };
        if claimed.is_empty() {
            return Ok(Outcome::Idle);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for email in claimed {
            let worker = self.clone();
            tasks.spawn(async move { worker.dispatch(email).await });
        }
        let mut finished = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(Some(email))) => finished.push(email),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => tracing::warn!(%error, "recording an email dispatch failed; it will be retried"),
                Err(error) => tracing::error!(%error, "email dispatch task failed"),
            }
        }
        // One statement ends the whole batch (a row left queued by a failure here is
        // dispatched again after its lease: SendOnce answers it as a duplicate).
        let client = self.db.client().await?;
        store::outbox::finish(&client, &finished).await?;
        Ok(Outcome::Worked)
    }

    async fn next_due(&self) -> Result<Option<Duration>, Error> {
        let client = self.db.client().await?;
        store::outbox::next_due(&client).await
    }

    /// Refreshes the queue depth and age gauges.
    async fn housekeeping(&self) {
        if let Ok(client) = self.db.client().await
            && let Ok((depth, age)) = store::outbox::depth(&client).await
        {
            self.metrics.set_outbox(depth, Duration::from_secs_f64(age.max(0.0)));
        }
    }
}

impl OutboxWorker {
    /// Sends one claimed email (or drops it when stale) in its own root span linked to the
    /// request that queued it; how its row ends, unless it stays queued for a retry.
    async fn dispatch(&self, email: ClaimedEmail) -> Result<Option<FinishedEmail>, Error> {
        let span = tracing::info_span!(
            parent: None,
            "outbox.dispatch",
            otel.kind = "consumer",
            booking.id = %email.booking_id,
            booking.version = email.version,
            notification.kind = email.kind.as_str(),
            attempt = email.attempts,
            delivery.state = tracing::field::Empty,
        );
        link_to_carrier(&span, &email.carrier);
        self.dispatch_in_span(email).instrument(span).await
    }

    async fn dispatch_in_span(&self, email: ClaimedEmail) -> Result<Option<FinishedEmail>, Error> {
        let kind = email.kind.as_str();
        let drop_reason = match staleness(email.kind, email.version, email.current_version, email.current_status) {
            Staleness::Current => None,
            Staleness::Superseded { current_version } => {
                Some(format!("version {} was superseded by version {current_version}", email.version))
            }
            Staleness::Cancelled => Some("the booking was cancelled".to_string()),
        };
        // A retry may follow a SendOnce that reached notify-svc although its answer never
        // came back (a timeout, a crash after sending): a stale retry is not simply dropped
        // but fenced with a suppressing SendOnce, which makes the key never go out unless
        // that earlier call recorded it first, and answers which of the two happened.
        let fence = drop_reason.is_some() && email.attempts > 1;
        if let Some(reason) = drop_reason.clone().filter(|_| !fence) {
            return Ok(Some(self.dropped(&email, reason)));
        }
        self.crash.reached(CrashPoint::OutboxBeforeSend);
        let p = &email.payload;
        let previous = p.previous(email.kind);
        let mut request = tonic::Request::new(pb::SendOnceRequest {
            booking_id: email.booking_id.to_string(),
            kind: notification_kind(email.kind) as i32,
            version: email.version,
            recipient: Some(pb::Recipient { email: p.recipient_email.clone(), name: p.recipient_name.clone() }),
            details: Some(pb::Details {
                restaurant_name: p.restaurant_name.clone(),
                start_time: Some(timestamp(p.start_time)),
                duration: Some(duration(p.duration)),
                party_size: p.party_size,
                table_ids: p.table_ids.clone(),
                notes: p.notes.clone(),
                time_zone: p.time_zone.clone(),
                address: p.address.clone(),
                previous_start_time: previous.map(|(start, _)| timestamp(start)),
                previous_party_size: previous.map(|(_, party)| party).unwrap_or_default(),
            }),
            suppress: fence,
        });
        request.set_timeout(self.settings.send_timeout);
        let mut client = self.notify.clone();
        let sent = tokio::time::timeout(self.settings.send_timeout, client.send_once(request)).await;
        self.crash.reached(CrashPoint::OutboxAfterSend);
        match sent {
            Ok(Ok(response)) => {
                let response = response.into_inner();
                let delivery = response.delivery.unwrap_or_default();
                let suppressed = !response.duplicate || delivery.state == pb::DeliveryState::Suppressed as i32;
                if let Some(reason) = drop_reason.filter(|_| suppressed) {
                    return Ok(Some(self.dropped(&email, reason)));
                }
                let state = pb::DeliveryState::try_from(delivery.state)
                    .map(|s| s.as_str_name().trim_start_matches("DELIVERY_STATE_").to_string())
                    .unwrap_or_else(|_| "UNKNOWN".into());
                tracing::Span::current().record("delivery.state", state.as_str());
                let detail = Detail::EmailDispatched {
                    kind: email.kind,
                    state,
                    duplicate: response.duplicate,
                    attempts: email.attempts,
                    message_id: delivery.message_id,
                };
                self.metrics.email(kind, "dispatched");
                Ok(Some(finished(&email, "DONE", None, Event::new(email.version, detail))))
            }
            Ok(Err(status))
                if matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition) =>
            {
                let reason = format!("refused by notify-svc: {:?}: {}", status.code(), status.message());
                tracing::error!(%reason, "email refused permanently");
                let detail = Detail::EmailDropped { kind: email.kind, reason: reason.clone(), current_version: None };
                self.metrics.email(kind, "failed");
                let event = Event::new(email.version, detail);
                Ok(Some(finished(&email, "FAILED", Some(reason), event)))
            }
            other => {
                let error = match other {
                    Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
                    _ => format!("no answer within {:?}", self.settings.send_timeout),
                };
                let delay = self.settings.backoff.delay(email.attempts.max(1) as u32);
                tracing::warn!(%error, retry_in = ?delay, "SendOnce failed; will retry");
                let client = self.db.client().await?;
                store::outbox::retry(&client, email.id, delay, &error).await?;
                self.metrics.email(kind, "retried");
                Ok(None)
            }
        }
    }

    /// Ends a stale email's row without it having gone out.
    fn dropped(&self, email: &ClaimedEmail, reason: String) -> FinishedEmail {
        self.metrics.email(email.kind.as_str(), "dropped");
        tracing::info!(%reason, "stale email dropped");
        let detail = Detail::EmailDropped {
            kind: email.kind,
            reason: reason.clone(),
            current_version: Some(email.current_version),
        };
        finished(email, "DROPPED", Some(reason), Event::new(email.version, detail))
    }
}

/// How a dispatched email's row ends.
fn finished(email: &ClaimedEmail, state: &'static str, error: Option<String>, event: Event) -> FinishedEmail {
    FinishedEmail { id: email.id, booking_id: email.booking_id, state, error, event }
}

fn notification_kind(kind: EmailKind) -> pb::NotificationKind {
    use crate::domain::EmailKind::*;
    match kind {
        BookingPending => pb::NotificationKind::BookingPending,
        BookingConfirmed => pb::NotificationKind::BookingConfirmed,
        ModificationRequested => pb::NotificationKind::ModificationRequested,
        ModificationConfirmed => pb::NotificationKind::ModificationConfirmed,
        BookingCancelled => pb::NotificationKind::BookingCancelled,
    }
}
