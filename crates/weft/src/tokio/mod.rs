//! The async driver: a WebSocket over any tokio `AsyncRead + AsyncWrite`.
//!
//! [`WebSocket`] moves bytes between the transport and a [`weft_proto::Connection`]; every
//! protocol decision is the engine's. It is a `Stream` of messages and a `Sink` for them,
//! with plain `recv()` / `send()` too. `feed` queues without writing (corking); `flush`
//! writes everything queued in vectored writes.

#[cfg(feature = "http2-client")]
mod h2;
mod handshake;
mod maybe_tls;
mod split;
mod streaming;

#[cfg(feature = "http2-client")]
pub use h2::{
    connect_auto, connect_auto_request, ClientStream, H2Connection, H2Error, H2Stream, Http2Mode,
};
pub use handshake::{accept, accept_with, connect, connect_with};
pub use maybe_tls::{connect_request, connect_url, MaybeTlsStream};
pub use split::{WsReader, WsWriter};
pub use streaming::{MessageSink, MessageStream};

use crate::error::{Error, Result};
use crate::gather::{self, Plan, MAX_IOVECS};
use crate::options::{Options, Timers};
use ::tokio::io::{AsyncRead, AsyncWrite};
use ::tokio::time::{sleep_until, Instant, Sleep};
use bytes::{Buf, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use weft_proto::{CloseCode, Connection, Event, Message, MessageAssembler, RecvLevel, Role};

/// A WebSocket connection over the async transport `S`.
///
/// ```no_run
/// # async fn run() -> weft::Result<()> {
/// let stream = tokio::net::TcpStream::connect("127.0.0.1:9001").await?;
/// let (mut ws, _response) = weft::tokio::connect("ws://127.0.0.1:9001/", stream).await?;
/// ws.send("hello").await?;
/// while let Some(msg) = ws.recv().await? {
///     println!("{msg:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    options: Timers,
    assembler: MessageAssembler,
    /// An error that waits for the close frame to be written before it is returned.
    stashed: Option<Error>,
    /// The transport reached end of file.
    eof: bool,
    /// The transport was shut down.
    shut: bool,
    /// Bytes were written into the transport and it has not flushed them yet. A transport
    /// that buffers (TLS: its records) holds them until a flush that may be pending when
    /// the engine's own queue is already empty: the flush goes on at the next wake.
    unflushed: bool,
    /// Whether `Stream::poll_next` already returned `None` or an error.
    stream_done: bool,
    /// Closing to detach: the transport is not shut down after the close handshake.
    detaching: bool,
    timer: Option<Pin<Box<Sleep>>>,
    timer_kind: TimerKind,
    last_read: Instant,
    /// A close to send when a token is cancelled (a server's graceful shutdown). Inline,
    /// not boxed: it is looked at on every wake.
    close_signal: Option<CloseSignal>,
    /// Where the transport is (or may be) an io_uring stream: how to reach it, so that reads
    /// go straight into the engine's buffer and large payloads are sent from the engine's
    /// `Bytes` (see [`WebSocket::with_ring_buffers`]).
    #[cfg(all(feature = "uring", target_os = "linux"))]
    ring_io: Option<RingIo<S>>,
}

/// Reaches the io_uring stream inside a transport, if it is one.
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) type RingIo<S> = fn(&mut S) -> Option<&mut crate::uring::UringStream>;

/// What [`WebSocket::close_on`] waits for (cheap to poll on every wake), and the close it
/// then sends.
pub(crate) struct CloseSignal {
    pub(crate) cancelled: crate::signal::Cancelled,
    pub(crate) code: CloseCode,
    pub(crate) reason: &'static str,
}

impl std::fmt::Debug for CloseSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseSignal")
            .field("code", &self.code)
            .field("reason", &self.reason)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    None,
    /// Keepalive: fires `ping_interval` after the last read.
    Idle,
    /// A keepalive ping was sent; fires when the pong is late.
    Pong,
    /// Our close was sent; fires when the peer's is late (or, for a client, the server's
    /// end of file).
    Close,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Attaches to a transport that is already upgraded: no handshake (REQUIREMENTS H4).
    pub fn from_raw(io: S, role: Role, options: Options) -> Self {
        Self::from_parts(io, Connection::new(role, options.config.clone()), options)
    }

    /// Attaches with an engine that may already hold bytes (those that followed the
    /// handshake head).
    pub fn from_parts(io: S, conn: Connection, options: Options) -> Self {
        let assembler = MessageAssembler::new(options.config.max_message_size);
        WebSocket {
            io,
            conn,
            assembler,
            options: Timers::from(&options),
            stashed: None,
            eof: false,
            shut: false,
            unflushed: false,
            stream_done: false,
            detaching: false,
            timer: None,
            timer_kind: TimerKind::None,
            last_read: Instant::now(),
            close_signal: None,
            #[cfg(all(feature = "uring", target_os = "linux"))]
            ring_io: None,
        }
    }

    /// Reads and writes through the io_uring stream that `ring_io` finds in the transport
    /// (where it finds one) with the engine's own buffers.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn set_ring_io(&mut self, ring_io: RingIo<S>) {
        self.ring_io = Some(ring_io);
    }

    /// Reads into the engine's read buffer: through the io_uring stream's own path where
    /// there is one, else `AsyncRead`. `Ok(0)`: end of file.
    fn poll_read_in(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        #[cfg(all(feature = "uring", target_os = "linux"))]
        if let Some(uring) = self.ring_io.and_then(|f| f(&mut self.io)) {
            return uring.poll_read_engine(cx, &mut self.conn);
        }
        let buf = self.conn.read_buf();
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf)
    }

    /// Starts the close handshake with `code` and `reason` when `token` is cancelled, from
    /// whichever call is driving the connection then (`recv`, `next_event`, `flush`...):
    /// the next `recv` returns the messages still arriving, then `Ok(None)` once the peer
    /// answers. `weft::server` uses it to send 1001 (going away) to every WebSocket on a
    /// graceful shutdown. A later call replaces the earlier one. A connection
    /// [`split`](Self::split) later keeps it: the read half sends the close when the token
    /// is cancelled while it waits for the peer, and the write half at its next send or
    /// flush, whichever comes first.
    pub fn close_on(
        &mut self,
        token: tokio_util::sync::CancellationToken,
        code: CloseCode,
        reason: &'static str,
    ) {
        self.close_on_signal(crate::signal::Signal::new(token), code, reason);
    }

    /// [`close_on`](Self::close_on) with a signal many connections share (the server's
    /// shutdown: its flag stays in cache however many connections poll it).
    pub(crate) fn close_on_signal(
        &mut self,
        signal: crate::signal::Signal,
        code: CloseCode,
        reason: &'static str,
    ) {
        self.close_signal = Some(CloseSignal {
            cancelled: signal.cancelled(),
            code,
            reason,
        });
    }

    /// Polls the [`close_on`](Self::close_on) token; once cancelled, queues the close.
    fn poll_close_signal(&mut self, cx: &mut Context<'_>) {
        let Some(signal) = &mut self.close_signal else {
            return;
        };
        if Pin::new(&mut signal.cancelled).poll(cx).is_pending() {
            return;
        }
        let (code, reason) = (signal.code, signal.reason);
        self.close_signal = None;
        if self.conn.close_sent().is_none() && !self.conn.is_closed() {
            // Fails only if the connection already failed; its own error is reported then.
            let _ = self.conn.close(code, reason);
        }
    }

    /// The protocol engine: status (close codes, queue sizes) and low-level sends
    /// (`begin_message`, `begin_frame`, `ping`...; call [`flush`](Self::flush) after).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The protocol engine, mutable. Whatever it queues is written by the next `flush`,
    /// `send` or receive.
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Gives the transport back as it is, with the received bytes that were not processed
    /// (no close handshake: for a stream whose protocol changes under the application).
    /// Bytes the transport still holds unflushed (a TLS stream's records, see
    /// [`want_write`](Self::want_write)) stay in it: [`flush`](Self::flush) first to have
    /// them written.
    pub fn into_inner(mut self) -> (S, BytesMut) {
        let rest = self.conn.take_read_buffer();
        (self.io, rest)
    }

    /// The close handshake without shutting the transport, then the transport back with the
    /// bytes that followed the peer's close frame (REQUIREMENTS I5: detach). Data messages
    /// that arrive meanwhile are dropped.
    pub async fn detach(mut self, code: CloseCode, reason: &str) -> Result<(S, BytesMut)> {
        self.detaching = true;
        if self.conn.close_sent().is_none() {
            self.conn.close(code, reason)?;
        }
        while !self.conn.is_done() {
            if self.next_event().await?.is_none() {
                break;
            }
        }
        self.flush().await?;
        Ok(self.into_inner())
    }

    /// The next data message; `Ok(None)` once the close handshake is over (see
    /// [`Connection::close_status`]). Pings are answered and the peer's close replied to on
    /// the way. At the frame and chunk receive levels the message is assembled here.
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// A message that has already arrived, without waiting or doing I/O; `Ok(None)` when
    /// none is buffered. Use it to batch replies (`feed` each, then one `flush`). At the
    /// message receive level only. A protocol error found here is reported by the next
    /// `recv`, after the close frame is written.
    pub fn try_recv(&mut self) -> Result<Option<Message>> {
        if self.stashed.is_some() {
            return Ok(None);
        }
        loop {
            match self.conn.poll_event() {
                Ok(Some(Event::Message(m))) => return Ok(Some(m)),
                Ok(Some(Event::Ping(_) | Event::Pong(_) | Event::Close(_))) => continue,
                Ok(Some(other)) => {
                    if let Some(m) = self.assembler.push(&other)? {
                        return Ok(Some(m));
                    }
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.stashed = Some(e.into());
                    return Ok(None);
                }
            }
        }
    }

    /// The next event of any kind, at the connection's receive level (messages, frames or
    /// chunks; pings, pongs, close). `Ok(None)` once the connection is closed.
    pub async fn next_event(&mut self) -> Result<Option<Event>> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Queues a message and writes everything queued.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        self.conn.send(msg.into())?;
        self.flush().await
    }

    /// Queues a message without writing it (corking), unless more than
    /// `write_buffer_limit` bytes wait: then it writes until they fit, so memory stays
    /// bounded when the peer does not read. A message queued by `feed` is never lost: the
    /// next `flush`, `send`, `recv` or `close` writes it.
    pub async fn feed(&mut self, msg: impl Into<Message>) -> Result<()> {
        self.conn.send(msg.into())?;
        if self.conn.queued_bytes() > self.options.write_buffer_limit {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Sends a ping (payload at most 125 bytes) and writes it.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<()> {
        self.conn.ping(payload)?;
        self.flush().await
    }

    /// The close handshake: sends a close frame, then reads (dropping data messages) until
    /// the peer's close arrives or `close_timeout` passes, then shuts the transport.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        if self.conn.close_sent().is_none() {
            self.conn.close(code, reason)?;
        }
        loop {
            match self.next_event().await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Polls for the next whole message (see [`recv`](Self::recv)).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Message>>> {
        loop {
            let Some(event) = ready!(self.poll_event(cx))? else {
                return Poll::Ready(Ok(None));
            };
            match event {
                Event::Message(m) => return Poll::Ready(Ok(Some(m))),
                Event::Ping(_) | Event::Pong(_) | Event::Close(_) => continue,
                other => {
                    if self.conn.config().recv_level == RecvLevel::Message {
                        continue;
                    }
                    match self.assembler.push(&other) {
                        Ok(Some(m)) => return Poll::Ready(Ok(Some(m))),
                        Ok(None) => {}
                        // Over the message size limit: close with its code (1009).
                        Err(weft_proto::Error::Protocol(p)) => {
                            self.stashed = Some(self.conn.fail(p).into())
                        }
                        Err(e) => return Poll::Ready(Err(e.into())),
                    }
                }
            }
        }
    }

    /// Polls for the next event (see [`next_event`](Self::next_event)). It also writes
    /// what the engine queued (pongs, the close reply) and runs the timers.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Event>>> {
        // Take part in tokio's cooperative scheduling: a connection whose buffer holds many
        // messages yields now and then instead of starving the other tasks.
        let coop = ready!(::tokio::task::coop::poll_proceed(cx));
        let result = ready!(self.poll_event_inner(cx));
        coop.made_progress();
        Poll::Ready(result)
    }

    fn poll_event_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Event>>> {
        self.poll_close_signal(cx);
        loop {
            if self.stashed.is_none() {
                match self.conn.poll_event() {
                    Ok(Some(event)) => return Poll::Ready(Ok(Some(event))),
                    Ok(None) => {}
                    Err(e) => self.stashed = Some(e.into()),
                }
            }
            if self.want_write() {
                match self.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    // Keep reading while the peer drains our writes, unless we are ending.
                    Poll::Pending if self.stashed.is_some() || !self.conn.want_read() => {
                        return Poll::Pending
                    }
                    Poll::Pending => {}
                }
            }
            if self.stashed.is_some() {
                if !self.want_write() {
                    ready!(self.poll_shutdown(cx));
                }
                if let Some(e) = self.stashed.take() {
                    return Poll::Ready(Err(e));
                }
            }
            if self.conn.is_done() {
                if self.detaching {
                    return Poll::Ready(Ok(None));
                }
                // Close handshake over: a server shuts the transport at once; a client
                // waits for the server to do it (RFC 6455 §7.1.1), bounded by the timer.
                if self.conn.role() == Role::Server || self.eof {
                    ready!(self.poll_shutdown(cx));
                    return Poll::Ready(Ok(None));
                }
            } else if !self.conn.want_read() && !self.want_write() {
                // The peer closed and the application answers (auto_close off).
                return Poll::Ready(Ok(None));
            }
            if let Some(result) = self.poll_timers(cx) {
                return Poll::Ready(result);
            }
            if self.eof {
                return Poll::Ready(Err(Error::ConnectionReset));
            }
            match self.poll_read_in(cx) {
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    if self.conn.is_done() {
                        continue;
                    }
                    return Poll::Ready(Err(Error::ConnectionReset));
                }
                Poll::Ready(Ok(_)) => {
                    // (The clock is read only where a keepalive needs it: on a KVM guest
                    // a read of it cost ~1% of a small echo.)
                    if self.options.ping_interval.is_some() {
                        self.last_read = Instant::now();
                    }
                    if self.timer_kind == TimerKind::Pong {
                        self.timer_kind = TimerKind::None;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {
                    // The engine decides which buffers an idle connection gives back.
                    self.conn.read_would_block();
                    return Poll::Pending;
                }
            }
        }
    }

    /// Arms and checks the keepalive, pong and close timers. `Some` ends the poll.
    ///
    /// The keepalive timer is not moved at every read: it stays armed at its earlier
    /// deadline, and when that passes with reads since, it is re-armed from the last read
    /// (one timer-wheel update per interval rather than one per message).
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Option<Result<Option<Event>>> {
        let closing = self.conn.close_sent().is_some();
        let current = match (self.timer_kind, &self.timer) {
            (TimerKind::None, _) | (_, None) => None,
            (kind, Some(t)) => Some((kind, t.deadline())),
        };
        let (kind, deadline) = if closing {
            match current {
                Some((TimerKind::Close, deadline)) => (TimerKind::Close, deadline),
                _ => (
                    TimerKind::Close,
                    Instant::now() + self.options.close_timeout,
                ),
            }
        } else if self.timer_kind == TimerKind::Pong {
            match current {
                Some((TimerKind::Pong, deadline)) => (TimerKind::Pong, deadline),
                _ => (TimerKind::Pong, Instant::now()),
            }
        } else if let Some(interval) = self.options.ping_interval {
            match current {
                // Armed earlier than the last read allows: fires, then re-arms (below).
                Some((TimerKind::Idle, deadline)) if deadline <= self.last_read + interval => {
                    (TimerKind::Idle, deadline)
                }
                _ => (TimerKind::Idle, self.last_read + interval),
            }
        } else {
            return None;
        };
        if current != Some((kind, deadline)) {
            match &mut self.timer {
                Some(t) => t.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(sleep_until(deadline))),
            }
            self.timer_kind = kind;
        }
        let timer = self.timer.as_mut()?;
        if timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        let idle_due = self.options.ping_interval.map(|i| self.last_read + i);
        match kind {
            TimerKind::Idle if idle_due.is_some_and(|due| due > deadline) => {
                // Read since it was armed: not idle yet; wait from the last read.
                timer.as_mut().reset(idle_due.unwrap_or(deadline));
                if timer.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
                None
            }
            TimerKind::Idle => {
                // Idle too long: ping, and expect something back within pong_timeout.
                if self.conn.ping(b"weft-keepalive").is_ok() {
                    self.timer_kind = TimerKind::Pong;
                    let deadline = Instant::now() + self.options.pong_timeout;
                    timer.as_mut().reset(deadline);
                    cx.waker().wake_by_ref();
                }
                None
            }
            TimerKind::Pong | TimerKind::Close => {
                self.timer_kind = TimerKind::None;
                self.timer = None;
                // The transport is dropped with the connection; nothing more is read.
                self.shut = true;
                self.eof = true;
                if self.conn.is_done() {
                    // The handshake completed; only the server's end of file was late.
                    return Some(Ok(None));
                }
                Some(Err(Error::Timeout))
            }
            TimerKind::None => None,
        }
    }

    /// Writes everything the engine queued, then flushes the transport: one contiguous
    /// piece with a plain write, several in vectored writes.
    pub fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        #[cfg(all(feature = "uring", target_os = "linux"))]
        if let Some(uring) = self.ring_io.and_then(|f| f(&mut self.io)) {
            // (Nothing to flush: everything written is on the ring.)
            ready!(uring.poll_write_engine(cx, self.conn.outgoing()))?;
            return Poll::Ready(Ok(()));
        }
        while self.conn.want_write() {
            // One piece, or small pieces gathered into one: a plain write, as
            // `send(2)`/`write(2)`; many or large pieces: a vectored write.
            let out = self.conn.outgoing();
            let vectored = self.io.is_write_vectored();
            let io = Pin::new(&mut self.io);
            let written = match gather::plan(out, vectored) {
                Plan::First => ready!(io.poll_write(cx, out.chunk()))?,
                Plan::Gather => ready!(gather::gathered(out, |b| io.poll_write(cx, b)))?,
                Plan::Vectored => {
                    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                    let n = out.chunks_vectored(&mut slices);
                    ready!(io.poll_write_vectored(cx, &slices[..n]))?
                }
            };
            if written == 0 {
                return Poll::Ready(Err(Error::Io(std::io::ErrorKind::WriteZero.into())));
            }
            self.unflushed = true;
            self.conn.outgoing().advance(written);
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    /// Whether bytes wait to be written: queued in the engine, or written into a transport
    /// that has not flushed them yet (a TLS stream whose socket was full). An event loop
    /// that drives [`poll_write_out`](Self::poll_write_out) itself calls it while this is
    /// true (`connection().want_write()` alone misses what the transport holds).
    pub fn want_write(&self) -> bool {
        self.unflushed || self.conn.want_write()
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.shut {
            // Errors here change nothing for the caller: the connection is over either way.
            let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
            self.shut = true;
        }
        Poll::Ready(())
    }
}

#[cfg(all(feature = "uring", target_os = "linux"))]
impl WebSocket<crate::uring::UringStream> {
    /// Reads and writes with the engine's own buffers instead of through `AsyncRead` and
    /// `AsyncWrite`: a large read room (a large frame arriving) is received into directly,
    /// and large payloads are sent from the `Bytes` they were queued as (a `sendmsg` of
    /// the pieces), so neither is copied in user space (measured at 64 KiB messages: each
    /// copy was about a tenth of the server's CPU per echo). Small read rooms still come
    /// from the ring's shared buffer pool, so a quiet connection holds no receive buffer
    /// (on a ring without a pool, one receive into the room is in flight, as a
    /// `UringStream` read has one into a buffer of its own).
    /// `weft::server` does this itself under `Model::Uring`.
    ///
    /// ```no_run
    /// # async fn run() -> weft::Result<()> {
    /// let uring = weft::uring::Uring::start()?;
    /// let tcp = std::net::TcpStream::connect("127.0.0.1:9001")?;
    /// let (ws, _) = weft::tokio::connect("ws://127.0.0.1:9001/", uring.stream(tcp)?).await?;
    /// let mut ws = ws.with_ring_buffers();
    /// ws.send(vec![0u8; 1 << 20]).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_ring_buffers(mut self) -> Self {
        self.set_ring_io(|s| Some(s));
        self
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.stream_done {
            return Poll::Ready(None);
        }
        match ready!(this.poll_recv(cx)) {
            Ok(Some(m)) => Poll::Ready(Some(Ok(m))),
            Ok(None) => {
                this.stream_done = true;
                Poll::Ready(None)
            }
            Err(e) => {
                this.stream_done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.conn.queued_bytes() > this.options.write_buffer_limit {
            ready!(this.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().conn.send(item)?;
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_write_out(cx)
    }

    /// Sends a close frame (1000) if none was sent, and writes everything queued. Receive
    /// until `None` to complete the close handshake.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.conn.close_sent().is_none() && !this.conn.is_closed() {
            this.conn.close(CloseCode::NORMAL, "")?;
        }
        this.poll_write_out(cx)
    }
}

/// Waits at most `limit` for `fut` (no limit: `None`).
pub(crate) async fn with_timeout<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match limit {
        Some(d) => ::tokio::time::timeout(d, fut)
            .await
            .map_err(|_| Error::Timeout)?,
        None => fut.await,
    }
}
