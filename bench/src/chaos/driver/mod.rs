//! The load: client tasks, each the only writer of its own bookings.
//!
//! One owner per booking makes its writes sequential, so every version can be traced to
//! the request that made it. Each changing edit sets a notes marker no other request
//! uses, so a version whose answer was lost is recognised on a re-read. Creates and
//! cancels always carry an idempotency key and are retried with it until answered; edits
//! either carry a key (retried until answered) or `expected_version` (after a failure
//! without an answer, or ABORTED, the client re-reads the booking: its marker there means
//! the edit applied; the version unchanged means it did not, and the same request is sent
//! again, which `expected_version` makes safe: it can apply at most once).
//!
//! Every random choice of an operation comes from the task's RNG, drawn before the
//! operation runs; retries draw from a second RNG. So a seed replays the same operations
//! in the same order, whatever the faults did to their timing.

mod edits;

use super::{
    calls::{Clients, Stats, ambiguous, backoff, request, timed},
    log::{Answer, BookingLog, Cancel, Content, Entry, Made, Seen},
    world::{World, random_party, random_start},
};
use platform::proto::{
    booking::v1::{self as pb, booking_service_client::BookingServiceClient},
    system_time, timestamp,
};
use std::{
    future::Future,
    time::{Duration, SystemTime},
};
use tokio::time::Instant;
use tonic::Status;

/// When the load stops and when a client gives up an operation still unanswered.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub load_end: Instant,
    pub hard_end: Instant,
}

/// What one client did.
pub struct ClientReport {
    pub logs: Vec<BookingLog>,
    pub stats: Stats,
    /// Violations not tied to a booking (a create never answered or refused).
    pub orphans: Vec<String>,
}

/// Runs client `n` over its booking slots (global slot numbers) until the load ends.
pub async fn run_client(
    n: usize,
    slots: Vec<usize>,
    seed: u64,
    world: World,
    clients: Clients,
    window: Window,
) -> ClientReport {
    let mut client = Client {
        n,
        rng: fastrand::Rng::with_seed(seed),
        retry: fastrand::Rng::with_seed(seed.rotate_left(29) ^ 0xc1e7),
        clients,
        window,
        world,
        live: vec![None; slots.len()],
        slots,
        op: 0,
        report: ClientReport { logs: Vec::new(), stats: Stats::default(), orphans: Vec::new() },
    };
    while Instant::now() < window.load_end {
        client.op += 1;
        let done = match client.live.iter().position(Option::is_none) {
            Some(slot) => client.create(slot).await,
            None => {
                let slot = client.rng.usize(0..client.slots.len());
                match client.rng.u8(0..100) {
                    0..4 => client.cancel(slot).await,
                    4..14 => client.no_op(slot).await,
                    _ => client.edit(slot).await,
                }
            }
        };
        if !done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(client.rng.u64(20..=200))).await;
    }
    client.report
}

struct Client {
    n: usize,
    rng: fastrand::Rng,
    retry: fastrand::Rng,
    clients: Clients,
    window: Window,
    world: World,
    slots: Vec<usize>,
    /// The log index of each slot's live booking.
    live: Vec<Option<usize>>,
    op: u64,
    report: ClientReport,
}

/// How an attempt loop ended.
enum Reply<T> {
    Answer(T, Duration),
    Refused(Status),
    /// The hard end passed without an answer.
    GaveUp,
}

impl Client {
    /// Sends `call` to random booking replicas until it is answered or refused (a failure
    /// that leaves the outcome open is retried: only for requests safe to repeat).
    async fn until_answered<T, F, Fut>(&mut self, call: F) -> Reply<T>
    where
        F: Fn(BookingServiceClient<platform::grpc::Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        loop {
            let replica = self.clients.booking[self.retry.usize(0..self.clients.booking.len())].clone();
            match timed(call(replica)).await {
                (Ok(answer), took) => return Reply::Answer(answer, took),
                (Err(status), _) if ambiguous(status.code()) => {
                    self.failed(&status);
                    if Instant::now() >= self.window.hard_end {
                        return Reply::GaveUp;
                    }
                    tokio::time::sleep(backoff(&mut self.retry)).await;
                }
                (Err(status), _) => return Reply::Refused(status),
            }
        }
    }

    /// The booking as stored, read until answered (`None`: refused or gave up, noted in
    /// the log; the caller records what it read).
    async fn reread(&mut self, log: usize) -> Option<pb::Booking> {
        let id = self.report.logs[log].id.clone();
        let read = self.until_answered(|mut c| {
            let booking_id = id.clone();
            async move { c.get_booking(request(pb::GetBookingRequest { booking_id })).await }
        });
        match read.await {
            Reply::Answer(answer, _) => {
                if answer.booking.is_none() {
                    self.anomaly(log, "GetBooking answered no booking".into());
                }
                answer.booking
            }
            Reply::Refused(status) => {
                self.anomaly(log, format!("GetBooking answered {:?}: {}", status.code(), status.message()));
                None
            }
            Reply::GaveUp => {
                self.report.logs[log].unresolved = Some(format!("op {} (re-reading the booking)", self.op));
                None
            }
        }
    }

    /// Counts an attempt that got no answer. booking-svc's own INTERNAL ("internal error
    /// (trace …)") is kept for bugs (corrupt data, a database error that is not transient),
    /// so it is also a violation; a transport failure is not.
    fn failed(&mut self, status: &Status) {
        self.report.stats.failed(status.code());
        if status.code() == tonic::Code::Internal && status.message().starts_with("internal error") {
            let (n, op) = (self.n, self.op);
            self.report
                .orphans
                .push(format!("client {n} op {op}: booking-svc answered INTERNAL: {}", status.message()));
        }
    }

    fn anomaly(&mut self, log: usize, what: String) {
        self.report.logs[log].anomalies.push(format!("op {}: {what}", self.op));
    }

    fn marker(&self) -> String {
        format!("chaos c{} op{}", self.n, self.op)
    }

    /// The last version of the booking in `slot` and its content.
    fn current(&self, slot: usize) -> (usize, i64, Content) {
        let log = self.live[slot].unwrap_or_default();
        let made = self.report.logs[log].last_version();
        (log, made.map_or(0, |m| m.version), made.map(|m| m.content.clone()).unwrap_or_else(empty))
    }

    /// Records the version `answer` made; the answer's booking is recorded as seen.
    fn made(&mut self, log: usize, booking: &pb::Booking, made: Made) {
        self.report.logs[log].timeline.push(Entry::Version(made));
        self.report.logs[log].timeline.push(Entry::Read(seen(booking)));
    }

    /// Creates a booking in `slot` with a key, retried until answered. False when the
    /// client must stop (the hard end passed).
    async fn create(&mut self, slot: usize) -> bool {
        let restaurant = self.world.restaurant(self.slots[slot]).to_string();
        let content =
            Content { party: random_party(&mut self.rng), start: random_start(&mut self.rng), notes: self.marker() };
        let suppressed = self.rng.u8(0..100) < 10;
        let (n, op) = (self.n, self.op);
        let message = pb::CreateBookingRequest {
            restaurant_id: restaurant.clone(),
            guest: Some(pb::Guest {
                name: format!("Guest {n}-{op}"),
                email: format!("guest-{n}-{op}@example.com"),
                phone: String::new(),
            }),
            party_size: content.party,
            start_time: Some(timestamp(content.start)),
            duration: None,
            notes: content.notes.clone(),
            suppress_emails: suppressed,
            idempotency_key: format!("chaos-c{n}-op{op}"),
        };
        let kind = if suppressed { "create (suppressed)" } else { "create" };
        match self
            .until_answered(|mut c| {
                let message = message.clone();
                async move { c.create_booking(request(message)).await }
            })
            .await
        {
            Reply::Answer(answer, took) => {
                let Some(booking) = answer.booking else {
                    self.report.orphans.push(format!("client {n} op {op}: a create answered no booking"));
                    return true;
                };
                let log = self.report.logs.len();
                self.report.logs.push(BookingLog::new(booking.id.clone(), restaurant, n));
                self.live[slot] = Some(log);
                let (answer, label) = self.answer(log, answer.outcome);
                self.report.stats.op(kind, label);
                let latency = (answer != Answer::Lost).then_some(took);
                let made = Made {
                    version: booking.version,
                    op,
                    suppressed,
                    answer,
                    latency,
                    acked_at: SystemTime::now(),
                    content,
                };
                self.made(log, &booking, made);
                true
            }
            Reply::Refused(status) => {
                self.report.stats.op(kind, "refused");
                self.report.orphans.push(format!(
                    "client {n} op {op}: a create was refused: {:?}: {}",
                    status.code(),
                    status.message()
                ));
                true
            }
            Reply::GaveUp => {
                self.report.orphans.push(format!("client {n} op {op}: stuck: a create was never answered"));
                false
            }
        }
    }

    /// How an answer's outcome classes the version it reports, and its label.
    fn answer(&mut self, log: usize, outcome: i32) -> (Answer, &'static str) {
        match pb::Outcome::try_from(outcome) {
            Ok(pb::Outcome::Confirmed) => (Answer::Confirmed, "CONFIRMED"),
            Ok(pb::Outcome::Pending) => (Answer::Pending, "PENDING"),
            Ok(pb::Outcome::Unchanged) => (Answer::Lost, "replayed (answer lost)"),
            _ => {
                self.anomaly(log, format!("an answer with outcome {outcome}"));
                (Answer::Lost, "unknown outcome")
            }
        }
    }

    /// Cancels the booking in `slot` with a key, retried until answered.
    async fn cancel(&mut self, slot: usize) -> bool {
        let suppressed = self.rng.u8(0..100) < 10;
        let (log, _, _) = self.current(slot);
        let op = self.op;
        let message = pb::CancelBookingRequest {
            booking_id: self.report.logs[log].id.clone(),
            expected_version: None,
            suppress_emails: suppressed,
            idempotency_key: format!("chaos-c{}-op{op}", self.n),
        };
        let kind = if suppressed { "cancel (suppressed)" } else { "cancel" };
        self.live[slot] = None;
        match self
            .until_answered(|mut c| {
                let message = message.clone();
                async move { c.cancel_booking(request(message)).await }
            })
            .await
        {
            Reply::Answer(answer, _) => {
                self.report.stats.op(kind, "CANCELLED");
                let booking = answer.booking.unwrap_or_default();
                if booking.status != pb::BookingStatus::Cancelled as i32 {
                    self.anomaly(log, format!("the cancel answered status {}", booking.status));
                }
                let cancel = Cancel { op, version: booking.version, suppressed, acked_at: SystemTime::now() };
                self.report.logs[log].timeline.push(Entry::Cancelled(cancel));
                self.report.logs[log].timeline.push(Entry::Read(seen(&booking)));
                true
            }
            Reply::Refused(status) => {
                self.report.stats.op(kind, "refused");
                self.anomaly(log, format!("the cancel was refused: {:?}: {}", status.code(), status.message()));
                true
            }
            Reply::GaveUp => {
                self.report.logs[log].unresolved = Some(format!("op {op} (cancel)"));
                false
            }
        }
    }
}

/// What a booking shows of the fields a client sets.
pub fn seen(booking: &pb::Booking) -> Seen {
    Seen {
        at: SystemTime::now(),
        version: booking.version,
        cancelled: booking.status == pb::BookingStatus::Cancelled as i32,
        content: Content {
            party: booking.party_size,
            start: booking.start_time.as_ref().and_then(system_time).unwrap_or(SystemTime::UNIX_EPOCH),
            notes: booking.notes.clone(),
        },
    }
}

fn empty() -> Content {
    Content { party: 0, start: SystemTime::UNIX_EPOCH, notes: String::new() }
}
