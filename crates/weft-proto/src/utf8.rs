//! UTF-8 validation that runs as bytes arrive, and text payloads that stay zero-copy.
//!
//! [`Utf8Validator`] checks text in pieces: the bulk of each piece goes through `simdutf8`
//! (SIMD-wide), and a code point cut at a chunk or fragment edge is carried in a 4-byte state.
//! It fails at the first byte that cannot become valid, not at the end of the message.
//!
//! [`Utf8Bytes`] is a `bytes::Bytes` known to hold valid UTF-8, so text can be handed out
//! without copying. Its `as_str` is the one other place in the crate with `unsafe`: the
//! conversion without a second validation pass, sound because every constructor validates.
#![allow(unsafe_code)]

use bytes::Bytes;
use std::fmt;

/// The bytes seen so far cannot be the start of valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for InvalidUtf8 {}

/// Incremental UTF-8 validator.
///
/// ```
/// use weft_proto::utf8::Utf8Validator;
/// let euro = "€".as_bytes(); // e2 82 ac
/// let mut v = Utf8Validator::new();
/// v.feed(&euro[..1]).unwrap();
/// v.feed(&euro[1..]).unwrap();
/// assert!(v.finish().is_ok());
/// // Fails as soon as the bytes cannot become valid:
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(&[b'a', 0xff]).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub const fn new() -> Self {
        Utf8Validator {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Whether a code point is cut at the end of what was fed so far.
    pub fn is_partial(&self) -> bool {
        self.partial_len != 0
    }

    /// Validates the next piece of the text.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len != 0 {
            // Complete the code point that was cut at the previous edge.
            let have = self.partial_len as usize;
            let need = sequence_len(self.partial[0]).ok_or(InvalidUtf8)?;
            let take = (need - have).min(data.len());
            let mut cp = self.partial;
            cp[have..have + take].copy_from_slice(&data[..take]);
            let len = have + take;
            match simdutf8::compat::from_utf8(&cp[..len]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete: all of `data` was consumed into the code point.
                    self.partial = cp;
                    self.partial_len = len as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
            data = &data[take..];
        }
        // Fast path: pure-validation SIMD check of the whole piece.
        if simdutf8::basic::from_utf8(data).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let rest = &data[e.valid_up_to()..];
                // An incomplete but so-far valid prefix of at most 3 bytes.
                self.partial[..rest.len()].copy_from_slice(rest);
                self.partial_len = rest.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the text: a code point cut at the end is an error. Resets the validator.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let partial = self.partial_len != 0;
        self.partial_len = 0;
        if partial {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }

    /// Forgets any state, as at the start of a new text.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }
}

/// Length of the sequence that `first` starts, for a lead byte that can start one.
fn sequence_len(first: u8) -> Option<usize> {
    match first {
        0x00..=0x7f => Some(1),
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

/// Immutable bytes that are valid UTF-8: the payload of a text message, shared without copies.
///
/// ```
/// use weft_proto::utf8::Utf8Bytes;
/// let t = Utf8Bytes::from_static("héllo");
/// assert_eq!(t.as_str(), "héllo");
/// assert!(Utf8Bytes::try_from(bytes::Bytes::from_static(b"\xff")).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Text from a static string.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor of Utf8Bytes either takes a `str`/`String` or validates
        // the bytes (`TryFrom<Bytes>`) or is `from_validated` whose callers validated them with
        // `Utf8Validator`; the bytes are immutable afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The underlying bytes, taken.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Wraps bytes that the caller has already validated in full.
    pub(crate) fn from_validated(b: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&b).is_ok());
        Utf8Bytes(b)
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(b: Bytes) -> Result<Self, InvalidUtf8> {
        simdutf8::basic::from_utf8(&b).map_err(|_| InvalidUtf8)?;
        Ok(Utf8Bytes(b))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(t: Utf8Bytes) -> Bytes {
        t.0
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn validate_split(data: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &c in cuts {
            let c = c.clamp(start, data.len());
            v.feed(&data[start..c])?;
            start = c;
        }
        v.feed(&data[start..])?;
        v.finish()
    }

    proptest! {
        #[test]
        fn split_agrees_with_std(data in proptest::collection::vec(any::<u8>(), 0..64),
                                 mut cuts in proptest::collection::vec(0usize..64, 0..6)) {
            cuts.sort();
            let expect = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(validate_split(&data, &cuts).is_ok(), expect);
        }

        #[test]
        fn split_valid_text(s in "\\PC{0,40}", mut cuts in proptest::collection::vec(0usize..200, 0..6)) {
            cuts.sort();
            prop_assert!(validate_split(s.as_bytes(), &cuts).is_ok());
        }

        #[test]
        fn fails_at_first_impossible_prefix(s in "\\PC{0,20}", bad in prop_oneof![Just(vec![0xffu8]), Just(vec![0xc0]), Just(vec![0xed, 0xa0]), Just(vec![0xf4, 0x90]), Just(vec![0xe0, 0x80])]) {
            // Feeding byte by byte, the error must come no later than the bad bytes.
            let mut data = s.into_bytes();
            let bad_at = data.len();
            data.extend_from_slice(&bad);
            let mut v = Utf8Validator::new();
            let mut failed_at = None;
            for (i, b) in data.iter().enumerate() {
                if v.feed(std::slice::from_ref(b)).is_err() { failed_at = Some(i); break; }
            }
            let at = failed_at.expect("must fail before finish");
            prop_assert!(at < bad_at + bad.len());
        }
    }

    #[test]
    fn incomplete_at_end_fails_finish() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xe2, 0x82]).unwrap();
        assert!(v.is_partial());
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }

    #[test]
    fn surrogate_rejected_early() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xed]).unwrap();
        assert_eq!(v.feed(&[0xa0]), Err(InvalidUtf8));
    }
}
