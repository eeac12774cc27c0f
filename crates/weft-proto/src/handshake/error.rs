//! [`HandshakeError`]: everything that can go wrong in the opening
//! handshake, on either side, and the HTTP status a server answers with.
//!
//! The variants fall in three groups:
//!
//! - the client's request is not an acceptable WebSocket handshake (found by
//!   [`parse_request`](super::parse_request),
//!   [`Request::from_http`](super::Request::from_http) or
//!   [`Request::from_extended_connect`](super::Request::from_extended_connect));
//!   [`HandshakeError::status`] is the 4xx answer and
//!   [`rejection_bytes`](super::rejection_bytes) writes it
//!   ([`rejection_for`](super::rejection_for) makes it for an HTTP library);
//! - the application asked for something impossible while building a
//!   handshake (a subprotocol the client did not offer, a header value with a
//!   line break, a URL that is not `ws://` or `wss://`): status 500;
//! - the server's response is not an acceptable answer (found by
//!   [`parse_response`](super::parse_response) or
//!   [`check_extended_connect_response`](super::check_extended_connect_response)):
//!   status 502, what a gateway relaying the connection would answer.

use std::fmt;

use http::{Method, StatusCode, Version};

use super::extensions::ExtensionError;

/// Why an opening handshake failed. Each variant says what happened;
/// [`status`](HandshakeError::status) gives the HTTP status to answer with.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeError {
    // ----- The client's request, as checked by the server -----
    /// The request is not valid HTTP/1.x (400).
    MalformedRequest {
        /// What the HTTP parser found wrong.
        reason: &'static str,
    },
    /// The request head is larger than the limit, in bytes (431).
    HeadTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The request has more header lines than the limit (431).
    TooManyHeaders {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The request's method is not GET (405).
    MethodNotAllowed {
        /// The method the client used.
        method: Method,
    },
    /// The request is HTTP/1.0; the handshake needs HTTP/1.1 or later (400).
    UnsupportedHttpVersion,
    /// The request target is not a path (`/chat?room=1`) or an absolute URI (400).
    InvalidRequestTarget,
    /// The request has no `Host` header (400).
    MissingHost,
    /// The `Host` header is not `host[:port]`, or appears more than once (400).
    InvalidHost,
    /// The request has no `Upgrade` header (400).
    MissingUpgrade,
    /// The `Upgrade` header does not contain the token `websocket` (400).
    InvalidUpgrade,
    /// The request has no `Connection` header (400).
    MissingConnection,
    /// The `Connection` header does not contain the token `Upgrade` (400).
    InvalidConnection,
    /// The request has no `Sec-WebSocket-Version` header (426; the answer
    /// carries `Sec-WebSocket-Version: 13`).
    MissingVersion,
    /// `Sec-WebSocket-Version` is not exactly `13` (426; the answer carries
    /// `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
    /// The request has no `Sec-WebSocket-Key` header (400).
    MissingKey,
    /// `Sec-WebSocket-Key` is not the base64 of 16 bytes, or appears more
    /// than once (400).
    InvalidKey,
    /// `Sec-WebSocket-Protocol` is not a comma-separated list of tokens (400).
    InvalidProtocols,
    /// `Sec-WebSocket-Extensions` does not follow RFC 6455 §9.1 (400).
    MalformedExtensions(ExtensionError),
    /// A request given as an extended CONNECT (RFC 8441) has another
    /// method (405; the answer carries `Allow: CONNECT`).
    MethodNotConnect {
        /// The method the client used.
        method: Method,
    },
    /// A request given as an extended CONNECT is not HTTP/2 or later, the
    /// versions that have the `:protocol` pseudo-header (400).
    ExtendedConnectVersion {
        /// The request's version.
        version: Version,
    },
    /// The CONNECT request has no `:protocol` pseudo-header: it is a plain
    /// CONNECT, a tunnel, not a WebSocket handshake (400).
    MissingConnectProtocol,
    /// The extended CONNECT's `:protocol` is not `websocket` (400).
    InvalidConnectProtocol {
        /// The protocol asked for.
        protocol: String,
    },
    /// The extended CONNECT has neither an `:authority` nor a `Host` header (400).
    MissingAuthority,
    /// The extended CONNECT's `:authority` is not `host[:port]` (400).
    InvalidAuthority,

    // ----- The application's own mistakes while building a handshake -----
    /// The server application selected a subprotocol that the client did
    /// not offer (500).
    ProtocolNotOffered {
        /// The subprotocol that was selected.
        protocol: String,
    },
    /// The server application accepted an extension that the client did
    /// not offer (500).
    ExtensionNotOffered {
        /// The extension's name.
        name: String,
    },
    /// A header given to a handshake builder is not valid, or is one the
    /// handshake sets itself (500).
    InvalidHeader {
        /// The header's name, as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The URL given to the client is not a valid WebSocket URL (500).
    InvalidUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The URL's scheme is neither `ws` nor `wss` (500).
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
    },

    // ----- The server's response, as checked by the client -----
    /// The response is not valid HTTP/1.x (502).
    MalformedResponse {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The response head is larger than the limit, in bytes (502).
    ResponseTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The server answered with a status other than 101 (502), or other
    /// than 200 to an extended CONNECT. The whole head is kept: a 401
    /// carries `WWW-Authenticate`, a 3xx `Location`.
    UnexpectedStatus {
        /// The response head (status, version and headers).
        response: Box<http::Response<()>>,
        /// The length of the head in the input; a body, if any, follows.
        /// 0 for a response that came through an HTTP library
        /// ([`check_extended_connect_response`](super::check_extended_connect_response)).
        head_len: usize,
    },
    /// The 101 response has no `Upgrade` header containing `websocket` (502).
    InvalidResponseUpgrade,
    /// The 101 response has no `Connection` header containing `Upgrade` (502).
    InvalidResponseConnection,
    /// The 101 response has no `Sec-WebSocket-Accept` header (502).
    MissingAccept,
    /// `Sec-WebSocket-Accept` does not match the key that was sent (502).
    AcceptMismatch,
    /// The server selected a subprotocol that the client did not offer
    /// (502), or any subprotocol when the client offered none.
    UnrequestedProtocol {
        /// The subprotocol the server selected.
        protocol: String,
    },
    /// The server answered with an extension that the client did not offer (502).
    UnrequestedExtension {
        /// The extension's name.
        name: String,
    },
    /// The response's `Sec-WebSocket-Extensions` does not follow RFC 6455 §9.1 (502).
    MalformedResponseExtensions(ExtensionError),
}

impl HandshakeError {
    /// The HTTP status a server answers with: 400, 405, 426 or 431 for a
    /// request it refuses; 500 for the application's own mistakes; 502 for
    /// a bad response seen by a client (what a gateway would answer).
    ///
    /// ```
    /// use http::StatusCode;
    /// use weft_proto::handshake::HandshakeError;
    /// assert_eq!(HandshakeError::UnsupportedVersion.status(), StatusCode::UPGRADE_REQUIRED);
    /// ```
    pub fn status(&self) -> StatusCode {
        use HandshakeError::*;
        match self {
            MalformedRequest { .. }
            | UnsupportedHttpVersion
            | InvalidRequestTarget
            | MissingHost
            | InvalidHost
            | MissingUpgrade
            | InvalidUpgrade
            | MissingConnection
            | InvalidConnection
            | MissingKey
            | InvalidKey
            | InvalidProtocols
            | MalformedExtensions(_)
            | ExtendedConnectVersion { .. }
            | MissingConnectProtocol
            | InvalidConnectProtocol { .. }
            | MissingAuthority
            | InvalidAuthority => StatusCode::BAD_REQUEST,
            HeadTooLarge { .. } | TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            MethodNotAllowed { .. } | MethodNotConnect { .. } => StatusCode::METHOD_NOT_ALLOWED,
            MissingVersion | UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            ProtocolNotOffered { .. }
            | ExtensionNotOffered { .. }
            | InvalidHeader { .. }
            | InvalidUrl { .. }
            | UnsupportedScheme { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            MalformedResponse { .. }
            | ResponseTooLarge { .. }
            | UnexpectedStatus { .. }
            | InvalidResponseUpgrade
            | InvalidResponseConnection
            | MissingAccept
            | AcceptMismatch
            | UnrequestedProtocol { .. }
            | UnrequestedExtension { .. }
            | MalformedResponseExtensions(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HandshakeError::*;
        match self {
            MalformedRequest { reason } => write!(f, "malformed HTTP request: {reason}"),
            HeadTooLarge { limit } => {
                write!(f, "the request head is larger than {limit} bytes")
            }
            TooManyHeaders { limit } => {
                write!(f, "the request has more than {limit} header lines")
            }
            MethodNotAllowed { method } => write!(
                f,
                "the WebSocket handshake must use GET, not {}",
                method.as_str()
            ),
            UnsupportedHttpVersion => f.write_str(
                "the request is HTTP/1.0; the WebSocket handshake needs HTTP/1.1 or later",
            ),
            InvalidRequestTarget => f.write_str(
                "the request target is not a path (such as /chat?room=1) or an absolute URI",
            ),
            MissingHost => f.write_str("the request has no Host header"),
            InvalidHost => f.write_str("the Host header is not host[:port], or appears twice"),
            MissingUpgrade => f.write_str("the request has no Upgrade header"),
            InvalidUpgrade => f.write_str("the Upgrade header does not contain \"websocket\""),
            MissingConnection => f.write_str("the request has no Connection header"),
            InvalidConnection => f.write_str("the Connection header does not contain \"Upgrade\""),
            MissingVersion => f.write_str(
                "the request has no Sec-WebSocket-Version header; this server speaks version 13",
            ),
            UnsupportedVersion => {
                f.write_str("Sec-WebSocket-Version is not 13, the only version this server speaks")
            }
            MissingKey => f.write_str("the request has no Sec-WebSocket-Key header"),
            InvalidKey => f.write_str(
                "Sec-WebSocket-Key is not the base64 encoding of 16 bytes, or appears twice",
            ),
            InvalidProtocols => {
                f.write_str("Sec-WebSocket-Protocol is not a comma-separated list of tokens")
            }
            MalformedExtensions(err) => write!(f, "{err}"),
            MethodNotConnect { method } => write!(
                f,
                "a WebSocket handshake over HTTP/2 must be an extended CONNECT, not {}",
                method.as_str()
            ),
            ExtendedConnectVersion { version } => write!(
                f,
                "an extended CONNECT needs HTTP/2 or later; the request is {version:?}"
            ),
            MissingConnectProtocol => f.write_str(
                "the CONNECT request has no :protocol pseudo-header; a WebSocket needs \
                 :protocol websocket",
            ),
            InvalidConnectProtocol { protocol } => write!(
                f,
                "the extended CONNECT asks for the protocol {protocol:?}, not \"websocket\""
            ),
            MissingAuthority => {
                f.write_str("the extended CONNECT has neither an :authority nor a Host header")
            }
            InvalidAuthority => f.write_str("the :authority is not host[:port]"),
            ProtocolNotOffered { protocol } => {
                write!(f, "the client did not offer the subprotocol {protocol:?}")
            }
            ExtensionNotOffered { name } => {
                write!(f, "the client did not offer the extension {name:?}")
            }
            InvalidHeader { name, reason } => write!(f, "invalid header {name:?}: {reason}"),
            InvalidUrl { reason } => write!(f, "invalid WebSocket URL: {reason}"),
            UnsupportedScheme { scheme } => write!(
                f,
                "unsupported URL scheme {scheme:?}: a WebSocket URL starts with ws:// or wss://"
            ),
            MalformedResponse { reason } => {
                write!(f, "malformed handshake response: {reason}")
            }
            ResponseTooLarge { limit } => {
                write!(f, "the server's response head is larger than {limit} bytes")
            }
            UnexpectedStatus { response, .. } => {
                let status = response.status();
                let expected = if response.version() >= Version::HTTP_2 {
                    "200 OK to its extended CONNECT"
                } else {
                    "101 Switching Protocols"
                };
                write!(
                    f,
                    "the server answered {} {} instead of {expected}",
                    status.as_str(),
                    status.canonical_reason().unwrap_or("")
                )
            }
            InvalidResponseUpgrade => {
                f.write_str("the server's 101 response has no \"Upgrade: websocket\"")
            }
            InvalidResponseConnection => {
                f.write_str("the server's 101 response has no \"Connection: Upgrade\"")
            }
            MissingAccept => f.write_str("the server's 101 response has no Sec-WebSocket-Accept"),
            AcceptMismatch => f.write_str(
                "Sec-WebSocket-Accept in the server's response does not match the key sent",
            ),
            UnrequestedProtocol { protocol } => write!(
                f,
                "the server selected the subprotocol {protocol:?}, which the client did not offer"
            ),
            UnrequestedExtension { name } => write!(
                f,
                "the server accepted the extension {name:?}, which the client did not offer"
            ),
            MalformedResponseExtensions(err) => write!(f, "in the server's response: {err}"),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::MalformedExtensions(err)
            | HandshakeError::MalformedResponseExtensions(err) => Some(err),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_by_group() {
        assert_eq!(
            HandshakeError::MethodNotAllowed {
                method: Method::POST
            }
            .status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            HandshakeError::HeadTooLarge { limit: 1 }.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert_eq!(
            HandshakeError::MissingVersion.status(),
            StatusCode::UPGRADE_REQUIRED
        );
        assert_eq!(HandshakeError::InvalidKey.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            HandshakeError::ProtocolNotOffered {
                protocol: "x".into()
            }
            .status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            HandshakeError::AcceptMismatch.status(),
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn display_says_what_happened() {
        let err = HandshakeError::MethodNotAllowed {
            method: Method::POST,
        };
        assert_eq!(
            err.to_string(),
            "the WebSocket handshake must use GET, not POST"
        );
        let mut response = http::Response::new(());
        *response.status_mut() = StatusCode::FORBIDDEN;
        let err = HandshakeError::UnexpectedStatus {
            response: Box::new(response),
            head_len: 0,
        };
        assert_eq!(
            err.to_string(),
            "the server answered 403 Forbidden instead of 101 Switching Protocols"
        );
    }

    #[test]
    fn extended_connect_statuses_and_messages() {
        assert_eq!(
            HandshakeError::MethodNotConnect {
                method: Method::GET
            }
            .status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        for err in [
            HandshakeError::ExtendedConnectVersion {
                version: Version::HTTP_11,
            },
            HandshakeError::MissingConnectProtocol,
            HandshakeError::InvalidConnectProtocol {
                protocol: "x".into(),
            },
            HandshakeError::MissingAuthority,
            HandshakeError::InvalidAuthority,
        ] {
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{err:?}");
        }
        assert_eq!(
            HandshakeError::MethodNotConnect {
                method: Method::GET
            }
            .to_string(),
            "a WebSocket handshake over HTTP/2 must be an extended CONNECT, not GET"
        );
        let mut response = http::Response::new(());
        *response.status_mut() = StatusCode::FORBIDDEN;
        *response.version_mut() = Version::HTTP_2;
        let err = HandshakeError::UnexpectedStatus {
            response: Box::new(response),
            head_len: 0,
        };
        assert_eq!(
            err.to_string(),
            "the server answered 403 Forbidden instead of 200 OK to its extended CONNECT"
        );
    }
}
