//! Transactions in few round trips: [`Prepared`] statements sent back to back, and [`Tx`],
//! which carries `BEGIN` with its first statements and `COMMIT` with its last ones and
//! rolls back when dropped unfinished.

use super::DbError;
use deadpool_postgres::Object;
use std::{
    future::Future,
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering},
    task::Poll,
    time::Duration,
};
use tokio_postgres::{Row, Statement, types::ToSql};

/// How long a dropped, unfinished [`Tx`] waits for its ROLLBACK before closing its connection.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(2);

/// A statement ready to be sent: prepared (and cached) on the connection it will run on,
/// with its parameters. Several of them go out back to back, in order, in one round
/// trip ([`Tx::run`], [`Tx::commit_with`]).
pub struct Prepared {
    statement: Statement,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Prepared {
    /// `statement` with `params` (one per placeholder, in order).
    pub fn new(statement: Statement, params: Vec<Box<dyn ToSql + Sync + Send>>) -> Self {
        Self { statement, params }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
    }

    /// Runs the statement alone; its rows.
    pub async fn query(
        &self,
        client: &impl deadpool_postgres::GenericClient,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        client.query(&self.statement, &self.params()).await
    }
}

/// Boxes statement parameters for [`Prepared::new`]: `params![id, name.to_string()]`.
#[macro_export]
macro_rules! params {
    ($($param:expr),* $(,)?) => {
        vec![$(Box::new($param) as Box<dyn ::tokio_postgres::types::ToSql + Sync + Send>),*]
    };
}

/// One transaction on one pooled connection, in few round trips: `BEGIN` travels with
/// the first statements ([`Tx::begin`], [`Tx::run`]) and `COMMIT` with the last ones
/// ([`Tx::commit_with`]). Dropped before it finished (an error, a cancelled call), it
/// rolls back before its connection serves anyone else.
pub struct Tx {
    client: Option<Object>,
    /// BEGIN was sent and neither COMMIT nor ROLLBACK answered.
    open: AtomicBool,
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a>>;

impl Tx {
    /// A transaction on `client`; nothing is sent yet.
    pub fn new(client: Object) -> Self {
        Self { client: Some(client), open: AtomicBool::new(false) }
    }

    /// The connection, for statements of this transaction (after [`Tx::begin`]).
    pub fn client(&self) -> &Object {
        match &self.client {
            Some(client) => client,
            None => unreachable!("the client is only taken when the transaction is dropped"),
        }
    }

    /// Sends `BEGIN` and then `first` (built on [`Tx::client`]) back to back; `first`'s
    /// result. A statement in `first` that still has to be prepared goes out after
    /// `BEGIN` in any case.
    pub async fn begin<T, E>(&self, first: impl Future<Output = Result<T, E>>) -> Result<T, E>
    where
        E: From<tokio_postgres::Error>,
    {
        let was_open = self.open.swap(true, Ordering::AcqRel);
        let begin = async {
            if !was_open {
                self.client().batch_execute("BEGIN").await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        };
        let (begun, result) = tokio::join!(biased; begin, first);
        begun?;
        result
    }

    /// Sends `statements` in order (after `BEGIN` if none was sent yet), in one round
    /// trip; the rows of each, or the first error.
    pub async fn run(&self, statements: &[Prepared]) -> Result<Vec<Vec<Row>>, DbError> {
        let was_open = self.open.swap(true, Ordering::AcqRel);
        let (results, _) = self.send(!was_open, statements, false).await;
        collect(results)
    }

    /// Sends `statements` and `COMMIT` in order (after `BEGIN` if none was sent yet), in
    /// one round trip: the rows of each statement once committed, or the first error
    /// (then nothing was committed: PostgreSQL ends a failed transaction's `COMMIT` as a
    /// rollback).
    pub async fn commit_with(self, statements: &[Prepared]) -> Result<Vec<Vec<Row>>, DbError> {
        let was_open = self.open.swap(true, Ordering::AcqRel);
        let (results, committed) = self.send(!was_open, statements, true).await;
        if let Some(Ok(())) = committed {
            self.open.store(false, Ordering::Release);
        }
        let rows = collect(results)?;
        match committed {
            Some(Err(error)) => Err(error.into()),
            _ => Ok(rows),
        }
    }

    /// Commits what was sent so far.
    pub async fn commit(self) -> Result<(), DbError> {
        self.commit_with(&[]).await.map(drop)
    }

    /// Rolls back now (dropping a `Tx` rolls back too, a moment later).
    pub async fn rollback(self) -> Result<(), DbError> {
        if self.open.load(Ordering::Acquire) {
            self.client().batch_execute("ROLLBACK").await?;
            self.open.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Sends `BEGIN` (when `begin`), the statements and `COMMIT` (when `commit`) without
    /// waiting in between, then waits for every answer.
    async fn send(
        &self,
        begin: bool,
        statements: &[Prepared],
        commit: bool,
    ) -> (Vec<Result<Vec<Row>, tokio_postgres::Error>>, Option<Result<(), tokio_postgres::Error>>) {
        let client = self.client();
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements.iter().map(Prepared::params).collect();
        let mut pending: Vec<Pending<'_>> = Vec::with_capacity(statements.len() + 2);
        if begin {
            pending.push(Box::pin(async move { client.batch_execute("BEGIN").await.map(|()| Vec::new()) }));
        }
        for (statement, params) in statements.iter().zip(&params) {
            pending.push(Box::pin(client.query(&statement.statement, params)));
        }
        if commit {
            pending.push(Box::pin(async move { client.batch_execute("COMMIT").await.map(|()| Vec::new()) }));
        }
        // Poll in order: each request is queued on the connection at its first poll.
        let mut done: Vec<Option<Result<Vec<Row>, tokio_postgres::Error>>> = pending.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut all = true;
            for (future, slot) in pending.iter_mut().zip(done.iter_mut()) {
                if slot.is_none() {
                    match future.as_mut().poll(cx) {
                        Poll::Ready(result) => *slot = Some(result),
                        Poll::Pending => all = false,
                    }
                }
            }
            if all { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
        let mut results: Vec<Result<Vec<Row>, tokio_postgres::Error>> = done.into_iter().flatten().collect();
        let committed = if commit { results.pop().map(|r| r.map(drop)) } else { None };
        if begin
            && !results.is_empty()
            && let Err(error) = results.remove(0)
        {
            return (vec![Err(error)], committed);
        }
        (results, committed)
    }
}

/// The rows of each statement, or the first error.
pub(super) fn collect(results: Vec<Result<Vec<Row>, tokio_postgres::Error>>) -> Result<Vec<Vec<Row>>, DbError> {
    results.into_iter().map(|r| r.map_err(DbError::from)).collect()
}

impl Drop for Tx {
    fn drop(&mut self) {
        if !self.open.load(Ordering::Acquire) {
            return;
        }
        let Some(client) = self.client.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                // Back to the pool once rolled back; a connection that does not answer in
                // time (it may still run a statement cut short by a deadline) is closed.
                runtime.spawn(async move {
                    match tokio::time::timeout(ROLLBACK_TIMEOUT, client.batch_execute("ROLLBACK")).await {
                        Ok(Ok(())) => {}
                        _ => drop(Object::take(client)),
                    }
                });
            }
            Err(_) => drop(Object::take(client)),
        }
    }
}
