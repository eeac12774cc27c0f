//! WebSockets over HTTP/2 (RFC 8441) for the async client: [`H2Connection`] opens several
//! WebSockets on one HTTP/2 connection (h2 over TLS, or h2c with prior knowledge), and
//! [`connect_auto`] opens one WebSocket over HTTP/2 when the server offers it, over
//! HTTP/1.1 otherwise.
//!
//! hyper speaks HTTP/2; weft-proto builds the extended CONNECT
//! ([`ClientRequest::to_extended_connect`]) and checks the answer
//! ([`check_extended_connect_response`]); this module only moves the request, the answer
//! and the stream.
//!
//! RFC 8441 lets a client send an extended CONNECT only to a server whose SETTINGS carry
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`. hyper (h2) does not enforce it: it sends the
//! request anyway, and a server without the setting resets the stream. So the client reads
//! the server's first frame itself (the server's connection preface is a SETTINGS frame)
//! as the bytes pass to hyper, and knows, before any request, whether the server allows
//! WebSockets; one that does not is [`H2Error::NoExtendedConnect`].

use super::{with_timeout, MaybeTlsStream, WebSocket};
use crate::error::{Error, Result};
use crate::options::Options;
use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::net::TcpStream;
use ::tokio::sync::watch;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use weft_proto::handshake::{check_extended_connect_response, ClientRequest, Response};
use weft_proto::{Connection, Role};

/// The ALPN name of HTTP/2 over TLS.
const ALPN_H2: &[u8] = b"h2";
/// The ALPN name of HTTP/1.1.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a WebSocket could not be opened over HTTP/2. It reaches the caller inside
/// [`Error::Io`]; [`H2Error::of`] finds it there.
///
/// ```no_run
/// # async fn run() {
/// match weft::tokio::H2Connection::connect("wss://example.com/", &weft::Options::default()).await {
///     Err(e) if matches!(weft::tokio::H2Error::of(&e), Some(weft::tokio::H2Error::NoExtendedConnect)) => {
///         // The server speaks HTTP/2 but not RFC 8441: use HTTP/1.1 (or `connect_auto`).
///     }
///     _ => {}
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum H2Error {
    /// The TLS server did not select `h2` by ALPN; it selected this protocol (`None`: no
    /// ALPN at all).
    NotNegotiated {
        /// The protocol the server selected, if any.
        selected: Option<Vec<u8>>,
    },
    /// The server speaks HTTP/2, but its SETTINGS do not carry
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`: it does not accept WebSockets over HTTP/2
    /// (RFC 8441 §3).
    NoExtendedConnect,
    /// The peer does not speak HTTP/2: its first bytes were not a SETTINGS frame, or it
    /// closed the connection before sending one (an HTTP/1.1-only server given h2c with
    /// prior knowledge).
    NotHttp2,
    /// HTTP/2 itself failed (hyper): the connection broke, the stream was reset, the
    /// server sent no answer.
    Http(hyper::Error),
}

impl H2Error {
    /// The HTTP/2 error inside `error`, if it is one.
    pub fn of(error: &Error) -> Option<&H2Error> {
        match error {
            Error::Io(e) => e.get_ref()?.downcast_ref::<H2Error>(),
            _ => None,
        }
    }

    /// This error as the drivers' [`Error`].
    fn into_error(self) -> Error {
        let kind = match &self {
            H2Error::NotNegotiated { .. } | H2Error::NoExtendedConnect => {
                io::ErrorKind::Unsupported
            }
            H2Error::NotHttp2 => io::ErrorKind::InvalidData,
            H2Error::Http(_) => io::ErrorKind::Other,
        };
        Error::Io(io::Error::new(kind, self))
    }
}

impl fmt::Display for H2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            H2Error::NotNegotiated { selected: None } => {
                f.write_str("the TLS server did not select h2 by ALPN (it selected nothing)")
            }
            H2Error::NotNegotiated {
                selected: Some(name),
            } => write!(
                f,
                "the TLS server did not select h2 by ALPN (it selected {:?})",
                String::from_utf8_lossy(name)
            ),
            H2Error::NoExtendedConnect => f.write_str(
                "the HTTP/2 server does not accept WebSockets: its SETTINGS lack \
                 SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441)",
            ),
            H2Error::NotHttp2 => f.write_str(
                "the server does not speak HTTP/2 (its first bytes were not a SETTINGS frame)",
            ),
            H2Error::Http(e) => write!(f, "HTTP/2: {e}"),
        }
    }
}

impl std::error::Error for H2Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            H2Error::Http(e) => Some(e),
            _ => None,
        }
    }
}

/// A hyper error as the drivers' [`Error`] (a timeout stays a timeout).
fn http_error(e: hyper::Error) -> Error {
    if e.is_timeout() {
        return Error::Timeout;
    }
    H2Error::Http(e).into_error()
}

/// One HTTP/2 connection to a server, on which [`websocket`](Self::websocket) opens any
/// number of WebSockets (RFC 8441 extended CONNECT), each on a stream of its own. Clones
/// share the connection. The connection runs in a task of its own on the current tokio
/// runtime and lasts while a clone or one of its WebSockets does.
///
/// ```no_run
/// # async fn run() -> weft::Result<()> {
/// let options = weft::Options::default();
/// let h2 = weft::tokio::H2Connection::connect("wss://example.com/", &options).await?;
/// let (mut chat, _) = h2.websocket("wss://example.com/chat", options.clone()).await?;
/// let (mut feed, _) = h2.websocket("wss://example.com/feed", options).await?;
/// chat.send("hello").await?;
/// let _ = feed.recv().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct H2Connection {
    send: SendRequest<Empty<Bytes>>,
}

/// What the server's first frame said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Not all of it has arrived yet.
    Pending,
    /// A SETTINGS frame, with or without `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`.
    Settings {
        /// Whether it allows extended CONNECT.
        connect: bool,
    },
    /// Something else: the peer does not speak HTTP/2.
    NotHttp2,
    /// The connection ended (or failed) first.
    Closed,
}

impl H2Connection {
    /// Connects to the server of `url`: `wss://` is TLS (with [`Options::tls`], or the
    /// Mozilla roots; its ALPN list is replaced by `h2` alone), `ws://` is h2c with prior
    /// knowledge (clear-text HTTP/2 without an upgrade: the server must expect it). The
    /// URL's path does not matter here; each [`websocket`](Self::websocket) names its own.
    ///
    /// TCP is opened within `connect_timeout`; TLS, the HTTP/2 handshake and the server's
    /// SETTINGS come within `handshake_timeout`. A server that does not select `h2`, does
    /// not speak HTTP/2 or does not allow extended CONNECT is an [`H2Error`].
    pub async fn connect(url: &str, options: &Options) -> Result<H2Connection> {
        let request = ClientRequest::new(url)?;
        let tcp = open_tcp(&request, options).await?;
        let io = if request.is_tls() {
            let tls = open_tls(&request, tcp, options, &[ALPN_H2]).await?;
            let selected = tls.get_ref().1.alpn_protocol();
            if selected != Some(ALPN_H2) {
                return Err(H2Error::NotNegotiated {
                    selected: selected.map(<[u8]>::to_vec),
                }
                .into_error());
            }
            MaybeTlsStream::Tls(Box::new(tls))
        } else {
            MaybeTlsStream::Plain(tcp)
        };
        Self::handshake(io, options).await
    }

    /// Starts HTTP/2 on `io`, a transport already connected to the server (and already
    /// TLS with `h2` selected, if it is TLS), and waits for the server's SETTINGS (within
    /// `handshake_timeout`). A server that does not allow extended CONNECT is
    /// [`H2Error::NoExtendedConnect`].
    pub async fn handshake<S>(io: S, options: &Options) -> Result<H2Connection>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (conn, seen) = open_h2(io, options).await?;
        match seen {
            Peer::ExtendedConnect => Ok(conn),
            Peer::NoExtendedConnect => Err(H2Error::NoExtendedConnect.into_error()),
            Peer::NotHttp2 => Err(H2Error::NotHttp2.into_error()),
        }
    }

    /// Opens a WebSocket to `url` on this connection: an extended CONNECT (`:protocol`
    /// `websocket`) for the URL's scheme, authority and resource, offering
    /// permessage-deflate if `options.deflate` is set. The answer (200, subprotocol,
    /// extensions) is checked; any other status is [`Error::Handshake`] with
    /// [`HandshakeError::UnexpectedStatus`](crate::proto::handshake::HandshakeError::UnexpectedStatus),
    /// which keeps the status and headers. The whole exchange has `handshake_timeout`.
    pub async fn websocket(
        &self,
        url: &str,
        options: Options,
    ) -> Result<(WebSocket<H2Stream>, Response)> {
        let request = crate::client::request_for(url, &options)?;
        self.websocket_request(&request, options).await
    }

    /// [`websocket`](Self::websocket) with a request built by [`ClientRequest::builder`]
    /// (Origin, subprotocols, extra headers; put `options.deflate`'s offer in it yourself
    /// if you want compression). Leave HTTP/1.1's connection-specific headers out of it:
    /// HTTP/2 forbids them.
    pub async fn websocket_request(
        &self,
        request: &ClientRequest,
        options: Options,
    ) -> Result<(WebSocket<H2Stream>, Response)> {
        let (stream, conn, response) = self.open_stream(request, &options).await?;
        Ok((WebSocket::from_parts(stream, conn, options), response))
    }

    /// Whether the connection is closed: no more WebSockets can be opened on it (those
    /// open go on until they end).
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    /// The extended CONNECT exchange: the stream, the engine for it and the answer.
    async fn open_stream(
        &self,
        request: &ClientRequest,
        options: &Options,
    ) -> Result<(H2Stream, Connection, Response)> {
        let mut send = self.send.clone();
        let (response, upgraded) = with_timeout(options.handshake_timeout, async {
            send.ready().await.map_err(http_error)?;
            let mut connect = request
                .to_extended_connect()
                .map(|()| Empty::<Bytes>::new());
            connect
                .extensions_mut()
                .insert(hyper::ext::Protocol::from_static("websocket"));
            let mut answer = send.send_request(connect).await.map_err(http_error)?;
            let response = check_extended_connect_response(&answer, request)?;
            let upgraded = hyper::upgrade::on(&mut answer).await.map_err(http_error)?;
            Ok((response, upgraded))
        })
        .await?;
        let config = crate::client::config_after(&response, options)?;
        let stream = H2Stream {
            io: TokioIo::new(upgraded),
        };
        Ok((stream, Connection::new(Role::Client, config), response))
    }
}

/// What the server's SETTINGS allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    ExtendedConnect,
    NoExtendedConnect,
    NotHttp2,
}

/// The HTTP/2 handshake on `io`, its connection task spawned, and what the server's first
/// frame said.
async fn open_h2<S>(io: S, options: &Options) -> Result<(H2Connection, Peer)>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (seen_tx, mut seen_rx) = watch::channel(Seen::Pending);
    let io = SettingsSniffer {
        io,
        state: SniffState::start(),
        seen: seen_tx,
    };
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_response_head).unwrap_or(u32::MAX));
    let (send, conn) = with_timeout(options.handshake_timeout, async {
        builder
            .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .map_err(http_error)
    })
    .await?;
    // The connection's own task: it moves the frames of every stream, and ends when the
    // last handle and the last stream are gone (or the connection fails).
    ::tokio::spawn(async move {
        let _ = conn.await;
    });
    let seen = with_timeout(options.handshake_timeout, async {
        Ok(seen_rx
            .wait_for(|s| *s != Seen::Pending)
            .await
            .map(|s| *s)
            .unwrap_or(Seen::Closed))
    })
    .await?;
    let peer = match seen {
        Seen::Settings { connect: true } => Peer::ExtendedConnect,
        Seen::Settings { connect: false } => Peer::NoExtendedConnect,
        Seen::NotHttp2 | Seen::Closed | Seen::Pending => Peer::NotHttp2,
    };
    Ok((H2Connection { send }, peer))
}

/// Opens TCP to the request's host within `connect_timeout`, without Nagle.
async fn open_tcp(request: &ClientRequest, options: &Options) -> Result<TcpStream> {
    let tcp = with_timeout(options.connect_timeout, async {
        Ok(TcpStream::connect((request.host(), request.port())).await?)
    })
    .await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// TLS over `tcp` for the request's host, offering `alpn`, within `handshake_timeout`.
async fn open_tls(
    request: &ClientRequest,
    tcp: TcpStream,
    options: &Options,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let base = options
        .tls
        .clone()
        .unwrap_or_else(crate::tls::default_client_config);
    let mut config = (*base).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = crate::tls::server_name(request.host())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    with_timeout(options.handshake_timeout, async {
        Ok(connector.connect(name, tcp).await?)
    })
    .await
}

/// The stream of a WebSocket over HTTP/2: one HTTP/2 stream of an [`H2Connection`], as
/// `AsyncRead + AsyncWrite`. Shutting it down ends the stream (END_STREAM); the
/// connection and its other streams go on.
pub struct H2Stream {
    io: TokioIo<Upgraded>,
}

impl fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Stream").finish_non_exhaustive()
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How [`connect_auto`] uses HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Http2Mode {
    /// `wss://`: offer `h2` and `http/1.1` by ALPN and use what the server selects;
    /// `ws://`: HTTP/1.1 (a clear-text server cannot say it speaks HTTP/2).
    #[default]
    Alpn,
    /// As `Alpn`, and `ws://` tries h2c with prior knowledge first (for a server known to
    /// take it, such as `weft::server`); one that does not answer with HTTP/2 gets a new
    /// connection with HTTP/1.1.
    PriorKnowledge,
}

/// The transport of a WebSocket that [`connect_auto`] opened: HTTP/1.1 (the TCP or TLS
/// stream itself) or an HTTP/2 stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientStream {
    /// HTTP/1.1: the upgraded TCP or TLS connection.
    H1(MaybeTlsStream<TcpStream>),
    /// HTTP/2: one stream of an HTTP/2 connection.
    H2(H2Stream),
}

impl ClientStream {
    /// The HTTP version the WebSocket runs over: `HTTP_11` or `HTTP_2`.
    pub fn version(&self) -> http::Version {
        match self {
            ClientStream::H1(_) => http::Version::HTTP_11,
            ClientStream::H2(_) => http::Version::HTTP_2,
        }
    }

    /// Whether the WebSocket runs over HTTP/2.
    pub fn is_http2(&self) -> bool {
        matches!(self, ClientStream::H2(_))
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            ClientStream::H1($s) => {
                let $s = Pin::new($s);
                $e
            }
            ClientStream::H2($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::H1(s) => s.is_write_vectored(),
            ClientStream::H2(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// Connects to a `ws://` or `wss://` URL over HTTP/2 when the server offers it, else over
/// HTTP/1.1, and says which in the stream ([`ClientStream::version`]; the response's
/// version says it too).
///
/// - `wss://`: TLS offers `h2` and `http/1.1` by ALPN (replacing [`Options::tls`]'s ALPN
///   list). If the server selects `h2` and its SETTINGS allow extended CONNECT, the
///   WebSocket is an HTTP/2 stream (RFC 8441); if it selects HTTP/1.1 (or nothing), the
///   same connection goes on with the HTTP/1.1 upgrade; if it selects `h2` but does not
///   allow extended CONNECT, a new connection offering only `http/1.1` is opened.
/// - `ws://`: HTTP/1.1, unless `mode` is [`Http2Mode::PriorKnowledge`]: then h2c first,
///   and a new HTTP/1.1 connection if the server does not speak HTTP/2 or does not allow
///   extended CONNECT.
///
/// A server that speaks HTTP/2 and allows extended CONNECT but refuses the WebSocket
/// (any status but 200) is an error, not a fallback. The HTTP/2 connection lasts as long
/// as the WebSocket. Timeouts as [`connect_url`](super::connect_url): each TCP connect
/// within `connect_timeout`, each TLS and HTTP handshake within `handshake_timeout`.
///
/// ```no_run
/// # async fn run() -> weft::Result<()> {
/// use weft::tokio::{connect_auto, Http2Mode};
/// let (mut ws, _) = connect_auto("wss://example.com/socket", weft::Options::default(), Http2Mode::Alpn).await?;
/// println!("over {:?}", ws.get_ref().version());
/// ws.send("hi").await?;
/// # Ok(()) }
/// ```
pub async fn connect_auto(
    url: &str,
    options: Options,
    mode: Http2Mode,
) -> Result<(WebSocket<ClientStream>, Response)> {
    let request = crate::client::request_for(url, &options)?;
    connect_auto_request(&request, options, mode).await
}

/// [`connect_auto`] with a request built by [`ClientRequest::builder`] (Origin,
/// subprotocols, extra headers; put `options.deflate`'s offer in it yourself if you want
/// compression). Its extra headers go in both the HTTP/1.1 and the HTTP/2 request.
pub async fn connect_auto_request(
    request: &ClientRequest,
    options: Options,
    mode: Http2Mode,
) -> Result<(WebSocket<ClientStream>, Response)> {
    if request.is_tls() {
        let tcp = open_tcp(request, &options).await?;
        let tls = open_tls(request, tcp, &options, &[ALPN_H2, ALPN_HTTP11]).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(ALPN_H2);
        let stream = MaybeTlsStream::Tls(Box::new(tls));
        if !h2 {
            return super::connect_with(request, ClientStream::H1(stream), options).await;
        }
        if let Some(done) = try_h2(stream, request, &options).await? {
            return Ok(done);
        }
        // h2 without extended CONNECT: HTTP/1.1 on a connection of its own.
        let tcp = open_tcp(request, &options).await?;
        let tls = open_tls(request, tcp, &options, &[ALPN_HTTP11]).await?;
        let stream = ClientStream::H1(MaybeTlsStream::Tls(Box::new(tls)));
        return super::connect_with(request, stream, options).await;
    }
    if mode == Http2Mode::PriorKnowledge {
        let tcp = open_tcp(request, &options).await?;
        if let Some(done) = try_h2(MaybeTlsStream::Plain(tcp), request, &options).await? {
            return Ok(done);
        }
    }
    let tcp = open_tcp(request, &options).await?;
    super::connect_with(
        request,
        ClientStream::H1(MaybeTlsStream::Plain(tcp)),
        options,
    )
    .await
}

/// The WebSocket over HTTP/2 on `io`, or `None` if the server does not speak HTTP/2 or does
/// not allow extended CONNECT (the caller falls back to HTTP/1.1).
async fn try_h2(
    io: MaybeTlsStream<TcpStream>,
    request: &ClientRequest,
    options: &Options,
) -> Result<Option<(WebSocket<ClientStream>, Response)>> {
    let (conn, peer) = open_h2(io, options).await?;
    if peer != Peer::ExtendedConnect {
        return Ok(None);
    }
    let (stream, engine, response) = conn.open_stream(request, options).await?;
    let ws = WebSocket::from_parts(ClientStream::H2(stream), engine, options.clone());
    Ok(Some((ws, response)))
}

/// A transport that reads the server's first HTTP/2 frame as hyper reads it, and reports
/// whether it is a SETTINGS frame that allows extended CONNECT.
struct SettingsSniffer<S> {
    io: S,
    state: SniffState,
    seen: watch::Sender<Seen>,
}

impl<S> SettingsSniffer<S> {
    fn report(&mut self, seen: Seen) {
        self.state = SniffState::Done;
        self.seen.send_replace(seen);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SettingsSniffer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let room = buf.remaining();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if !matches!(this.state, SniffState::Done) {
            match &polled {
                Poll::Ready(Ok(())) => {
                    let new = buf.filled().get(before..).unwrap_or_default();
                    if new.is_empty() && room > 0 {
                        this.report(Seen::Closed);
                    } else if let Some(seen) = this.state.feed(new) {
                        this.report(seen);
                    }
                }
                Poll::Ready(Err(_)) => this.report(Seen::Closed),
                Poll::Pending => {}
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SettingsSniffer<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The frame type of SETTINGS (RFC 9113 §6.5).
const FRAME_SETTINGS: u8 = 0x4;
/// The ACK flag of SETTINGS.
const FLAG_ACK: u8 = 0x1;
/// `SETTINGS_ENABLE_CONNECT_PROTOCOL` (RFC 8441 §3).
const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// Where the reading of the server's first frame is. Nothing is buffered beyond one
/// 9-byte header or one 6-byte setting; the frame's length is only counted down.
#[derive(Debug)]
enum SniffState {
    /// The frame header, so far.
    Head { buf: [u8; 9], have: usize },
    /// The SETTINGS payload: bytes left, the current setting so far, and the answer.
    Body {
        left: usize,
        entry: [u8; 6],
        have: usize,
        connect: bool,
    },
    /// The answer was reported.
    Done,
}

impl SniffState {
    fn start() -> SniffState {
        SniffState::Head {
            buf: [0; 9],
            have: 0,
        }
    }

    /// Takes the next bytes the server sent; the answer once the first frame is complete.
    fn feed(&mut self, mut bytes: &[u8]) -> Option<Seen> {
        while !bytes.is_empty() {
            match self {
                SniffState::Head { buf, have } => {
                    let n = (buf.len() - *have).min(bytes.len());
                    buf[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have < buf.len() {
                        continue;
                    }
                    let len =
                        usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
                    let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                    if buf[3] != FRAME_SETTINGS
                        || buf[4] & FLAG_ACK != 0
                        || stream != 0
                        || len % 6 != 0
                    {
                        return Some(Seen::NotHttp2);
                    }
                    if len == 0 {
                        return Some(Seen::Settings { connect: false });
                    }
                    *self = SniffState::Body {
                        left: len,
                        entry: [0; 6],
                        have: 0,
                        connect: false,
                    };
                }
                SniffState::Body {
                    left,
                    entry,
                    have,
                    connect,
                } => {
                    let n = (entry.len() - *have).min(bytes.len());
                    entry[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    *left -= n;
                    bytes = &bytes[n..];
                    if *have < entry.len() {
                        continue;
                    }
                    *have = 0;
                    let id = u16::from_be_bytes([entry[0], entry[1]]);
                    let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
                    if id == SETTINGS_ENABLE_CONNECT_PROTOCOL {
                        *connect = value == 1;
                    }
                    if *left == 0 {
                        return Some(Seen::Settings { connect: *connect });
                    }
                }
                SniffState::Done => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(entries: &[(u16, u32)], flags: u8) -> Vec<u8> {
        let len = entries.len() * 6;
        let mut out = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            4,
            flags,
            0,
            0,
            0,
            0,
        ];
        for (id, value) in entries {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&value.to_be_bytes());
        }
        out
    }

    /// Feeds `bytes` in pieces of `step`, as reads would bring them.
    fn sniff(bytes: &[u8], step: usize) -> Option<Seen> {
        let mut state = SniffState::start();
        for chunk in bytes.chunks(step) {
            if let Some(seen) = state.feed(chunk) {
                return Some(seen);
            }
        }
        None
    }

    #[test]
    fn reads_the_first_settings_in_any_split() {
        let with = settings(&[(3, 100), (8, 1), (4, 65535)], 0);
        let without = settings(&[(3, 100), (4, 65535)], 0);
        let disabled = settings(&[(8, 0)], 0);
        let mut followed = with.clone();
        followed.extend_from_slice(&settings(&[], 1));
        for step in 1..=with.len() + 10 {
            assert_eq!(sniff(&with, step), Some(Seen::Settings { connect: true }));
            assert_eq!(
                sniff(&followed, step),
                Some(Seen::Settings { connect: true })
            );
            assert_eq!(
                sniff(&without, step),
                Some(Seen::Settings { connect: false })
            );
            assert_eq!(
                sniff(&disabled, step),
                Some(Seen::Settings { connect: false })
            );
        }
        assert_eq!(
            sniff(&settings(&[], 0), 1),
            Some(Seen::Settings { connect: false })
        );
        assert_eq!(sniff(&with[..with.len() - 1], 1), None);
    }

    #[test]
    fn anything_else_is_not_http2() {
        assert_eq!(
            sniff(b"HTTP/1.1 400 Bad Request\r\n\r\n", 3),
            Some(Seen::NotHttp2)
        );
        assert_eq!(sniff(&settings(&[], 1), 4), Some(Seen::NotHttp2));
        let mut odd = settings(&[(8, 1)], 0);
        odd[2] = 5;
        assert_eq!(sniff(&odd, 9), Some(Seen::NotHttp2));
        let mut on_stream = settings(&[(8, 1)], 0);
        on_stream[8] = 1;
        assert_eq!(sniff(&on_stream, 100), Some(Seen::NotHttp2));
    }
}
