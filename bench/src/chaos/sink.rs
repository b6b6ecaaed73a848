//! The real SMTP server the stack mails to, and the folder of what it received.
//!
//! It is the aiosmtpd sink of the end-to-end tests (`tests/support/smtp_sink.py`, built
//! into this binary and written out at start): every accepted message becomes one `.eml`
//! file with the time of its acceptance, and a `mode` file switches it between accepting
//! and refusing temporarily (451) while it runs. It is never asked to refuse for good (a
//! 5xx legitimately loses a mail).

use super::judge::Mail;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, SystemTime},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStdin, Command},
};

const SCRIPT: &str = include_str!("../../../tests/support/smtp_sink.py");

/// The SMTP server: one port, one folder, started and killed at will.
pub struct Sink {
    pub port: u16,
    dir: PathBuf,
    script: PathBuf,
    child: Option<Child>,
    /// Its stdin: the script runs until this closes.
    stdin: Option<ChildStdin>,
}

impl Sink {
    /// Writes the script into `run_dir` and prepares a server on `port` whose messages go
    /// to `run_dir/mail`; [`Sink::start`] starts it.
    pub fn new(run_dir: &Path, port: u16) -> anyhow::Result<Self> {
        let script = run_dir.join("smtp_sink.py");
        std::fs::write(&script, SCRIPT)?;
        let dir = run_dir.join("mail");
        std::fs::create_dir_all(&dir)?;
        Ok(Self { port, dir, script, child: None, stdin: None })
    }

    /// `smtp://127.0.0.1:PORT` for notify-svc's `SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The folder of received messages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the server (again) on its port, keeping the folder; waits until it accepts.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        for _ in 0..20 {
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
            let mut child = Command::new(python)
                .arg(&self.script)
                .args(["--port", &self.port.to_string(), "--dir"])
                .arg(&self.dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot start the SMTP sink (python3 with aiosmtpd): {e}"))?;
            let mut line = String::new();
            if let Some(stdout) = child.stdout.take() {
                let mut reader = BufReader::new(stdout);
                let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await;
            }
            if line.starts_with("ready") {
                self.stdin = child.stdin.take();
                self.child = Some(child);
                return Ok(());
            }
            // The port may still be held by the killed server's sockets for a moment.
            let _ = child.kill().await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::bail!("the SMTP sink did not start on port {} (is aiosmtpd installed?)", self.port)
    }

    /// SIGKILL: connections are refused until [`Sink::start`].
    pub async fn kill(&mut self) {
        self.stdin.take();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Accept everything (`true`) or answer 451 to every recipient (`false`).
    pub fn accept(&self, accept: bool) -> anyhow::Result<()> {
        let tmp = self.dir.join("mode.tmp");
        std::fs::write(&tmp, if accept { "accept" } else { "tempfail" })?;
        std::fs::rename(tmp, self.dir.join("mode"))?;
        Ok(())
    }
}

/// How many messages the folder holds.
pub fn count(dir: &Path) -> usize {
    eml_files(dir).len()
}

/// Every message in the folder, from its headers: the `X-Notification-Key`, the
/// `Message-ID` and when the server accepted it. A message without a readable key is
/// reported with the kind `UNREADABLE` (the judge then flags it).
pub fn mails(dir: &Path) -> Vec<Mail> {
    eml_files(dir)
        .into_iter()
        .filter_map(|file| std::fs::read_to_string(&file).ok())
        .map(|raw| {
            let header = |name: &str| {
                raw.lines()
                    .take_while(|l| !l.trim_end_matches('\r').is_empty())
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                    .unwrap_or_default()
            };
            let key = header("X-Notification-Key");
            let mut parts = key.splitn(3, ':');
            let booking = parts.next().unwrap_or_default().to_string();
            let kind = parts.next().filter(|k| !k.is_empty()).unwrap_or("UNREADABLE").to_string();
            let version = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let received_at = header("X-Sink-Received-At")
                .parse::<f64>()
                .ok()
                .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs_f64(s)))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            Mail { booking, kind, version, message_id: header("Message-ID"), received_at }
        })
        .collect()
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    files.sort();
    files
}
