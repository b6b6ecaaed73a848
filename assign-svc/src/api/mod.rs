//! The tonic implementation of `assign.v1.AssignService`.
//!
//! Decodes a request into domain types (`decode`), calls the transactions or opens a
//! Reassign session, and encodes the answer (`encode`). The caller's deadline
//! (`grpc-timeout`) becomes the call's time budget. It must never run SQL or decide a
//! rule.

mod decode;
mod encode;

use crate::{
    assigner::{Assigner, Attempt, Budget},
    domain::BookingId,
    error::Error,
    metrics::Metrics,
    reassign::{hub::Hub, session::Session},
};
use decode::{parse_assign, parse_plan, parse_restaurant, reassign_command};
use encode::{encode_assignment, encode_plan, reply};
use platform::{
    proto::assign::v1::{self as pb, assign_service_server::AssignService},
    status::Violations,
};
use std::{sync::Arc, time::Duration};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, metadata::MetadataMap};

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
        let caller = platform::grpc::timeout_of(metadata);
        Budget::within(caller.map_or(self.server_timeout, |caller| caller.min(self.server_timeout)))
    }
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

    type ReassignStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ReassignResponse, Status>> + Send>>;

    async fn reassign(
        &self,
        request: Request<tonic::Streaming<pb::ReassignRequest>>,
    ) -> Result<Response<Self::ReassignStream>, Status> {
        let commands = request.into_inner().filter_map(reassign_command);
        let (session, receiver) = Session::open(self.hub.clone(), self.assigner.clone());
        tokio::spawn(session.run(commands, self.shutdown.clone()));
        let shutdown = self.shutdown.clone();
        // End the response at shutdown even if an update is still queued.
        let until_shutdown = ReceiverStream::new(receiver).take_while(move |_| !shutdown.is_cancelled()).map(reply);
        Ok(Response::new(Box::pin(until_shutdown)))
    }
}
