//! One attempt of the Assign transaction, for the unary call and the scheduler alike.
//!
//! Two round trips: BEGIN with the locks and every read, then every write with COMMIT.
//! It must never decide a rule itself (the version check and best fit are the domain's)
//! and never commit once the budget passed.

use super::budget::Budget;
use crate::{
    domain::{
        AssignRequest, Assignment, JobState, JobStep, RestaurantId, RetryPolicy, Slot, VersionCheck, best_fit,
        check_version,
    },
    error::Error,
    store::{
        bookings,
        jobs::{self, ClaimedJob},
        locks, reservations,
    },
};
use platform::db::Tx;
use std::time::SystemTime;

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

/// The next attempt of a job that failed now, or `None` to give up.
pub(super) fn retry_time(context: JobContext<'_>) -> Option<SystemTime> {
    let attempts = (context.job.attempts.max(0) as u32).saturating_add(1);
    match context.policy.after_failure(context.now, context.job.request.slot.start(), attempts, fastrand::f64()) {
        JobStep::RetryAt(at) => Some(at),
        JobStep::GiveUp => None,
    }
}

/// One transaction of [`Assigner::assign`] in two round trips (BEGIN with every read, then
/// every write with COMMIT); returns the attempt and, when the booking's previous tables
/// were swapped away, where capacity was freed.
///
/// [`Assigner::assign`]: super::Assigner::assign
pub(super) async fn attempt_once(
    tx: Tx,
    request: &AssignRequest,
    budget: Budget,
    job: Option<JobContext<'_>>,
) -> Result<(Attempt, Option<(RestaurantId, Slot)>), Error> {
    let client = tx.client();
    // The locks of the slot's days first: the reads after them see what the previous
    // holder committed.
    let mut reads = vec![
        locks::start_assignment(
            client,
            budget.database_millis(),
            &request.restaurant_id,
            request.slot.days(),
            request.booking_id,
        )
        .await?,
    ];
    if let Some(context) = job {
        reads.push(jobs::job_still_leased(client, request.booking_id, request.version, context.job.lease_id).await?);
    }
    reads.push(reservations::tables_for(client, request).await?);
    let rows = tx.run(&reads).await?;
    let state = bookings::booking_state_of(request.booking_id, &rows[0])?;
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
            let tables = reservations::tables_of(rows.last().map_or(&[][..], Vec::as_slice))?;
            match best_fit(&tables, request.party_size) {
                _ if tables.is_empty() => Attempt::UnknownRestaurant,
                None => Attempt::NoCapacity,
                Some(table_ids) => {
                    if state.held.is_some() {
                        freed = state.held_restaurant.clone().zip(state.held.as_ref().map(|held| held.slot));
                    }
                    let replaces = freed.as_ref().map(|(restaurant, slot)| (restaurant, *slot));
                    writes.push(
                        reservations::record_assignment(client, request, &table_ids, job.is_some(), replaces).await?,
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
                writes.push(bookings::record_newest_version(client, request.booking_id, request.version).await?);
            }
            if let Some(context) = context {
                let reason = match attempt {
                    Attempt::UnknownRestaurant => format!("restaurant '{}' has no floor plan", request.restaurant_id),
                    _ => "no capacity".to_string(),
                };
                writes
                    .push(jobs::record_job_failure_statement(client, context.job, retry_time(context), &reason).await?);
            }
        }
        (Attempt::AlreadyAssigned(_), Some(context)) => {
            writes.push(jobs::finish_job(client, context.job, JobState::Assigned).await?);
        }
        (Attempt::Older { .. }, Some(context)) => {
            writes.push(jobs::finish_job(client, context.job, JobState::Superseded).await?);
        }
        (Attempt::Released { .. }, Some(context)) => {
            writes.push(jobs::finish_job(client, context.job, JobState::Released).await?);
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
            && !reservations::freed_capacity_wanted(rows.first().map_or(&[][..], Vec::as_slice))?
        {
            freed = None;
        }
    }
    Ok((attempt, freed))
}
