//! A real SMTP server for the email tests: aiosmtpd (from PyPI) run by
//! `tests/support/smtp_sink.py`, writing every accepted message to a folder the test
//! reads. Its behaviour (accept, reject, tempfail, slow) can change while it runs, and it
//! can be stopped and started again on the same port.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

/// How the SMTP server answers.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Accepts every message.
    Accept,
    /// 550 to every recipient: a permanent refusal.
    Reject,
    /// 451 to every recipient: a transient refusal.
    TempFail,
    /// Waits this long before accepting a message.
    Slow(Duration),
}

/// One message as the SMTP server received it.
#[derive(Clone, Debug)]
pub struct Mail {
    pub file: PathBuf,
    pub headers: Vec<(String, String)>,
    pub raw: String,
}

impl Mail {
    fn parse(file: PathBuf, raw: String) -> Self {
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in raw.split("\r\n").flat_map(|l| l.split('\n')) {
            if line.is_empty() {
                break;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        Self { file, headers, raw }
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `X-Notification-Key`: `{booking_id}:{KIND}:{version}`.
    pub fn key(&self) -> String {
        self.header("X-Notification-Key").unwrap_or_default().to_string()
    }

    /// The `KIND` part of the key (e.g. `MODIFICATION_CONFIRMED`).
    pub fn kind(&self) -> String {
        self.key().split(':').nth(1).unwrap_or_default().to_string()
    }

    /// The `version` part of the key.
    pub fn version(&self) -> i64 {
        self.key().split(':').nth(2).and_then(|v| v.parse().ok()).unwrap_or_default()
    }

    /// The booking id part of the key.
    pub fn booking_id(&self) -> String {
        self.key().split(':').next().unwrap_or_default().to_string()
    }
}

/// A running SMTP server and the folder of what it received.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl SmtpSink {
    /// Starts a server on a free port.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for mails");
        let mut sink = Self { port: super::free_port(), dir, child: None, stdin: None };
        // The port is chosen free just before; a parallel test may take it first.
        for _ in 0..4 {
            if sink.try_launch() {
                return sink;
            }
            sink.stop();
            sink.port = super::free_port();
        }
        sink.launch();
        sink
    }

    fn launch(&mut self) {
        assert!(self.try_launch(), "SMTP sink did not start on port {} (is aiosmtpd installed?)", self.port);
    }

    fn try_launch(&mut self) -> bool {
        let script = super::workspace_root().join("tests/support/smtp_sink.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
        let mut child = Command::new(python)
            .arg(script)
            .args(["--port", &self.port.to_string(), "--dir"])
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP sink (python3 with aiosmtpd: pip install aiosmtpd)");
        let stdout = child.stdout.take().expect("sink stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read sink readiness");
        self.stdin = child.stdin.take();
        self.child = Some(child);
        line.starts_with("ready")
    }

    /// `smtp://127.0.0.1:PORT` for notify-svc's `SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Where the received messages are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Changes how the server answers from the next command on.
    pub fn set_mode(&self, mode: Mode) {
        let text = match mode {
            Mode::Accept => "accept".to_string(),
            Mode::Reject => "reject".to_string(),
            Mode::TempFail => "tempfail".to_string(),
            Mode::Slow(d) => format!("slow:{}", d.as_secs_f64()),
        };
        let tmp = self.dir.path().join("mode.tmp");
        let mut file = std::fs::File::create(&tmp).expect("write mode");
        file.write_all(text.as_bytes()).expect("write mode");
        std::fs::rename(tmp, self.dir.path().join("mode")).expect("set mode");
    }

    /// Stops the server: connections are refused until [`SmtpSink::start_again`].
    pub fn stop(&mut self) {
        self.stdin.take();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, keeping what it received.
    pub fn start_again(&mut self) {
        self.stop();
        self.launch();
    }

    /// Every message received so far, in arrival order.
    pub fn mails(&self) -> Vec<Mail> {
        mails_in(self.dir.path())
    }

    /// How many messages carry each `X-Notification-Key`.
    pub fn counts_by_key(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for mail in self.mails() {
            *counts.entry(mail.key()).or_insert(0) += 1;
        }
        counts
    }

    /// Messages whose key is `booking_id:KIND:version`.
    pub fn count_key(&self, booking_id: &str, kind: &str, version: i64) -> usize {
        let key = format!("{booking_id}:{kind}:{version}");
        self.mails().iter().filter(|m| m.key() == key).count()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        super::eventually(timeout, &format!("{n} mails at the SMTP server"), || async {
            let mails = self.mails();
            (mails.len() >= n).then_some(mails)
        })
        .await
    }
}

/// Every `.eml` file in `dir` (e.g. notify-svc's `MAIL_DIR`), parsed, sorted by file name.
pub fn mails_in(dir: &Path) -> Vec<Mail> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    files.sort();
    files.into_iter().filter_map(|file| std::fs::read_to_string(&file).ok().map(|raw| Mail::parse(file, raw))).collect()
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}
