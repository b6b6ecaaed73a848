//! The load test of issue 7: 2,000 edits over many bookings from several concurrent
//! clients while assign-svc, a real process, is frozen (SIGSTOP) at random moments for
//! random short periods, so some inline attempts time out and are confirmed by the
//! background later while most confirm inline. Once everything has settled, the checks a
//! user would make: every booking is confirmed (or pending with an open background job),
//! and the SMTP server holds exactly the mails the email rules require, one per
//! (booking, kind, version), no more, no fewer; notify-svc's ledger agrees with it.
//! Bounded in count and time, loopback only. It prints what it saw (run with
//! `--no-capture`). `LOAD_SEED` replays the random choices of a run;
//! `LOAD_RECORD_GRACE_MS=0` makes requests outlive the grace period after their inline
//! window often, so the background takes many live requests over (the crash recovery
//! path); `LOAD_PEER_TIMEOUT_MS=60` makes many SendOnce calls time out at booking-svc
//! after notify-svc got them, so stale retries must be fenced rather than dropped.
//! Last, a short run of the benchmark binary `booking-bench` against a real stack.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform::proto::{
    booking::v1::{self as pb, booking_service_client::BookingServiceClient},
    notify::v1 as npb,
    timestamp,
};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};
use support::{
    process::ServiceProcess,
    services,
    stack::{Options, Stack, Svc, create_request, detail_str, edit_request, slot},
};
use tonic::Code;

type Client = BookingServiceClient<platform::grpc::Channel>;

/// Restaurants, each with an ample floor plan.
const RESTAURANTS: usize = 8;
/// Bookings per restaurant.
const BOOKINGS_PER_RESTAURANT: usize = 20;
/// Edit requests sent in all (ABORTED ones included).
const EDITS: usize = 2_000;
/// Concurrent clients sending them.
const CLIENTS: usize = 8;
/// The first bookings get a fifth of the edits, so clients collide on them (ABORTED).
const HOT_BOOKINGS: usize = 8;
/// INLINE_ASSIGN_TIMEOUT_MS: short, so a frozen assign-svc costs little time.
const INLINE_TIMEOUT_MS: u64 = 200;
/// How long assign-svc stays frozen, and runs between two freezes (ms, inclusive).
const FROZEN_MS: (u64, u64) = (50, 600);
const RUNNING_MS: (u64, u64) = (300, 1_500);

/// Every table seats up to 8, 20 per restaurant: far more than the bookings that can
/// overlap at one time, so only a frozen assign-svc makes an inline attempt fail.
fn floor_plan() -> Vec<(&'static str, i32)> {
    (0..20).map(|n| (&*Box::leak(format!("t{n:02}").into_boxed_str()), if n < 10 { 4 } else { 8 })).collect()
}

fn restaurant(n: usize) -> String {
    format!("load-{n}")
}

fn random_start(rng: &mut fastrand::Rng) -> SystemTime {
    slot(rng.u64(1..=4), rng.u64(10..=22))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_edits_with_assign_randomly_frozen_confirm_every_booking_and_mail_each_required_key_once() {
    let test_started = Instant::now();
    let service_log = log_warnings();
    let seed = std::env::var("LOAD_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    println!("load test seed {seed} (LOAD_SEED=<seed> replays the same random choices; timing still varies)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut stack = Stack::start(Options {
        tables: floor_plan(),
        assign_process: true,
        booking_in_process: false,
        inline_timeout_ms: INLINE_TIMEOUT_MS,
        ..Default::default()
    })
    .await;
    let mut settings = stack.booking_settings();
    if let Some(grace) = std::env::var("LOAD_RECORD_GRACE_MS").ok().and_then(|g| g.parse().ok()) {
        settings.inline_record_grace_ms = grace;
    }
    if let Some(timeout) = std::env::var("LOAD_PEER_TIMEOUT_MS").ok().and_then(|t| t.parse().ok()) {
        settings.peer_timeout_ms = timeout;
    }
    stack.booking = Some(Svc::InProcess(services::booking_with(settings).await));
    for n in 0..RESTAURANTS {
        stack.put_floor_plan(&restaurant(n), &floor_plan()).await;
    }
    let client = stack.booking();
    let started_in = test_started.elapsed();

    // The bookings, created before assign-svc is ever frozen (some with suppress_emails).
    let known: Arc<Mutex<HashMap<String, pb::Booking>>> = Arc::default();
    let mut acked_creates: HashMap<String, Acked> = HashMap::new();
    let mut ids = Vec::new();
    let mut creates = tokio::task::JoinSet::new();
    for n in 0..RESTAURANTS * BOOKINGS_PER_RESTAURANT {
        let mut request = create_request(random_start(&mut rng), rng.i32(1..=8));
        request.restaurant_id = restaurant(n % RESTAURANTS);
        request.guest = Some(pb::Guest {
            name: format!("Guest {n}"),
            email: format!("guest{n}@example.com"),
            phone: String::new(),
        });
        request.suppress_emails = rng.u8(0..100) < 5;
        let suppress = request.suppress_emails;
        let mut client = client.clone();
        creates.spawn(async move { (client.create_booking(request).await.expect("create").into_inner(), suppress) });
        if creates.len() >= CLIENTS {
            let (created, suppress) = creates.join_next().await.expect("a create").expect("create task");
            ids.push(learn_created(&known, &mut acked_creates, created, suppress));
        }
    }
    while let Some(done) = creates.join_next().await {
        let (created, suppress) = done.expect("create task");
        ids.push(learn_created(&known, &mut acked_creates, created, suppress));
    }
    let ids = Arc::new(ids);
    println!(
        "stack up in {started_in:.1?}; created {} bookings in {RESTAURANTS} restaurants in {:.1?}",
        ids.len(),
        test_started.elapsed() - started_in
    );

    // The load: CLIENTS clients share EDITS edit requests while assign-svc freezes at random.
    let Svc::Process(assign) = &stack.assign else { unreachable!("assign-svc runs as a process") };
    let stop = AtomicBool::new(false);
    let next = Arc::new(AtomicUsize::new(0));
    let load_started = Instant::now();
    let client_seeds: Vec<u64> = (0..CLIENTS).map(|_| rng.u64(..)).collect();
    let freeze_seed = rng.u64(..);
    let edits = async {
        let mut tasks = tokio::task::JoinSet::new();
        for (n, &seed) in client_seeds.iter().enumerate() {
            let (client, ids, known, next) = (client.clone(), ids.clone(), known.clone(), next.clone());
            tasks.spawn(run_client(n, client, ids, known, next, seed));
        }
        let mut stats = ClientStats::default();
        while let Some(done) = tasks.join_next().await {
            stats.merge(done.expect("client task"));
        }
        stop.store(true, Ordering::SeqCst);
        stats
    };
    let (mut stats, frozen) = tokio::join!(edits, freeze_at_random(assign, &stop, freeze_seed));
    let load_took = load_started.elapsed();
    assign.thaw();

    let settle_started = Instant::now();
    quiesce(&stack, &ids).await;
    let settle_took = settle_started.elapsed();

    // What a user can see: bookings, histories, deliveries and the mails at the SMTP server.
    let mut client = client.clone();
    let mut notify = stack.notify();
    // Read-only look at booking-svc's job table: the API does not show background jobs.
    let open_jobs: HashMap<String, Vec<i64>> = {
        let db = stack.db.client().await;
        let rows = db
            .query("SELECT booking_id::text, version FROM booking.reassign_jobs WHERE state = 'OPEN'", &[])
            .await
            .expect("open jobs");
        let mut open: HashMap<String, Vec<i64>> = HashMap::new();
        for row in rows {
            open.entry(row.get(0)).or_default().push(row.get(1));
        }
        open
    };
    let mails = stack.smtp.mails();
    let mut at_smtp: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    let mut failures: Vec<String> = Vec::new();
    for (key, count) in stack.smtp.counts_by_key() {
        if count != 1 {
            failures.push(format!("{key} arrived {count} times at the SMTP server"));
        }
    }
    for mail in &mails {
        if !ids.contains(&mail.booking_id()) {
            failures.push(format!("a mail about an unknown booking: {:?}", mail.key()));
        }
        at_smtp.entry(mail.booking_id()).or_default().push((mail.kind(), mail.version()));
    }

    let mut totals = Totals::default();
    for id in ids.iter() {
        let booking = support::stack::get_booking(&mut client, id).await;
        let events = support::stack::history(&mut client, id).await;
        let deliveries = notify
            .list_deliveries(npb::ListDeliveriesRequest { booking_id: id.clone() })
            .await
            .expect("list deliveries")
            .into_inner()
            .deliveries;
        let seen = Seen {
            booking: &booking,
            events: &events,
            open_jobs: open_jobs.get(id).map(Vec::as_slice).unwrap_or_default(),
            mails: at_smtp.get(id).map(Vec::as_slice).unwrap_or_default(),
            deliveries: &deliveries,
            answered: stats.per_booking.get(id).cloned().unwrap_or_default(),
            created: acked_creates.get(id).cloned().expect("every booking was created by this test"),
        };
        check_booking(id, &seen, &mut totals, &mut failures);
    }

    let mut latencies = std::mem::take(&mut stats.latencies);
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let frozen_total: Duration = frozen.iter().sum();
    println!(
        "edits: {} sent by {CLIENTS} clients over {} bookings in {load_took:.1?} ({:.0}/s): CONFIRMED {}, PENDING {}, \
         UNCHANGED {}, ABORTED {}, other errors {}",
        stats.sent,
        ids.len(),
        stats.sent as f64 / load_took.as_secs_f64(),
        stats.confirmed,
        stats.pending,
        stats.unchanged,
        stats.aborted,
        stats.errors.len(),
    );
    println!(
        "requests: {} no-op, {} with suppress_emails, {} time, {} party, {} notes, {} time+party changes; inline results {:?}",
        stats.no_ops, stats.suppressed, stats.time, stats.party, stats.notes, stats.time_and_party, stats.inline
    );
    println!(
        "latency: p50 {:?} p90 {:?} p99 {:?} max {:?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!(
        "assign-svc frozen {} times, {frozen_total:.1?} in all ({:.0}% of the load), longest {:?}",
        frozen.len(),
        100.0 * frozen_total.as_secs_f64() / load_took.as_secs_f64(),
        frozen.iter().max().copied().unwrap_or_default()
    );
    println!(
        "settled in {settle_took:.1?}; bookings: {} CONFIRMED; versions: {} in all, {} confirmed \
         inline, {} in the background, {} stale inline results, {} taken over",
        totals.confirmed,
        totals.versions,
        totals.inline_confirmations,
        totals.background_confirmations,
        totals.stale_inline,
        totals.taken_over
    );
    println!(
        "emails: {} queued, {} suppressed, {} dropped as stale, {} dispatched, {} at the SMTP \
         server; whole test {:.1?}",
        totals.queued,
        totals.suppressed,
        totals.dropped,
        totals.dispatched,
        mails.len(),
        test_started.elapsed()
    );

    failures.extend(stats.errors.iter().cloned());
    if !failures.is_empty() {
        let dump = dump_failing_bookings(&stack, &failures).await;
        panic!(
            "{} failures, the first ones:\n{}\n(histories, outbox rows and deliveries of the first failing bookings: \
             {}; warnings of the in-process services: {})",
            failures.len(),
            failures.iter().take(30).cloned().collect::<Vec<_>>().join("\n"),
            dump.display(),
            service_log.display()
        );
    }
    // The load did what it is for: some inline attempts timed out, others confirmed, and
    // no-op, suppressed and conflicting edits were all exercised.
    let timeouts = stats.inline.get("TIMEOUT").copied().unwrap_or_default();
    assert!(timeouts > 0 && totals.background_confirmations > 0, "no inline attempt timed out: {:?}", stats.inline);
    // (How many confirm inline depends on the machine's load too: reported, not asserted.)
    assert!(stats.confirmed > 0, "no edit confirmed inline: {:?}", stats.inline);
    assert!(stats.unchanged > 0 && stats.aborted > 0 && totals.suppressed > 0, "the mix was exercised");
    assert_eq!(stats.sent, EDITS);
}

/// How the test's own request for a version was answered: the outcome the client was
/// told and whether it asked for suppress_emails.
#[derive(Clone, Debug)]
struct Acked {
    version: i64,
    outcome: pb::Outcome,
    suppress: bool,
}

/// Keeps a created booking and how its creation was answered; returns its id.
fn learn_created(
    known: &Mutex<HashMap<String, pb::Booking>>,
    acked: &mut HashMap<String, Acked>,
    created: pb::CreateBookingResponse,
    suppress: bool,
) -> String {
    let outcome = pb::Outcome::try_from(created.outcome).unwrap_or(pb::Outcome::Unspecified);
    let id = learn(known, created.booking.expect("booking"));
    acked.insert(id.clone(), Acked { version: 1, outcome, suppress });
    id
}

/// Keeps the newest known state of a booking; returns its id.
fn learn(known: &Mutex<HashMap<String, pb::Booking>>, booking: pb::Booking) -> String {
    let id = booking.id.clone();
    let mut known = known.lock().expect("known bookings");
    match known.get(&id) {
        Some(old) if old.version > booking.version => {}
        _ => {
            known.insert(id.clone(), booking);
        }
    }
    id
}

/// What the clients saw of one booking.
#[derive(Clone, Debug, Default)]
struct Answered {
    /// Edits answered CONFIRMED or PENDING (each made a new version).
    changed: usize,
    /// Edits answered UNCHANGED.
    unchanged: usize,
    /// (version, inline result) of each edit answered with the version it made.
    told: Vec<(i64, String)>,
    /// How each edit that made a version was answered.
    acked: Vec<Acked>,
}

/// What the clients saw in all.
#[derive(Debug, Default)]
struct ClientStats {
    sent: usize,
    confirmed: usize,
    pending: usize,
    unchanged: usize,
    aborted: usize,
    no_ops: usize,
    suppressed: usize,
    time: usize,
    party: usize,
    notes: usize,
    time_and_party: usize,
    inline: BTreeMap<String, usize>,
    latencies: Vec<Duration>,
    errors: Vec<String>,
    per_booking: HashMap<String, Answered>,
}

impl ClientStats {
    fn merge(&mut self, other: ClientStats) {
        self.sent += other.sent;
        self.confirmed += other.confirmed;
        self.pending += other.pending;
        self.unchanged += other.unchanged;
        self.aborted += other.aborted;
        self.no_ops += other.no_ops;
        self.suppressed += other.suppressed;
        self.time += other.time;
        self.party += other.party;
        self.notes += other.notes;
        self.time_and_party += other.time_and_party;
        for (result, n) in other.inline {
            *self.inline.entry(result).or_default() += n;
        }
        self.latencies.extend(other.latencies);
        self.errors.extend(other.errors);
        for (id, answered) in other.per_booking {
            let entry = self.per_booking.entry(id).or_default();
            entry.changed += answered.changed;
            entry.unchanged += answered.unchanged;
            entry.told.extend(answered.told);
            entry.acked.extend(answered.acked);
        }
    }
}

/// One client: takes edit numbers until EDITS are sent, each on a random booking (a hot
/// one a fifth of the time) with the version it last saw as `expected_version`. A tenth
/// repeat the current values (no-op), a tenth of the rest are sent with suppress_emails.
async fn run_client(
    n: usize,
    mut client: Client,
    ids: Arc<Vec<String>>,
    known: Arc<Mutex<HashMap<String, pb::Booking>>>,
    next: Arc<AtomicUsize>,
    seed: u64,
) -> ClientStats {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stats = ClientStats::default();
    loop {
        let number = next.fetch_add(1, Ordering::SeqCst);
        if number >= EDITS {
            break;
        }
        let id = if rng.u8(0..100) < 20 { &ids[rng.usize(0..HOT_BOOKINGS)] } else { &ids[rng.usize(0..ids.len())] };
        let current = known.lock().expect("known bookings").get(id).cloned().expect("a known booking");
        let mut edit = edit_request(id);
        edit.expected_version = Some(current.version);
        let no_op = rng.u8(0..100) < 10;
        if no_op {
            stats.no_ops += 1;
            edit.party_size = Some(current.party_size);
            edit.notes = Some(current.notes.clone());
            if rng.bool() {
                edit.start_time = current.start_time;
            }
        } else {
            let new_start = loop {
                let start = Some(timestamp(random_start(&mut rng)));
                if start != current.start_time {
                    break start;
                }
            };
            let new_party = loop {
                let party = rng.i32(1..=8);
                if party != current.party_size {
                    break Some(party);
                }
            };
            match rng.u8(0..4) {
                0 => {
                    stats.time += 1;
                    edit.start_time = new_start;
                }
                1 => {
                    stats.party += 1;
                    edit.party_size = new_party;
                }
                2 => {
                    stats.notes += 1;
                    edit.notes = Some(format!("client {n}, edit {number}"));
                }
                _ => {
                    stats.time_and_party += 1;
                    edit.start_time = new_start;
                    edit.party_size = new_party;
                }
            }
            if rng.u8(0..100) < 10 {
                stats.suppressed += 1;
                edit.suppress_emails = true;
            }
        }
        stats.sent += 1;
        let edit_suppressed = edit.suppress_emails;
        let started = Instant::now();
        let answer = client.edit_booking(edit).await;
        stats.latencies.push(started.elapsed());
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                let attempt = answer.inline_attempt.unwrap_or_default();
                let result = pb::InlineResult::try_from(attempt.result)
                    .map(|r| r.as_str_name().trim_start_matches("INLINE_RESULT_").to_string())
                    .unwrap_or_default();
                let outcome = pb::Outcome::try_from(answer.outcome).unwrap_or(pb::Outcome::Unspecified);
                let booking = answer.booking.expect("booking");
                let per_booking = stats.per_booking.entry(id.clone()).or_default();
                match (no_op, outcome) {
                    (true, pb::Outcome::Unchanged) => {
                        stats.unchanged += 1;
                        per_booking.unchanged += 1;
                    }
                    (false, pb::Outcome::Confirmed | pb::Outcome::Pending) if booking.version > current.version => {
                        if outcome == pb::Outcome::Confirmed {
                            stats.confirmed += 1;
                        } else {
                            stats.pending += 1;
                        }
                        per_booking.changed += 1;
                        if booking.version == current.version + 1 {
                            per_booking.told.push((booking.version, result.clone()));
                        }
                        // The edit made version current + 1 (its expected_version held); the
                        // booking answered may already be newer, when another edit followed
                        // before this one recorded its inline result.
                        let made = current.version + 1;
                        per_booking.acked.push(Acked { version: made, outcome, suppress: edit_suppressed });
                        *stats.inline.entry(result).or_default() += 1;
                    }
                    _ => stats.errors.push(format!(
                        "{id}: a {} edit of version {} answered {outcome:?} at version {}",
                        if no_op { "no-op" } else { "real" },
                        current.version,
                        booking.version
                    )),
                }
                learn(&known, booking);
            }
            Err(status) if status.code() == Code::Aborted => {
                stats.aborted += 1;
                let fresh = support::stack::get_booking(&mut client, id).await;
                learn(&known, fresh);
            }
            Err(status) => stats.errors.push(format!("{id}: edit refused: {status:?}")),
        }
    }
    stats
}

/// Freezes assign-svc for 50-600 ms at random moments until `stop`; always leaves it
/// thawed. Returns the frozen periods.
async fn freeze_at_random(assign: &ServiceProcess, stop: &AtomicBool, seed: u64) -> Vec<Duration> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut frozen = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(rng.u64(RUNNING_MS.0..=RUNNING_MS.1))).await;
        if stop.load(Ordering::SeqCst) {
            return frozen;
        }
        let period = Duration::from_millis(rng.u64(FROZEN_MS.0..=FROZEN_MS.1));
        assign.freeze();
        let started = Instant::now();
        tokio::time::sleep(period).await;
        assign.thaw();
        frozen.push(started.elapsed());
    }
}

/// Waits until nothing moves any more: no email queued in booking-svc's outbox and no
/// background job open or version still handed to its request (read-only counts, as
/// `Stack::settle` does), every delivery final and at the SMTP server, and no booking
/// changing (status and version through ListBookings) for half a second. Every booking
/// has room on its floor plan, so every job must end: open work after two minutes fails.
async fn quiesce(stack: &Stack, ids: &[String]) {
    let db = stack.db.client().await;
    let mut client = stack.booking();
    let mut notify = stack.notify();
    let started = Instant::now();
    let mut last = None;
    let mut unchanged_since = Instant::now();
    loop {
        let counts = db
            .query_one(
                "SELECT (SELECT count(*) FROM booking.outbox WHERE state = 'QUEUED'), \
                        (SELECT count(*) FROM booking.reassign_jobs WHERE state = 'OPEN') \
                      + (SELECT count(*) FROM booking.bookings WHERE handoff_due_at IS NOT NULL)",
                &[],
            )
            .await
            .expect("outbox and job counts");
        let (queued, open): (i64, i64) = (counts.get(0), counts.get(1));
        let mut states = Vec::new();
        for n in 0..RESTAURANTS {
            let page = client
                .list_bookings(pb::ListBookingsRequest {
                    restaurant_id: restaurant(n),
                    page_size: 500,
                    ..Default::default()
                })
                .await
                .expect("list bookings")
                .into_inner();
            assert!(page.next_page_token.is_empty(), "one page holds a restaurant's bookings");
            states.extend(page.bookings.into_iter().map(|b| (b.id, b.status, b.version)));
        }
        let mut deliveries_final = queued == 0;
        let mut sent = 0;
        if deliveries_final {
            for id in ids {
                let deliveries = notify
                    .list_deliveries(npb::ListDeliveriesRequest { booking_id: id.clone() })
                    .await
                    .expect("list deliveries")
                    .into_inner()
                    .deliveries;
                deliveries_final &= !deliveries.iter().any(|d| d.state == npb::DeliveryState::Queued as i32);
                sent += deliveries.iter().filter(|d| d.state == npb::DeliveryState::Sent as i32).count();
            }
        }
        let at_smtp = stack.smtp.mails().len();
        let snapshot = (states, queued, open, sent, at_smtp);
        if last.as_ref() != Some(&snapshot) {
            last = Some(snapshot);
            unchanged_since = Instant::now();
        }
        let drained = deliveries_final && at_smtp >= sent;
        if drained && open == 0 && unchanged_since.elapsed() >= Duration::from_millis(500) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not quiescent after 120 s: {queued} emails queued, {open} jobs open or hand-offs in flight, deliveries final: {deliveries_final}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends the warnings and errors of the in-process services to a file, for the
/// post-mortem of a failure; returns its path.
fn log_warnings() -> std::path::PathBuf {
    let path =
        support::process::target_dir().join("test-logs").join(format!("load-{}-services.log", std::process::id()));
    let _ = std::fs::create_dir_all(path.parent().expect("log dir"));
    let file = std::fs::File::create(&path).expect("create the service log");
    let _ = tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .try_init();
    path
}

/// Writes what is known about the first failing bookings to a file for the post-mortem:
/// their history with details, their outbox rows (read-only SQL: the API does not show
/// them) and notify-svc's deliveries. Returns the file's path.
async fn dump_failing_bookings(stack: &Stack, failures: &[String]) -> std::path::PathBuf {
    use std::fmt::Write;
    let mut ids: Vec<&str> = Vec::new();
    for failure in failures {
        let id = failure.split(':').next().unwrap_or_default();
        if id.len() == 36 && !ids.contains(&id) && ids.len() < 5 {
            ids.push(id);
        }
    }
    let mut client = stack.booking();
    let mut notify = stack.notify();
    let db = stack.db.client().await;
    let mut text = String::new();
    for id in ids {
        let _ = writeln!(text, "==== booking {id}\n-- history");
        for event in support::stack::history(&mut client, id).await {
            let at = event.time.and_then(|t| platform::proto::system_time(&t)).map(humantime::format_rfc3339_micros);
            let name = format!("{}:{}", event_type(&event), event.version);
            let detail = event.detail.map(struct_json).unwrap_or_default();
            let _ = writeln!(text, "{} {name} {detail}", at.map(|t| t.to_string()).unwrap_or_default());
        }
        let _ = writeln!(text, "-- outbox");
        let rows = db
            .query(
                "SELECT kind, version, state, attempts, coalesce(last_error, ''), created_at::text, \
                        coalesce(finished_at::text, '') FROM booking.outbox WHERE booking_id = $1::text::uuid ORDER BY id",
                &[&id],
            )
            .await
            .unwrap_or_default();
        for r in rows {
            let (kind, version, state, attempts): (String, i64, String, i32) = (r.get(0), r.get(1), r.get(2), r.get(3));
            let (error, created, finished): (String, String, String) = (r.get(4), r.get(5), r.get(6));
            let _ = writeln!(
                text,
                "{kind}:{version} {state} attempts {attempts} created {created} finished {finished} {error}"
            );
        }
        let _ = writeln!(text, "-- deliveries");
        if let Ok(answer) = notify.list_deliveries(npb::ListDeliveriesRequest { booking_id: id.to_string() }).await {
            for d in answer.into_inner().deliveries {
                let _ = writeln!(text, "{d:?}");
            }
        }
    }
    let path = support::process::target_dir().join("test-logs").join(format!("load-{}.txt", std::process::id()));
    let _ = std::fs::create_dir_all(path.parent().expect("log dir"));
    std::fs::write(&path, text).expect("write the failure dump");
    path
}

fn struct_json(detail: prost_types::Struct) -> serde_json::Value {
    fn value(v: prost_types::Value) -> serde_json::Value {
        use prost_types::value::Kind;
        match v.kind {
            Some(Kind::BoolValue(b)) => b.into(),
            Some(Kind::NumberValue(n)) => n.into(),
            Some(Kind::StringValue(s)) => s.into(),
            Some(Kind::StructValue(s)) => struct_json(s),
            Some(Kind::ListValue(l)) => l.values.into_iter().map(value).collect(),
            _ => serde_json::Value::Null,
        }
    }
    detail.fields.into_iter().map(|(k, v)| (k, value(v))).collect()
}

/// Everything seen about one booking after the load.
struct Seen<'a> {
    booking: &'a pb::Booking,
    events: &'a [pb::BookingEvent],
    open_jobs: &'a [i64],
    mails: &'a [(String, i64)],
    deliveries: &'a [npb::Delivery],
    answered: Answered,
    /// How the test's own create was answered.
    created: Acked,
}

/// Figures over all bookings.
#[derive(Debug, Default)]
struct Totals {
    confirmed: usize,
    versions: usize,
    inline_confirmations: usize,
    background_confirmations: usize,
    stale_inline: usize,
    taken_over: usize,
    queued: usize,
    suppressed: usize,
    dropped: usize,
    dispatched: usize,
}

/// What the history says about one version.
#[derive(Debug, Default)]
struct Version {
    /// Created or edited into existence (CREATED / EDITED).
    opened: bool,
    /// That request asked for suppress_emails.
    suppress: bool,
    /// The inline result recorded by the request itself.
    recorded: Vec<String>,
    /// The background took the request over before it recorded its result (INTERRUPTED).
    taken_over: bool,
    /// What decided the version's email while it was current and pending: the request's
    /// own result, or INTERRUPTED when the background took over first. None when the
    /// version was superseded before either.
    decided: Option<String>,
    /// CONFIRMED events.
    confirmed: usize,
    /// Confirmed by its request's inline result (the client was told OUTCOME_CONFIRMED).
    confirmed_inline: bool,
}

/// An email by (kind, version), e.g. ("MODIFICATION_CONFIRMED", 3).
type Key = (String, i64);

fn confirmation(version: i64) -> &'static str {
    if version == 1 { "BOOKING_CONFIRMED" } else { "MODIFICATION_CONFIRMED" }
}

fn pending(version: i64) -> &'static str {
    if version == 1 { "BOOKING_PENDING" } else { "MODIFICATION_REQUESTED" }
}

fn event_type(event: &pb::BookingEvent) -> String {
    pb::BookingEventType::try_from(event.r#type)
        .map(|t| t.as_str_name().trim_start_matches("BOOKING_EVENT_TYPE_").to_string())
        .unwrap_or_default()
}

fn detail_bool(event: &pb::BookingEvent, key: &str) -> bool {
    use prost_types::value::Kind;
    matches!(
        event.detail.as_ref().and_then(|d| d.fields.get(key)).and_then(|v| v.kind.as_ref()),
        Some(Kind::BoolValue(true))
    )
}

fn detail_i64(event: &pb::BookingEvent, key: &str) -> Option<i64> {
    use prost_types::value::Kind;
    match event.detail.as_ref()?.fields.get(key)?.kind.as_ref()? {
        Kind::NumberValue(n) => Some(*n as i64),
        _ => None,
    }
}

/// Derives from the rules and the history which mails this booking must have received,
/// and compares with the SMTP server, notify-svc's ledger and what the clients saw.
fn check_booking(id: &str, seen: &Seen<'_>, totals: &mut Totals, failures: &mut Vec<String>) {
    let mut fail = |what: String| failures.push(format!("{id}: {what}"));
    let mut versions: BTreeMap<i64, Version> = BTreeMap::new();
    let (mut edited, mut unchanged) = (0, 0);
    let mut queued: BTreeMap<Key, usize> = BTreeMap::new();
    let mut suppressed: BTreeMap<Key, usize> = BTreeMap::new();
    let mut dispatched: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    let mut dropped: BTreeMap<Key, Vec<(String, Option<i64>)>> = BTreeMap::new();
    // Every event that changes a booking is written under its row lock, so the history's
    // order is the order things happened in: `latest` is the newest version at each event.
    let mut latest = 0;
    for event in seen.events {
        let v = event.version;
        let kind = || (detail_str(event, "kind").unwrap_or_default(), v);
        match event_type(event).as_str() {
            name @ ("CREATED" | "EDITED") => {
                let version = versions.entry(v).or_default();
                if version.opened {
                    fail(format!("version {v} made twice"));
                }
                version.opened = true;
                version.suppress = detail_bool(event, "suppress_emails");
                edited += usize::from(name == "EDITED");
                latest = latest.max(v);
            }
            "EDIT_UNCHANGED" => unchanged += 1,
            "INLINE_ATTEMPT" => {
                let result = detail_str(event, "result").unwrap_or_default();
                if support::stack::detail_bool(event, "email_sent") != Some(false) {
                    fail(format!("version {v}: the inline attempt does not record email_sent: false"));
                }
                let version = versions.entry(v).or_default();
                let current = latest == v && version.confirmed == 0;
                let decides = if result == "INTERRUPTED" {
                    totals.taken_over += 1;
                    let twice = std::mem::replace(&mut version.taken_over, true);
                    current && !twice
                } else {
                    let stale = detail_bool(event, "stale");
                    totals.stale_inline += usize::from(stale);
                    version.recorded.push(result.clone());
                    if stale == current {
                        fail(format!("version {v}: inline {result} recorded with stale {stale}, current {current}"));
                    }
                    current && !version.taken_over
                };
                if decides && let Some(before) = version.decided.replace(result) {
                    fail(format!("version {v} decided twice (first {before})"));
                }
            }
            "CONFIRMED" => {
                let version = versions.entry(v).or_default();
                version.confirmed += 1;
                match detail_str(event, "via").as_deref() {
                    Some("inline") => {
                        version.confirmed_inline = true;
                        totals.inline_confirmations += 1;
                    }
                    _ => totals.background_confirmations += 1,
                }
            }
            "EMAIL_QUEUED" => *queued.entry(kind()).or_default() += 1,
            "EMAIL_SUPPRESSED" => *suppressed.entry(kind()).or_default() += 1,
            "EMAIL_DISPATCHED" => {
                dispatched.entry(kind()).or_default().push(detail_str(event, "state").unwrap_or_default())
            }
            "EMAIL_DROPPED" => dropped
                .entry(kind())
                .or_default()
                .push((detail_str(event, "reason").unwrap_or_default(), detail_i64(event, "current_version"))),
            "REASSIGN_UPDATE" => {}
            other => fail(format!("unexpected event {other} at version {v}")),
        }
    }

    // No edit lost, none made twice: one version per answered change, one EDIT_UNCHANGED
    // per no-op answer.
    let booking = seen.booking;
    if edited != seen.answered.changed || booking.version != 1 + edited as i64 {
        fail(format!(
            "{} edits answered as changes, {edited} EDITED events, version {}",
            seen.answered.changed, booking.version
        ));
    }
    if unchanged != seen.answered.unchanged {
        fail(format!("{} no-op answers but {unchanged} EDIT_UNCHANGED events", seen.answered.unchanged));
    }
    for (v, result) in &seen.answered.told {
        let recorded = versions.get(v).map(|version| version.recorded.as_slice()).unwrap_or_default();
        if recorded != [result.clone()] {
            fail(format!("version {v}: the client was told {result}, the history recorded {recorded:?}"));
        }
    }

    // 1. CONFIRMED: every floor plan has room for every booking, so the background must
    // have confirmed every version left pending; no job may stay open.
    let status = pb::BookingStatus::try_from(booking.status).unwrap_or(pb::BookingStatus::Unspecified);
    let last = versions.get(&booking.version);
    match status {
        pb::BookingStatus::Confirmed if last.is_some_and(|l| l.confirmed == 1) && seen.open_jobs.is_empty() => {
            totals.confirmed += 1
        }
        _ => fail(format!(
            "{status:?} at version {}: confirmed events {:?}, open jobs {:?}",
            booking.version,
            last.map(|l| l.confirmed),
            seen.open_jobs
        )),
    }

    // The emails the rules call for, per version: its confirmation when it became
    // confirmed; its pending email when what decided it while current was not an
    // assignment (an inline result recorded after a newer version or after the
    // background's takeover decides nothing); suppressed when its request said so.
    let mut due: BTreeMap<Key, bool> = BTreeMap::new();
    totals.versions += versions.len();
    for (&v, version) in &versions {
        if !version.opened || v < 1 || v > booking.version {
            fail(format!("events about version {v}, which was never made (current {})", booking.version));
        }
        if version.confirmed > 1 {
            fail(format!("version {v} confirmed {} times", version.confirmed));
        }
        if version.confirmed == 1 {
            due.insert((confirmation(v).to_string(), v), version.suppress);
        }
        if version.recorded.len() != 1 {
            fail(format!("version {v}: its request recorded inline results {:?}", version.recorded));
        }
        if version.confirmed_inline && version.decided.as_deref() != Some("ASSIGNED") {
            fail(format!(
                "version {v} confirmed inline after {:?} decided it (its pending email was queued then)",
                version.decided
            ));
        }
        match version.decided.as_deref() {
            Some("ASSIGNED") if version.confirmed != 1 => fail(format!("version {v} assigned inline, not confirmed")),
            Some("ASSIGNED") => {}
            Some(_) => {
                due.insert((pending(v).to_string(), v), version.suppress);
            }
            None if v < booking.version => {}
            None => fail(format!("nothing decided the current version {v}")),
        }
    }
    for (key, &suppress) in &due {
        let (q, s) = (queued.get(key).copied().unwrap_or(0), suppressed.get(key).copied().unwrap_or(0));
        if (q, s) != if suppress { (0, 1) } else { (1, 0) } {
            fail(format!("{key:?} (suppress_emails {suppress}): queued {q} times, suppressed {s} times"));
        }
    }
    for key in queued.keys().chain(suppressed.keys()) {
        if !due.contains_key(key) {
            fail(format!("{key:?} queued or suppressed, but the rules do not call for it"));
        }
    }

    // The service's own account is consistent: every queued email ended once, dispatched,
    // or dropped because a newer version superseded it before dispatch.
    for key in queued.keys() {
        let sent = dispatched.get(key).map(Vec::as_slice).unwrap_or_default();
        let gone = dropped.get(key).map(Vec::as_slice).unwrap_or_default();
        match (sent, gone) {
            ([state], []) if state == "SENT" || state == "QUEUED" => totals.dispatched += 1,
            ([], [(reason, current)])
                if reason.contains("superseded") && current.is_some_and(|c| c > key.1) && key.1 < booking.version =>
            {
                totals.dropped += 1;
            }
            _ => fail(format!("{key:?} queued once but ended as dispatched {sent:?}, dropped {gone:?}")),
        }
    }
    for key in dispatched.keys().chain(dropped.keys()) {
        if !queued.contains_key(key) {
            fail(format!("{key:?} dispatched or dropped but never queued"));
        }
    }
    totals.queued += queued.len();
    totals.suppressed += suppressed.len();

    // 2-3. The mails, judged from what this test did and was answered and the final state
    // read through the API, never from the service's account (the rule is stated in
    // docs/architecture.md): a version asked with suppress_emails gets no mail; a version
    // answered CONFIRMED may get its confirmation, one answered PENDING its pending mail and
    // its confirmation; the final version must get its confirmation (and its pending mail
    // when it was answered PENDING); each mail at most once.
    let mut acks: BTreeMap<i64, &Acked> = BTreeMap::new();
    for ack in std::iter::once(&seen.created).chain(seen.answered.acked.iter()) {
        if acks.insert(ack.version, ack).is_some() {
            fail(format!("version {} was answered as made twice", ack.version));
        }
    }
    let mut allowed: BTreeSet<Key> = BTreeSet::new();
    for (&v, ack) in &acks {
        if ack.suppress {
            continue;
        }
        match ack.outcome {
            pb::Outcome::Confirmed => {
                allowed.insert((confirmation(v).to_string(), v));
            }
            pb::Outcome::Pending => {
                allowed.insert((confirmation(v).to_string(), v));
                allowed.insert((pending(v).to_string(), v));
            }
            other => fail(format!("version {v} was answered {other:?}")),
        }
    }
    let mut required: BTreeSet<Key> = BTreeSet::new();
    match acks.get(&booking.version) {
        None => fail(format!("the final version {} was never answered to this test", booking.version)),
        Some(ack) if !ack.suppress => {
            required.insert((confirmation(booking.version).to_string(), booking.version));
            if ack.outcome == pb::Outcome::Pending {
                required.insert((pending(booking.version).to_string(), booking.version));
            }
        }
        Some(_) => {}
    }
    let mut at_smtp: BTreeMap<Key, usize> = BTreeMap::new();
    for (kind, version) in seen.mails {
        *at_smtp.entry((kind.clone(), *version)).or_default() += 1;
    }
    for (key, &count) in &at_smtp {
        if count != 1 {
            fail(format!("{key:?} arrived {count} times"));
        }
        if !allowed.contains(key) {
            fail(format!("{key:?} arrived, but no answer to this test allows it"));
        }
    }
    for key in &required {
        if !at_smtp.contains_key(key) {
            fail(format!("{key:?} is required but never arrived"));
        }
    }

    // 4. notify-svc's ledger agrees: one SENT delivery per mail at the SMTP server, and
    // nothing else but SUPPRESSED ones for dropped emails (a stale retry is fenced by a
    // suppressing SendOnce, in case an earlier attempt reached notify-svc unanswered).
    let mut ledger: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for delivery in seen.deliveries {
        let kind = npb::NotificationKind::try_from(delivery.kind)
            .map(|k| k.as_str_name().trim_start_matches("NOTIFICATION_KIND_").to_string())
            .unwrap_or_default();
        let state = npb::DeliveryState::try_from(delivery.state)
            .map(|s| s.as_str_name().trim_start_matches("DELIVERY_STATE_").to_string())
            .unwrap_or_default();
        ledger.entry((kind, delivery.version)).or_default().push(state);
    }
    let sent_keys: BTreeSet<&Key> = ledger.iter().filter(|(_, s)| s.as_slice() == ["SENT"]).map(|(k, _)| k).collect();
    let smtp_keys: BTreeSet<&Key> = at_smtp.keys().collect();
    if sent_keys != smtp_keys {
        fail(format!(
            "notify-svc's SENT deliveries {sent_keys:?} differ from the mails at the SMTP server {smtp_keys:?}"
        ));
    }
    for (key, states) in &ledger {
        let fenced = states.as_slice() == ["SUPPRESSED"] && dropped.contains_key(key);
        if states.as_slice() != ["SENT"] && !fenced {
            fail(format!("{key:?}: deliveries in states {states:?}"));
        }
    }
}

/// The benchmark of issue 7 against a real stack (assign-svc and booking-svc as real
/// processes): it puts its own floor plans, creates its bookings, edits for a second from
/// four clients, and its JSON summary (the last line) holds the figures the README reports:
/// edits/s, ordered latency percentiles, the inline Assign's share, outcomes, no errors,
/// each service's peak RSS and where the CPU went per edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmark_drives_a_real_stack_and_reports_its_figures() {
    let stack = Stack::start(Options { assign_process: true, booking_in_process: false, ..Options::default() }).await;
    let booking = stack.booking_process(&[]).await;
    let output = tokio::process::Command::new(support::process::binary("booking-bench"))
        .args(["--booking-url", &booking.url, "--assign-url", &stack.assign.url()])
        .args(["--concurrency", "4", "--duration", "1s", "--warmup", "1", "--restaurants", "2"])
        .args(["--bookings-per-client", "2", "--json"])
        .output()
        .await
        .expect("run booking-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "booking-bench failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().expect("booking-bench printed nothing");
    let summary: serde_json::Value = serde_json::from_str(last).expect("the last line is one JSON object");
    println!("{stdout}");

    let edits = summary["edits"].as_u64().expect("edits");
    assert!(edits > 0, "no edit measured: {summary}");
    assert_eq!(summary["errors"].as_u64(), Some(0), "{summary}");
    let outcome = |kind: &str| summary["outcomes"][kind].as_u64().unwrap_or(0);
    assert_eq!(outcome("confirmed") + outcome("pending") + outcome("unchanged"), edits, "{summary}");
    assert!(outcome("confirmed") > 0, "no edit confirmed inline: {summary}");
    assert!(summary["edits_per_sec"].as_f64().is_some_and(|rate| rate > 0.0), "{summary}");
    let ms = |field: &str| summary[field].as_f64().expect(field);
    assert!(0.0 < ms("p50_ms") && ms("p50_ms") <= ms("p90_ms"), "{summary}");
    assert!(ms("p90_ms") <= ms("p99_ms") && ms("p99_ms") <= ms("max_ms"), "{summary}");
    let inline = &summary["inline_assign_ms"];
    assert!(inline["p50"].as_f64().is_some_and(|p50| p50 > 0.0 && p50 <= ms("max_ms")), "{summary}");
    for service in ["booking-svc", "assign-svc"] {
        assert!(summary["peak_rss_mib"][service].as_f64().is_some_and(|mib| mib > 0.0), "{service}: {summary}");
    }
    let cpu = &summary["cpu_ms_per_edit"];
    // notify-svc runs inside this test's process here, so it has no figure of its own.
    for process in ["postgres", "booking-svc", "assign-svc", "booking-bench"] {
        assert!(cpu[process].as_f64().is_some_and(|ms| ms >= 0.0), "{process}: {summary}");
    }
    assert!(cpu["postgres"].as_f64().is_some_and(|ms| ms > 0.0), "{summary}");
    assert!(cpu["total"].as_f64().is_some_and(|ms| ms > 0.0), "{summary}");
}
