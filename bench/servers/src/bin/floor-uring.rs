//! The io_uring floor: the least an echo can cost over io_uring. One thread, one ring
//! (`IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN` where the kernel has them), the framing of
//! `floor.rs` (`servers/src/floor.rs`) (parse the header, unmask in place, send back; no validation, no
//! allocation per echo), as floor-epoll.
//!
//! - accept: one multishot accept (`IORING_ACCEPT_MULTISHOT`, Linux 5.19), re-armed when the
//!   kernel ends it; a kernel that refuses it gets one plain accept at a time;
//! - per connection exactly one operation in flight: a `recv` into its fixed buffer, or the
//!   echo of what that recv brought (`send` for one range, `sendmsg` for several), then the
//!   next `recv`. Plain recv SQEs into each connection's buffer, not provided buffers: with
//!   one buffer per connection and the output sent from it in place, a provided buffer
//!   would only add handing it back (and a copy whenever a header is cut by the end of a
//!   read);
//! - every SQE the completions of one turn produced goes to the kernel in the same
//!   `io_uring_enter` that waits for the next: one kernel entry submits a batch and reaps
//!   many completions.
//!
//! `--recv multishot` (an experiment beside the default `--recv single` above): per connection
//! one multishot recv (`IORING_RECV_MULTISHOT`, Linux 6.0) armed for its whole life, taking
//! buffers from a provided-buffer ring (`IORING_REGISTER_PBUF_RING`, 5.19; `--bufs N`
//! buffers of `--buf-size BYTES`, default 1024 x 16 KiB). What a completion brings is queued
//! on its connection; while no send is in flight the queue is copied into the connection's
//! own buffer (as many buffers as fit, so a frame split across two provided buffers is whole
//! there) and each buffer goes back to the ring once copied; the framing and the sends are
//! the single mode's. A recv that ends without `IORING_CQE_F_MORE` is re-armed at once, one
//! that ended for `ENOBUFS` once at most half the buffers are out. A connection ends with
//! `shutdown` (which completes its recv) and its slot is freed once nothing is in flight.
//! `--fixed-files` (with `--recv multishot`): each connection's descriptor also goes into the
//! ring's file table (`register_files_update` at accept and when the slot is freed) and its
//! SQEs name the slot (`IOSQE_FIXED_FILE`: no file lookup and reference per operation).
//!
//! Where `io_uring_setup` fails (old kernels, seccomp), it says so in one line and exits 3;
//! `floor-uring --probe` only checks that (exit 0 or 3), for bench/run.
//!
//! Flags: `--addr HOST:PORT`, `--recv single|multishot`, `--bufs N`, `--buf-size BYTES`,
//! `--fixed-files` (and the other servers' `--heap-file`, `--verbose`).

use io_uring::{cqueue, opcode, squeue, types, IoUring};
// Included, not in servers' lib.rs: that file is compiled into bench/zlib-peers too, which
// has neither weft-proto nor socket2.
#[path = "../engine.rs"]
mod engine;
#[path = "../floor.rs"]
mod floor;

use floor::{Conn, Echo, MAX_SEGS};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};

const ACCEPT: u64 = u64::MAX;
const RECV: u64 = 0;
const SEND: u64 = 1;
const RING_ENTRIES: u32 = 1024;
/// Multishot mode's user data: `(index << 2) | kind`, kind one of these.
const MS_RECV: u64 = 0;
const MS_SEND: u64 = 1;
/// The provided-buffer ring's group id.
const BGID: u16 = 0;
/// `--fixed-files`: the file table's slots (connection `i` uses slot `i` if `i` is below).
const FIXED_SLOTS: u32 = 4096;

/// Builds an SQE on the client's registered file if it has one, else on its descriptor.
macro_rules! on_fd {
    ($c:expr, |$fd:ident| $build:expr) => {
        match $c.fixed {
            Some(k) => {
                let $fd = types::Fixed(k);
                $build
            }
            None => {
                let $fd = types::Fd($c.fd.as_raw_fd());
                $build
            }
        }
    };
}

struct Client<C> {
    fd: OwnedFd,
    conn: C,
    /// The in-flight `sendmsg`'s vector and header: they must stay put until its completion,
    /// so every client lives in a `Box`.
    iov: [libc::iovec; MAX_SEGS + 1],
    msg: libc::msghdr,
    /// Bytes the in-flight send was asked to write.
    sending: usize,
    /// Multishot mode only: received, not yet copied into `conn` (buffer id, offset, length).
    queue: VecDeque<(u16, u32, u32)>,
    /// Multishot mode only: its multishot recv is armed / its send is in flight.
    recv_armed: bool,
    send_inflight: bool,
    /// Multishot mode only: the peer closed (or the socket failed): end once the queue is
    /// echoed.
    eof: bool,
    /// Multishot mode only: ended; the slot is freed once nothing is in flight.
    dead: bool,
    /// `--fixed-files`: its slot in the ring's file table.
    fixed: Option<u32>,
}

/// The provided-buffer ring (multishot mode): `n` entries (a power of two) and `n` buffers of
/// `size` bytes, both in anonymous mappings that live as long as the process (never
/// unmapped: the ring is registered until the process ends).
struct Bufs {
    ring: *mut types::BufRingEntry,
    mem: *mut u8,
    n: u16,
    size: usize,
    /// Our tail (published by [`Bufs::publish`]).
    tail: u16,
    /// Buffers the kernel handed us that have not gone back.
    held: usize,
}

fn map_anon(len: usize) -> std::io::Result<*mut u8> {
    // SAFETY: a fresh private anonymous mapping: no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl Bufs {
    fn new(submitter: &io_uring::Submitter, n: usize, size: usize) -> std::io::Result<Bufs> {
        if !n.is_power_of_two() || n > 32768 || size == 0 || size > u32::MAX as usize {
            return Err(std::io::Error::other(
                "--bufs: a power of two up to 32768; --buf-size: 1 to 4 GiB",
            ));
        }
        let ring = map_anon(n * std::mem::size_of::<types::BufRingEntry>())?;
        let mem = map_anon(n * size)?;
        // SAFETY: `ring` is a page-aligned mapping of `n` entries that is never unmapped, so
        // it stays valid for as long as the kernel may read it.
        unsafe { submitter.register_buf_ring_with_flags(ring as u64, n as u16, BGID, 0)? };
        let mut b = Bufs {
            ring: ring.cast(),
            mem,
            n: n as u16,
            size,
            tail: 0,
            held: n,
        };
        for bid in 0..n {
            b.give_back(bid as u16);
        }
        b.publish();
        Ok(b)
    }

    /// `len` bytes at `off` of buffer `bid`.
    fn data(&self, bid: u16, off: u32, len: u32) -> &[u8] {
        assert!(usize::from(bid) < usize::from(self.n) && (off + len) as usize <= self.size);
        // SAFETY: in bounds (checked above) of the buffer mapping; buffer `bid` is ours, not
        // the kernel's: a completion handed it to us and it has not gone back, so nothing
        // writes it while this borrow (of `self`, which `give_back` needs mutably) lives.
        unsafe {
            std::slice::from_raw_parts(
                self.mem.add(usize::from(bid) * self.size + off as usize),
                len as usize,
            )
        }
    }

    /// Hands buffer `bid` back to the kernel (seen by it after [`publish`](Self::publish)).
    fn give_back(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.n - 1));
        // SAFETY: `idx < n`, inside the ring mapping. The entry at our tail is not the
        // kernel's: it reads only entries between its head and the published tail, and at
        // most `n` buffers are ever in the ring (each buffer id goes back once per time it was
        // handed out). The setters leave `resv` (entry 0's is the shared tail) alone.
        let e = unsafe { &mut *self.ring.add(idx) };
        e.set_addr(self.mem as u64 + u64::from(bid) * self.size as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.held -= 1;
    }

    /// Publishes the tail: the kernel may use every buffer given back so far.
    fn publish(&self) {
        // SAFETY: `ring` is the base of the registered ring (page-aligned, entries
        // initialised), so `tail` is its shared `u16` tail, 2-aligned; the kernel only reads
        // it, and an `AtomicU16` has the layout of a `u16`. Release: the entries written
        // before are visible to the kernel once it sees the new tail.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

fn ring() -> std::io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES)
        .or_else(|_| IoUring::new(RING_ENTRIES))
}

/// Multishot mode's ring: a larger completion queue (a recv may complete many times per turn).
fn ring_multishot() -> std::io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(RING_ENTRIES * 8)
        .build(RING_ENTRIES)
        .or_else(|_| {
            IoUring::builder()
                .setup_cqsize(RING_ENTRIES * 8)
                .build(RING_ENTRIES)
        })
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--probe") {
        match ring() {
            Ok(_) => std::process::exit(0),
            Err(e) => {
                println!("io_uring_setup failed: {e}");
                std::process::exit(3);
            }
        }
    }
    let args = servers::prepare("floor-uring");
    let ring = match if args.recv_multishot {
        ring_multishot()
    } else {
        ring()
    } {
        Ok(r) => r,
        Err(e) => {
            eprintln!("floor-uring: io_uring unavailable (io_uring_setup: {e}); not serving");
            std::process::exit(3);
        }
    };
    if let Some(path) = args.heap_file.clone() {
        if let Err(e) = servers::spawn_heap_reporter(path) {
            eprintln!("floor-uring: heap reporter: {e}");
        }
    }
    let run = if args.engine {
        eprintln!("floor-uring: weft's engine in place of the floor's framing (--engine)");
        run::<engine::EngineConn>
    } else {
        run::<Conn>
    };
    if let Err(e) = run(ring, &args) {
        eprintln!("floor-uring: {e}");
        std::process::exit(1);
    }
}

struct Server<C> {
    clients: Vec<Option<Box<Client<C>>>>,
    free: Vec<usize>,
    multishot: bool,
    verbose: bool,
    /// Multishot recv mode: its buffer ring.
    bufs: Option<Bufs>,
    /// Multishot recv mode: connections whose recv ended for `ENOBUFS`, to re-arm.
    starved: Vec<usize>,
    /// `--fixed-files`: the file table's size (0: none).
    fixed_slots: u32,
}

fn run<C: Echo>(mut ring: IoUring, args: &servers::Args) -> std::io::Result<()> {
    let listener = floor::listen(args.addr)?;
    eprintln!("floor-uring listening on {}", listener.local_addr()?);
    let lfd = types::Fd(listener.as_raw_fd());
    let bufs = if args.recv_multishot {
        let b = Bufs::new(
            &ring.submitter(),
            args.bufs.unwrap_or(1024),
            args.buf_size.unwrap_or(16 * 1024),
        )?;
        eprintln!(
            "floor-uring: multishot recv, {} provided buffers of {} bytes",
            b.n, b.size
        );
        Some(b)
    } else {
        None
    };
    let mut srv = Server::<C> {
        clients: Vec::new(),
        free: Vec::new(),
        multishot: true,
        verbose: args.verbose,
        bufs,
        starved: Vec::new(),
        fixed_slots: 0,
    };
    if args.fixed_files && srv.bufs.is_some() {
        ring.submitter().register_files_sparse(FIXED_SLOTS)?;
        srv.fixed_slots = FIXED_SLOTS;
        eprintln!("floor-uring: registered files ({FIXED_SLOTS} slots)");
    }
    let (submitter, mut sq, mut cq) = ring.split();
    let mut out: Vec<squeue::Entry> = Vec::with_capacity(RING_ENTRIES as usize);
    out.push(accept_entry(lfd, true));
    loop {
        // Queue what the last turn produced; a full queue is submitted on the way (bounded:
        // each pass moves at least one entry).
        let mut queued = 0;
        while queued < out.len() {
            sq.sync();
            let room = sq.capacity() - sq.len();
            if room == 0 {
                submitter.submit()?;
                continue;
            }
            let n = room.min(out.len() - queued);
            // SAFETY: every entry points only at memory that outlives its operation: a
            // client's buffer, `pending`, `iov` and `msg` live in its `Box`, which is dropped
            // only when that client's one operation has completed (a client never has two in
            // flight); accept entries point at nothing. Multishot mode: a client's recv points
            // at no memory of its own (the buffer ring lives as long as the process), its one
            // send at its `Box`, which is dropped only when neither is in flight.
            unsafe {
                sq.push_multiple(&out[queued..queued + n])
                    .map_err(|_| std::io::Error::other("submission queue full"))?;
            }
            queued += n;
        }
        out.clear();
        sq.sync();
        match submitter.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        cq.sync();
        // Bounded by the completion queue's size.
        for cqe in &mut cq {
            srv.complete(cqe, lfd, &submitter, &mut out);
        }
        if srv.bufs.is_some() {
            srv.after_turn(&mut out);
        }
    }
}

fn accept_entry(lfd: types::Fd, multishot: bool) -> squeue::Entry {
    if multishot {
        opcode::AcceptMulti::new(lfd).build().user_data(ACCEPT)
    } else {
        opcode::Accept::new(lfd, std::ptr::null_mut(), std::ptr::null_mut())
            .build()
            .user_data(ACCEPT)
    }
}

impl<C: Echo> Server<C> {
    fn complete(
        &mut self,
        cqe: cqueue::Entry,
        lfd: types::Fd,
        sub: &io_uring::Submitter,
        out: &mut Vec<squeue::Entry>,
    ) {
        let res = cqe.result();
        let data = cqe.user_data();
        if data == ACCEPT {
            if res >= 0 {
                self.accepted(res, sub, out);
            } else if res == -libc::EINVAL && self.multishot {
                self.multishot = false;
                eprintln!("floor-uring: no multishot accept here; plain accepts");
            } else if self.verbose {
                eprintln!(
                    "floor-uring: accept: {}",
                    std::io::Error::from_raw_os_error(-res)
                );
            }
            if !self.multishot || !cqueue::more(cqe.flags()) {
                out.push(accept_entry(lfd, self.multishot));
            }
            return;
        }
        if self.bufs.is_some() {
            self.complete_ms(cqe, sub, out);
            return;
        }
        let i = (data >> 1) as usize;
        let Some(Some(c)) = self.clients.get_mut(i) else {
            return;
        };
        let keep = match data & 1 {
            RECV => match res {
                0 => false,
                n if n > 0 => match c.conn.on_read(n as usize) {
                    Ok(()) => next(c, i, out),
                    Err(floor::Bad(why)) => {
                        if self.verbose {
                            eprintln!("floor-uring: connection dropped: {why}");
                        }
                        false
                    }
                },
                e if e == -libc::EINTR || e == -libc::EAGAIN => {
                    out.push(recv_entry(c, i));
                    true
                }
                _ => false,
            },
            _ /* SEND */ => match res {
                n if n > 0 => {
                    let n = n as usize;
                    c.conn.advance(n);
                    if n < c.sending {
                        // Short send: the rest goes to `pending` (the slow path), then on.
                        c.conn.spill();
                    }
                    next(c, i, out)
                }
                e if e == -libc::EINTR || e == -libc::EAGAIN => next(c, i, out),
                _ => false,
            },
        };
        if !keep {
            // Its one operation has completed: nothing in flight points into it.
            self.clients[i] = None;
            self.free.push(i);
        }
    }

    fn accepted(&mut self, fd: i32, sub: &io_uring::Submitter, out: &mut Vec<squeue::Entry>) {
        // SAFETY: `fd` is the descriptor this accept's completion just created: open, and
        // owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if socket2::SockRef::from(&fd).set_tcp_nodelay(true).is_err() {
            return;
        }
        let i = self.free.pop().unwrap_or_else(|| {
            self.clients.push(None);
            self.clients.len() - 1
        });
        let mut c = Box::new(Client {
            fd,
            conn: C::default(),
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_SEGS + 1],
            // SAFETY: msghdr is plain data; all zeroes is its empty value.
            msg: unsafe { std::mem::zeroed() },
            sending: 0,
            queue: VecDeque::new(),
            recv_armed: false,
            send_inflight: false,
            eof: false,
            dead: false,
            fixed: None,
        });
        if (i as u64) < u64::from(self.fixed_slots)
            && sub
                .register_files_update(i as u32, &[c.fd.as_raw_fd()])
                .is_ok()
        {
            c.fixed = Some(i as u32);
        }
        if self.bufs.is_some() {
            out.push(recv_ms_entry(&c, i));
            c.recv_armed = true;
        } else {
            out.push(recv_entry(&mut c, i));
        }
        self.clients[i] = Some(c);
    }
}

/// After a completion: send the output if any, else end a closing connection, else receive.
/// False: end it.
fn next<C: Echo>(c: &mut Client<C>, i: usize, out: &mut Vec<squeue::Entry>) -> bool {
    if c.conn.has_output() {
        out.push(send_entry(c, ((i as u64) << 1) | SEND));
        true
    } else if c.conn.closing() {
        false
    } else {
        out.push(recv_entry(c, i));
        true
    }
}

fn recv_entry<C: Echo>(c: &mut Client<C>, i: usize) -> squeue::Entry {
    let fd = types::Fd(c.fd.as_raw_fd());
    let (at, len) = c.conn.read_room();
    opcode::Recv::new(fd, at, len as u32)
        .build()
        .user_data(((i as u64) << 1) | RECV)
}

fn send_entry<C: Echo>(c: &mut Client<C>, user_data: u64) -> squeue::Entry {
    let mut sl = [IoSlice::new(&[]); MAX_SEGS + 1];
    let k = c.conn.output(&mut sl);
    c.sending = sl[..k].iter().map(|s| s.len()).sum();
    let entry = if k == 1 {
        on_fd!(c, |fd| opcode::Send::new(
            fd,
            sl[0].as_ptr(),
            sl[0].len() as u32
        )
        .flags(libc::MSG_NOSIGNAL)
        .build())
    } else {
        for (v, s) in c.iov.iter_mut().zip(&sl[..k]) {
            *v = libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            };
        }
        c.msg.msg_iov = c.iov.as_mut_ptr();
        c.msg.msg_iovlen = k as _;
        on_fd!(c, |fd| opcode::SendMsg::new(fd, &c.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build())
    };
    entry.user_data(user_data)
}

fn recv_ms_entry<C>(c: &Client<C>, i: usize) -> squeue::Entry {
    on_fd!(c, |fd| opcode::RecvMulti::new(fd, BGID).build()).user_data(((i as u64) << 2) | MS_RECV)
}

/// Multishot mode.
impl<C: Echo> Server<C> {
    fn complete_ms(
        &mut self,
        cqe: cqueue::Entry,
        sub: &io_uring::Submitter,
        out: &mut Vec<squeue::Entry>,
    ) {
        let Some(bufs) = self.bufs.as_mut() else {
            return;
        };
        let (res, data, flags) = (cqe.result(), cqe.user_data(), cqe.flags());
        let i = (data >> 2) as usize;
        let bid = cqueue::buffer_select(flags);
        if bid.is_some() {
            bufs.held += 1;
        }
        let Some(Some(c)) = self.clients.get_mut(i) else {
            if let Some(b) = bid {
                bufs.give_back(b);
            }
            return;
        };
        if data & 3 == MS_RECV {
            let more = cqueue::more(flags);
            if !more {
                c.recv_armed = false;
            }
            let live = !c.dead && !c.eof;
            match (res, bid) {
                (n, Some(b)) if n > 0 && live => c.queue.push_back((b, 0, n as u32)),
                (_, Some(b)) => bufs.give_back(b),
                _ => {}
            }
            if !more && live {
                if res > 0 || res == -libc::EINTR || res == -libc::EAGAIN {
                    out.push(recv_ms_entry(c, i));
                    c.recv_armed = true;
                } else if res == -libc::ENOBUFS {
                    self.starved.push(i);
                } else {
                    // 0: the peer closed; anything else: the socket failed.
                    c.eof = true;
                }
            }
        } else {
            c.send_inflight = false;
            match res {
                n if n > 0 => {
                    let n = n as usize;
                    c.conn.advance(n);
                    if n < c.sending {
                        c.conn.spill();
                    }
                }
                e if e == -libc::EINTR || e == -libc::EAGAIN => {}
                _ => end(c, bufs),
            }
        }
        self.pump(i, sub, out);
    }

    /// After a completion of connection `i`: send its output, or copy what its queue holds
    /// into its buffer and echo it, or end it; free its slot once it is ended and idle.
    fn pump(&mut self, i: usize, sub: &io_uring::Submitter, out: &mut Vec<squeue::Entry>) {
        let Some(bufs) = self.bufs.as_mut() else {
            return;
        };
        let Some(Some(c)) = self.clients.get_mut(i) else {
            return;
        };
        // Each turn sends (and stops), ends (and stops), or copies at least one byte: all of a
        // queued buffer, or a whole read room (after which `on_read` leaves output or frees
        // room, the framing keeping at most a cut header). Twice the queue plus slack bounds
        // it; were it ever reached, the next completion pumps again.
        for _ in 0..2 * c.queue.len() + 4 {
            if c.dead {
                break;
            }
            if c.conn.has_output() {
                if !c.send_inflight {
                    out.push(send_entry(c, ((i as u64) << 2) | MS_SEND));
                    c.send_inflight = true;
                }
                break;
            }
            if c.conn.closing() || (c.eof && c.queue.is_empty()) {
                end(c, bufs);
                break;
            }
            if c.queue.is_empty() {
                break;
            }
            let (at, len) = c.conn.read_room();
            let mut n = 0;
            // Bounded by the queue's length.
            while n < len {
                let Some(q) = c.queue.front_mut() else {
                    break;
                };
                let k = q.2.min((len - n) as u32);
                let data = bufs.data(q.0, q.1, k);
                // SAFETY: `at..at + len` is the room `read_room` lent (nothing else refers
                // to it until `on_read`), and `n + k <= len`.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), at.add(n), k as usize) };
                n += k as usize;
                q.1 += k;
                q.2 -= k;
                if q.2 == 0 {
                    let b = q.0;
                    c.queue.pop_front();
                    bufs.give_back(b);
                }
            }
            if n == 0 {
                // No room (a handshake that filled the buffer, already refused).
                end(c, bufs);
                break;
            }
            if let Err(floor::Bad(why)) = c.conn.on_read(n) {
                if self.verbose {
                    eprintln!("floor-uring: connection dropped: {why}");
                }
                end(c, bufs);
                break;
            }
        }
        if c.dead && !c.recv_armed && !c.send_inflight {
            // Nothing in flight points into it or at its descriptor any more. Its file-table
            // slot is emptied first, else the table's reference would keep the socket open.
            if let Some(k) = c.fixed {
                let _ = sub.register_files_update(k, &[-1]);
            }
            self.clients[i] = None;
            self.free.push(i);
        }
    }

    /// End of a turn: re-arm the recvs that ran out of buffers once at most half are out,
    /// publish the buffers given back.
    fn after_turn(&mut self, out: &mut Vec<squeue::Entry>) {
        let Some(bufs) = self.bufs.as_mut() else {
            return;
        };
        if !self.starved.is_empty() && bufs.held <= usize::from(bufs.n) / 2 {
            for i in self.starved.drain(..) {
                if let Some(Some(c)) = self.clients.get_mut(i) {
                    if !c.dead && !c.eof && !c.recv_armed {
                        out.push(recv_ms_entry(c, i));
                        c.recv_armed = true;
                    }
                }
            }
        }
        bufs.publish();
    }
}

/// Multishot mode: ends a connection: its queued buffers go back, `shutdown` completes its
/// armed recv (and sends the FIN); the descriptor closes when the slot is freed.
fn end<C>(c: &mut Client<C>, bufs: &mut Bufs) {
    if c.dead {
        return;
    }
    c.dead = true;
    for (b, _, _) in c.queue.drain(..) {
        bufs.give_back(b);
    }
    if c.recv_armed {
        // SAFETY: a plain call on a descriptor this client owns and still holds open.
        unsafe { libc::shutdown(c.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
}
