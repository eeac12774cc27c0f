//! yawc's echo server (yawc: a fastwebsockets fork with permessage-deflate), as its docs'
//! server example does it: hyper's HTTP/1 server with upgrades, `WebSocket::upgrade_with_options`,
//! then its `Stream`/`Sink` of whole messages (fragments reassembled), corked like the
//! tokio-tungstenite server (`feed` every message already readable, then one `flush`).
//! UTF-8 checking on (`with_utf8`; yawc's default is off, the RFC and every other server
//! here check it).
//!
//! `--deflate`: compression on with the same settings as weft's defaults: zlib level 1
//! (yawc's default is 6), 15-bit windows both ways (`server_max_window_bits` and
//! `client_max_window_bits` set to 15: with the `zlib` feature and no preference yawc
//! answers a valueless `client_max_window_bits` offer with 9), context takeover unless the
//! client asks otherwise; other settings yawc's defaults (no pool, threshold 0).

use futures_util::{SinkExt, Stream, StreamExt};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use servers::{serve, MAX_MESSAGE};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use yawc::{CompressionLevel, DeflateOptions, OpCode, Options, WebSocket, WebSocketError};

fn main() {
    serve("echo-yawc", |stream, args| {
        let mut options = Options::default()
            .with_limits(MAX_MESSAGE, MAX_MESSAGE)
            .with_utf8();
        if args.deflate || args.deflate_nct {
            options.compression = Some(DeflateOptions {
                level: CompressionLevel::new(1),
                server_max_window_bits: Some(15),
                client_max_window_bits: Some(15),
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                ..DeflateOptions::default()
            });
        }
        async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            http1::Builder::new()
                .serve_connection(
                    io,
                    service_fn(move |req| server_upgrade(req, options.clone())),
                )
                .with_upgrades()
                .await
        }
    });
}

/// The next item if it is ready now (`None`: it is not), polled with the task's own context.
async fn ready_now<S: Stream + Unpin>(s: &mut S) -> Option<Option<S::Item>> {
    poll_fn(|cx| match Pin::new(&mut *s).poll_next(cx) {
        Poll::Ready(item) => Poll::Ready(Some(item)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

async fn handle_client(fut: yawc::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    while let Some(frame) = ws.next().await {
        match frame.opcode() {
            OpCode::Text | OpCode::Binary => ws.feed(frame).await?,
            OpCode::Close => break,
            _ => {}
        }
        while let Some(Some(next)) = ready_now(&mut ws).await {
            match next.opcode() {
                OpCode::Text | OpCode::Binary => ws.feed(next).await?,
                OpCode::Close => return Ok(()),
                _ => {}
            }
        }
        ws.flush().await?;
    }
    Ok(())
}

async fn server_upgrade(
    mut req: Request<Incoming>,
    options: Options,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = WebSocket::upgrade_with_options(&mut req, options)?;
    tokio::spawn(async move {
        // Errors are the load generator hanging up.
        let _ = handle_client(fut).await;
    });
    Ok(response)
}
