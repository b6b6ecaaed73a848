//! The life of a service process: telemetry, listener, signals, migrations, health,
//! background workers and graceful shutdown, in the same order for all three services.
//!
//! A service crate supplies its routes, schema, migrations and workers; it never
//! re-implements start-up or shutdown.

use crate::{
    db::Database,
    grpc::{GrpcServer, Transport},
    settings::CommonSettings,
    shutdown, telemetry,
    tls::ClientTls,
};
use std::{future::Future, net::SocketAddr, process::ExitCode, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often health re-checks the database.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// Runs a service binary: telemetry, bind `listen_addr`, run until SIGTERM/SIGINT, flush.
/// A listener that cannot bind stops the binary with one line naming `LISTEN_ADDR`.
pub async fn run_binary<F, Fut>(
    name: &'static str,
    common: &CommonSettings,
    listen_addr: SocketAddr,
    run: F,
) -> ExitCode
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if common.health_probe {
        return probe(common, listen_addr).await;
    }
    let telemetry = match telemetry::init(common, name) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: cannot set up telemetry (RUST_LOG, LOG_FORMAT, OTEL_*): {error}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(listen_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on '{listen_addr}' for '--listen-addr <LISTEN_ADDR>': {error}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(service = name, addr = %listen_addr, "listening");
    let shutdown = shutdown::on_signal();
    let result = run(listener, shutdown).await;
    let code = match &result {
        Ok(()) => {
            tracing::info!(service = name, "stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(service = name, error = %error, "stopped with an error");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// Exit 0 when the server reports `SERVING` within two seconds: the one on `HEALTH_ADDR`
/// when set, else the one on `listen_addr` (an unspecified address means loopback), over
/// TLS when `TLS_CA` is set (the certificate must name `localhost`).
async fn probe(common: &CommonSettings, listen_addr: SocketAddr) -> ExitCode {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let (mut addr, tls) = match common.health_addr {
        Some(health_addr) => (health_addr, None),
        None => match ClientTls::from_settings(common) {
            Ok(tls) => (listen_addr, tls),
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::from(2);
            }
        },
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = match (&tls, addr) {
        (Some(_), SocketAddr::V4(v4)) if v4.ip().is_loopback() => format!("https://localhost:{}", addr.port()),
        _ => format!("http://{addr}"),
    };
    let check = async {
        let channel = crate::grpc::secure_endpoint(&url, tls.as_ref())?.connect().await?;
        let response = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await?;
        anyhow::Ok(response.into_inner().status == ServingStatus::Serving as i32)
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => {
            eprintln!("{addr}: NOT_SERVING");
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("{addr}: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("{addr}: no answer within 2s");
            ExitCode::FAILURE
        }
    }
}

/// What one service brings to [`serve`].
pub struct ServiceParts<W> {
    /// Its name (`booking-svc`, ...): the default audience of staff tokens.
    pub name: &'static str,
    /// The server with the service's routes added.
    pub server: GrpcServer,
    /// Its database.
    pub database: Database,
    /// Its schema (`booking`, `assign` or `notify`).
    pub schema: &'static str,
    /// Its embedded migrations.
    pub migrations: fn() -> refinery::Runner,
    /// Background work started once the schema is migrated; must return soon after the
    /// shutdown token is cancelled.
    pub workers: W,
}

/// Serves until `shutdown`: answers at once (health `NOT_SERVING`), migrates the schema
/// with retries, then starts the workers and reports `SERVING` while the database answers.
/// On shutdown, stops accepting calls, drains in-flight ones and waits for the workers to
/// finish their current item (bounded by the grace period).
pub async fn serve<W>(
    parts: ServiceParts<W>,
    common: &CommonSettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    W: Future<Output = ()> + Send + 'static,
{
    let ServiceParts { name, server, database, schema, migrations, workers } = parts;
    let transport = Transport::from_settings(common)?;
    let mutual = transport.tls.as_ref().is_some_and(|tls| tls.mutual());
    let authz = crate::auth::Authz::from_settings(name, &common.auth, mutual)?;
    // At most one WARN line about security at start-up.
    match (&transport.tls, authz.is_open()) {
        (None, true) => tracing::warn!(
            "TLS is off and no caller is authenticated: serving plain text, every caller may call every method (local development only; set TLS_CERT, TLS_KEY and TLS_CLIENT_CA, and AUTH_JWKS)"
        ),
        (None, false) => tracing::warn!(
            "TLS is off: serving plain text, bearer tokens and guest data travel in clear (set TLS_CERT, TLS_KEY and TLS_CLIENT_CA)"
        ),
        (Some(tls), true) => tracing::warn!(
            mutual = tls.mutual(),
            "serving TLS, but no caller is authenticated: every caller may call every method (set TLS_CLIENT_CA or AUTH_JWKS)"
        ),
        (Some(tls), false) => tracing::info!(mutual = tls.mutual(), "serving TLS"),
    }
    let server = server.transport(transport).authorize(authz);
    let health = server.health().await;
    let background_shutdown = shutdown.clone();
    let background = tokio::spawn(async move {
        if !database.migrate_until_ready(schema, migrations, &background_shutdown).await {
            return;
        }
        tokio::join!(workers, database.report_health(health, HEALTH_INTERVAL, background_shutdown.clone()));
    });
    let served = server.serve(listener, shutdown.clone()).await;
    shutdown.cancel();
    if tokio::time::timeout(common.shutdown_grace(), background).await.is_err() {
        tracing::warn!("background workers did not stop within the grace period");
    }
    served
}
