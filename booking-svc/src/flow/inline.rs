//! The inline attempt: one `Assign` call within a bounded deadline.
//!
//! Every failure (no capacity, timeout, assign-svc down) is a result, never an error: the
//! record step decides what it means.

use super::Flow;
use crate::domain::{
    Booking,
    inline::{InlineAttempt, InlineResult},
};
use platform::proto::{
    assign::v1::{AssignOutcome, AssignRequest},
    duration, timestamp,
};
use std::time::{Duration, Instant};

impl Flow {
    /// Asks assign-svc for tables within `deadline`. Never fails: every failure is a result.
    #[tracing::instrument(skip_all, fields(booking.id = %booking.id, booking.version = booking.version.get(), inline.result = tracing::field::Empty))]
    pub(super) async fn attempt_inline(&self, booking: &Booking, deadline: Duration) -> InlineAttempt {
        let started = Instant::now();
        let result = if !self.inline.enabled {
            InlineResult::Disabled
        } else if deadline.is_zero() {
            InlineResult::Timeout
        } else {
            let mut request = tonic::Request::new(AssignRequest {
                booking_id: booking.id.to_string(),
                version: booking.version.get(),
                restaurant_id: booking.restaurant_id.as_str().to_string(),
                party_size: booking.party_size.get(),
                start_time: Some(timestamp(booking.start_time.get())),
                duration: Some(duration(booking.duration.get())),
            });
            request.set_timeout(deadline);
            let mut client = self.assign.clone();
            match tokio::time::timeout(deadline, client.assign(request)).await {
                Err(_) => InlineResult::Timeout,
                Ok(Ok(response)) => {
                    let response = response.into_inner();
                    match (AssignOutcome::try_from(response.outcome), response.assignment) {
                        (Ok(AssignOutcome::Assigned), Some(a)) if a.version == booking.version.get() => {
                            InlineResult::Assigned(a.table_ids)
                        }
                        (Ok(AssignOutcome::NoCapacity), _) => InlineResult::NoCapacity,
                        _ => InlineResult::Unavailable("unexpected answer from assign-svc".into()),
                    }
                }
                Ok(Err(status)) => match status.code() {
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => InlineResult::Timeout,
                    tonic::Code::NotFound | tonic::Code::FailedPrecondition => InlineResult::NoCapacity,
                    code => InlineResult::Unavailable(format!("{code:?}: {}", status.message())),
                },
            }
        };
        tracing::Span::current().record("inline.result", result.as_str());
        if result != InlineResult::Disabled {
            self.metrics.inline_attempt(result.as_str());
        }
        InlineAttempt { result, elapsed: started.elapsed() }
    }
}
