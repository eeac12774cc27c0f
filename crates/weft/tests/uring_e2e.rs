//! End-to-end tests of the io_uring driver (`weft::uring`) over real sockets on 127.0.0.1:
//! messages of every size both ways (server and client on the ring, and against the epoll
//! driver), many connections on one ring, backpressure with bounded memory, the close
//! handshake, a dropped stream ends its connection, detach gives the stream back, and a
//! peer that vanishes; multishot receives on the provided-buffer pool (exhaustion, drop,
//! re-arming) and the single-shot path; then the scenarios in `tests/scenarios`, shared
//! with `tokio_e2e`, with both ends on the ring. Where io_uring is forbidden (seccomp),
//! each test says so and passes only after checking that the refusal is a clean error.
#![cfg(all(feature = "uring", target_os = "linux"))]

#[macro_use]
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

every_scenario!(on_the_ring);

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// An echo server on the ring: every message back until the close.
fn spawn_echo(l: TcpListener, uring: Uring, conns: usize) -> tokio::task::JoinHandle<()> {
    spawn_echo_with(l, uring, conns, false)
}

/// [`spawn_echo`], its WebSockets `with_ring_buffers` if `ring_buffers`.
fn spawn_echo_with(
    l: TcpListener,
    uring: Uring,
    conns: usize,
    ring_buffers: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let s = accept_uring(&l, &uring).await;
            tasks.push(tokio::spawn(async move {
                let mut ws = weft::tokio::accept(s).await.unwrap();
                if ring_buffers {
                    ws = ws.with_ring_buffers();
                }
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

/// Both ends on `uring`: every size echoed, then the close handshake.
async fn echo_every_size_on(uring: Uring) {
    echo_every_size_with(uring, false).await
}

/// [`echo_every_size_on`], both ends `with_ring_buffers` if `ring_buffers`.
async fn echo_every_size_with(uring: Uring, ring_buffers: bool) {
    bounded(async {
        let (l, addr) = listener().await;
        let server = spawn_echo_with(l, uring.clone(), 1, ring_buffers);
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        let url = format!("ws://{addr}/");
        let (mut ws, _) = weft::tokio::connect(&url, uring.stream(tcp).unwrap())
            .await
            .unwrap();
        if ring_buffers {
            ws = ws.with_ring_buffers();
        }
        echo_every_size(&mut ws).await;
        ws.close(CloseCode::NORMAL, "done").await.unwrap();
        server.await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn echo_every_size_with_both_ends_on_the_ring() {
    let Some(uring) = ring() else { return };
    echo_every_size_on(uring).await
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

/// Whether the running kernel is at least `major.minor` (from /proc/sys/kernel/osrelease).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    (next(), next()) >= (major, minor)
}

/// A ring on a current-thread runtime runs completions' task work cooperatively (where the
/// kernel has it: 5.19+); one on a multi-thread runtime does not, and both echo.
#[test]
fn the_ring_is_cooperative_only_on_a_current_thread_runtime() {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (rt, on_current) in [(current, true), (multi, false)] {
        rt.block_on(async {
            let Some(uring) = ring() else { return };
            if on_current && !kernel_at_least(5, 19) {
                eprintln!("kernel older than 5.19: no cooperative task running to check");
            } else {
                assert_eq!(uring.cooperative(), on_current);
            }
            echo_every_size_on(uring).await
        });
    }
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

// ---- Multishot receives on the ring's provided-buffer pool ----

/// `n` connections accepted onto the ring, each with a peer thread that writes `each`
/// bytes of `payload(each, i)` (then shuts its write side) and is given back at its end.
fn peers_writing(
    uring: &Uring,
    n: usize,
    each: impl Fn(usize) -> usize,
) -> (Vec<UringStream>, Vec<std::thread::JoinHandle<()>>) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut streams = Vec::new();
    let mut peers = Vec::new();
    for i in 0..n {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        let (s, _) = l.accept().unwrap();
        streams.push(uring.stream(s).unwrap());
        let data = payload(each(i), i as u8);
        peers.push(std::thread::spawn(move || {
            tcp.set_write_timeout(Some(LIMIT)).unwrap();
            // The reader may be dropped (tests of the drop): then the write fails.
            if tcp.write_all(&data).is_ok() {
                let _ = tcp.shutdown(std::net::Shutdown::Write);
            }
        }));
    }
    (streams, peers)
}

/// Waits (bounded) until the pool's state satisfies `f`; the last state seen.
async fn pool_until(uring: &Uring, f: impl Fn((usize, usize, u64)) -> bool) -> (usize, usize, u64) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = uring.pool_state().unwrap();
        if f(st) || tokio::time::Instant::now() > until {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the pool's free count stops changing for 200 ms.
async fn pool_settles(uring: &Uring) -> (usize, usize, u64) {
    let mut last = uring.pool_state().unwrap();
    let mut still = 0;
    while still < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = uring.pool_state().unwrap();
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    last
}

/// The ring with a pool, or `None` (with a line saying why).
fn ring_with_pool() -> Option<Uring> {
    let uring = ring()?;
    if uring.pool_state().is_none() {
        eprintln!("no provided-buffer pool here (single-shot receives): test skipped");
        return None;
    }
    Some(uring)
}

#[tokio::test(flavor = "current_thread")]
async fn readers_that_stop_exhaust_the_pool_and_lose_nothing() {
    let Some(uring) = ring_with_pool() else {
        return;
    };
    bounded(async {
        const CONNS: usize = 24;
        const EACH: usize = 600_000;
        let (mut streams, peers) = peers_writing(&uring, CONNS, |_| EACH);
        // Each reads its first byte (arming its receive), then stops reading.
        for (i, s) in streams.iter_mut().enumerate() {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], payload(1, i as u8)[0]);
        }
        let (free, total, _) = pool_until(&uring, |(free, _, _)| free == 0).await;
        assert_eq!(free, 0, "the pool is not exhausted");
        let (_, _, enobufs) = pool_settles(&uring).await;
        eprintln!("pool of {total}: exhausted, {enobufs} receives ended without buffers");
        assert!(enobufs > 0);
        // Now they all read, at once: every byte, in order.
        let mut tasks = Vec::new();
        for (i, mut s) in streams.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                assert!(got == payload(EACH, i as u8)[1..], "connection {i}");
                s
            }));
        }
        let mut streams = Vec::new();
        for t in tasks {
            streams.push(t.await.unwrap());
        }
        assert_eq!(
            uring.pool_state().unwrap().0,
            total,
            "buffers kept after EOF"
        );
        drop(streams);
        for p in peers {
            p.join().unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn dropped_streams_give_their_queued_buffers_back() {
    let Some(uring) = ring_with_pool() else {
        return;
    };
    bounded(async {
        let (mut streams, peers) = peers_writing(&uring, 12, |_| 300_000);
        for s in &mut streams {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
        }
        let (free, total, _) = pool_settles(&uring).await;
        assert!(free < total, "nothing was queued");
        drop(streams);
        let (free, total, _) = pool_until(&uring, |(free, total, _)| free == total).await;
        assert_eq!(free, total, "buffers lost with the dropped streams");
        for p in peers {
            p.join().unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_whose_receive_ran_out_of_buffers_reads_on() {
    use std::io::Write;
    let Some(uring) = ring_with_pool() else {
        return;
    };
    bounded(async {
        // The victim: armed (it read a first byte), then idle while the pool empties.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let mut victim = uring.stream(l.accept().unwrap().0).unwrap();
        peer.write_all(b"a").unwrap();
        let mut b = [0u8; 1];
        victim.read_exact(&mut b).await.unwrap();
        // Hogs that do not read take the whole pool.
        let (mut hogs, peers) = peers_writing(&uring, 16, |_| 400_000);
        for s in &mut hogs {
            s.read_exact(&mut b).await.unwrap();
        }
        pool_until(&uring, |(free, _, _)| free == 0).await;
        let (free, _, before) = pool_settles(&uring).await;
        assert_eq!(free, 0);
        // The victim's bytes find no buffer: its receive ends (ENOBUFS)...
        let first = payload(5000, 7);
        peer.write_all(&first).unwrap();
        let (_, _, after) = pool_until(&uring, |(_, _, n)| n > before).await;
        assert!(
            after > before,
            "the victim's receive did not end without buffers"
        );
        // ... and its next read gets them all the same (the pool is still empty).
        let mut got = vec![0u8; first.len()];
        victim.read_exact(&mut got).await.unwrap();
        assert_eq!(got, first);
        // The hogs read everything; then the victim's receive is multishot again.
        let mut tasks = Vec::new();
        for (i, mut s) in hogs.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                assert!(got == payload(400_000, i as u8)[1..], "hog {i}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let (free, total, _) = uring.pool_state().unwrap();
        assert_eq!(free, total);
        let second = payload(200_000, 9);
        let writer = std::thread::spawn(move || {
            peer.write_all(&second).unwrap();
            peer
        });
        let mut got = vec![0u8; 200_000];
        victim.read_exact(&mut got).await.unwrap();
        assert_eq!(got, payload(200_000, 9));
        let peer = writer.join().unwrap();
        drop(peer);
        let mut rest = Vec::new();
        victim.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        for p in peers {
            p.join().unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn echo_every_size_with_single_shot_receives() {
    // The path of kernels without buffer rings, asked for.
    let Some(uring) = single_shot_ring() else {
        return;
    };
    assert!(uring.pool_state().is_none());
    echo_every_size_on(uring).await
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_read_a_byte_at_a_time_gets_every_byte_in_order() {
    // Partly read pool buffers, across many completions.
    let Some(uring) = ring_with_pool() else {
        return;
    };
    bounded(async {
        let (mut streams, peers) = peers_writing(&uring, 1, |_| 100_000);
        let s = &mut streams[0];
        let mut got = Vec::new();
        let mut chunk = [0u8; 7];
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got == payload(100_000, 0));
        drop(streams);
        let (free, total, _) = pool_until(&uring, |(free, total, _)| free == total).await;
        assert_eq!(free, total);
        for p in peers {
            p.join().unwrap();
        }
    })
    .await;
}

/// `with_ring_buffers` on both ends, with the pool: every size echoed (large reads go into
/// the engine's room, large payloads out from its `Bytes`; small reads from the pool).
#[tokio::test(flavor = "current_thread")]
async fn echo_every_size_with_ring_buffers() {
    let Some(uring) = ring() else { return };
    echo_every_size_through_ring_buffers(uring).await
}

/// Every size echoed `with_ring_buffers`, and both of the engine's own paths were taken.
async fn echo_every_size_through_ring_buffers(uring: Uring) {
    echo_every_size_with(uring.clone(), true).await;
    let (rooms, sendmsgs) = uring.ring_buffer_counts();
    assert!(
        rooms > 0 && sendmsgs > 0,
        "{rooms} rooms, {sendmsgs} sendmsgs"
    );
}

/// An echo of large messages one at a time `with_ring_buffers`: each echo is sent from the
/// message's own memory while the next receive starts; once that send completed, the
/// payload goes back to the engine (`Connection::recycle`) and takes the read after, so
/// a connection alternates between two buffers instead of allocating one per message.
#[tokio::test(flavor = "current_thread")]
async fn large_payloads_sent_go_back_to_the_engine() {
    let Some(uring) = ring() else { return };
    bounded(async {
        let (l, addr) = listener().await;
        let server = spawn_echo_with(l, uring.clone(), 1, true);
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut ws, _) = weft::tokio::connect(&format!("ws://{addr}/"), tcp)
            .await
            .unwrap();
        for k in 0..20 {
            let m = Message::Binary(Bytes::from(payload(64 * 1024, k)));
            ws.send(m.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(m));
        }
        // (Small ones are copied into the send, not sent from the engine's memory.)
        let before = uring.recycled_count();
        for k in 0..20 {
            let m = Message::Binary(Bytes::from(payload(1000, k)));
            ws.send(m.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(m));
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        server.await.unwrap();
        // Every echo's payload but the last one or two (still in flight at the next read).
        assert!(before >= 18, "{before} of 20 payloads went back");
        assert!(uring.recycled_count() <= before + 1);
    })
    .await
}

/// A ring with single-shot receives only (no pool), or `None` where io_uring is forbidden.
fn single_shot_ring() -> Option<Uring> {
    ring()?;
    Some(Uring::start_with(false).unwrap())
}

/// The same without a pool: every read goes into the engine's room.
#[tokio::test(flavor = "current_thread")]
async fn echo_every_size_with_ring_buffers_and_single_shot_receives() {
    let Some(uring) = single_shot_ring() else {
        return;
    };
    echo_every_size_through_ring_buffers(uring).await
}

/// Without `with_ring_buffers` nothing goes through the engine's own buffers.
#[tokio::test(flavor = "current_thread")]
async fn without_ring_buffers_everything_goes_through_async_read_and_write() {
    let Some(uring) = single_shot_ring() else {
        return;
    };
    echo_every_size_with(uring.clone(), false).await;
    assert_eq!(uring.ring_buffer_counts(), (0, 0));
}

/// A WebSocket taken apart (`into_inner`) while a receive into its room is in flight: the
/// bytes that receive brings are read from the stream afterwards, after those the engine
/// held (the start of a frame), in order.
#[tokio::test(flavor = "current_thread")]
async fn a_room_given_up_in_flight_loses_nothing() {
    // No pool: every read goes into the engine's room.
    let Some(uring) = single_shot_ring() else {
        return;
    };
    bounded(async {
        let (l, addr) = listener().await;
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let s = accept_uring(&l, &uring).await;
        let mut ws = weft::tokio::WebSocket::from_raw(s, Role::Client, Options::default())
            .with_ring_buffers();
        // The start of a frame (binary, 300 bytes, unmasked: from a server): its header and
        // 100 bytes of its payload.
        let mut head = vec![0x82, 126, 0x01, 0x2c];
        head.extend(payload(100, 1));
        peer.write_all(&head).await.unwrap();
        // The receive waits for the rest, in the room; given up.
        let r = tokio::time::timeout(Duration::from_millis(200), ws.recv()).await;
        assert!(r.is_err(), "a message came from half a frame: {r:?}");
        assert_eq!(
            uring.ring_buffer_counts().0,
            2,
            "the second read went into the room"
        );
        let (mut s, held) = ws.into_inner();
        // The engine parsed the header: what it held is the payload so far.
        assert_eq!(&held[..], &payload(100, 1)[..]);
        // The rest arrives while the room's receive is still in flight.
        peer.write_all(&payload(200, 2)).await.unwrap();
        let mut rest = vec![0u8; 200];
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, payload(200, 2));
    })
    .await
}

/// Large messages fed to a peer that does not read: the feed waits (the engine's queue
/// bounded) while one `sendmsg` of held payloads is in flight, and once the peer reads,
/// every byte of every message arrives in order.
#[tokio::test(flavor = "current_thread")]
async fn held_payloads_wait_for_a_slow_peer_and_arrive_whole() {
    let Some(uring) = ring() else { return };
    bounded(async {
        let (l, addr) = listener().await;
        let peer = TcpStream::connect(addr).await.unwrap();
        let s = accept_uring(&l, &uring).await;
        let mut options = Options::default();
        options.write_buffer_limit = 128 * 1024;
        let mut ws = weft::tokio::WebSocket::from_raw(s, Role::Server, options).with_ring_buffers();
        const N: usize = 100_000;
        let mut sent = 0u8;
        loop {
            let msg = Message::Binary(Bytes::from(payload(N, sent)));
            match tokio::time::timeout(Duration::from_millis(300), ws.feed(msg)).await {
                Ok(r) => {
                    r.unwrap();
                    sent += 1;
                    assert!(sent < 200, "feed never waited");
                    assert!(ws.connection().queued_bytes() <= 128 * 1024 + N + 64);
                }
                Err(_) => break,
            }
        }
        assert!(uring.ring_buffer_counts().1 > 0, "no sendmsg");
        // The peer reads every frame now (the one cut by the timeout was queued whole).
        let reader = tokio::spawn(async move {
            let mut peer = peer;
            let mut got = Vec::new();
            loop {
                let mut head = [0u8; 10];
                if peer.read_exact(&mut head[..2]).await.is_err() {
                    break;
                }
                assert_eq!(head[0], 0x82);
                if head[1] == 0x88 || head[0] & 0x0f == 8 {
                    break;
                }
                assert_eq!(head[1], 127);
                peer.read_exact(&mut head[2..10]).await.unwrap();
                let len = u64::from_be_bytes(head[2..10].try_into().unwrap()) as usize;
                assert_eq!(len, N);
                let mut body = vec![0u8; len];
                peer.read_exact(&mut body).await.unwrap();
                got.push(body);
            }
            got
        });
        ws.flush().await.unwrap();
        drop(ws);
        let got = reader.await.unwrap();
        assert!(got.len() >= sent as usize, "{} of {sent}", got.len());
        for (i, body) in got.iter().enumerate() {
            assert!(*body == payload(N, i as u8), "message {i} differs");
        }
    })
    .await
}

/// More quiet connections than the submission queue has entries: the idle sweep still
/// cancels every one's receive (it submits the queue when it is full, and goes on sweeping
/// while receives into rooms are left), so each gives its room back.
#[tokio::test(flavor = "current_thread")]
async fn the_idle_sweep_reaches_more_connections_than_the_queue_holds() {
    if ring_with_pool().is_none() {
        return;
    }
    let uring = Uring::start_sized(true, 8).unwrap();
    uring.set_idle_after(Some(Duration::from_millis(200)));
    bounded(async {
        const CONNS: usize = 40;
        let (l, addr) = listener().await;
        let server = spawn_echo_with(l, uring.clone(), CONNS, true);
        let mut clients = Vec::new();
        for _ in 0..CONNS {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (ws, _) = weft::tokio::connect(&format!("ws://{addr}/"), tcp)
                .await
                .unwrap();
            clients.push(ws);
        }
        // Every server side waits in a receive into its room; quiet for 5 sweeps.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(uring.idle_count(), CONNS as u64, "rooms given back");
        // And they all still work, through the pool and then their rooms again.
        for (i, ws) in clients.iter_mut().enumerate() {
            ws.send(format!("hello {i}")).await.unwrap();
            assert_eq!(
                ws.recv().await.unwrap(),
                Some(Message::from(format!("hello {i}")))
            );
        }
        for mut ws in clients {
            ws.close(CloseCode::NORMAL, "").await.unwrap();
        }
        server.await.unwrap();
    })
    .await
}

/// A busy connection receives straight into the engine's room, small messages too (at
/// 512 connections this took 0.79x the server CPU per echo of reading through the pool:
/// FINDINGS); one that stays quiet for the idle time gets its room back (the receive is
/// cancelled: it then holds no receive buffer) and reads from the pool, and goes back to
/// its room when data comes again.
#[tokio::test(flavor = "current_thread")]
async fn a_quiet_connection_gives_its_room_back_and_reads_from_the_pool() {
    let Some(uring) = ring_with_pool() else {
        return;
    };
    uring.set_idle_after(Some(Duration::from_millis(300)));
    bounded(async {
        let (l, addr) = listener().await;
        let server = spawn_echo_with(l, uring.clone(), 1, true);
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        let (ws, _) = weft::tokio::connect(&format!("ws://{addr}/"), uring.stream(tcp).unwrap())
            .await
            .unwrap();
        let mut ws = ws.with_ring_buffers();
        let echo = |n: usize, seed: u8| Message::Binary(Bytes::from(payload(n, seed)));
        for k in 0..10 {
            ws.send(echo(200_000, k)).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(echo(200_000, k)));
        }
        let (after_large, _) = uring.ring_buffer_counts();
        for k in 0..40 {
            ws.send(echo(100, k)).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(echo(100, k)));
        }
        let (busy, _) = uring.ring_buffer_counts();
        assert!(
            busy >= after_large + 40,
            "small messages on a busy connection: {} rooms for 40 echoes",
            busy - after_large
        );
        assert_eq!(uring.idle_count(), 0, "nobody was quiet yet");
        // The server's echo task waits in a receive into its room: quiet for 4x the idle
        // time, that receive is cancelled (the client is not reading meanwhile).
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            uring.idle_count(),
            1,
            "the quiet server side gave its room back"
        );
        let (quiet, _) = uring.ring_buffer_counts();
        // The next message arrives through the pool, and the ones after it into rooms again.
        for k in 0..10 {
            ws.send(echo(100, k)).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(echo(100, k)));
        }
        let (again, _) = uring.ring_buffer_counts();
        assert!(again >= quiet + 9, "back to rooms: {}", again - quiet);
        assert_eq!(uring.idle_count(), 1);
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        server.await.unwrap();
    })
    .await
}
