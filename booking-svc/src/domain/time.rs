//! Points in time as the service stores and shows them.
//!
//! Microseconds since the Unix epoch (what PostgreSQL keeps, and what page tokens and
//! fingerprints carry), and RFC 3339 for history details.

use super::values::truncate_to_micros;
use std::{
    fmt::Write,
    time::{Duration, SystemTime},
};

/// Microseconds since the Unix epoch (negative before it).
pub fn micros(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// The time at `micros` microseconds since the Unix epoch.
pub fn from_micros(micros: i64) -> SystemTime {
    if micros >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_micros(micros as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    }
}

/// An RFC 3339 UTC rendering of `t` to the microsecond, with no fraction when it has
/// none (`2023-11-14T22:13:20Z`, `2023-11-14T22:13:20.000005Z`), for history details.
/// Times humantime cannot render (before 1970, after 9999) follow protobuf's rendering
/// (`+10000-01-01T00:00:00Z`, fraction digits in threes).
pub fn rfc3339(t: SystemTime) -> String {
    let t = truncate_to_micros(t);
    let whole_seconds = t.duration_since(SystemTime::UNIX_EPOCH).is_ok_and(|d| d.subsec_nanos() == 0);
    let mut text = String::new();
    let rendered = if t < SystemTime::UNIX_EPOCH {
        Err(std::fmt::Error)
    } else if whole_seconds {
        write!(text, "{}", humantime::format_rfc3339_seconds(t))
    } else {
        write!(text, "{}", humantime::format_rfc3339_micros(t))
    };
    match rendered {
        Ok(()) => text,
        Err(_) => prost_types::Timestamp::from(t).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn rfc3339_renders_utc_to_the_microsecond() {
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(1_700_000_000) + Duration::from_micros(5)), "2023-11-14T22:13:20.000005Z");
        assert_eq!(rfc3339(at(1_700_000_000) + Duration::from_millis(120)), "2023-11-14T22:13:20.120000Z");
        assert_eq!(rfc3339(at(1_700_000_000) + Duration::from_nanos(999)), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(at(1_700_000_000) + Duration::from_nanos(1_999)), "2023-11-14T22:13:20.000001Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(253_402_300_799)), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339_renders_times_beyond_humantime() {
        assert_eq!(rfc3339(at(253_402_300_800)), "+10000-01-01T00:00:00Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH - Duration::from_secs(1)), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH - Duration::from_micros(1)), "1969-12-31T23:59:59.999999Z");
    }

    proptest! {
        #[test]
        fn micros_round_trip(us in -10_000_000_000_000i64..10_000_000_000_000) {
            prop_assert_eq!(micros(from_micros(us)), us);
        }
    }
}
