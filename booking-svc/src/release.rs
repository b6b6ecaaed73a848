//! The release worker, which frees a cancelled booking's tables in assign-svc.
//!
//! After a cancel it calls assign-svc's `Release` for the booking until it succeeds
//! (assign-svc may be down when the booking is cancelled). It claims tasks with
//! `FOR UPDATE SKIP LOCKED` and a lease, retries with capped backoff, and runs on the
//! shared worker loop ([`platform::worker`]), woken by `NOTIFY booking_release`. It never
//! changes a booking.

use crate::{
    crash::{CrashHook, CrashPoint},
    error::Error,
    store::{self, releases::ClaimedRelease},
};
use platform::{
    backoff::Backoff,
    db::Database,
    grpc::Channel,
    proto::assign::v1::{ReleaseRequest, assign_service_client::AssignServiceClient},
    telemetry::link_to_carrier,
    worker::{self, Outcome, Schedule},
};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Settings of the release worker.
#[derive(Clone, Copy, Debug)]
pub struct ReleaseSettings {
    pub lease: Duration,
    pub backoff: Backoff,
    pub timeout: Duration,
    pub poll: Duration,
}

/// The release worker; run with [`ReleaseWorker::run`].
pub struct ReleaseWorker {
    db: Database,
    assign: AssignServiceClient<Channel>,
    settings: ReleaseSettings,
    crash: CrashHook,
}

impl ReleaseWorker {
    pub fn new(
        db: Database,
        assign: AssignServiceClient<Channel>,
        settings: ReleaseSettings,
        crash: CrashHook,
    ) -> Self {
        Self { db, assign, settings, crash }
    }

    /// Releases due bookings until `shutdown`; the task in hand is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.db.listen(store::releases::CHANNEL, shutdown.clone());
        let schedule = Schedule::new(self.settings.poll, self.settings.backoff);
        worker::run(&self, schedule, &wake, &shutdown).await;
    }
}

impl worker::Worker for ReleaseWorker {
    type Error = Error;
    const NAME: &'static str = "release";

    async fn pass(&self) -> Result<Outcome, Error> {
        let claimed = {
            let client = self.db.client().await?;
            store::releases::claim(&client, 16, self.settings.lease).await?
        };
        if claimed.is_empty() {
            return Ok(Outcome::Idle);
        }
        for task in claimed {
            let span = tracing::info_span!(parent: None, "release.tables", booking.id = %task.booking_id, attempt = task.attempts);
            link_to_carrier(&span, &task.carrier);
            self.release(task).instrument(span).await?;
        }
        Ok(Outcome::Worked)
    }

    async fn next_due(&self) -> Result<Option<Duration>, Error> {
        let client = self.db.client().await?;
        store::releases::next_due(&client).await
    }
}

impl ReleaseWorker {
    async fn release(&self, task: ClaimedRelease) -> Result<(), Error> {
        let mut request = tonic::Request::new(ReleaseRequest { booking_id: task.booking_id.to_string() });
        request.set_timeout(self.settings.timeout);
        let mut client = self.assign.clone();
        let answer = tokio::time::timeout(self.settings.timeout, client.release(request)).await;
        self.crash.reached(CrashPoint::ReleaseAfterCall);
        let db = self.db.client().await?;
        match answer {
            Ok(Ok(response)) => {
                tracing::info!(released = response.into_inner().released, "tables released");
                store::releases::finish(&db, task.booking_id, "DONE", None).await
            }
            Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
                let reason = format!("refused by assign-svc: {}", status.message());
                tracing::error!(%reason, "release refused permanently");
                store::releases::finish(&db, task.booking_id, "FAILED", Some(&reason)).await
            }
            other => {
                let error = match other {
                    Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
                    _ => format!("no answer within {:?}", self.settings.timeout),
                };
                let delay = self.settings.backoff.delay(task.attempts.max(1) as u32);
                tracing::warn!(%error, retry_in = ?delay, "Release failed; will retry");
                store::releases::retry(&db, task.booking_id, delay, &error).await
            }
        }
    }
}
