//! All of booking-svc's SQL, one module per table or queue.
//!
//! Each module has one function per query, each with a cached prepared statement, mapping
//! rows to domain types. Transactions are opened by the callers (the flow and the
//! workers), never here, and nothing here calls another service.
//!
//! Columns with a domain type (migration V3) get their parameters cast to the domain's base
//! type (`$2::int4`), so a statement binds plain Rust values: the client would otherwise be
//! asked for the domain type itself.

pub mod bookings;
pub mod changes;
pub mod history;
pub mod idempotency;
pub mod jobs;
pub mod lifecycle;
pub mod outbox;
pub mod releases;
pub mod restaurants;

use crate::{domain::Event, error::Error};
use serde_json::Value;
use std::time::Duration;

pub use platform::telemetry::Carrier;

type Result<T> = std::result::Result<T, Error>;

/// A duration as a `float8` parameter, in seconds.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The stored form of an event's detail.
fn detail_json(event: &Event) -> Result<Value> {
    serde_json::to_value(&event.detail).map_err(|e| Error::corrupt(format!("history detail: {e}")))
}

/// A booking's duration as its `duration_s` column (whole seconds).
fn duration_s(d: Duration) -> Result<i32> {
    i32::try_from(d.as_secs()).map_err(|_| Error::corrupt("duration out of range"))
}

/// How long until a due time `seconds` from now, as PostgreSQL computed it (`None`: no
/// due time; a time already past is due now).
fn due_in(seconds: Option<f64>) -> Option<Duration> {
    seconds.map(|s| Duration::from_secs_f64(s.max(0.0)))
}
