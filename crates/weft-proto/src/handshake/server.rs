//! The server's side of the opening handshake (RFC 6455 §4.2): parse and
//! check the client's request incrementally, then build the 101 answer, or
//! a rejection that says why.
//!
//! The caller owns the socket: it appends what it reads to a buffer and
//! calls [`parse_request`] until it gets a [`Request`] and the length of the
//! head. Bytes after the head are already WebSocket frames and belong to the
//! framing layer (REQUIREMENTS H5).

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST,
    ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Method, StatusCode, Uri, Version};

use super::error::HandshakeError;
use super::extensions::{parse_extension_headers, to_header_value, ExtensionOffer};
use super::head::{self, HeaderMapError};
use super::headers::{headers_contain_token, is_tchar, protocols, split_host_port, trim_ows};
use super::keys::{accept_key, is_valid_key};

/// Default for [`ServerLimits::max_head_size`]: 8 KiB.
pub const DEFAULT_MAX_HEAD_SIZE: usize = 8192;

/// Default for [`ServerLimits::max_headers`].
pub const DEFAULT_MAX_HEADERS: usize = 64;

/// Limits on the client's request head; past them the request is refused
/// with 431 Request Header Fields Too Large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// The largest request head accepted, in bytes, from the request line to
    /// the blank line that ends the headers, both included. Default 8192.
    pub max_head_size: usize,
    /// The most header lines accepted. Default 64.
    pub max_headers: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_head_size: DEFAULT_MAX_HEAD_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// A client's handshake request that passed every check of RFC 6455
/// §4.2.1 (an HTTP/1.1 upgrade, from [`parse_request`] or
/// [`Request::from_http`]) or of RFC 8441 §5 (an extended CONNECT over
/// HTTP/2 or HTTP/3, from [`Request::from_extended_connect`]): the resource,
/// host, key, offered subprotocols and extensions are there for the
/// application to decide on.
#[derive(Debug)]
pub struct Request {
    inner: http::Request<()>,
    resource: String,
    key: String,
    extensions: Vec<ExtensionOffer>,
    extended_connect: bool,
}

/// Parses the client's handshake request from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete (read more and call
/// again with the whole buffer), or `Ok(Some((request, consumed)))` where
/// `consumed` is the length of the head: any bytes after it are the first
/// WebSocket frames and belong to the framing layer.
///
/// Errors when the head is not an acceptable handshake, with a variant whose
/// [`status`](HandshakeError::status) is the answer (see
/// [`rejection_bytes`]): 405 for a method other than GET; 400 for HTTP/1.0,
/// a missing `Host`, an `Upgrade` without `websocket`, a `Connection`
/// without `Upgrade`, a `Sec-WebSocket-Key` that is not 16 bytes in base64,
/// a malformed `Sec-WebSocket-Protocol` or `Sec-WebSocket-Extensions`; 426
/// when `Sec-WebSocket-Version` is not 13; 431 when the head is larger than
/// [`ServerLimits::max_head_size`] (even before it is complete) or has more
/// than [`ServerLimits::max_headers`] lines.
///
/// ```
/// use weft_proto::handshake::{parse_request, ServerLimits};
/// let buf = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Sec-WebSocket-Version: 13\r\n\r\n\x81\x00";
/// let limits = ServerLimits::default();
/// assert!(parse_request(&buf[..20], &limits)?.is_none());
/// let (request, consumed) = parse_request(buf, &limits)?.expect("complete");
/// assert_eq!(request.resource(), "/chat");
/// assert_eq!(&buf[consumed..], b"\x81\x00"); // a frame, for the framing layer
/// # Ok::<(), weft_proto::handshake::HandshakeError>(())
/// ```
pub fn parse_request(
    buf: &[u8],
    limits: &ServerLimits,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let window = head::window(buf, limits.max_head_size);
    let mut slots = vec![httparse::EMPTY_HEADER; head::header_slots(window, limits.max_headers)];
    let mut parsed = httparse::Request::new(&mut slots);
    let consumed = match parsed.parse(window) {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_size => {
            return Err(HandshakeError::HeadTooLarge {
                limit: limits.max_head_size,
            })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::TooManyHeaders {
                limit: head::effective_header_limit(limits.max_headers),
            })
        }
        Err(err) => {
            return Err(HandshakeError::MalformedRequest {
                reason: head::httparse_reason(err),
            })
        }
    };
    let malformed = |reason| HandshakeError::MalformedRequest { reason };

    // The request line. httparse fills all three in a complete parse.
    let method = parsed.method.ok_or(malformed("no method"))?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| malformed("invalid method"))?;
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(malformed("unknown HTTP version")),
    };
    check_upgrade_line(&method, version)?;
    let target = parsed.path.ok_or(malformed("no request target"))?;
    let uri: Uri = target
        .parse()
        .map_err(|_| HandshakeError::InvalidRequestTarget)?;
    let resource = resource_of(&uri)?;

    let headers = head::to_header_map(parsed.headers).map_err(|err| match err {
        HeaderMapError::Invalid(reason) => malformed(reason),
        HeaderMapError::TooMany => HandshakeError::TooManyHeaders {
            limit: head::effective_header_limit(limits.max_headers),
        },
    })?;
    let request = upgrade_request(uri, resource, Version::HTTP_11, headers)?;
    Ok(Some((request, consumed)))
}

/// The request line's checks for an HTTP/1.1 upgrade: GET (else 405), and
/// HTTP/1.1 or later (else 400).
fn check_upgrade_line(method: &Method, version: Version) -> Result<(), HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::MethodNotAllowed {
            method: method.clone(),
        });
    }
    if version < Version::HTTP_11 {
        return Err(HandshakeError::UnsupportedHttpVersion);
    }
    Ok(())
}

/// The resource of a request target: its path and query. The asterisk form
/// (`*`) and the authority form (`host:port`) have no path and are refused.
fn resource_of(uri: &Uri) -> Result<String, HandshakeError> {
    if !uri.path().starts_with('/') {
        return Err(HandshakeError::InvalidRequestTarget);
    }
    Ok(match uri.query() {
        Some(query) => format!("{}?{}", uri.path(), query),
        None => uri.path().to_owned(),
    })
}

/// The header checks of an HTTP/1.1 upgrade, after the request line's, and
/// the [`Request`] they make.
fn upgrade_request(
    uri: Uri,
    resource: String,
    version: Version,
    headers: HeaderMap,
) -> Result<Request, HandshakeError> {
    let key = check_headers(&headers)?;
    let extensions =
        parse_extension_headers(&headers).map_err(HandshakeError::MalformedExtensions)?;
    let mut inner = http::Request::new(());
    *inner.method_mut() = Method::GET;
    *inner.uri_mut() = uri;
    *inner.version_mut() = version;
    *inner.headers_mut() = headers;
    Ok(Request {
        inner,
        resource,
        key,
        extensions,
        extended_connect: false,
    })
}

/// The only one value of `name`, or `Err(count)` when absent or repeated.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a HeaderValue, usize> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Ok(value),
        (None, _) => Err(0),
        (Some(_), Some(_)) => Err(2),
    }
}

/// The header checks of RFC 6455 §4.2.1 for an HTTP/1.1 upgrade, in the
/// order a client most needs to hear about them. Returns the key.
fn check_headers(headers: &HeaderMap) -> Result<String, HandshakeError> {
    check_host(headers)?;

    if !headers.contains_key(UPGRADE) {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !headers_contain_token(headers, &UPGRADE, "websocket") {
        return Err(HandshakeError::InvalidUpgrade);
    }
    if !headers.contains_key(CONNECTION) {
        return Err(HandshakeError::MissingConnection);
    }
    if !headers_contain_token(headers, &CONNECTION, "upgrade") {
        return Err(HandshakeError::InvalidConnection);
    }

    check_version(headers)?;

    let key = single(headers, &SEC_WEBSOCKET_KEY).map_err(|count| match count {
        0 => HandshakeError::MissingKey,
        _ => HandshakeError::InvalidKey,
    })?;
    let key = trim_ows(key.as_bytes());
    if !is_valid_key(key) {
        return Err(HandshakeError::InvalidKey);
    }
    // A valid key is base64, hence ASCII.
    let key = std::str::from_utf8(key).map_err(|_| HandshakeError::InvalidKey)?;

    check_protocols(headers)?;
    Ok(key.to_owned())
}

/// One `Host` header, `host[:port]`.
fn check_host(headers: &HeaderMap) -> Result<(), HandshakeError> {
    let host = single(headers, &HOST).map_err(|count| match count {
        0 => HandshakeError::MissingHost,
        _ => HandshakeError::InvalidHost,
    })?;
    let host =
        std::str::from_utf8(trim_ows(host.as_bytes())).map_err(|_| HandshakeError::InvalidHost)?;
    if split_host_port(host).is_none() {
        return Err(HandshakeError::InvalidHost);
    }
    Ok(())
}

/// §4.4: an unsupported version gets 426 with the versions we speak.
fn check_version(headers: &HeaderMap) -> Result<(), HandshakeError> {
    match single(headers, &SEC_WEBSOCKET_VERSION) {
        Err(0) => Err(HandshakeError::MissingVersion),
        Ok(version) if trim_ows(version.as_bytes()) == b"13" => Ok(()),
        _ => Err(HandshakeError::UnsupportedVersion),
    }
}

/// `Sec-WebSocket-Protocol`: comma-separated lists of tokens.
fn check_protocols(headers: &HeaderMap) -> Result<(), HandshakeError> {
    let protocols_ok = headers.get_all(SEC_WEBSOCKET_PROTOCOL).iter().all(|value| {
        value.as_bytes().split(|&c| c == b',').all(|element| {
            let element = trim_ows(element);
            element.iter().all(|&c| is_tchar(c))
        })
    });
    if protocols_ok {
        Ok(())
    } else {
        Err(HandshakeError::InvalidProtocols)
    }
}

impl Request {
    /// Checks an HTTP/1.1 upgrade request that an HTTP library (such as
    /// hyper) already parsed: the same checks as [`parse_request`], with the
    /// same errors and statuses. GET (else 405), HTTP/1.1 or later (else
    /// 400), a path as the target, one valid `Host`, `Upgrade: websocket`,
    /// `Connection: upgrade`, `Sec-WebSocket-Version: 13` (else 426), a
    /// `Sec-WebSocket-Key` of 16 bytes, well-formed `Sec-WebSocket-Protocol`
    /// and `Sec-WebSocket-Extensions`. The body is not looked at; the
    /// request's method, URI, version and headers are copied.
    ///
    /// Refuse with [`rejection`] (or [`rejection_for`] with the request's
    /// version); accept with [`Request::accept`].
    ///
    /// ```
    /// use weft_proto::handshake::{HandshakeError, Request};
    /// let request = http::Request::get("/chat?room=1")
    ///     .header("host", "example.com")
    ///     .header("upgrade", "websocket")
    ///     .header("connection", "Upgrade")
    ///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    ///     .header("sec-websocket-version", "13")
    ///     .body(())
    ///     .expect("a valid request");
    /// let offer = Request::from_http(&request)?;
    /// assert_eq!(offer.resource(), "/chat?room=1");
    /// assert!(!offer.is_extended_connect());
    /// # Ok::<(), HandshakeError>(())
    /// ```
    pub fn from_http<B>(request: &http::Request<B>) -> Result<Request, HandshakeError> {
        check_upgrade_line(request.method(), request.version())?;
        let resource = resource_of(request.uri())?;
        upgrade_request(
            request.uri().clone(),
            resource,
            request.version(),
            request.headers().clone(),
        )
    }

    /// Checks an RFC 8441 extended CONNECT request, the WebSocket handshake
    /// of HTTP/2 (and of HTTP/3, RFC 9220), as an HTTP library parsed it.
    /// `protocol` is the value of the `:protocol` pseudo-header, `None` when
    /// there is none (hyper gives it as the `hyper::ext::Protocol` request
    /// extension; the caller passes its string).
    ///
    /// The checks, in order, with the status each refusal answers
    /// ([`HandshakeError::status`]):
    ///
    /// - the method is CONNECT (else [`HandshakeError::MethodNotConnect`], 405);
    /// - the version is HTTP/2 or later (else
    ///   [`HandshakeError::ExtendedConnectVersion`], 400): HTTP/1.1 has no
    ///   pseudo-headers, so an extended CONNECT cannot arrive over it;
    /// - `:protocol` is `websocket`, in any ASCII case (else
    ///   [`HandshakeError::MissingConnectProtocol`] or
    ///   [`HandshakeError::InvalidConnectProtocol`], 400);
    /// - a `Host` header, if there is one, is one valid `host[:port]` (else
    ///   [`HandshakeError::InvalidHost`]); without one the URI has an
    ///   authority (`:authority`), a valid `host[:port]` (else
    ///   [`HandshakeError::MissingAuthority`] or
    ///   [`HandshakeError::InvalidAuthority`], 400);
    /// - the URI has a path (`:path`; else [`HandshakeError::InvalidRequestTarget`], 400);
    /// - `Sec-WebSocket-Version: 13` (else 426, as for HTTP/1.1);
    /// - `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` as for HTTP/1.1.
    ///
    /// There is no `Sec-WebSocket-Key`, `Upgrade` or `Connection` to check
    /// (RFC 8441 §5; HTTP/2 forbids connection-specific headers): any that
    /// are there are ignored, and [`key`](Request::key) is empty. The
    /// answer is a 200 (see [`AcceptBuilder::build`]); refuse with
    /// [`rejection_for`]`(&err, request.version())`, which leaves out the
    /// headers HTTP/2 forbids.
    ///
    /// ```
    /// use weft_proto::handshake::{HandshakeError, Request};
    /// let request = http::Request::connect("https://example.com/chat")
    ///     .version(http::Version::HTTP_2)
    ///     .header("sec-websocket-version", "13")
    ///     .body(())
    ///     .expect("a valid request");
    /// let offer = Request::from_extended_connect(&request, Some("websocket"))?;
    /// assert_eq!((offer.resource(), offer.host()), ("/chat", Some("example.com")));
    /// assert!(offer.is_extended_connect());
    /// # Ok::<(), HandshakeError>(())
    /// ```
    pub fn from_extended_connect<B>(
        request: &http::Request<B>,
        protocol: Option<&str>,
    ) -> Result<Request, HandshakeError> {
        if request.method() != Method::CONNECT {
            return Err(HandshakeError::MethodNotConnect {
                method: request.method().clone(),
            });
        }
        if request.version() < Version::HTTP_2 {
            return Err(HandshakeError::ExtendedConnectVersion {
                version: request.version(),
            });
        }
        match protocol {
            None => return Err(HandshakeError::MissingConnectProtocol),
            Some(protocol) if protocol.eq_ignore_ascii_case("websocket") => {}
            Some(protocol) => {
                return Err(HandshakeError::InvalidConnectProtocol {
                    protocol: protocol.to_owned(),
                })
            }
        }
        let uri = request.uri();
        let headers = request.headers();
        if headers.contains_key(HOST) {
            check_host(headers)?;
        } else {
            let authority = uri.authority().ok_or(HandshakeError::MissingAuthority)?;
            if split_host_port(authority.as_str()).is_none() {
                return Err(HandshakeError::InvalidAuthority);
            }
        }
        let resource = resource_of(uri)?;
        check_version(headers)?;
        check_protocols(headers)?;
        let extensions =
            parse_extension_headers(headers).map_err(HandshakeError::MalformedExtensions)?;

        let mut inner = http::Request::new(());
        *inner.method_mut() = Method::CONNECT;
        *inner.uri_mut() = uri.clone();
        *inner.version_mut() = request.version();
        *inner.headers_mut() = headers.clone();
        Ok(Request {
            inner,
            resource,
            key: String::new(),
            extensions,
            extended_connect: true,
        })
    }

    /// Whether the request came by extended CONNECT
    /// ([`from_extended_connect`](Request::from_extended_connect)): its
    /// answer is a `200 OK` through the HTTP library, not a 101.
    pub fn is_extended_connect(&self) -> bool {
        self.extended_connect
    }

    /// The request's HTTP version: HTTP/1.1 from [`parse_request`], the
    /// library's from [`from_http`](Request::from_http) and
    /// [`from_extended_connect`](Request::from_extended_connect).
    pub fn version(&self) -> Version {
        self.inner.version()
    }

    /// The resource the client asked for: path and query, e.g.
    /// `/chat?room=1` (an absolute-form target is reduced to these).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The `Host` header (`host[:port]`), without surrounding whitespace;
    /// for an extended CONNECT without one, the URI's authority
    /// (`:authority`). Always present in a request that passed the checks.
    pub fn host(&self) -> Option<&str> {
        match self.header_str(&HOST) {
            None if self.extended_connect => self.inner.uri().authority().map(|a| a.as_str()),
            host => host,
        }
    }

    /// The `Origin` header, which browsers send and which a server may check
    /// (and reject with 403, see [`reject_bytes`]).
    pub fn origin(&self) -> Option<&str> {
        self.header_str(&ORIGIN)
    }

    /// The client's `Sec-WebSocket-Key`; empty for an extended CONNECT,
    /// which has none.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The subprotocols the client offers, in its order of preference.
    pub fn protocols(&self) -> Vec<&str> {
        protocols(self.inner.headers())
    }

    /// The extensions the client offers, in its order of preference.
    /// A malformed header was already refused, so this cannot fail.
    pub fn extensions(&self) -> &[ExtensionOffer] {
        &self.extensions
    }

    /// All the request's headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The request as an `http::Request` (method, URI, version, headers).
    pub fn as_http(&self) -> &http::Request<()> {
        &self.inner
    }

    /// The request as an `http::Request`, taken apart.
    pub fn into_http(self) -> http::Request<()> {
        self.inner
    }

    /// Starts the answer to this request: 101 Switching Protocols for an
    /// HTTP/1.1 upgrade, 200 OK for an extended CONNECT (see
    /// [`AcceptBuilder::build`]).
    ///
    /// ```
    /// # use weft_proto::handshake::*;
    /// # let buf = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    /// #     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
    /// #     Sec-WebSocket-Protocol: chat, superchat\r\n\r\n";
    /// # let (request, _) = parse_request(buf, &ServerLimits::default())?.unwrap();
    /// let chosen = select_protocol(&request.protocols(), &["superchat"]);
    /// let mut answer = request.accept();
    /// if let Some(protocol) = chosen {
    ///     answer = answer.protocol(protocol);
    /// }
    /// let response = answer.header("Server", "weft").build()?;
    /// let mut out = Vec::new();
    /// write_response(&response, &mut out);
    /// assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    /// # Ok::<(), HandshakeError>(())
    /// ```
    pub fn accept(&self) -> AcceptBuilder<'_> {
        AcceptBuilder {
            request: self,
            protocol: None,
            extensions: None,
            headers: Vec::new(),
            error: None,
        }
    }

    fn header_str(&self, name: &HeaderName) -> Option<&str> {
        let value = self.inner.headers().get(name)?;
        let value = std::str::from_utf8(trim_ows(value.as_bytes())).ok()?;
        Some(value)
    }
}

/// Builds the answer to a [`Request`] (a 101, or a 200 for an extended
/// CONNECT); see [`Request::accept`].
///
/// Each setter records the first mistake; [`build`](AcceptBuilder::build)
/// reports it.
#[derive(Debug)]
pub struct AcceptBuilder<'a> {
    request: &'a Request,
    protocol: Option<String>,
    extensions: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    error: Option<HandshakeError>,
}

/// Response headers that the handshake sets itself.
const RESERVED_RESPONSE_HEADERS: [HeaderName; 5] = [
    UPGRADE,
    CONNECTION,
    SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_EXTENSIONS,
];

impl AcceptBuilder<'_> {
    /// Selects the subprotocol to speak; it must be one the client offered
    /// (else [`HandshakeError::ProtocolNotOffered`]). See [`select_protocol`].
    pub fn protocol(mut self, protocol: &str) -> Self {
        if self.request.protocols().contains(&protocol) {
            self.protocol = Some(protocol.to_owned());
        } else {
            self.fail(HandshakeError::ProtocolNotOffered {
                protocol: protocol.to_owned(),
            });
        }
        self
    }

    /// Accepts extensions, with the parameters the server answers with;
    /// each must be one the client offered (else
    /// [`HandshakeError::ExtensionNotOffered`]). An empty list sends no
    /// `Sec-WebSocket-Extensions` header.
    pub fn extensions(mut self, accepted: &[ExtensionOffer]) -> Self {
        let offered = self.request.extensions();
        if let Some(extra) = accepted
            .iter()
            .find(|a| !offered.iter().any(|o| o.name.eq_ignore_ascii_case(&a.name)))
        {
            self.fail(HandshakeError::ExtensionNotOffered {
                name: extra.name.clone(),
            });
        } else if accepted.is_empty() {
            self.extensions = None;
        } else {
            self.extensions = Some(to_header_value(accepted));
        }
        self
    }

    /// Adds a header to the answer (`Set-Cookie`, `Server`...). The headers
    /// the handshake sets itself (`Upgrade`, `Connection`,
    /// `Sec-WebSocket-Accept`, `-Protocol`, `-Extensions`) are refused with
    /// [`HandshakeError::InvalidHeader`]; use the dedicated setters.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match checked_header(name, value, &RESERVED_RESPONSE_HEADERS) {
            Ok(header) => self.headers.push(header),
            Err(err) => self.fail(err),
        }
        self
    }

    /// The answer to an HTTP/1.1 upgrade: `101 Switching Protocols`
    /// (HTTP/1.1) with `Upgrade: websocket`, `Connection: Upgrade`,
    /// `Sec-WebSocket-Accept`, the selected subprotocol and extensions, then
    /// the added headers. Write it with [`write_response`].
    ///
    /// The answer to an extended CONNECT
    /// ([`Request::is_extended_connect`]): `200 OK` in the request's
    /// version (HTTP/2 or HTTP/3) with the selected subprotocol and
    /// extensions and the added headers, and no `Upgrade`, `Connection` or
    /// `Sec-WebSocket-Accept` (RFC 8441 §5). Hand it to the HTTP library,
    /// which sends it as HEADERS; the stream is then the WebSocket.
    pub fn build(self) -> Result<http::Response<()>, HandshakeError> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let mut response = http::Response::new(());
        let headers = response.headers_mut();
        if !self.request.extended_connect {
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            let accept =
                HeaderValue::try_from(accept_key(self.request.key().as_bytes())).map_err(|_| {
                    HandshakeError::InvalidHeader {
                        name: SEC_WEBSOCKET_ACCEPT.as_str().to_owned(),
                        reason: "not a valid header value",
                    }
                })?;
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = self.protocol {
            let value = HeaderValue::try_from(protocol.as_str()).map_err(|_| {
                HandshakeError::InvalidHeader {
                    name: SEC_WEBSOCKET_PROTOCOL.as_str().to_owned(),
                    reason: "not a valid header value",
                }
            })?;
            headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
        }
        if let Some(extensions) = self.extensions {
            let value = HeaderValue::try_from(extensions.as_str()).map_err(|_| {
                HandshakeError::InvalidHeader {
                    name: SEC_WEBSOCKET_EXTENSIONS.as_str().to_owned(),
                    reason: "the extension parameters make an invalid header value",
                }
            })?;
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, value);
        }
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        if self.request.extended_connect {
            *response.status_mut() = StatusCode::OK;
            *response.version_mut() = self.request.version().max(Version::HTTP_2);
        } else {
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *response.version_mut() = Version::HTTP_11;
        }
        Ok(response)
    }

    /// Builds the answer and appends its bytes to `out`, in one step, as an
    /// HTTP/1.1 head ([`write_response`]). For an extended CONNECT this is
    /// the `HTTP/1.1 200 OK` head of the same answer, which is of use only
    /// to a caller that writes HTTP/1.1 itself: over HTTP/2 the answer goes
    /// through the HTTP library, from [`build`](AcceptBuilder::build).
    pub fn write(self, out: &mut Vec<u8>) -> Result<(), HandshakeError> {
        let response = self.build()?;
        write_response(&response, out);
        Ok(())
    }

    fn fail(&mut self, err: HandshakeError) {
        if self.error.is_none() {
            self.error = Some(err);
        }
    }
}

/// A header from the application, checked: a valid name that is not
/// `reserved`, and a value without control characters.
pub(crate) fn checked_header(
    name: &str,
    value: &str,
    reserved: &[HeaderName],
) -> Result<(HeaderName, HeaderValue), HandshakeError> {
    let invalid = |reason| HandshakeError::InvalidHeader {
        name: name.to_owned(),
        reason,
    };
    let header_name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("not a valid header name"))?;
    if reserved.contains(&header_name) {
        return Err(invalid("set by the handshake itself"));
    }
    let header_value = HeaderValue::from_str(value)
        .map_err(|_| invalid("the value has control or non-ASCII characters"))?;
    Ok((header_name, header_value))
}

/// The subprotocol to speak: the first of `supported`, in the server's
/// order of preference, that the client offered. `None` when there is none
/// in common (the handshake then goes on without a subprotocol, or the
/// application refuses it).
///
/// ```
/// use weft_proto::handshake::select_protocol;
/// assert_eq!(select_protocol(&["a", "b", "c"], &["c", "b"]), Some("c"));
/// assert_eq!(select_protocol(&["a"], &["b"]), None);
/// ```
pub fn select_protocol<'a>(offered: &[&'a str], supported: &[&str]) -> Option<&'a str> {
    supported
        .iter()
        .find_map(|s| offered.iter().find(|o| *o == s).copied())
}

/// Appends a response head to `out`: the status line (always `HTTP/1.1`),
/// every header, and the blank line. After a 101, what follows on the
/// connection is WebSocket frames.
pub fn write_response(response: &http::Response<()>, out: &mut Vec<u8>) {
    head::write_head(response.status(), response.headers(), out);
}

/// A complete refusal of a handshake, for applications that answer through
/// an HTTP library: `status`, `Content-Type: text/plain; charset=utf-8`,
/// `Connection: close`, `Content-Length`, `reason` as the body; plus
/// `Sec-WebSocket-Version: 13` for 426 (RFC 6455 §4.4) and `Allow: GET` for
/// 405. Close the connection after sending it.
///
/// This is the HTTP/1.1 refusal; [`reject_for`] makes the one for any version.
pub fn reject(status: StatusCode, reason: &str) -> http::Response<String> {
    reject_for(status, reason, Version::HTTP_11)
}

/// [`reject`] for a request of `version`, through an HTTP library.
///
/// For HTTP/1.0 and HTTP/1.1 it is exactly [`reject`]: an HTTP/1.1
/// response with `Connection: close` and, for 405, `Allow: GET`. For
/// HTTP/2 and later (the refusal of an extended CONNECT, see
/// [`Request::from_extended_connect`]) the response is of that version and
/// has no `Connection` header, which HTTP/2 forbids (only the stream is
/// refused, not the connection), and a 405 says `Allow: CONNECT`. Both carry
/// `Content-Type`, `Content-Length`, the reason as the body and, for 426,
/// `Sec-WebSocket-Version: 13`.
///
/// ```
/// use http::{header, StatusCode, Version};
/// use weft_proto::handshake::reject_for;
/// let response = reject_for(StatusCode::FORBIDDEN, "origin not allowed", Version::HTTP_2);
/// assert_eq!(response.version(), Version::HTTP_2);
/// assert!(!response.headers().contains_key(header::CONNECTION));
/// ```
pub fn reject_for(status: StatusCode, reason: &str, version: Version) -> http::Response<String> {
    let multiplexed = version >= Version::HTTP_2;
    let mut response = http::Response::new(reason.to_owned());
    *response.status_mut() = status;
    *response.version_mut() = if multiplexed {
        version
    } else {
        Version::HTTP_11
    };
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(reason.len()));
    if !multiplexed {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if status == StatusCode::UPGRADE_REQUIRED {
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = if multiplexed { "CONNECT" } else { "GET" };
        headers.insert(ALLOW, HeaderValue::from_static(allow));
    }
    response
}

/// The bytes of [`reject`]`(status, reason)`: head and body, ready to send
/// before closing. For refusals of the application's own, such as 403 for
/// an `Origin` it does not serve.
///
/// ```
/// use http::StatusCode;
/// use weft_proto::handshake::reject_bytes;
/// let bytes = reject_bytes(StatusCode::FORBIDDEN, "origin not allowed");
/// assert!(bytes.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
/// assert!(bytes.ends_with(b"\r\n\r\norigin not allowed"));
/// ```
pub fn reject_bytes(status: StatusCode, reason: &str) -> Vec<u8> {
    let response = reject(status, reason);
    let mut out = Vec::with_capacity(160 + reason.len());
    head::write_head(response.status(), response.headers(), &mut out);
    out.extend_from_slice(response.body().as_bytes());
    out
}

/// The refusal for a request that [`parse_request`] turned down: the
/// error's [`status`](HandshakeError::status) with its message as the body
/// (see [`reject_bytes`]). A 426 carries `Sec-WebSocket-Version: 13`.
///
/// ```
/// use weft_proto::handshake::{parse_request, rejection_bytes, ServerLimits};
/// let err = parse_request(b"POST / HTTP/1.1\r\n\r\n", &ServerLimits::default()).unwrap_err();
/// assert!(rejection_bytes(&err).starts_with(b"HTTP/1.1 405 Method Not Allowed\r\n"));
/// ```
pub fn rejection_bytes(err: &HandshakeError) -> Vec<u8> {
    reject_bytes(err.status(), &err.to_string())
}

/// [`reject`] for a [`HandshakeError`], for applications that answer
/// through an HTTP library: the HTTP/1.1 refusal, with `Connection: close`.
/// For a request of another version use [`rejection_for`].
pub fn rejection(err: &HandshakeError) -> http::Response<String> {
    reject(err.status(), &err.to_string())
}

/// [`reject_for`] for a [`HandshakeError`]: the refusal of a request of
/// `version`. Over HTTP/2 and later it has no `Connection` header; pass the
/// request's version (`request.version()` of the `http::Request`).
///
/// ```
/// use http::{header, StatusCode, Version};
/// use weft_proto::handshake::{rejection_for, Request};
/// let request = http::Request::connect("https://example.com/chat")
///     .version(Version::HTTP_2)
///     .header("sec-websocket-version", "8")
///     .body(())
///     .expect("a valid request");
/// let err = Request::from_extended_connect(&request, Some("websocket")).unwrap_err();
/// let response = rejection_for(&err, request.version());
/// assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
/// assert_eq!(response.headers()["sec-websocket-version"], "13");
/// assert!(!response.headers().contains_key(header::CONNECTION));
/// ```
pub fn rejection_for(err: &HandshakeError, version: Version) -> http::Response<String> {
    reject_for(err.status(), &err.to_string(), version)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// A valid request with `extra` header lines added before the blank line.
    fn request_with(extra: &str) -> Vec<u8> {
        format!(
            "GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
             {extra}\r\n"
        )
        .into_bytes()
    }

    fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HandshakeError> {
        parse_request(buf, &ServerLimits::default())
    }

    fn parse_complete(buf: &[u8]) -> Request {
        match parse(buf) {
            Ok(Some((request, consumed))) => {
                assert_eq!(consumed, buf.len());
                request
            }
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn accessors() {
        let request = parse_complete(&request_with(
            "Origin: http://example.com\r\nSec-WebSocket-Protocol: a, b\r\n\
             Sec-WebSocket-Protocol: c\r\nSec-WebSocket-Extensions: permessage-deflate; \
             client_max_window_bits\r\nX-Custom: 1\r\n",
        ));
        assert_eq!(request.resource(), "/chat?room=1");
        assert_eq!(request.host(), Some("example.com:8080"));
        assert_eq!(request.origin(), Some("http://example.com"));
        assert_eq!(request.key(), KEY);
        assert_eq!(request.protocols(), ["a", "b", "c"]);
        assert_eq!(request.extensions().len(), 1);
        assert_eq!(request.extensions()[0].name, "permessage-deflate");
        assert_eq!(request.headers()["x-custom"], "1");
        assert_eq!(request.as_http().method(), Method::GET);
        assert_eq!(request.as_http().uri().path(), "/chat");
        let http = request.into_http();
        assert_eq!(http.version(), Version::HTTP_11);
        assert_eq!(http.uri().query(), Some("room=1"));
    }

    #[test]
    fn absolute_form_target_gives_path_and_query() {
        let buf = request_with("");
        let text = String::from_utf8(buf).unwrap().replacen(
            "/chat?room=1",
            "ws://example.com:8080/chat?room=1",
            1,
        );
        assert_eq!(parse_complete(text.as_bytes()).resource(), "/chat?room=1");
        let text = text.replacen("ws://example.com:8080/chat?room=1", "http://h", 1);
        assert_eq!(parse_complete(text.as_bytes()).resource(), "/");
    }

    #[test]
    fn asterisk_and_authority_targets_are_refused() {
        for target in ["*", "example.com:80"] {
            let text =
                String::from_utf8(request_with(""))
                    .unwrap()
                    .replacen("/chat?room=1", target, 1);
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(
                matches!(err, HandshakeError::InvalidRequestTarget),
                "{target}: {err:?}"
            );
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn host_rules() {
        let without_host = String::from_utf8(request_with("")).unwrap().replacen(
            "Host: example.com:8080\r\n",
            "",
            1,
        );
        assert!(matches!(
            parse(without_host.as_bytes()),
            Err(HandshakeError::MissingHost)
        ));
        assert!(matches!(
            parse(&request_with("Host: other\r\n")),
            Err(HandshakeError::InvalidHost)
        ));
        let bad_host =
            String::from_utf8(request_with(""))
                .unwrap()
                .replacen("example.com:8080", "a@b", 1);
        assert!(matches!(
            parse(bad_host.as_bytes()),
            Err(HandshakeError::InvalidHost)
        ));
    }

    #[test]
    fn repeated_key_or_version_is_refused() {
        let err = parse(&request_with(&format!("Sec-WebSocket-Key: {KEY}\r\n"))).unwrap_err();
        assert!(matches!(err, HandshakeError::InvalidKey), "{err:?}");
        let err = parse(&request_with("Sec-WebSocket-Version: 13\r\n")).unwrap_err();
        assert!(matches!(err, HandshakeError::UnsupportedVersion), "{err:?}");
    }

    #[test]
    fn key_and_version_tolerate_whitespace() {
        let text = String::from_utf8(request_with(""))
            .unwrap()
            .replacen(&format!(": {KEY}"), &format!(":\t {KEY} \t"), 1)
            .replacen("Version: 13", "Version:   13  ", 1);
        assert_eq!(parse_complete(text.as_bytes()).key(), KEY);
    }

    #[test]
    fn protocol_list_must_be_tokens() {
        assert!(matches!(
            parse(&request_with("Sec-WebSocket-Protocol: a b\r\n")),
            Err(HandshakeError::InvalidProtocols)
        ));
        assert!(matches!(
            parse(&request_with("Sec-WebSocket-Protocol: \"a\"\r\n")),
            Err(HandshakeError::InvalidProtocols)
        ));
        // Empty elements are allowed by the list syntax.
        let request = parse_complete(&request_with("Sec-WebSocket-Protocol: a,,b,\r\n"));
        assert_eq!(request.protocols(), ["a", "b"]);
    }

    #[test]
    fn head_size_limit_is_exact() {
        let buf = request_with("");
        let at = |max_head_size| {
            parse_request(
                &buf,
                &ServerLimits {
                    max_head_size,
                    ..ServerLimits::default()
                },
            )
        };
        assert!(matches!(at(buf.len()), Ok(Some(_))));
        assert!(matches!(at(buf.len() + 1), Ok(Some(_))));
        assert!(matches!(
            at(buf.len() - 1),
            Err(HandshakeError::HeadTooLarge { limit }) if limit == buf.len() - 1
        ));
        // Incomplete but not over the limit: wait for more.
        let limits = ServerLimits {
            max_head_size: buf.len() - 1,
            ..ServerLimits::default()
        };
        assert!(matches!(
            parse_request(&buf[..buf.len() - 1], &limits),
            Ok(None)
        ));
    }

    #[test]
    fn header_count_limit_is_exact() {
        let buf = request_with("");
        let count = 5; // the headers request_with writes
        let with = |max_headers| {
            parse_request(
                &buf,
                &ServerLimits {
                    max_headers,
                    ..ServerLimits::default()
                },
            )
        };
        assert!(matches!(with(count), Ok(Some(_))));
        let err = with(count - 1).unwrap_err();
        assert!(
            matches!(err, HandshakeError::TooManyHeaders { limit: 4 }),
            "{err:?}"
        );
        assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn huge_limits_do_not_allocate_up_front() {
        let limits = ServerLimits {
            max_head_size: usize::MAX,
            max_headers: usize::MAX,
        };
        assert!(matches!(
            parse_request(&request_with(""), &limits),
            Ok(Some(_))
        ));
    }

    #[test]
    fn accept_builds_the_101() {
        let request = parse_complete(&request_with(
            "Sec-WebSocket-Protocol: chat, superchat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate, x-other\r\n",
        ));
        let response = request
            .accept()
            .protocol("superchat")
            .extensions(&[ExtensionOffer::new("permessage-deflate")
                .with_param("server_no_context_takeover", None)])
            .header("Set-Cookie", "a=1")
            .header("Set-Cookie", "b=2")
            .build()
            .unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let headers = response.headers();
        assert_eq!(headers[UPGRADE], "websocket");
        assert_eq!(headers[CONNECTION], "Upgrade");
        assert_eq!(
            headers[SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(headers[SEC_WEBSOCKET_PROTOCOL], "superchat");
        assert_eq!(
            headers[SEC_WEBSOCKET_EXTENSIONS],
            "permessage-deflate; server_no_context_takeover"
        );
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);

        let mut out = Vec::new();
        write_response(&response, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(
            text.contains("\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"));

        // write() is build() + write_response().
        let mut direct = Vec::new();
        request
            .accept()
            .protocol("chat")
            .write(&mut direct)
            .unwrap();
        assert!(String::from_utf8(direct)
            .unwrap()
            .contains("Sec-WebSocket-Protocol: chat\r\n"));
    }

    #[test]
    fn accept_without_choices_sends_no_protocol_or_extensions() {
        let request = parse_complete(&request_with("Sec-WebSocket-Protocol: chat\r\n"));
        let response = request.accept().extensions(&[]).build().unwrap();
        assert!(!response.headers().contains_key(SEC_WEBSOCKET_PROTOCOL));
        assert!(!response.headers().contains_key(SEC_WEBSOCKET_EXTENSIONS));
    }

    #[test]
    fn accept_refuses_what_was_not_offered() {
        let request = parse_complete(&request_with(
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: a\r\n",
        ));
        let err = request.accept().protocol("Chat").build().unwrap_err();
        assert!(
            matches!(&err, HandshakeError::ProtocolNotOffered { protocol } if protocol == "Chat"),
            "{err:?}"
        );
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let err = request
            .accept()
            .extensions(&[ExtensionOffer::new("b")])
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, HandshakeError::ExtensionNotOffered { name } if name == "b"),
            "{err:?}"
        );
        // The first mistake is the one reported.
        let err = request
            .accept()
            .protocol("nope")
            .header("Upgrade", "h2c")
            .build()
            .unwrap_err();
        assert!(
            matches!(err, HandshakeError::ProtocolNotOffered { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn accept_refuses_bad_and_reserved_headers() {
        let request = parse_complete(&request_with(""));
        for (name, value, reason) in [
            ("Sec-WebSocket-Accept", "x", "set by the handshake itself"),
            ("connection", "close", "set by the handshake itself"),
            (
                "X-Bad",
                "a\r\nInjected: 1",
                "the value has control or non-ASCII characters",
            ),
            ("Bad Name", "x", "not a valid header name"),
        ] {
            let err = request.accept().header(name, value).build().unwrap_err();
            match err {
                HandshakeError::InvalidHeader { name: n, reason: r } => {
                    assert_eq!((n.as_str(), r), (name, reason));
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        // An extension value that cannot be a header value.
        let request = parse_complete(&request_with("Sec-WebSocket-Extensions: a\r\n"));
        let err = request
            .accept()
            .extensions(&[ExtensionOffer::new("a").with_param("p", Some("\n"))])
            .build()
            .unwrap_err();
        assert!(
            matches!(err, HandshakeError::InvalidHeader { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn protocol_selection_follows_server_order() {
        assert_eq!(select_protocol(&["a", "b"], &["b", "a"]), Some("b"));
        assert_eq!(select_protocol(&["a", "b"], &["x", "a"]), Some("a"));
        assert_eq!(select_protocol(&["a"], &["A"]), None);
        assert_eq!(select_protocol(&[], &["a"]), None);
        assert_eq!(select_protocol(&["a"], &[]), None);
    }

    #[test]
    fn rejections_carry_their_headers() {
        let text = |status, reason| String::from_utf8(reject_bytes(status, reason)).unwrap();
        let upgrade = text(StatusCode::UPGRADE_REQUIRED, "version");
        assert!(
            upgrade.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{upgrade}"
        );
        assert!(
            upgrade.contains("\r\nSec-WebSocket-Version: 13\r\n"),
            "{upgrade}"
        );
        let method = text(StatusCode::METHOD_NOT_ALLOWED, "GET only");
        assert!(method.contains("\r\nAllow: GET\r\n"), "{method}");
        assert!(!method.contains("Sec-WebSocket-Version"), "{method}");
        let forbidden = text(StatusCode::FORBIDDEN, "héllo");
        assert!(
            forbidden.contains("\r\nContent-Length: 6\r\n"),
            "{forbidden}"
        );
        assert!(
            forbidden.contains("\r\nConnection: close\r\n"),
            "{forbidden}"
        );
        assert!(forbidden.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"));
        assert!(forbidden.ends_with("\r\n\r\nhéllo"), "{forbidden}");

        let response = rejection(&HandshakeError::MissingKey);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.body(),
            "the request has no Sec-WebSocket-Key header"
        );
    }

    fn library_upgrade(version: Version) -> http::Request<()> {
        http::Request::get("/chat?room=1")
            .version(version)
            .header(HOST, "example.com:8080")
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "Upgrade")
            .header(SEC_WEBSOCKET_KEY, KEY)
            .header(SEC_WEBSOCKET_VERSION, "13")
            .body(())
            .unwrap()
    }

    #[test]
    fn from_http_keeps_the_version_and_refuses_before_http_1_1() {
        let request = Request::from_http(&library_upgrade(Version::HTTP_11)).unwrap();
        assert_eq!(request.resource(), "/chat?room=1");
        assert_eq!(request.host(), Some("example.com:8080"));
        assert_eq!(request.key(), KEY);
        assert_eq!(request.version(), Version::HTTP_11);
        assert!(!request.is_extended_connect());
        // "HTTP/1.1 or later", as RFC 6455 §4.1 says.
        let later = Request::from_http(&library_upgrade(Version::HTTP_2)).unwrap();
        assert_eq!(later.version(), Version::HTTP_2);
        for old in [Version::HTTP_09, Version::HTTP_10] {
            let err = Request::from_http(&library_upgrade(old)).unwrap_err();
            assert!(
                matches!(err, HandshakeError::UnsupportedHttpVersion),
                "{old:?}: {err:?}"
            );
        }
        // The 101, whatever the version.
        let response = later.accept().build().unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.version(), Version::HTTP_11);
    }

    fn extended_connect() -> Request {
        let request = http::Request::connect("https://example.com/chat")
            .version(Version::HTTP_2)
            .header(SEC_WEBSOCKET_VERSION, "13")
            .header(SEC_WEBSOCKET_PROTOCOL, "chat")
            .body(())
            .unwrap();
        Request::from_extended_connect(&request, Some("websocket")).unwrap()
    }

    #[test]
    fn extended_connect_answer() {
        let request = extended_connect();
        assert!(request.is_extended_connect());
        assert_eq!(request.host(), Some("example.com"));
        let response = request.accept().protocol("chat").build().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), Version::HTTP_2);
        assert!(!response.headers().contains_key(UPGRADE));
        assert!(!response.headers().contains_key(CONNECTION));
        assert!(!response.headers().contains_key(SEC_WEBSOCKET_ACCEPT));
        assert_eq!(response.headers()[SEC_WEBSOCKET_PROTOCOL], "chat");

        // write() still writes the head, as HTTP/1.1.
        let mut out = Vec::new();
        request.accept().protocol("chat").write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }

    #[test]
    fn rejections_by_version() {
        for version in [Version::HTTP_10, Version::HTTP_11] {
            let answer = reject_for(StatusCode::METHOD_NOT_ALLOWED, "no", version);
            let plain = reject(StatusCode::METHOD_NOT_ALLOWED, "no");
            assert_eq!(answer.version(), Version::HTTP_11);
            assert_eq!(answer.headers(), plain.headers());
            assert_eq!(answer.headers()[CONNECTION], "close");
            assert_eq!(answer.headers()[ALLOW], "GET");
        }
        for version in [Version::HTTP_2, Version::HTTP_3] {
            let answer = reject_for(StatusCode::METHOD_NOT_ALLOWED, "no", version);
            assert_eq!(answer.version(), version);
            assert!(!answer.headers().contains_key(CONNECTION));
            assert_eq!(answer.headers()[ALLOW], "CONNECT");
            assert_eq!(answer.headers()[CONTENT_LENGTH], "2");
            assert_eq!(answer.body(), "no");
        }
        let err = HandshakeError::UnsupportedVersion;
        let answer = rejection_for(&err, Version::HTTP_2);
        assert_eq!(answer.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(answer.headers()[SEC_WEBSOCKET_VERSION], "13");
        assert!(!answer.headers().contains_key(CONNECTION));
        assert_eq!(answer.body(), &err.to_string());
    }
}
