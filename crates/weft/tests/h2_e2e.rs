//! The client over HTTP/2 (RFC 8441) end to end over 127.0.0.1, against `weft::server`
//! (embedded on the test's runtime): several WebSockets on one h2c or h2 connection,
//! permessage-deflate, subprotocols, refusals, the close handshake, and `connect_auto`'s
//! fallback to HTTP/1.1 (a server without HTTP/2, and an HTTP/2 server without extended
//! CONNECT).

use bytes::Bytes;
use http::{StatusCode, Version};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft::proto::deflate::DeflateConfig;
use weft::proto::handshake::HandshakeError;
use weft::server::{handler_fn, Body, Server, Shutdown, WebSocketUpgrade};
use weft::tokio::{connect_auto, ClientStream, H2Connection, H2Error, Http2Mode};
use weft::{ClientRequest, CloseCode, Error, Message, Options, Reject};

/// What the server saw of each WebSocket request it upgraded.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    peer: Option<SocketAddr>,
    extensions: Option<String>,
    protocol: Option<String>,
}

#[derive(Debug, Default)]
struct Log {
    requests: Vec<Seen>,
    /// Per finished WebSocket: whether permessage-deflate was on, and the close status
    /// the client sent.
    ended: Vec<(bool, CloseCode)>,
}

type Shared = Arc<Mutex<Log>>;

fn log_of(shared: &Shared) -> std::sync::MutexGuard<'_, Log> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// `/ws`: echo; `/chat`: echo with the subprotocol `chat`; `/refuse`: 403; `/bye`: sends
/// "bye" and closes with 4002.
async fn handle(mut req: http::Request<Incoming>, log: Shared) -> http::Response<Body> {
    let path = req.uri().path().to_owned();
    let seen = Seen {
        version: req.version(),
        peer: weft::server::ConnInfo::of(&req).and_then(|c| c.peer().tcp()),
        extensions: req
            .headers()
            .get("sec-websocket-extensions")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        protocol: None,
    };
    let upgrade = match WebSocketUpgrade::from_request(&mut req) {
        Ok(u) => u,
        Err(refusal) => return refusal.map(Body::from),
    };
    let upgrade = match path.as_str() {
        "/chat" => upgrade.protocols(["chat"]),
        _ => upgrade,
    };
    let mut seen = seen;
    seen.protocol = upgrade.selected_protocol().map(str::to_owned);
    log_of(&log).requests.push(seen);
    if path == "/refuse" {
        return upgrade.respond(
            Err(Reject::new(StatusCode::FORBIDDEN, "not you")),
            |_ws| async {},
        );
    }
    let bye = path == "/bye";
    upgrade.on_upgrade(move |mut ws| async move {
        if bye {
            let _ = ws.send("bye").await;
            let _ = ws.close(CloseCode::from(4002), "server done").await;
        }
        while let Ok(Some(msg)) = ws.recv().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
        let deflate = ws.connection().config().deflate.is_some();
        let status = ws.connection().close_status();
        log_of(&log).ended.push((deflate, status));
    })
}

struct TestServer {
    addr: SocketAddr,
    log: Shared,
    shutdown: Shutdown,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

struct TestCert {
    cert_pem: String,
    key_pem: String,
}

fn make_cert() -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Starts a server on 127.0.0.1 (TLS with `cert` if given), serving on this runtime.
fn start(http2: bool, tls: Option<&TestCert>, options: Options) -> TestServer {
    let log = Shared::default();
    let builder = Server::builder().http2(http2).websocket_options(options);
    let builder = match tls {
        Some(cert) => {
            let config = weft::tls::server_config_from_pem(
                cert.cert_pem.as_bytes(),
                cert.key_pem.as_bytes(),
            )
            .unwrap();
            builder.bind_tls("127.0.0.1:0", config).unwrap()
        }
        None => builder.bind("127.0.0.1:0").unwrap(),
    };
    let handler_log = log.clone();
    let server = builder
        .build(handler_fn(move |req| handle(req, handler_log.clone())))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let shutdown = server.shutdown_handle();
    tokio::spawn(server.serve());
    TestServer {
        addr,
        log,
        shutdown,
    }
}

fn tls_client_options(cert: &TestCert) -> Options {
    let mut options = Options::default();
    options.tls = Some(weft::tls::client_config_with_roots(cert.cert_pem.as_bytes()).unwrap());
    options
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("the test took more than 20 s")
}

/// Sends `count` messages (text and binary in turn) and checks each echo.
async fn echo_many<S>(ws: &mut weft::tokio::WebSocket<S>, tag: &str, count: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for i in 0..count {
        let msg = if i % 2 == 0 {
            Message::from(format!("{tag} {i}"))
        } else {
            Message::from(vec![i as u8; 1000 + i * 37])
        };
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(msg), "{tag} {i}");
    }
}

#[tokio::test]
async fn h2c_two_websockets_on_one_connection() {
    within(async {
        let server = start(true, None, Options::default());
        let base = format!("ws://{}", server.addr);
        let h2 = H2Connection::connect(&base, &Options::default())
            .await
            .unwrap();
        let (mut a, ra) = h2
            .websocket(&format!("{base}/ws"), Options::default())
            .await
            .unwrap();
        let (mut b, rb) = h2
            .websocket(&format!("{base}/ws?second"), Options::default())
            .await
            .unwrap();
        assert_eq!(ra.as_http().version(), Version::HTTP_2);
        assert_eq!(rb.as_http().version(), Version::HTTP_2);
        let one = tokio::spawn(async move {
            echo_many(&mut a, "a", 50).await;
            a.close(CloseCode::NORMAL, "").await.unwrap();
        });
        let two = tokio::spawn(async move {
            echo_many(&mut b, "b", 50).await;
            b.close(CloseCode::NORMAL, "").await.unwrap();
        });
        one.await.unwrap();
        two.await.unwrap();
        // A large message crosses HTTP/2 flow control (64 KiB initial windows).
        let (mut c, _) = h2
            .websocket(&format!("{base}/ws"), Options::default())
            .await
            .unwrap();
        let big = Message::from(vec![7u8; 1 << 20]);
        c.send(big.clone()).await.unwrap();
        assert_eq!(c.recv().await.unwrap(), Some(big));
        c.close(CloseCode::NORMAL, "").await.unwrap();
        let log = log_of(&server.log);
        assert_eq!(log.requests.len(), 3);
        for seen in &log.requests {
            assert_eq!(seen.version, Version::HTTP_2, "{seen:?}");
        }
        // One connection: the same client port for all three.
        assert!(log.requests[0].peer.is_some());
        assert!(log.requests.iter().all(|s| s.peer == log.requests[0].peer));
    })
    .await;
}

#[tokio::test]
async fn h2_over_tls_with_alpn() {
    within(async {
        let cert = make_cert();
        let server = start(true, Some(&cert), Options::default());
        let base = format!("wss://localhost:{}", server.addr.port());
        let options = tls_client_options(&cert);
        let h2 = H2Connection::connect(&base, &options).await.unwrap();
        let (mut a, _) = h2
            .websocket(&format!("{base}/ws"), options.clone())
            .await
            .unwrap();
        let (mut b, _) = h2
            .websocket(&format!("{base}/ws"), options.clone())
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(
            echo_many(&mut a, "tls a", 20),
            echo_many(&mut b, "tls b", 20)
        );
        let ((), ()) = (ra, rb);
        a.close(CloseCode::NORMAL, "").await.unwrap();
        b.close(CloseCode::NORMAL, "").await.unwrap();
        // connect_auto picks h2 by ALPN on its own.
        let (mut c, response) = connect_auto(&format!("{base}/ws"), options, Http2Mode::Alpn)
            .await
            .unwrap();
        assert!(matches!(c.get_ref(), ClientStream::H2(_)));
        assert_eq!(response.as_http().version(), Version::HTTP_2);
        echo_many(&mut c, "auto", 4).await;
        c.close(CloseCode::NORMAL, "").await.unwrap();
        let log = log_of(&server.log);
        assert_eq!(log.requests.len(), 3);
        assert!(log.requests.iter().all(|s| s.version == Version::HTTP_2));
    })
    .await;
}

#[tokio::test]
async fn permessage_deflate_over_h2() {
    within(async {
        let mut options = Options::default();
        options.deflate = Some(DeflateConfig::default());
        let server = start(true, None, options.clone());
        let base = format!("ws://{}", server.addr);
        let h2 = H2Connection::connect(&base, &options).await.unwrap();
        let (mut ws, response) = h2
            .websocket(&format!("{base}/ws"), options.clone())
            .await
            .unwrap();
        assert_eq!(response.extensions()[0].name, "permessage-deflate");
        assert!(ws.connection().config().deflate.is_some());
        let text = "compress me ".repeat(10_000);
        ws.send(text.as_str()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from(text)));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        // Without the offer, no compression.
        let (mut plain, response) = h2
            .websocket(&format!("{base}/ws"), Options::default())
            .await
            .unwrap();
        assert!(response.extensions().is_empty());
        assert!(plain.connection().config().deflate.is_none());
        plain.close(CloseCode::NORMAL, "").await.unwrap();
        // The server's side of it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while log_of(&server.log).ended.len() < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let log = log_of(&server.log);
        let offered = log.requests[0].extensions.as_deref().unwrap_or_default();
        assert!(offered.contains("permessage-deflate"), "{offered:?}");
        assert_eq!(log.requests[1].extensions, None);
        let mut deflate: Vec<bool> = log.ended.iter().map(|e| e.0).collect();
        deflate.sort();
        assert_eq!(deflate, [false, true]);
    })
    .await;
}

#[tokio::test]
async fn subprotocol_over_h2() {
    within(async {
        let server = start(true, None, Options::default());
        let base = format!("ws://{}", server.addr);
        let h2 = H2Connection::connect(&base, &Options::default())
            .await
            .unwrap();
        let request = ClientRequest::builder(&format!("{base}/chat"))
            .protocols(["superchat", "chat"])
            .header("authorization", "Bearer x")
            .build()
            .unwrap();
        let (mut ws, response) = h2
            .websocket_request(&request, Options::default())
            .await
            .unwrap();
        assert_eq!(response.protocol(), Some("chat"));
        echo_many(&mut ws, "chat", 2).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        let log = log_of(&server.log);
        assert_eq!(log.requests[0].protocol.as_deref(), Some("chat"));
    })
    .await;
}

#[tokio::test]
async fn refusal_is_an_error_with_its_status() {
    within(async {
        let server = start(true, None, Options::default());
        let base = format!("ws://{}", server.addr);
        let h2 = H2Connection::connect(&base, &Options::default())
            .await
            .unwrap();
        let err = h2
            .websocket(&format!("{base}/refuse"), Options::default())
            .await
            .map(|_| ())
            .unwrap_err();
        match &err {
            Error::Handshake(HandshakeError::UnexpectedStatus { response, .. }) => {
                assert_eq!(response.status(), StatusCode::FORBIDDEN);
                assert_eq!(response.version(), Version::HTTP_2);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("403"), "{err}");
        // connect_auto does not fall back on a refusal.
        let mut options = Options::default();
        options.handshake_timeout = Some(Duration::from_secs(5));
        let err = connect_auto(
            &format!("{base}/refuse"),
            options,
            Http2Mode::PriorKnowledge,
        )
        .await
        .map(|_| ())
        .unwrap_err();
        assert!(
            matches!(&err, Error::Handshake(HandshakeError::UnexpectedStatus { response, .. })
                if response.status() == StatusCode::FORBIDDEN && response.version() == Version::HTTP_2),
            "{err:?}"
        );
        // The connection is still good for other WebSockets.
        let (mut ws, _) = h2
            .websocket(&format!("{base}/ws"), Options::default())
            .await
            .unwrap();
        echo_many(&mut ws, "after", 2).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert_eq!(log_of(&server.log).requests.len(), 3);
    })
    .await;
}

#[tokio::test]
async fn close_handshake_over_h2() {
    within(async {
        let server = start(true, None, Options::default());
        let base = format!("ws://{}", server.addr);
        let h2 = H2Connection::connect(&base, &Options::default())
            .await
            .unwrap();
        // The client closes.
        let (mut ws, _) = h2
            .websocket(&format!("{base}/ws"), Options::default())
            .await
            .unwrap();
        echo_many(&mut ws, "x", 2).await;
        ws.close(CloseCode::from(4001), "client done")
            .await
            .unwrap();
        assert_eq!(ws.connection().close_status(), CloseCode::from(4001));
        // The server closes.
        let (mut ws, _) = h2
            .websocket(&format!("{base}/bye"), Options::default())
            .await
            .unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("bye")));
        assert_eq!(ws.recv().await.unwrap(), None);
        let received = ws.connection().close_received().cloned().unwrap();
        assert_eq!(received.code, CloseCode::from(4002));
        assert_eq!(received.reason.as_str(), "server done");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while log_of(&server.log).ended.len() < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut codes: Vec<u16> = log_of(&server.log).ended.iter().map(|e| e.1 .0).collect();
        codes.sort();
        // The client's 4001, and the client's echo of the server's 4002.
        assert_eq!(codes, [4001, 4002]);
        // The connection outlives its WebSockets.
        assert!(!h2.is_closed());
    })
    .await;
}

#[tokio::test]
async fn auto_falls_back_to_http1_without_http2() {
    within(async {
        // A server that speaks only HTTP/1.1: bare hyper.
        let (addr, versions) = start_bare(Bare::Http1Only, None).await;
        let url = format!("ws://{addr}/ws");
        // h2c with prior knowledge gets no SETTINGS back: a clear error...
        let err = H2Connection::connect(&url, &Options::default())
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(H2Error::of(&err), Some(H2Error::NotHttp2)),
            "{err:?}"
        );
        assert!(err.to_string().contains("does not speak HTTP/2"), "{err}");
        // ... and connect_auto goes on with HTTP/1.1.
        let (mut ws, response) = connect_auto(&url, Options::default(), Http2Mode::PriorKnowledge)
            .await
            .unwrap();
        assert!(matches!(ws.get_ref(), ClientStream::H1(_)));
        assert_eq!(ws.get_ref().version(), Version::HTTP_11);
        assert_eq!(response.as_http().version(), Version::HTTP_11);
        echo_many(&mut ws, "h1", 4).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        let versions = versions.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(versions, [Version::HTTP_11]);
    })
    .await;
}

#[tokio::test]
async fn auto_without_prior_knowledge_is_http1_for_ws() {
    within(async {
        let server = start(false, None, Options::default());
        let url = format!("ws://{}/ws", server.addr);
        let (mut ws, response) = connect_auto(&url, Options::default(), Http2Mode::Alpn)
            .await
            .unwrap();
        assert!(!ws.get_ref().is_http2());
        assert_eq!(response.as_http().version(), Version::HTTP_11);
        echo_many(&mut ws, "h1", 4).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        let log = log_of(&server.log);
        assert_eq!(log.requests.len(), 1);
        assert_eq!(log.requests[0].version, Version::HTTP_11);
    })
    .await;
}

/// `Builder::http2(false)`: HTTP/2 is not served, by ALPN or by prior knowledge; the auto
/// client falls back to HTTP/1.1.
#[tokio::test]
async fn http2_false_refuses_h2c() {
    within(async {
        let server = start(false, None, Options::default());
        let url = format!("ws://{}/ws", server.addr);
        let err = H2Connection::connect(&url, &Options::default())
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(H2Error::of(&err), Some(H2Error::NotHttp2)),
            "{err:?}"
        );
        let (ws, _) = connect_auto(&url, Options::default(), Http2Mode::PriorKnowledge)
            .await
            .unwrap();
        assert_eq!(ws.get_ref().version(), Version::HTTP_11);
    })
    .await;
}

#[tokio::test]
async fn auto_over_tls_falls_back_when_alpn_picks_http1() {
    within(async {
        let cert = make_cert();
        let server = start(false, Some(&cert), Options::default());
        let base = format!("wss://localhost:{}", server.addr.port());
        let options = tls_client_options(&cert);
        let err = H2Connection::connect(&base, &options)
            .await
            .map(|_| ())
            .unwrap_err();
        // The server offers only http/1.1: the TLS handshake fails (no protocol in
        // common) or the server selects no h2.
        assert!(matches!(err, Error::Io(_)), "{err:?}");
        let (mut ws, response) = connect_auto(&format!("{base}/ws"), options, Http2Mode::Alpn)
            .await
            .unwrap();
        assert!(matches!(
            ws.get_ref(),
            ClientStream::H1(weft::tokio::MaybeTlsStream::Tls(_))
        ));
        assert_eq!(response.as_http().version(), Version::HTTP_11);
        echo_many(&mut ws, "tls h1", 4).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        let log = log_of(&server.log);
        assert_eq!(log.requests.len(), 1);
        assert_eq!(log.requests[0].version, Version::HTTP_11);
    })
    .await;
}

/// The bare hyper servers (outside `weft::server`) the fallbacks are tried against.
#[derive(Clone, Copy)]
enum Bare {
    /// HTTP/1.1 only.
    Http1Only,
    /// HTTP/1.1 and HTTP/2, but extended CONNECT not enabled.
    NoExtendedConnect,
    /// The same over TLS, ALPN offering `h2` and `http/1.1`.
    NoExtendedConnectTls,
}

/// Starts a bare hyper server whose handler upgrades `/ws` with `WebSocketUpgrade` (over
/// HTTP/1.1 only, as neither takes extended CONNECT), recording each request's version.
async fn start_bare(kind: Bare, cert: Option<&TestCert>) -> (SocketAddr, Arc<Mutex<Vec<Version>>>) {
    let acceptor = cert.map(|cert| {
        let config =
            weft::tls::server_config_from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
                .unwrap();
        let mut config = (*config).clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        weft::tls::tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let versions = Arc::new(Mutex::new(Vec::new()));
    let seen = versions.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                        seen.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(req.version());
                        let response = match WebSocketUpgrade::from_request(&mut req) {
                            Ok(u) => u.on_upgrade(|mut ws| async move {
                                while let Ok(Some(m)) = ws.recv().await {
                                    if ws.send(m).await.is_err() {
                                        break;
                                    }
                                }
                            }),
                            Err(refusal) => {
                                refusal.map(|s| http_body_util::Full::new(Bytes::from(s)))
                            }
                        };
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                let io = match (&acceptor, kind) {
                    (Some(acceptor), Bare::NoExtendedConnectTls) => {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        weft::server::Stream::from(tls)
                    }
                    _ => weft::server::Stream::from(tcp),
                };
                let io = hyper_util::rt::TokioIo::new(io);
                let _ = match kind {
                    Bare::Http1Only => hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .with_upgrades()
                        .await
                        .map_err(|e| e.to_string()),
                    Bare::NoExtendedConnect | Bare::NoExtendedConnectTls => {
                        hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection_with_upgrades(io, service)
                        .await
                        .map_err(|e| e.to_string())
                    }
                };
            });
        }
    });
    (addr, versions)
}

#[tokio::test]
async fn h2_server_without_extended_connect() {
    within(async {
        let (addr, versions) = start_bare(Bare::NoExtendedConnect, None).await;
        let url = format!("ws://{addr}/ws");
        let err = H2Connection::connect(&url, &Options::default())
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(H2Error::of(&err), Some(H2Error::NoExtendedConnect)),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("SETTINGS_ENABLE_CONNECT_PROTOCOL"),
            "{err}"
        );
        let (mut ws, _) = connect_auto(&url, Options::default(), Http2Mode::PriorKnowledge)
            .await
            .unwrap();
        assert_eq!(ws.get_ref().version(), Version::HTTP_11);
        echo_many(&mut ws, "fallback", 4).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        // No request was sent over HTTP/2: the client knew from the SETTINGS.
        let versions = versions.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(versions, [Version::HTTP_11]);
    })
    .await;
}

#[tokio::test]
async fn tls_h2_server_without_extended_connect() {
    within(async {
        let cert = make_cert();
        let (addr, versions) = start_bare(Bare::NoExtendedConnectTls, Some(&cert)).await;
        let url = format!("wss://localhost:{}/ws", addr.port());
        let options = tls_client_options(&cert);
        let err = H2Connection::connect(&url, &options)
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(H2Error::of(&err), Some(H2Error::NoExtendedConnect)),
            "{err:?}"
        );
        // ALPN selects h2, the SETTINGS refuse extended CONNECT: a new connection that
        // offers only http/1.1.
        let (mut ws, response) = connect_auto(&url, options, Http2Mode::Alpn).await.unwrap();
        assert!(matches!(
            ws.get_ref(),
            ClientStream::H1(weft::tokio::MaybeTlsStream::Tls(_))
        ));
        assert_eq!(response.as_http().version(), Version::HTTP_11);
        echo_many(&mut ws, "tls fallback", 4).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        let versions = versions.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(versions, [Version::HTTP_11]);
    })
    .await;
}
