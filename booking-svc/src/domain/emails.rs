//! The booking emails: which one a step queues, what it says, when it is stale.
//!
//! The outbox stores the payload so every retry sends exactly the same details for its
//! (booking, kind, version) key. Pure rules: no sending here.

use super::booking::{Booking, BookingStatus};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// The five booking emails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EmailKind {
    BookingPending,
    BookingConfirmed,
    ModificationRequested,
    ModificationConfirmed,
    BookingCancelled,
}

impl EmailKind {
    /// The stored name, as in `X-Notification-Key` (e.g. `MODIFICATION_CONFIRMED`).
    pub fn as_str(&self) -> &'static str {
        match self {
            EmailKind::BookingPending => "BOOKING_PENDING",
            EmailKind::BookingConfirmed => "BOOKING_CONFIRMED",
            EmailKind::ModificationRequested => "MODIFICATION_REQUESTED",
            EmailKind::ModificationConfirmed => "MODIFICATION_CONFIRMED",
            EmailKind::BookingCancelled => "BOOKING_CANCELLED",
        }
    }

    /// Reads a stored name.
    pub fn from_stored(value: &str) -> Option<Self> {
        [
            EmailKind::BookingPending,
            EmailKind::BookingConfirmed,
            EmailKind::ModificationRequested,
            EmailKind::ModificationConfirmed,
            EmailKind::BookingCancelled,
        ]
        .into_iter()
        .find(|k| k.as_str() == value)
    }

    /// The email for a version that just became confirmed: `BOOKING_CONFIRMED` for a new
    /// booking (version 1), `MODIFICATION_CONFIRMED` for an edited one.
    pub fn confirmation(version: i64) -> Self {
        if version <= 1 { EmailKind::BookingConfirmed } else { EmailKind::ModificationConfirmed }
    }

    /// The email for a version handed to the background: `BOOKING_PENDING` for a new
    /// booking, `MODIFICATION_REQUESTED` for an edit.
    pub fn pending(version: i64) -> Self {
        if version <= 1 { EmailKind::BookingPending } else { EmailKind::ModificationRequested }
    }
}

/// Why a queued email is no longer sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staleness {
    /// Still right to send.
    Current,
    /// A newer version superseded the one the email is about.
    Superseded { current_version: i64 },
    /// The booking was cancelled after the email was queued (only the cancel email goes).
    Cancelled,
}

/// Whether an email queued for `version` should still go out, given the booking now. The
/// cancel email is never stale.
pub fn staleness(kind: EmailKind, version: i64, current_version: i64, current_status: BookingStatus) -> Staleness {
    if kind == EmailKind::BookingCancelled {
        return Staleness::Current;
    }
    if current_status == BookingStatus::Cancelled {
        return Staleness::Cancelled;
    }
    if version < current_version {
        return Staleness::Superseded { current_version };
    }
    Staleness::Current
}

/// What one email says: fixed when it is queued, from the version it is about and the
/// restaurant's profile at that moment.
///
/// The profile and the previous values are not known here: the statement that queues the
/// email fills them in (`store::restaurants::queued_payload!`), in the transaction that
/// queues it. Payloads queued before they existed read with the defaults (UTC, no address,
/// no previous values).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPayload {
    pub recipient_email: String,
    pub recipient_name: String,
    pub restaurant_name: String,
    pub start_time: SystemTime,
    pub duration: Duration,
    pub party_size: i32,
    pub table_ids: Vec<String>,
    pub notes: String,
    /// The restaurant's IANA time zone.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// The restaurant's address ("" for none).
    #[serde(default)]
    pub address: String,
    /// The arrival time the version changed from, in microseconds since the epoch.
    #[serde(default)]
    pub previous_start_us: Option<i64>,
    /// The party size the version changed from.
    #[serde(default)]
    pub previous_party_size: Option<i32>,
}

fn utc() -> String {
    "UTC".to_string()
}

impl EmailPayload {
    /// The payload for `booking` as it is now (its tables only when `CONFIRMED`), before
    /// the statement that queues it adds the profile and the previous values.
    pub fn for_booking(booking: &Booking) -> Self {
        Self {
            recipient_email: booking.guest_email.as_str().to_string(),
            recipient_name: booking.guest_name.as_str().to_string(),
            restaurant_name: booking.restaurant_id.as_str().to_string(),
            start_time: booking.start_time.get(),
            duration: booking.duration.get(),
            party_size: booking.party_size.get(),
            table_ids: if booking.status == BookingStatus::Confirmed { booking.table_ids.clone() } else { Vec::new() },
            notes: booking.notes.as_str().to_string(),
            time_zone: utc(),
            address: String::new(),
            previous_start_us: None,
            previous_party_size: None,
        }
    }

    /// What the version changed from, for the modification emails only: the previous
    /// arrival time and party size (`None` for any other kind, or when unknown).
    pub fn previous(&self, kind: EmailKind) -> Option<(SystemTime, i32)> {
        let modification = matches!(kind, EmailKind::ModificationRequested | EmailKind::ModificationConfirmed);
        match (modification, self.previous_start_us, self.previous_party_size) {
            (true, Some(start), Some(party)) => Some((super::time::from_micros(start), party)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_edits_get_their_own_kinds() {
        assert_eq!(EmailKind::confirmation(1), EmailKind::BookingConfirmed);
        assert_eq!(EmailKind::confirmation(2), EmailKind::ModificationConfirmed);
        assert_eq!(EmailKind::pending(1), EmailKind::BookingPending);
        assert_eq!(EmailKind::pending(7), EmailKind::ModificationRequested);
        for kind in [EmailKind::BookingPending, EmailKind::BookingCancelled, EmailKind::ModificationConfirmed] {
            assert_eq!(EmailKind::from_stored(kind.as_str()), Some(kind));
        }
        assert_eq!(EmailKind::from_stored("NOPE"), None);
    }

    #[test]
    fn payloads_queued_before_profiles_read_as_utc_without_previous_values() {
        let stored = serde_json::json!({
            "recipient_email": "ada@example.com",
            "recipient_name": "Ada",
            "restaurant_name": "r1",
            "start_time": { "secs_since_epoch": 10_000, "nanos_since_epoch": 0 },
            "duration": { "secs": 5_400, "nanos": 0 },
            "party_size": 4,
            "table_ids": [],
            "notes": "",
        });
        let payload: EmailPayload = serde_json::from_value(stored).unwrap();
        assert_eq!((payload.time_zone.as_str(), payload.address.as_str()), ("UTC", ""));
        assert_eq!(payload.previous(EmailKind::ModificationConfirmed), None);
        let completed = EmailPayload { previous_start_us: Some(2_000_000), previous_party_size: Some(2), ..payload };
        let two_seconds = SystemTime::UNIX_EPOCH + Duration::from_secs(2);
        assert_eq!(completed.previous(EmailKind::ModificationRequested), Some((two_seconds, 2)));
        assert_eq!(completed.previous(EmailKind::BookingConfirmed), None);
    }

    #[test]
    fn only_emails_about_the_current_version_go_out() {
        use BookingStatus::*;
        assert_eq!(staleness(EmailKind::ModificationRequested, 2, 2, Pending), Staleness::Current);
        assert_eq!(
            staleness(EmailKind::ModificationRequested, 2, 3, Confirmed),
            Staleness::Superseded { current_version: 3 }
        );
        assert_eq!(staleness(EmailKind::BookingConfirmed, 1, 2, Pending), Staleness::Superseded { current_version: 2 });
        assert_eq!(staleness(EmailKind::ModificationConfirmed, 3, 3, Cancelled), Staleness::Cancelled);
        assert_eq!(staleness(EmailKind::BookingCancelled, 1, 5, Cancelled), Staleness::Current);
    }
}
