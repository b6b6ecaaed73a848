//! The tonic implementation of `notify.v1.NotifyService`: decode a request into domain
//! values (bad input: `INVALID_ARGUMENT` naming each field), call the ledger and the
//! sender, encode the answer.
//!
//! No rule lives here beyond the wire: keys, limits and comparisons are the domain's,
//! SQL is the store's. It never sends mail itself and never waits past the caller's
//! deadline.

use crate::{
    domain::{
        Delivery, DeliveryKey, DeliveryState, Details, Kind, Limits, RawDetails, Recipient, SendRequest,
        parse_booking_id, parse_version,
    },
    error::Error,
    metrics::{CallOutcome, Metrics},
    sender::Sender,
    store::{self, Recorded},
};
use platform::{
    db::Database,
    proto::{
        notify::v1::{self as pb, notify_service_server::NotifyService},
        std_duration, system_time, timestamp,
    },
    status::Violations,
};
use std::time::Duration;
use tokio::time::Instant;
use tonic::{Request, Response, Status, metadata::MetadataMap};

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
        let deadline = Instant::now() + wait_budget(grpc_timeout(request.metadata()), self.send_wait);
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

/// Turns a SendOnce request into domain values, naming every wrong field.
fn parse_send_once(request: pb::SendOnceRequest, limits: &Limits) -> Result<SendRequest, Error> {
    let mut violations = Violations::new();
    let booking_id = violations.check("booking_id", parse_booking_id(&request.booking_id));
    let kind = violations.check("kind", parse_kind(request.kind));
    let version = violations.check("version", parse_version(request.version));
    let recipient = match &request.recipient {
        None => {
            violations.add("recipient", "required");
            None
        }
        Some(recipient) => match Recipient::parse(&recipient.email, &recipient.name, limits) {
            Ok(recipient) => Some(recipient),
            Err(wrong) => {
                for (field, description) in wrong {
                    violations.add(format!("recipient.{field}"), description);
                }
                None
            }
        },
    };
    let details = match &request.details {
        None => {
            violations.add("details", "required");
            None
        }
        Some(details) => {
            let raw = RawDetails {
                restaurant_name: &details.restaurant_name,
                start_time: details.start_time.as_ref().map(system_time),
                duration: details.duration.as_ref().map(std_duration),
                party_size: details.party_size,
                table_ids: &details.table_ids,
                notes: &details.notes,
            };
            parse_details(raw, limits, &mut violations)
        }
    };
    match (booking_id, kind, version, recipient, details) {
        (Some(booking_id), Some(kind), Some(version), Some(recipient), Some(details)) if violations.is_empty() => {
            Ok(SendRequest {
                key: DeliveryKey { booking_id, kind, version },
                recipient,
                details,
                suppress: request.suppress,
            })
        }
        _ => Err(Error::Invalid(violations)),
    }
}

fn parse_details(raw: RawDetails<'_>, limits: &Limits, violations: &mut Violations) -> Option<Details> {
    match Details::parse(raw, limits) {
        Ok(details) => Some(details),
        Err(wrong) => {
            for (field, description) in wrong {
                violations.add(format!("details.{field}"), description);
            }
            None
        }
    }
}

fn parse_kind(value: i32) -> Result<Kind, String> {
    match pb::NotificationKind::try_from(value) {
        Ok(pb::NotificationKind::Unspecified) => Err("required".to_string()),
        Ok(pb::NotificationKind::BookingPending) => Ok(Kind::BookingPending),
        Ok(pb::NotificationKind::BookingConfirmed) => Ok(Kind::BookingConfirmed),
        Ok(pb::NotificationKind::ModificationRequested) => Ok(Kind::ModificationRequested),
        Ok(pb::NotificationKind::ModificationConfirmed) => Ok(Kind::ModificationConfirmed),
        Ok(pb::NotificationKind::BookingCancelled) => Ok(Kind::BookingCancelled),
        Err(_) => Err(format!("unknown kind {value}")),
    }
}

fn encode_kind(kind: Kind) -> pb::NotificationKind {
    match kind {
        Kind::BookingPending => pb::NotificationKind::BookingPending,
        Kind::BookingConfirmed => pb::NotificationKind::BookingConfirmed,
        Kind::ModificationRequested => pb::NotificationKind::ModificationRequested,
        Kind::ModificationConfirmed => pb::NotificationKind::ModificationConfirmed,
        Kind::BookingCancelled => pb::NotificationKind::BookingCancelled,
    }
}

fn encode_state(state: DeliveryState) -> pb::DeliveryState {
    match state {
        DeliveryState::Queued => pb::DeliveryState::Queued,
        DeliveryState::Sent => pb::DeliveryState::Sent,
        DeliveryState::Suppressed => pb::DeliveryState::Suppressed,
        DeliveryState::Failed => pb::DeliveryState::Failed,
    }
}

fn encode(delivery: &Delivery) -> pb::Delivery {
    pb::Delivery {
        booking_id: delivery.key.booking_id.to_string(),
        kind: encode_kind(delivery.key.kind).into(),
        version: delivery.key.version,
        recipient: Some(pb::Recipient {
            email: delivery.recipient.email().to_string(),
            name: delivery.recipient.name().to_string(),
        }),
        state: encode_state(delivery.state).into(),
        message_id: delivery.message_id.clone(),
        attempts: i32::try_from(delivery.attempts).unwrap_or(i32::MAX),
        requested_at: Some(timestamp(delivery.requested_at)),
        sent_at: delivery.sent_at.map(timestamp),
        last_error: delivery.last_error.clone().unwrap_or_default(),
        next_attempt_at: delivery.next_attempt_at.map(timestamp),
    }
}

/// The caller's deadline from the `grpc-timeout` header, if it sent one.
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    metadata.get("grpc-timeout").and_then(|value| value.to_str().ok()).and_then(parse_grpc_timeout)
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = value.get(..value.len() - unit.len_utf8())?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    match unit {
        'H' => Some(Duration::from_secs(amount * 3600)),
        'M' => Some(Duration::from_secs(amount * 60)),
        'S' => Some(Duration::from_secs(amount)),
        'm' => Some(Duration::from_millis(amount)),
        'u' => Some(Duration::from_micros(amount)),
        'n' => Some(Duration::from_nanos(amount)),
        _ => None,
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
    use platform::status::violated_fields;
    use proptest::prelude::*;

    fn valid() -> pb::SendOnceRequest {
        pb::SendOnceRequest {
            booking_id: "6f1c2a34-1d2e-4c5b-9a8f-0123456789ab".to_string(),
            kind: pb::NotificationKind::BookingConfirmed.into(),
            version: 1,
            recipient: Some(pb::Recipient { email: "ada@example.com".to_string(), name: "Ada".to_string() }),
            details: Some(pb::Details {
                restaurant_name: "Chez Test".to_string(),
                start_time: Some(prost_types::Timestamp { seconds: 1_800_000_000, nanos: 0 }),
                duration: Some(prost_types::Duration { seconds: 5400, nanos: 0 }),
                party_size: 2,
                table_ids: vec!["T1".to_string()],
                notes: String::new(),
            }),
            suppress: false,
        }
    }

    fn fields_of(request: pb::SendOnceRequest) -> Vec<String> {
        match parse_send_once(request, &Limits::CONTRACT) {
            Ok(parsed) => panic!("accepted {parsed:?}"),
            Err(error) => violated_fields(&Status::from(error)),
        }
    }

    #[test]
    fn a_valid_request_parses() {
        let parsed = parse_send_once(valid(), &Limits::CONTRACT).unwrap();
        assert_eq!(parsed.key.kind, Kind::BookingConfirmed);
        assert_eq!(parsed.recipient.email(), "ada@example.com");
        assert_eq!(parsed.details.party_size(), 2);
    }

    #[test]
    fn every_wrong_field_is_named_with_its_proto_path() {
        let mut request = valid();
        request.booking_id = "nope".into();
        request.kind = 0;
        request.version = 0;
        request.recipient = Some(pb::Recipient { email: "not-an-email".into(), name: "n".repeat(201) });
        let details = request.details.as_mut().unwrap();
        details.notes = "n".repeat(2001);
        details.table_ids = (0..51).map(|i| format!("T{i}")).collect();
        details.start_time = None;
        details.duration = Some(prost_types::Duration { seconds: -1, nanos: 0 });
        details.party_size = 0;
        assert_eq!(
            fields_of(request),
            vec![
                "booking_id",
                "kind",
                "version",
                "recipient.email",
                "recipient.name",
                "details.start_time",
                "details.duration",
                "details.party_size",
                "details.table_ids",
                "details.notes"
            ]
        );
        let mut missing = valid();
        missing.recipient = None;
        missing.details = None;
        missing.kind = 99;
        assert_eq!(fields_of(missing), vec!["kind", "recipient", "details"]);
        let mut bad_time = valid();
        bad_time.details.as_mut().unwrap().start_time = Some(prost_types::Timestamp { seconds: 0, nanos: -5 });
        assert_eq!(fields_of(bad_time), vec!["details.start_time"]);
    }

    #[test]
    fn grpc_timeouts_parse_per_the_spec() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("250000u"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S", "10 m", "5é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

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
        fn any_grpc_timeout_text_is_safe(value in "\\PC{0,12}") {
            let _ = parse_grpc_timeout(&value);
        }

        #[test]
        fn the_wait_never_reaches_the_deadline(ms in 1u64..100_000, cap_ms in 0u64..10_000) {
            let deadline = Duration::from_millis(ms);
            let wait = wait_budget(Some(deadline), Duration::from_millis(cap_ms));
            prop_assert!(wait < deadline);
            prop_assert!(wait <= Duration::from_millis(cap_ms));
        }
    }
}
