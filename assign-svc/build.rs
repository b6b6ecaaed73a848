//! Rebuilds the crate when a migration changes.
//!
//! The migrations are embedded at compile time, and cargo does not otherwise watch the
//! directory for a file added, changed or removed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
