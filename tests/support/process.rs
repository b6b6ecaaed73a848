//! The services as real processes, for faults that only a process has: SIGKILL,
//! SIGSTOP/SIGCONT, SIGTERM and restarts.

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::Duration,
};

/// Path of a workspace binary (a service's, or a tool's from `bench/`). Built (once per
/// test process) when missing or older than this test executable, which is rebuilt
/// whenever any service's code changes.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let path = target_dir().join(name);
    BUILT.get_or_init(|| {
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let test_exe = std::env::current_exe().ok().and_then(|exe| modified(&exe));
        let fresh = ["booking-svc", "assign-svc", "notify-svc", "booking-stack", "booking-bench", "booking-chaos"]
            .iter()
            .all(|bin| matches!((modified(&target_dir().join(bin)), test_exe), (Some(b), Some(t)) if b >= t));
        if fresh {
            return;
        }
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
            .args(["build", "--quiet", "--workspace", "--bins"])
            .status()
            .expect("run cargo build for the service binaries");
        assert!(status.success(), "building the service binaries failed");
    });
    path
}

/// The directory holding the binaries (the test executable's grandparent).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(|deps| deps.parent()).expect("target dir").to_path_buf()
}

/// A service running as its own process, listening on a fixed loopback port so that it
/// can be restarted at the same address.
pub struct ServiceProcess {
    pub bin: &'static str,
    pub port: u16,
    pub url: String,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    pub log: PathBuf,
}

impl ServiceProcess {
    /// Starts `bin` with `envs` (plus `LISTEN_ADDR` on a free port); does not wait.
    pub fn spawn(bin: &'static str, envs: &[(&str, &str)]) -> Self {
        let port = super::free_port();
        let envs = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let log_dir = target_dir().join("test-logs");
        let _ = std::fs::create_dir_all(&log_dir);
        let log = log_dir.join(format!("{bin}-{}-{port}.log", std::process::id()));
        let mut process = Self { bin, port, url: format!("http://127.0.0.1:{port}"), envs, child: None, log };
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
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
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
            if super::services::health(&self.url, "").await
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
