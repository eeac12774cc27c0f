//! The client's side of the opening handshake (RFC 6455 §4.1): build the
//! GET request from a `ws://` or `wss://` URL, then parse and check the
//! server's answer incrementally.
//!
//! The caller owns the socket: it connects to [`ClientRequest::host`] and
//! [`ClientRequest::port`] (with TLS when [`ClientRequest::is_tls`]), sends
//! the bytes of [`ClientRequest::write`], and calls [`parse_response`] on
//! what it reads until it gets a [`Response`]. Bytes after the response
//! head are already WebSocket frames and belong to the framing layer.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use http::{Method, StatusCode, Uri, Version};

use super::error::HandshakeError;
use super::extensions::{
    parse_extension_headers, parse_extensions, to_header_value, ExtensionOffer,
};
use super::head::{self, HeaderMapError};
use super::headers::{headers_contain_token, is_token, split_host_port, trim_ows};
use super::keys::{accept_key, is_valid_key, request_key};
use super::server::checked_header;

/// The most header lines accepted in the server's response.
pub const MAX_RESPONSE_HEADERS: usize = 128;

/// A client's handshake request, ready to be written: target, key,
/// `Origin`, offered subprotocols and extensions, extra headers.
///
/// ```
/// use weft_proto::handshake::ClientRequest;
/// let request = ClientRequest::builder("wss://example.com/chat?room=1")
///     .origin("https://example.com")
///     .protocols(["chat", "superchat"])
///     .header("Authorization", "Bearer abc")
///     .build()?;
/// assert_eq!((request.host(), request.port(), request.is_tls()), ("example.com", 443, true));
/// let mut out = Vec::new();
/// request.write(&mut out);
/// assert!(out.starts_with(b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\n"));
/// # Ok::<(), weft_proto::handshake::HandshakeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientRequest {
    host: String,
    port: u16,
    tls: bool,
    host_header: String,
    resource: String,
    key: String,
    origin: Option<HeaderValue>,
    protocols: Vec<String>,
    extensions: Vec<ExtensionOffer>,
    extensions_value: Option<HeaderValue>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `http[s]://authority/path?query`, the extended CONNECT's URI.
    connect_uri: Uri,
}

/// Builds a [`ClientRequest`]; see [`ClientRequest::builder`].
///
/// Each setter records the first mistake; [`build`](Self::build) reports it.
#[derive(Debug)]
pub struct ClientRequestBuilder {
    result: Result<ClientRequest, HandshakeError>,
}

/// Request headers that the handshake sets itself.
const RESERVED_REQUEST_HEADERS: [HeaderName; 8] = [
    HOST,
    UPGRADE,
    CONNECTION,
    ORIGIN,
    SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION,
    SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_EXTENSIONS,
];

impl ClientRequest {
    /// A request for `url` with a fresh random key and nothing else.
    pub fn new(url: &str) -> Result<ClientRequest, HandshakeError> {
        ClientRequest::builder(url).build()
    }

    /// Starts a request for `url`: `ws://host[:port]/path?query` or
    /// `wss://...`. The default ports are 80 and 443, and the `Host` header
    /// leaves the port out when it is the default. Other schemes, user
    /// information (`user@`) and fragments (`#...`) are refused when
    /// [`build`](ClientRequestBuilder::build) is called.
    pub fn builder(url: &str) -> ClientRequestBuilder {
        ClientRequestBuilder {
            result: parse_url(url),
        }
    }

    /// The host to connect to: a name or an IP address (an IPv6 address
    /// without its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the URL is `wss://`: the connection must be TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The `Host` header that is sent: `host` or `host:port`.
    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// The resource requested: path and query, e.g. `/chat?room=1`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The `Sec-WebSocket-Key` that is sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The subprotocols offered, in order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The extensions offered, in order of preference.
    pub fn extensions(&self) -> &[ExtensionOffer] {
        &self.extensions
    }

    /// Appends the request's bytes to `out`: the GET line, `Host`,
    /// `Upgrade`, `Connection`, `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version: 13`, then `Origin`, `Sec-WebSocket-Protocol`
    /// and `Sec-WebSocket-Extensions` when set, the extra headers, and the
    /// blank line.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.resource.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut line = |name: &[u8], value: &[u8]| {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        line(b"Host", self.host_header.as_bytes());
        line(b"Upgrade", b"websocket");
        line(b"Connection", b"Upgrade");
        line(b"Sec-WebSocket-Key", self.key.as_bytes());
        line(b"Sec-WebSocket-Version", b"13");
        if let Some(origin) = &self.origin {
            line(b"Origin", origin.as_bytes());
        }
        if !self.protocols.is_empty() {
            line(
                b"Sec-WebSocket-Protocol",
                self.protocols.join(", ").as_bytes(),
            );
        }
        if let Some(extensions) = &self.extensions_value {
            line(b"Sec-WebSocket-Extensions", extensions.as_bytes());
        }
        for (name, value) in &self.headers {
            head::write_name(name.as_str(), out);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The RFC 8441 extended CONNECT request for this URL, for an HTTP/2
    /// (or HTTP/3) client library: method CONNECT, version HTTP/2, the URI
    /// `https://authority/path?query` for `wss://` (`http://` for `ws://`;
    /// the authority is [`host_header`](ClientRequest::host_header)),
    /// `sec-websocket-version: 13`, then `origin`,
    /// `sec-websocket-protocol` and `sec-websocket-extensions` when set, and
    /// the extra headers. No `Sec-WebSocket-Key` (there is no accept hash to
    /// check), no `Upgrade`, `Connection` or `Host` (HTTP/2 forbids the
    /// first two and carries the third as `:authority`, from the URI).
    /// Extra headers are sent as given: leave out connection-specific ones
    /// (`Keep-Alive`, `Transfer-Encoding`...), which HTTP/2 forbids.
    ///
    /// The caller adds the `:protocol` pseudo-header, `websocket`, the way
    /// its library wants (hyper: the `hyper::ext::Protocol` request
    /// extension), sends the request on a connection whose peer allows
    /// extended CONNECT (`SETTINGS_ENABLE_CONNECT_PROTOCOL`), and checks the
    /// answer with [`check_extended_connect_response`].
    ///
    /// ```
    /// use weft_proto::handshake::ClientRequest;
    /// let request = ClientRequest::builder("wss://example.com/chat")
    ///     .protocols(["chat"])
    ///     .build()?
    ///     .to_extended_connect();
    /// assert_eq!(request.method(), http::Method::CONNECT);
    /// assert_eq!(request.uri(), "https://example.com/chat");
    /// assert_eq!(request.headers()["sec-websocket-protocol"], "chat");
    /// # Ok::<(), weft_proto::handshake::HandshakeError>(())
    /// ```
    pub fn to_extended_connect(&self) -> http::Request<()> {
        let mut request = http::Request::new(());
        *request.method_mut() = Method::CONNECT;
        *request.uri_mut() = self.connect_uri.clone();
        *request.version_mut() = Version::HTTP_2;
        let headers = request.headers_mut();
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        if let Some(origin) = &self.origin {
            headers.insert(ORIGIN, origin.clone());
        }
        if !self.protocols.is_empty() {
            // Tokens joined by ", " make a valid value; the check is for form.
            if let Ok(value) = HeaderValue::try_from(self.protocols.join(", ")) {
                headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
            }
        }
        if let Some(extensions) = &self.extensions_value {
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, extensions.clone());
        }
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        request
    }
}

/// Splits a `ws://` or `wss://` URL into what the request needs.
fn parse_url(url: &str) -> Result<ClientRequest, HandshakeError> {
    let invalid = |reason| HandshakeError::InvalidUrl { reason };
    if url.contains('#') {
        return Err(invalid("a WebSocket URL has no fragment (#...)"));
    }
    let uri: Uri = url.parse().map_err(|_| invalid("not a valid URL"))?;
    let scheme = uri.scheme_str().ok_or(invalid(
        "no scheme; a WebSocket URL starts with ws:// or wss://",
    ))?;
    let tls = if scheme.eq_ignore_ascii_case("ws") {
        false
    } else if scheme.eq_ignore_ascii_case("wss") {
        true
    } else {
        return Err(HandshakeError::UnsupportedScheme {
            scheme: scheme.to_owned(),
        });
    };
    let authority = uri.authority().ok_or(invalid("no host"))?.as_str();
    if authority.contains('@') {
        return Err(invalid("user information (user@) is not allowed"));
    }
    let (host, port) = split_host_port(authority).ok_or(invalid("invalid host or port"))?;
    let default_port = if tls { 443 } else { 80 };
    let port = port.unwrap_or(default_port);
    let host_header = if port == default_port {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    let bare_host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    let resource = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    // The same authority and resource, as the URI an HTTP/2 library sends
    // as :scheme, :authority and :path.
    let connect_uri = Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(host_header.as_str())
        .path_and_query(resource.as_str())
        .build()
        .map_err(|_| invalid("not a valid URL"))?;
    Ok(ClientRequest {
        host: bare_host.to_owned(),
        port,
        tls,
        host_header,
        resource,
        key: request_key(),
        origin: None,
        protocols: Vec::new(),
        extensions: Vec::new(),
        extensions_value: None,
        headers: Vec::new(),
        connect_uri,
    })
}

impl ClientRequestBuilder {
    /// Sets the `Origin` header, e.g. `https://example.com`.
    pub fn origin(self, origin: &str) -> Self {
        self.and_then(|mut request| {
            let value =
                HeaderValue::from_str(origin).map_err(|_| HandshakeError::InvalidHeader {
                    name: ORIGIN.as_str().to_owned(),
                    reason: "the value has control or non-ASCII characters",
                })?;
            request.origin = Some(value);
            Ok(request)
        })
    }

    /// Offers subprotocols, in order of preference (replacing any offered
    /// before). Each must be a distinct token.
    pub fn protocols<I, S>(self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let protocols: Vec<String> = protocols
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        self.and_then(|mut request| {
            let invalid = |reason| HandshakeError::InvalidHeader {
                name: SEC_WEBSOCKET_PROTOCOL.as_str().to_owned(),
                reason,
            };
            for (i, protocol) in protocols.iter().enumerate() {
                if !is_token(protocol) {
                    return Err(invalid("a subprotocol name must be a token"));
                }
                if protocols.iter().take(i).any(|p| p == protocol) {
                    return Err(invalid("subprotocols must be distinct"));
                }
            }
            request.protocols = protocols;
            Ok(request)
        })
    }

    /// Offers extensions, in order of preference (replacing any offered
    /// before). Names and values must be tokens (RFC 6455 §9.1).
    pub fn extensions(self, offers: &[ExtensionOffer]) -> Self {
        let offers = offers.to_vec();
        self.and_then(|mut request| {
            let invalid = |reason| HandshakeError::InvalidHeader {
                name: SEC_WEBSOCKET_EXTENSIONS.as_str().to_owned(),
                reason,
            };
            let value = to_header_value(&offers);
            // Reading it back is how we know it is §9.1 syntax.
            if parse_extensions(value.as_bytes()).ok().as_ref() != Some(&offers) {
                return Err(invalid("extension names and values must be tokens"));
            }
            request.extensions_value = if offers.is_empty() {
                None
            } else {
                Some(
                    HeaderValue::try_from(value)
                        .map_err(|_| invalid("not a valid header value"))?,
                )
            };
            request.extensions = offers;
            Ok(request)
        })
    }

    /// Adds a header (`Authorization`, `Cookie`, `User-Agent`...). The
    /// headers the handshake sets itself (`Host`, `Upgrade`, `Connection`,
    /// `Origin`, `Sec-WebSocket-*`) are refused; use the dedicated setters.
    pub fn header(self, name: &str, value: &str) -> Self {
        let header = checked_header(name, value, &RESERVED_REQUEST_HEADERS);
        self.and_then(|mut request| {
            request.headers.push(header?);
            Ok(request)
        })
    }

    /// Uses `key` as `Sec-WebSocket-Key` instead of a random one, for tests
    /// and for callers with their own random source (see
    /// [`encode_key`](super::encode_key)). It must be the base64 of 16 bytes.
    pub fn key(self, key: &str) -> Self {
        self.and_then(|mut request| {
            if !is_valid_key(key.as_bytes()) {
                return Err(HandshakeError::InvalidHeader {
                    name: SEC_WEBSOCKET_KEY.as_str().to_owned(),
                    reason: "not the base64 encoding of 16 bytes",
                });
            }
            request.key = key.to_owned();
            Ok(request)
        })
    }

    /// The request, or the first mistake made while building it.
    pub fn build(self) -> Result<ClientRequest, HandshakeError> {
        self.result
    }

    fn and_then(
        self,
        f: impl FnOnce(ClientRequest) -> Result<ClientRequest, HandshakeError>,
    ) -> Self {
        ClientRequestBuilder {
            result: self.result.and_then(f),
        }
    }
}

/// The server's 101 answer, after every check of RFC 6455 §4.1 (or its 200
/// answer to an extended CONNECT, after those of RFC 8441 §5): the selected
/// subprotocol and extensions are there for the application.
#[derive(Debug)]
pub struct Response {
    inner: http::Response<()>,
    protocol: Option<String>,
    extensions: Vec<ExtensionOffer>,
}

impl Response {
    /// The subprotocol the server selected, one of those offered, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The extensions the server accepted, with its parameters, in order.
    pub fn extensions(&self) -> &[ExtensionOffer] {
        &self.extensions
    }

    /// All the response's headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The status: 101 Switching Protocols, or 200 OK for the answer to an
    /// extended CONNECT.
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// The response as an `http::Response`.
    pub fn as_http(&self) -> &http::Response<()> {
        &self.inner
    }

    /// The response as an `http::Response`, taken apart.
    pub fn into_http(self) -> http::Response<()> {
        self.inner
    }
}

/// Parses the server's answer to `request` from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete, or
/// `Ok(Some((response, consumed)))` where `consumed` is the length of the
/// head: any bytes after it are the first WebSocket frames and belong to
/// the framing layer.
///
/// Errors when the head is larger than `max_head` bytes (even before it is
/// complete; [`DEFAULT_MAX_HEAD_SIZE`](super::DEFAULT_MAX_HEAD_SIZE) is a
/// reasonable value) or has more than [`MAX_RESPONSE_HEADERS`] lines; when
/// the status is not 101 ([`HandshakeError::UnexpectedStatus`] keeps the
/// status and headers); and when `Upgrade: websocket`,
/// `Connection: Upgrade` or the right `Sec-WebSocket-Accept` is missing, or
/// the server selected a subprotocol or an extension that was not offered.
///
/// ```
/// use weft_proto::handshake::{parse_response, ClientRequest};
/// let request = ClientRequest::builder("ws://example.com/")
///     .key("dGhlIHNhbXBsZSBub25jZQ==")
///     .build()?;
/// let buf = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
/// let (response, consumed) = parse_response(buf, &request, 8192)?.expect("complete");
/// assert_eq!((response.protocol(), consumed), (None, buf.len()));
/// # Ok::<(), weft_proto::handshake::HandshakeError>(())
/// ```
pub fn parse_response(
    buf: &[u8],
    request: &ClientRequest,
    max_head: usize,
) -> Result<Option<(Response, usize)>, HandshakeError> {
    let window = head::window(buf, max_head);
    let mut slots = vec![httparse::EMPTY_HEADER; head::header_slots(window, MAX_RESPONSE_HEADERS)];
    let mut parsed = httparse::Response::new(&mut slots);
    let malformed = |reason| HandshakeError::MalformedResponse { reason };
    let consumed = match parsed.parse(window) {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) if buf.len() > max_head => {
            return Err(HandshakeError::ResponseTooLarge { limit: max_head })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(malformed(head::httparse_reason(err))),
    };

    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(malformed("invalid status code"))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let headers = head::to_header_map(parsed.headers).map_err(|err| match err {
        HeaderMapError::Invalid(reason) => malformed(reason),
        HeaderMapError::TooMany => malformed("too many headers"),
    })?;
    let mut inner = http::Response::new(());
    *inner.status_mut() = status;
    *inner.version_mut() = version;
    *inner.headers_mut() = headers;

    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(HandshakeError::UnexpectedStatus {
            response: Box::new(inner),
            head_len: consumed,
        });
    }
    if version == Version::HTTP_10 {
        return Err(malformed("a 101 response must be HTTP/1.1"));
    }
    let headers = inner.headers();
    if !headers_contain_token(headers, &UPGRADE, "websocket") {
        return Err(HandshakeError::InvalidResponseUpgrade);
    }
    if !headers_contain_token(headers, &CONNECTION, "upgrade") {
        return Err(HandshakeError::InvalidResponseConnection);
    }

    let mut accepts = headers.get_all(SEC_WEBSOCKET_ACCEPT).iter();
    match (accepts.next(), accepts.next()) {
        (None, _) => return Err(HandshakeError::MissingAccept),
        (Some(accept), None)
            if trim_ows(accept.as_bytes()) == accept_key(request.key.as_bytes()).as_bytes() => {}
        _ => return Err(HandshakeError::AcceptMismatch),
    }

    let (protocol, extensions) = check_selection(headers, request)?;
    Ok(Some((
        Response {
            inner,
            protocol,
            extensions,
        },
        consumed,
    )))
}

/// Checks a server's answer to an extended CONNECT (RFC 8441) made from
/// [`ClientRequest::to_extended_connect`], as the HTTP library gave it:
/// the status is 200 (any other, a 101 included, is
/// [`HandshakeError::UnexpectedStatus`] with the head and `head_len` 0),
/// and the subprotocol and extensions are ones that were offered, by the
/// same rules as [`parse_response`]. There is no `Sec-WebSocket-Accept` to
/// check. The body is not looked at: after a 200 it is the WebSocket
/// stream.
///
/// The [`Response`] is the same as [`parse_response`] gives, so what comes
/// next (the permessage-deflate answer, the subprotocol) is shared.
///
/// ```
/// use weft_proto::handshake::{check_extended_connect_response, ClientRequest};
/// let request = ClientRequest::builder("wss://example.com/chat")
///     .protocols(["chat"])
///     .build()?;
/// let answer = http::Response::builder()
///     .version(http::Version::HTTP_2)
///     .header("sec-websocket-protocol", "chat")
///     .body(())
///     .expect("a valid response");
/// let response = check_extended_connect_response(&answer, &request)?;
/// assert_eq!(response.protocol(), Some("chat"));
/// # Ok::<(), weft_proto::handshake::HandshakeError>(())
/// ```
pub fn check_extended_connect_response<B>(
    response: &http::Response<B>,
    request: &ClientRequest,
) -> Result<Response, HandshakeError> {
    let mut inner = http::Response::new(());
    *inner.status_mut() = response.status();
    *inner.version_mut() = response.version();
    *inner.headers_mut() = response.headers().clone();
    if response.status() != StatusCode::OK {
        return Err(HandshakeError::UnexpectedStatus {
            response: Box::new(inner),
            head_len: 0,
        });
    }
    let (protocol, extensions) = check_selection(inner.headers(), request)?;
    Ok(Response {
        inner,
        protocol,
        extensions,
    })
}

/// The subprotocol and extensions a server's answer selected, each one
/// that `request` offered (RFC 6455 §4.1, points 5 and 6).
fn check_selection(
    headers: &HeaderMap,
    request: &ClientRequest,
) -> Result<(Option<String>, Vec<ExtensionOffer>), HandshakeError> {
    let malformed = |reason| HandshakeError::MalformedResponse { reason };
    let mut protocols = headers.get_all(SEC_WEBSOCKET_PROTOCOL).iter();
    let protocol = match (protocols.next(), protocols.next()) {
        (None, _) => None,
        (Some(value), None) => {
            let value = std::str::from_utf8(trim_ows(value.as_bytes()))
                .ok()
                .filter(|v| is_token(v))
                .ok_or(malformed(
                    "Sec-WebSocket-Protocol must name exactly one subprotocol",
                ))?;
            if !request.protocols.iter().any(|p| p == value) {
                return Err(HandshakeError::UnrequestedProtocol {
                    protocol: value.to_owned(),
                });
            }
            Some(value.to_owned())
        }
        (Some(_), Some(_)) => {
            return Err(malformed("Sec-WebSocket-Protocol appears more than once"))
        }
    };

    let extensions =
        parse_extension_headers(headers).map_err(HandshakeError::MalformedResponseExtensions)?;
    if let Some(extra) = extensions.iter().find(|accepted| {
        !request
            .extensions
            .iter()
            .any(|offered| offered.name.eq_ignore_ascii_case(&accepted.name))
    }) {
        return Err(HandshakeError::UnrequestedExtension {
            name: extra.name.clone(),
        });
    }

    Ok((protocol, extensions))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn request(url: &str) -> ClientRequest {
        ClientRequest::builder(url).key(KEY).build().unwrap()
    }

    fn response_with(extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn urls() {
        let cases = [
            (
                "ws://example.com",
                "example.com",
                80,
                false,
                "example.com",
                "/",
            ),
            (
                "wss://example.com/a/b?c=d&e",
                "example.com",
                443,
                true,
                "example.com",
                "/a/b?c=d&e",
            ),
            (
                "ws://example.com?x=1",
                "example.com",
                80,
                false,
                "example.com",
                "/?x=1",
            ),
            ("ws://h:80/", "h", 80, false, "h", "/"),
            ("ws://h:443/", "h", 443, false, "h:443", "/"),
            ("wss://h:80/", "h", 80, true, "h:80", "/"),
            ("WSS://h:8443/x", "h", 8443, true, "h:8443", "/x"),
            ("ws://[::1]:9001/", "::1", 9001, false, "[::1]:9001", "/"),
            ("ws://[::1]/", "::1", 80, false, "[::1]", "/"),
            (
                "ws://127.0.0.1:0/",
                "127.0.0.1",
                0,
                false,
                "127.0.0.1:0",
                "/",
            ),
        ];
        for (url, host, port, tls, host_header, resource) in cases {
            let r = request(url);
            assert_eq!(
                (
                    r.host(),
                    r.port(),
                    r.is_tls(),
                    r.host_header(),
                    r.resource()
                ),
                (host, port, tls, host_header, resource),
                "{url}"
            );
        }
    }

    #[test]
    fn bad_urls() {
        for (url, expected) in [
            ("http://example.com/", "unsupported URL scheme \"http\""),
            ("ftp://example.com/", "unsupported URL scheme \"ftp\""),
            ("ws://example.com/#frag", "no fragment"),
            ("ws://user:pw@example.com/", "user information"),
            ("ws://h:99999/", "invalid host or port"),
            ("ws://h:x/", "invalid host or port"),
            ("/chat", "no scheme"),
            ("example.com", "no scheme"),
            ("ws://", "not a valid URL"),
            ("ws://exa mple.com/", "not a valid URL"),
            ("", "not a valid URL"),
        ] {
            let err = ClientRequest::new(url).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{url}: {err} (wanted {expected:?})"
            );
            assert!(
                matches!(
                    err,
                    HandshakeError::InvalidUrl { .. } | HandshakeError::UnsupportedScheme { .. }
                ),
                "{url}: {err:?}"
            );
        }
    }

    #[test]
    fn random_keys_by_default() {
        let a = ClientRequest::new("ws://h/").unwrap();
        let b = ClientRequest::new("ws://h/").unwrap();
        assert!(is_valid_key(a.key().as_bytes()));
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn request_bytes() {
        let request = ClientRequest::builder("ws://example.com:8080/chat?x=1")
            .key(KEY)
            .origin("http://example.com")
            .protocols(["chat", "superchat"])
            .extensions(&[ExtensionOffer::new("permessage-deflate")
                .with_param("client_max_window_bits", None)])
            .header("user-agent", "weft")
            .build()
            .unwrap();
        let mut out = b"previous".to_vec();
        request.write(&mut out);
        let expected = format!(
            "previousGET /chat?x=1 HTTP/1.1\r\n\
             Host: example.com:8080\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Origin: http://example.com\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
             User-Agent: weft\r\n\
             \r\n"
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn minimal_request_bytes() {
        let mut out = Vec::new();
        request("ws://h").write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
        );
    }

    #[test]
    fn builder_mistakes() {
        let invalid_header = |builder: ClientRequestBuilder| match builder.build() {
            Err(HandshakeError::InvalidHeader { name, reason }) => (name, reason),
            other => panic!("expected InvalidHeader, got {other:?}"),
        };
        let b = || ClientRequest::builder("ws://h/");
        assert_eq!(
            invalid_header(b().key("c2hvcnQ=")),
            (
                "sec-websocket-key".into(),
                "not the base64 encoding of 16 bytes"
            )
        );
        assert_eq!(
            invalid_header(b().protocols(["a b"])),
            (
                "sec-websocket-protocol".into(),
                "a subprotocol name must be a token"
            )
        );
        assert_eq!(
            invalid_header(b().protocols(["a", "b", "a"])),
            (
                "sec-websocket-protocol".into(),
                "subprotocols must be distinct"
            )
        );
        assert_eq!(
            invalid_header(b().origin("http://x\r\nEvil: 1")).0,
            "origin"
        );
        assert_eq!(
            invalid_header(b().extensions(&[ExtensionOffer::new("a b")])).1,
            "extension names and values must be tokens"
        );
        assert_eq!(
            invalid_header(
                b().extensions(&[ExtensionOffer::new("a").with_param("p", Some("1 2"))])
            )
            .1,
            "extension names and values must be tokens"
        );
        for reserved in [
            "Host",
            "upgrade",
            "Origin",
            "Sec-WebSocket-Key",
            "sec-websocket-version",
        ] {
            assert_eq!(
                invalid_header(b().header(reserved, "x")).1,
                "set by the handshake itself",
                "{reserved}"
            );
        }
        // The first mistake is the one reported, even after a bad URL.
        assert!(matches!(
            ClientRequest::builder("http://h/").key("bad").build(),
            Err(HandshakeError::UnsupportedScheme { .. })
        ));
        // Setting an empty list clears the offers.
        let r = b()
            .protocols(["a"])
            .protocols(Vec::<String>::new())
            .build()
            .unwrap();
        assert!(r.protocols().is_empty());
    }

    #[test]
    fn accepted_response() {
        let request = ClientRequest::builder("ws://h/")
            .key(KEY)
            .protocols(["chat", "superchat"])
            .extensions(&[ExtensionOffer::new("permessage-deflate")])
            .build()
            .unwrap();
        let mut buf = response_with(
            "Sec-WebSocket-Protocol: superchat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
        );
        let head_len = buf.len();
        buf.extend_from_slice(b"\x81\x05hello");
        let (response, consumed) = parse_response(&buf, &request, 8192).unwrap().unwrap();
        assert_eq!(consumed, head_len);
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.protocol(), Some("superchat"));
        assert_eq!(
            response.extensions()[0].params[0].name,
            "server_no_context_takeover"
        );
        assert_eq!(response.headers()[SEC_WEBSOCKET_ACCEPT], ACCEPT);
        assert_eq!(response.as_http().version(), Version::HTTP_11);
        assert_eq!(
            response.into_http().status(),
            StatusCode::SWITCHING_PROTOCOLS
        );
    }

    #[test]
    fn tolerant_of_case_and_token_lists() {
        let buf = format!(
            "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n\
             sec-websocket-accept:  {ACCEPT} \r\n\r\n"
        );
        assert!(parse_response(buf.as_bytes(), &request("ws://h/"), 8192)
            .unwrap()
            .is_some());
    }

    #[test]
    fn response_mistakes() {
        let plain = request("ws://h/");
        let check = |buf: &[u8], request: &ClientRequest| {
            parse_response(buf, request, 8192).expect_err("must be refused")
        };
        let twice = response_with(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n"));
        assert!(matches!(
            check(&twice, &plain),
            HandshakeError::AcceptMismatch
        ));

        let offered = ClientRequest::builder("ws://h/")
            .key(KEY)
            .protocols(["a", "b"])
            .build()
            .unwrap();
        for (extra, reason) in [
            ("Sec-WebSocket-Protocol: a, b\r\n", "exactly one"),
            ("Sec-WebSocket-Protocol: \r\n", "exactly one"),
            (
                "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: a\r\n",
                "more than once",
            ),
        ] {
            let err = check(&response_with(extra), &offered);
            assert!(
                matches!(err, HandshakeError::MalformedResponse { reason: r } if r.contains(reason)),
                "{extra:?}: {err:?}"
            );
        }
        let err = check(&response_with("Sec-WebSocket-Protocol: A\r\n"), &offered);
        assert!(
            matches!(&err, HandshakeError::UnrequestedProtocol { protocol } if protocol == "A"),
            "{err:?}"
        );

        let err = check(
            &response_with("Sec-WebSocket-Extensions: x-foo\r\n"),
            &plain,
        );
        assert!(
            matches!(&err, HandshakeError::UnrequestedExtension { name } if name == "x-foo"),
            "{err:?}"
        );
        let err = check(&response_with("Sec-WebSocket-Extensions: x;\r\n"), &plain);
        assert!(
            matches!(err, HandshakeError::MalformedResponseExtensions(_)),
            "{err:?}"
        );
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);

        let old = String::from_utf8(response_with(""))
            .unwrap()
            .replacen("HTTP/1.1", "HTTP/1.0", 1);
        assert!(matches!(
            check(old.as_bytes(), &plain),
            HandshakeError::MalformedResponse { .. }
        ));
        assert!(matches!(
            check(b"HTTP/1.1 abc Nope\r\n\r\n", &plain),
            HandshakeError::MalformedResponse { .. }
        ));
        assert!(matches!(
            check(b"HTTP/1.1 099 Nope\r\n\r\n", &plain),
            HandshakeError::MalformedResponse { .. }
        ));
    }

    #[test]
    fn unexpected_status_keeps_the_head() {
        let buf =
            b"HTTP/1.1 302 Found\r\nLocation: ws://elsewhere/\r\nContent-Length: 3\r\n\r\nabc";
        match parse_response(buf, &request("ws://h/"), 8192) {
            Err(HandshakeError::UnexpectedStatus { response, head_len }) => {
                assert_eq!(response.status(), StatusCode::FOUND);
                assert_eq!(response.headers()["location"], "ws://elsewhere/");
                assert_eq!(&buf[head_len..], b"abc");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn head_limits() {
        let buf = response_with("");
        let plain = request("ws://h/");
        assert!(matches!(
            parse_response(&buf, &plain, buf.len()),
            Ok(Some(_))
        ));
        assert!(matches!(
            parse_response(&buf, &plain, buf.len() - 1),
            Err(HandshakeError::ResponseTooLarge { limit }) if limit == buf.len() - 1
        ));
        assert!(matches!(
            parse_response(&buf[..buf.len() - 1], &plain, buf.len() - 1),
            Ok(None)
        ));
        let many: String = (0..=MAX_RESPONSE_HEADERS)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        let err = parse_response(&response_with(&many), &plain, 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                HandshakeError::MalformedResponse {
                    reason: "too many headers"
                }
            ),
            "{err:?}"
        );
        let fewer: String = (3..MAX_RESPONSE_HEADERS)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        assert!(parse_response(&response_with(&fewer), &plain, 1 << 20)
            .unwrap()
            .is_some());
    }

    #[test]
    fn extended_connect_uris() {
        for (url, uri) in [
            ("ws://h", "http://h/"),
            ("wss://h/a?b=c", "https://h/a?b=c"),
            ("wss://h:443/", "https://h/"),
            ("ws://h:443/", "http://h:443/"),
            ("ws://[::1]:9001/x", "http://[::1]:9001/x"),
            ("WSS://H:8443?q", "https://H:8443/?q"),
        ] {
            let request = request(url).to_extended_connect();
            assert_eq!(request.uri(), uri, "{url}");
            assert_eq!(request.method(), Method::CONNECT, "{url}");
            assert_eq!(request.version(), Version::HTTP_2, "{url}");
        }
    }

    #[test]
    fn extended_connect_headers() {
        let request = ClientRequest::builder("ws://h/")
            .key(KEY)
            .protocols(["a"])
            .header("cookie", "x=1")
            .header("cookie", "y=2")
            .build()
            .unwrap()
            .to_extended_connect();
        let headers = request.headers();
        assert_eq!(headers[SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(headers[SEC_WEBSOCKET_PROTOCOL], "a");
        assert_eq!(headers.get_all("cookie").iter().count(), 2);
        for absent in [SEC_WEBSOCKET_KEY, UPGRADE, CONNECTION, HOST, ORIGIN] {
            assert!(!headers.contains_key(&absent), "{absent}");
        }
    }

    #[test]
    fn extended_connect_response() {
        let offered = ClientRequest::builder("wss://h/")
            .protocols(["a"])
            .extensions(&[ExtensionOffer::new("permessage-deflate")])
            .build()
            .unwrap();
        let answer = http::Response::builder()
            .version(Version::HTTP_2)
            .header(SEC_WEBSOCKET_PROTOCOL, "a")
            .header(SEC_WEBSOCKET_EXTENSIONS, "permessage-deflate")
            .body(())
            .unwrap();
        let response = check_extended_connect_response(&answer, &offered).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.protocol(), Some("a"));
        assert_eq!(response.extensions()[0].name, "permessage-deflate");
        assert_eq!(response.as_http().version(), Version::HTTP_2);

        let refused = http::Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        let err = check_extended_connect_response(&refused, &offered).unwrap_err();
        assert!(
            matches!(&err, HandshakeError::UnexpectedStatus { response, head_len: 0 }
                if response.status() == StatusCode::SWITCHING_PROTOCOLS),
            "{err:?}"
        );
    }
}
