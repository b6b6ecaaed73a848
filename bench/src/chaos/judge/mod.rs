//! The verdict, judged from outside only: the clients' own log, what the public API
//! answers after the settle, and the SMTP server's folder.
//!
//! Pure rules over plain data, so each one is unit-tested with hand-made logs. It never
//! looks at booking-svc's history or tables: a service that records a lie about itself
//! cannot talk its way past these checks.

mod mails;
#[cfg(test)]
mod tests;

use super::log::{BookingLog, Content, Entry};
use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime},
};

/// A booking's status as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Confirmed,
    Cancelled,
    Unknown,
}

/// A booking as the API answers it after the settle (GetBooking or ListBookings).
#[derive(Clone, Debug)]
pub struct FinalBooking {
    pub id: String,
    pub restaurant: String,
    pub status: Status,
    pub version: i64,
    pub content: Content,
    pub duration: Duration,
    pub tables: Vec<String>,
}

/// One message in the SMTP server's folder.
#[derive(Clone, Debug)]
pub struct Mail {
    pub booking: String,
    /// The key's `KIND`, e.g. `MODIFICATION_CONFIRMED`.
    pub kind: String,
    pub version: i64,
    pub message_id: String,
    /// When the SMTP server accepted it.
    pub received_at: SystemTime,
}

/// One delivery as notify-svc lists it (ListDeliveries).
#[derive(Clone, Debug)]
pub struct Delivery {
    pub booking: String,
    pub kind: String,
    pub version: i64,
    /// `QUEUED`, `SENT`, `SUPPRESSED` or `FAILED`.
    pub state: String,
    /// When the first SendOnce for the key reached notify-svc.
    pub requested_at: Option<SystemTime>,
}

/// A fault that can cut an SMTP exchange between the server's acceptance and notify-svc's
/// record of it: a SIGKILL of a notify-svc replica or of the SMTP server.
#[derive(Clone, Debug)]
pub struct Crash {
    pub at: SystemTime,
    pub what: String,
}

/// The stack's settings the rules depend on.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// booking-svc's `WORKER_LEASE_MS`: the longest an outbox claim lives.
    pub outbox_lease: Duration,
    /// `INLINE_ASSIGN_TIMEOUT_MS + INLINE_RECORD_GRACE_MS`: a request that took longer may
    /// have had its version taken over by the background.
    pub handoff_window: Duration,
}

/// Everything the judge reads.
pub struct Evidence<'a> {
    pub logs: &'a [BookingLog],
    /// GetBooking of every booking after the settle.
    pub finals: &'a HashMap<String, FinalBooking>,
    /// ListBookings of every restaurant after the settle.
    pub listed: &'a [FinalBooking],
    pub mails: &'a [Mail],
    pub deliveries: &'a HashMap<String, Vec<Delivery>>,
    pub crashes: &'a [Crash],
    pub rules: Rules,
}

/// What the judge found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Broken guarantees: any one fails the run.
    pub violations: Vec<String>,
    /// Duplicate mails inside the documented at-least-once window (not failures).
    pub excused: Vec<String>,
    /// For each mail about a superseded (or cancelled) version: how long after the
    /// superseding write was acknowledged notify-svc recorded it (negative: before).
    pub stale_lags: Vec<f64>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Judges the run.
pub fn judge(evidence: &Evidence) -> Verdict {
    let mut verdict = Verdict::default();
    for log in evidence.logs {
        writes(log, evidence.finals.get(&log.id), &mut verdict.violations);
    }
    listing(evidence.finals, evidence.listed, &mut verdict.violations);
    overlaps(evidence.listed, &mut verdict.violations);
    mails::judge(evidence, &mut verdict);
    verdict
}

/// No acknowledged write lost: the versions the owner made follow each other, every later
/// read shows at least the last acknowledged version with what was written, and the final
/// state is the owner's last write (its content, version, and status).
pub fn writes(log: &BookingLog, last: Option<&FinalBooking>, out: &mut Vec<String>) {
    let id = &log.id;
    let mut next = 1;
    let mut acked = None;
    let mut cancelled = None;
    for entry in &log.timeline {
        match entry {
            Entry::Version(made) => {
                if made.version != next {
                    out.push(format!(
                        "booking {id}: op {} made version {} where {next} was next",
                        made.op, made.version
                    ));
                }
                next = made.version + 1;
                acked = Some(made);
            }
            Entry::Cancelled(cancel) => {
                if Some(cancel.version) != acked.map(|m| m.version) {
                    out.push(format!(
                        "booking {id}: the cancel (op {}) answered version {}, the last version made was {:?}",
                        cancel.op,
                        cancel.version,
                        acked.map(|m| m.version)
                    ));
                }
                cancelled = Some(cancel);
            }
            Entry::Read(seen) => {
                if let Some(made) = acked {
                    if seen.version < made.version {
                        out.push(format!(
                            "booking {id}: lost write: version {} was acknowledged (op {}), a later read shows version {}",
                            made.version, made.op, seen.version
                        ));
                    } else if seen.version == made.version && seen.content != made.content {
                        out.push(format!(
                            "booking {id}: version {} reads back as {} but was written as {}",
                            made.version,
                            show(&seen.content),
                            show(&made.content)
                        ));
                    }
                }
                if cancelled.is_some() && !seen.cancelled {
                    out.push(format!("booking {id}: lost cancel: a read after the acknowledged cancel shows it live"));
                }
            }
        }
    }
    out.extend(log.anomalies.iter().map(|a| format!("booking {id}: {a}")));
    if let Some(op) = &log.unresolved {
        out.push(format!("booking {id}: stuck: {op} was never answered"));
    }
    let Some(last) = last else {
        out.push(format!("booking {id}: GetBooking does not find it after the settle"));
        return;
    };
    if let Some(made) = acked {
        if last.version != made.version {
            out.push(format!(
                "booking {id}: final version is {}, the owner's last write made version {} (op {})",
                last.version, made.version, made.op
            ));
        } else if last.content != made.content {
            out.push(format!(
                "booking {id}: final state {} is not the owner's last write {}",
                show(&last.content),
                show(&made.content)
            ));
        }
    }
    match (cancelled.is_some(), last.status) {
        (true, Status::Cancelled) | (false, Status::Confirmed) => {}
        (false, Status::Pending) => {
            out.push(format!("booking {id}: stuck: still PENDING after the settle although every booking fits"))
        }
        (true, status) => out.push(format!("booking {id}: lost cancel: the cancel was acknowledged, now {status:?}")),
        (false, status) => out.push(format!("booking {id}: final status {status:?}, the owner never cancelled it")),
    }
}

/// ListBookings shows every booking as GetBooking does.
fn listing(finals: &HashMap<String, FinalBooking>, listed: &[FinalBooking], out: &mut Vec<String>) {
    let by_id: HashMap<&str, &FinalBooking> = listed.iter().map(|b| (b.id.as_str(), b)).collect();
    for (id, last) in finals {
        match by_id.get(id.as_str()) {
            None => out.push(format!("booking {id}: ListBookings of {} does not list it", last.restaurant)),
            Some(seen) if seen.version != last.version || seen.status != last.status || seen.tables != last.tables => {
                out.push(format!("booking {id}: ListBookings and GetBooking disagree after the settle"))
            }
            Some(_) => {}
        }
    }
}

/// A booking's hold on a table: from, until, which booking.
type Hold<'a> = (SystemTime, SystemTime, &'a str);

/// No two live bookings hold one table at overlapping times; a confirmed booking holds
/// tables.
pub fn overlaps(listed: &[FinalBooking], out: &mut Vec<String>) {
    let mut by_table: BTreeMap<(&str, &str), Vec<Hold>> = BTreeMap::new();
    for booking in listed {
        if booking.status == Status::Cancelled {
            continue;
        }
        if booking.status == Status::Confirmed && booking.tables.is_empty() {
            out.push(format!("booking {}: CONFIRMED without tables", booking.id));
        }
        let start = booking.content.start;
        for table in &booking.tables {
            by_table.entry((&booking.restaurant, table)).or_default().push((
                start,
                start + booking.duration,
                &booking.id,
            ));
        }
    }
    for ((restaurant, table), mut holds) in by_table {
        holds.sort();
        for (i, (start, end, id)) in holds.iter().enumerate() {
            for (other_start, _, other) in &holds[i + 1..] {
                if other_start >= end {
                    break;
                }
                out.push(format!(
                    "double booking: {restaurant}/{table} is held by {id} from {} and by {other} from {} at overlapping times",
                    rfc3339(*start),
                    rfc3339(*other_start)
                ));
            }
        }
    }
}

fn show(content: &Content) -> String {
    format!("(party {}, start {}, notes {:?})", content.party, rfc3339(content.start), content.notes)
}

fn rfc3339(t: SystemTime) -> String {
    prost_types::Timestamp::from(t).to_string()
}
