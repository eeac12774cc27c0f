//! weft's echo server, as `crates/weft/examples/echo-server.rs` does it: `recv`, then `feed`
//! every message that has already arrived (`try_recv`), then one `flush` (corking).
//! `--deflate`: `Options::deflate` with weft's `DeflateConfig::default()` (accept the
//! client's offer: 15-bit windows, context takeover unless asked otherwise, level 1,
//! messages under 64 bytes sent uncompressed), as the example's `--deflate` does;
//! `--deflate-level N` and `--deflate-window-bits N` change the level and both windows.

use bytes::Bytes;
use futures_util::future::Either;
use futures_util::FutureExt;
use servers::{serve, Args, MAX_MESSAGE};
use std::future::Future;
use weft::proto::Message;
use weft::Options;

fn main() {
    serve("echo-weft", |stream, args: &Args| {
        let mut options = Options::default();
        options.config.max_message_size = Some(MAX_MESSAGE as u64);
        options.config.max_frame_size = Some(MAX_MESSAGE as u64);
        if let Some(n) = args.read_buffer_size {
            options.config.read_buffer_size = n;
        }
        if args.deflate || args.deflate_nct {
            let mut d = weft::proto::deflate::DeflateConfig::default();
            if let Some(level) = args.deflate_level {
                d.level = level;
            }
            if let Some(bits) = args.deflate_window_bits {
                d.server_max_window_bits = Some(bits);
                d.client_max_window_bits = Some(bits);
            }
            options.deflate = Some(d);
        }
        echo(stream, options, args.corrupt_every)
    });
}

/// The connection: the handshake, then the echo. (Chained with `then`, not one `async fn`:
/// an `async fn` keeps its arguments, here the options, beside the WebSocket for as long
/// as the connection lasts, and the WebSocket twice if it is an argument.)
fn echo(
    stream: tokio::net::TcpStream,
    options: Options,
    corrupt_every: u64,
) -> impl Future<Output = weft::Result<()>> {
    weft::tokio::accept_with(stream, options, |_| Ok(weft::Accept::new())).then(move |accepted| {
        match accepted {
            Ok((ws, _)) => Either::Left(echo_loop(ws, corrupt_every)),
            Err(e) => Either::Right(std::future::ready(Err(e))),
        }
    })
}

/// Echoes: `recv`, then `feed` every message that has already arrived, then one `flush`.
#[allow(clippy::manual_async_fn)] // (an `async fn` keeps its arguments twice)
fn echo_loop(
    mut ws: weft::tokio::WebSocket<tokio::net::TcpStream>,
    corrupt_every: u64,
) -> impl Future<Output = weft::Result<()>> {
    async move {
        let mut n = 0u64;
        while let Some(msg) = ws.recv().await? {
            n += 1;
            ws.feed(maybe_corrupt(msg, n, corrupt_every)).await?;
            while let Some(next) = ws.try_recv()? {
                n += 1;
                ws.feed(maybe_corrupt(next, n, corrupt_every)).await?;
            }
            ws.flush().await?;
        }
        Ok(())
    }
}

/// Test mode: flips the low bit of the middle byte of every `every`th payload (ASCII stays
/// ASCII, so text stays valid UTF-8). The load generator's sampled checks may miss it (the
/// middle byte is sampled only by chance); `--verify full` finds it.
fn maybe_corrupt(msg: Message, n: u64, every: u64) -> Message {
    if every == 0 || !n.is_multiple_of(every) || msg.is_empty() {
        return msg;
    }
    let text = matches!(msg, Message::Text(_));
    let mut v = msg.into_payload().to_vec();
    let mid = v.len() / 2;
    v[mid] ^= 1;
    if text {
        Message::from(String::from_utf8(v).expect("ASCII stays ASCII"))
    } else {
        Message::Binary(Bytes::from(v))
    }
}
