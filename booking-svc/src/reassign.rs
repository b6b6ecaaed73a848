//! The Reassign dispatcher: one long-lived `assign.v1.AssignService/Reassign` stream per
//! process. It turns hand-offs that came due (a create or edit whose request did not
//! record its inline result in time) into jobs, claims due reassign jobs (lease per job,
//! renewed while tracked, so replicas share jobs and a dead replica's jobs are taken
//! over), recovers those whose request died (the pending email it would have queued),
//! submits them (again after every reconnect), records every update in the history, and
//! on ASSIGNED for the current version confirms the booking and queues the confirmation
//! email in one transaction. The job table (with the hand-offs in the booking rows) is the
//! source of truth; the stream is only transport. It never holds a
//! transaction while waiting on the stream.

use crate::{
    crash::{CrashHook, CrashPoint},
    domain::{
        EmailKind, Event, EventType,
        booking::rfc3339,
        reassign::{Decision, UpdateState, decide},
        values::truncate_to_micros,
    },
    error::Error,
    flow::queue_email,
    metrics::Metrics,
    store::{self, Carrier},
};
use platform::{
    backoff::Backoff,
    db::Database,
    grpc::Channel,
    proto::{
        assign::v1::{
            AssignRequest, ReassignRequest, ReassignResponse, ReassignState,
            assign_service_client::AssignServiceClient, reassign_request::Command as StreamCommand,
        },
        duration, system_time, timestamp,
    },
    telemetry::link_to_carrier,
};
use serde_json::json;
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tracing::Instrument;
use uuid::Uuid;

/// What the rest of the process asks of the dispatcher.
#[derive(Debug)]
enum Command {
    /// The booking was cancelled: stop tracking it and tell assign-svc.
    Cancel(Uuid),
}

/// A cheap handle to the dispatcher of this process.
#[derive(Clone, Debug)]
pub struct DispatcherHandle(mpsc::UnboundedSender<Command>);

impl DispatcherHandle {
    /// Stops tracking `booking_id` and sends `cancel` on the stream (best effort: the
    /// durable release task ends the job in assign-svc in any case).
    pub fn cancel(&self, booking_id: Uuid) {
        let _ = self.0.send(Command::Cancel(booking_id));
    }
}

/// Settings of the dispatcher.
#[derive(Clone, Copy, Debug)]
pub struct DispatcherSettings {
    pub lease: Duration,
    pub reconnect: Backoff,
    pub connect_timeout: Duration,
    pub poll: Duration,
    pub max_jobs: usize,
}

/// A job this process has claimed and submits.
struct Tracked {
    version: i64,
    request: AssignRequest,
    attempts: i32,
    created_at: SystemTime,
    carrier: Carrier,
}

/// The dispatcher's state; run with [`Dispatcher::run`].
pub struct Dispatcher {
    db: Database,
    client: AssignServiceClient<Channel>,
    settings: DispatcherSettings,
    metrics: Arc<Metrics>,
    crash: CrashHook,
    owner: Uuid,
    commands: mpsc::UnboundedReceiver<Command>,
    tracked: HashMap<Uuid, Tracked>,
    outgoing: Option<mpsc::UnboundedSender<ReassignRequest>>,
}

type Connected = Result<(mpsc::UnboundedSender<ReassignRequest>, Streaming<ReassignResponse>), String>;

impl Dispatcher {
    /// A dispatcher and the handle the flows use to reach it.
    pub fn new(
        db: Database,
        client: AssignServiceClient<Channel>,
        settings: DispatcherSettings,
        metrics: Arc<Metrics>,
        crash: CrashHook,
    ) -> (Self, DispatcherHandle) {
        let (tx, commands) = mpsc::unbounded_channel();
        let owner = Uuid::new_v4();
        let dispatcher =
            Self { db, client, settings, metrics, crash, owner, commands, tracked: HashMap::new(), outgoing: None };
        (dispatcher, DispatcherHandle(tx))
    }

    /// Runs until `shutdown`, then gives up its leases so another replica takes over at once.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, "reassign dispatcher started");
        let wake = self.db.listen(store::REASSIGN_CHANNEL, shutdown.clone());
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
                if let Err(error) = store::drop_leases(&client, self.owner).await {
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
    fn send(&mut self, command: StreamCommand, trace_context: Carrier) {
        if let Some(outgoing) = &self.outgoing
            && outgoing.send(ReassignRequest { command: Some(command), trace_context }).is_err()
        {
            self.outgoing = None;
        }
    }

    /// Claims due jobs and submits them; returns when to look again.
    async fn claim(&mut self) -> tokio::time::Instant {
        let poll = tokio::time::Instant::now() + self.settings.poll;
        match self.try_claim().await {
            Ok(Some(next)) => poll.min(tokio::time::Instant::now() + next.max(Duration::from_millis(10))),
            Ok(None) => poll,
            Err(error) => {
                tracing::warn!(%error, "claiming reassign jobs failed");
                tokio::time::Instant::now() + self.settings.reconnect.base.max(Duration::from_millis(100))
            }
        }
    }

    async fn try_claim(&mut self) -> Result<Option<Duration>, Error> {
        let room = self.settings.max_jobs.saturating_sub(self.tracked.len()) as i64;
        let client = self.db.client().await?;
        if room > 0 {
            // Hand-offs whose requests died before recording become jobs to recover.
            let adopted = store::adopt_handoffs(&client, room).await?;
            if adopted > 0 {
                tracing::debug!(adopted, "took over hand-offs whose requests did not record in time");
            }
            let jobs = store::claim_jobs(&client, self.owner, room, self.settings.lease).await?;
            drop(client);
            for job in jobs {
                if !job.recorded
                    && let Err(error) = self.recover(&job).await
                {
                    tracing::warn!(booking.id = %job.booking_id, %error, "could not recover an interrupted request; will retry");
                    continue;
                }
                let request = AssignRequest {
                    booking_id: job.booking_id.to_string(),
                    version: job.version,
                    restaurant_id: job.restaurant_id.clone(),
                    party_size: job.party_size,
                    start_time: Some(timestamp(job.start_time)),
                    duration: Some(duration(job.duration)),
                };
                tracing::debug!(booking.id = %job.booking_id, booking.version = job.version, "submitting reassign job");
                self.tracked.insert(
                    job.booking_id,
                    Tracked {
                        version: job.version,
                        request: request.clone(),
                        attempts: job.attempts,
                        created_at: job.created_at,
                        carrier: job.carrier.clone(),
                    },
                );
                let carrier = job.carrier;
                self.send(StreamCommand::Submit(request), carrier);
            }
            let client = self.db.client().await?;
            return store::next_job_due(&client, self.owner).await;
        }
        // Full: look again at the next poll (or when a tracked job finishes).
        Ok(None)
    }

    /// Records the pending state of a job whose request died between apply and record
    /// (a crash): the same email an inline timeout would have queued.
    async fn recover(&self, job: &store::ClaimedJob) -> Result<(), Error> {
        let span = tracing::info_span!(parent: None, "reassign.recover", booking.id = %job.booking_id, booking.version = job.version);
        link_to_carrier(&span, &job.carrier);
        async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let Some(booking) = store::lock_booking(&tx, job.booking_id).await? else { return Ok(()) };
            let Some(current) = store::job(&tx, job.booking_id, job.version).await? else { return Ok(()) };
            if !current.open || current.recorded {
                return Ok(());
            }
            let mut events = vec![Event::new(
                EventType::InlineAttempt,
                job.version,
                json!({ "result": "INTERRUPTED", "email_sent": false,
                        "reason": "the request ended before recording its inline result; the background takes over" }),
            )];
            let mut channels = vec![];
            if booking.version == job.version && booking.status == crate::domain::BookingStatus::Pending {
                let kind = EmailKind::pending(job.version);
                queue_email(&tx, &booking, kind, current.suppress_emails, &job.carrier, &mut events, &mut channels).await?;
            }
            store::mark_job_recorded(&tx, job.booking_id, job.version, true).await?;
            store::append_history(&tx, job.booking_id, &events).await?;
            tx.commit().await?;
            for channel in channels {
                self.db.wake(channel);
            }
            tracing::warn!(booking.id = %job.booking_id, booking.version = job.version, "recovered an interrupted create/edit");
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Extends the leases of tracked jobs and forgets those no longer held (closed by an
    /// edit or cancel, or taken over after this process stalled past its lease).
    async fn renew(&mut self) {
        if self.tracked.is_empty() {
            return;
        }
        let held = match self.db.client().await {
            Ok(client) => store::renew_jobs(&client, self.owner, self.settings.lease).await,
            Err(error) => Err(error.into()),
        };
        match held {
            Ok(held) => {
                let held: HashMap<Uuid, i64> = held.into_iter().collect();
                self.tracked.retain(|id, t| held.get(id) == Some(&t.version));
            }
            Err(error) => tracing::warn!(%error, "renewing reassign leases failed"),
        }
    }

    async fn refresh_gauge(&self) {
        if let Ok(client) = self.db.client().await
            && let Ok((n, oldest_age)) = store::open_jobs(&client).await
        {
            self.metrics.set_jobs_waiting(n, Duration::from_secs_f64(oldest_age.max(0.0)));
        }
    }

    /// Records one update and applies its decision in one transaction.
    async fn on_update(&mut self, update: ReassignResponse) {
        let Ok(booking_id) = Uuid::parse_str(&update.booking_id) else {
            tracing::warn!(booking.id = %update.booking_id, "Reassign update with a malformed booking id");
            return;
        };
        let Some(tracked) = self.tracked.get(&booking_id) else {
            tracing::debug!(booking.id = %booking_id, "Reassign update for a job this process does not track");
            return;
        };
        let state = match ReassignState::try_from(update.state) {
            Ok(ReassignState::Retrying) => {
                UpdateState::Retrying { next_attempt_at: update.next_attempt_at.as_ref().and_then(system_time) }
            }
            Ok(ReassignState::Assigned) => UpdateState::Assigned {
                table_ids: update.assignment.as_ref().map(|a| a.table_ids.clone()).unwrap_or_default(),
            },
            Ok(ReassignState::Superseded) => UpdateState::Superseded,
            Ok(ReassignState::GaveUp) => UpdateState::GaveUp,
            _ => {
                tracing::warn!(booking.id = %booking_id, state = update.state, "Reassign update with an unknown state");
                return;
            }
        };
        if matches!(state, UpdateState::Assigned { .. }) {
            self.crash.reached(CrashPoint::ReassignAfterUpdate);
        }
        let span = tracing::info_span!(
            parent: None,
            "reassign.update",
            booking.id = %booking_id,
            booking.version = update.version,
            reassign.state = state.as_str(),
            reassign.attempt = update.attempt,
            decision = tracing::field::Empty,
        );
        link_to_carrier(&span, &tracked.carrier);
        link_to_carrier(&span, &update.trace_context);
        let tracked_version = tracked.version;
        let (created_at, carrier) = (tracked.created_at, tracked.carrier.clone());
        let result = self.apply_update(booking_id, &update, &state, created_at, &carrier).instrument(span).await;
        match result {
            Ok(decision) => {
                let finished = !matches!(decision, Decision::RecordAttempt);
                if let Some(t) = self.tracked.get_mut(&booking_id) {
                    t.attempts = t.attempts.max(update.attempt);
                }
                if finished && update.version >= tracked_version {
                    self.tracked.remove(&booking_id);
                }
                if matches!(decision, Decision::Confirm { .. }) {
                    self.crash.reached(CrashPoint::ReassignAfterConfirm);
                }
            }
            Err(error) => {
                // Not recorded: the job stays open and leased; assign-svc answers again on
                // the next resubmit (ASSIGNED at once when assigned meanwhile).
                tracing::warn!(booking.id = %booking_id, %error, "recording a Reassign update failed");
            }
        }
    }

    async fn apply_update(
        &self,
        booking_id: Uuid,
        update: &ReassignResponse,
        state: &UpdateState,
        created_at: SystemTime,
        carrier: &Carrier,
    ) -> Result<Decision, Error> {
        let now = truncate_to_micros(SystemTime::now());
        let version = update.version;
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let Some(booking) = store::lock_booking(&tx, booking_id).await? else { return Ok(Decision::Stale) };
        let job = store::job(&tx, booking_id, version).await?;
        let job_open = job.as_ref().is_some_and(|j| j.open);
        let decision = decide(state, version, booking.version, booking.status, job_open);
        tracing::Span::current().record("decision", tracing::field::debug(&decision));
        let mut detail = json!({
            "state": state.as_str(),
            "attempt": update.attempt,
            "last_error": update.last_error,
        });
        if let UpdateState::Retrying { next_attempt_at: Some(at) } = state {
            detail["next_attempt_at"] = json!(rfc3339(*at));
        }
        if let UpdateState::Assigned { table_ids } = state {
            detail["table_ids"] = json!(table_ids);
        }
        if decision == Decision::Stale {
            detail["stale"] = json!(true);
            detail["current_version"] = json!(booking.version);
        }
        if decision == Decision::Close(crate::domain::reassign::JobState::GaveUp) {
            detail["note"] = json!("background assignment gave up; the booking stays PENDING");
        }
        let mut events = vec![Event::new(EventType::ReassignUpdate, version, detail)];
        let mut channels = vec![];
        let suppress = job.as_ref().is_some_and(|j| j.suppress_emails);
        let attempts = job.as_ref().map_or(update.attempt, |j| j.attempts.max(update.attempt));
        match &decision {
            Decision::Confirm { table_ids } => {
                let (confirmed, requested_at) =
                    store::set_status(&tx, booking_id, crate::domain::BookingStatus::Confirmed, table_ids, now).await?;
                store::close_job(&tx, booking_id, version, crate::domain::reassign::JobState::Assigned).await?;
                store::record_job_attempt(&tx, booking_id, version, attempts, None, "").await?;
                events.push(Event::new(
                    EventType::Confirmed,
                    version,
                    json!({ "table_ids": table_ids, "via": "background", "attempts": attempts }),
                ));
                queue_email(
                    &tx,
                    &confirmed,
                    EmailKind::confirmation(version),
                    suppress,
                    carrier,
                    &mut events,
                    &mut channels,
                )
                .await?;
                self.metrics.confirmed("background", now.duration_since(requested_at).unwrap_or_default());
            }
            Decision::RecordAttempt => {
                let next = match state {
                    UpdateState::Retrying { next_attempt_at } => *next_attempt_at,
                    _ => None,
                };
                store::record_job_attempt(&tx, booking_id, version, update.attempt, next, &update.last_error).await?;
            }
            Decision::Close(job_state) => {
                store::close_job(&tx, booking_id, version, *job_state).await?;
                store::record_job_attempt(&tx, booking_id, version, attempts, None, &update.last_error).await?;
            }
            Decision::Stale => {}
        }
        store::append_history(&tx, booking_id, &events).await?;
        tx.commit().await?;
        for channel in channels {
            self.db.wake(channel);
        }
        if !matches!(decision, Decision::RecordAttempt | Decision::Stale) {
            let outcome = match &decision {
                Decision::Confirm { .. } => "confirmed",
                Decision::Close(s) => s.as_str(),
                _ => "",
            };
            tracing::info!(
                booking.id = %booking_id,
                booking.version = version,
                attempts,
                total_wait_ms = now.duration_since(created_at).unwrap_or_default().as_millis() as u64,
                outcome,
                "auto-assign finished"
            );
        }
        Ok(decision)
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
