//! HTTP/1.1 head plumbing shared by both sides: the bounded window an
//! incremental parse looks at, turning `httparse` headers into an
//! [`http::HeaderMap`], and writing a response head.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

/// The most header slots handed to `httparse`, whatever the configured
/// limit: `HeaderMap` cannot hold many more, and it keeps the allocation
/// bounded.
const MAX_HEADER_SLOTS: usize = 1 << 14;

/// The part of `buf` a head must fit in: its first `max_head` bytes.
pub(crate) fn window(buf: &[u8], max_head: usize) -> &[u8] {
    buf.get(..max_head).unwrap_or(buf)
}

/// How many header slots to give `httparse` for `window`: at most
/// `max_headers`, and never more than the window could hold (a header line
/// takes at least 3 bytes), so a one-byte-at-a-time caller does not pay for
/// a large limit on every call.
pub(crate) fn header_slots(window: &[u8], max_headers: usize) -> usize {
    max_headers.min(window.len() / 3 + 1).min(MAX_HEADER_SLOTS)
}

/// The effective header limit reported when `httparse` runs out of slots.
pub(crate) fn effective_header_limit(max_headers: usize) -> usize {
    max_headers.min(MAX_HEADER_SLOTS)
}

/// Why parsed headers could not become a `HeaderMap`.
pub(crate) enum HeaderMapError {
    /// A name or value that `http` refuses.
    Invalid(&'static str),
    /// More headers than a `HeaderMap` holds.
    TooMany,
}

/// Copies parsed headers into a `HeaderMap`, keeping repeated lines.
pub(crate) fn to_header_map(headers: &[httparse::Header<'_>]) -> Result<HeaderMap, HeaderMapError> {
    let mut map =
        HeaderMap::try_with_capacity(headers.len()).map_err(|_| HeaderMapError::TooMany)?;
    for header in headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| HeaderMapError::Invalid("invalid header name"))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| HeaderMapError::Invalid("invalid header value"))?;
        map.try_append(name, value)
            .map_err(|_| HeaderMapError::TooMany)?;
    }
    Ok(map)
}

/// A short description of an `httparse` error.
pub(crate) fn httparse_reason(err: httparse::Error) -> &'static str {
    match err {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid token in the request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "not an HTTP/1.x message",
    }
}

/// Appends an HTTP/1.1 status line, the headers and the blank line.
pub(crate) fn write_head(status: StatusCode, headers: &HeaderMap, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(headers, out);
    out.extend_from_slice(b"\r\n");
}

/// Appends `name: value\r\n` for every header, repeated lines included.
pub(crate) fn write_headers(headers: &HeaderMap, out: &mut Vec<u8>) {
    for (name, value) in headers {
        write_name(name.as_str(), out);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends a header name in its usual capitalisation (`Content-Length`,
/// `Sec-WebSocket-Accept`). Names are case-insensitive, but some peers are
/// not, and `http` stores them in lower case.
pub(crate) fn write_name(name: &str, out: &mut Vec<u8>) {
    let rest = match name.strip_prefix("sec-websocket-") {
        Some(rest) => {
            out.extend_from_slice(b"Sec-WebSocket-");
            rest
        }
        None => name,
    };
    let mut word_start = true;
    for &c in rest.as_bytes() {
        out.push(if word_start {
            c.to_ascii_uppercase()
        } else {
            c
        });
        word_start = c == b'-';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> String {
        let mut out = Vec::new();
        write_name(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn header_name_case() {
        assert_eq!(name("sec-websocket-accept"), "Sec-WebSocket-Accept");
        assert_eq!(name("content-length"), "Content-Length");
        assert_eq!(name("x-a--b"), "X-A--B");
        assert_eq!(name("host"), "Host");
    }

    #[test]
    fn slots_are_bounded_by_window_and_limit() {
        assert_eq!(header_slots(b"", 64), 1);
        assert_eq!(header_slots(&[0; 30], 64), 11);
        assert_eq!(header_slots(&[0; 3000], 64), 64);
        assert_eq!(header_slots(&[0; 300_000], usize::MAX), MAX_HEADER_SLOTS);
    }
}
