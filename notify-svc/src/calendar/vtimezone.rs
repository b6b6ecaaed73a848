//! The `VTIMEZONE` of an invitation, derived from the tz database's transitions.

use super::{clock_text, escape_text, param_text};
use crate::{domain::Zone, local_time::offset_text};
use jiff::{
    SignedDuration, Timestamp,
    civil::DateTime,
    tz::{Offset, TimeZone, TimeZoneTransition},
};
use std::time::{Duration, SystemTime};

/// The `VTIMEZONE` of `zone` around an event from `start` to `end`: one observance per
/// transition, from the one in force at `start` to the last one within a year after
/// `end`. Each observance starts at its transition's wall-clock time in the offset before
/// it (RFC 5545 section 3.6.5). A zone without transitions gets one observance since 1970.
pub(super) fn vtimezone(zone: &Zone, start: SystemTime, end: SystemTime) -> Vec<String> {
    let rules = zone.rules();
    let mut lines = vec!["BEGIN:VTIMEZONE".to_string(), format!("TZID:{}", param_text(zone.name()))];
    let from = Timestamp::try_from(start).unwrap_or(Timestamp::UNIX_EPOCH);
    let until = Timestamp::try_from(end + Duration::from_secs(366 * 86_400)).unwrap_or(Timestamp::MAX);
    let in_force = rules.preceding(from.checked_add(SignedDuration::from_nanos(1)).unwrap_or(from)).next();
    let mut observances = Vec::new();
    match &in_force {
        Some(t) => observances.push(Observance::of(rules, t)),
        None => {
            let info = rules.to_offset_info(from);
            observances.push(Observance {
                onset: DateTime::constant(1970, 1, 1, 0, 0, 0, 0),
                before: info.offset(),
                after: info.offset(),
                name: info.abbreviation().to_string(),
                dst: info.dst().is_dst(),
            });
        }
    }
    observances.extend(rules.following(from).take_while(|t| t.timestamp() <= until).map(|t| Observance::of(rules, &t)));
    for Observance { onset, before, after, name, dst } in observances {
        let part = if dst { "DAYLIGHT" } else { "STANDARD" };
        lines.push(format!("BEGIN:{part}"));
        lines.push(format!("DTSTART:{}", clock_text(onset)));
        lines.push(format!("TZOFFSETFROM:{}", offset_text(before, "")));
        lines.push(format!("TZOFFSETTO:{}", offset_text(after, "")));
        if !name.is_empty() {
            lines.push(format!("TZNAME:{}", escape_text(&name)));
        }
        lines.push(format!("END:{part}"));
    }
    lines.push("END:VTIMEZONE".to_string());
    lines
}

/// One `STANDARD` or `DAYLIGHT` observance of a `VTIMEZONE`.
struct Observance {
    /// The wall-clock time of its onset, in the offset before it.
    onset: DateTime,
    before: Offset,
    after: Offset,
    name: String,
    dst: bool,
}

impl Observance {
    fn of(rules: &TimeZone, transition: &TimeZoneTransition<'_>) -> Self {
        let at = transition.timestamp();
        let before = rules.to_offset(at.checked_sub(SignedDuration::from_nanos(1)).unwrap_or(at));
        Observance {
            onset: before.to_datetime(at),
            before,
            after: transition.offset(),
            name: transition.abbreviation().to_string(),
            dst: transition.dst().is_dst(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        SystemTime::try_from(rfc3339.parse::<Timestamp>().unwrap()).unwrap()
    }

    #[test]
    fn paris_is_described_by_its_transitions_around_the_event() {
        // 01:30 CET for 90 minutes on the night Paris springs forward.
        let (start, end) = (at("2026-03-29T00:30:00Z"), at("2026-03-29T02:00:00Z"));
        let lines = vtimezone(&Zone::parse("Europe/Paris").unwrap(), start, end);
        assert_eq!(
            lines,
            vec![
                "BEGIN:VTIMEZONE",
                "TZID:Europe/Paris",
                // In force at the start: winter time since 2025-10-26.
                "BEGIN:STANDARD",
                "DTSTART:20251026T030000",
                "TZOFFSETFROM:+0200",
                "TZOFFSETTO:+0100",
                "TZNAME:CET",
                "END:STANDARD",
                "BEGIN:DAYLIGHT",
                "DTSTART:20260329T020000",
                "TZOFFSETFROM:+0100",
                "TZOFFSETTO:+0200",
                "TZNAME:CEST",
                "END:DAYLIGHT",
                "BEGIN:STANDARD",
                "DTSTART:20261025T030000",
                "TZOFFSETFROM:+0200",
                "TZOFFSETTO:+0100",
                "TZNAME:CET",
                "END:STANDARD",
                "BEGIN:DAYLIGHT",
                "DTSTART:20270328T020000",
                "TZOFFSETFROM:+0100",
                "TZOFFSETTO:+0200",
                "TZNAME:CEST",
                "END:DAYLIGHT",
                "END:VTIMEZONE",
            ]
        );
    }

    #[test]
    fn new_york_in_autumn_starts_from_its_summer_time_and_looks_a_year_ahead() {
        let start = at("2026-11-01T05:00:00Z");
        let lines = vtimezone(&Zone::parse("America/New_York").unwrap(), start, start + Duration::from_secs(5400));
        let onsets: Vec<&str> = lines.iter().filter(|l| l.starts_with("DTSTART:")).map(String::as_str).collect();
        assert_eq!(onsets, vec!["DTSTART:20260308T020000", "DTSTART:20261101T020000", "DTSTART:20270314T020000"]);
        assert!(lines.contains(&"TZOFFSETFROM:-0400".to_string()) && lines.contains(&"TZNAME:EST".to_string()));
    }

    #[test]
    fn a_zone_without_transitions_has_one_observance_since_1970() {
        let start = at("2026-12-07T19:00:00Z");
        let lines = vtimezone(&Zone::parse("Etc/GMT-3").unwrap(), start, start);
        assert_eq!(
            lines,
            vec![
                "BEGIN:VTIMEZONE",
                "TZID:Etc/GMT-3",
                "BEGIN:STANDARD",
                "DTSTART:19700101T000000",
                "TZOFFSETFROM:+0300",
                "TZOFFSETTO:+0300",
                "TZNAME:+03",
                "END:STANDARD",
                "END:VTIMEZONE",
            ]
        );
    }
}
