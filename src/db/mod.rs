//! The PostgreSQL pool, per-service schema migrations, database-driven health,
//! transactions in few round trips, and the wake-ups of workers.
//!
//! A service owns one schema and migrates it at start-up with refinery (its history
//! table lives in that schema, so services sharing a database never see each other's
//! migrations; an advisory lock serialises replicas). The database may be down at start:
//! [`Database::migrate_until_ready`] retries with backoff while health reports
//! `NOT_SERVING`, and requests get `UNAVAILABLE` until then.
//!
//! [`Tx`] pipelines a transaction's statements (tokio-postgres sends requests issued
//! together back to back on one connection): `BEGIN` goes with the first statements and
//! `COMMIT` with the last ones, so a short transaction costs two round trips, and no
//! lock waits on the client between them. [`Database::listen`] and [`Database::wake`]
//! wake workers: in-process at once, other processes by a coalesced `NOTIFY` sent outside
//! the callers' transactions (a `NOTIFY` inside a transaction serialises its commit with
//! every other such commit). This module never holds a domain query.

mod tx;
mod wake;

pub use tx::{Prepared, Tx};
use wake::{listen_once, notify_others};

use crate::{backoff::Backoff, grpc::Health};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use std::{
    collections::HashMap,
    str::FromStr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::{Notify, mpsc};
use tokio_postgres::{NoTls, error::SqlState};
use tokio_util::sync::CancellationToken;

/// Longest a wake-up for other processes waits to be merged with later ones: at most one
/// `NOTIFY` per channel per this interval leaves a process.
pub const WAKE_COALESCE: Duration = Duration::from_millis(25);

/// Why the database could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The schema is not migrated yet (the database has not answered since start-up).
    #[error("the database is not ready yet")]
    NotReady,
    /// No connection could be had in time.
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("database error: {}", describe(.0))]
    Query(#[from] tokio_postgres::Error),
}

/// A PostgreSQL error with the server's own words (SQLSTATE, message, detail), which
/// tokio-postgres keeps out of its `Display`.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} {}: {} ({detail})", db.code().code(), db.severity(), db.message()),
            None => format!("{} {}: {}", db.code().code(), db.severity(), db.message()),
        },
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

impl DbError {
    /// Whether retrying later may succeed (connection trouble, restarts, serialization
    /// conflicts) rather than a bug.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::NotReady | DbError::Pool(_) => true,
            DbError::Query(error) => match error.code() {
                None => true,
                Some(code) => {
                    let class = &code.code()[..2];
                    class == "08"
                        || class == "57"
                        || class == "53"
                        || *code == SqlState::T_R_SERIALIZATION_FAILURE
                        || *code == SqlState::T_R_DEADLOCK_DETECTED
                        || *code == SqlState::LOCK_NOT_AVAILABLE
                        || *code == SqlState::QUERY_CANCELED
                }
            },
        }
    }

    /// The SQLSTATE of a failed statement.
    pub fn sql_state(&self) -> Option<&SqlState> {
        match self {
            DbError::Query(error) => error.code(),
            _ => None,
        }
    }

    /// The status a client sees: `UNAVAILABLE` for transient trouble (retry later),
    /// `INTERNAL` otherwise. The cause goes to the log, not to the client.
    pub fn to_status(&self) -> tonic::Status {
        let trace = crate::telemetry::current_trace_id().unwrap_or_default();
        if self.is_transient() {
            tracing::warn!(error = %self, trace_id = %trace, "database unavailable");
            tonic::Status::unavailable("database unavailable, retry later")
        } else {
            tracing::error!(error = %self, trace_id = %trace, "database error");
            tonic::Status::internal(format!("internal error (trace {trace})"))
        }
    }
}

impl From<DbError> for tonic::Status {
    fn from(error: DbError) -> Self {
        error.to_status()
    }
}

/// How long a session of these services may sit idle inside a transaction before
/// PostgreSQL ends it. The services never wait on anything but the database inside a
/// transaction, so a transaction idle this long belongs to a process frozen or stalled
/// mid-way: ending it frees the rows and locks it holds for the other replicas (it rolls
/// back; the frozen caller finds its connection closed when it wakes). A transaction may
/// set a shorter bound for itself (assign-svc's: the caller's deadline, when shorter).
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The session options of every connection: [`IDLE_IN_TRANSACTION_TIMEOUT`], then those
/// the URL gives (PostgreSQL applies them in order, so the URL's win).
fn session_options(given: Option<&str>) -> String {
    let idle = format!("-c idle_in_transaction_session_timeout={}", IDLE_IN_TRANSACTION_TIMEOUT.as_millis());
    match given {
        Some(given) if !given.trim().is_empty() => format!("{idle} {given}"),
        _ => idle,
    }
}

/// A pool plus the readiness of the service's schema.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    ready: Arc<AtomicBool>,
    url: Arc<str>,
    wakeups: Arc<Wakeups>,
}

/// The wake-up side of LISTEN/NOTIFY for this process: the workers listening here, and
/// the channels still to `NOTIFY` other processes about.
struct Wakeups {
    /// The payload of this process's own `NOTIFY`s, so its listeners skip them (they were
    /// woken in-process already).
    instance: String,
    local: Mutex<HashMap<&'static str, Vec<Arc<Notify>>>>,
    notifier: OnceLock<mpsc::UnboundedSender<&'static str>>,
}

impl Database {
    /// A lazily connecting pool of at most `max_size` connections to `url`. Fails only
    /// for a malformed URL.
    pub fn connect_lazy(url: &str, max_size: usize) -> anyhow::Result<Self> {
        let mut config = tokio_postgres::Config::from_str(url)?;
        config.connect_timeout(Duration::from_secs(3));
        let options = session_options(config.get_options());
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name(env!("CARGO_PKG_NAME"));
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(3)))
            .recycle_timeout(Some(Duration::from_secs(2)))
            .build()?;
        let wakeups = Wakeups {
            instance: format!("{:016x}", fastrand::u64(..)),
            local: Mutex::default(),
            notifier: OnceLock::new(),
        };
        Ok(Self { pool, ready: Arc::new(AtomicBool::new(false)), url: url.into(), wakeups: Arc::new(wakeups) })
    }

    /// A transaction on a pooled connection (nothing is sent until its first statement).
    pub async fn tx(&self) -> Result<Tx, DbError> {
        Ok(Tx::new(self.client().await?))
    }

    /// Wakes the workers listening on `channel` (see [`Database::listen`]): those of this
    /// process at once, those of other processes with a `NOTIFY` sent soon after, outside
    /// any transaction of the caller and merged with other wake-ups of the next
    /// [`WAKE_COALESCE`]. Call it after the transaction that made work due committed.
    /// Like every wake-up, a hint: a lost one only delays work until its worker polls.
    pub fn wake(&self, channel: &'static str) {
        if let Some(listeners) = self.wakeups.local.lock().unwrap_or_else(|e| e.into_inner()).get(channel) {
            for listener in listeners {
                listener.notify_one();
            }
        }
        let notifier = self.wakeups.notifier.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(notify_others(self.pool.weak(), self.wakeups.instance.clone(), rx));
            tx
        });
        let _ = notifier.send(channel);
    }

    /// Whether the schema has been migrated.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A connection, or why none can be had; `NotReady` before the migration finished.
    pub async fn client(&self) -> Result<Object, DbError> {
        if !self.is_ready() {
            return Err(DbError::NotReady);
        }
        Ok(self.pool.get().await?)
    }

    /// A connection even before migrations ran (for the migration itself and probes).
    pub async fn raw_client(&self) -> Result<Object, DbError> {
        Ok(self.pool.get().await?)
    }

    /// Creates `schema` and runs the service's migrations with their history table inside
    /// it, under an advisory lock of its own (one per schema): replicas that start together
    /// on an empty database migrate one after the other, the first applying the migrations
    /// and the others finding them applied. Should any step fail while the lock is held, the
    /// connection is closed instead of going back to the pool, so the lock ends with the
    /// attempt (a failed unlock cannot leave it held for the next one).
    pub async fn migrate(&self, schema: &str, mut runner: refinery::Runner) -> anyhow::Result<()> {
        let mut client = self.raw_client().await?;
        let lock_key = format!("migrate:{schema}");
        let locked: bool =
            client.query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&lock_key]).await?.try_get(0)?;
        if !locked {
            tracing::info!(schema, "another process is migrating this schema; waiting for it");
            client.execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock_key]).await?;
        }
        let result = async {
            client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await?;
            let client: &mut tokio_postgres::Client = &mut client;
            runner.set_migration_table_name(format!("{schema}.refinery_schema_history")).run_async(client).await?;
            client.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock_key]).await?;
            anyhow::Ok(())
        }
        .await;
        if result.is_err() {
            drop(Object::take(client));
        }
        result
    }

    /// Retries [`Database::migrate`] with capped backoff until it succeeds (then the
    /// database is ready) or `shutdown` is cancelled (then it returns false).
    pub async fn migrate_until_ready(
        &self,
        schema: &str,
        runner: impl Fn() -> refinery::Runner,
        shutdown: &CancellationToken,
    ) -> bool {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut attempt = 0;
        loop {
            match self.migrate(schema, runner()).await {
                Ok(()) => {
                    self.ready.store(true, Ordering::Release);
                    tracing::info!(schema, "database schema migrated; ready");
                    return true;
                }
                Err(error) => {
                    attempt += 1;
                    let delay = backoff.delay(attempt);
                    tracing::warn!(schema, attempt, retry_in = ?delay, error = %error, "database not ready");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return false,
                    }
                }
            }
        }
    }

    /// Wakes the returned [`Notify`] on every `NOTIFY channel` (from any process), and
    /// also after (re)connecting, since notifications may have been missed meanwhile.
    /// Holds one dedicated connection, reconnecting with backoff, until `shutdown`.
    /// Wake-ups are hints: a worker still finds its work by querying, so a lost or
    /// duplicate wake-up only changes latency, never correctness.
    pub fn listen(&self, channel: &'static str, shutdown: CancellationToken) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.wakeups.local.lock().unwrap_or_else(|e| e.into_inner()).entry(channel).or_default().push(notify.clone());
        let wake = notify.clone();
        let own = self.wakeups.instance.clone();
        self.spawn_listener(channel, shutdown, move |payload| {
            // This process's own wake-ups were delivered in-process already.
            if payload.as_deref() != Some(own.as_str()) {
                wake.notify_one();
            }
        });
        notify
    }

    /// Like [`Database::listen`], but delivers each notification's payload: `Some(payload)`
    /// for every `NOTIFY channel, payload` (from any process), and `None` after each
    /// (re)connect, since notifications may have been missed meanwhile. The receiver ends
    /// when `shutdown` is cancelled. Delivery is at most once per connection; a consumer
    /// that needs every event keeps its source of truth in tables.
    pub fn listen_payloads(
        &self,
        channel: &'static str,
        shutdown: CancellationToken,
    ) -> tokio::sync::mpsc::UnboundedReceiver<Option<String>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.spawn_listener(channel, shutdown, move |event| {
            let _ = tx.send(event);
        });
        rx
    }

    /// Runs one LISTEN connection for `channel` until `shutdown`, reconnecting with
    /// backoff; `on_event` gets `None` after each connect and `Some(payload)` per NOTIFY.
    fn spawn_listener<F>(&self, channel: &'static str, shutdown: CancellationToken, mut on_event: F)
    where
        F: FnMut(Option<String>) + Send + 'static,
    {
        let url = self.url.clone();
        tokio::spawn(async move {
            let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
            let mut attempt = 0;
            while !shutdown.is_cancelled() {
                match listen_once(&url, channel, &mut on_event, &shutdown).await {
                    Ok(()) => return,
                    Err(error) => {
                        attempt += 1;
                        tracing::debug!(channel, attempt, error = %error, "LISTEN connection lost; reconnecting");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.delay(attempt)) => {}
                            _ = shutdown.cancelled() => return,
                        }
                    }
                }
            }
        });
    }

    /// Whether the database answers a trivial query within two seconds.
    pub async fn ping(&self) -> bool {
        let probe = async {
            let client = self.raw_client().await?;
            client.simple_query("SELECT 1").await?;
            Ok::<_, DbError>(())
        };
        matches!(tokio::time::timeout(Duration::from_secs(2), probe).await, Ok(Ok(())))
    }

    /// Keeps `health` in step with the database every `interval` until `shutdown`:
    /// `SERVING` only while the schema is migrated and the database answers.
    pub async fn report_health(&self, health: Health, interval: Duration, shutdown: CancellationToken) {
        let mut serving = None;
        loop {
            let now_serving = self.is_ready() && self.ping().await;
            if serving != Some(now_serving) {
                health.set_serving(now_serving).await;
                if now_serving {
                    tracing::info!("health: SERVING");
                } else {
                    tracing::warn!("health: NOT_SERVING (database unreachable or not migrated)");
                }
                serving = Some(now_serving);
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        health.set_serving(false).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_bounds_idle_transactions_unless_the_url_says_otherwise() {
        let plain = tokio_postgres::Config::from_str("postgres://u@localhost/db").expect("url");
        assert_eq!(session_options(plain.get_options()), "-c idle_in_transaction_session_timeout=5000");
        let url = "postgres://u@localhost/db?options=-c%20idle_in_transaction_session_timeout%3D60000";
        let given = tokio_postgres::Config::from_str(url).expect("url");
        assert_eq!(
            session_options(given.get_options()),
            "-c idle_in_transaction_session_timeout=5000 -c idle_in_transaction_session_timeout=60000",
            "the URL's own setting comes last, so PostgreSQL keeps it"
        );
    }
}
