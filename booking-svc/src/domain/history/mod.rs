//! History events: their kinds and their typed details.
//!
//! Every step of the flow appends events; nothing is ever updated or deleted. A detail is
//! stored as JSON and GetBookingHistory answers it as stored, so the JSON each variant of
//! [`Detail`] serializes to is part of the public contract: `json_contract` holds it.

#[cfg(test)]
mod json_contract;

use super::{
    booking::{Booking, FieldChange},
    emails::EmailKind,
    inline::{InlineAttempt, InlineResult},
    reassign::{Decision, JobState, UpdateState},
    time::rfc3339,
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
        /// Who created it: a person's subject or a service's SPIFFE id (empty: unknown).
        actor: String,
    },
    /// EDITED: each changed field's old and new value, by field name.
    Edited {
        #[serde(serialize_with = "as_change_map")]
        changes: Vec<FieldChange>,
        suppress_emails: bool,
        /// Who edited it.
        actor: String,
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
    Cancelled {
        suppress_emails: bool,
        /// Who cancelled it.
        actor: String,
    },
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

    /// A new booking, as requested by `actor`.
    pub fn created(booking: &Booking, suppress_emails: bool, actor: &str) -> Self {
        Detail::Created {
            restaurant_id: booking.restaurant_id.as_str().to_string(),
            party_size: booking.party_size.get(),
            start_time: booking.start_time.get(),
            duration_s: booking.duration.get().as_secs(),
            suppress_emails,
            actor: actor.to_string(),
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

    #[test]
    fn names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_stored(t.as_str()), Some(t));
        }
        assert_eq!(EventType::from_stored("X"), None);
    }
}
