//! The `booking-svc` binary: parse settings, run the service until SIGTERM.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings: booking_svc::Settings = platform::settings::parse();
    let common = settings.common.clone();
    let listen_addr = settings.listen_addr;
    platform::service::run_binary("booking-svc", &common, listen_addr, |listener, shutdown| {
        booking_svc::run(settings, listener, shutdown)
    })
    .await
}
