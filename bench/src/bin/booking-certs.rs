//! `booking-certs`: a local CA and the services' certificates, for the compose stack.
//!
//! Writes `ca.pem` and, for booking-svc, assign-svc, notify-svc and a `staff` client,
//! `<name>.pem` and `<name>-key.pem` into `--dir` (see `booking_tools::pki`), and for
//! staff tokens `signing-key.pem`, `jwks.json` (the services' AUTH_JWKS) and
//! `staff-token` (subject `staff`, roles staff and floor-admin, 30 days). Keeps the
//! files when `ca.pem` is there already, so a restart of the stack keeps its certificates;
//! delete the folder for new ones. A local development CA: never a production one.

use booking_tools::pki::{DEFAULT_TRUST_DOMAIN, LocalPki};
use clap::Parser;
use std::{path::PathBuf, process::ExitCode};

/// The names certificates are made for.
const NAMES: [&str; 4] = ["booking-svc", "assign-svc", "notify-svc", "staff"];

#[derive(Parser, Debug)]
#[command(name = "booking-certs", about = "Make a local CA and the services' certificates (for docker compose)")]
struct Args {
    /// Where the files are written.
    #[arg(long, env = "CERT_DIR", default_value = "./certs")]
    dir: PathBuf,
    /// SPIFFE trust domain of the certificates' URI SANs.
    #[arg(long, env = "TRUST_DOMAIN", default_value = DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// Give the files to this user id (the services' user in their containers).
    #[arg(long)]
    owner: Option<u32>,
    /// Leave the staff key readable by every user (for grpcurl on the host when the files
    /// belong to the services' user).
    #[arg(long)]
    readable_staff_key: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("booking-certs: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let pki = LocalPki { dir: args.dir.clone() };
    if pki.ca().exists() {
        eprintln!("booking-certs: keeping the certificates in {}", pki.dir.display());
        return Ok(());
    }
    LocalPki::create(&args.dir, &args.trust_domain, &NAMES)?;
    let mut files = vec![pki.ca()];
    for name in NAMES {
        files.extend([pki.cert(name), pki.key(name)]);
    }
    for file in &files {
        if let Some(owner) = args.owner {
            std::os::unix::fs::chown(file, Some(owner), Some(owner))?;
        }
    }
    // Staff tokens: a signing key, its JWKS (the services' AUTH_JWKS) and a token for the
    // `staff` user with both built-in roles, valid 30 days (mint more with booking-token).
    let key = booking_tools::token::load_or_create_key(&pki.dir.join("signing-key.pem"))?;
    std::fs::write(pki.dir.join("jwks.json"), key.jwks_json()?)?;
    let claims = platform::auth::jwt::Claims::new(
        "staff",
        &["staff", "floor-admin"],
        "booking-platform",
        &["booking-svc", "assign-svc", "notify-svc"],
        std::time::Duration::from_secs(30 * 86_400),
    );
    std::fs::write(pki.dir.join("staff-token"), key.mint(&claims)?)?;
    std::fs::set_permissions(pki.dir.join("staff-token"), std::fs::Permissions::from_mode(0o600))?;
    for file in ["signing-key.pem", "jwks.json", "staff-token"] {
        if let Some(owner) = args.owner {
            std::os::unix::fs::chown(pki.dir.join(file), Some(owner), Some(owner))?;
        }
    }
    if args.readable_staff_key {
        std::fs::set_permissions(pki.key("staff"), std::fs::Permissions::from_mode(0o644))?;
        std::fs::set_permissions(pki.dir.join("staff-token"), std::fs::Permissions::from_mode(0o644))?;
    }
    eprintln!(
        "booking-certs: a new local CA and certificates for {} (trust domain {}) in {}",
        NAMES.join(", "),
        args.trust_domain,
        pki.dir.display()
    );
    Ok(())
}
