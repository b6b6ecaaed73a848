//! What the clients did and were told, booking by booking: the log the judge reads.
//!
//! Each booking has one owner, so its writes are sequential and every version it reached
//! was made by one known request. The log holds what the owner asked for (not what the
//! service answered: that is what gets judged) and everything it saw, in order.

use std::time::{Duration, SystemTime};

/// How the request that made a version was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `OUTCOME_CONFIRMED`.
    Confirmed,
    /// `OUTCOME_PENDING`.
    Pending,
    /// No answer of its own: a transport failure (the version was found by its notes
    /// marker on a re-read) or an idempotent replay (`OUTCOME_UNCHANGED` for a retried key).
    Lost,
}

/// The booking's fields a client sets, as it asked for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub party: i32,
    pub start: SystemTime,
    pub notes: String,
}

/// A version the owner made.
#[derive(Clone, Debug)]
pub struct Made {
    pub version: i64,
    /// The owner's operation number, for messages.
    pub op: u64,
    /// Made by a request with `suppress_emails`.
    pub suppressed: bool,
    pub answer: Answer,
    /// How long the answering request took, from sending to the answer (`None` for
    /// [`Answer::Lost`]).
    pub latency: Option<Duration>,
    /// When the owner learnt of the version (its answer, or the re-read that found it).
    pub acked_at: SystemTime,
    /// The booking's fields at this version, as asked for.
    pub content: Content,
}

/// The owner's acknowledged cancel.
#[derive(Clone, Debug)]
pub struct Cancel {
    pub op: u64,
    /// The version the cancel answer showed.
    pub version: i64,
    pub suppressed: bool,
    pub acked_at: SystemTime,
}

/// The booking as the owner saw it once (an answer or a re-read).
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: SystemTime,
    pub version: i64,
    pub cancelled: bool,
    pub content: Content,
}

/// One entry of a booking's timeline, in the order the owner lived them.
#[derive(Clone, Debug)]
pub enum Entry {
    Version(Made),
    Cancelled(Cancel),
    Read(Seen),
}

/// Everything about one booking from its owner's side.
#[derive(Clone, Debug)]
pub struct BookingLog {
    pub id: String,
    pub restaurant: String,
    pub owner: usize,
    pub timeline: Vec<Entry>,
    /// Things the owner saw that the contract does not allow (e.g. a version it did not
    /// make, a no-op edit that made a version), judged as violations.
    pub anomalies: Vec<String>,
    /// An operation still without an answer when the client had to stop.
    pub unresolved: Option<String>,
}

impl BookingLog {
    /// A booking just created by `owner`.
    pub fn new(id: String, restaurant: String, owner: usize) -> Self {
        Self { id, restaurant, owner, timeline: Vec::new(), anomalies: Vec::new(), unresolved: None }
    }

    /// The versions made, in order.
    pub fn versions(&self) -> impl Iterator<Item = &Made> {
        self.timeline.iter().filter_map(|e| match e {
            Entry::Version(made) => Some(made),
            _ => None,
        })
    }

    /// The acknowledged cancel, if any.
    pub fn cancel(&self) -> Option<&Cancel> {
        self.timeline.iter().find_map(|e| match e {
            Entry::Cancelled(cancel) => Some(cancel),
            _ => None,
        })
    }

    /// The last version made.
    pub fn last_version(&self) -> Option<&Made> {
        self.versions().last()
    }

    /// The version `version`, if the owner made it.
    pub fn version(&self, version: i64) -> Option<&Made> {
        self.versions().find(|m| m.version == version)
    }
}
