//! A delivery as the ledger holds it, and what follows a delivery attempt.
//!
//! Sent, retried later with capped exponential backoff, or failed for good. The rule is
//! pure: randomness comes in as an argument, and it never reads the clock.

use super::{key::DeliveryKey, recipient::Recipient, request::Details};
use platform::backoff::Backoff;
use std::{fmt, time::Duration, time::SystemTime};

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Recorded; being sent or waiting for its next attempt.
    Queued,
    /// Accepted by the mail server (or written as a .eml file).
    Sent,
    /// Never to be sent: the first call asked for suppression.
    Suppressed,
    /// Refused for good; see `last_error`.
    Failed,
}

impl DeliveryState {
    /// The name stored in the ledger (`QUEUED`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DeliveryState::Queued => "QUEUED",
            DeliveryState::Sent => "SENT",
            DeliveryState::Suppressed => "SUPPRESSED",
            DeliveryState::Failed => "FAILED",
        }
    }

    /// The state called `name`.
    pub fn from_name(name: &str) -> Option<DeliveryState> {
        [DeliveryState::Queued, DeliveryState::Sent, DeliveryState::Suppressed, DeliveryState::Failed]
            .into_iter()
            .find(|state| state.name() == name)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One email and its delivery, as recorded in the ledger.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// Its key.
    pub key: DeliveryKey,
    /// Where it goes.
    pub recipient: Recipient,
    /// What it says.
    pub details: Details,
    /// Where it stands.
    pub state: DeliveryState,
    /// The Message-ID header it carries.
    pub message_id: String,
    /// Delivery attempts started so far.
    pub attempts: u32,
    /// When the first SendOnce for the key arrived.
    pub requested_at: SystemTime,
    /// The `DTSTAMP` of its calendar invitation, in whole seconds: fixed when the key was
    /// first recorded, and within one booking version ordered by kind (pending, then
    /// confirmed, then cancelled), whatever order the kinds were requested in.
    pub stamp: SystemTime,
    /// When the mail server accepted it.
    pub sent_at: Option<SystemTime>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When QUEUED: when the next attempt is due.
    pub next_attempt_at: Option<SystemTime>,
}

/// Why one delivery attempt did not deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptFailure {
    /// May work later: connection refused, timeout, a 4xx answer.
    Transient(String),
    /// Never will: a 5xx answer, a message that cannot be built.
    Permanent(String),
}

/// How transient failures are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delays between attempts.
    pub backoff: Backoff,
    /// After this many attempts a transient failure is final.
    pub max_attempts: u32,
}

/// What the ledger records after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Delivered.
    Sent,
    /// Try again after this delay; the error is kept as `last_error`.
    Retry { after: Duration, error: String },
    /// Give up; the reason is kept as `last_error`.
    Failed { error: String },
}

/// What follows attempt number `attempt` (1 for the first) that ended with `result`.
/// `unit` is a random number in `[0, 1)` for the backoff jitter.
pub fn after_attempt(result: Result<(), AttemptFailure>, attempt: u32, policy: &RetryPolicy, unit: f64) -> Next {
    match result {
        Ok(()) => Next::Sent,
        Err(AttemptFailure::Permanent(error)) => Next::Failed { error },
        Err(AttemptFailure::Transient(error)) if attempt >= policy.max_attempts => {
            Next::Failed { error: format!("gave up after {attempt} attempts: {error}") }
        }
        Err(AttemptFailure::Transient(error)) => Next::Retry { after: policy.backoff.delay_with(attempt, unit), error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: RetryPolicy =
        RetryPolicy { backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(600)), max_attempts: 5 };

    #[test]
    fn states_round_trip() {
        for state in [DeliveryState::Queued, DeliveryState::Sent, DeliveryState::Suppressed, DeliveryState::Failed] {
            assert_eq!(DeliveryState::from_name(state.name()), Some(state));
        }
        assert_eq!(DeliveryState::from_name("queued"), None);
    }

    #[test]
    fn a_success_is_sent_and_a_permanent_refusal_fails_at_once() {
        assert_eq!(after_attempt(Ok(()), 1, &POLICY, 0.5), Next::Sent);
        let refused = Err(AttemptFailure::Permanent("550 mailbox unavailable".into()));
        assert_eq!(after_attempt(refused, 1, &POLICY, 0.5), Next::Failed { error: "550 mailbox unavailable".into() });
    }

    #[test]
    fn transient_failures_back_off_then_give_up() {
        let down = || Err(AttemptFailure::Transient("connection refused".into()));
        assert_eq!(
            after_attempt(down(), 1, &POLICY, 0.0),
            Next::Retry { after: Duration::from_millis(500), error: "connection refused".into() }
        );
        assert_eq!(
            after_attempt(down(), 3, &POLICY, 0.0),
            Next::Retry { after: Duration::from_secs(2), error: "connection refused".into() }
        );
        assert_eq!(
            after_attempt(down(), 5, &POLICY, 0.0),
            Next::Failed { error: "gave up after 5 attempts: connection refused".into() }
        );
    }

    proptest! {
        #[test]
        fn retry_delays_stay_within_the_cap(attempt in 1u32..5, unit in 0.0f64..1.0) {
            match after_attempt(Err(AttemptFailure::Transient("x".into())), attempt, &POLICY, unit) {
                Next::Retry { after, .. } => {
                    prop_assert!(after <= POLICY.backoff.cap);
                    prop_assert!(after >= POLICY.backoff.ceiling(attempt) / 2);
                }
                other => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
