//! Faults injected into the whole stack (all three services, real PostgreSQL, a real SMTP
//! server, real processes where the fault needs one), and the concurrency a guest's retrying
//! app produces. Each test asserts what a user sees: the answers, the bookings and the
//! mails at the SMTP server, exactly once each.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform::proto::{
    booking::v1::{self as pb, booking_service_client::BookingServiceClient},
    timestamp,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};
use support::{
    eventually,
    smtp::Mode,
    stack::{Options, RESTAURANT, Stack, create_request, edit_request, get_booking, slot},
};
use tonic::Code;

type Client = BookingServiceClient<platform::grpc::Channel>;

async fn wait_status(client: &Client, id: &str, status: pb::BookingStatus, version: i64, within: Duration) {
    let what = format!("booking {id} {status:?} at version {version}");
    eventually(within, &what, || {
        let mut client = client.clone();
        async move {
            let booking = get_booking(&mut client, id).await;
            (booking.status == status as i32 && booking.version == version).then_some(())
        }
    })
    .await
}

fn result_of(answer: &pb::EditBookingResponse) -> pb::InlineResult {
    answer.inline_attempt.as_ref().and_then(|a| pb::InlineResult::try_from(a.result).ok()).expect("inline result")
}

async fn create_confirmed(stack: &Stack, start: std::time::SystemTime, party: i32) -> pb::Booking {
    let answer = stack.booking().create_booking(create_request(start, party)).await.expect("create").into_inner();
    assert_eq!(answer.outcome, pb::Outcome::Confirmed as i32, "{answer:?}");
    let booking = answer.booking.expect("booking");
    stack.wait_for_mail(&booking.id, "BOOKING_CONFIRMED", 1).await;
    booking
}

#[tokio::test]
async fn assign_svc_killed_an_edit_answers_pending_at_once_and_confirms_once_it_is_back() {
    let mut stack = Stack::start(Options { assign_process: true, ..Default::default() }).await;
    let client = stack.booking();
    let booking = create_confirmed(&stack, slot(1, 19), 2).await;
    let id = booking.id.clone();

    stack.assign.process().kill();
    let mut edit = edit_request(&id);
    edit.start_time = Some(timestamp(slot(1, 21)));
    let started = Instant::now();
    let answer = client.clone().edit_booking(edit).await.expect("the edit succeeds without assign-svc").into_inner();
    let took = started.elapsed();
    // A dead assign-svc refuses the connection: the edit does not wait for the inline
    // timeout (800 ms), let alone the caller's deadline.
    assert!(took < Duration::from_millis(800), "answered after {took:?}");
    assert_eq!(answer.outcome, pb::Outcome::Pending as i32, "{answer:?}");
    assert_eq!(result_of(&answer), pb::InlineResult::Unavailable);
    stack.wait_for_mail(&id, "MODIFICATION_REQUESTED", 2).await;

    // Back on the same address: booking-svc's Reassign stream reconnects and resubmits.
    stack.assign.process().restart().await;
    wait_status(&client, &id, pb::BookingStatus::Confirmed, 2, Duration::from_secs(20)).await;
    stack.settle(&[&id]).await;
    assert_eq!(
        stack.mails_for(&id),
        vec!["BOOKING_CONFIRMED:1", "MODIFICATION_CONFIRMED:2", "MODIFICATION_REQUESTED:2"]
    );
}

#[tokio::test]
async fn notify_svc_down_while_a_pending_version_is_superseded_mails_only_the_newest_confirmation() {
    let mut stack = Stack::start(Options { notify_process: true, ..Default::default() }).await;
    let client = stack.booking();
    let holder = create_confirmed(&stack, slot(1, 19), 4).await;
    let booking = create_confirmed(&stack, slot(1, 21), 2).await;
    let id = booking.id.clone();
    // Killed at rest: its ledger has recorded both confirmations as sent (a kill between the
    // SMTP server's acceptance and that record sends again after the lease, by design).
    stack.settle(&[&id, &holder.id]).await;

    stack.notify.process().kill();
    let mut to_full = edit_request(&id);
    to_full.start_time = Some(timestamp(slot(1, 19)));
    let v2 = client.clone().edit_booking(to_full).await.expect("edit v2").into_inner();
    assert_eq!((v2.outcome, result_of(&v2)), (pb::Outcome::Pending as i32, pb::InlineResult::NoCapacity));
    // The outbox tries to mail version 2's request while notify-svc is down.
    eventually(Duration::from_secs(15), "the outbox to have tried version 2's email", || async {
        let sql = format!(
            "SELECT count(*) FROM booking.outbox WHERE booking_id = '{id}' AND version = 2 AND last_error IS NOT NULL"
        );
        (stack.count(&sql).await == 1).then_some(())
    })
    .await;
    let mut to_free = edit_request(&id);
    to_free.start_time = Some(timestamp(slot(1, 22)));
    let v3 = client.clone().edit_booking(to_free).await.expect("edit v3").into_inner();
    assert_eq!(v3.outcome, pb::Outcome::Confirmed as i32, "{v3:?}");

    stack.notify.process().restart().await;
    stack.settle(&[&id, &holder.id]).await;
    assert_eq!(stack.mails_for(&id), vec!["BOOKING_CONFIRMED:1", "MODIFICATION_CONFIRMED:3"]);
}

#[tokio::test]
async fn thirty_concurrent_retries_of_one_create_and_one_edit_make_one_booking_one_version_one_mail_each() {
    let stack = Stack::start(Options { tables: vec![("t1", 4), ("t2", 6)], ..Default::default() }).await;
    let client = stack.booking();

    let mut create = create_request(slot(1, 19), 4);
    create.idempotency_key = "guest-app-create-1".into();
    let creates: Vec<_> = (0..30)
        .map(|_| {
            let (mut client, request) = (client.clone(), create.clone());
            tokio::spawn(async move { client.create_booking(request).await.map(|r| r.into_inner()) })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for call in creates {
        let answer = call.await.expect("task").expect("every retry is answered");
        ids.insert(answer.booking.expect("booking").id);
    }
    assert_eq!(ids.len(), 1, "one booking for thirty retries: {ids:?}");
    let id = ids.into_iter().next().expect("the booking");
    let listed = client
        .clone()
        .list_bookings(pb::ListBookingsRequest {
            restaurant_id: RESTAURANT.into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .bookings;
    assert_eq!(listed.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    stack.wait_for_mail(&id, "BOOKING_CONFIRMED", 1).await;

    let mut edit = edit_request(&id);
    edit.party_size = Some(6);
    edit.idempotency_key = "guest-app-edit-1".into();
    let edits: Vec<_> = (0..30)
        .map(|_| {
            let (mut client, request) = (client.clone(), edit.clone());
            tokio::spawn(async move { client.edit_booking(request).await.map(|r| r.into_inner()) })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for call in edits {
        let answer = call.await.expect("task").expect("every retry is answered");
        versions.insert(answer.booking.expect("booking").version);
    }
    assert_eq!(versions, BTreeSet::from([2]), "one new version for thirty retries");

    let mut other = edit.clone();
    other.party_size = Some(5);
    let refused = client.clone().edit_booking(other).await.expect_err("the key with other parameters");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    stack.wait_for_mail(&id, "MODIFICATION_CONFIRMED", 2).await;

    let cancel = pb::CancelBookingRequest {
        booking_id: id.clone(),
        idempotency_key: "guest-app-cancel-1".into(),
        ..Default::default()
    };
    let cancels: Vec<_> = (0..30)
        .map(|_| {
            let (mut client, request) = (client.clone(), cancel.clone());
            tokio::spawn(async move { client.cancel_booking(request).await.map(|r| r.into_inner()) })
        })
        .collect();
    for call in cancels {
        let answer = call.await.expect("task").expect("every retry is answered");
        assert_eq!(answer.booking.map(|b| b.status), Some(pb::BookingStatus::Cancelled as i32));
    }
    let mut other_cancel = cancel.clone();
    other_cancel.suppress_emails = true;
    let refused = client.clone().cancel_booking(other_cancel).await.expect_err("the key with other parameters");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    stack.settle(&[&id]).await;
    assert_eq!(stack.mails_for(&id), vec!["BOOKING_CANCELLED:2", "BOOKING_CONFIRMED:1", "MODIFICATION_CONFIRMED:2"]);
    let cancelled = stack
        .count(&format!("SELECT count(*) FROM booking.history WHERE booking_id = '{id}' AND type = 'CANCELLED'"))
        .await;
    assert_eq!(cancelled, 1, "one cancel for thirty retries");
}

#[tokio::test]
async fn a_table_added_to_the_floor_plan_wakes_a_pending_booking_at_once() {
    // Background retries back off for 12.5 s or more here: only the floor plan's new table
    // can seat the booking within the few seconds the test waits.
    let stack = Stack::start(Options { reassign_backoff_ms: (25_000, 60_000), ..Default::default() }).await;
    let client = stack.booking();
    let holder = create_confirmed(&stack, slot(1, 19), 4).await;

    let answer = client.clone().create_booking(create_request(slot(1, 19), 3)).await.expect("create").into_inner();
    assert_eq!(answer.outcome, pb::Outcome::Pending as i32, "{answer:?}");
    let id = answer.booking.expect("booking").id;
    stack.wait_for_mail(&id, "BOOKING_PENDING", 1).await;

    let added = Instant::now();
    stack.put_floor_plan(RESTAURANT, &[("t1", 4), ("t2", 4)]).await;
    wait_status(&client, &id, pb::BookingStatus::Confirmed, 1, Duration::from_secs(5)).await;
    println!("a pending booking was seated {:?} after a table was added", added.elapsed());
    assert_eq!(get_booking(&mut client.clone(), &id).await.table_ids, vec!["t2"]);
    stack.settle(&[&id, &holder.id]).await;
    assert_eq!(stack.mails_for(&id), vec!["BOOKING_CONFIRMED:1", "BOOKING_PENDING:1"]);
}

#[tokio::test]
async fn a_party_seated_at_combined_tables_gets_them_back_on_cancel() {
    let stack = Stack::start(Options::default()).await;
    stack.put_floor_plan_with_groups(RESTAURANT, &[("c1", 2, "window"), ("c2", 2, "window"), ("t9", 2, "")]).await;
    let client = stack.booking();

    let party = create_confirmed(&stack, slot(1, 19), 4).await;
    let mut tables = party.table_ids.clone();
    tables.sort();
    assert_eq!(tables, ["c1", "c2"], "four guests need the window group's two tables together");
    let answer = client.clone().create_booking(create_request(slot(1, 19), 4)).await.expect("create").into_inner();
    assert_eq!(answer.outcome, pb::Outcome::Pending as i32, "the combined tables are taken: {answer:?}");
    let waiting = answer.booking.expect("booking").id;

    client
        .clone()
        .cancel_booking(pb::CancelBookingRequest { booking_id: party.id.clone(), ..Default::default() })
        .await
        .expect("cancel");
    // The release frees both tables, and the waiting party of four is seated at them.
    wait_status(&client, &waiting, pb::BookingStatus::Confirmed, 1, Duration::from_secs(20)).await;
    let mut seated = get_booking(&mut client.clone(), &waiting).await.table_ids;
    seated.sort();
    assert_eq!(seated, ["c1", "c2"]);
    stack.settle(&[&party.id, &waiting]).await;
    assert_eq!(stack.mails_for(&party.id), vec!["BOOKING_CANCELLED:1", "BOOKING_CONFIRMED:1"]);
    assert_eq!(stack.mails_for(&waiting), vec!["BOOKING_CONFIRMED:1", "BOOKING_PENDING:1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smtp_server_down_and_back_while_edits_run_loses_no_mail_and_sends_none_twice() {
    const BOOKINGS: usize = 8;
    let tables: Vec<(&'static str, i32)> =
        (0..BOOKINGS).map(|n| (&*Box::leak(format!("t{n}").into_boxed_str()), 8)).collect();
    let mut stack = Stack::start(Options { tables, ..Default::default() }).await;
    stack.smtp.set_mode(Mode::Accept);
    let client = stack.booking();
    let mut ids = Vec::new();
    for n in 0..BOOKINGS {
        ids.push(create_confirmed(&stack, slot(1, 8 + n as u64), 2).await.id);
    }

    // Four clients edit their bookings over and over; the SMTP server goes down for a while
    // in the middle, then comes back. Every answer is kept: (version, outcome).
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..4 {
        let (client, mine, running) = (client.clone(), ids[c * 2..c * 2 + 2].to_vec(), running.clone());
        clients.spawn(async move {
            let mut answered: Vec<(String, i64, i32)> = Vec::new();
            let mut n = 0;
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                let id = &mine[n % 2];
                let mut edit = edit_request(id);
                edit.notes = Some(format!("edit {n}"));
                let answer = client.clone().edit_booking(edit).await.expect("edit").into_inner();
                let booking = answer.booking.expect("booking");
                answered.push((id.clone(), booking.version, answer.outcome));
                n += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            answered
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stack.smtp.stop();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stack.smtp.start_again();
    tokio::time::sleep(Duration::from_millis(700)).await;
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut answered: BTreeMap<String, BTreeMap<i64, i32>> = BTreeMap::new();
    while let Some(done) = clients.join_next().await {
        for (id, version, outcome) in done.expect("client") {
            answered.entry(id).or_default().insert(version, outcome);
        }
    }
    stack.smtp.set_mode(Mode::Accept);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    stack.settle(&refs).await;

    for (key, count) in stack.smtp.counts_by_key() {
        assert_eq!(count, 1, "{key} was mailed {count} times");
    }
    for id in &ids {
        let booking = get_booking(&mut client.clone(), id).await;
        assert_eq!(booking.status, pb::BookingStatus::Confirmed as i32);
        let versions = &answered[id];
        assert_eq!(versions.keys().next_back(), Some(&booking.version), "the last answer is the booking now");
        let mails = stack.mails_for(id);
        let last = format!("MODIFICATION_CONFIRMED:{}", booking.version);
        assert!(mails.contains(&last), "{id}: the final confirmation {last} is missing from {mails:?}");
        for mail in &mails {
            let (kind, version) = mail.split_once(':').expect("KIND:version");
            let version: i64 = version.parse().expect("version");
            let allowed = version == 1
                || match versions.get(&version) {
                    Some(o) if *o == pb::Outcome::Confirmed as i32 => kind == "MODIFICATION_CONFIRMED",
                    Some(o) if *o == pb::Outcome::Pending as i32 => kind.starts_with("MODIFICATION_"),
                    _ => false,
                };
            assert!(allowed, "{id}: {mail} was mailed, but no answer allows it ({versions:?})");
        }
    }
    let edits: usize = answered.values().map(BTreeMap::len).sum();
    println!("{edits} edits while the SMTP server went down for 1.5 s and came back");
}
