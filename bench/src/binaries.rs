//! The service binaries the tools start: where they are, and whether one serves.
//!
//! The tools run the real `booking-svc`, `assign-svc` and `notify-svc` from beside their
//! own executable (one `target/` directory); under `cargo run` they are rebuilt first, so
//! a tool never runs stale services.

use platform::tls::ClientTls;
use std::{path::PathBuf, time::Duration};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// The three services.
pub const SERVICES: [&str; 3] = ["booking-svc", "assign-svc", "notify-svc"];

/// The directory of the service binaries: beside this executable. Under `cargo run`
/// (`CARGO` is set) they are (re)built first, in the same profile; `tool` names the
/// caller in what it prints.
pub fn ensure_binaries(tool: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if let Ok(cargo) = std::env::var("CARGO") {
        eprintln!("{tool}: building the service binaries (cargo's progress follows; the first build takes minutes)");
        let mut command = std::process::Command::new(cargo);
        for (key, _) in std::env::vars() {
            if key == "OUT_DIR"
                || (key.starts_with("CARGO_")
                    && key != "CARGO_HOME"
                    && key != "CARGO_TARGET_DIR"
                    && !key.starts_with("CARGO_BUILD_"))
            {
                command.env_remove(key);
            }
        }
        let mut args = vec!["build", "--workspace", "--bins"];
        if dir.ends_with("release") {
            args.push("--release");
        }
        let status = command.args(args).status()?;
        anyhow::ensure!(status.success(), "building the service binaries failed");
    }
    for bin in SERVICES {
        anyhow::ensure!(dir.join(bin).exists(), "{bin} is missing beside {tool}: run `cargo build --workspace --bins`");
    }
    Ok(dir)
}

/// Whether the server at `url` answers its health check with `SERVING` within 2 s.
pub async fn serving(url: &str) -> bool {
    serving_with(url, None).await
}

/// [`serving`] over TLS with `tls` when given.
pub async fn serving_with(url: &str, tls: Option<&ClientTls>) -> bool {
    reports_serving(url, tls, "").await
}

/// Whether the server at `url` reports the gRPC service `service` (for example
/// `booking.v1.BookingService`) as `SERVING` within 2 s: unlike [`serving`], a different
/// service that happens to listen on the same port does not pass.
pub async fn serves(url: &str, service: &str) -> bool {
    reports_serving(url, None, service).await
}

async fn reports_serving(url: &str, tls: Option<&ClientTls>, service: &str) -> bool {
    let check = async {
        let channel = platform::grpc::secure_endpoint(url, tls)?.connect().await?;
        let request = HealthCheckRequest { service: service.to_string() };
        let status = HealthClient::new(channel).check(request).await?.into_inner().status;
        anyhow::Ok(status == ServingStatus::Serving as i32)
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), check).await, Ok(Ok(true)))
}

/// `count` distinct free loopback ports. All are held open together while they are
/// chosen, so the kernel cannot hand out the same port twice (releasing each before
/// asking for the next can); another process may still take one before it is used.
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let held = (0..count).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>()?;
    held.iter().map(|listener| Ok(listener.local_addr()?.port())).collect()
}

/// Waits until the server at `url` reports `SERVING` (over TLS with `tls` when given), at
/// most `timeout`.
pub async fn wait_serving(url: &str, tls: Option<&ClientTls>, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !serving_with(url, tls).await {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{url} did not report SERVING within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
