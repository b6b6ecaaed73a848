//! The dispatcher's loop around its Reassign stream.
//!
//! It connects (again after every failure, with backoff), sends commands, and waits on
//! updates, wake-ups and timers at once. It never waits on the stream while holding a
//! transaction: every database step it triggers runs to completion on its own.

use super::{Command, Dispatcher};
use crate::store::{self, Carrier};
use platform::proto::assign::v1::{
    AssignRequest, ReassignRequest, ReassignResponse, reassign_request::Command as StreamCommand,
};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

type Connected = Result<(mpsc::UnboundedSender<ReassignRequest>, Streaming<ReassignResponse>), String>;

impl Dispatcher {
    /// Runs until `shutdown`, then gives up its leases so another replica takes over at once.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, "reassign dispatcher started");
        let wake = self.db.listen(store::jobs::CHANNEL, shutdown.clone());
        let mut inbound: Option<Streaming<ReassignResponse>> = None;
        let mut connecting: Option<tokio::task::JoinHandle<Connected>> = None;
        let mut reconnect_at = tokio::time::Instant::now();
        let mut failures = 0u32;
        let mut renew = tokio::time::interval(self.settings.lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_claim = tokio::time::Instant::now();
        let mut last_gauge = Instant::now() - Duration::from_secs(60);
        loop {
            if inbound.is_none() && connecting.is_none() && tokio::time::Instant::now() >= reconnect_at {
                connecting = Some(self.connect());
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                connected = join(&mut connecting) => {
                    connecting = None;
                    match connected {
                        Ok((outgoing, stream)) => {
                            failures = 0;
                            self.outgoing = Some(outgoing);
                            inbound = Some(stream);
                            tracing::info!(jobs = self.tracked.len(), "Reassign stream open; resubmitting tracked jobs");
                            let requests: Vec<(AssignRequest, Carrier)> =
                                self.tracked.values().map(|t| (t.request.clone(), t.carrier.clone())).collect();
                            for (request, carrier) in requests {
                                self.send(StreamCommand::Submit(request), carrier);
                            }
                        }
                        Err(error) => {
                            failures += 1;
                            let delay = self.settings.reconnect.delay(failures);
                            tracing::warn!(%error, retry_in = ?delay, "cannot open the Reassign stream");
                            reconnect_at = tokio::time::Instant::now() + delay;
                        }
                    }
                }
                message = next_message(&mut inbound) => match message {
                    Ok(Some(update)) => self.on_update(update).await,
                    other => {
                        let reason = match other {
                            Err(status) => format!("{:?}: {}", status.code(), status.message()),
                            _ => "closed by assign-svc".to_string(),
                        };
                        inbound = None;
                        self.outgoing = None;
                        failures += 1;
                        let delay = self.settings.reconnect.delay(failures);
                        tracing::warn!(%reason, retry_in = ?delay, "Reassign stream ended; reconnecting");
                        reconnect_at = tokio::time::Instant::now() + delay;
                    }
                },
                _ = tokio::time::sleep_until(reconnect_at), if inbound.is_none() && connecting.is_none() => {}
                _ = wake.notified() => {
                    next_claim = self.claim().await;
                }
                _ = tokio::time::sleep_until(next_claim) => {
                    next_claim = self.claim().await;
                }
                _ = renew.tick() => self.renew().await,
                Some(command) = self.commands.recv() => match command {
                    Command::Cancel(booking_id) => {
                        self.tracked.remove(&booking_id);
                        self.send(StreamCommand::Cancel(booking_id.to_string()), Carrier::new());
                    }
                },
            }
            if last_gauge.elapsed() >= Duration::from_secs(1) {
                last_gauge = Instant::now();
                self.refresh_gauge().await;
            }
        }
        if let Some(task) = connecting {
            task.abort();
        }
        match self.db.client().await {
            Ok(client) => {
                if let Err(error) = store::jobs::drop_leases(&client, self.owner).await {
                    tracing::warn!(%error, "could not give up reassign leases on shutdown");
                }
            }
            Err(error) => tracing::warn!(%error, "could not give up reassign leases on shutdown"),
        }
        tracing::info!("reassign dispatcher stopped");
    }

    /// Opens the stream in the background (a frozen assign-svc must not block the loop).
    fn connect(&self) -> tokio::task::JoinHandle<Connected> {
        let mut client = self.client.clone();
        let timeout = self.settings.connect_timeout;
        tokio::spawn(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let request = tonic::Request::new(UnboundedReceiverStream::new(rx));
            match tokio::time::timeout(timeout, client.reassign(request)).await {
                Ok(Ok(response)) => Ok((tx, response.into_inner())),
                Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        })
    }

    /// Sends a command, with the W3C context of the request it is about (empty for none).
    pub(super) fn send(&mut self, command: StreamCommand, trace_context: Carrier) {
        if let Some(outgoing) = &self.outgoing
            && outgoing.send(ReassignRequest { command: Some(command), trace_context: trace_context.into() }).is_err()
        {
            self.outgoing = None;
        }
    }
}

/// The next message of the stream, or never when there is none.
async fn next_message(
    stream: &mut Option<Streaming<ReassignResponse>>,
) -> Result<Option<ReassignResponse>, tonic::Status> {
    match stream {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

/// The connect task's result, or never when none runs.
async fn join(task: &mut Option<tokio::task::JoinHandle<Connected>>) -> Connected {
    match task {
        Some(task) => task.await.unwrap_or_else(|e| Err(format!("connect task failed: {e}"))),
        None => std::future::pending().await,
    }
}
