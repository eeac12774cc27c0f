//! End-to-end tests of `weft::uring::Hub` (the io_uring server that owns its connections)
//! over real sockets on 127.0.0.1, with weft's tokio client and raw TCP: echoes of every
//! size, many connections, a client that writes before it reads, the handshake's refusals
//! (a bad request, the application's), a protocol error's close code, the close handshake
//! either way, the handshake's time limit, and stopping. Where io_uring is forbidden
//! (seccomp), each test says so and passes only after checking that the refusal is clean.
#![cfg(all(feature = "uring", target_os = "linux"))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft::proto::CloseCode;
use weft::uring::{App, ConnId, Ctx, Handle, Hub, Stopper};
use weft::{Accept, Message, Options, Reject, Request};

/// Every test is bounded in time.
const LIMIT: Duration = Duration::from_secs(30);

/// What the test application saw: connections closed, with their status; the ids of the
/// open ones, in the order they opened.
#[derive(Default)]
struct Seen {
    closed: Vec<CloseCode>,
    open: Vec<ConnId>,
}

/// Echoes every message; refuses `/forbidden` with 403; answers "bye" by closing with
/// 1000; greets on `/greet`; sends a text "relay:X" on as "X" to every other open
/// connection (`Ctx::send_to`).
struct Echo {
    seen: Arc<Mutex<Seen>>,
}

/// A connection's state in `Echo`: whether to greet.
struct Peer {
    greet: bool,
}

impl App for Echo {
    type State = Peer;

    fn open(&mut self, req: &Request) -> Result<(Accept, Peer), Reject> {
        match req.resource() {
            "/forbidden" => Err(Reject::new(http::StatusCode::FORBIDDEN, "not here")),
            r => Ok((
                Accept::new(),
                Peer {
                    greet: r == "/greet",
                },
            )),
        }
    }

    fn opened(&mut self, peer: &mut Peer, ctx: &mut Ctx<'_>) {
        self.seen.lock().unwrap().open.push(ctx.id());
        if peer.greet {
            ctx.send("hello").unwrap();
        }
    }

    fn message(&mut self, _: &mut Peer, message: Message, ctx: &mut Ctx<'_>) {
        match &message {
            Message::Text(t) if t.as_str() == "bye" => {
                ctx.close(CloseCode::NORMAL, "as asked").unwrap();
            }
            Message::Text(t) if t.as_str().starts_with("relay:") => {
                let others: Vec<ConnId> = self.seen.lock().unwrap().open.clone();
                let me = ctx.id();
                for to in others.into_iter().filter(|&to| to != me) {
                    ctx.send_to(to, &t.as_str()["relay:".len()..]);
                }
            }
            _ => ctx.send(message).unwrap(),
        }
    }

    fn closed(&mut self, id: ConnId, _: Peer, status: CloseCode) {
        let mut seen = self.seen.lock().unwrap();
        seen.closed.push(status);
        seen.open.retain(|&open| open != id);
    }
}

/// A hub running `Echo` on its own thread: its address, its stopper, what it saw, and the
/// thread (joined by `stop`). `None` where io_uring is forbidden.
struct Running {
    addr: SocketAddr,
    stopper: Stopper,
    handle: Handle,
    seen: Arc<Mutex<Seen>>,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

fn start(options: Options) -> Option<Running> {
    if let Err(e) = weft::uring::probe() {
        eprintln!("io_uring unavailable here ({e}): test skipped");
        return None;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::new(listener).unwrap().options(options);
    let stopper = hub.stopper().unwrap();
    let handle = hub.handle();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Echo { seen: seen.clone() };
    let thread = std::thread::spawn(move || hub.run(app));
    Some(Running {
        addr,
        stopper,
        handle,
        seen,
        thread,
    })
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Stops the hub and waits (bounded) for `run` to return Ok.
    fn stop(self) -> Arc<Mutex<Seen>> {
        self.stopper.stop().unwrap();
        let start = std::time::Instant::now();
        while !self.thread.is_finished() {
            assert!(start.elapsed() < LIMIT, "the hub did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.thread.join().unwrap().unwrap();
        self.seen
    }

    /// Waits (bounded) until `n` connections are open; their ids in the order they opened.
    fn wait_open(&self, n: usize) -> Vec<ConnId> {
        let start = std::time::Instant::now();
        loop {
            let open = self.seen.lock().unwrap().open.clone();
            if open.len() >= n {
                return open;
            }
            assert!(start.elapsed() < LIMIT, "only {} open", open.len());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until the hub has seen `n` connections close.
    fn wait_closed(&self, n: usize) -> Vec<CloseCode> {
        let start = std::time::Instant::now();
        loop {
            let closed = self.seen.lock().unwrap().closed.clone();
            if closed.len() >= n {
                return closed;
            }
            assert!(start.elapsed() < LIMIT, "only {closed:?} closed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    rt().block_on(async {
        tokio::time::timeout(LIMIT, f)
            .await
            .expect("test took too long")
    })
}

async fn connect(url: &str) -> weft::tokio::WebSocket<tokio::net::TcpStream> {
    let addr = url.trim_start_matches("ws://");
    let addr = &addr[..addr.find('/').unwrap_or(addr.len())];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    weft::tokio::connect(url, tcp).await.unwrap().0
}

#[test]
fn echoes_messages_of_every_size() {
    let Some(hub) = start(Options::default()) else {
        return;
    };
    bounded(async {
        let mut ws = connect(&hub.url("/")).await;
        for size in [0usize, 1, 125, 126, 4096, 65_535, 65_536, 1 << 20, 3 << 20] {
            let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            ws.send(payload.clone()).await.unwrap();
            assert_eq!(
                ws.recv().await.unwrap(),
                Some(Message::from(payload)),
                "{size}"
            );
        }
        ws.send("text too").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("text too")));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), None);
    });
    assert_eq!(hub.wait_closed(1), vec![CloseCode::NORMAL]);
    hub.stop();
}

#[test]
fn serves_many_connections_at_once() {
    let Some(hub) = start(Options::default()) else {
        return;
    };
    let url = hub.url("/");
    bounded(async move {
        let mut tasks = Vec::new();
        for c in 0..200u32 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut ws = connect(&url).await;
                for k in 0..20u32 {
                    let m = Message::from(format!("{c}:{k}"));
                    ws.send(m.clone()).await.unwrap();
                    assert_eq!(ws.recv().await.unwrap(), Some(m));
                }
                ws.close(CloseCode::NORMAL, "").await.unwrap();
                assert_eq!(ws.recv().await.unwrap(), None);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(hub.wait_closed(200).len(), 200);
    hub.stop();
}

/// A client that sends much more than the socket buffers hold before it reads anything
/// back (its reader in another task): the hub keeps receiving while its sends wait, up to
/// its write-buffer limit, and everything comes back in order.
#[test]
fn a_client_that_writes_before_it_reads_is_served() {
    let Some(hub) = start(Options::default()) else {
        return;
    };
    bounded(async {
        let ws = connect(&hub.url("/")).await;
        let (mut reader, writer) = ws.split();
        const N: usize = 2000;
        let writing = tokio::spawn(async move {
            for k in 0..N {
                writer.feed(vec![(k % 256) as u8; 8192]).await.unwrap();
            }
            writer.flush().await.unwrap();
            writer
        });
        for k in 0..N {
            let m = reader.recv().await.unwrap().unwrap();
            assert_eq!(m, Message::from(vec![(k % 256) as u8; 8192]), "{k}");
        }
        writing.await.unwrap();
    });
    hub.stop();
}

#[test]
fn the_application_closes_and_greets() {
    let Some(hub) = start(Options::default()) else {
        return;
    };
    bounded(async {
        let mut ws = connect(&hub.url("/greet")).await;
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("hello")));
        ws.send("bye").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), None);
        let close = ws.connection().close_received().cloned().unwrap();
        assert_eq!(close.code, CloseCode::NORMAL);
        assert_eq!(close.reason, "as asked");
    });
    assert_eq!(hub.wait_closed(1), vec![CloseCode::NORMAL]);
    hub.stop();
}

/// Raw HTTP: the response's status line, and whether the connection was then closed.
fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("no end: {e}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.lines().next().unwrap_or("").to_string();
    (status, true)
}

#[test]
fn a_bad_request_gets_a_4xx_and_the_application_can_refuse() {
    let Some(hub) = start(Options::default()) else {
        return;
    };
    // No Upgrade header.
    let (status, closed) = raw_exchange(hub.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(status.starts_with("HTTP/1.1 4"), "{status}");
    assert!(closed);
    // Not HTTP at all.
    let (status, _) = raw_exchange(hub.addr, b"\x16\x03\x01 hello\r\n\r\n");
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    // A head over the limit.
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let (status, _) = raw_exchange(hub.addr, &big);
    assert!(status.starts_with("HTTP/1.1 4"), "{status}");
    // Refused by the application.
    let request =
        b"GET /forbidden HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let (status, _) = raw_exchange(hub.addr, request);
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    // None of them was opened.
    assert!(hub.seen.lock().unwrap().closed.is_empty());
    hub.stop();
}

/// An unmasked frame from a client is a protocol error: the hub closes with 1002 and then
/// the connection.
#[test]
fn a_protocol_error_closes_with_1002() {
    let Some(hub) = start(Options::default()) else {
        return;
    };
    let mut s = TcpStream::connect(hub.addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    // The request and an unmasked text frame in one write.
    let mut out = request.to_vec();
    out.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
    s.write_all(&out).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("no end: {e}"),
        }
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got.starts_with(b"HTTP/1.1 101"));
    let frame = &got[head_end..];
    assert_eq!(frame[0], 0x88, "a close frame: {frame:?}");
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1002);
    assert_eq!(hub.wait_closed(1), vec![CloseCode::ABNORMAL]);
    hub.stop();
}

/// A client that connects and sends nothing is dropped after the handshake timeout.
#[test]
fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let mut options = Options::default();
    options.handshake_timeout = Some(Duration::from_millis(500));
    let Some(hub) = start(options) else {
        return;
    };
    let mut s = TcpStream::connect(hub.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => break r.expect("the hub should close it, not time out"),
        }
    };
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    hub.stop();
}

/// Stopping closes open connections with 1001 and `run` returns.
#[test]
fn stopping_closes_connections_with_1001() {
    let Some(hub) = start(Options::default()) else {
        return;
    };
    let url = hub.url("/");
    let runtime = rt();
    let mut ws = runtime.block_on(async {
        let mut ws = connect(&url).await;
        ws.send("x").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("x")));
        ws
    });
    let closing = std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::time::timeout(LIMIT, async {
                assert_eq!(ws.recv().await.unwrap(), None);
                ws.connection().close_received().map(|c| c.code)
            })
            .await
            .expect("no close")
        })
    });
    let seen = hub.stop();
    assert_eq!(closing.join().unwrap(), Some(CloseCode::GOING_AWAY));
    assert_eq!(seen.lock().unwrap().closed, vec![CloseCode::GOING_AWAY]);
}

/// What a handle sends just before it stops the hub goes out ahead of the 1001; from then
/// on handles are refused, as they are by a hub that never ran; a close that may not be
/// sent is refused at once.
#[test]
fn a_message_sent_before_the_stop_goes_out_first_and_handles_then_fail() {
    let Some(hub) = start(Options::default()) else {
        return;
    };
    let runtime = rt();
    let mut ws = runtime.block_on(connect(&hub.url("/")));
    let id = hub.wait_open(1)[0];
    let never_ran = Hub::new(TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
    let orphan = never_ran.handle();
    drop(never_ran);
    let err = orphan.send(id, "to no hub").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
    let err = hub.handle.close(id, CloseCode::ABNORMAL, "").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    // Both reach the hub in one wake-up: the message must not be lost to the 1001.
    hub.handle.send(id, "last words").unwrap();
    hub.handle.stop().unwrap();
    let status = runtime.block_on(async {
        tokio::time::timeout(LIMIT, async {
            assert_eq!(ws.recv().await.unwrap(), Some(Message::from("last words")));
            assert_eq!(ws.recv().await.unwrap(), None);
            ws.connection().close_received().map(|c| c.code)
        })
        .await
        .expect("no close")
    });
    assert_eq!(status, Some(CloseCode::GOING_AWAY));
    let err = hub.handle.send(id, "too late").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
    hub.stop();
}

/// Keepalive: an idle client is pinged; a pong keeps it (it is pinged again later); a
/// client that then stays silent is dropped after `pong_timeout`, seen as 1006.
#[test]
fn keepalive_pings_an_idle_client_and_drops_one_that_stops_answering() {
    let mut options = Options::default();
    options.ping_interval = Some(Duration::from_secs(1));
    options.pong_timeout = Duration::from_secs(1);
    let Some(hub) = start(options) else {
        return;
    };
    let mut s = TcpStream::connect(hub.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // Reads until `got` holds `n` bytes past the head, or the end (then `false`).
    let mut read_to = |s: &mut TcpStream, got: &mut Vec<u8>, n: usize| -> bool {
        loop {
            let head = got.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
            if head.is_some_and(|h| got.len() >= h + n) {
                return true;
            }
            match s.read(&mut buf) {
                Ok(0) => return false,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("no ping and no end: {e}; got {got:?}"),
            }
        }
    };
    let started = std::time::Instant::now();
    assert!(read_to(&mut s, &mut got, 2), "closed before the first ping");
    assert!(got.starts_with(b"HTTP/1.1 101"));
    let head = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&got[head..], &[0x89, 0x00], "an empty ping");
    // Answered (a masked empty pong): pinged again, not dropped.
    s.write_all(&[0x8a, 0x80, 1, 2, 3, 4]).unwrap();
    assert!(read_to(&mut s, &mut got, 4), "dropped although it answered");
    assert_eq!(&got[head + 2..], &[0x89, 0x00], "a second ping");
    assert!(hub.seen.lock().unwrap().closed.is_empty());
    // Not answered: dropped.
    assert!(!read_to(&mut s, &mut got, 5), "not dropped: got {got:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(hub.wait_closed(1), vec![CloseCode::ABNORMAL]);
    hub.stop();
}

/// A callback reaches other connections (`Ctx::send_to`), another thread reaches any
/// (`Handle`), and what is sent to a connection that has closed is dropped.
#[test]
fn callbacks_and_other_threads_reach_any_connection() {
    let Some(hub) = start(Options::default()) else {
        return;
    };
    let url = hub.url("/");
    let handle = hub.handle.clone();
    let late = hub.handle.clone();
    let seen = hub.seen.clone();
    let id_b = bounded(async {
        let mut a = connect(&url).await;
        let mut b = connect(&url).await;
        let mut c = connect(&url).await;
        let ids = {
            let start = std::time::Instant::now();
            loop {
                let open = seen.lock().unwrap().open.clone();
                if open.len() == 3 {
                    break open;
                }
                assert!(start.elapsed() < LIMIT, "only {} open", open.len());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        // A callback relays to the two others.
        a.send("relay:to all").await.unwrap();
        assert_eq!(b.recv().await.unwrap(), Some(Message::from("to all")));
        assert_eq!(c.recv().await.unwrap(), Some(Message::from("to all")));
        // Another thread sends to one and closes another.
        let (id_b, id_c) = (ids[1], ids[2]);
        std::thread::spawn(move || {
            handle.send(id_b, "from outside").unwrap();
            handle.send(id_b, vec![1u8, 2, 3]).unwrap();
            handle.close(id_c, CloseCode::NORMAL, "done").unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(b.recv().await.unwrap(), Some(Message::from("from outside")));
        assert_eq!(
            b.recv().await.unwrap(),
            Some(Message::from(vec![1u8, 2, 3]))
        );
        assert_eq!(c.recv().await.unwrap(), None);
        assert_eq!(
            c.connection().close_received().map(|c| c.code),
            Some(CloseCode::NORMAL)
        );
        // c is gone: what is sent to it is dropped, and the others go on.
        let start = std::time::Instant::now();
        while seen.lock().unwrap().open.contains(&id_c) {
            assert!(start.elapsed() < LIMIT, "c never closed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        hub.handle.send(id_c, "to nobody").unwrap();
        a.send("relay:again").await.unwrap();
        assert_eq!(b.recv().await.unwrap(), Some(Message::from("again")));
        a.send("echo").await.unwrap();
        assert_eq!(a.recv().await.unwrap(), Some(Message::from("echo")));
        id_b
    });
    hub.stop();
    // Once the hub has stopped, a handle says so.
    let err = late.send(id_b, "late").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
}

/// What others send to a client that does not read cannot make the hub hold more than
/// `write_buffer_limit` for it: past that it is closed with 1008 (and then dropped, as it
/// does not answer), and the sender goes on.
#[test]
fn a_client_that_does_not_read_what_others_send_it_is_closed() {
    let mut options = Options::default();
    options.write_buffer_limit = 64 * 1024;
    options.close_timeout = Duration::from_secs(1);
    let Some(hub) = start(options) else {
        return;
    };
    // The one that never reads: raw TCP, the handshake, then nothing.
    let mut silent = TcpStream::connect(hub.addr).unwrap();
    silent
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    hub.wait_open(1);
    let url = hub.url("/");
    let seen = hub.seen.clone();
    bounded(async {
        let mut a = connect(&url).await;
        let big = format!("relay:{}", "x".repeat(256 * 1024));
        // At most 400 x 256 KiB (100 MiB): the socket's buffers hold a few MiB of it. Then
        // the close is waited for: the close timeout runs out at a tick (1-2 s later).
        let (mut sent, start) = (0, std::time::Instant::now());
        while seen.lock().unwrap().closed.is_empty() {
            assert!(
                start.elapsed() < LIMIT,
                "never closed after {sent} messages"
            );
            if sent < 400 {
                a.send(big.as_str()).await.unwrap();
                sent += 1;
                tokio::task::yield_now().await;
            }
            if sent % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert_eq!(seen.lock().unwrap().closed, vec![CloseCode::ABNORMAL]);
        a.send("still here").await.unwrap();
        assert_eq!(a.recv().await.unwrap(), Some(Message::from("still here")));
    });
    drop(silent);
    hub.stop();
}
