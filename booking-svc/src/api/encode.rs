//! Encoding: a booking, an answer, a history detail and a feed change as their protobuf
//! messages.

use crate::{
    domain::{
        Booking, BookingStatus,
        changes::ChangeType,
        inline::{InlineAttempt, InlineResult, Outcome},
    },
    feed::Cursor,
    flow::Answer,
    store::changes::StoredChange,
};
use platform::proto::{booking::v1 as pb, duration, timestamp};

pub(super) fn encode_answer(answer: Answer) -> (Option<pb::Booking>, i32, Option<pb::InlineAttempt>) {
    let outcome = match answer.outcome {
        Outcome::Confirmed => pb::Outcome::Confirmed,
        Outcome::Pending => pb::Outcome::Pending,
        Outcome::Unchanged => pb::Outcome::Unchanged,
    };
    (Some(encode_booking(answer.booking)), outcome as i32, Some(encode_inline(&answer.inline)))
}

fn encode_inline(attempt: &InlineAttempt) -> pb::InlineAttempt {
    let result = match attempt.result {
        InlineResult::Assigned(_) => pb::InlineResult::Assigned,
        InlineResult::NoCapacity => pb::InlineResult::NoCapacity,
        InlineResult::Timeout => pb::InlineResult::Timeout,
        InlineResult::Unavailable(_) => pb::InlineResult::Unavailable,
        InlineResult::Disabled => pb::InlineResult::Disabled,
        InlineResult::Skipped => pb::InlineResult::Skipped,
    };
    pb::InlineAttempt { result: result as i32, elapsed: Some(duration(attempt.elapsed)), email_sent: false }
}

pub(super) fn encode_booking(b: Booking) -> pb::Booking {
    let status = match b.status {
        BookingStatus::Pending => pb::BookingStatus::Pending,
        BookingStatus::Confirmed => pb::BookingStatus::Confirmed,
        BookingStatus::Cancelled => pb::BookingStatus::Cancelled,
    };
    pb::Booking {
        id: b.id.to_string(),
        restaurant_id: b.restaurant_id.as_str().to_string(),
        guest: Some(pb::Guest {
            name: b.guest_name.as_str().to_string(),
            email: b.guest_email.as_str().to_string(),
            phone: b.guest_phone.as_str().to_string(),
        }),
        party_size: b.party_size.get(),
        start_time: Some(timestamp(b.start_time.get())),
        duration: Some(duration(b.duration.get())),
        notes: b.notes.as_str().to_string(),
        status: status as i32,
        version: b.version.get(),
        table_ids: b.table_ids,
        created_at: Some(timestamp(b.created_at)),
        updated_at: Some(timestamp(b.updated_at)),
    }
}

/// A change of the feed, with its cursor.
pub(super) fn encode_change(change: &StoredChange) -> pb::BookingChange {
    let change_type = match change.kind {
        ChangeType::Created => pb::ChangeType::Created,
        ChangeType::Edited => pb::ChangeType::Edited,
        ChangeType::Confirmed => pb::ChangeType::Confirmed,
        ChangeType::Pending => pb::ChangeType::Pending,
        ChangeType::Cancelled => pb::ChangeType::Cancelled,
    };
    pb::BookingChange {
        cursor: Cursor::after(change.position).encode(),
        booking: Some(encode_booking(change.booking.clone())),
        change_type: change_type as i32,
        version: change.booking.version.get(),
        changes: change
            .fields
            .iter()
            .map(|f| pb::FieldChange {
                field: f.field.clone(),
                old_value: Some(json_value(f.from.clone())),
                new_value: Some(json_value(f.to.clone())),
            })
            .collect(),
        actor: change.actor.clone(),
        time: Some(timestamp(change.at)),
    }
}

/// A JSON object as a `google.protobuf.Struct` (a non-object under the key `value`).
pub(super) fn json_struct(value: serde_json::Value) -> prost_types::Struct {
    match value {
        serde_json::Value::Object(map) => {
            prost_types::Struct { fields: map.into_iter().map(|(k, v)| (k, json_value(v))).collect() }
        }
        other => prost_types::Struct { fields: [("value".to_string(), json_value(other))].into_iter().collect() },
    }
}

fn json_value(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => {
            Kind::ListValue(prost_types::ListValue { values: items.into_iter().map(json_value).collect() })
        }
        object @ serde_json::Value::Object(_) => Kind::StructValue(json_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_details_become_structs() {
        let s = json_struct(serde_json::json!({ "kind": "X", "n": 2, "ok": true, "list": ["a"], "none": null }));
        assert_eq!(s.fields.len(), 5);
        assert!(matches!(s.fields["n"].kind, Some(prost_types::value::Kind::NumberValue(n)) if n == 2.0));
    }
}
