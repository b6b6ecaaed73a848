//! notify-svc settings.
//!
//! The shared ones plus its listen address, mail delivery and the delivery worker's
//! intervals (short in tests, production defaults otherwise).
//!
//! It only parses: a wrong value stops the binary with one line naming the setting; it
//! never connects anywhere.

use clap::Parser;
use platform::settings::CommonSettings;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Flags and environment of `notify-svc`.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "notify-svc",
    version,
    about = "Booking emails, exactly once per (booking, kind, version) (notify.v1.NotifyService)"
)]
pub struct Settings {
    /// Address the gRPC server listens on.
    #[arg(long = "listen-addr", env = "LISTEN_ADDR", value_name = "LISTEN_ADDR", default_value = "0.0.0.0:50053")]
    pub listen_addr: SocketAddr,

    /// SMTP server in lettre URL form (e.g. `smtp://127.0.0.1:1025`,
    /// `smtps://user:pass@host`); unset: messages are written as .eml files in MAIL_DIR.
    #[arg(long = "smtp-url", env = "SMTP_URL", value_name = "SMTP_URL", value_parser = parse_smtp_url)]
    pub smtp_url: Option<String>,

    /// Folder for .eml files when SMTP_URL is unset.
    #[arg(long = "mail-dir", env = "MAIL_DIR", value_name = "MAIL_DIR", default_value = "./mail")]
    pub mail_dir: PathBuf,

    /// Sender address of every email.
    #[arg(long = "mail-from", env = "MAIL_FROM", value_name = "MAIL_FROM", default_value = "bookings@localhost", value_parser = parse_mailbox)]
    pub mail_from: String,

    /// Longest time SendOnce waits for its first delivery attempt before answering QUEUED,
    /// in milliseconds (a shorter caller deadline, minus a margin, wins).
    #[arg(long = "send-wait-ms", env = "SEND_WAIT_MS", value_name = "SEND_WAIT_MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub send_wait_ms: u64,

    /// Timeout of each SMTP command (connect, EHLO, MAIL, RCPT, DATA), in milliseconds.
    #[arg(long = "smtp-timeout-ms", env = "SMTP_TIMEOUT_MS", value_name = "SMTP_TIMEOUT_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub smtp_timeout_ms: u64,

    /// Most SMTP connections kept open (lettre's pool).
    #[arg(long = "smtp-pool-size", env = "SMTP_POOL_SIZE", value_name = "SMTP_POOL_SIZE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub smtp_pool_size: u32,

    /// How long one delivery attempt owns its ledger row (the lease), in milliseconds; no
    /// other worker or replica sends the row before it passes. Keep it well above a whole
    /// SMTP exchange (several SMTP_TIMEOUT_MS).
    #[arg(long = "delivery-lease-ms", env = "DELIVERY_LEASE_MS", value_name = "DELIVERY_LEASE_MS", default_value_t = 120_000,
          value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    pub delivery_lease_ms: u64,

    /// Delay ceiling before the first retry of a transient failure, in milliseconds; it
    /// doubles per attempt (with jitter) up to RETRY_CAP_MS.
    #[arg(long = "retry-base-ms", env = "RETRY_BASE_MS", value_name = "RETRY_BASE_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub retry_base_ms: u64,

    /// Longest delay between two delivery attempts, in milliseconds.
    #[arg(long = "retry-cap-ms", env = "RETRY_CAP_MS", value_name = "RETRY_CAP_MS", default_value_t = 600_000,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub retry_cap_ms: u64,

    /// Delivery attempts before a transiently failing email is given up (FAILED).
    #[arg(long = "max-attempts", env = "MAX_ATTEMPTS", value_name = "MAX_ATTEMPTS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_attempts: u32,

    /// Most deliveries one worker round claims and sends at once.
    #[arg(long = "worker-batch", env = "WORKER_BATCH", value_name = "WORKER_BATCH", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub worker_batch: u32,

    /// Longest idle pause of the delivery worker, in milliseconds (it is also woken by
    /// PostgreSQL NOTIFY and by its timer for the next due delivery).
    #[arg(long = "worker-poll-ms", env = "WORKER_POLL_MS", value_name = "WORKER_POLL_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub worker_poll_ms: u64,

    /// How long a final delivery (sent, suppressed, failed) stays in the ledger, in
    /// seconds, counted from its first SendOnce; then it is purged, and a SendOnce for its
    /// key is a new one. Keep it well past the longest time booking-svc may still repeat a
    /// SendOnce (see docs/architecture.md).
    #[arg(long = "delivery-retention-s", env = "DELIVERY_RETENTION_S", value_name = "DELIVERY_RETENTION_S",
          default_value_t = 2_592_000, value_parser = clap::value_parser!(u64).range(1..=3_153_600_000))]
    pub delivery_retention_s: u64,

    #[command(flatten)]
    pub common: CommonSettings,
}

impl Settings {
    /// Defaults with the given database (for tests and embedding).
    pub fn for_database(database_url: &str) -> Self {
        let mut settings = Self::parse_from(["notify-svc"]);
        settings.common = CommonSettings::with_database_url(database_url);
        settings
    }

    /// How long each table's rows are kept, with their purges.
    pub fn retentions(&self) -> Vec<platform::purge::Retention> {
        vec![platform::purge::Retention {
            purge: &crate::store::PURGE,
            keep: Duration::from_secs(self.delivery_retention_s),
            what: "final deliveries",
        }]
    }
}

fn parse_smtp_url(value: &str) -> Result<String, String> {
    use lettre::{AsyncSmtpTransport, Tokio1Executor};
    AsyncSmtpTransport::<Tokio1Executor>::from_url(value)
        .map(|_| value.to_string())
        .map_err(|e| format!("not an SMTP URL ({e})"))
}

fn parse_mailbox(value: &str) -> Result<String, String> {
    value
        .parse::<lettre::message::Mailbox>()
        .map(|_| value.to_string())
        .map_err(|e| format!("not an email address ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_write_files_and_retry_for_hours() {
        let settings = Settings::for_database("postgres://x@h/db");
        assert_eq!(settings.smtp_url, None);
        assert_eq!(settings.mail_dir, PathBuf::from("./mail"));
        assert_eq!(settings.mail_from, "bookings@localhost");
        assert!(settings.delivery_lease_ms > 3 * settings.smtp_timeout_ms);
        assert!(settings.retry_base_ms < settings.retry_cap_ms);
    }

    #[test]
    fn wrong_values_are_refused() {
        assert!(Settings::try_parse_from(["notify-svc", "--smtp-url", "ftp://mail.example"]).is_err());
        assert!(Settings::try_parse_from(["notify-svc", "--mail-from", "not an address"]).is_err());
        assert!(Settings::try_parse_from(["notify-svc", "--max-attempts", "0"]).is_err());
        assert!(Settings::try_parse_from(["notify-svc", "--smtp-url", "smtp://127.0.0.1:2525"]).is_ok());
    }
}
