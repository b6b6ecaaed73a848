//! Where an email goes: a valid address and an optional display name.
//!
//! Parsed once at the edge; the name is one line of printable text, so it can never smuggle
//! a header into the message.

use super::limits::{Limits, check_line};

/// Longest email address (RFC 5321 path limit).
const MAX_EMAIL_CHARS: usize = 254;

/// Where an email goes: a valid address and an optional display name.
#[derive(Clone, PartialEq, Eq)]
pub struct Recipient {
    email: String,
    name: String,
}

/// Never the address or the name: a recipient may end up in a logged `{:?}`.
impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recipient(<redacted>)")
    }
}

impl Recipient {
    /// Parses the recipient; on failure names each wrong field (`email`, `name`).
    pub fn parse(email: &str, name: &str, limits: &Limits) -> Result<Recipient, Vec<(&'static str, String)>> {
        let mut wrong = Vec::new();
        let email = email.trim();
        if email.is_empty() {
            wrong.push(("email", "required".to_string()));
        } else if email.chars().count() > MAX_EMAIL_CHARS {
            wrong.push(("email", format!("at most {MAX_EMAIL_CHARS} characters")));
        } else if email.parse::<lettre::Address>().is_err() {
            wrong.push(("email", "not a valid email address".to_string()));
        }
        let name = name.trim();
        if let Err(description) = check_line(name, limits.max_name_chars) {
            wrong.push(("name", description));
        }
        if wrong.is_empty() { Ok(Recipient { email: email.to_string(), name: name.to_string() }) } else { Err(wrong) }
    }

    /// A recipient as the ledger stored it (already parsed once).
    pub fn from_stored(email: String, name: String) -> Recipient {
        Recipient { email, name }
    }

    /// The email address.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The display name; empty when none was given.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(result: Result<impl std::fmt::Debug, Vec<(&'static str, String)>>) -> Vec<&'static str> {
        result.expect_err("should be refused").into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn a_valid_recipient_is_trimmed() {
        let recipient = Recipient::parse(" ada@example.com ", " Ada Lovelace ", &Limits::CONTRACT).unwrap();
        assert_eq!(recipient.email(), "ada@example.com");
        assert_eq!(recipient.name(), "Ada Lovelace");
        assert!(Recipient::parse("ada@example.com", "", &Limits::CONTRACT).is_ok());
    }

    #[test]
    fn a_wrong_recipient_names_each_field() {
        assert_eq!(fields(Recipient::parse("", "x", &Limits::CONTRACT)), vec!["email"]);
        assert_eq!(fields(Recipient::parse("not-an-email", "x", &Limits::CONTRACT)), vec!["email"]);
        assert_eq!(fields(Recipient::parse("a@b.c", &"n".repeat(201), &Limits::CONTRACT)), vec!["name"]);
        assert_eq!(fields(Recipient::parse("a@b.c", "Eve\r\nBcc: x@y.z", &Limits::CONTRACT)), vec!["name"]);
        assert_eq!(fields(Recipient::parse("a b@c", &"n".repeat(201), &Limits::CONTRACT)), vec!["email", "name"]);
        assert!(Recipient::parse("a@b.c", &"n".repeat(200), &Limits::CONTRACT).is_ok());
    }
}
