//! The client's edits: with an idempotency key, with `expected_version`, and no-ops.
//!
//! A changing edit always sets a fresh notes marker, plus now and then a new start time
//! and party size; a tenth are sent with `suppress_emails`. A no-op edit sends the values
//! the booking already has, with `expected_version`, so that a late copy of it can never
//! change a booking that moved on since.

use super::{Client, Reply, seen};
use crate::chaos::{
    calls::{ambiguous, backoff, request, timed},
    log::{Answer, Entry, Made},
    world::{random_party, random_start},
};
use platform::proto::{booking::v1 as pb, timestamp};
use std::time::SystemTime;
use tokio::time::Instant;
use tonic::Code;

impl Client {
    /// A changing edit of the booking in `slot`. False when the client must stop.
    pub(super) async fn edit(&mut self, slot: usize) -> bool {
        let (log, version, current) = self.current(slot);
        let mut content = current.clone();
        content.notes = self.marker();
        let new_start = self.rng.u8(0..100) < 40;
        if new_start {
            content.start = loop {
                let start = random_start(&mut self.rng);
                if start != current.start {
                    break start;
                }
            };
        }
        let new_party = self.rng.u8(0..100) < 40;
        if new_party {
            content.party = loop {
                let party = random_party(&mut self.rng);
                if party != current.party {
                    break party;
                }
            };
        }
        let suppressed = self.rng.u8(0..100) < 10;
        let keyed = self.rng.u8(0..100) < 40;
        let message = pb::EditBookingRequest {
            booking_id: self.report.logs[log].id.clone(),
            expected_version: (!keyed).then_some(version),
            start_time: new_start.then(|| timestamp(content.start)),
            party_size: new_party.then_some(content.party),
            duration: None,
            notes: Some(content.notes.clone()),
            suppress_emails: suppressed,
            idempotency_key: if keyed { format!("chaos-c{}-op{}", self.n, self.op) } else { String::new() },
        };
        let kind = match (keyed, suppressed) {
            (true, false) => "edit with a key",
            (true, true) => "edit with a key (suppressed)",
            (false, false) => "edit with expected_version",
            (false, true) => "edit with expected_version (suppressed)",
        };
        let made = Made {
            version: version + 1,
            op: self.op,
            suppressed,
            answer: Answer::Lost,
            latency: None,
            acked_at: SystemTime::now(),
            content,
        };
        if keyed {
            self.keyed_edit(log, kind, message, made).await
        } else {
            self.checked_edit(log, kind, message, made).await
        }
    }

    /// Sends a keyed edit until answered; a replayed answer means the first answer was lost.
    async fn keyed_edit(&mut self, log: usize, kind: &str, message: pb::EditBookingRequest, mut made: Made) -> bool {
        match self
            .until_answered(|mut c| {
                let message = message.clone();
                async move { c.edit_booking(request(message)).await }
            })
            .await
        {
            Reply::Answer(answer, took) => {
                let booking = answer.booking.unwrap_or_default();
                let (class, label) = self.answer(log, answer.outcome);
                self.report.stats.op(kind, label);
                made.version = booking.version;
                made.answer = class;
                made.latency = (class != Answer::Lost).then_some(took);
                made.acked_at = SystemTime::now();
                self.made(log, &booking, made);
                true
            }
            Reply::Refused(status) => {
                self.report.stats.op(kind, "refused");
                self.anomaly(log, format!("a keyed edit was refused: {:?}: {}", status.code(), status.message()));
                true
            }
            Reply::GaveUp => {
                self.report.logs[log].unresolved = Some(format!("op {} (edit with a key)", made.op));
                false
            }
        }
    }

    /// Sends an edit with `expected_version`; after a failure without an answer, or
    /// ABORTED, re-reads the booking to decide whether it applied, and sends it again if
    /// it did not.
    async fn checked_edit(&mut self, log: usize, kind: &str, message: pb::EditBookingRequest, mut made: Made) -> bool {
        let expected = made.version - 1;
        loop {
            let mut replica = self.clients.booking[self.retry.usize(0..self.clients.booking.len())].clone();
            let (result, took) = timed(replica.edit_booking(request(message.clone()))).await;
            let status = match result {
                Ok(answer) => {
                    let booking = answer.booking.unwrap_or_default();
                    let (class, label) = self.answer(log, answer.outcome);
                    self.report.stats.op(kind, label);
                    if class == Answer::Lost {
                        self.anomaly(log, "an edit without a key that changes the booking answered UNCHANGED".into());
                        self.report.logs[log].timeline.push(Entry::Read(seen(&booking)));
                        return true;
                    }
                    made.version = booking.version;
                    made.answer = class;
                    made.latency = Some(took);
                    made.acked_at = SystemTime::now();
                    self.made(log, &booking, made);
                    return true;
                }
                Err(status) => status,
            };
            if !(status.code() == Code::Aborted || ambiguous(status.code())) {
                self.report.stats.op(kind, "refused");
                self.anomaly(log, format!("an edit was refused: {:?}: {}", status.code(), status.message()));
                return true;
            }
            self.failed(&status);
            if Instant::now() >= self.window.hard_end {
                self.report.logs[log].unresolved = Some(format!("op {} (edit with expected_version)", made.op));
                return false;
            }
            let Some(booking) = self.reread(log).await else { return self.report.logs[log].unresolved.is_none() };
            if booking.version == made.version && booking.notes == made.content.notes {
                self.report.stats.op(kind, "found by re-read (answer lost)");
                made.acked_at = SystemTime::now();
                self.made(log, &booking, made);
                return true;
            }
            self.report.logs[log].timeline.push(Entry::Read(seen(&booking)));
            if booking.version != expected {
                self.report.stats.op(kind, "someone else's version");
                self.anomaly(
                    log,
                    format!(
                        "a re-read shows version {} without this edit's marker: a version no request made",
                        booking.version
                    ),
                );
                return true;
            }
            if status.code() == Code::Aborted {
                self.report.stats.op(kind, "ABORTED at the expected version");
                self.anomaly(log, format!("ABORTED although a re-read shows the expected version {expected}"));
                return true;
            }
            // Not applied: sent again (expected_version lets at most one copy apply).
            tokio::time::sleep(backoff(&mut self.retry)).await;
        }
    }

    /// An edit that repeats the booking's values, with `expected_version`: answered
    /// UNCHANGED, no version made.
    pub(super) async fn no_op(&mut self, slot: usize) -> bool {
        let (log, version, current) = self.current(slot);
        let suppressed = self.rng.u8(0..100) < 20;
        let with_start = self.rng.bool();
        let message = pb::EditBookingRequest {
            booking_id: self.report.logs[log].id.clone(),
            expected_version: Some(version),
            start_time: with_start.then(|| timestamp(current.start)),
            party_size: Some(current.party),
            duration: None,
            notes: Some(current.notes.clone()),
            suppress_emails: suppressed,
            idempotency_key: String::new(),
        };
        let kind = if suppressed { "no-op edit (suppressed)" } else { "no-op edit" };
        let mut replica = self.clients.booking[self.retry.usize(0..self.clients.booking.len())].clone();
        let (result, took) = timed(replica.edit_booking(request(message))).await;
        let status = match result {
            Ok(answer) => {
                let booking = answer.booking.unwrap_or_default();
                let (class, label) = self.answer(log, answer.outcome);
                let unchanged = class == Answer::Lost && booking.version == version;
                self.report.stats.op(kind, if unchanged { "UNCHANGED" } else { label });
                if unchanged {
                    self.report.logs[log].timeline.push(Entry::Read(seen(&booking)));
                } else {
                    self.anomaly(log, format!("a no-op edit answered {label} with version {}", booking.version));
                    let latency = Some(took);
                    let acked_at = SystemTime::now();
                    let (op, content) = (self.op, current);
                    let made =
                        Made { version: booking.version, op, suppressed, answer: class, latency, acked_at, content };
                    self.made(log, &booking, made);
                }
                return true;
            }
            Err(status) => status,
        };
        if !(status.code() == Code::Aborted || ambiguous(status.code())) {
            self.report.stats.op(kind, "refused");
            self.anomaly(log, format!("a no-op edit was refused: {:?}: {}", status.code(), status.message()));
            return true;
        }
        // No answer: whether it reached the service or not, it changed nothing, which a
        // re-read shows (a late copy carries expected_version and cannot apply later on).
        self.failed(&status);
        let Some(booking) = self.reread(log).await else { return self.report.logs[log].unresolved.is_none() };
        self.report.logs[log].timeline.push(Entry::Read(seen(&booking)));
        if booking.version == version && status.code() == Code::Aborted {
            self.report.stats.op(kind, "ABORTED at the expected version");
            self.anomaly(log, format!("ABORTED although a re-read shows the expected version {version}"));
        } else if booking.version == version {
            self.report.stats.op(kind, "unchanged by re-read (answer lost)");
        } else {
            self.anomaly(
                log,
                format!("after a no-op edit the booking is at version {}, not {version}", booking.version),
            );
        }
        true
    }
}
