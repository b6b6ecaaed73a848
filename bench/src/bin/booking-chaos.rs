//! `booking-chaos`: the real stack (two replicas of each service, a real SMTP server) under
//! load and random faults from one seed, then judged from outside. Prints the seed, each
//! fault as it is injected, a summary and `VERDICT: PASS` or `VERDICT: FAIL` with every
//! violation; exits 0 on PASS, 1 on FAIL, 2 when it could not run.

use booking_tools::chaos::{self, Settings};
use clap::Parser;
use std::{process::ExitCode, time::Duration};

#[derive(Parser, Debug)]
#[command(
    name = "booking-chaos",
    about = "Soak the booking stack under random faults from a seed and judge it from outside"
)]
struct Args {
    /// Seed of every random choice (operations, faults); default: a random one (printed).
    #[arg(long)]
    seed: Option<u64>,
    /// How long the load and the faults last (e.g. 60s, 30m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Live bookings the clients keep (a cancelled one is replaced by a new one).
    #[arg(long, default_value_t = 48)]
    bookings: usize,
    /// Client tasks; each owns its share of the bookings.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// PostgreSQL server on which a fresh database is created for the run (and dropped).
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    /// Longest wait for the stack to come to rest after the load before what is left counts as stuck.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    settle_timeout: Duration,
    /// Also print the summary as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let settings = Settings {
        seed: args.seed.unwrap_or_else(|| fastrand::u64(..)),
        duration: args.duration,
        bookings: args.bookings,
        clients: args.clients,
        database_url: args.database_url,
        json: args.json,
        settle_timeout: args.settle_timeout,
    };
    match chaos::run(settings).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("booking-chaos: {error:#}");
            ExitCode::from(2)
        }
    }
}
