//! A SendOnce request as domain values.
//!
//! The details the email shows, parsed once at the edge with their size limits, and the
//! rule that decides whether a repeated request for a key asks for the same email.

use super::{
    key::DeliveryKey,
    limits::{Limits, check_line, check_time},
    recipient::Recipient,
    zone::Zone,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the email says about the booking.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    restaurant_name: String,
    start_time: SystemTime,
    #[serde(default)]
    duration: Option<Duration>,
    party_size: u32,
    #[serde(default)]
    table_ids: Vec<String>,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    time_zone: Zone,
    #[serde(default)]
    address: String,
    #[serde(default)]
    previous_start_time: Option<SystemTime>,
    #[serde(default)]
    previous_party_size: Option<u32>,
}

/// The raw details of a request, before parsing.
#[derive(Clone, Default)]
pub struct RawDetails<'a> {
    /// Restaurant name (may be empty).
    pub restaurant_name: &'a str,
    /// Arrival time; `None` when absent, `Some(None)` when malformed.
    pub start_time: Option<Option<SystemTime>>,
    /// How long the tables are held; `None` when absent, `Some(None)` when malformed.
    pub duration: Option<Option<Duration>>,
    /// Number of guests.
    pub party_size: i32,
    /// Assigned tables.
    pub table_ids: &'a [String],
    /// Guest's notes.
    pub notes: &'a str,
    /// The restaurant's IANA time zone ("" for UTC).
    pub time_zone: &'a str,
    /// The restaurant's address (may be empty).
    pub address: &'a str,
    /// For a modification, the arrival time before it; `None` when absent, `Some(None)`
    /// when malformed.
    pub previous_start_time: Option<Option<SystemTime>>,
    /// For a modification, the party size before it (0: none).
    pub previous_party_size: i32,
}

/// Never the guest's notes: details may end up in a logged `{:?}`.
impl std::fmt::Debug for Details {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Details")
            .field("restaurant_name", &self.restaurant_name)
            .field("start_time", &self.start_time)
            .field("duration", &self.duration)
            .field("party_size", &self.party_size)
            .field("table_ids", &self.table_ids)
            .field("notes", &format_args!("<{} chars redacted>", self.notes.chars().count()))
            .field("time_zone", &self.time_zone)
            .finish_non_exhaustive()
    }
}

/// Never the guest's notes.
impl std::fmt::Debug for RawDetails<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawDetails")
            .field("restaurant_name", &self.restaurant_name)
            .field("start_time", &self.start_time)
            .field("party_size", &self.party_size)
            .field("notes", &format_args!("<{} chars redacted>", self.notes.chars().count()))
            .finish_non_exhaustive()
    }
}

impl Details {
    /// Parses the details; on failure names each wrong field (`start_time`, `notes`, ...).
    pub fn parse(raw: RawDetails<'_>, limits: &Limits) -> Result<Details, Vec<(&'static str, String)>> {
        let mut wrong = Vec::new();
        let restaurant_name = raw.restaurant_name.trim();
        if let Err(description) = check_line(restaurant_name, limits.max_name_chars) {
            wrong.push(("restaurant_name", description));
        }
        let start_time = match raw.start_time {
            None => {
                wrong.push(("start_time", "required".to_string()));
                UNIX_EPOCH
            }
            Some(time) => check_time(time).unwrap_or_else(|description| {
                wrong.push(("start_time", description));
                UNIX_EPOCH
            }),
        };
        let duration = match raw.duration {
            None => None,
            Some(Some(d)) if !d.is_zero() && d <= limits.max_duration => Some(d),
            Some(_) => {
                wrong.push((
                    "duration",
                    format!("must be positive and at most {}h", limits.max_duration.as_secs() / 3600),
                ));
                None
            }
        };
        let party_size = match u32::try_from(raw.party_size) {
            Ok(size) if (1..=limits.max_party_size).contains(&size) => size,
            _ => {
                wrong.push(("party_size", format!("must be 1 to {}", limits.max_party_size)));
                0
            }
        };
        if raw.table_ids.len() > limits.max_table_ids {
            wrong.push(("table_ids", format!("at most {} table ids", limits.max_table_ids)));
        } else if raw
            .table_ids
            .iter()
            .any(|id| check_line(id.trim(), limits.max_table_id_chars).is_err() || id.trim().is_empty())
        {
            wrong.push((
                "table_ids",
                format!("each table id must be 1 to {} printable characters", limits.max_table_id_chars),
            ));
        }
        let notes = raw.notes.trim();
        if notes.chars().count() > limits.max_notes_chars {
            wrong.push(("notes", format!("at most {} characters", limits.max_notes_chars)));
        } else if notes.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            wrong.push(("notes", "must not contain control characters".to_string()));
        }
        let time_zone = Zone::parse(raw.time_zone).unwrap_or_else(|description| {
            wrong.push(("time_zone", description));
            Zone::utc()
        });
        let address = raw.address.trim().replace("\r\n", "\n");
        if address.chars().count() > limits.max_address_chars {
            wrong.push(("address", format!("at most {} characters", limits.max_address_chars)));
        } else if address.chars().any(|c| c.is_control() && c != '\n') {
            wrong.push(("address", "must not contain control characters other than line breaks".to_string()));
        }
        let previous_start_time = raw.previous_start_time.and_then(|time| {
            check_time(time).map_err(|description| wrong.push(("previous_start_time", description))).ok()
        });
        let previous_party_size = match u32::try_from(raw.previous_party_size) {
            Ok(0) => None,
            Ok(size) if size <= limits.max_party_size => Some(size),
            _ => {
                wrong.push(("previous_party_size", format!("must be 0 (none) or 1 to {}", limits.max_party_size)));
                None
            }
        };
        if !wrong.is_empty() {
            return Err(wrong);
        }
        Ok(Details {
            restaurant_name: restaurant_name.to_string(),
            start_time,
            duration,
            party_size,
            table_ids: raw.table_ids.iter().map(|id| id.trim().to_string()).collect(),
            notes: notes.to_string(),
            time_zone,
            address,
            previous_start_time,
            previous_party_size,
        })
    }

    /// The restaurant's name; empty when unknown.
    pub fn restaurant_name(&self) -> &str {
        &self.restaurant_name
    }

    /// The arrival time.
    pub fn start_time(&self) -> SystemTime {
        self.start_time
    }

    /// How long the tables are held, when known.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// Number of guests.
    pub fn party_size(&self) -> u32 {
        self.party_size
    }

    /// Assigned tables (may be empty).
    pub fn table_ids(&self) -> &[String] {
        &self.table_ids
    }

    /// The guest's notes (may be empty).
    pub fn notes(&self) -> &str {
        &self.notes
    }

    /// The restaurant's time zone (UTC when none was given).
    pub fn time_zone(&self) -> &Zone {
        &self.time_zone
    }

    /// The restaurant's address (may be empty).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// For a modification, the arrival time before it.
    pub fn previous_start_time(&self) -> Option<SystemTime> {
        self.previous_start_time
    }

    /// For a modification, the party size before it.
    pub fn previous_party_size(&self) -> Option<u32> {
        self.previous_party_size
    }
}

/// A parsed SendOnce request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendRequest {
    /// The key it may send at most once.
    pub key: DeliveryKey,
    /// Where it goes.
    pub recipient: Recipient,
    /// What it says.
    pub details: Details,
    /// Record as SUPPRESSED, never send.
    pub suppress: bool,
}

impl SendRequest {
    /// The parts in which this request differs from what the ledger recorded for its key
    /// (`recipient`, `details`); empty when it asks for the same email. `suppress` is not
    /// compared: the first call decided it.
    pub fn differences(&self, recorded_recipient: &Recipient, recorded_details: &Details) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if &self.recipient != recorded_recipient {
            fields.push("recipient");
        }
        if &self.details != recorded_details {
            fields.push("details");
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Kind, limits::LAST_START_SECS};
    use proptest::prelude::*;

    fn raw<'a>(tables: &'a [String], notes: &'a str) -> RawDetails<'a> {
        RawDetails {
            restaurant_name: "Chez Test",
            start_time: Some(Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000))),
            duration: Some(Some(Duration::from_secs(5400))),
            party_size: 4,
            table_ids: tables,
            notes,
            ..Default::default()
        }
    }

    fn fields(result: Result<impl std::fmt::Debug, Vec<(&'static str, String)>>) -> Vec<&'static str> {
        result.expect_err("should be refused").into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn details_are_bounded() {
        let ok_tables: Vec<String> = (0..50).map(|i| format!("T{i}")).collect();
        assert!(Details::parse(raw(&ok_tables, &"n".repeat(2000)), &Limits::CONTRACT).is_ok());
        let too_many: Vec<String> = (0..51).map(|i| format!("T{i}")).collect();
        assert_eq!(fields(Details::parse(raw(&too_many, ""), &Limits::CONTRACT)), vec!["table_ids"]);
        assert_eq!(fields(Details::parse(raw(&["".to_string()], ""), &Limits::CONTRACT)), vec!["table_ids"]);
        assert_eq!(fields(Details::parse(raw(&[], &"n".repeat(2001)), &Limits::CONTRACT)), vec!["notes"]);
        let mut missing = raw(&[], "");
        missing.start_time = None;
        missing.party_size = 0;
        missing.duration = Some(None);
        missing.restaurant_name = "bad\u{7}name";
        assert_eq!(
            fields(Details::parse(missing, &Limits::CONTRACT)),
            vec!["restaurant_name", "start_time", "duration", "party_size"]
        );
        let mut far = raw(&[], "");
        far.start_time = Some(Some(UNIX_EPOCH + Duration::from_secs(LAST_START_SECS + 1)));
        assert_eq!(fields(Details::parse(far, &Limits::CONTRACT)), vec!["start_time"]);
        let mut no_duration = raw(&[], "multi\nline\tnotes");
        no_duration.duration = None;
        assert_eq!(Details::parse(no_duration, &Limits::CONTRACT).unwrap().duration(), None);
    }

    #[test]
    fn the_zone_address_and_previous_values_are_checked() {
        let mut given = raw(&[], "");
        given.time_zone = "america/new_york";
        given.address = " 1 Main St\r\nNew York ";
        given.previous_start_time = Some(Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        given.previous_party_size = 2;
        let details = Details::parse(given, &Limits::CONTRACT).unwrap();
        assert_eq!(details.time_zone().name(), "America/New_York");
        assert_eq!(details.address(), "1 Main St\nNew York");
        assert_eq!(details.previous_start_time(), Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        assert_eq!(details.previous_party_size(), Some(2));
        let plain = Details::parse(raw(&[], ""), &Limits::CONTRACT).unwrap();
        assert!(plain.time_zone().is_utc());
        assert_eq!((plain.previous_start_time(), plain.previous_party_size()), (None, None));
        let mut wrong = raw(&[], "");
        wrong.time_zone = "Mars/Olympus_Mons";
        wrong.address = "tab\there";
        wrong.previous_start_time = Some(None);
        wrong.previous_party_size = -1;
        assert_eq!(
            fields(Details::parse(wrong, &Limits::CONTRACT)),
            vec!["time_zone", "address", "previous_start_time", "previous_party_size"]
        );
    }

    #[test]
    fn details_stored_before_zones_read_as_utc() {
        let stored = serde_json::json!({
            "restaurant_name": "Chez Test",
            "start_time": { "secs_since_epoch": 1_800_000_000, "nanos_since_epoch": 0 },
            "duration": { "secs": 5_400, "nanos": 0 },
            "party_size": 4,
        });
        let details: Details = serde_json::from_value(stored).unwrap();
        assert!(details.time_zone().is_utc());
        assert_eq!(details, Details::parse(raw(&[], ""), &Limits::CONTRACT).unwrap());
    }

    #[test]
    fn a_repeat_differs_only_in_recipient_or_details() {
        let details = Details::parse(raw(&[], "window seat"), &Limits::CONTRACT).unwrap();
        let recipient = Recipient::parse("ada@example.com", "Ada", &Limits::CONTRACT).unwrap();
        let request = SendRequest {
            key: DeliveryKey { booking_id: uuid::Uuid::nil(), kind: Kind::BookingConfirmed, version: 1 },
            recipient: recipient.clone(),
            details: details.clone(),
            suppress: true,
        };
        assert!(request.differences(&recipient, &details).is_empty());
        let other = Recipient::parse("eve@example.com", "Ada", &Limits::CONTRACT).unwrap();
        assert_eq!(request.differences(&other, &details), vec!["recipient"]);
        let other_details = Details::parse(raw(&[], "aisle seat"), &Limits::CONTRACT).unwrap();
        assert_eq!(request.differences(&other, &other_details), vec!["recipient", "details"]);
    }

    proptest! {
        #[test]
        fn stored_details_read_back_equal(
            secs in 0u64..=LAST_START_SECS, nanos in 0u32..1_000_000_000, dur in proptest::option::of(1u64..=86_400),
            party in 1i32..=1000, tables in proptest::collection::vec("[A-Za-z0-9-]{1,10}", 0..5), notes in "\\PC{0,50}",
        ) {
            let tables: Vec<String> = tables;
            let raw = RawDetails {
                restaurant_name: "Chez Test",
                start_time: Some(Some(UNIX_EPOCH + Duration::new(secs, nanos))),
                duration: dur.map(|d| Some(Duration::from_secs(d))),
                party_size: party,
                table_ids: &tables,
                notes: &notes,
                time_zone: "Europe/Paris",
                address: "1 Rue X\n75001 Paris",
                previous_start_time: Some(Some(UNIX_EPOCH + Duration::from_secs(secs / 2))),
                previous_party_size: party / 2,
            };
            let details = Details::parse(raw, &Limits::CONTRACT).unwrap();
            let json = serde_json::to_value(&details).unwrap();
            let back: Details = serde_json::from_value(json).unwrap();
            prop_assert_eq!(back, details);
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(email in "\\PC{0,300}", name in ".{0,300}", notes in ".{0,300}", party in any::<i32>()) {
            let _ = Recipient::parse(&email, &name, &Limits::CONTRACT);
            let raw = RawDetails { restaurant_name: &name, start_time: Some(Some(UNIX_EPOCH)), duration: None, party_size: party, table_ids: &[], notes: &notes, time_zone: &name, address: &notes, ..Default::default() };
            let _ = Details::parse(raw, &Limits::CONTRACT);
        }
    }
}
