//! The delivery key `(booking_id, kind, version)` and what derives from it alone.
//!
//! The `X-Notification-Key` header value and the `Message-ID`. Nothing here may depend on
//! anything but the key (not the time, not the recipient), or resends would differ.

use std::fmt;
use uuid::Uuid;

/// Which email.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A new booking is waiting for tables.
    BookingPending,
    /// A booking is confirmed (after a create).
    BookingConfirmed,
    /// An edit was received and is waiting for tables.
    ModificationRequested,
    /// An edited booking is confirmed (the "modified" confirmation).
    ModificationConfirmed,
    /// A booking was cancelled.
    BookingCancelled,
}

impl Kind {
    /// Every kind, in enum order.
    pub const ALL: [Kind; 5] = [
        Kind::BookingPending,
        Kind::BookingConfirmed,
        Kind::ModificationRequested,
        Kind::ModificationConfirmed,
        Kind::BookingCancelled,
    ];

    /// The enum value name without its `NOTIFICATION_KIND_` prefix, as used in the key
    /// header and stored in the ledger (e.g. `MODIFICATION_CONFIRMED`).
    pub const fn name(self) -> &'static str {
        match self {
            Kind::BookingPending => "BOOKING_PENDING",
            Kind::BookingConfirmed => "BOOKING_CONFIRMED",
            Kind::ModificationRequested => "MODIFICATION_REQUESTED",
            Kind::ModificationConfirmed => "MODIFICATION_CONFIRMED",
            Kind::BookingCancelled => "BOOKING_CANCELLED",
        }
    }

    /// The kind called `name` (see [`Kind::name`]).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a booking id: a UUID in any of its usual spellings.
pub fn parse_booking_id(value: &str) -> Result<Uuid, String> {
    if value.trim().is_empty() {
        return Err("required".to_string());
    }
    Uuid::parse_str(value.trim()).map_err(|_| "must be a UUID".to_string())
}

/// Parses a booking version: 1 or more.
pub fn parse_version(value: i64) -> Result<i64, String> {
    if value >= 1 { Ok(value) } else { Err("must be 1 or more".to_string()) }
}

/// What makes an email unique: at most one is ever sent per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    /// The booking.
    pub booking_id: Uuid,
    /// Which email.
    pub kind: Kind,
    /// The booking version it is about (1 or more).
    pub version: i64,
}

impl DeliveryKey {
    /// The `X-Notification-Key` header value: `{booking_id}:{KIND}:{version}`.
    pub fn header_value(&self) -> String {
        format!("{}:{}:{}", self.booking_id, self.kind.name(), self.version)
    }

    /// The `Message-ID`, derived from the key alone so that a resend after a crash
    /// carries the same id and receivers can drop it: `<{booking_id}.{KIND}.{version}@booking-platform>`.
    pub fn message_id(&self) -> String {
        format!("<{}.{}.{}@booking-platform>", self.booking_id, self.kind.name(), self.version)
    }
}

impl fmt::Display for DeliveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(Kind::from_name("NOTIFICATION_KIND_BOOKING_PENDING"), None);
        assert_eq!(Kind::from_name(""), None);
    }

    #[test]
    fn header_and_message_id_follow_the_contract() {
        let key = DeliveryKey {
            booking_id: Uuid::parse_str("6f1c2a34-1d2e-4c5b-9a8f-0123456789ab").unwrap(),
            kind: Kind::ModificationConfirmed,
            version: 3,
        };
        assert_eq!(key.header_value(), "6f1c2a34-1d2e-4c5b-9a8f-0123456789ab:MODIFICATION_CONFIRMED:3");
        assert_eq!(
            key.message_id(),
            "<6f1c2a34-1d2e-4c5b-9a8f-0123456789ab.MODIFICATION_CONFIRMED.3@booking-platform>"
        );
    }

    #[test]
    fn ids_and_versions_are_parsed() {
        assert!(parse_booking_id("6f1c2a34-1d2e-4c5b-9a8f-0123456789ab").is_ok());
        assert_eq!(parse_booking_id(""), Err("required".to_string()));
        assert_eq!(parse_booking_id("booking-1"), Err("must be a UUID".to_string()));
        assert_eq!(parse_version(1), Ok(1));
        assert!(parse_version(0).is_err());
        assert!(parse_version(-5).is_err());
    }

    proptest! {
        #[test]
        fn the_message_id_depends_on_the_key_alone(a in any::<u128>(), b in any::<u128>(), k1 in 0usize..5, k2 in 0usize..5, v1 in 1i64.., v2 in 1i64..) {
            let first = DeliveryKey { booking_id: Uuid::from_u128(a), kind: Kind::ALL[k1], version: v1 };
            let second = DeliveryKey { booking_id: Uuid::from_u128(b), kind: Kind::ALL[k2], version: v2 };
            prop_assert_eq!(first.message_id(), first.message_id());
            prop_assert_eq!(first == second, first.message_id() == second.message_id());
            prop_assert_eq!(first == second, first.header_value() == second.header_value());
        }

        #[test]
        fn parsing_any_string_never_panics(s in ".*") {
            let _ = parse_booking_id(&s);
        }
    }
}
