//! Decoding: a request into the domain values it stands for.
//!
//! Every wrong field is named in one INVALID_ARGUMENT (a `google.rpc.BadRequest` field
//! violation each), and nothing is written.

use crate::{
    domain::{
        BookingStatus,
        booking::Changes,
        guest::{GuestEmail, GuestName, Notes, Phone},
        paging::{ListQuery, decode_token, parse_page_size},
        requests::{CancelRequest, EditRequest, NewBooking},
        values::{
            BookingDuration, BookingId, IdempotencyKey, PartySize, RestaurantId, StartTime, parse_expected_version,
        },
    },
    error::Error,
    feed::{Cursor, Start, WatchRequest},
};
use platform::{
    proto::{booking::v1 as pb, std_duration, system_time},
    status::Violations,
};
use std::time::SystemTime;
use tonic::Status;

pub(super) fn parse_id(field: &str, value: &str) -> Result<BookingId, Status> {
    BookingId::parse(value).map_err(|description| platform::status::invalid_argument(field, description))
}

fn invalid(violations: Violations) -> Status {
    Error::Invalid(violations).into()
}

/// A field whose parse failed although no violation was recorded (cannot happen).
fn unparsed() -> Status {
    Status::internal("request decoding failed")
}

pub(super) fn parse_create(r: pb::CreateBookingRequest, now: SystemTime) -> Result<NewBooking, Status> {
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
        actor: String::new(),
    })
}

pub(super) fn parse_edit(r: pb::EditBookingRequest, now: SystemTime) -> Result<EditRequest, Status> {
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
        actor: String::new(),
    })
}

pub(super) fn parse_cancel(r: pb::CancelBookingRequest) -> Result<CancelRequest, Status> {
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
    Ok(CancelRequest {
        booking_id,
        expected_version,
        suppress_emails: r.suppress_emails,
        idempotency_key,
        actor: String::new(),
    })
}

pub(super) fn parse_list(r: pb::ListBookingsRequest) -> Result<(ListQuery, u64), Status> {
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

pub(super) fn parse_watch(r: pb::WatchBookingChangesRequest) -> Result<WatchRequest, Status> {
    let mut v = Violations::new();
    let start = match (r.from_start, r.cursor.is_empty()) {
        (true, true) => Some(Start::Oldest),
        (true, false) => {
            v.add("cursor", "not together with from_start");
            None
        }
        (false, true) => Some(Start::Now),
        (false, false) => v.check("cursor", Cursor::decode(&r.cursor)).map(Start::After),
    };
    let restaurant = match &r.restaurant_id {
        None => Some(None),
        Some(id) => v.check("restaurant_id", RestaurantId::parse(id)).map(Some),
    };
    match (start, restaurant) {
        (Some(start), Some(restaurant)) if v.is_empty() => Ok(WatchRequest { start, restaurant }),
        _ => Err(invalid(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::{
        proto::{duration, timestamp},
        status::violated_fields,
    };
    use std::time::Duration;

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
    fn a_watch_starts_now_from_start_or_after_a_cursor() {
        let watch = |cursor: &str, from_start: bool, restaurant_id: Option<&str>| {
            parse_watch(pb::WatchBookingChangesRequest {
                cursor: cursor.into(),
                from_start,
                restaurant_id: restaurant_id.map(Into::into),
            })
        };
        assert_eq!(watch("", false, None).unwrap(), WatchRequest { start: Start::Now, restaurant: None });
        assert_eq!(watch("", true, Some("r1")).unwrap().start, Start::Oldest);
        let cursor = Cursor::after(9);
        assert_eq!(watch(&cursor.encode(), false, None).unwrap().start, Start::After(cursor));
        assert_eq!(violated_fields(&watch(&cursor.encode(), true, None).unwrap_err()), vec!["cursor"]);
        assert_eq!(violated_fields(&watch("nope", false, Some("")).unwrap_err()), vec!["cursor", "restaurant_id"]);
    }
}
