//! Composes the email of a delivery.
//!
//! One askama template per kind (text and HTML, sharing a layout), the subject per kind,
//! the `X-Notification-Key` header and the `Message-ID` derived from the key. Times are
//! the restaurant's wall clock ([`crate::local_time`]); a modification shows old → new.
//! The calendar invitation ([`crate::calendar`]) is the third part of the
//! `multipart/alternative` body, as iMIP (RFC 6047) and the common calendar clients
//! expect it.
//!
//! Pure and deterministic: it never sends, never reads the clock (the `Date` is the time the key was
//! first requested, the invitation's `DTSTAMP` the stamp the ledger fixed then), never touches the
//! ledger, and derives the MIME boundary from the key, so a retry sends the same bytes.

use crate::{
    calendar::{self, Invitation, Method},
    domain::{Delivery, DeliveryKey, Details, Kind},
    local_time::{format_end, format_local},
};
use askama::Template;
use lettre::{
    Address, Message,
    message::{
        Mailbox, MultiPart, SinglePart,
        header::{ContentType, Header, HeaderName, HeaderValue},
    },
};
use std::time::Duration;

/// The `X-Notification-Key` header: `{booking_id}:{KIND}:{version}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationKey(pub String);

impl Header for NotificationKey {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Notification-Key")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(NotificationKey(s.trim().to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// What the templates show, already formatted.
struct View {
    subject: String,
    greeting: String,
    restaurant: String,
    /// The address as lines joined for the text layout (continuations indented).
    address_text: String,
    /// The address as typed (the HTML layout keeps its line breaks).
    address: String,
    when: String,
    ends: String,
    duration: String,
    party: String,
    tables: String,
    notes: String,
    reference: String,
    footer: String,
}

macro_rules! kind_templates {
    ($($kind:ident => $text:ident($text_path:tt), $html:ident($html_path:tt);)*) => {
        $(
            #[derive(Template)]
            #[template(path = $text_path)]
            struct $text<'a> {
                view: &'a View,
            }

            #[derive(Template)]
            #[template(path = $html_path)]
            struct $html<'a> {
                view: &'a View,
            }
        )*

        /// The text and HTML bodies of `kind`.
        fn render(kind: Kind, view: &View) -> askama::Result<(String, String)> {
            match kind {
                $(Kind::$kind => Ok(($text { view }.render()?, $html { view }.render()?)),)*
            }
        }
    };
}

kind_templates! {
    BookingPending => BookingPendingText("booking_pending.txt"), BookingPendingHtml("booking_pending.html");
    BookingConfirmed => BookingConfirmedText("booking_confirmed.txt"), BookingConfirmedHtml("booking_confirmed.html");
    ModificationRequested => ModificationRequestedText("modification_requested.txt"), ModificationRequestedHtml("modification_requested.html");
    ModificationConfirmed => ModificationConfirmedText("modification_confirmed.txt"), ModificationConfirmedHtml("modification_confirmed.html");
    BookingCancelled => BookingCancelledText("booking_cancelled.txt"), BookingCancelledHtml("booking_cancelled.html");
}

/// The subject line of `kind`, naming the restaurant when it is known.
pub fn subject(kind: Kind, restaurant: &str) -> String {
    let text = match kind {
        Kind::BookingPending => "We received your booking request",
        Kind::BookingConfirmed => "Your booking is confirmed",
        Kind::ModificationRequested => "We received your booking change",
        Kind::ModificationConfirmed => "Your booking was changed and is confirmed",
        Kind::BookingCancelled => "Your booking is cancelled",
    };
    if restaurant.is_empty() { text.to_string() } else { format!("{text} ({restaurant})") }
}

/// Builds messages from one sender.
#[derive(Clone, Debug)]
pub struct Composer {
    from: Mailbox,
}

impl Composer {
    /// A composer sending as `from`.
    pub fn new(from: Mailbox) -> Self {
        Self { from }
    }

    /// The complete message of `delivery`; an error means it can never be built (a
    /// permanent failure).
    pub fn compose(&self, delivery: &Delivery) -> Result<Message, String> {
        let key = delivery.key;
        let view = view(&key, delivery.recipient.name(), &delivery.details);
        let (text, html) = render(key.kind, &view).map_err(|e| format!("cannot render the {} email: {e}", key.kind))?;
        let invitation = calendar::render(&Invitation {
            key: &key,
            details: &delivery.details,
            organizer: (self.from.email.as_ref(), self.from.name.as_deref()),
            attendee: &delivery.recipient,
            stamp: delivery.stamp,
        });
        let method = Method::of(key.kind).as_str();
        let calendar_type = ContentType::parse(&format!("text/calendar; charset=utf-8; method={method}"))
            .map_err(|e| format!("cannot label the {} invitation: {e}", key.kind))?;
        let boundary = boundary(&key, [&text, &html, &invitation]);
        let address: Address = delivery
            .recipient
            .email()
            .parse()
            .map_err(|e| format!("cannot address {:?}: {e}", delivery.recipient.email()))?;
        let name = delivery.recipient.name();
        let to = Mailbox::new((!name.is_empty()).then(|| name.to_string()), address);
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(view.subject.clone())
            .message_id(Some(key.message_id()))
            .date(delivery.requested_at)
            .header(NotificationKey(key.header_value()))
            .multipart(
                MultiPart::alternative()
                    .boundary(boundary)
                    .singlepart(SinglePart::plain(text))
                    .singlepart(SinglePart::html(html))
                    .singlepart(SinglePart::builder().header(calendar_type).body(invitation)),
            )
            .map_err(|e| format!("cannot build the {} email: {e}", key.kind))
    }
}

/// The MIME boundary of `key`'s email: derived from the key (`=_` never occurs in
/// quoted-printable or base64 text), lengthened in the unlikely case a part contains it.
fn boundary(key: &DeliveryKey, parts: [&str; 3]) -> String {
    let mut boundary = format!("=_{}.{}.{}", key.booking_id.simple(), key.kind, key.version);
    while parts.iter().any(|part| part.contains(&boundary)) {
        boundary.push('_');
    }
    boundary
}

fn guests(n: u32) -> String {
    if n == 1 { "1 guest".to_string() } else { format!("{n} guests") }
}

/// `new`, or `old → new` when a modification changed it.
fn changed(old: Option<String>, new: String) -> String {
    match old {
        Some(old) if old != new => format!("{old} → {new}"),
        _ => new,
    }
}

fn view(key: &DeliveryKey, name: &str, details: &Details) -> View {
    let zone = details.time_zone();
    let start = details.start_time();
    let when = changed(details.previous_start_time().map(|t| format_local(t, zone)), format_local(start, zone));
    let party = changed(details.previous_party_size().map(guests), guests(details.party_size()));
    let address: Vec<&str> = details.address().lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    View {
        subject: subject(key.kind, details.restaurant_name()),
        greeting: if name.is_empty() { "Hello,".to_string() } else { format!("Hello {name},") },
        restaurant: details.restaurant_name().to_string(),
        address_text: address.join("\n              "),
        address: address.join("\n"),
        when,
        ends: details.duration().map(|d| format_end(start, start + d, zone)).unwrap_or_default(),
        duration: details.duration().map(format_duration).unwrap_or_default(),
        party,
        tables: details.table_ids().join(", "),
        notes: details.notes().to_string(),
        reference: format!("{} (version {})", key.booking_id, key.version),
        footer: format!(
            "This email is about booking {} (version {}). Reply to it if anything looks wrong.",
            key.booking_id, key.version
        ),
    }
}

/// `1 h 30 min`, `2 h`, `45 min` (rounded up to the minute).
fn format_duration(duration: Duration) -> String {
    let minutes = u64::try_from(duration.as_nanos().div_ceil(60_000_000_000)).unwrap_or(u64::MAX);
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeliveryState, Limits, RawDetails, Recipient};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn delivery(kind: Kind, name: &str, notes: &str) -> Delivery {
        let tables = vec!["T4".to_string(), "T5".to_string()];
        let raw = RawDetails {
            restaurant_name: "Chez Test",
            start_time: Some(Some(UNIX_EPOCH + Duration::from_secs(1_798_140_600))),
            duration: Some(Some(Duration::from_secs(5400))),
            party_size: 4,
            table_ids: &tables,
            notes,
            ..Default::default()
        };
        delivery_of(kind, name, raw)
    }

    fn delivery_of(kind: Kind, name: &str, raw: RawDetails<'_>) -> Delivery {
        let details = Details::parse(raw, &Limits::CONTRACT).unwrap();
        let key = DeliveryKey { booking_id: uuid::Uuid::from_u128(0xfeed), kind, version: 3 };
        Delivery {
            key,
            recipient: Recipient::parse("ada@example.com", name, &Limits::CONTRACT).unwrap(),
            details,
            state: DeliveryState::Queued,
            message_id: key.message_id(),
            attempts: 1,
            requested_at: UNIX_EPOCH + Duration::from_secs(1_790_000_000),
            stamp: UNIX_EPOCH + Duration::from_secs(1_790_000_001),
            sent_at: None,
            last_error: None,
            next_attempt_at: None,
        }
    }

    fn composer() -> Composer {
        Composer::new("Bookings <bookings@localhost>".parse().unwrap())
    }

    fn raw(message: &Message) -> String {
        String::from_utf8(message.formatted()).unwrap()
    }

    #[test]
    fn every_kind_renders_text_and_html_with_the_key_headers() {
        for kind in Kind::ALL {
            let d = delivery(kind, "Ada Lovelace", "window seat");
            let message = raw(&composer().compose(&d).unwrap());
            let key_line = format!("X-Notification-Key: {}", d.key.header_value());
            assert!(message.contains(&key_line), "{kind}: {message}");
            assert!(message.contains(&format!("Message-ID: {}", d.key.message_id())), "{kind}: {message}");
            assert!(message.contains("multipart/alternative"), "{kind}");
            assert!(message.contains("text/plain") && message.contains("text/html"), "{kind}");
            assert!(message.contains("To: \"Ada Lovelace\" <ada@example.com>"), "{kind}: {message}");
        }
    }

    #[test]
    fn the_same_delivery_composes_the_same_ids_and_date() {
        let d = delivery(Kind::BookingConfirmed, "", "");
        let first = composer().compose(&d).unwrap();
        let second = composer().compose(&d).unwrap();
        for name in ["Message-ID", "Date", "X-Notification-Key", "Subject"] {
            assert_eq!(first.headers().get_raw(name), second.headers().get_raw(name), "{name}");
        }
    }

    #[test]
    fn a_retry_composes_the_same_bytes() {
        for kind in Kind::ALL {
            let d = delivery(kind, "Ada Lovelace", "window seat, é");
            assert_eq!(composer().compose(&d).unwrap().formatted(), composer().compose(&d).unwrap().formatted());
        }
    }

    #[test]
    fn each_kind_carries_its_invitation_as_the_last_alternative() {
        for (kind, method, status) in [
            (Kind::BookingPending, "REQUEST", "TENTATIVE"),
            (Kind::BookingConfirmed, "REQUEST", "CONFIRMED"),
            (Kind::ModificationRequested, "REQUEST", "TENTATIVE"),
            (Kind::ModificationConfirmed, "REQUEST", "CONFIRMED"),
            (Kind::BookingCancelled, "CANCEL", "CANCELLED"),
        ] {
            // The part is quoted-printable (lines of 75 octets are too long for 7bit).
            let message = raw(&composer().compose(&delivery(kind, "Ada", "")).unwrap());
            let calendar_part = message.find("Content-Type: text/calendar; charset=utf-8; method=");
            let html_part = message.find("Content-Type: text/html");
            assert!(calendar_part > html_part && html_part.is_some(), "{kind}: {message}");
            assert!(message.contains(&format!("method={method}")), "{kind}: {message}");
            assert!(message.contains(&format!("METHOD:{method}\r\n")), "{kind}: {message}");
            assert!(message.contains(&format!("STATUS:{status}\r\n")), "{kind}: {message}");
            assert!(message.contains("UID:00000000-0000-0000-0000-00000000feed@booking-platform\r\n"), "{message}");
            assert!(message.contains("SEQUENCE:3\r\n") && message.contains("DTSTAMP:20260921T"), "{message}");
        }
    }

    #[test]
    fn a_modification_in_paris_shows_old_and_new_in_local_time() {
        let at = |s: &str| SystemTime::try_from(s.parse::<jiff::Timestamp>().unwrap()).unwrap();
        let tables = vec!["T4".to_string()];
        let raw = RawDetails {
            restaurant_name: "Demo Bistro",
            // Moved from 20:00 on the evening before Paris falls back to 01:30 CET the
            // night after, for 90 minutes, from 2 to 4 guests.
            start_time: Some(Some(at("2026-10-25T00:30:00Z"))),
            duration: Some(Some(Duration::from_secs(5400))),
            party_size: 4,
            table_ids: &tables,
            time_zone: "Europe/Paris",
            address: "12 Rue de la Paix\n75002 Paris",
            previous_start_time: Some(Some(at("2026-10-24T18:00:00Z"))),
            previous_party_size: 2,
            ..Default::default()
        };
        let d = delivery_of(Kind::ModificationConfirmed, "Ada", raw.clone());
        let (text, html) = render(d.key.kind, &view(&d.key, "Ada", &d.details)).unwrap();
        assert!(text.contains("  When:       Sat 2026-10-24 20:00 CEST → Sun 2026-10-25 02:30 CEST\n"), "{text}");
        assert!(text.contains("  Ends:       03:00 CET\n"), "{text}");
        assert!(text.contains("  Party:      2 guests → 4 guests\n"), "{text}");
        assert!(text.contains("  Address:    12 Rue de la Paix\n              75002 Paris\n"), "{text}");
        assert!(text.contains("  Restaurant: Demo Bistro\n"), "{text}");
        assert!(html.contains("Sat 2026-10-24 20:00 CEST → Sun 2026-10-25 02:30 CEST"), "{html}");
        assert!(html.contains("2 guests → 4 guests") && html.contains("12 Rue de la Paix\n75002 Paris"), "{html}");
        let unchanged = RawDetails { previous_party_size: 4, previous_start_time: None, ..raw };
        let d = delivery_of(Kind::ModificationRequested, "Ada", unchanged);
        let (text, _) = render(d.key.kind, &view(&d.key, "Ada", &d.details)).unwrap();
        assert!(text.contains("  When:       Sun 2026-10-25 02:30 CEST\n"), "{text}");
        assert!(text.contains("  Party:      4 guests\n"), "{text}");
    }

    #[test]
    fn the_modified_confirmation_says_changed_and_confirmed() {
        let view = view(
            &delivery(Kind::ModificationConfirmed, "Ada", "").key,
            "Ada",
            &delivery(Kind::ModificationConfirmed, "Ada", "").details,
        );
        let (text, html) = render(Kind::ModificationConfirmed, &view).unwrap();
        for body in [&text, &html] {
            assert!(body.contains("was changed and is confirmed"), "{body}");
            assert!(body.contains("2026-12-24 19:30 UTC"), "{body}");
            assert!(body.contains("1 h 30 min") && body.contains("4 guests") && body.contains("T4, T5"), "{body}");
        }
        assert!(text.starts_with("Hello Ada,\n"), "{text}");
        assert_eq!(
            subject(Kind::ModificationConfirmed, "Chez Test"),
            "Your booking was changed and is confirmed (Chez Test)"
        );
        let (pending, _) = render(Kind::BookingPending, &view).unwrap();
        assert!(pending.contains("not confirmed yet"), "{pending}");
    }

    #[test]
    fn html_escapes_guest_text_and_text_keeps_it() {
        let d = delivery(Kind::BookingConfirmed, "Ada", "<script>alert(1)</script> & more");
        let view = view(&d.key, "Ada", &d.details);
        let (text, html) = render(Kind::BookingConfirmed, &view).unwrap();
        assert!(text.contains("<script>alert(1)</script> & more"));
        assert!(!html.contains("<script>") && html.contains("&#60;script&#62;"), "{html}");
    }

    #[test]
    fn times_and_durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1 h 30 min");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2 h");
        assert_eq!(format_duration(Duration::from_secs(45 * 60)), "45 min");
        assert_eq!(format_duration(Duration::from_secs(61)), "2 min");
    }
}
