//! `weft::server` end to end over real sockets on 127.0.0.1: one handler serving HTTP/1.1,
//! HTTPS (ALPN), h2c, Unix-socket and WebSocket clients in every threading model; limits
//! (slowloris, head size, connection limit), graceful shutdown (1001), corking, closing,
//! raw upgrades and what the handler can learn about its connection.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft::server::{handler_fn, Body, ConnInfo, Model, Server, TransportKind, WebSocketUpgrade};
use weft::{CloseCode, Message, Options};

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

/// What the handler saw, per request: path, HTTP version, transport, SNI, ALPN.
type Seen = Arc<
    Mutex<
        Vec<(
            String,
            http::Version,
            TransportKind,
            Option<String>,
            Option<Vec<u8>>,
        )>,
    >,
>;

/// The one handler of these tests: `/health` → `ok`, `/ws` → echo (async, or blocking in
/// the blocking model), `/blocking` → the blocking echo in any model, `/split` → echo through the split halves, `/push` → a message every
/// 20 ms from the write half alone (the read half waits unpolled until the sends fail),
/// `/which` → `plain`, or over a WebSocket `websocket` (routed by `is_websocket_request`),
/// `/body` → the request's body back, `/info` → the peer address, `/close` → the server closes with 4000, anything else 404.
async fn handle(mut req: Request<Incoming>, blocking: bool, seen: Seen) -> Response<Body> {
    if let Some(info) = ConnInfo::of(&req) {
        seen.lock().unwrap().push((
            req.uri().path().to_owned(),
            req.version(),
            info.transport(),
            info.sni().map(str::to_owned),
            info.alpn().map(<[u8]>::to_vec),
        ));
    }
    match req.uri().path() {
        "/health" => Response::new(Body::from("ok")),
        "/body" => match req.into_body().collect().await {
            Ok(body) => Response::new(Body::from(body.to_bytes())),
            Err(e) => Response::new(Body::from(e.to_string())),
        },
        "/certs" => {
            let n = ConnInfo::of(&req).map_or(0, |i| i.client_certificates().len());
            Response::new(Body::from(n.to_string()))
        }
        "/info" => {
            let peer = ConnInfo::of(&req)
                .map(|i| i.peer().to_string())
                .unwrap_or_default();
            Response::new(Body::from(peer))
        }
        "/ws" => match WebSocketUpgrade::from_request(&mut req) {
            Ok(up) if blocking => up.on_upgrade_blocking(|mut ws| {
                while let Ok(Some(m)) = ws.recv(None) {
                    if ws.send(m, None).is_err() {
                        break;
                    }
                }
            }),
            Ok(up) => up.protocols(["echo"]).on_upgrade(|mut ws| async move {
                while let Ok(Some(m)) = ws.recv().await {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
            }),
            Err(refusal) => refusal.map(Body::from),
        },
        // Which driver moves this WebSocket's bytes: "uring" or "epoll".
        "/driver" => match WebSocketUpgrade::from_request(&mut req) {
            Ok(up) => up.on_upgrade(|mut ws| async move {
                let driver = if ws.get_ref().is_uring() {
                    "uring"
                } else {
                    "epoll"
                };
                let _ = ws.send(driver).await;
                let _ = ws.close(CloseCode::NORMAL, "").await;
            }),
            Err(refusal) => refusal.map(Body::from),
        },
        "/blocking" => match WebSocketUpgrade::from_request(&mut req) {
            Ok(up) => up.on_upgrade_blocking(|mut ws| {
                while let Ok(Some(m)) = ws.recv(None) {
                    if ws.send(m, None).is_err() {
                        break;
                    }
                }
            }),
            Err(refusal) => refusal.map(Body::from),
        },
        "/which" if !weft::server::is_websocket_request(&req) => Response::new(Body::from("plain")),
        "/which" => match WebSocketUpgrade::from_request(&mut req) {
            Ok(up) => up.on_upgrade(|mut ws| async move {
                let _ = ws.send("websocket").await;
                let _ = ws.close(CloseCode::NORMAL, "").await;
            }),
            Err(refusal) => refusal.map(Body::from),
        },
        "/split" => match WebSocketUpgrade::from_request(&mut req) {
            Ok(up) => up.on_upgrade(|ws| async move {
                let (mut rx, tx) = ws.split();
                while let Ok(Some(m)) = rx.recv().await {
                    if tx.send(m).await.is_err() {
                        break;
                    }
                }
            }),
            Err(refusal) => refusal.map(Body::from),
        },
        "/push" => match WebSocketUpgrade::from_request(&mut req) {
            Ok(up) => up.on_upgrade(|ws| async move {
                let (mut rx, tx) = ws.split();
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                loop {
                    tick.tick().await;
                    if tx.send("tick").await.is_err() {
                        break;
                    }
                }
                // The close went out with the last send; the read half completes it.
                while let Ok(Some(_)) = rx.recv().await {}
            }),
            Err(refusal) => refusal.map(Body::from),
        },
        "/close" => match WebSocketUpgrade::from_request(&mut req) {
            Ok(up) => up.on_upgrade(|mut ws| async move {
                let _ = ws.send("bye").await;
                let _ = ws.close(CloseCode::from(4000), "done").await;
            }),
            Err(refusal) => refusal.map(Body::from),
        },
        _ => {
            let mut r = Response::new(Body::from("not found"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

struct Running {
    tcp: SocketAddr,
    tls: SocketAddr,
    unix: std::path::PathBuf,
    shutdown: weft::server::Shutdown,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
    seen: Seen,
    cert: TestCert,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("weft-server-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Starts the test server in `model` on a thread: plain TCP, TLS and a Unix socket.
fn start(model: Model, name: &str) -> Running {
    let cert = make_cert();
    let tls = weft::tls::server_config_from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
        .unwrap();
    let dir = temp_dir(name);
    let unix = dir.0.join("s.sock");
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let blocking = model == Model::Blocking;
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .bind_tls("127.0.0.1:0", tls)
        .unwrap()
        .bind_unix(&unix)
        .unwrap()
        .shutdown_grace(Duration::from_secs(5))
        .build(handler_fn(move |req| handle(req, blocking, seen2.clone())))
        .unwrap();
    let addrs: Vec<SocketAddr> = server
        .local_addrs()
        .iter()
        .filter_map(|a| a.tcp())
        .collect();
    let shutdown = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run(model));
    Running {
        tcp: addrs[0],
        tls: addrs[1],
        unix,
        shutdown,
        thread,
        seen,
        cert,
        _dir: dir,
    }
}

/// A plain HTTP/1.1 request over a fresh TCP connection; the whole response back.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

async fn ws_echo_tcp(addr: SocketAddr) {
    let url = format!("ws://{addr}/ws");
    let (mut ws, _) = weft::tokio::connect_url(&url, Options::default())
        .await
        .unwrap();
    ws.send("over tcp").await.unwrap();
    ws.send(vec![7u8; 70_000]).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("over tcp")));
    assert_eq!(
        ws.recv().await.unwrap(),
        Some(Message::from(vec![7u8; 70_000]))
    );
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

async fn ws_echo_tls(port: u16, cert: &TestCert) {
    let mut options = Options::default();
    options.tls = Some(weft::tls::client_config_with_roots(cert.cert_pem.as_bytes()).unwrap());
    let url = format!("wss://localhost:{port}/ws");
    let (mut ws, _) = weft::tokio::connect_url(&url, options).await.unwrap();
    ws.send("over tls").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("over tls")));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

async fn ws_echo_unix(path: &std::path::Path) {
    let stream = tokio::net::UnixStream::connect(path).await.unwrap();
    let (mut ws, _) = weft::tokio::connect("ws://localhost/ws", stream)
        .await
        .unwrap();
    ws.send("over unix").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("over unix")));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

/// Two WebSockets on one HTTP/2 connection (RFC 8441): h2c for ws://, ALPN h2 for wss://.
async fn ws_echo_h2(url: &str, options: Options) {
    let h2 = weft::tokio::H2Connection::connect(url, &options)
        .await
        .unwrap();
    let (mut a, _) = h2.websocket(url, options.clone()).await.unwrap();
    let (mut b, _) = h2.websocket(url, options).await.unwrap();
    a.send("a over h2").await.unwrap();
    b.send(vec![9u8; 100_000]).await.unwrap();
    assert_eq!(a.recv().await.unwrap(), Some(Message::from("a over h2")));
    assert_eq!(
        b.recv().await.unwrap(),
        Some(Message::from(vec![9u8; 100_000]))
    );
    a.close(CloseCode::NORMAL, "").await.unwrap();
    b.close(CloseCode::NORMAL, "").await.unwrap();
}

/// `GET /health` over h2c with prior knowledge, through hyper's client.
async fn h2c_get(addr: SocketAddr) -> (StatusCode, http::Version, Bytes) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}/health"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let (status, version) = (resp.status(), resp.version());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, version, body)
}

/// `GET /health` over TLS with ALPN h2 (hyper's HTTP/2 client on a rustls stream).
async fn h2_tls_get(port: u16, cert: &TestCert) -> (StatusCode, http::Version) {
    let roots = weft::tls::client_config_with_roots(cert.cert_pem.as_bytes()).unwrap();
    let mut config = (*roots).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = weft::tls::tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("https://localhost:{port}/health"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    (resp.status(), resp.version())
}

/// Every kind of client against one server in `model`, then a graceful shutdown.
fn every_client(model: Model, name: &str) {
    let r = start(model, name);
    let plain = http_get(r.tcp, "/health");
    assert!(plain.starts_with("HTTP/1.1 200 OK\r\n"), "{plain}");
    assert!(plain.ends_with("\r\n\r\nok"), "{plain}");
    assert!(http_get(r.tcp, "/nope").starts_with("HTTP/1.1 404"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        ws_echo_tcp(r.tcp).await;
        ws_echo_tls(r.tls.port(), &r.cert).await;
        ws_echo_unix(&r.unix).await;
        let (status, version, body) = h2c_get(r.tcp).await;
        assert_eq!(
            (status, version, &body[..]),
            (StatusCode::OK, http::Version::HTTP_2, &b"ok"[..])
        );
        let (status, version) = h2_tls_get(r.tls.port(), &r.cert).await;
        assert_eq!((status, version), (StatusCode::OK, http::Version::HTTP_2));
        ws_echo_h2(&format!("ws://{}/ws", r.tcp), Options::default()).await;
        let mut tls_options = Options::default();
        tls_options.tls =
            Some(weft::tls::client_config_with_roots(r.cert.cert_pem.as_bytes()).unwrap());
        ws_echo_h2(&format!("wss://localhost:{}/ws", r.tls.port()), tls_options).await;
    });
    // The clients' runtime (and the HTTP/2 connections on it) ends here.
    drop(rt);
    {
        let seen = r.seen.lock().unwrap();
        let ws: Vec<(TransportKind, http::Version)> = seen
            .iter()
            .filter(|s| s.0 == "/ws")
            .map(|s| (s.2, s.1))
            .collect();
        use http::Version as V;
        use TransportKind as K;
        assert_eq!(
            ws,
            [
                (K::Tcp, V::HTTP_11),
                (K::Tls, V::HTTP_11),
                (K::Unix, V::HTTP_11),
                (K::Tcp, V::HTTP_2),
                (K::Tcp, V::HTTP_2),
                (K::Tls, V::HTTP_2),
                (K::Tls, V::HTTP_2),
            ]
        );
        let h2_tls = seen
            .iter()
            .find(|s| s.1 == http::Version::HTTP_2 && s.2 == TransportKind::Tls)
            .expect("an h2 request over TLS");
        assert_eq!(h2_tls.3.as_deref(), Some("localhost"));
        assert_eq!(h2_tls.4.as_deref(), Some(&b"h2"[..]));
        let wss = seen
            .iter()
            .find(|s| s.0 == "/ws" && s.2 == TransportKind::Tls)
            .unwrap();
        // weft's own wss:// client offers no ALPN: the server then speaks HTTP/1.1.
        assert_eq!((wss.1, wss.4.as_deref()), (http::Version::HTTP_11, None));
    }
    r.shutdown.shutdown();
    r.thread.join().unwrap().unwrap();
}

#[test]
fn current_thread_serves_every_client() {
    every_client(Model::CurrentThread, "ct");
}

#[test]
fn multi_thread_serves_every_client() {
    every_client(Model::MultiThread(Some(2)), "mt");
}

#[test]
fn per_core_serves_every_client() {
    every_client(Model::PerCore(Some(2)), "pc");
}

#[test]
fn blocking_serves_every_client() {
    every_client(Model::Blocking, "bl");
}

/// This process's io_uring rings (`anon_inode:[io_uring]` in /proc/self/fd).
fn io_uring_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.to_string_lossy().contains("io_uring"))
                .count()
        })
        .unwrap_or(0)
}

/// (f) Thread per core with io_uring: every client as in the other models, and the rings
/// exist while it runs (where io_uring works here; else it runs as per-core).
/// The io_uring tests one at a time, so that each counts only its own rings.
static URING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn uring_serves_every_client() {
    let _one = URING.lock().unwrap_or_else(|p| p.into_inner());
    let before = io_uring_fds();
    let check = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while io_uring_fds() < before + 2 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        io_uring_fds() >= before + 2
    });
    // Plain TCP WebSockets run on the ring; TLS stays on epoll.
    let r = start(Model::Uring(Some(2)), "ur-driver");
    let available = weft::uring::probe().is_ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("ws://{}/driver", r.tcp);
        let (mut ws, _) = weft::tokio::connect_url(&url, Options::default())
            .await
            .unwrap();
        let want = if available { "uring" } else { "epoll" };
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from(want)));
    });
    r.shutdown.shutdown();
    r.thread.join().unwrap().unwrap();
    every_client(Model::Uring(Some(2)), "ur");
    let rings_seen = check.join().unwrap();
    assert_eq!(
        rings_seen,
        weft::uring::probe().is_ok(),
        "two rings while the server ran, exactly where io_uring works"
    );
}

/// (d) The server as a future on the test's own runtime, beside another task.
#[tokio::test]
async fn embedded_serves_beside_other_tasks() {
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build(handler_fn(move |req| handle(req, false, seen2.clone())))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let shutdown = server.shutdown_handle();
    let served = tokio::spawn(server.serve());
    let other = tokio::spawn(async { 40 + 2 });
    ws_echo_tcp(addr).await;
    let (status, version, _) = h2c_get(addr).await;
    assert_eq!((status, version), (StatusCode::OK, http::Version::HTTP_2));
    assert_eq!(other.await.unwrap(), 42);
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// A small embedded server for the limit tests.
async fn embedded(
    configure: impl FnOnce(weft::server::Builder) -> weft::server::Builder,
) -> (
    SocketAddr,
    weft::server::Shutdown,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let seen: Seen = Arc::default();
    let builder = configure(Server::builder().bind("127.0.0.1:0").unwrap());
    let server = builder
        .build(handler_fn(move |req| handle(req, false, seen.clone())))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let shutdown = server.shutdown_handle();
    (addr, shutdown, tokio::spawn(server.serve()))
}

/// Reads until the peer closes (or resets), within `limit`; how long it took.
async fn wait_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was not closed within {limit:?}"),
        }
    }
}

#[tokio::test]
async fn a_slowloris_head_is_cut_at_the_timeout() {
    let (addr, shutdown, served) = embedded(|b| b.header_timeout(Duration::from_millis(300))).await;
    // A head that never ends, a byte at a time.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let writer = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if slow.write_all(b"X").await.is_err() {
                break;
            }
        }
    };
    writer.await;
    let took = wait_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(5));
    // A client that sends one byte of what could be the HTTP/2 preface, then nothing.
    let mut preface = tokio::net::TcpStream::connect(addr).await.unwrap();
    preface.write_all(b"P").await.unwrap();
    wait_closed(&mut preface, Duration::from_secs(5)).await;
    // A client that sends nothing at all.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    wait_closed(&mut silent, Duration::from_secs(5)).await;
    // Meanwhile the server still serves.
    ws_echo_tcp(addr).await;
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// One keep-alive `GET /health` on `s`, its whole response read (`ok`, 2 bytes of body).
async fn keep_alive_get(s: &mut tokio::net::TcpStream) {
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_response(s, b"ok").await;
}

/// Reads a 200 response whose body is `body` (the connection stays open).
async fn read_response(s: &mut tokio::net::TcpStream, body: &[u8]) {
    let end = [b"\r\n\r\n", body].concat();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(&end) {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("no response")
            .unwrap();
        assert!(n > 0, "closed before the response: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
}

/// A small embedded server with these header and idle timeouts, and a connection to it.
async fn with_timeouts(
    header: Duration,
    idle: Duration,
) -> (
    tokio::net::TcpStream,
    weft::server::Shutdown,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (addr, shutdown, served) = embedded(|b| b.header_timeout(header).idle_timeout(idle)).await;
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    (s, shutdown, served)
}

/// The idle timeout closes a keep-alive HTTP/1.1 connection with no request in progress
/// (the header timeout, a minute here, is not what closes it).
#[tokio::test]
async fn a_keep_alive_connection_idle_past_the_idle_timeout_is_closed() {
    let (mut s, shutdown, served) =
        with_timeouts(Duration::from_secs(60), Duration::from_millis(300)).await;
    keep_alive_get(&mut s).await;
    keep_alive_get(&mut s).await;
    wait_closed(&mut s, Duration::from_secs(20)).await;
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// The header timeout bounds a request head, not the wait between requests: a keep-alive
/// connection idle for longer than it (but not the idle timeout, a minute here) still
/// serves its next request; a keep-alive request whose head then never ends is cut.
#[tokio::test]
async fn the_header_timeout_bounds_heads_not_the_idle_wait() {
    let (mut s, shutdown, served) =
        with_timeouts(Duration::from_millis(200), Duration::from_secs(60)).await;
    keep_alive_get(&mut s).await;
    // Idle for five header timeouts: still open, still served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    keep_alive_get(&mut s).await;
    // A request whose body comes after its head: the body is not the next head either.
    s.write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"hello").await.unwrap();
    read_response(&mut s, b"hello").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    keep_alive_get(&mut s).await;
    // The next head, a byte now and then: cut by the header timeout.
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if s.write_all(b"X").await.is_err() {
            break;
        }
    }
    wait_closed(&mut s, Duration::from_secs(20)).await;
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// An HTTP/2 connection with no stream open is closed (GOAWAY) after the idle timeout; a
/// WebSocket over HTTP/2 is a stream that keeps it open however quiet it is.
#[tokio::test]
async fn an_h2_connection_without_streams_is_closed_after_the_idle_timeout() {
    let (addr, shutdown, served) = embedded(|b| {
        b.header_timeout(Duration::from_secs(60))
            .idle_timeout(Duration::from_millis(300))
    })
    .await;
    // A plain h2c request, then nothing: the server closes the connection.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}/health"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        &res.into_body().collect().await.unwrap().to_bytes()[..],
        b"ok"
    );
    tokio::time::timeout(Duration::from_secs(20), conn)
        .await
        .expect("the idle h2 connection was not closed")
        .unwrap()
        .unwrap();
    // A WebSocket over h2c, quiet for three idle timeouts: its connection stays open.
    let url = format!("ws://{addr}/ws");
    let options = Options::default();
    let h2 = weft::tokio::H2Connection::connect(&url, &options)
        .await
        .unwrap();
    let (mut ws, _) = h2.websocket(&url, options.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    ws.send("still here").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("still here")));
    // Not even going away (a GOAWAY would refuse a new stream): a second WebSocket opens.
    let (mut second, _) = h2.websocket(&url, options).await.unwrap();
    second.send("second").await.unwrap();
    assert_eq!(second.recv().await.unwrap(), Some(Message::from("second")));
    // Once both are over, the connection has no stream left and is closed.
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    second.close(CloseCode::NORMAL, "").await.unwrap();
    drop((ws, second));
    let closed = async {
        while !h2.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the h2 connection was not closed after its last stream");
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_head_over_the_limit_is_431() {
    let (addr, shutdown, served) = embedded(|b| b.max_head_size(8192)).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let big = "a".repeat(20_000);
    let req = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn past_the_connection_limit_is_503_with_retry_after() {
    past_the_connection_limit("/ws").await;
}

/// A blocking WebSocket (on a thread of its own) holds its connection's slot too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_websocket_counts_against_the_connection_limit() {
    past_the_connection_limit("/blocking").await;
}

/// One WebSocket at `path` holds the only slot: a new connection gets 503 until it ends.
async fn past_the_connection_limit(path: &str) {
    let (addr, shutdown, served) =
        embedded(|b| b.max_connections(1).retry_after(Duration::from_secs(7))).await;
    // One WebSocket holds the only slot.
    let url = format!("ws://{addr}{path}");
    let (mut held, _) = weft::tokio::connect_url(&url, Options::default())
        .await
        .unwrap();
    held.send("hold").await.unwrap();
    assert_eq!(held.recv().await.unwrap(), Some(Message::from("hold")));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{out}"
    );
    assert!(out.contains("retry-after: 7\r\n"), "{out}");
    // Once the WebSocket is gone, the slot is free again.
    held.close(CloseCode::NORMAL, "").await.unwrap();
    drop(held);
    let mut ok = false;
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        if out.starts_with(b"HTTP/1.1 200") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the slot was not freed");
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn graceful_shutdown_sends_1001_to_every_websocket() {
    let (addr, shutdown, served) = embedded(|b| b.shutdown_grace(Duration::from_secs(5))).await;
    let url = format!("ws://{addr}/ws");
    let mut clients = Vec::new();
    for i in 0..3 {
        let (mut ws, _) = weft::tokio::connect_url(&url, Options::default())
            .await
            .unwrap();
        ws.send(format!("hi {i}")).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap(),
            Some(Message::from(format!("hi {i}")))
        );
        clients.push(ws);
    }
    let started = Instant::now();
    shutdown.shutdown();
    for mut ws in clients {
        assert_eq!(ws.recv().await.unwrap(), None);
        let close = ws
            .connection()
            .close_received()
            .cloned()
            .expect("a close frame");
        assert_eq!(close.code, CloseCode::GOING_AWAY);
    }
    served.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it waited for the grace period"
    );
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A split server WebSocket gets 1001 on a graceful shutdown too: from its read half while
/// it waits for the peer (`/split`), and from its write half alone while the read half is
/// not polled (`/push`). Without it they would be cut, with no close frame, at the end of
/// the grace period.
#[tokio::test]
async fn graceful_shutdown_sends_1001_to_split_websockets() {
    let (addr, shutdown, served) = embedded(|b| b.shutdown_grace(Duration::from_secs(10))).await;
    let (mut echo, _) = weft::tokio::connect_url(&format!("ws://{addr}/split"), Options::default())
        .await
        .unwrap();
    echo.send("split").await.unwrap();
    assert_eq!(echo.recv().await.unwrap(), Some(Message::from("split")));
    let (mut push, _) = weft::tokio::connect_url(&format!("ws://{addr}/push"), Options::default())
        .await
        .unwrap();
    assert_eq!(push.recv().await.unwrap(), Some(Message::from("tick")));
    shutdown.shutdown();
    let bound = Duration::from_secs(30);
    let end = tokio::time::timeout(bound, echo.recv())
        .await
        .expect("a hang");
    assert_eq!(end.unwrap(), None);
    let close = echo.connection().close_received().cloned();
    assert_eq!(close.expect("a close frame").code, CloseCode::GOING_AWAY);
    let pushed = async {
        loop {
            match push.recv().await {
                Ok(Some(m)) => assert_eq!(m, Message::from("tick")),
                Ok(None) => return,
                Err(e) => panic!("the push connection ended without its close: {e}"),
            }
        }
    };
    tokio::time::timeout(bound, pushed).await.expect("a hang");
    let close = push.connection().close_received().cloned();
    assert_eq!(close.expect("a close frame").code, CloseCode::GOING_AWAY);
    tokio::time::timeout(bound, served)
        .await
        .expect("a hang")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_server_closes_with_its_code_then_the_transport() {
    let (addr, shutdown, served) = embedded(|b| b).await;
    let url = format!("ws://{addr}/close");
    let (mut ws, _) = weft::tokio::connect_url(&url, Options::default())
        .await
        .unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("bye")));
    assert_eq!(ws.recv().await.unwrap(), None);
    let close = ws.connection().close_received().cloned().unwrap();
    assert_eq!(
        (close.code, &close.reason[..]),
        (CloseCode::from(4000), "done")
    );
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_bad_handshake_gets_its_status() {
    let (addr, shutdown, served) = embedded(|b| b).await;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let cases: [(&str, &str); 4] = [
        ("GET", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"),
        ("GET", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"),
        ("POST", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"),
        ("GET", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n"),
    ];
    let expected = [
        "HTTP/1.1 426",
        "HTTP/1.1 400",
        "HTTP/1.1 405",
        "HTTP/1.1 400",
    ];
    for ((method, headers), want) in cases.iter().zip(expected) {
        let with_key = if headers.contains("Version: 8") || *method == "POST" {
            format!("Sec-WebSocket-Key: {key}\r\n")
        } else {
            String::new()
        };
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} /ws HTTP/1.1\r\nHost: x\r\n{headers}{with_key}Content-Length: 0\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut out))
            .await
            .unwrap()
            .unwrap();
        let out = String::from_utf8_lossy(&out[..n]);
        assert!(out.starts_with(want), "{method} {headers}: {out}");
    }
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// A refused handshake over TLS (the refusal closes the connection) ends with the TLS
/// `close_notify`, not a bare FIN: hyper hands the stream of any request with an `Upgrade`
/// header over when the connection ends, and the refusal shuts it down properly.
#[tokio::test]
async fn a_refused_handshake_over_tls_ends_with_close_notify() {
    let cert = make_cert();
    let tls = weft::tls::server_config_from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
        .unwrap();
    let seen: Seen = Arc::default();
    let server = Server::builder()
        .bind_tls("127.0.0.1:0", tls)
        .unwrap()
        .build(handler_fn(move |req| handle(req, false, seen.clone())))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let shutdown = server.shutdown_handle();
    let served = tokio::spawn(server.serve());
    let roots = weft::tls::client_config_with_roots(cert.cert_pem.as_bytes()).unwrap();
    let mut config = (*roots).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = weft::tls::tokio_rustls::TlsConnector::from(Arc::new(config));
    let cases = [
        ("Sec-WebSocket-Version: 13\r\n", "HTTP/1.1 400"),
        (
            "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "HTTP/1.1 426",
        ),
    ];
    for (headers, want) in cases {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut s = connector.connect(name, tcp).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{headers}\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        // A missing close_notify is an UnexpectedEof error here.
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("the connection was not closed")
            .unwrap_or_else(|e| panic!("{headers}: {e} (no close_notify?)"));
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with(want), "{headers}: {out}");
    }
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// Corking: a handler corks, sends 100 small messages, uncorks; the client gets them all,
/// and the socket's TCP_CORK was on in between and off after.
#[tokio::test]
async fn cork_holds_and_uncork_sends_together() {
    let corked: Arc<Mutex<Vec<bool>>> = Arc::default();
    let corked2 = corked.clone();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build(handler_fn(move |mut req: Request<Incoming>| {
            let corked = corked2.clone();
            async move {
                match WebSocketUpgrade::from_request(&mut req) {
                    Ok(up) => up.on_upgrade(move |mut ws| async move {
                        ws.cork().unwrap();
                        let tcp = |ws: &weft::server::WebSocket| {
                            socket2::SockRef::from(ws.get_ref().tcp().unwrap())
                                .tcp_cork()
                                .unwrap()
                        };
                        corked.lock().unwrap().push(tcp(&ws));
                        for i in 0..100 {
                            ws.send(format!("m{i}")).await.unwrap();
                        }
                        ws.uncork().await.unwrap();
                        corked.lock().unwrap().push(tcp(&ws));
                        while let Ok(Some(_)) = ws.recv().await {}
                    }),
                    Err(r) => r.map(Body::from),
                }
            }
        }))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let shutdown = server.shutdown_handle();
    let served = tokio::spawn(server.serve());
    let (mut ws, _) = weft::tokio::connect_url(&format!("ws://{addr}/"), Options::default())
        .await
        .unwrap();
    for i in 0..100 {
        assert_eq!(
            ws.recv().await.unwrap(),
            Some(Message::from(format!("m{i}")))
        );
    }
    assert_eq!(*corked.lock().unwrap(), [true, false]);
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// Another protocol: the raw stream, with the bytes that came behind the request head.
#[tokio::test]
async fn a_raw_upgrade_gets_the_stream_and_the_early_bytes() {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build(handler_fn(|mut req: Request<Incoming>| async move {
            weft::server::upgrade_raw(&mut req, |mut stream, early| async move {
                let mut more = [0u8; 5];
                let _ = stream.read_exact(&mut more).await;
                let mut reply = b"got ".to_vec();
                reply.extend_from_slice(&early);
                reply.extend_from_slice(&more);
                let _ = stream.write_all(&reply).await;
                let _ = stream.shutdown().await;
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "echo-raw")
                .header("connection", "upgrade")
                .body(Body::default())
                .unwrap()
        }))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let shutdown = server.shutdown_handle();
    let served = tokio::spawn(server.serve());
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The head and the first protocol bytes in one write.
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo-raw\r\nConnection: upgrade\r\n\r\nEARLY",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s.write_all(b"LATER").await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"got EARLYLATER");
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_handler_sees_its_connection() {
    let (addr, shutdown, served) = embedded(|b| b).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = s.local_addr().unwrap();
    s.write_all(b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.ends_with(&format!("\r\n\r\n{local}")), "{out}");
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// 1001 on shutdown in a running model, the blocking one included (its WebSocket thread
/// is blocked in `recv` when the shutdown comes).
fn shutdown_sends_1001_in(model: Model, name: &str) {
    let r = start(model, name);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("ws://{}/ws", r.tcp);
        let (mut ws, _) = weft::tokio::connect_url(&url, Options::default())
            .await
            .unwrap();
        ws.send("x").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("x")));
        r.shutdown.shutdown();
        let end = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await;
        assert_eq!(end.expect("no close within 10 s").unwrap(), None);
        let close = ws
            .connection()
            .close_received()
            .cloned()
            .expect("a close frame");
        assert_eq!(close.code, CloseCode::GOING_AWAY);
    });
    r.thread.join().unwrap().unwrap();
}

#[test]
fn shutdown_sends_1001_to_blocking_websockets() {
    shutdown_sends_1001_in(Model::Blocking, "bl1001");
}

#[test]
fn shutdown_sends_1001_per_core() {
    shutdown_sends_1001_in(Model::PerCore(Some(2)), "pc1001");
}

#[test]
fn shutdown_sends_1001_uring() {
    let _one = URING.lock().unwrap_or_else(|p| p.into_inner());
    shutdown_sends_1001_in(Model::Uring(Some(2)), "ur1001");
}

/// One connection handed over as a plain stream (inetd style): HTTP then a WebSocket on it.
#[tokio::test]
async fn serve_connection_serves_a_given_stream() {
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let server = Server::builder()
        .build(handler_fn(move |req| handle(req, false, seen2.clone())))
        .unwrap();
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let info = ConnInfo::new(
        weft::server::Addr::Unknown,
        weft::server::Addr::Unknown,
        TransportKind::Other,
    );
    let served = tokio::spawn(async move {
        server
            .serve_connection(weft::server::Stream::other(theirs), info)
            .await
    });
    let (mut ws, _) = weft::tokio::connect("ws://localhost/ws", ours)
        .await
        .unwrap();
    ws.send("given").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("given")));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    drop(ws);
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .unwrap()
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].2, TransportKind::Other);
}

/// With HTTP/2 off, h2c is refused and HTTP/1.1 (with its upgrades) still served.
#[tokio::test]
async fn http2_off_serves_http1_only() {
    let (addr, shutdown, served) = embedded(|b| b.http2(false)).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let h2 = async {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let req = Request::get(format!("http://{addr}/health"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.send_request(req).await
    };
    let result = tokio::time::timeout(Duration::from_secs(5), h2)
        .await
        .unwrap();
    assert!(result.is_err(), "h2c was served: {result:?}");
    ws_echo_tcp(addr).await;
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// A TLS server that asks for client certificates: the handler sees the client's chain.
#[tokio::test]
async fn the_handler_sees_the_client_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    use weft::tls::rustls;
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["client".to_string()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder(roots.clone())
        .build()
        .unwrap();
    let key_der = |k: &KeyPair| rustls_pki_types::PrivateKeyDer::Pkcs8(k.serialize_der().into());
    let server_config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server_cert.der().clone()], key_der(&server_key))
        .unwrap();
    let seen: Seen = Arc::default();
    let server = Server::builder()
        .bind_tls("127.0.0.1:0", Arc::new(server_config))
        .unwrap()
        .build(handler_fn(move |req| handle(req, false, seen.clone())))
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let shutdown = server.shutdown_handle();
    let served = tokio::spawn(server.serve());

    let client_config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client_cert.der().clone()], key_der(&client_key))
        .unwrap();
    let connector = weft::tls::tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /certs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("\r\n\r\n1"),
        "{out}"
    );
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// A tower service that is not ready at its first `poll_ready` (it wakes its task and
/// answers `Pending`), or (`fail`) whose `poll_ready` fails.
#[derive(Clone)]
struct NotReadyAtOnce {
    polls: Arc<std::sync::atomic::AtomicUsize>,
    fail: bool,
}

impl tower_service::Service<Request<Incoming>> for NotReadyAtOnce {
    type Response = Response<Body>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Response<Body>, std::io::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::io::Error>> {
        use std::sync::atomic::Ordering;
        if self.fail {
            return std::task::Poll::Ready(Err(std::io::Error::other("not today")));
        }
        if self.polls.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<Incoming>) -> Self::Future {
        std::future::ready(Ok(Response::new(Body::from("ready"))))
    }
}

/// The server waits for a service that is not ready at once, and ends the connection of
/// one whose `poll_ready` fails.
#[tokio::test]
async fn a_service_is_made_ready_before_it_is_called() {
    for fail in [false, true] {
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .unwrap()
            .build(NotReadyAtOnce {
                polls: polls.clone(),
                fail,
            })
            .unwrap();
        let addr = server.local_addr().unwrap();
        let shutdown = server.shutdown_handle();
        let served = tokio::spawn(server.serve());
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
            .await
            .expect("hung");
        let out = String::from_utf8_lossy(&out);
        if fail {
            assert!(!out.contains("ready"), "{out}");
        } else {
            assert!(
                out.starts_with("HTTP/1.1 200") && out.ends_with("ready"),
                "{out}"
            );
            assert!(polls.load(std::sync::atomic::Ordering::SeqCst) >= 2);
        }
        shutdown.shutdown();
        served.await.unwrap().unwrap();
    }
}

/// `is_websocket_request` routes plain requests, HTTP/1.1 upgrades and HTTP/2 extended
/// CONNECTs apart, an `Upgrade` header that is not `websocket` included.
#[tokio::test]
async fn is_websocket_request_routes_each_kind() {
    let (addr, shutdown, served) = embedded(|b| b).await;
    assert!(http_get_async(addr, "/which", "")
        .await
        .ends_with("\r\n\r\nplain"));
    let other = http_get_async(addr, "/which", "Upgrade: h2c\r\nConnection: upgrade\r\n").await;
    assert!(other.ends_with("\r\n\r\nplain"), "{other}");
    let url = format!("ws://{addr}/which");
    let (mut ws, _) = weft::tokio::connect_url(&url, Options::default())
        .await
        .unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("websocket")));
    assert_eq!(ws.recv().await.unwrap(), None);
    let options = Options::default();
    let h2 = weft::tokio::H2Connection::connect(&url, &options)
        .await
        .unwrap();
    let (mut ws, _) = h2.websocket(&url, options).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::from("websocket")));
    assert_eq!(ws.recv().await.unwrap(), None);
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// A `GET` with `extra` header lines over a fresh connection (closed after it); the whole
/// response.
async fn http_get_async(addr: SocketAddr, path: &str, extra: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("hung")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A hand-written tower `Service` asks for its connection in `call` itself (not in the
/// future it returns), and over HTTP/1.1 and h2c alike, also when it is not ready at
/// once; a plain request carries nothing in its extensions for it.
#[tokio::test]
async fn a_service_sees_its_connection_in_call() {
    /// Not ready at its first poll (each request's clone): the server polls it again.
    #[derive(Clone)]
    struct PeerInCall {
        polled: bool,
    }
    impl tower_service::Service<Request<Incoming>> for PeerInCall {
        type Response = Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Self::Error>>;
        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            if std::mem::replace(&mut self.polled, true) {
                return std::task::Poll::Ready(Ok(()));
            }
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
        fn call(&mut self, req: Request<Incoming>) -> Self::Future {
            let peer = ConnInfo::of(&req).map(|i| i.peer().to_string());
            let body = format!("{peer:?} {}", req.extensions().len());
            std::future::ready(Ok(Response::new(Body::from(body))))
        }
    }
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build(PeerInCall { polled: false })
        .unwrap();
    let addr = server.local_addr().unwrap();
    let shutdown = server.shutdown_handle();
    let served = tokio::spawn(server.serve());

    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = s.local_addr().unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.ends_with(&format!("\r\n\r\nSome(\"{local}\") 0")),
        "{out}"
    );

    let (status, version, body) = h2c_get(addr).await;
    assert_eq!((status, version), (StatusCode::OK, http::Version::HTTP_2));
    let body = String::from_utf8_lossy(&body);
    assert!(body.starts_with("Some(\"127.0.0.1:"), "{body}");
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}

/// The first bytes tell HTTP/2 from HTTP/1.1 however they are cut: a request head and the
/// h2c preface sent a byte at a time are each served as what they are.
#[tokio::test]
async fn a_first_request_sent_a_byte_at_a_time_is_recognized() {
    let (addr, shutdown, served) = embedded(|b| b).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for b in b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // The preface a byte at a time, then an h2 client on the same socket (it sends the
    // preface again, which is no longer the connection's start: refused) -- so the
    // preface goes by hand and the client speaks without it: hyper's h2 answers SETTINGS.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for b in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut frame))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        frame[3], 4,
        "the server's first frame is SETTINGS: {frame:?}"
    );
    drop(s);
    shutdown.shutdown();
    served.await.unwrap().unwrap();
}
