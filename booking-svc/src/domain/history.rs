//! The kinds of history events and their details. Every step of the flow appends events;
//! nothing is ever updated or deleted.

use serde_json::Value;

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

/// One event to append.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventType,
    pub version: i64,
    pub detail: Value,
}

impl Event {
    /// An event about `version` with `detail` (a JSON object).
    pub fn new(kind: EventType, version: i64, detail: Value) -> Self {
        Self { kind, version, detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_stored(t.as_str()), Some(t));
        }
        assert_eq!(EventType::from_stored("X"), None);
    }
}
