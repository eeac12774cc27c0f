//! One connection, from accept to the end: the connection limit (503 past it), the TLS
//! handshake under the header timeout, then hyper's HTTP/1.1 or HTTP/2 (chosen by ALPN or by
//! the client's preface: h2c with prior knowledge on the same port), graceful shutdown, and
//! a `tracing` span for all of it.

use super::info::{Addr, ConnInfo};
use super::listener::Accepted;
use super::service::{Handler, HyperService};
use super::stream::{Stream, TransportKind};
use super::{ConnCtx, Shared};
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
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

/// Runs a hyper connection (`$conn`, either kind) to its end: the first-request watchdog
/// and the graceful shutdown. A macro: the two connection types share no trait.
macro_rules! drive {
    ($conn:expr, $ctx:expr, $shared:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        // hyper's header timeout starts once it knows the HTTP version; until the first
        // request, this one cuts a client that sends too little to tell (a slowloris
        // preface).
        let first_request = tokio::time::sleep($shared.config.header_timeout);
        tokio::pin!(first_request);
        let mut watching = true;
        let mut draining = false;
        let mut shutdown = crate::signal::Cancelled::new($shared.shutdown.clone());
        loop {
            // Once a request came, the watchdog's timer is not polled again.
            if watching && $ctx.seen_request.load(Ordering::Relaxed) {
                watching = false;
            }
            tokio::select! {
                biased;
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection ended: {e}");
                    }
                    break;
                }
                () = &mut first_request, if watching => {
                    watching = false;
                    if !$ctx.seen_request.load(Ordering::Relaxed) {
                        tracing::debug!("no request within the header timeout");
                        break;
                    }
                }
                () = &mut shutdown, if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
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
        seen_request: Default::default(),
        span: tracing::Span::current(),
        _guard: guard,
    });
    let service = HyperService {
        service,
        ctx: ctx.clone(),
    };
    let io = TokioIo::new(stream);
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
