//! The time budget of a call: the caller's deadline less a margin to answer in.
//!
//! PostgreSQL gets what is left as its lock and statement timeouts, no COMMIT is sent
//! once the budget passed, and a connection whose work the budget cut short leaves the
//! pool. It must never decide a rule.

use crate::error::Error;
use deadpool_postgres::{Object, Transaction};
use std::time::Duration;
use tokio::time::Instant;

/// The time one call may take: the caller's deadline less a margin to answer in.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub(super) end: Instant,
}

impl Budget {
    /// A budget for a call that must answer within `timeout` from now. The margin (a
    /// tenth, 5 to 50 ms) leaves time to roll back and answer before the caller gives up.
    pub fn within(timeout: Duration) -> Self {
        let margin = (timeout / 10).clamp(Duration::from_millis(5), Duration::from_millis(50));
        Self { end: Instant::now() + timeout.saturating_sub(margin) }
    }

    /// Time left.
    pub fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    /// Whether the budget is spent.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.end
    }

    /// The statement and lock timeout for PostgreSQL: the time left, less a little so the
    /// error comes back before the budget ends.
    pub(super) fn database_millis(&self) -> u64 {
        let remaining = self.remaining();
        let slack = (remaining / 10).min(Duration::from_millis(10));
        remaining.saturating_sub(slack).as_millis().max(1) as u64
    }
}

/// Commits unless the budget is already spent (then the transaction rolls back).
pub(super) async fn commit_within(tx: Transaction<'_>, budget: Budget) -> Result<(), Error> {
    if budget.passed() {
        tx.rollback().await?;
        return Err(Error::DeadlineExceeded);
    }
    tx.commit().await?;
    Ok(())
}

/// Settles work that ran on `client` under `timeout_at(budget)`. When the budget ran out
/// first, the connection leaves the pool (it may still be running the abandoned
/// statement) and the answer is `DeadlineExceeded`; PostgreSQL timeouts count the same.
pub(super) fn settle<T>(
    client: Object,
    result: Result<Result<T, Error>, tokio::time::error::Elapsed>,
) -> Result<T, Error> {
    if result.is_err() {
        drop(Object::take(client));
    }
    map_budget(result)
}

fn map_budget<T>(result: Result<Result<T, Error>, tokio::time::error::Elapsed>) -> Result<T, Error> {
    match result {
        Err(_) => Err(Error::DeadlineExceeded),
        Ok(Err(error)) if error.is_timeout() => Err(Error::DeadlineExceeded),
        Ok(other) => other,
    }
}
