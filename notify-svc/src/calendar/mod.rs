//! The calendar invitation of an email: one iCalendar object (RFC 5545) per delivery, sent
//! the iTIP way (RFC 5546) inside the email (iMIP, RFC 6047).
//!
//! Pending and confirmation emails carry `METHOD:REQUEST` (`STATUS:TENTATIVE` or
//! `CONFIRMED`), the cancellation `METHOD:CANCEL` (`STATUS:CANCELLED`). The event's `UID`
//! is the booking's (`{booking_id}@booking-platform`) and its `SEQUENCE` the booking's
//! version, so a calendar keeps one event, updated in place by the newest version; within
//! one version the later `DTSTAMP` wins, as RFC 5546 orders messages of equal sequence.
//! The ledger fixes each stamp when the key is first recorded so that, within a version,
//! pending < confirmed < cancelled whatever order the emails were requested in.
//!
//! Times are the restaurant's wall clock with its `TZID`, described by a `VTIMEZONE` built
//! from the tz database's transitions around the event (the one in force at its start and
//! every one up to a year after its end), or UTC for a restaurant in UTC. Written by hand:
//! the text is small, and the crates that write iCalendar bring a date library of their own
//! without deriving a `VTIMEZONE` from the tz database. Lines are folded at 75 octets and
//! text is escaped per RFC 5545 section 3.3.11. Pure: no clock, no I/O.

mod vtimezone;

use crate::domain::{DeliveryKey, Details, Kind, Recipient, Zone};
use jiff::{Timestamp, civil::DateTime, tz::Offset};
use std::time::SystemTime;
use vtimezone::vtimezone;

/// The iTIP method of an invitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Adds or updates the event.
    Request,
    /// Cancels it.
    Cancel,
}

impl Method {
    /// The method of `kind`'s email.
    pub fn of(kind: Kind) -> Method {
        match kind {
            Kind::BookingCancelled => Method::Cancel,
            _ => Method::Request,
        }
    }

    /// `REQUEST` or `CANCEL`, as in `METHOD` and the MIME `method` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Request => "REQUEST",
            Method::Cancel => "CANCEL",
        }
    }
}

/// The event's `STATUS` in `kind`'s email.
pub fn status(kind: Kind) -> &'static str {
    match kind {
        Kind::BookingPending | Kind::ModificationRequested => "TENTATIVE",
        Kind::BookingConfirmed | Kind::ModificationConfirmed => "CONFIRMED",
        Kind::BookingCancelled => "CANCELLED",
    }
}

/// The event's `UID`: the same for every email about a booking.
pub fn uid(key: &DeliveryKey) -> String {
    format!("{}@booking-platform", key.booking_id)
}

/// What an invitation is made of.
pub struct Invitation<'a> {
    pub key: &'a DeliveryKey,
    pub details: &'a Details,
    /// The sender's address and display name (`ORGANIZER`).
    pub organizer: (&'a str, Option<&'a str>),
    /// The guest (`ATTENDEE`).
    pub attendee: &'a Recipient,
    /// When the email was first requested (`DTSTAMP`).
    pub stamp: SystemTime,
}

/// The whole `VCALENDAR` text, CRLF line ends, folded.
pub fn render(invitation: &Invitation<'_>) -> String {
    let Invitation { key, details, organizer, attendee, stamp } = invitation;
    let zone = details.time_zone();
    let start = details.start_time();
    let end = details.duration().map(|d| start + d);
    let method = Method::of(key.kind);
    let mut lines: Vec<String> = vec![
        "BEGIN:VCALENDAR".into(),
        "PRODID:-//booking-platform//notify-svc//EN".into(),
        "VERSION:2.0".into(),
        "CALSCALE:GREGORIAN".into(),
        format!("METHOD:{}", method.as_str()),
    ];
    if !zone.is_utc() {
        lines.extend(vtimezone(zone, start, end.unwrap_or(start)));
    }
    lines.push("BEGIN:VEVENT".into());
    lines.push(format!("UID:{}", uid(key)));
    lines.push(format!("SEQUENCE:{}", key.version));
    lines.push(format!("DTSTAMP:{}", utc_text(*stamp)));
    lines.push(format!("DTSTART{}", date_time(start, zone)));
    if let Some(end) = end {
        lines.push(format!("DTEND{}", date_time(end, zone)));
    }
    let restaurant = details.restaurant_name();
    let party = match details.party_size() {
        1 => "1 guest".to_string(),
        n => format!("{n} guests"),
    };
    let summary =
        if restaurant.is_empty() { format!("Table for {party}") } else { format!("{restaurant}: table for {party}") };
    lines.push(format!("SUMMARY:{}", escape_text(&summary)));
    let location = [restaurant, details.address()].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>();
    if !location.is_empty() {
        lines.push(format!("LOCATION:{}", escape_text(&location.join("\n"))));
    }
    let mut description = format!("Booking {} (version {}), {party}.", key.booking_id, key.version);
    if !details.table_ids().is_empty() {
        description.push_str(&format!("\nTables: {}.", details.table_ids().join(", ")));
    }
    lines.push(format!("DESCRIPTION:{}", escape_text(&description)));
    lines.push(format!("STATUS:{}", status(key.kind)));
    lines.push(if method == Method::Cancel { "TRANSP:TRANSPARENT" } else { "TRANSP:OPAQUE" }.into());
    let (from, from_name) = organizer;
    lines.push(format!("ORGANIZER{}:mailto:{from}", cn(from_name.unwrap_or_default())));
    lines.push(format!(
        "ATTENDEE{};CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=FALSE:mailto:{}",
        cn(attendee.name()),
        attendee.email()
    ));
    lines.push("END:VEVENT".into());
    lines.push("END:VCALENDAR".into());
    lines.iter().map(|line| fold(line)).collect()
}

/// `;TZID=Europe/Paris:20261207T200000`, or `:20261207T190000Z` in UTC. A wall-clock time
/// that happens twice (the night the clocks go back) means its first occurrence (RFC 5545
/// section 3.3.5), so the second one is written in UTC.
fn date_time(time: SystemTime, zone: &Zone) -> String {
    let Ok(instant) = Timestamp::try_from(time) else {
        return format!(":{}", utc_text(time));
    };
    if zone.is_utc() {
        return format!(":{}", utc_text(time));
    }
    let clock = zone.rules().to_datetime(instant);
    if zone.rules().to_ambiguous_timestamp(clock).compatible().ok() != Some(instant) {
        return format!(":{}", utc_text(time));
    }
    format!(";TZID={}:{}", param_text(zone.name()), clock_text(clock))
}

/// `20261207T190000Z`.
fn utc_text(time: SystemTime) -> String {
    match Timestamp::try_from(time) {
        Ok(instant) => format!("{}Z", clock_text(Offset::UTC.to_datetime(instant))),
        Err(_) => "19700101T000000Z".to_string(),
    }
}

/// `20261207T200000`.
fn clock_text(clock: DateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}",
        clock.year(),
        clock.month(),
        clock.day(),
        clock.hour(),
        clock.minute(),
        clock.second()
    )
}

/// `;CN="Ada Lovelace"` (nothing for an empty name): a quoted parameter value, which may
/// hold anything but double quotes and control characters (RFC 5545 section 3.2).
fn cn(name: &str) -> String {
    let name = param_text(name);
    if name.is_empty() { String::new() } else { format!(";CN=\"{name}\"") }
}

fn param_text(value: &str) -> String {
    value.chars().filter(|c| *c != '"' && !c.is_control()).collect()
}

/// A TEXT value: backslash, semicolon and comma escaped, line breaks as `\n`, other
/// control characters dropped (RFC 5545 section 3.3.11).
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// One content line, folded: at most 75 octets per physical line (a continuation starts
/// with one space), never inside a UTF-8 character, each ended by CRLF (RFC 5545
/// section 3.1).
pub fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / 70 * 3 + 2);
    let mut used = 0;
    for c in line.chars() {
        if used + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += c.len_utf8();
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Limits, RawDetails};
    use std::time::{Duration, UNIX_EPOCH};

    fn at(rfc3339: &str) -> SystemTime {
        SystemTime::try_from(rfc3339.parse::<Timestamp>().unwrap()).unwrap()
    }

    fn details(zone: &str, start: &str, minutes: u64) -> Details {
        let tables = vec!["T4".to_string()];
        Details::parse(
            RawDetails {
                restaurant_name: "Chez Test; Paris, France",
                start_time: Some(Some(at(start))),
                duration: Some(Some(Duration::from_secs(minutes * 60))),
                party_size: 4,
                table_ids: &tables,
                notes: "",
                time_zone: zone,
                address: "12 Rue de la Paix\n75002 Paris",
                ..Default::default()
            },
            &Limits::CONTRACT,
        )
        .unwrap()
    }

    fn invitation(kind: Kind, details: &Details) -> String {
        let key = DeliveryKey { booking_id: uuid::Uuid::from_u128(0xfeed), kind, version: 3 };
        let guest = Recipient::parse("ada@example.com", "Ada \"The Countess\" Lovelace", &Limits::CONTRACT).unwrap();
        render(&Invitation {
            key: &key,
            details,
            organizer: ("bookings@localhost", Some("Bookings")),
            attendee: &guest,
            stamp: at("2026-11-30T10:15:00.5Z"),
        })
    }

    /// Unfolded content lines.
    fn lines(text: &str) -> Vec<String> {
        text.replace("\r\n ", "").split("\r\n").filter(|l| !l.is_empty()).map(str::to_string).collect()
    }

    #[test]
    fn a_confirmation_is_a_request_for_the_booking_event_at_its_version() {
        let text = invitation(Kind::ModificationConfirmed, &details("Europe/Paris", "2026-12-07T19:00:00Z", 90));
        let lines = lines(&text);
        for expected in [
            "METHOD:REQUEST",
            "UID:00000000-0000-0000-0000-00000000feed@booking-platform",
            "SEQUENCE:3",
            "DTSTAMP:20261130T101500Z",
            "DTSTART;TZID=Europe/Paris:20261207T200000",
            "DTEND;TZID=Europe/Paris:20261207T213000",
            "STATUS:CONFIRMED",
            "SUMMARY:Chez Test\\; Paris\\, France: table for 4 guests",
            "LOCATION:Chez Test\\; Paris\\, France\\n12 Rue de la Paix\\n75002 Paris",
            "ORGANIZER;CN=\"Bookings\":mailto:bookings@localhost",
            "ATTENDEE;CN=\"Ada The Countess Lovelace\";CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=FALSE:mailto:ada@example.com",
        ] {
            assert!(lines.contains(&expected.to_string()), "{expected} missing from\n{text}");
        }
        assert!(text.starts_with("BEGIN:VCALENDAR\r\n") && text.ends_with("END:VCALENDAR\r\n"), "{text}");
        assert!(text.split("\r\n").all(|l| l.len() <= 75), "{text}");
        assert!(!text.replace("\r\n", "").contains('\n') && !text.replace("\r\n", "").contains('\r'), "bare line ends");
    }

    #[test]
    fn pending_is_tentative_and_a_cancel_cancels() {
        let d = details("Europe/Paris", "2026-12-07T19:00:00Z", 90);
        for (kind, method, status) in [
            (Kind::BookingPending, "METHOD:REQUEST", "STATUS:TENTATIVE"),
            (Kind::ModificationRequested, "METHOD:REQUEST", "STATUS:TENTATIVE"),
            (Kind::BookingConfirmed, "METHOD:REQUEST", "STATUS:CONFIRMED"),
            (Kind::BookingCancelled, "METHOD:CANCEL", "STATUS:CANCELLED"),
        ] {
            let lines = lines(&invitation(kind, &d));
            assert!(lines.contains(&method.to_string()) && lines.contains(&status.to_string()), "{kind}: {lines:?}");
        }
    }

    #[test]
    fn a_booking_across_the_night_paris_springs_forward_starts_in_winter_and_ends_in_summer_time() {
        let text = invitation(Kind::BookingConfirmed, &details("Europe/Paris", "2026-03-29T00:30:00Z", 90));
        let lines = lines(&text);
        assert!(lines.contains(&"DTSTART;TZID=Europe/Paris:20260329T013000".to_string()), "{text}");
        assert!(lines.contains(&"DTEND;TZID=Europe/Paris:20260329T040000".to_string()), "{text}");
        assert!(lines.contains(&"BEGIN:VTIMEZONE".to_string()) && lines.contains(&"TZID:Europe/Paris".to_string()));
    }

    #[test]
    fn new_york_falls_back_and_the_repeated_hour_is_written_in_utc() {
        // 2026-11-01 01:30 EST is the second 01:30 of the night: written in UTC.
        let text = invitation(Kind::BookingConfirmed, &details("America/New_York", "2026-11-01T05:00:00Z", 90));
        let lines = lines(&text);
        assert!(lines.contains(&"DTSTART;TZID=America/New_York:20261101T010000".to_string()), "{text}");
        assert!(lines.contains(&"DTEND:20261101T063000Z".to_string()), "{text}");
        assert!(lines.contains(&"DTSTART:20261101T020000".to_string()), "{text}");
        assert!(lines.contains(&"TZNAME:EST".to_string()) && lines.contains(&"TZNAME:EDT".to_string()), "{text}");
    }

    #[test]
    fn a_restaurant_in_utc_gets_utc_times_and_no_vtimezone() {
        let text = invitation(Kind::BookingConfirmed, &details("", "2026-12-07T19:00:00Z", 90));
        let lines = lines(&text);
        assert!(lines.contains(&"DTSTART:20261207T190000Z".to_string()), "{text}");
        assert!(lines.contains(&"DTEND:20261207T203000Z".to_string()), "{text}");
        assert!(!text.contains("VTIMEZONE"), "{text}");
        // A zone without transitions has one observance since 1970.
        let fixed = invitation(Kind::BookingConfirmed, &details("Etc/GMT-3", "2026-12-07T19:00:00Z", 90));
        assert!(super::tests::lines(&fixed).contains(&"DTSTART;TZID=Etc/GMT-3:20261207T220000".to_string()), "{fixed}");
        assert!(fixed.contains("DTSTART:19700101T000000\r\nTZOFFSETFROM:+0300\r\nTZOFFSETTO:+0300\r\n"), "{fixed}");
    }

    #[test]
    fn text_is_escaped_and_long_lines_fold_between_characters() {
        assert_eq!(escape_text("a\\b;c,d\ne\r\u{7}f"), "a\\\\b\\;c\\,d\\nef");
        let long = format!("DESCRIPTION:{}", "é".repeat(60));
        let folded = fold(&long);
        assert!(folded.split("\r\n").all(|l| l.len() <= 75), "{folded}");
        assert!(folded.split("\r\n").skip(1).filter(|l| !l.is_empty()).all(|l| l.starts_with(' ')), "{folded}");
        assert_eq!(folded.replace("\r\n ", "").trim_end(), long);
        assert_eq!(fold("SHORT:line"), "SHORT:line\r\n");
        assert_eq!(utc_text(UNIX_EPOCH), "19700101T000000Z");
    }
}
