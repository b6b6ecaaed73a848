//! Capped exponential backoff with full jitter, as a pure function of the attempt number.
//!
//! Every retry loop of the project (outbox, deliveries, reassign jobs, reconnects) takes
//! its delay from here, so the policy is one thing to read and test. It never sleeps:
//! callers store or await the delay themselves.

use std::time::Duration;

/// A capped exponential backoff policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay ceiling before jitter for the first retry.
    pub base: Duration,
    /// No delay ever exceeds this.
    pub cap: Duration,
}

impl Backoff {
    /// A policy starting at `base` and never exceeding `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The ceiling for retry number `attempt` (1 for the first retry): `base * 2^(attempt-1)`,
    /// capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }

    /// The delay before retry number `attempt`, with "equal jitter": half the ceiling plus a
    /// uniformly random part of the other half, so delays grow but never synchronise.
    /// `unit` is a random number in `[0, 1)`.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// [`Backoff::delay_with`] with a fresh random number.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));

    #[test]
    fn grows_exponentially_then_caps() {
        assert_eq!(POLICY.ceiling(1), Duration::from_millis(100));
        assert_eq!(POLICY.ceiling(2), Duration::from_millis(200));
        assert_eq!(POLICY.ceiling(5), Duration::from_millis(1600));
        assert_eq!(POLICY.ceiling(12), Duration::from_secs(30));
        assert_eq!(POLICY.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_half_and_full_ceiling() {
        for attempt in 1..40 {
            let ceiling = POLICY.ceiling(attempt);
            assert_eq!(POLICY.delay_with(attempt, 0.0), ceiling / 2);
            assert!(POLICY.delay_with(attempt, 0.999) <= ceiling);
            let random = POLICY.delay(attempt);
            assert!(random >= ceiling / 2 && random <= ceiling, "{random:?} vs {ceiling:?}");
        }
    }

    #[test]
    fn first_attempt_zero_behaves_like_one() {
        assert_eq!(POLICY.ceiling(0), POLICY.ceiling(1));
    }
}
