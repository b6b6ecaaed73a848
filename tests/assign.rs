//! assign-svc as its clients meet it: floor plans, exclusive table assignment under
//! concurrency, deadlines, versions, and the Reassign stream of background jobs. Real
//! PostgreSQL (a fresh database per test), real gRPC over loopback.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform::{
    proto::{
        assign::v1::{self as pb, assign_service_client::AssignServiceClient, reassign_request::Command},
        duration, system_time, timestamp,
    },
    status::violated_fields,
};
use proptest::prelude::*;
use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant, SystemTime},
};
use support::{db::TestDb, eventually, process, services};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use uuid::Uuid;

type Client = AssignServiceClient<platform::grpc::Channel>;

fn table(id: &str, seats: i32, group: &str) -> pb::Table {
    pb::Table { id: id.into(), seats, combine_group: group.into() }
}

async fn put_plan(client: &mut Client, restaurant: &str, tables: Vec<pb::Table>) -> pb::FloorPlan {
    client
        .put_floor_plan(pb::PutFloorPlanRequest { restaurant_id: restaurant.into(), tables })
        .await
        .expect("floor plan stored")
        .into_inner()
        .floor_plan
        .expect("plan in the answer")
}

/// Tomorrow at a whole hour: far enough ahead that no job gives up during a test.
fn tomorrow() -> SystemTime {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs((now / 3600 + 24) * 3600)
}

/// The UTC midnight starting the day after tomorrow, plus `hours`.
fn day_after_tomorrow_at(hours: u64) -> SystemTime {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs((now / 86_400 + 2) * 86_400 + hours * 3600)
}

fn request(
    booking: Uuid,
    version: i64,
    restaurant: &str,
    party: i32,
    start: SystemTime,
    minutes: u64,
) -> pb::AssignRequest {
    pb::AssignRequest {
        booking_id: booking.to_string(),
        version,
        restaurant_id: restaurant.into(),
        party_size: party,
        start_time: Some(timestamp(start)),
        duration: Some(duration(Duration::from_secs(minutes * 60))),
    }
}

async fn assign(client: &mut Client, request: pb::AssignRequest) -> Result<pb::AssignResponse, tonic::Status> {
    client.assign(request).await.map(|r| r.into_inner())
}

fn outcome(response: &pb::AssignResponse) -> pb::AssignOutcome {
    pb::AssignOutcome::try_from(response.outcome).expect("known outcome")
}

fn tables_of(response: &pb::AssignResponse) -> Vec<String> {
    response.assignment.as_ref().map(|a| a.table_ids.clone()).unwrap_or_default()
}

/// One reserved table as stored.
#[derive(Clone, Debug)]
struct Reservation {
    table_id: String,
    booking_id: Uuid,
    version: i64,
    start: SystemTime,
    end: SystemTime,
}

async fn reservations(db: &TestDb, restaurant: &str) -> Vec<Reservation> {
    db.client()
        .await
        .query(
            "SELECT table_id, booking_id, version, lower(during) AS s, upper(during) AS e FROM assign.reservations \
             WHERE restaurant_id = $1 ORDER BY table_id, lower(during)",
            &[&restaurant],
        )
        .await
        .expect("read reservations")
        .iter()
        .map(|row| Reservation {
            table_id: row.get(0),
            booking_id: row.get(1),
            version: row.get(2),
            start: row.get(3),
            end: row.get(4),
        })
        .collect()
}

/// A Reassign stream as booking-svc holds it.
struct Stream {
    commands: mpsc::Sender<pb::ReassignRequest>,
    updates: tonic::Streaming<pb::ReassignResponse>,
}

impl Stream {
    async fn open(client: &mut Client) -> Self {
        let (commands, receiver) = mpsc::channel(64);
        let updates = client.reassign(ReceiverStream::new(receiver)).await.expect("stream opened").into_inner();
        Self { commands, updates }
    }

    async fn submit(&self, request: pb::AssignRequest) {
        self.commands
            .send(pb::ReassignRequest { command: Some(Command::Submit(request)), ..Default::default() })
            .await
            .expect("stream accepts commands");
    }

    async fn cancel(&self, booking: Uuid) {
        self.commands
            .send(pb::ReassignRequest { command: Some(Command::Cancel(booking.to_string())), ..Default::default() })
            .await
            .expect("stream accepts commands");
    }

    /// The next update, or a panic after `timeout`.
    async fn next(&mut self, timeout: Duration) -> pb::ReassignResponse {
        match tokio::time::timeout(timeout, self.updates.message()).await {
            Ok(Ok(Some(update))) => update,
            Ok(other) => panic!("stream ended: {other:?}"),
            Err(_) => panic!("no update within {timeout:?}"),
        }
    }

    /// The next update about `booking` in `state`, skipping others; panics after `timeout`.
    async fn wait_for(&mut self, booking: Uuid, state: pb::ReassignState, timeout: Duration) -> pb::ReassignResponse {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let update = self.next(left).await;
            if update.booking_id == booking.to_string() && update.state() == state {
                return update;
            }
        }
    }

    /// Asserts that nothing arrives for `quiet`.
    async fn assert_silent(&mut self, quiet: Duration) {
        if let Ok(message) = tokio::time::timeout(quiet, self.updates.message()).await {
            panic!("unexpected message: {message:?}");
        }
    }
}

/// assign-svc whose jobs back off for long (first retry 12.5 to 25 s), so only freed
/// capacity can make them try again within a test.
async fn assign_with_long_backoff(db: &TestDb) -> services::Running {
    let mut settings = assign_svc::Settings::for_database(&db.url);
    settings.reassign_backoff_base_ms = 25_000;
    settings.reassign_backoff_cap_ms = 60_000;
    services::assign_with(settings).await
}

#[tokio::test]
async fn thirty_concurrent_assigns_for_one_table_seat_exactly_one() {
    let db = TestDb::new().await;
    let service = services::assign(&db.url).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, "")]).await;
    let start = tomorrow();

    let calls: Vec<_> = (0..30u64)
        .map(|i| {
            let mut client = client.clone();
            // Slots shifted by a minute each: every pair overlaps.
            let request = request(Uuid::new_v4(), 1, "bistro", 2, start + Duration::from_secs(60 * i), 90);
            tokio::spawn(async move { assign(&mut client, request).await })
        })
        .collect();
    let mut assigned = 0;
    let mut no_capacity = 0;
    for call in calls {
        let response = call.await.expect("task").expect("no call fails");
        match outcome(&response) {
            pb::AssignOutcome::Assigned => {
                assigned += 1;
                assert_eq!(tables_of(&response), ["t1"]);
            }
            pb::AssignOutcome::NoCapacity => no_capacity += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((assigned, no_capacity), (1, 29));
    assert_eq!(reservations(&db, "bistro").await.len(), 1, "exactly one reservation is stored");
}

#[tokio::test]
async fn a_party_of_six_sits_at_two_tables_of_one_group_but_not_across_groups() {
    let db = TestDb::new().await;
    let service = services::assign(&db.url).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "one-group", vec![table("t1", 4, "main"), table("t2", 4, "main"), table("t3", 2, "")]).await;
    put_plan(&mut client, "two-groups", vec![table("t1", 4, "main"), table("t2", 4, "patio")]).await;
    let start = tomorrow();

    let joined = assign(&mut client, request(Uuid::new_v4(), 1, "one-group", 6, start, 90)).await.expect("answer");
    assert_eq!(outcome(&joined), pb::AssignOutcome::Assigned);
    assert_eq!(tables_of(&joined), ["t1", "t2"]);
    let stored: Vec<String> = reservations(&db, "one-group").await.into_iter().map(|r| r.table_id).collect();
    assert_eq!(stored, ["t1", "t2"]);

    let apart = assign(&mut client, request(Uuid::new_v4(), 1, "two-groups", 6, start, 90)).await.expect("answer");
    assert_eq!(outcome(&apart), pb::AssignOutcome::NoCapacity);
    assert!(apart.assignment.is_none());
    assert!(reservations(&db, "two-groups").await.is_empty());
}

#[tokio::test]
async fn an_assign_with_a_200ms_deadline_behind_a_held_lock_times_out_and_reserves_nothing() {
    let db = TestDb::new().await;
    let service = services::assign(&db.url).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, "")]).await;
    let booking = Uuid::new_v4();

    // Another session holds the reservations table (as a long migration or a stuck
    // transaction would).
    let mut blocker = db.client().await;
    let lock = blocker.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE assign.reservations IN ACCESS EXCLUSIVE MODE").await.expect("lock");

    let mut call = tonic::Request::new(request(booking, 1, "bistro", 2, tomorrow(), 90));
    call.set_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let status = client.assign(call).await.expect_err("the deadline passes");
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(elapsed < Duration::from_millis(400), "answered after {elapsed:?}");
    println!("DEADLINE_EXCEEDED answered after {elapsed:?} for a 200 ms deadline");

    lock.commit().await.expect("release the lock");
    // Whatever the cut-off Assign left waiting behind the lock has run its course.
    db.wait_until_quiet().await;
    assert!(reservations(&db, "bistro").await.is_empty(), "nothing reserved after the lock is gone");

    // The service is healthy afterwards and the booking can still be seated.
    let retry = assign(&mut client, request(booking, 1, "bistro", 2, tomorrow(), 90)).await.expect("answer");
    assert_eq!(outcome(&retry), pb::AssignOutcome::Assigned);
}

#[tokio::test]
async fn an_assign_stuck_in_the_database_holds_up_its_own_day_of_the_restaurant_and_no_other() {
    let db = TestDb::new().await;
    let service = services::assign(&db.url).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, ""), table("t2", 4, "")]).await;
    let evening = day_after_tomorrow_at(19);
    let stuck = Uuid::new_v4();
    let first = assign(&mut client, request(stuck, 1, "bistro", 2, evening, 90)).await.expect("answer");
    assert_eq!(outcome(&first), pb::AssignOutcome::Assigned);

    // Another session holds the booking's assignment row (as a stuck transaction would), so
    // the Assign of its next version waits in the middle of its transaction.
    let mut blocker = db.client().await;
    let hold = blocker.transaction().await.expect("begin");
    hold.execute("SELECT 1 FROM assign.bookings WHERE booking_id = $1 FOR UPDATE", &[&stuck]).await.expect("lock");
    let waiting = {
        let mut client = client.clone();
        let mut call = tonic::Request::new(request(stuck, 2, "bistro", 2, evening + Duration::from_secs(1800), 90));
        call.set_timeout(Duration::from_secs(20));
        tokio::spawn(async move { client.assign(call).await.map(|r| r.into_inner()) })
    };
    db.wait_for_lock_waiters(1).await;
    assert!(!waiting.is_finished(), "the stuck Assign waits for the row");

    // Another day of the same restaurant is seated meanwhile.
    let mut call =
        tonic::Request::new(request(Uuid::new_v4(), 1, "bistro", 4, evening + Duration::from_secs(86_400), 90));
    call.set_timeout(Duration::from_secs(3));
    let started = Instant::now();
    let other_day = client.assign(call).await.expect("another day is not held up").into_inner();
    assert_eq!(outcome(&other_day), pb::AssignOutcome::Assigned);
    println!("an Assign for another day answered in {:?} while one was stuck", started.elapsed());

    // An overlapping slot of the same day waits its turn, then sees what the stuck one wrote.
    let same_day = {
        let mut client = client.clone();
        let mut call =
            tonic::Request::new(request(Uuid::new_v4(), 1, "bistro", 4, evening + Duration::from_secs(3600), 90));
        call.set_timeout(Duration::from_secs(20));
        tokio::spawn(async move { client.assign(call).await.map(|r| r.into_inner()) })
    };
    db.wait_for_lock_waiters(2).await;
    assert!(!same_day.is_finished(), "an Assign for the same day waits for the one under way");

    hold.commit().await.expect("release the row");
    let moved = waiting.await.expect("task").expect("the stuck Assign ends");
    assert_eq!(outcome(&moved), pb::AssignOutcome::Assigned);
    assert_eq!(tables_of(&moved), ["t1"], "version 2 keeps the best table");
    let same_day = same_day.await.expect("task").expect("the waiting Assign ends");
    assert_eq!(outcome(&same_day), pb::AssignOutcome::Assigned);
    assert_eq!(tables_of(&same_day), ["t2"], "seated beside version 2, without a conflict");

    let stored = reservations(&db, "bistro").await;
    let held: Vec<(&str, i64)> = stored.iter().map(|r| (r.table_id.as_str(), r.version)).collect();
    assert_eq!(held, [("t1", 2), ("t1", 1), ("t2", 1)], "version 1 of the stuck booking is gone: {stored:?}");
}

#[tokio::test]
async fn an_assign_svc_frozen_inside_its_transaction_holds_the_day_no_longer_than_its_deadline() {
    let db = TestDb::new().await;
    let frozen = process::ServiceProcess::start_serving("assign-svc", &[("DATABASE_URL", &db.url)]).await;
    let other = services::assign(&db.url).await;
    let mut client = services::assign_client(&other.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, ""), table("t2", 4, "")]).await;
    let evening = day_after_tomorrow_at(19);
    let stuck = Uuid::new_v4();
    let first = assign(&mut client, request(stuck, 1, "bistro", 2, evening, 90)).await.expect("answer");
    assert_eq!(tables_of(&first), ["t1"]);

    // The frozen replica's Assign of version 2 starts its transaction and waits for the
    // booking's row, held by another session; the replica is frozen (SIGSTOP) meanwhile,
    // and the row let go: its transaction now sits idle, holding the evening's turn.
    let mut blocker = db.client().await;
    let hold = blocker.transaction().await.expect("begin");
    hold.execute("SELECT 1 FROM assign.bookings WHERE booking_id = $1 FOR UPDATE", &[&stuck]).await.expect("lock");
    let waiting = {
        let mut client = services::assign_client(&frozen.url);
        let mut call = tonic::Request::new(request(stuck, 2, "bistro", 2, evening + Duration::from_secs(1800), 90));
        call.set_timeout(Duration::from_millis(1500));
        tokio::spawn(async move { client.assign(call).await.map(|r| r.into_inner()) })
    };
    db.wait_for_lock_waiters(1).await;
    frozen.freeze();
    hold.commit().await.expect("let the row go");

    // The other replica seats an overlapping booking once PostgreSQL has ended the frozen
    // transaction, which may not outlive its caller's deadline of 1.5 s.
    let mut call =
        tonic::Request::new(request(Uuid::new_v4(), 1, "bistro", 2, evening + Duration::from_secs(3600), 90));
    call.set_timeout(Duration::from_secs(10));
    let started = Instant::now();
    let seated = client.assign(call).await.expect("the evening is not held for the frozen replica").into_inner();
    let waited = started.elapsed();
    assert_eq!(outcome(&seated), pb::AssignOutcome::Assigned);
    assert_eq!(tables_of(&seated), ["t2"], "t1 still holds version 1 of the stuck booking");
    assert!(waited < Duration::from_secs(5), "waited {waited:?} for a transaction whose deadline was 1.5 s");
    println!("seated after {waited:?} beside a replica frozen inside its transaction");
    // tonic ends a call whose own timeout expired as CANCELLED ("Timeout expired").
    let status = waiting.await.expect("task").expect_err("the frozen replica's caller gave up");
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");

    // Thawed, the replica serves again, and its cut-off transaction left nothing behind.
    frozen.thaw();
    let mut thawed = services::assign_client(&frozen.url);
    let next_day = request(Uuid::new_v4(), 1, "bistro", 2, evening + Duration::from_secs(86_400), 90);
    let answer = assign(&mut thawed, next_day).await.expect("the thawed replica answers");
    assert_eq!(outcome(&answer), pb::AssignOutcome::Assigned);
    let stored = reservations(&db, "bistro").await;
    let held: Vec<(&str, Uuid, i64)> = stored.iter().map(|r| (r.table_id.as_str(), r.booking_id, r.version)).collect();
    assert_eq!(held[0], ("t1", stuck, 1), "{stored:?}");
    assert_eq!(held.len(), 3, "{stored:?}");
    assert!(held.iter().all(|(_, booking, version)| *booking != stuck || *version == 1), "{stored:?}");
}

#[tokio::test]
async fn assign_is_idempotent_per_version_swaps_tables_atomically_and_refuses_older_versions() {
    let db = TestDb::new().await;
    let service = services::assign(&db.url).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t2", 2, ""), table("t4", 4, ""), table("t6", 6, "")]).await;
    let start = tomorrow();
    let booking = Uuid::new_v4();

    let first = assign(&mut client, request(booking, 1, "bistro", 2, start, 90)).await.expect("answer");
    assert_eq!(tables_of(&first), ["t2"]);
    let again = assign(&mut client, request(booking, 1, "bistro", 2, start, 90)).await.expect("answer");
    assert_eq!(again, first, "the same version gets the same answer");
    assert_eq!(reservations(&db, "bistro").await.len(), 1, "and nothing more is reserved");

    // Version 2 for four guests moves to t4; t2 is free again in the same transaction.
    let second = assign(&mut client, request(booking, 2, "bistro", 4, start, 90)).await.expect("answer");
    assert_eq!((tables_of(&second), second.assignment.as_ref().map(|a| a.version)), (vec!["t4".to_string()], Some(2)));
    let stored = reservations(&db, "bistro").await;
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].table_id.as_str(), stored[0].booking_id, stored[0].version), ("t4", booking, 2));
    let other = assign(&mut client, request(Uuid::new_v4(), 1, "bistro", 2, start, 90)).await.expect("answer");
    assert_eq!(tables_of(&other), ["t2"], "the swapped-away table went to another booking");

    let older = assign(&mut client, request(booking, 1, "bistro", 2, start, 90)).await.expect_err("older version");
    assert_eq!(older.code(), Code::Aborted);

    // Version 3 for eight finds nothing: version 2 keeps its table, and is now too old.
    let third = assign(&mut client, request(booking, 3, "bistro", 8, start, 90)).await.expect("answer");
    assert_eq!(outcome(&third), pb::AssignOutcome::NoCapacity);
    let kept: Vec<(String, i64)> = reservations(&db, "bistro")
        .await
        .into_iter()
        .filter(|r| r.booking_id == booking)
        .map(|r| (r.table_id, r.version))
        .collect();
    assert_eq!(kept, [("t4".to_string(), 2)]);
    let stale = assign(&mut client, request(booking, 2, "bistro", 4, start, 90)).await.expect_err("superseded");
    assert_eq!(stale.code(), Code::Aborted);

    // Version 4 for six swaps t4 for t6; version 5, half an hour later, keeps t6: its own
    // older reservation does not block it.
    let fourth = assign(&mut client, request(booking, 4, "bistro", 6, start, 90)).await.expect("answer");
    assert_eq!(tables_of(&fourth), ["t6"]);
    let later = start + Duration::from_secs(1800);
    let fifth = assign(&mut client, request(booking, 5, "bistro", 6, later, 90)).await.expect("answer");
    assert_eq!(tables_of(&fifth), ["t6"]);
    let mine: Vec<(String, i64, SystemTime)> = reservations(&db, "bistro")
        .await
        .into_iter()
        .filter(|r| r.booking_id == booking)
        .map(|r| (r.table_id, r.version, r.start))
        .collect();
    assert_eq!(mine, [("t6".to_string(), 5, later)]);
}

/// 16 clients each edit their own booking 25 times at once (party and time change, so
/// most calls swap tables), in restaurants of 40 tables; returns the sorted latencies.
async fn sixteen_editing_clients(db: &TestDb, client: &Client, restaurants: &[String]) -> Vec<Duration> {
    let start = tomorrow();
    for restaurant in restaurants {
        let plan =
            (0..40).map(|i| table(&format!("t{i:02}"), 2 + (i % 4) * 2, ["", "a", "b"][i as usize % 3])).collect();
        put_plan(&mut client.clone(), restaurant, plan).await;
    }
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let mut client = client.clone();
            let restaurant = restaurants[i % restaurants.len()].clone();
            tokio::spawn(async move {
                let booking = Uuid::new_v4();
                let mut latencies = Vec::new();
                for version in 1..=25i64 {
                    let party = 1 + (version % 4) as i32;
                    let slot = start + Duration::from_secs((version % 3) as u64 * 900);
                    let began = Instant::now();
                    let answer = assign(&mut client, request(booking, version, &restaurant, party, slot, 90)).await;
                    latencies.push(began.elapsed());
                    let answer = answer.expect("no call fails");
                    assert_eq!(outcome(&answer), pb::AssignOutcome::Assigned, "40 tables seat 16 bookings");
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for handle in clients {
        latencies.extend(handle.await.expect("client"));
    }
    latencies.sort();
    for restaurant in restaurants {
        let stored = reservations(db, restaurant).await;
        let mut per_table: BTreeMap<&str, usize> = BTreeMap::new();
        for reservation in &stored {
            *per_table.entry(reservation.table_id.as_str()).or_default() += 1;
        }
        assert!(per_table.values().all(|n| *n == 1), "overlapping slots never share a table: {per_table:?}");
        assert!(stored.iter().all(|r| r.version == 25), "older versions' tables were swapped away");
    }
    latencies
}

fn percentiles(label: &str, latencies: &[Duration]) {
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{label}: {} Assign calls, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        at(0.50),
        at(0.99),
        latencies[latencies.len() - 1]
    );
}

#[tokio::test]
async fn sixteen_clients_editing_at_once_are_all_seated() {
    let db = TestDb::new().await;
    let service = services::assign(&db.url).await;
    let client = services::assign_client(&service.url);
    let spread: Vec<String> = (0..16).map(|i| format!("place-{i}")).collect();
    let latencies = sixteen_editing_clients(&db, &client, &spread).await;
    percentiles("16 clients, 16 restaurants", &latencies);
    let latencies = sixteen_editing_clients(&db, &client, &["crowded".to_string()]).await;
    percentiles("16 clients, one restaurant", &latencies);
}

#[tokio::test]
async fn release_frees_the_tables_and_refuses_a_late_retry_of_the_released_booking() {
    let db = TestDb::new().await;
    let service = services::assign(&db.url).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, ""), table("t2", 4, "")]).await;
    let start = tomorrow();
    let booking = Uuid::new_v4();
    let six = assign(&mut client, request(booking, 1, "bistro", 3, start, 90)).await.expect("answer");
    assert_eq!(tables_of(&six), ["t1"]);

    let released = client.release(pb::ReleaseRequest { booking_id: booking.to_string() }).await.expect("released");
    assert_eq!(released.into_inner().released, 1);
    assert!(reservations(&db, "bistro").await.is_empty());

    let late = assign(&mut client, request(booking, 1, "bistro", 3, start, 90)).await.expect_err("late retry");
    assert_eq!(late.code(), Code::Aborted, "{late:?}");
    assert!(reservations(&db, "bistro").await.is_empty(), "the released booking got nothing back");

    let other = assign(&mut client, request(Uuid::new_v4(), 1, "bistro", 4, start, 90)).await.expect("answer");
    assert_eq!(tables_of(&other), ["t1"]);
    let again = client.release(pb::ReleaseRequest { booking_id: booking.to_string() }).await.expect("released");
    assert_eq!(again.into_inner().released, 0);
}

#[tokio::test]
async fn a_waiting_job_is_assigned_within_a_second_of_a_release_even_after_a_long_backoff() {
    let db = TestDb::new().await;
    let service = assign_with_long_backoff(&db).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, "")]).await;
    let start = tomorrow();
    let holder = Uuid::new_v4();
    let waiting = Uuid::new_v4();
    assign(&mut client, request(holder, 1, "bistro", 4, start, 120)).await.expect("holder seated");

    let mut stream = Stream::open(&mut client).await;
    stream.submit(request(waiting, 1, "bistro", 2, start + Duration::from_secs(1800), 90)).await;
    let retrying = stream.wait_for(waiting, pb::ReassignState::Retrying, Duration::from_secs(5)).await;
    assert_eq!((retrying.version, retrying.attempt), (1, 1));
    assert_eq!(retrying.last_error, "no capacity");
    let next = system_time(&retrying.next_attempt_at.expect("next attempt time")).expect("valid time");
    let backoff = next.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(backoff > Duration::from_secs(10), "next attempt only in {backoff:?}");

    let released = Instant::now();
    client.release(pb::ReleaseRequest { booking_id: holder.to_string() }).await.expect("released");
    let assigned = stream.wait_for(waiting, pb::ReassignState::Assigned, Duration::from_secs(1)).await;
    let latency = released.elapsed();
    println!("ASSIGNED {latency:?} after the release (backoff had {backoff:?} left)");
    let assignment = assigned.assignment.expect("assignment");
    assert_eq!((assignment.version, assignment.table_ids), (1, vec!["t1".to_string()]));
    assert_eq!(assigned.attempt, 2);
    let stored = reservations(&db, "bistro").await;
    assert_eq!(stored.iter().map(|r| r.booking_id).collect::<Vec<_>>(), [waiting]);
}

#[tokio::test]
async fn a_release_on_another_replica_wakes_the_job_and_reaches_this_replicas_stream() {
    let db = TestDb::new().await;
    let here = assign_with_long_backoff(&db).await;
    let there = assign_with_long_backoff(&db).await;
    let mut client_here = services::assign_client(&here.url);
    let mut client_there = services::assign_client(&there.url);
    put_plan(&mut client_there, "bistro", vec![table("t1", 4, "")]).await;
    let start = tomorrow();
    let holder = Uuid::new_v4();
    let waiting = Uuid::new_v4();
    assign(&mut client_there, request(holder, 1, "bistro", 4, start, 120)).await.expect("holder seated");

    let mut stream = Stream::open(&mut client_here).await;
    stream.submit(request(waiting, 1, "bistro", 2, start, 90)).await;
    stream.wait_for(waiting, pb::ReassignState::Retrying, Duration::from_secs(5)).await;

    let released = Instant::now();
    client_there.release(pb::ReleaseRequest { booking_id: holder.to_string() }).await.expect("released");
    let assigned = stream.wait_for(waiting, pb::ReassignState::Assigned, Duration::from_secs(1)).await;
    println!("ASSIGNED on this replica's stream {:?} after a release on the other", released.elapsed());
    assert_eq!(assigned.assignment.map(|a| a.table_ids), Some(vec!["t1".to_string()]));
    let jobs: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM assign.jobs WHERE state = 'assigned'", &[])
        .await
        .expect("count jobs")
        .get(0);
    assert_eq!(jobs, 1, "one replica did the work once");
}

#[tokio::test]
async fn an_update_missed_while_the_listen_connection_was_down_still_reaches_the_stream() {
    let db = TestDb::new().await;
    let service = assign_with_long_backoff(&db).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, "")]).await;
    let start = tomorrow();
    let holder = Uuid::new_v4();
    let waiting = Uuid::new_v4();
    assign(&mut client, request(holder, 1, "bistro", 4, start, 120)).await.expect("holder seated");
    let mut stream = Stream::open(&mut client).await;
    stream.submit(request(waiting, 1, "bistro", 2, start, 90)).await;
    stream.wait_for(waiting, pb::ReassignState::Retrying, Duration::from_secs(5)).await;

    // Cut the connection that listens for job updates, and free the table at once: the
    // ASSIGNED notification goes out while nobody listens.
    let admin = db.client().await;
    let cut: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query = 'LISTEN assign_updates'",
            &[],
        )
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(cut, 1, "one listener for job updates");
    client.release(pb::ReleaseRequest { booking_id: holder.to_string() }).await.expect("released");
    let assigned = stream.wait_for(waiting, pb::ReassignState::Assigned, Duration::from_secs(5)).await;
    assert_eq!(assigned.assignment.map(|a| a.table_ids), Some(vec!["t1".to_string()]));
}

#[tokio::test]
async fn a_resubmit_after_the_stream_dropped_is_answered_from_the_held_assignment() {
    let db = TestDb::new().await;
    let service = assign_with_long_backoff(&db).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, "")]).await;
    let start = tomorrow();
    let holder = Uuid::new_v4();
    let waiting = Uuid::new_v4();
    assign(&mut client, request(holder, 1, "bistro", 4, start, 120)).await.expect("holder seated");

    let mut first = Stream::open(&mut client).await;
    first.submit(request(waiting, 1, "bistro", 2, start, 90)).await;
    first.wait_for(waiting, pb::ReassignState::Retrying, Duration::from_secs(5)).await;
    drop(first);

    // The job goes on with no stream open.
    client.release(pb::ReleaseRequest { booking_id: holder.to_string() }).await.expect("released");
    eventually(Duration::from_secs(3), "the job to take the freed table", || async {
        let stored = reservations(&db, "bistro").await;
        (stored.len() == 1 && stored[0].booking_id == waiting).then_some(())
    })
    .await;

    let mut second = Stream::open(&mut client).await;
    second.submit(request(waiting, 1, "bistro", 2, start, 90)).await;
    let answer = second.next(Duration::from_secs(2)).await;
    assert_eq!(
        (answer.booking_id.as_str(), answer.state()),
        (waiting.to_string().as_str(), pb::ReassignState::Assigned)
    );
    let assignment = answer.assignment.expect("assignment");
    assert_eq!((assignment.version, assignment.table_ids), (1, vec!["t1".to_string()]));
    assert_eq!(assignment.start_time, Some(timestamp(start)));

    // The same holds for a booking seated by the unary call.
    let inline = Uuid::new_v4();
    let seated = assign(&mut client, request(inline, 1, "bistro", 2, start + Duration::from_secs(4 * 3600), 90))
        .await
        .expect("seated inline");
    second.submit(request(inline, 1, "bistro", 2, start + Duration::from_secs(4 * 3600), 90)).await;
    let answer = second.next(Duration::from_secs(2)).await;
    assert_eq!(answer.state(), pb::ReassignState::Assigned);
    assert_eq!(answer.assignment, seated.assignment);
}

#[tokio::test]
async fn a_job_gives_up_once_its_start_time_passes() {
    let db = TestDb::new().await;
    let mut settings = assign_svc::Settings::for_database(&db.url);
    settings.reassign_backoff_base_ms = 300;
    let service = services::assign_with(settings).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, "")]).await;
    let start = SystemTime::now() + Duration::from_millis(1500);
    assign(&mut client, request(Uuid::new_v4(), 1, "bistro", 4, start, 60)).await.expect("holder seated");

    let booking = Uuid::new_v4();
    let mut stream = Stream::open(&mut client).await;
    stream.submit(request(booking, 1, "bistro", 2, start, 60)).await;
    let mut retries = 0;
    let gave_up = loop {
        let update = stream.next(Duration::from_secs(5)).await;
        assert_eq!(update.booking_id, booking.to_string());
        match update.state() {
            pb::ReassignState::Retrying => {
                retries += 1;
                let next = system_time(&update.next_attempt_at.expect("next attempt")).expect("time");
                assert!(next <= start, "never scheduled past the start time");
            }
            pb::ReassignState::GaveUp => break update,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(SystemTime::now() >= start, "gave up only once the start time passed");
    assert!(retries >= 1);
    assert_eq!(gave_up.attempt, retries + 1);
    assert!(gave_up.last_error.contains("start time"), "{}", gave_up.last_error);

    // A resubmit hears the same end at once.
    stream.submit(request(booking, 1, "bistro", 2, start, 60)).await;
    let again = stream.next(Duration::from_secs(2)).await;
    assert_eq!(again.state(), pb::ReassignState::GaveUp);
}

#[tokio::test]
async fn older_versions_are_superseded_by_newer_submits_and_assignments() {
    let db = TestDb::new().await;
    let service = assign_with_long_backoff(&db).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, ""), table("t2", 8, "")]).await;
    let start = tomorrow();
    let holder = Uuid::new_v4();
    assign(&mut client, request(holder, 1, "bistro", 8, start, 120)).await.expect("holder seated at t2");
    let booking = Uuid::new_v4();

    let mut stream = Stream::open(&mut client).await;
    stream.submit(request(booking, 1, "bistro", 6, start, 90)).await;
    stream.wait_for(booking, pb::ReassignState::Retrying, Duration::from_secs(5)).await;

    stream.submit(request(booking, 2, "bistro", 7, start, 90)).await;
    let superseded = stream.wait_for(booking, pb::ReassignState::Superseded, Duration::from_secs(5)).await;
    assert_eq!(superseded.version, 1);
    let retrying = stream.wait_for(booking, pb::ReassignState::Retrying, Duration::from_secs(5)).await;
    assert_eq!((retrying.version, retrying.attempt), (2, 1), "the new version starts its own attempts");

    stream.submit(request(booking, 1, "bistro", 6, start, 90)).await;
    let at_once = stream.next(Duration::from_secs(2)).await;
    assert_eq!((at_once.version, at_once.state()), (1, pb::ReassignState::Superseded));

    // A unary Assign of a newer version (here for a party that fits) ends the job too.
    let seated = assign(&mut client, request(booking, 3, "bistro", 4, start, 90)).await.expect("answer");
    assert_eq!(tables_of(&seated), ["t1"]);
    let ended = stream.wait_for(booking, pb::ReassignState::Superseded, Duration::from_secs(2)).await;
    assert_eq!(ended.version, 2);
}

#[tokio::test]
async fn two_streams_both_hear_about_a_booking_both_submitted() {
    let db = TestDb::new().await;
    let service = assign_with_long_backoff(&db).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, "")]).await;
    let start = tomorrow();
    let holder = Uuid::new_v4();
    assign(&mut client, request(holder, 1, "bistro", 4, start, 120)).await.expect("holder seated");
    let booking = Uuid::new_v4();

    let mut one = Stream::open(&mut client).await;
    let mut two = Stream::open(&mut services::assign_client(&service.url)).await;
    one.submit(request(booking, 1, "bistro", 2, start, 90)).await;
    let first = one.wait_for(booking, pb::ReassignState::Retrying, Duration::from_secs(5)).await;
    two.submit(request(booking, 1, "bistro", 2, start, 90)).await;
    let current = two.wait_for(booking, pb::ReassignState::Retrying, Duration::from_secs(5)).await;
    assert_eq!(current, first, "a repeated submit is the same job: same attempt, same next attempt time");

    client.release(pb::ReleaseRequest { booking_id: holder.to_string() }).await.expect("released");
    let heard_one = one.wait_for(booking, pb::ReassignState::Assigned, Duration::from_secs(2)).await;
    let heard_two = two.wait_for(booking, pb::ReassignState::Assigned, Duration::from_secs(2)).await;
    assert_eq!(heard_one, heard_two);
    assert_eq!(heard_one.assignment.map(|a| a.table_ids), Some(vec!["t1".to_string()]));

    // A third stream that never submitted the booking hears nothing about it; a
    // cancelled job is not tried any more.
    let mut three = Stream::open(&mut client).await;
    let cancelled = Uuid::new_v4();
    one.submit(request(cancelled, 1, "bistro", 2, start, 90)).await;
    one.wait_for(cancelled, pb::ReassignState::Retrying, Duration::from_secs(5)).await;
    one.cancel(cancelled).await;
    let ledger = db.client().await;
    eventually(Duration::from_secs(5), "the job to be cancelled", || async {
        let state: String =
            ledger.query_one("SELECT state FROM assign.jobs WHERE booking_id = $1", &[&cancelled]).await.ok()?.get(0);
        (state == "cancelled").then_some(())
    })
    .await;
    // A probe job for the same table, submitted after the cancel: the release wakes it, and
    // once it is seated the wake-up has run past the cancelled job.
    let probe = Uuid::new_v4();
    two.submit(request(probe, 1, "bistro", 2, start, 90)).await;
    two.wait_for(probe, pb::ReassignState::Retrying, Duration::from_secs(5)).await;
    client.release(pb::ReleaseRequest { booking_id: booking.to_string() }).await.expect("released");
    let seated = two.wait_for(probe, pb::ReassignState::Assigned, Duration::from_secs(5)).await;
    assert_eq!(seated.assignment.map(|a| a.table_ids), Some(vec!["t1".to_string()]));
    three.assert_silent(Duration::ZERO).await;
    one.assert_silent(Duration::ZERO).await;
    let held: Vec<Uuid> = reservations(&db, "bistro").await.into_iter().map(|r| r.booking_id).collect();
    assert_eq!(held, [probe], "the cancelled job took nothing");
}

#[tokio::test]
async fn an_unknown_restaurant_keeps_a_job_waiting_until_its_floor_plan_arrives() {
    let db = TestDb::new().await;
    let service = assign_with_long_backoff(&db).await;
    let mut client = services::assign_client(&service.url);
    let booking = Uuid::new_v4();
    let mut stream = Stream::open(&mut client).await;
    stream.submit(request(booking, 1, "new-place", 4, tomorrow(), 90)).await;
    let retrying = stream.wait_for(booking, pb::ReassignState::Retrying, Duration::from_secs(5)).await;
    assert!(retrying.last_error.contains("no floor plan"), "{}", retrying.last_error);

    let put = Instant::now();
    put_plan(&mut client, "new-place", vec![table("a", 4, "")]).await;
    let assigned = stream.wait_for(booking, pb::ReassignState::Assigned, Duration::from_secs(1)).await;
    println!("ASSIGNED {:?} after the floor plan arrived", put.elapsed());
    assert_eq!(assigned.assignment.map(|a| a.table_ids), Some(vec!["a".to_string()]));
}

#[tokio::test]
async fn a_floor_plan_change_that_would_break_live_assignments_is_refused_naming_them() {
    let db = TestDb::new().await;
    let service = services::assign(&db.url).await;
    let mut client = services::assign_client(&service.url);
    let original = vec![table("t1", 4, ""), table("t2", 4, "g"), table("t3", 4, "g"), table("t4", 2, "")];
    let stored = put_plan(&mut client, "bistro", original.clone()).await;
    let start = tomorrow();
    let (single, joined, ended) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let long_ago = SystemTime::now() - Duration::from_secs(3 * 3600);
    assert_eq!(tables_of(&assign(&mut client, request(single, 1, "bistro", 4, start, 90)).await.expect("a")), ["t1"]);
    assert_eq!(
        tables_of(&assign(&mut client, request(joined, 1, "bistro", 7, start, 90)).await.expect("b")),
        ["t2", "t3"]
    );
    assert_eq!(tables_of(&assign(&mut client, request(ended, 1, "bistro", 2, long_ago, 60)).await.expect("c")), ["t4"]);

    // Without t1 and t4, and with t3 in another group: the two live bookings break.
    let breaking = vec![table("t2", 4, "g"), table("t3", 4, "h"), table("t5", 2, "")];
    let refused = client
        .put_floor_plan(pb::PutFloorPlanRequest { restaurant_id: "bistro".into(), tables: breaking })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let mut named = vec![single.to_string(), joined.to_string()];
    named.sort();
    for id in &named {
        assert!(refused.message().contains(id.as_str()), "{} does not name {id}", refused.message());
    }
    assert!(!refused.message().contains(&ended.to_string()), "an ended assignment does not count");
    let unchanged = client
        .get_floor_plan(pb::GetFloorPlanRequest { restaurant_id: "bistro".into() })
        .await
        .expect("plan")
        .into_inner()
        .floor_plan;
    assert_eq!(unchanged, Some(stored));

    // Shrinking t1 below its party breaks it too; keeping what the bookings need is fine.
    let shrunk = vec![table("t1", 3, ""), table("t2", 4, "g"), table("t3", 4, "g")];
    let refused = client
        .put_floor_plan(pb::PutFloorPlanRequest { restaurant_id: "bistro".into(), tables: shrunk })
        .await
        .expect_err("refused");
    assert!(refused.message().contains(&single.to_string()) && !refused.message().contains(&joined.to_string()));
    let kept = put_plan(
        &mut client,
        "bistro",
        vec![table("t9", 2, ""), table("t3", 5, "g"), table("t1", 6, ""), table("t2", 4, "g")],
    )
    .await;
    let ids: Vec<&str> = kept.tables.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t1", "t2", "t3", "t9"], "tables come back ordered by id");
}

#[tokio::test]
async fn every_invalid_field_is_named_and_nothing_changes() {
    let db = TestDb::new().await;
    let service = services::assign(&db.url).await;
    let mut client = services::assign_client(&service.url);
    put_plan(&mut client, "bistro", vec![table("t1", 4, "")]).await;
    let good = request(Uuid::new_v4(), 1, "bistro", 2, tomorrow(), 90);

    let cases: Vec<(pb::AssignRequest, &str)> = vec![
        (pb::AssignRequest { booking_id: "".into(), ..good.clone() }, "booking_id"),
        (pb::AssignRequest { booking_id: "booking-1".into(), ..good.clone() }, "booking_id"),
        (pb::AssignRequest { version: 0, ..good.clone() }, "version"),
        (pb::AssignRequest { restaurant_id: "".into(), ..good.clone() }, "restaurant_id"),
        (pb::AssignRequest { restaurant_id: "x".repeat(65), ..good.clone() }, "restaurant_id"),
        (pb::AssignRequest { restaurant_id: "nowhere".into(), ..good.clone() }, "restaurant_id"),
        (pb::AssignRequest { party_size: 0, ..good.clone() }, "party_size"),
        (pb::AssignRequest { party_size: 101, ..good.clone() }, "party_size"),
        (pb::AssignRequest { start_time: None, ..good.clone() }, "start_time"),
        (pb::AssignRequest { duration: None, ..good.clone() }, "duration"),
        (pb::AssignRequest { duration: Some(duration(Duration::from_secs(14 * 60))), ..good.clone() }, "duration"),
        (
            pb::AssignRequest { duration: Some(duration(Duration::from_secs(12 * 3600 + 60))), ..good.clone() },
            "duration",
        ),
        (
            pb::AssignRequest { duration: Some(prost_types::Duration { seconds: -60, nanos: 0 }), ..good.clone() },
            "duration",
        ),
    ];
    for (bad, field) in cases {
        let status = assign(&mut client, bad.clone()).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(violated_fields(&status), [field], "{bad:?}");
    }
    let all_wrong = pb::AssignRequest {
        booking_id: "x".into(),
        version: -1,
        restaurant_id: "".into(),
        party_size: -3,
        start_time: None,
        duration: None,
    };
    let status = assign(&mut client, all_wrong).await.expect_err("invalid");
    assert_eq!(
        violated_fields(&status),
        ["booking_id", "version", "restaurant_id", "party_size", "start_time", "duration"]
    );

    let plan_cases: Vec<(pb::PutFloorPlanRequest, Vec<&str>)> = vec![
        (pb::PutFloorPlanRequest { restaurant_id: "".into(), tables: vec![table("a", 2, "")] }, vec!["restaurant_id"]),
        (pb::PutFloorPlanRequest { restaurant_id: "bistro".into(), tables: vec![] }, vec!["tables"]),
        (
            pb::PutFloorPlanRequest {
                restaurant_id: "bistro".into(),
                tables: vec![table("", 2, ""), table("b", 0, ""), table("c", 101, ""), table("d", 2, &"g".repeat(65))],
            },
            vec!["tables[0].id", "tables[1].seats", "tables[2].seats", "tables[3].combine_group"],
        ),
        (
            pb::PutFloorPlanRequest {
                restaurant_id: "bistro".into(),
                tables: vec![table("a", 2, ""), table("a", 4, "")],
            },
            vec!["tables[1].id"],
        ),
        (
            pb::PutFloorPlanRequest {
                restaurant_id: "bistro".into(),
                tables: (0..501).map(|i| table(&format!("t{i}"), 2, "")).collect(),
            },
            vec!["tables"],
        ),
    ];
    for (bad, fields) in plan_cases {
        let status = client.put_floor_plan(bad).await.expect_err("invalid plan");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), fields);
    }
    let status = client.release(pb::ReleaseRequest { booking_id: "nope".into() }).await.expect_err("invalid");
    assert_eq!(violated_fields(&status), ["booking_id"]);
    let status =
        client.get_floor_plan(pb::GetFloorPlanRequest { restaurant_id: "".into() }).await.expect_err("invalid");
    assert_eq!(violated_fields(&status), ["restaurant_id"]);
    let status =
        client.get_floor_plan(pb::GetFloorPlanRequest { restaurant_id: "nowhere".into() }).await.expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);

    // On the stream, a malformed submit is answered GAVE_UP naming the field; the stream
    // stays open for the next one.
    let mut stream = Stream::open(&mut client).await;
    stream.submit(pb::AssignRequest { party_size: 0, ..good.clone() }).await;
    let refused = stream.next(Duration::from_secs(2)).await;
    assert_eq!(refused.state(), pb::ReassignState::GaveUp);
    assert!(refused.last_error.contains("submit.party_size"), "{}", refused.last_error);
    stream.submit(good.clone()).await;
    let assigned = stream.next(Duration::from_secs(5)).await;
    assert_eq!(assigned.state(), pb::ReassignState::Assigned);

    let plan = client.get_floor_plan(pb::GetFloorPlanRequest { restaurant_id: "bistro".into() }).await.expect("plan");
    assert_eq!(plan.into_inner().floor_plan.map(|p| p.tables), Some(vec![table("t1", 4, "")]), "no bad plan stored");
    assert_eq!(reservations(&db, "bistro").await.len(), 1, "only the valid submit reserved");
}

#[tokio::test]
async fn shutdown_ends_open_reassign_streams() {
    let db = TestDb::new().await;
    let service = assign_with_long_backoff(&db).await;
    let mut client = services::assign_client(&service.url);
    let mut stream = Stream::open(&mut client).await;
    let booking = Uuid::new_v4();
    stream.submit(request(booking, 1, "nowhere", 2, tomorrow(), 90)).await;
    stream.wait_for(booking, pb::ReassignState::Retrying, Duration::from_secs(5)).await;

    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), service.stop()).await.expect("stops in time").expect("clean stop");
    println!("stopped in {:?} with a stream open", stopping.elapsed());
    let end = tokio::time::timeout(Duration::from_secs(2), stream.updates.message()).await.expect("stream ends");
    assert!(!matches!(end, Ok(Some(_))), "no more updates: {end:?}");
}

/// Random floor plans and random concurrent requests (several versions per booking):
/// the reservations table never holds two overlapping reservations of one table, and
/// every held assignment seats its party under the plan's rules.
#[test]
fn random_plans_and_concurrent_requests_never_double_book_a_table() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (db, service) = runtime.block_on(async {
        let db = TestDb::new().await;
        let service = services::assign(&db.url).await;
        (db, service)
    });
    let _context = runtime.enter();
    let client = services::assign_client(&service.url);

    // (seats, group) per table; (booking, version, party, start slot, length) per request.
    let tables = proptest::collection::vec((1i32..=8, 0usize..3), 1..=8);
    let requests = proptest::collection::vec((0usize..8, 1i64..=3, 1i32..=12, 0u64..8, 1u64..=4), 1..=24);
    let config = ProptestConfig { cases: 14, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(tables in tables, requests in requests)| {
        let restaurant = format!("r-{}", Uuid::new_v4().simple());
        let plan: Vec<pb::Table> = tables
            .iter()
            .enumerate()
            .map(|(i, (seats, group))| table(&format!("t{i}"), *seats, ["", "a", "b"][*group]))
            .collect();
        let bookings: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
        // From 22:00 UTC: many slots run past midnight into the next day.
        let base = day_after_tomorrow_at(22);
        runtime.block_on(async {
            put_plan(&mut client.clone(), &restaurant, plan.clone()).await;
            let calls: Vec<_> = requests
                .iter()
                .map(|&(booking, version, party, slot, length)| {
                    let mut client = client.clone();
                    let call = request(bookings[booking], version, &restaurant, party, base + Duration::from_secs(slot * 1800), length * 30);
                    tokio::spawn(async move { assign(&mut client, call).await })
                })
                .collect();
            for call in calls {
                match call.await.expect("task") {
                    Ok(response) => {
                        let seated = outcome(&response);
                        assert!(matches!(seated, pb::AssignOutcome::Assigned | pb::AssignOutcome::NoCapacity));
                    }
                    Err(status) => assert_eq!(status.code(), Code::Aborted, "only older versions are refused: {status:?}"),
                }
            }
        });
        let stored = runtime.block_on(reservations(&db, &restaurant));
        let mut by_table: BTreeMap<&str, Vec<&Reservation>> = BTreeMap::new();
        for reservation in &stored {
            by_table.entry(reservation.table_id.as_str()).or_default().push(reservation);
        }
        for (table_id, held) in &by_table {
            for (i, a) in held.iter().enumerate() {
                for b in &held[i + 1..] {
                    prop_assert!(!(a.start < b.end && b.start < a.end), "{table_id} double-booked: {a:?} and {b:?}");
                }
            }
        }
        let seats: HashMap<String, (i32, String)> =
            plan.iter().map(|t| (t.id.clone(), (t.seats, t.combine_group.clone()))).collect();
        let held = runtime.block_on(async {
            db.client()
                .await
                .query(
                    "SELECT booking_id, assigned_version, party_size, table_ids FROM assign.bookings \
                     WHERE restaurant_id = $1 AND assigned_version IS NOT NULL",
                    &[&restaurant],
                )
                .await
                .expect("assignments")
        });
        for row in held {
            let booking: Uuid = row.get(0);
            let version: i64 = row.get(1);
            let party: i32 = row.get(2);
            let ids: Vec<String> = row.get(3);
            let total: i32 = ids.iter().map(|id| seats[id].0).sum();
            prop_assert!(total >= party, "{ids:?} seat {total} < {party}");
            if ids.len() > 1 {
                let group = &seats[&ids[0]].1;
                prop_assert!(!group.is_empty() && ids.iter().all(|id| &seats[id].1 == group), "{ids:?} not joinable");
            }
            let mut reserved: Vec<(String, i64)> = stored
                .iter()
                .filter(|r| r.booking_id == booking)
                .map(|r| (r.table_id.clone(), r.version))
                .collect();
            reserved.sort();
            let expected: Vec<(String, i64)> = ids.iter().map(|id| (id.clone(), version)).collect();
            prop_assert_eq!(reserved, expected, "reservations match the held assignment");
        }
    });
    drop(client);
    runtime.block_on(async move {
        let _ = service.stop().await;
        drop(db);
    });
}

#[tokio::test]
async fn the_exclusion_constraint_itself_refuses_overlapping_reservations_of_one_table() {
    // Two writers that bypass assign-svc's per-day lock and fit: the database alone must
    // refuse the second overlapping reservation of a table, even while the first is not
    // yet committed.
    let db = TestDb::new().await;
    let _service = services::assign(&db.url).await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let start = day_after_tomorrow_at(19);
    let setup = db.client().await;
    for booking in [first, second] {
        setup
            .execute("INSERT INTO assign.bookings (booking_id, newest_version) VALUES ($1, 1)", &[&booking])
            .await
            .expect("booking");
    }
    const INSERT: &str = "INSERT INTO assign.reservations (restaurant_id, table_id, booking_id, version, during) \
                          VALUES ('bistro', $1, $2, 1, tstzrange($3, $4))";
    let hours = move |h: u64| start + Duration::from_secs(h * 1800);

    let mut writer = db.client().await;
    let tx = writer.transaction().await.expect("begin");
    tx.execute(INSERT, &[&"t1", &first, &hours(0), &hours(3)]).await.expect("the first reservation");
    let url = db.url.clone();
    let contender = tokio::spawn(async move {
        let other = support::db::connect(&url).await;
        other.execute(INSERT, &[&"t1", &second, &hours(2), &hours(5)]).await
    });
    // The second writer waits on the first's uncommitted row, as PostgreSQL reports.
    db.wait_for_lock_waiters(1).await;
    tx.commit().await.expect("commit the first");
    let refused = contender.await.expect("task").expect_err("an overlapping reservation of t1");
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::EXCLUSION_VIOLATION), "{refused:?}");

    // Touching ends and other tables are no conflict.
    setup.execute(INSERT, &[&"t1", &second, &hours(3), &hours(5)]).await.expect("t1 right after the first");
    setup.execute(INSERT, &[&"t2", &second, &hours(2), &hours(5)]).await.expect("t2 at the same time");
    let held: Vec<(String, Uuid)> =
        reservations(&db, "bistro").await.into_iter().map(|r| (r.table_id, r.booking_id)).collect();
    assert_eq!(held, [("t1".to_string(), first), ("t1".to_string(), second), ("t2".to_string(), second)]);
}
