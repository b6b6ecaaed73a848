//! The rules of notify-svc, as plain types.
//!
//! What a delivery key is, what a valid request looks like, when a repeated request
//! conflicts with the ledger, and what happens after a delivery attempt.
//!
//! Owns no I/O: it never sees tonic, SQL rows, the clock or the network. Constructors are
//! the only way to make a value, and they name the offending field on failure.

mod delivery;
mod key;
mod limits;
mod recipient;
mod request;
mod zone;

pub use delivery::{AttemptFailure, Delivery, DeliveryState, Next, RetryPolicy, after_attempt};
pub use key::{DeliveryKey, Kind, parse_booking_id, parse_version};
pub use limits::Limits;
pub use recipient::Recipient;
pub use request::{Details, RawDetails, SendRequest};
pub use zone::Zone;
