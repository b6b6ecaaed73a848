//! Past one machine: replicas that start together on an empty database, calls spread over
//! every replica behind one name, a replica lost under load, one added, and a database per
//! service. Replicas are real processes on distinct loopback addresses sharing a port;
//! booking-svc resolves their name through a resolver the test controls and balances its
//! calls with its own code. Each replica exports its spans under its own name, so the
//! test counts the calls each one served.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform::proto::{
    assign::v1 as apb,
    booking::v1::{self as pb, booking_service_client::BookingServiceClient},
    timestamp,
};
use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    time::{Duration, Instant},
};
use support::{
    db::TestDb,
    eventually,
    otlp::Collector,
    process::ServiceProcess,
    replicas::{Replicas, TestResolver, served},
    services::{self, Running},
    stack::{self, Options, RESTAURANT, Stack, assign_env, create_request, edit_request, get_booking, slot},
};

type Client = BookingServiceClient<platform::grpc::Channel>;

const ASSIGN_SPAN: &str = "assign.v1.AssignService/Assign";
const SEND_ONCE_SPAN: &str = "notify.v1.NotifyService/SendOnce";

/// booking-svc on `db` calling the peers at `assign_url` and `notify_url` (names resolved
/// by `resolver` every `resolve_interval_ms`), with the stack's quick worker timings and
/// inline attempts of up to `inline_timeout_ms`.
async fn booking(
    db: &TestDb,
    assign_url: &str,
    notify_url: &str,
    resolver: &TestResolver,
    resolve_interval_ms: u64,
    inline_timeout_ms: u64,
) -> Running {
    let mut s = booking_svc::Settings::for_database(&db.url, assign_url, notify_url);
    s.inline_assign_timeout_ms = inline_timeout_ms;
    s.resolver = platform::balance::Resolver::new(resolver.clone());
    s.resolve_interval_ms = resolve_interval_ms;
    s.inline_record_grace_ms = 300;
    s.worker_lease_ms = 3_000;
    s.worker_backoff_base_ms = 50;
    s.worker_backoff_max_ms = 1_000;
    s.worker_poll_ms = 500;
    s.peer_timeout_ms = 1_500;
    services::booking_with(s).await
}

/// notify-svc in this process on `db`, writing mails to `mail_dir`.
async fn notify(db: &TestDb, mail_dir: &std::path::Path) -> Running {
    let mut settings = notify_svc::Settings::for_database(&db.url);
    settings.mail_dir = mail_dir.to_path_buf();
    settings.retry_base_ms = 100;
    settings.retry_cap_ms = 1_000;
    settings.worker_poll_ms = 500;
    services::notify_with(settings).await
}

/// Puts RESTAURANT's floor plan of `count` four-seat tables `t1`... through `assign_url`.
async fn put_tables(assign_url: &str, count: usize) {
    let tables =
        (1..=count).map(|i| apb::Table { id: format!("t{i}"), seats: 4, combine_group: String::new() }).collect();
    services::assign_client(assign_url)
        .put_floor_plan(apb::PutFloorPlanRequest { restaurant_id: RESTAURANT.into(), tables })
        .await
        .expect("put floor plan");
}

/// Calls named `span` that each of `names` served, waiting until every one served some
/// (or panicking after 20 s with the counts).
async fn each_served(collector: &Collector, span: &str, names: &[String]) -> BTreeMap<String, usize> {
    let counts = || {
        let served = served(collector, span);
        names.iter().map(|n| (n.clone(), served.get(n).copied().unwrap_or(0))).collect::<BTreeMap<_, _>>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = counts();
        if counts.values().all(|c| *c > 0) {
            return counts;
        }
        assert!(Instant::now() < deadline, "some replica served no {span}: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Assign calls the replica named `name` served, once its spans so far were exported.
async fn assign_calls_of(collector: &Collector, name: &str) -> usize {
    tokio::time::sleep(Duration::from_millis(600)).await;
    served(collector, ASSIGN_SPAN).get(name).copied().unwrap_or(0)
}

#[tokio::test]
async fn calls_reach_every_replica_of_assign_svc_and_notify_svc_behind_one_name() {
    let db = TestDb::new().await;
    let collector = Collector::start().await;
    let resolver = TestResolver::default();
    let mail_dir = tempfile::tempdir().expect("mail dir");
    let assign =
        Replicas::start("assign-svc", "assign.scale.test", 1, 3, &assign_env(&db.url), &collector, &resolver).await;
    let mail = mail_dir.path().display().to_string();
    let notify_env = [("DATABASE_URL", db.url.as_str()), ("MAIL_DIR", mail.as_str()), ("RETRY_BASE_MS", "100")];
    let notify = Replicas::start("notify-svc", "notify.scale.test", 2, 2, &notify_env, &collector, &resolver).await;
    put_tables(&assign.replica_url(0), 10).await;
    let booking = booking(&db, &assign.url(), &notify.url(), &resolver, 500, 800).await;
    let client = services::booking_client(&booking.url);

    for day in 1..=3 {
        for _ in 0..10 {
            let answer = client.clone().create_booking(create_request(slot(day, 19), 2)).await.expect("create");
            assert_eq!(answer.into_inner().outcome, pb::Outcome::Confirmed as i32);
        }
    }

    let assigns = each_served(&collector, ASSIGN_SPAN, &assign.service_names()).await;
    let sends = each_served(&collector, SEND_ONCE_SPAN, &notify.service_names()).await;
    eprintln!("Assign calls per replica: {assigns:?}; SendOnce calls per replica: {sends:?}");
}

#[tokio::test]
async fn an_assign_replica_killed_under_load_costs_no_edit_and_the_background_confirms_its_edits() {
    let db = TestDb::new().await;
    let collector = Collector::start().await;
    let resolver = TestResolver::default();
    let mail_dir = tempfile::tempdir().expect("mail dir");
    let mut assign =
        Replicas::start("assign-svc", "assign.kill.test", 3, 3, &assign_env(&db.url), &collector, &resolver).await;
    let notify = notify(&db, mail_dir.path()).await;
    put_tables(&assign.replica_url(0), 16).await;
    // Inline attempts wait long enough here that those stuck on the frozen replica are still
    // waiting when it is killed: they lose their replica, they do not time out.
    let booking = booking(&db, &assign.url(), &notify.url, &resolver, 500, 10_000).await;
    let client = services::booking_client(&booking.url);
    let mut ids = Vec::new();
    for _ in 0..8 {
        let answer = client.clone().create_booking(create_request(slot(1, 19), 2)).await.expect("create").into_inner();
        assert_eq!(answer.outcome, pb::Outcome::Confirmed as i32);
        ids.push(answer.booking.expect("booking").id);
    }

    // Eight guests edit their bookings back and forth (party of 2 or 3: a free table always
    // fits) for six seconds. After one second the second replica freezes, so that the calls
    // it gets pile up in flight (a guest whose call lands there waits), and 1.5 s later it is
    // killed in the middle of them; the other replicas serve the rest.
    let stop_at = Instant::now() + Duration::from_secs(6);
    let guests: Vec<_> = ids
        .iter()
        .map(|id| {
            let (mut client, id) = (client.clone(), id.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut version = 1;
                while Instant::now() < stop_at {
                    let mut edit = edit_request(&id);
                    edit.expected_version = Some(version);
                    edit.party_size = Some(if version % 2 == 1 { 3 } else { 2 });
                    let answer = client.edit_booking(edit).await.map(|a| a.into_inner());
                    if let Ok(answer) = &answer {
                        version = answer.booking.as_ref().map(|b| b.version).unwrap_or(version);
                    }
                    answers.push((id.clone(), answer));
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim = assign.service_names()[1].clone();
    let before = assign_calls_of(&collector, &victim).await;
    assign.replicas[1].freeze();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assign.replicas[1].kill();

    let mut pending: Vec<(String, i64)> = Vec::new();
    let mut edits = 0;
    for guest in guests {
        for (id, answer) in guest.await.expect("guest task") {
            let answer = answer.unwrap_or_else(|status| panic!("an edit of {id} failed: {status:?}"));
            edits += 1;
            if answer.outcome == pb::Outcome::Pending as i32 {
                let result = answer.inline_attempt.as_ref().map(|a| a.result);
                assert_eq!(result, Some(pb::InlineResult::Unavailable as i32), "{answer:?}");
                pending.push((id, answer.booking.expect("booking").version));
            } else {
                assert_eq!(answer.outcome, pb::Outcome::Confirmed as i32, "{answer:?}");
            }
        }
    }
    eprintln!("{edits} edits, {} answered PENDING; the killed replica had served {before} Assign calls", pending.len());
    assert!(before > 0, "the killed replica served no call before it was killed");
    assert!(!pending.is_empty(), "no edit lost its replica: the kill hit no call in flight");

    let mut finals = HashMap::new();
    for id in &ids {
        let version = get_booking(&mut client.clone(), id).await.version;
        eventually(Duration::from_secs(20), &format!("{id} confirmed at version {version}"), || {
            let mut client = client.clone();
            async move {
                let booking = get_booking(&mut client, id).await;
                (booking.status == pb::BookingStatus::Confirmed as i32 && booking.version == version).then_some(())
            }
        })
        .await;
        finals.insert(id.clone(), version);
    }
    // Every edit answered PENDING that no later edit replaced was confirmed by the background.
    for (id, version) in pending.iter().filter(|(id, version)| finals[id] == *version) {
        let events = stack::history(&mut client.clone(), id).await;
        let confirmation = events
            .iter()
            .find(|e| e.r#type == pb::BookingEventType::Confirmed as i32 && e.version == *version)
            .unwrap_or_else(|| panic!("no CONFIRMED event for {id} version {version}"));
        assert_eq!(stack::detail_str(confirmation, "via").as_deref(), Some("background"));
    }
}

#[tokio::test]
async fn a_replica_added_to_the_name_is_used_within_one_resolve_interval_and_one_removed_is_not() {
    const INTERVAL_MS: u64 = 1_000;
    let db = TestDb::new().await;
    let collector = Collector::start().await;
    let resolver = TestResolver::default();
    let mail_dir = tempfile::tempdir().expect("mail dir");
    let mut assign =
        Replicas::start("assign-svc", "assign.grow.test", 5, 2, &assign_env(&db.url), &collector, &resolver).await;
    let notify = notify(&db, mail_dir.path()).await;
    put_tables(&assign.replica_url(0), 12).await;
    let booking = booking(&db, &assign.url(), &notify.url, &resolver, INTERVAL_MS, 800).await;
    let client = services::booking_client(&booking.url);
    let mut ids = Vec::new();
    for _ in 0..12 {
        let answer = client.clone().create_booking(create_request(slot(2, 19), 2)).await.expect("create").into_inner();
        ids.push(answer.booking.expect("booking").id);
    }

    // The new replica serves before it is listed; once listed, calls made one resolve
    // interval later (plus a little for its health to answer) reach it.
    let added = assign.add().await;
    resolver.set(&assign.name, assign.addrs());
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS + 300)).await;
    let names = assign.service_names();
    // 36 calls: a replica that took them would get none with odds of (2/3)^36.
    for party in [3, 4, 3] {
        edit_all(&client, &ids, party).await;
    }
    let counts = served(&collector, ASSIGN_SPAN);
    let new_calls = assign_calls_of(&collector, &names[2]).await;
    assert!(new_calls > 0, "the replica at {added} served none of 36 calls: {counts:?}");

    // Unlisted (alive), the first replica gets no call after the next resolution.
    resolver.set(&assign.name, assign.addrs().into_iter().skip(1).collect::<Vec<Ipv4Addr>>());
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS + 300)).await;
    let before = assign_calls_of(&collector, &names[0]).await;
    for party in [2, 3] {
        edit_all(&client, &ids, party).await;
    }
    let after = assign_calls_of(&collector, &names[0]).await;
    assert_eq!(after, before, "the unlisted replica still got calls");
}

/// Edits every booking's party size to `party` (each confirms inline).
async fn edit_all(client: &Client, ids: &[String], party: i32) {
    for id in ids {
        let mut edit = edit_request(id);
        edit.party_size = Some(party);
        let answer = client.clone().edit_booking(edit).await.expect("edit").into_inner();
        assert_eq!(answer.outcome, pb::Outcome::Confirmed as i32, "{answer:?}");
    }
}

#[tokio::test]
async fn four_replicas_of_each_service_started_at_once_on_an_empty_database_all_serve() {
    let db = TestDb::new().await;
    let mail_dir = tempfile::tempdir().expect("mail dir");
    let mail = mail_dir.path().display().to_string();
    let host = Ipv4Addr::new(127, 0, 6, 1);
    // Twelve distinct ports, held until all are chosen.
    let ports: Vec<u16> = {
        let listeners: Vec<_> =
            (0..12).map(|_| std::net::TcpListener::bind((host, 0)).expect("bind loopback")).collect();
        listeners.iter().map(|l| l.local_addr().expect("addr").port()).collect()
    };
    let peers = "http://127.0.0.1:1";
    let env: [(&str, &[(&str, &str)]); 3] = [
        ("assign-svc", &[("DATABASE_URL", db.url.as_str())]),
        ("booking-svc", &[("DATABASE_URL", db.url.as_str()), ("ASSIGN_URL", peers), ("NOTIFY_URL", peers)]),
        ("notify-svc", &[("DATABASE_URL", db.url.as_str()), ("MAIL_DIR", mail.as_str())]),
    ];
    // Built before the clock starts, so that all twelve start within moments.
    for (bin, _) in env {
        support::process::binary(bin);
    }
    let mut processes: Vec<ServiceProcess> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (bin, envs) = env[i % 3];
        processes.push(ServiceProcess::spawn_at(bin, host, *port, envs));
    }
    for process in &mut processes {
        process.wait_serving().await;
    }

    let client = db.client().await;
    for (schema, dir) in [("assign", "assign-svc"), ("booking", "booking-svc"), ("notify", "notify-svc")] {
        let migrations = std::fs::read_dir(support::workspace_root().join(dir).join("migrations"))
            .expect("migrations folder")
            .filter(|f| f.as_ref().is_ok_and(|f| f.file_name().to_string_lossy().ends_with(".sql")))
            .count();
        let rows = client
            .query(&format!("SELECT version, count(*) FROM {schema}.refinery_schema_history GROUP BY version"), &[])
            .await
            .expect("migration history");
        assert_eq!(rows.len(), migrations, "{schema}: every migration applied");
        assert!(rows.iter().all(|r| r.get::<_, i64>(1) == 1), "{schema}: a migration applied twice");
    }
    // Had two processes migrated one schema at once, one would have failed and retried.
    for process in &processes {
        let log = process.log_text();
        assert!(!log.contains("database not ready"), "{} retried its migration:\n{log}", process.bin);
    }
    // One process per service applied the migrations (refinery logs each one it applies);
    // the other three found them applied.
    for (bin, _) in env {
        let appliers = processes.iter().filter(|p| p.bin == bin && p.log_text().contains("applying migration")).count();
        assert_eq!(appliers, 1, "{bin}: processes that applied migrations");
    }
}

#[tokio::test]
async fn the_whole_flow_runs_with_a_database_per_service() {
    let stack = Stack::start(Options { database_per_service: true, ..Default::default() }).await;
    let client = stack.booking();
    let holder = client.clone().create_booking(create_request(slot(1, 19), 4)).await.expect("create").into_inner();
    assert_eq!(holder.outcome, pb::Outcome::Confirmed as i32);
    let holder = holder.booking.expect("booking");
    let guest = client.clone().create_booking(create_request(slot(1, 21), 2)).await.expect("create").into_inner();
    assert_eq!(guest.outcome, pb::Outcome::Confirmed as i32);
    let id = guest.booking.expect("booking").id;
    stack.wait_for_mail(&id, "BOOKING_CONFIRMED", 1).await;

    // The only table is taken at 19:00: the edit waits, the cancel frees the table (a release
    // in assign-svc's database), the background confirms it.
    let mut edit = edit_request(&id);
    edit.start_time = Some(timestamp(slot(1, 19)));
    let answer = client.clone().edit_booking(edit).await.expect("edit").into_inner();
    assert_eq!(answer.outcome, pb::Outcome::Pending as i32, "{answer:?}");
    client
        .clone()
        .cancel_booking(pb::CancelBookingRequest { booking_id: holder.id.clone(), ..Default::default() })
        .await
        .expect("cancel");
    eventually(Duration::from_secs(20), "the edit confirmed in the background", || {
        let mut client = client.clone();
        let id = id.clone();
        async move {
            let booking = get_booking(&mut client, &id).await;
            (booking.status == pb::BookingStatus::Confirmed as i32 && booking.version == 2).then_some(())
        }
    })
    .await;
    stack.settle(&[&id, &holder.id]).await;
    assert_eq!(stack.mails_for(&holder.id), vec!["BOOKING_CANCELLED:1", "BOOKING_CONFIRMED:1"]);
    assert_eq!(
        stack.mails_for(&id),
        vec!["BOOKING_CONFIRMED:1", "MODIFICATION_CONFIRMED:2", "MODIFICATION_REQUESTED:2"]
    );

    // Each database holds its own service's schema and no other.
    let (assign_db, notify_db) = stack.own_dbs.as_ref().expect("three databases");
    for (db, schema) in [(&stack.db, "booking"), (assign_db, "assign"), (notify_db, "notify")] {
        let schemas: Vec<String> = db
            .client()
            .await
            .query("SELECT nspname::text FROM pg_namespace WHERE nspname IN ('booking', 'assign', 'notify')", &[])
            .await
            .expect("schemas")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(schemas, vec![schema.to_string()], "database {}", db.name);
    }
}

#[test]
fn compose_gives_each_service_its_own_database_in_its_postgresql() {
    let compose = support::yaml::load("docker-compose.yml");
    let init =
        std::fs::read_to_string(support::workspace_root().join("deploy/postgres/databases.sql")).expect("init script");
    let mounts = compose["services"]["postgres"]["volumes"].as_array().expect("volumes");
    assert!(mounts.iter().any(|m| m.as_str()
        == Some("./deploy/postgres/databases.sql:/docker-entrypoint-initdb.d/databases.sql:ro")));
    let mut databases = std::collections::BTreeSet::new();
    for service in ["booking-svc", "assign-svc", "notify-svc"] {
        let url = compose["services"][service]["environment"]["DATABASE_URL"].as_str().expect("DATABASE_URL");
        let database = url.rsplit('/').next().expect("a database").to_string();
        assert!(init.contains(&format!("CREATE DATABASE {database};")), "{service}: {database} is not created");
        databases.insert(database);
    }
    assert_eq!(databases.len(), 3, "{databases:?}");
}
