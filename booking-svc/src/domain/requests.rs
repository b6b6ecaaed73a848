//! The write requests as parsed: what a create, edit or cancel asks for.
//!
//! Each knows its fingerprint: what identifies "the same request" for an idempotency key
//! (everything but the key). A fingerprint is stored with its key, so its text never
//! changes.

use super::{
    booking::{Booking, BookingStatus, Changes},
    guest::{GuestEmail, GuestName, Notes, Phone},
    time::micros,
    values::{BookingDuration, BookingId, IdempotencyKey, PartySize, RestaurantId, StartTime, Version},
};
use serde_json::json;
use std::time::SystemTime;

/// A parsed CreateBooking request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBooking {
    pub restaurant_id: RestaurantId,
    pub guest_name: GuestName,
    pub guest_email: GuestEmail,
    pub guest_phone: Phone,
    pub party_size: PartySize,
    pub start_time: StartTime,
    pub duration: BookingDuration,
    pub notes: Notes,
    pub suppress_emails: bool,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Who asks (see `platform::auth::Caller::actor`); not part of the fingerprint.
    pub actor: String,
}

impl NewBooking {
    /// Version 1 of the booking, `PENDING` until tables are assigned.
    pub fn into_booking(&self, id: BookingId, now: SystemTime) -> Booking {
        Booking {
            id,
            restaurant_id: self.restaurant_id.clone(),
            guest_name: self.guest_name.clone(),
            guest_email: self.guest_email.clone(),
            guest_phone: self.guest_phone.clone(),
            party_size: self.party_size,
            start_time: self.start_time,
            duration: self.duration,
            notes: self.notes.clone(),
            status: BookingStatus::Pending,
            version: Version::FIRST,
            table_ids: Vec::new(),
            created_at: now,
            updated_at: now,
        }
    }

    /// What identifies "the same request" for an idempotency key (everything but the key).
    pub fn fingerprint(&self) -> String {
        json!({
            "restaurant_id": self.restaurant_id.as_str(),
            "guest": [self.guest_name.as_str(), self.guest_email.as_str(), self.guest_phone.as_str()],
            "party_size": self.party_size.get(),
            "start_time_us": micros(self.start_time.get()),
            "duration_s": self.duration.get().as_secs(),
            "notes": self.notes.as_str(),
            "suppress_emails": self.suppress_emails,
        })
        .to_string()
    }
}

/// A parsed EditBooking request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditRequest {
    pub booking_id: BookingId,
    pub expected_version: Option<Version>,
    pub changes: Changes,
    pub suppress_emails: bool,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Who asks; not part of the fingerprint.
    pub actor: String,
}

impl EditRequest {
    /// What identifies "the same request" for an idempotency key.
    pub fn fingerprint(&self) -> String {
        json!({
            "booking_id": self.booking_id.to_string(),
            "expected_version": self.expected_version.map(Version::get),
            "start_time_us": self.changes.start_time.map(|s| micros(s.get())),
            "party_size": self.changes.party_size.map(|p| p.get()),
            "duration_s": self.changes.duration.map(|d| d.get().as_secs()),
            "notes": self.changes.notes.as_ref().map(|n| n.as_str().to_string()),
            "suppress_emails": self.suppress_emails,
        })
        .to_string()
    }
}

/// A parsed CancelBooking request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelRequest {
    pub booking_id: BookingId,
    pub expected_version: Option<Version>,
    pub suppress_emails: bool,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Who asks; not part of the fingerprint.
    pub actor: String,
}

impl CancelRequest {
    /// What identifies "the same request" for an idempotency key.
    pub fn fingerprint(&self) -> String {
        json!({
            "booking_id": self.booking_id.to_string(),
            "expected_version": self.expected_version.map(Version::get),
            "suppress_emails": self.suppress_emails,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_the_key_but_not_the_parameters() {
        let id = BookingId::parse("4f1c2c7e-8a4e-4bd4-9a57-3a8f0c1b2d3e").unwrap();
        let a = EditRequest {
            booking_id: id,
            expected_version: Some(Version::from_stored(1)),
            changes: Changes { party_size: Some(PartySize::parse(2).unwrap()), ..Changes::default() },
            suppress_emails: false,
            idempotency_key: IdempotencyKey::parse_optional("k1").unwrap(),
            actor: String::new(),
        };
        let mut b = a.clone();
        b.idempotency_key = IdempotencyKey::parse_optional("k2").unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.changes.party_size = Some(PartySize::parse(3).unwrap());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
