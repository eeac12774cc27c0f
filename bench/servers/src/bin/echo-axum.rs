//! axum's echo server: `axum::extract::ws` (tokio-tungstenite underneath) on `axum::serve`,
//! as axum's docs and its websockets example write it: a `Router` whose handler takes the
//! `WebSocketUpgrade` extractor and returns `on_upgrade(callback)`; the callback gets a
//! `WebSocket` on hyper's upgraded connection. Limits as `echo-tungstenite`'s (64 MiB
//! messages, tungstenite's 16 MiB frames), other settings axum's defaults (tungstenite's
//! 128 KiB write buffer). Corked through axum's `Sink`: `feed` every message already
//! readable, then one `flush`, as the tokio-tungstenite server does.
//!
//! The same route answers `GET /` without an upgrade with 200 `ok` (`&'static str`:
//! `text/plain`, Content-Length 2), for the HTTP requests/s benchmark: one path, the
//! upgrade or the plain response chosen per request (the extractor is taken as a
//! `Result`), as a weft::server application serving both on `/` does. TCP_NODELAY through
//! axum's `ListenerExt::tap_io`, as its docs show.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::{SinkExt, Stream, StreamExt};
use servers::{serve_listener, MAX_MESSAGE};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

fn main() {
    serve_listener("echo-axum", |listener, args| async move {
        let verbose = args.verbose;
        let listener = listener.tap_io(move |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                if verbose {
                    eprintln!("TCP_NODELAY: {e}");
                }
            }
        });
        let app = Router::new().route("/", get(root));
        axum::serve(listener, app).await
    });
}

async fn root(ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Response {
    match ws {
        Ok(ws) => ws
            .max_message_size(MAX_MESSAGE)
            .max_frame_size(16 << 20)
            .on_upgrade(|socket| async move {
                // Errors are the load generator hanging up.
                let _ = echo(socket).await;
            }),
        Err(_) => "ok".into_response(),
    }
}

/// The next item if it is ready now (`None`: it is not), polled with the task's own context.
async fn ready_now<S: Stream + Unpin>(s: &mut S) -> Option<Option<S::Item>> {
    poll_fn(|cx| match Pin::new(&mut *s).poll_next(cx) {
        Poll::Ready(item) => Poll::Ready(Some(item)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

fn is_data(msg: &Message) -> bool {
    matches!(msg, Message::Text(_) | Message::Binary(_))
}

async fn echo(mut ws: WebSocket) -> Result<(), axum::Error> {
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if is_data(&msg) {
            ws.feed(msg).await?;
        }
        while let Some(Some(next)) = ready_now(&mut ws).await {
            let next = next?;
            if is_data(&next) {
                ws.feed(next).await?;
            }
        }
        ws.flush().await?;
    }
    Ok(())
}
