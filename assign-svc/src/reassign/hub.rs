//! The open Reassign streams of this process and the fan-out of job updates to them.
//!
//! Job updates are published with PostgreSQL NOTIFY (in the transaction that made them),
//! so every replica's streams hear every update; the hub listens, reads each update into
//! a domain [`JobUpdate`] and forwards it to every stream that submitted the booking. The
//! API encodes what a stream receives. It must never change a job: the jobs table is the
//! source of truth, the streams are only transport.

use crate::{
    domain::{BookingId, JobUpdate, UpdateKind},
    store::{self, notify::JobPayload},
};
use platform::db::Database;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// Messages queued for one stream before it is considered stuck (further ones are dropped).
const STREAM_BUFFER: usize = 4096;

/// What a stream sends its client, before the API encodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// An update about a job the stream submitted.
    Update(JobUpdate),
    /// A submit that did not parse, given up at once; it names the booking and the
    /// version as the client sent them.
    Rejected { booking_id: String, version: i64, reason: String },
}

/// What a stream's task sends to its client: a reply, or the status that ends the stream.
pub type Outgoing = Result<Reply, Status>;

struct Stream {
    sender: mpsc::Sender<Outgoing>,
    /// Booking ids this stream submitted, with the newest version it submitted.
    watching: HashMap<BookingId, i64>,
}

#[derive(Default)]
struct Streams {
    next_id: u64,
    open: HashMap<u64, Stream>,
}

/// The registry of open streams.
pub struct Hub {
    database: Database,
    streams: Mutex<Streams>,
}

impl Hub {
    /// An empty registry reading assignments from `database`.
    pub fn new(database: Database) -> Arc<Self> {
        Arc::new(Self { database, streams: Mutex::new(Streams::default()) })
    }

    fn streams(&self) -> MutexGuard<'_, Streams> {
        // A panic elsewhere cannot leave the map inconsistent: every update is one insert
        // or remove. Keep serving.
        self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new stream: its id, a sender (to answer it directly and to see when
    /// its client went away) and the receiver its client reads.
    pub fn open(&self) -> (u64, mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>) {
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let mut streams = self.streams();
        streams.next_id += 1;
        let id = streams.next_id;
        streams.open.insert(id, Stream { sender: sender.clone(), watching: HashMap::new() });
        (id, sender, receiver)
    }

    /// Forgets a stream.
    pub fn close(&self, id: u64) {
        self.streams().open.remove(&id);
    }

    /// Forgets every stream, so their responses end (on shutdown).
    pub fn close_all(&self) {
        self.streams().open.clear();
    }

    /// The stream wants updates about `booking_id` (it submitted `version`).
    pub fn watch(&self, id: u64, booking_id: BookingId, version: i64) {
        if let Some(stream) = self.streams().open.get_mut(&id) {
            let newest = stream.watching.entry(booking_id).or_insert(version);
            *newest = (*newest).max(version);
        }
    }

    /// The stream no longer wants updates about `booking_id`.
    pub fn unwatch(&self, id: u64, booking_id: BookingId) {
        if let Some(stream) = self.streams().open.get_mut(&id) {
            stream.watching.remove(&booking_id);
        }
    }

    /// Answers one stream directly.
    pub fn answer(&self, id: u64, update: &JobUpdate) {
        let mut streams = self.streams();
        if let Some(stream) = streams.open.get_mut(&id) {
            deliver_to(id, stream, update);
        }
    }

    fn is_watched(&self, booking_id: BookingId) -> bool {
        self.streams().open.values().any(|s| s.watching.contains_key(&booking_id))
    }

    /// Sends `update` to every stream watching its booking.
    pub fn publish(&self, update: &JobUpdate) {
        let mut streams = self.streams();
        for (id, stream) in streams.open.iter_mut() {
            if stream.watching.contains_key(&update.booking_id) {
                deliver_to(*id, stream, update);
            }
        }
    }

    /// Forwards the updates published by every replica (NOTIFY) to the streams watching
    /// them, until `shutdown`; then ends every stream.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut payloads = self.database.listen_payloads(store::notify::UPDATES_CHANNEL, shutdown.clone());
        let mut connected_before = false;
        loop {
            tokio::select! {
                payload = payloads.recv() => match payload {
                    Some(Some(payload)) => match serde_json::from_str::<JobPayload>(&payload) {
                        Ok(payload) => self.forward(payload).await,
                        Err(error) => tracing::warn!(%error, payload, "unreadable job update"),
                    },
                    Some(None) if connected_before => self.resync().await,
                    Some(None) => connected_before = true,
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            }
        }
        self.close_all();
    }

    #[tracing::instrument(skip_all, fields(booking.id = tracing::field::Empty, booking.version = tracing::field::Empty, job.state = tracing::field::Empty))]
    async fn forward(&self, payload: JobPayload) {
        let booking_id = BookingId::from_uuid(payload.b);
        let span = tracing::Span::current();
        span.record("booking.id", tracing::field::display(booking_id));
        span.record("booking.version", payload.v);
        span.record("job.state", payload.s.as_str());
        if !self.is_watched(booking_id) {
            return;
        }
        let kind = match payload.s.as_str() {
            "waiting" => UpdateKind::Retrying {
                next_attempt_at: payload
                    .n
                    .and_then(|micros| u64::try_from(micros).ok())
                    .map_or_else(SystemTime::now, |micros| SystemTime::UNIX_EPOCH + Duration::from_micros(micros)),
            },
            "superseded" => UpdateKind::Superseded,
            "gave_up" => UpdateKind::GaveUp,
            "assigned" => match self.assignment(booking_id, payload.v).await {
                Some(kind) => kind,
                None => return,
            },
            _ => return,
        };
        self.publish(&JobUpdate {
            booking_id,
            version: payload.v,
            attempt: payload.a,
            last_error: payload.e,
            kind,
            trace_context: payload.t,
        });
    }

    /// After the LISTEN connection was lost, updates may have been missed: sends every
    /// watched booking's current job state again (a duplicate is harmless, a lost final
    /// update is not).
    #[tracing::instrument(skip_all, fields(watched = tracing::field::Empty))]
    async fn resync(&self) {
        let watched: Vec<BookingId> = {
            let streams = self.streams();
            let mut all: Vec<BookingId> = streams.open.values().flat_map(|s| s.watching.keys().copied()).collect();
            all.sort();
            all.dedup();
            all
        };
        tracing::Span::current().record("watched", watched.len());
        for booking_id in watched {
            let found = async {
                let client = self.database.client().await?;
                store::jobs::job_payload(&client, booking_id).await
            }
            .await;
            match found {
                // A job not attempted yet has nothing to report.
                Ok(Some(payload)) if payload.s == "waiting" && payload.a == 0 => {}
                Ok(Some(payload)) => self.forward(payload).await,
                Ok(None) => {}
                Err(error) => tracing::warn!(%booking_id, %error, "could not resend a job's state"),
            }
        }
    }

    /// The assignment of `version`, when the booking still holds it.
    async fn assignment(&self, booking_id: BookingId, version: i64) -> Option<UpdateKind> {
        let found = async {
            let client = self.database.client().await?;
            store::bookings::assignment_of(&client, booking_id).await
        }
        .await;
        match found {
            Ok(Some(held)) if held.version.get() == version => Some(UpdateKind::Assigned(held)),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%booking_id, %error, "could not read an assignment to stream it");
                None
            }
        }
    }
}

/// Queues `update` for one stream; a final update for the newest version the stream
/// submitted ends its interest in the booking.
fn deliver_to(id: u64, stream: &mut Stream, update: &JobUpdate) {
    match stream.sender.try_send(Ok(Reply::Update(update.clone()))) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(stream = id, booking.id = %update.booking_id, "stream is not reading; update dropped");
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
    if update.is_final() && stream.watching.get(&update.booking_id).is_some_and(|newest| *newest <= update.version) {
        stream.watching.remove(&update.booking_id);
    }
}
