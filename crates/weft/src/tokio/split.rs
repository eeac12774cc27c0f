//! A connection split into a read half and a write half that can live in different tasks.
//!
//! Both halves share the engine (behind a short-held `std` mutex) and the transport's write
//! side (behind an async mutex). Every method is cancel-safe: a cancelled write keeps what
//! it had taken from the engine and the next flush writes it first (the read half, if it
//! waits for the peer, is woken to do so). Whoever holds the write side writes everything queued,
//! whichever half queued it: so the pong for a ping, and the reply to the peer's close, go
//! out from the read half even while the write half sits idle (the trap of a split that
//! leaves control replies to the writer).
//!
//! A [`close_on`](WebSocket::close_on) signal survives the split: each half watches the
//! token (each with a watcher of its own, so neither steals the other's wake-up). The read
//! half queues and writes the close the moment the token is cancelled while it waits for
//! the peer, then completes the handshake as for any close; the write half queues it at its
//! next send or flush (after the message being sent), for a writer whose reader is idle.

use super::{CloseSignal, WebSocket};
use crate::error::{Error, Result};
use crate::options::Timers;
use crate::signal::Cancelled;
use ::tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use ::tokio::time::timeout;
use bytes::{Buf, Bytes};
use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use weft_proto::{CloseCode, Connection, Event, Message, MessageAssembler, RecvLevel, Role};

struct Shared<S> {
    conn: Mutex<Connection>,
    writer: ::tokio::sync::Mutex<Writer<S>>,
    options: Timers,
    /// A flush was given up before it finished (cancelled: `select!`, a timeout): pieces
    /// may wait in `Writer::inflight`, or records in a TLS stream, while the engine's queue
    /// is empty. The read half then flushes although the engine has nothing queued. (Not
    /// set by a flush that is merely under way: the read half does not wait for the write
    /// half's writes.)
    unflushed: AtomicBool,
    /// The read half while it waits for the peer: woken when a flush is given up, so that
    /// it writes the rest (the write half may never call again).
    reader: futures_util::task::AtomicWaker,
    /// The close a [`close_on`](WebSocket::close_on) signal sends.
    close_on: Option<(CloseCode, &'static str)>,
}

/// The transport's write side, and the pieces taken from the engine's queue that are not
/// yet written. They live here, under the writer's lock, so a write that is cancelled
/// (`select!`, a timeout) loses nothing: the next flush goes on from them.
struct Writer<S> {
    io: WriteHalf<S>,
    inflight: std::collections::VecDeque<Bytes>,
    /// The write half's watcher of the `close_on` token, checked at each flush.
    signal: Option<Cancelled>,
}

impl<S> Shared<S> {
    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the engine half-updated in a way that
        // matters more than the panic itself; keep going with its state.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the `close_on` close, unless a close was already sent or the connection is
    /// over.
    fn queue_signal_close(&self) {
        let Some((code, reason)) = self.close_on else {
            return;
        };
        let mut conn = self.conn();
        if conn.close_sent().is_none() && !conn.is_closed() {
            // Fails only if the connection already failed (or a declared-length frame is
            // open); its own error is reported then.
            let _ = conn.close(code, reason);
        }
    }
}

impl<S: AsyncRead + AsyncWrite> Shared<S> {
    /// Writes everything queued, by either half, in the order it was queued. Cancel-safe.
    async fn flush(&self) -> Result<()> {
        let guard = self.writer.lock().await;
        self.flush_locked(guard).await
    }

    /// [`flush`](Self::flush) for the read half when only a flush given up is left to
    /// finish: a flush under way (the writer's lock is taken) writes all of it, so the read
    /// half does not wait for it and goes on reading.
    async fn finish_given_up(&self) -> Result<()> {
        match self.writer.try_lock() {
            Ok(guard) => self.flush_locked(guard).await,
            Err(_) => Ok(()),
        }
    }

    async fn flush_locked(
        &self,
        mut guard: ::tokio::sync::MutexGuard<'_, Writer<S>>,
    ) -> Result<()> {
        // This flush takes over whatever one given up before left (its pieces are in
        // `inflight`); it marks itself as given up unless it completes (or fails: the
        // error is then the transport's, reported again by the next flush).
        self.unflushed.store(false, Ordering::Relaxed);
        let mut unfinished = Unfinished {
            flag: &self.unflushed,
            reader: &self.reader,
            done: false,
        };
        let Writer {
            io,
            inflight,
            signal,
        } = &mut *guard;
        if let Some(s) = signal {
            // An atomic load once registered; nothing wakes this task for it (the read
            // half's own watcher does that for a reader that waits).
            let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
            if Pin::new(s).poll(&mut cx).is_ready() {
                *signal = None;
                self.queue_signal_close();
            }
        }
        loop {
            if inflight.is_empty() {
                let mut conn = self.conn();
                while inflight.len() < 64 {
                    match conn.outgoing().pop_chunk() {
                        Some(c) => inflight.push_back(c),
                        None => break,
                    }
                }
            }
            if inflight.is_empty() {
                break;
            }
            let mut n = if inflight.len() == 1 {
                // One piece: a plain write, not a vectored write of one buffer.
                io.write(&inflight[0]).await?
            } else {
                let slices: Vec<IoSlice<'_>> = inflight.iter().map(|c| IoSlice::new(c)).collect();
                io.write_vectored(&slices).await?
            };
            if n == 0 {
                return Err(Error::Io(std::io::ErrorKind::WriteZero.into()));
            }
            while n > 0 {
                let Some(front) = inflight.front_mut() else {
                    break;
                };
                let take = n.min(front.len());
                front.advance(take);
                n -= take;
                if front.is_empty() {
                    inflight.pop_front();
                }
            }
        }
        io.flush().await?;
        unfinished.done = true;
        Ok(())
    }

    /// Shuts the write side once everything queued is written.
    async fn shutdown(&self) {
        let _ = self.flush().await;
        let _ = self.writer.lock().await.io.shutdown().await;
    }
}

/// Sets `Shared::unflushed` when dropped: a flush given up half-way (or failed) unless
/// `done`, and clears it once one completed. A flush given up wakes the read half, which
/// finishes it if it is waiting for the peer.
struct Unfinished<'a> {
    flag: &'a AtomicBool,
    reader: &'a futures_util::task::AtomicWaker,
    done: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        self.flag.store(!self.done, Ordering::Release);
        if !self.done {
            self.reader.wake();
        }
    }
}

/// The read half of a split connection.
pub struct WsReader<S> {
    shared: Arc<Shared<S>>,
    read: ReadHalf<S>,
    assembler: MessageAssembler,
    eof: bool,
    /// A keepalive ping was sent: the next read waits `pong_timeout` at most.
    awaiting_pong: bool,
    /// The read half's watcher of the `close_on` token, polled while it waits to read.
    signal: Option<Cancelled>,
}

/// What a wait of the read half for the peer ended in.
enum ReadOutcome {
    /// This many bytes arrived (0: end of file).
    Bytes(usize),
    /// The time limit passed first.
    TimedOut,
    /// The `close_on` token was cancelled first.
    Signal,
    /// A flush was given up (the write half's send cancelled): its rest is to be written.
    GivenUp,
}

/// The write half of a split connection.
pub struct WsWriter<S> {
    shared: Arc<Shared<S>>,
}

impl<S> std::fmt::Debug for WsReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReader").finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for WsWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsWriter").finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Splits the connection into a read half and a write half for two tasks. Pings are
    /// answered and the close handshake completed by the read half on its own.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let WebSocket {
            io,
            conn,
            options,
            close_signal,
            unflushed,
            ..
        } = self;
        let (read, write) = ::tokio::io::split(io);
        let (read_signal, write_signal, close_on) = match close_signal {
            Some(CloseSignal {
                cancelled,
                code,
                reason,
            }) => (
                Some(cancelled.signal().cancelled()),
                Some(cancelled),
                Some((code, reason)),
            ),
            None => (None, None, None),
        };
        let assembler = MessageAssembler::new(conn.config().max_message_size);
        let shared = Arc::new(Shared {
            conn: Mutex::new(conn),
            writer: ::tokio::sync::Mutex::new(Writer {
                io: write,
                inflight: Default::default(),
                signal: write_signal,
            }),
            options,
            unflushed: AtomicBool::new(unflushed),
            reader: futures_util::task::AtomicWaker::new(),
            close_on,
        });
        (
            WsReader {
                shared: Arc::clone(&shared),
                read,
                assembler,
                eof: false,
                awaiting_pong: false,
                signal: read_signal,
            },
            WsWriter { shared },
        )
    }
}

impl<S: AsyncRead + AsyncWrite> WsReader<S> {
    /// The next data message; `Ok(None)` once the close handshake is over.
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        loop {
            let Some(event) = self.next_event().await? else {
                return Ok(None);
            };
            match event {
                Event::Message(m) => return Ok(Some(m)),
                Event::Ping(_) | Event::Pong(_) | Event::Close(_) => {}
                other => {
                    if self.shared.conn().config().recv_level == RecvLevel::Message {
                        continue;
                    }
                    match self.assembler.push(&other) {
                        Ok(Some(m)) => return Ok(Some(m)),
                        Ok(None) => {}
                        // Over the message size limit: close with its code (1009).
                        Err(weft_proto::Error::Protocol(p)) => {
                            let err = self.shared.conn().fail(p);
                            let _ = self.shared.flush().await;
                            return Err(err.into());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// The next event of any kind; `Ok(None)` once the connection is closed.
    ///
    /// An event the engine has is returned at once (as the whole connection's driver does);
    /// what the engine queued meanwhile (a pong, the reply to a close, the write half's
    /// corked messages) is written at the next call, while the read half goes on reading: a
    /// peer that reads only after it has written is not kept waiting for our write while we
    /// wait for its.
    pub async fn next_event(&mut self) -> Result<Option<Event>> {
        let options = &self.shared.options;
        loop {
            let (failed, want_write, done, want_read, closing, role) = {
                let mut conn = self.shared.conn();
                let failed = match conn.poll_event() {
                    Ok(Some(event)) => return Ok(Some(event)),
                    Ok(None) => None,
                    Err(e) => Some(e),
                };
                (
                    failed,
                    conn.want_write(),
                    conn.is_done(),
                    conn.want_read(),
                    conn.close_sent().is_some(),
                    conn.role(),
                )
            };
            let unflushed = self.shared.unflushed.load(Ordering::Acquire);
            if let Some(e) = failed {
                // (Cancelled here, the next call finds the engine's error again.)
                self.shared.shutdown().await;
                return Err(e.into());
            }
            if done && !want_write && (role == Role::Server || self.eof) {
                self.shared.shutdown().await;
                return Ok(None);
            }
            if !done && !want_read && !want_write {
                return Ok(None);
            }
            if self.eof {
                if want_write {
                    self.shared.flush().await?;
                    continue;
                }
                return if done {
                    Ok(None)
                } else {
                    Err(Error::ConnectionReset)
                };
            }
            // Read, within the close timeout once closing, else the keepalive interval (or
            // the pong's); until a close is sent, the `close_on` token is watched too.
            let limit = if closing || done {
                Some(options.close_timeout)
            } else if self.awaiting_pong {
                Some(options.pong_timeout)
            } else {
                options.ping_interval
            };
            let read = read_within(&self.shared, &mut self.read, limit);
            let outcome = if want_write || unflushed {
                // Write what is queued (or finish a flush given up), reading meanwhile.
                let shared = &self.shared;
                let write = async move {
                    if want_write {
                        shared.flush().await
                    } else {
                        shared.finish_given_up().await
                    }
                };
                ::tokio::select! {
                    biased;
                    written = write => {
                        written?;
                        continue;
                    }
                    r = read => r?,
                }
            } else {
                match &mut self.signal {
                    Some(signal) if !closing && !done => ::tokio::select! {
                        biased;
                        () = signal => ReadOutcome::Signal,
                        r = read => r?,
                    },
                    _ => read.await?,
                }
            };
            let n = match outcome {
                ReadOutcome::Bytes(n) => n,
                ReadOutcome::GivenUp => continue,
                ReadOutcome::Signal => {
                    self.signal = None;
                    self.shared.queue_signal_close();
                    self.shared.flush().await?;
                    continue;
                }
                ReadOutcome::TimedOut if closing || done => {
                    self.shared.shutdown().await;
                    return if done { Ok(None) } else { Err(Error::Timeout) };
                }
                ReadOutcome::TimedOut if self.awaiting_pong => return Err(Error::Timeout),
                ReadOutcome::TimedOut => {
                    // Idle: ping, and expect something within pong_timeout.
                    self.shared.conn().ping(b"weft-keepalive")?;
                    self.shared.flush().await?;
                    self.awaiting_pong = true;
                    continue;
                }
            };
            self.awaiting_pong = false;
            if n == 0 {
                self.eof = true;
                continue;
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite> WsWriter<S> {
    /// Queues a message and writes everything queued.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        self.shared.conn().send(msg.into())?;
        self.shared.flush().await
    }

    /// Queues a message without writing it, unless more than `write_buffer_limit` bytes wait.
    pub async fn feed(&self, msg: impl Into<Message>) -> Result<()> {
        let over = {
            let mut conn = self.shared.conn();
            conn.send(msg.into())?;
            conn.queued_bytes() > self.shared.options.write_buffer_limit
        };
        if over {
            self.shared.flush().await?;
        }
        Ok(())
    }

    /// Writes everything queued.
    pub async fn flush(&self) -> Result<()> {
        self.shared.flush().await
    }

    /// Sends a ping.
    pub async fn ping(&self, payload: &[u8]) -> Result<()> {
        self.shared.conn().ping(payload)?;
        self.shared.flush().await
    }

    /// Sends a close frame; the read half completes the handshake (it returns `None` when
    /// the peer's close arrives).
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        self.shared.conn().close(code, reason)?;
        self.shared.flush().await
    }

    /// Runs `f` on the engine (status, or low-level sends followed by [`flush`](Self::flush)).
    pub fn with_connection<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        f(&mut self.shared.conn())
    }
}

/// Reads what arrives, within `limit` if there is one, straight into the engine's read
/// buffer (its adaptive room, as the whole connection's driver reads: no buffer of the
/// reader's own, no copy). A read that would block tells the engine, which gives back the
/// buffers of a connection that goes idle after small reads.
async fn read_within<S: AsyncRead>(
    shared: &Shared<S>,
    read: &mut ReadHalf<S>,
    limit: Option<std::time::Duration>,
) -> Result<ReadOutcome> {
    let read = poll_fn(|cx| {
        // Registered before the flag is looked at: a flush given up after the look wakes
        // this read.
        shared.reader.register(cx.waker());
        if shared.unflushed.load(Ordering::Acquire) {
            return Poll::Ready(Ok(None));
        }
        // The engine's lock is held for one non-blocking read: the write half never holds
        // it while it writes.
        let mut conn = shared.conn();
        let buf = conn.read_buf();
        match tokio_util::io::poll_read_buf(Pin::new(&mut *read), cx, buf) {
            Poll::Pending => {
                conn.read_would_block();
                Poll::Pending
            }
            Poll::Ready(r) => Poll::Ready(r.map(Some)),
        }
    });
    let outcome = |n: Option<usize>| n.map_or(ReadOutcome::GivenUp, ReadOutcome::Bytes);
    Ok(match limit {
        None => outcome(read.await?),
        Some(limit) => match timeout(limit, read).await {
            Ok(n) => outcome(n?),
            Err(_) => ReadOutcome::TimedOut,
        },
    })
}
