//! A booking and the rules that change it.
//!
//! Planning an edit (with no-op detection) and planning a cancel are pure functions over
//! values: they never read or write storage and never call another service.

use super::guest::{GuestEmail, GuestName, Notes, Phone};
use super::time::rfc3339;
use super::values::{BookingDuration, BookingId, PartySize, RestaurantId, StartTime, Version};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// Lifecycle state of a booking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BookingStatus {
    /// Waiting for tables for its current version.
    Pending,
    /// Tables assigned for its current version.
    Confirmed,
    /// Cancelled; never edited again.
    Cancelled,
}

impl BookingStatus {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            BookingStatus::Pending => "PENDING",
            BookingStatus::Confirmed => "CONFIRMED",
            BookingStatus::Cancelled => "CANCELLED",
        }
    }

    /// Reads a stored name.
    pub fn from_stored(value: &str) -> Option<Self> {
        match value {
            "PENDING" => Some(BookingStatus::Pending),
            "CONFIRMED" => Some(BookingStatus::Confirmed),
            "CANCELLED" => Some(BookingStatus::Cancelled),
            _ => None,
        }
    }
}

/// A booking as stored (and as answered).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    pub id: BookingId,
    pub restaurant_id: RestaurantId,
    pub guest_name: GuestName,
    pub guest_email: GuestEmail,
    pub guest_phone: Phone,
    pub party_size: PartySize,
    pub start_time: StartTime,
    pub duration: BookingDuration,
    pub notes: Notes,
    pub status: BookingStatus,
    pub version: Version,
    pub table_ids: Vec<String>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// The fields an edit may change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub start_time: Option<StartTime>,
    pub party_size: Option<PartySize>,
    pub duration: Option<BookingDuration>,
    pub notes: Option<Notes>,
}

/// Why a booking cannot be changed as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `expected_version` is not the current version.
    VersionMismatch { expected: Version, current: Version },
    /// The booking is cancelled.
    Cancelled,
}

/// One changed field of an edit: name, old and new value (for the history).
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    pub field: &'static str,
    pub from: FieldValue,
    pub to: FieldValue,
}

/// The value of an edited field, as the history shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    /// A point in time, in RFC 3339 ([`rfc3339`]).
    Time(SystemTime),
    /// A number of guests.
    Count(i32),
    /// A length of time, in whole seconds (`"5400s"`).
    Length(Duration),
    /// Free text.
    Text(String),
}

impl Serialize for FieldValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::Time(t) => serializer.serialize_str(&rfc3339(*t)),
            FieldValue::Count(n) => serializer.serialize_i32(*n),
            FieldValue::Length(d) => serializer.collect_str(&format_args!("{}s", d.as_secs())),
            FieldValue::Text(text) => serializer.serialize_str(text),
        }
    }
}

/// What an edit does to a booking.
#[derive(Clone, Debug, PartialEq)]
pub enum EditPlan {
    /// Every requested value equals the current one: no new version, no assignment, no email.
    Unchanged,
    /// A new version, `PENDING`, with no tables until it is assigned.
    Changed { next: Box<Booking>, changes: Vec<FieldChange> },
}

/// Checks that `current` may be edited (or cancelled) by a request expecting `expected`.
pub fn check_editable(current: &Booking, expected: Option<Version>) -> Result<(), Refusal> {
    if let Some(expected) = expected
        && expected != current.version
    {
        return Err(Refusal::VersionMismatch { expected, current: current.version });
    }
    if current.status == BookingStatus::Cancelled {
        return Err(Refusal::Cancelled);
    }
    Ok(())
}

/// Plans an edit of `current`: the no-op check, then the next version.
pub fn plan_edit(current: &Booking, changes: &Changes, now: SystemTime) -> EditPlan {
    let mut next = current.clone();
    let mut changed = Vec::new();
    if let Some(start) = changes.start_time
        && start != current.start_time
    {
        changed.push(FieldChange {
            field: "start_time",
            from: FieldValue::Time(current.start_time.get()),
            to: FieldValue::Time(start.get()),
        });
        next.start_time = start;
    }
    if let Some(size) = changes.party_size
        && size != current.party_size
    {
        changed.push(FieldChange {
            field: "party_size",
            from: FieldValue::Count(current.party_size.get()),
            to: FieldValue::Count(size.get()),
        });
        next.party_size = size;
    }
    if let Some(duration) = changes.duration
        && duration != current.duration
    {
        changed.push(FieldChange {
            field: "duration",
            from: FieldValue::Length(current.duration.get()),
            to: FieldValue::Length(duration.get()),
        });
        next.duration = duration;
    }
    if let Some(notes) = &changes.notes
        && *notes != current.notes
    {
        changed.push(FieldChange {
            field: "notes",
            from: FieldValue::Text(current.notes.as_str().to_string()),
            to: FieldValue::Text(notes.as_str().to_string()),
        });
        next.notes = notes.clone();
    }
    if changed.is_empty() {
        return EditPlan::Unchanged;
    }
    next.version = current.version.next();
    next.status = BookingStatus::Pending;
    next.table_ids.clear();
    next.updated_at = now;
    EditPlan::Changed { next: Box::new(next), changes: changed }
}

/// What a cancel does to a booking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelPlan {
    /// Already cancelled: answered unchanged.
    AlreadyCancelled,
    /// Cancelled now (same version; tables released).
    Cancel(Box<Booking>),
}

/// Plans a cancel of `current` by a request expecting `expected`.
pub fn plan_cancel(current: &Booking, expected: Option<Version>, now: SystemTime) -> Result<CancelPlan, Refusal> {
    if current.status == BookingStatus::Cancelled {
        return Ok(CancelPlan::AlreadyCancelled);
    }
    check_editable(current, expected)?;
    let mut next = current.clone();
    next.status = BookingStatus::Cancelled;
    next.table_ids.clear();
    next.updated_at = now;
    Ok(CancelPlan::Cancel(Box::new(next)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn v(n: i64) -> Version {
        Version::from_stored(n)
    }

    fn booking() -> Booking {
        Booking {
            id: BookingId::from_uuid(uuid::Uuid::nil()),
            restaurant_id: RestaurantId::parse("r1").unwrap(),
            guest_name: GuestName::parse("Ada").unwrap(),
            guest_email: GuestEmail::parse("ada@example.com").unwrap(),
            guest_phone: Phone::default(),
            party_size: PartySize::parse(4).unwrap(),
            start_time: StartTime::from_stored(at(10_000)),
            duration: BookingDuration::parse(Some(Duration::from_secs(5_400))).unwrap(),
            notes: Notes::parse("window").unwrap(),
            status: BookingStatus::Confirmed,
            version: v(3),
            table_ids: vec!["t1".into()],
            created_at: at(1),
            updated_at: at(2),
        }
    }

    fn changes(start: Option<u64>, size: Option<i32>, dur: Option<u64>, notes: Option<&str>) -> Changes {
        Changes {
            start_time: start.map(|s| StartTime::parse(Some(at(s)), at(0)).unwrap()),
            party_size: size.map(|p| PartySize::parse(p).unwrap()),
            duration: dur.map(|d| BookingDuration::parse(Some(Duration::from_secs(d))).unwrap()),
            notes: notes.map(|n| Notes::parse(n).unwrap()),
        }
    }

    #[test]
    fn an_edit_repeating_current_values_is_a_no_op() {
        let b = booking();
        assert_eq!(plan_edit(&b, &Changes::default(), at(5)), EditPlan::Unchanged);
        assert_eq!(
            plan_edit(&b, &changes(Some(10_000), Some(4), Some(5_400), Some("window")), at(5)),
            EditPlan::Unchanged
        );
    }

    #[test]
    fn a_real_edit_bumps_the_version_and_waits_for_tables() {
        let b = booking();
        let EditPlan::Changed { next, changes } = plan_edit(&b, &changes(None, Some(6), None, Some("")), at(5)) else {
            panic!("expected a change");
        };
        assert_eq!(next.version, v(4));
        assert_eq!(next.status, BookingStatus::Pending);
        assert!(next.table_ids.is_empty());
        assert_eq!(next.party_size.get(), 6);
        assert_eq!(next.notes.as_str(), "");
        assert_eq!(next.updated_at, at(5));
        assert_eq!(changes.iter().map(|c| c.field).collect::<Vec<_>>(), vec!["party_size", "notes"]);
    }

    #[test]
    fn version_mismatch_and_cancelled_bookings_are_refused() {
        let mut b = booking();
        assert_eq!(check_editable(&b, Some(v(2))), Err(Refusal::VersionMismatch { expected: v(2), current: v(3) }));
        assert_eq!(check_editable(&b, Some(v(3))), Ok(()));
        assert_eq!(check_editable(&b, None), Ok(()));
        b.status = BookingStatus::Cancelled;
        assert_eq!(check_editable(&b, None), Err(Refusal::Cancelled));
    }

    #[test]
    fn cancelling_twice_answers_unchanged() {
        let b = booking();
        let Ok(CancelPlan::Cancel(next)) = plan_cancel(&b, Some(v(3)), at(9)) else { panic!("cancel") };
        assert_eq!((next.status, next.version, next.table_ids.len()), (BookingStatus::Cancelled, v(3), 0));
        assert_eq!(plan_cancel(&next, Some(v(1)), at(10)), Ok(CancelPlan::AlreadyCancelled));
        assert_eq!(plan_cancel(&b, Some(v(1)), at(9)), Err(Refusal::VersionMismatch { expected: v(1), current: v(3) }));
    }

    /// The stored answer of an idempotency key is a booking's JSON: its shape stays what
    /// it was when the fields were plain values, so answers stored before still read.
    #[test]
    fn a_booking_stored_as_an_answer_keeps_its_json() {
        let b = booking();
        let stored = serde_json::json!({
            "id": "00000000-0000-0000-0000-000000000000",
            "restaurant_id": "r1",
            "guest_name": "Ada",
            "guest_email": "ada@example.com",
            "guest_phone": "",
            "party_size": 4,
            "start_time": { "secs_since_epoch": 10_000, "nanos_since_epoch": 0 },
            "duration": { "secs": 5_400, "nanos": 0 },
            "notes": "window",
            "status": "Confirmed",
            "version": 3,
            "table_ids": ["t1"],
            "created_at": { "secs_since_epoch": 1, "nanos_since_epoch": 0 },
            "updated_at": { "secs_since_epoch": 2, "nanos_since_epoch": 0 },
        });
        assert_eq!(serde_json::to_value(&b).unwrap(), stored);
        assert_eq!(serde_json::from_value::<Booking>(stored).unwrap(), b);
    }

    proptest! {
        #[test]
        fn an_edit_is_a_no_op_exactly_when_no_value_differs(
            start in proptest::option::of(prop_oneof![Just(10_000u64), 9_000u64..20_000]),
            size in proptest::option::of(prop_oneof![Just(4i32), 1i32..=100]),
            dur in proptest::option::of(prop_oneof![Just(5_400u64), 900u64..=43_200]),
            notes in proptest::option::of(prop_oneof![Just("window".to_string()), "[a-z]{0,8}"]),
        ) {
            let b = booking();
            let differs = start.is_some_and(|s| at(s) != b.start_time.get())
                || size.is_some_and(|p| p != b.party_size.get())
                || dur.is_some_and(|d| Duration::from_secs(d) != b.duration.get())
                || notes.as_deref().is_some_and(|n| n != b.notes.as_str());
            let plan = plan_edit(&b, &changes(start, size, dur, notes.as_deref()), at(7));
            match plan {
                EditPlan::Unchanged => prop_assert!(!differs),
                EditPlan::Changed { next, changes } => {
                    prop_assert!(differs);
                    prop_assert_eq!(next.version, b.version.next());
                    prop_assert!(!changes.is_empty());
                    // Applying the same edit to the result changes nothing more.
                    let again = plan_edit(&next, &super::Changes {
                        start_time: Some(next.start_time),
                        party_size: Some(next.party_size),
                        duration: Some(next.duration),
                        notes: Some(next.notes.clone()),
                    }, at(8));
                    prop_assert_eq!(again, EditPlan::Unchanged);
                }
            }
        }
    }
}
