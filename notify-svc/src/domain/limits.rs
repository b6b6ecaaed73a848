//! The limits of a request: how long its texts may be, and which times an email can show.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Size limits of the free-text parts of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest recipient or restaurant name, in characters.
    pub max_name_chars: usize,
    /// Longest notes, in characters.
    pub max_notes_chars: usize,
    /// Longest restaurant address, in characters.
    pub max_address_chars: usize,
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
        max_address_chars: 500,
        max_table_ids: 50,
        max_table_id_chars: 64,
        max_party_size: 1000,
        max_duration: Duration::from_secs(24 * 3600),
    };
}

/// The last instant an email can show (9999-12-31T23:59:59Z).
pub const LAST_START_SECS: u64 = 253_402_300_799;

/// A time an email can show: valid, between 1970 and 9999.
pub fn check_time(time: Option<SystemTime>) -> Result<SystemTime, String> {
    let secs = time.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs());
    match (time, secs) {
        (Some(time), Some(secs)) if secs <= LAST_START_SECS => Ok(time),
        _ => Err("must be a valid time between 1970 and 9999".to_string()),
    }
}

/// One line of printable text of at most `max` characters.
pub fn check_line(value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        Err(format!("at most {max} characters"))
    } else if value.chars().any(char::is_control) {
        Err("must not contain control characters".to_string())
    } else {
        Ok(())
    }
}
