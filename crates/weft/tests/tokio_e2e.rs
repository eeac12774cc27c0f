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
