//! What guests see, end to end: the restaurant's profile, times in its zone, and calendar
//! invitations that follow every edit. Real stack, real SMTP server; the invitations the
//! server received are parsed by an independent iCalendar parser (the `icalendar` package
//! from PyPI, through `tests/support/calendar_store.py`) and applied to an empty calendar
//! as RFC 5546 says, in arrival order and in reverse.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform::{
    proto::{
        booking::v1::{self as pb, booking_service_client::BookingServiceClient},
        timestamp,
    },
    status::violated_fields,
};
use serde_json::Value;
use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};
use support::{
    calendar::calendar_after,
    db::TestDb,
    eventually, services,
    smtp::Mail,
    smtp::SmtpSink,
    stack::{Options, RESTAURANT, Stack, create_request, edit_request, get_booking, slot},
};
use tonic::Code;

type Client = BookingServiceClient<platform::grpc::Channel>;

fn profile(name: &str, time_zone: &str) -> pb::PutRestaurantRequest {
    pb::PutRestaurantRequest {
        restaurant: Some(pb::Restaurant {
            id: RESTAURANT.to_string(),
            name: name.to_string(),
            time_zone: time_zone.to_string(),
            address: "12 Rue de la Paix\n75002 Paris".to_string(),
            phone: "+33 1 23 45 67 89".to_string(),
        }),
    }
}

async fn put_profile(client: &mut Client, name: &str, time_zone: &str) -> pb::Restaurant {
    let stored = client.put_restaurant(profile(name, time_zone)).await.expect("put restaurant").into_inner();
    stored.restaurant.expect("restaurant")
}

async fn get_profile(client: &mut Client) -> pb::Restaurant {
    let request = pb::GetRestaurantRequest { restaurant_id: RESTAURANT.to_string() };
    client.get_restaurant(request).await.expect("get restaurant").into_inner().restaurant.expect("restaurant")
}

/// The mails received about `booking`, in arrival order.
fn mails_of(stack: &Stack, booking: &str) -> Vec<Mail> {
    stack.smtp.mails().into_iter().filter(|m| m.booking_id() == booking).collect()
}

/// RFC 3339 in UTC as Python's `isoformat` writes it.
fn iso_utc(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string().replace('Z', "+00:00")
}

/// `2026-12-07 20:00` from Python's naive local `2026-12-07T20:00:00`.
fn date_and_clock(local: &Value) -> String {
    let local = local.as_str().expect("local start");
    format!("{} {}", &local[..10], &local[11..16])
}

async fn wait_status(client: &mut Client, id: &str, status: pb::BookingStatus, version: i64) {
    eventually(Duration::from_secs(20), &format!("{id} {status:?} at version {version}"), || {
        let mut client = client.clone();
        async move {
            let booking = get_booking(&mut client, id).await;
            (booking.status == status as i32 && booking.version == version).then_some(())
        }
    })
    .await
}

#[tokio::test]
async fn invitations_of_create_edits_and_cancel_leave_one_cancelled_event_in_any_order() {
    let stack = Stack::start(Options::default()).await;
    let mut client = stack.booking();
    let stored = put_profile(&mut client, "Demo Bistro", "europe/paris").await;
    assert_eq!((stored.name.as_str(), stored.time_zone.as_str()), ("Demo Bistro", "Europe/Paris"));
    assert_eq!(get_profile(&mut client).await, stored);

    // A table for four at 19:00 (UTC) is taken; the guest books 21:00.
    let holder = client.create_booking(create_request(slot(1, 19), 4)).await.expect("holder").into_inner();
    let holder = holder.booking.expect("holder booking");
    let created = client.create_booking(create_request(slot(1, 21), 2)).await.expect("create").into_inner();
    assert_eq!(created.outcome, pb::Outcome::Confirmed as i32);
    let id = created.booking.expect("booking").id;
    stack.wait_for_mail(&id, "BOOKING_CONFIRMED", 1).await;

    // Edit 1: three guests, confirmed inline.
    let mut edit = edit_request(&id);
    edit.party_size = Some(3);
    let edited = client.edit_booking(edit).await.expect("edit 1").into_inner();
    assert_eq!(edited.outcome, pb::Outcome::Confirmed as i32);
    stack.wait_for_mail(&id, "MODIFICATION_CONFIRMED", 2).await;

    // Edit 2: into the full 19:00 slot, pending; confirmed in the background once the
    // holder cancels; then cancelled. No pause between them: the three emails of version 3
    // may be requested within one second, and their DTSTAMPs are still ordered.
    let mut edit = edit_request(&id);
    edit.start_time = Some(timestamp(slot(1, 19)));
    let pending = client.edit_booking(edit).await.expect("edit 2").into_inner();
    assert_eq!(pending.outcome, pb::Outcome::Pending as i32);
    stack.wait_for_mail(&id, "MODIFICATION_REQUESTED", 3).await;
    let freed = pb::CancelBookingRequest { booking_id: holder.id.clone(), ..Default::default() };
    client.cancel_booking(freed).await.expect("cancel holder");
    wait_status(&mut client, &id, pb::BookingStatus::Confirmed, 3).await;
    stack.wait_for_mail(&id, "MODIFICATION_CONFIRMED", 3).await;
    let cancel = pb::CancelBookingRequest { booking_id: id.clone(), ..Default::default() };
    client.cancel_booking(cancel).await.expect("cancel");
    stack.wait_for_mail(&id, "BOOKING_CANCELLED", 3).await;
    stack.settle(&[&id, &holder.id]).await;

    let mails = mails_of(&stack, &id);
    let keys: Vec<String> = mails.iter().map(|m| format!("{}:{}", m.kind(), m.version())).collect();
    assert_eq!(
        keys,
        vec![
            "BOOKING_CONFIRMED:1",
            "MODIFICATION_CONFIRMED:2",
            "MODIFICATION_REQUESTED:3",
            "MODIFICATION_CONFIRMED:3",
            "BOOKING_CANCELLED:3"
        ],
        "one mail per (kind, version), nothing added"
    );
    let files: Vec<PathBuf> = mails.iter().map(|m| m.file.clone()).collect();
    let uid = format!("{id}@booking-platform");

    let in_order = calendar_after(&files);
    let invitations = in_order["invitations"].as_array().expect("invitations");
    let seen: Vec<(String, i64, String, String)> = invitations
        .iter()
        .map(|i| {
            let method = i["method"].as_str().unwrap_or_default().to_string();
            assert_eq!(i["mime_method"].as_str(), Some(method.as_str()), "the MIME method matches METHOD: {i}");
            assert_eq!(i["uid"].as_str(), Some(uid.as_str()), "{i}");
            assert_eq!(i["tzid"].as_str(), Some("Europe/Paris"), "{i}");
            assert_eq!(i["vtimezones"], 1, "{i}");
            // The VTIMEZONE sent describes the zone as the tz database does.
            assert_eq!(i["dtstart_utc"], i["dtstart_utc_by_vtimezone"], "{i}");
            assert_eq!(i["dtend_utc"], i["dtend_utc_by_vtimezone"], "{i}");
            assert!(i["max_line_octets"].as_u64().is_some_and(|n| n <= 75), "folded at 75 octets: {i}");
            assert_eq!(i["organizer"].as_str(), Some("mailto:bookings@localhost"), "{i}");
            assert_eq!(i["attendee"].as_str(), Some("mailto:ada@example.com"), "{i}");
            assert!(i["location"].as_str().is_some_and(|l| l.starts_with("Demo Bistro\n12 Rue de la Paix")), "{i}");
            let status = i["status"].as_str().unwrap_or_default().to_string();
            (
                method,
                i["sequence"].as_i64().unwrap_or_default(),
                status,
                i["dtstart_utc"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let (at_21, at_19) = (iso_utc(slot(1, 21)), iso_utc(slot(1, 19)));
    assert_eq!(
        seen,
        vec![
            ("REQUEST".into(), 1, "CONFIRMED".into(), at_21.clone()),
            ("REQUEST".into(), 2, "CONFIRMED".into(), at_21.clone()),
            ("REQUEST".into(), 3, "TENTATIVE".into(), at_19.clone()),
            ("REQUEST".into(), 3, "CONFIRMED".into(), at_19.clone()),
            ("CANCEL".into(), 3, "CANCELLED".into(), at_19.clone()),
        ]
    );

    let mut reversed = files.clone();
    reversed.reverse();
    for (order, calendar) in [("arrival", in_order.clone()), ("reverse", calendar_after(&reversed))] {
        let events = calendar["events"].as_object().expect("events");
        assert_eq!(events.len(), 1, "{order} order: one event: {calendar}");
        let event = &events[&uid];
        assert_eq!(event["status"], "CANCELLED", "{order} order: {event}");
        assert_eq!(event["sequence"], 3, "{order} order: {event}");
        assert_eq!(event["method"], "CANCEL", "{order} order: {event}");
        assert_eq!(event["dtstart_utc"].as_str(), Some(at_19.as_str()), "{order} order: {event}");
    }
    assert_eq!(calendar_after(&reversed)["ignored"].as_array().map(Vec::len), Some(4));

    // The mails show the restaurant and its local time; the modification shows old → new.
    let requested = &invitations[2];
    let text = requested["mail_text"].as_str().expect("text body").replace("\r\n", "\n");
    let (old, new) = (&invitations[1], &invitations[2]);
    let when = format!(
        "When:       {} {} {} → {} {} {}",
        old["dtstart_weekday"].as_str().unwrap_or_default(),
        date_and_clock(&old["dtstart_local"]),
        old["dtstart_abbreviation"].as_str().unwrap_or_default(),
        new["dtstart_weekday"].as_str().unwrap_or_default(),
        date_and_clock(&new["dtstart_local"]),
        new["dtstart_abbreviation"].as_str().unwrap_or_default(),
    );
    assert!(text.contains(&when), "{when:?} missing from\n{text}");
    assert!(text.contains("Restaurant: Demo Bistro\n") && text.contains("Address:    12 Rue de la Paix\n"), "{text}");
    assert!(text.contains("Party:      3 guests\n"), "{text}");
    let first = invitations[0]["mail_text"].as_str().expect("text body").replace("\r\n", "\n");
    assert!(first.contains("Party:      2 guests\n") && !first.contains('→'), "{first}");
    assert_eq!(mails[0].header("Subject"), Some("Your booking is confirmed (Demo Bistro)"));
}

#[tokio::test]
async fn a_profile_changed_after_a_mail_was_queued_leaves_that_mail_as_queued() {
    let stack = Stack::start(Options { booking_in_process: false, ..Default::default() }).await;
    // booking-svc first runs with notify-svc out of reach: its emails stay queued.
    let mut cut_off = stack.booking_settings();
    cut_off.notify_url = format!("http://127.0.0.1:{}", support::free_port());
    let booking = services::booking_with(cut_off).await;
    let mut client = services::booking_client(&booking.url);
    put_profile(&mut client, "Old Name", "Europe/Paris").await;
    let created = client.create_booking(create_request(slot(1, 19), 2)).await.expect("create").into_inner();
    let id = created.booking.expect("booking").id;
    let queued = format!("SELECT count(*) FROM booking.outbox WHERE booking_id = '{id}' AND state = 'QUEUED'");
    assert_eq!(stack.count(&queued).await, 1);
    put_profile(&mut client, "New Name", "America/New_York").await;
    booking.stop().await.expect("stop booking-svc");

    let booking = services::booking_with(stack.booking_settings()).await;
    let mut client = services::booking_client(&booking.url);
    stack.wait_for_mail(&id, "BOOKING_CONFIRMED", 1).await;
    let mut edit = edit_request(&id);
    edit.party_size = Some(3);
    client.edit_booking(edit).await.expect("edit");
    stack.wait_for_mail(&id, "MODIFICATION_CONFIRMED", 2).await;

    let mails = mails_of(&stack, &id);
    assert_eq!(mails[0].header("Subject"), Some("Your booking is confirmed (Old Name)"));
    assert_eq!(mails[1].header("Subject"), Some("Your booking was changed and is confirmed (New Name)"));
    let calendar = calendar_after(&mails.iter().map(|m| m.file.clone()).collect::<Vec<_>>());
    let zones: Vec<&str> =
        calendar["invitations"].as_array().expect("invitations").iter().filter_map(|i| i["tzid"].as_str()).collect();
    assert_eq!(zones, vec!["Europe/Paris", "America/New_York"]);
    booking.stop().await.expect("stop booking-svc");
}

#[tokio::test]
async fn a_restaurant_without_a_profile_mails_its_id_in_utc_and_an_unknown_zone_is_refused() {
    let stack = Stack::start(Options::default()).await;
    let mut client = stack.booking();
    let default = get_profile(&mut client).await;
    assert_eq!((default.name.as_str(), default.time_zone.as_str()), (RESTAURANT, "UTC"));

    let refused = client.put_restaurant(profile("Demo Bistro", "Europe/Atlantis")).await.expect_err("unknown zone");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), vec!["restaurant.time_zone"]);
    assert!(refused.message().contains("Europe/Atlantis"), "{}", refused.message());
    assert_eq!(get_profile(&mut client).await, default, "nothing was stored");

    let created = client.create_booking(create_request(slot(1, 19), 2)).await.expect("create").into_inner();
    let id = created.booking.expect("booking").id;
    stack.wait_for_mail(&id, "BOOKING_CONFIRMED", 1).await;
    let mails = mails_of(&stack, &id);
    assert_eq!(mails[0].header("Subject"), Some(format!("Your booking is confirmed ({RESTAURANT})").as_str()));
    let calendar = calendar_after(&[mails[0].file.clone()]);
    let invitation = &calendar["invitations"][0];
    assert_eq!(invitation["tzid"], Value::Null, "UTC times: {invitation}");
    assert_eq!(invitation["vtimezones"], 0, "{invitation}");
    assert_eq!(invitation["dtstart_utc"].as_str(), Some(iso_utc(slot(1, 19)).as_str()));
    let text = invitation["mail_text"].as_str().expect("text body").replace("\r\n", "\n");
    let local = iso_utc(slot(1, 19));
    let when = format!("{} {} UTC", &local[..10], &local[11..16]);
    assert!(text.contains(&format!("Restaurant: {RESTAURANT}\n")) && text.contains(&when), "{when}: {text}");
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// 00:30 UTC on the next night Paris springs forward (the last Sunday of March, 01:00 UTC):
/// 01:30 CET, half an hour before the clocks jump.
fn next_paris_spring_forward_0030_utc() -> SystemTime {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let year_now = 1970 + now / 31_556_952;
    (year_now - 1..year_now + 3)
        .map(|year| {
            let march_31 = days_from_civil(year, 3, 31);
            let last_sunday = march_31 - (march_31 + 4).rem_euclid(7);
            last_sunday * 86_400 + 1_800
        })
        .find(|at| *at > now + 86_400)
        .map(|at| SystemTime::UNIX_EPOCH + Duration::from_secs(at as u64))
        .expect("a spring-forward night ahead")
}

#[tokio::test]
async fn a_booking_across_the_night_paris_springs_forward_ends_in_summer_time() {
    let stack = Stack::start(Options::default()).await;
    let mut client = stack.booking();
    put_profile(&mut client, "Demo Bistro", "Europe/Paris").await;
    let start = next_paris_spring_forward_0030_utc();
    let created = client.create_booking(create_request(start, 2)).await.expect("create").into_inner();
    let id = created.booking.expect("booking").id;
    stack.wait_for_mail(&id, "BOOKING_CONFIRMED", 1).await;

    let mails = mails_of(&stack, &id);
    let calendar = calendar_after(&[mails[0].file.clone()]);
    let invitation = &calendar["invitations"][0];
    // 01:30 winter time for 90 minutes: 04:00 summer time, by the tz database and by the
    // VTIMEZONE the invitation carries alike.
    assert_eq!(invitation["tzid"].as_str(), Some("Europe/Paris"), "{invitation}");
    assert!(invitation["dtstart_local"].as_str().is_some_and(|l| l.ends_with("T01:30:00")), "{invitation}");
    assert_eq!(invitation["dtstart_utc"].as_str(), Some(iso_utc(start).as_str()), "{invitation}");
    assert_eq!(invitation["dtstart_utc"], invitation["dtstart_utc_by_vtimezone"], "{invitation}");
    let end = iso_utc(start + Duration::from_secs(5400));
    assert_eq!(invitation["dtend_utc"].as_str(), Some(end.as_str()), "{invitation}");
    assert_eq!(invitation["dtend_utc"], invitation["dtend_utc_by_vtimezone"], "{invitation}");
    let text = invitation["mail_text"].as_str().expect("text body").replace("\r\n", "\n");
    assert!(text.contains(" 01:30 CET\n") && text.contains("Ends:       04:00 CEST\n"), "{text}");
}

/// The emails of one version can be requested in any order: the outbox retries a pending
/// email that failed with a backoff, so its confirmation (queued later, not yet failed) can
/// reach notify-svc first; or the outbox sends both within one second. Whatever the order
/// of the requests and of the arrivals, the calendar ends on the version's newest state.
#[tokio::test]
async fn the_emails_of_one_version_end_on_its_newest_state_whatever_order_they_are_requested_in() {
    use platform::proto::notify::v1::{self as npb, NotificationKind as Kind};

    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    let mut settings = notify_svc::Settings::for_database(&db.url);
    settings.smtp_url = Some(smtp.url());
    let notify = services::notify_with(settings).await;
    let mut client = services::notify_client(&notify.url);
    let request = |booking: &str, kind: Kind| npb::SendOnceRequest {
        booking_id: booking.to_string(),
        kind: kind.into(),
        version: 2,
        recipient: Some(npb::Recipient { email: "ada@example.com".to_string(), name: "Ada".to_string() }),
        details: Some(npb::Details {
            restaurant_name: "Chez Test".to_string(),
            start_time: Some(prost_types::Timestamp { seconds: 1_798_140_600, nanos: 0 }),
            duration: Some(prost_types::Duration { seconds: 5400, nanos: 0 }),
            party_size: 4,
            ..Default::default()
        }),
        suppress: false,
    };

    // Each booking's emails of version 2, requested back to back in the order given.
    let cases = [
        ("confirmation first", vec![Kind::ModificationConfirmed, Kind::ModificationRequested], "CONFIRMED"),
        ("in order", vec![Kind::ModificationRequested, Kind::ModificationConfirmed], "CONFIRMED"),
        (
            "cancellation first",
            vec![Kind::BookingCancelled, Kind::ModificationRequested, Kind::ModificationConfirmed],
            "CANCELLED",
        ),
        (
            "all at once",
            vec![Kind::ModificationRequested, Kind::ModificationConfirmed, Kind::BookingCancelled],
            "CANCELLED",
        ),
    ];
    let mut bookings = Vec::new();
    for (case, kinds, _) in &cases {
        let booking = uuid::Uuid::new_v4().to_string();
        for kind in kinds {
            let sent = client.send_once(request(&booking, *kind)).await.expect("SendOnce").into_inner();
            assert!(sent.delivery.is_some(), "{case}: {kind:?} recorded");
        }
        bookings.push(booking);
    }
    for ((case, kinds, newest), booking) in cases.iter().zip(&bookings) {
        let mails = eventually(Duration::from_secs(20), &format!("{case}: every email at the server"), || async {
            let mails: Vec<Mail> = smtp.mails().into_iter().filter(|m| &m.booking_id() == booking).collect();
            (mails.len() == kinds.len()).then_some(mails)
        })
        .await;
        let files: Vec<PathBuf> = mails.iter().map(|m| m.file.clone()).collect();
        let uid = format!("{booking}@booking-platform");
        // Every order the emails could arrive in.
        for arrival in permutations(&files) {
            let calendar = calendar_after(&arrival);
            let event = &calendar["events"][&uid];
            assert_eq!(event["sequence"], 2, "{case}: {calendar}");
            assert_eq!(event["status"], *newest, "{case}, arriving as {arrival:?}: {calendar}");
        }
    }
}

/// Every order of `items`.
fn permutations(items: &[PathBuf]) -> Vec<Vec<PathBuf>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for (i, first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            all.push(tail);
        }
    }
    all
}
