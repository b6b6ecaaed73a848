//! booking-svc settings: the shared ones plus its listen address, its peers and the
//! inline-assignment switch.

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

    /// assign-svc URL.
    #[arg(long = "assign-url", env = "ASSIGN_URL", value_name = "ASSIGN_URL", default_value = "http://127.0.0.1:50052", value_parser = parse_http_url)]
    pub assign_url: String,

    /// notify-svc URL.
    #[arg(long = "notify-url", env = "NOTIFY_URL", value_name = "NOTIFY_URL", default_value = "http://127.0.0.1:50053", value_parser = parse_http_url)]
    pub notify_url: String,

    /// Try to confirm creates and edits inline (true) or always hand them to the
    /// background (false).
    #[arg(long = "inline-assign", env = "INLINE_ASSIGN", value_name = "INLINE_ASSIGN", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub inline_assign: bool,

    /// Longest wait for the inline assignment, in milliseconds.
    #[arg(long = "inline-assign-timeout-ms", env = "INLINE_ASSIGN_TIMEOUT_MS", value_name = "INLINE_ASSIGN_TIMEOUT_MS", default_value_t = 800,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub inline_assign_timeout_ms: u64,

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

    /// Longest wait for the inline assignment.
    pub fn inline_assign_timeout(&self) -> Duration {
        Duration::from_millis(self.inline_assign_timeout_ms)
    }
}
