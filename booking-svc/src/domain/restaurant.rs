//! A restaurant's profile: the name, time zone, address and phone its guests' emails show.
//!
//! Each part's `parse` is the only way to make one from a request and answers what is
//! wrong (the caller names the field). The time zone is checked against the tz database
//! that jiff bundles, so a zone valid here is valid wherever the service runs, whatever
//! the host's own zoneinfo. A restaurant without a profile has [`Restaurant::default_for`].

use super::{guest::Phone, values::RestaurantId};

/// Longest restaurant name, in characters.
pub const MAX_NAME: usize = 200;
/// Longest address, in characters.
pub const MAX_ADDRESS: usize = 500;

/// A restaurant's display name: required, at most 200 characters (trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestaurantName(String);

impl RestaurantName {
    /// Parses a name.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("required".into());
        }
        if value.chars().count() > MAX_NAME {
            return Err(format!("at most {MAX_NAME} characters"));
        }
        if value.chars().any(char::is_control) {
            return Err("no control characters".into());
        }
        Ok(Self(value.to_string()))
    }

    /// A name read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An IANA time zone known to the tz database (e.g. `Europe/Paris`), spelled as the
/// database spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeZoneName(String);

impl TimeZoneName {
    /// UTC: the zone of a restaurant without a profile.
    pub fn utc() -> Self {
        Self("UTC".to_string())
    }

    /// Parses an IANA zone name (the lookup ignores case; the canonical spelling is kept).
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("required (an IANA time zone such as Europe/Paris)".into());
        }
        match jiff::tz::TimeZone::get(value) {
            Ok(zone) => Ok(Self(zone.iana_name().unwrap_or(value).to_string())),
            Err(_) => Err(format!("unknown time zone {value:?}: not in the IANA tz database")),
        }
    }

    /// A zone read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The zone's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A postal address: at most 500 characters, line breaks allowed (trimmed; may be empty).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Address(String);

impl Address {
    /// Parses an address ("" for none); `\r\n` becomes `\n`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim().replace("\r\n", "\n");
        if value.chars().count() > MAX_ADDRESS {
            return Err(format!("at most {MAX_ADDRESS} characters"));
        }
        if value.chars().any(|c| c.is_control() && c != '\n') {
            return Err("no control characters other than line breaks".into());
        }
        Ok(Self(value))
    }

    /// An address read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The address ("" for none).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A restaurant's profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restaurant {
    pub id: RestaurantId,
    pub name: RestaurantName,
    pub time_zone: TimeZoneName,
    pub address: Address,
    pub phone: Phone,
}

impl Restaurant {
    /// The profile of a restaurant that has none: its id as name, UTC, no address or phone.
    pub fn default_for(id: RestaurantId) -> Self {
        Self {
            name: RestaurantName::from_stored(id.as_str().to_string()),
            id,
            time_zone: TimeZoneName::utc(),
            address: Address::default(),
            phone: Phone::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_must_be_in_the_tz_database() {
        assert_eq!(TimeZoneName::parse("Europe/Paris").unwrap().as_str(), "Europe/Paris");
        assert_eq!(TimeZoneName::parse(" america/new_york ").unwrap().as_str(), "America/New_York");
        assert_eq!(TimeZoneName::parse("UTC").unwrap(), TimeZoneName::utc());
        for bad in ["", "Mars/Olympus_Mons", "Europe/Pariss", "+02:00", "CEST"] {
            assert!(TimeZoneName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_addresses_have_limits() {
        assert_eq!(RestaurantName::parse(" Demo Bistro ").unwrap().as_str(), "Demo Bistro");
        assert!(RestaurantName::parse(" ").is_err());
        assert!(RestaurantName::parse(&"n".repeat(201)).is_err());
        assert!(RestaurantName::parse("Bad\nname").is_err());
        assert_eq!(Address::parse("1 Rue X\r\n75001 Paris").unwrap().as_str(), "1 Rue X\n75001 Paris");
        assert!(Address::parse(&"a".repeat(501)).is_err());
        assert!(Address::parse("tab\there").is_err());
        assert_eq!(Address::parse("").unwrap(), Address::default());
    }

    #[test]
    fn a_restaurant_without_a_profile_is_named_by_its_id_in_utc() {
        let r = Restaurant::default_for(RestaurantId::from_stored("demo-bistro".into()));
        assert_eq!((r.name.as_str(), r.time_zone.as_str(), r.address.as_str()), ("demo-bistro", "UTC", ""));
    }
}
