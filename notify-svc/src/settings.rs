//! notify-svc settings: the shared ones plus its listen address and mail delivery.

use clap::Parser;
use platform::settings::CommonSettings;
use std::{net::SocketAddr, path::PathBuf};

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
