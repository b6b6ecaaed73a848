//! The one error type of assign-svc and its single mapping to a gRPC status.
//!
//! Owns which code each failure gets and which details it carries. It must never leak
//! internal causes to clients: database failures go to the log with the trace id.

use crate::domain::{BookingId, RestaurantId, Version};
use platform::{db::DbError, status::Violations};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, PreconditionViolation, StatusExt};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Some fields are wrong; nothing was changed.
    #[error("invalid request")]
    Invalid(Violations),
    /// The restaurant has no floor plan (asked for tables).
    #[error("restaurant '{0}' has no floor plan")]
    UnknownRestaurant(RestaurantId),
    /// The restaurant has no floor plan (asked for the plan).
    #[error("restaurant '{0}' has no floor plan")]
    PlanNotFound(RestaurantId),
    /// A newer version of the booking is known.
    #[error("booking {booking_id} version {version} is older than version {newest_version}")]
    OlderVersion { booking_id: BookingId, version: Version, newest_version: i64 },
    /// The booking was released at or after this version.
    #[error("booking {booking_id} was released at version {released_version}; version {version} is not newer")]
    Released { booking_id: BookingId, version: Version, released_version: i64 },
    /// The new floor plan would no longer seat these bookings' live assignments.
    #[error("the new floor plan would break the live assignments of bookings {}", list(.0))]
    PlanBreaksAssignments(Vec<BookingId>),
    /// The caller's deadline passed; nothing was changed.
    #[error("the deadline passed before tables could be reserved; nothing was reserved")]
    DeadlineExceeded,
    /// A stored row does not parse (a bug or a manual edit).
    #[error("unreadable stored data: {0}")]
    Stored(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

fn list(ids: &[BookingId]) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Error::Db(DbError::Query(error))
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Error::Db(DbError::Pool(error))
    }
}

impl Error {
    /// A conflict that a fresh attempt resolves: an exclusion violation from a concurrent
    /// winner, a deadlock or a serialization failure.
    pub fn is_conflict(&self) -> bool {
        use tokio_postgres::error::SqlState;
        matches!(self, Error::Db(db) if db.sql_state().is_some_and(|code| {
            *code == SqlState::EXCLUSION_VIOLATION
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::UNIQUE_VIOLATION
        }))
    }

    /// PostgreSQL stopped a statement because its time budget ran out.
    pub fn is_timeout(&self) -> bool {
        use tokio_postgres::error::SqlState;
        matches!(self, Error::Db(db) if db.sql_state().is_some_and(|code| {
            *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE
        }))
    }

    /// A short reason for logs, metrics and `last_error` (no internal detail).
    pub fn reason(&self) -> String {
        match self {
            Error::Db(db) if db.is_transient() => "database unavailable".to_string(),
            Error::Db(_) | Error::Stored(_) => "internal error".to_string(),
            other => other.to_string(),
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid(violations) => violations.into_status(),
            Error::UnknownRestaurant(_) => {
                platform::status::invalid_argument("restaurant_id", format!("{error}; put one first"))
            }
            Error::PlanNotFound(_) => Status::not_found(error.to_string()),
            Error::OlderVersion { .. } | Error::Released { .. } => Status::aborted(error.to_string()),
            Error::PlanBreaksAssignments(ref ids) => {
                let violations: Vec<PreconditionViolation> = ids
                    .iter()
                    .map(|id| {
                        PreconditionViolation::new(
                            "LIVE_ASSIGNMENT",
                            id.to_string(),
                            "the booking holds tables the new plan removes or no longer seats its party with",
                        )
                    })
                    .collect();
                Status::with_error_details(
                    Code::FailedPrecondition,
                    error.to_string(),
                    ErrorDetails::with_precondition_failure(violations),
                )
            }
            Error::DeadlineExceeded => Status::deadline_exceeded(error.to_string()),
            Error::Stored(ref reason) => {
                let trace = platform::telemetry::current_trace_id().unwrap_or_default();
                tracing::error!(%reason, trace_id = %trace, "unreadable stored data");
                Status::internal(format!("internal error (trace {trace})"))
            }
            Error::Db(db) => db.to_status(),
        }
    }
}
