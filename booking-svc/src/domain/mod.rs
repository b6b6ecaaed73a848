//! booking-svc's domain: its types and rules.
//!
//! Validated values (a guest's personal data apart), parsed requests, bookings and their
//! edit/cancel rules, history events, the feed's changes, email kinds and staleness,
//! inline-attempt rules, reassign decisions, paging, time formats and restaurant profiles.
//! It never sees tonic, SQL or the clock (time is passed in), so every rule is unit-tested.

pub mod booking;
pub mod changes;
pub mod emails;
pub mod guest;
pub mod history;
pub mod inline;
pub mod paging;
pub mod reassign;
pub mod requests;
pub mod restaurant;
pub mod time;
pub mod values;

pub use booking::{Booking, BookingStatus};
pub use emails::EmailKind;
pub use history::{Detail, Event, EventType};
