//! The validated values a booking is made of, but for the guest's personal data.
//!
//! They are what a request is parsed into and what a stored booking holds (the guest's
//! name, email, phone and notes live in `guest`, under the same rules). Each type's
//! `parse` is the only way to make one from a request and answers a description of what
//! is wrong (the caller names the field). A value read back from storage (`from_stored`,
//! or a stored answer's JSON) was parsed when it was written, and the columns' domain
//! checks hold it there, so it is not checked again. Nothing here knows about gRPC or SQL;
//! rules that depend on time take `now`.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Longest restaurant id (assign-svc's limit).
pub const MAX_RESTAURANT_ID: usize = 64;
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;
/// Shortest booking.
pub const MIN_DURATION: Duration = Duration::from_secs(15 * 60);
/// Longest booking.
pub const MAX_DURATION: Duration = Duration::from_secs(12 * 60 * 60);
/// Duration when the request gives none.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(90 * 60);

/// A booking id: a UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BookingId(Uuid);

impl BookingId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses a UUID string.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.trim().is_empty() {
            return Err("required".into());
        }
        Uuid::parse_str(value.trim()).map(Self).map_err(|_| "must be a UUID".into())
    }

    /// An id read back from storage.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID.
    pub fn uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for BookingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A restaurant id: 1 to 64 characters, no surrounding spaces, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RestaurantId(String);

impl RestaurantId {
    /// Parses a restaurant id.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("required".into());
        }
        if value.chars().count() > MAX_RESTAURANT_ID {
            return Err(format!("at most {MAX_RESTAURANT_ID} characters"));
        }
        if value.trim() != value || value.chars().any(char::is_control) {
            return Err("no surrounding spaces or control characters".into());
        }
        Ok(Self(value.to_string()))
    }

    /// An id read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Number of guests, 1 to 100.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartySize(i32);

impl PartySize {
    /// Parses a party size.
    pub fn parse(value: i32) -> Result<Self, String> {
        if (1..=100).contains(&value) { Ok(Self(value)) } else { Err("must be 1 to 100".into()) }
    }

    /// A size read back from storage.
    pub fn from_stored(value: i32) -> Self {
        Self(value)
    }

    /// The size.
    pub fn get(&self) -> i32 {
        self.0
    }
}

/// An arrival time that was not in the past when requested, kept to the microsecond
/// (what PostgreSQL stores).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StartTime(SystemTime);

impl StartTime {
    /// Parses an arrival time: present, and not before `now`.
    pub fn parse(value: Option<SystemTime>, now: SystemTime) -> Result<Self, String> {
        let value = value.ok_or_else(|| "required (a valid timestamp)".to_string())?;
        let value = truncate_to_micros(value);
        if value < truncate_to_micros(now) {
            return Err("must not be in the past".into());
        }
        Ok(Self(value))
    }

    /// A time read back from storage (it may have passed since).
    pub fn from_stored(value: SystemTime) -> Self {
        Self(value)
    }

    /// The time.
    pub fn get(&self) -> SystemTime {
        self.0
    }
}

/// `t` without its sub-microsecond part.
pub fn truncate_to_micros(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => SystemTime::UNIX_EPOCH + Duration::from_micros(since.as_micros() as u64),
        Err(before) => {
            let before = before.duration();
            let micros = before.as_micros() + u128::from(before.subsec_nanos() % 1_000 != 0);
            SystemTime::UNIX_EPOCH - Duration::from_micros(micros as u64)
        }
    }
}

/// How long the tables are held: whole seconds, 15 minutes to 12 hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BookingDuration(Duration);

impl BookingDuration {
    /// Parses a duration; `None` (unset) gives the default of 90 minutes. `Some(None)`
    /// stands for a malformed (e.g. negative) protobuf duration.
    pub fn parse_or_default(value: Option<Option<Duration>>) -> Result<Self, String> {
        match value {
            None => Ok(Self(DEFAULT_DURATION)),
            Some(value) => Self::parse(value),
        }
    }

    /// Parses a given duration (`None`: malformed or negative).
    pub fn parse(value: Option<Duration>) -> Result<Self, String> {
        let value = value.ok_or_else(|| "must be a valid, non-negative duration".to_string())?;
        if value.subsec_nanos() != 0 {
            return Err("must be whole seconds".into());
        }
        if value < MIN_DURATION || value > MAX_DURATION {
            return Err("must be 15 minutes to 12 hours".into());
        }
        Ok(Self(value))
    }

    /// A duration read back from storage.
    pub fn from_stored(value: Duration) -> Self {
        Self(value)
    }

    /// The duration.
    pub fn get(&self) -> Duration {
        self.0
    }
}

/// An idempotency key: 1 to 200 characters; an empty string means "no key".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses an optional key.
    pub fn parse_optional(value: &str) -> Result<Option<Self>, String> {
        if value.is_empty() {
            return Ok(None);
        }
        if value.chars().count() > MAX_IDEMPOTENCY_KEY {
            return Err(format!("at most {MAX_IDEMPOTENCY_KEY} characters"));
        }
        Ok(Some(Self(value.to_string())))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A booking's version: 1 when created, one more for every edit that changes something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(i64);

impl Version {
    /// The version of a new booking.
    pub const FIRST: Version = Version(1);

    /// Parses a version named by a request: 1 or more.
    pub fn parse(value: i64) -> Result<Self, String> {
        if value >= 1 { Ok(Self(value)) } else { Err("must be 1 or more".into()) }
    }

    /// A version read back from storage.
    pub fn from_stored(value: i64) -> Self {
        Self(value)
    }

    /// The version after this one.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// The number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An `expected_version`: 1 or more, when given.
pub fn parse_expected_version(value: Option<i64>) -> Result<Option<Version>, String> {
    value.map(Version::parse).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn booking_ids_are_uuids() {
        assert!(BookingId::parse("4f1c2c7e-8a4e-4bd4-9a57-3a8f0c1b2d3e").is_ok());
        assert_eq!(BookingId::parse("").unwrap_err(), "required");
        assert_eq!(BookingId::parse("42").unwrap_err(), "must be a UUID");
    }

    #[test]
    fn party_sizes_are_one_to_a_hundred() {
        assert!(PartySize::parse(0).is_err());
        assert!(PartySize::parse(1).is_ok());
        assert!(PartySize::parse(100).is_ok());
        assert!(PartySize::parse(101).is_err());
        assert!(PartySize::parse(-3).is_err());
    }

    #[test]
    fn start_times_must_be_present_and_not_past() {
        let now = at(1_000);
        assert!(StartTime::parse(None, now).is_err());
        assert!(StartTime::parse(Some(at(999)), now).is_err());
        assert_eq!(StartTime::parse(Some(at(1_000)), now).map(|s| s.get()), Ok(at(1_000)));
        let with_nanos = at(2_000) + Duration::from_nanos(1_234_567);
        assert_eq!(
            StartTime::parse(Some(with_nanos), now).map(|s| s.get()),
            Ok(at(2_000) + Duration::from_micros(1_234))
        );
    }

    #[test]
    fn durations_default_to_ninety_minutes_within_bounds() {
        assert_eq!(BookingDuration::parse_or_default(None).map(|d| d.get()), Ok(DEFAULT_DURATION));
        assert!(BookingDuration::parse(Some(Duration::from_secs(14 * 60 + 59))).is_err());
        assert!(BookingDuration::parse(Some(MIN_DURATION)).is_ok());
        assert!(BookingDuration::parse(Some(MAX_DURATION)).is_ok());
        assert!(BookingDuration::parse(Some(MAX_DURATION + Duration::from_secs(1))).is_err());
        assert!(BookingDuration::parse(Some(Duration::from_millis(3_600_500))).is_err());
        assert!(BookingDuration::parse(None).is_err());
    }

    #[test]
    fn keys_restaurant_ids_and_versions_have_limits() {
        assert_eq!(IdempotencyKey::parse_optional(""), Ok(None));
        assert!(IdempotencyKey::parse_optional(&"k".repeat(201)).is_err());
        assert!(RestaurantId::parse("").is_err());
        assert!(RestaurantId::parse(" r1").is_err());
        assert!(RestaurantId::parse(&"r".repeat(65)).is_err());
        assert_eq!(parse_expected_version(Some(0)), Err("must be 1 or more".into()));
        assert_eq!(parse_expected_version(None), Ok(None));
        assert_eq!(parse_expected_version(Some(3)), Ok(Some(Version::from_stored(3))));
        assert_eq!(Version::FIRST.next().get(), 2);
    }

    proptest! {
        #[test]
        fn truncation_is_idempotent_and_never_later(secs in 0u64..4_000_000_000, nanos in 0u32..1_000_000_000) {
            let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
            let once = truncate_to_micros(t);
            prop_assert!(once <= t);
            prop_assert!(t.duration_since(once).unwrap() < Duration::from_micros(1));
            prop_assert_eq!(truncate_to_micros(once), once);
        }

        #[test]
        fn any_party_size_is_accepted_exactly_in_range(n in any::<i32>()) {
            prop_assert_eq!(PartySize::parse(n).is_ok(), (1..=100).contains(&n));
        }
    }
}
