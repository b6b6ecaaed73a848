//! Dev and benchmark tools of the booking edit flow, kept out of the services' runtime.
//!
//! The binaries `booking-stack` (the whole system on one machine) and `booking-bench`
//! (how fast an edit is) live in `src/bin/`; this library holds what they share with the
//! end-to-end tests (a private, throwaway PostgreSQL cluster) and the benchmark's change-feed
//! watchers.

pub mod feed;
pub mod local_pg;
