//! tokio-tungstenite's echo server. Its docs: `feed` (tungstenite's `write`) buffers,
//! `flush` writes; its own echo example forwards the stream into the sink
//! (`read.forward(write)`), which feeds every message that is ready and flushes when the
//! stream would block. This is that, without `split()`'s lock: receive one, feed every
//! message already readable, then flush once.

use futures_util::{SinkExt, Stream, StreamExt};
use servers::{serve, MAX_MESSAGE};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error;

fn main() {
    serve("echo-tungstenite", |stream, _| echo(stream));
}

/// The next item if it is ready now (`None`: it is not), polled with the task's own context.
async fn ready_now<S: Stream + Unpin>(s: &mut S) -> Option<Option<S::Item>> {
    poll_fn(|cx| match Pin::new(&mut *s).poll_next(cx) {
        Poll::Ready(item) => Poll::Ready(Some(item)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

async fn echo(stream: tokio::net::TcpStream) -> Result<(), Error> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(16 << 20));
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
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
