//! The handshake's two keys: the client's random `Sec-WebSocket-Key` and the
//! server's `Sec-WebSocket-Accept` derived from it (RFC 6455 §4.1, §4.2.2).
//!
//! These are usable alone (REQUIREMENTS H3), for applications that run their
//! own HTTP stack and only need the WebSocket-specific pieces.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID that RFC 6455 §1.3 appends to the client's key before hashing.
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Length of a base64-encoded 16-byte nonce, padding included.
const ENCODED_KEY_LEN: usize = 24;

/// A fresh `Sec-WebSocket-Key`: 16 random bytes from the thread-local
/// generator of `rand`, base64-encoded (24 characters).
///
/// ```
/// use weft_proto::handshake::{is_valid_key, request_key};
/// let key = request_key();
/// assert!(is_valid_key(key.as_bytes()));
/// ```
pub fn request_key() -> String {
    let nonce: [u8; 16] = rand::random();
    encode_key(&nonce)
}

/// The `Sec-WebSocket-Key` for a nonce chosen by the caller, for callers that
/// bring their own random source or need a repeatable key in tests.
///
/// ```
/// use weft_proto::handshake::encode_key;
/// assert_eq!(encode_key(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
/// ```
pub fn encode_key(nonce: &[u8; 16]) -> String {
    STANDARD.encode(nonce)
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`:
/// base64 of the SHA-1 of the key (as sent, without surrounding whitespace)
/// followed by [`ACCEPT_GUID`].
///
/// ```
/// use weft_proto::handshake::accept_key;
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha1.finalize())
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: standard base64 (with its
/// `==` padding) that decodes to exactly 16 bytes.
///
/// ```
/// use weft_proto::handshake::is_valid_key;
/// assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
/// assert!(!is_valid_key(b"c2hvcnQ=")); // decodes to 5 bytes
/// ```
pub fn is_valid_key(key: &[u8]) -> bool {
    // A 16-byte value always encodes to 24 characters; checking the length
    // first keeps an attacker's long header from being decoded at all.
    if key.len() != ENCODED_KEY_LEN {
        return false;
    }
    let mut decoded = [0u8; 18];
    matches!(STANDARD.decode_slice(key, &mut decoded), Ok(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn request_keys_are_valid_and_differ() {
        let a = request_key();
        let b = request_key();
        assert_eq!(a.len(), 24);
        assert!(is_valid_key(a.as_bytes()));
        assert!(is_valid_key(b.as_bytes()));
        assert_ne!(a, b, "two keys from the random source were equal");
    }

    #[test]
    fn key_validity_by_decoded_length() {
        assert!(is_valid_key(encode_key(&[7u8; 16]).as_bytes()));
        assert!(!is_valid_key(STANDARD.encode([7u8; 15]).as_bytes()));
        assert!(!is_valid_key(STANDARD.encode([7u8; 17]).as_bytes()));
        assert!(!is_valid_key(b""));
        // 24 characters, but not base64.
        assert!(!is_valid_key(b"!!!!!!!!!!!!!!!!!!!!!!!!"));
        // Right length without padding: 16 bytes need "==".
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQAA"));
        // Unpadded 16-byte encoding (22 characters) is not accepted.
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ"));
    }
}
