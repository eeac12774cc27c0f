//! One connection, from accept to the end: the connection limit (503 past it), the TLS
//! handshake under the header timeout, then hyper's HTTP/1.1 or HTTP/2 (chosen by ALPN or by
//! the client's preface: h2c with prior knowledge on the same port) under weft's header and
//! idle timers ([`Watchdog`]), graceful shutdown, and a `tracing` span for all of it.

use super::info::{Addr, ConnInfo};
use super::listener::Accepted;
use super::service::{Handler, HyperService};
use super::stream::{Stream, TransportKind};
use super::{ConnCtx, Shared};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::{sleep_until, Instant, Sleep};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Serves one accepted connection to its end.
pub(crate) async fn serve_accepted<S>(
    accepted: Accepted,
    peer: Addr,
    local: Addr,
    service: S,
    shared: Arc<Shared>,
    local_tracker: Option<TaskTracker>,
) where
    S: Handler,
{
    let span = tracing::debug_span!("conn", peer = %peer);
    let guard = match ConnGuard::new(&shared) {
        Some(g) => g,
        None => {
            async {
                tracing::debug!("over the connection limit: 503");
                refuse_busy(accepted, &shared).await;
            }
            .instrument(span)
            .await;
            return;
        }
    };
    let timeout = shared.config.header_timeout;
    let fut = async move {
        let (stream, kind) = match accepted {
            Accepted::Unix(s) => (Stream::from(s), TransportKind::Unix),
            Accepted::Tcp(s, None) => (Stream::from(s), TransportKind::Tcp),
            Accepted::Tcp(s, Some(acceptor)) => {
                match tokio::time::timeout(timeout, acceptor.accept(s)).await {
                    Ok(Ok(tls)) => (Stream::from(tls), TransportKind::Tls),
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        let mut info = ConnInfo::new(peer, local, kind);
        if let Some(tls) = stream.tls() {
            info = info.with_tls(tls);
        }
        serve_stream(stream, info, service, shared, local_tracker, guard).await;
    };
    fut.instrument(span).await
}

/// What the header and idle timers need to know of a connection: requests in progress
/// (counted from the handler's call to the drop of the response body, and HTTP/2 upgraded
/// streams for their lifetime), whether bytes arrived, which HTTP version it speaks.
#[derive(Debug)]
pub(crate) struct Activity {
    started: AtomicUsize,
    done: AtomicUsize,
    /// Bytes were read since the connection last went idle (HTTP/1.1).
    read: AtomicBool,
    http2: AtomicBool,
    /// Over HTTP/2, when the last request ended (milliseconds since `base`): they end on
    /// the streams' tasks, which do not wake the connection's.
    last_done_ms: AtomicU64,
    base: Instant,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            read: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            last_done_ms: AtomicU64::new(0),
            base: Instant::now(),
        }
    }
}

/// A request (or an HTTP/2 upgraded stream) in progress, until dropped.
pub(crate) struct Busy(Arc<ConnCtx>);

impl Busy {
    /// A request of `version`, or (`None`) an upgraded stream.
    pub(crate) fn new(ctx: Arc<ConnCtx>, version: Option<http::Version>) -> Busy {
        if version == Some(http::Version::HTTP_2) {
            ctx.activity.http2.store(true, Ordering::Relaxed);
        }
        ctx.activity.started.fetch_add(1, Ordering::Relaxed);
        Busy(ctx)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0.activity;
        if a.http2.load(Ordering::Relaxed) {
            let ms = u64::try_from(a.base.elapsed().as_millis()).unwrap_or(u64::MAX);
            a.last_done_ms.store(ms, Ordering::Relaxed);
        }
        // Release: the connection's task that sees the count sees the time too.
        a.done.fetch_add(1, Ordering::Release);
    }
}

/// The server's stream as hyper sees it, noting each read in the connection's
/// [`Activity`] (the first byte of a request ends the idle wait). Taken apart again after
/// an upgrade (`into_inner`): the WebSocket runs on the [`Stream`] itself.
pub(crate) struct Watched {
    io: Stream,
    ctx: Arc<ConnCtx>,
}

impl Watched {
    pub(crate) fn into_inner(self) -> Stream {
        self.io
    }
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.ctx.activity.read.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Where a connection is, for its timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head: the header timeout runs (from the connection's start, or
    /// from the first byte of a keep-alive request).
    Head,
    /// A request (or an HTTP/2 stream) in progress: no timeout (over HTTP/2 the timer
    /// still wakes the connection every idle timeout to look again).
    Busy,
    /// No request in progress: the idle timeout runs.
    Idle,
    /// Closing after the idle timeout: cut if it takes a header timeout more.
    Closing,
}

/// What a connection's timer ran out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// The header timeout, or a close that did not finish: cut the connection.
    Cut,
    /// The idle timeout: close it gracefully.
    Idle,
}

/// The header and idle timers of one connection: one `Sleep`, re-armed as the connection
/// moves between phases (once per request at most: to a later time, which costs an
/// atomic operation, not a trip into the timer wheel).
struct Watchdog<'a> {
    activity: &'a Activity,
    header_timeout: Duration,
    idle_timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    phase: Phase,
    /// The requests ended when the phase was last decided.
    seen_done: usize,
}

impl<'a> Watchdog<'a> {
    fn new(activity: &'a Activity, shared: &Shared) -> Self {
        let header_timeout = shared.config.header_timeout;
        Watchdog {
            activity,
            header_timeout,
            idle_timeout: shared.config.idle_timeout,
            sleep: Box::pin(sleep_until(activity.base + header_timeout)),
            phase: Phase::Head,
            seen_done: 0,
        }
    }

    fn arm(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline);
    }

    /// After the idle timeout's graceful close: a header timeout more, then the cut.
    fn closing(&mut self) {
        self.phase = Phase::Closing;
        self.arm(Instant::now() + self.header_timeout);
    }

    /// Called after each poll of the connection: moves between phases by what the
    /// connection did, and reports a timeout.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Expired> {
        if self.phase == Phase::Closing {
            ready!(self.sleep.as_mut().poll(cx));
            return Poll::Ready(Expired::Cut);
        }
        let a = self.activity;
        let done = a.done.load(Ordering::Acquire);
        let started = a.started.load(Ordering::Relaxed);
        let http2 = a.http2.load(Ordering::Relaxed);
        if started != done {
            if !http2 {
                // HTTP/1.1: the request ends on this task, which then polls again.
                self.phase = Phase::Busy;
                return Poll::Pending;
            }
            // HTTP/2: streams end on their own tasks; look again an idle timeout later.
            if self.phase != Phase::Busy {
                self.phase = Phase::Busy;
                self.arm(Instant::now() + self.idle_timeout);
            }
            while self.sleep.as_mut().poll(cx).is_ready() {
                self.arm(Instant::now() + self.idle_timeout);
            }
            return Poll::Pending;
        }
        if self.phase == Phase::Busy || done != self.seen_done {
            self.seen_done = done;
            self.phase = Phase::Idle;
            let since = if http2 {
                let ms = a.last_done_ms.load(Ordering::Relaxed);
                a.base + Duration::from_millis(ms)
            } else {
                a.read.store(false, Ordering::Relaxed);
                Instant::now()
            };
            self.arm(since + self.idle_timeout);
        }
        if self.phase == Phase::Idle && !http2 && a.read.load(Ordering::Relaxed) {
            // The first bytes of the next request: its head has the header timeout.
            self.phase = Phase::Head;
            self.arm(Instant::now() + self.header_timeout);
        }
        ready!(self.sleep.as_mut().poll(cx));
        Poll::Ready(match self.phase {
            Phase::Idle => Expired::Idle,
            _ => Expired::Cut,
        })
    }
}

/// Runs a hyper connection (`$conn`, either kind) to its end under its header and idle
/// timers ([`Watchdog`]) and the server's graceful shutdown. A macro: the two connection
/// types share no trait.
macro_rules! drive {
    ($conn:expr, $ctx:expr, $shared:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        let mut watchdog = Watchdog::new(&$ctx.activity, &$shared);
        let mut draining = false;
        let mut shutdown = $shared.shutdown_signal.cancelled();
        std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                return Poll::Ready(());
            }
            if !draining && Pin::new(&mut shutdown).poll(cx).is_ready() {
                draining = true;
                conn.as_mut().graceful_shutdown();
                // Polled again: an idle HTTP/1.1 connection ends at once.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match watchdog.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Expired::Cut) => {
                    tracing::debug!("header timeout: connection cut");
                    Poll::Ready(())
                }
                Poll::Ready(Expired::Idle) => {
                    tracing::debug!("idle timeout: closing the connection");
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                    watchdog.closing();
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        })
        .await
    }};
}

/// Serves HTTP on a stream that is ready (TLS done) until the connection ends.
pub(crate) async fn serve_stream<S>(
    stream: Stream,
    info: ConnInfo,
    service: S,
    shared: Arc<Shared>,
    local_tracker: Option<TaskTracker>,
    guard: ConnGuard,
) where
    S: Handler,
{
    let ctx = Arc::new(ConnCtx {
        info,
        shared: shared.clone(),
        local_tracker,
        activity: Activity::new(),
        span: tracing::Span::current(),
        _guard: guard,
    });
    let service = HyperService {
        service,
        ctx: ctx.clone(),
    };
    let io = TokioIo::new(Watched {
        io: stream,
        ctx: ctx.clone(),
    });
    match &shared.http1_only {
        // hyper-util's auto connection detects HTTP/2 even when told HTTP/1 only; with
        // HTTP/2 off, hyper's HTTP/1 connection serves alone.
        Some(http1) => {
            let conn = http1.serve_connection(io, service).with_upgrades();
            drive!(conn, ctx, shared)
        }
        None => {
            let conn = shared.http.serve_connection_with_upgrades(io, service);
            drive!(conn, ctx, shared)
        }
    }
}

/// Counts a connection against the limit while it lives (an upgraded stream keeps it).
#[derive(Debug)]
pub(crate) struct ConnGuard {
    shared: Arc<Shared>,
}

impl ConnGuard {
    pub(crate) fn new(shared: &Arc<Shared>) -> Option<ConnGuard> {
        let max = shared.config.max_connections;
        let previous = shared.live.fetch_add(1, Ordering::AcqRel);
        if previous >= max {
            shared.live.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnGuard {
            shared: shared.clone(),
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Past the connection limit: `503 Service Unavailable` with `Retry-After`, then close
/// (after the TLS handshake, for TLS), all within the header timeout.
async fn refuse_busy(accepted: Accepted, shared: &Shared) {
    let body = "the server is at its connection limit; retry later\n";
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: {}\r\ncontent-type: text/plain; \
         charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        shared.config.retry_after.as_secs().max(1),
        body.len()
    );
    let timeout = shared.config.header_timeout;
    let _ = tokio::time::timeout(timeout, async {
        match accepted {
            Accepted::Tcp(s, None) => answer_and_drain(s, head.as_bytes()).await,
            Accepted::Tcp(s, Some(acceptor)) => {
                answer_and_drain(acceptor.accept(s).await?, head.as_bytes()).await
            }
            Accepted::Unix(s) => answer_and_drain(s, head.as_bytes()).await,
        }
    })
    .await;
}

/// Writes `answer`, ends the sending side, then reads what the client still sends for a
/// moment: closing with its request unread would reset the connection, and the client
/// could lose the answer.
async fn answer_and_drain<S>(mut s: S, answer: &[u8]) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    s.write_all(answer).await?;
    s.shutdown().await?;
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    let drain = async {
        while left > 0 {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    Ok(())
}
