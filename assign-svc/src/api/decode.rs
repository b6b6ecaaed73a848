//! Requests and stream commands as domain values: the edge where proto becomes domain.
//!
//! Names every wrong field in one `google.rpc.BadRequest` (paths as in the proto). It must
//! never call the domain or the database.

use crate::{
    domain::{
        AssignRequest, BookingId, CombineGroup, FloorPlan, PartySize, RestaurantId, Seats, Slot, Table, TableId,
        Version, plan_violations,
    },
    reassign::session::Command,
};
use platform::{
    proto::{assign::v1 as pb, std_duration, system_time},
    status::Violations,
};
use tonic::Status;

/// Parses an `AssignRequest`; field paths start with `prefix` (e.g. `submit.`).
pub(super) fn parse_assign(request: &pb::AssignRequest, prefix: &str) -> Result<AssignRequest, Violations> {
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

pub(super) fn parse_restaurant(value: &str) -> Result<RestaurantId, Status> {
    let mut violations = Violations::new();
    match violations.check("restaurant_id", RestaurantId::parse(value)) {
        Some(id) => Ok(id),
        None => Err(violations.into_status()),
    }
}

pub(super) fn parse_plan(request: &pb::PutFloorPlanRequest) -> Result<FloorPlan, Status> {
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

/// A Reassign stream's message as a session command, or its transport's error. `None`
/// for a message without a command and for a cancel of a malformed booking id (ignored).
pub(super) fn reassign_command(message: Result<pb::ReassignRequest, Status>) -> Option<Result<Command, Status>> {
    let message = match message {
        Ok(message) => message,
        Err(status) => return Some(Err(status)),
    };
    match message.command {
        Some(pb::reassign_request::Command::Submit(submit)) => Some(Ok(match parse_assign(&submit, "submit.") {
            Ok(request) => Command::Submit { request, trace_context: message.trace_context },
            Err(violations) => {
                let reason = violations
                    .fields()
                    .iter()
                    .map(|(field, description)| format!("{field}: {description}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                Command::Invalid { booking_id: submit.booking_id, version: submit.version, reason }
            }
        })),
        Some(pb::reassign_request::Command::Cancel(booking_id)) => match BookingId::parse(&booking_id) {
            Ok(booking_id) => Some(Ok(Command::Cancel(booking_id))),
            Err(_) => {
                tracing::debug!(booking_id, "ignoring a cancel for a malformed booking id");
                None
            }
        },
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::status::violated_fields;

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
