//! Rebuilds the crate when a migration file is added, changed or removed: the migrations are
//! embedded at compile time, and cargo does not otherwise watch the directory.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
