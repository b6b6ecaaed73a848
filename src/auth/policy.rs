//! Who may call which method: an allow-list per method, deny by default.
//!
//! The built-in table ([`Policy::defaults`]) covers every method of the three services;
//! a policy file (`AUTHZ_POLICY`, JSON) replaces the entries it names and may add others:
//!
//! ```json
//! {
//!   "methods": {
//!     "/booking.v1.BookingService/CreateBooking": { "services": ["web-frontend"], "roles": ["staff"] },
//!     "/assign.v1.AssignService/GetFloorPlan": { "roles": ["staff", "floor-admin", "host"] },
//!     "/notify.v1.NotifyService/ListDeliveries": { "open": true }
//!   }
//! }
//! ```
//!
//! `services` are service names under the trust domain (the last segment of
//! `spiffe://<TRUST_DOMAIN>/<name>`), `roles` the roles of a staff token, `open: true`
//! lets anyone call. An entry with neither closes the method. A method in no entry is
//! refused.

use serde::Deserialize;
use std::{collections::BTreeMap, path::Path};

/// Who may call one method.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Anyone, even without credentials.
    #[serde(default)]
    pub open: bool,
    /// Service identities (names under the trust domain).
    #[serde(default)]
    pub services: Vec<String>,
    /// Roles of a staff token.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Rule {
    fn open() -> Self {
        Self { open: true, ..Self::default() }
    }

    fn services(names: &[&str]) -> Self {
        Self { services: names.iter().map(|s| s.to_string()).collect(), ..Self::default() }
    }

    fn roles(names: &[&str]) -> Self {
        Self { roles: names.iter().map(|s| s.to_string()).collect(), ..Self::default() }
    }

    /// Whether a caller with service identity `service` and token roles `roles` may call.
    pub fn allows(&self, service: Option<&str>, roles: &[String]) -> bool {
        self.open
            || service.is_some_and(|name| self.services.iter().any(|s| s == name))
            || roles.iter().any(|role| self.roles.contains(role))
    }
}

/// The allow-list of every method, by its path (`/package.Service/Method`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub methods: BTreeMap<String, Rule>,
}

/// The built-in role of staff: reads and booking writes.
pub const STAFF: &str = "staff";
/// The built-in role that may replace floor plans and restaurant profiles.
pub const FLOOR_ADMIN: &str = "floor-admin";

impl Policy {
    /// The built-in table: assign-svc's `Assign`/`Release`/`Reassign` and notify-svc's
    /// `SendOnce` only from booking-svc; `PutFloorPlan` and `PutRestaurant` only for
    /// `floor-admin`; reads for `staff` (floor plans also for `floor-admin`); booking
    /// writes for `staff` (and booking clients, i.e. the service identities an operator
    /// lists for them in the policy file); health and reflection open.
    pub fn defaults() -> Self {
        let booking = |m: &str| format!("/booking.v1.BookingService/{m}");
        let assign = |m: &str| format!("/assign.v1.AssignService/{m}");
        let notify = |m: &str| format!("/notify.v1.NotifyService/{m}");
        let mut methods = BTreeMap::new();
        for method in ["CreateBooking", "EditBooking", "CancelBooking"] {
            methods.insert(booking(method), Rule::roles(&[STAFF]));
        }
        for method in ["GetBooking", "ListBookings", "GetBookingHistory", "GetRestaurant", "WatchBookingChanges"] {
            methods.insert(booking(method), Rule::roles(&[STAFF]));
        }
        methods.insert(booking("PutRestaurant"), Rule::roles(&[FLOOR_ADMIN]));
        methods.insert(assign("PutFloorPlan"), Rule::roles(&[FLOOR_ADMIN]));
        methods.insert(assign("GetFloorPlan"), Rule::roles(&[STAFF, FLOOR_ADMIN]));
        for method in ["Assign", "Release", "Reassign"] {
            methods.insert(assign(method), Rule::services(&["booking-svc"]));
        }
        methods.insert(notify("SendOnce"), Rule::services(&["booking-svc"]));
        for method in ["GetDelivery", "ListDeliveries"] {
            methods.insert(notify(method), Rule::roles(&[STAFF]));
        }
        for method in ["Check", "Watch"] {
            methods.insert(format!("/grpc.health.v1.Health/{method}"), Rule::open());
        }
        for service in ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"] {
            methods.insert(format!("/{service}/ServerReflectionInfo"), Rule::open());
        }
        Self { methods }
    }

    /// The defaults with the entries of the JSON policy `text` replacing or adding theirs.
    pub fn with_overrides(text: &str) -> anyhow::Result<Self> {
        let file: Policy = serde_json::from_str(text)?;
        let mut policy = Self::defaults();
        for (method, rule) in file.methods {
            if !method.starts_with('/') || method[1..].split('/').count() != 2 {
                anyhow::bail!("'{method}' is not a method path like /package.Service/Method");
            }
            policy.methods.insert(method, rule);
        }
        Ok(policy)
    }

    /// The defaults overridden by the policy file at `path`.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Self::with_overrides(&text)
    }

    /// The rule of the method at `path`; none: refused.
    pub fn rule(&self, path: &str) -> Option<&Rule> {
        self.methods.get(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn allowed(policy: &Policy, path: &str, service: Option<&str>, role_names: &[&str]) -> bool {
        policy.rule(path).is_some_and(|rule| rule.allows(service, &roles(role_names)))
    }

    #[test]
    fn defaults_follow_the_issue() {
        let p = Policy::defaults();
        assert!(allowed(&p, "/assign.v1.AssignService/Assign", Some("booking-svc"), &[]));
        assert!(!allowed(&p, "/assign.v1.AssignService/Assign", Some("notify-svc"), &[]));
        assert!(!allowed(&p, "/assign.v1.AssignService/Assign", None, &["staff", "floor-admin"]));
        assert!(allowed(&p, "/notify.v1.NotifyService/SendOnce", Some("booking-svc"), &[]));
        assert!(!allowed(&p, "/notify.v1.NotifyService/SendOnce", None, &["staff"]));
        assert!(allowed(&p, "/assign.v1.AssignService/PutFloorPlan", None, &["floor-admin"]));
        assert!(!allowed(&p, "/assign.v1.AssignService/PutFloorPlan", None, &["staff"]));
        assert!(allowed(&p, "/booking.v1.BookingService/ListBookings", None, &["staff"]));
        assert!(allowed(&p, "/booking.v1.BookingService/CreateBooking", None, &["staff"]));
        assert!(!allowed(&p, "/booking.v1.BookingService/CreateBooking", Some("assign-svc"), &[]));
        assert!(allowed(&p, "/grpc.health.v1.Health/Check", None, &[]));
        assert!(allowed(&p, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", None, &[]));
        assert!(!allowed(&p, "/booking.v1.BookingService/Unknown", None, &["staff", "floor-admin"]));
    }

    #[test]
    fn a_file_replaces_the_entries_it_names() {
        let p = Policy::with_overrides(
            r#"{"methods": {
                "/booking.v1.BookingService/CreateBooking": {"services": ["web-frontend"], "roles": ["staff"]},
                "/assign.v1.AssignService/PutFloorPlan": {"roles": ["staff"]},
                "/notify.v1.NotifyService/ListDeliveries": {}
            }}"#,
        )
        .expect("policy");
        assert!(allowed(&p, "/booking.v1.BookingService/CreateBooking", Some("web-frontend"), &[]));
        assert!(allowed(&p, "/assign.v1.AssignService/PutFloorPlan", None, &["staff"]));
        assert!(!allowed(&p, "/notify.v1.NotifyService/ListDeliveries", None, &["staff"]));
        assert!(
            allowed(&p, "/notify.v1.NotifyService/SendOnce", Some("booking-svc"), &[]),
            "others keep their defaults"
        );
        assert!(Policy::with_overrides(r#"{"methods": {"CreateBooking": {}}}"#).is_err());
        assert!(Policy::with_overrides(r#"{"methods": {"/a.B/C": {"role": ["x"]}}}"#).is_err());
    }
}
