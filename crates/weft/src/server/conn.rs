//! One connection, from accept to the end: the connection limit (503 past it), the TLS
//! handshake under the header timeout, then hyper's HTTP/1.1 or HTTP/2 (chosen by ALPN or by
//! the client's preface: h2c with prior knowledge on the same port) under weft's header and
//! idle timers ([`Watchdog`]), graceful shutdown, and a `tracing` span for all of it.

use super::info::{Addr, ConnInfo};
use super::listener::Accepted;
use super::service::{Handler, HyperService};
use super::stream::{Stream, TransportKind};
use super::{ConnCtx, Shared};
use bytes::{Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::{sleep_until, Instant, Sleep};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Serves one accepted connection to its end. Not an `async fn`: the future it returns
/// is the connection's own, in its span, with no state machine around it to go through on
/// every wake.
pub(crate) fn serve_accepted<S>(
    accepted: Accepted,
    peer: Addr,
    local: Addr,
    service: S,
    shared: Arc<Shared>,
    local_tracker: Option<TaskTracker>,
) -> tracing::instrument::Instrumented<impl Future<Output = ()> + Send>
where
    S: Handler,
{
    let span = tracing::debug_span!("conn", peer = %peer);
    let guard = ConnGuard::new(&shared);
    let timeout = shared.config.header_timeout;
    let fut = async move {
        let Some(guard) = guard else {
            tracing::debug!("over the connection limit: 503");
            refuse_busy(accepted, &shared).await;
            return;
        };
        let (stream, kind) = match accepted {
            Accepted::Unix(s) => (Stream::from(s), TransportKind::Unix),
            Accepted::Tcp(s, None) => (Stream::from(s), TransportKind::Tcp),
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Accepted::Uring(s) => (Stream::from(s), TransportKind::Tcp),
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
    fut.instrument(span)
}

/// What the header and idle timers need to know of a connection: requests in progress
/// (counted from the handler's call to the drop of the response body, and HTTP/2 upgraded
/// streams for their lifetime), whether bytes arrived, which HTTP version it speaks.
#[derive(Debug)]
pub(crate) struct Activity {
    started: AtomicUsize,
    done: AtomicUsize,
    /// Bytes were read since the last request started or ended (HTTP/1.1: the first bytes
    /// of the next head).
    read: AtomicBool,
    http2: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            read: AtomicBool::new(false),
            http2: AtomicBool::new(false),
        }
    }
}

/// A request (or an HTTP/2 upgraded stream) in progress, until dropped. It holds the
/// connection, which [`Busy::enter`] makes the current one while the handler runs.
pub(crate) struct Busy(Option<Arc<ConnCtx>>);

impl Busy {
    /// A request of `version`, or (`None`) an upgraded stream.
    pub(crate) fn new(ctx: Arc<ConnCtx>, version: Option<http::Version>) -> Busy {
        let a = &ctx.activity;
        match version {
            Some(http::Version::HTTP_2) => a.http2.store(true, Ordering::Relaxed),
            // Its head is read: what is read from now on belongs to the next one.
            Some(_) => a.read.store(false, Ordering::Relaxed),
            None => {}
        }
        a.started.fetch_add(1, Ordering::Relaxed);
        Busy(Some(ctx))
    }

    /// Runs `f` (the handler's call or a poll of its future) with this request's
    /// connection as the current one ([`ConnInfo::of`]).
    #[inline]
    pub(crate) fn enter<R>(&mut self, f: impl FnOnce() -> R) -> R {
        super::info::enter(&mut self.0, f)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let Some(ctx) = &self.0 else { return };
        let a = &ctx.activity;
        if !a.http2.load(Ordering::Relaxed) {
            // The request's body, if it came after its head, is not the next head.
            a.read.store(false, Ordering::Relaxed);
        }
        a.done.fetch_add(1, Ordering::Release);
    }
}

/// The server's stream as hyper sees it, noting each read in the connection's
/// [`Activity`] (the first byte of a request ends the idle wait), and handing out first
/// the bytes read to tell HTTP/2 from HTTP/1.1 ([`sniff`]). Taken apart again after an
/// upgrade (`into_inner`): the WebSocket runs on the [`Stream`] itself.
pub(crate) struct Watched {
    io: Stream,
    /// Read by `sniff`, not yet handed to hyper (empty once it has them).
    prefix: Bytes,
    ctx: Arc<ConnCtx>,
}

impl Watched {
    /// The stream, and what was read from it that hyper has not taken yet.
    pub(crate) fn into_inner(self) -> (Stream, Bytes) {
        (self.io, self.prefix)
    }
}

impl tokio::io::AsyncRead for Watched {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            // Taken whole when it fits: an empty `Bytes` split off would still hold the
            // buffer for the connection's life.
            let piece = match n == this.prefix.len() {
                true => std::mem::take(&mut this.prefix),
                false => this.prefix.split_to(n),
            };
            buf.put_slice(&piece);
            this.ctx.activity.read.store(true, Ordering::Relaxed);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.ctx.activity.read.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl tokio::io::AsyncWrite for Watched {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    #[inline]
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

    #[inline]
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
    /// Between requests or in one: the idle timeout runs, and is put off whenever it finds
    /// a request in progress or one ended since it was armed.
    Open,
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

/// The header and idle timers of one connection: one `Sleep`. Nothing per request: the
/// idle timer is not re-armed when a request ends, but looks, when it fires, whether one
/// is in progress or ended since it was armed, and if so waits an idle timeout more (so
/// an idle connection is closed between one and two idle timeouts after its last
/// request). The header timer is exact: armed when a head starts (a connection's start,
/// or the first bytes of a keep-alive request that do not make a whole head at once).
struct Watchdog<'a> {
    activity: &'a Activity,
    header_timeout: Duration,
    idle_timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    phase: Phase,
    /// The timer was polled since it was last armed (it holds this task's waker; until it
    /// fires, a cheap look at its state does).
    registered: bool,
    /// Requests started, as of the last look.
    seen_started: usize,
    /// Requests ended when the idle timer was armed.
    seen_done: usize,
}

impl<'a> Watchdog<'a> {
    /// The timers of a connection whose first head must be whole by `head_deadline`.
    fn new(activity: &'a Activity, shared: &Shared, head_deadline: Instant) -> Self {
        Watchdog {
            activity,
            header_timeout: shared.config.header_timeout,
            idle_timeout: shared.config.idle_timeout,
            sleep: Box::pin(sleep_until(head_deadline)),
            phase: Phase::Head,
            registered: false,
            seen_started: 0,
            seen_done: 0,
        }
    }

    fn arm(&mut self, phase: Phase, after: Duration) {
        self.phase = phase;
        self.sleep.as_mut().reset(Instant::now() + after);
        self.registered = false;
    }

    /// After the idle timeout's graceful close: a header timeout more, then the cut.
    fn closing(&mut self) {
        self.arm(Phase::Closing, self.header_timeout);
    }

    /// Whether the timer fired: polled once after each arming (to hold the waker), then
    /// a load of its state.
    fn fired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.registered && !self.sleep.is_elapsed() {
            return false;
        }
        self.registered = true;
        self.sleep.as_mut().poll(cx).is_ready()
    }

    /// Called after each poll of the connection: moves between phases by what the
    /// connection did, and reports a timeout.
    #[inline]
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Expired> {
        let a = self.activity;
        match self.phase {
            Phase::Closing => {}
            Phase::Head => {
                let started = a.started.load(Ordering::Relaxed);
                if started != self.seen_started {
                    // The head is whole (its request was called).
                    self.seen_started = started;
                    self.seen_done = a.done.load(Ordering::Acquire);
                    self.arm(Phase::Open, self.idle_timeout);
                }
            }
            Phase::Open => {
                if !a.http2.load(Ordering::Relaxed)
                    && a.read.load(Ordering::Relaxed)
                    && a.started.load(Ordering::Relaxed) == a.done.load(Ordering::Acquire)
                {
                    // The first bytes of the next request, not yet a whole head.
                    self.seen_started = a.started.load(Ordering::Relaxed);
                    self.arm(Phase::Head, self.header_timeout);
                }
            }
        }
        if !self.fired(cx) {
            return Poll::Pending;
        }
        match self.phase {
            Phase::Head | Phase::Closing => Poll::Ready(Expired::Cut),
            Phase::Open => {
                let done = a.done.load(Ordering::Acquire);
                if a.started.load(Ordering::Relaxed) != done || done != self.seen_done {
                    // A request in progress, or one ended since: not idle that long.
                    self.seen_done = done;
                    self.arm(Phase::Open, self.idle_timeout);
                    // Polled now, to hold the waker again.
                    return match self.fired(cx) {
                        true => Poll::Ready(Expired::Idle),
                        false => Poll::Pending,
                    };
                }
                Poll::Ready(Expired::Idle)
            }
        }
    }
}

/// Runs a hyper connection (`$conn`, either kind) to its end under its header and idle
/// timers ([`Watchdog`]) and the server's graceful shutdown. A macro: the two connection
/// types share no trait.
macro_rules! drive {
    ($conn:expr, $ctx:expr, $shared:expr, $deadline:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        let mut watchdog = Watchdog::new(&$ctx.activity, &$shared, $deadline);
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
                    if !draining {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
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
    mut stream: Stream,
    info: ConnInfo,
    service: S,
    shared: Arc<Shared>,
    local_tracker: Option<TaskTracker>,
    guard: ConnGuard,
) where
    S: Handler,
{
    let head_deadline = Instant::now() + shared.config.header_timeout;
    // Which HTTP: by ALPN over TLS, else by the first bytes (h2c with prior knowledge
    // starts with the HTTP/2 preface), all within the header timeout; a graceful shutdown
    // meanwhile ends a connection that has sent no request.
    let (protocol, prefix) = match (&shared.http2, stream.tls().and_then(|t| t.alpn_protocol())) {
        (None, _) => (Protocol::Http1, Bytes::new()),
        (Some(_), Some(b"h2")) => (Protocol::Http2, Bytes::new()),
        (Some(_), Some(_)) => (Protocol::Http1, Bytes::new()),
        (Some(_), None) => {
            let sniffed = tokio::select! {
                biased;
                r = tokio::time::timeout_at(head_deadline, sniff(&mut stream)) => r,
                () = shared.shutdown.cancelled() => return,
            };
            match sniffed {
                Ok(Ok(sniffed)) => sniffed,
                Ok(Err(e)) => {
                    tracing::debug!("connection ended before its first request: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("header timeout: connection cut");
                    return;
                }
            }
        }
    };
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
        prefix,
        ctx: ctx.clone(),
    });
    match (protocol, &shared.http2) {
        (Protocol::Http2, Some(http2)) => {
            let conn = http2.serve_connection(io, service);
            drive!(conn, ctx, shared, head_deadline)
        }
        _ => {
            let conn = shared.http1.serve_connection(io, service).with_upgrades();
            drive!(conn, ctx, shared, head_deadline)
        }
    }
}

/// The HTTP a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// What an HTTP/2 connection with prior knowledge starts with (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads a connection's first bytes until they tell HTTP/2 (the whole preface) from
/// HTTP/1.1 (a byte that differs), and returns them, for hyper to read first: one read
/// for the usual first request, which then reaches hyper without a system call more. A
/// connection closed before that is HTTP/1.1 (hyper sees the end).
async fn sniff(stream: &mut Stream) -> std::io::Result<(Protocol, Bytes)> {
    use tokio::io::AsyncReadExt;
    let mut buf = BytesMut::with_capacity(2048);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok((Protocol::Http1, buf.freeze()));
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Ok((Protocol::Http1, buf.freeze()));
        }
        if n == H2_PREFACE.len() {
            return Ok((Protocol::Http2, buf.freeze()));
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
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Accepted::Uring(s) => answer_and_drain(s, head.as_bytes()).await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// `sniff` on what a client sends in `pieces`, then closes.
    async fn sniffed(pieces: &[&[u8]]) -> (Protocol, Bytes) {
        let (mut client, server) = tokio::io::duplex(4096);
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for p in pieces {
                client.write_all(&p).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut stream = Stream::other(server);
        let result = sniff(&mut stream).await.unwrap();
        writer.await.unwrap();
        result
    }

    #[tokio::test]
    async fn sniff_tells_http2_from_http1_however_the_bytes_come() {
        let preface = H2_PREFACE;
        assert_eq!(
            sniffed(&[&preface[..3], &preface[3..20], &preface[20..]]).await,
            (Protocol::Http2, Bytes::from_static(preface))
        );
        let mut more = preface.to_vec();
        more.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(
            sniffed(&[&more]).await,
            (Protocol::Http2, Bytes::from(more.clone()))
        );
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            sniffed(&[get]).await,
            (Protocol::Http1, Bytes::from_static(get))
        );
        // A prefix of the preface, then a byte that differs: HTTP/1.1, every byte kept.
        assert_eq!(
            sniffed(&[b"PR", b"IX"]).await,
            (Protocol::Http1, Bytes::from_static(b"PRIX"))
        );
        // Closed inside the preface, or before any byte: HTTP/1.1 (hyper sees the end).
        assert_eq!(
            sniffed(&[b"PRI *"]).await,
            (Protocol::Http1, Bytes::from_static(b"PRI *"))
        );
        assert_eq!(sniffed(&[]).await, (Protocol::Http1, Bytes::new()));
    }
}
