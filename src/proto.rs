//! Generated bindings of `proto/` and conversions between protobuf well-known types and
//! std time types. Owns no behaviour: services map these to their domain types.

#![allow(clippy::all, missing_docs)]

/// `booking.v1`: the public API of booking-svc.
pub mod booking {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("booking.v1");
    }
}

/// `assign.v1`: the public API of assign-svc.
pub mod assign {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("assign.v1");
    }
}

/// `notify.v1`: the public API of notify-svc.
pub mod notify {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("notify.v1");
    }
}

/// Encoded descriptors of the three services (with their comments), served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptor");

use std::time::{Duration, SystemTime};

/// A protobuf timestamp for a point in time.
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// The point in time of a protobuf timestamp, `None` when it is out of range or not
/// normalised.
pub fn system_time(ts: &prost_types::Timestamp) -> Option<SystemTime> {
    SystemTime::try_from(*ts).ok()
}

/// A protobuf duration for a std duration (saturating at the protobuf maximum).
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration { seconds: 315_576_000_000, nanos: 0 })
}

/// The std duration of a protobuf duration, `None` when it is negative or malformed.
pub fn std_duration(d: &prost_types::Duration) -> Option<Duration> {
    Duration::try_from(*d).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(system_time(&timestamp(t)), Some(t));
        assert_eq!(std_duration(&duration(Duration::from_secs(5400))), Some(Duration::from_secs(5400)));
        let negative = prost_types::Duration { seconds: -1, nanos: 0 };
        assert_eq!(std_duration(&negative), None);
    }
}
