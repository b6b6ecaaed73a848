//! `booking-stack`: the whole system on one machine with no set-up.
//!
//! Starts assign-svc, notify-svc (mail as .eml files in MAIL_DIR) and booking-svc as
//! their real binaries, on PostgreSQL from DATABASE_URL when one answers, else on a
//! private throwaway cluster started from the local PostgreSQL binaries (removed on
//! exit). Puts a demo floor plan and restaurant profile, prints grpcurl lines to try, and
//! runs until Ctrl-C or SIGTERM, then stops everything gracefully.
//!
//! Secure by default: it makes a local CA, the three services' certificates and a `staff`
//! client certificate in CERT_DIR (said at start-up), and a signing key with its JWKS
//! for staff tokens (the services' AUTH_JWKS), and runs everything with mutual TLS and
//! authorization on; the grpcurl lines it prints carry `-cacert`, `-cert`, `-key` and
//! `-H "authorization: Bearer <token>"` with a staff token it mints. `--insecure` runs
//! the plain-text stack instead, open to every caller.

use booking_tools::{
    binaries::{ensure_binaries, wait_serving},
    local_pg::LocalCluster,
    pki::{DEFAULT_TRUST_DOMAIN, LocalPki},
};
use clap::Parser;
use platform::{
    auth::jwt::Claims,
    proto::{
        assign::v1::{PutFloorPlanRequest, Table, assign_service_client::AssignServiceClient},
        booking::v1::{
            GetRestaurantRequest, PutRestaurantRequest, Restaurant, booking_service_client::BookingServiceClient,
        },
    },
    tls::ClientTls,
};
use std::{
    path::PathBuf,
    process::{ExitCode, Stdio},
    time::{Duration, SystemTime},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

#[derive(Parser, Debug)]
#[command(name = "booking-stack", about = "Run booking-svc, assign-svc and notify-svc together on one machine")]
struct Args {
    /// PostgreSQL to use when it answers; otherwise a private throwaway cluster is started.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    /// Where notify-svc writes each email as a .eml file.
    #[arg(long, env = "MAIL_DIR", default_value = "./mail")]
    mail_dir: PathBuf,
    /// booking-svc port.
    #[arg(long, default_value_t = 50051)]
    booking_port: u16,
    /// assign-svc port.
    #[arg(long, default_value_t = 50052)]
    assign_port: u16,
    /// notify-svc port.
    #[arg(long, default_value_t = 50053)]
    notify_port: u16,
    /// Do not put the demo floor plan and restaurant profile.
    #[arg(long)]
    no_demo: bool,
    /// Plain text, no certificates: the stack as it was before mutual TLS.
    #[arg(long)]
    insecure: bool,
    /// Where the local CA's and the services' certificates are written (made anew at each
    /// start).
    #[arg(long, env = "CERT_DIR", default_value = "./certs")]
    cert_dir: PathBuf,
    /// SPIFFE trust domain of the services' certificates.
    #[arg(long, env = "TRUST_DOMAIN", default_value = DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// Always start a private cluster, configured as in production (fsync, synchronous
    /// commit, full-page writes and autovacuum on, 2 GB of shared buffers, checkpoints every
    /// 15 min or 8 GB of WAL), whether DATABASE_URL answers or not.
    #[arg(long)]
    durable_private_pg: bool,
}

/// The certificates of the secure stack and what its own clients use.
struct Security {
    pki: LocalPki,
    client: ClientTls,
    /// The JWKS of the staff tokens' signing key (the services' AUTH_JWKS).
    jwks: PathBuf,
    /// A staff token for the printed grpcurl lines.
    staff_token: String,
    /// A floor-admin token for the demo floor plan and restaurant profile.
    admin_token: String,
}

impl Security {
    /// The TLS variables of service `name`.
    fn env(&self, name: &str) -> Vec<(&'static str, String)> {
        let path = |p: PathBuf| p.display().to_string();
        vec![
            ("TLS_CERT", path(self.pki.cert(name))),
            ("TLS_KEY", path(self.pki.key(name))),
            ("TLS_CLIENT_CA", path(self.pki.ca())),
            ("TLS_CA", path(self.pki.ca())),
            ("AUTH_JWKS", path(self.jwks.clone())),
        ]
    }
}

const DEMO_RESTAURANT: &str = "demo-bistro";

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("booking-stack: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let bin_dir = ensure_binaries("booking-stack")?;
    let (database_url, cluster) = if args.durable_private_pg {
        let cluster = tokio::task::spawn_blocking(|| LocalCluster::start_durable(0)).await??;
        say(&format!("private PostgreSQL, fsync and autovacuum on, at {} (deleted on exit)", cluster.url()));
        (cluster.url(), Some(cluster))
    } else if database_answers(&args.database_url).await {
        say(&format!("using PostgreSQL at {}", redact(&args.database_url)));
        (args.database_url.clone(), None)
    } else {
        say(&format!(
            "no PostgreSQL answers at {}: starting a private throwaway cluster from the local PostgreSQL binaries",
            redact(&args.database_url)
        ));
        let cluster = tokio::task::spawn_blocking(|| LocalCluster::start(0)).await??;
        say(&format!("private PostgreSQL on 127.0.0.1:{} (deleted on exit)", cluster.port()));
        (cluster.url(), Some(cluster))
    };
    std::fs::create_dir_all(&args.mail_dir)?;
    let mail_dir = std::fs::canonicalize(&args.mail_dir)?;
    let security = if args.insecure {
        say("--insecure: plain text, no certificates");
        None
    } else {
        let names = ["booking-svc", "assign-svc", "notify-svc", "staff"];
        let (pki, _ca) = LocalPki::create(&args.cert_dir, &args.trust_domain, &names)?;
        let pki = LocalPki { dir: std::fs::canonicalize(&pki.dir)? };
        say(&format!(
            "mutual TLS: a new local CA and certificates for {} in {} (ca.pem, <name>.pem, <name>-key.pem)",
            names.join(", "),
            pki.dir.display()
        ));
        let client = ClientTls::new(&pki.ca(), Some((&pki.cert("staff"), &pki.key("staff"))))?;
        let key = booking_tools::token::load_or_create_key(&pki.dir.join("signing-key.pem"))?;
        let jwks = pki.dir.join("jwks.json");
        std::fs::write(&jwks, key.jwks_json()?)?;
        let audience = ["booking-svc", "assign-svc", "notify-svc"];
        let mint = |subject: &str, roles: &[&str]| {
            key.mint(&Claims::new(subject, roles, "booking-platform", &audience, Duration::from_secs(12 * 3600)))
        };
        let staff_token = mint("staff", &["staff"])?;
        let admin_token = mint("booking-stack", &["staff", "floor-admin"])?;
        say(&format!(
            "staff tokens: signing key signing-key.pem and jwks.json in {} (more with: booking-token --key {} --subject <you> --roles staff)",
            pki.dir.display(),
            pki.dir.join("signing-key.pem").display()
        ));
        Some(Security { pki, client, jwks, staff_token, admin_token })
    };
    let scheme = if security.is_some() { "https" } else { "http" };
    let assign_url = format!("{scheme}://127.0.0.1:{}", args.assign_port);
    let notify_url = format!("{scheme}://127.0.0.1:{}", args.notify_port);
    let booking_url = format!("{scheme}://127.0.0.1:{}", args.booking_port);
    let mail_dir_text = mail_dir.to_string_lossy().into_owned();
    let tls_env = |name: &str| security.as_ref().map(|s| s.env(name)).unwrap_or_default();
    let client_tls = security.as_ref().map(|s| &s.client);

    let mut children = Vec::new();
    let mut env =
        vec![("DATABASE_URL", database_url.clone()), ("LISTEN_ADDR", format!("127.0.0.1:{}", args.assign_port))];
    env.extend(tls_env("assign-svc"));
    children.push(spawn(&bin_dir, "assign-svc", &env)?);
    let mut env = vec![
        ("DATABASE_URL", database_url.clone()),
        ("LISTEN_ADDR", format!("127.0.0.1:{}", args.notify_port)),
        ("MAIL_DIR", mail_dir_text.clone()),
    ];
    env.extend(tls_env("notify-svc"));
    children.push(spawn(&bin_dir, "notify-svc", &env)?);
    let mut env = vec![
        ("DATABASE_URL", database_url.clone()),
        ("LISTEN_ADDR", format!("127.0.0.1:{}", args.booking_port)),
        ("ASSIGN_URL", assign_url.clone()),
        ("NOTIFY_URL", notify_url.clone()),
    ];
    env.extend(tls_env("booking-svc"));
    children.push(spawn(&bin_dir, "booking-svc", &env)?);

    let started = async {
        for url in [&assign_url, &notify_url, &booking_url] {
            wait_serving(url, client_tls, Duration::from_secs(60)).await?;
        }
        if !args.no_demo {
            let admin = security.as_ref().map(|s| s.admin_token.as_str());
            put_demo_floor_plan(&assign_url, client_tls, admin).await?;
            put_demo_profile(&booking_url, client_tls, admin).await?;
        }
        anyhow::Ok(())
    };
    let shutdown = platform::shutdown::on_signal();
    let outcome = tokio::select! {
        result = started => result,
        _ = shutdown.cancelled() => Ok(()),
    };
    match &outcome {
        Ok(()) if !shutdown.is_cancelled() => {
            let grpcurl = match &security {
                Some(security) => format!(
                    "grpcurl -cacert {} -cert {} -key {} -H \"authorization: Bearer {}\"",
                    security.pki.ca().display(),
                    security.pki.cert("staff").display(),
                    security.pki.key("staff").display(),
                    security.staff_token
                ),
                None => "grpcurl -plaintext".to_string(),
            };
            print_guide(&grpcurl, args.booking_port, args.assign_port, args.notify_port, &mail_dir_text);
            shutdown.cancelled().await;
        }
        Ok(()) => {}
        Err(error) => eprintln!("booking-stack: {error:#}"),
    }
    say("stopping the services");
    for child in &children {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
    }
    for mut child in children {
        if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
    if let Some(cluster) = cluster {
        say("removing the private PostgreSQL cluster");
        tokio::task::spawn_blocking(move || drop(cluster)).await?;
    }
    say("stopped");
    outcome
}

fn say(line: &str) {
    eprintln!("booking-stack: {line}");
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn database_answers(url: &str) -> bool {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            client.simple_query("SELECT 1").await.is_ok()
        }
        _ => false,
    }
}

fn spawn(bin_dir: &std::path::Path, name: &'static str, envs: &[(&str, String)]) -> anyhow::Result<Child> {
    let mut child = Command::new(bin_dir.join(name))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child.stderr.take().map(|s| Box::new(s) as Box<_>),
    ]
    .into_iter()
    .flatten()
    {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{name:>11} | {line}");
            }
        });
    }
    Ok(child)
}

/// `message` with `authorization: Bearer <token>` when there is a token.
fn authorized<T>(message: T, token: Option<&str>) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    }
    Ok(request)
}

async fn put_demo_floor_plan(assign_url: &str, tls: Option<&ClientTls>, token: Option<&str>) -> anyhow::Result<()> {
    let table = |id: &str, seats: i32, group: &str| Table { id: id.into(), seats, combine_group: group.into() };
    let request = PutFloorPlanRequest {
        restaurant_id: DEMO_RESTAURANT.into(),
        tables: vec![
            table("t1", 2, ""),
            table("t2", 2, ""),
            table("t3", 4, "window"),
            table("t4", 4, "window"),
            table("t5", 6, ""),
            table("t6", 8, "terrace"),
            table("t7", 8, "terrace"),
        ],
    };
    let mut client = AssignServiceClient::new(platform::grpc::connect_with(assign_url, tls)?);
    match client.put_floor_plan(authorized(request, token)?).await {
        Ok(_) => say(&format!("demo floor plan '{DEMO_RESTAURANT}' is in place (7 tables, 34 seats)")),
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            say(&format!("kept the existing '{DEMO_RESTAURANT}' floor plan: {}", status.message()))
        }
        Err(status) => anyhow::bail!("putting the demo floor plan failed: {status}"),
    }
    Ok(())
}

/// The demo restaurant's profile, unless it has one already (a database kept from an
/// earlier run keeps what was put there).
async fn put_demo_profile(booking_url: &str, tls: Option<&ClientTls>, token: Option<&str>) -> anyhow::Result<()> {
    let mut client = BookingServiceClient::new(platform::grpc::connect_with(booking_url, tls)?);
    let current = client
        .get_restaurant(authorized(GetRestaurantRequest { restaurant_id: DEMO_RESTAURANT.into() }, token)?)
        .await?
        .into_inner()
        .restaurant
        .unwrap_or_default();
    if current.name != DEMO_RESTAURANT || current.time_zone != "UTC" {
        say(&format!("kept the existing '{DEMO_RESTAURANT}' profile: {} ({})", current.name, current.time_zone));
        return Ok(());
    }
    let restaurant = Restaurant {
        id: DEMO_RESTAURANT.into(),
        name: "Demo Bistro".into(),
        time_zone: "Europe/Paris".into(),
        address: "12 Rue de la Paix\n75002 Paris".into(),
        phone: "+33 1 23 45 67 89".into(),
    };
    client.put_restaurant(authorized(PutRestaurantRequest { restaurant: Some(restaurant) }, token)?).await?;
    say(&format!("demo restaurant '{DEMO_RESTAURANT}' is Demo Bistro, Europe/Paris"));
    Ok(())
}

/// Prints what to try, every line starting with `grpcurl` (the command with its transport
/// flags).
fn print_guide(grpcurl: &str, booking: u16, assign: u16, notify: u16, mail_dir: &str) {
    let tomorrow = SystemTime::now() + Duration::from_secs(86_400);
    let day = platform::proto::timestamp(tomorrow).seconds / 86_400 * 86_400;
    let at = |hour: i64| {
        let ts = prost_types::Timestamp { seconds: day + hour * 3600, nanos: 0 };
        ts.to_string()
    };
    let seven = at(19);
    let eight = at(20);
    println!(
        r#"
The stack is up: booking-svc 127.0.0.1:{booking}, assign-svc 127.0.0.1:{assign}, notify-svc 127.0.0.1:{notify}.
Emails are written to {mail_dir}. Ctrl-C stops everything.

Try (grpcurl needs no .proto files: the servers have reflection):

  {grpcurl} 127.0.0.1:{booking} list
  {grpcurl} -d '{{"restaurantId":"{DEMO_RESTAURANT}"}}' 127.0.0.1:{booking} booking.v1.BookingService/GetRestaurant
  {grpcurl} -d '{{"restaurantId":"{DEMO_RESTAURANT}","guest":{{"name":"Ada","email":"ada@example.com"}},"partySize":4,"startTime":"{seven}"}}' \
    127.0.0.1:{booking} booking.v1.BookingService/CreateBooking
  {grpcurl} -d '{{"bookingId":"<id from above>","startTime":"{eight}","partySize":6}}' \
    127.0.0.1:{booking} booking.v1.BookingService/EditBooking
  {grpcurl} -d '{{"bookingId":"<id>"}}' 127.0.0.1:{booking} booking.v1.BookingService/GetBookingHistory
  {grpcurl} -d '{{"bookingId":"<id>"}}' 127.0.0.1:{notify} notify.v1.NotifyService/ListDeliveries
  {grpcurl} -d '{{"restaurantId":"{DEMO_RESTAURANT}"}}' 127.0.0.1:{assign} assign.v1.AssignService/GetFloorPlan
  {grpcurl} -d '{{"restaurantId":"{DEMO_RESTAURANT}"}}' 127.0.0.1:{booking} booking.v1.BookingService/WatchBookingChanges
"#
    );
}
