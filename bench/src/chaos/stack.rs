//! The stack under test as real processes: a fresh database, the SMTP sink and two
//! replicas of each service on fixed loopback ports, so that any of them can be killed,
//! frozen or restarted and come back at the same address.
//!
//! Booking replica A talks to assign A and notify A, replica B to assign B and notify B.
//! The settings are the short ones of the end-to-end tests (leases of 3 s, polls of
//! 500 ms), so that the background's recovery shows within a short run.

use super::sink::Sink;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    str::FromStr,
    sync::Arc,
    time::Duration,
};
use tokio::{
    process::{Child, Command},
    sync::Mutex,
};
use tokio_postgres::NoTls;

/// `INLINE_ASSIGN_TIMEOUT_MS` of booking-svc.
pub const INLINE_TIMEOUT: Duration = Duration::from_millis(800);
/// `INLINE_RECORD_GRACE_MS` of booking-svc.
pub const RECORD_GRACE: Duration = Duration::from_millis(300);
/// `WORKER_LEASE_MS` of booking-svc: outbox, release and reassign-job claims.
pub const WORKER_LEASE: Duration = Duration::from_millis(3_000);

/// Settings of each service beyond its addresses (as the tests set them).
fn settings(service: &str) -> Vec<(&'static str, String)> {
    let ms = |d: Duration| d.as_millis().to_string();
    let common =
        [("RUST_LOG", "warn".to_string()), ("LOG_FORMAT", "json".into()), ("SHUTDOWN_GRACE_MS", "2000".into())];
    let own: Vec<(&'static str, String)> = match service {
        "booking-svc" => vec![
            ("INLINE_ASSIGN_TIMEOUT_MS", ms(INLINE_TIMEOUT)),
            ("INLINE_RECORD_GRACE_MS", ms(RECORD_GRACE)),
            ("WORKER_LEASE_MS", ms(WORKER_LEASE)),
            ("WORKER_BACKOFF_BASE_MS", "50".into()),
            ("WORKER_BACKOFF_MAX_MS", "1000".into()),
            ("WORKER_POLL_MS", "500".into()),
            ("PEER_TIMEOUT_MS", "1500".into()),
        ],
        "assign-svc" => vec![
            ("REASSIGN_BACKOFF_BASE_MS", "100".into()),
            ("REASSIGN_BACKOFF_CAP_MS", "1000".into()),
            ("REASSIGN_LEASE_MS", "3000".into()),
        ],
        // Retries at most a second apart and never given up within a soak: a temporary
        // refusal or an outage must delay a mail, never lose it.
        _ => vec![
            ("RETRY_BASE_MS", "100".into()),
            ("RETRY_CAP_MS", "1000".into()),
            ("MAX_ATTEMPTS", "10000".into()),
            ("WORKER_POLL_MS", "500".into()),
            ("SMTP_TIMEOUT_MS", "2000".into()),
            ("DELIVERY_LEASE_MS", "10000".into()),
        ],
    };
    common.into_iter().chain(own).collect()
}

/// One service process, restartable on its port.
pub struct Replica {
    /// `booking-a`, `assign-b`, ...: also its PostgreSQL `application_name`.
    pub name: String,
    pub port: u16,
    bin: PathBuf,
    env: Vec<(&'static str, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether this is a notify-svc replica.
    pub fn is_notify(&self) -> bool {
        self.name.starts_with("notify")
    }

    /// The gRPC service it serves, as its health check names it.
    fn grpc_service(&self) -> &'static str {
        match self.name.split('-').next() {
            Some("booking") => "booking.v1.BookingService",
            Some("assign") => "assign.v1.AssignService",
            _ => "notify.v1.NotifyService",
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts the process and waits until it serves; its output is appended to its log.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        for _ in 0..10 {
            let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
            let mut child = Command::new(&self.bin)
                .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
                .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                // Its own service, so that another replica on a reused port cannot pass.
                if crate::binaries::serves(&self.url(), self.grpc_service()).await && child.try_wait()?.is_none() {
                    self.child = Some(child);
                    return Ok(());
                }
                anyhow::ensure!(tokio::time::Instant::now() < deadline, "{} did not serve within 60 s", self.name);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // It exited: most likely its port was still held a moment; try again.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        anyhow::bail!("{} exited at every start (see {})", self.name, self.log.display())
    }

    /// SIGKILL, at once and mid-whatever.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-TERM`) to the process.
    pub async fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args([signal, &pid.to_string()]).status().await;
        }
    }

    /// SIGTERM and waits for the exit; true when it exited by itself within `patience`,
    /// false when it had to be killed.
    pub async fn terminate(&mut self, patience: Duration) -> bool {
        self.signal("-CONT").await;
        self.signal("-TERM").await;
        let Some(mut child) = self.child.take() else { return true };
        match tokio::time::timeout(patience, child.wait()).await {
            Ok(_) => true,
            Err(_) => {
                let _ = child.kill().await;
                false
            }
        }
    }
}

/// The database the stack runs on: created fresh for the run, dropped after.
#[derive(Clone)]
pub struct Database {
    admin: String,
    pub name: String,
}

impl Database {
    /// Creates a database named `name` on the server of `admin`.
    pub async fn create(admin: &str, name: &str) -> anyhow::Result<Self> {
        connect(admin).await?.batch_execute(&format!("CREATE DATABASE {name}")).await?;
        Ok(Self { admin: admin.to_string(), name: name.to_string() })
    }

    /// The URL of this database for a connection named `application` (PostgreSQL's
    /// `application_name`, so that one process's connections can be told apart).
    pub fn url(&self, application: &str) -> anyhow::Result<String> {
        tokio_postgres::Config::from_str(&self.admin)?;
        let (base, query) = self.admin.split_once('?').unwrap_or((&self.admin, ""));
        let scheme = base.find("://").map_or(0, |i| i + 3);
        let base = base[scheme..].find('/').map_or(base, |slash| &base[..scheme + slash]);
        let query = if query.is_empty() { String::new() } else { format!("{query}&") };
        Ok(format!("{base}/{}?{query}application_name={application}", self.name))
    }

    /// Drops the database, cutting every connection to it.
    pub async fn drop_now(&self) -> anyhow::Result<()> {
        connect(&self.admin)
            .await?
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await?;
        Ok(())
    }

    /// Ends, with `pg_terminate_backend`, the connections of the process named
    /// `application`, or of every process of the stack (`None`); returns how many.
    pub async fn terminate(&self, application: Option<&str>) -> anyhow::Result<i64> {
        let client = connect(&self.admin).await?;
        let row = client
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid() AND ($2::text IS NULL OR application_name = $2)",
                &[&self.name, &application],
            )
            .await?;
        Ok(row.get(0))
    }

    /// A read-only look at the queues the API does not show, as the last "nothing stuck"
    /// check: (what, how many) of emails still queued in booking-svc's outbox, open
    /// reassign jobs, open release tasks, versions still handed to their request, and
    /// deliveries still queued in notify-svc.
    pub async fn open_work(&self) -> anyhow::Result<Vec<(&'static str, i64)>> {
        let client = connect(&self.url("booking-chaos")?).await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM booking.outbox WHERE state = 'QUEUED'), \
                        (SELECT count(*) FROM booking.reassign_jobs WHERE state = 'OPEN'), \
                        (SELECT count(*) FROM booking.release_tasks WHERE state = 'OPEN'), \
                        (SELECT count(*) FROM booking.bookings WHERE handoff_due_at IS NOT NULL), \
                        (SELECT count(*) FROM notify.deliveries WHERE state = 'QUEUED')",
                &[],
            )
            .await?;
        Ok(vec![
            ("queued outbox emails", row.get(0)),
            ("open reassign jobs", row.get(1)),
            ("open release tasks", row.get(2)),
            ("versions still handed to their request", row.get(3)),
            ("queued deliveries", row.get(4)),
        ])
    }
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The whole stack.
pub struct Stack {
    pub database: Database,
    /// booking-a, booking-b, assign-a, assign-b, notify-a, notify-b. A fault holds a
    /// replica's lock from injection to recovery, so faults on one replica never overlap.
    pub replicas: Vec<Arc<Mutex<Replica>>>,
    pub sink: Arc<Mutex<Sink>>,
    pub mail_dir: PathBuf,
    /// (name, url) of each replica, in the order above.
    pub urls: Vec<(String, String)>,
}

impl Stack {
    /// Starts the sink and the six replicas on `database` (binaries from `bin_dir`, logs
    /// in `run_dir`) and waits until all serve.
    pub async fn start(bin_dir: &Path, database: Database, run_dir: &Path) -> anyhow::Result<Self> {
        // Seven distinct ports: the sink's and the six replicas'.
        let ports = crate::binaries::free_ports(7)?;
        let mut sink = Sink::new(run_dir, ports[6])?;
        sink.start().await?;
        let url = |i: usize| format!("http://127.0.0.1:{}", ports[i]);
        let mut replicas = Vec::new();
        for (i, (service, side)) in
            ["booking", "assign", "notify"].into_iter().flat_map(|s| [(s, "a"), (s, "b")]).enumerate()
        {
            let name = format!("{service}-{side}");
            let bin = format!("{service}-svc");
            let mut env = vec![("DATABASE_URL", database.url(&name)?)];
            let other = if side == "a" { 0 } else { 1 };
            match service {
                "booking" => {
                    env.push(("ASSIGN_URL", url(2 + other)));
                    env.push(("NOTIFY_URL", url(4 + other)));
                }
                "notify" => {
                    env.push(("SMTP_URL", sink.url()));
                    env.push(("MAIL_DIR", run_dir.join(format!("{name}-files")).to_string_lossy().into_owned()));
                }
                _ => {}
            }
            env.extend(settings(&bin));
            let log = run_dir.join(format!("{name}.log"));
            replicas.push(Replica { name, port: ports[i], bin: bin_dir.join(&bin), env, log, child: None });
        }
        // assign and notify first, so that booking-svc finds its peers.
        for i in [2, 3, 4, 5, 0, 1] {
            replicas[i].start().await?;
        }
        let urls = replicas.iter().map(|r| (r.name.clone(), r.url())).collect();
        Ok(Self {
            database,
            replicas: replicas.into_iter().map(|r| Arc::new(Mutex::new(r))).collect(),
            mail_dir: sink.dir().to_path_buf(),
            sink: Arc::new(Mutex::new(sink)),
            urls,
        })
    }

    /// The URLs of the replicas whose name starts with `service`.
    pub fn urls_of(&self, service: &str) -> Vec<String> {
        self.urls.iter().filter(|(n, _)| n.starts_with(service)).map(|(_, u)| u.clone()).collect()
    }

    /// Stops everything (thawed first, SIGTERM, then SIGKILL) and drops the database.
    pub async fn stop(self) -> anyhow::Result<()> {
        for replica in &self.replicas {
            replica.lock().await.terminate(Duration::from_secs(10)).await;
        }
        self.sink.lock().await.kill().await;
        self.database.drop_now().await
    }
}
