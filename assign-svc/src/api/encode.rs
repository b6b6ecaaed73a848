//! Answers and stream replies as protobuf: the edge where domain becomes proto.
//!
//! It must never decide anything: what to answer is settled before it gets here.

use crate::{
    domain::{Assignment, FloorPlan, JobUpdate, UpdateKind},
    reassign::hub::{Outgoing, Reply},
};
use platform::proto::{assign::v1 as pb, timestamp};
use tonic::Status;

pub(super) fn encode_assignment(assignment: &Assignment) -> pb::Assignment {
    pb::Assignment {
        booking_id: assignment.booking_id.to_string(),
        version: assignment.version.get(),
        table_ids: assignment.table_ids.iter().map(|id| id.as_str().to_string()).collect(),
        start_time: Some(timestamp(assignment.slot.start())),
        end_time: Some(timestamp(assignment.slot.end())),
    }
}

pub(super) fn encode_plan(plan: &FloorPlan, updated_at: std::time::SystemTime) -> pb::FloorPlan {
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
fn encode_update(update: &JobUpdate) -> pb::ReassignResponse {
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

/// What a Reassign stream sends, as its client receives it.
pub(super) fn reply(outgoing: Outgoing) -> Result<pb::ReassignResponse, Status> {
    outgoing.map(|reply| match reply {
        Reply::Update(update) => encode_update(&update),
        Reply::Rejected { booking_id, version, reason } => pb::ReassignResponse {
            booking_id,
            version,
            state: pb::ReassignState::GaveUp as i32,
            last_error: format!("invalid submit: {reason}"),
            ..Default::default()
        },
    })
}
