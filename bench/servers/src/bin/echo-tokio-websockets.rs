//! tokio-websockets' echo server, as its `examples/echo_server.rs` (the one it benchmarks
//! with) sets it up: `frame_size(usize::MAX)`, the task `unconstrained`; plus corking
//! through its `Sink` (`feed` every message already readable, then one `flush`), which its
//! docs describe (`flush_threshold`: queued frames are written at 8 KiB or on flush).

use futures_util::{SinkExt, Stream, StreamExt};
use servers::{serve, MAX_MESSAGE};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use tokio_websockets::{Config, Error, Limits, ServerBuilder};

fn main() {
    serve("echo-tokio-websockets", |stream, _| {
        tokio::task::unconstrained(echo(stream))
    });
}

async fn ready_now<S: Stream + Unpin>(s: &mut S) -> Option<Option<S::Item>> {
    poll_fn(|cx| match Pin::new(&mut *s).poll_next(cx) {
        Poll::Ready(item) => Poll::Ready(Some(item)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

async fn echo(stream: tokio::net::TcpStream) -> Result<(), Error> {
    let (_, mut ws) = ServerBuilder::new()
        .config(Config::default().frame_size(usize::MAX))
        .limits(Limits::default().max_payload_len(Some(MAX_MESSAGE)))
        .accept(stream)
        .await?;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.feed(msg).await?;
        }
        while let Some(Some(next)) = ready_now(&mut ws).await {
            let next = next?;
            if next.is_text() || next.is_binary() {
                ws.feed(next).await?;
            }
        }
        ws.flush().await?;
    }
    Ok(())
}
