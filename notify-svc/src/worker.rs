//! The delivery worker: retries every delivery that waits.
//!
//! Claims due QUEUED deliveries (`FOR UPDATE SKIP LOCKED` plus a lease, committed before
//! sending), sends them, records the results, and sleeps until the next delivery is due,
//! a `NOTIFY` arrives, or its poll interval passes. Any number of replicas run one each
//! and share the work.
//!
//! It never holds a lock or transaction across a send, and stops after its current round
//! when shutdown is signalled.

use crate::{error::Error, sender::Sender, store};
use platform::{backoff::Backoff, db::Database};
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

/// What one round did.
enum Round {
    /// Claimed and attempted some deliveries.
    Worked,
    /// Nothing was due; the next one is due in this long (`None`: nothing queued).
    Idle(Option<Duration>),
}

impl Worker {
    /// A worker sending through `sender`.
    pub fn new(database: Database, sender: Sender, settings: WorkerSettings) -> Self {
        Self { database, sender, settings }
    }

    /// Runs rounds until `shutdown`; `wake` is notified on `NOTIFY notify_deliveries`.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let mut failures = 0;
        tracing::info!(lease = ?self.settings.lease, batch = self.settings.batch, "delivery worker started");
        while !shutdown.is_cancelled() {
            let pause = match self.round().await {
                Ok(Round::Worked) => {
                    failures = 0;
                    continue;
                }
                Ok(Round::Idle(next_due)) => {
                    failures = 0;
                    next_due.map_or(self.settings.poll, |due| due.min(self.settings.poll)).max(MIN_PAUSE)
                }
                Err(error) => {
                    failures += 1;
                    let pause = ERROR_BACKOFF.delay(failures);
                    tracing::warn!(%error, failures, retry_in = ?pause, "delivery worker round failed");
                    pause
                }
            };
            platform::shutdown::pause(&wake, pause, &shutdown).await;
        }
        tracing::info!("delivery worker stopped");
    }

    /// Claims due deliveries and attempts them all (concurrently), or reports when the
    /// next one is due.
    #[tracing::instrument(skip_all, fields(claimed = tracing::field::Empty))]
    async fn round(&self) -> Result<Round, Error> {
        let claimed = {
            let client = self.database.client().await?;
            let claimed = store::claim_due(&client, self.settings.batch, self.settings.lease).await?;
            if claimed.is_empty() {
                return Ok(Round::Idle(store::next_due_in(&client).await?));
            }
            claimed
        };
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
        Ok(Round::Worked)
    }
}
