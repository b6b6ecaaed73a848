//! The transactions of assign-svc.
//!
//! Assign (shared by the unary call and the reassign scheduler), Release, floor plans,
//! and the submit and cancel of a reassign job. Owns transaction boundaries, the time
//! budget (`budget`), retries of a conflict with a concurrent winner (the exclusion
//! constraint stays the guarantee) and the wake-ups after capacity frees. The
//! turn-taking of reservation writers per restaurant and day (transaction-scoped advisory
//! locks, so the deterministic best fit never sends concurrent callers racing for the
//! same tables) is in `store::locks`.
//!
//! It must never hold a transaction across a network call other than to PostgreSQL, and
//! never decide a rule itself: those live in `domain`.

mod attempt;
mod budget;

pub use attempt::{Attempt, JobContext};
pub use budget::Budget;

use crate::{
    domain::{
        AssignRequest, BookingId, FloorPlan, RestaurantId, Slot, SubmitAnswer, decide_submit, invalidated_bookings,
    },
    error::Error,
    store,
};
use attempt::{attempt_once, retry_time};
use budget::{commit_within, settle};
use deadpool_postgres::Object;
use platform::db::{Database, Tx};
use std::time::SystemTime;
use tokio::time::timeout_at;

/// Rounds of conflict retries (a concurrent winner took a table) before giving up.
const MAX_ROUNDS: u32 = 20;

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
