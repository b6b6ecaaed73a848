//! Composes the email of a delivery.
//!
//! One askama template per kind (text and HTML, sharing a layout), the subject per kind,
//! the `X-Notification-Key` header and the `Message-ID` derived from the key.
//!
//! Pure: it never sends, never reads the clock (the `Date` is the time the key was first
//! requested) and never touches the ledger.

use crate::domain::{Delivery, DeliveryKey, Details, Kind};
use askama::Template;
use lettre::{
    Address, Message,
    message::{
        Mailbox, MultiPart,
        header::{Header, HeaderName, HeaderValue},
    },
};
use std::{
    fmt::Write as _,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

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
    when: String,
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
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| format!("cannot build the {} email: {e}", key.kind))
    }
}

fn view(key: &DeliveryKey, name: &str, details: &Details) -> View {
    let party = match details.party_size() {
        1 => "1 guest".to_string(),
        n => format!("{n} guests"),
    };
    View {
        subject: subject(key.kind, details.restaurant_name()),
        greeting: if name.is_empty() { "Hello,".to_string() } else { format!("Hello {name},") },
        restaurant: details.restaurant_name().to_string(),
        when: format_utc(details.start_time()),
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

/// `2026-12-24 19:30 UTC`; a time outside 1970..9999 (never accepted by the API) shows
/// as `unknown`.
fn format_utc(time: SystemTime) -> String {
    let in_range = time.duration_since(UNIX_EPOCH).is_ok_and(|d| d.as_secs() < 253_402_300_800);
    let mut rfc3339 = String::new();
    if !in_range || write!(rfc3339, "{}", humantime::format_rfc3339_seconds(time)).is_err() {
        return "unknown".to_string();
    }
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(date), Some(clock)) => format!("{date} {clock} UTC"),
        _ => rfc3339,
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

    fn delivery(kind: Kind, name: &str, notes: &str) -> Delivery {
        let tables = vec!["T4".to_string(), "T5".to_string()];
        let details = Details::parse(
            RawDetails {
                restaurant_name: "Chez Test",
                start_time: Some(Some(UNIX_EPOCH + Duration::from_secs(1_798_140_600))),
                duration: Some(Some(Duration::from_secs(5400))),
                party_size: 4,
                table_ids: &tables,
                notes,
            },
            &Limits::CONTRACT,
        )
        .unwrap();
        let key = DeliveryKey { booking_id: uuid::Uuid::from_u128(0xfeed), kind, version: 3 };
        Delivery {
            key,
            recipient: Recipient::parse("ada@example.com", name, &Limits::CONTRACT).unwrap(),
            details,
            state: DeliveryState::Queued,
            message_id: key.message_id(),
            attempts: 1,
            requested_at: UNIX_EPOCH + Duration::from_secs(1_790_000_000),
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
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(UNIX_EPOCH + Duration::from_secs(253_402_300_800)), "unknown");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1 h 30 min");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2 h");
        assert_eq!(format_duration(Duration::from_secs(45 * 60)), "45 min");
        assert_eq!(format_duration(Duration::from_secs(61)), "2 min");
    }
}
