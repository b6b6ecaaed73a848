//! `booking-token`: mints a staff token (`authorization: Bearer <JWT>`) for a subject and
//! roles, signed with a private key, and writes the JWKS that the services read
//! (`AUTH_JWKS`). Without a key file it makes one (Ed25519, PKCS#8 PEM, readable by the
//! owner only). Prints the token alone on stdout, for `$(booking-token ...)`.

use clap::Parser;
use platform::auth::jwt::Claims;
use std::{path::PathBuf, process::ExitCode, time::Duration};

#[derive(Parser, Debug)]
#[command(name = "booking-token", about = "Mint a staff token for the booking services and write their JWKS")]
struct Args {
    /// Who the token is for (the `sub` claim, recorded as the actor of what they do).
    #[arg(long)]
    subject: String,
    /// Roles, comma-separated (built in: staff, floor-admin).
    #[arg(long, value_delimiter = ',', default_value = "staff")]
    roles: Vec<String>,
    /// The signing key (PKCS#8 PEM, Ed25519 or P-256); made when it does not exist.
    #[arg(long, default_value = "signing-key.pem")]
    key: PathBuf,
    /// Where to write the JWKS of the key (the services' AUTH_JWKS); default: beside the key.
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// The `iss` claim (the services' AUTH_ISSUER).
    #[arg(long, default_value = "booking-platform")]
    issuer: String,
    /// The `aud` claim, comma-separated (the services' AUTH_AUDIENCE, by default their names).
    #[arg(long, value_delimiter = ',', default_value = "booking-svc,assign-svc,notify-svc")]
    audience: Vec<String>,
    /// How long the token is valid (e.g. 30m, 8h).
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<String> {
    let key = booking_tools::token::load_or_create_key(&args.key)?;
    let jwks = args.jwks.clone().unwrap_or_else(|| args.key.with_file_name("jwks.json"));
    std::fs::write(&jwks, key.jwks_json()?).map_err(|e| anyhow::anyhow!("cannot write '{}': {e}", jwks.display()))?;
    eprintln!("key {} (kid {}), JWKS written to {}", args.key.display(), key.kid(), jwks.display());
    let roles: Vec<&str> = args.roles.iter().map(String::as_str).filter(|r| !r.is_empty()).collect();
    let audience: Vec<&str> = args.audience.iter().map(String::as_str).collect();
    Ok(key.mint(&Claims::new(&args.subject, &roles, &args.issuer, &audience, args.ttl))?)
}
