//! The background loop that keeps every waiting reassign job trying.
//!
//! Claims due jobs with `FOR UPDATE SKIP LOCKED` and a lease (so replicas share the work
//! and a dead replica's jobs are taken over when its lease ends), attempts each with the
//! same transaction as `Assign`, and, on the shared worker loop ([`platform::worker`]),
//! sleeps until the next job is due or freed capacity wakes it (PostgreSQL NOTIFY from any
//! replica). It must never hold a row lock while it waits, and it stops after its current
//! batch when shutdown is requested.

use crate::{
    assigner::{Assigner, Attempt, Budget, JobContext},
    domain::RetryPolicy,
    error::Error,
    metrics::Metrics,
    store::{self, jobs::ClaimedJob},
};
use platform::{
    backoff::Backoff,
    db::Database,
    worker::{self, Outcome, Schedule},
};
use std::time::{Duration, SystemTime};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Longest sleep without looking for due jobs (a safety net for lost wake-ups).
const MAX_IDLE: Duration = Duration::from_secs(5);
/// Time budget of one attempt.
const ATTEMPT_BUDGET: Duration = Duration::from_secs(10);
/// Longest pause after the database failed (half of it at least, jittered).
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Shortest sleep when nothing could be claimed although a job is due (another replica
/// is claiming it right now), so an idle scheduler never spins.
const MIN_IDLE: Duration = Duration::from_millis(5);

/// How the scheduler runs.
#[derive(Clone)]
pub struct Scheduler {
    /// Its database.
    pub database: Database,
    /// The transactions.
    pub assigner: Assigner,
    /// Retry policy of jobs.
    pub policy: RetryPolicy,
    /// Lease of a claimed job.
    pub lease: Duration,
    /// Jobs attempted at once.
    pub concurrency: u32,
    /// Instruments.
    pub metrics: Metrics,
}

impl Scheduler {
    /// Runs until `shutdown`, finishing the batch in hand.
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.database.listen(store::notify::WAKE_CHANNEL, shutdown.clone());
        let schedule = Schedule::new(MAX_IDLE, Backoff::new(ERROR_PAUSE, ERROR_PAUSE)).with_min_idle(MIN_IDLE);
        worker::run(&self, schedule, &wake, &shutdown).await;
    }
}

impl worker::Worker for Scheduler {
    type Error = Error;
    const NAME: &'static str = "reassign scheduler";

    /// Claims due jobs and attempts them all at once.
    async fn pass(&self) -> Result<Outcome, Error> {
        let jobs = {
            let client = self.database.client().await?;
            store::jobs::claim_due_jobs(&client, i64::from(self.concurrency), self.lease.as_millis() as i64).await?
        };
        if jobs.is_empty() {
            return Ok(Outcome::Idle);
        }
        let mut batch = JoinSet::new();
        for job in jobs {
            let scheduler = self.clone();
            batch.spawn(async move { scheduler.attempt(job).await });
        }
        while batch.join_next().await.is_some() {}
        Ok(Outcome::Worked)
    }

    /// When the earliest waiting job is due; refreshes the waiting-jobs gauge.
    async fn next_due(&self) -> Result<Option<Duration>, Error> {
        let client = self.database.client().await?;
        let (count, due_in) = store::jobs::waiting_jobs(&client).await?;
        self.metrics.set_jobs_waiting(count);
        Ok(due_in
            .filter(|seconds| seconds.is_finite())
            .map(|seconds| Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(MAX_IDLE)))
    }
}

impl Scheduler {
    /// One attempt of a claimed job, in a trace of its own linked to the request that
    /// submitted the job; its outcome is recorded and published by the transaction itself,
    /// with this attempt's trace context.
    async fn attempt(&self, job: ClaimedJob) {
        let span = tracing::info_span!(
            parent: None,
            "reassign.attempt",
            booking.id = %job.request.booking_id,
            booking.version = job.request.version.get(),
            job.attempt = job.attempts + 1,
            result = tracing::field::Empty,
        );
        platform::telemetry::link_to_carrier(&span, &job.trace_context);
        self.attempt_in_span(job).instrument(span).await
    }

    async fn attempt_in_span(&self, job: ClaimedJob) {
        let carrier = platform::telemetry::current_context_carrier();
        if !carrier.is_empty() {
            let remembered = async {
                let client = self.database.client().await?;
                store::jobs::set_attempt_context(&client, &job, &carrier).await
            }
            .await;
            if let Err(error) = remembered {
                tracing::debug!(%error, "could not store the attempt's trace context");
            }
        }
        let now = SystemTime::now();
        let context = JobContext { job: &job, policy: self.policy, now };
        let result = if RetryPolicy::gives_up(now, job.request.slot.start()) {
            match self
                .assigner
                .record_failure(
                    context,
                    "the start time passed before tables were free",
                    Budget::within(ATTEMPT_BUDGET),
                )
                .await
            {
                Ok(_) => "gave_up",
                Err(error) => {
                    tracing::warn!(%error, "could not record that a job gave up");
                    "error"
                }
            }
        } else {
            match self.assigner.assign(&job.request, Budget::within(ATTEMPT_BUDGET), Some(context)).await {
                Ok(Attempt::Assigned(_) | Attempt::AlreadyAssigned(_)) => "assigned",
                Ok(Attempt::NoCapacity | Attempt::UnknownRestaurant) => "retrying",
                Ok(Attempt::Older { .. } | Attempt::Released { .. }) => "superseded",
                Ok(Attempt::JobGone) => "gone",
                Err(error) => {
                    tracing::warn!(%error, "reassign attempt failed");
                    let context = JobContext { now: SystemTime::now(), ..context };
                    if let Err(error) =
                        self.assigner.record_failure(context, &error.reason(), Budget::within(ATTEMPT_BUDGET)).await
                    {
                        tracing::warn!(%error, "could not record a failed attempt; the lease will expire");
                    }
                    "error"
                }
            }
        };
        tracing::Span::current().record("result", result);
        self.metrics.reassign_attempted(result);
    }
}
