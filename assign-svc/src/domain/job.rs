//! Background reassign jobs: their submit rules and retry policy.
//!
//! What a submit does to a booking's job, when the next attempt is due, and when to give
//! up. Owns the retry policy (capped exponential backoff with jitter, never past the
//! start time) and the submit rules of the Reassign contract. Pure: `now` and the random
//! unit are passed in; it must never sleep, lock or store.

use super::{
    types::{Assignment, BookingId, Version},
    versions::BookingState,
};
use platform::backoff::Backoff;
use std::time::SystemTime;

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Trying; due at `next_attempt_at` or when capacity frees.
    Waiting,
    /// Tables reserved for its version.
    Assigned,
    /// A newer version replaced it.
    Superseded,
    /// Its start time passed first.
    GaveUp,
    /// The client stopped caring (a `cancel` on the stream).
    Cancelled,
    /// The booking was released.
    Released,
}

impl JobState {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Assigned => "assigned",
            JobState::Superseded => "superseded",
            JobState::GaveUp => "gave_up",
            JobState::Cancelled => "cancelled",
            JobState::Released => "released",
        }
    }

    /// From the stored name.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "waiting" => JobState::Waiting,
            "assigned" => JobState::Assigned,
            "superseded" => JobState::Superseded,
            "gave_up" => JobState::GaveUp,
            "cancelled" => JobState::Cancelled,
            "released" => JobState::Released,
            _ => return None,
        })
    }
}

/// A booking's job as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    /// Version it tries to assign.
    pub version: i64,
    /// Where it stands.
    pub state: JobState,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due at the latest.
    pub next_attempt_at: SystemTime,
    /// Why the last attempt did not assign.
    pub last_error: Option<String>,
}

/// What a stream's submit of `version` leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitAnswer {
    /// The booking was released at or after this version: answered `GAVE_UP` at once.
    Released { released_version: i64 },
    /// A newer version is known: answered `SUPERSEDED` at once.
    Superseded { newest_version: i64 },
    /// This version holds tables: answered `ASSIGNED` at once.
    Assigned(Assignment),
    /// The same job is known: it goes on untouched, and the submitter hears its state.
    Current(JobView),
    /// The same job had been cancelled: it waits again, due now, attempts kept.
    Reopen,
    /// A new job for this version, due now; it replaces the booking's older job, whose
    /// version is superseded when it was still waiting.
    NewJob { supersedes: Option<i64> },
}

/// Applies the Reassign contract to a submit of `version`.
pub fn decide_submit(state: &BookingState, job: Option<&JobView>, version: Version) -> SubmitAnswer {
    let v = version.get();
    if let Some(released_version) = state.released_version
        && v <= released_version
    {
        return SubmitAnswer::Released { released_version };
    }
    let newest_version = state.newest_version.max(job.map_or(0, |j| j.version));
    if v < newest_version {
        return SubmitAnswer::Superseded { newest_version };
    }
    if let Some(held) = &state.held
        && held.version == version
    {
        return SubmitAnswer::Assigned(held.clone());
    }
    match job {
        Some(job) if job.version == v => match job.state {
            JobState::Waiting | JobState::GaveUp => SubmitAnswer::Current(job.clone()),
            _ => SubmitAnswer::Reopen,
        },
        Some(job) => SubmitAnswer::NewJob { supersedes: (job.state == JobState::Waiting).then_some(job.version) },
        None => SubmitAnswer::NewJob { supersedes: None },
    }
}

/// What an update tells about a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateKind {
    /// Not assigned yet; next attempt at the latest then.
    Retrying { next_attempt_at: SystemTime },
    /// Tables reserved; the job is finished.
    Assigned(Assignment),
    /// A newer version replaced the job.
    Superseded,
    /// The job stopped without tables (start time passed, or the booking was released).
    GaveUp,
}

/// One update about a booking's job, as streams receive it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobUpdate {
    /// Booking.
    pub booking_id: BookingId,
    /// Version the update is about.
    pub version: i64,
    /// Attempts so far.
    pub attempt: i32,
    /// Why the last attempt did not assign.
    pub last_error: Option<String>,
    /// Where the job stands.
    pub kind: UpdateKind,
    /// W3C trace context of the work that produced the update (empty when unknown).
    pub trace_context: std::collections::HashMap<String, String>,
}

impl JobUpdate {
    /// Whether the job of this version is over.
    pub fn is_final(&self) -> bool {
        !matches!(self.kind, UpdateKind::Retrying { .. })
    }
}

/// The next step of a job whose attempt did not assign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStep {
    /// Try again at this time at the latest (sooner when capacity frees).
    RetryAt(SystemTime),
    /// The start time has passed: stop.
    GiveUp,
}

/// When jobs retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay between attempts.
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// Whether a job for a slot starting at `start` is past hope at `now`.
    pub fn gives_up(now: SystemTime, start: SystemTime) -> bool {
        now >= start
    }

    /// The step after attempt number `attempts` failed at `now`: back off (capped, with
    /// jitter from `unit` in `[0, 1)`), but never past `start`, where the job gives up.
    pub fn after_failure(&self, now: SystemTime, start: SystemTime, attempts: u32, unit: f64) -> JobStep {
        if Self::gives_up(now, start) {
            return JobStep::GiveUp;
        }
        let backoff_at = now + self.backoff.delay_with(attempts, unit);
        JobStep::RetryAt(backoff_at.min(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::{Slot, TableId};
    use std::time::Duration;

    const BASE: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        BASE + Duration::from_secs(1_800_000_000 + secs)
    }

    fn v(n: i64) -> Version {
        Version::parse(n).expect("version")
    }

    fn job(version: i64, state: JobState, attempts: i32) -> JobView {
        JobView { version, state, attempts, next_attempt_at: at(10), last_error: Some("no capacity".into()) }
    }

    fn held(version: i64) -> Assignment {
        Assignment {
            booking_id: BookingId::from_uuid(uuid::Uuid::from_u128(1)),
            version: v(version),
            table_ids: vec![TableId::parse("t1").expect("id")],
            slot: Slot::new(at(3600), Duration::from_secs(3600)).expect("slot"),
        }
    }

    #[test]
    fn backoff_grows_with_attempts_and_stops_at_the_start_time() {
        let policy = RetryPolicy { backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)) };
        assert_eq!(policy.after_failure(at(0), at(3600), 1, 0.0), JobStep::RetryAt(at(0) + Duration::from_millis(500)));
        assert_eq!(policy.after_failure(at(0), at(3600), 3, 0.0), JobStep::RetryAt(at(2)));
        let capped = policy.after_failure(at(0), at(3600), 30, 0.999_999);
        assert!(matches!(capped, JobStep::RetryAt(t) if t > at(59) && t <= at(60)), "{capped:?}");
        assert_eq!(policy.after_failure(at(0), at(5), 30, 0.5), JobStep::RetryAt(at(5)), "never past the start");
        assert_eq!(policy.after_failure(at(5), at(5), 1, 0.5), JobStep::GiveUp);
        assert!(RetryPolicy::gives_up(at(6), at(5)));
        assert!(!RetryPolicy::gives_up(at(4), at(5)));
    }

    #[test]
    fn a_first_submit_creates_a_job() {
        assert_eq!(decide_submit(&BookingState::default(), None, v(1)), SubmitAnswer::NewJob { supersedes: None });
    }

    #[test]
    fn a_repeated_submit_is_the_same_job() {
        let waiting = job(2, JobState::Waiting, 3);
        let state = BookingState { newest_version: 2, ..Default::default() };
        assert_eq!(decide_submit(&state, Some(&waiting), v(2)), SubmitAnswer::Current(waiting));
        let gave_up = job(2, JobState::GaveUp, 4);
        assert_eq!(decide_submit(&state, Some(&gave_up), v(2)), SubmitAnswer::Current(gave_up));
        assert_eq!(decide_submit(&state, Some(&job(2, JobState::Cancelled, 1)), v(2)), SubmitAnswer::Reopen);
    }

    #[test]
    fn a_newer_submit_replaces_and_supersedes_a_waiting_job() {
        let state = BookingState { newest_version: 1, ..Default::default() };
        assert_eq!(
            decide_submit(&state, Some(&job(1, JobState::Waiting, 2)), v(2)),
            SubmitAnswer::NewJob { supersedes: Some(1) }
        );
        assert_eq!(
            decide_submit(&state, Some(&job(1, JobState::GaveUp, 2)), v(2)),
            SubmitAnswer::NewJob { supersedes: None }
        );
    }

    #[test]
    fn an_older_submit_is_superseded_at_once() {
        let state = BookingState { newest_version: 1, ..Default::default() };
        assert_eq!(
            decide_submit(&state, Some(&job(3, JobState::Waiting, 0)), v(2)),
            SubmitAnswer::Superseded { newest_version: 3 }
        );
        let assigned =
            BookingState { newest_version: 4, released_version: None, held: Some(held(4)), held_restaurant: None };
        assert_eq!(decide_submit(&assigned, None, v(3)), SubmitAnswer::Superseded { newest_version: 4 });
    }

    #[test]
    fn a_submit_of_the_held_version_is_answered_assigned() {
        let state =
            BookingState { newest_version: 2, released_version: None, held: Some(held(2)), held_restaurant: None };
        assert_eq!(decide_submit(&state, Some(&job(2, JobState::Assigned, 1)), v(2)), SubmitAnswer::Assigned(held(2)));
    }

    #[test]
    fn a_released_booking_refuses_versions_it_had_seen() {
        let state = BookingState { newest_version: 2, released_version: Some(2), held: None, held_restaurant: None };
        assert_eq!(decide_submit(&state, None, v(2)), SubmitAnswer::Released { released_version: 2 });
        assert_eq!(decide_submit(&state, None, v(3)), SubmitAnswer::NewJob { supersedes: None });
    }
}
