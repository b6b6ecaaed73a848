//! A private, throwaway PostgreSQL cluster.
//!
//! Started from the local PostgreSQL binaries: for the one-command stack when no server
//! answers, and for tests that must restart PostgreSQL without disturbing anyone else's
//! databases.
//!
//! It owns one data directory and one port; dropping it stops the server and deletes the
//! directory. It never touches the machine's own clusters.

use anyhow::{Context, bail};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A running private cluster.
pub struct LocalCluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    run_as: Option<String>,
    running: bool,
    durable: bool,
}

impl LocalCluster {
    /// Initialises a cluster in a fresh temporary directory and starts it on `port` (0: a
    /// free one), listening on 127.0.0.1 only, trust authentication for user `postgres`.
    /// As root, the server runs as the `postgres` system user (PostgreSQL refuses root).
    pub fn start(port: u16) -> anyhow::Result<Self> {
        Self::start_as(port, false)
    }

    /// Like [`LocalCluster::start`], configured as in production instead of for speed:
    /// fsync, synchronous commit and full-page writes on, autovacuum on, 2 GB of shared
    /// buffers, checkpoints every 15 minutes or 8 GB of WAL (for soak runs).
    pub fn start_durable(port: u16) -> anyhow::Result<Self> {
        Self::start_as(port, true)
    }

    fn start_as(port: u16, durable: bool) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir()?;
        let port = if port == 0 { crate::binaries::free_ports(1)?[0] } else { port };
        let base = std::env::temp_dir().join(format!("booking-pg-{}-{port}", std::process::id()));
        let data_dir = base.join("data");
        std::fs::create_dir_all(&base)?;
        let run_as = if is_root() { Some("postgres".to_string()) } else { None };
        if let Some(user) = &run_as {
            chown(&base, user)?;
        }
        let mut cluster = Self { bin_dir, data_dir, port, run_as, running: false, durable };
        let data = cluster.data_dir.to_string_lossy().into_owned();
        cluster.run("initdb", &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_server(&mut self) -> anyhow::Result<()> {
        let data = self.data_dir.to_string_lossy().into_owned();
        let log = self.data_dir.parent().unwrap_or(&self.data_dir).join("server.log").to_string_lossy().into_owned();
        let speed = match self.durable {
            // PostgreSQL's defaults for safety, and the sizes a write-heavy production
            // server is given (its defaults fit a small shared machine: 128 MB of buffers
            // and a checkpoint every 1 GB of WAL, every minute or two under the soak).
            true => {
                "-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c autovacuum=on \
                 -c shared_buffers=2GB -c max_wal_size=8GB -c checkpoint_timeout=15min"
            }
            false => "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        };
        let options =
            format!("-p {} -c listen_addresses=127.0.0.1 -k {} {speed} -c max_connections=200", self.port, data);
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &options, "-w", "-t", "30", "start"])?;
        self.running = true;
        self.wait_ready(Duration::from_secs(30))
    }

    /// Stops the server (fast shutdown: connections are cut, as in a restart).
    pub fn stop_server(&mut self) -> anyhow::Result<()> {
        let data = self.data_dir.to_string_lossy().into_owned();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "-t", "30", "stop"])?;
        self.running = false;
        Ok(())
    }

    /// Stops and starts the server again on the same port and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop_server()?;
        self.start_server()
    }

    fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let port = self.port.to_string();
        loop {
            let ok = Command::new(self.bin_dir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!("private PostgreSQL on port {port} did not become ready");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin_dir.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let output = command
            .args(args)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir.to_string_lossy().into_owned();
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
        if let Some(base) = self.data_dir.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

/// The newest local PostgreSQL's binaries: `PG_BIN_DIR`, else `pg_config --bindir`, else
/// the newest `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).collect())
        .unwrap_or_default();
    candidates.retain(|dir| dir.join("initdb").exists());
    candidates.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = candidates.pop() {
        return Ok(dir);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    bail!("no local PostgreSQL binaries found (install PostgreSQL or set PG_BIN_DIR)")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn chown(path: &Path, user: &str) -> anyhow::Result<()> {
    let status = Command::new("chown").args(["-R", user]).arg(path).status()?;
    if !status.success() {
        bail!("chown {} to {user} failed", path.display());
    }
    Ok(())
}
