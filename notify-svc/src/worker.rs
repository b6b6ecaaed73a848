//! The delivery worker: retries every delivery that waits.
//!
//! Claims due QUEUED deliveries (`FOR UPDATE SKIP LOCKED` plus a lease, committed before
//! sending), sends them and records the results. It runs on the shared worker loop
//! ([`platform::worker`]): it sleeps until the next delivery is due, a `NOTIFY` arrives,
//! or its poll interval passes. Any number of replicas run one each and share the work.
//!
//! It never holds a lock or transaction across a send, and stops after its current round
//! when shutdown is signalled.

use crate::{error::Error, sender::Sender, store};
use platform::{
    backoff::Backoff,
    db::Database,
    worker::{self, Outcome, Schedule},
};
use std::{sync::Arc, time::Duration};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Shortest pause between two rounds that found nothing to claim (a due row may be held
/// by another replica's claim for a moment).
const MIN_PAUSE: Duration = Duration::from_millis(10);
/// Pauses after database errors.
const ERROR_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// The worker's settings.
#[derive(Clone, Copy, Debug)]
pub struct WorkerSettings {
    /// How long a claimed delivery is leased.
    pub lease: Duration,
    /// Most deliveries claimed per round.
    pub batch: u32,
    /// Longest idle pause.
    pub poll: Duration,
}

/// One replica's delivery worker.
pub struct Worker {
    database: Database,
    sender: Sender,
    settings: WorkerSettings,
}

impl Worker {
    /// A worker sending through `sender`.
    pub fn new(database: Database, sender: Sender, settings: WorkerSettings) -> Self {
        Self { database, sender, settings }
    }

    /// Runs rounds until `shutdown`; `wake` is notified on `NOTIFY notify_deliveries`.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        tracing::info!(lease = ?self.settings.lease, batch = self.settings.batch, "delivery worker started");
        let schedule = Schedule::new(self.settings.poll, ERROR_BACKOFF).with_min_idle(MIN_PAUSE);
        worker::run(&self, schedule, &wake, &shutdown).await;
    }
}

impl worker::Worker for Worker {
    type Error = Error;
    const NAME: &'static str = "delivery";

    /// Claims due deliveries and attempts them all (concurrently).
    #[tracing::instrument(name = "round", skip_all, fields(claimed = tracing::field::Empty))]
    async fn pass(&self) -> Result<Outcome, Error> {
        let claimed = {
            let client = self.database.client().await?;
            store::claim_due(&client, self.settings.batch, self.settings.lease).await?
        };
        if claimed.is_empty() {
            return Ok(Outcome::Idle);
        }
        let count = claimed.len();
        tracing::Span::current().record("claimed", count);
        let attempts: Vec<_> = claimed.into_iter().map(|delivery| self.sender.spawn(delivery)).collect();
        for attempt in attempts {
            match attempt.await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!(%error, "delivery attempt not recorded; retried after its lease"),
                Err(error) => tracing::error!(%error, "delivery attempt task failed"),
            }
        }
        Ok(Outcome::Worked)
    }

    async fn next_due(&self) -> Result<Option<Duration>, Error> {
        let client = self.database.client().await?;
        store::next_due_in(&client).await
    }
}
