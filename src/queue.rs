//! The leased queue: a table of work items that workers claim with a lease.
//!
//! One implementation for every queue table shaped alike: a key, a state column whose
//! "open" value marks waiting items, a due-time column, and the columns `attempts`,
//! `locked_until`, `last_error` and `finished_at`. A claim takes due items nobody holds
//! (`FOR UPDATE SKIP LOCKED`, so replicas share the work), leases them and counts the
//! attempt, in one statement that commits on its own: no lock is held while the work
//! runs. An item then ends ([`LeasedQueue::finish`]) or waits again
//! ([`LeasedQueue::retry`]); an item whose holder died is claimed again once its lease
//! ran out.
//!
//! Each queue builds its SQL once ([`LeasedQueue::new`]) and prepares it with
//! `prepare_cached` on the connection it runs on. Table, column and state names come from
//! the code, never from a request. It maps no rows: a queue's store module does.

use deadpool_postgres::GenericClient;
use std::time::Duration;
use tokio_postgres::{Row, types::ToSql};

/// Which table a [`LeasedQueue`] works on, and how it reads it.
#[derive(Clone, Copy, Debug)]
pub struct QueueTable<'a> {
    /// The table, schema-qualified (`booking.outbox`).
    pub table: &'a str,
    /// The key columns (one or more).
    pub key: &'a [&'a str],
    /// The state column.
    pub state: &'a str,
    /// The state of an item that waits (`QUEUED`).
    pub open: &'a str,
    /// The column of the time an item is due.
    pub due: &'a str,
    /// What a claim returns: a `RETURNING` list over the table as `q` (and the joined
    /// table, if any); [`qualified`] makes one from plain column names.
    pub returning: &'a str,
    /// A table the claim reads too, with its join condition on `q`
    /// (`("booking.bookings b", "b.id = q.booking_id")`): its columns may be returned.
    pub join: Option<(&'a str, &'a str)>,
}

/// A `RETURNING` list of the queue table's `columns` (`"id, kind"` becomes `"q.id, q.kind"`).
pub fn qualified(columns: &str) -> String {
    columns.split(',').map(|column| format!("q.{}", column.trim())).collect::<Vec<_>>().join(", ")
}

/// A leased queue's statements, built once.
#[derive(Clone, Debug)]
pub struct LeasedQueue {
    claim: String,
    retry: String,
    finish: String,
    next_due: String,
}

impl LeasedQueue {
    /// The statements of the queue in `table`.
    pub fn new(table: QueueTable<'_>) -> Self {
        let QueueTable { table: name, key, state, open, due, returning, join } = table;
        let columns = key.join(", ");
        let (join_from, join_on) = match join {
            Some((from, on)) => (format!(", {from}"), format!(" AND {on}")),
            None => (String::new(), String::new()),
        };
        let same_key: Vec<String> = key.iter().map(|k| format!("q.{k} = due.{k}")).collect();
        let claim = format!(
            "WITH due AS ( \
               SELECT {columns} FROM {name} \
               WHERE {state} = '{open}' AND {due} <= now() AND (locked_until IS NULL OR locked_until <= now()) \
               ORDER BY {due} LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE {name} q SET locked_until = now() + $2::float8 * interval '1 second', attempts = q.attempts + 1 \
             FROM due{join_from} WHERE {}{join_on} RETURNING {returning}",
            same_key.join(" AND ")
        );
        let n = key.len();
        let by_key: Vec<String> = key.iter().enumerate().map(|(i, k)| format!("{k} = ${}", i + 1)).collect();
        let by_key = by_key.join(" AND ");
        let retry = format!(
            "UPDATE {name} SET {due} = now() + ${}::float8 * interval '1 second', locked_until = NULL, last_error = ${} \
             WHERE {by_key} AND {state} = '{open}'",
            n + 1,
            n + 2
        );
        let finish = format!(
            "UPDATE {name} SET {state} = ${}::text, finished_at = now(), locked_until = NULL, last_error = ${} \
             WHERE {by_key} AND {state} = '{open}'",
            n + 1,
            n + 2
        );
        let next_due = format!(
            "SELECT EXTRACT(EPOCH FROM min(GREATEST({due}, COALESCE(locked_until, {due}))) - now())::float8 \
             FROM {name} WHERE {state} = '{open}'"
        );
        Self { claim, retry, finish, next_due }
    }

    /// Claims up to `batch` due items nobody holds for `lease`, counting an attempt for
    /// each; the rows of [`QueueTable::returning`].
    pub async fn claim(
        &self,
        db: &impl GenericClient,
        batch: i64,
        lease: Duration,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = db.prepare_cached(&self.claim).await?;
        db.query(&statement, &[&batch, &lease.as_secs_f64()]).await
    }

    /// Lets the item `key` (its key columns' values, in order) wait `delay` for another
    /// try, released, with `error`; whether it was still open.
    pub async fn retry(
        &self,
        db: &impl GenericClient,
        key: &[&(dyn ToSql + Sync)],
        delay: Duration,
        error: &str,
    ) -> Result<bool, tokio_postgres::Error> {
        let statement = db.prepare_cached(&self.retry).await?;
        let delay = delay.as_secs_f64();
        let params: Vec<&(dyn ToSql + Sync)> = key.iter().copied().chain([&delay as _, &error as _]).collect();
        Ok(db.execute(&statement, &params).await? > 0)
    }

    /// Ends the item `key` in `state`, with `error` as its last error (`None` clears it);
    /// whether it was still open (an item already ended stays as it is).
    pub async fn finish(
        &self,
        db: &impl GenericClient,
        key: &[&(dyn ToSql + Sync)],
        state: &str,
        error: Option<&str>,
    ) -> Result<bool, tokio_postgres::Error> {
        let statement = db.prepare_cached(&self.finish).await?;
        let params: Vec<&(dyn ToSql + Sync)> = key.iter().copied().chain([&state as _, &error as _]).collect();
        Ok(db.execute(&statement, &params).await? > 0)
    }

    /// How long until an open item can be claimed: its due time or the end of its lease,
    /// whichever is later (zero when past; `None` when nothing is open).
    pub async fn next_due(&self, db: &impl GenericClient) -> Result<Option<Duration>, tokio_postgres::Error> {
        let statement = db.prepare_cached(&self.next_due).await?;
        let seconds: Option<f64> = db.query_one(&statement, &[]).await?.try_get(0)?;
        Ok(seconds.map(due_in))
    }
}

/// A wait in seconds as PostgreSQL computed it: zero when past, the longest duration when
/// too long to represent.
fn due_in(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASKS: QueueTable<'static> = QueueTable {
        table: "work.tasks",
        key: &["task_id"],
        state: "status",
        open: "WAITING",
        due: "run_at",
        returning: "q.task_id, q.attempts",
        join: None,
    };

    fn words(sql: &str) -> String {
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn builds_the_claim_with_and_without_a_join() {
        let plain = LeasedQueue::new(TASKS);
        assert_eq!(
            words(&plain.claim),
            "WITH due AS ( SELECT task_id FROM work.tasks WHERE status = 'WAITING' AND run_at <= now() \
             AND (locked_until IS NULL OR locked_until <= now()) ORDER BY run_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE work.tasks q SET locked_until = now() + $2::float8 * interval '1 second', \
             attempts = q.attempts + 1 FROM due WHERE q.task_id = due.task_id RETURNING q.task_id, q.attempts"
        );
        let joined = LeasedQueue::new(QueueTable {
            returning: "q.task_id, o.name",
            join: Some(("work.owners o", "o.id = q.owner_id")),
            ..TASKS
        });
        assert!(
            words(&joined.claim).ends_with(
                "FROM due, work.owners o WHERE q.task_id = due.task_id AND o.id = q.owner_id RETURNING q.task_id, o.name"
            ),
            "{}",
            joined.claim
        );
    }

    #[test]
    fn numbers_parameters_after_every_key_column() {
        let composite = LeasedQueue::new(QueueTable { key: &["owner_id", "kind", "n"], ..TASKS });
        assert!(
            words(&composite.claim)
                .contains("WHERE q.owner_id = due.owner_id AND q.kind = due.kind AND q.n = due.n RETURNING")
        );
        assert_eq!(
            words(&composite.retry),
            "UPDATE work.tasks SET run_at = now() + $4::float8 * interval '1 second', locked_until = NULL, \
             last_error = $5 WHERE owner_id = $1 AND kind = $2 AND n = $3 AND status = 'WAITING'"
        );
        assert_eq!(
            words(&LeasedQueue::new(TASKS).finish),
            "UPDATE work.tasks SET status = $2::text, finished_at = now(), locked_until = NULL, \
             last_error = $3 WHERE task_id = $1 AND status = 'WAITING'"
        );
        assert_eq!(
            words(&LeasedQueue::new(TASKS).next_due),
            "SELECT EXTRACT(EPOCH FROM min(GREATEST(run_at, COALESCE(locked_until, run_at))) - now())::float8 \
             FROM work.tasks WHERE status = 'WAITING'"
        );
    }

    #[test]
    fn qualifies_plain_column_names() {
        assert_eq!(qualified("booking_id, kind,  version"), "q.booking_id, q.kind, q.version");
    }

    #[test]
    fn a_due_time_in_the_past_is_due_now() {
        assert_eq!(due_in(-3.5), Duration::ZERO);
        assert_eq!(due_in(1.25), Duration::from_millis(1250));
        assert_eq!(due_in(f64::INFINITY), Duration::MAX);
    }
}
