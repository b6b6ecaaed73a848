//! The rules of the inline assignment attempt.
//!
//! Its deadline, its possible results and the answer's outcome. The call itself is made by
//! the flow; this module only decides.

use std::time::Duration;

/// What the inline attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InlineResult {
    /// Tables reserved (their ids).
    Assigned(Vec<String>),
    /// No table fits right now.
    NoCapacity,
    /// No answer within the deadline.
    Timeout,
    /// assign-svc unreachable or failing (the reason).
    Unavailable(String),
    /// Inline assignment is switched off.
    Disabled,
    /// Nothing was attempted (no-op edit or replay).
    Skipped,
}

impl InlineResult {
    /// The name used in history and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            InlineResult::Assigned(_) => "ASSIGNED",
            InlineResult::NoCapacity => "NO_CAPACITY",
            InlineResult::Timeout => "TIMEOUT",
            InlineResult::Unavailable(_) => "UNAVAILABLE",
            InlineResult::Disabled => "DISABLED",
            InlineResult::Skipped => "SKIPPED",
        }
    }
}

/// How the inline attempt went, as answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineAttempt {
    pub result: InlineResult,
    pub elapsed: Duration,
}

impl InlineAttempt {
    /// An attempt that did not happen.
    pub fn skipped() -> Self {
        Self { result: InlineResult::Skipped, elapsed: Duration::ZERO }
    }
}

/// What a create or edit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Confirmed,
    Pending,
    Unchanged,
}

/// The deadline of the inline `Assign` call: the configured timeout, shortened so that the
/// answer still reaches a caller whose own deadline is nearer (`caller_remaining` minus
/// `margin` for recording and answering). Zero means "no time for an attempt".
pub fn inline_deadline(timeout: Duration, caller_remaining: Option<Duration>, margin: Duration) -> Duration {
    match caller_remaining {
        Some(remaining) => timeout.min(remaining.saturating_sub(margin)),
        None => timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_caller_deadline_wins_when_nearer() {
        assert_eq!(inline_deadline(MS(800), None, MS(50)), MS(800));
        assert_eq!(inline_deadline(MS(800), Some(MS(5_000)), MS(50)), MS(800));
        assert_eq!(inline_deadline(MS(800), Some(MS(300)), MS(50)), MS(250));
        assert_eq!(inline_deadline(MS(800), Some(MS(30)), MS(50)), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn never_exceeds_either_bound(t in 0u64..10_000, r in proptest::option::of(0u64..10_000), m in 0u64..500) {
            let d = inline_deadline(MS(t), r.map(MS), MS(m));
            prop_assert!(d <= MS(t));
            if let Some(r) = r {
                prop_assert!(d + MS(m) <= MS(r).max(MS(m)));
            }
        }
    }
}
