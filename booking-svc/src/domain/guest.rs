//! A guest's personal data: name, email address, phone number, and the notes.
//!
//! Each type's `parse` is the only way to make one from a request and answers a
//! description of what is wrong (the caller names the field); `from_stored` takes one back
//! from storage. These values are personal: they go to the database and into the guest's
//! own emails, never into logs, span fields or metric labels.

use serde::{Deserialize, Serialize};

/// `Debug` that shows the type and the value's length, never the value: these types end up
/// in `{:?}` of larger structs and errors, which may be logged.
macro_rules! redacted_debug {
    ($type:ident) => {
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($type), "(<{} chars redacted>)"), self.0.chars().count())
            }
        }
    };
}

/// Longest guest name.
pub const MAX_GUEST_NAME: usize = 200;
/// Longest email address (RFC 5321 path limit).
pub const MAX_EMAIL: usize = 254;
/// Longest phone number.
pub const MAX_PHONE: usize = 40;
/// Longest notes, in characters.
pub const MAX_NOTES: usize = 2_000;

/// A guest's name: required, at most 200 characters (trimmed).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GuestName(String);

redacted_debug!(GuestName);

impl GuestName {
    /// Parses a name.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("required".into());
        }
        if value.chars().count() > MAX_GUEST_NAME {
            return Err(format!("at most {MAX_GUEST_NAME} characters"));
        }
        if value.chars().any(char::is_control) {
            return Err("no control characters".into());
        }
        Ok(Self(value.to_string()))
    }

    /// A name read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A guest's email address (syntax checked, at most 254 characters).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GuestEmail(String);

redacted_debug!(GuestEmail);

impl GuestEmail {
    /// Parses an address such as `ada@example.com` (no display name).
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("required".into());
        }
        if value.len() > MAX_EMAIL {
            return Err(format!("at most {MAX_EMAIL} characters"));
        }
        let domain_ok = value.rsplit_once('@').is_some_and(|(_, domain)| {
            let labels: Vec<&str> = domain.split('.').collect();
            labels.len() >= 2
                && labels.iter().all(|l| {
                    !l.is_empty()
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.chars().all(|c| c.is_alphanumeric() || c == '-')
                })
        });
        if !email_address::EmailAddress::is_valid(value) || !domain_ok || value.contains(['<', '>', ' ']) {
            return Err("not a valid email address".into());
        }
        Ok(Self(value.to_string()))
    }

    /// An address read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An optional phone number: at most 40 characters of digits, spaces and `+-().`.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Phone(String);

redacted_debug!(Phone);

impl Phone {
    /// Parses a phone number; empty means none.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.chars().count() > MAX_PHONE {
            return Err(format!("at most {MAX_PHONE} characters"));
        }
        if !value.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c)) {
            return Err("only digits, spaces and + - ( ) .".into());
        }
        Ok(Self(value.to_string()))
    }

    /// A number read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The number ("" for none).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free-text notes, at most 2,000 characters.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Notes(String);

redacted_debug!(Notes);

impl Notes {
    /// Parses notes ("" clears them).
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.chars().count() > MAX_NOTES {
            return Err(format!("at most {MAX_NOTES} characters"));
        }
        Ok(Self(value.to_string()))
    }

    /// Notes read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let name = GuestName::parse("Zebulon Quixotevich").unwrap();
        let email = GuestEmail::parse("zq@example.com").unwrap();
        let text = format!(
            "{name:?} {email:?} {:?} {:?}",
            Phone::parse("+44 7700 900123").unwrap(),
            Notes::parse("kumquat").unwrap()
        );
        assert_eq!(
            text,
            "GuestName(<19 chars redacted>) GuestEmail(<14 chars redacted>) Phone(<15 chars redacted>) Notes(<7 chars redacted>)"
        );
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        for good in ["ada@example.com", "a.b+tag@mail.example.org", "x@sub-domain.example.co"] {
            assert!(GuestEmail::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "Ada <ada@example.com>",
            "a b@example.com",
            "ada@-x.com",
        ] {
            assert!(GuestEmail::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_phones_and_notes_have_limits() {
        assert!(Notes::parse(&"é".repeat(2_000)).is_ok());
        assert!(Notes::parse(&"x".repeat(2_001)).is_err());
        assert!(GuestName::parse("  ").is_err());
        assert_eq!(GuestName::parse(" Ada ").map(|n| n.as_str().to_string()), Ok("Ada".into()));
        assert!(Phone::parse("+44 (20) 7946-0018").is_ok());
        assert!(Phone::parse("call me").is_err());
    }
}
