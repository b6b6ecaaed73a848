//! The SQL of assign-svc: one module per table or queue, one function per query.
//!
//! Every statement is prepared and cached; rows become domain types here and nowhere
//! else. It must never decide anything: the callers hold the rules and the transactions.

pub mod bookings;
pub mod jobs;
pub mod lifecycle;
pub mod locks;
pub mod notify;
pub mod plans;
pub mod reservations;
mod rows;
