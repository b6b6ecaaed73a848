//! assign-svc settings: the shared ones plus its listen address.

use clap::Parser;
use platform::settings::CommonSettings;
use std::net::SocketAddr;

/// Flags and environment of `assign-svc`.
#[derive(Clone, Debug, Parser)]
#[command(name = "assign-svc", version, about = "Floor plans and exclusive table assignment (assign.v1.AssignService)")]
pub struct Settings {
    /// Address the gRPC server listens on.
    #[arg(long = "listen-addr", env = "LISTEN_ADDR", value_name = "LISTEN_ADDR", default_value = "0.0.0.0:50052")]
    pub listen_addr: SocketAddr,

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
}
