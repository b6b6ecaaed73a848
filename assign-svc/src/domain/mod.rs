//! The rules of table assignment, as pure types and functions.
//!
//! Parsed requests, floor plans, best fit, version rules and the retry policy of
//! background jobs. Owns every decision that can be made without I/O. It must never see
//! tonic, SQL rows or the clock: callers parse into these types at the edge and pass
//! `now` in.

pub mod fit;
pub mod job;
pub mod plan;
pub mod types;
pub mod versions;

pub use fit::{TableState, best_fit};
pub use job::{JobState, JobStep, JobUpdate, JobView, RetryPolicy, SubmitAnswer, UpdateKind, decide_submit};
pub use plan::{FloorPlan, LiveAssignment, Table, invalidated_bookings, plan_violations};
pub use types::{
    AssignRequest, Assignment, BookingId, CombineGroup, PartySize, RestaurantId, Seats, Slot, TableId, Version,
};
pub use versions::{BookingState, VersionCheck, check_version};
