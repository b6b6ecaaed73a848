//! The services as real processes, for faults that only a process has: SIGKILL,
//! SIGSTOP/SIGCONT, SIGTERM and restarts.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::Duration,
};

/// The service binaries, which the harness builds itself.
const SERVICES: [&str; 3] = ["booking-svc", "assign-svc", "notify-svc"];

/// The dev tools' binaries, built by the same build (they run in the target directory).
const TOOLS: [&str; 4] = ["booking-stack", "booking-bench", "booking-chaos", "booking-token"];

/// Where the harness keeps the service binaries it built, and its marker of that build.
const HARNESS_BINS: &str = "harness-bins";
const MARKER: &str = "built";

/// Path of a workspace binary (a service's, or a tool's from `bench/`). The harness builds
/// the workspace's binaries itself (once per test process, when needed) with booking-svc's
/// `crash-hook` feature, which the crash tests need and no other build has, and keeps the service binaries in a directory of
/// their own: a plain `cargo build --workspace --bins` (a user's, or booking-stack's during
/// a test) links its builds into the target directory and cannot swap them under a test.
///
/// It builds again when its marker of its last build is older than this test executable
/// (rebuilt whenever any service's code changes) or than a service binary in the target
/// directory (rebuilt since, perhaps from newer code), or a binary of its own is missing.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if !harness_bins_current() {
            build_services();
        }
    });
    if SERVICES.contains(&name) { target_dir().join(HARNESS_BINS).join(name) } else { target_dir().join(name) }
}

/// Whether the harness's service binaries are there and no older than the code.
fn harness_bins_current() -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(&target_dir().join(HARNESS_BINS).join(MARKER)) else { return false };
    let test_exe = std::env::current_exe().ok().and_then(|exe| modified(&exe));
    test_exe.is_some_and(|t| t <= built)
        && SERVICES.iter().all(|bin| {
            target_dir().join(HARNESS_BINS).join(bin).exists()
                && modified(&target_dir().join(bin)).is_none_or(|b| b <= built)
        })
        && TOOLS.iter().all(|bin| target_dir().join(bin).exists())
}

/// `cargo build --workspace --bins --features booking-svc/crash-hook`, then links the
/// service binaries into the harness's directory and writes the marker.
fn build_services() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    // Variables the test runner sets for this test (CARGO_MANIFEST_DIR, OUT_DIR, ...)
    // would look like changed build inputs to some build scripts and force rebuilds.
    let runner_vars = std::env::vars().map(|(k, _)| k).filter(|k| {
        k == "OUT_DIR"
            || (k.starts_with("CARGO_")
                && !matches!(k.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR")
                && !k.starts_with("CARGO_BUILD_"))
    });
    let mut command = Command::new(cargo);
    for var in runner_vars {
        command.env_remove(var);
    }
    let status = command
        .current_dir(super::workspace_root())
        .args(["build", "--quiet", "--workspace", "--bins", "--features", "booking-svc/crash-hook"])
        .status()
        .expect("run cargo build for the service binaries");
    assert!(status.success(), "building the service binaries failed");
    let dir = target_dir().join(HARNESS_BINS);
    std::fs::create_dir_all(&dir).expect("create the harness's binary directory");
    // Each link made beside its place, then renamed into it: a test starting a binary
    // meanwhile gets the old one or the new one, never none.
    let partial = |name: &str| dir.join(format!(".{name}.{}", std::process::id()));
    for bin in SERVICES {
        let _ = std::fs::remove_file(partial(bin));
        std::fs::hard_link(target_dir().join(bin), partial(bin))
            .or_else(|_| std::fs::copy(target_dir().join(bin), partial(bin)).map(|_| ()))
            .expect("link a service binary into the harness's directory");
        std::fs::rename(partial(bin), dir.join(bin)).expect("put a service binary in place");
    }
    std::fs::write(partial(MARKER), "service binaries built with booking-svc/crash-hook\n")
        .expect("write the build marker");
    std::fs::rename(partial(MARKER), dir.join(MARKER)).expect("put the build marker in place");
}

/// The directory holding the binaries (the test executable's grandparent).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(|deps| deps.parent()).expect("target dir").to_path_buf()
}

/// A service running as its own process, listening on a fixed loopback address so that it
/// can be restarted at the same address.
pub struct ServiceProcess {
    pub bin: &'static str,
    /// The loopback address it listens on (127.0.0.1 unless started with [`ServiceProcess::spawn_at`]).
    pub host: std::net::Ipv4Addr,
    pub port: u16,
    pub url: String,
    /// Where its health is asked: `HEALTH_ADDR` when its environment sets one, else `url`.
    pub health_url: String,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    pub log: PathBuf,
}

impl ServiceProcess {
    /// Starts `bin` with `envs` (plus `LISTEN_ADDR` on a free port); does not wait.
    pub fn spawn(bin: &'static str, envs: &[(&str, &str)]) -> Self {
        Self::spawn_at(bin, std::net::Ipv4Addr::LOCALHOST, super::free_port(), envs)
    }

    /// Starts `bin` with `envs` listening on `host:port` (a loopback address); does not wait.
    pub fn spawn_at(bin: &'static str, host: std::net::Ipv4Addr, port: u16, envs: &[(&str, &str)]) -> Self {
        let envs: Vec<(String, String)> = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let url = format!("http://{host}:{port}");
        let health_url =
            envs.iter().find(|(k, _)| k == "HEALTH_ADDR").map_or(url.clone(), |(_, addr)| format!("http://{addr}"));
        let log_dir = target_dir().join("test-logs");
        let _ = std::fs::create_dir_all(&log_dir);
        let log = log_dir.join(format!("{bin}-{}-{host}-{port}.log", std::process::id()));
        let mut process = Self { bin, host, port, url, health_url, envs, child: None, log };
        process.start();
        process
    }

    /// Starts `bin` and waits until it reports `SERVING`. The port is chosen free just
    /// before the start, so a parallel test may take it first: then the process cannot
    /// listen and exits, and it is started again on another port.
    pub async fn start_serving(bin: &'static str, envs: &[(&str, &str)]) -> Self {
        for _ in 0..5 {
            let mut process = Self::spawn(bin, envs);
            if process.serving_or_exited().await {
                return process;
            }
            assert!(
                process.log_text().contains("cannot listen"),
                "{bin} exited before serving:\n{}",
                process.log_text()
            );
        }
        panic!("{bin} found no free port in five tries");
    }

    fn start(&mut self) {
        let log = File::options().create(true).append(true).open(&self.log).expect("open log file");
        let err = log.try_clone().expect("clone log file");
        let child = Command::new(binary(self.bin))
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "info")
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LISTEN_ADDR", format!("{}:{}", self.host, self.port))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin));
        self.child = Some(child);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("process running")
    }

    /// Waits until this process (not another one on a reused port) reports `SERVING`.
    pub async fn wait_serving(&mut self) {
        assert!(self.serving_or_exited().await, "{} exited before serving:\n{}", self.bin, self.log_text());
    }

    /// True once the process reports `SERVING`; false when it exited first.
    async fn serving_or_exited(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            if super::services::health(&self.health_url, "").await
                == Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
            {
                // Serving, and still ours: the process has not exited meanwhile.
                if let Some(child) = self.child.as_mut()
                    && let Ok(None) = child.try_wait()
                {
                    return true;
                }
                continue;
            }
            assert!(tokio::time::Instant::now() < deadline, "{} did not report SERVING within 60 s", self.bin);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGKILL: dies at once, mid-whatever.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: frozen, connections open but nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: thawed.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// SIGTERM, then waits (without blocking the test's runtime) for the exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM");
        let mut child = self.child.take().expect("process running");
        loop {
            if let Some(status) = child.try_wait().expect("wait for exit") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the process again on the same port and waits until it serves.
    pub async fn restart(&mut self) {
        self.kill();
        self.start();
        self.wait_serving().await;
    }

    /// Whatever the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
        }
        self.kill();
    }
}
