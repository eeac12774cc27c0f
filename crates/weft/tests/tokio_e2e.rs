//! End-to-end tests of the tokio driver over real sockets on 127.0.0.1: handshake (accept,
//! reject, bad requests), messages both ways, Stream/Sink, the close handshake, timeouts,
//! corking, backpressure, permessage-deflate, attach and detach.
//!
//! Most of them are the scenarios in `tests/scenarios`, shared with `uring_e2e`; here they
//! run over tokio's own `TcpStream` (epoll).

#[macro_use]
mod scenarios;

use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use weft::{Error, Options};

/// Every test is bounded in time.
const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test took too long")
}

/// The stream a scenario runs on: tokio's `TcpStream` as it is.
fn tcp(s: TcpStream) -> TcpStream {
    s
}

/// One test per shared scenario, over `tcp`.
macro_rules! over_tcp {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            bounded(scenarios::$name(tcp)).await
        }
    )*};
}

every_scenario!(over_tcp);

#[tokio::test]
async fn send_waits_when_the_peer_does_not_read_and_memory_stays_bounded() {
    bounded(scenarios::send_waits_when_the_peer_does_not_read_and_memory_stays_bounded(tcp, |_| {}))
        .await
}

/// The detach scenario over an in-memory pipe: no socket at all.
#[tokio::test]
async fn attach_without_handshake_and_detach() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    bounded(scenarios::attach_without_handshake_and_detach(a, b)).await
}

/// A listener with a full backlog never completes a TCP connect: the connect timeout ends
/// it (on 127.0.0.1; a backlog of 0 holds one pending connection).
async fn full_backlog() -> (tokio::net::TcpListener, TcpStream, std::net::SocketAddr) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = sock.local_addr().unwrap();
    let l = sock.listen(0).unwrap();
    let first = TcpStream::connect(addr).await.unwrap();
    (l, first, addr)
}

#[tokio::test]
async fn connect_timeout() {
    bounded(async {
        let (_l, _first, addr) = full_backlog().await;
        let mut options = Options::default();
        options.connect_timeout = Some(Duration::from_millis(200));
        let t = std::time::Instant::now();
        let r = weft::tokio::connect_url(&format!("ws://{addr}/"), options).await;
        assert!(matches!(r, Err(Error::Timeout)), "{:?}", r.map(|_| ()));
        assert!(t.elapsed() >= Duration::from_millis(190));
    })
    .await
}

/// A transport that buffers what is written and hands it on only when flushed, as a TLS
/// stream holds its records: `poll_write` takes everything, `poll_flush` writes into a
/// small pipe and is pending while the pipe is full.
struct BuffersUntilFlushed {
    io: tokio::io::DuplexStream,
    held: Vec<u8>,
}

impl tokio::io::AsyncRead for BuffersUntilFlushed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for BuffersUntilFlushed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.held.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        while !this.held.is_empty() {
            let n = std::task::ready!(std::pin::Pin::new(&mut this.io).poll_write(cx, &this.held))?;
            this.held.drain(..n);
        }
        std::pin::Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Replies the engine queued (pongs here) are written into a transport that buffers them
/// (TLS) and whose flush is pending (the peer's window is full): the driver flushes again
/// when the transport can take more, although the engine's own queue is empty by then.
/// (It did not: the pongs stayed in the transport's buffer, and a client waiting for them
/// waited for ever; seen as a rare stall of the hostile suite's ping-flood over TLS.)
#[tokio::test]
async fn replies_held_by_a_buffering_transport_are_flushed_when_it_can_take_them() {
    use weft::proto::{Event, Role};
    bounded(async {
        let (server_end, client_end) = tokio::io::duplex(64);
        let server_io = BuffersUntilFlushed {
            io: server_end,
            held: Vec::new(),
        };
        let mut server =
            weft::tokio::WebSocket::from_raw(server_io, Role::Server, Options::default());
        let serve = tokio::spawn(async move {
            // Receives only: the pongs are the engine's own replies.
            while let Some(_msg) = server.recv().await? {}
            Ok::<_, Error>(())
        });
        let mut client =
            weft::tokio::WebSocket::from_raw(client_end, Role::Client, Options::default());
        const PINGS: usize = 200;
        for i in 0..PINGS {
            let payload = [i as u8; 100];
            client.connection_mut().ping(&payload).expect("ping");
        }
        client.flush().await.expect("flush");
        // (A pong may stand for earlier pings too: wait for the last one's.)
        let mut pongs = 0;
        loop {
            match client.next_event().await.expect("event") {
                Some(Event::Pong(p)) if p.first() == Some(&((PINGS - 1) as u8)) => break,
                Some(Event::Pong(_)) => pongs += 1,
                Some(other) => panic!("unexpected {other:?}"),
                None => panic!("closed after {pongs} pongs"),
            }
        }
        client
            .close(weft::proto::CloseCode::NORMAL, "")
            .await
            .expect("close");
        serve.await.expect("join").expect("server");
    })
    .await
}
