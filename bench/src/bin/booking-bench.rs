//! `booking-bench`: how fast an edit is, against a running stack.
//!
//! Sets up floor plans and bookings first (through the public gRPC APIs), then runs
//! `--concurrency` clients editing their own bookings for `--duration`, with a mix of
//! edits that mostly confirm inline (new time, party size, notes), either as fast as the
//! stack answers (closed loop) or at an offered `--rate`. Prints edits/s,
//! latency percentiles from an HDR histogram, outcomes by kind, errors by gRPC code, and
//! the peak RSS of each local service process, and the CPU time per edit of each local
//! service, of PostgreSQL and of the benchmark itself (where the machine goes). With
//! `--watchers N`, N change-feed watchers read along and the lag of each change is
//! reported. With `--json` the last line is one JSON object with those figures.
//!
//! A run longer than `--report-every` (a soak: `--duration 30m`) also prints a line per
//! interval (edits/s, p50/p99, each service's resident memory and, with `--database-url`,
//! the rows of every table), each table's rows and size at the start and the end, and the
//! edits/s and p99 per 5-minute window with the targets of a steady state.

use booking_tools::{soak, usage};
use clap::Parser;
use hdrhistogram::Histogram;
use platform::proto::{
    assign::v1::{PutFloorPlanRequest, Table, assign_service_client::AssignServiceClient},
    booking::v1::{
        CreateBookingRequest, EditBookingRequest, Guest, Outcome, booking_service_client::BookingServiceClient,
    },
};
use std::{
    collections::BTreeMap,
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

#[derive(Parser, Debug, Clone)]
#[command(name = "booking-bench", about = "Benchmark booking edits against a running stack")]
struct Args {
    /// booking-svc URL.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    booking_url: String,
    /// assign-svc URL (to put the floor plans).
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    assign_url: String,
    /// Clients editing at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to edit (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Edits before measuring starts, per client.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Restaurants to spread the bookings over.
    #[arg(long, default_value_t = 8)]
    restaurants: usize,
    /// Bookings each client edits in turn.
    #[arg(long, default_value_t = 4)]
    bookings_per_client: usize,
    /// Offered load in edits/s over all clients (each client edits on a fixed schedule and
    /// latency counts from the scheduled start, so a stall is not hidden). Unset: every
    /// client edits again as soon as its previous edit answers (closed loop, saturation).
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,
    /// Send no emails for the benchmark's bookings (measures the edit path alone).
    #[arg(long)]
    suppress_emails: bool,
    /// Change-feed watchers (WatchBookingChanges from now on) reading while the edits run;
    /// the lag from each change's commit to its receipt is reported.
    #[arg(long, default_value_t = 0)]
    watchers: usize,
    /// Print the summary as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Call the stack over mutual TLS with the certificates booking-stack made in this
    /// folder (its CA and the staff client certificate); unset: plain text.
    #[arg(long)]
    cert_dir: Option<std::path::PathBuf>,
    /// Interval of the running figures of a run longer than it (a soak).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    report_every: Duration,
    /// The stack's PostgreSQL (with the three services' schemas): each table's rows and
    /// size at the start and the end, and the rows with each running figure.
    #[arg(long)]
    database_url: Option<String>,
}

/// One client's bookings and what it last saw of them.
struct Tracked {
    id: String,
    version: i64,
    day: i64,
    slot: i64,
    party: i32,
}

#[derive(Default)]
struct Counters {
    edits: AtomicU64,
    confirmed: AtomicU64,
    pending: AtomicU64,
    unchanged: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = format!("{:x}", SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_millis() % 0xffff_ffff);
    let tls = match &args.cert_dir {
        Some(dir) => {
            let pki = booking_tools::pki::LocalPki { dir: dir.clone() };
            Some(platform::tls::ClientTls::new(&pki.ca(), Some((&pki.cert("staff"), &pki.key("staff"))))?)
        }
        None => None,
    };
    let booking = BookingServiceClient::new(platform::grpc::connect_with(&args.booking_url, tls.as_ref())?);
    let mut assign = AssignServiceClient::new(platform::grpc::connect_with(&args.assign_url, tls.as_ref())?);

    eprintln!("booking-bench: setting up {} restaurants", args.restaurants);
    let restaurants: Vec<String> = (0..args.restaurants).map(|r| format!("bench-{run}-{r}")).collect();
    for restaurant in &restaurants {
        let tables = (0..24)
            .map(|t| Table {
                id: format!("t{t:02}"),
                seats: if t % 3 == 0 { 6 } else { 4 },
                combine_group: format!("g{}", t / 6),
            })
            .collect();
        assign.put_floor_plan(PutFloorPlanRequest { restaurant_id: restaurant.clone(), tables }).await?;
    }

    let clients = args.concurrency.max(1);
    eprintln!("booking-bench: creating {} bookings", clients * args.bookings_per_client);
    let mut per_client: Vec<Vec<Tracked>> = Vec::with_capacity(clients);
    let base_day = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_secs() as i64 / 86_400 + 2;
    for c in 0..clients {
        let mut mine = Vec::with_capacity(args.bookings_per_client);
        for b in 0..args.bookings_per_client {
            let restaurant = (c * args.bookings_per_client + b) % restaurants.len();
            // Each booking gets its own day, so edits mostly fit.
            let day = base_day + (c * args.bookings_per_client + b) as i64 / restaurants.len() as i64;
            let slot = 18 * 4;
            let response = booking
                .clone()
                .create_booking(CreateBookingRequest {
                    restaurant_id: restaurants[restaurant].clone(),
                    guest: Some(Guest {
                        name: format!("Bench {c}-{b}"),
                        email: format!("bench{c}x{b}@example.com"),
                        phone: String::new(),
                    }),
                    party_size: 2,
                    start_time: Some(at(day, slot)),
                    duration: Some(platform::proto::duration(Duration::from_secs(90 * 60))),
                    notes: String::new(),
                    suppress_emails: args.suppress_emails,
                    idempotency_key: String::new(),
                })
                .await?
                .into_inner();
            let created = response.booking.ok_or_else(|| anyhow::anyhow!("CreateBooking answered no booking"))?;
            mine.push(Tracked { id: created.id, version: created.version, day, slot, party: 2 });
        }
        per_client.push(mine);
    }

    let counters = Arc::new(Counters::default());
    // Latencies in microseconds, 1 µs to 60 s, 3 significant digits.
    let template = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_from(&template)));
    // The latencies of the current report interval.
    let window = Arc::new(Mutex::new(Histogram::<u64>::new_from(&template)));
    // The inline Assign's share of each edit (what booking-svc reports it waited for).
    let inline_histogram = Arc::new(Mutex::new(Histogram::<u64>::new_from(&template)));
    let errors_by_code = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watchers =
        booking_tools::feed::Watchers::start(&args.booking_url, tls.as_ref(), args.watchers, measuring.clone()).await?;

    let mut tasks = Vec::new();
    for (c, mut mine) in per_client.into_iter().enumerate() {
        let mut client = booking.clone();
        let counters = counters.clone();
        let histogram = histogram.clone();
        let window = window.clone();
        let inline_histogram = inline_histogram.clone();
        let template = template.clone();
        let errors_by_code = errors_by_code.clone();
        let measuring = measuring.clone();
        let stop = stop.clone();
        let suppress = args.suppress_emails;
        let warmup = args.warmup;
        // With --rate, this client's edits are due every `interval`, the clients staggered.
        let interval = args.rate.map(|rate| Duration::from_secs_f64(clients as f64 / rate));
        let mut due = Instant::now() + interval.unwrap_or_default().mul_f64(c as f64 / clients as f64);
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_from(&template);
            let mut local_inline = Histogram::<u64>::new_from(&template);
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = match interval {
                    Some(interval) => {
                        tokio::time::sleep_until(due.into()).await;
                        let scheduled = due;
                        due += interval;
                        scheduled
                    }
                    None => Instant::now(),
                };
                let index = (n as usize) % mine.len();
                let tracked = &mut mine[index];
                n += 1;
                // The mix: mostly a new time (±15..60 min, within the evening), sometimes the
                // party size, sometimes only the notes.
                let mut request = EditBookingRequest {
                    booking_id: tracked.id.clone(),
                    expected_version: Some(tracked.version),
                    suppress_emails: suppress,
                    ..Default::default()
                };
                let (new_slot, new_party) = match n % 10 {
                    0..=5 => {
                        let step = 1 + (n % 4) as i64;
                        let slot = if tracked.slot + step > 21 * 4 { 17 * 4 + step } else { tracked.slot + step };
                        request.start_time = Some(at(tracked.day, slot));
                        (slot, tracked.party)
                    }
                    6..=8 => {
                        let party = if tracked.party >= 6 { 2 } else { tracked.party + 1 };
                        request.party_size = Some(party);
                        (tracked.slot, party)
                    }
                    _ => {
                        request.notes = Some(format!("client {c} edit {n}"));
                        (tracked.slot, tracked.party)
                    }
                };
                let result = client.edit_booking(request).await;
                let elapsed = started.elapsed();
                let counted = measuring.load(Ordering::Relaxed) && n > warmup as u64;
                match result {
                    Ok(response) => {
                        let response = response.into_inner();
                        if let Some(booking) = &response.booking {
                            tracked.version = booking.version;
                        }
                        tracked.slot = new_slot;
                        tracked.party = new_party;
                        if counted {
                            let _ = local.record(elapsed.as_micros().max(1) as u64);
                            let _ = window
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .record(elapsed.as_micros().max(1) as u64);
                            let inline = response
                                .inline_attempt
                                .as_ref()
                                .and_then(|attempt| attempt.elapsed.as_ref())
                                .and_then(platform::proto::std_duration);
                            if let Some(inline) = inline {
                                let _ = local_inline.record(inline.as_micros().max(1) as u64);
                            }
                            counters.edits.fetch_add(1, Ordering::Relaxed);
                            match Outcome::try_from(response.outcome) {
                                Ok(Outcome::Confirmed) => counters.confirmed.fetch_add(1, Ordering::Relaxed),
                                Ok(Outcome::Pending) => counters.pending.fetch_add(1, Ordering::Relaxed),
                                _ => counters.unchanged.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                    }
                    Err(status) => {
                        if counted {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                            let mut errors = errors_by_code.lock().unwrap_or_else(|e| e.into_inner());
                            *errors.entry(format!("{:?}", status.code())).or_insert(0) += 1;
                        }
                        if status.code() == tonic::Code::Aborted {
                            // Someone else moved the version: catch up on it.
                            tracked.version += 1;
                        }
                    }
                }
            }
            let mut shared = histogram.lock().unwrap_or_else(|e| e.into_inner());
            let _ = shared.add(&local);
            drop(shared);
            let mut shared = inline_histogram.lock().unwrap_or_else(|e| e.into_inner());
            let _ = shared.add(&local_inline);
        }));
    }

    let soak = args.duration > args.report_every;
    let database = match (&args.database_url, soak) {
        (Some(url), true) => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            Some(client)
        }
        _ => None,
    };
    let tables_at_start = match &database {
        Some(client) => Some(soak::tables(client).await?),
        None => None,
    };
    let rows_of = |tables: &BTreeMap<String, soak::TableFigures>| -> BTreeMap<String, i64> {
        tables.iter().map(|(name, figures)| (name.clone(), figures.rows)).collect()
    };
    let mut intervals: Vec<soak::Interval> = Vec::new();
    let (mut interval_start, mut interval_edits, mut interval_errors) = (0.0, 0, 0);

    tokio::time::sleep(Duration::from_millis(300)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    window.lock().unwrap_or_else(|e| e.into_inner()).reset();
    let cpu_before = usage::cpu_seconds_by_process();
    usage::warn_about_other_copies(&cpu_before);
    let mut last = 0;
    loop {
        let now = started.elapsed().as_secs_f64();
        let done = started.elapsed() >= args.duration;
        // The last interval may be shorter (it is kept when it lasted a second at least).
        let due = now - interval_start >= args.report_every.as_secs_f64() || (done && now - interval_start >= 1.0);
        if soak && due {
            let latency = std::mem::replace(
                &mut *window.lock().unwrap_or_else(|e| e.into_inner()),
                Histogram::<u64>::new_from(&template),
            );
            let (edits, errors) = (counters.edits.load(Ordering::Relaxed), counters.errors.load(Ordering::Relaxed));
            let rows = match &database {
                Some(client) => rows_of(&soak::tables(client).await?),
                None => BTreeMap::new(),
            };
            let interval = soak::Interval {
                at_s: now,
                seconds: now - interval_start,
                edits: edits - interval_edits,
                errors: errors - interval_errors,
                latency,
                rss_mib: usage::rss_now(),
                rows,
                load: soak::load_average(),
            };
            eprintln!();
            eprintln!("booking-bench: interval {}", interval.json());
            (interval_start, interval_edits, interval_errors) = (now, edits, errors);
            intervals.push(interval);
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1).min(args.duration.saturating_sub(started.elapsed()))).await;
        let edits = counters.edits.load(Ordering::Relaxed);
        eprint!(
            "\rbooking-bench: {:>5.1}s  {:>7} edits  {:>7.0} edits/s (last second {:>6})  errors {}   ",
            started.elapsed().as_secs_f64(),
            edits,
            edits as f64 / started.elapsed().as_secs_f64(),
            edits - last,
            counters.errors.load(Ordering::Relaxed)
        );
        let _ = std::io::stderr().flush();
        last = edits;
    }
    let measured = started.elapsed();
    let cpu_after = usage::cpu_seconds_by_process();
    stop.store(true, Ordering::Relaxed);
    measuring.store(false, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let feed = watchers.finish().await;
    eprintln!();
    let tables_at_end = match &database {
        Some(client) => Some(soak::tables(client).await?),
        None => None,
    };

    let histogram = histogram.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let inline_histogram = inline_histogram.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let inline_ms = |q: f64| inline_histogram.value_at_quantile(q) as f64 / 1000.0;
    let edits = counters.edits.load(Ordering::Relaxed);
    let rss = usage::peak_rss_of_services();
    let cpu = usage::cpu_ms_per_edit(&cpu_before, &cpu_after, edits);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let summary = serde_json::json!({
        "concurrency": clients,
        "offered_rate": args.rate,
        "duration_s": measured.as_secs_f64(),
        "edits": edits,
        "edits_per_sec": edits as f64 / measured.as_secs_f64(),
        "p50_ms": ms(0.50),
        "p90_ms": ms(0.90),
        "p99_ms": ms(0.99),
        "max_ms": histogram.max() as f64 / 1000.0,
        "mean_ms": histogram.mean() / 1000.0,
        "inline_assign_ms": {
            "p50": inline_ms(0.50),
            "p90": inline_ms(0.90),
            "p99": inline_ms(0.99),
            "max": inline_histogram.max() as f64 / 1000.0,
            "mean": inline_histogram.mean() / 1000.0,
        },
        "outcomes": {
            "confirmed": counters.confirmed.load(Ordering::Relaxed),
            "pending": counters.pending.load(Ordering::Relaxed),
            "unchanged": counters.unchanged.load(Ordering::Relaxed),
        },
        "errors": counters.errors.load(Ordering::Relaxed),
        "errors_by_code": *errors_by_code.lock().unwrap_or_else(|e| e.into_inner()),
        "peak_rss_mib": rss,
        "cpu_ms_per_edit": cpu,
        "cores": cores,
        "feed": {
            "watchers": feed.watchers,
            "changes_received": feed.received,
            "lag_ms": { "p50": feed.lag_p50_ms, "p99": feed.lag_p99_ms, "max": feed.lag_max_ms },
            "errors": feed.errors,
        },
    });
    let offered = args.rate.map(|rate| format!(", offered {rate:.0}/s")).unwrap_or_default();
    println!(
        "edits          {edits} in {:.1}s, {:.0} edits/s at concurrency {clients}{offered}",
        measured.as_secs_f64(),
        summary["edits_per_sec"].as_f64().unwrap_or(0.0)
    );
    println!(
        "latency ms     p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(0.50),
        ms(0.90),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
    println!(
        "inline Assign  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} (the part of each edit spent in assign-svc)",
        inline_ms(0.50),
        inline_ms(0.90),
        inline_ms(0.99),
        inline_histogram.max() as f64 / 1000.0
    );
    println!("outcomes       {}", summary["outcomes"]);
    println!("errors         {} {}", summary["errors"], summary["errors_by_code"]);
    println!("peak RSS MiB   {}", summary["peak_rss_mib"]);
    if feed.watchers > 0 {
        println!(
            "feed lag ms    p50 {:.2}  p99 {:.2}  max {:.2} ({} watchers, {} changes received, errors {:?})",
            feed.lag_p50_ms, feed.lag_p99_ms, feed.lag_max_ms, feed.watchers, feed.received, feed.errors
        );
    }
    if let Some(total) = cpu.get("total").and_then(|v| v.as_f64()).filter(|t| *t > 0.0) {
        println!(
            "CPU ms/edit    {} (at that cost {cores} cores give at most {:.0} edits/s)",
            summary["cpu_ms_per_edit"],
            cores as f64 * 1000.0 / total
        );
    }
    let mut summary = summary;
    if soak {
        let soak = soak::report(args.report_every, &intervals, tables_at_start.as_ref(), tables_at_end.as_ref());
        summary["soak"] = soak;
    }
    if args.json {
        println!("{summary}");
    }
    Ok(())
}

/// `--rate`: a positive number of edits per second.
fn positive_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{value:?} is not a positive number of edits per second")),
    }
}

/// A start time: `day` days since the epoch, `slot` quarter hours after midnight (UTC).
fn at(day: i64, slot: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: day * 86_400 + slot * 900, nanos: 0 }
}
