//! The tonic implementation of `notify.v1.NotifyService`.
//!
//! Decodes a request into domain values (`decode`; bad input: `INVALID_ARGUMENT` naming
//! each field), calls the ledger and the sender, and encodes the answer (`encode`).
//!
//! No rule lives here beyond the wire: keys, limits and comparisons are the domain's,
//! SQL is the store's. It never sends mail itself and never waits past the caller's
//! deadline.

mod decode;
mod encode;

use crate::{
    domain::{Delivery, DeliveryKey, DeliveryState, Limits, SendRequest, parse_booking_id, parse_version},
    error::Error,
    metrics::{CallOutcome, Metrics},
    sender::Sender,
    store::{self, Recorded},
};
use decode::{parse_kind, parse_send_once};
use encode::encode;
use platform::{
    db::Database,
    grpc::timeout_of,
    proto::notify::v1::{self as pb, notify_service_server::NotifyService},
    status::Violations,
};
use std::time::Duration;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

/// Longest margin kept between answering and the caller's deadline.
const MAX_DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// The gRPC face of the service.
pub struct Api {
    database: Database,
    sender: Sender,
    metrics: Metrics,
    limits: Limits,
    /// Longest wait for a first attempt before answering QUEUED.
    send_wait: Duration,
    /// Lease of a first attempt.
    lease: Duration,
}

impl Api {
    /// The API over `database`, delivering first attempts through `sender`.
    pub fn new(database: Database, sender: Sender, metrics: Metrics, send_wait: Duration, lease: Duration) -> Self {
        Self { database, sender, metrics, limits: Limits::CONTRACT, send_wait, lease }
    }

    /// Records the request's key, delivers it on the first call (waiting until `deadline`
    /// at most), and answers `(delivery, duplicate)`.
    #[tracing::instrument(skip_all, fields(
        booking.id = %request.key.booking_id,
        notification.kind = %request.key.kind,
        booking.version = request.key.version,
        notification.outcome = tracing::field::Empty,
    ))]
    async fn record_and_send(&self, request: SendRequest, deadline: Instant) -> Result<(Delivery, bool), Error> {
        let call = self.sender.record_and_attempt(request.clone(), self.lease);
        let recorded =
            call.recorded.await.map_err(|_| Error::Internal("the recording task ended without an answer".into()))??;
        let (outcome, answer) = match recorded {
            Recorded::New(delivery) if delivery.state == DeliveryState::Queued => {
                let delivery = match tokio::time::timeout_at(deadline, call.attempt).await {
                    Ok(Ok(Some(Ok(delivered)))) => delivered,
                    Ok(Ok(Some(Err(error)))) => {
                        tracing::warn!(%error, "first attempt not recorded; the worker retries after its lease");
                        delivery
                    }
                    Ok(Ok(None)) => delivery,
                    Ok(Err(error)) => {
                        tracing::error!(%error, "first attempt task failed");
                        delivery
                    }
                    Err(_still_running) => delivery,
                };
                (CallOutcome::First, Ok((delivery, false)))
            }
            Recorded::New(delivery) => {
                self.metrics.finished(delivery.state);
                (CallOutcome::Suppressed, Ok((delivery, false)))
            }
            Recorded::Existing(delivery) => {
                let fields = request.differences(&delivery.recipient, &delivery.details);
                if fields.is_empty() {
                    (CallOutcome::Duplicate, Ok((delivery, true)))
                } else {
                    (CallOutcome::Mismatch, Err(Error::Mismatch { key: request.key, fields }))
                }
            }
        };
        self.metrics.send_once(outcome);
        tracing::Span::current().record("notification.outcome", format!("{outcome:?}").to_lowercase());
        answer
    }
}

#[tonic::async_trait]
impl NotifyService for Api {
    async fn send_once(&self, request: Request<pb::SendOnceRequest>) -> Result<Response<pb::SendOnceResponse>, Status> {
        let deadline = Instant::now() + wait_budget(timeout_of(request.metadata()), self.send_wait);
        let request = parse_send_once(request.into_inner(), &self.limits).inspect_err(|_| {
            self.metrics.send_once(CallOutcome::Invalid);
        })?;
        let (delivery, duplicate) = self.record_and_send(request, deadline).await?;
        Ok(Response::new(pb::SendOnceResponse { delivery: Some(encode(&delivery)), duplicate }))
    }

    async fn get_delivery(
        &self,
        request: Request<pb::GetDeliveryRequest>,
    ) -> Result<Response<pb::GetDeliveryResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let booking_id = violations.check("booking_id", parse_booking_id(&request.booking_id));
        let kind = violations.check("kind", parse_kind(request.kind));
        let version = violations.check("version", parse_version(request.version));
        let (Some(booking_id), Some(kind), Some(version)) = (booking_id, kind, version) else {
            return Err(Error::Invalid(violations).into());
        };
        let key = DeliveryKey { booking_id, kind, version };
        let client = self.database.client().await.map_err(Error::from)?;
        let delivery = store::get(&client, &key).await?.ok_or_else(|| Error::NotFound(key.header_value()))?;
        Ok(Response::new(pb::GetDeliveryResponse { delivery: Some(encode(&delivery)) }))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let booking_id = parse_booking_id(&request.into_inner().booking_id)
            .map_err(|description| platform::status::invalid_argument("booking_id", description))?;
        let client = self.database.client().await.map_err(Error::from)?;
        let deliveries = store::list(&client, booking_id).await?;
        Ok(Response::new(pb::ListDeliveriesResponse { deliveries: deliveries.iter().map(encode).collect() }))
    }
}

/// How long SendOnce may wait for a first attempt: up to `cap`, and always a margin
/// (a fifth of the deadline, at most 250 ms) before the caller's deadline.
fn wait_budget(deadline: Option<Duration>, cap: Duration) -> Duration {
    match deadline {
        None => cap,
        Some(deadline) => deadline.saturating_sub((deadline / 5).min(MAX_DEADLINE_MARGIN)).min(cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_wait_keeps_a_margin_before_the_deadline() {
        let cap = Duration::from_secs(3);
        assert_eq!(wait_budget(None, cap), cap);
        assert_eq!(wait_budget(Some(Duration::from_secs(30)), cap), cap);
        assert_eq!(wait_budget(Some(Duration::from_secs(2)), cap), Duration::from_millis(1750));
        assert_eq!(wait_budget(Some(Duration::from_millis(500)), cap), Duration::from_millis(400));
        assert_eq!(wait_budget(Some(Duration::ZERO), cap), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn the_wait_never_reaches_the_deadline(ms in 1u64..100_000, cap_ms in 0u64..10_000) {
            let deadline = Duration::from_millis(ms);
            let wait = wait_budget(Some(deadline), Duration::from_millis(cap_ms));
            prop_assert!(wait < deadline);
            prop_assert!(wait <= Duration::from_millis(cap_ms));
        }
    }
}
