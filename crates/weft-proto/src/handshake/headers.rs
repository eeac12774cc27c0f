//! Header checks of the opening handshake, usable alone (REQUIREMENTS H3):
//! comma-separated token lists (`Connection: keep-alive, Upgrade`), the
//! subprotocol list of `Sec-WebSocket-Protocol` spread over any number of
//! header lines, and the `token` grammar of HTTP (RFC 9110 §5.6.2).

use http::header::{HeaderMap, HeaderName, SEC_WEBSOCKET_PROTOCOL};

/// Whether `c` is a `tchar`, a character allowed in an HTTP token.
pub(crate) fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Whether `s` is a non-empty HTTP token (RFC 9110 §5.6.2), the syntax of
/// subprotocol names, extension names and header names.
///
/// ```
/// use weft_proto::handshake::is_token;
/// assert!(is_token("chat.v2"));
/// assert!(!is_token("two words"));
/// assert!(!is_token(""));
/// ```
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Trims HTTP optional whitespace (spaces and tabs) from both ends.
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// Whether a header value that is a comma-separated list contains `token`,
/// compared case-insensitively, with the whitespace around each element
/// ignored.
///
/// This is the check for `Connection: keep-alive, Upgrade` and
/// `Upgrade: websocket`.
///
/// ```
/// use weft_proto::handshake::header_contains_token;
/// assert!(header_contains_token(b"keep-alive, Upgrade", "upgrade"));
/// assert!(header_contains_token(b"WebSocket", "websocket"));
/// assert!(!header_contains_token(b"keep-alive", "upgrade"));
/// assert!(!header_contains_token(b"upgrades", "upgrade"));
/// ```
pub fn header_contains_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&c| c == b',')
        .any(|element| trim_ows(element).eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether any of the header lines called `name` contains `token` in its
/// comma-separated list (see [`header_contains_token`]). A header sent on
/// several lines means the same as one line with the values joined by commas.
///
/// ```
/// use http::header::{HeaderMap, HeaderValue, CONNECTION};
/// use weft_proto::handshake::headers_contain_token;
/// let mut headers = HeaderMap::new();
/// headers.append(CONNECTION, HeaderValue::from_static("keep-alive"));
/// headers.append(CONNECTION, HeaderValue::from_static("Upgrade"));
/// assert!(headers_contain_token(&headers, &CONNECTION, "upgrade"));
/// ```
pub fn headers_contain_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|value| header_contains_token(value.as_bytes(), token))
}

/// The elements of a comma-separated header list, across every line of the
/// header `name`, trimmed, in order, without the empty elements that the
/// list syntax allows (RFC 9110 §5.6.1). Lines that are not valid UTF-8 are
/// skipped.
pub fn header_list<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|element| element.trim_matches([' ', '\t']))
        .filter(|element| !element.is_empty())
        .collect()
}

/// The subprotocols a client offers in `Sec-WebSocket-Protocol`, in the
/// client's order of preference, across every line of the header.
///
/// ```
/// use http::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
/// use weft_proto::handshake::protocols;
/// let mut headers = HeaderMap::new();
/// headers.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat, superchat"));
/// headers.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("mqtt"));
/// assert_eq!(protocols(&headers), ["chat", "superchat", "mqtt"]);
/// ```
pub fn protocols(headers: &HeaderMap) -> Vec<&str> {
    header_list(headers, &SEC_WEBSOCKET_PROTOCOL)
}

/// Splits an `Authority`-like `host[:port]` string as found in a `Host`
/// header or a URL: no user information, a non-empty host (an IPv6 literal
/// in brackets), and a port, if any, that fits in 16 bits. An empty port
/// (`host:`) counts as absent, as RFC 3986 allows.
pub(crate) fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if rest.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    // reg-name characters (RFC 3986 §3.2.2: unreserved, pct-encoded,
    // sub-delims), plus ':' inside an IP literal's brackets.
    let reg_name = |c: u8| c.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&c);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(literal) => !literal.is_empty() && literal.bytes().all(|c| reg_name(c) || c == b':'),
        None => !host.is_empty() && host.bytes().all(reg_name),
    };
    if !host_ok {
        return None;
    }
    match port {
        None | Some("") => Some((host, None)),
        Some(port) if port.bytes().all(|c| c.is_ascii_digit()) => {
            port.parse::<u16>().ok().map(|p| (host, Some(p)))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderValue, CONNECTION};

    #[test]
    fn token_lists() {
        assert!(header_contains_token(b"Upgrade", "upgrade"));
        assert!(header_contains_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(header_contains_token(b"keep-alive,uPgRaDe", "Upgrade"));
        assert!(header_contains_token(b" \tupgrade\t , close", "upgrade"));
        assert!(header_contains_token(b",,upgrade,", "upgrade"));
        assert!(!header_contains_token(b"keep-alive", "upgrade"));
        assert!(!header_contains_token(b"upgrade-insecure", "upgrade"));
        assert!(!header_contains_token(b"up grade", "upgrade"));
        assert!(!header_contains_token(b"", "upgrade"));
        assert!(!header_contains_token(b"keep-alive; upgrade", "upgrade"));
    }

    #[test]
    fn token_list_across_lines() {
        let mut headers = HeaderMap::new();
        headers.append(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!headers_contain_token(&headers, &CONNECTION, "upgrade"));
        headers.append(CONNECTION, HeaderValue::from_static("close, UPGRADE"));
        assert!(headers_contain_token(&headers, &CONNECTION, "upgrade"));
    }

    #[test]
    fn protocol_lines() {
        let mut headers = HeaderMap::new();
        assert!(protocols(&headers).is_empty());
        headers.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("a ,b,,"));
        headers.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(""));
        headers.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("\tc"));
        assert_eq!(protocols(&headers), ["a", "b", "c"]);
    }

    #[test]
    fn tokens() {
        assert!(is_token("permessage-deflate"));
        assert!(is_token("x!#$%&'*+-.^_`|~9"));
        assert!(!is_token("a,b"));
        assert!(!is_token("a;b"));
        assert!(!is_token("\"a\""));
        assert!(!is_token("é"));
    }

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("example.com"), Some(("example.com", None)));
        assert_eq!(split_host_port("h:8080"), Some(("h", Some(8080))));
        assert_eq!(split_host_port("h:"), Some(("h", None)));
        assert_eq!(split_host_port("[::1]:9"), Some(("[::1]", Some(9))));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]", None)));
        assert_eq!(split_host_port("h:99999"), None);
        assert_eq!(split_host_port("h:x"), None);
        assert_eq!(split_host_port("h:+1"), None);
        assert_eq!(split_host_port("u@h"), None);
        assert_eq!(split_host_port(""), None);
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("a b"), None);
        assert_eq!(split_host_port("[::1]x"), None);
        assert_eq!(split_host_port("h:1:2"), None);
        assert_eq!(split_host_port("a[b"), None);
        assert_eq!(split_host_port("[]"), None);
    }
}
