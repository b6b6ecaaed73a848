//! The tonic implementation of `booking.v1.BookingService`: decode each request into
//! domain values (INVALID_ARGUMENT naming every wrong field, nothing written), call the
//! flow, encode the answer. No rule and no SQL lives here.

use crate::{
    domain::{
        Booking, BookingStatus,
        booking::{CancelRequest, Changes, EditRequest, NewBooking},
        inline::{InlineAttempt, InlineResult, Outcome},
        paging::{ListQuery, decode_token, parse_page_size},
        values::{
            BookingDuration, BookingId, GuestEmail, GuestName, IdempotencyKey, Notes, PartySize, Phone, RestaurantId,
            StartTime, parse_expected_version,
        },
    },
    error::Error,
    flow::{Answer, Flow},
    metrics::Metrics,
};
use platform::{
    proto::{
        booking::v1::{self as pb, booking_service_server::BookingService},
        duration, std_duration, system_time, timestamp,
    },
    status::Violations,
};
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use tonic::{Request, Response, Status, metadata::MetadataMap};

/// The gRPC face of the service.
pub struct Api {
    flow: Arc<Flow>,
    metrics: Arc<Metrics>,
}

impl Api {
    pub fn new(flow: Arc<Flow>, metrics: Arc<Metrics>) -> Self {
        Self { flow, metrics }
    }
}

#[tonic::async_trait]
impl BookingService for Api {
    async fn create_booking(
        &self,
        request: Request<pb::CreateBookingRequest>,
    ) -> Result<Response<pb::CreateBookingResponse>, Status> {
        let deadline = caller_deadline(request.metadata());
        let request = request.into_inner();
        // Kept only when the request has a key: then it may be a retry (below).
        let keyed = (!request.idempotency_key.is_empty()).then(|| request.clone());
        let parsed = match parse_create(request, SystemTime::now()) {
            Ok(parsed) => parsed,
            Err(invalid) => {
                // A retry of a request made while it was valid (its start time has passed
                // since) is answered as it was first answered, like every retry with its key.
                if let Some(retry) = keyed.and_then(|r| parse_create(r, SystemTime::UNIX_EPOCH).ok())
                    && let Some(answer) = self.flow.replay_create(&retry).await?
                {
                    let (booking, outcome, inline_attempt) = encode_answer(answer);
                    return Ok(Response::new(pb::CreateBookingResponse { booking, outcome, inline_attempt }));
                }
                return Err(invalid);
            }
        };
        let answer = self.flow.create(parsed, deadline).await?;
        let (booking, outcome, inline_attempt) = encode_answer(answer);
        Ok(Response::new(pb::CreateBookingResponse { booking, outcome, inline_attempt }))
    }

    async fn edit_booking(
        &self,
        request: Request<pb::EditBookingRequest>,
    ) -> Result<Response<pb::EditBookingResponse>, Status> {
        let deadline = caller_deadline(request.metadata());
        let request = request.into_inner();
        // Kept only when the request has a key: then it may be a retry (below).
        let keyed = (!request.idempotency_key.is_empty()).then(|| request.clone());
        let parsed = match parse_edit(request, SystemTime::now()) {
            Ok(parsed) => parsed,
            Err(invalid) => {
                // As for a create: a retry whose new start time has passed since is answered
                // as first answered.
                if let Some(retry) = keyed.and_then(|r| parse_edit(r, SystemTime::UNIX_EPOCH).ok())
                    && let Some(answer) = self.flow.replay_edit(&retry).await?
                {
                    self.metrics.edit_answered(answer.outcome);
                    let (booking, outcome, inline_attempt) = encode_answer(answer);
                    return Ok(Response::new(pb::EditBookingResponse { booking, outcome, inline_attempt }));
                }
                return Err(invalid);
            }
        };
        let answer = self.flow.edit(parsed, deadline).await?;
        self.metrics.edit_answered(answer.outcome);
        let (booking, outcome, inline_attempt) = encode_answer(answer);
        Ok(Response::new(pb::EditBookingResponse { booking, outcome, inline_attempt }))
    }

    async fn get_booking(
        &self,
        request: Request<pb::GetBookingRequest>,
    ) -> Result<Response<pb::GetBookingResponse>, Status> {
        let id = parse_id("booking_id", &request.into_inner().booking_id)?;
        let booking = self.flow.get(id).await?;
        Ok(Response::new(pb::GetBookingResponse { booking: Some(encode_booking(booking)) }))
    }

    async fn list_bookings(
        &self,
        request: Request<pb::ListBookingsRequest>,
    ) -> Result<Response<pb::ListBookingsResponse>, Status> {
        let (query, hash) = parse_list(request.into_inner())?;
        let (bookings, token) = self.flow.list(&query, hash).await?;
        Ok(Response::new(pb::ListBookingsResponse {
            bookings: bookings.into_iter().map(encode_booking).collect(),
            next_page_token: token.unwrap_or_default(),
        }))
    }

    async fn cancel_booking(
        &self,
        request: Request<pb::CancelBookingRequest>,
    ) -> Result<Response<pb::CancelBookingResponse>, Status> {
        let parsed = parse_cancel(request.into_inner())?;
        let booking = self.flow.cancel(parsed).await?;
        Ok(Response::new(pb::CancelBookingResponse { booking: Some(encode_booking(booking)) }))
    }

    async fn get_booking_history(
        &self,
        request: Request<pb::GetBookingHistoryRequest>,
    ) -> Result<Response<pb::GetBookingHistoryResponse>, Status> {
        let id = parse_id("booking_id", &request.into_inner().booking_id)?;
        let events = self.flow.history(id).await?;
        let events = events
            .into_iter()
            .map(|e| pb::BookingEvent {
                time: Some(timestamp(e.at)),
                r#type: pb::BookingEventType::from_str_name(&format!("BOOKING_EVENT_TYPE_{}", e.kind))
                    .unwrap_or(pb::BookingEventType::Unspecified) as i32,
                version: e.version,
                detail: Some(json_struct(e.detail)),
            })
            .collect();
        Ok(Response::new(pb::GetBookingHistoryResponse { events }))
    }
}

// ------------------------------------------------------------------ decoding

/// When the caller stops waiting, from its `grpc-timeout` metadata.
fn caller_deadline(metadata: &MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    parse_grpc_timeout(value).map(|timeout| Instant::now() + timeout)
}

/// Parses a `grpc-timeout` value (at most 8 digits and a unit: H M S m u n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 || !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn parse_id(field: &str, value: &str) -> Result<BookingId, Status> {
    BookingId::parse(value).map_err(|description| platform::status::invalid_argument(field, description))
}

fn invalid(violations: Violations) -> Status {
    Error::Invalid(violations).into()
}

/// A field whose parse failed although no violation was recorded (cannot happen).
fn unparsed() -> Status {
    Status::internal("request decoding failed")
}

fn parse_create(r: pb::CreateBookingRequest, now: SystemTime) -> Result<NewBooking, Status> {
    let mut v = Violations::new();
    let guest = r.guest.unwrap_or_default();
    let restaurant_id = v.check("restaurant_id", RestaurantId::parse(&r.restaurant_id));
    let guest_name = v.check("guest.name", GuestName::parse(&guest.name));
    let guest_email = v.check("guest.email", GuestEmail::parse(&guest.email));
    let guest_phone = v.check("guest.phone", Phone::parse(&guest.phone));
    let party_size = v.check("party_size", PartySize::parse(r.party_size));
    let start_time = v.check("start_time", StartTime::parse(r.start_time.as_ref().and_then(system_time), now));
    let duration = v.check("duration", BookingDuration::parse_or_default(r.duration.as_ref().map(std_duration)));
    let notes = v.check("notes", Notes::parse(&r.notes));
    let idempotency_key = v.check("idempotency_key", IdempotencyKey::parse_optional(&r.idempotency_key));
    if !v.is_empty() {
        return Err(invalid(v));
    }
    let (
        Some(restaurant_id),
        Some(guest_name),
        Some(guest_email),
        Some(guest_phone),
        Some(party_size),
        Some(start_time),
        Some(duration),
        Some(notes),
        Some(idempotency_key),
    ) = (restaurant_id, guest_name, guest_email, guest_phone, party_size, start_time, duration, notes, idempotency_key)
    else {
        return Err(unparsed());
    };
    Ok(NewBooking {
        restaurant_id,
        guest_name,
        guest_email,
        guest_phone,
        party_size,
        start_time,
        duration,
        notes,
        suppress_emails: r.suppress_emails,
        idempotency_key,
    })
}

fn parse_edit(r: pb::EditBookingRequest, now: SystemTime) -> Result<EditRequest, Status> {
    let mut v = Violations::new();
    let booking_id = v.check("booking_id", BookingId::parse(&r.booking_id));
    let expected_version = v.check("expected_version", parse_expected_version(r.expected_version));
    let start_time = match &r.start_time {
        None => Some(None),
        Some(ts) => v.check("start_time", StartTime::parse(system_time(ts), now)).map(Some),
    };
    let party_size = match r.party_size {
        None => Some(None),
        Some(n) => v.check("party_size", PartySize::parse(n)).map(Some),
    };
    let duration = match &r.duration {
        None => Some(None),
        Some(d) => v.check("duration", BookingDuration::parse(std_duration(d))).map(Some),
    };
    let notes = match &r.notes {
        None => Some(None),
        Some(n) => v.check("notes", Notes::parse(n)).map(Some),
    };
    let idempotency_key = v.check("idempotency_key", IdempotencyKey::parse_optional(&r.idempotency_key));
    if !v.is_empty() {
        return Err(invalid(v));
    }
    let (
        Some(booking_id),
        Some(expected_version),
        Some(start_time),
        Some(party_size),
        Some(duration),
        Some(notes),
        Some(idempotency_key),
    ) = (booking_id, expected_version, start_time, party_size, duration, notes, idempotency_key)
    else {
        return Err(unparsed());
    };
    Ok(EditRequest {
        booking_id,
        expected_version,
        changes: Changes { start_time, party_size, duration, notes },
        suppress_emails: r.suppress_emails,
        idempotency_key,
    })
}

fn parse_cancel(r: pb::CancelBookingRequest) -> Result<CancelRequest, Status> {
    let mut v = Violations::new();
    let booking_id = v.check("booking_id", BookingId::parse(&r.booking_id));
    let expected_version = v.check("expected_version", parse_expected_version(r.expected_version));
    let idempotency_key = v.check("idempotency_key", IdempotencyKey::parse_optional(&r.idempotency_key));
    if !v.is_empty() {
        return Err(invalid(v));
    }
    let (Some(booking_id), Some(expected_version), Some(idempotency_key)) =
        (booking_id, expected_version, idempotency_key)
    else {
        return Err(unparsed());
    };
    Ok(CancelRequest { booking_id, expected_version, suppress_emails: r.suppress_emails, idempotency_key })
}

fn parse_list(r: pb::ListBookingsRequest) -> Result<(ListQuery, u64), Status> {
    let mut v = Violations::new();
    let restaurant_id = v.check("restaurant_id", RestaurantId::parse(&r.restaurant_id));
    let mut time = |field: &str, ts: &Option<prost_types::Timestamp>| match ts {
        None => Some(None),
        Some(ts) => v.check(field, system_time(ts).ok_or_else(|| "not a valid timestamp".to_string())).map(Some),
    };
    let from = time("from_time", &r.from_time);
    let to = time("to_time", &r.to_time);
    if let (Some(Some(from)), Some(Some(to))) = (from, to)
        && to <= from
    {
        v.add("to_time", "must be after from_time");
    }
    let status = match r.status {
        None => Some(None),
        Some(n) => v
            .check(
                "status",
                match pb::BookingStatus::try_from(n) {
                    Ok(pb::BookingStatus::Pending) => Ok(BookingStatus::Pending),
                    Ok(pb::BookingStatus::Confirmed) => Ok(BookingStatus::Confirmed),
                    Ok(pb::BookingStatus::Cancelled) => Ok(BookingStatus::Cancelled),
                    _ => Err("must be PENDING, CONFIRMED or CANCELLED".to_string()),
                },
            )
            .map(Some),
    };
    let page_size = v.check("page_size", parse_page_size(r.page_size));
    let (Some(restaurant_id), Some(from), Some(to), Some(status), Some(page_size)) =
        (restaurant_id, from, to, status, page_size)
    else {
        return Err(invalid(v));
    };
    let hash = ListQuery::filter_hash(&restaurant_id, from, to, status);
    let after = if r.page_token.is_empty() { None } else { v.check("page_token", decode_token(&r.page_token, hash)) };
    if !v.is_empty() {
        return Err(invalid(v));
    }
    Ok((ListQuery { restaurant_id, from, to, status, page_size, after }, hash))
}

// ------------------------------------------------------------------ encoding

fn encode_answer(answer: Answer) -> (Option<pb::Booking>, i32, Option<pb::InlineAttempt>) {
    let outcome = match answer.outcome {
        Outcome::Confirmed => pb::Outcome::Confirmed,
        Outcome::Pending => pb::Outcome::Pending,
        Outcome::Unchanged => pb::Outcome::Unchanged,
    };
    (Some(encode_booking(answer.booking)), outcome as i32, Some(encode_inline(&answer.inline)))
}

fn encode_inline(attempt: &InlineAttempt) -> pb::InlineAttempt {
    let result = match attempt.result {
        InlineResult::Assigned(_) => pb::InlineResult::Assigned,
        InlineResult::NoCapacity => pb::InlineResult::NoCapacity,
        InlineResult::Timeout => pb::InlineResult::Timeout,
        InlineResult::Unavailable(_) => pb::InlineResult::Unavailable,
        InlineResult::Disabled => pb::InlineResult::Disabled,
        InlineResult::Skipped => pb::InlineResult::Skipped,
    };
    pb::InlineAttempt { result: result as i32, elapsed: Some(duration(attempt.elapsed)), email_sent: false }
}

fn encode_booking(b: Booking) -> pb::Booking {
    let status = match b.status {
        BookingStatus::Pending => pb::BookingStatus::Pending,
        BookingStatus::Confirmed => pb::BookingStatus::Confirmed,
        BookingStatus::Cancelled => pb::BookingStatus::Cancelled,
    };
    pb::Booking {
        id: b.id.to_string(),
        restaurant_id: b.restaurant_id,
        guest: Some(pb::Guest { name: b.guest_name, email: b.guest_email, phone: b.guest_phone }),
        party_size: b.party_size,
        start_time: Some(timestamp(b.start_time)),
        duration: Some(duration(b.duration)),
        notes: b.notes,
        status: status as i32,
        version: b.version,
        table_ids: b.table_ids,
        created_at: Some(timestamp(b.created_at)),
        updated_at: Some(timestamp(b.updated_at)),
    }
}

/// A JSON object as a `google.protobuf.Struct` (a non-object under the key `value`).
fn json_struct(value: serde_json::Value) -> prost_types::Struct {
    match value {
        serde_json::Value::Object(map) => {
            prost_types::Struct { fields: map.into_iter().map(|(k, v)| (k, json_value(v))).collect() }
        }
        other => prost_types::Struct { fields: [("value".to_string(), json_value(other))].into_iter().collect() },
    }
}

fn json_value(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => {
            Kind::ListValue(prost_types::ListValue { values: items.into_iter().map(json_value).collect() })
        }
        object @ serde_json::Value::Object(_) => Kind::StructValue(json_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::status::violated_fields;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("800m"), Some(Duration::from_millis(800)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("250000u"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "5", "5x", "123456789S", "-5S", "5.0S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_bad_create_names_every_wrong_field() {
        let now = SystemTime::now();
        let request = pb::CreateBookingRequest {
            restaurant_id: String::new(),
            guest: Some(pb::Guest { name: " ".into(), email: "nope".into(), phone: "call me".into() }),
            party_size: 0,
            start_time: Some(timestamp(now - Duration::from_secs(60))),
            duration: Some(duration(Duration::from_secs(60))),
            notes: "x".repeat(2_001),
            suppress_emails: false,
            idempotency_key: "k".repeat(201),
        };
        let status = parse_create(request, now).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            violated_fields(&status),
            vec![
                "restaurant_id",
                "guest.name",
                "guest.email",
                "guest.phone",
                "party_size",
                "start_time",
                "duration",
                "notes",
                "idempotency_key"
            ]
        );
    }

    #[test]
    fn a_create_without_guest_or_start_names_them() {
        let status = parse_create(
            pb::CreateBookingRequest { restaurant_id: "r1".into(), party_size: 2, ..Default::default() },
            SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(violated_fields(&status), vec!["guest.name", "guest.email", "start_time"]);
    }

    #[test]
    fn an_edit_checks_only_the_fields_it_sets() {
        let now = SystemTime::now();
        let ok = parse_edit(
            pb::EditBookingRequest {
                booking_id: "4f1c2c7e-8a4e-4bd4-9a57-3a8f0c1b2d3e".into(),
                party_size: Some(3),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(ok.changes.party_size.map(|p| p.get()), Some(3));
        assert_eq!(ok.changes.start_time, None);
        let status = parse_edit(
            pb::EditBookingRequest {
                booking_id: "42".into(),
                expected_version: Some(0),
                party_size: Some(101),
                duration: Some(prost_types::Duration { seconds: -5, nanos: 0 }),
                ..Default::default()
            },
            now,
        )
        .unwrap_err();
        assert_eq!(violated_fields(&status), vec!["booking_id", "expected_version", "party_size", "duration"]);
    }

    #[test]
    fn list_requests_check_range_status_size_and_token() {
        let now = SystemTime::now();
        let status = parse_list(pb::ListBookingsRequest {
            restaurant_id: "r1".into(),
            from_time: Some(timestamp(now)),
            to_time: Some(timestamp(now)),
            status: Some(0),
            page_size: 501,
            page_token: "x".into(),
        })
        .unwrap_err();
        assert_eq!(violated_fields(&status), vec!["to_time", "status", "page_size"]);
        let status = parse_list(pb::ListBookingsRequest {
            restaurant_id: "r1".into(),
            page_token: "bad".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(violated_fields(&status), vec!["page_token"]);
        let (query, _) =
            parse_list(pb::ListBookingsRequest { restaurant_id: "r1".into(), ..Default::default() }).unwrap();
        assert_eq!(query.page_size, 50);
    }

    #[test]
    fn history_details_become_structs() {
        let s = json_struct(serde_json::json!({ "kind": "X", "n": 2, "ok": true, "list": ["a"], "none": null }));
        assert_eq!(s.fields.len(), 5);
        assert!(matches!(s.fields["n"].kind, Some(prost_types::value::Kind::NumberValue(n)) if n == 2.0));
    }
}
