//! `booking-stack`: the whole system on one machine with no set-up.
//!
//! Starts assign-svc, notify-svc (mail as .eml files in MAIL_DIR) and booking-svc as
//! their real binaries, on PostgreSQL from DATABASE_URL when one answers, else on a
//! private throwaway cluster started from the local PostgreSQL binaries (removed on
//! exit). Puts a demo floor plan and restaurant profile, prints grpcurl lines to try, and
//! runs until Ctrl-C or SIGTERM, then stops everything gracefully.

use booking_tools::{
    binaries::{ensure_binaries, wait_serving},
    local_pg::LocalCluster,
};
use clap::Parser;
use platform::proto::{
    assign::v1::{PutFloorPlanRequest, Table, assign_service_client::AssignServiceClient},
    booking::v1::{
        GetRestaurantRequest, PutRestaurantRequest, Restaurant, booking_service_client::BookingServiceClient,
    },
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
    /// Always start a private cluster, configured as in production (fsync, synchronous
    /// commit, full-page writes and autovacuum on), whether DATABASE_URL answers or not.
    #[arg(long)]
    durable_private_pg: bool,
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
    let assign_url = format!("http://127.0.0.1:{}", args.assign_port);
    let notify_url = format!("http://127.0.0.1:{}", args.notify_port);
    let booking_url = format!("http://127.0.0.1:{}", args.booking_port);
    let mail_dir_text = mail_dir.to_string_lossy().into_owned();

    let mut children = Vec::new();
    children.push(spawn(
        &bin_dir,
        "assign-svc",
        &[("DATABASE_URL", &database_url), ("LISTEN_ADDR", &format!("127.0.0.1:{}", args.assign_port))],
    )?);
    children.push(spawn(
        &bin_dir,
        "notify-svc",
        &[
            ("DATABASE_URL", &database_url),
            ("LISTEN_ADDR", &format!("127.0.0.1:{}", args.notify_port)),
            ("MAIL_DIR", &mail_dir_text),
        ],
    )?);
    children.push(spawn(
        &bin_dir,
        "booking-svc",
        &[
            ("DATABASE_URL", &database_url),
            ("LISTEN_ADDR", &format!("127.0.0.1:{}", args.booking_port)),
            ("ASSIGN_URL", &assign_url),
            ("NOTIFY_URL", &notify_url),
        ],
    )?);

    let started = async {
        for url in [&assign_url, &notify_url, &booking_url] {
            wait_serving(url, Duration::from_secs(60)).await?;
        }
        if !args.no_demo {
            put_demo_floor_plan(&assign_url).await?;
            put_demo_profile(&booking_url).await?;
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
            print_guide(args.booking_port, args.assign_port, args.notify_port, &mail_dir_text);
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

fn spawn(bin_dir: &std::path::Path, name: &'static str, envs: &[(&str, &str)]) -> anyhow::Result<Child> {
    let mut child = Command::new(bin_dir.join(name))
        .envs(envs.iter().copied())
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

async fn put_demo_floor_plan(assign_url: &str) -> anyhow::Result<()> {
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
    let mut client = AssignServiceClient::new(platform::grpc::connect(assign_url)?);
    match client.put_floor_plan(request).await {
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
async fn put_demo_profile(booking_url: &str) -> anyhow::Result<()> {
    let mut client = BookingServiceClient::new(platform::grpc::connect(booking_url)?);
    let current = client
        .get_restaurant(GetRestaurantRequest { restaurant_id: DEMO_RESTAURANT.into() })
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
    client.put_restaurant(PutRestaurantRequest { restaurant: Some(restaurant) }).await?;
    say(&format!("demo restaurant '{DEMO_RESTAURANT}' is Demo Bistro, Europe/Paris"));
    Ok(())
}

fn print_guide(booking: u16, assign: u16, notify: u16, mail_dir: &str) {
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

  grpcurl -plaintext 127.0.0.1:{booking} list
  grpcurl -plaintext -d '{{"restaurantId":"{DEMO_RESTAURANT}"}}' 127.0.0.1:{booking} booking.v1.BookingService/GetRestaurant
  grpcurl -plaintext -d '{{"restaurantId":"{DEMO_RESTAURANT}","guest":{{"name":"Ada","email":"ada@example.com"}},"partySize":4,"startTime":"{seven}"}}' \
    127.0.0.1:{booking} booking.v1.BookingService/CreateBooking
  grpcurl -plaintext -d '{{"bookingId":"<id from above>","startTime":"{eight}","partySize":6}}' \
    127.0.0.1:{booking} booking.v1.BookingService/EditBooking
  grpcurl -plaintext -d '{{"bookingId":"<id>"}}' 127.0.0.1:{booking} booking.v1.BookingService/GetBookingHistory
  grpcurl -plaintext -d '{{"bookingId":"<id>"}}' 127.0.0.1:{notify} notify.v1.NotifyService/ListDeliveries
  grpcurl -plaintext -d '{{"restaurantId":"{DEMO_RESTAURANT}"}}' 127.0.0.1:{assign} assign.v1.AssignService/GetFloorPlan
  grpcurl -plaintext -d '{{"restaurantId":"{DEMO_RESTAURANT}"}}' 127.0.0.1:{booking} booking.v1.BookingService/WatchBookingChanges
"#
    );
}
