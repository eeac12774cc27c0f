//! End-to-end tests of the blocking driver over real sockets on 127.0.0.1: handshake,
//! messages, typed and caller-buffer receives, deadlines (now, expiry, resumption), the
//! close handshake and its timeout, keepalive, broken connections, attach and detach.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};
use weft::blocking::{self, NoDeadlines, WebSocket};
use weft::{Accept, CloseCode, Error, Message, MessageKind, Options, Role};

fn soon(ms: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_millis(ms))
}

/// A server thread that accepts one connection and runs `f` on it.
fn serve<T: Send + 'static>(
    options: Options,
    f: impl FnOnce(WebSocket<TcpStream>) -> T + Send + 'static,
) -> (String, thread::JoinHandle<T>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", l.local_addr().unwrap());
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let (ws, _) = blocking::accept_with(s, options, |_| Ok(Accept::new())).unwrap();
        f(ws)
    });
    (url, h)
}

fn echo(mut ws: WebSocket<TcpStream>) -> CloseCode {
    while let Some(m) = ws.recv(soon(10_000)).unwrap() {
        ws.send(m, soon(10_000)).unwrap();
    }
    ws.connection().close_status()
}

#[test]
fn echo_and_close() {
    let (url, server) = serve(Options::default(), echo);
    let (mut ws, _) = blocking::connect(&url, Options::default()).unwrap();
    ws.send("text", None).unwrap();
    ws.send(vec![1u8, 2, 3], None).unwrap();
    ws.send(vec![9u8; 200_000], None).unwrap();
    assert_eq!(ws.recv(soon(5000)).unwrap(), Some(Message::from("text")));
    assert_eq!(
        ws.recv(soon(5000)).unwrap(),
        Some(Message::from(vec![1u8, 2, 3]))
    );
    assert_eq!(
        ws.recv(soon(5000)).unwrap(),
        Some(Message::from(vec![9u8; 200_000]))
    );
    ws.close(CloseCode::NORMAL, "bye", soon(5000)).unwrap();
    assert_eq!(ws.connection().close_status(), CloseCode::NORMAL);
    assert_eq!(server.join().unwrap(), CloseCode::NORMAL);
    // Nothing can be sent after the close.
    assert!(matches!(ws.send("late", None), Err(Error::Closed)));
}

#[test]
fn typed_send_and_receive() {
    let (url, server) = serve(Options::default(), echo);
    let (mut ws, _) = blocking::connect(&url, Options::default()).unwrap();
    ws.set_default_kind(MessageKind::Text);
    ws.send_typed(&b"typed text"[..], None).unwrap();
    assert_eq!(
        ws.recv_typed(soon(5000)).unwrap().unwrap(),
        &b"typed text"[..]
    );
    assert!(matches!(
        ws.send_typed(&[0xffu8][..], None),
        Err(Error::InvalidUtf8)
    ));
    // A binary message where text is expected is an error, and is consumed.
    ws.send(vec![1u8], None).unwrap();
    ws.send("next", None).unwrap();
    assert!(matches!(ws.recv_typed(soon(5000)), Err(Error::WrongKind)));
    assert_eq!(ws.recv_typed(soon(5000)).unwrap().unwrap(), &b"next"[..]);
    ws.close(CloseCode::NORMAL, "", soon(5000)).unwrap();
    server.join().unwrap();
}

#[test]
fn receive_into_caller_buffers() {
    let (url, server) = serve(Options::default(), echo);
    let (mut ws, _) = blocking::connect(&url, Options::default()).unwrap();
    ws.send("fits", None).unwrap();
    ws.send(vec![0u8; 100], None).unwrap();
    ws.send("after", None).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        ws.recv_into(&mut buf, soon(5000)).unwrap(),
        Some((MessageKind::Text, 4))
    );
    assert_eq!(&buf[..4], b"fits");
    assert!(matches!(
        ws.recv_into(&mut buf, soon(5000)),
        Err(Error::BufferTooSmall { needed: 100 })
    ));
    assert_eq!(
        ws.recv_into(&mut buf, soon(5000)).unwrap(),
        Some((MessageKind::Text, 5))
    );
    ws.close(CloseCode::NORMAL, "", soon(5000)).unwrap();
    server.join().unwrap();
}

#[test]
fn deadlines_now_and_expiry_and_resumption() {
    // The server sends half a frame, waits, then the rest.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let ws = blocking::accept(s).unwrap();
        let (mut raw, _) = ws.into_inner();
        let frame = [0x81u8, 5, b'h', b'e', b'l', b'l', b'o'];
        raw.write_all(&frame[..4]).unwrap();
        go_rx.recv().unwrap();
        raw.write_all(&frame[4..]).unwrap();
        let mut rest = Vec::new();
        let _ = raw.read_to_end(&mut rest);
    });
    let (mut ws, _) = blocking::connect(&format!("ws://{addr}/"), Options::default()).unwrap();
    // "now": try once.
    let t = Instant::now();
    let r = ws.recv(Some(Instant::now()));
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(t.elapsed() < Duration::from_millis(500));
    // A deadline that expires.
    let t = Instant::now();
    assert!(matches!(ws.recv(soon(200)), Err(Error::Timeout)));
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(190), "{waited:?}");
    // The half frame was kept: the next call completes it.
    go_tx.send(()).unwrap();
    assert_eq!(ws.recv(soon(5000)).unwrap(), Some(Message::from("hello")));
    drop(ws);
    server.join().unwrap();
}

#[test]
fn close_timeout_and_keepalive() {
    // A peer that never answers anything.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let client = thread::spawn(move || {
        let (ws, _) = blocking::connect(&format!("ws://{addr}/"), Options::default()).unwrap();
        let (mut raw, _) = ws.into_inner();
        let mut sink = Vec::new();
        let _ = raw.read_to_end(&mut sink);
        sink
    });
    let (s, _) = l.accept().unwrap();
    let mut options = Options::default();
    options.ping_interval = Some(Duration::from_millis(100));
    options.pong_timeout = Duration::from_millis(150);
    let (mut ws, _) = blocking::accept_with(s, options, |_| Ok(Accept::new())).unwrap();
    let t = Instant::now();
    let r = ws.recv(None);
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(t.elapsed() >= Duration::from_millis(240));
    // The keepalive failure broke the connection, and it says so.
    assert!(matches!(ws.send("x", None), Err(Error::Broken)));
    drop(ws);
    let seen = client.join().unwrap();
    assert_eq!(seen.first(), Some(&0x89), "a keepalive ping was sent");

    // The close timeout.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let client = thread::spawn(move || {
        let (ws, _) = blocking::connect(&format!("ws://{addr}/"), Options::default()).unwrap();
        let (mut raw, _) = ws.into_inner();
        let mut sink = Vec::new();
        let _ = raw.read_to_end(&mut sink);
    });
    let (s, _) = l.accept().unwrap();
    let mut options = Options::default();
    options.close_timeout = Duration::from_millis(200);
    let (mut ws, _) = blocking::accept_with(s, options, |_| Ok(Accept::new())).unwrap();
    let t = Instant::now();
    assert!(matches!(
        ws.close(CloseCode::NORMAL, "", None),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(190));
    drop(ws);
    client.join().unwrap();
}

#[test]
fn peer_vanishing_mid_message_is_reported() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let ws = blocking::accept(s).unwrap();
        let (mut raw, _) = ws.into_inner();
        raw.write_all(&[0x82, 10, 1, 2]).unwrap(); // 2 of 10 bytes, then gone
    });
    let (mut ws, _) = blocking::connect(&format!("ws://{addr}/"), Options::default()).unwrap();
    server.join().unwrap();
    assert!(matches!(ws.recv(soon(5000)), Err(Error::ConnectionReset)));
    assert_eq!(ws.connection().close_status(), CloseCode::ABNORMAL);
}

#[test]
fn attach_over_a_unix_socket_and_a_pipe_like_stream_then_detach() {
    let (a, b) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || {
        let mut ws = WebSocket::from_raw(b, Role::Server, Options::default());
        let m = ws.recv(soon(5000)).unwrap().unwrap();
        ws.send(m, None).unwrap();
        // The client detaches: we answer its close and detach too.
        assert_eq!(ws.recv(soon(5000)).unwrap(), None);
        let (mut raw, rest) = ws.detach(CloseCode::NORMAL, "", soon(5000)).unwrap();
        let mut got = rest.to_vec();
        while got.len() < 5 {
            let mut more = [0u8; 5];
            let n = raw.read(&mut more).unwrap();
            got.extend_from_slice(&more[..n]);
        }
        got
    });
    // NoDeadlines: a stream with no timeouts, used with no deadline.
    let mut ws = WebSocket::from_raw(NoDeadlines(a), Role::Client, Options::default());
    ws.send("ping-pong", None).unwrap();
    assert_eq!(ws.recv(None).unwrap(), Some(Message::from("ping-pong")));
    // A deadline on a stream that cannot time out is refused, and changes nothing.
    assert!(matches!(ws.recv(soon(10)), Err(Error::InvalidArgument(_))));
    let (mut raw, _) = ws.detach(CloseCode::NORMAL, "bye", None).unwrap();
    raw.0.write_all(b"after").unwrap();
    assert_eq!(server.join().unwrap(), b"after");
}

#[test]
fn streaming_a_message_larger_than_the_limit() {
    const BIG: usize = 24 << 20;
    let mut options = Options::default();
    options.config.recv_level = weft::RecvLevel::Chunk;
    options.config.max_message_size = Some(1 << 20);
    let pattern = |i: usize| (i % 251) as u8;
    let (url, server) = serve(options.clone(), move |mut ws| {
        // Receive as a Read, checking every byte; the engine never holds much.
        let mut reader = ws.recv_stream(soon(60_000)).unwrap().unwrap();
        assert_eq!(reader.kind(), MessageKind::Binary);
        let mut buf = vec![0u8; 70_000];
        let mut total = 0usize;
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n]
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(total + i)));
            total += n;
        }
        assert!(ws.connection().buffered() <= 1 << 20);
        // Send one back through a Write, frame per write.
        let mut w = ws.send_stream(MessageKind::Binary, soon(60_000)).unwrap();
        for start in (0..BIG).step_by(65_536) {
            let chunk: Vec<u8> = (start..(start + 65_536).min(BIG)).map(pattern).collect();
            w.write_all(&chunk).unwrap();
        }
        w.finish().unwrap();
        ws.close(CloseCode::NORMAL, "", soon(10_000)).unwrap();
        total
    });
    let (mut ws, _) = blocking::connect(&url, options).unwrap();
    let source = (0..BIG).map(pattern).collect::<Vec<u8>>();
    ws.send_from_reader(
        MessageKind::Binary,
        &source[..],
        Some(BIG as u64),
        soon(60_000),
    )
    .unwrap();
    drop(source);
    let mut reader = ws.recv_stream(soon(60_000)).unwrap().unwrap();
    let mut got = 0usize;
    while let Some(chunk) = reader.next_chunk().unwrap() {
        assert!(chunk
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern(got + i)));
        got += chunk.len();
    }
    assert_eq!(got, BIG);
    assert_eq!(ws.recv(soon(10_000)).unwrap(), None);
    assert_eq!(server.join().unwrap(), BIG);
}

#[test]
fn handshake_timeouts_both_roles() {
    // A client that sends half a request: the server's handshake times out.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let client = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    let (s, _) = l.accept().unwrap();
    let mut options = Options::default();
    options.handshake_timeout = Some(Duration::from_millis(200));
    let t = Instant::now();
    let r = blocking::accept_with(s, options, |_| Ok(Accept::new()));
    assert!(matches!(r, Err(Error::Timeout)), "{:?}", r.map(|_| ()));
    assert!(t.elapsed() >= Duration::from_millis(190));
    drop(r);
    client.join().unwrap();

    // A server that never answers the request: the client's handshake times out.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut options = Options::default();
    options.handshake_timeout = Some(Duration::from_millis(200));
    let r = blocking::connect(&format!("ws://{addr}/"), options);
    assert!(matches!(r, Err(Error::Timeout)), "{:?}", r.map(|_| ()));
    drop(l);
}

#[test]
fn a_peer_that_does_not_read_gets_timeouts_and_memory_stays_bounded() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let _ws = blocking::accept(s).unwrap();
        stop_rx.recv().unwrap(); // never reads until told
    });
    let mut options = Options::default();
    options.write_buffer_limit = 64 * 1024;
    let (mut ws, _) = blocking::connect(&format!("ws://{addr}/"), options).unwrap();
    let chunk = vec![3u8; 16 * 1024];
    let mut timeouts = 0;
    let mut max_queued = 0;
    for _ in 0..2000 {
        match ws.send(chunk.clone(), soon(20)) {
            Ok(()) => {}
            Err(Error::Timeout) => timeouts += 1,
            Err(e) => panic!("{e}"),
        }
        max_queued = max_queued.max(ws.connection().queued_bytes());
        if timeouts >= 5 {
            break;
        }
    }
    assert!(timeouts >= 5, "sends never timed out");
    assert!(
        max_queued <= 64 * 1024 + 16 * 1024 + 64,
        "queued {max_queued}"
    );
    // Still usable: nothing was lost or broken by the timeouts.
    assert!(ws.connection().error().is_none());
    stop_tx.send(()).unwrap();
    server.join().unwrap();
}

#[test]
fn connect_timeout() {
    // A listener with a full backlog (0, with one connection pending) never completes a
    // TCP connect on 127.0.0.1: the connect timeout ends the attempt.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_listener, _first, addr) = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = sock.local_addr().unwrap();
        let l = sock.listen(0).unwrap();
        let first = tokio::net::TcpStream::connect(addr).await.unwrap();
        (l, first, addr)
    });
    let mut options = Options::default();
    options.connect_timeout = Some(Duration::from_millis(200));
    let t = Instant::now();
    let r = blocking::connect(&format!("ws://{addr}/"), options);
    assert!(matches!(r, Err(Error::Timeout)), "{:?}", r.map(|_| ()));
    assert!(t.elapsed() >= Duration::from_millis(190));
}

/// An in-memory stream that counts the reads made of it.
struct CountedReads {
    input: std::io::Cursor<Vec<u8>>,
    reads: std::rc::Rc<std::cell::Cell<usize>>,
}

impl Read for CountedReads {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reads.set(self.reads.get() + 1);
        self.input.read(buf)
    }
}

impl Write for CountedReads {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Once the read room has grown, a 64 KiB message and its 14-byte header arrive in one
/// read (a room of exactly 64 KiB took a second read for the last 14 bytes).
#[test]
fn a_64k_message_takes_one_read_once_the_room_has_grown() {
    let mut client = weft::proto::Connection::new(Role::Client, Default::default());
    for i in 0..16u8 {
        client.send_binary(vec![i; 64 * 1024]).unwrap();
    }
    let mut wire = Vec::new();
    {
        use bytes::Buf;
        let out = client.outgoing();
        while out.has_remaining() {
            let n = out.chunk().len();
            wire.extend_from_slice(out.chunk());
            out.advance(n);
        }
    }
    let reads = std::rc::Rc::new(std::cell::Cell::new(0));
    let stream = CountedReads {
        input: std::io::Cursor::new(wire),
        reads: reads.clone(),
    };
    let mut ws = WebSocket::from_raw(NoDeadlines(stream), Role::Server, Options::default());
    let mut per_message = Vec::new();
    for i in 0..16u8 {
        let before = reads.get();
        let m = ws.recv(None).unwrap().unwrap();
        assert_eq!(m.into_payload(), vec![i; 64 * 1024]);
        per_message.push(reads.get() - before);
    }
    assert_eq!(&per_message[12..], &[1, 1, 1, 1], "{per_message:?}");
}
