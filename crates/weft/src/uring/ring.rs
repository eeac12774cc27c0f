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
//! This is the one module of `weft` allowed `unsafe`: pushing an SQE (the kernel will use
//! the buffer it points to) and `set_len` after a receive (the kernel wrote that many bytes).
//! The safety argument is the slot table above.

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::unix::AsyncFd;

/// The user data of SQEs whose completion nobody waits for (cancellations).
const UNTRACKED: u64 = u64::MAX;
/// User data bit of a linger timeout (the rest: the slot and generation it guards).
const LINGER_TAG: u64 = 1 << 63;
/// How long a send whose stream was dropped may go on before it is cancelled (as the kernel
/// goes on sending what a closed socket had buffered).
static LINGER: types::Timespec = types::Timespec::new().sec(10);

/// An operation's user data: its slot, and the slot's generation (a reused slot never takes
/// a completion, a cancellation or a timeout meant for the operation before).
fn user_data(slot: u32, gen: u32) -> u64 {
    (u64::from(gen & 0x7fff_ffff) << 32) | u64::from(slot)
}

/// The ring shared by one thread's streams.
pub(crate) struct Ring {
    inner: Mutex<Inner>,
    fd: RawFd,
}

struct Inner {
    uring: IoUring,
    slots: Vec<Slot>,
    /// Each slot's generation, advanced whenever it is taken.
    gens: Vec<u32>,
    free: Vec<u32>,
    /// Linger timeouts that fired: the operations to cancel.
    expired: Vec<u64>,
    /// SQEs were queued since the last submit.
    queued: bool,
    /// The driver task, woken when the first SQE of a turn is queued.
    driver: Option<Waker>,
    /// Wakers to call once the lock is released (handed to the driver each turn).
    to_wake: Vec<Waker>,
}

enum Slot {
    Free,
    /// In the kernel's hands: `buf` must stay where it is until the completion.
    Busy {
        buf: Vec<u8>,
        waker: Option<Waker>,
        /// Whoever started it is gone: free the slot at the completion.
        orphan: bool,
        /// A receive (the result is how much of the spare capacity the kernel filled).
        recv: bool,
    },
    /// Completed; the result waits for its owner.
    Done {
        buf: Vec<u8>,
        result: i32,
    },
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("fd", &self.fd).finish()
    }
}

impl Ring {
    /// Sets up a ring of `entries` submission entries.
    pub(crate) fn new(entries: u32) -> io::Result<Ring> {
        let uring = IoUring::builder().build(entries)?;
        let fd = uring.as_raw_fd();
        Ok(Ring {
            inner: Mutex::new(Inner {
                uring,
                slots: Vec::new(),
                gens: Vec::new(),
                free: Vec::new(),
                expired: Vec::new(),
                queued: false,
                driver: None,
                to_wake: Vec::new(),
            }),
            fd,
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
        self.start(buf, true, |ud| {
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
        self.start(buf, false, |ud| {
            opcode::Send::new(types::Fd(fd), ptr, len)
                .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                .build()
                .user_data(ud)
        })
    }

    /// Puts `buf` in a free slot and queues the SQE `build` makes for that slot's user data.
    fn start(
        &self,
        buf: Vec<u8>,
        recv: bool,
        build: impl FnOnce(u64) -> squeue::Entry,
    ) -> io::Result<u32> {
        let mut inner = self.lock();
        let slot = match inner.free.pop() {
            Some(s) => s,
            None => {
                let n = u32::try_from(inner.slots.len())
                    .map_err(|_| io::Error::other("too many io_uring operations"))?;
                inner.slots.push(Slot::Free);
                inner.gens.push(0);
                n
            }
        };
        let gen = inner.gens[slot as usize].wrapping_add(1);
        inner.gens[slot as usize] = gen;
        let sqe = build(user_data(slot, gen));
        // The buffer's heap allocation does not move when the Vec moves into the slot.
        inner.slots[slot as usize] = Slot::Busy {
            buf,
            waker: None,
            orphan: false,
            recv,
        };
        if let Err(e) = inner.push(&sqe) {
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

    /// The result of the operation in `slot` and its buffer, once it completed (the slot is
    /// then free); else `cx` is woken at its completion.
    /// Only a caller that returns `Pending` because of it may pass `cx`: the slot keeps one
    /// waker, the last one given (without `cx` nothing is registered).
    pub(crate) fn poll(&self, slot: u32, cx: Option<&mut Context<'_>>) -> Poll<(i32, Vec<u8>)> {
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
            Slot::Free => Poll::Ready((-libc::ECANCELED, Vec::new())),
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
                if inner.uring.submit().is_err() {
                    inner.queued = true;
                    let driver = inner.driver.clone();
                    drop(inner);
                    if let Some(w) = driver {
                        w.wake();
                    }
                }
            }
            Slot::Done { .. } => {
                inner.slots[slot as usize] = Slot::Free;
                inner.free.push(slot);
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
        if inner.queued {
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
        inner.slots.iter().any(|s| matches!(s, Slot::Busy { .. }))
    }
}

impl Inner {
    /// Queues an SQE, submitting the queue first when it is full.
    fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        for _ in 0..2 {
            // SAFETY: every pointer in an SQE made by this module points into a buffer owned
            // by a `Busy` slot (or into nothing, for a cancellation); a `Busy` slot's buffer
            // is neither moved nor freed until its completion is reaped, or the ring drops
            // (which waits for the kernel first, or leaks the buffer).
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
            ..
        } = self;
        for cqe in uring.completion() {
            complete(slots, gens, free, to_wake, expired, &cqe);
        }
        while let Some(ud) = self.expired.pop() {
            let cancel = opcode::AsyncCancel::new(ud).build().user_data(UNTRACKED);
            // SAFETY: a cancellation points at no memory.
            if unsafe { self.uring.submission().push(&cancel) }.is_err() {
                // Full: the send goes on until it ends by itself.
                self.expired.clear();
            }
            self.queued = true;
        }
    }
}

fn complete(
    slots: &mut [Slot],
    gens: &[u32],
    free: &mut Vec<u32>,
    to_wake: &mut Vec<Waker>,
    expired: &mut Vec<u64>,
    cqe: &cqueue::Entry,
) {
    let ud = cqe.user_data();
    if ud == UNTRACKED {
        return;
    }
    let slot = (ud & 0xffff_ffff) as u32;
    let Some(entry) = slots.get_mut(slot as usize) else {
        return;
    };
    if user_data(slot, gens[slot as usize]) != ud & !LINGER_TAG {
        // Meant for an earlier operation in this slot.
        return;
    }
    if ud & LINGER_TAG != 0 {
        if matches!(entry, Slot::Busy { orphan: true, .. }) {
            expired.push(ud & !LINGER_TAG);
        }
        return;
    }
    let Slot::Busy {
        buf,
        waker,
        orphan,
        recv,
    } = entry
    else {
        return;
    };
    let result = cqe.result();
    let recv = *recv;
    if *orphan {
        *entry = Slot::Free;
        free.push(slot);
        return;
    }
    let mut buf = std::mem::take(buf);
    if let Some(w) = waker.take() {
        to_wake.push(w);
    }
    if recv && result > 0 {
        // The kernel wrote `result` bytes at the start of the spare capacity.
        let n = (result as usize).min(buf.capacity());
        // SAFETY: the kernel initialised the first `n` bytes of the spare capacity, which
        // it was given in full and which the slot kept in place.
        unsafe { buf.set_len(n) };
    }
    *entry = Slot::Done { buf, result };
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
            .filter(|(_, s)| matches!(s, Slot::Busy { .. }))
            .map(|(i, _)| i as u32)
            .collect();
        for slot in busy {
            let ud = user_data(slot, inner.gens[slot as usize]);
            let cancel = opcode::AsyncCancel::new(ud).build().user_data(UNTRACKED);
            let _ = inner.push(&cancel);
        }
        for _ in 0..100 {
            if !inner.slots.iter().any(|s| matches!(s, Slot::Busy { .. })) {
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
