//! The gRPC face of booking-svc: the tonic implementation of `booking.v1.BookingService`.
//!
//! Each request is decoded into domain values (INVALID_ARGUMENT naming every wrong field,
//! nothing written), handed to the flow, and its answer encoded. No rule and no SQL lives
//! here.

mod decode;
mod encode;
mod restaurant;

use crate::{feed::Feed, flow::Flow, metrics::Metrics};
use decode::{parse_cancel, parse_create, parse_edit, parse_id, parse_list, parse_watch};
use encode::{encode_answer, encode_booking, encode_change, json_struct};
use platform::{
    auth::Caller,
    grpc::deadline_of,
    proto::{
        booking::v1::{self as pb, booking_service_server::BookingService},
        timestamp,
    },
};
use restaurant::{encode_restaurant, parse_put_restaurant, parse_restaurant_id};
use std::{pin::Pin, sync::Arc, time::SystemTime};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

/// The gRPC face of the service.
pub struct Api {
    flow: Arc<Flow>,
    metrics: Arc<Metrics>,
    feed: Arc<Feed>,
}

impl Api {
    pub fn new(flow: Arc<Flow>, metrics: Arc<Metrics>, feed: Arc<Feed>) -> Self {
        Self { flow, metrics, feed }
    }
}

/// A stream of feed changes as the client receives them.
type ChangeStream = Pin<Box<dyn Stream<Item = Result<pb::BookingChange, Status>> + Send>>;

#[tonic::async_trait]
impl BookingService for Api {
    async fn create_booking(
        &self,
        request: Request<pb::CreateBookingRequest>,
    ) -> Result<Response<pb::CreateBookingResponse>, Status> {
        let deadline = deadline_of(request.metadata());
        let actor = Caller::of(&request).actor();
        let request = request.into_inner();
        // Kept only when the request has a key: then it may be a retry (below).
        let keyed = (!request.idempotency_key.is_empty()).then(|| request.clone());
        let mut parsed = match parse_create(request, SystemTime::now()) {
            Ok(parsed) => parsed,
            Err(invalid) => {
                // A retry of a request made while it was valid (its start time has passed
                // since) is answered as it was first answered, like every retry with its key.
                if let Some(retry) = keyed.and_then(|r| parse_create(r, SystemTime::UNIX_EPOCH).ok())
                    && let Some(answer) = self.flow.replay_create(&retry).await?
                {
                    let (booking, outcome, inline_attempt) = encode_answer(answer);
                    return Ok(Response::new(pb::CreateBookingResponse { booking, outcome, inline_attempt }));
                }
                return Err(invalid);
            }
        };
        parsed.actor = actor;
        let answer = self.flow.create(parsed, deadline).await?;
        let (booking, outcome, inline_attempt) = encode_answer(answer);
        Ok(Response::new(pb::CreateBookingResponse { booking, outcome, inline_attempt }))
    }

    async fn edit_booking(
        &self,
        request: Request<pb::EditBookingRequest>,
    ) -> Result<Response<pb::EditBookingResponse>, Status> {
        let deadline = deadline_of(request.metadata());
        let actor = Caller::of(&request).actor();
        let request = request.into_inner();
        // Kept only when the request has a key: then it may be a retry (below).
        let keyed = (!request.idempotency_key.is_empty()).then(|| request.clone());
        let mut parsed = match parse_edit(request, SystemTime::now()) {
            Ok(parsed) => parsed,
            Err(invalid) => {
                // As for a create: a retry whose new start time has passed since is answered
                // as first answered.
                if let Some(retry) = keyed.and_then(|r| parse_edit(r, SystemTime::UNIX_EPOCH).ok())
                    && let Some(answer) = self.flow.replay_edit(&retry).await?
                {
                    self.metrics.edit_answered(answer.outcome);
                    let (booking, outcome, inline_attempt) = encode_answer(answer);
                    return Ok(Response::new(pb::EditBookingResponse { booking, outcome, inline_attempt }));
                }
                return Err(invalid);
            }
        };
        parsed.actor = actor;
        let answer = self.flow.edit(parsed, deadline).await?;
        self.metrics.edit_answered(answer.outcome);
        let (booking, outcome, inline_attempt) = encode_answer(answer);
        Ok(Response::new(pb::EditBookingResponse { booking, outcome, inline_attempt }))
    }

    async fn get_booking(
        &self,
        request: Request<pb::GetBookingRequest>,
    ) -> Result<Response<pb::GetBookingResponse>, Status> {
        let id = parse_id("booking_id", &request.into_inner().booking_id)?;
        let booking = self.flow.get(id).await?;
        Ok(Response::new(pb::GetBookingResponse { booking: Some(encode_booking(booking)) }))
    }

    async fn list_bookings(
        &self,
        request: Request<pb::ListBookingsRequest>,
    ) -> Result<Response<pb::ListBookingsResponse>, Status> {
        let (query, hash) = parse_list(request.into_inner())?;
        let (bookings, token) = self.flow.list(&query, hash).await?;
        Ok(Response::new(pb::ListBookingsResponse {
            bookings: bookings.into_iter().map(encode_booking).collect(),
            next_page_token: token.unwrap_or_default(),
        }))
    }

    async fn cancel_booking(
        &self,
        request: Request<pb::CancelBookingRequest>,
    ) -> Result<Response<pb::CancelBookingResponse>, Status> {
        let actor = Caller::of(&request).actor();
        let mut parsed = parse_cancel(request.into_inner())?;
        parsed.actor = actor;
        let booking = self.flow.cancel(parsed).await?;
        Ok(Response::new(pb::CancelBookingResponse { booking: Some(encode_booking(booking)) }))
    }

    async fn get_booking_history(
        &self,
        request: Request<pb::GetBookingHistoryRequest>,
    ) -> Result<Response<pb::GetBookingHistoryResponse>, Status> {
        let id = parse_id("booking_id", &request.into_inner().booking_id)?;
        let events = self.flow.history(id).await?;
        let events = events
            .into_iter()
            .map(|e| pb::BookingEvent {
                time: Some(timestamp(e.at)),
                r#type: pb::BookingEventType::from_str_name(&format!("BOOKING_EVENT_TYPE_{}", e.kind))
                    .unwrap_or(pb::BookingEventType::Unspecified) as i32,
                version: e.version,
                detail: Some(json_struct(e.detail)),
            })
            .collect();
        Ok(Response::new(pb::GetBookingHistoryResponse { events }))
    }

    type WatchBookingChangesStream = ChangeStream;

    async fn watch_booking_changes(
        &self,
        request: Request<pb::WatchBookingChangesRequest>,
    ) -> Result<Response<ChangeStream>, Status> {
        let request = parse_watch(request.into_inner())?;
        let changes = self.feed.watch(request).await?;
        // A watch ends only with an error: should its watcher stop without one, the call
        // still does not look like a clean end.
        let ended = tokio_stream::once(Err(Status::unavailable("the change feed ended; resume from the last cursor")));
        let stream = ReceiverStream::new(changes)
            .map(|item| {
                item.map(|change| change.message.get_or_init(|| encode_change(&change.stored)).clone())
                    .map_err(Status::from)
            })
            .chain(ended);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn put_restaurant(
        &self,
        request: Request<pb::PutRestaurantRequest>,
    ) -> Result<Response<pb::PutRestaurantResponse>, Status> {
        let restaurant = parse_put_restaurant(request.into_inner())?;
        let stored = self.flow.put_restaurant(restaurant).await?;
        Ok(Response::new(pb::PutRestaurantResponse { restaurant: Some(encode_restaurant(stored)) }))
    }

    async fn get_restaurant(
        &self,
        request: Request<pb::GetRestaurantRequest>,
    ) -> Result<Response<pb::GetRestaurantResponse>, Status> {
        let id = parse_restaurant_id(&request.into_inner().restaurant_id)?;
        let restaurant = self.flow.get_restaurant(id).await?;
        Ok(Response::new(pb::GetRestaurantResponse { restaurant: Some(encode_restaurant(restaurant)) }))
    }
}
