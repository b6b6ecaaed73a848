//! The purge: deletes finished rows once they are older than their retention.
//!
//! One implementation for every table that keeps rows only for a while (idempotency keys,
//! finished queue items). It deletes in small batches, oldest first, each batch one
//! short statement of its own, so no purge holds many row locks or a long transaction.
//! [`PurgeWorker`] runs it on the [`crate::worker`] loop every quarter of the retention.
//! It never decides what is finished: the table's owner says so in [`PurgeTable`].

use crate::{
    backoff::Backoff,
    db::{Database, DbError},
    worker::{self, Outcome, Schedule},
};
use deadpool_postgres::GenericClient;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Which rows of which table a [`Purge`] deletes.
#[derive(Clone, Copy, Debug)]
pub struct PurgeTable {
    /// The table, schema-qualified (`booking.idempotency`).
    pub table: &'static str,
    /// The key columns (one or more).
    pub key: &'static [&'static str],
    /// The column whose age counts (`created_at`, `finished_at`).
    pub age: &'static str,
    /// The condition a row must meet to be purged besides its age (`state <> 'QUEUED'`);
    /// `None` when every row ends after its retention.
    pub finished: Option<&'static str>,
}

/// A purge's statement, built once.
#[derive(Clone, Debug)]
pub struct Purge {
    delete: String,
}

impl Purge {
    /// The purge of `table`.
    pub fn new(table: PurgeTable) -> Self {
        let PurgeTable { table, key, age, finished } = table;
        let key = key.join(", ");
        let finished = finished.map(|condition| format!("{condition} AND ")).unwrap_or_default();
        let delete = format!(
            "DELETE FROM {table} WHERE ({key}) IN ( \
               SELECT {key} FROM {table} \
               WHERE {finished}{age} < now() - $1::float8 * interval '1 second' ORDER BY {age} LIMIT $2)"
        );
        Self { delete }
    }

    /// Deletes up to `batch` rows older than `retention`, oldest first; how many.
    pub async fn batch(
        &self,
        db: &impl GenericClient,
        retention: Duration,
        batch: i64,
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = db.prepare_cached(&self.delete).await?;
        db.execute(&statement, &[&retention.as_secs_f64(), &batch]).await
    }

    /// Deletes every row older than `retention`, `batch` rows per statement; how many.
    pub async fn all(
        &self,
        db: &impl GenericClient,
        retention: Duration,
        batch: i64,
    ) -> Result<u64, tokio_postgres::Error> {
        let mut purged = 0;
        loop {
            let deleted = self.batch(db, retention, batch).await?;
            purged += deleted;
            if deleted == 0 || deleted < u64::try_from(batch).unwrap_or(0) {
                return Ok(purged);
            }
        }
    }
}

/// Rows deleted per statement.
pub const BATCH: i64 = 500;

/// A worker that purges one table on the [`crate::worker`] loop until shutdown: first one
/// interval after start (when the schema is surely migrated), then every [`interval`].
pub struct PurgeWorker {
    db: Database,
    purge: &'static Purge,
    retention: Duration,
    /// What the rows are, for the log ("idempotency keys").
    what: &'static str,
}

impl PurgeWorker {
    /// Purges `purge`'s rows older than `retention`; `what` names them in the log.
    pub fn new(db: Database, purge: &'static Purge, retention: Duration, what: &'static str) -> Self {
        Self { db, purge, retention, what }
    }

    /// Purges until `shutdown`; the purge in hand finishes first.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = interval(self.retention);
        let schedule = Schedule::new(every, Backoff::new(every, every)).with_first_pass_after(every);
        worker::run(&self, schedule, &Notify::new(), &shutdown).await;
    }
}

impl worker::Worker for PurgeWorker {
    type Error = DbError;
    const NAME: &'static str = "purge";

    async fn pass(&self) -> Result<Outcome, DbError> {
        let client = self.db.client().await?;
        let purged = self.purge.all(&client, self.retention, BATCH).await?;
        if purged > 0 {
            tracing::info!(purged, "{} past their retention purged", self.what);
        }
        Ok(Outcome::Idle)
    }

    async fn next_due(&self) -> Result<Option<Duration>, DbError> {
        Ok(None)
    }
}

/// How often to purge: a quarter of the retention (so a row outlives it by at most a
/// quarter), at least every hour, at most every second.
pub fn interval(retention: Duration) -> Duration {
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

    fn words(sql: &str) -> String {
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn deletes_the_oldest_rows_in_one_batch_per_statement() {
        let keys = Purge::new(PurgeTable {
            table: "booking.idempotency",
            key: &["rpc", "key"],
            age: "created_at",
            finished: None,
        });
        assert_eq!(
            words(&keys.delete),
            "DELETE FROM booking.idempotency WHERE (rpc, key) IN ( SELECT rpc, key FROM booking.idempotency \
             WHERE created_at < now() - $1::float8 * interval '1 second' ORDER BY created_at LIMIT $2)"
        );
        let finished = Purge::new(PurgeTable {
            table: "booking.outbox",
            key: &["id"],
            age: "finished_at",
            finished: Some("state <> 'QUEUED'"),
        });
        assert!(words(&finished.delete).contains("WHERE state <> 'QUEUED' AND finished_at < now()"));
    }
}
