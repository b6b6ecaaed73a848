//! One delivery attempt from end to end.
//!
//! Compose the message, hand it to the mail transport, decide what follows (sent, retry
//! later, failed) and record it in the ledger. Used by SendOnce for a key's first attempt
//! (recorded and attempted in one task) and by the delivery worker for every later one.
//!
//! The caller must own the attempt: the row is QUEUED with this attempt number and a
//! lease. An attempt always runs to its end as its own task (never cut short by a
//! caller's deadline), and shutdown waits for running attempts.

use crate::{
    domain::{AttemptFailure, Delivery, DeliveryState, Next, RetryPolicy, SendRequest, after_attempt},
    error::Error,
    mailer::Mailer,
    message::Composer,
    metrics::{AttemptOutcome, Metrics},
    store::{self, Recorded},
};
use platform::{backoff::Backoff, db::Database};
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{
    sync::{Notify, oneshot},
    task::JoinHandle,
};
use tracing::{Instrument, field::Empty};

/// How often recording an attempt's result is retried when the database hiccups (a sent
/// message whose result is lost would be sent again once its lease passes).
const RECORD_TRIES: u32 = 5;
const RECORD_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// Makes delivery attempts.
#[derive(Clone)]
pub struct Sender {
    database: Database,
    mailer: Mailer,
    composer: Arc<Composer>,
    policy: RetryPolicy,
    metrics: Metrics,
    in_flight: InFlight,
}

impl Sender {
    /// A sender through `mailer`, retrying transient failures per `policy`.
    pub fn new(database: Database, mailer: Mailer, composer: Composer, policy: RetryPolicy, metrics: Metrics) -> Self {
        Self { database, mailer, composer: Arc::new(composer), policy, metrics, in_flight: InFlight::default() }
    }

    /// Starts the attempt `delivery.attempts` as its own task; the result is the delivery
    /// as recorded afterwards. Dropping the handle does not stop the attempt.
    pub fn spawn(&self, delivery: Delivery) -> JoinHandle<Result<Delivery, Error>> {
        let sender = self.clone();
        let guard = self.in_flight.enter();
        tokio::spawn(
            async move {
                let _guard = guard;
                sender.attempt(delivery).await
            }
            .in_current_span(),
        )
    }

    /// Records `request` in the ledger and, when this call recorded a QUEUED key (the
    /// first call, not suppressed), makes the key's first attempt under the lease the
    /// insert took. Both run in one task of their own, so a caller that goes away (a
    /// deadline, a dropped connection) never leaves a recorded key unsent until its lease
    /// passes, nor an SMTP exchange half done.
    pub fn record_and_attempt(&self, request: SendRequest, lease: Duration) -> FirstCall {
        let (recorded_tx, recorded) = oneshot::channel();
        let sender = self.clone();
        let guard = self.in_flight.enter();
        let attempt = tokio::spawn(
            async move {
                let _guard = guard;
                let result = match sender.database.client().await {
                    Ok(client) => store::record(&client, &request, lease).await,
                    Err(error) => Err(error.into()),
                };
                let first = match &result {
                    Ok(Recorded::New(delivery)) if delivery.state == DeliveryState::Queued => Some(delivery.clone()),
                    _ => None,
                };
                // The caller may be gone; the attempt goes ahead regardless.
                let _ = recorded_tx.send(result);
                match first {
                    Some(delivery) => Some(sender.attempt(delivery).await),
                    None => None,
                }
            }
            .in_current_span(),
        );
        FirstCall { recorded, attempt }
    }

    /// Resolves once no attempt is running.
    pub async fn idle(&self) {
        self.in_flight.idle().await
    }

    /// Sends `delivery` (whose attempt number is `delivery.attempts`) and records the
    /// outcome; returns the delivery as recorded.
    #[tracing::instrument(skip_all, fields(
        booking.id = %delivery.key.booking_id,
        notification.kind = %delivery.key.kind,
        booking.version = delivery.key.version,
        delivery.attempt = delivery.attempts,
        delivery.state = Empty,
    ))]
    async fn attempt(&self, delivery: Delivery) -> Result<Delivery, Error> {
        let started = Instant::now();
        let result = match self.composer.compose(&delivery) {
            Ok(message) => self.mailer.send(message).await,
            Err(reason) => Err(AttemptFailure::Permanent(reason)),
        };
        let outcome = match &result {
            Ok(()) => AttemptOutcome::Sent,
            Err(AttemptFailure::Transient(_)) => AttemptOutcome::Transient,
            Err(AttemptFailure::Permanent(_)) => AttemptOutcome::Permanent,
        };
        self.metrics.attempt(outcome, started.elapsed());
        if let Err(failure) = &result {
            tracing::warn!(?failure, "delivery attempt failed");
        }
        let next = after_attempt(result, delivery.attempts, &self.policy, fastrand::f64());
        let recorded = self.record(&delivery, &next).await?;
        let current = match recorded {
            Some(recorded) => {
                self.metrics.finished(recorded.state);
                recorded
            }
            // Another attempt owns the row now (this one outlived its lease): report the
            // ledger as it stands.
            None => {
                let client = self.database.client().await?;
                store::get(&client, &delivery.key).await?.unwrap_or(delivery)
            }
        };
        tracing::Span::current().record("delivery.state", current.state.name());
        Ok(current)
    }

    /// Records `next` for the attempt, retrying transient database errors briefly.
    async fn record(&self, delivery: &Delivery, next: &Next) -> Result<Option<Delivery>, Error> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.record_once(delivery, next).await {
                Err(Error::Db(error)) if error.is_transient() && tries < RECORD_TRIES => {
                    tracing::warn!(%error, tries, "cannot record the delivery attempt yet; retrying");
                    tokio::time::sleep(RECORD_BACKOFF.delay(tries)).await;
                }
                other => return other,
            }
        }
    }

    async fn record_once(&self, delivery: &Delivery, next: &Next) -> Result<Option<Delivery>, Error> {
        let client = self.database.client().await?;
        let key = &delivery.key;
        match next {
            Next::Sent => store::record_sent(&client, key).await,
            Next::Retry { after, error } => store::record_retry(&client, key, delivery.attempts, *after, error).await,
            Next::Failed { error } => store::record_failed(&client, key, delivery.attempts, error).await,
        }
    }
}

/// The two results of [`Sender::record_and_attempt`].
pub struct FirstCall {
    /// What the ledger recorded (or already held) for the key.
    pub recorded: oneshot::Receiver<Result<Recorded, Error>>,
    /// The first attempt's delivery as recorded afterwards; `None` when this call made
    /// no attempt (a duplicate, a suppressed key, an error).
    pub attempt: JoinHandle<Option<Result<Delivery, Error>>>,
}

/// Counts running attempts so that shutdown can wait for them.
#[derive(Clone, Default)]
struct InFlight(Arc<InFlightCount>);

#[derive(Default)]
struct InFlightCount {
    running: AtomicUsize,
    idle: Notify,
}

/// One running attempt; dropping it ends the attempt's count.
struct InFlightGuard(Arc<InFlightCount>);

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0.running.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.0.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_every_running_attempt() {
        let in_flight = InFlight::default();
        in_flight.idle().await;
        let first = in_flight.enter();
        let second = in_flight.enter();
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.idle().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("idle after the last one").unwrap();
    }
}
