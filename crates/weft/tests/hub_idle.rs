//! The hub's idle sweep: a connection that received nothing for a whole tick gives its read
//! room back (its receive is cancelled, its engine's buffers freed, and the socket waited on
//! with no memory), and is served as before when it speaks again; a hub whose connections
//! all wait idle stops as it should (the shutdown completes their polls). Measured with an
//! allocator that counts the process's live bytes (a test binary of its own: the allocator
//! is the whole binary's); the clients are raw sockets, which allocate nothing once open.
#![cfg(all(feature = "uring", target_os = "linux"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;
use weft::uring::{App, Ctx, Hub};
use weft::{Accept, Message, Reject, Request};

/// Counts the bytes allocated and not yet freed, in every thread.
struct CountLive;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; the count only reads sizes.
unsafe impl GlobalAlloc for CountLive {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: CountLive = CountLive;

struct Echo;

impl App for Echo {
    type State = ();

    fn open(&mut self, _: &Request) -> Result<(Accept, ()), Reject> {
        Ok((Accept::new(), ()))
    }

    fn message(&mut self, _: &mut (), message: Message, ctx: &mut Ctx<'_>) {
        ctx.send(message).unwrap();
    }
}

const CONNS: usize = 200;

/// A client's handshake, and the 101 it reads back (up to the blank line).
fn open(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed during the handshake");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    s
}

/// Sends a masked text frame "hi" and reads its echo.
fn echo(s: &mut TcpStream) {
    let key = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&key);
    frame.extend(b"hi".iter().zip(key).map(|(b, k)| b ^ k));
    s.write_all(&frame).unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, [0x81, 2, b'h', b'i']);
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[test]
fn an_idle_connection_gives_its_read_room_back_and_is_served_after() {
    if let Err(e) = weft::uring::probe() {
        println!("SKIP: io_uring unavailable here ({e})");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = weft::Options::default();
    options.close_timeout = Duration::from_secs(1);
    let hub = Hub::new(listener).unwrap().options(options);
    let stopper = hub.stopper().unwrap();
    let thread = std::thread::spawn(move || hub.run(Echo));
    let mut clients: Vec<TcpStream> = (0..CONNS).map(|_| open(addr)).collect();
    // Each has spoken once, so its engine has lent a room for the next message.
    for c in &mut clients {
        echo(c);
    }
    // (The sweep takes a connection 1-2 s after it last received: well after this.)
    std::thread::sleep(Duration::from_millis(50));
    let busy = live();
    // Quiet for more than two ticks (the sweep takes connections quiet for a whole one).
    std::thread::sleep(Duration::from_millis(3500));
    let idle = live();
    let freed = (busy - idle) / CONNS as isize;
    assert!(
        freed >= 3 * 1024,
        "an idle connection gave back {freed} bytes (live {busy} -> {idle}); its 4 KiB \
         read room was expected back"
    );
    // Served as before, and served again once quiet again.
    for c in &mut clients {
        echo(c);
    }
    std::thread::sleep(Duration::from_millis(3500));
    for c in &mut clients {
        echo(c);
    }
    // Stopping while every connection waits in an idle poll: each gets its 1001, which the
    // raw clients never answer, so the close timeout ends them (the shutdown completes the
    // polls) and `run` returns.
    std::thread::sleep(Duration::from_millis(3500));
    let stopped = std::time::Instant::now();
    stopper.stop().unwrap();
    while !thread.is_finished() {
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "the hub did not stop with idle connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    thread.join().unwrap().unwrap();
    drop(clients);
}
