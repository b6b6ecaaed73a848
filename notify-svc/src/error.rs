//! The one error type of notify-svc and its single mapping to a gRPC status.
//!
//! Internal causes (SQL, unreadable rows) go to the log with the trace id, never to the
//! client. Nothing here decides a rule; it only names outcomes.

use crate::domain::DeliveryKey;
use platform::{db::DbError, status::Violations};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, PreconditionViolation, StatusExt};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; each wrong field is named.
    #[error("invalid request: {0:?}")]
    Invalid(Violations),
    /// No delivery has this key (or booking).
    #[error("no delivery for {0}")]
    NotFound(String),
    /// The key was first requested with another recipient or other details.
    #[error("{key} was first requested with a different {}", fields.join(" and "))]
    Mismatch {
        /// The key.
        key: DeliveryKey,
        /// What differs (`recipient`, `details`).
        fields: Vec<&'static str>,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A bug or a manual edit: a ledger row cannot be read back, a task died.
    #[error("internal fault: {0}")]
    Internal(String),
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
            Error::NotFound(what) => Status::not_found(format!("no delivery for {what}")),
            Error::Mismatch { key, fields } => {
                let description =
                    format!("{key} was already requested with a different {}; nothing was sent", fields.join(" and "));
                let violations: Vec<PreconditionViolation> = fields
                    .iter()
                    .map(|field| PreconditionViolation::new("PAYLOAD_MISMATCH", *field, description.clone()))
                    .collect();
                Status::with_error_details(
                    Code::FailedPrecondition,
                    description.clone(),
                    ErrorDetails::with_precondition_failure(violations),
                )
            }
            Error::Db(error) => error.to_status(),
            Error::Internal(reason) => {
                let trace = platform::telemetry::current_trace_id().unwrap_or_default();
                tracing::error!(%reason, trace_id = %trace, "internal fault");
                Status::internal(format!("internal error (trace {trace})"))
            }
        }
    }
}
