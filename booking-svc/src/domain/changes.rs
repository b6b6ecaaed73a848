//! The changes the feed publishes: which write is which kind of change, and what it altered.
//!
//! Every committed write that changes a booking's state is one change, recorded beside its
//! history event: a create is CREATED, an edit that changes something EDITED, tables for
//! the current version CONFIRMED (inline or in the background), a version handed to the
//! background PENDING (recorded with its pending email), a cancel CANCELLED. A change lists
//! each field whose value it altered, old and new, by comparing the booking before and
//! after; CREATED and PENDING list none.

use super::booking::{Booking, FieldValue};
use serde::{Deserialize, Serialize};

/// The kind of a change (stored by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeType {
    Created,
    Edited,
    Confirmed,
    Pending,
    Cancelled,
}

impl ChangeType {
    const ALL: [ChangeType; 5] =
        [ChangeType::Created, ChangeType::Edited, ChangeType::Confirmed, ChangeType::Pending, ChangeType::Cancelled];

    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeType::Created => "CREATED",
            ChangeType::Edited => "EDITED",
            ChangeType::Confirmed => "CONFIRMED",
            ChangeType::Pending => "PENDING",
            ChangeType::Cancelled => "CANCELLED",
        }
    }

    /// Reads a stored name.
    pub fn from_stored(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }
}

/// One field's value before or after a change, as the feed shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ChangedValue {
    /// An editable field (start time, party size, duration, notes), as the history shows it.
    Field(FieldValue),
    /// A status, by its stored name.
    Status(&'static str),
    /// The assigned tables.
    Tables(Vec<String>),
}

/// One field a change altered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangedField {
    pub field: &'static str,
    pub from: ChangedValue,
    pub to: ChangedValue,
}

/// A change to record: its kind and the fields it altered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeType,
    pub fields: Vec<ChangedField>,
    /// Who made it (a person's subject or a service's SPIFFE id); empty when unknown.
    pub actor: String,
}

impl Change {
    /// A new booking (its whole state is new: no field list).
    pub fn created() -> Self {
        Self { kind: ChangeType::Created, fields: vec![], actor: String::new() }
    }

    /// The same change, made by `actor`.
    pub fn by(self, actor: &str) -> Self {
        Self { actor: actor.to_string(), ..self }
    }

    /// The version was handed to the background (nothing in the booking changed).
    pub fn pending() -> Self {
        Self { kind: ChangeType::Pending, fields: vec![], actor: String::new() }
    }

    /// A change of `kind` that turned `before` into `after`.
    pub fn between(kind: ChangeType, before: &Booking, after: &Booking) -> Self {
        Self { kind, fields: diff(before, after), actor: String::new() }
    }
}

/// Each field a change may alter whose value differs between `before` and `after`, in a
/// fixed order: start time, party size, duration, notes, status, tables. The restaurant,
/// the guest and the creation time never change; the version and update time always do
/// and are shown by the change itself.
pub fn diff(before: &Booking, after: &Booking) -> Vec<ChangedField> {
    let mut fields = Vec::new();
    let mut push = |field, from: ChangedValue, to: ChangedValue| {
        if from != to {
            fields.push(ChangedField { field, from, to });
        }
    };
    push(
        "start_time",
        ChangedValue::Field(FieldValue::Time(before.start_time.get())),
        ChangedValue::Field(FieldValue::Time(after.start_time.get())),
    );
    push(
        "party_size",
        ChangedValue::Field(FieldValue::Count(before.party_size.get())),
        ChangedValue::Field(FieldValue::Count(after.party_size.get())),
    );
    push(
        "duration",
        ChangedValue::Field(FieldValue::Length(before.duration.get())),
        ChangedValue::Field(FieldValue::Length(after.duration.get())),
    );
    push(
        "notes",
        ChangedValue::Field(FieldValue::Text(before.notes.as_str().to_string())),
        ChangedValue::Field(FieldValue::Text(after.notes.as_str().to_string())),
    );
    push("status", ChangedValue::Status(before.status.as_str()), ChangedValue::Status(after.status.as_str()));
    push("table_ids", ChangedValue::Tables(before.table_ids.clone()), ChangedValue::Tables(after.table_ids.clone()));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        BookingStatus,
        booking::{Changes, EditPlan, plan_cancel, plan_edit},
        guest::{GuestEmail, GuestName, Notes, Phone},
        values::{BookingDuration, BookingId, PartySize, RestaurantId, StartTime, Version},
    };
    use serde_json::json;
    use std::time::{Duration, SystemTime};

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn confirmed() -> Booking {
        Booking {
            id: BookingId::from_uuid(uuid::Uuid::nil()),
            restaurant_id: RestaurantId::parse("r1").unwrap(),
            guest_name: GuestName::parse("Ada").unwrap(),
            guest_email: GuestEmail::parse("ada@example.com").unwrap(),
            guest_phone: Phone::default(),
            party_size: PartySize::parse(4).unwrap(),
            start_time: StartTime::from_stored(at(10_000)),
            duration: BookingDuration::parse(Some(Duration::from_secs(5_400))).unwrap(),
            notes: Notes::parse("").unwrap(),
            status: BookingStatus::Confirmed,
            version: Version::from_stored(2),
            table_ids: vec!["t1".into()],
            created_at: at(1),
            updated_at: at(2),
        }
    }

    #[test]
    fn names_round_trip() {
        for t in ChangeType::ALL {
            assert_eq!(ChangeType::from_stored(t.as_str()), Some(t));
        }
        assert_eq!(ChangeType::from_stored("EDIT_UNCHANGED"), None);
    }

    #[test]
    fn an_edit_lists_what_it_edited_and_the_status_and_tables_it_gave_up() {
        let before = confirmed();
        let edit = Changes { party_size: Some(PartySize::parse(6).unwrap()), ..Default::default() };
        let EditPlan::Changed { next, .. } = plan_edit(&before, &edit, at(5)) else { panic!("a change") };
        let change = Change::between(ChangeType::Edited, &before, &next);
        assert_eq!(
            serde_json::to_value(&change.fields).unwrap(),
            json!([
                { "field": "party_size", "from": 4, "to": 6 },
                { "field": "status", "from": "CONFIRMED", "to": "PENDING" },
                { "field": "table_ids", "from": ["t1"], "to": [] },
            ])
        );
    }

    #[test]
    fn a_confirmation_lists_status_and_tables_and_a_cancel_what_it_released() {
        let mut pending = confirmed();
        pending.status = BookingStatus::Pending;
        pending.table_ids.clear();
        let change = Change::between(ChangeType::Confirmed, &pending, &confirmed());
        assert_eq!(
            serde_json::to_value(&change.fields).unwrap(),
            json!([
                { "field": "status", "from": "PENDING", "to": "CONFIRMED" },
                { "field": "table_ids", "from": [], "to": ["t1"] },
            ])
        );
        let Ok(crate::domain::booking::CancelPlan::Cancel(cancelled)) = plan_cancel(&confirmed(), None, at(9)) else {
            panic!("a cancel")
        };
        let fields: Vec<_> = Change::between(ChangeType::Cancelled, &confirmed(), &cancelled)
            .fields
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, ["status", "table_ids"]);
        assert!(Change::created().fields.is_empty() && Change::pending().fields.is_empty());
    }

    #[test]
    fn times_and_lengths_read_as_in_the_history() {
        let before = confirmed();
        let mut after = confirmed();
        after.start_time = StartTime::from_stored(at(13_600));
        after.duration = BookingDuration::parse(Some(Duration::from_secs(7_200))).unwrap();
        assert_eq!(
            serde_json::to_value(diff(&before, &after)).unwrap(),
            json!([
                { "field": "start_time", "from": "1970-01-01T02:46:40Z", "to": "1970-01-01T03:46:40Z" },
                { "field": "duration", "from": "5400s", "to": "7200s" },
            ])
        );
        assert!(diff(&before, &before).is_empty());
    }
}
