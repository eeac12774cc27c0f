//! End-to-end tests of the tokio driver over real sockets on 127.0.0.1: handshake (accept,
//! reject, bad requests), messages both ways, Stream/Sink, the close handshake, timeouts,
//! corking, backpressure, attach and detach.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft::proto::handshake::{ClientRequest, HandshakeError};
use weft::{Accept, CloseCode, Error, Message, Options, Reject, Role};

/// Every test is bounded in time.
const LIMIT: Duration = Duration::from_secs(20);

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", l.local_addr().unwrap());
    (l, url)
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test took too long")
}

#[tokio::test]
async fn echo_with_subprotocol_and_request_details() {
    bounded(async {
        let (l, url) = listener().await;
        let server = tokio::spawn(async move {
            let (stream, _) = l.accept().await.unwrap();
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
        let stream = TcpStream::connect(&url[5..]).await.unwrap();
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
    })
    .await
}

#[tokio::test]
async fn rejected_by_the_application_with_a_status() {
    bounded(async {
        let (l, url) = listener().await;
        let server = tokio::spawn(async move {
            let (stream, _) = l.accept().await.unwrap();
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
        let stream = TcpStream::connect(&url[5..]).await.unwrap();
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
    })
    .await
}

#[tokio::test]
async fn bad_requests_get_their_4xx() {
    bounded(async {
        let (l, url) = listener().await;
        let addr = url[5..].to_string();
        let server = tokio::spawn(async move {
            for _ in 0..3 {
                let (stream, _) = l.accept().await.unwrap();
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
            let mut s = TcpStream::connect(&addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).await.unwrap();
            assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{reply}");
            if status == "426" {
                assert!(reply.contains("Sec-WebSocket-Version: 13"), "{reply}");
            }
        }
        server.await.unwrap();
    })
    .await
}

#[tokio::test]
async fn protocol_error_gets_the_close_code() {
    bounded(async {
        let (l, url) = listener().await;
        let server = tokio::spawn(async move {
            let (stream, _) = l.accept().await.unwrap();
            let mut ws = weft::tokio::accept(stream).await.unwrap();
            let err = ws.recv().await.unwrap_err();
            assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL_ERROR));
        });
        let stream = TcpStream::connect(&url[5..]).await.unwrap();
        let (ws, _) = weft::tokio::connect(&url, stream).await.unwrap();
        let (mut raw, _) = ws.into_inner();
        // A masked frame with a reserved opcode.
        raw.write_all(&[0x83, 0x80, 1, 2, 3, 4]).await.unwrap();
        let mut reply = Vec::new();
        raw.read_to_end(&mut reply).await.unwrap();
        assert_eq!(&reply[..4], &[0x88, reply[1], 0x03, 0xea]); // close, 1002
        server.await.unwrap();
    })
    .await
}

#[tokio::test]
async fn stream_and_sink() {
    bounded(async {
        let (l, url) = listener().await;
        let server = tokio::spawn(async move {
            let (stream, _) = l.accept().await.unwrap();
            let mut ws = weft::tokio::accept(stream).await.unwrap();
            while let Some(m) = ws.next().await {
                ws.feed(m.unwrap()).await.unwrap();
                ws.flush().await.unwrap();
            }
        });
        let stream = TcpStream::connect(&url[5..]).await.unwrap();
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
    })
    .await
}

#[tokio::test]
async fn fed_messages_are_written_by_the_next_receive() {
    bounded(async {
        let (l, url) = listener().await;
        let server = tokio::spawn(async move {
            let (stream, _) = l.accept().await.unwrap();
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
        let stream = TcpStream::connect(&url[5..]).await.unwrap();
        let (mut ws, _) = weft::tokio::connect(&url, stream).await.unwrap();
        for i in 0..50 {
            ws.feed(Message::from(format!("{i}"))).await.unwrap();
        }
        // No flush: recv writes what is queued before it waits.
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("got 50")));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert_eq!(server.await.unwrap(), 50);
    })
    .await
}

#[tokio::test]
async fn send_waits_when_the_peer_does_not_read_and_memory_stays_bounded() {
    bounded(async {
        let (l, url) = listener().await;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (stream, _) = l.accept().await.unwrap();
            let ws = weft::tokio::accept(stream).await.unwrap();
            // Never reads until told.
            let _ = stop_rx.await;
            drop(ws);
        });
        let stream = TcpStream::connect(&url[5..]).await.unwrap();
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
        stop_tx.send(()).unwrap();
        server.await.unwrap();
    })
    .await
}

#[tokio::test]
async fn keepalive_fails_a_silent_peer() {
    bounded(async {
        let (l, url) = listener().await;
        let server = tokio::spawn(async move {
            let (stream, _) = l.accept().await.unwrap();
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
        let stream = TcpStream::connect(&url[5..]).await.unwrap();
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
    })
    .await
}

#[tokio::test]
async fn keepalive_keeps_a_live_peer() {
    bounded(async {
        let (l, url) = listener().await;
        let server = tokio::spawn(async move {
            let (stream, _) = l.accept().await.unwrap();
            let mut options = Options::default();
            options.ping_interval = Some(Duration::from_millis(50));
            options.pong_timeout = Duration::from_millis(150);
            let (mut ws, _) = weft::tokio::accept_with(stream, options, |_| Ok(Accept::new()))
                .await
                .unwrap();
            ws.recv().await
        });
        let stream = TcpStream::connect(&url[5..]).await.unwrap();
        let (mut ws, _) = weft::tokio::connect(&url, stream).await.unwrap();
        // The client answers pings while it waits; 600 ms is many intervals.
        let r = tokio::time::timeout(Duration::from_millis(600), ws.recv()).await;
        assert!(r.is_err(), "nothing to receive");
        ws.send("still here").await.unwrap();
        assert_eq!(
            server.await.unwrap().unwrap(),
            Some(Message::from("still here"))
        );
    })
    .await
}

#[tokio::test]
async fn close_timeout_when_the_peer_never_answers() {
    bounded(async {
        let (l, url) = listener().await;
        let server = tokio::spawn(async move {
            let (stream, _) = l.accept().await.unwrap();
            let mut options = Options::default();
            options.close_timeout = Duration::from_millis(200);
            let (mut ws, _) = weft::tokio::accept_with(stream, options, |_| Ok(Accept::new()))
                .await
                .unwrap();
            ws.close(CloseCode::GOING_AWAY, "bye").await
        });
        let stream = TcpStream::connect(&url[5..]).await.unwrap();
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
    })
    .await
}

#[tokio::test]
async fn handshake_timeout() {
    bounded(async {
        let (l, url) = listener().await;
        let server = tokio::spawn(async move {
            let (stream, _) = l.accept().await.unwrap();
            let mut options = Options::default();
            options.handshake_timeout = Some(Duration::from_millis(200));
            weft::tokio::accept_with(stream, options, |_| Ok(Accept::new()))
                .await
                .map(|_| ())
        });
        let mut s = TcpStream::connect(&url[5..]).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap(); // and nothing more
        let r = server.await.unwrap();
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    })
    .await
}

#[tokio::test]
async fn attach_without_handshake_and_detach() {
    bounded(async {
        let (a, b) = tokio::io::duplex(64 * 1024);
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
        let mut got = [0u8; 11];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"plain bytes");
    })
    .await
}

/// A listener with a full backlog never completes a TCP connect: the connect timeout ends
/// it (on 127.0.0.1; a backlog of 0 holds one pending connection).
async fn full_backlog() -> (tokio::net::TcpListener, TcpStream, std::net::SocketAddr) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
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

#[tokio::test]
async fn permessage_deflate_is_negotiated_and_used() {
    bounded(async {
        let (l, url) = listener().await;
        let mut server_options = Options::default();
        server_options.deflate = Some(weft::proto::deflate::DeflateConfig {
            client_no_context_takeover: true,
            ..Default::default()
        });
        let server = tokio::spawn(async move {
            let (stream, _) = l.accept().await.unwrap();
            let (mut ws, _) =
                weft::tokio::accept_with(stream, server_options, |_| Ok(Accept::new()))
                    .await
                    .unwrap();
            let negotiated = ws.connection().config().deflate;
            while let Some(m) = ws.recv().await.unwrap() {
                ws.send(m).await.unwrap();
            }
            negotiated
        });
        let mut options = Options::default();
        options.deflate = Some(Default::default());
        let (mut ws, response) = weft::tokio::connect_url(&url, options).await.unwrap();
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
    })
    .await
}
