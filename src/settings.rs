//! Settings every binary shares, read from flags and the environment (clap with `env`).
//!
//! Owns parsing and validation of shared values only; a wrong value stops the binary
//! with one line naming the setting ([`parse`]). Service-specific settings live in each
//! service crate and flatten [`CommonSettings`] in.

use clap::{Args, Parser, ValueEnum};
use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Settings shared by booking-svc, assign-svc and notify-svc.
#[derive(Clone, Debug, Args)]
pub struct CommonSettings {
    /// PostgreSQL connection URL; the service migrates its own schema in it at start-up.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        value_parser = parse_database_url
    )]
    pub database_url: String,

    /// Log filter (tracing EnvFilter syntax, e.g. `info,booking_svc=debug`).
    #[arg(long = "log", env = "RUST_LOG", value_name = "RUST_LOG", default_value = "info", value_parser = parse_log_filter)]
    pub rust_log: String,

    /// Log format.
    #[arg(long = "log-format", env = "LOG_FORMAT", value_name = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    /// OTLP/gRPC collector endpoint for traces and metrics (e.g. `http://127.0.0.1:4317`);
    /// unset: nothing is exported.
    #[arg(
        long = "otel-exporter-otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_parser = parse_http_url
    )]
    pub otel_endpoint: Option<String>,

    /// `service.name` reported in traces and metrics; default: the binary's name.
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME", value_name = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,

    /// Largest number of PostgreSQL connections this process opens.
    #[arg(long = "db-pool-size", env = "DB_POOL_SIZE", value_name = "DB_POOL_SIZE", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub db_pool_size: u16,

    /// Server-side limit for one call, in milliseconds (a shorter client deadline wins).
    #[arg(long = "request-timeout-ms", env = "REQUEST_TIMEOUT_MS", value_name = "REQUEST_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub request_timeout_ms: u64,

    /// Calls served at once by this process; more wait, and are shed when none can wait.
    #[arg(long = "max-concurrent-requests", env = "MAX_CONCURRENT_REQUESTS", value_name = "MAX_CONCURRENT_REQUESTS",
          default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_requests: u32,

    /// Largest request message accepted, in bytes.
    #[arg(long = "max-message-bytes", env = "MAX_MESSAGE_BYTES", value_name = "MAX_MESSAGE_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u32).range(1024..=64 << 20))]
    pub max_message_bytes: u32,

    /// Instead of serving: ask the server running at LISTEN_ADDR for its gRPC health and exit
    /// 0 when it is SERVING, 1 otherwise (for container health checks).
    #[arg(long = "health-probe")]
    pub health_probe: bool,

    /// On SIGTERM, how long in-flight calls may take to finish, in milliseconds.
    #[arg(long = "shutdown-grace-ms", env = "SHUTDOWN_GRACE_MS", value_name = "SHUTDOWN_GRACE_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub shutdown_grace_ms: u64,

    /// PEM file: this server's certificate chain; also the identity this service presents to
    /// the services it calls. With TLS_KEY; unset: plain text (one WARN line at start-up).
    /// Re-read when it changes.
    #[arg(long = "tls-cert", env = "TLS_CERT", value_name = "TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file: the private key of TLS_CERT. Re-read when it changes.
    #[arg(long = "tls-key", env = "TLS_KEY", value_name = "TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM file: callers must present a certificate signed by this CA (mutual TLS); unset: no
    /// client certificate is asked. Needs TLS_CERT and TLS_KEY. Re-read when it changes.
    #[arg(long = "tls-client-ca", env = "TLS_CLIENT_CA", value_name = "TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// PEM file: the CA that the servers this service calls must chain to; unset: plain-text
    /// clients. Re-read when it changes.
    #[arg(long = "tls-ca", env = "TLS_CA", value_name = "TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Plain-text address serving only `grpc.health.v1` (for probes that cannot present a
    /// certificate); unset: health on LISTEN_ADDR only.
    #[arg(long = "health-addr", env = "HEALTH_ADDR", value_name = "HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,

    /// Who may call what (see [`AuthSettings`]).
    #[command(flatten)]
    pub auth: AuthSettings,
}

/// Identity and authorization settings shared by the three services. With none of
/// `AUTH_JWKS`, `AUTHZ_POLICY` and `TLS_CLIENT_CA` a service lets every call through
/// (local development) and says so in one WARN line at start-up.
#[derive(Clone, Debug, Args)]
pub struct AuthSettings {
    /// JWKS file of the keys that sign staff tokens (`authorization: Bearer <JWT>`, ES256
    /// or EdDSA, key chosen by `kid`); re-read when it changes. Unset: tokens refused.
    #[arg(long = "auth-jwks", env = "AUTH_JWKS", value_name = "AUTH_JWKS")]
    pub auth_jwks: Option<PathBuf>,

    /// Required `iss` of staff tokens.
    #[arg(long = "auth-issuer", env = "AUTH_ISSUER", value_name = "AUTH_ISSUER", default_value = "booking-platform")]
    pub auth_issuer: String,

    /// Required `aud` of staff tokens; default: the service's name.
    #[arg(long = "auth-audience", env = "AUTH_AUDIENCE", value_name = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// SPIFFE trust domain of service identities (URI SAN `spiffe://<TRUST_DOMAIN>/<service>`).
    #[arg(
        long = "trust-domain",
        env = "TRUST_DOMAIN",
        value_name = "TRUST_DOMAIN",
        default_value = "booking.internal"
    )]
    pub trust_domain: String,

    /// JSON file overriding the built-in allow-list per method (see README, "Security").
    #[arg(long = "authz-policy", env = "AUTHZ_POLICY", value_name = "AUTHZ_POLICY")]
    pub authz_policy: Option<PathBuf>,
}

impl CommonSettings {
    /// Defaults, as if no flag and no variable were given (for tests and embedding).
    pub fn with_database_url(database_url: impl Into<String>) -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            common: CommonSettings,
        }
        let mut common = Only::parse_from(["service"]).common;
        common.database_url = database_url.into();
        common
    }

    /// Server-side limit for one call.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Grace period for in-flight calls on shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// Parses flags and environment into `T`. `--help` and `--version` print and exit 0; a
/// wrong value prints one line naming the setting and exits with status 2.
pub fn parse<T: Parser>() -> T {
    parse_from(std::env::args_os())
}

/// [`parse`] over explicit arguments.
pub fn parse_from<T: Parser, I, A>(args: I) -> T
where
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    match T::try_parse_from(args) {
        Ok(settings) => settings,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                error.exit();
            }
            eprintln!("{}", one_line(&error.to_string()));
            std::process::exit(2);
        }
    }
}

/// The first line of clap's message, which names the flag and its variable.
fn one_line(message: &str) -> String {
    message.lines().find(|line| !line.trim().is_empty()).unwrap_or("error: invalid settings").trim().to_string()
}

fn parse_database_url(value: &str) -> Result<String, String> {
    tokio_postgres::Config::from_str(value)
        .map(|_| value.to_string())
        .map_err(|e| format!("not a PostgreSQL URL ({e})"))
}

fn parse_log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| value.to_string())
        .map_err(|e| format!("not a log filter ({e})"))
}

/// Accepts an `http://` or `https://` URL with a host.
pub fn parse_http_url(value: &str) -> Result<String, String> {
    let uri: http::Uri = value.parse().map_err(|e| format!("not a URL ({e})"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(value.to_string()),
        _ => Err("expected http://host:port or https://host:port".to_string()),
    }
}

/// Accepts `true` or `false` (and `1`/`0`, `yes`/`no`, `on`/`off`).
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct Probe {
        #[command(flatten)]
        common: CommonSettings,
    }

    #[test]
    fn defaults_match_the_contract() {
        let common = CommonSettings::with_database_url("postgres://x@h/db");
        assert_eq!(common.database_url, "postgres://x@h/db");
        let probe = Probe::try_parse_from(["svc"]).expect("defaults parse");
        assert_eq!(probe.common.rust_log, "info");
        assert_eq!(probe.common.log_format, LogFormat::Pretty);
        assert_eq!(probe.common.otel_endpoint, None);
        assert_eq!((probe.common.tls_cert, probe.common.tls_key, probe.common.tls_client_ca), (None, None, None));
        assert_eq!((probe.common.tls_ca, probe.common.health_addr), (None, None));
    }

    #[test]
    fn wrong_values_name_the_setting_in_one_line() {
        for (flag, value, name) in [
            ("--database-url", "mysql:/nope", "DATABASE_URL"),
            ("--log-format", "xml", "LOG_FORMAT"),
            ("--otel-exporter-otlp-endpoint", "localhost", "OTEL_EXPORTER_OTLP_ENDPOINT"),
            ("--db-pool-size", "0", "DB_POOL_SIZE"),
            ("--health-addr", "nowhere", "HEALTH_ADDR"),
        ] {
            let error = Probe::try_parse_from(["svc", flag, value]).expect_err(flag);
            let line = one_line(&error.to_string());
            assert!(line.contains(name) && line.contains(flag), "{line}");
        }
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert_eq!(parse_bool("off"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }
}
