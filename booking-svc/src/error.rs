//! booking-svc's one error enum and its single mapping to a gRPC status.
//!
//! Internal causes go to the log with the trace id, never to the client.

use platform::{db::DbError, status::Violations};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Why a request (or a worker step) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; one violation per wrong field.
    #[error("invalid request")]
    Invalid(Violations),
    /// No booking has this id.
    #[error("booking {0} not found")]
    NotFound(uuid::Uuid),
    /// `expected_version` is not the current version.
    #[error("booking is at version {current}, not {expected}")]
    VersionMismatch { expected: i64, current: i64 },
    /// The booking is cancelled.
    #[error("booking {0} is cancelled")]
    Cancelled(uuid::Uuid),
    /// The idempotency key was used for a request with other parameters.
    #[error("idempotency key was used for other parameters")]
    KeyReused,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Stored data that cannot be read (a bug or a manual edit).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A change feed watcher fell too far behind; it resumes from `cursor`.
    #[error("change feed watcher fell behind")]
    FeedLagging { cursor: String },
    /// The change feed of this process is closing (shutdown); resume from `cursor`.
    #[error("change feed closing")]
    FeedClosing { cursor: String },
    /// The change feed of this process cannot follow the database right now.
    #[error("change feed unavailable")]
    FeedUnavailable,
    /// A cursor beyond every position the feed has handed out.
    #[error("cursor ahead of the change feed")]
    CursorAhead,
}

impl Error {
    /// Stored data that cannot be read.
    pub fn corrupt(what: impl Into<String>) -> Self {
        Error::Corrupt(what.into())
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Db(db) if db.is_transient())
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Error::Db(DbError::Query(error))
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid(violations) => violations.into_status(),
            Error::NotFound(id) => Status::not_found(format!("booking {id} not found")),
            Error::VersionMismatch { expected, current } => Status::aborted(format!(
                "expected_version {expected} is not the current version {current}; read the booking and retry"
            )),
            Error::Cancelled(id) => Status::with_error_details(
                Code::FailedPrecondition,
                format!("booking {id} is cancelled and cannot be changed"),
                ErrorDetails::with_precondition_failure_violation(
                    "BOOKING_CANCELLED",
                    format!("bookings/{id}"),
                    "the booking is cancelled",
                ),
            ),
            Error::KeyReused => Status::with_error_details(
                Code::FailedPrecondition,
                "idempotency_key was already used with other parameters",
                ErrorDetails::with_precondition_failure_violation(
                    "IDEMPOTENCY_KEY_REUSED",
                    "idempotency_key",
                    "the key was first used for a request with other parameters",
                ),
            ),
            Error::Db(db) => db.to_status(),
            Error::FeedLagging { cursor } => feed_status(
                Code::ResourceExhausted,
                format!(
                    "this watcher fell too far behind the change feed (FEED_WATCHER_BUFFER); resume from cursor {cursor}"
                ),
                "WATCHER_TOO_SLOW",
                cursor,
            ),
            Error::FeedClosing { cursor } => feed_status(
                Code::Unavailable,
                format!("booking-svc is shutting down; resume from cursor {cursor} (on any replica)"),
                "FEED_CLOSING",
                cursor,
            ),
            Error::FeedUnavailable => Status::unavailable("the change feed cannot read the database right now; retry"),
            Error::CursorAhead => Status::out_of_range("cursor was not issued by this change feed"),
            Error::Corrupt(what) => {
                let trace = platform::telemetry::current_trace_id().unwrap_or_default();
                tracing::error!(error = %what, trace_id = %trace, "corrupt stored data");
                Status::internal(format!("internal error (trace {trace})"))
            }
        }
    }
}

/// A status ending a watch, with the cursor to resume from in its message and in a
/// `google.rpc.ErrorInfo` (metadata `cursor`).
fn feed_status(code: Code, message: String, reason: &str, cursor: String) -> Status {
    let metadata = std::collections::HashMap::from([("cursor".to_string(), cursor)]);
    Status::with_error_details(code, message, ErrorDetails::with_error_info(reason, "booking.v1", metadata))
}
