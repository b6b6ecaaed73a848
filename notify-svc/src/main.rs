//! The `notify-svc` binary: parse settings, run the service until SIGTERM.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings: notify_svc::Settings = platform::settings::parse();
    let common = settings.common.clone();
    let listen_addr = settings.listen_addr;
    platform::service::run_binary("notify-svc", &common, listen_addr, |listener, shutdown| {
        notify_svc::run(settings, listener, shutdown)
    })
    .await
}
