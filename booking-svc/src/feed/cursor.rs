//! Cursors: a position in the feed as clients hold it, opaque text.
//!
//! A cursor names the position of the last change a client processed (0: before the
//! first). It is a small versioned struct (format, position, check) in hex, so a cursor
//! mistyped or cut short is refused rather than read as another position.

/// The position of the last change processed; the feed resumes right after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(i64);

/// The format of the cursors this code writes.
const FORMAT: u8 = 1;
/// Bytes: format, position (8), check (4).
const LEN: usize = 13;

impl Cursor {
    /// Right after the change at `position` (0: before every change).
    pub fn after(position: i64) -> Self {
        Self(position.max(0))
    }

    /// The position of the last change processed.
    pub fn position(&self) -> i64 {
        self.0
    }

    /// The text clients hold.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(LEN);
        bytes.push(FORMAT);
        bytes.extend_from_slice(&self.0.to_be_bytes());
        let check = check(&bytes);
        bytes.extend_from_slice(&check.to_be_bytes());
        const HEX: &[u8; 16] = b"0123456789abcdef";
        bytes.iter().flat_map(|b| [HEX[usize::from(b >> 4)] as char, HEX[usize::from(b & 0xf)] as char]).collect()
    }

    /// Reads a cursor made by [`Cursor::encode`].
    pub fn decode(text: &str) -> Result<Self, String> {
        let bad = || "not a cursor of this feed (pass back a BookingChange's cursor as it came)".to_string();
        if text.len() != 2 * LEN || !text.is_ascii() {
            return Err(bad());
        }
        let bytes: Vec<u8> = (0..LEN)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let (body, tail) = bytes.split_at(LEN - 4);
        if body[0] != FORMAT || tail != check(body).to_be_bytes() {
            return Err(bad());
        }
        let position = i64::from_be_bytes(body[1..9].try_into().map_err(|_| bad())?);
        if position < 0 {
            return Err(bad());
        }
        Ok(Self(position))
    }
}

/// FNV-1a of `bytes`, folded to 32 bits.
fn check(bytes: &[u8]) -> u32 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3));
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_cursor_is_short_opaque_text() {
        let text = Cursor::after(42).encode();
        assert_eq!(text.len(), 26);
        assert!(text.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(Cursor::decode(&text), Ok(Cursor::after(42)));
        assert_eq!(Cursor::after(-5), Cursor::after(0));
    }

    #[test]
    fn mistyped_cut_or_foreign_cursors_are_refused() {
        let text = Cursor::after(7).encode();
        let mut typo = text.clone().into_bytes();
        typo[10] = if typo[10] == b'0' { b'1' } else { b'0' };
        for bad in [
            String::new(),
            "garbage".to_string(),
            text[..24].to_string(),
            format!("{text}00"),
            String::from_utf8(typo).unwrap(),
            "zz".repeat(LEN),
            text.replacen("01", "02", 1),
        ] {
            assert!(Cursor::decode(&bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn cursors_round_trip(position in 0i64..=i64::MAX) {
            prop_assert_eq!(Cursor::decode(&Cursor::after(position).encode()), Ok(Cursor::after(position)));
        }

        #[test]
        fn any_one_changed_digit_is_refused(position in 0i64..1_000_000, at in 0usize..2 * LEN, digit in 0u32..16) {
            let text = Cursor::after(position).encode();
            let new = char::from_digit(digit, 16).unwrap();
            prop_assume!(text.as_bytes()[at] as char != new);
            let mut changed: Vec<char> = text.chars().collect();
            changed[at] = new;
            let changed: String = changed.into_iter().collect();
            prop_assert!(Cursor::decode(&changed).is_err());
        }
    }
}
