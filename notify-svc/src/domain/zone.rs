//! The restaurant's time zone, in which an email shows its times.
//!
//! An IANA name looked up in the tz database that jiff bundles (the same on every host,
//! whatever its own zoneinfo), kept with the rules it names. An empty name means UTC, so
//! callers that send no zone get the emails of before.

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// A time zone of the tz database, e.g. `Europe/Paris`; UTC by default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Zone {
    name: String,
    rules: TimeZone,
}

impl Zone {
    /// UTC.
    pub fn utc() -> Self {
        Zone { name: "UTC".to_string(), rules: TimeZone::UTC }
    }

    /// Parses an IANA zone name ("" means UTC); the tz database's spelling is kept.
    pub fn parse(name: &str) -> Result<Zone, String> {
        let name = name.trim();
        if name.is_empty() {
            return Ok(Zone::utc());
        }
        match TimeZone::get(name) {
            Ok(rules) => Ok(Zone { name: rules.iana_name().unwrap_or(name).to_string(), rules }),
            Err(_) => Err(format!("unknown time zone {name:?}: not in the IANA tz database")),
        }
    }

    /// The zone's IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its rules: offsets, abbreviations and transitions.
    pub fn rules(&self) -> &TimeZone {
        &self.rules
    }

    /// Whether it is UTC itself (times are then written in UTC, without a zone).
    pub fn is_utc(&self) -> bool {
        self.name == "UTC"
    }
}

impl Default for Zone {
    fn default() -> Self {
        Zone::utc()
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

/// A stored name. The ledger holds only names this service accepted; one the tz database
/// no longer knows keeps its name and is shown in UTC rather than lose the delivery.
impl From<String> for Zone {
    fn from(name: String) -> Zone {
        Zone::parse(&name).unwrap_or_else(|_| Zone { name, rules: TimeZone::UTC })
    }
}

impl From<Zone> for String {
    fn from(zone: Zone) -> String {
        zone.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_come_from_the_tz_database_and_default_to_utc() {
        assert_eq!(Zone::parse("europe/paris").unwrap().name(), "Europe/Paris");
        assert_eq!(Zone::parse("").unwrap(), Zone::utc());
        assert!(Zone::parse("").unwrap().is_utc());
        assert!(!Zone::parse("Etc/UTC").unwrap().is_utc());
        assert!(Zone::parse("Europe/Atlantis").is_err());
        let stored: Zone = serde_json::from_value(serde_json::json!("America/New_York")).unwrap();
        assert_eq!(serde_json::to_value(&stored).unwrap(), serde_json::json!("America/New_York"));
    }
}
