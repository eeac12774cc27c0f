//! End-to-end scenarios shared by the drivers' tests: each runs `weft::tokio::WebSocket`
//! over real sockets on 127.0.0.1, with both ends of the connection on the stream that
//! `wrap` makes of an accepted or connected `tokio::net::TcpStream`. `tokio_e2e` runs them
//! over the tokio `TcpStream` itself (epoll), `uring_e2e` over `weft::uring::UringStream`.
//!
//! The scenarios do not bound themselves in time: each test file does, with its own limit.
//! Included with `#[macro_use] mod scenarios;` (a directory, so cargo does not build it as
//! a test of its own); `every_scenario!(m)` hands each transport's test macro `m` the name
//! of every scenario that takes only the wrap, so a scenario added here runs on both.

/// Calls the macro `$m` with the names of the scenarios below that take only `wrap`.
macro_rules! every_scenario {
    ($m:ident) => {
        $m!(
            echo_with_subprotocol_and_request_details,
            rejected_by_the_application_with_a_status,
            bad_requests_get_their_4xx,
            protocol_error_gets_the_close_code,
            stream_and_sink,
            fed_messages_are_written_by_the_next_receive,
            keepalive_fails_a_silent_peer,
            keepalive_keeps_a_live_peer,
            keepalive_waits_while_the_peer_talks,
            close_timeout_when_the_peer_never_answers,
            handshake_timeout,
            permessage_deflate_is_negotiated_and_used,
        );
    };
}

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use std::fmt::Debug;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft::proto::handshake::{ClientRequest, HandshakeError};
use weft::{Accept, CloseCode, Error, Message, Options, Reject, Role};

/// What a scenario runs on: the stream of one end of a connection (`Debug` for the
/// messages of failed assertions).
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Debug + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + Debug + 'static> Transport for S {}

/// Makes the stream a scenario uses of a TCP connection (either end).
pub trait Wrap<S>: Fn(TcpStream) -> S + Clone + Send + Sync + 'static {}
impl<S, F: Fn(TcpStream) -> S + Clone + Send + Sync + 'static> Wrap<S> for F {}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", l.local_addr().unwrap());
    (l, url)
}

/// The server's end of the next connection on `l`.
async fn accept<S: Transport>(l: &TcpListener, wrap: &impl Wrap<S>) -> S {
    let (stream, _) = l.accept().await.unwrap();
    wrap(stream)
}

/// The client's end of a new connection to `url` (`ws://HOST:PORT...`).
async fn connect<S: Transport>(url: &str, wrap: &impl Wrap<S>) -> S {
    let addr = url[5..].split('/').next().unwrap();
    wrap(TcpStream::connect(addr).await.unwrap())
}

pub async fn echo_with_subprotocol_and_request_details<S: Transport>(wrap: impl Wrap<S>) {
    let (l, url) = listener().await;
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let (mut ws, request) = weft::tokio::accept_with(stream, Options::default(), |req| {
            assert_eq!(req.resource(), "/chat?room=1");
            assert_eq!(req.origin(), Some("http://example.test"));
            assert_eq!(req.headers()["x-token"], "secret");
            assert!(req.host().unwrap().starts_with("127.0.0.1:"));
            Ok(Accept::new().protocol("v2").header("X-Served-By", "weft"))
        })
        .await
        .unwrap();
        assert_eq!(request.protocols(), vec!["v1", "v2"]);
        while let Some(m) = ws.recv().await.unwrap() {
            ws.send(m).await.unwrap();
        }
        ws.connection().close_status()
    });
    let stream = connect(&url, &wrap).await;
    let request = ClientRequest::builder(&format!("{url}/chat?room=1"))
        .origin("http://example.test")
        .protocols(["v1", "v2"])
        .header("X-Token", "secret")
        .build()
        .unwrap();
    let (mut ws, response) = weft::tokio::connect_with(&request, stream, Options::default())
        .await
        .unwrap();
    assert_eq!(response.protocol(), Some("v2"));
    assert_eq!(response.headers()["x-served-by"], "weft");
    ws.send("héllo").await.unwrap();
    ws.send(Bytes::from_static(&[0, 1, 2])).await.unwrap();
    let big = vec![7u8; 300_000];
    ws.send(big.clone()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("héllo")));
    assert_eq!(
        ws.recv().await.unwrap(),
        Some(Message::Binary(Bytes::from_static(&[0, 1, 2])))
    );
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from(big)));
    ws.close(CloseCode::NORMAL, "done").await.unwrap();
    assert_eq!(ws.connection().close_status(), CloseCode::NORMAL);
    assert_eq!(server.await.unwrap(), CloseCode::NORMAL);
}

pub async fn rejected_by_the_application_with_a_status<S: Transport>(wrap: impl Wrap<S>) {
    let (l, url) = listener().await;
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let r = weft::tokio::accept_with(stream, Options::default(), |req| {
            if req.origin() == Some("http://evil.test") {
                Err(Reject::new(StatusCode::FORBIDDEN, "origin not allowed"))
            } else {
                Ok(Accept::new())
            }
        })
        .await;
        assert!(r.is_err());
    });
    let stream = connect(&url, &wrap).await;
    let request = ClientRequest::builder(&url)
        .origin("http://evil.test")
        .build()
        .unwrap();
    let err = weft::tokio::connect_with(&request, stream, Options::default())
        .await
        .unwrap_err();
    match err {
        Error::Handshake(h) => {
            assert!(matches!(h, HandshakeError::UnexpectedStatus { .. }), "{h}");
            assert!(h.to_string().contains("403"), "{h}");
        }
        other => panic!("{other}"),
    }
    server.await.unwrap();
}

pub async fn bad_requests_get_their_4xx<S: Transport>(wrap: impl Wrap<S>) {
    let (l, url) = listener().await;
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        for _ in 0..3 {
            let stream = accept(&l, &w).await;
            assert!(weft::tokio::accept(stream).await.is_err());
        }
    });
    let cases: [(&str, &str); 3] = [
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
        ("POST / HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            "426",
        ),
    ];
    for (request, status) in cases {
        let mut s = connect(&url, &wrap).await;
        s.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{reply}");
        if status == "426" {
            assert!(reply.contains("Sec-WebSocket-Version: 13"), "{reply}");
        }
    }
    server.await.unwrap();
}

pub async fn protocol_error_gets_the_close_code<S: Transport>(wrap: impl Wrap<S>) {
    let (l, url) = listener().await;
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let mut ws = weft::tokio::accept(stream).await.unwrap();
        let err = ws.recv().await.unwrap_err();
        assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL_ERROR));
    });
    let stream = connect(&url, &wrap).await;
    let (ws, _) = weft::tokio::connect(&url, stream).await.unwrap();
    let (mut raw, _) = ws.into_inner();
    // A masked frame with a reserved opcode.
    raw.write_all(&[0x83, 0x80, 1, 2, 3, 4]).await.unwrap();
    let mut reply = Vec::new();
    raw.read_to_end(&mut reply).await.unwrap();
    assert_eq!(&reply[..4], &[0x88, reply[1], 0x03, 0xea]); // close, 1002
    server.await.unwrap();
}

pub async fn stream_and_sink<S: Transport>(wrap: impl Wrap<S>) {
    let (l, url) = listener().await;
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let mut ws = weft::tokio::accept(stream).await.unwrap();
        while let Some(m) = ws.next().await {
            ws.feed(m.unwrap()).await.unwrap();
            ws.flush().await.unwrap();
        }
    });
    let stream = connect(&url, &wrap).await;
    let (mut ws, _) = weft::tokio::connect(&url, stream).await.unwrap();
    for i in 0..100 {
        ws.feed(Message::from(format!("m{i}"))).await.unwrap();
    }
    SinkExt::<Message>::flush(&mut ws).await.unwrap();
    for i in 0..100 {
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::from(format!("m{i}"))
        );
    }
    SinkExt::<Message>::close(&mut ws).await.unwrap();
    assert!(ws.next().await.is_none());
    server.await.unwrap();
}

pub async fn fed_messages_are_written_by_the_next_receive<S: Transport>(wrap: impl Wrap<S>) {
    let (l, url) = listener().await;
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let mut ws = weft::tokio::accept(stream).await.unwrap();
        let mut n = 0;
        while let Some(_m) = ws.recv().await.unwrap() {
            n += 1;
            if n == 50 {
                ws.send("got 50").await.unwrap();
            }
        }
        n
    });
    let stream = connect(&url, &wrap).await;
    let (mut ws, _) = weft::tokio::connect(&url, stream).await.unwrap();
    for i in 0..50 {
        ws.feed(Message::from(format!("{i}"))).await.unwrap();
    }
    // No flush: recv writes what is queued before it waits.
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("got 50")));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    assert_eq!(server.await.unwrap(), 50);
}

/// A client with a 64 KiB write-buffer limit feeds 16 KiB messages to a server that does
/// not read: once the socket buffers are full a feed must wait, and the engine's queue
/// never holds much more than the limit plus one message. `while_blocked` then looks at
/// the client (while the feed waits) for what the driver itself should show.
pub async fn send_waits_when_the_peer_does_not_read_and_memory_stays_bounded<S: Transport>(
    wrap: impl Wrap<S>,
    while_blocked: impl FnOnce(&weft::tokio::WebSocket<S>),
) {
    let (l, url) = listener().await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let ws = weft::tokio::accept(stream).await.unwrap();
        // Never reads until told.
        let _ = stop_rx.await;
        drop(ws);
    });
    let stream = connect(&url, &wrap).await;
    let mut options = Options::default();
    options.write_buffer_limit = 64 * 1024;
    let (mut ws, _) =
        weft::tokio::connect_with(&ClientRequest::new(&url).unwrap(), stream, options)
            .await
            .unwrap();
    let chunk = Bytes::from(vec![1u8; 16 * 1024]);
    let mut sent = 0usize;
    let mut max_queued = 0;
    // Feed until a feed blocks: the socket buffers fill, then feed must wait.
    loop {
        let r = tokio::time::timeout(Duration::from_millis(300), ws.feed(chunk.clone())).await;
        max_queued = max_queued.max(ws.connection().queued_bytes());
        match r {
            Ok(res) => {
                res.unwrap();
                sent += 1;
                assert!(sent < 100_000, "feed never waited");
            }
            Err(_) => break,
        }
    }
    // The queue never held much more than the limit plus one message.
    assert!(
        max_queued <= 64 * 1024 + 16 * 1024 + 64,
        "queued {max_queued}"
    );
    while_blocked(&ws);
    stop_tx.send(()).unwrap();
    server.await.unwrap();
}

pub async fn keepalive_fails_a_silent_peer<S: Transport>(wrap: impl Wrap<S>) {
    let (l, url) = listener().await;
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let mut options = Options::default();
        options.ping_interval = Some(Duration::from_millis(100));
        options.pong_timeout = Duration::from_millis(200);
        let (mut ws, _) = weft::tokio::accept_with(stream, options, |_| Ok(Accept::new()))
            .await
            .unwrap();
        let start = std::time::Instant::now();
        let err = ws.recv().await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
        start.elapsed()
    });
    let stream = connect(&url, &wrap).await;
    let (ws, _) = weft::tokio::connect(&url, stream).await.unwrap();
    // A peer that is there but answers nothing: take the raw stream and read only.
    let (mut raw, rest) = ws.into_inner();
    let mut got = rest.to_vec();
    if got.is_empty() {
        let mut more = [0u8; 64];
        let n = raw.read(&mut more).await.unwrap();
        got.extend_from_slice(&more[..n]);
    }
    assert_eq!(got[0], 0x89, "a keepalive ping arrives first"); // ping, unmasked
    let waited = server.await.unwrap();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
}

pub async fn keepalive_keeps_a_live_peer<S: Transport>(wrap: impl Wrap<S>) {
    let (l, url) = listener().await;
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let mut options = Options::default();
        options.ping_interval = Some(Duration::from_millis(50));
        options.pong_timeout = Duration::from_millis(150);
        let (mut ws, _) = weft::tokio::accept_with(stream, options, |_| Ok(Accept::new()))
            .await
            .unwrap();
        ws.recv().await
    });
    let stream = connect(&url, &wrap).await;
    let (mut ws, _) = weft::tokio::connect(&url, stream).await.unwrap();
    // The client answers pings while it waits; 600 ms is many intervals.
    let r = tokio::time::timeout(Duration::from_millis(600), ws.recv()).await;
    assert!(r.is_err(), "nothing to receive");
    ws.send("still here").await.unwrap();
    assert_eq!(
        server.await.unwrap().unwrap(),
        Some(Message::from("still here"))
    );
}

/// Messages keep the keepalive quiet: a peer that talks more often than the interval is
/// never pinged (the timer, armed before the messages, is moved on when it fires), and one
/// that goes quiet is pinged an interval after its last message.
pub async fn keepalive_waits_while_the_peer_talks<S: Transport>(wrap: impl Wrap<S>) {
    const INTERVAL: Duration = Duration::from_millis(250);
    let (l, url) = listener().await;
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let mut options = Options::default();
        options.ping_interval = Some(INTERVAL);
        options.pong_timeout = Duration::from_secs(5);
        let (mut ws, _) = weft::tokio::accept_with(stream, options, |_| Ok(Accept::new()))
            .await
            .unwrap();
        let mut got = 0;
        while let Ok(Some(_)) = ws.recv().await {
            got += 1;
        }
        got
    });
    let stream = connect(&url, &wrap).await;
    let (ws, _) = weft::tokio::connect(&url, stream).await.unwrap();
    let (mut raw, rest) = ws.into_inner();
    assert!(rest.is_empty(), "{rest:?}");
    // "hi", masked with a zero key: one message every fifth of the interval, for four
    // intervals.
    let frame = [0x81, 0x82, 0, 0, 0, 0, b'h', b'i'];
    let talk = std::time::Instant::now();
    for _ in 0..20 {
        raw.write_all(&frame).await.unwrap();
        tokio::time::sleep(INTERVAL / 5).await;
    }
    let talked = talk.elapsed();
    let mut first = [0u8; 1];
    let quiet = std::time::Instant::now();
    let early = tokio::time::timeout(Duration::from_millis(1), raw.read(&mut first)).await;
    assert!(
        early.is_err(),
        "pinged while the peer talked ({talked:?}): {first:?}"
    );
    raw.read_exact(&mut first).await.unwrap();
    assert_eq!(first[0], 0x89, "a keepalive ping once the peer is quiet");
    assert!(quiet.elapsed() < INTERVAL * 4, "{:?}", quiet.elapsed());
    drop(raw);
    assert_eq!(server.await.unwrap(), 20);
}

pub async fn close_timeout_when_the_peer_never_answers<S: Transport>(wrap: impl Wrap<S>) {
    let (l, url) = listener().await;
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let mut options = Options::default();
        options.close_timeout = Duration::from_millis(200);
        let (mut ws, _) = weft::tokio::accept_with(stream, options, |_| Ok(Accept::new()))
            .await
            .unwrap();
        ws.close(CloseCode::GOING_AWAY, "bye").await
    });
    let stream = connect(&url, &wrap).await;
    let (ws, _) = weft::tokio::connect(&url, stream).await.unwrap();
    let (mut raw, rest) = ws.into_inner();
    // The close frame may have come with the handshake response: it is in `rest`.
    let mut got = rest.to_vec();
    while got.len() < 2 {
        let mut more = [0u8; 16];
        let n = raw.read(&mut more).await.unwrap();
        assert!(n > 0, "EOF before the close frame");
        got.extend_from_slice(&more[..n]);
    }
    assert_eq!(got[0], 0x88);
    // Never answer; the server gives up after its close timeout.
    let r = server.await.unwrap();
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
}

pub async fn handshake_timeout<S: Transport>(wrap: impl Wrap<S>) {
    let (l, url) = listener().await;
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let mut options = Options::default();
        options.handshake_timeout = Some(Duration::from_millis(200));
        weft::tokio::accept_with(stream, options, |_| Ok(Accept::new()))
            .await
            .map(|_| ())
    });
    let mut s = connect(&url, &wrap).await;
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap(); // and nothing more
    let r = server.await.unwrap();
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
}

pub async fn permessage_deflate_is_negotiated_and_used<S: Transport>(wrap: impl Wrap<S>) {
    let (l, url) = listener().await;
    let mut server_options = Options::default();
    server_options.deflate = Some(weft::proto::deflate::DeflateConfig {
        client_no_context_takeover: true,
        ..Default::default()
    });
    let w = wrap.clone();
    let server = tokio::spawn(async move {
        let stream = accept(&l, &w).await;
        let (mut ws, _) = weft::tokio::accept_with(stream, server_options, |_| Ok(Accept::new()))
            .await
            .unwrap();
        let negotiated = ws.connection().config().deflate;
        while let Some(m) = ws.recv().await.unwrap() {
            ws.send(m).await.unwrap();
        }
        negotiated
    });
    let mut options = Options::default();
    let offer = weft::proto::deflate::DeflateConfig::default();
    // connect_with sends the request as given: the offer goes in it.
    let request = ClientRequest::builder(&url)
        .extensions(&[offer.offer()])
        .build()
        .unwrap();
    options.deflate = Some(offer);
    let stream = connect(&url, &wrap).await;
    let (mut ws, response) = weft::tokio::connect_with(&request, stream, options)
        .await
        .unwrap();
    assert!(response
        .extensions()
        .iter()
        .any(|e| e.name == "permessage-deflate"));
    let params = ws.connection().config().deflate.expect("deflate on").params;
    assert!(params.client_no_context_takeover, "the server asked for it");
    let text = "compressible text, over and over. ".repeat(10_000);
    ws.send(text.as_str()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from(text)));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    assert_eq!(server.await.unwrap().map(|d| d.params), Some(params));
}

/// Two ends of a connection, no handshake: a message over it, then both detach (the close
/// handshake) and the raw streams carry plain bytes; a write shutdown reaches the peer as
/// the end of the stream.
pub async fn attach_without_handshake_and_detach<S: Transport>(a: S, b: S) {
    let mut client = weft::tokio::WebSocket::from_raw(a, Role::Client, Options::default());
    let mut server = weft::tokio::WebSocket::from_raw(b, Role::Server, Options::default());
    client.send("over a pipe").await.unwrap();
    assert_eq!(
        server.recv().await.unwrap(),
        Some(Message::from("over a pipe"))
    );
    // Detach both: the close handshake, then the raw stream back.
    let (client_done, server_done) =
        tokio::join!(client.detach(CloseCode::NORMAL, "switching"), async {
            // The server sees the close, replies, and hands the stream back too.
            assert_eq!(server.recv().await.unwrap(), None);
            server.detach(CloseCode::NORMAL, "").await
        });
    let (mut a, rest_a) = client_done.unwrap();
    let (mut b, rest_b) = server_done.unwrap();
    assert!(rest_a.is_empty() && rest_b.is_empty());
    a.write_all(b"plain bytes").await.unwrap();
    a.flush().await.unwrap();
    let mut got = [0u8; 11];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"plain bytes");
    // Shutting down the write side reaches the peer as the end of the stream.
    a.shutdown().await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(b.read_to_end(&mut rest).await.unwrap(), 0);
}
