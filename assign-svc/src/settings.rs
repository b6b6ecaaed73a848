//! assign-svc settings.
//!
//! The shared ones plus its listen address, the reassign scheduler's timing and the
//! tables' retentions. Owns
//! parsing only; it must never hold runtime state.

use clap::Parser;
use platform::{backoff::Backoff, settings::CommonSettings};
use std::{net::SocketAddr, time::Duration};

/// Flags and environment of `assign-svc`.
#[derive(Clone, Debug, Parser)]
#[command(name = "assign-svc", version, about = "Floor plans and exclusive table assignment (assign.v1.AssignService)")]
pub struct Settings {
    /// Address the gRPC server listens on.
    #[arg(long = "listen-addr", env = "LISTEN_ADDR", value_name = "LISTEN_ADDR", default_value = "0.0.0.0:50052")]
    pub listen_addr: SocketAddr,

    /// First delay between two attempts of a reassign job, in milliseconds (doubles per
    /// attempt, with jitter, up to the cap; freed capacity wakes jobs sooner).
    #[arg(long = "reassign-backoff-base-ms", env = "REASSIGN_BACKOFF_BASE_MS", value_name = "REASSIGN_BACKOFF_BASE_MS",
          default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub reassign_backoff_base_ms: u64,

    /// Longest delay between two attempts of a reassign job, in milliseconds.
    #[arg(long = "reassign-backoff-cap-ms", env = "REASSIGN_BACKOFF_CAP_MS", value_name = "REASSIGN_BACKOFF_CAP_MS",
          default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub reassign_backoff_cap_ms: u64,

    /// How long a claimed reassign job stays leased to this process, in milliseconds;
    /// another replica takes it over after that if this one died.
    #[arg(long = "reassign-lease-ms", env = "REASSIGN_LEASE_MS", value_name = "REASSIGN_LEASE_MS",
          default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub reassign_lease_ms: u64,

    /// Reassign jobs attempted at once by this process.
    #[arg(long = "reassign-concurrency", env = "REASSIGN_CONCURRENCY", value_name = "REASSIGN_CONCURRENCY",
          default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub reassign_concurrency: u32,

    /// How long reservations and assignments are kept after their slot ended, in seconds;
    /// then they are purged (a booking's with its finished job).
    #[arg(long = "assignment-retention-s", env = "ASSIGNMENT_RETENTION_S", value_name = "ASSIGNMENT_RETENTION_S",
          default_value_t = 259_200, value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
    pub assignment_retention_s: u64,

    /// How long a finished reassign job (assigned, superseded, given up, cancelled,
    /// released) is kept, in seconds, counted from when it finished.
    #[arg(long = "job-retention-s", env = "JOB_RETENTION_S", value_name = "JOB_RETENTION_S",
          default_value_t = 259_200, value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
    pub job_retention_s: u64,

    #[command(flatten)]
    pub common: CommonSettings,
}

impl Settings {
    /// Defaults with the given database (for tests and embedding).
    pub fn for_database(database_url: &str) -> Self {
        let mut settings = Self::parse_from(["assign-svc"]);
        settings.common = CommonSettings::with_database_url(database_url);
        settings
    }

    /// Delay policy between attempts of a reassign job.
    pub fn reassign_backoff(&self) -> Backoff {
        let base = Duration::from_millis(self.reassign_backoff_base_ms);
        Backoff::new(base, Duration::from_millis(self.reassign_backoff_cap_ms).max(base))
    }

    /// How long each table's rows are kept, with their purges.
    pub fn retentions(&self) -> Vec<platform::purge::Retention> {
        use crate::store::lifecycle;
        use platform::purge::Retention;
        let (slots, jobs) =
            (Duration::from_secs(self.assignment_retention_s), Duration::from_secs(self.job_retention_s));
        vec![
            Retention { purge: &lifecycle::RESERVATIONS, keep: slots, what: "reservations of ended slots" },
            Retention { purge: &lifecycle::ASSIGNMENTS, keep: slots, what: "assignments of ended slots" },
            Retention { purge: &lifecycle::JOBS, keep: jobs, what: "finished reassign jobs" },
        ]
    }

    /// Lease of a claimed reassign job.
    pub fn reassign_lease(&self) -> Duration {
        Duration::from_millis(self.reassign_lease_ms)
    }
}
