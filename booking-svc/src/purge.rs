//! The purge worker, which keeps the idempotency keys bounded.
//!
//! A key answers its first result for the configured retention, then this worker deletes
//! it (in small batches, oldest first, so no pass holds many row locks or a long
//! transaction). A request repeating a purged key is a new request.

use crate::{error::Error, store};
use platform::db::Database;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Keys deleted per statement.
const BATCH: i64 = 500;

/// The purge worker; run with [`KeyPurge::run`].
pub struct KeyPurge {
    db: Database,
    retention: Duration,
}

impl KeyPurge {
    pub fn new(db: Database, retention: Duration) -> Self {
        Self { db, retention }
    }

    /// Purges expired keys every [`interval`] until `shutdown` (first one interval after
    /// start, when the schema is surely migrated).
    pub async fn run(self, shutdown: CancellationToken) {
        let never = Notify::new();
        let every = interval(self.retention);
        while !shutdown.is_cancelled() {
            platform::shutdown::pause(&never, every, &shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            match self.pass().await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "idempotency keys past their retention purged"),
                Err(error) => tracing::warn!(%error, "purging idempotency keys failed; will retry"),
            }
        }
        tracing::info!("idempotency key purge stopped");
    }

    async fn pass(&self) -> Result<u64, Error> {
        let client = self.db.client().await?;
        let mut purged = 0;
        loop {
            let deleted = store::idempotency::purge(&client, self.retention, BATCH).await?;
            purged += deleted;
            if deleted < BATCH as u64 {
                return Ok(purged);
            }
        }
    }
}

/// How often to purge: a quarter of the retention (so a key outlives it by at most a
/// quarter), at least every hour, at most every second.
fn interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3_600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purges_a_quarter_of_the_retention_apart_within_a_second_and_an_hour() {
        assert_eq!(interval(Duration::from_secs(604_800)), Duration::from_secs(3_600));
        assert_eq!(interval(Duration::from_secs(600)), Duration::from_secs(150));
        assert_eq!(interval(Duration::from_secs(2)), Duration::from_secs(1));
    }
}
