//! The opening handshake (RFC 6455 §4) for both roles, sans-IO: bytes in,
//! checked requests and responses out, bytes to send back. No sockets, no
//! async, no clock; the caller moves the bytes and owns the timeouts.
//!
//! # Server
//!
//! 1. Append what the socket gives to a buffer and call [`parse_request`]
//!    until it returns `Some((request, consumed))`. It refuses a head larger
//!    than [`ServerLimits`] allow, even before it is complete.
//! 2. On an error, send [`rejection_bytes`] (the right 4xx with the reason)
//!    and close.
//! 3. Otherwise look at [`Request::resource`], [`Request::host`],
//!    [`Request::origin`], [`Request::protocols`] (see [`select_protocol`])
//!    and [`Request::extensions`]; refuse for reasons of your own with
//!    [`reject_bytes`], or answer with [`Request::accept`] and
//!    [`write_response`].
//! 4. `buf[consumed..]` is the start of the WebSocket stream: hand it to the
//!    framing layer (REQUIREMENTS H5).
//!
//! # Client
//!
//! 1. Build a [`ClientRequest`] from a `ws://` or `wss://` URL, connect to
//!    its [`host`](ClientRequest::host) and [`port`](ClientRequest::port)
//!    (TLS if [`is_tls`](ClientRequest::is_tls)), send
//!    [`ClientRequest::write`].
//! 2. Feed what comes back to [`parse_response`] until it returns
//!    `Some((response, consumed))`; it checks the 101, `Upgrade`,
//!    `Connection`, `Sec-WebSocket-Accept`, and that the subprotocol and
//!    extensions are ones that were offered.
//! 3. `buf[consumed..]` is the start of the WebSocket stream.
//!
//! # HTTP libraries and HTTP/2 (RFC 8441)
//!
//! A server built on an HTTP library (hyper) gets requests already parsed,
//! and still leaves every WebSocket rule to this module:
//!
//! - an HTTP/1.1 upgrade: [`Request::from_http`] makes the checks of
//!   [`parse_request`], with the same errors; answer with
//!   [`AcceptBuilder::build`] (the 101) through the library;
//! - an HTTP/2 (or HTTP/3) extended CONNECT (RFC 8441, RFC 9220):
//!   [`Request::from_extended_connect`] with the `:protocol` pseudo-header
//!   the library reports; [`Request::is_extended_connect`] is then true and
//!   [`AcceptBuilder::build`] gives a `200 OK` without `Upgrade`,
//!   `Connection` or `Sec-WebSocket-Accept`;
//! - a refusal: [`rejection_for`] / [`reject_for`] with the request's
//!   version; over HTTP/2 they leave out `Connection`, which HTTP/2 forbids.
//!
//! A client on an HTTP/2 library sends [`ClientRequest::to_extended_connect`]
//! (adding `:protocol: websocket` as the library wants) and checks the answer
//! with [`check_extended_connect_response`]; the [`Response`] is the one
//! [`parse_response`] gives.
//!
//! ```
//! use http::{StatusCode, Version};
//! use weft_proto::handshake::{
//!     check_extended_connect_response, rejection_for, ClientRequest, HandshakeError, Request,
//! };
//!
//! // Client: the request an HTTP/2 library sends, with `:protocol` beside it.
//! let client = ClientRequest::builder("wss://example.com/chat?room=1")
//!     .protocols(["v2.chat", "v1.chat"])
//!     .build()?;
//! let request = client.to_extended_connect();
//! let protocol = Some("websocket"); // hyper: the `hyper::ext::Protocol` extension
//!
//! // Server: the library hands over the request and its `:protocol`; the
//! // answer goes back through it.
//! let response: http::Response<String> =
//!     match Request::from_extended_connect(&request, protocol) {
//!         Ok(offer) => {
//!             assert_eq!(offer.resource(), "/chat?room=1");
//!             assert_eq!(offer.host(), Some("example.com"));
//!             match offer.accept().protocol("v1.chat").build() {
//!                 Ok(answer) => answer.map(|()| String::new()),
//!                 Err(err) => rejection_for(&err, request.version()),
//!             }
//!         }
//!         Err(err) => rejection_for(&err, request.version()),
//!     };
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.version(), Version::HTTP_2);
//! assert!(!response.headers().contains_key("sec-websocket-accept"));
//!
//! // Client: check the answer; the stream is now the WebSocket.
//! let accepted = check_extended_connect_response(&response, &client)?;
//! assert_eq!(accepted.protocol(), Some("v1.chat"));
//! # Ok::<(), HandshakeError>(())
//! ```
//!
//! The pieces are usable alone (REQUIREMENTS H3): [`request_key`],
//! [`accept_key`], [`is_valid_key`], [`header_contains_token`],
//! [`protocols`], [`parse_extensions`].
//!
//! # Example
//!
//! Both roles, talking through two buffers:
//!
//! ```
//! use weft_proto::handshake::{
//!     parse_request, parse_response, rejection_bytes, select_protocol, write_response,
//!     ClientRequest, HandshakeError, ServerLimits, DEFAULT_MAX_HEAD_SIZE,
//! };
//!
//! // Client: the request.
//! let request = ClientRequest::builder("ws://example.com:8080/chat")
//!     .origin("http://example.com")
//!     .protocols(["v2.chat", "v1.chat"])
//!     .build()?;
//! let mut to_server = Vec::new();
//! request.write(&mut to_server);
//!
//! // Server: parse, check, answer.
//! let mut to_client = Vec::new();
//! match parse_request(&to_server, &ServerLimits::default())? {
//!     None => unreachable!("the whole request is there"),
//!     Some((offer, consumed)) => {
//!         assert_eq!(offer.resource(), "/chat");
//!         assert_eq!(offer.host(), Some("example.com:8080"));
//!         assert_eq!(consumed, to_server.len());
//!         let chosen = select_protocol(&offer.protocols(), &["v1.chat"]);
//!         let mut answer = offer.accept();
//!         if let Some(protocol) = chosen {
//!             answer = answer.protocol(protocol);
//!         }
//!         match answer.build() {
//!             Ok(response) => write_response(&response, &mut to_client),
//!             Err(err) => to_client = rejection_bytes(&err),
//!         }
//!     }
//! }
//! // The server's first frame may arrive in the same read as the head.
//! to_client.extend_from_slice(b"\x81\x02hi");
//!
//! // Client: check the answer; what follows the head is for the framing layer.
//! let (response, consumed) = parse_response(&to_client, &request, DEFAULT_MAX_HEAD_SIZE)?
//!     .expect("the whole response is there");
//! assert_eq!(response.protocol(), Some("v1.chat"));
//! assert_eq!(&to_client[consumed..], b"\x81\x02hi");
//! # Ok::<(), HandshakeError>(())
//! ```

mod client;
mod error;
mod extensions;
mod head;
mod headers;
mod keys;
mod server;

pub use client::{
    check_extended_connect_response, parse_response, ClientRequest, ClientRequestBuilder, Response,
    MAX_RESPONSE_HEADERS,
};
pub use error::HandshakeError;
pub use extensions::{
    parse_extension_headers, parse_extensions, to_header_value, ExtensionError, ExtensionOffer,
    ExtensionParam,
};
pub use headers::{header_contains_token, header_list, headers_contain_token, is_token, protocols};
pub use keys::{accept_key, encode_key, is_valid_key, request_key, ACCEPT_GUID};
pub use server::{
    parse_request, reject, reject_bytes, reject_for, rejection, rejection_bytes, rejection_for,
    select_protocol, write_response, AcceptBuilder, Request, ServerLimits, DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_HEAD_SIZE,
};
