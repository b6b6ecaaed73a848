//! notify-svc as its users meet it: booking-svc's outbox calling SendOnce (often more
//! than once per key), a real SMTP server that is slow, down, or refuses, replicas and
//! crashes, and staff reading the ledger. Every test counts what reached the SMTP server.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform::{
    proto::notify::v1::{self as pb, notify_service_client::NotifyServiceClient},
    status::violated_fields,
};
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use support::{
    db::TestDb,
    eventually,
    process::ServiceProcess,
    services::{self, Running},
    smtp::{Mode, SmtpSink, mails_in},
};
use tonic::Code;
use uuid::Uuid;

type Client = NotifyServiceClient<platform::grpc::Channel>;

/// Settings with intervals short enough for tests: retries every 100-400 ms, a 4 s lease.
fn fast_settings(db: &TestDb, smtp: Option<&SmtpSink>) -> notify_svc::Settings {
    let mut settings = notify_svc::Settings::for_database(&db.url);
    settings.smtp_url = smtp.map(SmtpSink::url);
    settings.smtp_timeout_ms = 5_000;
    settings.retry_base_ms = 100;
    settings.retry_cap_ms = 400;
    settings.delivery_lease_ms = 4_000;
    settings.worker_poll_ms = 1_000;
    settings.common.db_pool_size = 16;
    settings
}

async fn notify(db: &TestDb, smtp: &SmtpSink) -> (Running, Client) {
    let running = services::notify_with(fast_settings(db, Some(smtp))).await;
    let client = services::notify_client(&running.url);
    (running, client)
}

fn details(notes: &str) -> pb::Details {
    pb::Details {
        restaurant_name: "Chez Test".to_string(),
        start_time: Some(prost_types::Timestamp { seconds: 1_798_140_600, nanos: 0 }),
        duration: Some(prost_types::Duration { seconds: 5400, nanos: 0 }),
        party_size: 4,
        table_ids: vec!["T4".to_string(), "T5".to_string()],
        notes: notes.to_string(),
        ..Default::default()
    }
}

fn request(booking_id: Uuid, kind: pb::NotificationKind, version: i64) -> pb::SendOnceRequest {
    pb::SendOnceRequest {
        booking_id: booking_id.to_string(),
        kind: kind.into(),
        version,
        recipient: Some(pb::Recipient { email: "ada@example.com".to_string(), name: "Ada Lovelace".to_string() }),
        details: Some(details("window seat")),
        suppress: false,
    }
}

fn confirmed(booking_id: Uuid) -> pb::SendOnceRequest {
    request(booking_id, pb::NotificationKind::BookingConfirmed, 1)
}

async fn send(client: &mut Client, request: pb::SendOnceRequest) -> pb::SendOnceResponse {
    client.send_once(request).await.expect("SendOnce").into_inner()
}

async fn get(client: &mut Client, booking_id: Uuid, kind: pb::NotificationKind, version: i64) -> pb::Delivery {
    let request = pb::GetDeliveryRequest { booking_id: booking_id.to_string(), kind: kind.into(), version };
    client.get_delivery(request).await.expect("GetDelivery").into_inner().delivery.expect("delivery")
}

fn state(delivery: &pb::Delivery) -> pb::DeliveryState {
    pb::DeliveryState::try_from(delivery.state).expect("known state")
}

/// Waits until the delivery of the key reaches `wanted`.
async fn wait_state(
    client: &Client,
    booking_id: Uuid,
    kind: pb::NotificationKind,
    version: i64,
    wanted: pb::DeliveryState,
    timeout: Duration,
) -> pb::Delivery {
    eventually(timeout, &format!("{booking_id}:{kind:?}:{version} to be {wanted:?}"), || {
        let mut client = client.clone();
        async move {
            let delivery = get(&mut client, booking_id, kind, version).await;
            (state(&delivery) == wanted).then_some(delivery)
        }
    })
    .await
}

fn key(booking_id: Uuid, kind: &str, version: i64) -> String {
    format!("{booking_id}:{kind}:{version}")
}

/// The positive marker that the delivery worker is done with everything before it: a
/// control email refused for a while (so it goes through the worker's retries, not the
/// call that recorded it), retried at least three times (longer than the 400 ms retry cap
/// of these tests: any earlier email still due would have been tried meanwhile), then
/// accepted and seen at the SMTP server. Leaves the server accepting. Returns the control's
/// booking id, to leave it out of the counts.
async fn drained(client: &Client, smtp: &SmtpSink) -> Uuid {
    let control = Uuid::new_v4();
    smtp.set_mode(Mode::TempFail);
    let queued = send(&mut client.clone(), confirmed(control)).await.delivery.expect("delivery");
    assert_eq!(state(&queued), pb::DeliveryState::Queued, "the control email waits for the worker");
    eventually(Duration::from_secs(15), "the worker to retry the control email", || {
        let mut client = client.clone();
        async move {
            (get(&mut client, control, pb::NotificationKind::BookingConfirmed, 1).await.attempts >= 4).then_some(())
        }
    })
    .await;
    smtp.set_mode(Mode::Accept);
    wait_state(
        client,
        control,
        pb::NotificationKind::BookingConfirmed,
        1,
        pb::DeliveryState::Sent,
        Duration::from_secs(10),
    )
    .await;
    eventually(Duration::from_secs(10), "the control email at the SMTP server", || async {
        (smtp.count_key(&control.to_string(), "BOOKING_CONFIRMED", 1) == 1).then_some(())
    })
    .await;
    control
}

/// The mails at the SMTP server other than the control email of [`drained`].
fn mails_but(smtp: &SmtpSink, control: Uuid) -> Vec<support::smtp::Mail> {
    smtp.mails().into_iter().filter(|m| m.booking_id() != control.to_string()).collect()
}

#[tokio::test]
async fn fifty_concurrent_calls_for_one_key_send_exactly_one_email() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    let (_notify, client) = notify(&db, &smtp).await;
    let booking = Uuid::new_v4();

    let started = Instant::now();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let answer = send(&mut client, confirmed(booking)).await;
                (answer, t.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("join"));
    }
    let all_answered = started.elapsed();

    let firsts: Vec<_> = answers.iter().filter(|(a, _)| !a.duplicate).collect();
    assert_eq!(firsts.len(), 1, "exactly one answer is the first");
    let first = firsts[0].0.delivery.as_ref().expect("delivery");
    assert_eq!(state(first), pb::DeliveryState::Sent, "the first caller waits for the SMTP server's acceptance");
    let message_ids: std::collections::HashSet<_> =
        answers.iter().map(|(a, _)| a.delivery.as_ref().expect("delivery").message_id.clone()).collect();
    assert_eq!(message_ids.len(), 1, "every answer names the same delivery");

    smtp.wait_for(1, Duration::from_secs(10)).await;
    let control = drained(&client, &smtp).await;
    let mails = mails_but(&smtp, control);
    assert_eq!(mails.len(), 1, "exactly one message reached the SMTP server");
    assert_eq!(mails[0].key(), key(booking, "BOOKING_CONFIRMED", 1));

    let mut latencies: Vec<Duration> = answers.iter().map(|(_, t)| *t).collect();
    latencies.sort();
    eprintln!(
        "50 concurrent SendOnce: all answered in {all_answered:?}; first (SENT) {:?}; p50 {:?}, max {:?}",
        firsts[0].1, latencies[25], latencies[49]
    );
}

#[tokio::test]
async fn two_replicas_hammered_with_the_same_keys_send_one_email_per_key() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    let (_a, client_a) = notify(&db, &smtp).await;
    let (_b, client_b) = notify(&db, &smtp).await;
    let bookings: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();

    let started = Instant::now();
    let mut calls = Vec::new();
    for _ in 0..5 {
        for (i, booking) in bookings.iter().enumerate() {
            for client in [&client_a, &client_b] {
                let mut client = client.clone();
                let request = request(*booking, pb::NotificationKind::ModificationConfirmed, 2 + (i % 2) as i64);
                calls.push(tokio::spawn(async move { send(&mut client, request).await }));
            }
        }
    }
    let total_calls = calls.len();
    let mut firsts: HashMap<String, usize> = HashMap::new();
    for call in calls {
        let answer = call.await.expect("join");
        let delivery = answer.delivery.expect("delivery");
        if !answer.duplicate {
            *firsts.entry(delivery.booking_id.clone()).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(firsts.len(), bookings.len(), "every key had a first caller");
    assert!(firsts.values().all(|n| *n == 1), "one first caller per key: {firsts:?}");

    smtp.wait_for(bookings.len(), Duration::from_secs(15)).await;
    for (i, booking) in bookings.iter().enumerate() {
        wait_state(
            &client_a,
            *booking,
            pb::NotificationKind::ModificationConfirmed,
            2 + (i % 2) as i64,
            pb::DeliveryState::Sent,
            Duration::from_secs(10),
        )
        .await;
    }
    let control_a = drained(&client_a, &smtp).await;
    let control_b = drained(&client_b, &smtp).await;
    let mut counts = smtp.counts_by_key();
    for control in [control_a, control_b] {
        counts.remove(&key(control, "BOOKING_CONFIRMED", 1));
    }
    assert_eq!(counts.len(), bookings.len(), "{counts:?}");
    for (i, booking) in bookings.iter().enumerate() {
        assert_eq!(counts.get(&key(*booking, "MODIFICATION_CONFIRMED", 2 + (i % 2) as i64)), Some(&1));
    }
    eprintln!("two replicas: {total_calls} SendOnce calls for {} keys answered in {elapsed:?}", bookings.len());
}

#[tokio::test]
async fn smtp_down_then_up_queues_then_delivers_once() {
    let db = TestDb::new().await;
    let mut smtp = SmtpSink::start().await;
    let (_notify, mut client) = notify(&db, &smtp).await;
    smtp.stop();
    let booking = Uuid::new_v4();

    let answer = send(&mut client, confirmed(booking)).await;
    assert!(!answer.duplicate);
    let queued = answer.delivery.expect("delivery");
    assert_eq!(state(&queued), pb::DeliveryState::Queued);
    assert_eq!(queued.attempts, 1);
    assert!(!queued.last_error.is_empty(), "the answer says why it is queued");
    assert!(queued.next_attempt_at.is_some() && queued.sent_at.is_none());

    // The worker keeps retrying while the server is down.
    let retried = eventually(Duration::from_secs(10), "the worker to retry", || {
        let mut client = client.clone();
        async move {
            let delivery = get(&mut client, booking, pb::NotificationKind::BookingConfirmed, 1).await;
            (delivery.attempts >= 3).then_some(delivery)
        }
    })
    .await;
    assert_eq!(state(&retried), pb::DeliveryState::Queued);
    assert!(retried.last_error.to_lowercase().contains("connection"), "last_error: {}", retried.last_error);
    let again = send(&mut client, confirmed(booking)).await;
    assert!(again.duplicate, "a repeat while queued is a duplicate and sends nothing itself");

    smtp.start_again();
    let sent = wait_state(
        &client,
        booking,
        pb::NotificationKind::BookingConfirmed,
        1,
        pb::DeliveryState::Sent,
        Duration::from_secs(10),
    )
    .await;
    assert!(sent.attempts >= 4, "attempts {}", sent.attempts);
    assert!(sent.sent_at.is_some() && sent.next_attempt_at.is_none());
    assert!(sent.last_error.is_empty(), "a delivered email has no last error");
    let control = drained(&client, &smtp).await;
    assert_eq!(smtp.count_key(&booking.to_string(), "BOOKING_CONFIRMED", 1), 1);
    assert_eq!(mails_but(&smtp, control).len(), 1);
}

#[tokio::test]
async fn a_temporary_refusal_is_retried_until_the_server_accepts() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    smtp.set_mode(Mode::TempFail);
    let (_notify, mut client) = notify(&db, &smtp).await;
    let booking = Uuid::new_v4();

    let queued = send(&mut client, confirmed(booking)).await.delivery.expect("delivery");
    assert_eq!(state(&queued), pb::DeliveryState::Queued);
    assert!(queued.last_error.contains("451"), "last_error: {}", queued.last_error);

    smtp.set_mode(Mode::Accept);
    wait_state(
        &client,
        booking,
        pb::NotificationKind::BookingConfirmed,
        1,
        pb::DeliveryState::Sent,
        Duration::from_secs(10),
    )
    .await;
    drained(&client, &smtp).await;
    assert_eq!(smtp.count_key(&booking.to_string(), "BOOKING_CONFIRMED", 1), 1);
}

#[tokio::test]
async fn a_permanent_refusal_fails_with_the_reason_and_is_never_retried() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    smtp.set_mode(Mode::Reject);
    let (_notify, mut client) = notify(&db, &smtp).await;
    let booking = Uuid::new_v4();

    let answer = send(&mut client, confirmed(booking)).await;
    let failed = answer.delivery.expect("delivery");
    assert_eq!(state(&failed), pb::DeliveryState::Failed);
    assert!(failed.last_error.contains("550"), "last_error: {}", failed.last_error);
    assert!(failed.last_error.contains("mailbox unavailable"), "last_error: {}", failed.last_error);

    let control = drained(&client, &smtp).await;
    let later = get(&mut client, booking, pb::NotificationKind::BookingConfirmed, 1).await;
    assert_eq!(state(&later), pb::DeliveryState::Failed);
    assert_eq!(later.attempts, 1, "a 5xx is final: no retry");
    assert_eq!(later.last_error, failed.last_error);
    assert!(later.sent_at.is_none() && later.next_attempt_at.is_none());
    let again = send(&mut client, confirmed(booking)).await;
    assert!(again.duplicate);
    assert_eq!(state(again.delivery.as_ref().expect("delivery")), pb::DeliveryState::Failed);
    drained(&client, &smtp).await;
    assert!(mails_but(&smtp, control).iter().all(|m| m.booking_id() != booking.to_string()), "nothing was delivered");
}

#[tokio::test]
async fn a_slow_smtp_server_gets_queued_within_the_callers_deadline_and_delivered_once() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    smtp.set_mode(Mode::Slow(Duration::from_millis(1500)));
    let (_notify, mut client) = notify(&db, &smtp).await;
    let booking = Uuid::new_v4();

    let mut call = tonic::Request::new(confirmed(booking));
    call.set_timeout(Duration::from_millis(800));
    let started = Instant::now();
    let answer = client.send_once(call).await.expect("answered before the deadline").into_inner();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(800), "answered in {took:?}");
    let delivery = answer.delivery.expect("delivery");
    assert_eq!(state(&delivery), pb::DeliveryState::Queued, "the SMTP exchange is still running");
    assert_eq!(delivery.attempts, 1);

    let sent = wait_state(
        &client,
        booking,
        pb::NotificationKind::BookingConfirmed,
        1,
        pb::DeliveryState::Sent,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(sent.attempts, 1, "the abandoned call did not abandon the SMTP exchange");
    drained(&client, &smtp).await;
    assert_eq!(smtp.count_key(&booking.to_string(), "BOOKING_CONFIRMED", 1), 1);
    eprintln!("slow SMTP (1.5 s): SendOnce with an 800 ms deadline answered QUEUED in {took:?}");
}

#[tokio::test]
async fn callers_that_give_up_at_once_never_leave_a_recorded_email_waiting_for_its_lease() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    let mut settings = fast_settings(&db, Some(&smtp));
    settings.delivery_lease_ms = 30_000;
    settings.worker_poll_ms = 30_000;
    let notify = services::notify_with(settings).await;
    let client = services::notify_client(&notify.url);

    let mut bookings = Vec::new();
    for deadline_ms in [1, 2, 5, 10, 20, 50] {
        for _ in 0..3 {
            let booking = Uuid::new_v4();
            let mut call = tonic::Request::new(confirmed(booking));
            call.set_timeout(Duration::from_millis(deadline_ms));
            let _ = client.clone().send_once(call).await;
            bookings.push(booking);
        }
    }
    // A recorded key is sent by the call that recorded it, not by the worker after its
    // 30 s lease: every key is either unrecorded or sent within seconds.
    let ledger = db.client().await;
    eventually(Duration::from_secs(10), "every recorded key to be sent", || {
        let ledger = &ledger;
        async move {
            let pending: i64 = ledger
                .query_one("SELECT count(*) FROM notify.deliveries WHERE state <> 'SENT'", &[])
                .await
                .expect("count")
                .get(0);
            (pending == 0).then_some(())
        }
    })
    .await;
    let recorded: i64 = ledger.query_one("SELECT count(*) FROM notify.deliveries", &[]).await.expect("count").get(0);
    let counts = smtp.counts_by_key();
    assert_eq!(counts.len() as i64, recorded, "one email per recorded key: {counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    eprintln!("{} callers gave up within 1-50 ms: {recorded} keys recorded, each sent once", bookings.len());
}

#[tokio::test]
async fn graceful_shutdown_lets_the_smtp_exchange_in_flight_finish_and_records_it() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    smtp.set_mode(Mode::Slow(Duration::from_millis(1200)));
    let (notify, mut client) = notify(&db, &smtp).await;
    let booking = Uuid::new_v4();

    let mut call = tonic::Request::new(confirmed(booking));
    call.set_timeout(Duration::from_millis(600));
    let queued = client.send_once(call).await.expect("SendOnce").into_inner().delivery.expect("delivery");
    assert_eq!(state(&queued), pb::DeliveryState::Queued);
    let stopping = Instant::now();
    notify.stop().await.expect("clean stop");
    let took = stopping.elapsed();

    assert_eq!(smtp.count_key(&booking.to_string(), "BOOKING_CONFIRMED", 1), 1, "the message was delivered");
    let row = db
        .client()
        .await
        .query_one("SELECT state, attempts FROM notify.deliveries WHERE booking_id = $1", &[&booking])
        .await
        .expect("ledger row");
    assert_eq!(row.get::<_, String>(0), "SENT", "the result was recorded before the process stopped");
    assert_eq!(row.get::<_, i32>(1), 1);
    assert!(took >= Duration::from_millis(500), "shutdown waited for the SMTP exchange ({took:?})");
}

#[tokio::test]
async fn killed_with_queued_deliveries_and_restarted_delivers_each_exactly_once() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    smtp.set_mode(Mode::TempFail);
    let smtp_url = smtp.url();
    let envs = [
        ("DATABASE_URL", db.url.as_str()),
        ("SMTP_URL", smtp_url.as_str()),
        ("RETRY_BASE_MS", "100"),
        ("RETRY_CAP_MS", "300"),
        ("DELIVERY_LEASE_MS", "1500"),
        ("WORKER_POLL_MS", "500"),
        ("SEND_WAIT_MS", "2000"),
    ];
    let mut process = ServiceProcess::start_serving("notify-svc", &envs).await;
    let mut client = services::notify_client(&process.url);
    let bookings: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    for booking in &bookings {
        let delivery = send(&mut client, confirmed(*booking)).await.delivery.expect("delivery");
        assert_eq!(state(&delivery), pb::DeliveryState::Queued);
    }
    // Let the worker retry a few rounds, so the kill lands amid claims and leases.
    eventually(Duration::from_secs(10), "every delivery to be retried", || {
        let mut client = client.clone();
        let bookings = bookings.clone();
        async move {
            for booking in bookings {
                if get(&mut client, booking, pb::NotificationKind::BookingConfirmed, 1).await.attempts < 2 {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    process.kill();
    // The server refused every recipient until the process was dead, so no exchange of it
    // can still complete.
    smtp.set_mode(Mode::Accept);
    assert!(smtp.mails().is_empty(), "nothing is sent while notify-svc is dead");

    let restarted = Instant::now();
    process.restart().await;
    let mut client = services::notify_client(&process.url);
    let mut counts = HashMap::new();
    for booking in &bookings {
        wait_state(
            &client,
            *booking,
            pb::NotificationKind::BookingConfirmed,
            1,
            pb::DeliveryState::Sent,
            Duration::from_secs(15),
        )
        .await;
    }
    let all_sent = restarted.elapsed();
    let control = drained(&client, &smtp).await;
    for mail in mails_but(&smtp, control) {
        *counts.entry(mail.key()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), bookings.len(), "{counts:?}");
    for booking in &bookings {
        assert_eq!(counts.get(&key(*booking, "BOOKING_CONFIRMED", 1)), Some(&1), "{booking}");
        let again = send(&mut client, confirmed(*booking)).await;
        assert!(again.duplicate);
    }
    let second_control = drained(&client, &smtp).await;
    let others: Vec<_> =
        mails_but(&smtp, control).into_iter().filter(|m| m.booking_id() != second_control.to_string()).collect();
    assert_eq!(others.len(), bookings.len(), "duplicates after the restart sent nothing");
    eprintln!("SIGKILL with 20 queued: all delivered {all_sent:?} after the restart (incl. start-up), none twice");
}

#[tokio::test]
async fn a_suppressed_key_is_never_sent_even_by_a_later_unsuppressed_call() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    let (_notify, mut client) = notify(&db, &smtp).await;
    let booking = Uuid::new_v4();

    let mut suppressed = confirmed(booking);
    suppressed.suppress = true;
    let first = send(&mut client, suppressed).await;
    assert!(!first.duplicate);
    let delivery = first.delivery.expect("delivery");
    assert_eq!(state(&delivery), pb::DeliveryState::Suppressed);
    assert_eq!(delivery.attempts, 0);

    let later = send(&mut client, confirmed(booking)).await;
    assert!(later.duplicate, "the suppressed key was recorded by the first call");
    assert_eq!(state(later.delivery.as_ref().expect("delivery")), pb::DeliveryState::Suppressed);

    // A control email through the worker, after the suppressed one: once it arrived, the
    // other would have.
    let control = drained(&client, &smtp).await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].booking_id(), control.to_string());
    assert_eq!(
        state(&get(&mut client, booking, pb::NotificationKind::BookingConfirmed, 1).await),
        pb::DeliveryState::Suppressed
    );
}

#[tokio::test]
async fn the_same_key_with_another_recipient_or_details_is_refused_and_sends_nothing() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    let (_notify, mut client) = notify(&db, &smtp).await;
    let booking = Uuid::new_v4();
    let first = send(&mut client, confirmed(booking)).await.delivery.expect("delivery");
    assert_eq!(state(&first), pb::DeliveryState::Sent);

    let mut other_recipient = confirmed(booking);
    other_recipient.recipient = Some(pb::Recipient { email: "eve@example.com".into(), name: "Ada Lovelace".into() });
    let mut other_details = confirmed(booking);
    other_details.details = Some(details("aisle seat"));
    let mut other_name = confirmed(booking);
    other_name.recipient = Some(pb::Recipient { email: "ada@example.com".into(), name: "Ada King".into() });
    for (what, request) in [("recipient", other_recipient), ("details", other_details), ("recipient", other_name)] {
        let status = client.send_once(request).await.expect_err("a different payload is refused");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains(what), "{}", status.message());
    }
    let mut only_suppress = confirmed(booking);
    only_suppress.suppress = true;
    let same = send(&mut client, only_suppress).await;
    assert!(same.duplicate, "suppress is not part of the comparison");
    assert_eq!(state(same.delivery.as_ref().expect("delivery")), pb::DeliveryState::Sent);

    let recorded = get(&mut client, booking, pb::NotificationKind::BookingConfirmed, 1).await;
    assert_eq!(recorded.recipient, first.recipient, "the ledger keeps the first request");
    let control = drained(&client, &smtp).await;
    assert_eq!(mails_but(&smtp, control).len(), 1);
}

#[tokio::test]
async fn without_smtp_emails_are_written_as_eml_files_in_mail_dir() {
    let db = TestDb::new().await;
    let root = tempfile::tempdir().expect("temp dir");
    let mail_dir = root.path().join("mail").join("outgoing");
    let mut settings = fast_settings(&db, None);
    settings.mail_dir = mail_dir.clone();
    let notify = services::notify_with(settings).await;
    let mut client = services::notify_client(&notify.url);
    let booking = Uuid::new_v4();

    let answer = send(&mut client, request(booking, pb::NotificationKind::ModificationConfirmed, 3)).await;
    let delivery = answer.delivery.expect("delivery");
    assert_eq!(state(&delivery), pb::DeliveryState::Sent);
    let mails = mails_in(&mail_dir);
    assert_eq!(mails.len(), 1, "one .eml file in {}", mail_dir.display());
    let mail = &mails[0];
    assert_eq!(mail.key(), key(booking, "MODIFICATION_CONFIRMED", 3));
    assert_eq!(
        mail.header("Message-ID"),
        Some(format!("<{booking}.MODIFICATION_CONFIRMED.3@booking-platform>").as_str())
    );
    assert_eq!(mail.header("Message-ID"), Some(delivery.message_id.as_str()));
    assert!(mail.raw.contains("was changed and is confirmed"));

    let again = send(&mut client, request(booking, pb::NotificationKind::ModificationConfirmed, 3)).await;
    assert!(again.duplicate);
    assert_eq!(mails_in(&mail_dir).len(), 1, "a duplicate writes no file");
}

#[tokio::test]
async fn a_reader_polling_mail_dir_only_ever_sees_whole_messages() {
    let db = TestDb::new().await;
    let root = tempfile::tempdir().expect("temp dir");
    let mail_dir = root.path().join("mail");
    let mut settings = fast_settings(&db, None);
    settings.mail_dir = mail_dir.clone();
    let notify = services::notify_with(settings).await;
    let mut client = services::notify_client(&notify.url);

    // Someone watching the folder, as fast as it can: every content it reads of each file.
    // (When lettre wrote the files in place, such a reader caught a file between its
    // creation and its first write, empty, in about one run of two.)
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (dir, stop) = (mail_dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen: HashMap<PathBuf, HashSet<String>> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                    if path.extension().is_some_and(|e| e == "eml")
                        && let Ok(raw) = std::fs::read_to_string(&path)
                    {
                        seen.entry(path).or_default().insert(raw);
                    }
                }
                std::thread::yield_now();
            }
            seen
        })
    };
    let booking = Uuid::new_v4();
    for version in 1..=200 {
        let answer = send(&mut client, request(booking, pb::NotificationKind::ModificationConfirmed, version)).await;
        assert_eq!(state(answer.delivery.as_ref().expect("delivery")), pb::DeliveryState::Sent);
    }
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("the reader thread");

    let mails = mails_in(&mail_dir);
    assert_eq!(mails.len(), 200, "one .eml file per delivery");
    for mail in &mails {
        let reads = seen.get(&mail.file).map(|contents| contents.iter().collect::<Vec<_>>()).unwrap_or_default();
        assert!(
            reads.iter().all(|raw| **raw == mail.raw),
            "{} was read before it was whole: {:?}",
            mail.file.display(),
            reads.iter().map(|raw| raw.len()).collect::<Vec<_>>()
        );
    }
    assert!(seen.values().any(|contents| !contents.is_empty()), "the reader saw the files arrive");
    let partial: Vec<_> = std::fs::read_dir(mail_dir.join(".partial")).expect("the .partial folder").collect();
    assert!(partial.is_empty(), "nothing is left half-way: {partial:?}");
}

#[tokio::test]
async fn every_kind_carries_the_key_header_the_derived_message_id_and_text_and_html() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    let (_notify, mut client) = notify(&db, &smtp).await;
    let booking = Uuid::new_v4();
    let kinds = [
        (pb::NotificationKind::BookingPending, "BOOKING_PENDING", "We received your booking request"),
        (pb::NotificationKind::BookingConfirmed, "BOOKING_CONFIRMED", "Your booking is confirmed"),
        (pb::NotificationKind::ModificationRequested, "MODIFICATION_REQUESTED", "We received your booking change"),
        (
            pb::NotificationKind::ModificationConfirmed,
            "MODIFICATION_CONFIRMED",
            "Your booking was changed and is confirmed",
        ),
        (pb::NotificationKind::BookingCancelled, "BOOKING_CANCELLED", "Your booking is cancelled"),
    ];
    for (version, (kind, _, _)) in kinds.iter().enumerate() {
        let delivery = send(&mut client, request(booking, *kind, version as i64 + 1)).await.delivery.expect("delivery");
        assert_eq!(state(&delivery), pb::DeliveryState::Sent);
    }
    let mails = smtp.wait_for(kinds.len(), Duration::from_secs(10)).await;
    for (version, (_, name, subject)) in kinds.iter().enumerate() {
        let version = version as i64 + 1;
        let mail = mails.iter().find(|m| m.kind() == *name).unwrap_or_else(|| panic!("no {name} email"));
        assert_eq!(mail.key(), key(booking, name, version));
        assert_eq!(mail.booking_id(), booking.to_string());
        assert_eq!(mail.version(), version);
        assert_eq!(mail.header("Message-ID"), Some(format!("<{booking}.{name}.{version}@booking-platform>").as_str()));
        assert_eq!(mail.header("Subject"), Some(format!("{subject} (Chez Test)").as_str()));
        assert_eq!(mail.header("X-Sink-Rcpt-To"), Some("ada@example.com"));
        assert_eq!(mail.header("X-Sink-Mail-From"), Some("bookings@localhost"));
        assert_eq!(mail.header("To"), Some("\"Ada Lovelace\" <ada@example.com>"));
        assert!(mail.header("Content-Type").is_some_and(|c| c.starts_with("multipart/alternative")), "{name}");
        assert!(mail.raw.contains("Content-Type: text/plain") && mail.raw.contains("Content-Type: text/html"));
        assert!(mail.raw.contains("2026-12-24 19:30 UTC") && mail.raw.contains("T4, T5"), "{}", mail.raw);
    }
    let modified = mails.iter().find(|m| m.kind() == "MODIFICATION_CONFIRMED").expect("modified confirmation");
    assert!(modified.raw.contains("Your booking was changed and is confirmed."), "{}", modified.raw);
}

#[tokio::test]
async fn invalid_requests_name_each_wrong_field_and_change_nothing() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    let (_notify, mut client) = notify(&db, &smtp).await;
    let booking = Uuid::new_v4();

    type Edit = fn(&mut pb::SendOnceRequest);
    let cases: [(&str, Edit); 12] = [
        ("booking_id", |r| r.booking_id = "booking-1".into()),
        ("kind", |r| r.kind = pb::NotificationKind::Unspecified.into()),
        ("kind", |r| r.kind = 42),
        ("version", |r| r.version = 0),
        ("recipient", |r| r.recipient = None),
        ("recipient.email", |r| r.recipient.as_mut().unwrap().email = "ada.example.com".into()),
        ("recipient.name", |r| r.recipient.as_mut().unwrap().name = "n".repeat(201)),
        ("details", |r| r.details = None),
        ("details.start_time", |r| r.details.as_mut().unwrap().start_time = None),
        ("details.party_size", |r| r.details.as_mut().unwrap().party_size = 0),
        ("details.notes", |r| r.details.as_mut().unwrap().notes = "n".repeat(2001)),
        ("details.table_ids", |r| r.details.as_mut().unwrap().table_ids = (0..51).map(|i| format!("T{i}")).collect()),
    ];
    for (field, edit) in cases {
        let mut request = confirmed(booking);
        edit(&mut request);
        let status = client.send_once(request).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(violated_fields(&status), vec![field.to_string()], "{status:?}");
    }
    let mut everything = confirmed(booking);
    everything.version = -1;
    everything.recipient = Some(pb::Recipient { email: String::new(), name: "x\ny".into() });
    let status = client.send_once(everything).await.expect_err("invalid");
    assert_eq!(violated_fields(&status), vec!["version", "recipient.email", "recipient.name"]);

    let listed = client
        .list_deliveries(pb::ListDeliveriesRequest { booking_id: booking.to_string() })
        .await
        .expect("list")
        .into_inner();
    assert!(listed.deliveries.is_empty(), "nothing was recorded");

    let bad_get = pb::GetDeliveryRequest { booking_id: "x".into(), kind: 0, version: 0 };
    let status = client.get_delivery(bad_get).await.expect_err("invalid get");
    assert_eq!(violated_fields(&status), vec!["booking_id", "kind", "version"]);
    let absent = pb::GetDeliveryRequest {
        booking_id: booking.to_string(),
        kind: pb::NotificationKind::BookingPending.into(),
        version: 1,
    };
    assert_eq!(client.get_delivery(absent).await.expect_err("absent").code(), Code::NotFound);
    let status =
        client.list_deliveries(pb::ListDeliveriesRequest { booking_id: String::new() }).await.expect_err("bad");
    assert_eq!(violated_fields(&status), vec!["booking_id"]);

    let control = drained(&client, &smtp).await;
    assert!(mails_but(&smtp, control).is_empty());
}

#[tokio::test]
async fn list_deliveries_shows_a_bookings_emails_oldest_first() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    let (_notify, mut client) = notify(&db, &smtp).await;
    let booking = Uuid::new_v4();
    let other = Uuid::new_v4();
    send(&mut client, request(booking, pb::NotificationKind::BookingPending, 1)).await;
    send(&mut client, request(booking, pb::NotificationKind::BookingConfirmed, 1)).await;
    send(&mut client, request(other, pb::NotificationKind::BookingConfirmed, 1)).await;
    let mut cancelled = request(booking, pb::NotificationKind::BookingCancelled, 2);
    cancelled.suppress = true;
    send(&mut client, cancelled).await;

    let listed = client
        .list_deliveries(pb::ListDeliveriesRequest { booking_id: booking.to_string() })
        .await
        .expect("list")
        .into_inner()
        .deliveries;
    let seen: Vec<(i32, i64, i32)> = listed.iter().map(|d| (d.kind, d.version, d.state)).collect();
    assert_eq!(
        seen,
        vec![
            (pb::NotificationKind::BookingPending.into(), 1, pb::DeliveryState::Sent.into()),
            (pb::NotificationKind::BookingConfirmed.into(), 1, pb::DeliveryState::Sent.into()),
            (pb::NotificationKind::BookingCancelled.into(), 2, pb::DeliveryState::Suppressed.into()),
        ]
    );
    assert!(listed.iter().all(|d| d.booking_id == booking.to_string() && d.requested_at.is_some()));
    assert!(listed.windows(2).all(|w| {
        let (a, b) = (w[0].requested_at.expect("time"), w[1].requested_at.expect("time"));
        (a.seconds, a.nanos) <= (b.seconds, b.nanos)
    }));
}

#[tokio::test]
async fn staff_can_send_and_read_a_delivery_with_grpcurl() {
    let db = TestDb::new().await;
    let smtp = SmtpSink::start().await;
    let (notify, _client) = notify(&db, &smtp).await;
    let addr = notify.addr.to_string();
    let booking = Uuid::new_v4();
    let body = serde_json::json!({
        "bookingId": booking.to_string(),
        "kind": "NOTIFICATION_KIND_BOOKING_CANCELLED",
        "version": 4,
        "recipient": { "email": "ada@example.com", "name": "Ada" },
        "details": { "restaurantName": "Chez Test", "startTime": "2026-12-24T19:30:00Z", "duration": "5400s", "partySize": 2 }
    });
    let answer = support::grpcurl::call(&addr, "notify.v1.NotifyService/SendOnce", &body).await;
    assert_eq!(answer["delivery"]["state"], "DELIVERY_STATE_SENT", "{answer}");
    assert_eq!(answer["delivery"]["messageId"], format!("<{booking}.BOOKING_CANCELLED.4@booking-platform>"));
    let read = support::grpcurl::call(
        &addr,
        "notify.v1.NotifyService/GetDelivery",
        &serde_json::json!({ "bookingId": booking.to_string(), "kind": "NOTIFICATION_KIND_BOOKING_CANCELLED", "version": 4 }),
    )
    .await;
    assert_eq!(read["delivery"]["attempts"], 1);
    assert_eq!(smtp.wait_for(1, Duration::from_secs(5)).await[0].key(), key(booking, "BOOKING_CANCELLED", 4));
}
