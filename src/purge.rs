//! The purge: deletes finished rows once they are older than their retention.
//!
//! One implementation for every table that keeps rows only for a while (idempotency keys,
//! finished queue items, rows of ended slots). It deletes in small batches, oldest first,
//! each batch one short statement of its own (with the rows that depend on each deleted
//! one), so no purge holds many row locks or a long transaction. [`PurgeWorker`] runs a
//! service's purges on the [`crate::worker`] loop every quarter of the shortest retention.
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
    /// The column (or expression of the row) whose age counts (`created_at`,
    /// `finished_at`, `upper(during)`).
    pub age: &'static str,
    /// The condition a row must meet to be purged besides its age (`state <> 'QUEUED'`);
    /// `None` when every row ends after its retention.
    pub finished: Option<&'static str>,
    /// Rows of other tables deleted in the same statement with each purged row, as
    /// (table, column holding the purged row's key); the key must be one column.
    pub with: &'static [(&'static str, &'static str)],
}

/// A purge's statement, built once.
#[derive(Clone, Debug)]
pub struct Purge {
    delete: String,
}

impl Purge {
    /// The purge of `table`.
    pub fn new(table: PurgeTable) -> Self {
        let PurgeTable { table, key, age, finished, with } = table;
        let key = key.join(", ");
        let finished = finished.map(|condition| format!("{condition} AND ")).unwrap_or_default();
        let dependents: String = with
            .iter()
            .enumerate()
            .map(|(i, (other, column))| {
                format!(", with_{i} AS (DELETE FROM {other} WHERE {column} IN (SELECT {key} FROM gone))")
            })
            .collect();
        // Foreign keys are checked at the end of the statement, when the dependents are gone.
        let delete = format!(
            "WITH gone AS (DELETE FROM {table} WHERE ({key}) IN ( \
               SELECT {key} FROM {table} \
               WHERE {finished}{age} < now() - $1::float8 * interval '1 second' ORDER BY {age} LIMIT $2) \
             RETURNING {key}){dependents} \
             SELECT count(*) FROM gone"
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
        let row = db.query_one(&statement, &[&retention.as_secs_f64(), &batch]).await?;
        Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
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

/// One table's purge and how long its rows are kept.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub purge: &'static Purge,
    /// Rows older than this (past their age column) are purged.
    pub keep: Duration,
    /// What the rows are, for the log ("idempotency keys").
    pub what: &'static str,
}

/// A worker that purges a service's tables on the [`crate::worker`] loop until shutdown:
/// first one interval after start (when the schema is surely migrated), then every
/// [`interval`] of the shortest retention.
pub struct PurgeWorker {
    db: Database,
    tables: Vec<Retention>,
}

impl PurgeWorker {
    /// Purges each of `tables` past its retention.
    pub fn new(db: Database, tables: Vec<Retention>) -> Self {
        Self { db, tables }
    }

    /// Purges every table once now; the rows purged, per table in order.
    pub async fn purge_now(&self) -> Result<Vec<u64>, DbError> {
        let client = self.db.client().await?;
        Ok(purge_all(&client, &self.tables).await?)
    }

    /// Purges until `shutdown`; the purge in hand finishes first.
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(shortest) = self.tables.iter().map(|table| table.keep).min() else { return };
        let every = interval(shortest);
        let schedule = Schedule::new(every, Backoff::new(every, every)).with_first_pass_after(every);
        worker::run(&self, schedule, &Notify::new(), &shutdown).await;
    }
}

impl worker::Worker for PurgeWorker {
    type Error = DbError;
    const NAME: &'static str = "purge";

    async fn pass(&self) -> Result<Outcome, DbError> {
        self.purge_now().await?;
        Ok(Outcome::Idle)
    }

    async fn next_due(&self) -> Result<Option<Duration>, DbError> {
        Ok(None)
    }
}

/// Purges each of `tables` once on `db`; the rows purged, per table in order.
pub async fn purge_all(db: &impl GenericClient, tables: &[Retention]) -> Result<Vec<u64>, tokio_postgres::Error> {
    let mut purged = Vec::with_capacity(tables.len());
    for table in tables {
        let rows = table.purge.all(db, table.keep, BATCH).await?;
        if rows > 0 {
            tracing::info!(purged = rows, "{} past their retention purged", table.what);
        }
        purged.push(rows);
    }
    Ok(purged)
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
            with: &[],
        });
        assert_eq!(
            words(&keys.delete),
            "WITH gone AS (DELETE FROM booking.idempotency WHERE (rpc, key) IN ( SELECT rpc, key FROM booking.idempotency \
             WHERE created_at < now() - $1::float8 * interval '1 second' ORDER BY created_at LIMIT $2) \
             RETURNING rpc, key) SELECT count(*) FROM gone"
        );
        let finished = Purge::new(PurgeTable {
            table: "booking.outbox",
            key: &["id"],
            age: "finished_at",
            finished: Some("state <> 'QUEUED'"),
            with: &[],
        });
        assert!(words(&finished.delete).contains("WHERE state <> 'QUEUED' AND finished_at < now()"));
    }

    #[test]
    fn deletes_the_dependent_rows_in_the_same_statement() {
        let bookings = Purge::new(PurgeTable {
            table: "booking.bookings",
            key: &["id"],
            age: "created_at",
            finished: None,
            with: &[("booking.history", "booking_id"), ("booking.outbox", "booking_id")],
        });
        assert!(words(&bookings.delete).ends_with(
            "RETURNING id), with_0 AS (DELETE FROM booking.history WHERE booking_id IN (SELECT id FROM gone)), \
             with_1 AS (DELETE FROM booking.outbox WHERE booking_id IN (SELECT id FROM gone)) SELECT count(*) FROM gone"
        ));
    }
}
