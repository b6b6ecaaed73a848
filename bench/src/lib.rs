//! Dev and benchmark tools of the booking edit flow, kept out of the services' runtime.
//!
//! The binaries `booking-stack` (the whole system on one machine), `booking-bench` (how
//! fast an edit is, also over a long soak), `booking-token` (a staff token and the JWKS),
//! `booking-certs` (the services' certificates) and `booking-chaos` (a seeded soak under
//! every fault at once, judged from outside) live in `src/bin/`; this library holds what
//! they share with each other and with the end-to-end tests (the local certificate
//! authority among them), the benchmark's change-feed watchers and its soak figures.

pub mod binaries;
pub mod chaos;
pub mod feed;
pub mod local_pg;
pub mod pki;
pub mod soak;
pub mod token;
pub mod usage;
