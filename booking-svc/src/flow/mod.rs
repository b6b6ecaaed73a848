//! The request flows: create, edit and cancel, step by step, and the reads.
//!
//! Each write flow applies (version check, no-op detection, the new version written and
//! handed off durably, so that the background takes it over if the request does not
//! record in time), makes the inline `Assign` call with a bounded deadline, records the
//! result in one transaction with the right outbox row (and the reassign job, when the
//! booking stays PENDING), and answers. One module per step: `create`, `edit`, `cancel`,
//! `inline`, `record`, `replay` and `reads`; `restaurants` keeps the profiles.
//!
//! The flows own the transaction boundaries. They never hold a transaction or row lock
//! across a network call and never send email (the outbox worker does).

mod cancel;
mod create;
mod edit;
mod inline;
mod reads;
mod record;
mod replay;
mod restaurants;

use crate::{
    crash::CrashHook,
    domain::{
        Booking,
        booking::Refusal,
        inline::{InlineAttempt, Outcome, inline_deadline},
    },
    error::Error,
    metrics::Metrics,
    reassign::DispatcherHandle,
};
use platform::{db::Database, grpc::Channel, proto::assign::v1::assign_service_client::AssignServiceClient};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use uuid::Uuid;

type Result<T> = std::result::Result<T, Error>;

const CREATE: &str = "CreateBooking";
const EDIT: &str = "EditBooking";
const CANCEL: &str = "CancelBooking";

/// Settings of the inline attempt.
#[derive(Clone, Copy, Debug)]
pub struct InlineSettings {
    pub enabled: bool,
    pub timeout: Duration,
    pub margin: Duration,
    pub record_grace: Duration,
}

/// What a create or edit answers.
#[derive(Clone, Debug)]
pub struct Answer {
    pub booking: Booking,
    pub outcome: Outcome,
    pub inline: InlineAttempt,
}

impl Answer {
    fn replay(booking: Booking) -> Self {
        Self { booking, outcome: Outcome::Unchanged, inline: InlineAttempt::skipped() }
    }
}

/// The flows, shared by all calls.
pub struct Flow {
    db: Database,
    assign: AssignServiceClient<Channel>,
    inline: InlineSettings,
    metrics: Arc<Metrics>,
    crash: CrashHook,
    dispatcher: DispatcherHandle,
}

impl Flow {
    pub fn new(
        db: Database,
        assign: AssignServiceClient<Channel>,
        inline: InlineSettings,
        metrics: Arc<Metrics>,
        crash: CrashHook,
        dispatcher: DispatcherHandle,
    ) -> Self {
        Self { db, assign, inline, metrics, crash, dispatcher }
    }

    /// The inline deadline for a call whose caller waits until `caller_deadline`, keeping
    /// back the configured margin, or twice as long as the apply step took if that is longer
    /// (recording costs about as much as applying, and both slow down together under load,
    /// so the apply step's time is the best forecast of the record step's).
    fn deadline(&self, caller_deadline: Option<Instant>, apply_took: Duration) -> Duration {
        let remaining = caller_deadline.map(|d| d.saturating_duration_since(Instant::now()));
        inline_deadline(self.inline.timeout, remaining, self.inline.margin.max(apply_took * 2))
    }

    /// Wakes the workers of `channels` after a commit made work due for them.
    fn wake(&self, channels: &[&'static str]) {
        for channel in channels {
            self.db.wake(channel);
        }
    }
}

/// The stored form of an answered booking.
fn snapshot(booking: &Booking) -> Result<serde_json::Value> {
    serde_json::to_value(booking).map_err(|e| Error::corrupt(format!("answer snapshot: {e}")))
}

fn refused(refusal: Refusal, id: Uuid) -> Error {
    match refusal {
        Refusal::VersionMismatch { expected, current } => {
            Error::VersionMismatch { expected: expected.get(), current: current.get() }
        }
        Refusal::Cancelled => Error::Cancelled(id),
    }
}

fn db(error: tokio_postgres::Error) -> Error {
    Error::from(error)
}
