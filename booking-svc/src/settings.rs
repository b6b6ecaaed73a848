//! booking-svc's settings.
//!
//! The shared ones plus its listen address, its peers (and how often their names are
//! resolved), the inline-assignment switch, the workers' timings, the change feed's
//! buffer and the tables' retentions.

use clap::Parser;
use platform::settings::{CommonSettings, parse_bool, parse_http_url};
use std::{net::SocketAddr, time::Duration};

/// Flags and environment of `booking-svc`.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "booking-svc",
    version,
    about = "Restaurant bookings with inline confirmation (booking.v1.BookingService)"
)]
pub struct Settings {
    /// Address the gRPC server listens on.
    #[arg(long = "listen-addr", env = "LISTEN_ADDR", value_name = "LISTEN_ADDR", default_value = "0.0.0.0:50051")]
    pub listen_addr: SocketAddr,

    /// assign-svc URL. Its host may resolve to several replicas (a headless Service): calls
    /// are spread over every one that reports SERVING.
    #[arg(long = "assign-url", env = "ASSIGN_URL", value_name = "ASSIGN_URL", default_value = "http://127.0.0.1:50052", value_parser = parse_http_url)]
    pub assign_url: String,

    /// notify-svc URL, spread over its replicas like ASSIGN_URL.
    #[arg(long = "notify-url", env = "NOTIFY_URL", value_name = "NOTIFY_URL", default_value = "http://127.0.0.1:50053", value_parser = parse_http_url)]
    pub notify_url: String,

    /// How often the hosts of ASSIGN_URL and NOTIFY_URL are resolved again to find
    /// replicas that came or went, in milliseconds (a replica that dies or drains leaves
    /// at once, through its health).
    #[arg(long = "resolve-interval-ms", env = "RESOLVE_INTERVAL_MS", value_name = "RESOLVE_INTERVAL_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub resolve_interval_ms: u64,

    /// Resolves the peers' hosts: the system's resolver (tests put their own).
    #[arg(skip)]
    pub resolver: platform::balance::Resolver,

    /// Try to confirm creates and edits inline (true) or always hand them to the
    /// background (false).
    #[arg(long = "inline-assign", env = "INLINE_ASSIGN", value_name = "INLINE_ASSIGN", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub inline_assign: bool,

    /// How long an idempotency key answers its first result, in seconds; older keys are
    /// purged (a request repeating one after that is a new request).
    #[arg(long = "idempotency-retention-s", env = "IDEMPOTENCY_RETENTION_S", value_name = "IDEMPOTENCY_RETENTION_S", default_value_t = 604_800,
          value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
    pub idempotency_retention_s: u64,

    /// How long a finished email (sent, dropped or failed) stays in the outbox for
    /// debugging, in seconds, counted from when it finished; then it is purged.
    #[arg(long = "outbox-retention-s", env = "OUTBOX_RETENTION_S", value_name = "OUTBOX_RETENTION_S", default_value_t = 259_200,
          value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
    pub outbox_retention_s: u64,

    /// How long a closed reassign job is kept, in seconds, counted from when it closed.
    #[arg(long = "reassign-job-retention-s", env = "REASSIGN_JOB_RETENTION_S", value_name = "REASSIGN_JOB_RETENTION_S",
          default_value_t = 259_200, value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
    pub reassign_job_retention_s: u64,

    /// How long a finished release task is kept, in seconds, counted from when it finished.
    #[arg(long = "release-task-retention-s", env = "RELEASE_TASK_RETENTION_S", value_name = "RELEASE_TASK_RETENTION_S",
          default_value_t = 259_200, value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
    pub release_task_retention_s: u64,

    /// How long a booking is kept after its slot ended, in seconds; then it is removed
    /// with its history (the audit log), its finished emails, jobs and release task, and
    /// its changes. Unset: bookings and their history are kept forever.
    #[arg(long = "history-retention-s", env = "HISTORY_RETENTION_S", value_name = "HISTORY_RETENTION_S",
          value_parser = clap::value_parser!(u64).range(1..=3_153_600_000))]
    pub history_retention_s: Option<u64>,

    /// Longest wait for the inline assignment, in milliseconds.
    #[arg(long = "inline-assign-timeout-ms", env = "INLINE_ASSIGN_TIMEOUT_MS", value_name = "INLINE_ASSIGN_TIMEOUT_MS", default_value_t = 800,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub inline_assign_timeout_ms: u64,

    /// Least time kept between the inline deadline and the caller's own gRPC deadline, for
    /// recording the result and answering, in milliseconds (twice the apply step's time
    /// when that is longer).
    #[arg(long = "inline-deadline-margin-ms", env = "INLINE_DEADLINE_MARGIN_MS", value_name = "INLINE_DEADLINE_MARGIN_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub inline_deadline_margin_ms: u64,

    /// How long after the inline window the background takes over a create or edit whose
    /// request died before recording its inline result (a crash), in milliseconds.
    #[arg(long = "inline-record-grace-ms", env = "INLINE_RECORD_GRACE_MS", value_name = "INLINE_RECORD_GRACE_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub inline_record_grace_ms: u64,

    /// Lease on a claimed email, release task or reassign job, in milliseconds; work of a
    /// dead replica is taken over when its lease runs out. At least twice PEER_TIMEOUT_MS
    /// is used for emails and releases.
    #[arg(long = "worker-lease-ms", env = "WORKER_LEASE_MS", value_name = "WORKER_LEASE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(300..=3_600_000))]
    pub worker_lease_ms: u64,

    /// First retry delay of the outbox and release workers and of Reassign reconnects, in
    /// milliseconds (doubling, with jitter).
    #[arg(long = "worker-backoff-base-ms", env = "WORKER_BACKOFF_BASE_MS", value_name = "WORKER_BACKOFF_BASE_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub worker_backoff_base_ms: u64,

    /// Longest retry delay of the workers and of Reassign reconnects, in milliseconds.
    #[arg(long = "worker-backoff-max-ms", env = "WORKER_BACKOFF_MAX_MS", value_name = "WORKER_BACKOFF_MAX_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub worker_backoff_max_ms: u64,

    /// Longest poll interval of the workers when no wake-up arrives, in milliseconds.
    #[arg(long = "worker-poll-ms", env = "WORKER_POLL_MS", value_name = "WORKER_POLL_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub worker_poll_ms: u64,

    /// Deadline of background calls to the peers (SendOnce, Release, opening the Reassign
    /// stream), in milliseconds.
    #[arg(long = "peer-timeout-ms", env = "PEER_TIMEOUT_MS", value_name = "PEER_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub peer_timeout_ms: u64,

    /// Most reassign jobs this process tracks on its Reassign stream at once.
    #[arg(long = "reassign-max-jobs", env = "REASSIGN_MAX_JOBS", value_name = "REASSIGN_MAX_JOBS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub reassign_max_jobs: u32,

    /// Changes a WatchBookingChanges watcher may fall behind the feed; one further behind
    /// is ended with RESOURCE_EXHAUSTED and the cursor to resume from.
    #[arg(long = "feed-watcher-buffer", env = "FEED_WATCHER_BUFFER", value_name = "FEED_WATCHER_BUFFER", default_value_t = 1_024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub feed_watcher_buffer: u32,

    /// TEST HOOK, only in builds with the `crash-hook` feature: abort the process (as a
    /// crash would) when the flow reaches this point.
    #[cfg(feature = "crash-hook")]
    #[arg(long = "crash-at", env = "CRASH_AT", value_name = "CRASH_AT", value_enum, hide = true)]
    pub crash_at: Option<crate::crash::CrashPoint>,

    #[command(flatten)]
    pub common: CommonSettings,
}

impl Settings {
    /// Defaults with the given database and peers (for tests and embedding).
    pub fn for_database(database_url: &str, assign_url: &str, notify_url: &str) -> Self {
        let mut settings = Self::parse_from(["booking-svc"]);
        settings.common = CommonSettings::with_database_url(database_url);
        settings.assign_url = assign_url.to_string();
        settings.notify_url = notify_url.to_string();
        settings
    }

    /// How long an idempotency key answers its first result.
    pub fn idempotency_retention(&self) -> Duration {
        Duration::from_secs(self.idempotency_retention_s)
    }

    /// How long each table's rows are kept, with their purges.
    pub fn retentions(&self) -> Vec<platform::purge::Retention> {
        use crate::store::{idempotency, lifecycle};
        use platform::purge::Retention;
        let secs = Duration::from_secs;
        let mut tables = vec![
            Retention { purge: &idempotency::PURGE, keep: self.idempotency_retention(), what: "idempotency keys" },
            Retention { purge: &lifecycle::OUTBOX, keep: secs(self.outbox_retention_s), what: "finished emails" },
            Retention {
                purge: &lifecycle::REASSIGN_JOBS,
                keep: secs(self.reassign_job_retention_s),
                what: "closed reassign jobs",
            },
            Retention {
                purge: &lifecycle::RELEASE_TASKS,
                keep: secs(self.release_task_retention_s),
                what: "finished release tasks",
            },
        ];
        if let Some(keep) = self.history_retention_s {
            tables.push(Retention {
                purge: &lifecycle::BOOKINGS,
                keep: secs(keep),
                what: "ended bookings with their history",
            });
        }
        tables
    }

    /// Longest wait for the inline assignment.
    pub fn inline_assign_timeout(&self) -> Duration {
        Duration::from_millis(self.inline_assign_timeout_ms)
    }

    /// Time kept for recording and answering before the caller's deadline.
    pub fn inline_deadline_margin(&self) -> Duration {
        Duration::from_millis(self.inline_deadline_margin_ms)
    }

    /// Delay after the inline window before the background recovers an unrecorded request.
    pub fn inline_record_grace(&self) -> Duration {
        Duration::from_millis(self.inline_record_grace_ms)
    }

    /// The lease on claimed reassign jobs.
    pub fn job_lease(&self) -> Duration {
        Duration::from_millis(self.worker_lease_ms)
    }

    /// The lease on claimed emails and release tasks: longer than a peer call can take.
    pub fn task_lease(&self) -> Duration {
        Duration::from_millis(self.worker_lease_ms).max(self.peer_timeout() * 2)
    }

    /// Retry policy of the workers and reconnects.
    pub fn backoff(&self) -> platform::backoff::Backoff {
        platform::backoff::Backoff::new(
            Duration::from_millis(self.worker_backoff_base_ms),
            Duration::from_millis(self.worker_backoff_max_ms.max(self.worker_backoff_base_ms)),
        )
    }

    /// Longest poll interval of the workers.
    pub fn worker_poll(&self) -> Duration {
        Duration::from_millis(self.worker_poll_ms)
    }

    /// Deadline of background peer calls.
    pub fn peer_timeout(&self) -> Duration {
        Duration::from_millis(self.peer_timeout_ms)
    }

    /// How often the peers' hosts are resolved again.
    pub fn resolve_interval(&self) -> Duration {
        Duration::from_millis(self.resolve_interval_ms)
    }
}
