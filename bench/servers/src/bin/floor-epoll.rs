//! The epoll floor: the least an echo can cost over epoll (the I/O model of every tokio
//! server here). One thread, mio (epoll, edge-triggered), no runtime, no tasks, no wakers;
//! per connection one fixed read buffer and the framing of `floor.rs` (`servers/src/floor.rs`) (parse the
//! header, unmask in place, send back; no validation, no allocation per echo).
//!
//! Per wake of a connection: read once into the buffer (a read that returned less than the
//! room drained the socket, as tokio assumes too: no read just to see `EAGAIN`), echo what
//! it holds with one `send` (one range) or `writev` (several), repeat while the read filled
//! the room. A write that would block (or writes short) leaves the rest in the connection's
//! `pending` buffer and reading stops until the socket is writable again.
//!
//! Flags: `--addr HOST:PORT` (and the other servers' `--heap-file`, `--verbose`).

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
// Included, not in servers' lib.rs: that file is compiled into bench/zlib-peers too, which
// has neither weft-proto nor socket2.
#[path = "../floor.rs"]
mod floor;

use floor::{Conn, MAX_SEGS};
use std::io::{ErrorKind, IoSlice, Read, Write};

const LISTENER: Token = Token(usize::MAX);
/// Reads (or accepts) per connection (or listener) per wake before the others get a turn.
const TURNS: usize = 16;

struct Client {
    stream: TcpStream,
    conn: Conn,
    /// Edge-triggered readiness not yet used up.
    readable: bool,
    writable: bool,
}

/// What a connection wants after its turn.
enum Next {
    Wait,
    /// Its turns ran out with input left: visit again before blocking in epoll.
    Again,
    Close,
}

fn main() {
    let args = servers::prepare("floor-epoll");
    if let Some(path) = args.heap_file.clone() {
        if let Err(e) = servers::spawn_heap_reporter(path) {
            eprintln!("floor-epoll: heap reporter: {e}");
        }
    }
    if let Err(e) = run(&args) {
        eprintln!("floor-epoll: {e}");
        std::process::exit(1);
    }
}

fn run(args: &servers::Args) -> std::io::Result<()> {
    let std_listener = floor::listen(args.addr)?;
    std_listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(std_listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("floor-epoll listening on {}", listener.local_addr()?);
    let mut clients: Vec<Option<Client>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut again: Vec<usize> = Vec::new();
    let mut again_next: Vec<usize> = Vec::new();
    let mut accept_again = false;
    loop {
        let timeout = (accept_again || !again.is_empty()).then_some(std::time::Duration::ZERO);
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut accept_now = std::mem::take(&mut accept_again);
        for ev in events.iter() {
            if ev.token() == LISTENER {
                accept_now = true;
                continue;
            }
            let i = ev.token().0;
            let Some(Some(c)) = clients.get_mut(i) else {
                continue;
            };
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                c.readable = true;
            }
            if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                c.writable = true;
            }
            visit(&mut clients, &mut free, &mut again_next, i, args.verbose);
        }
        for i in again.drain(..) {
            visit(&mut clients, &mut free, &mut again_next, i, args.verbose);
        }
        std::mem::swap(&mut again, &mut again_next);
        if accept_now {
            accept_again = accept(&listener, &poll, &mut clients, &mut free, args.verbose);
        }
    }
}

/// Accepts up to a bound of connections; true if it stopped at the bound (more may wait).
fn accept(
    listener: &TcpListener,
    poll: &Poll,
    clients: &mut Vec<Option<Client>>,
    free: &mut Vec<usize>,
    verbose: bool,
) -> bool {
    for _ in 0..TURNS * 16 {
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => {
                if verbose {
                    eprintln!("floor-epoll: accept: {e}");
                }
                if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::ConnectionAborted {
                    continue;
                }
                // Out of descriptors and the like: keep serving what we have.
                return false;
            }
        };
        let i = free.pop().unwrap_or_else(|| {
            clients.push(None);
            clients.len() - 1
        });
        if stream.set_nodelay(true).is_err()
            || poll
                .registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
        {
            free.push(i);
            continue;
        }
        clients[i] = Some(Client {
            stream,
            conn: Conn::new(),
            readable: false,
            writable: true,
        });
    }
    true
}

fn visit(
    clients: &mut [Option<Client>],
    free: &mut Vec<usize>,
    again: &mut Vec<usize>,
    i: usize,
    verbose: bool,
) {
    let Some(slot) = clients.get_mut(i) else {
        return;
    };
    let Some(c) = slot.as_mut() else {
        return;
    };
    match drive(c, verbose) {
        Next::Wait => {}
        Next::Again => again.push(i),
        Next::Close => {
            // Dropping the stream closes it, which takes it out of the epoll set.
            *slot = None;
            free.push(i);
        }
    }
}

/// Flushes, then reads and echoes while there is input, at most `TURNS` reads.
fn drive(c: &mut Client, verbose: bool) -> Next {
    for _ in 0..TURNS {
        if c.conn.has_output() {
            if !c.writable {
                return Next::Wait;
            }
            match flush(c) {
                Ok(true) => {}
                Ok(false) => return Next::Wait,
                Err(_) => return Next::Close,
            }
        }
        if c.conn.closing {
            return Next::Close;
        }
        if !c.readable {
            return Next::Wait;
        }
        let room = c.conn.read_room();
        let cap = room.len();
        match c.stream.read(room) {
            Ok(0) => return Next::Close,
            Ok(n) => {
                if n < cap {
                    c.readable = false;
                }
                if let Err(floor::Bad(why)) = c.conn.on_read(n) {
                    if verbose {
                        eprintln!("floor-epoll: connection dropped: {why}");
                    }
                    return Next::Close;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
    if c.conn.has_output() || c.readable {
        Next::Again
    } else {
        Next::Wait
    }
}

/// Writes the output: one `send` for one range, `writev` for several. Ok(false): the socket
/// is full (the rest moved to `pending`, wait for writable).
fn flush(c: &mut Client) -> std::io::Result<bool> {
    // Bounded: each turn writes something or stops.
    for _ in 0..MAX_SEGS + 2 {
        if !c.conn.has_output() {
            return Ok(true);
        }
        let mut sl = [IoSlice::new(&[]); MAX_SEGS + 1];
        let k = c.conn.output(&mut sl);
        let total: usize = sl[..k].iter().map(|s| s.len()).sum();
        let r = if k == 1 {
            c.stream.write(&sl[0])
        } else {
            c.stream.write_vectored(&sl[..k])
        };
        match r {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.conn.advance(n);
                if n < total {
                    // The send buffer is full: keep the rest, wait for room.
                    c.conn.spill();
                    c.writable = false;
                    return Ok(false);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                c.conn.spill();
                c.writable = false;
                return Ok(false);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(!c.conn.has_output())
}
