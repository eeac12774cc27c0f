//! Answering a request with an upgrade: to a weft WebSocket ([`WebSocketUpgrade`], over
//! HTTP/1.1 by `Upgrade: websocket` or over HTTP/2 by extended CONNECT, RFC 8441), or to
//! any other protocol ([`upgrade_raw`]: the stream and the bytes that arrived behind the
//! request head).
//!
//! Every WebSocket check is weft-proto's (`Request::from_http`,
//! `Request::from_extended_connect`); this module only moves the request, the response and
//! the stream. After an HTTP/1.1 upgrade the stream is taken back out of hyper (downcast to
//! the server's own [`Stream`]), so the WebSocket runs on the transport itself.

use super::blocking_stream::BlockingStream;
use super::conn::{Busy, Watched};
use super::stream::Stream;
use super::ConnCtx;
use crate::accept::{negotiate, Accept, Decision};
use crate::options::Options;
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::FutureExt;
use http::{header, Method};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::sync::Arc;
use weft_proto::handshake::{rejection_for, Request};
use weft_proto::{CloseCode, Connection, Role};

/// A server WebSocket: the async driver over the server's [`Stream`].
pub type WebSocket = crate::tokio::WebSocket<Stream>;

/// A blocking server WebSocket (threading model (e), or any handler that must block).
pub type BlockingWebSocket = crate::blocking::WebSocket<BlockingStream>;

/// The reason sent with the 1001 close of a graceful shutdown.
pub(crate) const SHUTDOWN_REASON: &str = "server shutting down";

/// A request that asks for a WebSocket and passed every check of the handshake, ready to be
/// answered. Made by [`from_request`](Self::from_request) in any hyper service (weft's
/// server, a bare hyper server, axum), over HTTP/1.1 and HTTP/2.
///
/// ```no_run
/// use weft::server::{Body, WebSocketUpgrade};
/// async fn handle(mut req: http::Request<hyper::body::Incoming>) -> http::Response<Body> {
///     match WebSocketUpgrade::from_request(&mut req) {
///         Ok(upgrade) => upgrade.protocols(["chat"]).on_upgrade(|mut ws| async move {
///             while let Ok(Some(msg)) = ws.recv().await {
///                 if ws.send(msg).await.is_err() {
///                     break;
///                 }
///             }
///         }),
///         Err(refusal) => refusal.map(Body::from),
///     }
/// }
/// ```
pub struct WebSocketUpgrade {
    request: Request,
    on_upgrade: OnUpgrade,
    ctx: Option<Arc<ConnCtx>>,
    options: Options,
    protocols: Vec<String>,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("request", &self.request)
            .field("protocols", &self.protocols)
            .finish_non_exhaustive()
    }
}

/// Whether `request` asks for a WebSocket (an HTTP/1.1 `Upgrade: websocket`, or an HTTP/2
/// extended CONNECT for `websocket`), before any other check: for routing.
///
/// On a request `weft::server` serves, hyper has already marked the ones it can upgrade
/// (HTTP/1.1 with an `Upgrade` header): any other is not one, and its headers are not
/// searched (a plain request pays a lookup in its empty extensions, not a header search).
pub fn is_websocket_request<B>(request: &http::Request<B>) -> bool {
    let extensions = request.extensions();
    if request.method() == Method::CONNECT {
        return extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    }
    if extensions.get::<OnUpgrade>().is_none() && super::info::with_current(|_| ()).is_some() {
        return false;
    }
    weft_proto::handshake::headers_contain_token(request.headers(), &header::UPGRADE, "websocket")
}

impl WebSocketUpgrade {
    /// Checks `request` as a WebSocket handshake (weft-proto's checks, for HTTP/1.1 and
    /// for RFC 8441 over HTTP/2) and takes its upgrade from it. A request that fails gets
    /// back the refusal to send: its 4xx and the reason (426 with
    /// `Sec-WebSocket-Version: 13` for another version).
    ///
    /// The options are the server's (`Builder::websocket_options`), or the defaults
    /// outside `weft::server`; [`options`](Self::options) changes them.
    #[allow(clippy::result_large_err)]
    pub fn from_request<B>(
        request: &mut http::Request<B>,
    ) -> Result<WebSocketUpgrade, http::Response<String>> {
        let checked = if request.method() == Method::CONNECT {
            let protocol = request
                .extensions()
                .get::<hyper::ext::Protocol>()
                .map(|p| p.as_str().to_owned());
            Request::from_extended_connect(request, protocol.as_deref())
        } else {
            Request::from_http(request)
        };
        let checked = match checked {
            Ok(r) => r,
            Err(e) => {
                if request.extensions().get::<OnUpgrade>().is_some() {
                    let ctx = ConnCtx::of(request.extensions());
                    close_unclaimed(ctx, hyper::upgrade::on(&mut *request));
                }
                return Err(rejection_for(&e, request.version()));
            }
        };
        let ctx = ConnCtx::of(request.extensions());
        let options = match &ctx {
            Some(ctx) => ctx.shared.config.websocket.clone(),
            None => Options::default(),
        };
        Ok(WebSocketUpgrade {
            request: checked,
            on_upgrade: hyper::upgrade::on(request),
            ctx,
            options,
            protocols: Vec::new(),
        })
    }

    /// [`from_request`](Self::from_request) for a request split into its head, as
    /// frameworks' extractors get it (axum's `FromRequestParts`): the same checks, and the
    /// upgrade taken from `parts.extensions`.
    #[allow(clippy::result_large_err)]
    pub fn from_parts(
        parts: &mut http::request::Parts,
    ) -> Result<WebSocketUpgrade, http::Response<String>> {
        let (empty, ()) = http::Request::new(()).into_parts();
        let mut request = http::Request::from_parts(std::mem::replace(parts, empty), ());
        let result = Self::from_request(&mut request);
        *parts = request.into_parts().0;
        result
    }

    /// The checked handshake request: resource, Host, Origin, offered subprotocols and
    /// extensions, all headers.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The connection the request came on, when a `weft::server` serves it.
    pub fn conn_info(&self) -> Option<&super::ConnInfo> {
        self.ctx.as_ref().map(|c| &c.info)
    }

    /// The connection's options (limits, timers, permessage-deflate) instead of the
    /// server's.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// The subprotocols this server speaks, in its order of preference: the first one the
    /// client offered is selected by `on_upgrade` (none in common: no subprotocol).
    pub fn protocols<I, S>(mut self, supported: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = supported.into_iter().map(Into::into).collect();
        self
    }

    /// The subprotocol [`protocols`](Self::protocols) selects for this request.
    pub fn selected_protocol(&self) -> Option<&str> {
        let supported: Vec<&str> = self.protocols.iter().map(String::as_str).collect();
        weft_proto::handshake::select_protocol(&self.request.protocols(), &supported)
    }

    /// Accepts (with the subprotocol [`protocols`](Self::protocols) selects) and runs
    /// `handler` with the WebSocket once the response is sent. Return the response from
    /// the service.
    pub fn on_upgrade<F, Fut, B>(self, handler: F) -> http::Response<B>
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        B: Default + From<String>,
    {
        let decision = self.default_decision();
        self.respond(decision, handler)
    }

    /// Answers with `decision` (the same [`Accept`] / [`Reject`](crate::Reject) the
    /// drivers' `accept_with` takes); if accepted, runs `handler` with the WebSocket once
    /// the response is sent.
    pub fn respond<F, Fut, B>(self, decision: Decision, handler: F) -> http::Response<B>
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        B: Default + From<String>,
    {
        self.answer_then(decision, move |stream, handover| {
            let (conn, options, ctx) = handover.engine();
            let mut ws = WebSocket::from_parts(stream, conn, options);
            // An io_uring stream is read and written with the engine's own buffers.
            #[cfg(all(feature = "uring", target_os = "linux"))]
            ws.set_ring_io(Stream::uring_mut);
            if let Some(ctx) = ctx {
                let signal = ctx.shared.shutdown_signal.clone();
                ws.close_on_signal(signal, CloseCode::GOING_AWAY, SHUTDOWN_REASON);
            }
            handler(ws)
        })
    }

    /// Accepts as [`on_upgrade`](Self::on_upgrade) does, and runs `handler` with a
    /// blocking WebSocket on a thread of its own: the handler may block.
    pub fn on_upgrade_blocking<F, B>(self, handler: F) -> http::Response<B>
    where
        F: FnOnce(BlockingWebSocket) + Send + 'static,
        B: Default + From<String>,
    {
        let decision = self.default_decision();
        self.respond_blocking(decision, handler)
    }

    /// Answers with `decision`; if accepted, runs `handler` with a blocking WebSocket on a
    /// thread of its own.
    pub fn respond_blocking<F, B>(self, decision: Decision, handler: F) -> http::Response<B>
    where
        F: FnOnce(BlockingWebSocket) + Send + 'static,
        B: Default + From<String>,
    {
        self.answer_then(decision, move |stream, handover| {
            let Ok(stream) = BlockingStream::from_async(stream) else {
                return std::future::ready(());
            };
            // The thread outlives the task that starts it: it holds its own place in the
            // server (the drain waits for it; the connection counts until it ends).
            let held = handover
                .ctx
                .as_ref()
                .map(|c| (c.shared.tracker.token(), Busy::new(c.clone(), None)));
            let spawned = std::thread::Builder::new()
                .name("weft-ws".into())
                .spawn(move || {
                    let _held = held;
                    let (conn, options, ctx) = handover.engine();
                    let mut ws = BlockingWebSocket::from_parts(stream, conn, options);
                    if let Some(ctx) = ctx {
                        let token = ctx.shared.shutdown.clone();
                        ws.close_on(token, CloseCode::GOING_AWAY, SHUTDOWN_REASON);
                    }
                    handler(ws);
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start a thread for a blocking WebSocket: {e}");
            }
            std::future::ready(())
        })
    }

    /// Answers with `decision`; if accepted, once the response is sent and hyper hands
    /// the stream over, runs `then` with it on a task of the connection: what `respond`
    /// and `respond_blocking` share.
    fn answer_then<T, Fut, B>(self, decision: Decision, then: T) -> http::Response<B>
    where
        T: FnOnce(Stream, Handover) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        B: Default + From<String>,
    {
        let (response, config) = match negotiate(&self.request, decision, &self.options) {
            Ok(ok) => ok,
            Err(refusal) => {
                close_unclaimed(self.ctx, self.on_upgrade);
                return refusal.map(B::from);
            }
        };
        let WebSocketUpgrade {
            on_upgrade,
            ctx,
            options,
            ..
        } = self;
        let handover = Handover {
            config,
            rest: Bytes::new(),
            options,
            ctx: ctx.clone(),
        };
        spawn(ctx, upgrade_task(on_upgrade, handover, then));
        answer(response)
    }

    fn default_decision(&self) -> Decision {
        let mut accept = Accept::new();
        if let Some(p) = self.selected_protocol() {
            accept = accept.protocol(p);
        }
        Ok(accept)
    }
}

/// The task of an accepted upgrade: waits for hyper to hand the stream over, then runs
/// `then` with it. Built with `then`, not as an `async` block: a block would keep what it
/// captured (the handover's options and configuration, the closure) beside the handler's
/// future for as long as the connection lasts; the combinator drops them once the stream
/// is there, so the task is little more than the handler's future (the bench's echo over
/// io_uring: 3,680 -> 3,328 bytes).
fn upgrade_task<T, Fut>(
    on_upgrade: OnUpgrade,
    mut handover: Handover,
    then: T,
) -> impl Future<Output = ()> + Send + 'static
where
    T: FnOnce(Stream, Handover) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    upgraded_stream(on_upgrade).then(move |upgraded| match upgraded {
        Ok((stream, rest)) => {
            handover.rest = rest;
            Either::Left(then(stream, handover))
        }
        Err(_) => Either::Right(std::future::ready(())),
    })
}

/// An accepted WebSocket's pieces once hyper hands its stream over: the engine's
/// configuration, the bytes that came behind the request head, the options, the
/// connection.
struct Handover {
    config: weft_proto::Config,
    rest: Bytes,
    options: Options,
    ctx: Option<Arc<ConnCtx>>,
}

impl Handover {
    /// The engine, holding the bytes that came behind the head (dropped here: holding
    /// them would pin hyper's read buffer); the options; the connection.
    fn engine(self) -> (Connection, Options, Option<Arc<ConnCtx>>) {
        let mut conn = Connection::new(Role::Server, self.config);
        conn.receive(&self.rest);
        (conn, self.options, self.ctx)
    }
}

/// Takes the upgrade of `request` (it must already be answered with a response that
/// switches protocols, a 101 over HTTP/1.1 or a 2xx to a CONNECT over HTTP/2) and runs
/// `handler` with the raw stream and the bytes that arrived behind the request head, once
/// the response is sent. For protocols other than WebSocket; weft checks nothing.
///
/// ```no_run
/// use tokio::io::AsyncWriteExt;
/// fn handle(mut req: http::Request<hyper::body::Incoming>) -> http::Response<weft::server::Body> {
///     weft::server::upgrade_raw(&mut req, |mut stream, _early| async move {
///         let _ = stream.write_all(b"hello, raw protocol\n").await;
///     });
///     http::Response::builder()
///         .status(101)
///         .header("upgrade", "my-protocol")
///         .header("connection", "upgrade")
///         .body(weft::server::Body::default())
///         .unwrap_or_default()
/// }
/// ```
pub fn upgrade_raw<B, F, Fut>(request: &mut http::Request<B>, handler: F)
where
    F: FnOnce(Stream, Bytes) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ctx = ConnCtx::of(request.extensions());
    let on_upgrade = hyper::upgrade::on(request);
    spawn(ctx, async move {
        if let Ok((stream, rest)) = upgraded_stream(on_upgrade).await {
            handler(stream, rest).await;
        }
    });
}

/// Spawns `task` where the connection's server tracks it (so a graceful shutdown waits
/// for it), or on the current runtime outside `weft::server`.
fn spawn(ctx: Option<Arc<ConnCtx>>, task: impl Future<Output = ()> + Send + 'static) {
    match ctx {
        Some(ctx) => {
            // The connection counts (for the connection limit, and over HTTP/2 as a
            // stream in progress for the idle timeout) until the upgraded stream is done.
            let busy = Busy::new(ctx.clone(), None);
            // `map`, not an `async` block: the task's future is kept once, not twice.
            ctx.spawn(futures_util::FutureExt::map(task, move |()| drop(busy)))
        }
        None => {
            tokio::spawn(task);
        }
    }
}

/// A refused upgrade request: hyper still hands its stream over when the connection ends
/// after the refusal (the refusal says `Connection: close`), as it does for every HTTP/1.1
/// request with an `Upgrade` header. Dropped there, a TLS stream would end without its
/// `close_notify`; so the stream is taken and shut down (for TLS, `close_notify` then
/// FIN), and what the client still sends is read for a moment (at most 1 s and 64 KiB:
/// closing with it unread would reset the connection, and the client could lose the
/// refusal). A connection that goes on (kept alive) or fails resolves `on_upgrade` with an
/// error, and the task ends. A no-op outside a tokio runtime.
fn close_unclaimed(ctx: Option<Arc<ConnCtx>>, on_upgrade: OnUpgrade) {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let task = async move {
        let Ok((mut stream, _)) = upgraded_stream(on_upgrade).await else {
            return;
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            if stream.shutdown().await.is_err() {
                return;
            }
            let mut sink = [0u8; 4096];
            let mut left: usize = 64 * 1024;
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
    };
    match ctx {
        // Tracked like the connection's other tasks (a drain waits for it; the cut ends
        // it), but not counted as a request in progress: the idle timeout still applies.
        Some(ctx) => ctx.spawn(task),
        None => {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(task);
            }
        }
    }
}

/// The stream an upgrade gives: the server's own `Stream` (or a TCP stream of a bare
/// hyper server) taken back out of hyper with the bytes read behind the head; anything
/// else (an HTTP/2 stream) as it is.
async fn upgraded_stream(on_upgrade: OnUpgrade) -> hyper::Result<(Stream, Bytes)> {
    let upgraded = on_upgrade.await?;
    let upgraded = match upgraded.downcast::<TokioIo<Watched>>() {
        Ok(parts) => {
            // What hyper read behind the head, then what it had not read yet of the
            // first bytes weft read for it.
            let (stream, unread) = parts.io.into_inner().into_inner();
            let rest = match (parts.read_buf.is_empty(), unread.is_empty()) {
                (_, true) => parts.read_buf,
                (true, false) => unread,
                (false, false) => [parts.read_buf, unread].concat().into(),
            };
            return Ok((stream, rest));
        }
        Err(u) => u,
    };
    let upgraded =
        match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<Stream>>(upgraded) {
            Ok(parts) => return Ok((parts.io.into_inner(), parts.read_buf)),
            Err(u) => u,
        };
    let upgraded = match upgraded.downcast::<TokioIo<Stream>>() {
        Ok(parts) => return Ok((parts.io.into_inner(), parts.read_buf)),
        Err(u) => u,
    };
    let upgraded = match hyper_util::server::conn::auto::upgrade::downcast::<
        TokioIo<tokio::net::TcpStream>,
    >(upgraded)
    {
        Ok(parts) => return Ok((Stream::from(parts.io.into_inner()), parts.read_buf)),
        Err(u) => u,
    };
    let upgraded: Upgraded = match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => return Ok((Stream::from(parts.io.into_inner()), parts.read_buf)),
        Err(u) => u,
    };
    Ok((Stream::other(TokioIo::new(upgraded)), Bytes::new()))
}

/// The handshake's response, with the handler's body type.
fn answer<B: Default>(response: http::Response<()>) -> http::Response<B> {
    response.map(|()| B::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A handler's future as large as a WebSocket echo's (a WebSocket is about 1 KiB).
    struct Large([u8; 1024]);

    impl Future for Large {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            std::hint::black_box(&self.0);
            Poll::Ready(())
        }
    }

    #[test]
    fn the_upgrade_task_keeps_little_beside_the_handlers_future() {
        let handover = Handover {
            config: weft_proto::Config::default(),
            rest: Bytes::new(),
            options: Options::default(),
            ctx: None,
        };
        let on_upgrade = hyper::upgrade::on(http::Request::new(()));
        let task = upgrade_task(on_upgrade, handover, |_, _| Large([1; 1024]));
        // While the handler runs, the task holds its future and a tag; the options and the
        // configuration (over 300 bytes) are gone with the closure that held them.
        let slack = std::mem::size_of::<Options>();
        assert!(
            std::mem::size_of_val(&task) < std::mem::size_of::<Large>() + slack,
            "{} bytes",
            std::mem::size_of_val(&task)
        );
    }
}
