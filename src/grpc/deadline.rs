//! How long a caller waits: its `grpc-timeout` metadata.

use std::time::{Duration, Instant};

/// The caller's timeout from its `grpc-timeout` metadata, if it sent a valid one.
pub fn timeout_of(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    metadata.get("grpc-timeout").and_then(|value| value.to_str().ok()).and_then(parse_timeout)
}

/// When the caller stops waiting, from its `grpc-timeout` metadata.
pub fn deadline_of(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    timeout_of(metadata).and_then(|timeout| Instant::now().checked_add(timeout))
}

/// Parses a `grpc-timeout` value: 1 to 8 digits and a unit (H, M, S, m, u, n).
fn parse_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = value.get(..value.len() - unit.len_utf8())?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    match unit {
        'H' => Some(Duration::from_secs(amount * 3600)),
        'M' => Some(Duration::from_secs(amount * 60)),
        'S' => Some(Duration::from_secs(amount)),
        'm' => Some(Duration::from_millis(amount)),
        'u' => Some(Duration::from_micros(amount)),
        'n' => Some(Duration::from_nanos(amount)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_timeout("800m"), Some(Duration::from_millis(800)));
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("250000u"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "5", "5x", "123456789m", "-5S", "+5S", "5.0S", "10 m", "5é"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_the_callers_timeout_from_the_metadata() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(timeout_of(&metadata), None);
        metadata.insert("grpc-timeout", tonic::metadata::MetadataValue::from_static("200m"));
        assert_eq!(timeout_of(&metadata), Some(Duration::from_millis(200)));
        let deadline = deadline_of(&metadata).expect("a deadline");
        assert!(deadline > Instant::now() && deadline <= Instant::now() + Duration::from_millis(200));
    }

    proptest! {
        #[test]
        fn any_grpc_timeout_text_is_safe(value in "\\PC{0,12}") {
            let _ = parse_timeout(&value);
        }
    }
}
