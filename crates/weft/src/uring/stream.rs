//! [`UringStream`]: a TCP connection whose reads and writes go through the thread's
//! io_uring ring, as a tokio `AsyncRead + AsyncWrite` — so the same tokio driver, hyper and
//! `weft::server` run on it unchanged.
//!
//! - **Reads**: where the ring has a provided-buffer pool, one multishot `recv` stays armed
//!   (from the first read on) and what it brings waits in the pool's buffers, queued in the
//!   ring, until a read copies it out; an idle connection holds no receive buffer. When it
//!   ends (the queue's bound, the pool ran out) the next read, after the queued data, arms
//!   it again; where the pool is empty at that moment, or there is no pool, one single-shot
//!   `recv` in flight at most, into a buffer the stream owns (sized by the caller's read
//!   room: the engine's adaptive room, so an idle connection's buffer is small); what it
//!   brings is copied out to the caller.
//! - **Writes**: a write is copied into a buffer of at most [`WRITE_ROOM`] bytes (a
//!   vectored write becomes one `send`) and its `send` queued at once; while it is in
//!   flight the next write waits (backpressure), so nothing written is ever left behind
//!   unsubmitted, and `flush` has nothing to wait for. `shutdown` waits for the send in
//!   flight, then shuts the write side.
//! - **The engine's own path** ([`crate::tokio::WebSocket::with_ring_buffers`], and
//!   `weft::server` under `Model::Uring`): the WebSocket hands its engine to the stream
//!   instead of going through `AsyncRead`/`AsyncWrite`. A busy connection receives
//!   straight into the engine's read room (no copy, and into memory the engine just
//!   used); one quiet for [`IDLE_AFTER`](super::ring::IDLE_AFTER) gets its room back and
//!   receives from the pool until data comes again, so it idles holding no receive
//!   buffer. Large payloads are sent from their `Bytes`, so a large message is not copied
//!   in user space at all (see `poll_read_engine`, `poll_write_engine`).
//! - **Drop** cancels the receive in flight (its queued pool buffers go back at once, late
//!   ones at their completions); a send in flight may finish (for up to 10 s,
//!   then it is cancelled). The ring frees the buffers at the completions.

use super::ring::{End, MultiRead, OpBuf, Ring, SendParts};
use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most written bytes that wait for the kernel before `poll_write` pushes back.
pub const WRITE_ROOM: usize = 256 * 1024;
/// The largest send buffer kept for the next write.
const KEEP_BUFFER: usize = 16 * 1024;
/// The smallest and largest receive.
const MIN_RECV: usize = 1024;
const MAX_RECV: usize = 256 * 1024;

/// A TCP connection driven through an io_uring ring; see the [module docs](super).
pub struct UringStream {
    tcp: std::net::TcpStream,
    ring: Arc<Ring>,
    /// Received, not yet handed out: `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    rpos: usize,
    /// The single-shot receive in flight.
    recv: Option<u32>,
    /// The multishot receive armed (never both).
    multi: Option<u32>,
    eof: bool,
    /// The send in flight, and where in its buffer it started.
    send: Option<(u32, usize)>,
    /// A buffer a completed send gave back, for the next batch.
    spare: Vec<u8>,
    /// The same for a `sendmsg` of the engine's pieces.
    spare_parts: Option<Box<SendParts>>,
    /// The send in flight holds payloads of the engine's (a `sendmsg` of its pieces).
    send_holds: bool,
    /// The largest payload of the last such send, once it completed: given back to the
    /// engine at the next read (`Connection::recycle`).
    sent: Option<bytes::Bytes>,
    /// A receive into the engine's read room in flight (see `poll_read_engine`).
    room: Option<u32>,
    /// `poll_read` is called by `poll_read_engine` for a large room: a multishot receive
    /// that ends is not armed again (receives go into the engine's room next).
    to_room: bool,
    /// A receive into the engine's room was cancelled by the ring's idle sweep (it waited
    /// [`IDLE_AFTER`](super::ring::IDLE_AFTER) or more): the connection is quiet, and small rooms are filled from the pool until data
    /// comes again (see `poll_read_engine`).
    idle: bool,
    /// A send failed: every later write and flush fails with it.
    broken: Option<io::ErrorKind>,
    write_shut: bool,
}

impl std::fmt::Debug for UringStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringStream")
            .field("fd", &self.tcp.as_raw_fd())
            .field("buffered", &(self.rbuf.len() - self.rpos))
            .field("sending", &self.send.is_some())
            .finish()
    }
}

impl UringStream {
    pub(crate) fn new(tcp: std::net::TcpStream, ring: Arc<Ring>) -> io::Result<Self> {
        // io_uring retries a blocking socket's operations when it becomes ready; on a
        // non-blocking one it would hand back EAGAIN.
        tcp.set_nonblocking(false)?;
        Ok(UringStream {
            tcp,
            ring,
            rbuf: Vec::new(),
            rpos: 0,
            recv: None,
            multi: None,
            eof: false,
            send: None,
            spare: Vec::new(),
            spare_parts: None,
            send_holds: false,
            sent: None,
            room: None,
            to_room: false,
            idle: false,
            broken: None,
            write_shut: false,
        })
    }

    /// The TCP socket (for options: `TCP_NODELAY`, `TCP_CORK`, addresses). Reading or
    /// writing it directly would bypass what the stream buffers.
    pub fn tcp(&self) -> &std::net::TcpStream {
        &self.tcp
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    /// Collects the send in flight if it completed: resubmits what a short send left, and
    /// puts the buffer aside. `Ready` once nothing is in flight. `cx` is registered only if
    /// given: a caller that will not return `Pending` must not take the waker of one that
    /// does (the other half of a split connection).
    fn poll_send_done(&mut self, mut cx: Option<&mut Context<'_>>) -> Poll<io::Result<()>> {
        while let Some((slot, from)) = self.send {
            let (result, buf) = std::task::ready!(self.ring.poll(slot, cx.as_deref_mut()));
            self.send = None;
            let buf = match buf {
                OpBuf::Parts(parts) => {
                    // A `sendmsg` of the engine's pieces: done, or its rest (rare: the kernel
                    // sends all of it unless interrupted or failed) copied and sent again.
                    self.send_holds = false;
                    if result >= 0 && result as usize >= parts.len() {
                        // (The largest payload goes back to the engine, the others go now;
                        // the allocations stay for the next.)
                        let mut parts = parts;
                        self.sent = parts.take_largest_shared();
                        self.spare_parts = parts.cleared(KEEP_BUFFER);
                        continue;
                    }
                    let e = io::Error::from_raw_os_error(-result.min(0));
                    if result < 0 && e.kind() != io::ErrorKind::Interrupted {
                        self.broken = Some(e.kind());
                        return Poll::Ready(Err(e));
                    }
                    let rest = parts.rest(result.max(0) as usize);
                    self.start_send(rest)?;
                    continue;
                }
                other => other.into_vec(),
            };
            if result < 0 {
                let e = io::Error::from_raw_os_error(-result);
                if e.kind() == io::ErrorKind::Interrupted {
                    self.send = Some((self.ring.send(self.fd(), buf, from)?, from));
                    continue;
                }
                self.broken = Some(e.kind());
                return Poll::Ready(Err(e));
            }
            let sent = from + result as usize;
            if sent < buf.len() {
                self.send = Some((self.ring.send(self.fd(), buf, sent)?, sent));
                continue;
            }
            // Kept for the next write unless large (an idle connection holds little).
            if buf.capacity() <= KEEP_BUFFER && self.spare.capacity() < buf.capacity() {
                self.spare = buf;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Starts the send of `buf` (nothing may be in flight).
    fn start_send(&mut self, buf: Vec<u8>) -> io::Result<()> {
        debug_assert!(self.send.is_none());
        self.send = Some((self.ring.send(self.fd(), buf, 0)?, 0));
        Ok(())
    }

    fn check_broken(&self) -> io::Result<()> {
        match self.broken {
            Some(kind) => Err(io::Error::new(
                kind,
                "an earlier send on this stream failed",
            )),
            None => Ok(()),
        }
    }

    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_broken()?;
        if self.write_shut {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        // One send at a time, and nothing written stays behind in this stream unsubmitted:
        // a caller that wrote everything and then stops polling (it has nothing more to
        // write) loses nothing.
        std::task::ready!(self.poll_send_done(Some(cx)))?;
        let mut buf = std::mem::take(&mut self.spare);
        buf.clear();
        let mut taken = 0;
        for b in bufs {
            let n = b.len().min(WRITE_ROOM - taken);
            buf.extend_from_slice(&b[..n]);
            taken += n;
            if taken == WRITE_ROOM {
                break;
            }
        }
        self.start_send(buf)?;
        Poll::Ready(Ok(taken))
    }
}

/// A payload at least this large is sent from the engine's `Bytes`; smaller pieces (the
/// coalesced small frames, cut at 8 KiB) are copied, and a batch of only those goes out
/// with a plain `send` (cheaper in the kernel than a `sendmsg`).
const HOLD_MIN: usize = 16 * 1024;

/// The `Bytes` of a piece that is sent as it is (see `HOLD_MIN`), or `None`: copied.
fn held<'a>(piece: &weft_proto::OutPiece<'a>) -> Option<&'a bytes::Bytes> {
    match *piece {
        weft_proto::OutPiece::Shared(b) if b.len() >= HOLD_MIN => Some(b),
        _ => None,
    }
}

impl UringStream {
    /// Reads into `conn`'s read buffer: what [`crate::tokio::WebSocket`] does on this
    /// stream instead of `AsyncRead`. The engine lends its room
    /// ([`lend_read_room`](weft_proto::Connection::lend_read_room)) and it is received into
    /// directly, unless the connection went idle: a receive into the room that waited one
    /// to two [`IDLE_AFTER`](super::ring::IDLE_AFTER) is cancelled (the ring's idle sweep),
    /// the room goes back to the engine, which frees it, and from then on a room no
    /// larger than a pool buffer is filled from the pool as `poll_read` does, until data
    /// comes again. A room larger than a pool buffer (a large frame arriving) is always
    /// received into, and so is every room where the ring has no pool. Switching from the
    /// pool to the room stops the armed multishot receive first and reads out what it
    /// queued (one extra wake of the task). Why rooms while busy: at 512 connections x
    /// 1 KiB, reading through the pool took 1.26x the server CPU per echo (the copy, and
    /// pool buffers gone cold in the cache by the time they are read). `Ok(0)`: the end of
    /// the stream.
    pub(crate) fn poll_read_engine(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut weft_proto::Connection,
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Some(slot) = self.room {
                let (result, buf) = std::task::ready!(self.ring.poll(slot, Some(cx)));
                self.room = None;
                let room = buf.into_room();
                let n = room.len();
                // (Given back in every case: the engine's buffer is whole again.)
                conn.read_done(room);
                if result == -libc::ECANCELED {
                    // The idle sweep: the connection is quiet; the pool takes over.
                    self.idle = true;
                    continue;
                }
                if result < 0 {
                    let e = io::Error::from_raw_os_error(-result);
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Poll::Ready(Err(e));
                }
                if result == 0 {
                    self.eof = true;
                }
                return Poll::Ready(Ok(n));
            }
            // A large payload that was sent from the engine's memory goes back to it, so
            // that the next room is made in that memory, warm in the cache, instead of a
            // new allocation (an echo is still being sent from the last room when the next
            // receive starts). (Collected here if its send completed meanwhile.)
            if self.send_holds {
                // (An error is kept in `broken`: the next write reports it.)
                let _ = self.poll_send_done(None);
            }
            if let Some(payload) = self.sent.take() {
                conn.recycle(payload);
                self.ring.note_recycled();
            }
            // The room (`read_room` then says what it means). Decided by that, not by the
            // spare capacity lent: what an earlier room left in the allocation would keep a
            // connection that went quiet on it. (`lend_read_room` and `read_buf` below make
            // the same room again: nothing to do the second time.)
            conn.read_buf();
            let direct = match self.ring.pool_buffer_size() {
                None => true,
                Some(size) => !self.idle || conn.read_room() > size,
            };
            if direct && self.rpos >= self.rbuf.len() && self.recv.is_none() && !self.eof {
                match self.multi {
                    None => {
                        let room = conn.lend_read_room();
                        self.room = Some(self.ring.recv_room(self.fd(), room)?);
                        continue;
                    }
                    Some(slot) => self.ring.stop_multi(slot),
                }
            }
            // Bytes already here, or the pool's: copied in.
            let buf = conn.read_buf();
            self.to_room = direct;
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut *self), cx, buf);
            self.to_room = false;
            if matches!(read, Poll::Ready(Ok(n)) if n > 0) {
                // Data again: the next receives go into the engine's room.
                self.idle = false;
            }
            return read;
        }
    }

    /// Writes what `out` holds: each large payload sent from the `Bytes` the engine queued
    /// (a `sendmsg`, no copy), the rest copied as `poll_write` does; `out` is advanced by
    /// what was queued on the ring. `Pending` while a send is in flight and bytes wait.
    pub(crate) fn poll_write_engine(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut weft_proto::OutQueue,
    ) -> Poll<io::Result<()>> {
        use bytes::Buf;
        self.check_broken()?;
        if self.write_shut && !out.is_empty() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        while !out.is_empty() {
            std::task::ready!(self.poll_send_done(Some(cx)))?;
            if !out.pieces().any(|p| held(&p).is_some()) {
                let mut slices = [IoSlice::new(&[]); SendParts::MAX_PIECES];
                let n = out.chunks_vectored(&mut slices);
                let taken = std::task::ready!(self.poll_write_slices(cx, &slices[..n]))?;
                out.advance(taken);
                continue;
            }
            let mut parts = self.spare_parts.take().unwrap_or_default();
            for piece in out.pieces() {
                if parts.pieces() == SendParts::MAX_PIECES {
                    break;
                }
                match held(&piece) {
                    Some(b) => parts.share(b.clone()),
                    None => parts.copy(piece.as_slice()),
                }
            }
            let taken = parts.len();
            self.send = Some((self.ring.send_parts(self.fd(), parts)?, 0));
            self.send_holds = true;
            out.advance(taken);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for UringStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(slot) = this.room {
            // A receive into an engine's room that was given up (the WebSocket was taken
            // apart): what it brought is read from here, first.
            let (result, buf) = std::task::ready!(this.ring.poll(slot, Some(cx)));
            this.room = None;
            if result < 0 {
                let e = io::Error::from_raw_os_error(-result);
                // (`ECANCELED`: the idle sweep cancelled it; nothing was read.)
                if e.kind() != io::ErrorKind::Interrupted && result != -libc::ECANCELED {
                    return Poll::Ready(Err(e));
                }
            } else if result == 0 {
                this.eof = true;
            }
            this.rbuf = buf.into_room().to_vec();
            this.rpos = 0;
        }
        loop {
            if this.rpos < this.rbuf.len() {
                let n = out.remaining().min(this.rbuf.len() - this.rpos);
                out.put_slice(&this.rbuf[this.rpos..this.rpos + n]);
                this.rpos += n;
                return Poll::Ready(Ok(()));
            }
            if this.eof || out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if let Some(slot) = this.multi {
                match std::task::ready!(this.ring.read_multi(slot, out, cx)) {
                    MultiRead::Data => return Poll::Ready(Ok(())),
                    MultiRead::Ended(end) => {
                        this.multi = None;
                        match end {
                            End::ReArm if this.to_room => {
                                // `poll_read_engine` goes on with a receive into its room.
                                cx.waker().wake_by_ref();
                                return Poll::Pending;
                            }
                            End::ReArm => {}
                            End::Eof => this.eof = true,
                            End::Error(e) => {
                                let e = io::Error::from_raw_os_error(-e);
                                if e.kind() != io::ErrorKind::Interrupted {
                                    return Poll::Ready(Err(e));
                                }
                            }
                        }
                        continue;
                    }
                }
            }
            match this.recv {
                Some(slot) => {
                    let (result, buf) = std::task::ready!(this.ring.poll(slot, Some(cx)));
                    this.recv = None;
                    this.rbuf = buf.into_vec();
                    this.rpos = 0;
                    if result < 0 {
                        this.rbuf.clear();
                        let e = io::Error::from_raw_os_error(-result);
                        if e.kind() == io::ErrorKind::Interrupted {
                            continue;
                        }
                        return Poll::Ready(Err(e));
                    }
                    if result == 0 {
                        this.eof = true;
                    }
                }
                None if this.ring.multishot_ready() => {
                    // The pool's buffers from now on: the stream's own one goes.
                    this.rbuf = Vec::new();
                    this.rpos = 0;
                    this.multi = Some(this.ring.recv_multi(this.fd())?);
                }
                None => {
                    let want = out.remaining().clamp(MIN_RECV, MAX_RECV);
                    let mut buf = std::mem::take(&mut this.rbuf);
                    if buf.capacity() > 2 * want {
                        // The caller's room shrank (an idle connection): so does ours.
                        buf = Vec::new();
                    }
                    this.rpos = 0;
                    this.recv = Some(this.ring.recv(this.fd(), buf, want)?);
                }
            }
        }
    }
}

impl AsyncWrite for UringStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Everything written is already queued on the ring (a write waits while a send is in
    /// flight), so there is nothing to push: `Ready` at once, unless the last send failed.
    /// Not waiting for the kernel here saves a turn per message; [`poll_shutdown`] waits,
    /// and a stream dropped with a send in flight lets it finish (for up to 10 s, as the
    /// kernel goes on sending what a closed socket holds).
    ///
    /// [`poll_shutdown`]: AsyncWrite::poll_shutdown
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_broken()?;
        if let Poll::Ready(r) = this.poll_send_done(None) {
            r?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_shut {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(this.poll_send_done(Some(cx)))?;
        this.write_shut = true;
        match this.tcp.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl AsFd for UringStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp.as_fd()
    }
}

impl AsRawFd for UringStream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

impl Drop for UringStream {
    fn drop(&mut self) {
        if let Some(slot) = self.recv.take() {
            self.ring.abandon(slot, false);
        }
        if let Some(slot) = self.room.take() {
            self.ring.abandon(slot, false);
        }
        if let Some(slot) = self.multi.take() {
            self.ring.abandon(slot, false);
        }
        if let Some((slot, _)) = self.send.take() {
            // What was written goes out, as from a closed socket's buffer.
            self.ring.abandon(slot, true);
        }
    }
}
