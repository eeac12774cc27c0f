//! # weft::server: one HTTP server that serves requests and upgrades them
//!
//! An HTTP/1.1 and HTTP/2 server (hyper) made from a handler, that answers plain requests
//! and upgrades some of them: to a weft WebSocket ([`WebSocketUpgrade`], over HTTP/1.1 and,
//! by RFC 8441's extended CONNECT, over HTTP/2), or to any other protocol
//! ([`upgrade_raw`]). The same handler serves TCP, TLS (rustls; ALPN offers `h2` and
//! `http/1.1`) and Unix-socket clients, and h2c with prior knowledge on the same port as
//! HTTP/1.1; it sees the connection in [`ConnInfo`].
//!
//! weft-proto makes every WebSocket decision; this module only moves requests and bytes.
//! After an HTTP/1.1 upgrade the WebSocket runs on the transport itself ([`Stream`]), not
//! behind hyper.
//!
//! ```no_run
//! use weft::server::{handler_fn, Body, Model, Server, WebSocketUpgrade};
//!
//! async fn handle(mut req: http::Request<hyper::body::Incoming>) -> http::Response<Body> {
//!     if req.uri().path() == "/ws" {
//!         return match WebSocketUpgrade::from_request(&mut req) {
//!             Ok(upgrade) => upgrade.on_upgrade(|mut ws| async move {
//!                 while let Ok(Some(msg)) = ws.recv().await {
//!                     if ws.send(msg).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             }),
//!             Err(refusal) => refusal.map(Body::from),
//!         };
//!     }
//!     http::Response::new(Body::from("hello"))
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! let server = Server::builder().bind("127.0.0.1:8080")?.build(handler_fn(handle))?;
//! server.run(Model::CurrentThread)
//! # }
//! ```
//!
//! ## Threading models
//!
//! The model is chosen where the server runs, never inside a handler; the handler is the
//! same in each.
//!
//! - **(a) One current-thread runtime** ([`Model::CurrentThread`]): one thread serves every
//!   connection. The cheapest per connection; handlers must not block.
//! - **(b) A multi-thread runtime** ([`Model::MultiThread`]): tokio's work-stealing pool;
//!   connections and WebSockets move between threads as load requires. Handlers must not
//!   block.
//! - **(c) Thread per core** ([`Model::PerCore`]): N current-thread runtimes, each with
//!   its own `SO_REUSEPORT` listener for every TCP address, so the kernel spreads
//!   connections and a connection stays on one thread for its life (no cross-thread
//!   wake-ups). Unix listeners are shared. Handlers must not block.
//! - **(d) Embedded** ([`Server::serve`]): the server is a future on the application's
//!   own runtime, beside its other tasks (the seed's "external" loop). Handlers must not
//!   block.
//! - **(e) Blocking** ([`Model::Blocking`]): a thread per connection, each with a runtime
//!   of its own that serves only it, so a handler may block (it stalls only its own
//!   connection; over HTTP/2 that is every stream of the connection). A WebSocket
//!   accepted with [`WebSocketUpgrade::on_upgrade_blocking`] gets a
//!   [`BlockingWebSocket`](crate::blocking::WebSocket) on a thread of its own — over TLS
//!   and HTTP/2 too (an HTTP/2 stream has no socket: it is bridged). `on_upgrade_blocking`
//!   works in every model; only in (e) may plain handlers block.
//! - **(f) io_uring** ([`Model::Uring`], Linux): thread per core as (c), and each thread's
//!   plain TCP connections move onto an io_uring ring of that thread
//!   ([`crate::uring`]): their reads and writes are queued on the ring and submitted
//!   together once per turn of the thread's runtime, instead of a system call each. TLS
//!   and Unix connections stay on the runtime's epoll. Falls back to (c), with one log
//!   line, where io_uring is unavailable.
//!
//! ## Corking and closing
//!
//! On any server WebSocket, [`WebSocket::cork`](crate::tokio::WebSocket::cork) holds
//! small writes (in the engine's queue and, with `TCP_CORK`, in the kernel) and
//! [`uncork`](crate::tokio::WebSocket::uncork) sends them together, plain or TLS, without
//! handing out the socket. `close` sends the Close frame, then shuts the transport.
//!
//! ## Limits and lifecycle
//!
//! [`Builder`] sets the request head's size and header count (431 past them), a header
//! timeout (from a connection's start, or from the first byte of a keep-alive
//! connection's next request, to the end of the request head: a slowloris head is cut; the
//! TLS handshake has one of its own), an
//! idle timeout (a keep-alive connection with no request in progress: over HTTP/1.1 from the
//! end of a response to the first byte of the next request, over HTTP/2 with no stream
//! open, upgraded streams included; then it is closed, HTTP/2 with a GOAWAY, at most one more
//! idle timeout later), a connection
//! limit (503 with `Retry-After` past it), and the grace period of a graceful shutdown:
//! [`Shutdown::shutdown`] stops accepting, ends HTTP connections after their current
//! request, sends Close 1001 to every async WebSocket, waits up to the grace period, then
//! cuts what is left. Each connection runs in a `tracing` span `conn` with the peer (its
//! HTTP/2 requests, which hyper runs on tasks of their own, and its upgraded streams too).

mod blocking_stream;
mod conn;
mod info;
mod listener;
mod service;
mod stream;
mod upgrade;

pub use blocking_stream::BlockingStream;
pub use info::{Addr, ConnInfo};
pub use service::{handler_fn, BoxError, Handler, HandlerFn, HandlerFuture};
pub use stream::{AnyIo, Stream, TransportKind};
pub use upgrade::{
    is_websocket_request, upgrade_raw, BlockingWebSocket, WebSocket, WebSocketUpgrade,
};

use crate::options::Options;
use crate::signal::Signal;
use hyper_util::rt::TokioTimer;
use listener::{Bound, BoundSocket, Listener};
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The response body for handlers that answer with whole bodies: `Body::from("text")`,
/// `Body::from(bytes)`, `Body::default()` (empty). Any other `http_body::Body` works too.
pub type Body = http_body_util::Full<bytes::Bytes>;

/// How the server's threads and runtimes are laid out; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Model {
    /// (a) One current-thread runtime.
    CurrentThread,
    /// (b) A multi-thread runtime with this many workers (`None`: one per CPU).
    MultiThread(Option<usize>),
    /// (c) This many current-thread runtimes (`None`: one per CPU), each with its own
    /// `SO_REUSEPORT` listener.
    PerCore(Option<usize>),
    /// (e) A thread per connection; handlers may block.
    Blocking,
    /// (f) As [`PerCore`](Model::PerCore), with each thread's plain TCP connections on an
    /// io_uring ring of its own ([`crate::uring`]; Linux, feature `uring`). Where io_uring is
    /// missing or forbidden, or the feature is off, it says so in one log line and runs as
    /// `PerCore`.
    Uring(Option<usize>),
}

/// The server's limits and timers.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_head_size: usize,
    pub(crate) max_headers: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) retry_after: Duration,
    pub(crate) grace: Duration,
    pub(crate) http2: bool,
    pub(crate) websocket: Options,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_head_size: 16 * 1024,
            max_headers: 100,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            retry_after: Duration::from_secs(1),
            grace: Duration::from_secs(10),
            http2: true,
            websocket: Options::default(),
        }
    }
}

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// hyper's HTTP/1.1 server.
    pub(crate) http1: hyper::server::conn::http1::Builder,
    /// hyper's HTTP/2 server, unless HTTP/2 is off.
    pub(crate) http2: Option<hyper::server::conn::http2::Builder<InSpan>>,
    pub(crate) shutdown: CancellationToken,
    /// `shutdown`, for the futures polled on every wake (`signal::Cancelled`).
    pub(crate) shutdown_signal: Signal,
    /// Cancelled when the grace period is over: what is left is cut.
    pub(crate) cut: CancellationToken,
    pub(crate) cut_signal: Signal,
    pub(crate) tracker: TaskTracker,
    pub(crate) live: AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A connection's context (private to weft): the current one while its handler runs
/// (`info::enter`), and in the extensions of each request hyper can upgrade.
pub(crate) struct ConnCtx {
    pub(crate) info: ConnInfo,
    pub(crate) shared: Arc<Shared>,
    /// In the blocking model, the tasks of this connection's own runtime.
    pub(crate) local_tracker: Option<TaskTracker>,
    /// Requests (and HTTP/2 upgraded streams) in progress, for the idle and header timers.
    pub(crate) activity: conn::Activity,
    pub(crate) span: tracing::Span,
    pub(crate) _guard: conn::ConnGuard,
}

impl ConnCtx {
    /// The connection of a request with these extensions: the one they carry (a request
    /// that can be upgraded), or the one whose handler runs.
    pub(crate) fn of(extensions: &http::Extensions) -> Option<Arc<ConnCtx>> {
        match extensions.get::<Arc<ConnCtx>>() {
            Some(ctx) => Some(ctx.clone()),
            None => info::current(),
        }
    }

    /// Spawns a task of this connection (an upgraded stream's), tracked for shutdown and
    /// cut at the end of the grace period.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        use tracing::Instrument;
        let task = UntilCut::new(task, &self.shared).instrument(self.span.clone());
        match &self.local_tracker {
            Some(t) => t.spawn(task),
            None => self.shared.tracker.spawn(task),
        };
    }
}

/// hyper's executor for the tasks it spawns (an HTTP/2 connection's requests): tokio's, in
/// the span of the connection that spawns them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InSpan;

impl<F> hyper::rt::Executor<F> for InSpan
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        use tracing::Instrument;
        tokio::spawn(fut.instrument(tracing::Span::current()));
    }
}

pin_project_lite::pin_project! {
    /// A task of the server (a connection, an upgraded stream) until it ends or the grace
    /// period is over. A struct, not an `async` block with `select!`: the task's future is
    /// kept once, inline (no second copy, no box of its own to reach on every wake).
    struct UntilCut<F> {
        #[pin]
        task: F,
        cut: crate::signal::Cancelled,
    }
}

impl<F: Future<Output = ()>> UntilCut<F> {
    fn new(task: F, shared: &Shared) -> Self {
        UntilCut {
            task,
            cut: shared.cut_signal.cancelled(),
        }
    }
}

impl<F: Future<Output = ()>> Future for UntilCut<F> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.task.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        std::pin::Pin::new(this.cut).poll(cx)
    }
}

/// Builds a [`Server`]: where it listens, its limits, the WebSockets' options.
#[derive(Debug, Default)]
pub struct Builder {
    bound: Vec<Bound>,
    config: Config,
}

impl Builder {
    /// Listens on a TCP address (every address `addr` resolves to), plain HTTP.
    pub fn bind(mut self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        for a in addr.to_socket_addrs()? {
            self.bound.push(Bound {
                socket: BoundSocket::Tcp(listener::bind_tcp(a)?),
                tls: None,
            });
        }
        Ok(self)
    }

    /// Listens on a TCP address with TLS. ALPN offers `h2` and `http/1.1` unless `config`
    /// names protocols of its own.
    pub fn bind_tls(
        mut self,
        addr: impl ToSocketAddrs,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        let config = with_alpn(config, self.config.http2);
        for a in addr.to_socket_addrs()? {
            self.bound.push(Bound {
                socket: BoundSocket::Tcp(listener::bind_tcp(a)?),
                tls: Some(config.clone()),
            });
        }
        Ok(self)
    }

    /// Listens on a Unix socket at `path` (a stale socket file there is replaced).
    pub fn bind_unix(mut self, path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        self.bound.push(Bound {
            socket: BoundSocket::Unix(listener::bind_unix(path)?, Some(path.to_path_buf())),
            tls: None,
        });
        Ok(self)
    }

    /// Serves on a TCP listener that is already bound (systemd socket activation), with
    /// TLS if `tls` is given.
    pub fn listener(
        mut self,
        listener: std::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let tls = tls.map(|c| with_alpn(c, self.config.http2));
        self.bound.push(Bound {
            socket: BoundSocket::Tcp(listener),
            tls,
        });
        self
    }

    /// Serves on a Unix listener that is already bound.
    pub fn unix_listener(mut self, listener: std::os::unix::net::UnixListener) -> Self {
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf));
        self.bound.push(Bound {
            socket: BoundSocket::Unix(listener, path),
            tls: None,
        });
        self
    }

    /// The largest request head accepted, in bytes (at least 8 KiB; default 16 KiB).
    /// Past it the request is refused with 431.
    pub fn max_head_size(mut self, bytes: usize) -> Self {
        self.config.max_head_size = bytes.max(8192);
        self
    }

    /// The most header lines in a request (default 100). Past them: 431.
    pub fn max_headers(mut self, count: usize) -> Self {
        self.config.max_headers = count;
        self
    }

    /// How long a request head may take: from the connection's start to the end of its
    /// first request's head (a TLS handshake before it has a header timeout of its own),
    /// and from the first byte of each later request on a keep-alive connection to the end
    /// of its head. Past it the connection is cut (a slowloris head). Default 10 s.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.config.header_timeout = timeout;
        self
    }

    /// How long a keep-alive connection may wait with no request in progress before the
    /// server closes it: over HTTP/1.1 from the end of a response to the first byte of the
    /// next request (then [`header_timeout`](Self::header_timeout) bounds its head); over
    /// HTTP/2 while no stream is open (a WebSocket over HTTP/2 keeps its connection open),
    /// after which the server sends GOAWAY and closes. The timer costs nothing per request:
    /// it looks when it fires, so a connection is closed between one and two idle timeouts
    /// after its last request, never sooner. Default 75 s: longer than the 60 s idle
    /// timeout common in load balancers and proxies, so that the proxy, not the server,
    /// closes a connection it might be about to reuse.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// The most connections served at once, upgraded ones included (default 10,000). Past
    /// it a new connection is answered `503 Service Unavailable` with `Retry-After`.
    pub fn max_connections(mut self, count: usize) -> Self {
        self.config.max_connections = count;
        self
    }

    /// The `Retry-After` of the 503 past the connection limit (default 1 s).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.config.retry_after = after;
        self
    }

    /// How long a graceful shutdown waits for connections to end before cutting them
    /// (default 10 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.grace = grace;
        self
    }

    /// Whether HTTP/2 is served (by ALPN over TLS, by prior knowledge in clear text).
    /// Default true. Set before `bind_tls` to keep `h2` out of ALPN.
    pub fn http2(mut self, enabled: bool) -> Self {
        self.config.http2 = enabled;
        self
    }

    /// The options of every WebSocket the server accepts (limits, timers,
    /// permessage-deflate); [`WebSocketUpgrade::options`] changes them per request.
    pub fn websocket_options(mut self, options: Options) -> Self {
        self.config.websocket = options;
        self
    }

    /// The server, serving `service`: a [`handler_fn`] or any `tower::Service` from
    /// `http::Request<Incoming>` to an `http::Response` (see [`Handler`]).
    pub fn build<S>(self, service: S) -> io::Result<Server<S>>
    where
        S: Handler,
    {
        let config = self.config;
        // The header and idle timeouts are weft's own (`conn::Watchdog`): hyper's header
        // timer runs from the end of a response to the end of the next head, which is
        // both at once, and is re-armed (a new timer) for every request.
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .header_read_timeout(None)
            .max_headers(config.max_headers)
            .max_buf_size(config.max_head_size);
        let http2 = config.http2.then(|| {
            let mut b = hyper::server::conn::http2::Builder::new(InSpan);
            b.timer(TokioTimer::new())
                .enable_connect_protocol()
                .max_header_list_size(u32::try_from(config.max_head_size).unwrap_or(u32::MAX));
            b
        });
        let (shutdown, cut) = (CancellationToken::new(), CancellationToken::new());
        let shared = Arc::new(Shared {
            config,
            http1,
            http2,
            shutdown_signal: Signal::new(shutdown.clone()),
            shutdown,
            cut_signal: Signal::new(cut.clone()),
            cut,
            tracker: TaskTracker::new(),
            live: AtomicUsize::new(0),
        });
        Ok(Server {
            bound: self.bound,
            service,
            shared,
        })
    }
}

fn with_alpn(config: Arc<rustls::ServerConfig>, http2: bool) -> Arc<rustls::ServerConfig> {
    if !config.alpn_protocols.is_empty() {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Arc::new(config)
}

/// Starts a graceful shutdown of the server it came from; see [`Server::shutdown_handle`].
#[derive(Debug, Clone)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// Stops accepting, lets HTTP connections finish their current request, sends Close
    /// 1001 to every async WebSocket; the server's `run`/`serve` returns once all are done
    /// or the grace period is over.
    pub fn shutdown(&self) {
        self.token.cancel();
    }

    /// Whether a shutdown was started.
    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// A server: its listeners, its handler, its limits. Run it in a threading model
/// ([`run`](Self::run)) or as a future on your own runtime ([`serve`](Self::serve)).
#[derive(Debug)]
pub struct Server<S> {
    bound: Vec<Bound>,
    service: S,
    shared: Arc<Shared>,
}

impl Server<()> {
    /// Starts building a server.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl<S> Server<S>
where
    S: Handler,
{
    /// The addresses the server listens on (a port 0 resolved to the real port).
    pub fn local_addrs(&self) -> Vec<Addr> {
        self.bound.iter().map(Bound::local_addr).collect()
    }

    /// The first TCP address the server listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addrs().iter().find_map(Addr::tcp)
    }

    /// A handle that starts a graceful shutdown from anywhere (a signal handler, a test).
    pub fn shutdown_handle(&self) -> Shutdown {
        Shutdown {
            token: self.shared.shutdown.clone(),
        }
    }

    /// (d) Serves on the current tokio runtime (current-thread or multi-thread) until a
    /// graceful shutdown completes.
    pub async fn serve(self) -> io::Result<()> {
        self.serve_in(false, None).await
    }

    /// Accepts on every listener until the shutdown, then drains; each connection on a
    /// task, or (`blocking`) on a thread of its own.
    async fn serve_in(self, blocking: bool, ring: Option<Ring>) -> io::Result<()> {
        let Server {
            bound,
            service,
            shared,
        } = self;
        let mut loops = Vec::new();
        for b in bound {
            let listener = b.into_tokio()?;
            loops.push(tokio::spawn(accept_loop(
                listener,
                service.clone(),
                shared.clone(),
                blocking,
                ring.clone(),
            )));
        }
        for l in loops {
            let _ = l.await;
        }
        drain(&shared).await;
        Ok(())
    }

    /// Serves one connection that is already open (an inetd-style socket, stdin/stdout
    /// joined into a [`Stream::other`]) until it ends, on the current runtime. `info`
    /// describes it to the handler.
    pub async fn serve_connection(&self, stream: Stream, info: ConnInfo) {
        let Some(guard) = conn::ConnGuard::new(&self.shared) else {
            return;
        };
        conn::serve_stream(
            stream,
            info,
            self.service.clone(),
            self.shared.clone(),
            None,
            guard,
        )
        .await;
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }

    /// Runs the server in threading model `model` until a graceful shutdown completes.
    pub fn run(self, model: Model) -> io::Result<()> {
        match model {
            Model::CurrentThread => current_thread()?.block_on(self.serve()),
            Model::MultiThread(workers) => {
                let mut rt = tokio::runtime::Builder::new_multi_thread();
                if let Some(n) = workers {
                    rt.worker_threads(n.max(1));
                }
                rt.enable_all().build()?.block_on(self.serve())
            }
            Model::PerCore(threads) => self.run_per_core(threads, false),
            Model::Blocking => self.run_blocking(),
            Model::Uring(threads) => {
                let uring = uring_available();
                self.run_per_core(threads, uring)
            }
        }
    }

    fn run_per_core(self, threads: Option<usize>, uring: bool) -> io::Result<()> {
        let n = threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let Server {
            bound,
            service,
            shared,
        } = self;
        let mut per_thread: Vec<Vec<Bound>> = (0..n).map(|_| Vec::new()).collect();
        for b in bound {
            for slot in per_thread.iter_mut().skip(1) {
                slot.push(b.sibling()?);
            }
            per_thread[0].push(b);
        }
        let mut handles = Vec::new();
        for (i, bound) in per_thread.into_iter().enumerate() {
            let server = Server {
                bound,
                service: service.clone(),
                shared: shared.clone(),
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("weft-core-{i}"))
                    .spawn(move || {
                        current_thread()?.block_on(async move {
                            let ring = if uring { start_ring() } else { None };
                            server.serve_in(false, ring).await
                        })
                    })?,
            );
        }
        let mut result = Ok(());
        for h in handles {
            match h.join() {
                Ok(r) => result = result.and(r),
                Err(_) => result = Err(io::Error::other("a server thread panicked")),
            }
        }
        result
    }

    fn run_blocking(self) -> io::Result<()> {
        current_thread()?.block_on(self.serve_in(true, None))
    }
}

/// A thread's io_uring ring, where the model has one.
#[cfg(all(feature = "uring", target_os = "linux"))]
type Ring = crate::uring::Uring;
#[cfg(not(all(feature = "uring", target_os = "linux")))]
type Ring = std::convert::Infallible;

/// Whether io_uring can be used; if not, says why in one log line.
fn uring_available() -> bool {
    #[cfg(all(feature = "uring", target_os = "linux"))]
    match crate::uring::probe() {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("io_uring is unavailable ({e}): serving with the tokio driver");
            false
        }
    }
    #[cfg(not(all(feature = "uring", target_os = "linux")))]
    {
        tracing::warn!(
            "built without io_uring (Linux, feature `uring`): serving with the tokio driver"
        );
        false
    }
}

/// Starts this thread's ring on its runtime (`None`, logged, if it cannot be set up).
fn start_ring() -> Option<Ring> {
    #[cfg(all(feature = "uring", target_os = "linux"))]
    match crate::uring::Uring::start() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(
                "io_uring ring not set up ({e}): this thread serves with the tokio driver"
            );
            None
        }
    }
    #[cfg(not(all(feature = "uring", target_os = "linux")))]
    None
}

fn current_thread() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Accepts until the shutdown; each connection on a task (or, `blocking`, on a thread
/// with a runtime of its own).
async fn accept_loop<S: Handler>(
    listener: Listener,
    service: S,
    shared: Arc<Shared>,
    blocking: bool,
    ring: Option<Ring>,
) {
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (accepted, peer, local) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors or memory, or one connection failing before it
                // was accepted: wait a little, then go on accepting.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        #[cfg(all(feature = "uring", target_os = "linux"))]
        let accepted = match (accepted, &ring) {
            (listener::Accepted::Tcp(s, None), Some(ring)) => match ring.stream_from_tokio(s) {
                Ok(s) => listener::Accepted::Uring(s),
                Err(e) => {
                    tracing::warn!("cannot move a connection onto io_uring: {e}");
                    continue;
                }
            },
            (accepted, _) => accepted,
        };
        #[cfg(not(all(feature = "uring", target_os = "linux")))]
        let _ = &ring;
        let service = service.clone();
        let shared2 = shared.clone();
        if blocking {
            let std_accepted = match accepted.into_std() {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("cannot move a connection to its thread: {e}");
                    continue;
                }
            };
            let token = shared.tracker.token();
            let spawned = std::thread::Builder::new()
                .name("weft-conn".into())
                .spawn(move || {
                    let _token = token;
                    let Ok(rt) = current_thread() else { return };
                    rt.block_on(async move {
                        let Ok(accepted) = std_accepted.into_tokio() else {
                            return;
                        };
                        let local_tracker = TaskTracker::new();
                        let cut = shared2.cut.clone();
                        tokio::select! {
                            () = conn::serve_accepted(
                                accepted, peer, local, service, shared2,
                                Some(local_tracker.clone()),
                            ) => {}
                            () = cut.cancelled() => return,
                        }
                        local_tracker.close();
                        local_tracker.wait().await;
                    });
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start a connection thread: {e}");
            }
        } else {
            let conn = conn::serve_accepted(accepted, peer, local, service, shared2, None);
            shared.tracker.spawn(UntilCut::new(conn, &shared));
        }
    }
}

/// After the accept loops stop: wait for the tracked connections up to the grace period,
/// then cut the rest.
async fn drain(shared: &Shared) {
    shared.tracker.close();
    if tokio::time::timeout(shared.config.grace, shared.tracker.wait())
        .await
        .is_err()
    {
        tracing::info!("grace period over: cutting the connections left");
    }
    shared.cut.cancel();
}
