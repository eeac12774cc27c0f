//! End-to-end tests of the io_uring driver (`weft::uring`) over real sockets on 127.0.0.1:
//! messages of every size both ways (server and client on the ring, and against the epoll
//! driver), many connections on one ring, backpressure with bounded memory, the close
//! handshake, a dropped stream ends its connection, detach gives the stream back, and a
//! peer that vanishes; then the scenarios in `tests/scenarios`, shared with `tokio_e2e`,
//! with both ends on the ring. Where io_uring is forbidden (seccomp), each test says so and
//! passes only after checking that the refusal is a clean error.
#![cfg(all(feature = "uring", target_os = "linux"))]

mod scenarios;

use bytes::Bytes;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft::uring::{Uring, UringStream};
use weft::{CloseCode, Message, Options, Role};

/// Every test is bounded in time.
const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test took too long")
}

/// The ring, or `None` (with a line saying why) where io_uring is forbidden.
fn ring() -> Option<Uring> {
    match Uring::start() {
        Ok(u) => Some(u),
        Err(e) => {
            assert!(
                weft::uring::probe().is_err(),
                "start failed but probe works: {e}"
            );
            eprintln!("io_uring unavailable here ({e}): test skipped");
            None
        }
    }
}

async fn listener() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

async fn accept_uring(l: &TcpListener, uring: &Uring) -> UringStream {
    let (s, _) = l.accept().await.unwrap();
    uring.stream_from_tokio(s).unwrap()
}

/// The stream a shared scenario runs on: each end of its connections on `uring`.
fn on_the_ring(uring: Uring) -> impl Fn(TcpStream) -> UringStream + Clone + Send + Sync + 'static {
    move |s| uring.stream_from_tokio(s).unwrap()
}

/// One test per shared scenario (`tests/scenarios`), over `on_the_ring`; skipped, with a
/// line saying so, where io_uring is forbidden.
macro_rules! on_the_ring {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "current_thread")]
        async fn $name() {
            let Some(uring) = ring() else { return };
            bounded(scenarios::$name(on_the_ring(uring))).await
        }
    )*};
}

on_the_ring!(
    echo_with_subprotocol_and_request_details,
    rejected_by_the_application_with_a_status,
    bad_requests_get_their_4xx,
    protocol_error_gets_the_close_code,
    stream_and_sink,
    fed_messages_are_written_by_the_next_receive,
    keepalive_fails_a_silent_peer,
    keepalive_keeps_a_live_peer,
    close_timeout_when_the_peer_never_answers,
    handshake_timeout,
    permessage_deflate_is_negotiated_and_used,
);

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// An echo server on the ring: every message back until the close.
fn spawn_echo(l: TcpListener, uring: Uring, conns: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let s = accept_uring(&l, &uring).await;
            tasks.push(tokio::spawn(async move {
                let mut ws = weft::tokio::accept(s).await.unwrap();
                while let Some(m) = ws.recv().await.unwrap() {
                    ws.send(m).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
}

const SIZES: [usize; 10] = [
    0, 1, 125, 126, 1000, 65_535, 65_536, 65_550, 300_000, 2_000_000,
];

async fn echo_every_size<S>(ws: &mut weft::tokio::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for (i, &n) in SIZES.iter().enumerate() {
        let bin = Bytes::from(payload(n, i as u8));
        ws.send(Message::Binary(bin.clone())).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::Binary(bin)));
        let text: String = "aé€𝄞".chars().cycle().take(n / 3).collect();
        ws.send(text.as_str()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from(text.as_str())));
    }
    // Eight in flight at once, then their echoes.
    for k in 0..8u8 {
        ws.feed(Message::Binary(Bytes::from(payload(70_000, k))))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    for k in 0..8u8 {
        assert_eq!(
            ws.recv().await.unwrap(),
            Some(Message::Binary(Bytes::from(payload(70_000, k))))
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn echo_every_size_with_both_ends_on_the_ring() {
    let Some(uring) = ring() else { return };
    bounded(async {
        let (l, addr) = listener().await;
        let server = spawn_echo(l, uring.clone(), 1);
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        let url = format!("ws://{addr}/");
        let (mut ws, _) = weft::tokio::connect(&url, uring.stream(tcp).unwrap())
            .await
            .unwrap();
        echo_every_size(&mut ws).await;
        ws.close(CloseCode::NORMAL, "done").await.unwrap();
        server.await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn an_epoll_client_against_a_ring_server() {
    let Some(uring) = ring() else { return };
    bounded(async {
        let (l, addr) = listener().await;
        let server = spawn_echo(l, uring, 1);
        let (mut ws, _) = weft::tokio::connect(
            &format!("ws://{addr}/"),
            TcpStream::connect(addr).await.unwrap(),
        )
        .await
        .unwrap();
        echo_every_size(&mut ws).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        server.await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_share_one_ring() {
    let Some(uring) = ring() else { return };
    bounded(async {
        const CONNS: usize = 200;
        let (l, addr) = listener().await;
        let server = spawn_echo(l, uring.clone(), CONNS);
        let mut clients = Vec::new();
        for c in 0..CONNS {
            let uring = uring.clone();
            clients.push(tokio::spawn(async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let stream = uring.stream_from_tokio(tcp).unwrap();
                let (mut ws, _) = weft::tokio::connect(&format!("ws://{addr}/"), stream)
                    .await
                    .unwrap();
                for m in 0..20usize {
                    let body = payload(16 + (c * 37 + m * 101) % 5000, c as u8);
                    ws.send(Message::Binary(body.clone().into())).await.unwrap();
                    assert_eq!(ws.recv().await.unwrap(), Some(Message::Binary(body.into())));
                }
                ws.close(CloseCode::NORMAL, "").await.unwrap();
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        server.await.unwrap();
    })
    .await
}

/// The shared backpressure scenario with the client on the ring (the server too, though it
/// never reads): the engine's queue stays at its limit, and the stream, holding at most its
/// write room beside the one send in flight, is waiting on that send.
#[tokio::test(flavor = "current_thread")]
async fn send_waits_when_the_peer_does_not_read_and_memory_stays_bounded() {
    let Some(uring) = ring() else { return };
    bounded(
        scenarios::send_waits_when_the_peer_does_not_read_and_memory_stays_bounded(
            on_the_ring(uring),
            |ws| {
                let state = format!("{:?}", ws.get_ref());
                assert!(state.contains("sending: true"), "{state}");
            },
        ),
    )
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_a_stream_with_a_receive_in_flight_closes_the_connection() {
    let Some(uring) = ring() else { return };
    bounded(async {
        let (l, addr) = listener().await;
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let mut s = accept_uring(&l, &uring).await;
        // Start a receive that nothing will complete, then drop the stream.
        let mut buf = [0u8; 16];
        let pending = tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await;
        assert!(pending.is_err(), "the read completed with nothing sent");
        drop(s);
        // The peer sees the end of the stream: the cancelled receive released the socket.
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut rest))
            .await
            .expect("the connection stayed open after the drop")
            .unwrap_or(0);
        assert_eq!(n, 0);
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn a_peer_that_vanishes_ends_the_receive_and_later_sends_fail() {
    let Some(uring) = ring() else { return };
    bounded(async {
        let (l, addr) = listener().await;
        let peer = std::net::TcpStream::connect(addr).unwrap();
        let s = accept_uring(&l, &uring).await;
        let mut ws = weft::tokio::WebSocket::from_raw(s, Role::Server, Options::default());
        // An abortive close (RST).
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer);
        assert!(ws.recv().await.is_err() || ws.recv().await.unwrap().is_none());
        let mut failed = false;
        for _ in 0..50 {
            if ws
                .send(Message::Binary(vec![0; 4096].into()))
                .await
                .is_err()
            {
                failed = true;
                break;
            }
        }
        assert!(failed, "sends to a reset connection kept succeeding");
    })
    .await
}

/// The shared attach-and-detach scenario over a TCP connection with both ends on the ring.
#[tokio::test(flavor = "current_thread")]
async fn detach_gives_the_ring_stream_back() {
    let Some(uring) = ring() else { return };
    bounded(async {
        let (l, addr) = listener().await;
        let a = uring
            .stream(std::net::TcpStream::connect(addr).unwrap())
            .unwrap();
        let b = accept_uring(&l, &uring).await;
        scenarios::attach_without_handshake_and_detach(a, b).await
    })
    .await
}

/// What a write accepted is on its way without a flush: a caller that wrote everything and
/// stops polling (it has nothing more to write, as websockd's bridge) loses nothing.
#[tokio::test(flavor = "current_thread")]
async fn written_bytes_leave_without_a_flush() {
    let Some(uring) = ring() else { return };
    bounded(async {
        let (l, addr) = listener().await;
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let mut s = accept_uring(&l, &uring).await;
        let data = payload(200_000, 7);
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 200_000];
            peer.read_exact(&mut got).await.map(|_| got)
        });
        s.write_all(&data).await.unwrap();
        // No flush: the stream stays alive and unpolled while the peer reads.
        let got = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the last write never left")
            .unwrap()
            .unwrap();
        assert!(got == data);
        drop(s);
    })
    .await
}

/// A stream dropped with a send in flight lets it finish (as a closed socket's buffer is
/// still sent): the peer gets every byte, then the end of the stream.
#[tokio::test(flavor = "current_thread")]
async fn a_send_in_flight_finishes_after_the_drop() {
    let Some(uring) = ring() else { return };
    bounded(async {
        let (l, addr) = listener().await;
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let mut s = accept_uring(&l, &uring).await;
        let data = payload(16_000_000, 9);
        let reader = tokio::spawn(async move {
            // Read slowly at first, so that the last send is still in flight at the drop.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.map(|_| got)
        });
        let mut off = 0;
        while off < data.len() {
            off += s.write(&data[off..]).await.unwrap();
        }
        let state = format!("{s:?}");
        // The kernel's socket buffers hold a few MiB at most: the last send still waits.
        assert!(state.contains("sending: true"), "{state}");
        drop(s);
        let got = reader.await.unwrap().unwrap();
        assert_eq!(got.len(), data.len(), "{state}");
        assert!(got == data);
    })
    .await
}
