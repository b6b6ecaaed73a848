//! gRPC status helpers shared by the services: `INVALID_ARGUMENT` with one
//! `google.rpc.BadRequest` field violation per wrong field.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Collects field violations while a request is parsed; empty means valid.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(Vec<(String, String)>);

impl Violations {
    /// No violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` (proto snake_case path, e.g. `guest.email`) is wrong.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    /// Runs a parse step and keeps its value, or records its violation.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(description) => {
                self.add(field, description);
                None
            }
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The recorded `(field, description)` pairs.
    pub fn fields(&self) -> &[(String, String)] {
        &self.0
    }

    /// `Ok(())` when empty, else the `INVALID_ARGUMENT` status naming every field.
    pub fn into_result(self) -> Result<(), Status> {
        if self.0.is_empty() { Ok(()) } else { Err(self.into_status()) }
    }

    /// The `INVALID_ARGUMENT` status with a BadRequest detail naming every field.
    pub fn into_status(self) -> Status {
        let message =
            self.0.iter().map(|(field, description)| format!("{field}: {description}")).collect::<Vec<_>>().join("; ");
        let violations: Vec<FieldViolation> =
            self.0.into_iter().map(|(field, description)| FieldViolation::new(field, description)).collect();
        Status::with_error_details(
            Code::InvalidArgument,
            format!("invalid request: {message}"),
            ErrorDetails::with_bad_request(violations),
        )
    }
}

/// One field's `INVALID_ARGUMENT` status.
pub fn invalid_argument(field: &str, description: impl Into<String>) -> Status {
    let mut violations = Violations::new();
    violations.add(field, description);
    violations.into_status()
}

/// The BadRequest field names of a status (for tests and clients).
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_field_in_the_bad_request_detail() {
        let mut v = Violations::new();
        assert!(v.clone().into_result().is_ok());
        v.add("party_size", "must be 1 to 100");
        assert_eq!(v.check::<u8>("guest.email", Err("not an email address".into())), None);
        let status = v.into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), vec!["party_size", "guest.email"]);
        assert!(status.message().contains("guest.email"));
    }
}
