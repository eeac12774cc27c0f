//! One io_uring ring shared by the connections of one thread, and the task that drives it.
//!
//! Every operation is a slot in a table: the slot owns the operation's buffer from the moment
//! its SQE is queued until its completion is reaped, so the kernel never writes into memory
//! that moved or was freed — also when the stream that started it was dropped (the slot is
//! then orphaned: cancelled, and freed at its completion). SQEs are queued, not submitted:
//! the driver task ([`drive`]) submits everything the tasks of one turn queued in one
//! `io_uring_enter`, reaps every completion in the ring's memory without entering the
//! kernel, and sleeps in the runtime's own `epoll_wait` on the ring's descriptor (readable
//! while completions wait). So a busy thread enters the kernel once per turn for all of its
//! connections, not once per read and once per write of each.
//!
//! Receives are multishot where the kernel has them (6.0+): one `RECV` with
//! `IORING_RECV_MULTISHOT` per stream stays armed and picks a buffer from the ring's
//! [`Pool`] (a provided-buffer ring: [`POOL_BUFFERS`] × [`POOL_BUFFER_SIZE`], registered
//! once per ring) each time data arrives; the buffers a completion names are queued in the
//! stream's slot until its reader copies them out, and go back to the pool at once. An idle
//! connection then holds no receive buffer at all. A slot's queue is bounded
//! ([`STREAM_QUEUE_BYTES`]): past it the multishot is cancelled and the socket's own buffer
//! pushes back; a multishot that ended (the bound, `ENOBUFS`) is armed again at the next
//! read, after its queue (where the kernel is out of buffers: a single-shot receive into
//! the stream's own buffer for that read). Where buffer rings or multishot receives are
//! missing, every receive is a single-shot one into the stream's own buffer.
//!
//! This is the one module of `weft` allowed `unsafe`: pushing an SQE (the kernel will use
//! the buffer it points to), `set_len` after a receive (the kernel wrote that many bytes),
//! the provided-buffer pool (memory shared with the kernel), and a `sendmsg`'s parts
//! ([`SendParts`]: a zeroed `msghdr`, and `Send` for the pointers into its own buffers). The safety argument is the
//! slot table above and the [`Pool`]'s own.

use bytes::{Bytes, BytesMut};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::unix::AsyncFd;
use tokio::io::ReadBuf;

/// The user data of SQEs whose completion nobody waits for (cancellations).
const UNTRACKED: u64 = u64::MAX;
/// User data bit of a linger timeout (the rest: the slot and generation it guards).
const LINGER_TAG: u64 = 1 << 63;
/// The user data of the idle sweep's timeout (see `Inner::sweep_idle`).
const SWEEP: u64 = u64::MAX - 1;
/// How long a send whose stream was dropped may go on before it is cancelled (as the kernel
/// goes on sending what a closed socket had buffered).
static LINGER: types::Timespec = types::Timespec::new().sec(10);

/// How many provided buffers a ring's pool has (a power of two), and their size: 2 MiB per
/// ring (per thread), in the kernel's hands while nobody reads, whatever the number of
/// connections. Measured (CHANGELOG): 4 KiB buffers cost a 64 KiB echo ~30% more server
/// CPU than single-shot receives (a completion and a wake-up per 4 KiB), 16 KiB ones ~0-5%
/// more, 32-64 KiB ones about the same or less; 64 leaves room for a burst of connections
/// receiving in one turn. `WEFT_URING_POOL=COUNTxSIZE` (e.g. `128x16384`) sets others, for
/// measurements.
pub(crate) const POOL_BUFFERS: u16 = 64;
/// The size of one provided buffer.
pub(crate) const POOL_BUFFER_SIZE: usize = 32 * 1024;
/// The most bytes of buffers one stream's slot queues for its reader (at least two
/// buffers, at most an eighth of the pool): past it, the stream's multishot receive is
/// cancelled (re-armed at the next read once the queue is read), so a reader that stops
/// holds at most this much of the pool (plus what was in flight).
pub(crate) const STREAM_QUEUE_BYTES: usize = 256 * 1024;
/// The buffer group of the pool.
const BGID: u16 = 0;
/// On a ring with a pool, a receive into an engine's read room that has waited between one
/// and two of these is cancelled: its connection counts as idle (the room goes back to the
/// engine, which frees it, and its next receives take the pool's buffers until data comes
/// again; see `UringStream::poll_read_engine`). The ring sweeps its rooms once per period
/// with a timeout of its own, only while receives into rooms are in flight.
pub(crate) const IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// An operation's user data: its slot, and the slot's generation (a reused slot never takes
/// a completion, a cancellation or a timeout meant for the operation before).
fn user_data(slot: u32, gen: u32) -> u64 {
    (u64::from(gen & 0x7fff_ffff) << 32) | u64::from(slot)
}

/// The ring shared by one thread's streams.
pub(crate) struct Ring {
    inner: Mutex<Inner>,
    fd: RawFd,
    /// How many sent payloads went back to their engine (`Connection::recycle`), for tests.
    recycled: std::sync::atomic::AtomicU64,
}

struct Inner {
    // Declared first: dropped (the ring closed) before the pool's memory is freed.
    uring: IoUring,
    /// The provided-buffer pool, where multishot receives work.
    pool: Option<Pool>,
    /// Multishot receives are used (cleared if the kernel refuses one).
    multishot: bool,
    /// How many multishot receives ended because the pool was empty (for tests).
    enobufs: u64,
    /// How many receives into a lent read room and `sendmsg`s of shared pieces were
    /// started (for tests).
    rooms: u64,
    sendmsgs: u64,
    /// How many receives into a room were cancelled as idle (for tests).
    idles: u64,
    /// The idle sweep's period (`None`: no sweep; without a pool there is none). The
    /// kernel reads it when the sweep's timeout is submitted; it stays here.
    sweep_every: Option<types::Timespec>,
    /// The sweep's timeout is in the kernel.
    sweeping: bool,
    /// Sweeps so far: each receive into a room notes it at its start.
    epoch: u32,
    slots: Vec<Slot>,
    /// Each slot's generation, advanced whenever it is taken.
    gens: Vec<u32>,
    free: Vec<u32>,
    /// Linger timeouts that fired: the operations to cancel.
    expired: Vec<u64>,
    /// SQEs were queued since the last submit.
    queued: bool,
    /// Set up with `COOP_TASKRUN | TASKRUN_FLAG`: completions may wait for this thread to
    /// enter the kernel, which the submission queue's `IORING_SQ_TASKRUN` flag says.
    coop: bool,
    /// The driver task, woken when the first SQE of a turn is queued.
    driver: Option<Waker>,
    /// Wakers to call once the lock is released (handed to the driver each turn).
    to_wake: Vec<Waker>,
}

enum Slot {
    Free,
    /// In the kernel's hands: `buf` must stay where it is until the completion.
    Busy {
        buf: OpBuf,
        waker: Option<Waker>,
        /// Whoever started it is gone: free the slot at the completion.
        orphan: bool,
        /// A receive (the result is how much of the spare capacity the kernel filled).
        recv: bool,
        /// The ring's `epoch` when it started (for the idle sweep of rooms).
        since: u32,
    },
    /// Completed; the result waits for its owner.
    Done {
        buf: OpBuf,
        result: i32,
    },
    /// A multishot receive: its buffers are the pool's. Armed until `end` is set (its last
    /// completion, without `IORING_CQE_F_MORE`, was reaped).
    Multi {
        waker: Option<Waker>,
        /// Received, not yet read: pool buffers and their lengths, in order.
        queue: VecDeque<(u16, u32)>,
        /// How much of the first queued buffer was read.
        read: u32,
        end: Option<End>,
        /// Whoever started it is gone: free the slot at the last completion.
        orphan: bool,
        /// A cancellation was sent (the queue reached its bound).
        cancelled: bool,
        /// Some data arrived (a refusal before any means: unsupported here).
        got: bool,
    },
}

/// The memory an operation's SQE points into, owned by its slot until the completion.
#[derive(Debug)]
pub(crate) enum OpBuf {
    /// A send from `Vec[from..]`, or a receive into its spare capacity.
    Vec(Vec<u8>),
    /// A receive into a lent read room's spare capacity (the engine's own buffer: the
    /// bytes arrive where the engine hands them out from).
    Room(BytesMut),
    /// A `sendmsg` of several pieces.
    Parts(Box<SendParts>),
}

impl OpBuf {
    /// The `Vec` of a plain send or receive (empty for the others).
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            OpBuf::Vec(v) => v,
            _ => Vec::new(),
        }
    }

    /// The room of a receive into one (empty for the others).
    pub(crate) fn into_room(self) -> BytesMut {
        match self {
            OpBuf::Room(r) => r,
            _ => BytesMut::new(),
        }
    }
}

/// The pieces of one `sendmsg`, in order: bytes copied into a buffer of its own (frame
/// headers, small frames) and payloads held as `Bytes` (no copy); the iovecs and the
/// message header point into them, and the whole is boxed so none of it moves while the
/// kernel reads it.
#[derive(Default)]
pub(crate) struct SendParts {
    copied: Vec<u8>,
    shared: Vec<Bytes>,
    /// In order: (`true`: `shared[i]`, `false`: `copied[i..i + len]`), length.
    plan: Vec<(bool, usize, usize)>,
    len: usize,
    iov: Vec<libc::iovec>,
    // (A `msghdr` is all pointers and lengths into the fields above; zeroed until `seal`.)
    msg: Option<libc::msghdr>,
}

impl std::fmt::Debug for SendParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendParts")
            .field("pieces", &self.plan.len())
            .field("len", &self.len)
            .finish()
    }
}

// SAFETY: the raw pointers in `iov` and `msg` point only into `copied` and `shared`, which
// this struct owns (and a heap allocation of each that moves with it); nothing else holds
// them, and the kernel reads through them only while the slot owning this box keeps it.
unsafe impl Send for SendParts {}

impl SendParts {
    /// The most pieces one `sendmsg` takes.
    pub(crate) const MAX_PIECES: usize = 64;

    /// Appends bytes to copy.
    pub(crate) fn copy(&mut self, b: &[u8]) {
        match self.plan.last_mut() {
            // Joins the copied piece just before it: one iovec for both.
            Some((false, at, len)) if *at + *len == self.copied.len() => *len += b.len(),
            _ => self.plan.push((false, self.copied.len(), b.len())),
        }
        self.copied.extend_from_slice(b);
        self.len += b.len();
    }

    /// Appends a payload held as it is.
    pub(crate) fn share(&mut self, b: Bytes) {
        self.len += b.len();
        self.plan.push((true, self.shared.len(), b.len()));
        self.shared.push(b);
    }

    /// How many pieces (iovecs) so far.
    pub(crate) fn pieces(&self) -> usize {
        self.plan.len()
    }

    /// How many bytes in all.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes the largest payload held, after the send (the others are dropped with
    /// [`cleared`](Self::cleared)): its memory can take the engine's next read.
    pub(crate) fn take_largest_shared(&mut self) -> Option<Bytes> {
        let i = (0..self.shared.len()).max_by_key(|&i| self.shared[i].len())?;
        self.plan.clear();
        Some(self.shared.swap_remove(i))
    }

    /// Empties it for the next send, keeping its allocations unless the copy grew past
    /// `keep` bytes (then `None`: an idle connection holds little).
    pub(crate) fn cleared(mut self: Box<Self>, keep: usize) -> Option<Box<Self>> {
        if self.copied.capacity() > keep {
            return None;
        }
        self.copied.clear();
        self.shared.clear();
        self.plan.clear();
        self.iov.clear();
        self.msg = None;
        self.len = 0;
        Some(self)
    }

    /// The bytes from `from` on, copied into one buffer (to send the rest of a short send).
    pub(crate) fn rest(&self, from: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len.saturating_sub(from));
        let mut at = 0;
        for piece in self.slices() {
            let skip = from.saturating_sub(at).min(piece.len());
            out.extend_from_slice(&piece[skip..]);
            at += piece.len();
        }
        out
    }

    /// The pieces' bytes, in order.
    fn slices(&self) -> impl Iterator<Item = &[u8]> {
        self.plan.iter().map(|&(shared, i, len)| {
            if shared {
                &self.shared[i][..]
            } else {
                &self.copied[i..i + len]
            }
        })
    }

    /// Builds the iovecs and the message header (nothing may be appended after this).
    fn seal(&mut self) -> *const libc::msghdr {
        // (The vector's allocation is kept from send to send.)
        let mut iov = std::mem::take(&mut self.iov);
        iov.clear();
        iov.extend(self.slices().map(|piece| libc::iovec {
            iov_base: piece.as_ptr() as *mut libc::c_void,
            iov_len: piece.len(),
        }));
        self.iov = iov;
        // SAFETY: all-zero is a valid `msghdr` (no name, no control data, no flags).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = self.iov.as_mut_ptr();
        msg.msg_iovlen = self.iov.len() as _;
        self.msg.insert(msg) as *const libc::msghdr
    }
}

/// How a multishot receive ended (reported once its queue is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Not by the peer (the pool ran out, the queue's bound, the kernel's own reasons): the
    /// reader arms a new receive.
    ReArm,
    /// The peer's end of the stream.
    Eof,
    /// A failure (a negated errno).
    Error(i32),
}

/// What [`Ring::read_multi`] found.
pub(crate) enum MultiRead {
    /// Bytes were copied into the caller's buffer.
    Data,
    /// The receive ended and everything it brought was read; the slot is free.
    Ended(End),
}

fn in_kernel(slot: &Slot) -> bool {
    matches!(slot, Slot::Busy { .. } | Slot::Multi { end: None, .. })
}

/// One entry of a provided-buffer ring, as the kernel lays it out (`struct io_uring_buf`;
/// the `resv` field of the first entry is the ring's tail).
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () =
    assert!(std::mem::size_of::<BufEntry>() == std::mem::size_of::<types::BufRingEntry>());

/// A page, the alignment the kernel wants for a buffer ring.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The ring's provided buffers: a buffer ring registered with the kernel (entries telling
/// it which buffers it may fill) and the buffers themselves.
///
/// Safety argument: both allocations are made here, never moved or resized, and freed only
/// when the pool drops, which happens (a) after the buffer group was unregistered, once no
/// multishot receive was left in the kernel (`Ring::drop`), or (b) never: `Ring::drop`
/// leaks the pool when receives are still in the kernel, and a pool whose registration
/// failed was never seen by the kernel. The kernel writes a buffer only between the moment
/// its entry is published (the tail stored with `Release` past it) and the completion that
/// names it; this module reads a buffer only after that completion and publishes it again
/// only after the reader's copy, so the kernel and this module never use a buffer at once.
/// Entries are written only at the tail (which the kernel does not read past), through raw
/// pointers (never a reference to memory the kernel reads).
pub(crate) struct Pool {
    entries: *mut [Page],
    bufs: *mut [u8],
    /// The next entry to write (the kernel's view of it: the stored tail).
    tail: u16,
    /// Buffers named by completions and not yet given back.
    out: usize,
    /// How many buffers, a power of two, and their size.
    count: u16,
    size: usize,
    /// The most buffers a stream's queue holds before its receive is cancelled.
    queue_bound: usize,
}

// SAFETY: the pool's pointers are to memory it owns (see above); it lives inside the ring's
// mutex, which serialises every use of it.
unsafe impl Send for Pool {}

impl Pool {
    /// Allocates the pool and registers it with `uring` as buffer group [`BGID`], with
    /// every buffer in it. `None` where the kernel refuses (older than 5.19).
    fn new(uring: &IoUring, count: u16, size: usize) -> io::Result<Pool> {
        // SAFETY: sysconf has no preconditions.
        if unsafe { libc::sysconf(libc::_SC_PAGESIZE) } != 4096 {
            return Err(io::Error::other("page size other than 4 KiB"));
        }
        if !count.is_power_of_two() || count > 1 << 15 || !(1024..=1 << 20).contains(&size) {
            return Err(io::Error::other(
                "pool: 1 to 32768 buffers (a power of two) of 1 KiB to 1 MiB",
            ));
        }
        let pages = (usize::from(count) * std::mem::size_of::<BufEntry>()).div_ceil(4096);
        let entries: Box<[Page]> = (0..pages).map(|_| Page([0; 4096])).collect();
        let bufs = vec![0u8; usize::from(count) * size].into_boxed_slice();
        let mut pool = Pool {
            entries: Box::into_raw(entries),
            bufs: Box::into_raw(bufs),
            tail: 0,
            out: 0,
            count,
            size,
            queue_bound: (STREAM_QUEUE_BYTES / size)
                .min(usize::from(count) / 8)
                .max(2),
        };
        let addr = pool.entries.cast::<Page>() as u64;
        // SAFETY: `addr` is page-aligned memory for `count` entries, owned by the
        // pool and valid until it drops (see the pool's safety argument); it is zeroed, so
        // the kernel sees an empty ring (tail 0).
        let registered = unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(addr, count, BGID, 0)
        };
        registered?;
        pool.out = usize::from(count);
        for bid in 0..count {
            pool.give_back(bid);
        }
        Ok(pool)
    }

    fn first_entry(&self) -> *mut BufEntry {
        self.entries.cast::<BufEntry>()
    }

    /// Publishes buffer `bid` to the kernel again (its bytes were read).
    fn give_back(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let at = usize::from(self.tail & (self.count - 1));
        let base = self.first_entry();
        let addr = self.bufs.cast::<u8>() as u64 + (usize::from(bid) * self.size) as u64;
        // SAFETY: `at` < count, so the entry is inside the ring's allocation; the
        // kernel reads only the entries before the tail, and this one is at the tail. The
        // fields are written through raw pointers, leaving the first entry's `resv` (the
        // tail, which the kernel reads) alone.
        unsafe {
            let e = base.add(at);
            std::ptr::addr_of_mut!((*e).addr).write(addr);
            std::ptr::addr_of_mut!((*e).len).write(self.size as u32);
            std::ptr::addr_of_mut!((*e).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the first entry's `resv` field, a `u16` inside the ring's
        // allocation, aligned for it; the kernel reads it with acquire ordering, and this is
        // the only writer. The `Release` store publishes the entry written above.
        unsafe {
            let tail = std::ptr::addr_of_mut!((*base).resv);
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
        self.out = self.out.saturating_sub(1);
    }

    /// The first `len` bytes of buffer `bid`, which a completion handed over.
    fn bytes(&self, bid: u16, len: u32) -> &[u8] {
        if bid >= self.count {
            return &[];
        }
        let len = (len as usize).min(self.size);
        let start = usize::from(bid) * self.size;
        // SAFETY: the range is inside the buffers' allocation; a completion named this
        // buffer, so the kernel wrote these `len` bytes and will not touch the buffer again
        // until `give_back` publishes it, which needs `&mut self` (not while this borrow
        // lives).
        unsafe { std::slice::from_raw_parts(self.bufs.cast::<u8>().add(start), len) }
    }

    /// How many buffers are in the kernel's hands (not queued for a reader).
    fn free(&self) -> usize {
        usize::from(self.count).saturating_sub(self.out)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: both were made by `Box::into_raw` in `new` and are freed once, here; see
        // the pool's safety argument for why the kernel no longer uses them.
        unsafe {
            drop(Box::from_raw(self.entries));
            drop(Box::from_raw(self.bufs));
        }
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("fd", &self.fd).finish()
    }
}

impl Ring {
    /// Sets up a ring of `entries` submission entries.
    /// With `multishot`, receives are multishot ones on a provided-buffer pool where the
    /// kernel has them. With `coop`, the kernel runs completions' task work when this
    /// thread next enters it rather than interrupting it (`IORING_SETUP_COOP_TASKRUN`, with
    /// `TASKRUN_FLAG` so a turn knows to enter); only for a ring that one thread submits to
    /// (a current-thread runtime), and only where the kernel has it (5.19+).
    pub(crate) fn new(entries: u32, multishot: bool, coop: bool) -> io::Result<Ring> {
        let cooperative = if coop {
            IoUring::builder()
                .setup_coop_taskrun()
                .setup_taskrun_flag()
                .build(entries)
                .ok()
        } else {
            None
        };
        let coop = cooperative.is_some();
        let uring = match cooperative {
            Some(u) => u,
            None => IoUring::builder().build(entries)?,
        };
        let fd = uring.as_raw_fd();
        tracing::debug!("io_uring ring {fd}: cooperative task running: {coop}");
        let pool = if multishot {
            let (count, size) = std::env::var("WEFT_URING_POOL")
                .ok()
                .and_then(|v| {
                    let (c, s) = v.split_once('x')?;
                    Some((c.parse().ok()?, s.parse().ok()?))
                })
                .unwrap_or((POOL_BUFFERS, POOL_BUFFER_SIZE));
            match Pool::new(&uring, count, size) {
                Ok(p) => {
                    tracing::debug!(
                        "io_uring ring {fd}: multishot receives on {count} provided buffers \
                         of {size} bytes"
                    );
                    Some(p)
                }
                Err(e) => {
                    tracing::debug!(
                        "io_uring ring {fd}: no provided buffers ({e}): single-shot receives"
                    );
                    None
                }
            }
        } else {
            tracing::debug!("io_uring ring {fd}: single-shot receives (asked for)");
            None
        };
        let sweep_every = pool.as_ref().map(|_| types::Timespec::from(IDLE_AFTER));
        Ok(Ring {
            inner: Mutex::new(Inner {
                idles: 0,
                sweep_every,
                sweeping: false,
                epoch: 0,
                uring,
                multishot: pool.is_some(),
                pool,
                enobufs: 0,
                rooms: 0,
                sendmsgs: 0,
                slots: Vec::new(),
                gens: Vec::new(),
                free: Vec::new(),
                expired: Vec::new(),
                queued: false,
                coop,
                driver: None,
                to_wake: Vec::new(),
            }),
            fd,
            recycled: Default::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held cannot leave the table half-updated in a way that
        // matters more than losing the ring: go on with what is there.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a receive of at most `len` bytes into `buf`'s spare capacity (`buf` is
    /// cleared first). The result is the slot to [`poll`](Self::poll).
    pub(crate) fn recv(&self, fd: RawFd, mut buf: Vec<u8>, len: usize) -> io::Result<u32> {
        buf.clear();
        buf.reserve(len);
        let len = buf.capacity().min(u32::MAX as usize) as u32;
        let ptr = buf.as_mut_ptr();
        self.start(OpBuf::Vec(buf), true, |ud| {
            opcode::Recv::new(types::Fd(fd), ptr, len)
                .build()
                .user_data(ud)
        })
    }

    /// Queues a send of `buf[from..]`, without SIGPIPE, retried by the kernel until all of
    /// it is sent (`MSG_WAITALL`) or the socket fails.
    pub(crate) fn send(&self, fd: RawFd, buf: Vec<u8>, from: usize) -> io::Result<u32> {
        let rest = buf.get(from..).unwrap_or_default();
        let (ptr, len) = (rest.as_ptr(), rest.len().min(u32::MAX as usize) as u32);
        self.start(OpBuf::Vec(buf), false, |ud| {
            opcode::Send::new(types::Fd(fd), ptr, len)
                .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                .build()
                .user_data(ud)
        })
    }

    /// Queues a receive into `room`'s spare capacity (a read room the engine lent): the
    /// bytes arrive where the engine hands them out from, with no copy.
    pub(crate) fn recv_room(&self, fd: RawFd, mut room: BytesMut) -> io::Result<u32> {
        let spare = room.spare_capacity_mut();
        let (ptr, len) = (spare.as_mut_ptr().cast::<u8>(), spare.len());
        let len = len.min(i32::MAX as usize) as u32;
        self.start(OpBuf::Room(room), true, |ud| {
            opcode::Recv::new(types::Fd(fd), ptr, len)
                .build()
                .user_data(ud)
        })
    }

    /// Queues a `sendmsg` of `parts` (see [`send`](Self::send): no SIGPIPE, all of it).
    pub(crate) fn send_parts(&self, fd: RawFd, mut parts: Box<SendParts>) -> io::Result<u32> {
        let msg = parts.seal();
        self.start(OpBuf::Parts(parts), false, |ud| {
            opcode::SendMsg::new(types::Fd(fd), msg)
                .flags((libc::MSG_NOSIGNAL | libc::MSG_WAITALL) as u32)
                .build()
                .user_data(ud)
        })
    }

    /// Ends the multishot receive in `slot` (its last completion comes after the
    /// cancellation; what it queued is still read): for a reader that goes on with
    /// receives into its own memory.
    pub(crate) fn stop_multi(&self, slot: u32) {
        let mut inner = self.lock();
        let ud = user_data(slot, inner.gens[slot as usize]);
        if let Some(Slot::Multi {
            cancelled: false,
            end: None,
            ..
        }) = inner.slots.get(slot as usize)
        {
            let cancel = opcode::AsyncCancel::new(ud).build().user_data(UNTRACKED);
            if inner.push(&cancel).is_ok() {
                // (Only once queued: the queue's bound still cancels it otherwise.)
                if let Some(Slot::Multi { cancelled, .. }) = inner.slots.get_mut(slot as usize) {
                    *cancelled = true;
                }
                inner.queued = true;
                let driver = inner.driver.clone();
                drop(inner);
                if let Some(w) = driver {
                    w.wake();
                }
            }
        }
    }

    /// The size of the pool's buffers, if the ring has a pool (multishot receives).
    pub(crate) fn pool_buffer_size(&self) -> Option<usize> {
        let inner = self.lock();
        inner
            .pool
            .as_ref()
            .filter(|_| inner.multishot)
            .map(|p| p.size)
    }

    /// Whether a multishot receive would get buffers now: the ring has them, and the pool
    /// is not empty (else a single-shot receive into the stream's own buffer does better
    /// than one that would end at once with `ENOBUFS`).
    pub(crate) fn multishot_ready(&self) -> bool {
        let inner = self.lock();
        inner.multishot && inner.pool.as_ref().is_some_and(|p| p.free() > 0)
    }

    /// Arms a multishot receive on `fd` (see [`multishot_ready`](Self::multishot_ready));
    /// its data is read with [`read_multi`](Self::read_multi).
    pub(crate) fn recv_multi(&self, fd: RawFd) -> io::Result<u32> {
        let mut inner = self.lock();
        let slot = inner.take_slot()?;
        let ud = user_data(slot, inner.gens[slot as usize]);
        inner.slots[slot as usize] = Slot::Multi {
            waker: None,
            queue: VecDeque::new(),
            read: 0,
            end: None,
            orphan: false,
            cancelled: false,
            got: false,
        };
        // Points at no memory of ours: the kernel picks buffers from the registered group.
        let sqe = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .build()
            .user_data(ud);
        self.queue_sqe(inner, slot, &sqe)
    }

    /// Copies what the multishot receive in `slot` brought into `out`, giving each buffer
    /// back to the pool once read. `Pending` (and `cx` woken at the next completion) while
    /// nothing is queued and the receive goes on.
    pub(crate) fn read_multi(
        &self,
        slot: u32,
        out: &mut ReadBuf<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<MultiRead> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(Slot::Multi {
            waker,
            queue,
            read,
            end,
            got,
            ..
        }) = inner.slots.get_mut(slot as usize)
        else {
            return Poll::Ready(MultiRead::Ended(End::ReArm));
        };
        let before = out.filled().len();
        if !queue.is_empty() {
            while let Some(&(bid, len)) = queue.front() {
                if out.remaining() == 0 {
                    break;
                }
                let Some(pool) = inner.pool.as_mut() else {
                    break;
                };
                let bytes = pool.bytes(bid, len);
                let from = (*read as usize).min(bytes.len());
                let n = out.remaining().min(bytes.len() - from);
                out.put_slice(&bytes[from..from + n]);
                if from + n == bytes.len() {
                    queue.pop_front();
                    *read = 0;
                    pool.give_back(bid);
                } else {
                    *read = (from + n) as u32;
                }
            }
            // (Never zero bytes: that would read as the end of the stream.)
            if out.filled().len() > before {
                return Poll::Ready(MultiRead::Data);
            }
        }
        let Some(mut e) = *end else {
            match waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        };
        if e == End::Error(-libc::EINVAL) && !*got {
            // Refused before any data: no multishot receives here (a 5.19 kernel has
            // buffer rings but not these). The stream goes on with single-shot ones.
            tracing::debug!("io_uring: multishot receive refused (EINVAL): single-shot receives");
            inner.multishot = false;
            e = End::ReArm;
        }
        inner.slots[slot as usize] = Slot::Free;
        inner.free.push(slot);
        Poll::Ready(MultiRead::Ended(e))
    }

    /// Whether the ring runs task work cooperatively: for tests.
    pub(crate) fn cooperative(&self) -> bool {
        self.lock().coop
    }

    /// See [`Uring::ring_buffer_counts`](super::Uring::ring_buffer_counts).
    pub(crate) fn ring_buffer_counts(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.rooms, inner.sendmsgs)
    }

    /// A sent payload went back to its engine.
    pub(crate) fn note_recycled(&self) {
        self.recycled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many sent payloads went back to their engine so far (for tests).
    pub(crate) fn recycled_count(&self) -> u64 {
        self.recycled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many receives into a room were cancelled as idle so far (for tests).
    pub(crate) fn idle_count(&self) -> u64 {
        self.lock().idles
    }

    /// Sets the idle sweep's period (`None`: no sweep; no effect without a pool): a
    /// receive into a room is cancelled after one to two periods. For tests.
    pub(crate) fn set_idle_after(&self, every: Option<std::time::Duration>) {
        let mut inner = self.lock();
        if inner.pool.is_some() {
            inner.sweep_every = every.map(types::Timespec::from);
        }
    }

    /// See [`Uring::pool_state`](super::Uring::pool_state).
    pub(crate) fn pool_state(&self) -> Option<(usize, usize, u64)> {
        let inner = self.lock();
        inner
            .pool
            .as_ref()
            .map(|p| (p.free(), usize::from(p.count), inner.enobufs))
    }

    /// Puts `buf` in a free slot and queues the SQE `build` makes for that slot's user data.
    fn start(
        &self,
        buf: OpBuf,
        recv: bool,
        build: impl FnOnce(u64) -> squeue::Entry,
    ) -> io::Result<u32> {
        let mut inner = self.lock();
        match &buf {
            OpBuf::Room(_) => inner.rooms += 1,
            OpBuf::Parts(_) => inner.sendmsgs += 1,
            OpBuf::Vec(_) => {}
        }
        if matches!(buf, OpBuf::Room(_)) && !inner.sweeping {
            if let Some(every) = &inner.sweep_every {
                let sqe = opcode::Timeout::new(every).build().user_data(SWEEP);
                // (If it cannot be queued, rooms wait for data as long as it takes; the
                // next room tries again.)
                inner.sweeping = inner.push(&sqe).is_ok();
            }
        }
        let slot = inner.take_slot()?;
        let gen = inner.gens[slot as usize];
        let sqe = build(user_data(slot, gen));
        // The buffer's heap allocation does not move when the Vec moves into the slot.
        inner.slots[slot as usize] = Slot::Busy {
            buf,
            waker: None,
            orphan: false,
            recv,
            since: inner.epoch,
        };
        self.queue_sqe(inner, slot, &sqe)
    }

    /// Queues `sqe` for the operation just put in `slot` (freed again if it cannot be
    /// queued), waking the driver at the first SQE of a turn.
    fn queue_sqe(
        &self,
        mut inner: MutexGuard<'_, Inner>,
        slot: u32,
        sqe: &squeue::Entry,
    ) -> io::Result<u32> {
        if let Err(e) = inner.push(sqe) {
            // Never queued: the kernel has not seen the buffer.
            inner.slots[slot as usize] = Slot::Free;
            inner.free.push(slot);
            return Err(e);
        }
        let driver = if inner.queued {
            None
        } else {
            inner.queued = true;
            inner.driver.clone()
        };
        drop(inner);
        if let Some(w) = driver {
            w.wake();
        }
        Ok(slot)
    }
}

impl Inner {
    /// A free slot, its generation advanced.
    fn take_slot(&mut self) -> io::Result<u32> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let n = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|&n| n < 0x7fff_ffff)
                    .ok_or_else(|| io::Error::other("too many io_uring operations"))?;
                self.slots.push(Slot::Free);
                self.gens.push(0);
                n
            }
        };
        let gen = self.gens[slot as usize].wrapping_add(1);
        self.gens[slot as usize] = gen;
        Ok(slot)
    }
}

impl Ring {
    /// The result of the operation in `slot` and its buffer, once it completed (the slot is
    /// then free); else `cx` is woken at its completion.
    /// Only a caller that returns `Pending` because of it may pass `cx`: the slot keeps one
    /// waker, the last one given (without `cx` nothing is registered).
    pub(crate) fn poll(&self, slot: u32, cx: Option<&mut Context<'_>>) -> Poll<(i32, OpBuf)> {
        let mut inner = self.lock();
        let entry = &mut inner.slots[slot as usize];
        match entry {
            Slot::Busy { waker, .. } => {
                match (waker, cx) {
                    (Some(w), Some(cx)) if w.will_wake(cx.waker()) => {}
                    (waker, Some(cx)) => *waker = Some(cx.waker().clone()),
                    (_, None) => {}
                }
                Poll::Pending
            }
            Slot::Done { .. } => {
                let Slot::Done { buf, result } = std::mem::replace(entry, Slot::Free) else {
                    return Poll::Pending;
                };
                inner.free.push(slot);
                Poll::Ready((result, buf))
            }
            Slot::Free | Slot::Multi { .. } => {
                Poll::Ready((-libc::ECANCELED, OpBuf::Vec(Vec::new())))
            }
        }
    }

    /// The owner of `slot` is gone. A receive is cancelled; a send (`linger`) may finish
    /// for [`LINGER`], then it is cancelled. The slot is freed at the completion.
    pub(crate) fn abandon(&self, slot: u32, linger: bool) {
        let mut inner = self.lock();
        let ud = user_data(slot, inner.gens[slot as usize]);
        match &mut inner.slots[slot as usize] {
            Slot::Busy { orphan, waker, .. } => {
                *orphan = true;
                *waker = None;
                let sqe = if linger {
                    opcode::Timeout::new(&LINGER)
                        .build()
                        .user_data(LINGER_TAG | ud)
                } else {
                    opcode::AsyncCancel::new(ud).build().user_data(UNTRACKED)
                };
                // A full queue was already submitted by `push`; if even that failed the
                // operation completes on its own (a receive at the peer's next byte or its
                // end, a send when the peer reads or goes), and the slot is freed then.
                let _ = inner.push(&sqe);
                // Submitted now, with everything queued before it, while the descriptor is
                // still open: queued SQEs name descriptors by number, and the owner closes
                // this one next (its number may be reused at once).
                submit_now(inner);
            }
            Slot::Done { .. } | Slot::Multi { end: Some(_), .. } => {
                inner.release(slot);
            }
            Slot::Multi {
                orphan,
                waker,
                queue,
                ..
            } => {
                *orphan = true;
                *waker = None;
                let queued = std::mem::take(queue);
                if let Some(pool) = inner.pool.as_mut() {
                    for (bid, _) in queued {
                        pool.give_back(bid);
                    }
                }
                let cancel = opcode::AsyncCancel::new(ud).build().user_data(UNTRACKED);
                // If it cannot be queued, the receive ends at the peer's next byte (no
                // buffer is kept: the completion gives it back) or at the socket's close.
                let _ = inner.push(&cancel);
                // Submitted now, before the owner closes the descriptor (as above).
                submit_now(inner);
            }
            Slot::Free => {}
        }
    }

    /// One turn of the driver: submits what is queued and reaps every completion, waking
    /// their owners. Registers `cx` to be woken when the next SQE is queued. `to_wake` is
    /// the driver's own (empty) vector, swapped with the ring's to wake outside the lock.
    fn turn(&self, cx: &mut Context<'_>, to_wake: &mut Vec<Waker>) -> io::Result<()> {
        let mut inner = self.lock();
        match &inner.driver {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inner.driver = Some(cx.waker().clone()),
        }
        // With cooperative task running, completions the kernel holds as task work are
        // posted only when this thread enters it: an empty submit does that.
        let pending_work = inner.coop && inner.uring.submission().taskrun();
        if inner.queued || pending_work {
            inner.queued = false;
            match inner.uring.submit() {
                Ok(_) => {}
                // The completion queue is full: reap below, submit at the next turn.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => inner.queued = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => inner.queued = true,
                Err(e) => return Err(e),
            }
        }
        inner.reap();
        // The wakers leave with the caller's empty vector left in their place: both
        // allocations are kept, and the lock is taken once per turn.
        std::mem::swap(&mut inner.to_wake, to_wake);
        let again = inner.queued;
        drop(inner);
        for w in to_wake.drain(..) {
            w.wake();
        }
        if again {
            cx.waker().wake_by_ref();
        }
        Ok(())
    }

    /// Whether operations are still in the kernel.
    fn busy(&self) -> bool {
        let inner = self.lock();
        inner.slots.iter().any(in_kernel)
    }
}

impl Inner {
    /// Frees `slot`, giving back the pool buffers it still queued.
    fn release(&mut self, slot: u32) {
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if let Slot::Multi { queue, .. } = entry {
            if let Some(pool) = self.pool.as_mut() {
                for (bid, _) in queue.drain(..) {
                    pool.give_back(bid);
                }
            }
        }
        *entry = Slot::Free;
        self.free.push(slot);
    }

    /// The idle sweep (its timeout fired): cancels the receives into rooms that started
    /// before the previous sweep, and sweeps again a period later while any room receive
    /// is left (one whose cancellation could not be queued is cancelled at the next).
    fn sweep_idle(&mut self) {
        self.sweeping = false;
        self.epoch = self.epoch.wrapping_add(1);
        let mut left = false;
        for slot in 0..self.slots.len() {
            let Slot::Busy {
                buf: OpBuf::Room(_),
                orphan: false,
                since,
                ..
            } = &self.slots[slot]
            else {
                continue;
            };
            left = true;
            if self.epoch.wrapping_sub(*since) < 2 {
                continue;
            }
            let ud = user_data(slot as u32, self.gens[slot]);
            let cancel = opcode::AsyncCancel::new(ud).build().user_data(UNTRACKED);
            // SAFETY: a cancellation points at no memory. (Ten thousand quiet connections
            // make more cancellations than the queue holds: it is submitted when full.)
            for _ in 0..2 {
                if unsafe { self.uring.submission().push(&cancel) }.is_ok()
                    || self.uring.submit().is_err()
                {
                    break;
                }
            }
            self.queued = true;
        }
        if left {
            if let Some(every) = &self.sweep_every {
                let sqe = opcode::Timeout::new(every).build().user_data(SWEEP);
                // SAFETY: a timeout points only at its duration, which the ring holds.
                self.sweeping = unsafe { self.uring.submission().push(&sqe) }.is_ok()
                    || (self.uring.submit().is_ok()
                        && unsafe { self.uring.submission().push(&sqe) }.is_ok());
                self.queued |= self.sweeping;
            }
        }
    }

    /// Queues an SQE, submitting the queue first when it is full.
    fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        for _ in 0..2 {
            // SAFETY: every pointer in an SQE made by this module points into a buffer owned
            // by a `Busy` slot (or into nothing, for a cancellation, a timeout's static
            // duration, or a multishot receive, which takes the pool's buffers: see `Pool`);
            // a `Busy` slot's buffer is neither moved nor freed until its completion is
            // reaped, or the ring drops (which waits for the kernel first, or leaks the
            // buffer).
            if unsafe { self.uring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            match self.uring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => self.reap(),
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("the io_uring submission queue stays full"))
    }

    /// Moves every completion to its slot; the owners' wakers go to `to_wake`. A linger
    /// timeout that fired cancels its send if that is still running.
    fn reap(&mut self) {
        let Inner {
            uring,
            slots,
            gens,
            free,
            to_wake,
            expired,
            pool,
            enobufs,
            idles,
            ..
        } = self;
        let mut table = Table {
            slots,
            gens,
            free,
            to_wake,
            expired,
            pool,
            enobufs,
            idles,
        };
        let mut swept = false;
        for cqe in uring.completion() {
            if cqe.user_data() == SWEEP {
                swept = true;
                continue;
            }
            table.complete(&cqe);
        }
        if swept {
            self.sweep_idle();
        }
        while let Some(ud) = self.expired.pop() {
            let cancel = opcode::AsyncCancel::new(ud).build().user_data(UNTRACKED);
            // SAFETY: a cancellation points at no memory.
            if unsafe { self.uring.submission().push(&cancel) }.is_err() {
                // Full: the operation goes on (a send until it ends by itself, a multishot
                // receive past its queue's bound until the pool runs out).
                self.expired.clear();
            }
            self.queued = true;
        }
    }
}

/// What reaping a completion touches (the ring's fields but the ring itself).
struct Table<'a> {
    slots: &'a mut [Slot],
    gens: &'a [u32],
    free: &'a mut Vec<u32>,
    to_wake: &'a mut Vec<Waker>,
    expired: &'a mut Vec<u64>,
    pool: &'a mut Option<Pool>,
    enobufs: &'a mut u64,
    idles: &'a mut u64,
}

impl Table<'_> {
    fn complete(&mut self, cqe: &cqueue::Entry) {
        let ud = cqe.user_data();
        let flags = cqe.flags();
        // A pool buffer this completion hands over: queued for a reader below, or given
        // back at once (whatever else happens, it never stays out of the pool unnoticed).
        let mut bid = cqueue::buffer_select(flags);
        if bid.is_some() {
            if let Some(pool) = self.pool.as_mut() {
                pool.out += 1;
            }
        }
        self.complete_op(ud, cqe.result(), flags, &mut bid);
        if let (Some(b), Some(pool)) = (bid, self.pool.as_mut()) {
            pool.give_back(b);
        }
    }

    /// Takes the completion to its slot; takes `bid` if the slot keeps that buffer.
    fn complete_op(&mut self, ud: u64, result: i32, flags: u32, bid: &mut Option<u16>) {
        let bound = self.pool.as_ref().map_or(2, |p| p.queue_bound);
        if ud == UNTRACKED {
            return;
        }
        let slot = (ud & 0xffff_ffff) as u32;
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if user_data(slot, self.gens[slot as usize]) != ud & !LINGER_TAG {
            // Meant for an earlier operation in this slot.
            return;
        }
        if ud & LINGER_TAG != 0 {
            if matches!(entry, Slot::Busy { orphan: true, .. }) {
                self.expired.push(ud & !LINGER_TAG);
            }
            return;
        }
        match entry {
            Slot::Busy {
                buf,
                waker,
                orphan,
                recv,
                ..
            } => {
                let recv = *recv;
                if *orphan {
                    *entry = Slot::Free;
                    self.free.push(slot);
                    return;
                }
                let mut buf = std::mem::replace(buf, OpBuf::Vec(Vec::new()));
                if result == -libc::ECANCELED && matches!(buf, OpBuf::Room(_)) {
                    // (The idle sweep: nothing else cancels a live stream's room.)
                    *self.idles += 1;
                }
                if let Some(w) = waker.take() {
                    self.to_wake.push(w);
                }
                if recv && result > 0 {
                    // The kernel wrote `result` bytes at the start of the spare capacity.
                    match &mut buf {
                        OpBuf::Vec(v) => {
                            let n = (result as usize).min(v.capacity());
                            // SAFETY: the kernel initialised the first `n` bytes of the
                            // spare capacity (which was cleared first: it starts at 0), which
                            // it was given in full and which the slot kept in place.
                            unsafe { v.set_len(n) };
                        }
                        OpBuf::Room(r) => {
                            let n = (result as usize).min(r.capacity() - r.len());
                            // SAFETY: as above: the kernel initialised the first `n` bytes
                            // of the room's spare capacity, kept in place by the slot.
                            unsafe { r.set_len(r.len() + n) };
                        }
                        OpBuf::Parts(_) => {}
                    }
                }
                *entry = Slot::Done { buf, result };
            }
            Slot::Multi {
                waker,
                queue,
                end: end @ None,
                orphan,
                cancelled,
                got,
                ..
            } => {
                let more = cqueue::more(flags);
                if *orphan {
                    if !more {
                        *entry = Slot::Free;
                        self.free.push(slot);
                    }
                    return;
                }
                if result > 0 {
                    if let Some(b) = bid.take() {
                        queue.push_back((b, result as u32));
                        *got = true;
                    }
                }
                if !more {
                    *end = Some(match result {
                        0 => End::Eof,
                        r if r > 0 => End::ReArm,
                        r if r == -libc::ENOBUFS => {
                            *self.enobufs += 1;
                            End::ReArm
                        }
                        r if r == -libc::ECANCELED || r == -libc::EINTR => End::ReArm,
                        r => End::Error(r),
                    });
                } else if queue.len() >= bound && !*cancelled {
                    // The reader is behind: stop taking the pool's buffers; the socket's
                    // own buffer (and then TCP) pushes back until the reader catches up.
                    *cancelled = true;
                    self.expired.push(ud);
                }
                if let Some(w) = waker.take() {
                    self.to_wake.push(w);
                }
            }
            Slot::Multi { .. } | Slot::Done { .. } | Slot::Free => {}
        }
    }
}

/// Submits what is queued at once (a cancellation, before the owner closes the descriptor
/// it names); where that fails, leaves it for the driver's next turn and wakes the driver.
fn submit_now(mut inner: MutexGuard<'_, Inner>) {
    if inner.uring.submit().is_err() {
        inner.queued = true;
        let driver = inner.driver.clone();
        drop(inner);
        if let Some(w) = driver {
            w.wake();
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Buffers still in the kernel must outlive its use of them: cancel everything, wait a
        // little for the completions, and leak whatever is still busy after that.
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        let busy: Vec<u32> = inner
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| in_kernel(s))
            .map(|(i, _)| i as u32)
            .collect();
        for slot in busy {
            let ud = user_data(slot, inner.gens[slot as usize]);
            let cancel = opcode::AsyncCancel::new(ud).build().user_data(UNTRACKED);
            let _ = inner.push(&cancel);
        }
        for _ in 0..100 {
            if !inner.slots.iter().any(in_kernel) {
                // Nothing can pick a pool buffer any more: the pool may go.
                if inner.pool.is_some() {
                    let _ = inner.uring.submitter().unregister_buf_ring(BGID);
                }
                return;
            }
            let _ = inner.uring.submit_and_wait(1);
            inner.reap();
        }
        for s in inner.slots.drain(..) {
            if let Slot::Busy { buf, .. } = s {
                std::mem::forget(buf);
            }
        }
        // A multishot receive may still pick a buffer: the pool's memory is never freed.
        std::mem::forget(inner.pool.take());
    }
}

/// The ring's descriptor, for the runtime's `epoll`.
struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// The task that drives `ring` on the current tokio runtime: submits, reaps and wakes until
/// the ring is the last thing holding it and nothing is in flight. Must be spawned on the
/// runtime of the thread whose streams use the ring (any runtime works; a current-thread
/// one keeps every wake-up on that thread).
pub(crate) fn drive(ring: Arc<Ring>) -> io::Result<Driver> {
    // SAFETY: the descriptor stays open while the `AsyncFd` lives: the `Driver` holds the
    // ring (whose drop closes it) and drops the `AsyncFd` first.
    let afd =
        unsafe { AsyncFd::register_with_interest(RingFd(ring.fd), tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
    Ok(Driver {
        afd: Some(afd),
        ring,
        to_wake: Vec::new(),
    })
}

/// The future [`drive`] returns.
pub(crate) struct Driver {
    // Dropped before `ring`: deregistered from epoll while the descriptor is still open.
    afd: Option<AsyncFd<RingFd>>,
    ring: Arc<Ring>,
    /// Wakers of one turn's completions, woken outside the lock (empty between turns; kept
    /// to reuse the allocation).
    to_wake: Vec<Waker>,
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            if let Err(e) = this.ring.turn(cx, &mut this.to_wake) {
                tracing::warn!("io_uring driver stopped: {e}");
                return Poll::Ready(());
            }
            if Arc::strong_count(&this.ring) == 1 && !this.ring.busy() {
                return Poll::Ready(());
            }
            let Some(afd) = &this.afd else {
                return Poll::Ready(());
            };
            match afd.poll_read_ready(cx) {
                Poll::Ready(Ok(mut guard)) => guard.clear_ready(),
                Poll::Ready(Err(e)) => {
                    tracing::warn!("io_uring driver stopped: {e}");
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.afd.take();
    }
}
