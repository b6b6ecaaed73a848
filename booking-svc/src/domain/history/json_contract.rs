//! The JSON of every kind of history event, as GetBookingHistory answers it.
//!
//! The stored details are answered as stored, so this JSON is the public contract: a
//! change here is a change of the API.

use super::*;
use crate::domain::{
    BookingStatus,
    booking::FieldValue,
    guest::{GuestEmail, GuestName, Notes, Phone},
    values::{BookingDuration, BookingId, PartySize, RestaurantId, StartTime, Version},
};
use serde_json::{Value, json};
use std::time::Duration;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn json_of(detail: &Detail) -> Value {
    serde_json::to_value(detail).expect("a detail serializes")
}

/// The JSON of every kind of event, as GetBookingHistory answers it: one case per
/// shape, with the kind it is stored under.
#[test]
fn every_detail_serializes_to_its_documented_json() {
    let booking = Booking {
        id: BookingId::from_uuid(uuid::Uuid::nil()),
        restaurant_id: RestaurantId::parse("r1").unwrap(),
        guest_name: GuestName::parse("Ada").unwrap(),
        guest_email: GuestEmail::parse("ada@example.com").unwrap(),
        guest_phone: Phone::default(),
        party_size: PartySize::parse(4).unwrap(),
        start_time: StartTime::from_stored(at(1_700_000_000)),
        duration: BookingDuration::parse(Some(Duration::from_secs(5_400))).unwrap(),
        notes: Notes::default(),
        status: BookingStatus::Pending,
        version: Version::FIRST,
        table_ids: vec![],
        created_at: at(1),
        updated_at: at(1),
    };
    let attempt = |result| InlineAttempt { result, elapsed: Duration::from_micros(12_500) };
    let retrying = UpdateState::Retrying { next_attempt_at: Some(at(1_700_000_060)) };
    let assigned = UpdateState::Assigned { table_ids: vec!["t1".into(), "t2".into()] };
    let cases: Vec<(Detail, EventType, Value)> = vec![
        (
            Detail::created(&booking, false, "spiffe://booking.internal/web-frontend"),
            EventType::Created,
            json!({
                "restaurant_id": "r1",
                "party_size": 4,
                "start_time": "2023-11-14T22:13:20Z",
                "duration_s": 5400,
                "suppress_emails": false,
                "actor": "spiffe://booking.internal/web-frontend",
            }),
        ),
        (
            Detail::Edited {
                changes: vec![
                    FieldChange {
                        field: "start_time",
                        from: FieldValue::Time(at(1_700_000_000)),
                        to: FieldValue::Time(at(1_700_003_600) + Duration::from_micros(250)),
                    },
                    FieldChange { field: "party_size", from: FieldValue::Count(4), to: FieldValue::Count(6) },
                    FieldChange {
                        field: "duration",
                        from: FieldValue::Length(Duration::from_secs(5_400)),
                        to: FieldValue::Length(Duration::from_secs(7_200)),
                    },
                    FieldChange {
                        field: "notes",
                        from: FieldValue::Text(String::new()),
                        to: FieldValue::Text("window".into()),
                    },
                ],
                suppress_emails: true,
                actor: "alice".into(),
            },
            EventType::Edited,
            json!({
                "changes": {
                    "start_time": { "from": "2023-11-14T22:13:20Z", "to": "2023-11-14T23:13:20.000250Z" },
                    "party_size": { "from": 4, "to": 6 },
                    "duration": { "from": "5400s", "to": "7200s" },
                    "notes": { "from": "", "to": "window" },
                },
                "suppress_emails": true,
                "actor": "alice",
            }),
        ),
        (
            Detail::edit_unchanged(),
            EventType::EditUnchanged,
            json!({ "reason": "every requested value equals the current one" }),
        ),
        (
            Detail::inline_attempt(&attempt(InlineResult::Assigned(vec!["t1".into()])), None),
            EventType::InlineAttempt,
            json!({ "result": "ASSIGNED", "elapsed_ms": 12.5, "email_sent": false, "table_ids": ["t1"] }),
        ),
        (
            Detail::inline_attempt(&attempt(InlineResult::Unavailable("Unavailable: down".into())), None),
            EventType::InlineAttempt,
            json!({ "result": "UNAVAILABLE", "elapsed_ms": 12.5, "email_sent": false, "error": "Unavailable: down" }),
        ),
        (
            Detail::inline_attempt(&attempt(InlineResult::Timeout), Some(Late::TakenOver)),
            EventType::InlineAttempt,
            json!({ "result": "TIMEOUT", "elapsed_ms": 12.5, "email_sent": false, "taken_over": true }),
        ),
        (
            Detail::inline_attempt(&attempt(InlineResult::NoCapacity), Some(Late::Stale)),
            EventType::InlineAttempt,
            json!({ "result": "NO_CAPACITY", "elapsed_ms": 12.5, "email_sent": false, "stale": true }),
        ),
        (
            Detail::inline_attempt(&attempt(InlineResult::Disabled), None),
            EventType::InlineAttempt,
            json!({ "result": "DISABLED", "elapsed_ms": 12.5, "email_sent": false }),
        ),
        (
            Detail::interrupted(),
            EventType::InlineAttempt,
            json!({
                "result": "INTERRUPTED",
                "email_sent": false,
                "reason": "the request ended before recording its inline result; the background takes over",
            }),
        ),
        (
            Detail::reassign_update(&retrying, 2, "no table fits", &Decision::RecordAttempt, 3),
            EventType::ReassignUpdate,
            json!({
                "state": "RETRYING",
                "attempt": 2,
                "last_error": "no table fits",
                "next_attempt_at": "2023-11-14T22:14:20Z",
            }),
        ),
        (
            Detail::reassign_update(
                &UpdateState::Retrying { next_attempt_at: None },
                1,
                "",
                &Decision::RecordAttempt,
                3,
            ),
            EventType::ReassignUpdate,
            json!({ "state": "RETRYING", "attempt": 1, "last_error": "" }),
        ),
        (
            Detail::reassign_update(&assigned, 3, "", &Decision::Confirm { table_ids: vec![] }, 3),
            EventType::ReassignUpdate,
            json!({ "state": "ASSIGNED", "attempt": 3, "last_error": "", "table_ids": ["t1", "t2"] }),
        ),
        (
            Detail::reassign_update(&assigned, 3, "", &Decision::Stale, 4),
            EventType::ReassignUpdate,
            json!({
                "state": "ASSIGNED",
                "attempt": 3,
                "last_error": "",
                "table_ids": ["t1", "t2"],
                "stale": true,
                "current_version": 4,
            }),
        ),
        (
            Detail::reassign_update(
                &UpdateState::GaveUp,
                9,
                "start time passed",
                &Decision::Close(JobState::GaveUp),
                3,
            ),
            EventType::ReassignUpdate,
            json!({
                "state": "GAVE_UP",
                "attempt": 9,
                "last_error": "start time passed",
                "note": "background assignment gave up; the booking stays PENDING",
            }),
        ),
        (
            Detail::reassign_update(&UpdateState::Superseded, 1, "", &Decision::Close(JobState::Superseded), 3),
            EventType::ReassignUpdate,
            json!({ "state": "SUPERSEDED", "attempt": 1, "last_error": "" }),
        ),
        (
            Detail::Confirmed(Confirmation::Inline { table_ids: vec!["t1".into()] }),
            EventType::Confirmed,
            json!({ "table_ids": ["t1"], "via": "inline" }),
        ),
        (
            Detail::Confirmed(Confirmation::Background { table_ids: vec!["t1".into()], attempts: 4 }),
            EventType::Confirmed,
            json!({ "table_ids": ["t1"], "via": "background", "attempts": 4 }),
        ),
        (
            Detail::EmailQueued { kind: EmailKind::ModificationConfirmed },
            EventType::EmailQueued,
            json!({ "kind": "MODIFICATION_CONFIRMED" }),
        ),
        (
            Detail::EmailSuppressed { kind: EmailKind::BookingPending },
            EventType::EmailSuppressed,
            json!({ "kind": "BOOKING_PENDING" }),
        ),
        (
            Detail::EmailDispatched {
                kind: EmailKind::BookingConfirmed,
                state: "SENT".into(),
                duplicate: false,
                attempts: 1,
                message_id: "<m@booking>".into(),
            },
            EventType::EmailDispatched,
            json!({
                "kind": "BOOKING_CONFIRMED",
                "state": "SENT",
                "duplicate": false,
                "attempts": 1,
                "message_id": "<m@booking>",
            }),
        ),
        (
            Detail::EmailDropped {
                kind: EmailKind::ModificationRequested,
                reason: "version 2 was superseded by version 3".into(),
                current_version: Some(3),
            },
            EventType::EmailDropped,
            json!({
                "kind": "MODIFICATION_REQUESTED",
                "reason": "version 2 was superseded by version 3",
                "current_version": 3,
            }),
        ),
        (
            Detail::EmailDropped {
                kind: EmailKind::BookingCancelled,
                reason: "refused by notify-svc: InvalidArgument: bad".into(),
                current_version: None,
            },
            EventType::EmailDropped,
            json!({ "kind": "BOOKING_CANCELLED", "reason": "refused by notify-svc: InvalidArgument: bad" }),
        ),
        (
            Detail::Cancelled { suppress_emails: true, actor: "alice".into() },
            EventType::Cancelled,
            json!({ "suppress_emails": true, "actor": "alice" }),
        ),
    ];
    for (detail, kind, expected) in cases {
        assert_eq!(detail.kind(), kind, "{detail:?}");
        assert_eq!(json_of(&detail), expected, "{detail:?}");
    }
}
