//! # weft::axum: an axum extractor that upgrades to weft WebSockets
//!
//! [`WebSocketUpgrade`] is used as `axum::extract::ws::WebSocketUpgrade` is: take it as a
//! handler's argument, answer with [`on_upgrade`](WebSocketUpgrade::on_upgrade). The
//! WebSocket the callback gets is a weft one ([`WebSocket`]), over HTTP/1.1 (`Upgrade:
//! websocket`) and over HTTP/2 (RFC 8441's extended CONNECT, which `axum::serve` enables
//! when axum has its `http2` feature). Every check of the handshake is weft-proto's; a
//! request that fails one is refused with [`WebSocketUpgradeRejection`], weft's status,
//! headers and reason (426 with `Sec-WebSocket-Version: 13` for another version).
//!
//! ```no_run
//! use axum::{response::Response, routing::any, Router};
//! use weft::axum::WebSocketUpgrade;
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> Response {
//!     upgrade.protocols(["chat"]).on_upgrade(|mut ws| async move {
//!         while let Ok(Some(msg)) = ws.recv().await {
//!             if ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new().route("/ws", any(ws));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Route with `any` (or `get` plus `connect`): over HTTP/2 the handshake is a CONNECT.
//! `Option<WebSocketUpgrade>` is `None` for a request that does not ask for a WebSocket,
//! so one route can serve a page and its WebSocket.
//!
//! When axum serves over TCP (`axum::serve` with a `TcpListener`), the WebSocket of an
//! HTTP/1.1 upgrade runs on the TCP stream itself (`ws.get_ref().kind()` is
//! [`TransportKind::Tcp`](crate::server::TransportKind::Tcp)), not behind hyper; over
//! HTTP/2 it runs on the HTTP/2 stream. A [`Router`](::axum::Router) may also be served by
//! [`weft::server`](crate::server) (it is a `tower::Service`); then
//! [`conn_info`](WebSocketUpgrade::conn_info) describes the connection and a graceful
//! shutdown sends Close 1001 to the WebSockets.

use crate::accept::Decision;
use crate::options::Options;
use crate::server::ConnInfo;
use ::axum::body::Body;
use ::axum::extract::{FromRequestParts, OptionalFromRequestParts};
use ::axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use hyper::upgrade::OnUpgrade;
use std::future::Future;
use weft_proto::handshake::{reject_for, Request};

pub use crate::server::{is_websocket_request, BlockingWebSocket, WebSocket};
pub use weft_proto::{CloseCode, CloseFrame, Message, MessageKind, Utf8Bytes};

/// The extractor of a WebSocket handshake: a request that passed every check, ready to be
/// answered. See the [module docs](self).
#[derive(Debug)]
pub struct WebSocketUpgrade {
    inner: crate::server::WebSocketUpgrade,
}

impl WebSocketUpgrade {
    /// The subprotocols this server speaks, in its order of preference: the first one the
    /// client offered is selected by [`on_upgrade`](Self::on_upgrade) (none in common: no
    /// subprotocol).
    pub fn protocols<I, S>(self, supported: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        WebSocketUpgrade {
            inner: self.inner.protocols(supported),
        }
    }

    /// The connection's options (limits, timers, permessage-deflate) instead of the
    /// defaults (or, under `weft::server`, the server's).
    pub fn options(self, options: Options) -> Self {
        WebSocketUpgrade {
            inner: self.inner.options(options),
        }
    }

    /// The subprotocol [`protocols`](Self::protocols) selects for this request.
    pub fn selected_protocol(&self) -> Option<&str> {
        self.inner.selected_protocol()
    }

    /// The checked handshake request: resource, Host, Origin, offered subprotocols and
    /// extensions, all headers.
    pub fn request(&self) -> &Request {
        self.inner.request()
    }

    /// The connection the request came on, when `weft::server` serves the router.
    pub fn conn_info(&self) -> Option<&ConnInfo> {
        self.inner.conn_info()
    }

    /// Accepts (with the subprotocol [`protocols`](Self::protocols) selects) and runs
    /// `callback` with the WebSocket once the response is sent. Return the response from
    /// the handler.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner.on_upgrade(callback)
    }

    /// Answers with `decision` (an [`Accept`](crate::Accept) with a subprotocol and extra
    /// headers, or a [`Reject`](crate::Reject) with a status and reason); if accepted,
    /// runs `callback` with the WebSocket once the response is sent.
    pub fn respond<F, Fut>(self, decision: Decision, callback: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner.respond(decision, callback)
    }

    /// Accepts as [`on_upgrade`](Self::on_upgrade) does, and runs `callback` with a
    /// blocking WebSocket on a thread of its own: the callback may block.
    pub fn on_upgrade_blocking<F>(self, callback: F) -> Response
    where
        F: FnOnce(BlockingWebSocket) + Send + 'static,
    {
        self.inner.on_upgrade_blocking(callback)
    }

    /// Answers with `decision`; if accepted, runs `callback` with a blocking WebSocket on
    /// a thread of its own.
    pub fn respond_blocking<F>(self, decision: Decision, callback: F) -> Response
    where
        F: FnOnce(BlockingWebSocket) + Send + 'static,
    {
        self.inner.respond_blocking(decision, callback)
    }

    /// The framework-independent upgrade underneath.
    pub fn into_inner(self) -> crate::server::WebSocketUpgrade {
        self.inner
    }

    fn extract(parts: &mut Parts) -> Result<Self, WebSocketUpgradeRejection> {
        // hyper puts the upgrade in the extensions of a request it can upgrade; a router
        // called some other way (`oneshot` in a test) has none and could never upgrade.
        let upgradable = parts.extensions.get::<OnUpgrade>().is_some();
        let inner = crate::server::WebSocketUpgrade::from_parts(parts)
            .map_err(WebSocketUpgradeRejection::from)?;
        if !upgradable {
            let response = reject_for(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this connection cannot be upgraded: serve the router with hyper \
                 (axum::serve) and upgrades",
                parts.version,
            );
            return Err(response.into());
        }
        Ok(WebSocketUpgrade { inner })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::extract(parts)
    }
}

/// `Option<WebSocketUpgrade>`: `None` for a request that does not ask for a WebSocket (no
/// `Upgrade: websocket`, no extended CONNECT for `websocket`); a request that asks for one
/// is checked, and refused if it fails.
impl<S: Send + Sync> OptionalFromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if with_request(parts, is_websocket_request) {
            Self::extract(parts).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Runs `f` on the request head in `parts` (moved into a bodiless request and back, without
/// copying).
fn with_request<T>(parts: &mut Parts, f: impl FnOnce(&http::Request<()>) -> T) -> T {
    let (empty, ()) = http::Request::new(()).into_parts();
    let request = http::Request::from_parts(std::mem::replace(parts, empty), ());
    let out = f(&request);
    *parts = request.into_parts().0;
    out
}

/// A WebSocket handshake that weft refused: the response to send (its 4xx and reason; 426
/// with `Sec-WebSocket-Version: 13` for another version; over HTTP/2 without a
/// `Connection` header). As an axum rejection it is answered as it is.
#[derive(Debug)]
pub struct WebSocketUpgradeRejection {
    // Boxed: a refusal is rare, and the extractor's `Result` stays small.
    response: Box<http::Response<String>>,
}

impl WebSocketUpgradeRejection {
    /// The refusal's status.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The refusal's headers.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// Why the handshake was refused (the body of the response).
    pub fn reason(&self) -> &str {
        self.response.body()
    }

    /// The refusal as an HTTP response.
    pub fn into_http(self) -> http::Response<String> {
        *self.response
    }
}

impl From<http::Response<String>> for WebSocketUpgradeRejection {
    fn from(response: http::Response<String>) -> Self {
        WebSocketUpgradeRejection {
            response: Box::new(response),
        }
    }
}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        (*self.response).map(Body::from)
    }
}

impl std::fmt::Display for WebSocketUpgradeRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WebSocket handshake refused ({}): {}",
            self.status(),
            self.reason()
        )
    }
}

impl std::error::Error for WebSocketUpgradeRejection {}
