//! The tonic implementation of `notify.v1.NotifyService`: decode, call the domain, encode.

use platform::db::Database;
use platform::proto::notify::v1::{self as pb, notify_service_server::NotifyService};
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
impl NotifyService for Api {
    async fn send_once(
        &self,
        _request: Request<pb::SendOnceRequest>,
    ) -> Result<Response<pb::SendOnceResponse>, Status> {
        Err(Status::unimplemented("SendOnce is not implemented yet"))
    }

    async fn get_delivery(
        &self,
        _request: Request<pb::GetDeliveryRequest>,
    ) -> Result<Response<pb::GetDeliveryResponse>, Status> {
        Err(Status::unimplemented("GetDelivery is not implemented yet"))
    }

    async fn list_deliveries(
        &self,
        _request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        Err(Status::unimplemented("ListDeliveries is not implemented yet"))
    }
}
