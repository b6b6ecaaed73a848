//! The tonic implementation of `booking.v1.BookingService`: decode, call the domain, encode.

use platform::db::Database;
use platform::proto::booking::v1::{self as pb, booking_service_server::BookingService};
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
impl BookingService for Api {
    async fn create_booking(
        &self,
        _request: Request<pb::CreateBookingRequest>,
    ) -> Result<Response<pb::CreateBookingResponse>, Status> {
        Err(Status::unimplemented("CreateBooking is not implemented yet"))
    }

    async fn edit_booking(
        &self,
        _request: Request<pb::EditBookingRequest>,
    ) -> Result<Response<pb::EditBookingResponse>, Status> {
        Err(Status::unimplemented("EditBooking is not implemented yet"))
    }

    async fn get_booking(
        &self,
        _request: Request<pb::GetBookingRequest>,
    ) -> Result<Response<pb::GetBookingResponse>, Status> {
        Err(Status::unimplemented("GetBooking is not implemented yet"))
    }

    async fn list_bookings(
        &self,
        _request: Request<pb::ListBookingsRequest>,
    ) -> Result<Response<pb::ListBookingsResponse>, Status> {
        Err(Status::unimplemented("ListBookings is not implemented yet"))
    }

    async fn cancel_booking(
        &self,
        _request: Request<pb::CancelBookingRequest>,
    ) -> Result<Response<pb::CancelBookingResponse>, Status> {
        Err(Status::unimplemented("CancelBooking is not implemented yet"))
    }

    async fn get_booking_history(
        &self,
        _request: Request<pb::GetBookingHistoryRequest>,
    ) -> Result<Response<pb::GetBookingHistoryResponse>, Status> {
        Err(Status::unimplemented("GetBookingHistory is not implemented yet"))
    }
}
