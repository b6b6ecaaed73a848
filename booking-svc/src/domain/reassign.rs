//! Background reassign jobs: their states and what an update means.
//!
//! An update from assign-svc's Reassign stream is decided here, purely; the dispatcher
//! applies the decision in one transaction under the booking's row lock, which makes
//! confirmation happen at most once whatever the number of replicas or repeated updates.

use super::booking::BookingStatus;
use std::time::SystemTime;

/// State of a reassign job (one per booking version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for tables (submitted, or to be submitted when due).
    Open,
    /// Tables assigned (inline or in the background).
    Assigned,
    /// A newer version replaced it.
    Superseded,
    /// The start time passed before a table fitted.
    GaveUp,
    /// The booking was cancelled.
    Cancelled,
}

impl JobState {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Open => "OPEN",
            JobState::Assigned => "ASSIGNED",
            JobState::Superseded => "SUPERSEDED",
            JobState::GaveUp => "GAVE_UP",
            JobState::Cancelled => "CANCELLED",
        }
    }
}

/// An update from the stream, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateState {
    /// Another attempt follows at `next_attempt_at`.
    Retrying { next_attempt_at: Option<SystemTime> },
    /// Tables reserved.
    Assigned { table_ids: Vec<String> },
    /// A newer version replaced this job.
    Superseded,
    /// The start time passed.
    GaveUp,
}

impl UpdateState {
    /// The name used in history.
    pub fn as_str(&self) -> &'static str {
        match self {
            UpdateState::Retrying { .. } => "RETRYING",
            UpdateState::Assigned { .. } => "ASSIGNED",
            UpdateState::Superseded => "SUPERSEDED",
            UpdateState::GaveUp => "GAVE_UP",
        }
    }
}

/// What the dispatcher does with an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Confirm the booking's current version with these tables, close the job, queue the
    /// confirmation email.
    Confirm { table_ids: Vec<String> },
    /// Record the attempt; the job stays open.
    RecordAttempt,
    /// Record the update and close the job in this state.
    Close(JobState),
    /// Record the update as stale (about a version that is no longer current or a job
    /// that is already closed); change nothing else.
    Stale,
}

/// Decides what an update about `version` means, given the booking's current version and
/// status and whether the job for `version` is still open.
pub fn decide(
    update: &UpdateState,
    version: i64,
    current_version: i64,
    status: BookingStatus,
    job_open: bool,
) -> Decision {
    let current = version == current_version && status != BookingStatus::Cancelled;
    if !job_open || !current {
        return if job_open {
            // An open job for an old version (should have been closed by the newer edit).
            Decision::Close(JobState::Superseded)
        } else {
            Decision::Stale
        };
    }
    match update {
        UpdateState::Assigned { table_ids } if status == BookingStatus::Pending => {
            Decision::Confirm { table_ids: table_ids.clone() }
        }
        UpdateState::Assigned { .. } => Decision::Close(JobState::Assigned),
        UpdateState::Retrying { .. } => Decision::RecordAttempt,
        UpdateState::Superseded => Decision::Close(JobState::Superseded),
        UpdateState::GaveUp => Decision::Close(JobState::GaveUp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BookingStatus::*;

    fn assigned() -> UpdateState {
        UpdateState::Assigned { table_ids: vec!["t1".into()] }
    }

    #[test]
    fn assigned_for_the_current_pending_version_confirms() {
        assert_eq!(decide(&assigned(), 3, 3, Pending, true), Decision::Confirm { table_ids: vec!["t1".into()] });
    }

    #[test]
    fn a_second_assigned_update_changes_nothing() {
        // The first confirmation closed the job: a repeat (other replica, resubmit) is stale.
        assert_eq!(decide(&assigned(), 3, 3, Confirmed, false), Decision::Stale);
    }

    #[test]
    fn updates_about_superseded_versions_never_confirm() {
        assert_eq!(decide(&assigned(), 2, 3, Pending, false), Decision::Stale);
        assert_eq!(decide(&assigned(), 2, 3, Confirmed, true), Decision::Close(JobState::Superseded));
        assert_eq!(decide(&assigned(), 3, 3, Cancelled, true), Decision::Close(JobState::Superseded));
    }

    #[test]
    fn retrying_keeps_the_job_and_gave_up_closes_it() {
        let retry = UpdateState::Retrying { next_attempt_at: None };
        assert_eq!(decide(&retry, 3, 3, Pending, true), Decision::RecordAttempt);
        assert_eq!(decide(&UpdateState::GaveUp, 3, 3, Pending, true), Decision::Close(JobState::GaveUp));
        assert_eq!(decide(&UpdateState::Superseded, 3, 3, Pending, true), Decision::Close(JobState::Superseded));
    }

    #[test]
    fn assigned_while_already_confirmed_just_closes() {
        assert_eq!(decide(&assigned(), 3, 3, Confirmed, true), Decision::Close(JobState::Assigned));
    }
}
