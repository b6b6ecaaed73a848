//! How long assign-svc keeps its rows: the purges of [`platform::purge`].
//!
//! A reservation goes a retention after its slot ended (the exclusion constraint then
//! guards only what can still clash), and so does an assignment (the booking's row, with
//! its reservations and job), once no job of the booking waits. A finished job goes a
//! retention after it finished.

use platform::purge::{Purge, PurgeTable};
use std::sync::LazyLock;

/// Reservations by the end of their slot.
pub static RESERVATIONS: LazyLock<Purge> = LazyLock::new(|| {
    Purge::new(PurgeTable {
        table: "assign.reservations",
        key: &["booking_id", "table_id", "restaurant_id"],
        age: "upper(during)",
        finished: None,
        with: &[],
    })
});

/// Bookings' rows by the end of the slot they hold (their reservations and job go with
/// them, by the foreign keys' cascade), unless a job of theirs waits.
pub static ASSIGNMENTS: LazyLock<Purge> = LazyLock::new(|| {
    Purge::new(PurgeTable {
        table: "assign.bookings",
        key: &["booking_id"],
        age: "upper(during)",
        finished: Some(
            "NOT EXISTS (SELECT 1 FROM assign.jobs j WHERE j.booking_id = bookings.booking_id AND j.state = 'waiting')",
        ),
        with: &[],
    })
});

/// Jobs no longer waiting, by when they finished.
pub static JOBS: LazyLock<Purge> = LazyLock::new(|| {
    Purge::new(PurgeTable {
        table: "assign.jobs",
        key: &["booking_id"],
        age: "finished_at",
        finished: Some("state <> 'waiting'"),
        with: &[],
    })
});
