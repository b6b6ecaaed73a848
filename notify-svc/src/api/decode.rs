//! SendOnce and lookup requests as domain values: the edge where proto becomes domain.
//!
//! Names every wrong field with its proto path (`INVALID_ARGUMENT`). The limits and rules
//! are the domain's; it must never touch the ledger.

use crate::{
    domain::{DeliveryKey, Details, Kind, Limits, RawDetails, Recipient, SendRequest, parse_booking_id, parse_version},
    error::Error,
};
use platform::{
    proto::{notify::v1 as pb, std_duration, system_time},
    status::Violations,
};

/// Turns a SendOnce request into domain values, naming every wrong field.
pub(super) fn parse_send_once(request: pb::SendOnceRequest, limits: &Limits) -> Result<SendRequest, Error> {
    let mut violations = Violations::new();
    let booking_id = violations.check("booking_id", parse_booking_id(&request.booking_id));
    let kind = violations.check("kind", parse_kind(request.kind));
    let version = violations.check("version", parse_version(request.version));
    let recipient = match &request.recipient {
        None => {
            violations.add("recipient", "required");
            None
        }
        Some(recipient) => match Recipient::parse(&recipient.email, &recipient.name, limits) {
            Ok(recipient) => Some(recipient),
            Err(wrong) => {
                for (field, description) in wrong {
                    violations.add(format!("recipient.{field}"), description);
                }
                None
            }
        },
    };
    let details = match &request.details {
        None => {
            violations.add("details", "required");
            None
        }
        Some(details) => {
            let raw = RawDetails {
                restaurant_name: &details.restaurant_name,
                start_time: details.start_time.as_ref().map(system_time),
                duration: details.duration.as_ref().map(std_duration),
                party_size: details.party_size,
                table_ids: &details.table_ids,
                notes: &details.notes,
                time_zone: &details.time_zone,
                address: &details.address,
                previous_start_time: details.previous_start_time.as_ref().map(system_time),
                previous_party_size: details.previous_party_size,
            };
            parse_details(raw, limits, &mut violations)
        }
    };
    match (booking_id, kind, version, recipient, details) {
        (Some(booking_id), Some(kind), Some(version), Some(recipient), Some(details)) if violations.is_empty() => {
            Ok(SendRequest {
                key: DeliveryKey { booking_id, kind, version },
                recipient,
                details,
                suppress: request.suppress,
            })
        }
        _ => Err(Error::Invalid(violations)),
    }
}

fn parse_details(raw: RawDetails<'_>, limits: &Limits, violations: &mut Violations) -> Option<Details> {
    match Details::parse(raw, limits) {
        Ok(details) => Some(details),
        Err(wrong) => {
            for (field, description) in wrong {
                violations.add(format!("details.{field}"), description);
            }
            None
        }
    }
}

pub(super) fn parse_kind(value: i32) -> Result<Kind, String> {
    match pb::NotificationKind::try_from(value) {
        Ok(pb::NotificationKind::Unspecified) => Err("required".to_string()),
        Ok(pb::NotificationKind::BookingPending) => Ok(Kind::BookingPending),
        Ok(pb::NotificationKind::BookingConfirmed) => Ok(Kind::BookingConfirmed),
        Ok(pb::NotificationKind::ModificationRequested) => Ok(Kind::ModificationRequested),
        Ok(pb::NotificationKind::ModificationConfirmed) => Ok(Kind::ModificationConfirmed),
        Ok(pb::NotificationKind::BookingCancelled) => Ok(Kind::BookingCancelled),
        Err(_) => Err(format!("unknown kind {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::status::violated_fields;
    use tonic::Status;

    fn valid() -> pb::SendOnceRequest {
        pb::SendOnceRequest {
            booking_id: "6f1c2a34-1d2e-4c5b-9a8f-0123456789ab".to_string(),
            kind: pb::NotificationKind::BookingConfirmed.into(),
            version: 1,
            recipient: Some(pb::Recipient { email: "ada@example.com".to_string(), name: "Ada".to_string() }),
            details: Some(pb::Details {
                restaurant_name: "Chez Test".to_string(),
                start_time: Some(prost_types::Timestamp { seconds: 1_800_000_000, nanos: 0 }),
                duration: Some(prost_types::Duration { seconds: 5400, nanos: 0 }),
                party_size: 2,
                table_ids: vec!["T1".to_string()],
                notes: String::new(),
                ..Default::default()
            }),
            suppress: false,
        }
    }

    fn fields_of(request: pb::SendOnceRequest) -> Vec<String> {
        match parse_send_once(request, &Limits::CONTRACT) {
            Ok(parsed) => panic!("accepted {parsed:?}"),
            Err(error) => violated_fields(&Status::from(error)),
        }
    }

    #[test]
    fn a_valid_request_parses() {
        let parsed = parse_send_once(valid(), &Limits::CONTRACT).unwrap();
        assert_eq!(parsed.key.kind, Kind::BookingConfirmed);
        assert_eq!(parsed.recipient.email(), "ada@example.com");
        assert_eq!(parsed.details.party_size(), 2);
    }

    #[test]
    fn every_wrong_field_is_named_with_its_proto_path() {
        let mut request = valid();
        request.booking_id = "nope".into();
        request.kind = 0;
        request.version = 0;
        request.recipient = Some(pb::Recipient { email: "not-an-email".into(), name: "n".repeat(201) });
        let details = request.details.as_mut().unwrap();
        details.notes = "n".repeat(2001);
        details.table_ids = (0..51).map(|i| format!("T{i}")).collect();
        details.start_time = None;
        details.duration = Some(prost_types::Duration { seconds: -1, nanos: 0 });
        details.party_size = 0;
        assert_eq!(
            fields_of(request),
            vec![
                "booking_id",
                "kind",
                "version",
                "recipient.email",
                "recipient.name",
                "details.start_time",
                "details.duration",
                "details.party_size",
                "details.table_ids",
                "details.notes"
            ]
        );
        let mut missing = valid();
        missing.recipient = None;
        missing.details = None;
        missing.kind = 99;
        assert_eq!(fields_of(missing), vec!["kind", "recipient", "details"]);
        let mut bad_time = valid();
        bad_time.details.as_mut().unwrap().start_time = Some(prost_types::Timestamp { seconds: 0, nanos: -5 });
        assert_eq!(fields_of(bad_time), vec!["details.start_time"]);
    }

    #[test]
    fn an_unknown_zone_and_a_bad_previous_time_are_named() {
        let mut request = valid();
        let details = request.details.as_mut().unwrap();
        details.time_zone = "Europe/Atlantis".into();
        details.previous_start_time = Some(prost_types::Timestamp { seconds: -1, nanos: 0 });
        assert_eq!(fields_of(request), vec!["details.time_zone", "details.previous_start_time"]);
        let mut paris = valid();
        paris.details.as_mut().unwrap().time_zone = "Europe/Paris".into();
        let parsed = parse_send_once(paris, &Limits::CONTRACT).unwrap();
        assert_eq!(parsed.details.time_zone().name(), "Europe/Paris");
    }
}
