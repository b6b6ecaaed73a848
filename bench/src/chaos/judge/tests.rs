//! The judge against small hand-made logs: a clean run passes, and each kind of broken
//! guarantee is caught.

use super::*;
use crate::chaos::log::{Answer, Cancel, Made, Seen};

const LEASE: Duration = Duration::from_secs(3);

fn at(s: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_secs_f64(s)
}

fn content(party: i32, notes: &str) -> Content {
    Content { party, start: at(86_400.0), notes: notes.into() }
}

fn made(version: i64, answer: Answer, acked: f64) -> Made {
    let latency = (answer != Answer::Lost).then_some(Duration::from_millis(50));
    Made {
        version,
        op: version as u64,
        suppressed: false,
        answer,
        latency,
        acked_at: at(acked),
        content: content(2, &format!("v{version}")),
    }
}

fn read(made: &Made) -> Entry {
    Entry::Read(Seen { at: made.acked_at, version: made.version, cancelled: false, content: made.content.clone() })
}

/// A booking `b1` that went through `versions`, each answered and read back.
fn log(versions: Vec<Made>) -> BookingLog {
    let mut log = BookingLog::new("b1".into(), "r1".into(), 0);
    for made in versions {
        let seen = read(&made);
        log.timeline.push(Entry::Version(made));
        log.timeline.push(seen);
    }
    log
}

fn cancel(log: &mut BookingLog, suppressed: bool, acked: f64) {
    let version = log.last_version().map_or(1, |m| m.version);
    log.timeline.push(Entry::Cancelled(Cancel { op: 99, version, suppressed, acked_at: at(acked) }));
}

/// The booking as the API shows it: the owner's last write, in `status`.
fn final_of(log: &BookingLog, status: Status, tables: &[&str]) -> FinalBooking {
    let last = log.last_version().expect("a version");
    FinalBooking {
        id: log.id.clone(),
        restaurant: log.restaurant.clone(),
        status,
        version: last.version,
        content: last.content.clone(),
        duration: Duration::from_secs(5_400),
        tables: tables.iter().map(|t| t.to_string()).collect(),
    }
}

fn mail(kind: &str, version: i64, received: f64) -> Mail {
    Mail {
        booking: "b1".into(),
        kind: kind.into(),
        version,
        message_id: format!("<b1.{kind}.{version}@booking>"),
        received_at: at(received),
    }
}

fn delivery(kind: &str, version: i64, requested: f64) -> Delivery {
    Delivery {
        booking: "b1".into(),
        kind: kind.into(),
        version,
        state: "SENT".into(),
        requested_at: Some(at(requested)),
    }
}

/// The mails and their deliveries, requested at `requested` and received a little later.
fn sent(keys: &[(&str, i64, f64)]) -> (Vec<Mail>, Vec<Delivery>) {
    keys.iter()
        .map(|&(kind, version, requested)| (mail(kind, version, requested + 0.1), delivery(kind, version, requested)))
        .unzip()
}

struct Case {
    logs: Vec<BookingLog>,
    finals: Vec<FinalBooking>,
    mails: Vec<Mail>,
    deliveries: Vec<Delivery>,
    crashes: Vec<Crash>,
}

impl Case {
    fn new(log: BookingLog, status: Status, mails: &[(&str, i64, f64)]) -> Self {
        let tables: &[&str] = if status == Status::Confirmed { &["t1"] } else { &[] };
        let last = final_of(&log, status, tables);
        let (mails, deliveries) = sent(mails);
        Self { logs: vec![log], finals: vec![last], mails, deliveries, crashes: Vec::new() }
    }

    fn judge(&self) -> Verdict {
        let finals: HashMap<String, FinalBooking> = self.finals.iter().map(|f| (f.id.clone(), f.clone())).collect();
        let mut deliveries: HashMap<String, Vec<Delivery>> = HashMap::new();
        for d in &self.deliveries {
            deliveries.entry(d.booking.clone()).or_default().push(d.clone());
        }
        judge(&Evidence {
            logs: &self.logs,
            finals: &finals,
            listed: &self.finals,
            mails: &self.mails,
            deliveries: &deliveries,
            crashes: &self.crashes,
            rules: Rules { outbox_lease: LEASE, handoff_window: Duration::from_millis(1_100) },
        })
    }

    /// The violations, asserting there is exactly one and that it mentions `what`.
    fn caught(&self, what: &str) {
        let verdict = self.judge();
        assert_eq!(verdict.violations.len(), 1, "expected one violation about {what:?}: {:#?}", verdict.violations);
        assert!(verdict.violations[0].contains(what), "expected {what:?} in {:?}", verdict.violations[0]);
    }
}

/// v1 confirmed, v2 answered PENDING then confirmed in the background.
fn two_versions() -> BookingLog {
    log(vec![made(1, Answer::Confirmed, 1.0), made(2, Answer::Pending, 10.0)])
}

const CLEAN: &[(&str, i64, f64)] =
    &[("BOOKING_CONFIRMED", 1, 1.2), ("MODIFICATION_REQUESTED", 2, 10.1), ("MODIFICATION_CONFIRMED", 2, 11.0)];

#[test]
fn a_clean_history_passes() {
    let verdict = Case::new(two_versions(), Status::Confirmed, CLEAN).judge();
    assert!(verdict.passed(), "{:#?}", verdict.violations);
    // The v1 confirmation was about a version superseded later: its lag is measured.
    assert_eq!(verdict.stale_lags.len(), 1);
    assert!(verdict.stale_lags[0] < 0.0);
}

#[test]
fn a_lost_write_is_caught() {
    let mut case = Case::new(two_versions(), Status::Confirmed, CLEAN);
    // The API ends at version 1 although version 2 was acknowledged.
    case.finals[0].version = 1;
    case.caught("final version is 1, the owner's last write made version 2");

    let mut log = two_versions();
    log.timeline.push(read(&made(1, Answer::Confirmed, 12.0)));
    Case::new(log, Status::Confirmed, CLEAN).caught("lost write: version 2 was acknowledged");
}

#[test]
fn a_final_state_other_than_the_last_write_is_caught() {
    let mut case = Case::new(two_versions(), Status::Confirmed, CLEAN);
    case.finals[0].content.party = 7;
    case.caught("is not the owner's last write");
}

#[test]
fn an_answer_that_shows_other_values_than_written_is_caught() {
    let mut log = two_versions();
    if let Some(Entry::Read(seen)) = log.timeline.last_mut() {
        seen.content.notes = "someone else".into();
    }
    Case::new(log, Status::Confirmed, CLEAN).caught("reads back as");
}

#[test]
fn versions_that_skip_a_number_are_caught() {
    let log = log(vec![made(1, Answer::Confirmed, 1.0), made(3, Answer::Confirmed, 10.0)]);
    let mails = [("BOOKING_CONFIRMED", 1, 1.2), ("MODIFICATION_CONFIRMED", 3, 10.1)];
    Case::new(log, Status::Confirmed, &mails).caught("made version 3 where 2 was next");
}

#[test]
fn a_booking_left_pending_is_stuck() {
    let log = log(vec![made(1, Answer::Pending, 1.0)]);
    Case::new(log, Status::Pending, &[("BOOKING_PENDING", 1, 1.1)]).caught("stuck: still PENDING");
}

#[test]
fn a_lost_cancel_is_caught() {
    let mut log = log(vec![made(1, Answer::Confirmed, 1.0)]);
    cancel(&mut log, false, 5.0);
    let mails = [("BOOKING_CONFIRMED", 1, 1.1), ("BOOKING_CANCELLED", 1, 5.1)];
    Case::new(log, Status::Confirmed, &mails).caught("lost cancel");
}

#[test]
fn a_mail_for_a_suppressed_version_is_caught() {
    let mut versions = vec![made(1, Answer::Confirmed, 1.0), made(2, Answer::Confirmed, 10.0)];
    versions[1].suppressed = true;
    let mails = [("BOOKING_CONFIRMED", 1, 1.2), ("MODIFICATION_CONFIRMED", 2, 10.1)];
    Case::new(log(versions.clone()), Status::Confirmed, &mails).caught("was made with suppress_emails");
    // Without the mail, the suppressed final version needs none.
    assert!(Case::new(log(versions), Status::Confirmed, &mails[..1]).judge().passed());
}

#[test]
fn a_key_mailed_twice_is_caught_unless_a_crash_explains_it() {
    let mut case = Case::new(two_versions(), Status::Confirmed, CLEAN);
    case.mails.push(mail("MODIFICATION_CONFIRMED", 2, 14.0));
    case.caught("arrived 2 times");

    // A notify-svc replica killed right after the first copy arrived: the documented window.
    case.crashes.push(Crash { at: at(11.15), what: "SIGKILL of notify-a".into() });
    let verdict = case.judge();
    assert!(verdict.passed(), "{:#?}", verdict.violations);
    assert_eq!(verdict.excused.len(), 1);

    // Not with another Message-ID, nor with a crash long after.
    case.mails.last_mut().expect("the copy").message_id = "<other>".into();
    case.caught("with different Message-IDs");
    case.mails.last_mut().expect("the copy").message_id = "<b1.MODIFICATION_CONFIRMED.2@booking>".into();
    case.crashes[0].at = at(30.0);
    case.caught("arrived 2 times");
}

#[test]
fn a_mail_for_a_version_never_made_is_caught() {
    let mut case = Case::new(two_versions(), Status::Confirmed, CLEAN);
    let (mails, deliveries) = sent(&[("MODIFICATION_CONFIRMED", 3, 12.0)]);
    case.mails.extend(mails);
    case.deliveries.extend(deliveries);
    case.caught("version 3 was never made");

    let mut case = Case::new(two_versions(), Status::Confirmed, CLEAN);
    case.mails.push(mail("BOOKING_CANCELLED", 2, 12.0));
    case.caught("never cancelled");

    let mut case = Case::new(two_versions(), Status::Confirmed, CLEAN);
    case.mails.push(mail("MODIFICATION_CONFIRMED", 1, 1.5));
    case.deliveries.push(delivery("MODIFICATION_CONFIRMED", 1, 1.4));
    case.caught("this kind is not for version 1");
}

#[test]
fn a_pending_mail_for_a_version_confirmed_at_once_is_caught() {
    let mut case = Case::new(two_versions(), Status::Confirmed, CLEAN);
    let (mails, deliveries) = sent(&[("BOOKING_PENDING", 1, 1.1)]);
    case.mails.extend(mails);
    case.deliveries.extend(deliveries);
    case.caught("answered CONFIRMED within the hand-off window");

    // Answered late (the background may have taken the version over) or lost: allowed.
    case.logs[0].timeline.iter_mut().for_each(|e| {
        if let Entry::Version(m) = e
            && m.version == 1
        {
            m.latency = Some(Duration::from_secs(2));
        }
    });
    assert!(case.judge().passed(), "{:#?}", case.judge().violations);
}

#[test]
fn a_missing_confirmation_pending_or_cancel_mail_is_caught() {
    Case::new(two_versions(), Status::Confirmed, &CLEAN[..2]).caught("MODIFICATION_CONFIRMED:2: missing");
    let mails = [CLEAN[0], CLEAN[2]];
    Case::new(two_versions(), Status::Confirmed, &mails).caught("MODIFICATION_REQUESTED:2: missing");
    // A final version whose answer was lost may or may not have had its pending mail.
    let lost = log(vec![made(1, Answer::Confirmed, 1.0), made(2, Answer::Lost, 10.0)]);
    assert!(Case::new(lost, Status::Confirmed, &mails).judge().passed());

    let mut cancelled = two_versions();
    cancel(&mut cancelled, false, 20.0);
    Case::new(cancelled, Status::Cancelled, CLEAN).caught("BOOKING_CANCELLED:2: missing");
    let mut suppressed = two_versions();
    cancel(&mut suppressed, true, 20.0);
    assert!(Case::new(suppressed.clone(), Status::Cancelled, CLEAN).judge().passed());
    let mut mails = CLEAN.to_vec();
    mails.push(("BOOKING_CANCELLED", 2, 20.1));
    Case::new(suppressed, Status::Cancelled, &mails).caught("the cancel was sent with suppress_emails");
}

#[test]
fn a_mail_recorded_after_its_version_was_superseded_for_longer_than_the_lease_is_caught() {
    // v1's confirmation recorded 3.5 s after v2 was acknowledged at 10 s.
    let mails = [("BOOKING_CONFIRMED", 1, 13.5), CLEAN[1], CLEAN[2]];
    Case::new(two_versions(), Status::Confirmed, &mails).caught("stale: notify-svc recorded it 3.500s after");
    // Within the lease: allowed, and measured.
    let mails = [("BOOKING_CONFIRMED", 1, 12.5), CLEAN[1], CLEAN[2]];
    let verdict = Case::new(two_versions(), Status::Confirmed, &mails).judge();
    assert!(verdict.passed(), "{:#?}", verdict.violations);
    assert!((verdict.stale_lags[0] - 2.5).abs() < 1e-6);
    // The same after a cancel, for the cancelled version's own mails.
    let mut cancelled = two_versions();
    cancel(&mut cancelled, false, 10.5);
    let mails = [CLEAN[0], CLEAN[1], ("MODIFICATION_CONFIRMED", 2, 14.0), ("BOOKING_CANCELLED", 2, 10.6)];
    Case::new(cancelled, Status::Cancelled, &mails).caught("stale");
}

#[test]
fn a_mail_notify_svc_calls_sent_but_the_smtp_server_never_got_is_caught() {
    let mut case = Case::new(two_versions(), Status::Confirmed, CLEAN);
    case.deliveries.push(delivery("MODIFICATION_REQUESTED", 1, 1.0));
    case.caught("notify-svc says SENT, the SMTP server never got it");
}

#[test]
fn a_double_booking_is_caught_and_back_to_back_bookings_are_not() {
    let case = |later_by: u64| {
        let mut case =
            Case::new(log(vec![made(1, Answer::Confirmed, 1.0)]), Status::Confirmed, &[("BOOKING_CONFIRMED", 1, 1.1)]);
        let mut second = made(1, Answer::Confirmed, 2.0);
        second.content.start += Duration::from_secs(later_by);
        let mut other = log(vec![second]);
        other.id = "b2".into();
        case.finals.push(final_of(&other, Status::Confirmed, &["t1"]));
        case.logs.push(other);
        case.mails.push(Mail { booking: "b2".into(), ..mail("BOOKING_CONFIRMED", 1, 2.2) });
        case.deliveries.push(Delivery { booking: "b2".into(), ..delivery("BOOKING_CONFIRMED", 1, 2.1) });
        case
    };
    // Both hold t1 for 90 minutes, one starting an hour after the other.
    case(3_600).caught("double booking: r1/t1 is held by b1");
    // 90 minutes later: back to back, no overlap.
    let verdict = case(5_400).judge();
    assert!(verdict.passed(), "{:#?}", verdict.violations);
}
