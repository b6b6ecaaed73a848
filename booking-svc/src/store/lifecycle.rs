//! How long booking-svc keeps each table's rows: the purges of [`platform::purge`].
//!
//! Finished queue rows (emails sent, dropped or failed; closed reassign jobs; done release
//! tasks) go a retention after they finished. A booking goes, with its history, its queue
//! rows and its changes, a retention after its slot ended, once nothing about it is still
//! queued (only when the operator sets that retention: the history is the audit log).
//! Idempotency keys have their own purge ([`super::idempotency::PURGE`]).

use platform::purge::{Purge, PurgeTable};
use std::sync::LazyLock;

/// Emails that reached a final state (`DONE`, `DROPPED`, `FAILED`), by when they did.
pub static OUTBOX: LazyLock<Purge> = LazyLock::new(|| {
    Purge::new(PurgeTable {
        table: "booking.outbox",
        key: &["id"],
        age: "finished_at",
        finished: Some("state <> 'QUEUED'"),
        with: &[],
    })
});

/// Reassign jobs no longer open, by when they closed.
pub static REASSIGN_JOBS: LazyLock<Purge> = LazyLock::new(|| {
    Purge::new(PurgeTable {
        table: "booking.reassign_jobs",
        key: &["booking_id", "version"],
        age: "closed_at",
        finished: Some("state <> 'OPEN'"),
        with: &[],
    })
});

/// Release tasks no longer open, by when they finished.
pub static RELEASE_TASKS: LazyLock<Purge> = LazyLock::new(|| {
    Purge::new(PurgeTable {
        table: "booking.release_tasks",
        key: &["booking_id"],
        age: "finished_at",
        finished: Some("state <> 'OPEN'"),
        with: &[],
    })
});

/// Bookings by the end of their slot, with every row about them, once no work about them
/// is pending (no hand-off, no queued email, no open job or release).
pub static BOOKINGS: LazyLock<Purge> = LazyLock::new(|| {
    Purge::new(PurgeTable {
        table: "booking.bookings",
        key: &["id"],
        age: "(start_time + duration_s * interval '1 second')",
        finished: Some(
            "handoff_due_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM booking.outbox o WHERE o.booking_id = bookings.id AND o.state = 'QUEUED') \
             AND NOT EXISTS (SELECT 1 FROM booking.reassign_jobs j WHERE j.booking_id = bookings.id AND j.state = 'OPEN') \
             AND NOT EXISTS (SELECT 1 FROM booking.release_tasks r WHERE r.booking_id = bookings.id AND r.state = 'OPEN')",
        ),
        with: &[
            ("booking.history", "booking_id"),
            ("booking.outbox", "booking_id"),
            ("booking.reassign_jobs", "booking_id"),
            ("booking.release_tasks", "booking_id"),
            ("booking.changes", "booking_id"),
        ],
    })
});
