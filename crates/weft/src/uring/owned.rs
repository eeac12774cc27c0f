//! A ring that one thread owns, for [`Hub`](super::Hub): it submits operations and reaps
//! their completions itself (no tokio runtime, no lock, no waker), and it owns the memory of
//! every operation in flight until the operation completes, so its users need no `unsafe`.
//!
//! Each operation takes the memory it reads or writes ([`Op`]) and gives it back with its
//! completion. The memory lives in this ring's table of operations (`ops`) meanwhile, at an
//! address that does not move: a `BytesMut`'s or a `Vec`'s heap buffer, a `Box`'s contents
//! (moving the owner moves no byte). The SQE's user data is the operation's key: its index
//! in that table and a sequence number, so that cancelling an operation that completed
//! meanwhile never reaches another that took its entry.
//!
//! # Safety
//!
//! The `unsafe` here is of three kinds, each argued where it is:
//! - pushing SQEs: an entry points only at memory its `ops` entry owns (heap memory that
//!   does not move when its owner does), taken out of `ops` only by `reap` at the entry's
//!   final completion, and leaked (never freed) if the ring is dropped with it in flight;
//! - `set_len` of a receive's buffer: by the length the kernel reports having written into
//!   its spare capacity, checked against that capacity;
//! - `OwnedFd::from_raw_fd` of an accept's result: the descriptor the kernel just made.
//!
//! `SendBuf` holds raw pointers (its `iovec`s and `msghdr`) into memory it owns, set just
//! before each submission.
//!
//! Set up with `IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN` where the kernel has them (6.1):
//! the kernel runs completions' work when this thread waits in `io_uring_enter`, not by
//! interrupting it; else a plain ring.

use bytes::{Bytes, BytesMut};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The memory an operation reads or writes, owned by the ring while it is in flight.
pub(crate) enum Op {
    /// Multishot accept: no memory.
    Accept,
    /// A receive into the spare capacity of a `BytesMut` (the engine's lent room).
    Recv(BytesMut),
    /// A receive into the spare capacity of a `Vec` (a request head being read).
    RecvVec(Vec<u8>),
    /// A send of the pieces of a [`SendBuf`].
    Send(Box<SendBuf>),
    /// A timeout: its time.
    Timeout(Box<types::Timespec>),
    /// A wait until a socket is readable: no memory (an idle connection's).
    Poll,
}

/// What a send writes: one contiguous buffer, or `Bytes` pieces (the hub puts at most
/// `gather::MAX_IOVECS` in one).
#[derive(Default)]
pub(crate) struct SendBuf {
    /// Gathered bytes (one `send`), used when `pieces` is empty.
    pub(crate) flat: Vec<u8>,
    /// Where `flat` starts to be sent (after a partial send).
    pub(crate) flat_at: usize,
    /// Pieces sent with one `sendmsg`, and how much of the first was sent already.
    pub(crate) pieces: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    msg: Option<Box<libc::msghdr>>,
}

// SAFETY: the raw pointers in `iov` and `msg` point only into memory this struct owns
// (`pieces`' buffers, `iov` itself), set up just before a submission; nothing else aliases
// them, so moving the struct to another thread is as safe as moving its owners.
unsafe impl Send for SendBuf {}

impl SendBuf {
    /// Bytes left to send.
    pub(crate) fn len(&self) -> usize {
        if self.pieces.is_empty() {
            self.flat.len() - self.flat_at
        } else {
            self.pieces.iter().map(|p| p.len()).sum()
        }
    }

    /// Drops the first `n` bytes (sent).
    pub(crate) fn advance(&mut self, mut n: usize) {
        if self.pieces.is_empty() {
            self.flat_at = (self.flat_at + n).min(self.flat.len());
            return;
        }
        let mut done = 0;
        for p in &mut self.pieces {
            if n == 0 {
                break;
            }
            let k = n.min(p.len());
            bytes::Buf::advance(p, k);
            n -= k;
            if p.is_empty() {
                done += 1;
            }
        }
        self.pieces.drain(..done);
    }

    /// Empties it for the next send, keeping `flat`'s allocation up to `keep` bytes.
    pub(crate) fn clear(&mut self, keep: usize) {
        self.flat.clear();
        if self.flat.capacity() > keep {
            self.flat = Vec::new();
        }
        self.flat_at = 0;
        self.pieces.clear();
    }

    /// Takes the largest piece (after a send that wrote all of it): its memory can take
    /// the engine's next read (`Connection::recycle`).
    pub(crate) fn take_largest(&mut self) -> Option<Bytes> {
        let i = (0..self.pieces.len()).max_by_key(|&i| self.pieces[i].len())?;
        Some(self.pieces.swap_remove(i))
    }
}

/// A completion: the user's tag, the kernel's result, whether a multishot operation goes
/// on (`more`), and the operation's memory back (`None` while a multishot one goes on). A
/// receive's buffer comes back with the bytes received appended; an accept's new
/// connection comes as `accepted`.
pub(crate) struct Completion {
    pub(crate) tag: u64,
    pub(crate) result: i32,
    pub(crate) more: bool,
    pub(crate) op: Option<Op>,
    pub(crate) accepted: Option<OwnedFd>,
}

/// The ring, its table of operations in flight and the entries not yet submitted.
pub(crate) struct OwnedRing {
    ring: IoUring,
    /// Operations in flight: the user's tag, the operation's sequence number (in its key)
    /// and the memory; `None`: a free entry.
    ops: Vec<Option<(u64, u32, Op)>>,
    free: Vec<usize>,
    /// The next operation's sequence number.
    seq: u32,
    /// Entries made and not yet in the submission queue (it was full).
    backlog: Vec<squeue::Entry>,
}

impl OwnedRing {
    /// A ring of `entries` submission entries (a power of two).
    pub(crate) fn new(entries: u32) -> io::Result<OwnedRing> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(entries * 4)
            .build(entries)
            .or_else(|_| IoUring::builder().setup_cqsize(entries * 4).build(entries))?;
        Ok(OwnedRing {
            ring,
            ops: Vec::new(),
            free: Vec::new(),
            seq: 0,
            backlog: Vec::new(),
        })
    }

    /// Operations in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len() - self.free.len()
    }

    /// Adds an operation to the table; returns its key.
    fn add(&mut self, tag: u64, op: Op) -> u64 {
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        let i = match self.free.pop() {
            Some(i) => {
                self.ops[i] = Some((tag, seq, op));
                i
            }
            None => {
                self.ops.push(Some((tag, seq, op)));
                self.ops.len() - 1
            }
        };
        (u64::from(seq) << 32) | i as u64
    }

    /// The memory of the operation with key `key` (just added).
    fn op_mut(&mut self, key: u64) -> &mut Op {
        match &mut self.ops[index_of(key)] {
            Some((_, _, op)) => op,
            None => unreachable!("an operation just added"),
        }
    }

    /// Starts a multishot accept on `listener` (Linux 5.19); returns its key (for
    /// [`cancel`](Self::cancel)).
    pub(crate) fn accept(&mut self, listener: RawFd, tag: u64) -> u64 {
        let i = self.add(tag, Op::Accept);
        let e = opcode::AcceptMulti::new(types::Fd(listener)).build();
        self.backlog.push(e.user_data(i));
        i
    }

    /// Receives into `room`'s spare capacity (at least one byte of it); returns its key
    /// (for [`cancel`](Self::cancel)).
    pub(crate) fn recv(&mut self, fd: RawFd, room: BytesMut, tag: u64) -> u64 {
        let i = self.add(tag, Op::Recv(room));
        let Op::Recv(room) = self.op_mut(i) else {
            unreachable!()
        };
        let e = recv_entry(fd, room.spare_capacity_mut(), i);
        self.backlog.push(e);
        i
    }

    /// Completes once `fd` is readable (or hung up, or failed): its result is the events.
    pub(crate) fn poll_readable(&mut self, fd: RawFd, tag: u64) {
        let i = self.add(tag, Op::Poll);
        let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).build();
        self.backlog.push(e.user_data(i));
    }

    /// Receives into `buf`'s spare capacity (at least one byte of it).
    pub(crate) fn recv_vec(&mut self, fd: RawFd, buf: Vec<u8>, tag: u64) {
        let i = self.add(tag, Op::RecvVec(buf));
        let Op::RecvVec(buf) = self.op_mut(i) else {
            unreachable!()
        };
        let e = recv_entry(fd, buf.spare_capacity_mut(), i);
        self.backlog.push(e);
    }

    /// Sends what `buf` holds: `flat` from `flat_at` with `send`, or its pieces with
    /// `sendmsg`.
    pub(crate) fn send(&mut self, fd: RawFd, buf: Box<SendBuf>, tag: u64) {
        let i = self.add(tag, Op::Send(buf));
        let Op::Send(buf) = self.op_mut(i) else {
            unreachable!()
        };
        let e = if buf.pieces.len() == 1 {
            let one = &buf.pieces[0];
            let len = u32::try_from(one.len()).unwrap_or(u32::MAX);
            opcode::Send::new(types::Fd(fd), one.as_ptr(), len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else if buf.pieces.is_empty() {
            let rest = &buf.flat[buf.flat_at..];
            let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
            opcode::Send::new(types::Fd(fd), rest.as_ptr(), len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            let SendBuf {
                pieces, iov, msg, ..
            } = &mut **buf;
            iov.clear();
            iov.extend(pieces.iter().map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            }));
            // SAFETY: `msghdr` is plain data; all zeroes is its empty value.
            let m = msg.get_or_insert_with(|| Box::new(unsafe { std::mem::zeroed() }));
            m.msg_iov = iov.as_mut_ptr();
            m.msg_iovlen = iov.len() as _;
            opcode::SendMsg::new(types::Fd(fd), &**m)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
        };
        self.backlog.push(e.user_data(i));
    }

    /// Asks the kernel to cancel the operation whose key `accept`, `recv` or `timeout`
    /// returned (nothing if it completed meanwhile: a key comes back only after 2^32 more
    /// operations).
    pub(crate) fn cancel(&mut self, key: u64) {
        let e = opcode::AsyncCancel::new(key).build().user_data(CANCEL);
        self.backlog.push(e);
    }

    /// Completes (with `-ETIME`) after `after`; returns its key (for
    /// [`cancel`](Self::cancel)).
    pub(crate) fn timeout(&mut self, after: Duration, tag: u64) -> u64 {
        let i = self.add(tag, Op::Timeout(Box::new(types::Timespec::from(after))));
        let Op::Timeout(ts) = self.op_mut(i) else {
            unreachable!()
        };
        let e = opcode::Timeout::new(&**ts).build().user_data(i);
        self.backlog.push(e);
        i
    }

    /// Submits what was queued, waits for at least one completion (unless `wait` is false),
    /// and appends every completion to `out`.
    pub(crate) fn turn(&mut self, wait: bool, out: &mut Vec<Completion>) -> io::Result<()> {
        let (submitter, mut sq, mut cq) = self.ring.split();
        let mut queued = 0;
        // Bounded: each pass moves at least one entry, or submits a full queue.
        while queued < self.backlog.len() {
            sq.sync();
            let room = sq.capacity() - sq.len();
            if room == 0 {
                match submitter.submit() {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => break,
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            let n = room.min(self.backlog.len() - queued);
            // SAFETY: every entry points only at memory that the table `ops` owns until
            // the entry's completion (a `BytesMut`'s or `Vec`'s heap buffer, a `Box`'s
            // contents: moving the owner moves none of it), or at nothing (accept); an
            // entry leaves `ops` only in `reap`, at its final completion.
            unsafe {
                sq.push_multiple(&self.backlog[queued..queued + n])
                    .map_err(|_| io::Error::other("submission queue full"))?;
            }
            queued += n;
        }
        self.backlog.drain(..queued);
        sq.sync();
        let want = usize::from(wait && cq.is_empty());
        match submitter.submit_and_wait(want) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::ETIME)
                ) => {}
            Err(e) => return Err(e),
        }
        cq.sync();
        for cqe in &mut cq {
            reap(&mut self.ops, &mut self.free, &cqe, out);
        }
        Ok(())
    }
}

/// The user data of cancellations (their completions are not reported).
const CANCEL: u64 = u64::MAX;

/// The table index in an operation's key.
fn index_of(key: u64) -> usize {
    (key & u64::from(u32::MAX)) as usize
}

/// A receive into `spare` (memory an `ops` entry owns), tagged with that entry's key.
fn recv_entry(fd: RawFd, spare: &mut [std::mem::MaybeUninit<u8>], i: u64) -> squeue::Entry {
    let len = u32::try_from(spare.len()).unwrap_or(u32::MAX);
    opcode::Recv::new(types::Fd(fd), spare.as_mut_ptr().cast::<u8>(), len)
        .build()
        .user_data(i)
}

/// Hands one completion's result and memory to `out`; frees its entry unless a multishot
/// operation goes on.
fn reap(
    ops: &mut [Option<(u64, u32, Op)>],
    free: &mut Vec<usize>,
    cqe: &cqueue::Entry,
    out: &mut Vec<Completion>,
) {
    let key = cqe.user_data();
    let i = index_of(key);
    let (result, more) = (cqe.result(), cqueue::more(cqe.flags()));
    let Some(entry) = ops.get_mut(i).filter(|_| key != CANCEL) else {
        return;
    };
    let Some((tag, kind)) = entry
        .as_ref()
        .filter(|(_, seq, _)| u64::from(*seq) == key >> 32)
        .map(|(tag, _, op)| (*tag, op))
    else {
        return;
    };
    let accepted = match kind {
        // SAFETY: a successful accept's result is the descriptor it just created: open, and
        // owned by nothing else.
        Op::Accept if result >= 0 => Some(unsafe { OwnedFd::from_raw_fd(result) }),
        _ => None,
    };
    let op = if more {
        None
    } else {
        free.push(i);
        let mut op = entry.take().map(|(_, _, op)| op);
        let n = usize::try_from(result).unwrap_or(0);
        match &mut op {
            Some(Op::Recv(room)) if n <= room.capacity() - room.len() => {
                // SAFETY: the kernel wrote `n` bytes at the start of the spare capacity
                // (the memory the receive was given), within it (checked).
                unsafe { room.set_len(room.len() + n) }
            }
            Some(Op::RecvVec(buf)) if n <= buf.capacity() - buf.len() => {
                // SAFETY: as above.
                unsafe { buf.set_len(buf.len() + n) }
            }
            _ => {}
        }
        op
    };
    out.push(Completion {
        tag,
        result,
        more,
        op,
        accepted,
    });
}

impl AsRawFd for OwnedRing {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

impl Drop for OwnedRing {
    fn drop(&mut self) {
        // The kernel may still write into memory of operations in flight (a receive on a
        // socket that is still open): that memory must outlive them. Closing the ring
        // cancels them, but only once the ring's file is released, which is after this
        // function; so the memory is leaked rather than freed under the kernel.
        for op in self.ops.drain(..).flatten() {
            std::mem::forget(op);
        }
    }
}
