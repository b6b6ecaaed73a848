//! One open Reassign stream: its client's commands in, its replies out.
//!
//! Applies the submits and cancels the API decoded, in order, until the client goes away
//! or the service shuts down. A submit registers the stream's interest in the booking
//! with the hub and is answered at once when the job's state already says something;
//! later updates come through the hub. An error ends the stream: the client reconnects
//! and resubmits, since jobs live in the database. It must never encode protobuf: the
//! API does, at the edge.

use super::hub::{Hub, Outgoing, Reply};
use crate::{
    assigner::{Assigner, Budget},
    domain::{AssignRequest, BookingId, JobState, JobUpdate, SubmitAnswer, UpdateKind},
};
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// Time budget of one stream command (a submit or a cancel).
const STREAM_COMMAND_BUDGET: Duration = Duration::from_secs(5);

/// A command of the stream's client, as domain values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Keep trying to assign this booking version until it is assigned, superseded or
    /// its start time passes.
    Submit {
        /// What to assign.
        request: AssignRequest,
        /// W3C trace context of the submit.
        trace_context: HashMap<String, String>,
    },
    /// A submit that does not parse: answered `GAVE_UP` at once, naming the booking and
    /// the version as the client sent them.
    Invalid { booking_id: String, version: i64, reason: String },
    /// Stop trying for this booking (its tables, if any, stay held).
    Cancel(BookingId),
}

/// One open Reassign stream.
pub struct Session {
    id: u64,
    hub: Arc<Hub>,
    assigner: Assigner,
    sender: mpsc::Sender<Outgoing>,
}

impl Session {
    /// Opens a stream on `hub`, applying commands with `assigner`; returns it and the
    /// receiver of what its client is sent.
    pub fn open(hub: Arc<Hub>, assigner: Assigner) -> (Self, mpsc::Receiver<Outgoing>) {
        let (id, sender, receiver) = hub.open();
        (Self { id, hub, assigner, sender }, receiver)
    }

    /// Applies `inbound`'s commands until the client goes away or `shutdown`; a client
    /// that stops sending commands still gets its updates until it goes away.
    #[tracing::instrument(skip_all, fields(stream = self.id))]
    pub async fn run<S>(self, mut inbound: S, shutdown: CancellationToken)
    where
        S: Stream<Item = Result<Command, Status>> + Unpin,
    {
        tracing::debug!("reassign stream opened");
        loop {
            tokio::select! {
                command = inbound.next() => match command {
                    Some(Ok(command)) => {
                        if let Err(status) = self.handle(command).await {
                            let _ = self.sender.send(Err(status)).await;
                            break;
                        }
                    }
                    None => {
                        // The client sends no more commands but may still read updates.
                        tokio::select! {
                            _ = self.sender.closed() => {}
                            _ = shutdown.cancelled() => {}
                        }
                        break;
                    }
                    Some(Err(_)) => break,
                },
                _ = self.sender.closed() => break,
                _ = shutdown.cancelled() => break,
            }
        }
        self.hub.close(self.id);
        tracing::debug!("reassign stream closed");
    }

    /// Applies one command; an error ends the stream (the client reconnects and
    /// resubmits, since jobs live in the database).
    async fn handle(&self, command: Command) -> Result<(), Status> {
        match command {
            Command::Submit { request, trace_context } => self.submit(request, &trace_context).await,
            Command::Invalid { booking_id, version, reason } => {
                let _ = self.sender.try_send(Ok(Reply::Rejected { booking_id, version, reason }));
                Ok(())
            }
            Command::Cancel(booking_id) => self.cancel(booking_id).await,
        }
    }

    async fn submit(&self, request: AssignRequest, trace_context: &HashMap<String, String>) -> Result<(), Status> {
        self.hub.watch(self.id, request.booking_id, request.version.get());
        let answer = self
            .assigner
            .submit(&request, trace_context, Budget::within(STREAM_COMMAND_BUDGET))
            .await
            .map_err(Status::from)?;
        let here = platform::telemetry::current_context_carrier();
        let update = |attempt: i32, last_error: Option<String>, kind: UpdateKind| JobUpdate {
            booking_id: request.booking_id,
            version: request.version.get(),
            attempt,
            last_error,
            kind,
            trace_context: here.clone().into(),
        };
        let answer = match answer {
            SubmitAnswer::Released { released_version } => Some(update(
                0,
                Some(format!(
                    "booking was released at version {released_version}; version {} is not newer",
                    request.version
                )),
                UpdateKind::GaveUp,
            )),
            SubmitAnswer::Superseded { newest_version } => Some(update(
                0,
                Some(format!("version {newest_version} of the booking is newer")),
                UpdateKind::Superseded,
            )),
            SubmitAnswer::Assigned(assignment) => Some(update(0, None, UpdateKind::Assigned(assignment))),
            SubmitAnswer::Current(job) => match job.state {
                JobState::Waiting if job.attempts > 0 => Some(update(
                    job.attempts,
                    job.last_error,
                    UpdateKind::Retrying { next_attempt_at: job.next_attempt_at },
                )),
                JobState::GaveUp => Some(update(job.attempts, job.last_error, UpdateKind::GaveUp)),
                _ => None,
            },
            SubmitAnswer::Reopen | SubmitAnswer::NewJob { .. } => None,
        };
        if let Some(answer) = answer {
            self.hub.answer(self.id, &answer);
        }
        Ok(())
    }

    async fn cancel(&self, booking_id: BookingId) -> Result<(), Status> {
        self.hub.unwatch(self.id, booking_id);
        self.assigner.cancel(booking_id, Budget::within(STREAM_COMMAND_BUDGET)).await.map_err(Status::from)?;
        Ok(())
    }
}
