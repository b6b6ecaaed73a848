//! Deliveries as protobuf: the edge where domain becomes proto.
//!
//! It must never decide anything: the delivery is settled before it gets here.

use crate::domain::{Delivery, DeliveryState, Kind};
use platform::proto::{notify::v1 as pb, timestamp};

fn encode_kind(kind: Kind) -> pb::NotificationKind {
    match kind {
        Kind::BookingPending => pb::NotificationKind::BookingPending,
        Kind::BookingConfirmed => pb::NotificationKind::BookingConfirmed,
        Kind::ModificationRequested => pb::NotificationKind::ModificationRequested,
        Kind::ModificationConfirmed => pb::NotificationKind::ModificationConfirmed,
        Kind::BookingCancelled => pb::NotificationKind::BookingCancelled,
    }
}

fn encode_state(state: DeliveryState) -> pb::DeliveryState {
    match state {
        DeliveryState::Queued => pb::DeliveryState::Queued,
        DeliveryState::Sent => pb::DeliveryState::Sent,
        DeliveryState::Suppressed => pb::DeliveryState::Suppressed,
        DeliveryState::Failed => pb::DeliveryState::Failed,
    }
}

pub(super) fn encode(delivery: &Delivery) -> pb::Delivery {
    pb::Delivery {
        booking_id: delivery.key.booking_id.to_string(),
        kind: encode_kind(delivery.key.kind).into(),
        version: delivery.key.version,
        recipient: Some(pb::Recipient {
            email: delivery.recipient.email().to_string(),
            name: delivery.recipient.name().to_string(),
        }),
        state: encode_state(delivery.state).into(),
        message_id: delivery.message_id.clone(),
        attempts: i32::try_from(delivery.attempts).unwrap_or(i32::MAX),
        requested_at: Some(timestamp(delivery.requested_at)),
        sent_at: delivery.sent_at.map(timestamp),
        last_error: delivery.last_error.clone().unwrap_or_default(),
        next_attempt_at: delivery.next_attempt_at.map(timestamp),
    }
}
