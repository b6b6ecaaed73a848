//! booking-svc's domain: its types and rules.
//!
//! Validated values, bookings and their edit/cancel rules, history events, email kinds and
//! staleness, inline-attempt rules, reassign decisions and paging. It never sees tonic, SQL
//! or the clock (time is passed in), so every rule is unit-tested.

pub mod booking;
pub mod emails;
pub mod history;
pub mod inline;
pub mod paging;
pub mod reassign;
pub mod values;

pub use booking::{Booking, BookingStatus};
pub use emails::EmailKind;
pub use history::{Detail, Event, EventType};
