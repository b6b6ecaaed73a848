//! The value types of the domain.
//!
//! Each constructor is the only way to make one and says what is wrong in one short
//! sentence, so the edge can name the field. Owns the limits (id lengths, party size,
//! durations). It must never know proto field names or SQL types.

use std::{
    fmt,
    time::{Duration, SystemTime},
};
use uuid::Uuid;

/// Longest restaurant, table or group id, in characters.
pub const MAX_ID_CHARS: usize = 64;
/// Shortest booking.
pub const MIN_DURATION: Duration = Duration::from_secs(15 * 60);
/// Longest booking.
pub const MAX_DURATION: Duration = Duration::from_secs(12 * 60 * 60);
/// Largest party.
pub const MAX_PARTY: u32 = 100;

fn parse_id(value: &str, what: &str, allow_empty: bool) -> Result<String, String> {
    let chars = value.chars().count();
    if chars == 0 {
        return if allow_empty { Ok(String::new()) } else { Err(format!("{what} is required (1 to 64 characters)")) };
    }
    if chars > MAX_ID_CHARS {
        return Err(format!("{what} must be at most 64 characters (got {chars})"));
    }
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(format!("{what} must be printable and not blank"));
    }
    Ok(value.to_string())
}

/// A booking id: a UUID, shown in its canonical lowercase hyphenated form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BookingId(Uuid);

impl BookingId {
    /// Parses a UUID.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("booking id is required (a UUID)".into());
        }
        Uuid::try_parse(value).map(Self).map_err(|_| "booking id must be a UUID".into())
    }

    /// From a stored UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID.
    pub fn uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for BookingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A booking version, 1 or more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(i64);

impl Version {
    /// Accepts 1 or more.
    pub fn parse(value: i64) -> Result<Self, String> {
        if value >= 1 { Ok(Self(value)) } else { Err(format!("version must be 1 or more (got {value})")) }
    }

    /// The number.
    pub fn get(&self) -> i64 {
        self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A restaurant id, 1 to 64 printable characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RestaurantId(String);

impl RestaurantId {
    /// Accepts 1 to 64 printable characters.
    pub fn parse(value: &str) -> Result<Self, String> {
        parse_id(value, "restaurant id", false).map(Self)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RestaurantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A table id, 1 to 64 printable characters, unique within its restaurant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId(String);

impl TableId {
    /// Accepts 1 to 64 printable characters.
    pub fn parse(value: &str) -> Result<Self, String> {
        parse_id(value, "table id", false).map(Self)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A combination group: empty (the table is never joined) or 1 to 64 printable
/// characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CombineGroup(String);

impl CombineGroup {
    /// Accepts the empty string or 1 to 64 printable characters.
    pub fn parse(value: &str) -> Result<Self, String> {
        parse_id(value, "combine group", true).map(Self)
    }

    /// The group name ("" for none).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the table may be joined with others of its group.
    pub fn is_joinable(&self) -> bool {
        !self.0.is_empty()
    }
}

/// Seats at a table, 1 to 100.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seats(u32);

impl Seats {
    /// Accepts 1 to 100.
    pub fn parse(value: i32) -> Result<Self, String> {
        match u32::try_from(value) {
            Ok(seats @ 1..=MAX_PARTY) => Ok(Self(seats)),
            _ => Err(format!("seats must be 1 to 100 (got {value})")),
        }
    }

    /// The count.
    pub fn get(&self) -> u32 {
        self.0
    }
}

/// Guests of one booking, 1 to 100.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartySize(u32);

impl PartySize {
    /// Accepts 1 to 100.
    pub fn parse(value: i32) -> Result<Self, String> {
        match u32::try_from(value) {
            Ok(size @ 1..=MAX_PARTY) => Ok(Self(size)),
            _ => Err(format!("party size must be 1 to 100 (got {value})")),
        }
    }

    /// The count.
    pub fn get(&self) -> u32 {
        self.0
    }
}

/// When tables are needed: a start and an end 15 minutes to 12 hours later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    start: SystemTime,
    end: SystemTime,
}

impl Slot {
    /// The slot of a booking lasting `duration` from `start`.
    pub fn new(start: SystemTime, duration: Duration) -> Result<Self, String> {
        if !(MIN_DURATION..=MAX_DURATION).contains(&duration) {
            return Err(format!("duration must be 15 minutes to 12 hours (got {}s)", duration.as_secs()));
        }
        let end =
            start.checked_add(duration).ok_or_else(|| "duration goes past the last representable time".to_string())?;
        Ok(Self { start, end })
    }

    /// A stored slot (start before end).
    pub fn from_bounds(start: SystemTime, end: SystemTime) -> Option<Self> {
        (start < end).then_some(Self { start, end })
    }

    /// Start (inclusive).
    pub fn start(&self) -> SystemTime {
        self.start
    }

    /// End (exclusive).
    pub fn end(&self) -> SystemTime {
        self.end
    }

    /// The UTC calendar days (counted from 1970-01-01) of the slot's first and last
    /// microsecond as PostgreSQL stores them (truncated to the microsecond): every day
    /// the slot touches lies between them, and the two are equal or consecutive, since a
    /// slot lasts at most 12 hours. Two slots that overlap share at least one of them.
    pub fn days(&self) -> (i64, i64) {
        (day_of(micros(self.start)), day_of(micros(self.end).saturating_sub(1)))
    }
}

// A slot never spans more than two days, so its first and last day are all of them.
const _: () = assert!(MAX_DURATION.as_secs() <= 24 * 60 * 60);

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Microseconds since 1970-01-01 UTC, truncated towards 1970 (negative before).
fn micros(at: SystemTime) -> i64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

fn day_of(micros: i64) -> i64 {
    micros.div_euclid(MICROS_PER_DAY)
}

/// A parsed request for tables for one booking version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignRequest {
    /// Booking.
    pub booking_id: BookingId,
    /// Its version.
    pub version: Version,
    /// Whose floor plan to use.
    pub restaurant_id: RestaurantId,
    /// Guests.
    pub party_size: PartySize,
    /// When.
    pub slot: Slot,
}

/// Tables held by one booking version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Booking.
    pub booking_id: BookingId,
    /// Version the tables are held for.
    pub version: Version,
    /// Reserved tables, ordered by id.
    pub table_ids: Vec<TableId>,
    /// When.
    pub slot: Slot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_printable_and_required() {
        assert!(RestaurantId::parse("r-1").is_ok());
        assert!(RestaurantId::parse("").is_err());
        assert!(RestaurantId::parse("   ").is_err());
        assert!(RestaurantId::parse("a\nb").is_err());
        assert!(RestaurantId::parse(&"x".repeat(64)).is_ok());
        assert!(RestaurantId::parse(&"x".repeat(65)).is_err());
        assert!(TableId::parse(&"é".repeat(64)).is_ok(), "limits count characters, not bytes");
        assert_eq!(CombineGroup::parse("").map(|g| g.is_joinable()), Ok(false));
        assert_eq!(CombineGroup::parse("terrace").map(|g| g.is_joinable()), Ok(true));
    }

    #[test]
    fn booking_ids_are_uuids_shown_canonically() {
        let id = BookingId::parse("6F9619FF-8B86-D011-B42D-00C04FC964FF").expect("uuid");
        assert_eq!(id.to_string(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
        assert!(BookingId::parse("").is_err());
        assert!(BookingId::parse("booking-1").is_err());
    }

    #[test]
    fn numbers_are_range_checked() {
        assert!(Version::parse(0).is_err());
        assert_eq!(Version::parse(3).map(|v| v.get()), Ok(3));
        assert!(PartySize::parse(0).is_err());
        assert!(PartySize::parse(101).is_err());
        assert!(PartySize::parse(-4).is_err());
        assert_eq!(PartySize::parse(100).map(|p| p.get()), Ok(100));
        assert!(Seats::parse(0).is_err());
        assert_eq!(Seats::parse(1).map(|s| s.get()), Ok(1));
    }

    #[test]
    fn slots_last_15_minutes_to_12_hours() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(Slot::new(start, Duration::from_secs(14 * 60)).is_err());
        assert!(Slot::new(start, Duration::from_secs(12 * 3600 + 1)).is_err());
        let slot = Slot::new(start, Duration::from_secs(90 * 60)).expect("slot");
        assert_eq!(slot.end(), start + Duration::from_secs(5400));
        assert_eq!(Slot::from_bounds(slot.end(), slot.start()), None, "a stored range is never empty");
    }

    #[test]
    fn a_slot_names_the_days_it_touches() {
        let day = 20_600u64;
        let midnight = SystemTime::UNIX_EPOCH + Duration::from_secs(day * 86_400);
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let day = day as i64;
        // Within one evening.
        assert_eq!(Slot::new(midnight - minutes(300), minutes(90)).map(|s| s.days()), Ok((day - 1, day - 1)));
        // Ending at midnight: the end is exclusive, so the next day is not touched.
        assert_eq!(Slot::new(midnight - minutes(90), minutes(90)).map(|s| s.days()), Ok((day - 1, day - 1)));
        // One microsecond past midnight touches the next day.
        let past = Slot::from_bounds(midnight - minutes(90), midnight + Duration::from_micros(1)).map(|s| s.days());
        assert_eq!(past, Some((day - 1, day)));
        // Less than a microsecond past midnight is stored as midnight.
        let cut = Slot::from_bounds(midnight - minutes(90), midnight + Duration::from_nanos(999)).map(|s| s.days());
        assert_eq!(cut, Some((day - 1, day - 1)));
        // Starting at midnight; spanning it; the longest slot.
        assert_eq!(Slot::new(midnight, minutes(15)).map(|s| s.days()), Ok((day, day)));
        assert_eq!(Slot::new(midnight - minutes(60), minutes(120)).map(|s| s.days()), Ok((day - 1, day)));
        assert_eq!(Slot::new(midnight + minutes(720), minutes(720)).map(|s| s.days()), Ok((day, day)));
        // Before 1970 the days count down.
        let early = Slot::new(SystemTime::UNIX_EPOCH - minutes(60), minutes(120)).map(|s| s.days());
        assert_eq!(early, Ok((-1, 0)));
    }
}
