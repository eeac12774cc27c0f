//! `weft::axum::WebSocketUpgrade` end to end: an axum `Router` served by `axum::serve` (and
//! once by `weft::server`) on 127.0.0.1, with weft's tokio client over HTTP/1.1 and hyper's
//! HTTP/2 client (h2c, prior knowledge) for RFC 8441's extended CONNECT.

use axum::body::Body as AxumBody;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use http::{Method, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use weft::axum::WebSocketUpgrade;
use weft::proto::handshake::{check_extended_connect_response, ClientRequest};
use weft::server::TransportKind;
use weft::{CloseCode, Event, Message, Options, Role};

/// Every test's bound: a hang fails instead of blocking the run.
const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("the test took too long")
}

/// What the server's WebSocket saw, reported to the test.
#[derive(Debug)]
struct Seen {
    kind: TransportKind,
    extended_connect: bool,
    protocol: Option<String>,
    weft_server: bool,
}

/// A router whose `/ws` echoes through the extractor (selecting `superchat`, else `chat`)
/// and reports what it saw on `report`.
fn echo_app(report: mpsc::UnboundedSender<Seen>) -> Router {
    Router::new().route(
        "/ws",
        any(move |upgrade: WebSocketUpgrade| async move {
            let upgrade = upgrade.protocols(["superchat", "chat"]);
            let extended_connect = upgrade.request().is_extended_connect();
            let protocol = upgrade.selected_protocol().map(str::to_owned);
            let weft_server = upgrade.conn_info().is_some();
            upgrade.on_upgrade(move |mut ws| async move {
                let _ = report.send(Seen {
                    kind: ws.get_ref().kind(),
                    extended_connect,
                    protocol,
                    weft_server,
                });
                while let Ok(Some(msg)) = ws.recv().await {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            })
        }),
    )
}

/// Serves `app` with `axum::serve` on 127.0.0.1 (a port of the system's choosing).
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    rx.recv().await.expect("the handler ran")
}

/// Sends a text and a binary message on `ws` and checks each comes back as it went.
async fn check_echo<S>(ws: &mut weft::tokio::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send("hello, axum").await.expect("send text");
    assert_eq!(
        ws.recv().await.expect("recv text"),
        Some(Message::from("hello, axum"))
    );
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(binary.clone()).await.expect("send binary");
    assert_eq!(
        ws.recv().await.expect("recv binary"),
        Some(Message::from(binary))
    );
    ws.close(CloseCode::NORMAL, "done").await.expect("close");
    assert_eq!(ws.connection().close_status(), CloseCode::NORMAL);
}

#[tokio::test]
async fn echoes_text_and_binary_over_http1_on_the_tcp_stream() {
    bounded(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let addr = serve(echo_app(tx)).await;
        let (mut ws, response) =
            weft::tokio::connect_url(&format!("ws://{addr}/ws"), Options::default())
                .await
                .expect("connect");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.protocol(), None);
        check_echo(&mut ws).await;
        let seen = next_seen(&mut rx).await;
        // Taken back out of hyper: the WebSocket runs on the TCP stream itself.
        assert_eq!(seen.kind, TransportKind::Tcp);
        assert!(!seen.extended_connect);
        assert!(!seen.weft_server);
    })
    .await
}

/// Sends `request` (no body) on a fresh HTTP/1.1 connection to `addr`; the status, headers
/// and body of the answer.
async fn http1(addr: SocketAddr, request: http::Request<()>) -> (http::response::Parts, Bytes) {
    let io = TokioIo::new(TcpStream::connect(addr).await.expect("connect"));
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let response = send
        .send_request(request.map(|()| Empty::<Bytes>::new()))
        .await
        .expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts, body)
}

fn upgrade_request(addr: SocketAddr, version: &str) -> http::Request<()> {
    http::Request::builder()
        .uri("/ws")
        .header("host", addr.to_string())
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", version)
        .body(())
        .expect("request")
}

#[tokio::test]
async fn another_version_gets_426_through_axum() {
    bounded(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let addr = serve(echo_app(tx)).await;
        let (parts, body) = http1(addr, upgrade_request(addr, "8")).await;
        assert_eq!(parts.status, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(parts.headers["sec-websocket-version"], "13");
        assert!(!body.is_empty(), "the refusal says why");
        // The same request with version 13 is accepted: the 426 came from the version.
        let (parts, _) = http1(addr, upgrade_request(addr, "13")).await;
        assert_eq!(parts.status, StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(next_seen(&mut rx).await.kind, TransportKind::Tcp);
    })
    .await
}

#[tokio::test]
async fn a_request_without_the_handshake_headers_is_refused() {
    bounded(async {
        let (tx, _rx) = mpsc::unbounded_channel();
        let addr = serve(echo_app(tx)).await;
        let request = http::Request::builder()
            .uri("/ws")
            .header("host", addr.to_string())
            .body(())
            .expect("request");
        let (parts, _) = http1(addr, request).await;
        assert!(parts.status.is_client_error(), "{}", parts.status);
    })
    .await
}

async fn connect_offering(
    addr: SocketAddr,
    offered: &[&str],
) -> (
    weft::tokio::WebSocket<weft::tokio::MaybeTlsStream<TcpStream>>,
    Option<String>,
) {
    let request = ClientRequest::builder(&format!("ws://{addr}/ws"))
        .protocols(offered.iter().copied())
        .build()
        .expect("request");
    let (ws, response) = weft::tokio::connect_request(&request, Options::default())
        .await
        .expect("connect");
    (ws, response.protocol().map(str::to_owned))
}

#[tokio::test]
async fn selects_the_servers_preferred_subprotocol() {
    bounded(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let addr = serve(echo_app(tx)).await;

        // The server prefers superchat, whatever the client's order.
        let (mut ws, protocol) = connect_offering(addr, &["chat", "superchat"]).await;
        assert_eq!(protocol.as_deref(), Some("superchat"));
        assert_eq!(
            next_seen(&mut rx).await.protocol.as_deref(),
            Some("superchat")
        );
        check_echo(&mut ws).await;

        let (mut ws, protocol) = connect_offering(addr, &["other", "chat"]).await;
        assert_eq!(protocol.as_deref(), Some("chat"));
        assert_eq!(next_seen(&mut rx).await.protocol.as_deref(), Some("chat"));
        check_echo(&mut ws).await;

        // Nothing in common: accepted without a subprotocol.
        let (mut ws, protocol) = connect_offering(addr, &["other"]).await;
        assert_eq!(protocol, None);
        assert_eq!(next_seen(&mut rx).await.protocol, None);
        check_echo(&mut ws).await;
    })
    .await
}

/// An HTTP/2 connection (h2c, prior knowledge) to `addr` whose server allows extended
/// CONNECT.
async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let io = TokioIo::new(TcpStream::connect(addr).await.expect("connect"));
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(io)
        .await
        .expect("HTTP/2 handshake");
    // The server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) arrive on hyper's connection
    // task, soon after the handshake.
    let mut waited = Duration::ZERO;
    while !conn.is_extended_connect_protocol_enabled() {
        assert!(
            waited < Duration::from_secs(5),
            "the server did not enable extended CONNECT"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += Duration::from_millis(5);
    }
    tokio::spawn(conn);
    send
}

/// An extended CONNECT for `/ws` offering `offered`, as weft's client builds it.
fn extended_connect(
    addr: SocketAddr,
    offered: &[&str],
    version: Option<&str>,
) -> (ClientRequest, http::Request<Empty<Bytes>>) {
    let client = ClientRequest::builder(&format!("ws://{addr}/ws"))
        .protocols(offered.iter().copied())
        .build()
        .expect("request");
    let mut request = client.to_extended_connect().map(|()| Empty::new());
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    if let Some(v) = version {
        request
            .headers_mut()
            .insert("sec-websocket-version", v.parse().expect("value"));
    }
    (client, request)
}

#[tokio::test]
async fn echoes_over_http2_extended_connect() {
    bounded(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let addr = serve(echo_app(tx)).await;
        let mut send = h2(addr).await;
        let (client, request) = extended_connect(addr, &["chat"], None);
        assert_eq!(request.method(), Method::CONNECT);
        let mut response = send.send_request(request).await.expect("response");
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(response.status(), StatusCode::OK);
        let checked = check_extended_connect_response(&response, &client).expect("checked");
        assert_eq!(checked.protocol(), Some("chat"));
        let upgraded = hyper::upgrade::on(&mut response).await.expect("upgraded");
        let mut ws = weft::tokio::WebSocket::from_raw(
            TokioIo::new(upgraded),
            Role::Client,
            Options::default(),
        );
        check_echo(&mut ws).await;
        let seen = next_seen(&mut rx).await;
        assert!(seen.extended_connect, "the handshake was RFC 8441's");
        // An HTTP/2 stream has no socket of its own.
        assert_eq!(seen.kind, TransportKind::Other);
        assert_eq!(seen.protocol.as_deref(), Some("chat"));

        // Another stream of the same connection: a refused version gets weft's 426.
        let (_, request) = extended_connect(addr, &[], Some("8"));
        let response = send.send_request(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()["sec-websocket-version"], "13");
        assert!(!response.headers().contains_key("connection"));
    })
    .await
}

#[tokio::test]
async fn optional_extractor_serves_a_page_and_its_websocket_on_one_route() {
    bounded(async {
        async fn page_or_ws(upgrade: Option<WebSocketUpgrade>) -> Response {
            match upgrade {
                Some(upgrade) => upgrade.on_upgrade(|mut ws| async move {
                    while let Ok(Some(msg)) = ws.recv().await {
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                }),
                None => "a page".into_response(),
            }
        }
        let addr = serve(Router::new().route("/ws", any(page_or_ws))).await;

        let page = http::Request::builder()
            .uri("/ws")
            .header("host", addr.to_string())
            .body(())
            .expect("request");
        let (parts, body) = http1(addr, page).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(body, "a page");

        let (mut ws, _) = weft::tokio::connect_url(&format!("ws://{addr}/ws"), Options::default())
            .await
            .expect("connect");
        check_echo(&mut ws).await;

        // A request that asks for a WebSocket and fails a check is refused, not served
        // the page.
        let (parts, _) = http1(addr, upgrade_request(addr, "8")).await;
        assert_eq!(parts.status, StatusCode::UPGRADE_REQUIRED);
    })
    .await
}

#[tokio::test]
async fn a_router_called_without_hyper_cannot_upgrade() {
    use tower_service::Service;
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut app = echo_app(tx);
    let request =
        upgrade_request("127.0.0.1:1".parse().expect("address"), "13").map(|()| AxumBody::empty());
    let response = bounded(app.call(request)).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_router_served_by_weft_server_gets_conn_info_and_the_shutdown_close() {
    bounded(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let server = weft::server::Server::builder()
            .bind("127.0.0.1:0")
            .expect("bind")
            .shutdown_grace(Duration::from_secs(15))
            .build(echo_app(tx))
            .expect("server");
        let addr = server.local_addr().expect("address");
        let shutdown = server.shutdown_handle();
        let served = tokio::spawn(server.serve());

        let (mut ws, _) = weft::tokio::connect_url(&format!("ws://{addr}/ws"), Options::default())
            .await
            .expect("connect");
        ws.send("before").await.expect("send");
        assert_eq!(
            ws.recv().await.expect("recv"),
            Some(Message::from("before"))
        );
        let seen = next_seen(&mut rx).await;
        assert!(seen.weft_server);
        assert_eq!(seen.kind, TransportKind::Tcp);

        shutdown.shutdown();
        let close = loop {
            match ws.next_event().await.expect("event") {
                Some(Event::Close(frame)) => break frame,
                Some(_) => continue,
                None => panic!("closed without a close frame"),
            }
        };
        assert_eq!(close.map(|f| f.code), Some(CloseCode::GOING_AWAY));
        // Driving on sends the reply to the close; then the server has nothing left and
        // stops well before its grace period ends.
        assert!(ws.next_event().await.expect("end").is_none());
        let started = std::time::Instant::now();
        served.await.expect("joined").expect("served");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the server waited out its grace"
        );
    })
    .await
}
