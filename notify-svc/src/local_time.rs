//! Times as a guest reads them: the restaurant's wall clock and the zone's abbreviation.
//!
//! `Mon 2026-12-07 20:00 CET`: the offset and abbreviation are the ones in force at that
//! very instant (from the tz database's transitions), so a booking on the night the clocks
//! change shows the hour the guest must arrive, and one that spans the change ends in the
//! other abbreviation. A zone whose abbreviation is not a word (`-03`) shows its offset
//! instead (`UTC-03:00`). Pure: no clock, no I/O.

use crate::domain::Zone;
use jiff::{Timestamp, civil::DateTime, civil::Weekday, tz::Offset};
use std::time::SystemTime;

/// `Mon 2026-12-07 20:00 CET`; a time outside what an email can show reads `unknown`.
pub fn format_local(time: SystemTime, zone: &Zone) -> String {
    match local(time, zone) {
        Some((clock, label)) => format!("{} {label}", day_and_time(clock)),
        None => "unknown".to_string(),
    }
}

/// The end of a booking that starts at `start`: `04:00 CEST` on the start's day,
/// `Tue 2026-12-08 00:30 CET` on another.
pub fn format_end(start: SystemTime, end: SystemTime, zone: &Zone) -> String {
    match (local(start, zone), local(end, zone)) {
        (Some((from, _)), Some((until, label))) if from.date() == until.date() => {
            format!("{:02}:{:02} {label}", until.hour(), until.minute())
        }
        _ => format_local(end, zone),
    }
}

/// The wall clock at `time` in `zone` and the label of the offset in force then.
fn local(time: SystemTime, zone: &Zone) -> Option<(DateTime, String)> {
    let instant = Timestamp::try_from(time).ok()?;
    let info = zone.rules().to_offset_info(instant);
    let clock = info.offset().to_datetime(instant);
    if !(1970..=9999).contains(&clock.year()) {
        return None;
    }
    let abbreviation = info.abbreviation();
    let label = if !abbreviation.is_empty() && abbreviation.chars().all(|c| c.is_ascii_alphabetic()) {
        abbreviation.to_string()
    } else {
        format!("UTC{}", offset_text(info.offset(), ":"))
    };
    Some((clock, label))
}

fn day_and_time(clock: DateTime) -> String {
    format!(
        "{} {:04}-{:02}-{:02} {:02}:{:02}",
        weekday(clock.weekday()),
        clock.year(),
        clock.month(),
        clock.day(),
        clock.hour(),
        clock.minute()
    )
}

fn weekday(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    }
}

/// `+01:00` (with `separator` ":") or `+0100` (with ""), and the seconds when it has any.
pub fn offset_text(offset: Offset, separator: &str) -> String {
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let seconds = seconds.unsigned_abs();
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if s == 0 {
        format!("{sign}{h:02}{separator}{m:02}")
    } else {
        format!("{sign}{h:02}{separator}{m:02}{separator}{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(rfc3339: &str) -> SystemTime {
        SystemTime::try_from(rfc3339.parse::<Timestamp>().unwrap()).unwrap()
    }

    fn zone(name: &str) -> Zone {
        Zone::parse(name).unwrap()
    }

    #[test]
    fn utc_reads_as_before() {
        assert_eq!(format_local(at("2026-12-24T19:30:00Z"), &Zone::utc()), "Thu 2026-12-24 19:30 UTC");
        assert_eq!(format_local(UNIX_EPOCH + Duration::from_secs(253_402_300_800), &Zone::utc()), "unknown");
    }

    #[test]
    fn paris_springs_forward_on_the_last_sunday_of_march() {
        let paris = zone("Europe/Paris");
        // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        assert_eq!(format_local(at("2026-03-29T00:59:00Z"), &paris), "Sun 2026-03-29 01:59 CET");
        assert_eq!(format_local(at("2026-03-29T01:00:00Z"), &paris), "Sun 2026-03-29 03:00 CEST");
        // A booking at 01:30 for 90 minutes spans the change: it ends at 04:00 summer time.
        let start = at("2026-03-29T00:30:00Z");
        assert_eq!(format_local(start, &paris), "Sun 2026-03-29 01:30 CET");
        assert_eq!(format_end(start, start + Duration::from_secs(5400), &paris), "04:00 CEST");
    }

    #[test]
    fn paris_falls_back_on_the_last_sunday_of_october() {
        let paris = zone("Europe/Paris");
        // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 happens twice.
        assert_eq!(format_local(at("2026-10-25T00:30:00Z"), &paris), "Sun 2026-10-25 02:30 CEST");
        assert_eq!(format_local(at("2026-10-25T01:30:00Z"), &paris), "Sun 2026-10-25 02:30 CET");
        let start = at("2026-10-25T00:00:00Z");
        assert_eq!(format_local(start, &paris), "Sun 2026-10-25 02:00 CEST");
        assert_eq!(format_end(start, start + Duration::from_secs(2 * 3600), &paris), "03:00 CET");
    }

    #[test]
    fn new_york_changes_on_its_own_sundays() {
        let new_york = zone("America/New_York");
        // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        assert_eq!(format_local(at("2026-03-08T06:30:00Z"), &new_york), "Sun 2026-03-08 01:30 EST");
        assert_eq!(format_local(at("2026-03-08T07:00:00Z"), &new_york), "Sun 2026-03-08 03:00 EDT");
        let start = at("2026-03-08T06:30:00Z");
        assert_eq!(format_end(start, start + Duration::from_secs(5400), &new_york), "04:00 EDT");
        // 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:30 happens twice.
        assert_eq!(format_local(at("2026-11-01T05:30:00Z"), &new_york), "Sun 2026-11-01 01:30 EDT");
        assert_eq!(format_local(at("2026-11-01T06:30:00Z"), &new_york), "Sun 2026-11-01 01:30 EST");
        let late = at("2026-11-01T03:30:00Z");
        assert_eq!(format_local(late, &new_york), "Sat 2026-10-31 23:30 EDT");
        assert_eq!(format_end(late, late + Duration::from_secs(3 * 3600), &new_york), "Sun 2026-11-01 01:30 EST");
    }

    #[test]
    fn a_zone_without_a_word_for_its_offset_shows_the_offset() {
        assert_eq!(
            format_local(at("2026-12-07T20:00:00Z"), &zone("America/Sao_Paulo")),
            "Mon 2026-12-07 17:00 UTC-03:00"
        );
        assert_eq!(format_local(at("2026-12-07T20:00:00Z"), &zone("Asia/Kolkata")), "Tue 2026-12-08 01:30 IST");
        assert_eq!(offset_text(Offset::from_seconds(-(3600 * 3 + 30 * 60)).unwrap(), ""), "-0330");
        assert_eq!(offset_text(Offset::from_seconds(561).unwrap(), ":"), "+00:09:21");
    }
}
