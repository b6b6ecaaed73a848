//! The tonic implementation of `assign.v1.AssignService`: decode, call the domain, encode.

use platform::db::Database;
use platform::proto::assign::v1::{self as pb, assign_service_server::AssignService};
use tonic::{Request, Response, Status};

/// The gRPC face of the service.
pub struct Api {
    #[allow(dead_code)]
    database: Database,
}

impl Api {
    pub fn new(database: Database) -> Self {
        Self { database }
    }
}

#[tonic::async_trait]
impl AssignService for Api {
    async fn put_floor_plan(
        &self,
        _request: Request<pb::PutFloorPlanRequest>,
    ) -> Result<Response<pb::PutFloorPlanResponse>, Status> {
        Err(Status::unimplemented("PutFloorPlan is not implemented yet"))
    }

    async fn get_floor_plan(
        &self,
        _request: Request<pb::GetFloorPlanRequest>,
    ) -> Result<Response<pb::GetFloorPlanResponse>, Status> {
        Err(Status::unimplemented("GetFloorPlan is not implemented yet"))
    }

    async fn assign(&self, _request: Request<pb::AssignRequest>) -> Result<Response<pb::AssignResponse>, Status> {
        Err(Status::unimplemented("Assign is not implemented yet"))
    }

    async fn release(&self, _request: Request<pb::ReleaseRequest>) -> Result<Response<pb::ReleaseResponse>, Status> {
        Err(Status::unimplemented("Release is not implemented yet"))
    }

    type ReassignStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ReassignResponse, Status>> + Send>>;

    async fn reassign(
        &self,
        _request: Request<tonic::Streaming<pb::ReassignRequest>>,
    ) -> Result<Response<Self::ReassignStream>, Status> {
        Err(Status::unimplemented("Reassign is not implemented yet"))
    }
}
