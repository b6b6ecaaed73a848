//! A SendOnce request as domain values.
//!
//! The recipient and the details the email shows, each parsed once at the edge with its
//! size limits, and the rule that decides whether a repeated request for a key asks for
//! the same email.

use super::key::DeliveryKey;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Size limits of the free-text parts of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest recipient or restaurant name, in characters.
    pub max_name_chars: usize,
    /// Longest notes, in characters.
    pub max_notes_chars: usize,
    /// Most table ids.
    pub max_table_ids: usize,
    /// Longest table id, in characters.
    pub max_table_id_chars: usize,
    /// Largest party.
    pub max_party_size: u32,
    /// Longest booking duration.
    pub max_duration: Duration,
}

impl Limits {
    /// The limits of the public contract.
    pub const CONTRACT: Limits = Limits {
        max_name_chars: 200,
        max_notes_chars: 2000,
        max_table_ids: 50,
        max_table_id_chars: 64,
        max_party_size: 1000,
        max_duration: Duration::from_secs(24 * 3600),
    };
}

/// Longest email address (RFC 5321 path limit).
const MAX_EMAIL_CHARS: usize = 254;
/// The last instant an email can show (9999-12-31T23:59:59Z).
const LAST_START_SECS: u64 = 253_402_300_799;

/// Where an email goes: a valid address and an optional display name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    email: String,
    name: String,
}

impl Recipient {
    /// Parses the recipient; on failure names each wrong field (`email`, `name`).
    pub fn parse(email: &str, name: &str, limits: &Limits) -> Result<Recipient, Vec<(&'static str, String)>> {
        let mut wrong = Vec::new();
        let email = email.trim();
        if email.is_empty() {
            wrong.push(("email", "required".to_string()));
        } else if email.chars().count() > MAX_EMAIL_CHARS {
            wrong.push(("email", format!("at most {MAX_EMAIL_CHARS} characters")));
        } else if email.parse::<lettre::Address>().is_err() {
            wrong.push(("email", "not a valid email address".to_string()));
        }
        let name = name.trim();
        if let Err(description) = check_line(name, limits.max_name_chars) {
            wrong.push(("name", description));
        }
        if wrong.is_empty() { Ok(Recipient { email: email.to_string(), name: name.to_string() }) } else { Err(wrong) }
    }

    /// A recipient as the ledger stored it (already parsed once).
    pub fn from_stored(email: String, name: String) -> Recipient {
        Recipient { email, name }
    }

    /// The email address.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The display name; empty when none was given.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What the email says about the booking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// The raw details of a request, before parsing.
#[derive(Clone, Debug, Default)]
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
            Some(time) => {
                let secs = time.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs());
                if secs.is_none_or(|secs| secs > LAST_START_SECS) {
                    wrong.push(("start_time", "must be a valid time between 1970 and 9999".to_string()));
                }
                time.unwrap_or(UNIX_EPOCH)
            }
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
}

/// One line of printable text of at most `max` characters.
fn check_line(value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        Err(format!("at most {max} characters"))
    } else if value.chars().any(char::is_control) {
        Err("must not contain control characters".to_string())
    } else {
        Ok(())
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
    use crate::domain::Kind;
    use proptest::prelude::*;

    fn raw<'a>(tables: &'a [String], notes: &'a str) -> RawDetails<'a> {
        RawDetails {
            restaurant_name: "Chez Test",
            start_time: Some(Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000))),
            duration: Some(Some(Duration::from_secs(5400))),
            party_size: 4,
            table_ids: tables,
            notes,
        }
    }

    fn fields(result: Result<impl std::fmt::Debug, Vec<(&'static str, String)>>) -> Vec<&'static str> {
        result.expect_err("should be refused").into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn a_valid_recipient_is_trimmed() {
        let recipient = Recipient::parse(" ada@example.com ", " Ada Lovelace ", &Limits::CONTRACT).unwrap();
        assert_eq!(recipient.email(), "ada@example.com");
        assert_eq!(recipient.name(), "Ada Lovelace");
        assert!(Recipient::parse("ada@example.com", "", &Limits::CONTRACT).is_ok());
    }

    #[test]
    fn a_wrong_recipient_names_each_field() {
        assert_eq!(fields(Recipient::parse("", "x", &Limits::CONTRACT)), vec!["email"]);
        assert_eq!(fields(Recipient::parse("not-an-email", "x", &Limits::CONTRACT)), vec!["email"]);
        assert_eq!(fields(Recipient::parse("a@b.c", &"n".repeat(201), &Limits::CONTRACT)), vec!["name"]);
        assert_eq!(fields(Recipient::parse("a@b.c", "Eve\r\nBcc: x@y.z", &Limits::CONTRACT)), vec!["name"]);
        assert_eq!(fields(Recipient::parse("a b@c", &"n".repeat(201), &Limits::CONTRACT)), vec!["email", "name"]);
        assert!(Recipient::parse("a@b.c", &"n".repeat(200), &Limits::CONTRACT).is_ok());
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
            };
            let details = Details::parse(raw, &Limits::CONTRACT).unwrap();
            let json = serde_json::to_value(&details).unwrap();
            let back: Details = serde_json::from_value(json).unwrap();
            prop_assert_eq!(back, details);
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(email in "\\PC{0,300}", name in ".{0,300}", notes in ".{0,300}", party in any::<i32>()) {
            let _ = Recipient::parse(&email, &name, &Limits::CONTRACT);
            let raw = RawDetails { restaurant_name: &name, start_time: Some(Some(UNIX_EPOCH)), duration: None, party_size: party, table_ids: &[], notes: &notes };
            let _ = Details::parse(raw, &Limits::CONTRACT);
        }
    }
}
