//! The tonic implementation of `assign.v1.AssignService`: decode, call the domain, encode.
//!
//! Owns the edge: parsing requests into domain types (one BadRequest field violation per
//! wrong field), the caller's deadline (`grpc-timeout`) as a time budget, the Reassign
//! stream's life, and the encoding of answers. It must never run SQL or decide a rule.

use crate::{
    assigner::{Assigner, Attempt, Budget},
    domain::{
        AssignRequest, Assignment, BookingId, CombineGroup, FloorPlan, JobState, JobUpdate, PartySize, RestaurantId,
        Seats, Slot, SubmitAnswer, Table, TableId, UpdateKind, Version, plan_violations,
    },
    error::Error,
    hub::{Hub, Outgoing},
    metrics::Metrics,
};
use platform::{
    proto::{
        assign::v1::{self as pb, assign_service_server::AssignService},
        std_duration, system_time, timestamp,
    },
    status::Violations,
};
use std::{sync::Arc, time::Duration};
use tokio::sync::mpsc;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, metadata::MetadataMap};

/// Time budget of one stream command (a submit or a cancel).
const STREAM_COMMAND_BUDGET: Duration = Duration::from_secs(5);

/// The gRPC face of the service.
pub struct Api {
    assigner: Assigner,
    hub: Arc<Hub>,
    metrics: Metrics,
    server_timeout: Duration,
    shutdown: CancellationToken,
}

impl Api {
    /// The service over `assigner`, streaming through `hub`; `server_timeout` is the
    /// server's own per-call limit, `shutdown` ends open streams.
    pub fn new(
        assigner: Assigner,
        hub: Arc<Hub>,
        metrics: Metrics,
        server_timeout: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self { assigner, hub, metrics, server_timeout, shutdown }
    }

    /// The budget of a call: the caller's `grpc-timeout`, or the server's limit if shorter.
    fn budget(&self, metadata: &MetadataMap) -> Budget {
        let caller = metadata.get("grpc-timeout").and_then(|value| value.to_str().ok()).and_then(parse_grpc_timeout);
        Budget::within(caller.map_or(self.server_timeout, |caller| caller.min(self.server_timeout)))
    }
}

/// Parses a `grpc-timeout` header value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Parses an `AssignRequest`; field paths start with `prefix` (e.g. `submit.`).
fn parse_assign(request: &pb::AssignRequest, prefix: &str) -> Result<AssignRequest, Violations> {
    let mut violations = Violations::new();
    let field = |name: &str| format!("{prefix}{name}");
    let booking_id = violations.check(&field("booking_id"), BookingId::parse(&request.booking_id));
    let version = violations.check(&field("version"), Version::parse(request.version));
    let restaurant_id = violations.check(&field("restaurant_id"), RestaurantId::parse(&request.restaurant_id));
    let party_size = violations.check(&field("party_size"), PartySize::parse(request.party_size));
    let start = violations.check(
        &field("start_time"),
        request
            .start_time
            .as_ref()
            .ok_or_else(|| "start time is required".to_string())
            .and_then(|ts| system_time(ts).ok_or_else(|| "start time is not a valid timestamp".to_string())),
    );
    let duration = violations.check(
        &field("duration"),
        request
            .duration
            .as_ref()
            .ok_or_else(|| "duration is required (15 minutes to 12 hours)".to_string())
            .and_then(|d| std_duration(d).ok_or_else(|| "duration must be positive and valid".to_string())),
    );
    let slot = match (start, duration) {
        (Some(start), Some(duration)) => violations.check(&field("duration"), Slot::new(start, duration)),
        _ => None,
    };
    match (booking_id, version, restaurant_id, party_size, slot) {
        (Some(booking_id), Some(version), Some(restaurant_id), Some(party_size), Some(slot))
            if violations.is_empty() =>
        {
            Ok(AssignRequest { booking_id, version, restaurant_id, party_size, slot })
        }
        _ => Err(violations),
    }
}

fn parse_restaurant(value: &str) -> Result<RestaurantId, Status> {
    let mut violations = Violations::new();
    match violations.check("restaurant_id", RestaurantId::parse(value)) {
        Some(id) => Ok(id),
        None => Err(violations.into_status()),
    }
}

fn parse_plan(request: &pb::PutFloorPlanRequest) -> Result<FloorPlan, Status> {
    let mut violations = Violations::new();
    let restaurant_id = violations.check("restaurant_id", RestaurantId::parse(&request.restaurant_id));
    let mut tables = Vec::with_capacity(request.tables.len());
    for (index, table) in request.tables.iter().enumerate() {
        let id = violations.check(&format!("tables[{index}].id"), TableId::parse(&table.id));
        let seats = violations.check(&format!("tables[{index}].seats"), Seats::parse(table.seats));
        let group =
            violations.check(&format!("tables[{index}].combine_group"), CombineGroup::parse(&table.combine_group));
        if let (Some(id), Some(seats), Some(combine_group)) = (id, seats, group) {
            tables.push((index, Table { id, seats, combine_group }));
        }
    }
    for (field, reason) in plan_violations(request.tables.len(), tables.iter().map(|(index, t)| (*index, &t.id))) {
        violations.add(field, reason);
    }
    match restaurant_id {
        Some(restaurant_id) if violations.is_empty() => {
            FloorPlan::new(restaurant_id, tables.into_iter().map(|(_, table)| table).collect()).map_err(|errors| {
                let mut violations = Violations::new();
                for (field, reason) in errors {
                    violations.add(field, reason);
                }
                violations.into_status()
            })
        }
        _ => Err(violations.into_status()),
    }
}

fn encode_assignment(assignment: &Assignment) -> pb::Assignment {
    pb::Assignment {
        booking_id: assignment.booking_id.to_string(),
        version: assignment.version.get(),
        table_ids: assignment.table_ids.iter().map(|id| id.as_str().to_string()).collect(),
        start_time: Some(timestamp(assignment.slot.start())),
        end_time: Some(timestamp(assignment.slot.end())),
    }
}

fn encode_plan(plan: &FloorPlan, updated_at: std::time::SystemTime) -> pb::FloorPlan {
    pb::FloorPlan {
        restaurant_id: plan.restaurant_id().as_str().to_string(),
        tables: plan
            .tables()
            .iter()
            .map(|t| pb::Table {
                id: t.id.as_str().to_string(),
                seats: t.seats.get() as i32,
                combine_group: t.combine_group.as_str().to_string(),
            })
            .collect(),
        updated_at: Some(timestamp(updated_at)),
    }
}

/// A job update as the Reassign stream sends it.
pub(crate) fn encode_update(update: &JobUpdate) -> pb::ReassignResponse {
    let mut response = pb::ReassignResponse {
        booking_id: update.booking_id.to_string(),
        version: update.version,
        attempt: update.attempt,
        last_error: update.last_error.clone().unwrap_or_default(),
        trace_context: update.trace_context.clone(),
        ..Default::default()
    };
    match &update.kind {
        UpdateKind::Retrying { next_attempt_at } => {
            response.set_state(pb::ReassignState::Retrying);
            response.next_attempt_at = Some(timestamp(*next_attempt_at));
        }
        UpdateKind::Assigned(assignment) => {
            response.set_state(pb::ReassignState::Assigned);
            response.assignment = Some(encode_assignment(assignment));
        }
        UpdateKind::Superseded => response.set_state(pb::ReassignState::Superseded),
        UpdateKind::GaveUp => response.set_state(pb::ReassignState::GaveUp),
    }
    response
}

fn outcome_label(result: &Result<Attempt, Error>) -> &'static str {
    match result {
        Ok(Attempt::Assigned(_) | Attempt::AlreadyAssigned(_)) => "assigned",
        Ok(Attempt::NoCapacity) => "no_capacity",
        Ok(Attempt::Older { .. } | Attempt::Released { .. } | Attempt::JobGone) => "aborted",
        Ok(Attempt::UnknownRestaurant) => "invalid",
        Err(Error::DeadlineExceeded) => "deadline_exceeded",
        Err(_) => "error",
    }
}

#[tonic::async_trait]
impl AssignService for Api {
    async fn put_floor_plan(
        &self,
        request: Request<pb::PutFloorPlanRequest>,
    ) -> Result<Response<pb::PutFloorPlanResponse>, Status> {
        let budget = self.budget(request.metadata());
        let plan = parse_plan(request.get_ref())?;
        let (plan, updated_at) = self.assigner.put_plan(plan, budget).await?;
        Ok(Response::new(pb::PutFloorPlanResponse { floor_plan: Some(encode_plan(&plan, updated_at)) }))
    }

    async fn get_floor_plan(
        &self,
        request: Request<pb::GetFloorPlanRequest>,
    ) -> Result<Response<pb::GetFloorPlanResponse>, Status> {
        let budget = self.budget(request.metadata());
        let restaurant_id = parse_restaurant(&request.get_ref().restaurant_id)?;
        let (plan, updated_at) = self.assigner.plan(&restaurant_id, budget).await?;
        Ok(Response::new(pb::GetFloorPlanResponse { floor_plan: Some(encode_plan(&plan, updated_at)) }))
    }

    async fn assign(&self, request: Request<pb::AssignRequest>) -> Result<Response<pb::AssignResponse>, Status> {
        let started = std::time::Instant::now();
        let budget = self.budget(request.metadata());
        let parsed = match parse_assign(request.get_ref(), "") {
            Ok(parsed) => parsed,
            Err(violations) => {
                self.metrics.assign_answered("invalid", started.elapsed().as_secs_f64());
                return Err(violations.into_status());
            }
        };
        let result = self.assigner.assign(&parsed, budget, None).await;
        self.metrics.assign_answered(outcome_label(&result), started.elapsed().as_secs_f64());
        let response = match result? {
            Attempt::Assigned(assignment) | Attempt::AlreadyAssigned(assignment) => pb::AssignResponse {
                outcome: pb::AssignOutcome::Assigned as i32,
                assignment: Some(encode_assignment(&assignment)),
            },
            Attempt::NoCapacity => {
                pb::AssignResponse { outcome: pb::AssignOutcome::NoCapacity as i32, assignment: None }
            }
            Attempt::UnknownRestaurant => return Err(Error::UnknownRestaurant(parsed.restaurant_id).into()),
            Attempt::Older { newest_version } => {
                return Err(Error::OlderVersion {
                    booking_id: parsed.booking_id,
                    version: parsed.version,
                    newest_version,
                }
                .into());
            }
            Attempt::Released { released_version } => {
                return Err(Error::Released {
                    booking_id: parsed.booking_id,
                    version: parsed.version,
                    released_version,
                }
                .into());
            }
            Attempt::JobGone => return Err(Status::internal("unexpected job outcome of a unary call")),
        };
        Ok(Response::new(response))
    }

    async fn release(&self, request: Request<pb::ReleaseRequest>) -> Result<Response<pb::ReleaseResponse>, Status> {
        let budget = self.budget(request.metadata());
        let mut violations = Violations::new();
        let Some(booking_id) = violations.check("booking_id", BookingId::parse(&request.get_ref().booking_id)) else {
            return Err(violations.into_status());
        };
        let released = self.assigner.release(booking_id, budget).await?;
        Ok(Response::new(pb::ReleaseResponse { released: i32::try_from(released).unwrap_or(i32::MAX) }))
    }

    type ReassignStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Outgoing> + Send>>;

    async fn reassign(
        &self,
        request: Request<tonic::Streaming<pb::ReassignRequest>>,
    ) -> Result<Response<Self::ReassignStream>, Status> {
        let inbound = request.into_inner();
        let (id, sender, receiver) = self.hub.open();
        let session = Session { id, hub: self.hub.clone(), assigner: self.assigner.clone(), sender };
        tokio::spawn(session.run(inbound, self.shutdown.clone()));
        let updates = ReceiverStream::new(receiver);
        let shutdown = self.shutdown.clone();
        // End the response at shutdown even if an update is still queued.
        let until_shutdown = updates.take_while(move |_| !shutdown.is_cancelled());
        Ok(Response::new(Box::pin(until_shutdown)))
    }
}

/// One open Reassign stream: reads its commands until the client goes away or the
/// service shuts down.
struct Session {
    id: u64,
    hub: Arc<Hub>,
    assigner: Assigner,
    sender: mpsc::Sender<Outgoing>,
}

impl Session {
    #[tracing::instrument(skip_all, fields(stream = self.id))]
    async fn run(self, mut inbound: tonic::Streaming<pb::ReassignRequest>, shutdown: CancellationToken) {
        tracing::debug!("reassign stream opened");
        loop {
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(message)) => {
                        if let Err(status) = self.handle(message).await {
                            let _ = self.sender.send(Err(status)).await;
                            break;
                        }
                    }
                    Ok(None) => {
                        // The client sends no more commands but may still read updates.
                        tokio::select! {
                            _ = self.sender.closed() => {}
                            _ = shutdown.cancelled() => {}
                        }
                        break;
                    }
                    Err(_) => break,
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
    async fn handle(&self, message: pb::ReassignRequest) -> Result<(), Status> {
        match message.command {
            Some(pb::reassign_request::Command::Submit(submit)) => self.submit(submit, &message.trace_context).await,
            Some(pb::reassign_request::Command::Cancel(booking_id)) => self.cancel(&booking_id).await,
            None => Ok(()),
        }
    }

    async fn submit(
        &self,
        submit: pb::AssignRequest,
        trace_context: &std::collections::HashMap<String, String>,
    ) -> Result<(), Status> {
        let request = match parse_assign(&submit, "submit.") {
            Ok(request) => request,
            Err(violations) => {
                let reason = violations
                    .fields()
                    .iter()
                    .map(|(field, description)| format!("{field}: {description}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let _ = self.sender.try_send(Ok(pb::ReassignResponse {
                    booking_id: submit.booking_id,
                    version: submit.version,
                    state: pb::ReassignState::GaveUp as i32,
                    last_error: format!("invalid submit: {reason}"),
                    ..Default::default()
                }));
                return Ok(());
            }
        };
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
            trace_context: here.clone(),
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

    async fn cancel(&self, booking_id: &str) -> Result<(), Status> {
        let Ok(booking_id) = BookingId::parse(booking_id) else {
            tracing::debug!(booking_id, "ignoring a cancel for a malformed booking id");
            return Ok(());
        };
        self.hub.unwatch(self.id, booking_id);
        self.assigner.cancel(booking_id, Budget::within(STREAM_COMMAND_BUDGET)).await.map_err(Status::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::status::violated_fields;

    #[test]
    fn reads_grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_grpc_timeout("123456789m"), None, "at most 8 digits");
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("12x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }

    #[test]
    fn names_every_wrong_assign_field() {
        let request = pb::AssignRequest {
            booking_id: "nope".into(),
            version: 0,
            restaurant_id: String::new(),
            party_size: 101,
            start_time: None,
            duration: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
        };
        let violations = parse_assign(&request, "submit.").expect_err("invalid");
        let fields: Vec<&str> = violations.fields().iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["submit.booking_id", "submit.version", "submit.restaurant_id", "submit.party_size", "submit.start_time"]
        );
    }

    #[test]
    fn names_wrong_table_fields_and_duplicates() {
        let table = |id: &str, seats: i32| pb::Table { id: id.into(), seats, combine_group: String::new() };
        let request = pb::PutFloorPlanRequest {
            restaurant_id: "r".into(),
            tables: vec![table("a", 2), table("", 2), table("c", 0), table("a", 4)],
        };
        let status = parse_plan(&request).expect_err("invalid");
        assert_eq!(violated_fields(&status), ["tables[1].id", "tables[2].seats", "tables[3].id"]);
    }
}
