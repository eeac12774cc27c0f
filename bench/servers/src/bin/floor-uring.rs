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
//! Where `io_uring_setup` fails (old kernels, seccomp), it says so in one line and exits 3;
//! `floor-uring --probe` only checks that (exit 0 or 3), for bench/run.
//!
//! Flags: `--addr HOST:PORT` (and the other servers' `--heap-file`, `--verbose`).

use io_uring::{cqueue, opcode, squeue, types, IoUring};
// Included, not in servers' lib.rs: that file is compiled into bench/zlib-peers too, which
// has neither weft-proto nor socket2.
#[path = "../floor.rs"]
mod floor;

use floor::{Conn, MAX_SEGS};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ACCEPT: u64 = u64::MAX;
const RECV: u64 = 0;
const SEND: u64 = 1;
const RING_ENTRIES: u32 = 1024;

struct Client {
    fd: OwnedFd,
    conn: Conn,
    /// The in-flight `sendmsg`'s vector and header: they must stay put until its completion,
    /// so every client lives in a `Box`.
    iov: [libc::iovec; MAX_SEGS + 1],
    msg: libc::msghdr,
    /// Bytes the in-flight send was asked to write.
    sending: usize,
}

fn ring() -> std::io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES)
        .or_else(|_| IoUring::new(RING_ENTRIES))
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
    let ring = match ring() {
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
    if let Err(e) = run(ring, &args) {
        eprintln!("floor-uring: {e}");
        std::process::exit(1);
    }
}

struct Server {
    clients: Vec<Option<Box<Client>>>,
    free: Vec<usize>,
    multishot: bool,
    verbose: bool,
}

fn run(mut ring: IoUring, args: &servers::Args) -> std::io::Result<()> {
    let listener = floor::listen(args.addr)?;
    eprintln!("floor-uring listening on {}", listener.local_addr()?);
    let lfd = types::Fd(listener.as_raw_fd());
    let mut srv = Server {
        clients: Vec::new(),
        free: Vec::new(),
        multishot: true,
        verbose: args.verbose,
    };
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
            // flight); accept entries point at nothing.
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
            srv.complete(cqe, lfd, &mut out);
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

impl Server {
    fn complete(&mut self, cqe: cqueue::Entry, lfd: types::Fd, out: &mut Vec<squeue::Entry>) {
        let res = cqe.result();
        let data = cqe.user_data();
        if data == ACCEPT {
            if res >= 0 {
                self.accepted(res, out);
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

    fn accepted(&mut self, fd: i32, out: &mut Vec<squeue::Entry>) {
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
            conn: Conn::new(),
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_SEGS + 1],
            // SAFETY: msghdr is plain data; all zeroes is its empty value.
            msg: unsafe { std::mem::zeroed() },
            sending: 0,
        });
        out.push(recv_entry(&mut c, i));
        self.clients[i] = Some(c);
    }
}

/// After a completion: send the output if any, else end a closing connection, else receive.
/// False: end it.
fn next(c: &mut Client, i: usize, out: &mut Vec<squeue::Entry>) -> bool {
    if c.conn.has_output() {
        out.push(send_entry(c, i));
        true
    } else if c.conn.closing {
        false
    } else {
        out.push(recv_entry(c, i));
        true
    }
}

fn recv_entry(c: &mut Client, i: usize) -> squeue::Entry {
    let fd = types::Fd(c.fd.as_raw_fd());
    let room = c.conn.read_room();
    opcode::Recv::new(fd, room.as_mut_ptr(), room.len() as u32)
        .build()
        .user_data(((i as u64) << 1) | RECV)
}

fn send_entry(c: &mut Client, i: usize) -> squeue::Entry {
    let fd = types::Fd(c.fd.as_raw_fd());
    let mut sl = [IoSlice::new(&[]); MAX_SEGS + 1];
    let k = c.conn.output(&mut sl);
    c.sending = sl[..k].iter().map(|s| s.len()).sum();
    let entry = if k == 1 {
        opcode::Send::new(fd, sl[0].as_ptr(), sl[0].len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
    } else {
        for (v, s) in c.iov.iter_mut().zip(&sl[..k]) {
            *v = libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            };
        }
        c.msg.msg_iov = c.iov.as_mut_ptr();
        c.msg.msg_iovlen = k as _;
        opcode::SendMsg::new(fd, &c.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    };
    entry.user_data(((i as u64) << 1) | SEND)
}
