//! `booking-chaos`: a seeded soak of the real stack under every fault at once, judged
//! from outside.
//!
//! It starts two replicas of each service and a real SMTP server on a fresh database,
//! drives creates, edits, no-ops, cancels and floor-plan changes from client tasks that
//! each own their bookings, injects faults at random moments, lets the stack settle, and
//! judges what happened only from its own log of requests and answers, the public API and
//! the SMTP server's folder. One seed drives every random choice, so a failing seed
//! replays the same operations and faults in the same order (their timing still varies).

pub mod calls;
pub mod driver;
pub mod faults;
pub mod judge;
pub mod log;
mod report;
pub mod settle;
pub mod sink;
pub mod stack;
pub mod world;

use calls::{Clients, Stats};
use judge::{Evidence, Rules};
use stack::{Database, Stack};
use std::{collections::HashMap, time::Duration};
use tokio::time::Instant;

/// How to run the soak.
#[derive(Clone, Debug)]
pub struct Settings {
    pub seed: u64,
    /// How long the load and the faults last.
    pub duration: Duration,
    /// Live bookings (a cancelled one is replaced by a new one).
    pub bookings: usize,
    /// Client tasks sharing them.
    pub clients: usize,
    /// The PostgreSQL server to create the run's database on.
    pub database_url: String,
    /// Also print the summary as one JSON object (the last line).
    pub json: bool,
    /// Longest settle before what is left counts as stuck.
    pub settle_timeout: Duration,
}

/// Prints `line` with the time since `started`.
pub fn stamp(started: Instant, line: &str) {
    println!("[{:8.2}s] {line}", started.elapsed().as_secs_f64());
}

/// Runs the soak; `Ok(true)` when the verdict is PASS.
pub async fn run(settings: Settings) -> anyhow::Result<bool> {
    let seed = settings.seed;
    println!(
        "booking-chaos: seed {seed} ({} clients, {} bookings, {})",
        settings.clients,
        settings.bookings,
        humantime::format_duration(settings.duration)
    );
    println!("  `--seed {seed}` replays the same operations and faults in the same order; their timing still varies");
    anyhow::ensure!(settings.clients >= 1 && settings.bookings >= settings.clients, "need 1 <= clients <= bookings");
    let bin_dir = crate::binaries::ensure_binaries("booking-chaos")?;
    let run_dir = std::env::temp_dir().join(format!("booking-chaos-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let name = format!("chaos_{}_{}", std::process::id(), seed % 1_000_000_007);
    let database = Database::create(&settings.database_url, &name).await?;
    let stack = match Stack::start(&bin_dir, database.clone(), &run_dir).await {
        Ok(stack) => stack,
        Err(error) => {
            let _ = database.drop_now().await;
            return Err(error.context(format!("starting the stack (service logs in {})", run_dir.display())));
        }
    };
    let outcome = tokio::select! {
        outcome = soak(&stack, &settings) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let stopped = stack.stop().await;
    match &outcome {
        Ok(true) => {
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        _ => println!("service logs and mails kept in {}", run_dir.display()),
    }
    stopped?;
    outcome
}

async fn soak(stack: &Stack, settings: &Settings) -> anyhow::Result<bool> {
    let started = Instant::now();
    let world = world::World::new(settings.bookings);
    let clients = Clients::connect(&stack.urls_of("booking"), &stack.urls_of("assign"), &stack.urls_of("notify"))?;
    world::put_base_plans(&world, &clients).await?;
    stamp(
        started,
        &format!("stack up ({}), {} restaurants; load and faults start", names(stack), world.restaurants.len()),
    );

    let mut master = fastrand::Rng::with_seed(settings.seed);
    let client_seeds: Vec<u64> = (0..settings.clients).map(|_| master.u64(..)).collect();
    let (fault_seed, plan_seed) = (master.u64(..), master.u64(..));
    let load_end = Instant::now() + settings.duration;
    let window = driver::Window { load_end, hard_end: load_end + settings.settle_timeout };
    let mut tasks = tokio::task::JoinSet::new();
    for (n, seed) in client_seeds.into_iter().enumerate() {
        let slots = (0..settings.bookings).filter(|g| g % settings.clients == n).collect();
        tasks.spawn(driver::run_client(n, slots, seed, world.clone(), clients.clone(), window));
    }
    let plans = tokio::spawn(world::change_plans(world.clone(), clients.clone(), plan_seed, load_end, window.hard_end));
    let load = async {
        let mut reports = Vec::new();
        while let Some(report) = tasks.join_next().await {
            reports.push(report?);
        }
        anyhow::Ok(reports)
    };
    let (faults, reports) = tokio::join!(faults::inject(stack, fault_seed, started, load_end), load);
    let (plan_stats, plan_anomalies) = plans.await?;
    let reports = reports?;

    let mut stats = Stats::default();
    let mut logs = Vec::new();
    let mut violations = plan_anomalies;
    stats.merge(plan_stats);
    for report in reports {
        stats.merge(report.stats);
        logs.extend(report.logs);
        violations.extend(report.orphans);
    }
    violations.extend(faults.problems.iter().cloned());
    let total: u64 = stats.ops.values().sum();
    stamp(started, &format!("load over: {total} operations, {} faults; settling", faults.log.len()));

    let ids: Vec<String> = logs.iter().map(|l| l.id.clone()).collect();
    let observed = settle::settle(stack, &clients, &world, &ids, settings.settle_timeout).await;
    stamp(started, &format!("settle over after {:.1}s; judging", observed.took.as_secs_f64()));
    let deliveries: HashMap<String, Vec<judge::Delivery>> = observed.deliveries.clone();
    let evidence = Evidence {
        logs: &logs,
        finals: &observed.finals,
        listed: &observed.listed,
        mails: &observed.mails,
        deliveries: &deliveries,
        crashes: &faults.crashes,
        rules: Rules { outbox_lease: stack::WORKER_LEASE, handoff_window: stack::INLINE_TIMEOUT + stack::RECORD_GRACE },
    };
    let mut verdict = judge::judge(&evidence);
    violations.extend(observed.stuck.iter().cloned());
    violations.append(&mut verdict.violations);
    verdict.violations = violations;

    let replay = format!(
        "replay: booking-chaos --seed {} --duration {} --bookings {} --clients {} (same operations and faults in \
         the same order; timing varies)",
        settings.seed,
        humantime::format_duration(settings.duration),
        settings.bookings,
        settings.clients
    );
    let summary = report::Summary {
        seed: settings.seed,
        replay,
        stats: &stats,
        faults: &faults,
        observed: &observed,
        verdict: &verdict,
        bookings: logs.len(),
        outbox_lease_s: stack::WORKER_LEASE.as_secs_f64(),
    };
    report::print(&summary, settings.json);
    Ok(verdict.passed())
}

fn names(stack: &Stack) -> String {
    stack
        .urls
        .iter()
        .map(|(name, url)| format!("{name} {}", url.trim_start_matches("http://")))
        .collect::<Vec<_>>()
        .join(", ")
}
