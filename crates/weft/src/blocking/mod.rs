//! The blocking driver: a WebSocket over any std `Read + Write`, with a deadline per call.
//!
//! Each operation takes a deadline (REQUIREMENTS I3): `None` waits forever, an instant in
//! the past tries once without blocking, and expiry is [`Error::Timeout`]. A timeout never
//! loses data: a frame half received stays in the engine and a write half done stays
//! queued, so the next call resumes where this one stopped. A transport failure half way
//! breaks the connection, and every later call says so ([`Error::Broken`]).

mod handshake;
mod maybe_tls;
mod streaming;
mod transport;

pub use handshake::{accept, accept_with, connect, connect_request, connect_stream, connect_with};
pub use maybe_tls::MaybeTlsStream;
pub use streaming::{MessageReader, MessageWriter};
pub use transport::{NoDeadlines, Transport, Wait};

use crate::error::{Error, Result};
use crate::gather::{self, Plan, MAX_IOVECS};
use crate::options::{Options, Timers};
use bytes::{Buf, Bytes, BytesMut};
use std::io::{self, IoSlice};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_proto::{
    CloseCode, Connection, Event, Message, MessageAssembler, MessageKind, RecvLevel, Role,
};

/// A deadline: `None` waits forever; an instant already past tries once.
pub type Deadline = Option<Instant>;

/// The most one read asks for (the buffer is zero-filled up to this before a read).
const MAX_READ: usize = 64 * 1024;
/// What the engine's `read_buf` lends past its read reserve.
const READ_SLACK: usize = 64;

/// A WebSocket connection over the blocking transport `S`.
///
/// ```no_run
/// use std::time::{Duration, Instant};
/// let (mut ws, _response) = weft::blocking::connect("ws://127.0.0.1:9001/", weft::Options::default())?;
/// ws.send("hello", None)?;
/// let reply = ws.recv(Some(Instant::now() + Duration::from_secs(5)))?;
/// # Ok::<(), weft::Error>(())
/// ```
#[derive(Debug)]
pub struct WebSocket<S: Transport> {
    io: S,
    conn: Connection,
    options: Timers,
    assembler: MessageAssembler,
    default_kind: MessageKind,
    broken: bool,
    eof: bool,
    shut: bool,
    /// The wait last set on the transport, to skip redundant system calls.
    wait: Option<Wait>,
    last_read: Instant,
    /// When the pong for a keepalive ping is due.
    pong_due: Option<Instant>,
    /// When the peer's close (or, for a client, the server's end of file) is due.
    close_due: Option<Instant>,
    /// A close to send once a token is cancelled (see [`WebSocket::close_on`]).
    close_signal: Option<Box<(CancellationToken, CloseCode, &'static str)>>,
}

/// How often a blocked read looks at a [`WebSocket::close_on`] token.
const CLOSE_SIGNAL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl<S: Transport> WebSocket<S> {
    /// Attaches to a transport that is already upgraded: no handshake (REQUIREMENTS H4).
    pub fn from_raw(io: S, role: Role, options: Options) -> Self {
        Self::from_parts(io, Connection::new(role, options.config.clone()), options)
    }

    /// Attaches with an engine that may already hold bytes (those that followed the
    /// handshake head).
    pub fn from_parts(io: S, conn: Connection, options: Options) -> Self {
        WebSocket {
            io,
            assembler: MessageAssembler::new(options.config.max_message_size),
            conn,
            options: Timers::from(&options),
            default_kind: MessageKind::Binary,
            broken: false,
            eof: false,
            shut: false,
            wait: None,
            last_read: Instant::now(),
            pong_due: None,
            close_due: None,
            close_signal: None,
        }
    }

    /// Starts the close handshake with `code` and `reason` once `token` is cancelled: a
    /// read blocked in `recv` looks at the token every 100 ms, sends the close, and
    /// `recv` returns `Ok(None)` when the peer answers. `weft::server` uses it to send 1001
    /// (going away) to blocking WebSockets on a graceful shutdown.
    pub fn close_on(&mut self, token: CancellationToken, code: CloseCode, reason: &'static str) {
        self.close_signal = Some(Box::new((token, code, reason)));
    }

    /// The protocol engine (status, low-level sends; [`flush`](Self::flush) after those).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The protocol engine, mutable.
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The kind [`send_typed`](Self::send_typed) sends and
    /// [`recv_typed`](Self::recv_typed) expects (REQUIREMENTS V5). Default binary.
    pub fn set_default_kind(&mut self, kind: MessageKind) {
        self.default_kind = kind;
    }

    /// Gives the transport back as it is, with the received bytes not yet processed.
    pub fn into_inner(mut self) -> (S, BytesMut) {
        let rest = self.conn.take_read_buffer();
        (self.io, rest)
    }

    /// The close handshake without shutting the transport, then the transport back with
    /// the bytes that followed the peer's close frame (detach).
    pub fn detach(
        mut self,
        code: CloseCode,
        reason: &str,
        deadline: Deadline,
    ) -> Result<(S, BytesMut)> {
        self.start_close(code, reason)?;
        while !self.conn.is_done() {
            if self.next_event_inner(deadline, false)?.is_none() {
                break;
            }
        }
        self.flush(deadline)?;
        Ok(self.into_inner())
    }

    /// The next data message; `Ok(None)` once the close handshake is over. Pings are
    /// answered and the peer's close replied to on the way.
    pub fn recv(&mut self, deadline: Deadline) -> Result<Option<Message>> {
        loop {
            let Some(event) = self.next_event(deadline)? else {
                return Ok(None);
            };
            match event {
                Event::Message(m) => return Ok(Some(m)),
                Event::Ping(_) | Event::Pong(_) | Event::Close(_) => {}
                other => {
                    if self.conn.config().recv_level == RecvLevel::Message {
                        continue;
                    }
                    match self.assembler.push(&other) {
                        Ok(Some(m)) => return Ok(Some(m)),
                        Ok(None) => {}
                        // Over the message size limit: close with its code (1009).
                        Err(weft_proto::Error::Protocol(p)) => {
                            let err = self.conn.fail(p);
                            let _ = self.flush(deadline);
                            self.shutdown();
                            return Err(err.into());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// The next message's payload, which must be of the default kind; a message of the
    /// other kind is consumed and is [`Error::WrongKind`] (REQUIREMENTS V5).
    pub fn recv_typed(&mut self, deadline: Deadline) -> Result<Option<Bytes>> {
        match self.recv(deadline)? {
            None => Ok(None),
            Some(m) if m.kind() == self.default_kind => Ok(Some(m.into_payload())),
            Some(_) => Err(Error::WrongKind),
        }
    }

    /// Receives the next message into `buf` (REQUIREMENTS V6): its kind and length. A
    /// message longer than `buf` is consumed and is [`Error::BufferTooSmall`].
    pub fn recv_into(
        &mut self,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<Option<(MessageKind, usize)>> {
        let Some(m) = self.recv(deadline)? else {
            return Ok(None);
        };
        let payload = m.payload();
        let Some(dst) = buf.get_mut(..payload.len()) else {
            return Err(Error::BufferTooSmall {
                needed: payload.len(),
            });
        };
        dst.copy_from_slice(payload);
        Ok(Some((m.kind(), payload.len())))
    }

    /// Sends `payload` as a message of the default kind (text must be UTF-8).
    pub fn send_typed(&mut self, payload: impl Into<Bytes>, deadline: Deadline) -> Result<()> {
        let payload = payload.into();
        let msg = match self.default_kind {
            MessageKind::Binary => Message::Binary(payload),
            MessageKind::Text => Message::Text(payload.try_into().map_err(|_| Error::InvalidUtf8)?),
        };
        self.send(msg, deadline)
    }

    /// The next event of any kind at the connection's receive level; `Ok(None)` once the
    /// connection is closed.
    pub fn next_event(&mut self, deadline: Deadline) -> Result<Option<Event>> {
        self.next_event_inner(deadline, true)
    }

    /// Queues a message and writes everything queued. If the deadline passes first, what
    /// is left stays queued for the next call; but while more than `write_buffer_limit`
    /// bytes wait, a new message is refused with [`Error::Timeout`] before it is queued, so
    /// memory stays bounded when the peer does not read.
    pub fn send(&mut self, msg: impl Into<Message>, deadline: Deadline) -> Result<()> {
        self.make_room(deadline)?;
        self.conn.send(msg.into())?;
        self.flush(deadline)
    }

    /// Queues a message without writing (corking), unless more than `write_buffer_limit`
    /// bytes wait: then it first writes until they fit (or the deadline passes, and the
    /// message is not queued).
    pub fn feed(&mut self, msg: impl Into<Message>, deadline: Deadline) -> Result<()> {
        self.make_room(deadline)?;
        self.conn.send(msg.into())?;
        Ok(())
    }

    /// Writes until no more than `write_buffer_limit` bytes wait.
    fn make_room(&mut self, deadline: Deadline) -> Result<()> {
        self.check_broken()?;
        if self.conn.queued_bytes() > self.options.write_buffer_limit {
            self.flush(deadline)?;
        }
        Ok(())
    }

    /// Sends a ping (payload at most 125 bytes).
    pub fn ping(&mut self, payload: &[u8], deadline: Deadline) -> Result<()> {
        self.check_broken()?;
        self.conn.ping(payload)?;
        self.flush(deadline)
    }

    /// The close handshake: sends a close frame, reads (dropping data messages) until the
    /// peer's close arrives or `close_timeout` passes (or the deadline), then shuts the
    /// transport.
    pub fn close(&mut self, code: CloseCode, reason: &str, deadline: Deadline) -> Result<()> {
        self.start_close(code, reason)?;
        while self.next_event(deadline)?.is_some() {}
        Ok(())
    }

    fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.check_broken()?;
        if self.conn.close_sent().is_none() {
            self.conn.close(code, reason)?;
        }
        Ok(())
    }

    /// Writes everything queued (one contiguous piece with a plain write, several
    /// vectored), then flushes the transport.
    pub fn flush(&mut self, deadline: Deadline) -> Result<()> {
        self.check_broken()?;
        while self.conn.want_write() {
            self.set_wait(deadline)?;
            // One piece, or small pieces gathered into one: a plain write; many or large
            // pieces: a vectored write.
            let out = self.conn.outgoing();
            let result = match gather::plan(out, true) {
                Plan::First => self.io.write(out.chunk()),
                Plan::Gather => gather::gathered(out, |b| self.io.write(b)),
                Plan::Vectored => {
                    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                    let n = out.chunks_vectored(&mut slices);
                    self.io.write_vectored(&slices[..n])
                }
            };
            match result {
                Ok(0) => return Err(self.fail_io(io::ErrorKind::WriteZero.into())),
                Ok(written) => self.conn.outgoing().advance(written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail_io(e)),
            }
        }
        self.set_wait(deadline)?;
        self.io.flush().map_err(|e| self.fail_io(e))
    }

    fn next_event_inner(&mut self, deadline: Deadline, shutdown: bool) -> Result<Option<Event>> {
        self.check_broken()?;
        loop {
            match self.conn.poll_event() {
                Ok(Some(event)) => return Ok(Some(event)),
                Ok(None) => {}
                Err(e) => {
                    // Best effort: the close frame with the code goes out before we stop.
                    let _ = self.flush(deadline);
                    self.shutdown();
                    return Err(e.into());
                }
            }
            if self.conn.want_write() {
                self.flush(deadline)?;
            }
            if self.conn.is_done() {
                if !shutdown {
                    return Ok(None);
                }
                // A server shuts the transport at once; a client waits for the server to
                // do it (RFC 6455 §7.1.1), until close_timeout.
                if self.conn.role() == Role::Server || self.eof {
                    self.shutdown();
                    return Ok(None);
                }
            } else if !self.conn.want_read() && !self.conn.want_write() {
                return Ok(None);
            }
            if self.eof {
                return Err(Error::ConnectionReset);
            }
            self.read_once(deadline)?;
        }
    }

    /// One read into the engine, within the caller's deadline and the connection's own
    /// timers (keepalive, pong, close).
    fn read_once(&mut self, deadline: Deadline) -> Result<()> {
        if let Some(signal) = &self.close_signal {
            if signal.0.is_cancelled() {
                let (code, reason) = (signal.1, signal.2);
                self.close_signal = None;
                if self.conn.close_sent().is_none() && !self.conn.is_closed() {
                    // Fails only if the connection already failed, which is reported then.
                    let _ = self.conn.close(code, reason);
                }
                return Ok(());
            }
        }
        let now = Instant::now();
        if self.conn.close_sent().is_some() && self.close_due.is_none() {
            self.close_due = Some(now + self.options.close_timeout);
        }
        let idle_due = match (self.options.ping_interval, self.pong_due) {
            _ if self.close_due.is_some() => None,
            (_, Some(due)) => Some(due),
            (Some(interval), None) => Some(self.last_read + interval),
            (None, None) => None,
        };
        let signal_due = self.close_signal.as_ref().map(|_| now + CLOSE_SIGNAL_POLL);
        let timer = [self.close_due.or(idle_due), signal_due]
            .into_iter()
            .flatten()
            .min();
        let effective = match (deadline, timer) {
            (Some(d), Some(t)) => Some(d.min(t)),
            (d, t) => d.or(t),
        };
        match self.set_wait(effective) {
            // A transport that cannot time out runs without the connection's own timers.
            Err(Error::InvalidArgument(_)) if deadline.is_none() => self.set_wait(None)?,
            other => other?,
        }
        // `Read` needs initialised memory: zero only as much as the engine expects a read to
        // bring (its adaptive reserve, and the 64 bytes it lends past it: a frame of the
        // reserve's size arrives with its header in one read), not all the spare capacity,
        // which can be far larger while a big frame is buffered.
        let want = self.conn.read_reserve().clamp(1, MAX_READ) + READ_SLACK;
        let buf = self.conn.read_buf();
        let start = buf.len();
        let room = (buf.capacity() - start).clamp(1, want);
        buf.resize(start + room, 0);
        let result = self.io.read(&mut buf[start..]);
        let n = *result.as_ref().unwrap_or(&0);
        buf.truncate(start + n);
        match result {
            Ok(0) => {
                self.eof = true;
                if self.conn.is_done() {
                    Ok(())
                } else {
                    Err(Error::ConnectionReset)
                }
            }
            Ok(_) => {
                self.last_read = Instant::now();
                self.pong_due = None;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) if is_timeout(&e) => self.on_timer(deadline),
            Err(e) => Err(self.fail_io(e)),
        }
    }

    /// A read timed out: the caller's deadline, or one of the connection's timers.
    fn on_timer(&mut self, deadline: Deadline) -> Result<()> {
        let now = Instant::now();
        if let Some(due) = self.close_due {
            if now >= due {
                self.eof = true;
                self.shutdown();
                return if self.conn.is_done() {
                    Ok(())
                } else {
                    Err(Error::Timeout)
                };
            }
        } else if let Some(due) = self.pong_due {
            if now >= due {
                self.broken = true;
                self.shutdown();
                return Err(Error::Timeout);
            }
        } else if let Some(interval) = self.options.ping_interval {
            if now >= self.last_read + interval {
                self.conn.ping(b"weft-keepalive")?;
                self.pong_due = Some(now + self.options.pong_timeout);
                return Ok(());
            }
        }
        match deadline {
            Some(d) if now >= d => Err(Error::Timeout),
            // Woken early (a timer of ours that did not fire): go on.
            _ => Ok(()),
        }
    }

    fn set_wait(&mut self, deadline: Deadline) -> Result<()> {
        let wait = Wait::until(deadline);
        if self.wait != Some(wait) {
            match self.io.set_wait(wait) {
                Ok(()) => self.wait = Some(wait),
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    return Err(Error::InvalidArgument(
                        "this transport cannot time out: use no deadline",
                    ))
                }
                Err(e) => return Err(self.fail_io(e)),
            }
        }
        Ok(())
    }

    fn check_broken(&self) -> Result<()> {
        if self.broken {
            return Err(Error::Broken);
        }
        Ok(())
    }

    /// Turns an I/O error into the caller's error: a timeout leaves the connection usable,
    /// anything else breaks it.
    fn fail_io(&mut self, e: io::Error) -> Error {
        if is_timeout(&e) {
            Error::Timeout
        } else {
            self.broken = true;
            Error::Io(e)
        }
    }

    fn shutdown(&mut self) {
        if !self.shut {
            self.shut = true;
            // Nothing more to do if these fail: the connection is over.
            let _ = self.io.flush();
            let _ = self.io.close_write();
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
