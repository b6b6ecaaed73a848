//! ListBookings queries and their opaque page tokens.
//!
//! Keyset pagination on `(start_time, id)`. A token is bound to the filter it was made for,
//! so it cannot be replayed against another query.

use super::booking::BookingStatus;
use super::time::{from_micros, micros};
use super::values::RestaurantId;
use std::time::SystemTime;
use uuid::Uuid;

/// Default page size.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Largest page size.
pub const MAX_PAGE_SIZE: i64 = 500;

/// A parsed ListBookings request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub restaurant_id: RestaurantId,
    pub from: Option<SystemTime>,
    pub to: Option<SystemTime>,
    pub status: Option<BookingStatus>,
    pub page_size: i64,
    /// Start after this `(start_time, id)`.
    pub after: Option<(SystemTime, Uuid)>,
}

impl ListQuery {
    /// A stable fingerprint of the filter (not of the position).
    pub fn filter_hash(
        restaurant: &RestaurantId,
        from: Option<SystemTime>,
        to: Option<SystemTime>,
        status: Option<BookingStatus>,
    ) -> u64 {
        let text = format!(
            "{}|{:?}|{:?}|{}",
            restaurant.as_str(),
            from.map(micros),
            to.map(micros),
            status.map(|s| s.as_str()).unwrap_or("")
        );
        fnv1a(text.as_bytes())
    }
}

/// Parses a page size: 0 means the default; otherwise 1 to 500.
pub fn parse_page_size(value: i32) -> Result<i64, String> {
    match i64::from(value) {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        _ => Err(format!("must be 1 to {MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE})")),
    }
}

/// The token for the page after the booking at `(start, id)`.
pub fn encode_token(start: SystemTime, id: Uuid, filter_hash: u64) -> String {
    let mut bytes = Vec::with_capacity(33);
    bytes.push(1u8);
    bytes.extend_from_slice(&micros(start).to_be_bytes());
    bytes.extend_from_slice(id.as_bytes());
    bytes.extend_from_slice(&filter_hash.to_be_bytes());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a token made by [`encode_token`] for the same filter.
pub fn decode_token(token: &str, filter_hash: u64) -> Result<(SystemTime, Uuid), String> {
    let bad = || "not a page token from this query".to_string();
    if token.len() != 66 || !token.is_ascii() {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..33)
        .map(|i| u8::from_str_radix(&token[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    if bytes[0] != 1 {
        return Err(bad());
    }
    let start = i64::from_be_bytes(bytes[1..9].try_into().map_err(|_| bad())?);
    let id = Uuid::from_slice(&bytes[9..25]).map_err(|_| bad())?;
    let hash = u64::from_be_bytes(bytes[25..33].try_into().map_err(|_| bad())?);
    if hash != filter_hash {
        return Err(bad());
    }
    Ok((from_micros(start), id))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn page_sizes() {
        assert_eq!(parse_page_size(0), Ok(50));
        assert_eq!(parse_page_size(500), Ok(500));
        assert!(parse_page_size(501).is_err());
        assert!(parse_page_size(-1).is_err());
    }

    #[test]
    fn tokens_are_bound_to_their_filter() {
        let r = RestaurantId::parse("r1").unwrap();
        let h1 = ListQuery::filter_hash(&r, None, None, None);
        let h2 = ListQuery::filter_hash(&r, None, None, Some(BookingStatus::Pending));
        let token = encode_token(from_micros(5), Uuid::nil(), h1);
        assert_eq!(decode_token(&token, h1), Ok((from_micros(5), Uuid::nil())));
        assert!(decode_token(&token, h2).is_err());
        assert!(decode_token("garbage", h1).is_err());
        assert!(decode_token(&"zz".repeat(33), h1).is_err());
    }

    proptest! {
        #[test]
        fn tokens_round_trip(us in any::<i64>(), id in any::<u128>(), hash in any::<u64>()) {
            let id = Uuid::from_u128(id);
            let token = encode_token(from_micros(us.max(i64::MIN + 1)), id, hash);
            let (start, back) = decode_token(&token, hash).unwrap();
            prop_assert_eq!(micros(start), us.max(i64::MIN + 1));
            prop_assert_eq!(back, id);
        }
    }
}
