//! Version rules of `Assign`: which version of a booking may still get tables.
//!
//! A booking moves forward only: an older version than the newest one seen is refused, a
//! released booking refuses every version it had already seen, and the version that
//! already holds tables gets them back (idempotency). Pure; it must never lock or store.

use super::types::{Assignment, RestaurantId, Version};

/// What assign-svc knows about one booking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BookingState {
    /// Newest version seen by Assign, a submit or a Release (0: none yet).
    pub newest_version: i64,
    /// The newest version seen when the booking was released, if it was.
    pub released_version: Option<i64>,
    /// The tables it holds.
    pub held: Option<Assignment>,
    /// The restaurant of the tables it holds.
    pub held_restaurant: Option<RestaurantId>,
}

/// The verdict on a request for `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionCheck {
    /// The booking was released at or after this version.
    Released { released_version: i64 },
    /// A newer version exists.
    Older { newest_version: i64 },
    /// This version already holds tables: answer with them, change nothing.
    AlreadyAssigned(Assignment),
    /// Try to find tables.
    Attempt,
}

/// Decides what a request for `version` may do given `state`.
pub fn check_version(state: &BookingState, version: Version) -> VersionCheck {
    let version = version.get();
    if let Some(released_version) = state.released_version
        && version <= released_version
    {
        return VersionCheck::Released { released_version };
    }
    if version < state.newest_version {
        return VersionCheck::Older { newest_version: state.newest_version };
    }
    match &state.held {
        Some(held) if held.version.get() == version => VersionCheck::AlreadyAssigned(held.clone()),
        _ => VersionCheck::Attempt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::{BookingId, Slot, TableId};
    use std::time::{Duration, SystemTime};

    fn held(version: i64) -> Assignment {
        Assignment {
            booking_id: BookingId::from_uuid(uuid::Uuid::from_u128(7)),
            version: Version::parse(version).expect("version"),
            table_ids: vec![TableId::parse("t1").expect("id")],
            slot: Slot::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000), Duration::from_secs(3600))
                .expect("slot"),
        }
    }

    fn v(n: i64) -> Version {
        Version::parse(n).expect("version")
    }

    #[test]
    fn a_new_booking_attempts() {
        assert_eq!(check_version(&BookingState::default(), v(1)), VersionCheck::Attempt);
    }

    #[test]
    fn the_held_version_is_answered_from_its_assignment() {
        let state =
            BookingState { newest_version: 2, released_version: None, held: Some(held(2)), held_restaurant: None };
        assert_eq!(check_version(&state, v(2)), VersionCheck::AlreadyAssigned(held(2)));
        assert_eq!(check_version(&state, v(3)), VersionCheck::Attempt);
        assert_eq!(check_version(&state, v(1)), VersionCheck::Older { newest_version: 2 });
    }

    #[test]
    fn a_newer_version_that_found_no_capacity_still_blocks_older_ones() {
        let state =
            BookingState { newest_version: 3, released_version: None, held: Some(held(2)), held_restaurant: None };
        assert_eq!(check_version(&state, v(2)), VersionCheck::Older { newest_version: 3 });
        assert_eq!(check_version(&state, v(3)), VersionCheck::Attempt, "the same version may try again");
    }

    #[test]
    fn a_released_booking_refuses_every_version_it_had_seen() {
        let state = BookingState { newest_version: 2, released_version: Some(2), held: None, held_restaurant: None };
        assert_eq!(check_version(&state, v(2)), VersionCheck::Released { released_version: 2 });
        assert_eq!(check_version(&state, v(1)), VersionCheck::Released { released_version: 2 });
        assert_eq!(check_version(&state, v(3)), VersionCheck::Attempt);
    }
}
