//! The transactions of assign-svc: Assign (shared by the unary call and the reassign
//! scheduler), Release, floor plans, and the submit of a reassign job.
//!
//! Owns transaction boundaries, the time budget (PostgreSQL `lock_timeout`,
//! `statement_timeout` and `idle_in_transaction_session_timeout` from the caller's
//! deadline, no COMMIT once it passed), the turn-taking of reservation writers per
//! restaurant and day (transaction-scoped advisory locks, so the deterministic best fit
//! never sends concurrent callers racing for the same tables, while other days of the
//! restaurant go on), retries of any remaining conflict (the exclusion constraint stays
//! the guarantee), and the wake-ups after capacity frees. It must never hold a transaction
//! across a network call other than to PostgreSQL, and never decide a rule itself: those
//! live in `domain`.

use crate::{
    domain::{
        AssignRequest, Assignment, BookingId, FloorPlan, JobState, RestaurantId, RetryPolicy, Slot, SubmitAnswer,
        VersionCheck, best_fit, check_version, decide_submit, invalidated_bookings,
    },
    error::Error,
    store::{self, jobs::ClaimedJob},
};
use deadpool_postgres::{Object, Transaction};
use platform::db::{Database, Tx};
use std::time::{Duration, SystemTime};
use tokio::time::{Instant, timeout_at};

/// Rounds of conflict retries (a concurrent winner took a table) before giving up.
const MAX_ROUNDS: u32 = 20;

/// The time one call may take: the caller's deadline less a margin to answer in.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    end: Instant,
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
    fn database_millis(&self) -> u64 {
        let remaining = self.remaining();
        let slack = (remaining / 10).min(Duration::from_millis(10));
        remaining.saturating_sub(slack).as_millis().max(1) as u64
    }
}

/// What one assignment attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Tables are now reserved for this version.
    Assigned(Assignment),
    /// This version already held tables; nothing changed.
    AlreadyAssigned(Assignment),
    /// Nothing free seats the party.
    NoCapacity,
    /// The restaurant has no floor plan.
    UnknownRestaurant,
    /// A newer version is known.
    Older { newest_version: i64 },
    /// The booking was released at or after this version.
    Released { released_version: i64 },
    /// (Scheduler only) the job was replaced, cancelled or its lease lost meanwhile.
    JobGone,
}

/// A leased job being attempted by the scheduler, with its clock and policy.
#[derive(Clone, Copy, Debug)]
pub struct JobContext<'a> {
    /// The claimed job.
    pub job: &'a ClaimedJob,
    /// Retry policy.
    pub policy: RetryPolicy,
    /// The time of the attempt.
    pub now: SystemTime,
}

/// Runs the transactions against one database.
#[derive(Clone)]
pub struct Assigner {
    database: Database,
}

impl Assigner {
    /// Transactions on `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    async fn client(&self, budget: Budget) -> Result<Object, Error> {
        match timeout_at(budget.end, self.database.client()).await {
            Ok(client) => Ok(client?),
            Err(_) => Err(Error::DeadlineExceeded),
        }
    }

    /// Reserves the best-fitting free tables for one booking version (see the proto for
    /// the contract), within `budget`. With a job, also records the job's outcome in the
    /// same transaction. Conflicts with concurrent winners are retried; a timeout rolls
    /// everything back and is `DeadlineExceeded`.
    #[tracing::instrument(skip_all, fields(booking.id = %request.booking_id, booking.version = request.version.get(), restaurant.id = %request.restaurant_id, outcome = tracing::field::Empty))]
    pub async fn assign(
        &self,
        request: &AssignRequest,
        budget: Budget,
        job: Option<JobContext<'_>>,
    ) -> Result<Attempt, Error> {
        let mut round = 0;
        loop {
            round += 1;
            let tx = Tx::new(self.client(budget).await?);
            // A transaction cut short by the deadline rolls back before its connection is
            // used again (see `Tx`).
            match timeout_at(budget.end, attempt_once(tx, request, budget, job)).await {
                Err(_elapsed) => return Err(Error::DeadlineExceeded),
                Ok(Err(error)) if error.is_conflict() && round < MAX_ROUNDS && !budget.passed() => {
                    tracing::debug!(round, error = %error, "conflict with a concurrent transaction; trying again");
                }
                Ok(Err(error)) if error.is_timeout() => return Err(Error::DeadlineExceeded),
                Ok(Err(error)) => return Err(error),
                Ok(Ok((attempt, freed))) => {
                    tracing::Span::current().record("outcome", tracing::field::debug(&attempt));
                    if let Some((restaurant_id, slot)) = freed {
                        self.wake_later(restaurant_id, Some(slot));
                    }
                    return Ok(attempt);
                }
            }
        }
    }

    /// Frees every table of a booking, ends its job and refuses its versions seen so far
    /// from now on. Returns the number of tables freed.
    #[tracing::instrument(skip_all, fields(booking.id = %booking_id, released = tracing::field::Empty))]
    pub async fn release(&self, booking_id: BookingId, budget: Budget) -> Result<u64, Error> {
        let mut client = self.client(budget).await?;
        let result = timeout_at(budget.end, async {
            let tx = client.transaction().await?;
            store::locks::begin_work(&tx, budget.database_millis(), None).await?;
            let state = store::bookings::lock_booking(&tx, booking_id).await?;
            let released = store::bookings::release(&tx, booking_id).await?;
            commit_within(tx, budget).await?;
            Ok((released, state))
        })
        .await;
        let (released, state) = settle(client, result)?;
        tracing::Span::current().record("released", released);
        if released > 0
            && let (Some(restaurant_id), Some(held)) = (state.held_restaurant, state.held)
        {
            self.wake(restaurant_id, Some(held.slot)).await;
        }
        Ok(released)
    }

    /// Replaces a floor plan, unless it would no longer seat a live assignment (then
    /// nothing changes and the bookings are named). Wakes the restaurant's waiting jobs.
    #[tracing::instrument(skip_all, fields(restaurant.id = %plan.restaurant_id(), tables = plan.tables().len()))]
    pub async fn put_plan(&self, plan: FloorPlan, budget: Budget) -> Result<(FloorPlan, SystemTime), Error> {
        let mut client = self.client(budget).await?;
        let result = timeout_at(budget.end, async {
            let tx = client.transaction().await?;
            store::locks::begin_work(&tx, budget.database_millis(), Some(plan.restaurant_id())).await?;
            let live = store::reservations::live_assignments(&tx, plan.restaurant_id()).await?;
            let broken = invalidated_bookings(&plan, &live);
            if !broken.is_empty() {
                tx.rollback().await?;
                return Err(Error::PlanBreaksAssignments(broken));
            }
            let updated_at = store::plans::replace_plan(&tx, &plan).await?;
            commit_within(tx, budget).await?;
            Ok(updated_at)
        })
        .await;
        let updated_at = settle(client, result)?;
        self.wake(plan.restaurant_id().clone(), None).await;
        Ok((plan, updated_at))
    }

    /// A restaurant's floor plan and when it was last replaced.
    #[tracing::instrument(skip_all, fields(restaurant.id = %restaurant_id))]
    pub async fn plan(&self, restaurant_id: &RestaurantId, budget: Budget) -> Result<(FloorPlan, SystemTime), Error> {
        let client = self.client(budget).await?;
        let result = timeout_at(budget.end, store::plans::plan_of(&client, restaurant_id)).await;
        let found = settle(client, result)?;
        found.ok_or_else(|| Error::PlanNotFound(restaurant_id.clone()))
    }

    /// Applies a stream's submit to the booking's job (see [`decide_submit`]); a new or
    /// reopened job is due at once and the schedulers are woken.
    #[tracing::instrument(skip_all, fields(booking.id = %request.booking_id, booking.version = request.version.get(), answer = tracing::field::Empty))]
    pub async fn submit(
        &self,
        request: &AssignRequest,
        trace_context: &std::collections::HashMap<String, String>,
        budget: Budget,
    ) -> Result<SubmitAnswer, Error> {
        let mut client = self.client(budget).await?;
        let result = timeout_at(budget.end, async {
            let tx = client.transaction().await?;
            store::locks::begin_work(&tx, budget.database_millis(), None).await?;
            let state = store::bookings::lock_booking(&tx, request.booking_id).await?;
            let job = store::jobs::lock_job(&tx, request.booking_id).await?;
            let answer = decide_submit(&state, job.as_ref(), request.version);
            match &answer {
                SubmitAnswer::NewJob { supersedes } => {
                    store::jobs::put_job(&tx, request, trace_context).await?;
                    if let (Some(older), Some(job)) = (supersedes, &job) {
                        store::notify::notify_superseded(&tx, request.booking_id, *older, job.attempts).await?;
                    }
                    store::notify::notify_wake(&tx, &request.restaurant_id).await?;
                }
                SubmitAnswer::Reopen => {
                    store::jobs::reopen_job(&tx, request.booking_id, request.version).await?;
                    store::notify::notify_wake(&tx, &request.restaurant_id).await?;
                }
                _ => {}
            }
            commit_within(tx, budget).await?;
            Ok(answer)
        })
        .await;
        let answer = settle(client, result)?;
        tracing::Span::current().record("answer", tracing::field::debug(&answer));
        Ok(answer)
    }

    /// Ends the booking's waiting job (its tables, if any, stay held).
    #[tracing::instrument(skip_all, fields(booking.id = %booking_id))]
    pub async fn cancel(&self, booking_id: BookingId, budget: Budget) -> Result<bool, Error> {
        let client = self.client(budget).await?;
        let result = timeout_at(budget.end, store::jobs::cancel_job(&client, booking_id)).await;
        settle(client, result)
    }

    /// Records that a leased job's attempt failed without reaching a verdict (e.g. the
    /// database was unavailable, or its start time passed), retrying later or giving up.
    #[tracing::instrument(skip_all, fields(booking.id = %context.job.request.booking_id, booking.version = context.job.request.version.get()))]
    pub async fn record_failure(&self, context: JobContext<'_>, reason: &str, budget: Budget) -> Result<bool, Error> {
        let mut client = self.client(budget).await?;
        let result = timeout_at(budget.end, async {
            let tx = client.transaction().await?;
            store::locks::begin_work(&tx, budget.database_millis(), None).await?;
            let retry_at = retry_time(context);
            let recorded = store::jobs::record_job_failure(&tx, context.job, retry_at, reason).await?;
            commit_within(tx, budget).await?;
            Ok(recorded)
        })
        .await;
        settle(client, result)
    }

    /// Wakes the waiting jobs of a restaurant (overlapping `slot`, when given) after the
    /// transaction that freed capacity committed, in the background (the hot path does not
    /// wait). Best effort: a lost wake-up only delays the jobs to their backoff.
    fn wake_later(&self, restaurant_id: RestaurantId, slot: Option<Slot>) {
        let assigner = self.clone();
        tokio::spawn(async move { assigner.wake(restaurant_id, slot).await });
    }

    /// Wakes the waiting jobs of a restaurant now, before the caller is answered (Release
    /// and PutFloorPlan: rare calls whose callers expect the freed capacity to be in use).
    async fn wake(&self, restaurant_id: RestaurantId, slot: Option<Slot>) {
        let result = async {
            let client = self.database.client().await?;
            store::jobs::wake_jobs(&client, &restaurant_id, slot).await
        }
        .await;
        match result {
            Ok(woken) => tracing::debug!(restaurant.id = %restaurant_id, woken, "freed capacity woke waiting jobs"),
            Err(error) => tracing::warn!(restaurant.id = %restaurant_id, error = %error, "could not wake waiting jobs"),
        }
    }
}

/// The next attempt of a job that failed now, or `None` to give up.
fn retry_time(context: JobContext<'_>) -> Option<SystemTime> {
    let attempts = (context.job.attempts.max(0) as u32).saturating_add(1);
    match context.policy.after_failure(context.now, context.job.request.slot.start(), attempts, fastrand::f64()) {
        crate::domain::JobStep::RetryAt(at) => Some(at),
        crate::domain::JobStep::GiveUp => None,
    }
}

/// Commits unless the budget is already spent (then the transaction rolls back).
async fn commit_within(tx: Transaction<'_>, budget: Budget) -> Result<(), Error> {
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
fn settle<T>(client: Object, result: Result<Result<T, Error>, tokio::time::error::Elapsed>) -> Result<T, Error> {
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

/// One transaction of [`Assigner::assign`] in two round trips (BEGIN with every read, then
/// every write with COMMIT); returns the attempt and, when the booking's previous tables
/// were swapped away, where capacity was freed.
async fn attempt_once(
    tx: Tx,
    request: &AssignRequest,
    budget: Budget,
    job: Option<JobContext<'_>>,
) -> Result<(Attempt, Option<(RestaurantId, Slot)>), Error> {
    let client = tx.client();
    // The locks of the slot's days first: the reads after them see what the previous
    // holder committed.
    let mut reads = vec![
        store::locks::start_assignment(
            client,
            budget.database_millis(),
            &request.restaurant_id,
            request.slot.days(),
            request.booking_id,
        )
        .await?,
    ];
    if let Some(context) = job {
        reads.push(
            store::jobs::job_still_leased(client, request.booking_id, request.version, context.job.lease_id).await?,
        );
    }
    reads.push(store::reservations::tables_for(client, request).await?);
    let rows = tx.run(&reads).await?;
    let state = store::bookings::booking_state_of(request.booking_id, &rows[0])?;
    if job.is_some() && rows[1].is_empty() {
        tx.rollback().await?;
        return Ok((Attempt::JobGone, None));
    }
    let mut writes = Vec::new();
    let mut freed = None;
    let mut assigned = false;
    let attempt = match check_version(&state, request.version) {
        VersionCheck::Released { released_version } => Attempt::Released { released_version },
        VersionCheck::Older { newest_version } => Attempt::Older { newest_version },
        VersionCheck::AlreadyAssigned(held) => Attempt::AlreadyAssigned(held),
        VersionCheck::Attempt => {
            let tables = store::reservations::tables_of(rows.last().map_or(&[][..], Vec::as_slice))?;
            match best_fit(&tables, request.party_size) {
                _ if tables.is_empty() => Attempt::UnknownRestaurant,
                None => Attempt::NoCapacity,
                Some(table_ids) => {
                    if state.held.is_some() {
                        freed = state.held_restaurant.clone().zip(state.held.as_ref().map(|held| held.slot));
                    }
                    let replaces = freed.as_ref().map(|(restaurant, slot)| (restaurant, *slot));
                    writes.push(
                        store::reservations::record_assignment(client, request, &table_ids, job.is_some(), replaces)
                            .await?,
                    );
                    assigned = true;
                    Attempt::Assigned(Assignment {
                        booking_id: request.booking_id,
                        version: request.version,
                        table_ids,
                        slot: request.slot,
                    })
                }
            }
        }
    };
    match (&attempt, job) {
        (Attempt::NoCapacity | Attempt::UnknownRestaurant, context) => {
            if request.version.get() > state.newest_version && (context.is_some() || attempt == Attempt::NoCapacity) {
                writes.push(store::bookings::record_newest_version(client, request.booking_id, request.version).await?);
            }
            if let Some(context) = context {
                let reason = match attempt {
                    Attempt::UnknownRestaurant => format!("restaurant '{}' has no floor plan", request.restaurant_id),
                    _ => "no capacity".to_string(),
                };
                writes.push(
                    store::jobs::record_job_failure_statement(client, context.job, retry_time(context), &reason)
                        .await?,
                );
            }
        }
        (Attempt::AlreadyAssigned(_), Some(context)) => {
            writes.push(store::jobs::finish_job(client, context.job, JobState::Assigned).await?);
        }
        (Attempt::Older { .. }, Some(context)) => {
            writes.push(store::jobs::finish_job(client, context.job, JobState::Superseded).await?);
        }
        (Attempt::Released { .. }, Some(context)) => {
            writes.push(store::jobs::finish_job(client, context.job, JobState::Released).await?);
        }
        _ => {}
    }
    if writes.is_empty() {
        tx.rollback().await?;
    } else if budget.passed() {
        tx.rollback().await?;
        return Err(Error::DeadlineExceeded);
    } else {
        let rows = tx.commit_with(&writes).await?;
        // Wake the jobs waiting where tables were freed only when there are any.
        if assigned
            && freed.is_some()
            && !store::reservations::freed_capacity_wanted(rows.first().map_or(&[][..], Vec::as_slice))?
        {
            freed = None;
        }
    }
    Ok((attempt, freed))
}
