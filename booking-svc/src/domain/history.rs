//! History events: their kinds and their typed details.
//!
//! Every step of the flow appends events; nothing is ever updated or deleted. A detail is
//! stored as JSON and GetBookingHistory answers it as stored, so the JSON each variant of
//! [`Detail`] serializes to is part of the public contract: the tests below hold it.

use super::{
    booking::{Booking, FieldChange, rfc3339},
    emails::EmailKind,
    inline::{InlineAttempt, InlineResult},
    reassign::{Decision, JobState, UpdateState},
};
use serde::{Serialize, Serializer, ser::SerializeMap};
use std::time::SystemTime;

/// Kind of a history event (stored by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Created,
    Edited,
    EditUnchanged,
    InlineAttempt,
    ReassignUpdate,
    Confirmed,
    EmailQueued,
    EmailDispatched,
    EmailDropped,
    EmailSuppressed,
    Cancelled,
}

impl EventType {
    const ALL: [EventType; 11] = [
        EventType::Created,
        EventType::Edited,
        EventType::EditUnchanged,
        EventType::InlineAttempt,
        EventType::ReassignUpdate,
        EventType::Confirmed,
        EventType::EmailQueued,
        EventType::EmailDispatched,
        EventType::EmailDropped,
        EventType::EmailSuppressed,
        EventType::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::Created => "CREATED",
            EventType::Edited => "EDITED",
            EventType::EditUnchanged => "EDIT_UNCHANGED",
            EventType::InlineAttempt => "INLINE_ATTEMPT",
            EventType::ReassignUpdate => "REASSIGN_UPDATE",
            EventType::Confirmed => "CONFIRMED",
            EventType::EmailQueued => "EMAIL_QUEUED",
            EventType::EmailDispatched => "EMAIL_DISPATCHED",
            EventType::EmailDropped => "EMAIL_DROPPED",
            EventType::EmailSuppressed => "EMAIL_SUPPRESSED",
            EventType::Cancelled => "CANCELLED",
        }
    }

    /// Reads a stored name.
    pub fn from_stored(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }
}

/// One event to append: a detail about one version of the booking.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub version: i64,
    pub detail: Detail,
}

impl Event {
    /// An event about `version`; its kind follows from `detail`.
    pub fn new(version: i64, detail: Detail) -> Self {
        Self { version, detail }
    }

    /// The kind of event.
    pub fn kind(&self) -> EventType {
        self.detail.kind()
    }
}

/// What an event says, one variant per shape of detail (serialized as the JSON object of
/// its fields, with no tag: the event's kind is stored beside it).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// CREATED: version 1 as requested.
    Created {
        restaurant_id: String,
        party_size: i32,
        #[serde(serialize_with = "as_rfc3339")]
        start_time: SystemTime,
        duration_s: u64,
        suppress_emails: bool,
    },
    /// EDITED: each changed field's old and new value, by field name.
    Edited {
        #[serde(serialize_with = "as_change_map")]
        changes: Vec<FieldChange>,
        suppress_emails: bool,
    },
    /// EDIT_UNCHANGED: an edit that asked for the values the booking already has.
    EditUnchanged { reason: &'static str },
    /// INLINE_ATTEMPT: how the request's own `Assign` call went. The inline path never
    /// sends mail (`email_sent` is always false).
    InlineAttempt {
        result: &'static str,
        elapsed_ms: f64,
        email_sent: bool,
        /// Why assign-svc was unavailable.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The tables it assigned.
        #[serde(skip_serializing_if = "Option::is_none")]
        table_ids: Option<Vec<String>>,
        /// The background had taken the version over: the result did not count.
        #[serde(skip_serializing_if = "is_false")]
        taken_over: bool,
        /// The version was no longer current and PENDING: the result did not count.
        #[serde(skip_serializing_if = "is_false")]
        stale: bool,
    },
    /// INLINE_ATTEMPT of a request that ended before recording its result: the background
    /// takes over.
    Interrupted { result: &'static str, email_sent: bool, reason: &'static str },
    /// REASSIGN_UPDATE: one update of the Reassign stream and what it meant.
    ReassignUpdate {
        state: &'static str,
        attempt: i32,
        last_error: String,
        /// When a RETRYING job is tried next.
        #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_optional_rfc3339")]
        next_attempt_at: Option<SystemTime>,
        /// The tables of an ASSIGNED update.
        #[serde(skip_serializing_if = "Option::is_none")]
        table_ids: Option<Vec<String>>,
        /// About a version that is no longer current, or a job already closed.
        #[serde(skip_serializing_if = "is_false")]
        stale: bool,
        /// The booking's version when the update was stale.
        #[serde(skip_serializing_if = "Option::is_none")]
        current_version: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<&'static str>,
    },
    /// CONFIRMED: tables assigned to the version, inline or in the background.
    Confirmed(Confirmation),
    /// EMAIL_QUEUED: the email is in the outbox.
    EmailQueued {
        #[serde(serialize_with = "as_email_kind")]
        kind: EmailKind,
    },
    /// EMAIL_SUPPRESSED: the request asked for no email.
    EmailSuppressed {
        #[serde(serialize_with = "as_email_kind")]
        kind: EmailKind,
    },
    /// EMAIL_DISPATCHED: notify-svc took the email (`duplicate`: it had it already).
    EmailDispatched {
        #[serde(serialize_with = "as_email_kind")]
        kind: EmailKind,
        state: String,
        duplicate: bool,
        attempts: i32,
        message_id: String,
    },
    /// EMAIL_DROPPED: the email will never go out, and why.
    EmailDropped {
        #[serde(serialize_with = "as_email_kind")]
        kind: EmailKind,
        reason: String,
        /// The version that superseded a stale email's.
        #[serde(skip_serializing_if = "Option::is_none")]
        current_version: Option<i64>,
    },
    /// CANCELLED: the booking was cancelled.
    Cancelled { suppress_emails: bool },
}

/// How a version got its tables (`via` in the detail).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "via", rename_all = "lowercase")]
pub enum Confirmation {
    /// By the request's own `Assign` call.
    Inline { table_ids: Vec<String> },
    /// By the Reassign stream, after `attempts` attempts.
    Background { table_ids: Vec<String>, attempts: i32 },
}

/// Why an inline result came too late to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Late {
    /// The background took the version over (the request looked dead).
    TakenOver,
    /// The version is no longer current and PENDING.
    Stale,
}

impl Detail {
    /// The kind of event this detail belongs to.
    pub fn kind(&self) -> EventType {
        match self {
            Detail::Created { .. } => EventType::Created,
            Detail::Edited { .. } => EventType::Edited,
            Detail::EditUnchanged { .. } => EventType::EditUnchanged,
            Detail::InlineAttempt { .. } | Detail::Interrupted { .. } => EventType::InlineAttempt,
            Detail::ReassignUpdate { .. } => EventType::ReassignUpdate,
            Detail::Confirmed(_) => EventType::Confirmed,
            Detail::EmailQueued { .. } => EventType::EmailQueued,
            Detail::EmailSuppressed { .. } => EventType::EmailSuppressed,
            Detail::EmailDispatched { .. } => EventType::EmailDispatched,
            Detail::EmailDropped { .. } => EventType::EmailDropped,
            Detail::Cancelled { .. } => EventType::Cancelled,
        }
    }

    /// A new booking, as requested.
    pub fn created(booking: &Booking, suppress_emails: bool) -> Self {
        Detail::Created {
            restaurant_id: booking.restaurant_id.as_str().to_string(),
            party_size: booking.party_size.get(),
            start_time: booking.start_time.get(),
            duration_s: booking.duration.get().as_secs(),
            suppress_emails,
        }
    }

    /// An edit that changes nothing.
    pub fn edit_unchanged() -> Self {
        Detail::EditUnchanged { reason: "every requested value equals the current one" }
    }

    /// The inline attempt, `late` when its result no longer counts.
    pub fn inline_attempt(attempt: &InlineAttempt, late: Option<Late>) -> Self {
        Detail::InlineAttempt {
            result: attempt.result.as_str(),
            elapsed_ms: attempt.elapsed.as_secs_f64() * 1000.0,
            email_sent: false,
            error: match &attempt.result {
                InlineResult::Unavailable(reason) => Some(reason.clone()),
                _ => None,
            },
            table_ids: match &attempt.result {
                InlineResult::Assigned(tables) => Some(tables.clone()),
                _ => None,
            },
            taken_over: late == Some(Late::TakenOver),
            stale: late == Some(Late::Stale),
        }
    }

    /// The inline attempt of a request that ended before recording its result.
    pub fn interrupted() -> Self {
        Detail::Interrupted {
            result: "INTERRUPTED",
            email_sent: false,
            reason: "the request ended before recording its inline result; the background takes over",
        }
    }

    /// An update of the Reassign stream, the dispatcher's `decision` on it, and the
    /// booking's version when it arrived.
    pub fn reassign_update(
        state: &UpdateState,
        attempt: i32,
        last_error: &str,
        decision: &Decision,
        current_version: i64,
    ) -> Self {
        let stale = *decision == Decision::Stale;
        Detail::ReassignUpdate {
            state: state.as_str(),
            attempt,
            last_error: last_error.to_string(),
            next_attempt_at: match state {
                UpdateState::Retrying { next_attempt_at } => *next_attempt_at,
                _ => None,
            },
            table_ids: match state {
                UpdateState::Assigned { table_ids } => Some(table_ids.clone()),
                _ => None,
            },
            stale,
            current_version: stale.then_some(current_version),
            note: (*decision == Decision::Close(JobState::GaveUp))
                .then_some("background assignment gave up; the booking stays PENDING"),
        }
    }
}

fn is_false(value: &bool) -> bool {
    !value
}

fn as_rfc3339<S: Serializer>(t: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(*t))
}

fn as_optional_rfc3339<S: Serializer>(t: &Option<SystemTime>, serializer: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => as_rfc3339(t, serializer),
        None => serializer.serialize_none(),
    }
}

fn as_email_kind<S: Serializer>(kind: &EmailKind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.as_str())
}

/// The changes of an edit as `{ field: { "from": old, "to": new } }`.
fn as_change_map<S: Serializer>(changes: &[FieldChange], serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct FromTo<'a, T> {
        from: &'a T,
        to: &'a T,
    }
    let mut map = serializer.serialize_map(Some(changes.len()))?;
    for change in changes {
        map.serialize_entry(change.field, &FromTo { from: &change.from, to: &change.to })?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        BookingStatus,
        booking::FieldValue,
        values::{
            BookingDuration, BookingId, GuestEmail, GuestName, Notes, PartySize, Phone, RestaurantId, StartTime,
            Version,
        },
    };
    use serde_json::{Value, json};
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn json_of(detail: &Detail) -> Value {
        serde_json::to_value(detail).expect("a detail serializes")
    }

    #[test]
    fn names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_stored(t.as_str()), Some(t));
        }
        assert_eq!(EventType::from_stored("X"), None);
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
                Detail::created(&booking, false),
                EventType::Created,
                json!({
                    "restaurant_id": "r1",
                    "party_size": 4,
                    "start_time": "2023-11-14T22:13:20Z",
                    "duration_s": 5400,
                    "suppress_emails": false,
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
            (Detail::Cancelled { suppress_emails: true }, EventType::Cancelled, json!({ "suppress_emails": true })),
        ];
        for (detail, kind, expected) in cases {
            assert_eq!(detail.kind(), kind, "{detail:?}");
            assert_eq!(json_of(&detail), expected, "{detail:?}");
        }
    }
}
